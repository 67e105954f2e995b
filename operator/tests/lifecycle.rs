//! The lifecycle of databases on one local cluster: specs the API server refuses, specs the
//! operator refuses (and that become Ready once fixed, without holding up other databases),
//! scaling and a rolling change under writes without losing an acknowledged write, a primary
//! whose pod is rolled or scaled away handing over without losing any write it answered, an
//! operator killed mid-reconcile and replaced, and two operator replicas with leader election.
//!
//! Every test has its own namespaces and operators; operators watch only their test's namespace,
//! except the one of the invalid-spec test, which watches every namespace and therefore runs
//! while no other test of this binary runs.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use aadb_crd::ActiveActiveDatabase;
use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams};

/// Held exclusively by the test whose operator watches every namespace, shared by the others.
static ALL_NAMESPACES: RwLock<()> = RwLock::new(());

fn h() -> &'static Harness {
    harness("lifecycle", 1, 4)
}

fn shared() -> RwLockReadGuard<'static, ()> {
    ALL_NAMESPACES.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    ALL_NAMESPACES.write().unwrap_or_else(|e| e.into_inner())
}

/// An operator of the test cluster watching only `namespace`, with `extra` arguments.
fn operator_for(h: &Harness, tag: &str, namespace: &str, extra: &[&str]) -> Operator {
    let mut args = vec!["--watch-namespace", namespace];
    args.extend_from_slice(extra);
    Operator::start(&h.dir, tag, h.clusters[0].kubeconfig_path(), &args)
}

/// A one-participant database in the cluster `east` with `spec` fields added.
fn database(name: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut body = serde_json::json!({
        "image": "shard-node:dev",
        "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({"metadata": {"name": name}, "spec": body})
}

fn databases(c: &aadb_e2e::LocalCluster, ns: &str) -> Api<ActiveActiveDatabase> {
    Api::namespaced(c.client(), ns)
}

/// Pods of the database that are not terminating.
async fn live_pods(c: &aadb_e2e::LocalCluster, ns: &str, db: &str) -> Vec<Pod> {
    pods(c, ns, db)
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn cpu_request(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()?
        .containers
        .first()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("cpu")
        .map(|q| q.0.clone())
}

/// Counts of the database's StatefulSets, Services, PodDisruptionBudgets, claims and pods.
async fn object_counts(c: &aadb_e2e::LocalCluster, ns: &str, db: &str) -> Option<[usize; 5]> {
    let lp = ListParams::default().labels(&format!("aadb.dev/database={db}"));
    let client = c.client();
    Some([
        Api::<StatefulSet>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .ok()?
            .items
            .len(),
        Api::<Service>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .ok()?
            .items
            .len(),
        Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .ok()?
            .items
            .len(),
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .ok()?
            .items
            .len(),
        Api::<Pod>::namespaced(client, ns)
            .list(&lp)
            .await
            .ok()?
            .items
            .len(),
    ])
}

/// Deletes the database and waits until the object (so its finalizer) and every object of it
/// are gone.
async fn delete_and_wait_gone(c: &aadb_e2e::LocalCluster, ns: &str, db: &str, timeout: Duration) {
    // With the default reclaimPolicy (Retain) the claims stay; they are deleted here after
    // checking that, so the next test starts clean.
    let claims_before = object_counts(c, ns, db).await.map_or(0, |n| n[3]);
    match databases(c, ns).delete(db, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("delete {ns}/{db}: {e}"),
    }
    let started = Instant::now();
    let mut last = None;
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            let gone = get_db(c, ns, db).await.is_none();
            let counts = object_counts(c, ns, db).await;
            if gone && counts == Some([0, 0, 0, claims_before, 0]) {
                return;
            }
            last = Some((gone, counts));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{ns}/{db} not gone after {timeout:?}: (object gone, [StatefulSets, Services, PDBs, claims, pods] left) = {last:?}"
    );
    eprintln!(
        "{ns}/{db}: deleted with every object but its {claims_before} claims in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let lp = ListParams::default().labels(&format!("aadb.dev/database={db}"));
    Api::<PersistentVolumeClaim>::namespaced(c.client(), ns)
        .delete_collection(&DeleteParams::default(), &lp)
        .await
        .expect("delete the kept claims");
}

/// Waits until the database's status reports `SpecValid=False` for its current generation;
/// returns the condition's message.
async fn wait_invalid(c: &aadb_e2e::LocalCluster, ns: &str, name: &str) -> String {
    eventually(
        &format!("{ns}/{name} SpecValid=False"),
        Duration::from_secs(30),
        || async {
            let db = get_db(c, ns, name).await?;
            let st = db.status.as_ref()?;
            let valid = condition(&db, "SpecValid")?;
            let ready = condition(&db, "Ready")?;
            (st.observed_generation == db.metadata.generation
                && valid.status == "False"
                && ready.status == "False"
                && st.phase.as_deref() == Some("Invalid"))
            .then(|| valid.message.clone())
        },
    )
    .await
}

#[test]
fn the_api_server_refuses_what_the_schema_rules_out() {
    let _shared = shared();
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "lc-schema").await;
        let zones = serde_json::json!(["east-a", "east-b", "east-c"]);
        let cases: Vec<(&str, serde_json::Value, Vec<&str>)> = vec![
            (
                "duplicate participant names",
                serde_json::json!({"participants": [
                    {"name": "east", "zones": zones}, {"name": "east", "zones": zones}]}),
                vec!["participant names must be unique"],
            ),
            (
                "a participant without zones",
                serde_json::json!({"participants": [{"name": "east", "zones": []}]}),
                vec!["zones", "should have at least 1 items"],
            ),
            (
                "zero shards",
                serde_json::json!({"shards": 0}),
                vec!["spec.shards", "greater than or equal to 1"],
            ),
            (
                "nine replicas per shard",
                serde_json::json!({"replicasPerShard": 9}),
                vec!["spec.replicasPerShard", "less than or equal to 5"],
            ),
            (
                "endpoint type Host without host",
                serde_json::json!({"participants": [
                    {"name": "east", "zones": zones, "endpoint": {"type": "Host"}}]}),
                vec!["endpoint.host is required when endpoint.type is Host"],
            ),
            (
                "a maxmemory that is not a size",
                serde_json::json!({"maxmemory": "12xb"}),
                vec!["spec.maxmemory", "should match"],
            ),
        ];
        for (what, spec, needles) in cases {
            let err = apply_db(c, &ns, database("refused", spec))
                .await
                .err()
                .unwrap_or_else(|| panic!("the API server accepted {what}"));
            let message = err.to_string();
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{what}: {needle:?} not in the refusal {message:?}"
                );
            }
            assert!(
                get_db(c, &ns, "refused").await.is_none(),
                "{what}: object stored"
            );
        }

        // The shard count of an existing database cannot change (transition rule). No
        // operator watches this namespace: the object stays inert.
        apply_db(c, &ns, database("fixed", serde_json::json!({"shards": 2})))
            .await
            .expect("a valid database is accepted");
        let err = apply_db(c, &ns, database("fixed", serde_json::json!({"shards": 3})))
            .await
            .expect_err("changing shards is refused");
        assert!(
            err.to_string()
                .contains("shards cannot change after creation: resharding is not supported yet"),
            "{err}"
        );
        let stored = get_db(c, &ns, "fixed").await.expect("object kept");
        assert_eq!(stored.spec.shards, 2);
        // Changing something else is still allowed.
        apply_db(
            c,
            &ns,
            database(
                "fixed",
                serde_json::json!({"shards": 2, "replicasPerShard": 2}),
            ),
        )
        .await
        .expect("other fields stay mutable");
        databases(c, &ns)
            .delete("fixed", &DeleteParams::default())
            .await
            .expect("delete");
    });
}

