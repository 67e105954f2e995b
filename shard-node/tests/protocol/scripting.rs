//! Scripts on real processes: a runaway script is stopped by the time limit while the node
//! keeps serving, and scripts through the proxy run on the shard of their keys (the script
//! cache and function libraries loaded on every shard, cross-shard keys refused).

use crate::common::{poll_until, NodeBuilder, ProxyProcess, RawConn, ShardNode};
use std::time::{Duration, Instant};

fn text(reply: Vec<u8>) -> String {
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn a_runaway_script_is_stopped_by_the_time_limit_and_the_node_keeps_serving() {
    let node = NodeBuilder::new().start();
    let mut admin = RawConn::connect(node.port());
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "GET", "busy-reply-threshold"])),
        "*2\r\n$20\r\nbusy-reply-threshold\r\n$4\r\n5000\r\n"
    );
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "SET", "busy-reply-threshold", "200"])),
        "+OK\r\n"
    );
    assert_eq!(
        text(admin.cmd_str(&["CONFIG", "GET", "lua-time-limit"])),
        "*2\r\n$14\r\nlua-time-limit\r\n$3\r\n200\r\n"
    );
    assert_eq!(
        text(admin.cmd_str(&["SCRIPT", "KILL"])),
        "-NOTBUSY No scripts in execution right now.\r\n"
    );

    // The script writes, then loops forever: it is stopped with an error, and the write it
    // made before stays (one effect).
    let mut runner = RawConn::connect(node.port());
    runner.set_read_timeout(Duration::from_secs(30));
    let started = Instant::now();
    let reply = text(runner.cmd_str(&[
        "EVAL",
        "redis.call('SET', KEYS[1], 'before')\nwhile true do end",
        "1",
        "k",
    ]));
    let took = started.elapsed();
    assert!(
        reply.starts_with(
            "-ERR Script killed after running longer than busy-reply-threshold (200 ms) script: "
        ),
        "{reply:?}"
    );
    assert!(reply.ends_with(", on @user_script:2.\r\n"), "{reply:?}");
    assert!(took >= Duration::from_millis(200), "stopped after {took:?}");
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");

    // A script that catches errors with pcall is stopped as well.
    let reply = text(runner.cmd_str(&[
        "EVAL",
        "while true do pcall(function() while true do end end) end",
        "0",
    ]));
    assert!(reply.starts_with("-ERR Script killed"), "{reply:?}");

    // The node serves the same connection and others.
    assert_eq!(text(runner.cmd_str(&["GET", "k"])), "$6\r\nbefore\r\n");
    let mut other = RawConn::connect(node.port());
    assert_eq!(text(other.cmd_str(&["PING"])), "+PONG\r\n");
    assert_eq!(
        text(other.cmd_str(&["EVAL", "return 'still scripting'", "0"])),
        "$15\r\nstill scripting\r\n"
    );
}

#[test]
fn a_script_that_allocates_without_bound_fails_and_the_node_keeps_serving() {
    let node = NodeBuilder::new().start();
    let mut conn = RawConn::connect(node.port());
    conn.set_read_timeout(Duration::from_secs(60));
    let reply = text(conn.cmd_str(&[
        "EVAL",
        "local t = {} local s = string.rep('x', 1024 * 1024) local i = 0 \
         while true do i = i + 1 t[i] = s .. i end",
        "0",
    ]));
    assert!(reply.starts_with("-ERR "), "{reply:?}");
    assert_eq!(text(conn.cmd_str(&["EVAL", "return 1", "0"])), ":1\r\n");
}

const RANGES: [&str; 3] = ["0-5460", "5461-10922", "10923-16383"];

fn three_shards() -> (Vec<ShardNode>, String) {
    let nodes: Vec<ShardNode> = (0..3)
        .map(|i| NodeBuilder::new().shard(i).start())
        .collect();
    let map = nodes
        .iter()
        .zip(RANGES)
        .map(|(n, r)| format!("{r}=127.0.0.1:{}", n.port()))
        .collect::<Vec<_>>()
        .join(",");
    for n in &nodes {
        let reply = RawConn::connect(n.port()).cmd_str(&["AA.TOPOLOGY", "SET", "1", &map]);
        assert_eq!(text(reply), "+OK\r\n");
    }
    (nodes, map)
}

