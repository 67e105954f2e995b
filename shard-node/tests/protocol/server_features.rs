//! Server features seen from outside: active expiry, exact TTLs, the Prometheus endpoint,
//! refusing writes once the effect log cannot be persisted, and `CLIENT PAUSE`.

use crate::common;
use crate::common::{encode, poll_until, NodeBuilder, RawConn, ReadEnd};
use shard_node::commands::testing::new_db;
use shard_node::commands::{dispatch, ClientState};
use shard_node::crdt::{Actor, Keyspace};
use shard_node::server::State;
use shard_node::store::{FsyncPolicy, Store};
use std::io::{Read, Write};
use std::time::Duration;

fn text(reply: Vec<u8>) -> String {
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn keys_expire_without_being_read_and_ttls_are_exact() {
    let node = NodeBuilder::new().start();
    let mut c = RawConn::connect(node.port());
    for i in 0..50 {
        c.cmd_str(&["SET", &format!("short:{i}"), "v", "PX", "150"]);
    }
    c.cmd_str(&["SET", "long", "v"]);
    assert_eq!(text(c.cmd_str(&["PEXPIRE", "long", "100000"])), ":1\r\n");
    let pttl: i64 = text(c.cmd_str(&["PTTL", "long"]))
        .trim_start_matches(':')
        .trim()
        .parse()
        .expect("PTTL is an integer");
    assert!((99_000..=100_000).contains(&pttl), "PTTL {pttl}");
    assert_eq!(text(c.cmd_str(&["TTL", "long"])), ":100\r\n");
    // Nobody reads the short keys: the active sweep must delete them.
    let gone = poll_until(Duration::from_secs(5), || {
        let dbsize = text(c.cmd_str(&["DBSIZE"]));
        (dbsize == ":1\r\n").then_some(())
    });
    assert!(
        gone.is_some(),
        "expired keys were not swept: {}",
        text(c.cmd_str(&["DBSIZE"]))
    );
    let info = text(c.cmd_str(&["INFO", "stats"]));
    assert!(info.contains("expired_keys:50"), "{info}");
}

#[test]
fn metrics_endpoint_reports_commands_keys_and_memory() {
    let metrics_port = common::free_port();
    let node = NodeBuilder::new()
        .arg("--metrics-port")
        .arg(metrics_port.to_string())
        .start();
    let mut c = RawConn::connect(node.port());
    c.cmd_str(&["SET", "a", "1"]);
    c.cmd_str(&["INCR", "a"]);
    c.cmd_str(&["GET", "a"]);
    c.cmd_str(&["NOSUCHCOMMAND"]);
    let body = poll_until(Duration::from_secs(10), || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.contains("shard_node_used_memory_bytes")
            .then_some(body)
    })
    .expect("metrics endpoint answers");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("shard_node_commands_total{command=\"incr\"} 1"),
        "{body}"
    );
    assert!(body.contains("shard_node_keys 1"), "{body}");
    assert!(
        body.contains("shard_node_error_replies_total{prefix=\"ERR\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("shard_node_effects_applied_total 2"),
        "{body}"
    );
    assert!(body.contains("shard_node_fsyncs_total"), "{body}");
}

/// Silent connections hold no scrape slot for long, and past the cap a scraper is refused
/// with 503 instead of queued, while the node keeps serving.
#[test]
fn the_metrics_endpoint_caps_connections_and_drops_silent_ones() {
    let metrics_port = common::free_port();
    let node = NodeBuilder::new()
        .arg("--metrics-port")
        .arg(metrics_port.to_string())
        .start();
    let scrape = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        // What arrived before the connection ended, even if it ended with an error.
        let mut body = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    poll_until(Duration::from_secs(10), || {
        scrape().filter(|b| b.starts_with("HTTP/1.1 200"))
    })
    .expect("metrics endpoint answers");
    // Silent connections fill every slot.
    let silent: Vec<std::net::TcpStream> = (0..shard_node::metrics::METRICS_MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", metrics_port)).expect("connect"))
        .collect();
    let refused = poll_until(Duration::from_secs(4), || {
        scrape().filter(|b| b.starts_with("HTTP/1.1 503"))
    });
    assert!(refused.is_some(), "a scraper past the cap was not refused");
    assert_eq!(
        text(RawConn::connect(node.port()).cmd_str(&["PING"])),
        "+PONG\r\n"
    );
    // After the read timeout the silent ones are closed and scrapes succeed again.
    let started = std::time::Instant::now();
    let served = poll_until(Duration::from_secs(15), || {
        scrape().filter(|b| b.starts_with("HTTP/1.1 200"))
    });
    assert!(served.is_some(), "silent connections kept every slot");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut rest = Vec::new();
        assert!(
            matches!(s.read_to_end(&mut rest), Ok(0)),
            "a silent connection was answered"
        );
    }
}