/// A namespace that enforces the "restricted" Pod Security Standard admits the shard-node
/// pods: the API server's PodSecurity admission refuses any pod that is not.
#[test]
fn pods_are_admitted_where_the_restricted_standard_is_enforced() {
    let _shared = shared();
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = "lc-restricted";
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client());
        let object =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest"}}}))
            .expect("namespace object");
        api.create(&kube::api::PostParams::default(), &object)
            .await
            .expect("create the restricted namespace");
        let _op = operator_for(h, "restricted", ns, &[]);
        let started = Instant::now();
        apply_db(
            c,
            ns,
            database("strict", serde_json::json!({"replicasPerShard": 1})),
        )
        .await
        .expect("apply");
        wait_ready(c, ns, "strict", Duration::from_secs(90)).await;
        assert_eq!(live_pods(c, ns, "strict").await.len(), 2);
        eprintln!(
            "Ready under the restricted Pod Security Standard in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        delete_and_wait_gone(c, ns, "strict", Duration::from_secs(60)).await;
    });
}

#[test]
fn the_operator_reports_invalid_specs_and_keeps_serving_others() {
    let _exclusive = exclusive();
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "lc-invalid").await;
        let elsewhere = namespace(c, "lc-elsewhere").await;
        // Watches every namespace.
        let _op = Operator::start(&h.dir, "invalid", c.kubeconfig_path(), &[]);
        let started = Instant::now();
        apply_db(
            c,
            &ns,
            database(
                "bad",
                serde_json::json!({"replicasPerShard": 0, "clusterApi": true,
                    "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"],
                        "endpoint": {"type": "Host", "host": "db.example.com"}}],
                    "podTemplate": {"labels": {"aadb.dev/tier": "cache"}},
                    "resources": {"requests": {"cpu": "banana"}}}),
            ),
        )
        .await
        .expect(
            "the schema accepts clusterApi with any endpoint, any label key and any quantity text",
        );
        apply_db(
            c,
            &ns,
            database("1db", serde_json::json!({"replicasPerShard": 0})),
        )
        .await
        .expect("the API server accepts a name starting with a digit");
        apply_db(
            c,
            &elsewhere,
            database("good", serde_json::json!({"replicasPerShard": 0})),
        )
        .await
        .expect("apply the valid database");

        let message = wait_invalid(c, &ns, "bad").await;
        for needle in [
            "spec.clusterApi needs an address per shard-node pod",
            "\"aadb.dev/tier\"",
            "reserved",
            "spec.resources.requests.cpu is \"banana\", which is not a Kubernetes quantity",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
        let message = wait_invalid(c, &ns, "1db").await;
        assert!(
            message.contains("\"1db\" must start with a lowercase letter"),
            "{message:?}"
        );
        apply_db(
            c,
            &ns,
            database(
                "nowhere",
                serde_json::json!({"replicasPerShard": 0,
                    "participants": [{"name": "east", "zones": ["moon-a"]}]}),
            ),
        )
        .await
        .expect("apply a database whose zone no node carries");
        wait_ready(c, &elsewhere, "good", Duration::from_secs(90)).await;
        // Its pod stays Pending; status says why and what to do.
        let message = eventually(
            "nowhere says its pod cannot be scheduled",
            Duration::from_secs(30),
            || async {
                let db = get_db(c, &ns, "nowhere").await?;
                let ready = condition(&db, "Ready")?;
                (ready.status == "False" && ready.message.contains("cannot be scheduled"))
                    .then(|| ready.message.clone())
            },
        )
        .await;
        for needle in [
            "nowhere-east-0-0",
            "topology.kubernetes.io/zone=moon-a",
            "add such a node",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
        eprintln!("a database whose zone no node carries: Ready=False: {message}");
        eprintln!(
            "valid database Ready beside two invalid ones in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        // Nothing was created for the invalid ones, and each got a Warning Event.
        assert_eq!(
            object_counts(c, &ns, "bad").await,
            Some([0; 5]),
            "objects of an invalid spec"
        );
        assert_eq!(object_counts(c, &ns, "1db").await, Some([0; 5]));
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client(), &ns);
        eventually(
            "InvalidSpec Warning Events",
            Duration::from_secs(10),
            || async {
                let list = events.list(&ListParams::default()).await.ok()?;
                let warned = |name: &str| {
                    list.items.iter().any(|e| {
                        e.reason.as_deref() == Some("InvalidSpec")
                            && e.type_.as_deref() == Some("Warning")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    })
                };
                (warned("bad") && warned("1db")).then_some(())
            },
        )
        .await;

        // Fixing the spec makes it Ready.
        let fixed_at = Instant::now();
        apply_db(
            c,
            &ns,
            database(
                "bad",
                serde_json::json!({"replicasPerShard": 0, "proxy": {"replicas": 0},
                    "podTemplate": {"labels": {"tier": "cache"}}}),
            ),
        )
        .await
        .expect("apply the fixed spec");
        let db = wait_ready(c, &ns, "bad", Duration::from_secs(90)).await;
        eprintln!(
            "fixed spec Ready in {:.1}s",
            fixed_at.elapsed().as_secs_f64()
        );
        let valid = condition(&db, "SpecValid").expect("SpecValid");
        assert_eq!(valid.status, "True", "{valid:?}");
        assert_eq!(
            db.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Ready")
        );
        let running = live_pods(c, &ns, "bad").await;
        assert_eq!(running.len(), 1);
        assert!(
            running.iter().all(|p| p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("tier"))
                .is_some_and(|v| v == "cache")),
            "pod template label missing"
        );

        // A database that can only be recreated is still deleted cleanly (its finalizer is
        // released); so are the others, leaving nothing for the other tests' operators.
        tokio::join!(
            delete_and_wait_gone(c, &ns, "1db", Duration::from_secs(60)),
            delete_and_wait_gone(c, &ns, "bad", Duration::from_secs(60)),
            delete_and_wait_gone(c, &ns, "nowhere", Duration::from_secs(60)),
            delete_and_wait_gone(c, &elsewhere, "good", Duration::from_secs(60)),
        );
    });
}

