//! Failover with real processes on loopback.
//!
//! - Acknowledged writes survive: a load of writes, each followed by `WAIT 1 1000`, runs while
//!   the primary is killed with SIGKILL; the replica is promoted with `REPLICAOF NO ONE`. Every
//!   write whose `WAIT` returned at least 1 is on the new primary, and counters count every
//!   increment that arrived exactly once (see `check_counts`). The old primary, restarted as a
//!   replica of the new one, hands over what it acknowledged and the new primary lacked: both
//!   converge to the same digest with every transaction the old primary answered, counted once,
//!   and nothing deleted after the failover comes back.
//! - Effects of a dead primary that reached a peer come back to the promoted replica through
//!   that peer, and the old primary, restarted with its old configuration, learns of the newer
//!   epoch from the peer and stops taking writes (fencing); a write it acknowledged before that
//!   is handed over when it is re-pointed.

use crate::common::{info_field, NodeBuilder, ShardNode};
use crate::replication_support;
use crate::replication_support::{poll_ok, Client, Cluster, Link, Reply};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LINK_UP: Duration = Duration::from_secs(20);

/// What the writer saw: every operation it sent and the ones `WAIT` confirmed.
#[derive(Default, Debug)]
struct Record {
    /// Transactions sent (`MULTI; INCR ctr; SADD applied i; SET w:i i; EXEC`), i = 0…n-1; the
    /// last one may have been cut off by the kill.
    tx_sent: usize,
    /// Transactions whose `EXEC` answered and whose `WAIT 1 1000` returned at least 1.
    tx_acked: Vec<usize>,
    /// Transactions whose `EXEC` answered (the primary acknowledged them).
    tx_answered: Vec<usize>,
    /// The greatest reply of an answered `INCR plain`.
    incr_answered: i64,
    /// Plain `INCR plain` commands sent.
    incr_sent: usize,
    /// Replies of the `INCR plain` commands whose `WAIT` returned at least 1.
    incr_acked: Vec<i64>,
    /// Operations whose `WAIT` returned 0 (timed out).
    unacked: usize,
}

fn wait_acked(reply: Option<&Reply>) -> bool {
    reply.and_then(Reply::int).is_some_and(|n| n >= 1)
}

/// Writes until the connection fails (the primary was killed).
fn load(port: u16, progress: Arc<AtomicUsize>) -> Record {
    let mut c = Client::new(port, None);
    let mut rec = Record::default();
    for i in 0usize.. {
        let i_s = i.to_string();
        rec.tx_sent += 1;
        let tx = c.pipeline(&[
            vec![b"MULTI".to_vec()],
            vec![b"INCR".to_vec(), b"ctr".to_vec()],
            vec![
                b"SADD".to_vec(),
                b"applied".to_vec(),
                i_s.clone().into_bytes(),
            ],
            vec![
                b"SET".to_vec(),
                format!("w:{i}").into_bytes(),
                i_s.clone().into_bytes(),
            ],
            vec![b"EXEC".to_vec()],
            vec![b"WAIT".to_vec(), b"1".to_vec(), b"1000".to_vec()],
        ]);
        let Ok(tx) = tx else { break };
        let exec = &tx[4];
        assert!(
            matches!(exec, Reply::Array(items) if items.len() == 3),
            "EXEC of transaction {i}: {}",
            exec.text()
        );
        rec.tx_answered.push(i);
        if wait_acked(tx.get(5)) {
            rec.tx_acked.push(i);
        } else {
            rec.unacked += 1;
        }
        rec.incr_sent += 1;
        let Ok(r) = c.pipeline(&[
            vec![b"INCR".to_vec(), b"plain".to_vec()],
            vec![b"WAIT".to_vec(), b"1".to_vec(), b"1000".to_vec()],
        ]) else {
            break;
        };
        let value = r[0]
            .int()
            .unwrap_or_else(|| panic!("INCR plain: {}", r[0].text()));
        rec.incr_answered = rec.incr_answered.max(value);
        if wait_acked(r.get(1)) {
            rec.incr_acked.push(value);
        } else {
            rec.unacked += 1;
        }
        progress.store(rec.tx_acked.len(), Ordering::SeqCst);
    }
    rec
}

