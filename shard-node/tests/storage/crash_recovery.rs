//! Durability of acknowledged writes across crashes and restarts.
//!
//! - With `--appendfsync always`, every write the server acknowledged before a `kill -9`
//!   is there after a restart, and nothing appears that was never sent.
//! - Garbage appended to the newest effect log (a torn tail) is dropped at recovery: the
//!   server starts, holds exactly the state it had, and keeps accepting durable writes.
//! - With `--appendfsync no`, a SIGTERM shutdown still persists every acknowledged write.
//! - With `--appendfsync always`, concurrent connections share fsyncs (group commit).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{connect_async, NodeBuilder, ShardNode, XorShift};
use redis::AsyncCommands;

const CLIENTS: usize = 8;
const COUNTERS: usize = 3;
const SETS: usize = 2;
/// How long the clients write before the crash.
const WORKLOAD: Duration = Duration::from_secs(2);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn counter_key(i: usize) -> String {
    format!("counter:{i}")
}

fn set_key(i: usize) -> String {
    format!("set:{i}")
}

/// What one client saw: acknowledged and unanswered operations.
#[derive(Default, Debug)]
struct Tally {
    incr_acked: [u64; COUNTERS],
    incr_max_reply: [i64; COUNTERS],
    incr_in_flight: [u64; COUNTERS],
    sadd_acked: Vec<(usize, String)>,
    sadd_in_flight: Vec<(usize, String)>,
    /// Errors or odd replies before the crash: each one is a failure.
    unexpected: Vec<String>,
}

/// Writes INCRs and SADDs of unique members until an error after `crashed` is set.
async fn client(url: String, id: usize, crashed: Arc<AtomicBool>) -> Tally {
    let mut con = connect_async(&url).await;
    let mut t = Tally::default();
    for n in 0usize.. {
        if n % 2 == 0 {
            let c = (n / 2 + id) % COUNTERS;
            match con.incr::<_, _, i64>(counter_key(c), 1).await {
                Ok(v) => {
                    t.incr_acked[c] += 1;
                    t.incr_max_reply[c] = t.incr_max_reply[c].max(v);
                }
                Err(e) => {
                    t.incr_in_flight[c] += 1;
                    if !crashed.load(Ordering::SeqCst) {
                        t.unexpected
                            .push(format!("client {id}: INCR before the crash: {e}"));
                    }
                    return t;
                }
            }
        } else {
            let s = (n / 2 + id) % SETS;
            let member = format!("m-{id}-{n}");
            match con.sadd::<_, _, i64>(set_key(s), &member).await {
                Ok(1) => t.sadd_acked.push((s, member)),
                Ok(other) => {
                    t.unexpected
                        .push(format!("client {id}: SADD of a new member replied {other}"));
                    return t;
                }
                Err(e) => {
                    t.sadd_in_flight.push((s, member));
                    if !crashed.load(Ordering::SeqCst) {
                        t.unexpected
                            .push(format!("client {id}: SADD before the crash: {e}"));
                    }
                    return t;
                }
            }
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Observable state of the keys the workload touches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    counters: [i64; COUNTERS],
    sets: Vec<BTreeSet<String>>,
}

fn read_state(rt: &tokio::runtime::Runtime, node: &ShardNode) -> State {
    rt.block_on(async {
        let mut con = connect_async(&node.url()).await;
        let mut counters = [0i64; COUNTERS];
        for (i, c) in counters.iter_mut().enumerate() {
            let v: Option<i64> = con.get(counter_key(i)).await.expect("GET counter");
            *c = v.unwrap_or(0);
        }
        let mut sets = Vec::new();
        for i in 0..SETS {
            let m: BTreeSet<String> = con.smembers(set_key(i)).await.expect("SMEMBERS");
            sets.push(m);
        }
        State { counters, sets }
    })
}

/// Every acknowledged write is present; nothing is present that was not sent.
fn check_against_tallies(state: &State, tallies: &[Tally]) {
    for c in 0..COUNTERS {
        let acked: u64 = tallies.iter().map(|t| t.incr_acked[c]).sum();
        let in_flight: u64 = tallies.iter().map(|t| t.incr_in_flight[c]).sum();
        let max_reply = tallies
            .iter()
            .map(|t| t.incr_max_reply[c])
            .max()
            .unwrap_or(0);
        let v = state.counters[c];
        assert!(
            v >= acked as i64 && v >= max_reply,
            "{}: {v} after recovery, but {acked} INCRs were acknowledged (highest reply \
             {max_reply}): acknowledged writes were lost",
            counter_key(c)
        );
        assert!(
            v <= (acked + in_flight) as i64,
            "{}: {v} after recovery, more than {acked} acknowledged + {in_flight} in flight",
            counter_key(c)
        );
    }
    let mut sent: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); SETS];
    for t in tallies {
        for (s, m) in &t.sadd_acked {
            assert!(
                state.sets[*s].contains(m),
                "{}: acknowledged member {m} lost in the crash",
                set_key(*s)
            );
            sent[*s].insert(m);
        }
        for (s, m) in &t.sadd_in_flight {
            sent[*s].insert(m);
        }
    }
    for (s, members) in state.sets.iter().enumerate() {
        for m in members {
            assert!(
                sent[s].contains(m.as_str()),
                "{}: member {m} was never sent",
                set_key(s)
            );
        }
    }
}