/// What the writer saw: acknowledged writes (index, when) and failed attempts.
#[derive(Default)]
struct WriteLog {
    acknowledged: Vec<(u64, Instant)>,
    unacknowledged: u64,
    errors: u64,
}

/// Database `db` of one region with `replicas` per shard and a cpu request of `cpu`.
fn sized_db(replicas: u32, cpu: &str) -> serde_json::Value {
    database(
        "db",
        serde_json::json!({"replicasPerShard": replicas,
            "resources": {"requests": {"cpu": cpu}}}),
    )
}

/// [`write_until`] running in the background.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<WriteLog>,
}

impl Writer {
    fn start(addr: &str, ack: Ack) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write_until(
            addr.to_string(),
            stop.clone(),
            acknowledged.clone(),
            ack,
        ));
        Writer {
            stop,
            acknowledged,
            task,
        }
    }

    /// Waits (30 s at most) until `at_least` more writes are acknowledged.
    async fn more(&self, what: &str, at_least: usize) {
        let target = self.acknowledged.load(Ordering::Relaxed) + at_least;
        eventually(what, Duration::from_secs(30), || async {
            (self.acknowledged.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await
    }

    /// Stops writing; what was written.
    async fn finish(self) -> WriteLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}

/// When the writer counts a write as acknowledged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// `WAIT 1 1000` reported at least one replica.
    Replica,
    /// The SET answered OK.
    Primary,
}

/// Writes `k-i = i` (then `WAIT 1 1000` with [`Ack::Replica`]) through `addr` until `stop`,
/// reconnecting after errors. `acknowledged` counts acknowledged writes as they happen.
async fn write_until(
    addr: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    ack: Ack,
) -> WriteLog {
    let mut log = WriteLog::default();
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match redis_conn(&addr).await {
                Some(c) => conn.insert(c),
                None => {
                    log.errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        i += 1;
        let set = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("SET")
                .arg(format!("k-{i}"))
                .arg(i)
                .query_async::<String>(c),
        )
        .await;
        if !matches!(set, Ok(Ok(_))) {
            log.errors += 1;
            conn = None;
            continue;
        }
        if ack == Ack::Primary {
            log.acknowledged.push((i, Instant::now()));
            acknowledged.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let wait = tokio::time::timeout(
            Duration::from_secs(3),
            redis::cmd("WAIT").arg(1).arg(1000).query_async::<i64>(c),
        )
        .await;
        match wait {
            Ok(Ok(n)) if n >= 1 => {
                log.acknowledged.push((i, Instant::now()));
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(_)) => log.unacknowledged += 1,
            _ => {
                log.errors += 1;
                conn = None;
            }
        }
    }
    log
}

/// The acknowledged writes of `log` that `addr` does not return (index, value read).
async fn lost_writes(addr: &str, log: &WriteLog) -> Vec<(u64, Option<String>)> {
    let mut conn = redis_conn(addr).await.expect("connect for reads");
    let mut lost = Vec::new();
    for chunk in log.acknowledged.chunks(500) {
        let mut mget = redis::cmd("MGET");
        for (i, _) in chunk {
            mget.arg(format!("k-{i}"));
        }
        let values: Vec<Option<String>> =
            tokio::time::timeout(Duration::from_secs(5), mget.query_async(&mut conn))
                .await
                .expect("MGET in time")
                .expect("MGET");
        for ((i, _), v) in chunk.iter().zip(values) {
            if v.as_deref() != Some(i.to_string().as_str()) {
                lost.push((*i, v));
            }
        }
    }
    lost
}

/// The pod of `db` labeled primary, if exactly one is.
async fn primary_pod(c: &aadb_e2e::LocalCluster, ns: &str, db: &str) -> Option<String> {
    let primaries: Vec<String> = live_pods(c, ns, db)
        .await
        .into_iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("aadb.dev/role"))
                .is_some_and(|r| r == "primary")
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    (primaries.len() == 1).then(|| primaries[0].clone())
}

/// Longest time without an acknowledged write inside `[from, to]`.
fn longest_gap(log: &WriteLog, from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for (_, at) in log
        .acknowledged
        .iter()
        .filter(|(_, at)| *at >= from && *at <= to)
    {
        longest = longest.max(at.duration_since(last));
        last = *at;
    }
    longest.max(to.duration_since(last))
}

/// Waits until the database is Ready for its generation with `count` Ready pods (none
/// terminating), each passing `pod_ok`.
async fn wait_settled(
    c: &aadb_e2e::LocalCluster,
    ns: &str,
    name: &str,
    count: usize,
    pod_ok: impl Fn(&Pod) -> bool,
) {
    let pod_ok = &pod_ok;
    eventually(
        &format!("{ns}/{name} Ready with {count} current pods"),
        Duration::from_secs(120),
        || async move {
            let all = pods(c, ns, name).await;
            let settled = all.len() == count
                && all.iter().all(|p| {
                    p.metadata.deletion_timestamp.is_none() && aadb_e2e::pod_ready(p) && pod_ok(p)
                });
            if !settled {
                return None;
            }
            let db = get_db(c, ns, name).await?;
            let st = db.status.as_ref()?;
            let ready = condition(&db, "Ready").is_some_and(|c| c.status == "True");
            (ready && st.observed_generation == db.metadata.generation).then_some(())
        },
    )
    .await;
}

/// Whether the status says Ready for the object's current generation.
fn ready_for_generation(db: &ActiveActiveDatabase) -> bool {
    db.status
        .as_ref()
        .is_some_and(|st| st.observed_generation == db.metadata.generation)
        && condition(db, "Ready").is_some_and(|c| c.status == "True")
}

/// How many times an Event with `reason` was recorded about database `db` (repeats of an
/// Event are counted in its series), and the latest note.
async fn event_count(
    c: &aadb_e2e::LocalCluster,
    ns: &str,
    db: &str,
    reason: &str,
) -> (i32, Option<String>) {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client(), ns);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list events");
    let matching: Vec<_> = list
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(db))
        .collect();
    let count = matching
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    (count, matching.into_iter().last().and_then(|e| e.note))
}

