//! Hash-slot sharding on real processes: three shard-nodes, each owning a third of the slots
//! through a pushed topology (`AA.TOPOLOGY SET`), answered as Redis Cluster answers: `MOVED`
//! to the owner, `CROSSSLOT` for keys of one command in different slots, `CLUSTERDOWN` for a
//! slot no shard owns, and the Cluster API that cluster-aware clients read. `redis-cli -c` and
//! the `redis` crate's cluster client work against them unmodified; a replica redirects to its
//! primary unless the connection sent `READONLY`; a bad `--shard-map` stops the node at start
//! with a sentence.

use crate::common;
use crate::common::{poll_until, require_command, NodeBuilder, RawConn, ShardNode};
use std::process::Command;
use std::time::Duration;

/// Three nodes, shard i on node i, and the shard map that describes them.
fn three_shards() -> (Vec<ShardNode>, String) {
    let nodes: Vec<ShardNode> = (0..3)
        .map(|i| NodeBuilder::new().shard(i).start())
        .collect();
    let ranges = ["0-5460", "5461-10922", "10923-16383"];
    let map = nodes
        .iter()
        .zip(ranges)
        .map(|(n, r)| format!("{r}=127.0.0.1:{}", n.port()))
        .collect::<Vec<_>>()
        .join(",");
    for n in &nodes {
        push(n.port(), 1, &map);
    }
    (nodes, map)
}

fn push(port: u16, version: u64, map: &str) {
    let reply = RawConn::connect(port).cmd_str(&["AA.TOPOLOGY", "SET", &version.to_string(), map]);
    assert_eq!(reply, b"+OK\r\n", "{}", String::from_utf8_lossy(&reply));
}

/// The number of keys on the node at `port`.
fn dbsize(port: u16) -> i64 {
    let r = text(port, &["DBSIZE"]);
    r.trim_start_matches(':').trim().parse().expect("DBSIZE")
}

fn text(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&RawConn::connect(port).cmd_str(args)).into_owned()
}