/// The effect log with the highest sequence number (`effects.<seq>.log`), searched
/// recursively under `dir`.
fn newest_effect_log(dir: &Path) -> PathBuf {
    fn walk(dir: &Path, found: &mut Vec<(u64, PathBuf)>, all: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            all.push(p.display().to_string());
            if p.is_dir() {
                walk(&p, found, all);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name
                .strip_prefix("effects.")
                .and_then(|r| r.strip_suffix(".log"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                found.push((seq, p));
            }
        }
    }
    let mut found = Vec::new();
    let mut all = Vec::new();
    walk(dir, &mut found, &mut all);
    found.sort();
    match found.pop() {
        Some((_, p)) => p,
        None => panic!(
            "no effects.<seq>.log under {}; files there: {all:?}",
            dir.display()
        ),
    }
}

fn append_garbage(path: &Path, seed: u64) {
    let mut rng = XorShift::new(seed);
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(&rng.bytes(4096)).expect("append garbage");
    f.sync_all().expect("sync garbage");
}

#[test]
fn acknowledged_writes_survive_kill_9_and_a_torn_log_tail() {
    let rt = runtime();
    let mut node = NodeBuilder::new().appendfsync("always").start();

    // Phase 1: concurrent writers, then SIGKILL while they are still writing.
    let crashed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|id| rt.spawn(client(node.url(), id, crashed.clone())))
        .collect();
    std::thread::sleep(WORKLOAD);
    crashed.store(true, Ordering::SeqCst);
    node.kill9();
    let tallies: Vec<Tally> = rt.block_on(async {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("client task"));
        }
        out
    });
    let unexpected: Vec<&String> = tallies.iter().flat_map(|t| &t.unexpected).collect();
    assert!(
        unexpected.is_empty(),
        "errors before the crash: {unexpected:?}"
    );
    let acked_incrs: u64 = tallies.iter().flat_map(|t| t.incr_acked).sum();
    let acked_sadds: usize = tallies.iter().map(|t| t.sadd_acked.len()).sum();
    eprintln!("acknowledged before the crash: {acked_incrs} INCR, {acked_sadds} SADD");
    assert!(
        acked_incrs >= 10 && acked_sadds >= 10,
        "too few acknowledged writes to test anything ({acked_incrs} INCR, {acked_sadds} SADD)"
    );

    node.restart();
    let recovered = read_state(&rt, &node);
    check_against_tallies(&recovered, &tallies);

    // Phase 2: a torn tail on the newest log is dropped; the state is exactly the same.
    node.kill9();
    let log = newest_effect_log(node.data_dir());
    append_garbage(&log, 0x5EED_0001);
    node.restart();
    assert_eq!(
        read_state(&rt, &node),
        recovered,
        "state changed after garbage was appended to {}",
        log.display()
    );

    // Phase 3: new writes after that recovery are durable too.
    const MORE: i64 = 25;
    rt.block_on(async {
        let mut con = connect_async(&node.url()).await;
        for i in 0..MORE {
            let _: i64 = con
                .incr(counter_key(0), 1)
                .await
                .expect("INCR after recovery");
            let added: i64 = con
                .sadd(set_key(0), format!("after-{i}"))
                .await
                .expect("SADD after recovery");
            assert_eq!(added, 1);
        }
        let _: () = con.set("fresh", "value").await.expect("SET after recovery");
    });
    node.kill9();
    node.restart();
    let after = read_state(&rt, &node);
    assert_eq!(after.counters[0], recovered.counters[0] + MORE);
    assert_eq!(after.counters[1..], recovered.counters[1..]);
    for i in 0..MORE {
        assert!(after.sets[0].contains(&format!("after-{i}")));
    }
    assert_eq!(after.sets[0].len(), recovered.sets[0].len() + MORE as usize);
    assert_eq!(after.sets[1], recovered.sets[1]);
    let fresh: Option<String> = rt.block_on(async {
        let mut con = connect_async(&node.url()).await;
        con.get("fresh").await.expect("GET fresh")
    });
    assert_eq!(fresh.as_deref(), Some("value"));

    // Phase 4: a second torn tail, on a log that now holds post-recovery writes.
    node.kill9();
    append_garbage(&newest_effect_log(node.data_dir()), 0x5EED_0002);
    node.restart();
    assert_eq!(read_state(&rt, &node), after);
}