/// How a StatefulSet's rollout is unfinished, if it is.
fn rollout_pending(sts: &StatefulSet) -> Option<String> {
    let want = sts.spec.replicas.unwrap_or(1);
    let st = sts.status.as_ref()?;
    let done = st.observed_generation == sts.metadata.generation
        && st.updated_replicas == Some(want)
        && st.ready_replicas == Some(want)
        && st.replicas == want;
    (!done).then(|| {
        format!(
            "is still rolling out (generation {:?} observed {:?}, {:?}/{want} updated, {:?} ready, revision {:?} -> {:?})",
            sts.metadata.generation,
            st.observed_generation,
            st.updated_replicas,
            st.ready_replicas,
            st.current_revision,
            st.update_revision
        )
    })
}

/// If the status says Ready for the object's current generation while a shard lists fewer
/// ready replicas than the spec asks for: the generation, the replicas asked for and listed.
fn ready_without_replicas(db: &ActiveActiveDatabase) -> Option<(Option<i64>, u32, Vec<usize>)> {
    if !ready_for_generation(db) {
        return None;
    }
    let st = db.status.as_ref()?;
    let want = db.spec.replicas_per_shard;
    let listed: Vec<usize> = st
        .participants
        .iter()
        .flat_map(|p| &p.shards)
        .map(|s| s.replicas.iter().filter(|r| r.ready).count())
        .collect();
    listed
        .iter()
        .any(|n| *n < want as usize)
        .then_some((st.observed_generation, want, listed))
}

