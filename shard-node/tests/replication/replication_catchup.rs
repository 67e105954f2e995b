//! A peer that was down longer than the other region's replication backlog covers catches up
//! by a full state merge, with real processes on loopback.
//!
//! Region A writes more than its whole backlog (its size is read from `INFO replication`, so
//! the test follows the default) while region B is killed; B restarts, finds that A's backlog
//! no longer covers its vector clock, merges A's full state, and ends up identical to A, its
//! replica too, including the deletes A made meanwhile. (The replica resynchronises with the
//! restarted B before the merge, so it must follow a change of its primary's state that came
//! without effects.)

use crate::common::info_field;
use crate::replication_support::{poll_ok, Cluster, Link};
use std::time::{Duration, Instant};

const A: usize = 0;
const B: usize = 1;
const VALUE_SIZE: usize = 256 * 1024;

/// The `crdt_peer_NAME` line of `INFO crdt`, as key=value pairs.
fn peer_line(c: &mut Cluster, id: (usize, usize), peer: &str) -> String {
    let info = c.client(id).info("crdt").expect("INFO crdt");
    info_field(info.as_bytes(), &format!("crdt_peer_{peer}"))
        .unwrap_or_else(|| panic!("no crdt_peer_{peer} in\n{info}"))
}

fn full_merges(line: &str) -> u64 {
    line.split(',')
        .find_map(|kv| kv.strip_prefix("full_merges="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no full_merges in {line}"))
}

#[test]
fn a_peer_down_longer_than_the_backlog_catches_up_by_full_merge() {
    let started = Instant::now();
    let mut c = Cluster::start(&["A", "B"], &[0, 1]);
    c.wait_links_up(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    for cmd in [
        &["RPUSH", "list", "a", "b", "c"][..],
        &["SADD", "set", "x", "y"],
        &["SET", "doomed", "1"],
        &["HSET", "hash", "f", "1", "g", "2"],
        &["INCRBY", "counter", "10"],
        &["ZADD", "zset", "1", "m"],
    ] {
        assert!(!c.q((A, 0), cmd).is_error(), "{cmd:?}");
    }
    assert_eq!(c.q((B, 0), &["SET", "from-b", "1"]).text(), "OK");
    c.converge(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));

    let info = c.client((A, 0)).info("replication").expect("INFO");
    let backlog: usize = info_field(info.as_bytes(), "repl_backlog_size")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no repl_backlog_size in\n{info}"));
    let first_before = info_field(info.as_bytes(), "repl_backlog_first_byte_offset");

    // B goes down; A changes the shared data and writes 1.5 backlogs' worth.
    c.kill9((B, 0));
    for cmd in [
        &["LPOP", "list"][..],
        &["SREM", "set", "x"],
        &["DEL", "doomed"],
        &["HDEL", "hash", "f"],
        &["INCRBY", "counter", "5"],
        &["ZINCRBY", "zset", "2", "m"],
    ] {
        assert!(!c.q((A, 0), cmd).is_error(), "{cmd:?}");
    }
    let writes = backlog * 3 / 2 / VALUE_SIZE + 8;
    let mut value = vec![b'v'; VALUE_SIZE];
    let mut a = c.new_client((A, 0));
    for i in 0..writes {
        value[..8].copy_from_slice(format!("{i:08}").as_bytes());
        let key = format!("big:{}", i % 8);
        let reply = a
            .call_bytes(&[b"SET", key.as_bytes(), &value])
            .unwrap_or_else(|e| panic!("SET {key}: {e}"));
        assert_eq!(reply.text(), "OK");
    }
    let info = c.client((A, 0)).info("replication").expect("INFO");
    let first_after = info_field(info.as_bytes(), "repl_backlog_first_byte_offset");
    assert_ne!(
        first_before, first_after,
        "A's backlog must have dropped its oldest effects:\n{info}"
    );
    eprintln!(
        "wrote {writes} values of {VALUE_SIZE} bytes (backlog {backlog} bytes) in {:?}",
        started.elapsed()
    );

    // B comes back. Its replica resynchronises with it first (B cannot reach A yet); then the
    // link to A opens and B merges A's full state.
    c.cut(Link::Peer(B, A));
    c.restart((B, 0));
    c.converge_among(&[(B, 0), (B, 1)], Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("B's replica did not resynchronise with B: {e}"));
    let t = Instant::now();
    c.heal(Link::Peer(B, A));
    let took = c
        .converge_among(&[(A, 0), (B, 0)], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("B did not catch up: {e}"));
    eprintln!(
        "B caught up {:?} after its restart ({took:?} of polling)",
        t.elapsed()
    );
    let line = peer_line(&mut c, (B, 0), "A");
    assert!(
        full_merges(&line) >= 1,
        "B must have merged A's full state: {line}"
    );
    assert!(
        c.node((B, 0))
            .log()
            .contains("merged the full state of a peer"),
        "B logs the full merge"
    );
    // A had everything B had: it resumed from B's backlog without a full merge.
    let line = peer_line(&mut c, (A, 0), "B");
    assert_eq!(full_merges(&line), 0, "A needed no full merge: {line}");

    // The merge changed B's state without effects: its replica must get it all the same, and
    // a write B makes now must be applied on the replica before WAIT counts it.
    assert_eq!(c.q((B, 0), &["SET", "probe", "1"]).text(), "OK");
    let acked = c.q((B, 0), &["WAIT", "1", "5000"]).text();
    let applied = poll_ok(Duration::from_secs(5), || {
        match c.call((B, 1), &["GET", "probe"])?.text().as_str() {
            "1" => Ok(()),
            other => Err(format!("GET probe = {other}")),
        }
    });
    let converged = c.converge(Duration::from_secs(20));
    assert!(
        converged.is_ok() && applied.is_ok(),
        "B's replica did not follow its primary through the full merge \
         (WAIT 1 after a write on B returned {acked}; the write on the replica: {applied:?}): {}",
        converged.err().unwrap_or_default()
    );

    for id in c.ids() {
        let label = c.label(id);
        let mut check = |cmd: &[&str], want: &str| {
            assert_eq!(c.q(id, cmd).text(), want, "`{}` on {label}", cmd.join(" "));
        };
        check(&["LRANGE", "list", "0", "-1"], "[b,c]");
        check(&["SMEMBERS", "set"], "[y]");
        check(&["EXISTS", "doomed"], "0");
        check(&["HGETALL", "hash"], "[g,2]");
        check(&["GET", "counter"], "15");
        check(&["ZSCORE", "zset", "m"], "3");
        check(&["GET", "from-b"], "1");
        check(&["STRLEN", "big:0"], &VALUE_SIZE.to_string());
        check(&["DBSIZE"], "15");
    }
    let last = writes - 1;
    let reply = c.q(
        (B, 1),
        &["GETRANGE", &format!("big:{}", last % 8), "0", "7"],
    );
    assert_eq!(reply.text(), format!("{last:08}"), "the newest value");

    // And the regions keep replicating both ways afterwards.
    assert_eq!(c.q((B, 0), &["SET", "after", "b"]).text(), "OK");
    assert_eq!(c.q((A, 0), &["INCR", "counter"]).text(), "16");
    c.converge(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    poll_ok(Duration::from_secs(5), || {
        match c.call((A, 0), &["GET", "after"])?.text().as_str() {
            "b" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("catch-up test took {:?}", started.elapsed());
}