#[test]
fn sigterm_persists_acknowledged_writes_without_fsync() {
    const PER_CLIENT: usize = 300;
    let rt = runtime();
    let mut node = NodeBuilder::new().appendfsync("no").start();

    let url = node.url();
    let acked: Vec<BTreeMap<String, String>> = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let url = url.clone();
                tokio::spawn(async move {
                    let mut con = connect_async(&url).await;
                    let mut written = BTreeMap::new();
                    for n in 0..PER_CLIENT {
                        let (k, v) = (format!("key:{id}:{n}"), format!("value-{id}-{n}"));
                        let _: () = con.set(&k, &v).await.expect("SET");
                        let _: i64 = con.incr("total", 1).await.expect("INCR");
                        let _: i64 = con.sadd("members", &k).await.expect("SADD");
                        written.insert(k, v);
                    }
                    written
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });

    let status = node.terminate();
    assert!(
        status.success(),
        "shard-node exited with {status} on SIGTERM"
    );
    node.restart();

    rt.block_on(async {
        let mut con = connect_async(&node.url()).await;
        for written in &acked {
            for (k, v) in written {
                let got: Option<String> = con.get(k).await.expect("GET");
                assert_eq!(
                    got.as_deref(),
                    Some(v.as_str()),
                    "{k} after SIGTERM restart"
                );
            }
        }
        let total: i64 = con.get("total").await.expect("GET total");
        assert_eq!(total, (CLIENTS * PER_CLIENT) as i64);
        let members: i64 = con.scard("members").await.expect("SCARD");
        assert_eq!(members, (CLIENTS * PER_CLIENT) as i64);
    });
}

#[test]
fn concurrent_writers_share_fsyncs_with_appendfsync_always() {
    // Group commit: batches of different connections wait for one fsync together, so many
    // concurrent writers need far fewer fsyncs than writes, and every write still counts.
    const WRITERS: usize = 32;
    const PER_WRITER: usize = 100;
    let rt = runtime();
    let node = NodeBuilder::new().appendfsync("always").start();
    rt.block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let url = node.url();
                tokio::spawn(async move {
                    let mut con = connect_async(&url).await;
                    for _ in 0..PER_WRITER {
                        let _: i64 = con.incr("total", 1).await.expect("INCR");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer task");
        }
        let mut con = connect_async(&node.url()).await;
        let total: i64 = con.get("total").await.expect("GET total");
        assert_eq!(total, (WRITERS * PER_WRITER) as i64);
        // INFO's fsync count is refreshed every 100 ms: read it until it stops moving.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut last = None;
        let fsyncs = loop {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut con)
                .await
                .expect("INFO");
            let count: u64 = crate::common::info_field(info.as_bytes(), "aof_fsync_count")
                .and_then(|v| v.parse().ok())
                .expect("aof_fsync_count in INFO persistence");
            if last == Some(count) {
                break count;
            }
            assert!(std::time::Instant::now() < deadline, "the fsync count keeps moving");
            last = Some(count);
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let writes = (WRITERS * PER_WRITER) as u64;
        assert!(
            fsyncs <= writes / 2,
            "{fsyncs} fsyncs for {writes} writes from {WRITERS} connections: batches did not share them"
        );
        eprintln!("{writes} writes from {WRITERS} connections took {fsyncs} fsyncs");
    });
}
