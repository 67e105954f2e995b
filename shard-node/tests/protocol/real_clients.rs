//! Real Redis clients against shard-node: `redis-benchmark`, `redis-cli` and the `redis` crate.
//!
//! Where the output is deterministic it is compared with the output of the same client
//! against Debian's `redis-server`, so these tests state "works like Redis 7" literally.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{connect_async, require_command, NodeBuilder, RedisServer, POLL_INTERVAL};

/// Runs `cmd` with stdout and stderr captured in one file; kills it after `timeout`.
fn run_captured(cmd: &mut Command, timeout: Duration) -> (ExitStatus, String) {
    let out = tempfile::tempfile().expect("temporary file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().expect("clone")))
        .stderr(Stdio::from(out.try_clone().expect("clone")))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(s) => break s,
            None if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} did not finish within {timeout:?}");
            }
        }
    };
    let mut out = out;
    std::io::Seek::rewind(&mut out).expect("rewind");
    let mut bytes = Vec::new();
    out.read_to_end(&mut bytes).expect("read output");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    require_command("redis-cli", "redis-tools");
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let (status, out) = run_captured(&mut cmd, Duration::from_secs(30));
    assert!(status.success(), "{cmd:?} exited with {status}: {out}");
    out
}

/// `(test name, requests per second)` from `redis-benchmark -q` output.
fn benchmark_results(out: &str) -> Vec<(String, f64)> {
    out.split(['\r', '\n'])
        .filter_map(|line| {
            let (name, rest) = line.split_once(": ")?;
            let rps = rest
                .strip_suffix(" requests per second")
                .or_else(|| rest.split_once(" requests per second").map(|(r, _)| r))?;
            Some((name.trim().to_owned(), rps.trim().parse().ok()?))
        })
        .collect()
}

fn run_benchmark(port: u16) -> (ExitStatus, String) {
    require_command("redis-benchmark", "redis-tools");
    let mut cmd = Command::new("redis-benchmark");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "-n",
        "10000",
    ]);
    run_captured(&mut cmd, Duration::from_secs(600))
}

#[test]
fn redis_benchmark_default_suite_runs_clean() {
    let redis = RedisServer::start();
    let (status, out) = run_benchmark(redis.port());
    assert!(
        status.success(),
        "redis-benchmark against redis-server: {out}"
    );
    let want: BTreeSet<String> = benchmark_results(&out)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(want.len() >= 15, "unexpected redis-benchmark output: {out}");
    drop(redis);

    let mut node = NodeBuilder::new().start();
    let (status, out) = run_benchmark(node.port());
    assert!(
        status.success(),
        "redis-benchmark exited with {status}:\n{out}"
    );
    let bad: Vec<&str> = out
        .split(['\r', '\n'])
        .filter(|l| {
            l.contains("ERR")
                || l.to_ascii_lowercase().contains("error")
                // redis-benchmark reads `save` and `appendonly` with CONFIG GET first.
                || l.contains("Could not fetch server CONFIG")
        })
        .collect();
    assert!(bad.is_empty(), "redis-benchmark reported errors: {bad:#?}");
    let results = benchmark_results(&out);
    let got: BTreeSet<String> = results.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(got, want, "tests missing from the output:\n{out}");
    for (name, rps) in &results {
        assert!(*rps > 0.0, "{name}: {rps} requests per second");
    }
    node.assert_running();
}

