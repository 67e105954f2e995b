//! Failover of a shard primary on one local cluster with three zones, under a continuous
//! writer on the region endpoint: `kill -9` of the primary's process, deletion of the primary
//! pod, deletion of the new primary right after a failover (flapping guard), and the loss of the
//! primary's node.
//!
//! Every scenario has its own namespace, database and operator (watching only that namespace).
//! The writer sends `SET key-i i` then `WAIT 1 1000` through the region endpoint (the
//! LoadBalancer Service `<db>-east`); a write is acknowledged when `WAIT` counted at least one
//! replica. Errors are expected during a failover: the writer reconnects and goes on. After
//! the shard is wired again every acknowledged key must be readable with its value (no
//! acknowledged write is lost). Measured times are printed, not asserted: the machine is shared.
//!
//! Losing a node affects the pods of every database on it, so that scenario runs alone (it
//! takes [`NODE_LOSS`] for writing, the others for reading).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

const DB: &str = "db";

/// Held for writing by the node-loss scenario, for reading by the others.
static NODE_LOSS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn h() -> &'static Harness {
    harness("failover", 1, 3)
}

/// The operator of one scenario, watching only its namespace.
fn operator(h: &Harness, ns: &str) -> Operator {
    Operator::start(
        &h.dir,
        ns,
        h.clusters[0].kubeconfig_path(),
        &["--watch-namespace", ns],
    )
}

/// Creates the namespace and a one-shard database with `replicas` replicas spread over the
/// three zones, waits until it is Ready and returns its region endpoint.
async fn provision(h: &Harness, ns: &str, replicas: u32) -> String {
    provision_with(h, ns, replicas, serde_json::json!({})).await
}