#[test]
fn scaling_and_a_rolling_change_lose_no_acknowledged_write() {
    let _shared = shared();
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "lc-scaling").await;
        let _op = operator_for(h, "scaling", &ns, &[]);
        apply_db(c, &ns, sized_db(1, "10m")).await.expect("apply");
        wait_settled(c, &ns, "db", 2, |_| true).await;
        let addr = eventually("region endpoint", Duration::from_secs(30), || async {
            lb_address(c, &ns, "db-east").await
        })
        .await;

        let writer = Writer::start(&addr, Ack::Replica);
        let began = Instant::now();
        writer
            .more("acknowledged writes before any change", 20)
            .await;

        // Whenever the status claims Ready for the current generation, every shard has the
        // replicas that generation asks for.
        let watching = Arc::new(AtomicBool::new(true));
        let monitor = tokio::spawn({
            let watching = watching.clone();
            let ns = ns.clone();
            async move {
                use futures::StreamExt;
                use kube::runtime::{watcher, WatchStreamExt};
                let versions = watcher(
                    databases(&h.clusters[0], &ns),
                    watcher::Config::default().fields("metadata.name=db"),
                )
                .applied_objects();
                let mut versions = std::pin::pin!(versions);
                let statefulsets: Api<StatefulSet> = Api::namespaced(h.clusters[0].client(), &ns);
                let mut premature: Vec<String> = Vec::new();
                while watching.load(Ordering::Relaxed) {
                    let db = match tokio::time::timeout(Duration::from_millis(200), versions.next())
                        .await
                    {
                        Ok(Some(Ok(db))) => db,
                        Ok(Some(Err(_))) | Err(_) => continue,
                        Ok(None) => break,
                    };
                    if let Some((generation, want, listed)) = ready_without_replicas(&db) {
                        premature.push(format!(
                            "generation {generation:?} Ready listing {listed:?} ready replicas, spec asks {want}"
                        ));
                    }
                    if !ready_for_generation(&db) {
                        continue;
                    }
                    // The StatefulSet was changed before this status was written, so a rollout
                    // still pending now was pending when the status claimed Ready.
                    if let Ok(sts) = statefulsets.get("db-east-0").await {
                        if let Some(pending) = rollout_pending(&sts) {
                            premature.push(format!(
                                "generation {:?} Ready while StatefulSet db-east-0 {pending}",
                                db.metadata.generation
                            ));
                        }
                    }
                }
                premature
            }
        });

        // Each change: wait for Ready with the new generation observed (what `kubectl wait`
        // does), note whether the pods matched the spec by then, then wait until they do.
        let mut phases: Vec<(&str, Instant, Instant)> = Vec::new();
        let mut ready_early: Vec<String> = Vec::new();
        let changes = [
            ("replicasPerShard 1 -> 2", 2, "10m", 3),
            ("replicasPerShard 2 -> 1", 1, "10m", 2),
            ("cpu request 10m -> 20m (rolls every pod)", 1, "20m", 2),
        ];
        let mut roll_events = None;
        for (what, replicas, cpu, pod_count) in changes {
            if what.starts_with("cpu") {
                roll_events = Some((
                    event_count(c, &ns, "db", "FailedOver").await.0,
                    event_count(c, &ns, "db", "SwitchedOver").await.0,
                ));
            }
            let t = Instant::now();
            apply_db(c, &ns, sized_db(replicas, cpu)).await.expect(what);
            wait_ready(c, &ns, "db", Duration::from_secs(120)).await;
            let current = live_pods(c, &ns, "db")
                .await
                .iter()
                .filter(|p| aadb_e2e::pod_ready(p) && cpu_request(p).as_deref() == Some(cpu))
                .count();
            if current < pod_count {
                ready_early.push(format!(
                    "{what}: Ready for the new generation with {current} of {pod_count} pods ready and current"
                ));
            }
            wait_settled(c, &ns, "db", pod_count, |p| {
                cpu_request(p).as_deref() == Some(cpu)
            })
            .await;
            phases.push((what, t, Instant::now()));
        }

        // The roll replaced the primary's pod after handing its role over, not by failing over.
        let (failed_over_before, switched_before) = roll_events.expect("the cpu change ran");
        let failed_over = event_count(c, &ns, "db", "FailedOver").await;
        let switched = event_count(c, &ns, "db", "SwitchedOver").await;
        assert_eq!(
            failed_over.0, failed_over_before,
            "the roll failed over instead of switching over: {failed_over:?}"
        );
        assert!(
            switched.0 > switched_before,
            "no SwitchedOver Event for the roll of the primary ({switched:?})"
        );
        eprintln!("switchover: {:?}", switched.1);

        writer
            .more("acknowledged writes after the changes", 20)
            .await;
        let log = writer.finish().await;
        let ended = Instant::now();

        watching.store(false, Ordering::Relaxed);
        let premature = monitor.await.expect("status monitor");
        assert!(
            log.acknowledged.len() > 20,
            "too few acknowledged writes: {}",
            log.acknowledged.len()
        );
        for (what, from, to) in &phases {
            eprintln!(
                "{what}: {:.1}s to settle, writes unavailable for at most {:.2}s",
                to.duration_since(*from).as_secs_f64(),
                longest_gap(&log, *from, *to).as_secs_f64()
            );
        }
        eprintln!(
            "{} writes acknowledged, {} not acknowledged by a replica, {} errors over {:.1}s; longest gap {:.2}s",
            log.acknowledged.len(),
            log.unacknowledged,
            log.errors,
            ended.duration_since(began).as_secs_f64(),
            longest_gap(&log, began, ended).as_secs_f64()
        );

        // Every acknowledged write is readable through the region endpoint.
        let lost = lost_writes(&addr, &log).await;
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost, first: {:?}",
            lost.len(),
            log.acknowledged.len(),
            &lost[..lost.len().min(10)]
        );
        // Ready for generation N means generation N is carried out.
        assert!(
            premature.is_empty() && ready_early.is_empty(),
            "Ready reported before the change was carried out: {ready_early:?}; \
             status versions Ready for their generation too early: {premature:?}"
        );
        let db = get_db(c, &ns, "db").await.expect("database");
        let shard = &db.status.expect("status").participants[0].shards[0];
        assert_eq!(shard.replicas.len(), 1, "{shard:?}");
        assert_eq!(live_pods(c, &ns, "db").await.len(), 2);
        delete_and_wait_gone(c, &ns, "db", Duration::from_secs(60)).await;
    });
}

