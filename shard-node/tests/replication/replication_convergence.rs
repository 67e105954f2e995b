//! Randomized convergence with real processes on loopback: three regions, each a primary plus
//! a replica, every link behind a fault proxy. Clients write a random workload over every
//! first-wave type (strings, counters, hashes, sets, sorted sets, lists, expiry, renames,
//! transactions, a FLUSHALL) to the three primaries while links are randomly partitioned,
//! delayed and healed, one primary and one replica are killed with SIGKILL and restarted.
//! After the final heal every node must report the same `AA.DIGEST` within 5 seconds (and then
//! the same vector clock).
//!
//! The seed is printed; `REPL_SEED=<seed> cargo test -p shard-node --test replication
//! replication_convergence::` replays the same workload and fault schedule (thread timing
//! still varies).

use crate::common::XorShift;
use crate::replication_support::{Client, Cluster, Reply};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const REGIONS: [&str; 3] = ["A", "B", "C"];
const CLIENTS_PER_REGION: usize = 2;
const ROUNDS: usize = 12;
const OPS_PER_ROUND: usize = 120;
/// Where the restarts happen (round numbers).
const KILL_PRIMARY: (usize, usize) = (3, 5);
const KILL_REPLICA: (usize, usize) = (7, 8);

fn seed() -> u64 {
    match std::env::var("REPL_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("REPL_SEED={s:?} is not a number")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            t ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

fn pick<'a>(rng: &mut XorShift, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

fn key(rng: &mut XorShift, prefix: &str) -> String {
    format!("{prefix}:{}", rng.below(5))
}

const VALUES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const PREFIXES: [&str; 11] = ["s", "c", "f", "h", "set", "z", "l", "mix", "{r}", "x", "p"];

/// One random command.
fn random_op(rng: &mut XorShift) -> Vec<String> {
    let v = |rng: &mut XorShift| pick(rng, &VALUES).to_owned();
    let n = |rng: &mut XorShift, lo: i64, hi: i64| {
        (lo + rng.below((hi - lo + 1) as u64) as i64).to_string()
    };
    let s = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let any = {
        let prefix = pick(rng, &PREFIXES);
        key(rng, prefix)
    };
    let mut cmd: Vec<String> = match rng.below(50) {
        0 => s(&["SET", &key(rng, "s"), &v(rng)]),
        1 => s(&["SET", &key(rng, "s"), &v(rng), "EX", "10000"]),
        2 => s(&["APPEND", &key(rng, "s"), &v(rng)]),
        3 => s(&["SETRANGE", &key(rng, "s"), &n(rng, 0, 4), &v(rng)]),
        4 => s(&["GETSET", &key(rng, "s"), &v(rng)]),
        5 => s(&["INCRBY", &key(rng, "c"), &n(rng, -5, 9)]),
        6 => s(&["DECRBY", &key(rng, "c"), &n(rng, 1, 4)]),
        7 => s(&["SET", &key(rng, "c"), &n(rng, 0, 50)]),
        8 => s(&[
            "INCRBYFLOAT",
            &key(rng, "f"),
            pick(rng, &["0.5", "1.25", "-0.75", "0.1", "2.2"]),
        ]),
        9 => s(&[
            "HSET",
            &key(rng, "h"),
            &format!("f{}", rng.below(4)),
            &v(rng),
        ]),
        10 => s(&["HDEL", &key(rng, "h"), &format!("f{}", rng.below(4))]),
        11 => s(&["HINCRBY", &key(rng, "h"), "n", &n(rng, -3, 5)]),
        12 => s(&[
            "HINCRBYFLOAT",
            &key(rng, "h"),
            "x",
            pick(rng, &["0.5", "0.1", "-1.5"]),
        ]),
        13 => s(&["SADD", &key(rng, "set"), &v(rng), &v(rng)]),
        14 => s(&["SREM", &key(rng, "set"), &v(rng)]),
        15 => s(&["SPOP", &key(rng, "set")]),
        16 => s(&[
            "ZADD",
            &key(rng, "z"),
            pick(rng, &["1", "2.5", "-3", "10"]),
            &v(rng),
        ]),
        17 => s(&[
            "ZINCRBY",
            &key(rng, "z"),
            pick(rng, &["1", "0.5", "-2", "0.1"]),
            &v(rng),
        ]),
        18 => s(&["ZREM", &key(rng, "z"), &v(rng)]),
        19 => s(&["LPUSH", &key(rng, "l"), &v(rng)]),
        20 => s(&["RPUSH", &key(rng, "l"), &v(rng), &v(rng)]),
        21 => s(&["LPOP", &key(rng, "l")]),
        22 => s(&["RPOP", &key(rng, "l")]),
        23 => s(&[
            "LINSERT",
            &key(rng, "l"),
            pick(rng, &["BEFORE", "AFTER"]),
            &v(rng),
            &v(rng),
        ]),
        24 => s(&["LSET", &key(rng, "l"), &n(rng, -2, 3), &v(rng)]),
        25 => s(&["LREM", &key(rng, "l"), &n(rng, -1, 1), &v(rng)]),
        26 => s(&["LTRIM", &key(rng, "l"), &n(rng, 0, 1), &n(rng, 2, 6)]),
        27 => s(&["DEL", &any]),
        28 => s(&["UNLINK", &any]),
        29 => s(&["EXPIRE", &any, "10000"]),
        30 => s(&["PEXPIRE", &any, &n(rng, 200, 1500)]),
        31 => s(&["PERSIST", &any]),
        32 => s(&["RENAME", &key(rng, "{r}"), &key(rng, "{r}")]),
        33 => s(&["SET", &key(rng, "{r}"), &v(rng)]),
        34 => s(&["SET", &key(rng, "mix"), &v(rng)]),
        35 => s(&["SADD", &key(rng, "mix"), &v(rng)]),
        36 => s(&["RPUSH", &key(rng, "mix"), &v(rng)]),
        37 => s(&["HSET", &key(rng, "mix"), "f", &v(rng)]),
        38 => s(&["ZADD", &key(rng, "mix"), "1", &v(rng)]),
        39 => s(&["INCR", &key(rng, "mix")]),
        40 => s(&["XADD", &key(rng, "x"), "*", "f", &v(rng)]),
        41 => s(&[
            "XADD",
            &key(rng, "x"),
            "MAXLEN",
            "=",
            "3",
            "*",
            "f",
            &v(rng),
        ]),
        42 => s(&["PFADD", &key(rng, "p"), &v(rng), &v(rng)]),
        43 => s(&["XADD", &key(rng, "mix"), "*", "f", &v(rng)]),
        44 => s(&["PFADD", &key(rng, "mix"), &v(rng)]),
        45 => s(&["XTRIM", &key(rng, "x"), "MAXLEN", "1"]),
        _ => Vec::new(), // a transaction, below
    };
    if cmd.is_empty() {
        cmd.push("MULTI".to_owned());
    }
    cmd
}

#[derive(Default)]
struct Stats {
    ops: u64,
    replies: BTreeMap<String, u64>,
    connection_errors: u64,
}

impl Stats {
    fn note(&mut self, reply: &Reply) {
        let kind = match reply {
            Reply::Error(e) => format!("-{}", e.split(' ').next().unwrap_or("")),
            _ => "ok".to_owned(),
        };
        *self.replies.entry(kind).or_default() += 1;
        // Errors of the workload itself would make the test weaker without anyone noticing.
        if let Reply::Error(e) = reply {
            assert!(
                !e.starts_with("ERR unknown command")
                    && !e.starts_with("ERR wrong number")
                    && !e.starts_with("ERR syntax"),
                "the workload sent a bad command: {e}"
            );
        }
    }
}

/// Runs `n` random operations against one primary.
fn run_ops(c: &mut Client, rng: &mut XorShift, n: usize, stats: &mut Stats) {
    for _ in 0..n {
        let cmd = random_op(rng);
        stats.ops += 1;
        let result = if cmd[0] == "MULTI" {
            let mut batch: Vec<Vec<Vec<u8>>> = vec![vec![b"MULTI".to_vec()]];
            let len = 2 + rng.below(3);
            for _ in 0..len {
                let mut op = random_op(rng);
                while op[0] == "MULTI" {
                    op = random_op(rng);
                }
                batch.push(op.into_iter().map(String::into_bytes).collect());
            }
            batch.push(vec![b"EXEC".to_vec()]);
            c.pipeline(&batch)
                .map(|mut r| r.pop().unwrap_or(Reply::Nil))
        } else {
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            c.call(&args)
        };
        match result {
            Ok(reply) => stats.note(&reply),
            Err(_) => stats.connection_errors += 1,
        }
    }
}

enum Order {
    Run(usize),
    Stop,
}

struct Worker {
    orders: mpsc::Sender<Order>,
    done: mpsc::Receiver<()>,
    handle: std::thread::JoinHandle<Stats>,
}

fn spawn_worker(mut client: Client, seed: u64) -> Worker {
    let (orders, rx) = mpsc::channel::<Order>();
    let (done_tx, done) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let mut rng = XorShift::new(seed);
        let mut stats = Stats::default();
        while let Ok(Order::Run(n)) = rx.recv() {
            run_ops(&mut client, &mut rng, n, &mut stats);
            if done_tx.send(()).is_err() {
                break;
            }
        }
        stats
    });
    Worker {
        orders,
        done,
        handle,
    }
}