#[test]
fn a_failed_fsync_makes_the_node_refuse_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(dir.path(), FsyncPolicy::Always).expect("open store");
    let faults = store.fault_injector();
    let ks = Keyspace::new(Actor::new("test", 0, 1), true);
    let mut state = State {
        db: new_db(ks),
        store: Some(store),
    };
    let mut client = ClientState::new(1, true);
    let mut run = |state: &mut State, args: &[&str]| {
        let args: Vec<bytes::Bytes> = args
            .iter()
            .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut out = bytes::BytesMut::new();
        dispatch(&mut state.db, &mut client, &args, &mut out, 1);
        (
            String::from_utf8_lossy(&out).into_owned(),
            state.persist_outbox(),
        )
    };
    let (reply, persisted) = run(&mut state, &["SET", "a", "1"]);
    assert_eq!(reply, "+OK\r\n");
    assert!(persisted.is_ok());
    faults.fail_syncs(true);
    let (_, persisted) = run(&mut state, &["SET", "b", "2"]);
    assert!(
        persisted.is_err(),
        "the failed fsync must be reported, not hidden"
    );
    faults.fail_syncs(false);
    let (reply, _) = run(&mut state, &["SET", "c", "3"]);
    assert!(reply.starts_with("-MISCONF"), "writes are refused: {reply}");
    let (reply, _) = run(&mut state, &["GET", "a"]);
    assert_eq!(reply, "$1\r\n1\r\n", "reads keep working");
}

/// Whether `conn` has a reply within `window` (one frame), or None.
fn reply_within(conn: &mut RawConn, window: Duration) -> Option<String> {
    conn.set_read_timeout(window);
    conn.read_frame().ok().map(text)
}

#[test]
fn client_pause_write_holds_writes_until_lifted_while_reads_go_on() {
    let node = NodeBuilder::new().start();
    let mut admin = RawConn::connect(node.port());
    let mut writer = RawConn::connect(node.port());
    assert_eq!(text(writer.cmd_str(&["SET", "k", "1"])), "+OK\r\n");
    assert_eq!(
        text(admin.cmd_str(&["CLIENT", "PAUSE", "20000", "WRITE"])),
        "+OK\r\n"
    );
    assert_eq!(text(writer.cmd_str(&["GET", "k"])), "$1\r\n1\r\n");
    // A pipeline of a read, a write and a read: the first read is answered, the write waits and
    // so does everything after it on that connection.
    writer
        .send(
            &[
                encode(&[b"GET", b"k"]),
                encode(&[b"INCR", b"k"]),
                encode(&[b"GET", b"k"]),
            ]
            .concat(),
        )
        .expect("send pipeline");
    assert_eq!(
        reply_within(&mut writer, Duration::from_secs(5)).as_deref(),
        Some("$1\r\n1\r\n")
    );
    assert_eq!(reply_within(&mut writer, Duration::from_millis(300)), None);
    // Other clients read meanwhile; MULTI queues writes, EXEC of them waits.
    let mut reader = RawConn::connect(node.port());
    assert_eq!(text(reader.cmd_str(&["GET", "k"])), "$1\r\n1\r\n");
    assert_eq!(text(reader.cmd_str(&["MULTI"])), "+OK\r\n");
    assert_eq!(text(reader.cmd_str(&["SET", "m", "1"])), "+QUEUED\r\n");
    reader.send(&encode(&[b"EXEC"])).expect("send EXEC");
    assert_eq!(reply_within(&mut reader, Duration::from_millis(300)), None);
    assert_eq!(text(admin.cmd_str(&["CLIENT", "UNPAUSE"])), "+OK\r\n");
    assert_eq!(
        reply_within(&mut writer, Duration::from_secs(5)).as_deref(),
        Some(":2\r\n")
    );
    assert_eq!(
        reply_within(&mut writer, Duration::from_secs(5)).as_deref(),
        Some("$1\r\n2\r\n")
    );
    assert_eq!(
        reply_within(&mut reader, Duration::from_secs(5)).as_deref(),
        Some("*1\r\n+OK\r\n")
    );
}