/// Commands whose `redis-cli --no-raw` output is deterministic, in order.
const RESP2_SCRIPT: &[&str] = &[
    "PING",
    "PING hello",
    "ECHO hello",
    "SET s v",
    "GET s",
    "GET missing",
    "SET s v2 NX",
    "SET s v3 XX GET",
    "SETNX s other",
    "APPEND s -tail",
    "STRLEN s",
    "GETRANGE s 0 2",
    "SETRANGE s 1 XY",
    "GET s",
    "GETDEL missing",
    "INCR n",
    "INCRBY n 10",
    "DECR n",
    "DECRBY n 3",
    "INCRBYFLOAT f 1.5",
    "INCRBYFLOAT f 0.25",
    "MSET a 1 b 2",
    "MGET a b missing",
    "EXISTS a b missing",
    "DEL a missing",
    "UNLINK b",
    "TYPE s",
    "TYPE missing",
    "LPUSH l a b c",
    "RPUSH l d",
    "LRANGE l 0 -1",
    "LLEN l",
    "LPOP l",
    "RPOP l",
    "LINDEX l 1",
    "LINDEX l 99",
    "LSET l 0 z",
    "LRANGE l 0 -1",
    "LREM l 0 nope",
    "HSET h f1 v1",
    "HSET h f1 v1b f2 v2",
    "HGET h f1",
    "HMGET h f1 f2 nope",
    "HLEN h",
    "HEXISTS h f2",
    "HINCRBY h n 5",
    "HDEL h f2 nope",
    "HSETNX h f1 x",
    "HGETALL one",
    "HSET one k v",
    "HGETALL one",
    "SADD s1 a b c",
    "SADD s1 a",
    "SCARD s1",
    "SISMEMBER s1 a",
    "SMISMEMBER s1 a z",
    "SREM s1 b zz",
    "SADD single only",
    "SMEMBERS single",
    "SMEMBERS nothing",
    "ZADD z 1 a 2 b 3 c",
    "ZADD z NX 9 a",
    "ZADD z XX CH 4 c",
    "ZRANGE z 0 -1 WITHSCORES",
    "ZRANGE z 0 -1 REV",
    "ZSCORE z b",
    "ZSCORE z nope",
    "ZINCRBY z 1.5 a",
    "ZRANK z c",
    "ZREVRANK z c",
    "ZCARD z",
    "ZCOUNT z 1 3",
    "ZRANGEBYSCORE z 1 3",
    "ZRANGE z (1 +inf BYSCORE LIMIT 0 1",
    "ZPOPMIN z",
    "ZMSCORE z a nope",
    "EXPIRE s 100",
    "TTL s",
    "PERSIST s",
    "TTL s",
    "TTL missing",
    "PTTL missing",
    "LPUSH s x",
    "GET l",
    "INCR s",
    "INCRBY n notanumber",
    "HINCRBY h f1 1",
    "SET k v EX 0",
    "SET k v EX notanumber",
    "GET",
    "NOSUCHCOMMAND a b",
    "SELECT 0",
    "DBSIZE",
    "EXISTS s l h one s1 single z n f",
];

/// RESP3 types through `redis-cli -3`: maps, sets, doubles, nulls.
const RESP3_SCRIPT: &[&str] = &[
    "HSET r3h f v",
    "HGETALL r3h",
    "HGETALL nothing",
    "SADD r3s m",
    "SMEMBERS r3s",
    "SMEMBERS nothing",
    "ZADD r3z 1.5 a",
    "ZSCORE r3z a",
    "ZSCORE r3z nope",
    "ZINCRBY r3z 1 a",
    "ZRANGE r3z 0 -1 WITHSCORES",
    "GET nothing",
    "INCRBYFLOAT r3f 2.5",
    "SMISMEMBER r3s m x",
    "GET",
];

fn script_outputs(port: u16, resp3: bool, script: &[&str]) -> Vec<String> {
    script
        .iter()
        .map(|line| {
            let mut args = vec!["--no-raw"];
            if resp3 {
                args.push("-3");
            }
            args.extend(line.split_whitespace());
            redis_cli(port, &args)
        })
        .collect()
}