#[test]
fn a_primary_whose_pod_goes_hands_over_without_losing_a_write_it_answered() {
    let _shared = shared();
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "lc-handover").await;
        let _op = operator_for(h, "handover", &ns, &[]);
        apply_db(c, &ns, sized_db(1, "10m")).await.expect("apply");
        wait_settled(c, &ns, "db", 2, |_| true).await;
        // Pods that start at different times may see a failover before the shard first
        // settles; from here on, every change of primary must be a hand-over.
        let failed_over_at_start = event_count(c, &ns, "db", "FailedOver").await;
        let first_primary = primary_pod(c, &ns, "db").await.expect("one primary");
        let addr = eventually("region endpoint", Duration::from_secs(30), || async {
            lb_address(c, &ns, "db-east").await
        })
        .await;
        // Writes count as soon as the primary answers OK: a planned hand-over holds writes
        // until the new primary has everything, so none of them may be lost.
        let writer = Writer::start(&addr, Ack::Primary);
        writer.more("writes before the changes", 50).await;

        // A roll replaces the replica, then hands the primary role to it and replaces the old
        // primary's pod: the role moves to the other pod. Roll until pod 1 is the primary
        // (pod 0 or 1 may have been elected first).
        let mut primary = first_primary;
        let mut rolls: Vec<(Instant, Instant)> = Vec::new();
        while primary != "db-east-0-1" || rolls.is_empty() {
            let cpu = format!("{}m", 10 * (rolls.len() + 2));
            let t = Instant::now();
            apply_db(c, &ns, sized_db(1, &cpu))
                .await
                .expect("cpu change");
            wait_settled(c, &ns, "db", 2, |p| {
                cpu_request(p).as_deref() == Some(cpu.as_str())
            })
            .await;
            rolls.push((t, Instant::now()));
            let now_primary = primary_pod(c, &ns, "db").await.expect("one primary");
            assert_ne!(
                now_primary, primary,
                "the roll hands the primary role to the replica"
            );
            primary = now_primary;
            writer.more("writes after the roll", 50).await;
        }

        // Dropping the replicas removes pod 1, the primary now: it hands over to pod 0 first.
        let cpu = format!("{}m", 10 * (rolls.len() + 1));
        let t = Instant::now();
        apply_db(c, &ns, sized_db(0, &cpu))
            .await
            .expect("scale down");
        wait_settled(c, &ns, "db", 1, |_| true).await;
        let scaled = Instant::now();
        assert_eq!(
            primary_pod(c, &ns, "db").await.as_deref(),
            Some("db-east-0-0")
        );
        writer.more("writes after scaling down", 50).await;
        let log = writer.finish().await;

        let switched = event_count(c, &ns, "db", "SwitchedOver").await;
        let failed_over = event_count(c, &ns, "db", "FailedOver").await;
        let roll_gaps: Vec<String> = rolls
            .iter()
            .map(|(from, to)| format!("{:.2}s", longest_gap(&log, *from, *to).as_secs_f64()))
            .collect();
        eprintln!(
            "{} writes answered OK, {} errors; longest gap: rolls {roll_gaps:?}, scale-down {:.2}s; {switched:?}",
            log.acknowledged.len(),
            log.errors,
            longest_gap(&log, t, scaled).as_secs_f64()
        );
        assert_eq!(
            failed_over.0, failed_over_at_start.0,
            "failed over during the rolls: {failed_over:?}"
        );
        assert_eq!(switched.0, rolls.len() as i32 + 1, "{switched:?}");
        let lost = lost_writes(&addr, &log).await;
        assert!(
            lost.is_empty(),
            "{} of {} writes answered OK were lost, first: {:?}",
            lost.len(),
            log.acknowledged.len(),
            &lost[..lost.len().min(10)]
        );
        delete_and_wait_gone(c, &ns, "db", Duration::from_secs(60)).await;
    });
}