#[test]
fn client_pause_all_holds_reads_and_ends_by_itself() {
    let node = NodeBuilder::new().start();
    let mut admin = RawConn::connect(node.port());
    let mut client = RawConn::connect(node.port());
    assert_eq!(text(client.cmd_str(&["SET", "k", "v"])), "+OK\r\n");
    assert_eq!(text(admin.cmd_str(&["CLIENT", "PAUSE", "700"])), "+OK\r\n");
    client.send(&encode(&[b"GET", b"k"])).expect("send GET");
    assert_eq!(reply_within(&mut client, Duration::from_millis(200)), None);
    // CLIENT itself is never held, so a pause can always be lifted or changed.
    assert!(text(admin.cmd_str(&["CLIENT", "ID"])).starts_with(':'));
    assert_eq!(
        reply_within(&mut client, Duration::from_secs(5)).as_deref(),
        Some("$1\r\nv\r\n")
    );
}

#[test]
fn client_pause_rejects_bad_arguments() {
    let node = NodeBuilder::new().start();
    let mut c = RawConn::connect(node.port());
    assert_eq!(
        text(c.cmd_str(&["CLIENT", "PAUSE", "soon"])),
        "-ERR timeout is not an integer or out of range\r\n"
    );
    assert_eq!(
        text(c.cmd_str(&["CLIENT", "PAUSE", "-5"])),
        "-ERR timeout is not an integer or out of range\r\n"
    );
    assert_eq!(
        text(c.cmd_str(&["CLIENT", "PAUSE", "100", "READS"])),
        "-ERR syntax error\r\n"
    );
    assert!(
        text(c.cmd_str(&["CLIENT", "PAUSE"])).starts_with("-ERR wrong number of arguments"),
        "missing timeout"
    );
    assert!(text(c.cmd_str(&["CLIENT", "UNPAUSE", "now"])).starts_with("-ERR wrong number"));
    // Nothing was paused by the refused commands.
    assert_eq!(text(c.cmd_str(&["SET", "k", "v"])), "+OK\r\n");
}

/// A node restarted with data refuses client writes until `REPLICAOF` tells it its role (or
/// the hold ends), so it cannot acknowledge writes that a failover decided while it was down
/// would discard; a fresh node has no hold.
#[test]
fn a_restarted_node_holds_writes_until_it_is_told_its_role() {
    let mut node = NodeBuilder::new()
        .arg("--restart-hold-ms")
        .arg("60000")
        .start();
    let mut c = RawConn::connect(node.port());
    assert_eq!(
        text(c.cmd_str(&["SET", "k", "1"])),
        "+OK\r\n",
        "a fresh node holds writes"
    );
    node.kill9();
    node.restart();
    let mut c = RawConn::connect(node.port());
    let refused = text(c.cmd_str(&["SET", "k", "2"]));
    assert!(
        refused.starts_with("-READONLY this node restarted"),
        "{refused}"
    );
    assert_eq!(
        text(c.cmd_str(&["GET", "k"])),
        "$1\r\n1\r\n",
        "reads are served"
    );
    assert_eq!(text(c.cmd_str(&["REPLICAOF", "NO", "ONE"])), "+OK\r\n");
    assert_eq!(text(c.cmd_str(&["SET", "k", "3"])), "+OK\r\n");

    // A short hold ends by itself.
    let mut short = NodeBuilder::new()
        .arg("--restart-hold-ms")
        .arg("300")
        .start();
    assert_eq!(
        text(RawConn::connect(short.port()).cmd_str(&["SET", "k", "1"])),
        "+OK\r\n"
    );
    short.kill9();
    short.restart();
    let accepted = poll_until(Duration::from_secs(10), || {
        let reply = text(RawConn::connect(short.port()).cmd_str(&["SET", "k", "2"]));
        (reply == "+OK\r\n").then_some(())
    });
    assert!(accepted.is_some(), "the hold never ended");
}