fn redis_cli(args: &[&str]) -> String {
    require_command("redis-cli", "redis-tools");
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn keys_of_other_shards_are_redirected_like_redis_cluster() {
    let (nodes, _) = three_shards();
    let p: Vec<u16> = nodes.iter().map(ShardNode::port).collect();
    // foo is in slot 12182 (shard 2), bar in 5061 (shard 0).
    assert_eq!(
        text(p[0], &["SET", "foo", "1"]),
        format!("-MOVED 12182 127.0.0.1:{}\r\n", p[2])
    );
    assert_eq!(text(p[2], &["SET", "foo", "1"]), "+OK\r\n");
    assert_eq!(text(p[2], &["GET", "foo"]), "$1\r\n1\r\n");
    assert_eq!(
        text(p[2], &["GET", "bar"]),
        format!("-MOVED 5061 127.0.0.1:{}\r\n", p[0])
    );
    assert_eq!(
        text(p[0], &["MSET", "foo", "1", "bar", "2"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        text(p[0], &["MSET", "{bar}a", "1", "{bar}b", "2"]),
        "+OK\r\n"
    );
    // Keys that follow a count are routed too.
    assert_eq!(
        text(p[0], &["LMPOP", "2", "foo", "bar", "LEFT"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        text(p[0], &["SINTERCARD", "1", "foo"]),
        format!("-MOVED 12182 127.0.0.1:{}\r\n", p[2])
    );
    assert_eq!(text(p[0], &["LMPOP", "1", "bar", "LEFT"]), "*-1\r\n");
    assert_eq!(text(p[1], &["CLUSTER", "KEYSLOT", "{bar}a"]), ":5061\r\n");
    assert_eq!(
        text(p[0], &["CLUSTER", "COUNTKEYSINSLOT", "5061"]),
        ":2\r\n"
    );
    assert_eq!(
        text(p[1], &["CLUSTER", "COUNTKEYSINSLOT", "5061"]),
        ":0\r\n"
    );
    // A transaction queues only what this shard owns.
    let mut c = RawConn::connect(p[0]);
    assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert!(c.cmd_str(&["SET", "foo", "x"]).starts_with(b"-MOVED 12182"));
    assert_eq!(c.cmd_str(&["SET", "bar", "x"]), b"+QUEUED\r\n");
    assert!(c
        .cmd_str(&["EXEC"])
        .starts_with(b"-EXECABORT Transaction discarded because of previous errors"));
    // Key-less commands are this node's own.
    assert_eq!(text(p[1], &["DBSIZE"]), ":0\r\n");

    // A slot no shard owns is down; the answer names it.
    let lonely = NodeBuilder::new().start();
    push(
        lonely.port(),
        1,
        &format!("0-100=127.0.0.1:{}", lonely.port()),
    );
    assert_eq!(
        text(lonely.port(), &["GET", "foo"]),
        "-CLUSTERDOWN Hash slot 12182 not served\r\n"
    );
    assert!(text(lonely.port(), &["CLUSTER", "INFO"]).contains("cluster_state:fail"));
}

#[test]
fn the_cluster_api_describes_every_shard() {
    let (nodes, map) = three_shards();
    let p: Vec<u16> = nodes.iter().map(ShardNode::port).collect();
    let slots = text(p[1], &["CLUSTER", "SLOTS"]);
    for (i, range) in [("0", "5460"), ("5461", "10922"), ("10923", "16383")]
        .iter()
        .enumerate()
    {
        let entry = format!(
            "*3\r\n:{}\r\n:{}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{}\r\n",
            range.0, range.1, p[i]
        );
        assert!(slots.contains(&entry), "{entry:?} not in {slots:?}");
    }
    let nodes_text = text(p[1], &["CLUSTER", "NODES"]);
    assert_eq!(nodes_text.matches("master").count(), 3, "{nodes_text}");
    assert!(nodes_text.contains(&format!(
        "127.0.0.1:{}@{} myself,master",
        p[1],
        u32::from(p[1]) + 10000
    )));
    // Every node names every node alike.
    let myid = text(p[1], &["CLUSTER", "MYID"]);
    let id = myid.lines().nth(1).expect("an id").to_string();
    assert_eq!(id.len(), 40);
    assert!(text(p[0], &["CLUSTER", "NODES"]).contains(&id));
    assert!(text(p[2], &["CLUSTER", "SHARDS"]).contains(&id));
    assert!(text(p[0], &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
    assert!(text(p[0], &["CLUSTER", "INFO"]).contains("cluster_known_nodes:3"));

    // A stale or malformed push is refused and the topology in force stays.
    assert!(text(p[0], &["AA.TOPOLOGY", "SET", "1", &map]).contains("is not newer"));
    assert!(text(p[0], &["AA.TOPOLOGY", "SET", "5", "0-16383=bad"]).contains("is not HOST:PORT"));
    assert!(text(p[0], &["AA.TOPOLOGY", "GET"]).starts_with("*3\r\n:1\r\n"));
}

#[test]
fn redis_cli_follows_redirections() {
    let (nodes, _) = three_shards();
    let p: Vec<u16> = nodes.iter().map(ShardNode::port).collect();
    let port = p[0].to_string();
    for i in 0..30 {
        let key = format!("cli:{i}");
        assert_eq!(
            redis_cli(&["-c", "-p", &port, "SET", &key, &i.to_string()]),
            "OK"
        );
    }
    for i in 0..30 {
        let key = format!("cli:{i}");
        assert_eq!(redis_cli(&["-c", "-p", &port, "GET", &key]), i.to_string());
    }
    let sizes: Vec<i64> = p.iter().map(|port| dbsize(*port)).collect();
    assert_eq!(sizes.iter().sum::<i64>(), 30);
    assert!(
        sizes.iter().all(|n| *n > 0),
        "keys spread over every shard: {sizes:?}"
    );
}

#[test]
fn redis_benchmark_runs_in_cluster_mode() {
    require_command("redis-benchmark", "redis-tools");
    let (nodes, _) = three_shards();
    let out = Command::new("redis-benchmark")
        .args(["--cluster", "-h", "127.0.0.1", "-p"])
        .arg(nodes[0].port().to_string())
        .args([
            "-t",
            "set,get,incr,lpush",
            "-n",
            "3000",
            "-r",
            "1000",
            "-c",
            "8",
            "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for test in ["SET", "GET", "INCR", "LPUSH"] {
        assert!(
            text.split(['\r', '\n'])
                .map(str::trim)
                .any(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second")),
            "no result for {test}: {text}"
        );
    }
    assert!(
        !text.contains("MOVED") && !text.to_lowercase().contains("error"),
        "{text}"
    );
    let keys: i64 = nodes
        .iter()
        .map(|n| {
            let size = dbsize(n.port());
            assert!(size > 0, "every shard got keys");
            size
        })
        .sum();
    assert!(keys > 0);
}

/// redis-py, installed once into a virtual environment under the target directory.
fn redis_py() -> std::path::PathBuf {
    common::python_env("redis-py-8.2.0", &["redis==8.2.0"])
}

#[test]
fn redis_py_cluster_client_works_unmodified() {
    let (nodes, _) = three_shards();
    let script = r#"
import sys
from redis.cluster import RedisCluster
rc = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
for i in range(200):
    rc.set(f"py:{i}", i)
assert [int(rc.get(f"py:{i}")) for i in range(200)] == list(range(200))
rc.mset_nonatomic({"{t}a": "1", "{t}b": "2"})
assert rc.mget_nonatomic(["{t}a", "{t}b"]) == [b"1", b"2"]
print(len(rc.get_primaries()))
"#;
    let out = Command::new(redis_py())
        .arg("-c")
        .arg(script)
        .arg(nodes[0].port().to_string())
        .output()
        .expect("run the redis-py script");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    let sizes: Vec<i64> = nodes.iter().map(|n| dbsize(n.port())).collect();
    assert_eq!(sizes.iter().sum::<i64>(), 202);
    assert!(
        sizes.iter().all(|n| *n > 30),
        "keys spread over every shard: {sizes:?}"
    );
}

#[test]
fn the_redis_crate_cluster_client_works_unmodified() {
    let (nodes, _) = three_shards();
    let urls: Vec<String> = nodes.iter().map(ShardNode::url).collect();
    let client = redis::cluster::ClusterClient::new(urls).expect("cluster client");
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .expect("SET through the cluster client");
    }
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut con)
            .expect("GET through the cluster client");
        assert_eq!(v, i);
    }
    let total: i64 = nodes
        .iter()
        .map(|n| {
            let size = dbsize(n.port());
            assert!(size > 50, "every shard holds a share of the keys: {size}");
            size
        })
        .sum();
    assert_eq!(total, 300);
}

#[test]
fn a_replica_redirects_unless_the_connection_reads_from_replicas() {
    let primary = NodeBuilder::new().start();
    let replica = NodeBuilder::new()
        .arg("--replicaof")
        .arg(format!("127.0.0.1:{}", primary.port()))
        .start();
    let map = format!(
        "0-16383=127.0.0.1:{}|127.0.0.1:{}",
        primary.port(),
        replica.port()
    );
    push(primary.port(), 1, &map);
    push(replica.port(), 1, &map);
    assert_eq!(text(primary.port(), &["SET", "foo", "v"]), "+OK\r\n");
    let moved = format!("-MOVED 12182 127.0.0.1:{}\r\n", primary.port());
    assert_eq!(text(replica.port(), &["GET", "foo"]), moved);
    assert_eq!(text(replica.port(), &["SET", "foo", "w"]), moved);
    let mut c = RawConn::connect(replica.port());
    assert_eq!(c.cmd_str(&["READONLY"]), b"+OK\r\n");
    let got = poll_until(Duration::from_secs(10), || {
        let r = c.cmd_str(&["GET", "foo"]);
        (r == b"$1\r\nv\r\n").then_some(r)
    });
    assert!(got.is_some(), "the replica serves reads after READONLY");
    assert_eq!(
        String::from_utf8_lossy(&c.cmd_str(&["SET", "foo", "w"])),
        moved
    );
    assert_eq!(c.cmd_str(&["READWRITE"]), b"+OK\r\n");
    assert_eq!(String::from_utf8_lossy(&c.cmd_str(&["GET", "foo"])), moved);
    let nodes = text(replica.port(), &["CLUSTER", "NODES"]);
    assert!(
        nodes.contains(&format!(
            "127.0.0.1:{}@{} myself,slave",
            replica.port(),
            u32::from(replica.port()) + 10000
        )),
        "{nodes}"
    );
}

#[test]
fn a_bad_shard_map_stops_the_node_with_a_sentence() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(common::shard_node_bin())
        .args(["server", "--bind", "127.0.0.1", "--port", "0", "--dir"])
        .arg(dir.path())
        .args([
            "--shard",
            "0",
            "--shard-map",
            "0-100=127.0.0.1:7000,50-200=127.0.0.1:7001",
        ])
        .output()
        .expect("run shard-node");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--shard-map is not usable: slot 50 is owned by both shard 0 and shard 1"),
        "{err}"
    );
}