#[test]
fn an_operator_killed_mid_reconcile_is_replaced_and_cleanup_still_completes() {
    let _shared = shared();
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "lc-restart").await;
        let mut first = operator_for(h, "restart-1", &ns, &[]);
        apply_db(
            c,
            &ns,
            database(
                "db",
                serde_json::json!({"shards": 2, "replicasPerShard": 1}),
            ),
        )
        .await
        .expect("apply");
        let sts: Api<StatefulSet> = Api::namespaced(c.client(), &ns);
        let first_created = tokio::time::timeout(Duration::from_secs(60), async {
            use futures::StreamExt;
            use kube::runtime::{watcher, WatchStreamExt};
            let mut created =
                std::pin::pin!(watcher(sts.clone(), watcher::Config::default()).applied_objects());
            while let Some(event) = created.next().await {
                if let Ok(o) = event {
                    return Some(o.metadata.name.unwrap_or_default());
                }
            }
            None
        })
        .await;
        first.kill();
        let first_created = first_created
            .ok()
            .flatten()
            .expect("a StatefulSet is created within 60s");
        let created = sts
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len();
        eprintln!("killed the operator on seeing StatefulSet {first_created}");
        let db = get_db(c, &ns, "db").await.expect("database");
        eprintln!(
            "operator killed with {created} StatefulSet(s) created, status {:?}",
            db.status.as_ref().and_then(|s| s.phase.as_deref())
        );
        assert!(
            db.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == "aadb.dev/cleanup")),
            "finalizer added before the first object"
        );

        let restarted = Instant::now();
        let _second = operator_for(h, "restart-2", &ns, &[]);
        let db = wait_ready(c, &ns, "db", Duration::from_secs(120)).await;
        eprintln!(
            "new operator converged to Ready in {:.1}s",
            restarted.elapsed().as_secs_f64()
        );
        let st = db.status.expect("status");
        assert_eq!(st.ready_shards.as_deref(), Some("2/2"));
        assert_eq!(
            object_counts(c, &ns, "db").await,
            // 2 StatefulSets; per shard a primary and a headless Service, plus the region
            // endpoint; a PDB per shard and one for the proxies; a claim per shard-node pod;
            // 4 shard-node pods and 2 proxies.
            Some([2, 5, 3, 4, 6])
        );
        delete_and_wait_gone(c, &ns, "db", Duration::from_secs(90)).await;
    });
}