/// With `--restart-hold-until-told` the hold has no end of its own: a restarted node answers
/// `READONLY` and reports `aadb_write_hold:1` until `REPLICAOF` gives it its role.
#[test]
fn a_node_restarted_with_hold_until_told_waits_as_long_as_it_takes() {
    let mut node = NodeBuilder::new().arg("--restart-hold-until-told").start();
    let port = node.port();
    assert_eq!(
        text(RawConn::connect(port).cmd_str(&["SET", "k", "1"])),
        "+OK\r\n",
        "a fresh node has no hold"
    );
    node.kill9();
    node.restart();
    let info = text(RawConn::connect(port).cmd_str(&["INFO", "replication"]));
    assert!(info.contains("aadb_write_hold:1"), "{info}");
    // Past any time-bounded hold the operator used to set (twice a 1 s detection timeout).
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let refused = text(RawConn::connect(port).cmd_str(&["SET", "k", "2"]));
        assert!(
            refused.starts_with("-READONLY this node restarted"),
            "{refused}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut c = RawConn::connect(port);
    assert_eq!(text(c.cmd_str(&["REPLICAOF", "NO", "ONE"])), "+OK\r\n");
    assert_eq!(text(c.cmd_str(&["SET", "k", "3"])), "+OK\r\n");
    let info = text(c.cmd_str(&["INFO", "replication"]));
    assert!(!info.contains("aadb_write_hold"), "{info}");
}

/// `CONFIG SET timeout N` disconnects a client idle for more than N seconds, as Redis does;
/// a subscriber and a client that keeps talking stay.
#[test]
fn idle_clients_are_disconnected_after_the_timeout_subscribers_are_not() {
    let node = NodeBuilder::new().start();
    let mut admin = RawConn::connect(node.port());
    let mut idle = RawConn::connect(node.port());
    let mut subscriber = RawConn::connect(node.port());
    let mut busy = RawConn::connect(node.port());
    assert_eq!(text(idle.cmd_str(&["PING"])), "+PONG\r\n");
    let idle_since = std::time::Instant::now();
    let subscribed = text(subscriber.cmd_str(&["SUBSCRIBE", "news"]));
    assert!(subscribed.contains("subscribe"), "{subscribed}");
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "SET", "timeout", "1"])),
        "+OK\r\n"
    );
    // The busy client talks every 300 ms while the idle one says nothing.
    idle.set_read_timeout(Duration::from_millis(300));
    let closed = poll_until(Duration::from_secs(10), || {
        assert_eq!(text(busy.cmd_str(&["PING"])), "+PONG\r\n");
        match idle.read_frame() {
            Err(ReadEnd::Closed(_)) => Some(idle_since.elapsed()),
            _ => None,
        }
    })
    .expect("the idle client is disconnected");
    assert!(
        closed >= Duration::from_secs(1),
        "disconnected {closed:?} after its last command, before the timeout"
    );
    eprintln!("idle client disconnected {closed:?} after its last command (timeout 1)");
    assert_eq!(text(busy.cmd_str(&["PING"])), "+PONG\r\n");
    // The admin connection was idle too.
    let mut admin = RawConn::connect(node.port());
    assert_eq!(text(admin.cmd_str(&["PUBLISH", "news", "hi"])), ":1\r\n");
    let message = text(
        subscriber
            .read_frame()
            .expect("the subscriber is still there"),
    );
    assert!(message.contains("hi"), "{message}");
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "GET", "timeout"])),
        "*2\r\n$7\r\ntimeout\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "SET", "timeout", "0"])),
        "+OK\r\n"
    );
}

