//! Server features seen from outside: active expiry, exact TTLs, the Prometheus endpoint, and
//! refusing writes once the effect log cannot be persisted.

mod common;

use common::{poll_until, NodeBuilder, RawConn};
use shard_node::commands::testing::new_db;
use shard_node::commands::{dispatch, ClientState};
use shard_node::crdt::{Actor, Keyspace};
use shard_node::net::State;
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