/// Whether an operator's /metrics says it leads (the sample line, not its HELP text).
fn leads(metrics: &str) -> bool {
    metrics.lines().any(|l| l == "aadb_operator_leader 1")
}

#[test]
fn leader_election_hands_over_to_the_standby_replica() {
    let _shared = shared();
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "lc-leader").await;
        let election = ["--leader-election", "--lease-namespace", "default"];
        let mut replicas = vec![
            operator_for(h, "leader-a", &ns, &election),
            operator_for(h, "leader-b", &ns, &election),
        ];
        let tags = ["leader-a", "leader-b"];
        let leader = eventually(
            "exactly one operator leading",
            Duration::from_secs(30),
            || async {
                let mut leading = Vec::new();
                for (i, op) in replicas.iter().enumerate() {
                    let (code, metrics) = op.http("/metrics").await?;
                    if code != 200 {
                        return None;
                    }
                    if leads(&metrics) {
                        leading.push(i);
                    }
                }
                (leading.len() == 1).then(|| leading[0])
            },
        )
        .await;
        let standby = 1 - leader;
        eprintln!("{} leads", tags[leader]);
        let lease: Api<Lease> = Api::namespaced(c.client(), "default");
        let holder = lease
            .get("aadb-operator")
            .await
            .expect("Lease")
            .spec
            .and_then(|s| s.holder_identity);
        assert_eq!(holder.as_deref(), Some(tags[leader]));
        // Both are live and ready: a standby that never became Ready would stall the
        // Deployment's rollouts.
        for op in &replicas {
            let (code, body) = op.http("/healthz").await.expect("healthz");
            assert_eq!(code, 200, "{body}");
            let (code, body) = op.http("/readyz").await.expect("readyz");
            assert_eq!(code, 200, "{body}");
        }
        let (_, metrics) = replicas[standby].http("/metrics").await.expect("metrics");
        assert!(
            metrics.lines().any(|l| l == "aadb_operator_leader 0"),
            "standby metrics: {metrics}"
        );

        apply_db(
            c,
            &ns,
            database("first", serde_json::json!({"replicasPerShard": 0})),
        )
        .await
        .expect("apply");
        wait_ready(c, &ns, "first", Duration::from_secs(90)).await;
        let (code, metrics) = replicas[leader].http("/metrics").await.expect("metrics");
        assert_eq!(code, 200);
        assert!(leads(&metrics), "{metrics}");
        for needle in ["aadb_operator_reconciles_total{", "database=\"first\""] {
            assert!(metrics.contains(needle), "{needle:?} not in {metrics}");
        }

        replicas[leader].kill();
        let killed = Instant::now();
        eventually(
            "the standby takes over",
            Duration::from_secs(15 + 10),
            || async {
                let (_, metrics) = replicas[standby].http("/metrics").await?;
                leads(&metrics).then_some(())
            },
        )
        .await;
        eprintln!(
            "{} took over {:.1}s after the leader was killed",
            tags[standby],
            killed.elapsed().as_secs_f64()
        );
        let holder = lease
            .get("aadb-operator")
            .await
            .expect("Lease")
            .spec
            .and_then(|s| s.holder_identity);
        assert_eq!(holder.as_deref(), Some(tags[standby]));
        apply_db(
            c,
            &ns,
            database("second", serde_json::json!({"replicasPerShard": 0})),
        )
        .await
        .expect("apply");
        wait_ready(c, &ns, "second", Duration::from_secs(90)).await;
        wait_ready(c, &ns, "first", Duration::from_secs(30)).await;
        let (_, metrics) = replicas[standby].http("/metrics").await.expect("metrics");
        assert!(leads(&metrics), "{metrics}");
        tokio::join!(
            delete_and_wait_gone(c, &ns, "first", Duration::from_secs(60)),
            delete_and_wait_gone(c, &ns, "second", Duration::from_secs(60)),
        );
        replicas.clear();
    });
}