/// A client whose unprocessed input passes `client-query-buffer-limit` is disconnected, as in
/// Redis; commands under the limit and other clients are unaffected.
#[test]
fn a_command_larger_than_the_query_buffer_limit_disconnects_its_client() {
    let node = NodeBuilder::new().start();
    let mut admin = RawConn::connect(node.port());
    assert!(
        text(admin.cmd_str(&["CONFIG", "SET", "client-query-buffer-limit", "1000"]))
            .starts_with("-ERR CONFIG SET failed")
    );
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"])),
        "+OK\r\n"
    );
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "GET", "client-query-buffer-limit"])),
        "*2\r\n$25\r\nclient-query-buffer-limit\r\n$7\r\n1048576\r\n"
    );
    let part = "x".repeat(600 * 1024);
    // Under the limit: 600 KiB in one command is fine.
    assert_eq!(text(admin.cmd_str(&["SET", "fits", &part])), "+OK\r\n");
    // An RPUSH of three values: two of 600 KiB are sent, the third never is.
    let mut greedy = RawConn::connect(node.port());
    let mut bytes = format!("*5\r\n$5\r\nRPUSH\r\n$1\r\nl\r\n${}\r\n", part.len()).into_bytes();
    bytes.extend_from_slice(part.as_bytes());
    bytes.extend_from_slice(format!("\r\n${}\r\n", part.len()).as_bytes());
    bytes.extend_from_slice(part.as_bytes());
    bytes.extend_from_slice(b"\r\n$3\r\n");
    greedy.send(&bytes).expect("send");
    greedy.set_read_timeout(Duration::from_secs(10));
    let end = greedy.read_frame();
    assert!(
        matches!(end, Err(ReadEnd::Closed(_))),
        "the client past the limit is disconnected: {end:?}"
    );
    assert_eq!(text(admin.cmd_str(&["EXISTS", "l"])), ":0\r\n");
    assert_eq!(
        text(admin.cmd_str(&["STRLEN", "fits"])),
        format!(":{}\r\n", part.len())
    );
}

/// The node's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[test]
fn a_subscriber_that_never_reads_is_cut_off_at_its_limit_while_publishing_goes_on() {
    let node = NodeBuilder::new().arg("--appendonly").arg("no").start();
    let pid = node.pid().expect("pid");
    let mut slow = RawConn::connect(node.port());
    assert_eq!(
        text(slow.cmd_str(&["SUBSCRIBE", "news"])),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    let mut fast = RawConn::connect(node.port());
    fast.cmd_str(&["SUBSCRIBE", "other"]);
    let mut publisher = RawConn::connect(node.port());
    let rss_before = rss_bytes(pid);
    // 1 MiB messages: the slow subscriber never reads, so they pile up in its queue until the
    // 32 MiB limit (after the kernel's socket buffers have filled).
    let payload = "x".repeat(1 << 20);
    let mut cut_after = None;
    for i in 1..=200u32 {
        let r = text(publisher.cmd_str(&["PUBLISH", "news", &payload]));
        if r == ":0\r\n" {
            cut_after = Some(i);
            break;
        }
        assert_eq!(r, ":1\r\n", "message {i}");
    }
    let cut_after = cut_after.expect("the subscriber was never cut off");
    eprintln!(
        "cut off after {cut_after} MiB published; RSS {} MiB before, {} MiB after",
        rss_before >> 20,
        rss_bytes(pid) >> 20
    );
    assert!(
        (30..=100).contains(&cut_after),
        "cut off near the 32 MiB limit, not after {cut_after} MiB"
    );
    // The node keeps publishing to others and forgets the slow one.
    let gone = poll_until(Duration::from_secs(5), || {
        (text(publisher.cmd_str(&["PUBSUB", "NUMSUB", "news"])) == "*2\r\n$4\r\nnews\r\n:0\r\n")
            .then_some(())
    });
    assert!(gone.is_some(), "the slow subscriber is still registered");
    assert_eq!(
        text(publisher.cmd_str(&["PUBLISH", "other", "hello"])),
        ":1\r\n"
    );
    assert!(
        rss_bytes(pid) < rss_before + (96 << 20),
        "memory stays bounded: {} MiB",
        rss_bytes(pid) >> 20
    );
    // The slow subscriber finds its connection closed once it reads on.
    slow.set_read_timeout(Duration::from_secs(5));
    let mut drained = 0usize;
    let closed = loop {
        match slow.read_frame() {
            Ok(_) => drained += 1,
            Err(_) => break true,
        }
        if drained > 10_000 {
            break false;
        }
    };
    assert!(closed, "the slow subscriber's connection was closed");
}