/// Like [`provision`], with `extra` merged into the spec.
async fn provision_with(h: &Harness, ns: &str, replicas: u32, extra: serde_json::Value) -> String {
    let c = &h.clusters[0];
    namespace(c, ns).await;
    let started = Instant::now();
    let mut spec = serde_json::json!({
        "shards": 1, "replicasPerShard": replicas, "image": "shard-node:dev",
        "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    apply_db(
        c,
        ns,
        serde_json::json!({"metadata": {"name": DB}, "spec": spec}),
    )
    .await
    .expect("apply database");
    wait_ready(c, ns, DB, Duration::from_secs(120)).await;
    let endpoint = eventually("region endpoint", Duration::from_secs(60), || {
        lb_address(c, ns, "db-east")
    })
    .await;
    eprintln!(
        "[{ns}] database with {replicas} replica(s) Ready in {:.1}s, endpoint {endpoint}",
        started.elapsed().as_secs_f64()
    );
    endpoint
}

/// One acknowledged write.
#[derive(Clone, Copy, Debug)]
struct Ack {
    index: u64,
    sent: Instant,
    acked: Instant,
}

/// What the writer saw.
#[derive(Default)]
struct Tally {
    acks: Vec<Ack>,
    /// Writes whose `WAIT` counted no replica.
    unacknowledged: u64,
    /// Failed connections, commands and timeouts.
    errors: u64,
}

/// A task writing through the region endpoint until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(endpoint: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let task = tokio::spawn(write_loop(
            endpoint.to_string(),
            stop.clone(),
            tally.clone(),
        ));
        Writer { stop, tally, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Acknowledged writes sent at or after `since`.
    fn acks_since(&self, since: Instant) -> Vec<Ack> {
        self.lock()
            .acks
            .iter()
            .filter(|a| a.sent >= since)
            .copied()
            .collect()
    }

    /// Waits until `count` writes sent at or after `since` were acknowledged; returns the first.
    async fn wait_acks(&self, what: &str, since: Instant, count: usize, timeout: Duration) -> Ack {
        eventually(what, timeout, || async {
            let acks = self.acks_since(since);
            (acks.len() >= count).then(|| acks[0])
        })
        .await
    }

    /// Longest time without an acknowledgement after `since` (until the latest one).
    fn longest_gap_since(&self, since: Instant) -> Duration {
        let tally = self.lock();
        let mut previous = since;
        let mut longest = Duration::ZERO;
        for a in tally.acks.iter().filter(|a| a.acked >= since) {
            longest = longest.max(a.acked.saturating_duration_since(previous));
            previous = a.acked;
        }
        longest
    }

    /// Stops the writer; returns what it saw.
    async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let _ = (&mut self.task).await;
        std::mem::take(&mut *self.lock())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `SET key-i i`, then `WAIT 1 1000`, forever; reconnects after any error.
async fn write_loop(endpoint: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let record = |f: &dyn Fn(&mut Tally)| f(&mut tally.lock().unwrap_or_else(|p| p.into_inner()));
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut index = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match redis_conn(&endpoint).await {
                Some(c) => conn.insert(c),
                None => {
                    record(&|t| t.errors += 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        index += 1;
        let sent = Instant::now();
        let mut set = redis::cmd("SET");
        set.arg(format!("key-{index}")).arg(index);
        let set = set.query_async::<String>(c);
        if !matches!(
            tokio::time::timeout(Duration::from_secs(2), set).await,
            Ok(Ok(_))
        ) {
            record(&|t| t.errors += 1);
            conn = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(1000);
        let wait = wait.query_async::<i64>(c);
        match tokio::time::timeout(Duration::from_secs(3), wait).await {
            Ok(Ok(n)) if n >= 1 => {
                let acked = Instant::now();
                record(&|t| t.acks.push(Ack { index, sent, acked }));
            }
            Ok(Ok(_)) => record(&|t| t.unacknowledged += 1),
            _ => {
                record(&|t| t.errors += 1);
                conn = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads every acknowledged key through `endpoint`; returns those missing or wrong.
async fn lost_writes(endpoint: &str, acks: &[Ack]) -> Vec<String> {
    let mut lost = Vec::new();
    for chunk in acks.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|a| format!("key-{}", a.index)).collect();
        let values: Vec<Option<String>> = eventually(
            "MGET of acknowledged keys",
            Duration::from_secs(30),
            || async {
                let mut conn = redis_conn(endpoint).await?;
                let mut mget = redis::cmd("MGET");
                mget.arg(&keys);
                tokio::time::timeout(Duration::from_secs(5), mget.query_async(&mut conn))
                    .await
                    .ok()?
                    .ok()
            },
        )
        .await;
        for (a, v) in chunk.iter().zip(values) {
            if v.as_deref() != Some(a.index.to_string().as_str()) {
                lost.push(format!("key-{} = {v:?}", a.index));
            }
        }
    }
    lost
}

/// Stops the writer and checks that every acknowledged write is readable.
async fn check_no_loss(ns: &str, endpoint: &str, writer: Writer) {
    let tally = writer.stop().await;
    let lost = lost_writes(endpoint, &tally.acks).await;
    eprintln!(
        "[{ns}] writer: {} acknowledged, {} without replica acknowledgement, {} errors; {} lost",
        tally.acks.len(),
        tally.unacknowledged,
        tally.errors,
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "[{ns}] {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn pod_address(p: &Pod) -> Option<String> {
    let ip = p.status.as_ref()?.pod_ip.as_deref()?;
    (!ip.is_empty()).then(|| format!("{ip}:6379"))
}

fn pod_node(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

fn pod_is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

fn labeled_primary(p: &Pod) -> bool {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("aadb.dev/role"))
        .is_some_and(|r| r == "primary")
}

/// A RESP value as text (bulk and simple strings, integers).
fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// What `ROLE` says: `Some(None)` for a primary, `Some(Some("host:port"))` for a replica whose
/// link is connected, None otherwise.
async fn role(addr: &str) -> Option<Option<String>> {
    let reply: Vec<redis::Value> = redis_cmd(addr, &["ROLE"]).await?;
    match reply.first().map(text).as_deref() {
        Some("master") => Some(None),
        Some("slave") if reply.get(3).map(text).as_deref() == Some("connected") => {
            let host = text(reply.get(1)?);
            let port = text(reply.get(2)?);
            Some(Some(format!("{host}:{port}")))
        }
        _ => None,
    }
}

/// The shard as wired: all `1 + replicas` pods Ready and not terminating, exactly one labeled
/// primary that answers as a primary, every other pod a connected replica of its address, and
/// the status Ready and naming the same primary. Returns the pods, primary first.
async fn wired(h: &Harness, ns: &str, replicas: usize) -> Option<Vec<Pod>> {
    let c = &h.clusters[0];
    let mut all = pods(c, ns, DB).await;
    if all.len() != replicas + 1
        || all
            .iter()
            .any(|p| !pod_is_ready(p) || p.metadata.deletion_timestamp.is_some())
    {
        return None;
    }
    all.sort_by_key(|p| !labeled_primary(p));
    if all.iter().filter(|p| labeled_primary(p)).count() != 1 {
        return None;
    }
    let primary_address = pod_address(&all[0])?;
    if role(&primary_address).await?.is_some() {
        return None;
    }
    for replica in &all[1..] {
        if role(&pod_address(replica)?).await? != Some(primary_address.clone()) {
            return None;
        }
    }
    let db = get_db(c, ns, DB).await?;
    let ready = condition(&db, "Ready").is_some_and(|c| c.status == "True");
    let shard = db.status.as_ref()?.participants.first()?.shards.first()?;
    let status_agrees = shard.primary.as_ref()?.pod == pod_name(&all[0])
        && shard.primary.as_ref()?.ready
        && shard.replicas.len() == replicas
        && shard.replicas.iter().all(|r| r.ready);
    (ready && status_agrees).then_some(all)
}

async fn failovers(h: &Harness, ns: &str) -> u64 {
    get_db(&h.clusters[0], ns, DB)
        .await
        .and_then(|db| db.status)
        .map_or(0, |s| s.failovers)
}

/// Waits until a pod other than `old` is labeled primary; returns it and when it was seen.
async fn primary_moved(h: &Harness, ns: &str, old: &str, timeout: Duration) -> (String, Instant) {
    eventually("the primary label to move", timeout, || async {
        let p = primary_pod(&h.clusters[0], ns, DB, "east", 0).await?;
        let name = pod_name(&p);
        (name != old).then(|| (name, Instant::now()))
    })
    .await
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[test]
fn kill_9_of_the_primary_loses_no_acknowledged_write() {
    let h = h();
    run(h, |h| async move {
        let _shared = NODE_LOSS.read().await;
        let ns = "kill";
        let c = &h.clusters[0];
        let _op = operator(h, ns);
        let endpoint = provision(h, ns, 1).await;
        let writer = Writer::start(&endpoint);
        let begin = Instant::now();
        writer
            .wait_acks(
                "first acknowledged writes",
                begin,
                20,
                Duration::from_secs(30),
            )
            .await;
        let before = wired(h, ns, 1)
            .await
            .expect("the shard is wired before the kill");
        let old = pod_name(&before[0]);
        let old_restarts = restarts(&before[0]);
        let failovers_before = failovers(h, ns).await;

        let pid = c
            .agent()
            .expect("node agent")
            .kill_container(ns, &old, None)
            .expect("kill the primary's process");
        let killed = Instant::now();
        eprintln!("[{ns}] SIGKILLed {old} (pid {pid})");

        let first = writer
            .wait_acks(
                "an acknowledged write after the kill",
                killed,
                1,
                Duration::from_secs(60),
            )
            .await;
        eprintln!(
            "[{ns}] kill -9 to first acknowledged write: {}",
            secs(first.acked.saturating_duration_since(killed))
        );
        let after = eventually("the shard wired again", Duration::from_secs(90), || {
            wired(h, ns, 1)
        })
        .await;
        eprintln!(
            "[{ns}] kill -9 to shard wired and Ready: {}; longest write outage: {}",
            secs(killed.elapsed()),
            secs(writer.longest_gap_since(killed))
        );
        let resumed = Instant::now();
        writer
            .wait_acks(
                "writes after recovery",
                resumed,
                20,
                Duration::from_secs(30),
            )
            .await;
        let new = pod_name(&after[0]);
        let failovers_after = failovers(h, ns).await;
        let old_now = after
            .iter()
            .find(|p| pod_name(p) == old)
            .expect("the killed pod is still there");
        assert!(
            restarts(old_now) > old_restarts,
            "the killed container was restarted"
        );
        if new != old || failovers_after > failovers_before {
            assert_ne!(new, old, "a failover moved the primary");
            assert!(
                failovers_after > failovers_before,
                "status counts the failover"
            );
            eprintln!(
                "[{ns}] outcome: failed over from {old} to {new} (status.failovers {failovers_before} -> {failovers_after}); {old} follows it"
            );
        } else {
            eprintln!(
                "[{ns}] outcome: {old} restarted and recovered as the primary before the detection timeout (status.failovers stays {failovers_after})"
            );
        }
        check_no_loss(ns, &endpoint, writer).await;
    });
}

#[test]
fn deleting_the_primary_pod_fails_over_and_the_pod_returns_as_a_replica() {
    let h = h();
    run(h, |h| async move {
        let _shared = NODE_LOSS.read().await;
        let ns = "delete";
        let c = &h.clusters[0];
        let _op = operator(h, ns);
        let endpoint = provision(h, ns, 2).await;
        let writer = Writer::start(&endpoint);
        let begin = Instant::now();
        writer
            .wait_acks(
                "first acknowledged writes",
                begin,
                20,
                Duration::from_secs(30),
            )
            .await;
        let before = wired(h, ns, 2).await.expect("the shard is wired before");
        let old = pod_name(&before[0]);
        let old_uid = before[0].metadata.uid.clone();
        let failovers_before = failovers(h, ns).await;

        Api::<Pod>::namespaced(c.client(), ns)
            .delete(&old, &DeleteParams::default())
            .await
            .expect("delete the primary pod");
        let deleted = Instant::now();
        eprintln!("[{ns}] deleted {old}");

        let (new, moved) = primary_moved(h, ns, &old, Duration::from_secs(60)).await;
        eprintln!(
            "[{ns}] delete to {new} labeled primary: {}",
            secs(moved.saturating_duration_since(deleted))
        );
        let first = writer
            .wait_acks(
                "an acknowledged write after the deletion",
                deleted,
                1,
                Duration::from_secs(60),
            )
            .await;
        eprintln!(
            "[{ns}] delete to first acknowledged write: {}",
            secs(first.acked.saturating_duration_since(deleted))
        );
        let after = eventually(
            "the shard wired again with the pod recreated",
            Duration::from_secs(120),
            || async {
                let all = wired(h, ns, 2).await?;
                let back = all.iter().find(|p| pod_name(p) == old)?;
                (back.metadata.uid != old_uid).then_some(all)
            },
        )
        .await;
        eprintln!(
            "[{ns}] delete to shard wired and Ready with {old} back: {}; longest write outage: {}",
            secs(deleted.elapsed()),
            secs(writer.longest_gap_since(deleted))
        );
        assert_eq!(
            pod_name(&after[0]),
            new,
            "the promoted pod is still the primary"
        );
        let failovers_after = eventually(
            "status.failovers counts the failover",
            Duration::from_secs(15),
            || async {
                let n = failovers(h, ns).await;
                (n > failovers_before).then_some(n)
            },
        )
        .await;
        eprintln!(
            "[{ns}] {old} was recreated and follows {new}; status.failovers {failovers_before} -> {failovers_after}"
        );
        let resumed = Instant::now();
        writer
            .wait_acks(
                "writes after recovery",
                resumed,
                20,
                Duration::from_secs(30),
            )
            .await;
        check_no_loss(ns, &endpoint, writer).await;
    });
}

#[test]
fn deleting_the_new_primary_right_after_a_failover_loses_nothing() {
    let h = h();
    run(h, |h| async move {
        let _shared = NODE_LOSS.read().await;
        let ns = "flap";
        let c = &h.clusters[0];
        let _op = operator(h, ns);
        let endpoint = provision(h, ns, 2).await;
        let writer = Writer::start(&endpoint);
        let begin = Instant::now();
        writer
            .wait_acks(
                "first acknowledged writes",
                begin,
                20,
                Duration::from_secs(30),
            )
            .await;
        let before = wired(h, ns, 2).await.expect("the shard is wired before");
        let first = pod_name(&before[0]);
        let pods_api = Api::<Pod>::namespaced(c.client(), ns);

        pods_api
            .delete(&first, &DeleteParams::default())
            .await
            .expect("delete the primary pod");
        let deleted = Instant::now();
        let (second, moved) = primary_moved(h, ns, &first, Duration::from_secs(60)).await;
        // The new primary fails at once: a second failover so soon may be held by the
        // flapping guard (2 × the detection timeout after the first), never skipped.
        pods_api
            .delete(&second, &DeleteParams::default())
            .await
            .expect("delete the new primary pod");
        let deleted_again = Instant::now();
        let (third, moved_again) = primary_moved(h, ns, &second, Duration::from_secs(60)).await;
        eprintln!(
            "[{ns}] {first} deleted, {second} primary after {}; {second} deleted {} later, {third} primary after {} ({} after the first deletion)",
            secs(moved.saturating_duration_since(deleted)),
            secs(deleted_again.saturating_duration_since(moved)),
            secs(moved_again.saturating_duration_since(deleted_again)),
            secs(moved_again.saturating_duration_since(deleted))
        );
        writer
            .wait_acks(
                "an acknowledged write after the second failover",
                deleted_again,
                1,
                Duration::from_secs(60),
            )
            .await;
        let after = eventually("the shard wired again", Duration::from_secs(120), || {
            wired(h, ns, 2)
        })
        .await;
        eprintln!(
            "[{ns}] shard wired and Ready {} after the first deletion, primary {}; longest write outage: {}; status.failovers {}",
            secs(deleted.elapsed()),
            pod_name(&after[0]),
            secs(writer.longest_gap_since(deleted)),
            failovers(h, ns).await
        );
        let resumed = Instant::now();
        writer
            .wait_acks(
                "writes after recovery",
                resumed,
                20,
                Duration::from_secs(30),
            )
            .await;
        check_no_loss(ns, &endpoint, writer).await;
    });
}

#[test]
fn losing_the_primarys_node_fails_over_and_the_old_primary_follows_after_it_returns() {
    let h = h();
    run(h, |h| async move {
        let _alone = NODE_LOSS.write().await;
        let ns = "node";
        let c = &h.clusters[0];
        let agent = c.agent().expect("node agent");
        let _op = operator(h, ns);
        let endpoint = provision(h, ns, 2).await;
        let writer = Writer::start(&endpoint);
        let begin = Instant::now();
        writer
            .wait_acks(
                "first acknowledged writes",
                begin,
                20,
                Duration::from_secs(30),
            )
            .await;
        let before = wired(h, ns, 2).await.expect("the shard is wired before");
        let old = pod_name(&before[0]);
        let old_address = pod_address(&before[0]).expect("primary address");
        let node = pod_node(&before[0]).expect("the primary is on a node");
        let failovers_before = failovers(h, ns).await;

        agent.stop_heartbeats(&node).expect("stop the node");
        let stopped = Instant::now();
        eprintln!("[{ns}] stopped the heartbeats of {node}, which runs the primary {old}");
        let resume = scopeguard(|| agent.resume_heartbeats(&node));

        let (new, moved) = primary_moved(h, ns, &old, Duration::from_secs(60)).await;
        eprintln!(
            "[{ns}] node stop to {new} labeled primary: {}",
            secs(moved.saturating_duration_since(stopped))
        );
        let first = writer
            .wait_acks(
                "an acknowledged write after the promotion",
                moved,
                1,
                Duration::from_secs(60),
            )
            .await;
        eprintln!(
            "[{ns}] node stop to first acknowledged write after the promotion: {}; longest write outage: {}",
            secs(first.acked.saturating_duration_since(stopped)),
            secs(writer.longest_gap_since(stopped))
        );
        let all = pods(c, ns, DB).await;
        let new_address = all
            .iter()
            .find(|p| pod_name(p) == new)
            .and_then(pod_address)
            .expect("new primary address");
        assert_ne!(
            all.iter().find(|p| pod_name(p) == new).and_then(pod_node),
            Some(node.clone()),
            "the promoted pod runs on another node"
        );
        // The old primary's process still runs on the lost node: it must stop taking writes.
        eventually(
            "the old primary to follow the new one",
            Duration::from_secs(30),
            || async { (role(&old_address).await? == Some(new_address.clone())).then_some(()) },
        )
        .await;
        eprintln!(
            "[{ns}] {old} follows {new} while its node is lost: {} after the stop",
            secs(stopped.elapsed())
        );

        drop(resume);
        let resumed = Instant::now();
        let after = eventually("the shard wired again", Duration::from_secs(90), || {
            wired(h, ns, 2)
        })
        .await;
        eprintln!(
            "[{ns}] node back to shard wired and Ready: {}",
            secs(resumed.elapsed())
        );
        assert_eq!(pod_name(&after[0]), new, "the promoted pod stays primary");
        assert!(
            after.iter().any(|p| pod_name(p) == old),
            "the old primary is a replica again"
        );
        assert!(
            failovers(h, ns).await > failovers_before,
            "status counts the failover"
        );
        let again = Instant::now();
        writer
            .wait_acks("writes after recovery", again, 20, Duration::from_secs(30))
            .await;
        check_no_loss(ns, &endpoint, writer).await;
    });
}

/// Runs `f` when dropped (resumes a stopped node even when an assertion fails).
struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

/// `INCR counter` through `endpoint` until stopped: (replies received, requests whose outcome
/// is unknown: an unknown-outcome error from the proxy, a lost connection or a timeout).
async fn count_loop(endpoint: String, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut applied, mut unknown) = (0u64, 0u64);
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match redis_conn(&endpoint).await {
                Some(c) => conn.insert(c),
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let mut incr = redis::cmd("INCR");
        incr.arg("counter");
        let incr = incr.query_async::<i64>(c);
        match tokio::time::timeout(Duration::from_secs(2), incr).await {
            Ok(Ok(_)) => applied += 1,
            Ok(Err(e)) if e.to_string().contains("may or may not") => unknown += 1,
            // Refused before it ran (CLUSTERDOWN while the shard is unreachable).
            Ok(Err(e)) if e.kind() == redis::ErrorKind::ExtensionError || e.code().is_some() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => {
                unknown += 1;
                conn = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (applied, unknown)
}

#[test]
fn kill_9_of_a_shard_primary_behind_the_proxies_loses_and_repeats_no_write() {
    let h = h();
    run(h, |h| async move {
        let _shared = NODE_LOSS.read().await;
        let ns = "proxied";
        let c = &h.clusters[0];
        let _op = operator(h, ns);
        namespace(c, ns).await;
        apply_db(
            c,
            ns,
            serde_json::json!({
                "metadata": {"name": DB},
                "spec": {
                    "shards": 2, "replicasPerShard": 1, "image": "shard-node:dev",
                    "proxy": {"replicas": 2},
                    "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
                }
            }),
        )
        .await
        .expect("apply database");
        wait_ready(c, ns, DB, Duration::from_secs(120)).await;
        let endpoint = eventually("the proxies serving", Duration::from_secs(60), || async {
            let db = get_db(c, ns, DB).await?;
            let east = db.status?.participants.first()?.clone();
            east.topology_version?;
            let endpoint = east.endpoint?;
            let ok: String = redis_cmd(&endpoint, &["SET", "probe", "1"]).await?;
            (ok == "OK").then_some(endpoint)
        })
        .await;
        // The shard of the counter.
        let slot: i64 = redis_cmd(&endpoint, &["CLUSTER", "KEYSLOT", "counter"])
            .await
            .expect("CLUSTER KEYSLOT");
        let shard = u32::from(slot >= 8192);

        let writer = Writer::start(&endpoint);
        let stop = Arc::new(AtomicBool::new(false));
        let counter = tokio::spawn(count_loop(endpoint.clone(), stop.clone()));
        let begin = Instant::now();
        writer
            .wait_acks(
                "first acknowledged writes",
                begin,
                20,
                Duration::from_secs(30),
            )
            .await;
        let old = primary_pod(c, ns, DB, "east", shard)
            .await
            .expect("the counter's primary");
        let old = pod_name(&old);
        let pid = c
            .agent()
            .expect("node agent")
            .kill_container(ns, &old, None)
            .expect("kill the primary's process");
        let killed = Instant::now();
        eprintln!("[{ns}] SIGKILLed {old} (pid {pid}), the primary of shard {shard}");
        let first = writer
            .wait_acks(
                "an acknowledged write after the kill",
                killed,
                1,
                Duration::from_secs(60),
            )
            .await;
        eprintln!(
            "[{ns}] kill -9 to first acknowledged write through the proxies: {}",
            secs(first.acked.saturating_duration_since(killed))
        );
        writer
            .wait_acks("writes after recovery", killed, 50, Duration::from_secs(60))
            .await;
        eprintln!(
            "[{ns}] longest write outage through the proxies: {}",
            secs(writer.longest_gap_since(killed))
        );
        stop.store(true, Ordering::SeqCst);
        let (applied, unknown) = counter.await.expect("counter task");
        // An increment the old primary answered but its replica never received comes back when
        // the old primary returns as a replica and hands it over.
        let value: i64 = eventually(
            "every answered increment counted",
            Duration::from_secs(60),
            || async {
                let value: String = redis_cmd(&endpoint, &["GET", "counter"]).await?;
                let value: i64 = value.parse().ok()?;
                if value < applied as i64 {
                    note(&format!(
                        "[{ns}] counter {value} < {applied} answered increments"
                    ));
                }
                (value >= applied as i64).then_some(value)
            },
        )
        .await;
        eprintln!("[{ns}] counter: {value}, {applied} increments answered, {unknown} unknown");
        assert!(
            value <= (applied + unknown) as i64,
            "an increment was applied twice: {value} > {applied} + {unknown}"
        );
        check_no_loss(ns, &endpoint, writer).await;
    });
}

/// The directory of the volume of `pod`'s data claim, on this machine.
async fn data_volume_dir(
    c: &aadb_e2e::cluster::LocalCluster,
    ns: &str,
    pod: &str,
) -> Option<std::path::PathBuf> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let claim = Api::<PersistentVolumeClaim>::namespaced(c.client(), ns)
        .get(&format!("data-{pod}"))
        .await
        .ok()?;
    let volume = claim.spec?.volume_name?;
    let pv = Api::<PersistentVolume>::all(c.client())
        .get(&volume)
        .await
        .ok()?;
    Some(std::path::PathBuf::from(pv.spec?.host_path?.path))
}

/// Writes zeros to `path` until the disk is full; returns the bytes written.
fn fill_disk(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the filler file");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = f.sync_all();
    written
}

#[test]
fn a_primary_whose_disk_is_full_is_replaced_and_the_status_says_why() {
    let h = h();
    run(h, |h| async move {
        let _shared = NODE_LOSS.read().await;
        let ns = "diskfull";
        let c = &h.clusters[0];
        let _op = operator(h, ns);
        // Claims this small are tmpfs volumes of exactly that size on the local plane.
        let endpoint = provision_with(
            h,
            ns,
            1,
            serde_json::json!({"persistence": {"size": "8Mi"}}),
        )
        .await;
        let writer = Writer::start(&endpoint);
        writer
            .wait_acks(
                "first acknowledged writes",
                Instant::now(),
                20,
                Duration::from_secs(30),
            )
            .await;
        let before = wired(h, ns, 1).await.expect("the shard is wired");
        let old = pod_name(&before[0]);
        let failovers_before = failovers(h, ns).await;
        let dir = data_volume_dir(c, ns, &old)
            .await
            .expect("the primary's volume directory");
        let filler = dir.join("filler");
        let written = fill_disk(&filler);
        eprintln!("[{ns}] filled {old}'s volume with {written} bytes");
        // The log's last page may still take a few records; then writes are refused.
        let old_address = pod_address(&before[0]).expect("the primary's address");
        eventually(
            "the primary refusing writes (MISCONF)",
            Duration::from_secs(30),
            || async {
                let mut conn = redis_conn(&old_address).await?;
                let value = "v".repeat(4096);
                let reply = redis::cmd("SET")
                    .arg("probe")
                    .arg(&value)
                    .query_async::<String>(&mut conn)
                    .await;
                match reply {
                    Err(e) if e.to_string().contains("MISCONF") => Some(()),
                    _ => None,
                }
            },
        )
        .await;
        let refused = Instant::now();
        let new = eventually(
            "another pod labelled primary",
            Duration::from_secs(30),
            || async {
                let pods = pods(c, ns, DB).await;
                let primary = pods.iter().find(|p| labeled_primary(p))?;
                (pod_name(primary) != old).then(|| pod_name(primary))
            },
        )
        .await;
        let first = writer
            .wait_acks(
                "an acknowledged write on the new primary",
                refused,
                1,
                Duration::from_secs(60),
            )
            .await;
        eprintln!(
            "[{ns}] writes refused to first acknowledged write: {}",
            secs(first.acked.saturating_duration_since(refused))
        );
        eventually(
            "status counting the failover",
            Duration::from_secs(30),
            || async { (failovers(h, ns).await > failovers_before).then_some(()) },
        )
        .await;
        // The old primary follows the new one but still cannot write its log: the status says so.
        let message = eventually(
            "Degraded naming the full disk",
            Duration::from_secs(30),
            || async {
                let db = get_db(c, ns, DB).await?;
                let degraded = condition(&db, "Degraded")?;
                (degraded.status == "True" && degraded.message.contains("cannot write its log"))
                    .then(|| degraded.message.clone())
            },
        )
        .await;
        assert!(message.contains(&old), "{message}");
        eprintln!("[{ns}] {new} promoted; Degraded: {message}");

        // Space freed: the old primary writes its log again by itself and the shard is whole.
        std::fs::remove_file(&filler).expect("remove the filler");
        let freed = Instant::now();
        eventually("the shard wired again", Duration::from_secs(60), || {
            wired(h, ns, 1)
        })
        .await;
        eventually("Degraded cleared", Duration::from_secs(30), || async {
            let db = get_db(c, ns, DB).await?;
            condition(&db, "Degraded")
                .is_some_and(|d| d.status == "False")
                .then_some(())
        })
        .await;
        eprintln!(
            "[{ns}] space freed to Degraded cleared: {}",
            secs(freed.elapsed())
        );
        writer
            .wait_acks(
                "writes after recovery",
                Instant::now(),
                20,
                Duration::from_secs(30),
            )
            .await;
        check_no_loss(ns, &endpoint, writer).await;
    });
}
