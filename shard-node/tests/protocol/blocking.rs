//! Blocking commands that really wait, on a real shard-node and through a real proxy: woken by
//! another client's write, served in the order clients blocked, ended by their timeout, by
//! `CLIENT UNBLOCK` or by the client leaving, with the client's pipelined commands held
//! behind them. Replies when nothing waits are compared with Redis in tests/diff/blocking.redis.

use crate::common::{info_field, poll_until, show, NodeBuilder, ProxyProcess, RawConn};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn blocked_clients(port: u16) -> i64 {
    let info = RawConn::connect(port).cmd_str(&["INFO", "clients"]);
    info_field(&info, "blocked_clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Waits until `n` clients are blocked on the node at `port`.
fn wait_blocked(port: u16, n: i64) {
    poll_until(DEADLINE, || (blocked_clients(port) == n).then_some(())).unwrap_or_else(|| {
        panic!(
            "blocked_clients never became {n} (now {})",
            blocked_clients(port)
        )
    });
}

/// Sends `args` without reading the reply.
fn send(conn: &mut RawConn, args: &[&str]) {
    let mut frame = format!("*{}\r\n", args.len());
    for a in args {
        frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.send(frame.as_bytes()).expect("send");
}

fn read(conn: &mut RawConn) -> Vec<u8> {
    conn.read_frame()
        .unwrap_or_else(|e| panic!("no reply: {e:?}"))
}

fn pair(key: &str, value: &str) -> Vec<u8> {
    format!(
        "*2\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes()
}

#[test]
fn a_blocked_pop_is_woken_by_another_clients_push_and_holds_the_commands_behind_it() {
    let node = NodeBuilder::new().start();
    let port = node.port();
    let mut waiter = RawConn::connect(port);
    waiter.set_read_timeout(DEADLINE);
    // BLPOP and a PING pipelined behind it: the PING is answered after the BLPOP.
    send(&mut waiter, &["BLPOP", "jobs", "0"]);
    send(&mut waiter, &["PING"]);
    wait_blocked(port, 1);
    let mut other = RawConn::connect(port);
    assert_eq!(other.cmd_str(&["RPUSH", "jobs", "j1"]), b":1\r\n");
    assert_eq!(read(&mut waiter), pair("jobs", "j1"));
    assert_eq!(read(&mut waiter), b"+PONG\r\n");
    assert_eq!(blocked_clients(port), 0);
    assert_eq!(other.cmd_str(&["EXISTS", "jobs"]), b":0\r\n");

    // The other blocking commands wake the same way.
    send(&mut waiter, &["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"]);
    wait_blocked(port, 1);
    other.cmd_str(&["RPUSH", "src", "m"]);
    assert_eq!(read(&mut waiter), b"$1\r\nm\r\n");
    assert_eq!(
        other.cmd_str(&["LRANGE", "dst", "0", "-1"]),
        b"*1\r\n$1\r\nm\r\n"
    );

    send(&mut waiter, &["BZPOPMIN", "z", "0"]);
    wait_blocked(port, 1);
    other.cmd_str(&["ZADD", "z", "2", "b", "1", "a"]);
    assert_eq!(
        read(&mut waiter),
        b"*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n"
    );

    send(
        &mut waiter,
        &["BLMPOP", "0", "2", "l1", "l2", "RIGHT", "COUNT", "5"],
    );
    wait_blocked(port, 1);
    other.cmd_str(&["RPUSH", "l2", "x", "y"]);
    assert_eq!(
        read(&mut waiter),
        b"*2\r\n$2\r\nl2\r\n*2\r\n$1\r\ny\r\n$1\r\nx\r\n"
    );

    // A key that becomes ready inside a transaction wakes the waiter once the EXEC is done.
    send(&mut waiter, &["BRPOP", "t", "0"]);
    wait_blocked(port, 1);
    other.cmd_str(&["MULTI"]);
    other.cmd_str(&["RPUSH", "t", "1", "2"]);
    other.cmd_str(&["RPOP", "t"]);
    assert_eq!(other.cmd_str(&["EXEC"]), b"*2\r\n:2\r\n$1\r\n2\r\n");
    assert_eq!(read(&mut waiter), pair("t", "1"));
}

#[test]
fn clients_blocked_on_one_key_are_served_in_the_order_they_blocked() {
    let node = NodeBuilder::new().start();
    let port = node.port();
    let mut waiters: Vec<RawConn> = Vec::new();
    for i in 0..4 {
        let mut c = RawConn::connect(port);
        c.set_read_timeout(DEADLINE);
        // The second waiter also waits on another key, after this one.
        if i == 1 {
            send(&mut c, &["BLPOP", "queue", "other", "0"]);
        } else {
            send(&mut c, &["BLPOP", "queue", "0"]);
        }
        wait_blocked(port, i + 1);
        waiters.push(c);
    }
    let mut producer = RawConn::connect(port);
    // Three elements for four waiters, in one command: the first three to block get them, in
    // order; the fourth keeps waiting.
    assert_eq!(
        producer.cmd_str(&["RPUSH", "queue", "a", "b", "c"]),
        b":3\r\n"
    );
    for (waiter, value) in waiters.iter_mut().zip(["a", "b", "c"]) {
        assert_eq!(read(waiter), pair("queue", value));
    }
    wait_blocked(port, 1);
    producer.cmd_str(&["RPUSH", "queue", "d"]);
    assert_eq!(read(&mut waiters[3]), pair("queue", "d"));
    assert_eq!(blocked_clients(port), 0);
}

#[test]
fn a_wait_ends_at_its_timeout_by_client_unblock_or_when_the_client_leaves() {
    let node = NodeBuilder::new().start();
    let port = node.port();
    let mut waiter = RawConn::connect(port);
    waiter.set_read_timeout(DEADLINE);

    // The timeout: a null array, not before the time given.
    let started = Instant::now();
    send(&mut waiter, &["BLPOP", "none", "0.3"]);
    assert_eq!(read(&mut waiter), b"*-1\r\n");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < DEADLINE,
        "waited {waited:?}"
    );
    send(
        &mut waiter,
        &["BLMOVE", "none", "d", "LEFT", "LEFT", "0.05"],
    );
    assert_eq!(read(&mut waiter), b"*-1\r\n");

    // CLIENT UNBLOCK, as a timeout and as an error.
    let id = String::from_utf8(waiter.cmd_str(&["CLIENT", "ID"])).unwrap();
    let id = id.trim_start_matches(':').trim().to_string();
    let mut admin = RawConn::connect(port);
    send(&mut waiter, &["BLPOP", "none", "0"]);
    wait_blocked(port, 1);
    assert_eq!(admin.cmd_str(&["CLIENT", "UNBLOCK", &id]), b":1\r\n");
    assert_eq!(read(&mut waiter), b"*-1\r\n");
    send(&mut waiter, &["BZPOPMAX", "none", "0"]);
    wait_blocked(port, 1);
    assert_eq!(
        admin.cmd_str(&["CLIENT", "UNBLOCK", &id, "ERROR"]),
        b":1\r\n"
    );
    let reply = read(&mut waiter);
    assert!(reply.starts_with(b"-UNBLOCKED"), "{}", show(&reply));
    assert_eq!(blocked_clients(port), 0);
    assert_eq!(admin.cmd_str(&["CLIENT", "UNBLOCK", &id]), b":0\r\n");

    // A client that goes away leaves the line: the element goes to the one behind it.
    let mut gone = RawConn::connect(port);
    send(&mut gone, &["BLPOP", "q", "0"]);
    wait_blocked(port, 1);
    send(&mut waiter, &["BLPOP", "q", "0"]);
    wait_blocked(port, 2);
    drop(gone);
    wait_blocked(port, 1);
    admin.cmd_str(&["RPUSH", "q", "x"]);
    assert_eq!(read(&mut waiter), pair("q", "x"));
    assert_eq!(admin.cmd_str(&["LLEN", "q"]), b":0\r\n");
}

#[test]
fn a_replica_refuses_to_block_and_a_demoted_primary_ends_the_wait() {
    let node = NodeBuilder::new().start();
    let port = node.port();
    let mut waiter = RawConn::connect(port);
    waiter.set_read_timeout(DEADLINE);
    send(&mut waiter, &["BLPOP", "q", "0"]);
    wait_blocked(port, 1);
    // The node becomes a replica: the wait ends with Redis's error, and nothing is popped.
    let primary = NodeBuilder::new().start();
    let mut p = RawConn::connect(primary.port());
    p.cmd_str(&["RPUSH", "q", "v"]);
    let mut admin = RawConn::connect(port);
    assert_eq!(
        admin.cmd_str(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()]),
        b"+OK\r\n"
    );
    let reply = read(&mut waiter);
    assert!(
        reply.starts_with(
            b"-UNBLOCKED force unblock from blocking operation, instance state changed"
        ),
        "{}",
        show(&reply)
    );
    assert_eq!(blocked_clients(port), 0);
    // On the replica nothing blocks.
    let reply = waiter.cmd_str(&["BLPOP", "none", "0"]);
    assert!(reply.starts_with(b"-READONLY"), "{}", show(&reply));
    assert_eq!(p.cmd_str(&["LLEN", "q"]), b":1\r\n");
}

#[test]
fn through_the_proxy_a_blocked_client_holds_up_no_other_client() {
    let nodes: Vec<_> = (0..2)
        .map(|i| NodeBuilder::new().shard(i).start())
        .collect();
    let map = format!(
        "0-8191=127.0.0.1:{},8192-16383=127.0.0.1:{}",
        nodes[0].port(),
        nodes[1].port()
    );
    for n in &nodes {
        let reply = RawConn::connect(n.port()).cmd_str(&["AA.TOPOLOGY", "SET", "1", &map]);
        assert_eq!(reply, b"+OK\r\n", "{}", show(&reply));
    }
    let proxy = ProxyProcess::start(&map, &[]);
    let mut waiters: Vec<RawConn> = (0..3)
        .map(|_| {
            let mut c = RawConn::connect(proxy.port());
            c.set_read_timeout(DEADLINE);
            c
        })
        .collect();
    // Clients blocked on keys of both shards, one with a command pipelined behind.
    send(&mut waiters[0], &["BLPOP", "{a}q", "0"]);
    send(&mut waiters[0], &["GET", "{a}marker"]);
    send(&mut waiters[1], &["BLPOP", "{b}q", "0"]);
    send(&mut waiters[2], &["BRPOPLPUSH", "{a}q2", "{a}d", "0"]);
    poll_until(DEADLINE, || {
        let total: i64 = nodes.iter().map(|n| blocked_clients(n.port())).sum();
        (total == 3).then_some(())
    })
    .expect("three clients blocked on the shards");

    // Meanwhile other clients of the same proxy use both shards at full speed.
    let mut other = RawConn::connect(proxy.port());
    for i in 0..200 {
        let key = format!("k{i}");
        assert_eq!(other.cmd_str(&["SET", &key, "v"]), b"+OK\r\n");
    }
    assert_eq!(other.cmd_str(&["SET", "{a}marker", "set"]), b"+OK\r\n");
    assert_eq!(other.cmd_str(&["RPUSH", "{b}q", "B"]), b":1\r\n");
    assert_eq!(read(&mut waiters[1]), pair("{b}q", "B"));
    assert_eq!(other.cmd_str(&["RPUSH", "{a}q", "A"]), b":1\r\n");
    assert_eq!(read(&mut waiters[0]), pair("{a}q", "A"));
    assert_eq!(read(&mut waiters[0]), b"$3\r\nset\r\n");
    assert_eq!(other.cmd_str(&["RPUSH", "{a}q2", "M"]), b":1\r\n");
    assert_eq!(read(&mut waiters[2]), b"$1\r\nM\r\n");
    assert_eq!(
        other.cmd_str(&["LRANGE", "{a}d", "0", "-1"]),
        b"*1\r\n$1\r\nM\r\n"
    );
    // A timeout through the proxy, and the client's next command after it.
    send(&mut waiters[1], &["BZPOPMIN", "{b}z", "0.1"]);
    send(&mut waiters[1], &["PING"]);
    assert_eq!(read(&mut waiters[1]), b"*-1\r\n");
    assert_eq!(read(&mut waiters[1]), b"+PONG\r\n");
}