fn int_of(c: &mut Client, args: &[&str]) -> i64 {
    let r = c.q(args);
    r.int()
        .unwrap_or_else(|| panic!("`{}`: {}", args.join(" "), r.text()))
}

/// The counting check, on the new primary:
/// - every acknowledged transaction is there (its marker in `applied` and its key `w:i`);
/// - `ctr` equals the number of transactions that arrived (`SCARD applied`): each increment
///   that arrived is counted once, never twice, and none that did not arrive is counted;
/// - only transactions that were sent arrived;
/// - `plain` is at least the value the last acknowledged `INCR plain` returned (all the
///   increments before it were acknowledged with it) and at most the increments sent.
fn check_counts(c: &mut Client, rec: &Record) {
    let applied: BTreeSet<usize> = c
        .q(&["SMEMBERS", "applied"])
        .items()
        .iter()
        .map(|m| {
            m.text()
                .parse()
                .unwrap_or_else(|_| panic!("member {}", m.text()))
        })
        .collect();
    let missing: Vec<usize> = rec
        .tx_acked
        .iter()
        .copied()
        .filter(|i| !applied.contains(i))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged transactions lost in the failover: {missing:?}"
    );
    for i in &rec.tx_acked {
        assert_eq!(
            c.q(&["GET", &format!("w:{i}")]).text(),
            i.to_string(),
            "acknowledged write w:{i}"
        );
    }
    assert!(
        applied.iter().all(|i| *i < rec.tx_sent),
        "a transaction that was never sent arrived: {applied:?} (sent {})",
        rec.tx_sent
    );
    let ctr = int_of(c, &["GET", "ctr"]);
    assert_eq!(
        ctr,
        applied.len() as i64,
        "ctr must count each transaction that arrived exactly once"
    );
    assert!(ctr >= rec.tx_acked.len() as i64);
    let plain = int_of(c, &["GET", "plain"]);
    let last_acked = rec.incr_acked.last().copied().unwrap_or(0);
    assert!(
        plain >= last_acked,
        "plain = {plain}, but an INCR that returned {last_acked} was acknowledged"
    );
    assert!(
        plain <= rec.incr_sent as i64,
        "plain = {plain} counts more increments than the {} sent",
        rec.incr_sent
    );
}

fn role_name(c: &mut Client) -> String {
    c.q(&["ROLE"])
        .items()
        .first()
        .map(Reply::text)
        .unwrap_or_default()
}