#[test]
fn scripts_through_the_proxy_run_on_the_shard_of_their_keys() {
    let (nodes, map) = three_shards();
    let proxy = ProxyProcess::start(&map, &[]);
    let mut c = RawConn::connect(proxy.port());

    // A script cached through the proxy is known to every shard.
    let sha = "61636018f4e6b5817b89791bbed242f93fa089e3";
    assert_eq!(
        text(c.cmd_str(&["SCRIPT", "LOAD", "return redis.call('INCR', KEYS[1])"])),
        format!("$40\r\n{sha}\r\n")
    );
    for n in &nodes {
        let reply = RawConn::connect(n.port()).cmd_str(&["SCRIPT", "EXISTS", sha]);
        assert_eq!(text(reply), "*1\r\n:1\r\n");
    }
    // Keys of every shard: each EVALSHA runs where its key is.
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for k in keys {
        assert_eq!(text(c.cmd_str(&["EVALSHA", sha, "1", k])), ":1\r\n");
        assert_eq!(text(c.cmd_str(&["GET", k])), "$1\r\n1\r\n");
    }
    // Several keys of one slot; keys of several shards are refused.
    assert_eq!(
        text(c.cmd_str(&[
            "EVAL",
            "redis.call('SET', KEYS[1], '1') redis.call('SET', KEYS[2], '2') return redis.call('MGET', KEYS[1], KEYS[2])",
            "2",
            "{u}1",
            "{u}2",
        ])),
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    let reply = text(c.cmd_str(&["EVAL", "return 1", "3", "a", "b", "c"]));
    assert!(reply.starts_with("-CROSSSLOT"), "{reply:?}");

    // Functions loaded through the proxy run on every shard.
    let lib = "#!lua name=counters\nredis.register_function('bump', function(keys) return redis.call('INCRBY', keys[1], 10) end)";
    assert_eq!(
        text(c.cmd_str(&["FUNCTION", "LOAD", lib])),
        "$8\r\ncounters\r\n"
    );
    for k in keys {
        assert_eq!(text(c.cmd_str(&["FCALL", "bump", "1", k])), ":11\r\n");
    }
    assert_eq!(text(c.cmd_str(&["FUNCTION", "FLUSH"])), "+OK\r\n");
    for n in &nodes {
        let listed = poll_until(Duration::from_secs(10), || {
            let reply = RawConn::connect(n.port()).cmd_str(&["FUNCTION", "LIST"]);
            (reply == b"*0\r\n").then_some(())
        });
        assert!(listed.is_some(), "a shard still has libraries");
    }
}

#[test]
fn client_pause_write_holds_scripts_that_may_write_but_not_read_only_ones() {
    let node = NodeBuilder::new().start();
    let mut admin = RawConn::connect(node.port());
    let mut reader = RawConn::connect(node.port());
    let mut writer = RawConn::connect(node.port());
    assert_eq!(
        text(admin.cmd_str(&["CLIENT", "PAUSE", "20000", "WRITE"])),
        "+OK\r\n"
    );
    assert_eq!(
        text(reader.cmd_str(&["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "k"])),
        "$-1\r\n"
    );
    writer
        .send(&crate::common::encode(&[
            b"EVAL".as_slice(),
            b"return redis.call('SET', KEYS[1], 'v')",
            b"1",
            b"k",
        ]))
        .expect("send EVAL");
    writer.set_read_timeout(Duration::from_millis(300));
    assert!(
        writer.read_frame().is_err(),
        "EVAL ran during CLIENT PAUSE WRITE"
    );
    assert_eq!(text(admin.cmd_str(&["CLIENT", "UNPAUSE"])), "+OK\r\n");
    writer.set_read_timeout(Duration::from_secs(10));
    assert_eq!(text(writer.read_frame().expect("EVAL reply")), "+OK\r\n");
}