#[test]
fn random_workload_with_partitions_and_crashes_converges() {
    let seed = seed();
    println!("REPL_SEED={seed}");
    eprintln!("REPL_SEED={seed} (set it to replay this run)");
    let started = Instant::now();
    let mut rng = XorShift::new(seed);
    let mut c = Cluster::start(&REGIONS, &[1, 1, 1]);
    c.wait_links_up(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("links did not come up: {e}"));

    let mut workers = Vec::new();
    for region in 0..REGIONS.len() {
        for k in 0..CLIENTS_PER_REGION {
            let client = c.new_client((region, 0));
            let wseed = seed
                ^ ((region * CLIENTS_PER_REGION + k + 1) as u64)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            workers.push(spawn_worker(client, wseed));
        }
    }
    let primary_victim = rng.below(REGIONS.len() as u64) as usize;
    let replica_victim = rng.below(REGIONS.len() as u64) as usize;
    let flush_round = 1 + rng.below(ROUNDS as u64 - 2) as usize;
    let mut schedule = Vec::new();
    for round in 0..ROUNDS {
        let mut log = Vec::new();
        log.push(c.random_fault(&mut rng));
        if rng.below(2) == 0 {
            log.push(c.random_fault(&mut rng));
        }
        if round == KILL_PRIMARY.0 {
            c.kill9((primary_victim, 0));
            log.push(format!("kill -9 primary {}", REGIONS[primary_victim]));
        }
        if round == KILL_PRIMARY.1 {
            c.restart((primary_victim, 0));
            log.push(format!("restart primary {}", REGIONS[primary_victim]));
        }
        if round == KILL_REPLICA.0 {
            c.kill9((replica_victim, 1));
            log.push(format!("kill -9 replica of {}", REGIONS[replica_victim]));
        }
        if round == KILL_REPLICA.1 {
            c.restart((replica_victim, 1));
            log.push(format!("restart replica of {}", REGIONS[replica_victim]));
        }
        if round == flush_round {
            let region = rng.below(REGIONS.len() as u64) as usize;
            if c.node_mut((region, 0)).is_running() {
                let r = c.q((region, 0), &["FLUSHALL"]);
                assert_eq!(r.text(), "OK");
                log.push(format!("FLUSHALL on {}", REGIONS[region]));
            }
        }
        for w in &workers {
            w.orders
                .send(Order::Run(OPS_PER_ROUND))
                .expect("worker alive");
        }
        for w in &workers {
            w.done
                .recv_timeout(Duration::from_secs(60))
                .expect("a worker finished its round");
        }
        schedule.push(format!("round {round}: {}", log.join(", ")));
    }
    for w in &workers {
        let _ = w.orders.send(Order::Stop);
    }
    let mut total = Stats::default();
    for w in workers {
        let s = w.handle.join().expect("worker thread");
        total.ops += s.ops;
        total.connection_errors += s.connection_errors;
        for (k, v) in s.replies {
            *total.replies.entry(k).or_default() += v;
        }
    }
    eprintln!("fault schedule:\n  {}", schedule.join("\n  "));
    eprintln!(
        "{} operations ({} failed to connect: killed primary), replies {:?}, workload took {:?}",
        total.ops,
        total.connection_errors,
        total.replies,
        started.elapsed()
    );
    assert!(
        total.replies.get("ok").copied().unwrap_or(0) > total.ops / 2,
        "most operations must succeed"
    );

    // Final heal: every node must show the same state within 5 seconds.
    c.heal_all();
    let converged = c.converge_digest(Duration::from_secs(5));
    let states = c.describe();
    if let Err(e) = &converged {
        panic!(
            "REPL_SEED={seed}: digests differ 5 s after the final heal: {e}\nlinks:\n{}keys that differ:\n{}schedule:\n  {}",
            c.describe_links(),
            c.diff(),
            schedule.join("\n  ")
        );
    }
    let took = converged.unwrap_or_default();
    c.converge(Duration::from_secs(10)).unwrap_or_else(|e| {
        panic!("REPL_SEED={seed}: equal digests but the vector clocks differ: {e}\n{states}")
    });
    let keys = c.q((0, 0), &["DBSIZE"]).text();
    eprintln!(
        "converged {took:?} after the final heal ({keys} keys); whole test {:?}\n{}",
        started.elapsed(),
        c.describe()
    );
}