#[test]
fn acknowledged_writes_survive_a_failover_and_nothing_is_resurrected() {
    let started = Instant::now();
    let mut old = NodeBuilder::new().participant("A").start();
    let new = NodeBuilder::new()
        .participant("A")
        .arg("--replicaof")
        .arg(format!("127.0.0.1:{}", old.port()))
        .start();
    let mut cn = Client::new(new.port(), None);
    poll_ok(LINK_UP, || {
        let info = cn.info("replication")?;
        match info_field(info.as_bytes(), "master_link_status").as_deref() {
            Some("up") => Ok(()),
            other => Err(format!("master_link_status {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let progress = progress.clone();
        let port = old.port();
        std::thread::spawn(move || load(port, progress))
    };
    poll_ok(Duration::from_secs(60), || {
        match progress.load(Ordering::SeqCst) {
            n if n >= 300 => Ok(()),
            n => Err(format!("{n} acknowledged transactions")),
        }
    })
    .unwrap_or_else(|e| panic!("the load did not get going: {e}"));
    old.kill9();
    let rec = writer.join().expect("writer thread");
    eprintln!(
        "writer: {} transactions sent, {} acknowledged; {} INCR sent, {} acknowledged; {} WAIT timeouts",
        rec.tx_sent,
        rec.tx_acked.len(),
        rec.incr_sent,
        rec.incr_acked.len(),
        rec.unacked
    );

    assert_eq!(cn.q(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
    assert_eq!(role_name(&mut cn), "master");
    check_counts(&mut cn, &rec);

    // Life goes on on the new primary: a delete of acknowledged data and new writes.
    let victim = format!("w:{}", rec.tx_acked[0]);
    assert_eq!(cn.q(&["DEL", &victim]).text(), "1");
    assert_eq!(
        cn.q(&["SREM", "applied", &rec.tx_acked[0].to_string()])
            .text(),
        "1"
    );
    assert_eq!(cn.q(&["SET", "after", "failover"]).text(), "OK");
    let ctr_before = int_of(&mut cn, &["GET", "ctr"]);
    assert_eq!(
        int_of(&mut cn, &["INCR", "ctr"]),
        ctr_before + 1,
        "the new primary increments on top"
    );

    // The old primary comes back as a replica of the new one.
    old.set_extra_args(vec![
        "--replicaof".into(),
        format!("127.0.0.1:{}", new.port()),
    ]);
    old.restart();
    let mut co = Client::new(old.port(), None);
    let digest = |c: &mut Client| -> Result<String, String> {
        c.call(&["AA.DIGEST"])?
            .string()
            .ok_or_else(|| "no digest".to_owned())
    };
    poll_ok(LINK_UP, || {
        let (a, b) = (digest(&mut co)?, digest(&mut cn)?);
        if a == b {
            Ok(())
        } else {
            Err(format!("old primary {a}, new primary {b}"))
        }
    })
    .unwrap_or_else(|e| panic!("the old primary did not converge: {e}"));
    // The old primary handed over what it had acknowledged and the new primary had not
    // received: now every transaction the old primary answered is there, counted once.
    for c in [&mut co, &mut cn] {
        assert_eq!(c.q(&["EXISTS", &victim]).text(), "0", "{victim} came back");
        assert_eq!(c.q(&["GET", "after"]).text(), "failover");
        let applied: BTreeSet<usize> = c
            .q(&["SMEMBERS", "applied"])
            .items()
            .iter()
            .filter_map(|m| m.text().parse().ok())
            .collect();
        let missing: Vec<usize> = rec
            .tx_answered
            .iter()
            .copied()
            .filter(|i| *i != rec.tx_acked[0] && !applied.contains(i))
            .collect();
        assert!(
            missing.is_empty(),
            "transactions the old primary answered are missing after it rejoined: {missing:?}"
        );
        // Each transaction that arrived counted once, plus the one removed marker and the
        // increment made after the failover.
        assert_eq!(int_of(c, &["GET", "ctr"]), applied.len() as i64 + 2);
        assert!(int_of(c, &["GET", "plain"]) >= rec.incr_answered);
    }
    assert_eq!(role_name(&mut co), "slave");
    assert_eq!(
        co.q(&["SET", "x", "y"]).text(),
        "-READONLY You can't write against a read only replica."
    );
    // Later writes keep flowing to the rejoined node.
    assert_eq!(cn.q(&["SET", "later", "1"]).text(), "OK");
    assert_eq!(cn.q(&["WAIT", "1", "5000"]).text(), "1");
    assert_eq!(co.q(&["GET", "later"]).text(), "1");
    assert_eq!(co.q(&["EXISTS", &victim]).text(), "0");
    eprintln!("failover test took {:?}", started.elapsed());
}

/// Waits until `c` answers `GET key` with `want`.
fn wait_value(c: &mut Client, key: &str, want: &str) -> Result<(), String> {
    poll_ok(LINK_UP, || match c.call(&["GET", key])?.text() {
        v if v == want => Ok(()),
        v => Err(format!("GET {key} = {v}, want {want}")),
    })
}

#[test]
fn effects_of_a_dead_primary_come_back_through_a_peer_and_the_old_primary_is_fenced() {
    const A: usize = 0;
    const B: usize = 1;
    let mut c = Cluster::start(&["A", "B"], &[1, 0]);
    c.wait_links_up(LINK_UP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.q((A, 0), &["SET", "base", "1"]).text(), "OK");
    c.converge(LINK_UP).unwrap_or_else(|e| panic!("{e}"));

    // The replica stops hearing from its primary; the primary's next writes reach only B.
    c.cut(Link::Replica(A, 1));
    c.wait_cut();
    assert_eq!(c.q((A, 0), &["SET", "late", "v"]).text(), "OK");
    for _ in 0..3 {
        assert!(!c.q((A, 0), &["INCR", "lc"]).is_error());
    }
    assert_eq!(c.q((A, 0), &["RPUSH", "ll", "x"]).text(), "1");
    let mut cb = c.new_client((B, 0));
    wait_value(&mut cb, "lc", "3").unwrap_or_else(|e| panic!("B: {e}"));
    // The push came after the increments; B must hold it too before A dies, or only A's disk
    // would have it.
    poll_ok(LINK_UP, || match cb.call(&["LLEN", "ll"])?.text() {
        n if n == "1" => Ok(()),
        n => Err(format!("B: LLEN ll = {n}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cr = c.new_client((A, 1));
    assert_eq!(
        cr.q(&["GET", "late"]).text(),
        "(nil)",
        "the replica was cut off"
    );

    // The primary dies; its replica is promoted and the peer links are re-pointed at it.
    c.kill9((A, 0));
    assert_eq!(cr.q(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
    let to_b = c.proxy(Link::Peer(A, B)).addr().to_string();
    assert_eq!(cr.q(&["AA.PEER", "SET", "B", &to_b]).text(), "OK");
    c.proxy(Link::Peer(B, A))
        .set_target(replication_support::loopback(c.port((A, 1))));
    // What only B had comes back to the new primary, through B.
    wait_value(&mut cr, "late", "v").unwrap_or_else(|e| panic!("new primary: {e}"));
    wait_value(&mut cr, "lc", "3").unwrap_or_else(|e| panic!("new primary: {e}"));
    assert_eq!(cr.q(&["LRANGE", "ll", "0", "-1"]).text(), "[x]");
    // The new primary writes under a new epoch; B sees it.
    let info = cr.info("crdt").expect("INFO crdt");
    assert_eq!(
        info_field(info.as_bytes(), "crdt_epoch").as_deref(),
        Some("2"),
        "{info}"
    );
    assert_eq!(cr.q(&["SET", "post", "1"]).text(), "OK");
    assert_eq!(cr.q(&["INCR", "lc"]).text(), "4");
    wait_value(&mut cb, "post", "1").unwrap_or_else(|e| panic!("B: {e}"));
    wait_value(&mut cb, "lc", "4").unwrap_or_else(|e| panic!("B: {e}"));

    // The old primary restarts with its old configuration (a primary peering with B). From B
    // it learns of the newer epoch of its shard and stops taking writes.
    c.restart((A, 0));
    let mut co = c.new_client((A, 0));
    wait_value(&mut co, "post", "1").unwrap_or_else(|e| panic!("old primary: {e}"));
    let mut probe_taken = false;
    poll_ok(LINK_UP, || match co.call(&["SET", "probe", "x"])? {
        Reply::Error(e) if e.starts_with("READONLY") => Ok(()),
        other => {
            probe_taken |= other.text() == "OK";
            Err(format!("SET answered {}", other.text()))
        }
    })
    .unwrap_or_else(|e| panic!("the old primary was not fenced: {e}"));
    assert_eq!(role_name(&mut co), "slave");
    let old: &ShardNode = c.node((A, 0));
    assert!(
        old.log().contains("newer epoch"),
        "the fenced node says why in its log"
    );

    // Re-pointed as a replica of the new primary, it ends up identical to it.
    let target = c.port((A, 1)).to_string();
    assert_eq!(co.q(&["REPLICAOF", "127.0.0.1", &target]).text(), "OK");
    assert_eq!(cr.q(&["SET", "final", "1"]).text(), "OK");
    c.converge(LINK_UP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(co.q(&["GET", "final"]).text(), "1");
    assert_eq!(co.q(&["GET", "lc"]).text(), "4");
    // A write the old primary acknowledged before it was fenced was handed over, not dropped.
    let want = if probe_taken { "1" } else { "0" };
    for client in [&mut co, &mut cr] {
        assert_eq!(
            client.q(&["EXISTS", "probe"]).text(),
            want,
            "SET probe was acknowledged: {probe_taken}"
        );
    }
}
