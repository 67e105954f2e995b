//! Streams on a real shard-node: `XREAD BLOCK` and `XREADGROUP BLOCK` woken by another
//! client's `XADD`, every reader of a stream served while consumers of one group share the
//! entries, and the pending-entries list followed through delivery, claim and acknowledgement.
//! Replies without waiting are compared with Redis in tests/diff/streams.redis.

use crate::common::{info_field, poll_until, show, NodeBuilder, RawConn};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn blocked_clients(port: u16) -> i64 {
    let info = RawConn::connect(port).cmd_str(&["INFO", "clients"]);
    info_field(&info, "blocked_clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

fn wait_blocked(port: u16, n: i64) {
    poll_until(DEADLINE, || (blocked_clients(port) == n).then_some(()))
        .unwrap_or_else(|| panic!("blocked_clients never became {n}"));
}

fn send(conn: &mut RawConn, args: &[&str]) {
    let mut frame = format!("*{}\r\n", args.len());
    for a in args {
        frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.send(frame.as_bytes()).expect("send");
}

fn read(conn: &mut RawConn) -> String {
    String::from_utf8_lossy(
        &conn
            .read_frame()
            .unwrap_or_else(|e| panic!("no reply: {e:?}")),
    )
    .into_owned()
}

/// `[[key, [[id, [field, value]]]]]`, the reply of a read of one entry of one stream.
fn one_entry(key: &str, id: &str, field: &str, value: &str) -> String {
    format!(
        "*1\r\n*2\r\n${}\r\n{key}\r\n*1\r\n*2\r\n${}\r\n{id}\r\n*2\r\n${}\r\n{field}\r\n${}\r\n{value}\r\n",
        key.len(),
        id.len(),
        field.len(),
        value.len()
    )
}

#[test]
fn blocked_readers_are_woken_by_xadd_and_all_get_the_entry() {
    let node = NodeBuilder::new().start();
    let port = node.port();
    let mut writer = RawConn::connect(port);
    writer.cmd_str(&["XADD", "events", "1-1", "old", "x"]);
    let mut readers: Vec<RawConn> = (0..3)
        .map(|_| {
            let mut c = RawConn::connect(port);
            c.set_read_timeout(DEADLINE);
            c
        })
        .collect();
    // `$`: only entries added after the read started.
    for (i, r) in readers.iter_mut().enumerate() {
        send(r, &["XREAD", "BLOCK", "0", "STREAMS", "events", "$"]);
        wait_blocked(port, i as i64 + 1);
    }
    writer.cmd_str(&["XADD", "events", "2-1", "new", "y"]);
    for r in readers.iter_mut() {
        assert_eq!(read(r), one_entry("events", "2-1", "new", "y"));
    }
    assert_eq!(blocked_clients(port), 0);

    // A timeout answers a null array, not before its time.
    let started = Instant::now();
    send(
        &mut readers[0],
        &["XREAD", "BLOCK", "200", "STREAMS", "events", "$"],
    );
    assert_eq!(read(&mut readers[0]), "*-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(190));

    // A reader waiting for IDs past every entry does not hold up one waiting for `$`.
    send(
        &mut readers[0],
        &["XREAD", "BLOCK", "0", "STREAMS", "events", "9-0"],
    );
    wait_blocked(port, 1);
    send(
        &mut readers[1],
        &["XREAD", "BLOCK", "0", "STREAMS", "events", "$"],
    );
    wait_blocked(port, 2);
    writer.cmd_str(&["XADD", "events", "3-1", "k", "v"]);
    assert_eq!(read(&mut readers[1]), one_entry("events", "3-1", "k", "v"));
    writer.cmd_str(&["XADD", "events", "9-1", "k", "w"]);
    assert_eq!(read(&mut readers[0]), one_entry("events", "9-1", "k", "w"));
}

#[test]
fn consumers_of_one_group_share_the_entries_and_the_pending_list_follows_them() {
    let node = NodeBuilder::new().start();
    let port = node.port();
    let mut admin = RawConn::connect(port);
    assert_eq!(
        admin.cmd_str(&["XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"]),
        b"+OK\r\n"
    );
    let mut consumers: Vec<RawConn> = (0..2)
        .map(|_| {
            let mut c = RawConn::connect(port);
            c.set_read_timeout(DEADLINE);
            c
        })
        .collect();
    for (i, (c, name)) in consumers.iter_mut().zip(["w1", "w2"]).enumerate() {
        send(
            c,
            &[
                "XREADGROUP",
                "GROUP",
                "workers",
                name,
                "COUNT",
                "1",
                "BLOCK",
                "0",
                "STREAMS",
                "jobs",
                ">",
            ],
        );
        wait_blocked(port, i as i64 + 1);
    }
    // Two entries for two blocked consumers: each gets one, none gets both.
    admin.cmd_str(&["XADD", "jobs", "1-1", "job", "a"]);
    admin.cmd_str(&["XADD", "jobs", "2-1", "job", "b"]);
    let got: Vec<String> = consumers.iter_mut().map(read).collect();
    let mut values: Vec<&str> = got
        .iter()
        .map(|r| {
            if r.contains("\r\na\r\n") {
                "a"
            } else if r.contains("\r\nb\r\n") {
                "b"
            } else {
                "?"
            }
        })
        .collect();
    values.sort();
    assert_eq!(values, ["a", "b"], "{got:?}");
    let w1_has = if got[0].contains("1-1") { "1-1" } else { "2-1" };

    // Pending: one entry per consumer, delivered once.
    let summary = admin.cmd_str(&["XPENDING", "jobs", "workers"]);
    assert!(
        show(&summary)
            .contains("*2\\r\\n$2\\r\\nw1\\r\\n$1\\r\\n1\\r\\n*2\\r\\n$2\\r\\nw2\\r\\n$1\\r\\n1"),
        "{}",
        show(&summary)
    );
    // w2 claims w1's entry (min idle 0): it is w2's now, delivered twice.
    let claimed = admin.cmd_str(&["XCLAIM", "jobs", "workers", "w2", "0", w1_has, "JUSTID"]);
    assert_eq!(claimed, format!("*1\r\n$3\r\n{w1_has}\r\n").as_bytes());
    let detail = String::from_utf8_lossy(
        &admin.cmd_str(&["XPENDING", "jobs", "workers", "-", "+", "10", "w2"]),
    )
    .into_owned();
    assert!(detail.starts_with("*2\r\n"), "{detail}");
    // Acknowledged entries leave the list.
    assert_eq!(
        admin.cmd_str(&["XACK", "jobs", "workers", "1-1", "2-1"]),
        b":2\r\n"
    );
    assert_eq!(
        admin.cmd_str(&["XPENDING", "jobs", "workers"]),
        b"*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n"
    );
    // History read of a consumer with nothing pending: the stream with no entries.
    assert_eq!(
        admin.cmd_str(&[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w1",
            "STREAMS",
            "jobs",
            "0"
        ]),
        b"*1\r\n*2\r\n$4\r\njobs\r\n*0\r\n"
    );
}