fn compare_scripts(resp3: bool, script: &[&str]) {
    let redis = RedisServer::start();
    let want = script_outputs(redis.port(), resp3, script);
    let mut node = NodeBuilder::new().start();
    let got = script_outputs(node.port(), resp3, script);
    let diffs: Vec<String> = script
        .iter()
        .zip(want.iter().zip(&got))
        .filter(|(_, (w, g))| w != g)
        .map(|(cmd, (w, g))| format!("{cmd}\n    redis-server: {w:?}\n    shard-node:   {g:?}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{} of {} redis-cli outputs differ:\n  {}",
        diffs.len(),
        script.len(),
        diffs.join("\n  ")
    );
    node.assert_running();
}

#[test]
fn redis_cli_resp2_output_matches_redis() {
    compare_scripts(false, RESP2_SCRIPT);
}

#[test]
fn redis_cli_resp3_output_matches_redis() {
    compare_scripts(true, RESP3_SCRIPT);
}

/// Keys of a `HELLO 3` reply printed by `redis-cli -3` in raw mode (key and value alternate).
fn hello_fields(out: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .map(|kv| {
            (
                kv[0].to_owned(),
                kv.get(1).copied().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn redis_cli_info_and_hello() {
    let redis = RedisServer::start();
    let want_hello = hello_fields(&redis_cli(redis.port(), &["-3", "HELLO", "3"]));
    drop(redis);
    let mut node = NodeBuilder::new().start();
    let port = node.port();

    let info = redis_cli(port, &["INFO"]);
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Replication",
        "# Keyspace",
    ] {
        assert!(
            info.lines().any(|l| l.trim_end() == section),
            "INFO lacks `{section}`:\n{info}"
        );
    }
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
            .map(str::to_owned)
    };
    assert!(
        field("redis_version").is_some(),
        "no redis_version:\n{info}"
    );
    assert_eq!(field("role").as_deref(), Some("master"), "{info}");
    for numeric in ["connected_clients", "used_memory", "tcp_port"] {
        let v = field(numeric).unwrap_or_else(|| panic!("INFO lacks {numeric}:\n{info}"));
        assert!(v.parse::<u64>().is_ok(), "{numeric}:{v} is not a number");
    }
    assert_eq!(field("tcp_port"), Some(port.to_string()));

    let memory = redis_cli(port, &["INFO", "memory"]);
    assert!(memory.contains("used_memory:"), "INFO memory: {memory}");
    assert!(
        !memory.contains("# Server"),
        "INFO memory printed other sections"
    );

    let hello = hello_fields(&redis_cli(port, &["-3", "HELLO", "3"]));
    let keys = |f: &[(String, String)]| f.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&hello), keys(&want_hello), "HELLO 3 fields");
    let value = |f: &[(String, String)], k: &str| {
        f.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    };
    for k in ["proto", "mode", "role"] {
        assert_eq!(value(&hello, k), value(&want_hello, k), "HELLO 3 field {k}");
    }
    let pretty = redis_cli(port, &["--no-raw", "-3", "HELLO", "3"]);
    assert!(
        pretty.contains("\"proto\" => (integer) 3"),
        "redis-cli -3 HELLO 3: {pretty}"
    );
    assert_eq!(redis_cli(port, &["PING"]), "PONG\n");
    node.assert_running();
}

#[test]
fn redis_crate_pipelines_transactions_and_resp3() {
    let mut node = NodeBuilder::new().start();
    let url = node.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut con = connect_async(&url).await;

        // A long pipeline: replies come back in order.
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.cmd("INCRBY").arg("pipe:n").arg(i);
        }
        let replies: Vec<i64> = pipe.query_async(&mut con).await.expect("pipeline");
        let expected: Vec<i64> = (0..1000)
            .scan(0, |acc, i| {
                *acc += i;
                Some(*acc)
            })
            .collect();
        assert_eq!(replies, expected);

        // MULTI/EXEC.
        let (n, s): (i64, String) = redis::pipe()
            .atomic()
            .cmd("INCRBY")
            .arg("tx:n")
            .arg(5)
            .cmd("SET")
            .arg("tx:s")
            .arg("x")
            .ignore()
            .cmd("GET")
            .arg("tx:s")
            .query_async(&mut con)
            .await
            .expect("MULTI/EXEC");
        assert_eq!((n, s.as_str()), (5, "x"));

        // RESP3 through HELLO 3.
        let mut con3 = connect_async(&format!("{url}?protocol=resp3")).await;
        let _: i64 = redis::cmd("HSET")
            .arg("r3:h")
            .arg("a")
            .arg("1")
            .arg("b")
            .arg("2")
            .query_async(&mut con3)
            .await
            .expect("HSET over RESP3");
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg("r3:h")
            .query_async(&mut con3)
            .await
            .expect("HGETALL over RESP3");
        assert_eq!(
            h,
            HashMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        let score: f64 = redis::cmd("ZINCRBY")
            .arg("r3:z")
            .arg(2.5)
            .arg("m")
            .query_async(&mut con3)
            .await
            .expect("ZINCRBY over RESP3");
        assert_eq!(score, 2.5);
    });
    node.assert_running();
}
