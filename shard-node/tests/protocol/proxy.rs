//! `shard-node proxy` on real processes: three shard-nodes behind one or two proxies, driven by
//! redis-benchmark, redis-cli and raw RESP. The proxy must look like one database (keys spread
//! over the shards, split and fanned-out commands merged), keep working when a shard primary
//! is killed and its replica promoted (no acknowledged write lost, none applied twice), keep
//! its other clients served when a client never reads or another proxy dies, and refuse bad
//! topologies and cross-shard transactions with a sentence.

use crate::common::{
    free_port, poll_until, require_command, NodeBuilder, ProxyProcess, RawConn, ShardNode,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const RANGES: [&str; 3] = ["0-5460", "5461-10922", "10923-16383"];

fn map_of(addrs: &[String]) -> String {
    addrs
        .iter()
        .zip(RANGES)
        .map(|(a, r)| format!("{r}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Three shard-nodes holding the three-shard map, and the map.
fn three_shards(extra: &[&str]) -> (Vec<ShardNode>, String) {
    let nodes: Vec<ShardNode> = (0..3)
        .map(|i| {
            let mut b = NodeBuilder::new().shard(i);
            for a in extra {
                b = b.arg(*a);
            }
            b.start()
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let map = map_of(&addrs);
    for n in &nodes {
        push(n.port(), 1, &map, None);
    }
    (nodes, map)
}

fn push(port: u16, version: u64, map: &str, password: Option<&str>) {
    let mut c = RawConn::connect(port);
    if let Some(p) = password {
        assert_eq!(c.cmd_str(&["AUTH", p]), b"+OK\r\n");
    }
    let reply = c.cmd_str(&["AA.TOPOLOGY", "SET", &version.to_string(), map]);
    assert_eq!(reply, b"+OK\r\n", "{}", String::from_utf8_lossy(&reply));
}

fn text(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&RawConn::connect(port).cmd_str(args)).into_owned()
}

fn int(port: u16, args: &[&str]) -> i64 {
    let r = text(port, args);
    r.trim_start_matches(':')
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{args:?}: not an integer reply: {r:?}"))
}

#[test]
fn one_database_through_a_proxy_over_three_shards() {
    require_command("redis-benchmark", "redis-tools");
    let (nodes, map) = three_shards(&[]);
    let proxy = ProxyProcess::start(&map, &[]);
    let p = proxy.port();

    // The default benchmark suite runs with no error (redis-benchmark exits non-zero on an
    // error reply).
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &p.to_string(),
            "-q",
            "-n",
            "2000",
            "-c",
            "20",
            "-r",
            "10000",
        ])
        .output()
        .expect("run redis-benchmark");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "redis-benchmark failed:\n{all}");
    assert!(!all.contains("ERR") && !all.contains("MOVED"), "{all}");

    // Keys spread over every shard, and the proxy's DBSIZE is their sum.
    let sizes: Vec<i64> = nodes.iter().map(|n| int(n.port(), &["DBSIZE"])).collect();
    assert!(sizes.iter().all(|s| *s > 0), "keys per shard: {sizes:?}");
    assert_eq!(int(p, &["DBSIZE"]), sizes.iter().sum::<i64>());

    // Split and merged commands answer as one server would.
    let mut c = RawConn::connect(p);
    assert_eq!(c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.extend([k.clone(), format!("v-{k}")]);
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.cmd_str(&mset), b"+OK\r\n");
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    mget.push("missing");
    let mut want = format!("*{}\r\n", keys.len() + 1);
    for k in &keys {
        let v = format!("v-{k}");
        want.push_str(&format!("${}\r\n{v}\r\n", v.len()));
    }
    want.push_str("$-1\r\n");
    assert_eq!(String::from_utf8_lossy(&c.cmd_str(&mget)), want);
    assert_eq!(int(p, &["EXISTS", "k1", "k2", "missing", "k1"]), 3);
    assert!(nodes.iter().all(|n| int(n.port(), &["DBSIZE"]) > 0));
    // SCAN walks every shard.
    let mut cursor = "0".to_string();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let reply = c.cmd_str(&["SCAN", &cursor, "COUNT", "7"]);
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let lines: Vec<&str> = reply.split("\r\n").collect();
        cursor = lines[2].to_string();
        for l in lines.iter().skip(5).step_by(2) {
            if !l.is_empty() {
                seen.insert(l.to_string());
            }
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0");
    assert_eq!(seen.len(), keys.len(), "{seen:?}");
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    assert_eq!(int(p, &del), keys.len() as i64);
    assert_eq!(int(p, &["DBSIZE"]), 0);

    // A cluster-aware client pointed at the proxy sees one node owning every slot.
    let slots = text(p, &["CLUSTER", "SLOTS"]);
    assert!(
        slots.starts_with(&format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:{p}\r\n"
        )),
        "{slots:?}"
    );
    let out = Command::new("redis-cli")
        .args(["-c", "-p", &p.to_string(), "SET", "foo", "bar"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

#[test]
fn transactions_run_on_one_shard_and_cross_shard_ones_are_refused() {
    let (_nodes, map) = three_shards(&[]);
    let proxy = ProxyProcess::start(&map, &[]);
    let mut c = RawConn::connect(proxy.port());
    // {u1} keys share a slot, so one shard.
    assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "{u1}a", "1"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["INCR", "{u1}a"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["RENAME", "{u1}a", "{u1}b"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["EXEC"]), b"*3\r\n+OK\r\n:2\r\n+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "{u1}b"]), b"$1\r\n2\r\n");
    // foo (shard 2) then bar (shard 0): refused at queueing, EXEC aborts, nothing applied.
    assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "foo", "1"]), b"+QUEUED\r\n");
    let refused = String::from_utf8_lossy(&c.cmd_str(&["SET", "bar", "1"])).into_owned();
    assert!(refused.starts_with("-CROSSSLOT"), "{refused}");
    assert_eq!(
        c.cmd_str(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.cmd_str(&["EXISTS", "foo", "bar"]), b":0\r\n");
    // WATCH pins the transaction; a change from another client aborts it.
    assert_eq!(c.cmd_str(&["WATCH", "{u2}w"]), b"+OK\r\n");
    assert_eq!(text(proxy.port(), &["SET", "{u2}w", "x"]), "+OK\r\n");
    assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "{u2}w", "mine"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["EXEC"]), b"*-1\r\n");
    assert_eq!(c.cmd_str(&["GET", "{u2}w"]), b"$1\r\nx\r\n");
}

#[test]
fn two_proxies_share_the_data_and_one_dying_under_load_disturbs_no_one_else() {
    let (_nodes, map) = three_shards(&[]);
    let mut a = ProxyProcess::start(&map, &[]);
    let b = ProxyProcess::start(&map, &[]);
    assert_eq!(text(a.port(), &["SET", "shared", "from-a"]), "+OK\r\n");
    assert_eq!(text(b.port(), &["GET", "shared"]), "$6\r\nfrom-a\r\n");

    // Pub/sub: a subscriber on A hears a publisher on B.
    let mut sub = RawConn::connect(a.port());
    let r = sub.cmd_str(&["SUBSCRIBE", "news"]);
    assert_eq!(r, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    let delivered = poll_until(Duration::from_secs(10), || {
        (int(b.port(), &["PUBLISH", "news", "hello"]) == 1).then_some(())
    });
    assert!(delivered.is_some(), "the subscriber never registered");
    assert_eq!(
        sub.read_frame().expect("message"),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );

    // Load on both; then A is killed. B's clients see no error.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for (port, counted) in [(a.port(), false), (b.port(), true)] {
        for w in 0..4 {
            let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
            workers.push(std::thread::spawn(move || {
                let Ok(mut c) = RawConn::try_connect(port) else {
                    return;
                };
                let key = format!("load{w}");
                while !stop.load(Ordering::Relaxed) {
                    let ok = c.send(&encode(&["INCR", &key])).is_ok()
                        && c.read_frame().is_ok_and(|r| r.starts_with(b":"));
                    if !counted {
                        if !ok {
                            return;
                        }
                        continue;
                    }
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }));
        }
    }
    assert!(
        poll_until(Duration::from_secs(10), || (done.load(Ordering::Relaxed)
            > 200)
            .then_some(()))
        .is_some()
    );
    a.kill9();
    let before = done.load(Ordering::Relaxed);
    assert!(
        poll_until(Duration::from_secs(10), || (done.load(Ordering::Relaxed)
            > before + 500)
            .then_some(()))
        .is_some(),
        "B's clients stalled after A died"
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "B's clients saw errors");
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

#[test]
fn bad_topologies_dead_shards_and_clients_that_never_read() {
    let (mut nodes, map) = three_shards(&[]);
    let proxy = ProxyProcess::start(
        &map,
        &[
            "--backend-timeout-ms",
            "500",
            "--metrics-port",
            &free_port().to_string(),
        ],
    );
    let p = proxy.port();
    // Bad and stale topologies are refused with the reason; the old one stays.
    let r = text(p, &["AA.TOPOLOGY", "SET", "5", "0-100=nohost"]);
    assert!(
        r.starts_with("-ERR topology refused:") && r.contains("\"nohost\" is not HOST:PORT"),
        "{r}"
    );
    assert_eq!(text(p, &["AA.TOPOLOGY", "SET", "2", &map]), "+OK\r\n");
    let r = text(p, &["AA.TOPOLOGY", "SET", "2", &map]);
    assert!(r.contains("is not newer"), "{r}");
    assert_eq!(text(p, &["SET", "foo", "1"]), "+OK\r\n");

    // A client that pipelines many reads of a big value and never reads a reply: the proxy
    // stops reading it, holds bounded memory, and serves everyone else.
    let big = "x".repeat(64 * 1024);
    assert_eq!(text(p, &["SET", "big", &big]), "+OK\r\n");
    let pid = proxy.pid().expect("proxy pid");
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let mut greedy = TcpStream::connect(("127.0.0.1", p)).expect("connect");
    greedy.set_nonblocking(true).expect("nonblocking");
    let request = encode(&["GET", "big"]);
    let mut written = 0usize;
    for _ in 0..20_000 {
        match greedy.write(&request) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    assert!(written > 0);
    for _ in 0..50 {
        assert_eq!(text(p, &["GET", "foo"]), "$1\r\n1\r\n");
    }
    let kib = rss();
    assert!(
        kib < 200 * 1024,
        "the proxy holds {kib} KiB for a client that does not read"
    );
    let mut sink = [0u8; 1024];
    let _ = greedy.read(&mut sink);
    drop(greedy);

    // A dead shard with no replica: its keys fail within the backend timeout with a
    // sentence; the other shards are still served.
    nodes[2].kill9();
    let r = text(p, &["GET", "foo"]); // shard 2
    assert!(
        r.starts_with("-CLUSTERDOWN") || r.contains("may or may not"),
        "{r}"
    );
    let r = text(p, &["GET", "foo"]);
    assert!(r.starts_with("-CLUSTERDOWN shard 2 is unreachable"), "{r}");
    assert_eq!(text(p, &["SET", "bar", "2"]), "+OK\r\n"); // shard 0
    let r = text(p, &["MGET", "bar", "foo"]);
    assert!(r.starts_with("-CLUSTERDOWN"), "{r}");
    // Slots no shard serves.
    let partial = "0-5460=127.0.0.1:".to_string() + &nodes[0].port().to_string();
    assert_eq!(text(p, &["AA.TOPOLOGY", "SET", "3", &partial]), "+OK\r\n");
    assert_eq!(
        text(p, &["GET", "foo"]),
        "-CLUSTERDOWN Hash slot 12182 is not served\r\n"
    );
    assert_eq!(text(p, &["GET", "bar"]), "$1\r\n2\r\n");
}

#[test]
fn passwords_resp3_and_metrics_through_the_proxy() {
    let (nodes, map) = {
        let nodes: Vec<ShardNode> = (0..3)
            .map(|i| NodeBuilder::new().shard(i).requirepass("s3cret").start())
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let map = map_of(&addrs);
        for n in &nodes {
            push(n.port(), 1, &map, Some("s3cret"));
        }
        (nodes, map)
    };
    let metrics_port = free_port();
    let proxy = ProxyProcess::start(
        &map,
        &[
            "--requirepass",
            "s3cret",
            "--metrics-port",
            &metrics_port.to_string(),
        ],
    );
    let mut c = RawConn::connect(proxy.port());
    assert_eq!(
        c.cmd_str(&["GET", "k"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert!(c.cmd_str(&["AUTH", "wrong"]).starts_with(b"-WRONGPASS"));
    let hello = c.cmd_str(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    assert_eq!(c.cmd_str(&["GET", "missing"]), b"_\r\n");
    assert_eq!(c.cmd_str(&["HSET", "h", "f", "v"]), b":1\r\n");
    assert_eq!(
        c.cmd_str(&["HGETALL", "h"]),
        b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(c.cmd_str(&["MGET", "h", "missing"]), b"*2\r\n_\r\n_\r\n");
    // Inline commands too.
    c.send(b"PING\r\n").expect("send");
    assert_eq!(c.read_frame().expect("reply"), b"+PONG\r\n");
    // The address announced to cluster clients can be set (the operator's region endpoint).
    assert!(c
        .cmd_str(&["AA.TOPOLOGY", "ANNOUNCE", "nowhere"])
        .starts_with(b"-ERR announce refused"));
    assert_eq!(
        c.cmd_str(&["AA.TOPOLOGY", "ANNOUNCE", "10.1.2.3:7000"]),
        b"+OK\r\n"
    );
    let slots = String::from_utf8_lossy(&c.cmd_str(&["CLUSTER", "SLOTS"])).into_owned();
    assert!(
        slots.contains("10.1.2.3") && slots.contains(":7000"),
        "{slots}"
    );
    drop(nodes);

    let body = {
        let mut s = TcpStream::connect(("127.0.0.1", metrics_port)).expect("metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    };
    assert!(
        body.contains("shard_node_proxy_topology_version 0"),
        "{body}"
    );
    assert!(
        body.contains("shard_node_proxy_requests_total{shard=\"2\"}"),
        "{body}"
    );
    assert!(
        body.contains("shard_node_proxy_connected_clients 1"),
        "{body}"
    );
}

#[test]
fn failover_behind_a_proxy_loses_no_acknowledged_write_and_applies_none_twice() {
    // Shard 0 has a replica; the counter is in its slots.
    let key = "bar"; // slot 5061
    let mut primary = NodeBuilder::new().shard(0).start();
    let replica = NodeBuilder::new()
        .shard(0)
        .arg("--replicaof")
        .arg(format!("127.0.0.1:{}", primary.port()))
        .start();
    let others: Vec<ShardNode> = (1..3)
        .map(|i| NodeBuilder::new().shard(i).start())
        .collect();
    let mut addrs = vec![format!(
        "127.0.0.1:{}|127.0.0.1:{}",
        primary.port(),
        replica.port()
    )];
    addrs.extend(others.iter().map(|n| format!("127.0.0.1:{}", n.port())));
    let map = map_of(&addrs);
    for port in [primary.port(), replica.port()]
        .into_iter()
        .chain(others.iter().map(ShardNode::port))
    {
        push(port, 1, &map, None);
    }
    let proxy = ProxyProcess::start(&map, &[]);
    assert!(poll_until(Duration::from_secs(10), || {
        text(replica.port(), &["ROLE"])
            .contains("connected")
            .then_some(())
    })
    .is_some());

    // A writer: INCR, then WAIT 1 (the replica has it); acknowledged = both succeeded.
    let port = proxy.port();
    let acked = Arc::new(AtomicU64::new(0));
    let maybe = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, maybe, stop) = (acked.clone(), maybe.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = RawConn::connect(port);
            while !stop.load(Ordering::Relaxed) {
                let r = c.cmd_str(&["INCR", key]);
                if r.starts_with(b":") {
                    maybe.fetch_add(1, Ordering::Relaxed);
                    // A short timeout: after the failover the shard has no replica left.
                    if c.cmd_str(&["WAIT", "1", "200"]) == b":1\r\n" {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                } else if String::from_utf8_lossy(&r).contains("may or may not") {
                    maybe.fetch_add(1, Ordering::Relaxed);
                }
                // Any other error (CLUSTERDOWN) was refused before it ran.
            }
        })
    };
    let grow = |counter: &AtomicU64, by: u64, what: &str| {
        let from = counter.load(Ordering::Relaxed);
        assert!(
            poll_until(Duration::from_secs(20), || (counter
                .load(Ordering::Relaxed)
                >= from + by)
                .then_some(()))
            .is_some(),
            "{what}:\n{}",
            proxy.log()
        );
    };
    grow(&acked, 50, "no acknowledged writes before the failover");
    primary.kill9();
    assert_eq!(text(replica.port(), &["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
    let promoted = map_of(&[
        format!("127.0.0.1:{}", replica.port()),
        addrs[1].clone(),
        addrs[2].clone(),
    ]);
    push(replica.port(), 2, &promoted, None);
    // The proxy may have learned version 2 from the promoted node by itself already (it asks
    // the shard's nodes when its primary goes away); then the push is refused as not newer.
    let reply = RawConn::connect(proxy.port()).cmd_str(&["AA.TOPOLOGY", "SET", "2", &promoted]);
    if reply != b"+OK\r\n" {
        let held = text(proxy.port(), &["AA.TOPOLOGY", "GET"]);
        assert!(
            String::from_utf8_lossy(&reply).contains("is not newer than the current version 2")
                && held.contains(&format!("127.0.0.1:{}", replica.port())),
            "push refused: {}; the proxy holds {held}",
            String::from_utf8_lossy(&reply)
        );
    }
    // With no replica left, WAIT 1 answers 0: count the writes that were applied.
    grow(&maybe, 20, "writes through the proxy did not resume");
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let value: u64 = text(proxy.port(), &["GET", key])
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("the counter");
    let (acked, maybe) = (acked.load(Ordering::Relaxed), maybe.load(Ordering::Relaxed));
    assert!(
        value >= acked,
        "acknowledged increments lost: value {value} < {acked} acknowledged"
    );
    assert!(
        value <= maybe,
        "an increment was applied twice: value {value} > {maybe} that may have run"
    );
}

#[test]
fn replies_stay_in_order_and_node_commands_stay_out() {
    let (_nodes, map) = three_shards(&[]);
    let proxy = ProxyProcess::start(&map, &["--backend-timeout-ms", "500"]);
    let p = proxy.port();
    let mut c = RawConn::connect(p);
    assert_eq!(c.cmd_str(&["SET", "foo", "v"]), b"+OK\r\n");
    // UNSUBSCRIBE without subscriptions: one reply per channel, answered by the proxy, and the
    // shared connections stay in step.
    c.send(&encode(&["UNSUBSCRIBE", "a", "b"])).expect("send");
    assert_eq!(
        c.read_frame().expect("first"),
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"
    );
    assert_eq!(
        c.read_frame().expect("second"),
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"
    );
    for _ in 0..20 {
        assert_eq!(text(p, &["GET", "foo"]), "$1\r\nv\r\n");
    }
    // A transaction pipelined with what comes before and after it runs in the order sent.
    let mut batch = Vec::new();
    for args in [
        &["SET", "{t}k", "1"][..],
        &["MULTI"],
        &["PING"],
        &["INCR", "{t}k"],
        &["EXEC"],
        &["GET", "{t}k"],
        &["HELLO", "3"],
        &["INCR", "{t}k"],
        &["GET", "{t}k"],
    ] {
        batch.extend(encode(args));
    }
    c.send(&batch).expect("send");
    let replies: Vec<String> = (0..9)
        .map(|_| String::from_utf8_lossy(&c.read_frame().expect("reply")).into_owned())
        .collect();
    assert_eq!(replies[0], "+OK\r\n");
    assert_eq!(replies[1], "+OK\r\n");
    assert_eq!(replies[2], "+QUEUED\r\n");
    assert_eq!(replies[3], "+QUEUED\r\n");
    assert_eq!(replies[4], "*2\r\n+PONG\r\n:2\r\n");
    assert_eq!(replies[5], "$1\r\n2\r\n");
    assert!(replies[6].starts_with("%7\r\n"), "{}", replies[6]);
    assert_eq!(replies[7], ":3\r\n");
    assert_eq!(replies[8], "$1\r\n3\r\n");

    // Commands of one node are refused, inside a transaction too.
    let mut c = RawConn::connect(p);
    for args in [
        &["REPLICAOF", "NO", "ONE"][..],
        &["AA.PEER", "SET", "x", "127.0.0.1:1"],
        &["CLIENT", "REPLY", "OFF"],
        &["CONFIG", "SET", "requirepass", "x"],
        &["SHUTDOWN"],
    ] {
        let r =
            String::from_utf8_lossy(&c.cmd(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>()))
                .into_owned();
        assert!(r.starts_with("-ERR"), "{args:?}: {r}");
    }
    assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert!(c.cmd_str(&["REPLICAOF", "NO", "ONE"]).starts_with(b"-ERR"));
    assert!(c.cmd_str(&["EXEC"]).starts_with(b"-EXECABORT"));
    // A RESP3 subscriber cannot reach the node with anything but subscriptions.
    let mut s = RawConn::connect(p);
    assert!(s.cmd_str(&["HELLO", "3"]).starts_with(b"%7"));
    assert!(s.cmd_str(&["SUBSCRIBE", "ch"]).starts_with(b">3"));
    let r = String::from_utf8_lossy(&s.cmd_str(&["REPLICAOF", "NO", "ONE"])).into_owned();
    assert!(r.contains("Can't execute 'replicaof'"), "{r}");
    // WAIT longer than the backend timeout answers a count, not an error.
    assert_eq!(c.cmd_str(&["SET", "foo", "w"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["WAIT", "1", "1200"]), b":0\r\n");
}

#[test]
fn a_proxy_that_missed_a_push_follows_the_nodes_and_sends_refused_requests_again() {
    // Shard 0 has a replica; the proxy never hears of the switch below from a push.
    let primary = NodeBuilder::new().shard(0).start();
    let replica = NodeBuilder::new()
        .shard(0)
        .arg("--replicaof")
        .arg(format!("127.0.0.1:{}", primary.port()))
        .start();
    let others: Vec<ShardNode> = (1..3)
        .map(|i| NodeBuilder::new().shard(i).start())
        .collect();
    let (p0, r0) = (
        format!("127.0.0.1:{}", primary.port()),
        format!("127.0.0.1:{}", replica.port()),
    );
    let rest: Vec<String> = others
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let map = map_of(&[format!("{p0}|{r0}"), rest[0].clone(), rest[1].clone()]);
    for port in [primary.port(), replica.port()]
        .into_iter()
        .chain(others.iter().map(ShardNode::port))
    {
        push(port, 1, &map, None);
    }
    let proxy = ProxyProcess::start(&map, &[]);
    let p = proxy.port();
    assert_eq!(text(p, &["SET", "bar", "0"]), "+OK\r\n"); // shard 0
    assert!(poll_until(Duration::from_secs(10), || {
        text(replica.port(), &["ROLE"])
            .contains("connected")
            .then_some(())
    })
    .is_some());
    // A planned switchover done on the nodes only: the replica becomes the primary, the old
    // primary follows it, and both learn topology version 2.
    assert_eq!(text(replica.port(), &["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
    let (host, port) = r0.rsplit_once(':').expect("address");
    assert_eq!(text(primary.port(), &["REPLICAOF", host, port]), "+OK\r\n");
    let switched = map_of(&[format!("{r0}|{p0}"), rest[0].clone(), rest[1].clone()]);
    push(replica.port(), 2, &switched, None);
    push(primary.port(), 2, &switched, None);
    // The old primary refuses writes with MOVED; the proxy learns version 2 from the nodes
    // and sends each refused increment again, in order, once.
    let mut c = RawConn::connect(p);
    let mut batch = Vec::new();
    for _ in 0..50 {
        batch.extend(encode(&["INCR", "bar"]));
    }
    c.send(&batch).expect("send");
    for i in 1..=50 {
        assert_eq!(
            String::from_utf8_lossy(&c.read_frame().expect("reply")),
            format!(":{i}\r\n")
        );
    }
    assert_eq!(text(replica.port(), &["GET", "bar"]), "$2\r\n50\r\n");
    let topology = text(p, &["AA.TOPOLOGY", "GET"]);
    assert!(topology.starts_with("*3\r\n:2\r\n"), "{topology}");
}
