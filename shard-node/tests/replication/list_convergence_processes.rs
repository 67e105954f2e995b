//! Randomized list convergence with real processes on loopback: three regions, each a primary
//! plus a replica, every link behind a fault proxy. For each of many seeds, the primaries of all
//! three regions push at both ends, pop at both ends, insert next to pivots, move, trim and
//! delete on a few lists of that seed, while links between regions and to replicas are cut,
//! delayed and healed between the commands, and the regions' clocks disagree. The replication backlog is small, so a link that
//! was down long enough resumes with a full state merge instead of the missing effects. After
//! each seed's final heal every node must report the same `AA.DIGEST` and the same lists.
//!
//! `LIST_PROCESS_SEEDS=<n>` runs more seeds; `LIST_PROCESS_SEED=<seed>` replays one workload
//! (thread timing still varies).

use crate::common::XorShift;
use crate::replication_support::Cluster;
use std::time::{Duration, Instant};

const REGIONS: [&str; 3] = ["A", "B", "C"];
const ROUNDS: usize = 6;
const OPS_PER_ROUND: usize = 40;

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("LIST_PROCESS_SEED") {
        return vec![s.trim().parse().expect("LIST_PROCESS_SEED is a number")];
    }
    let n: u64 = std::env::var("LIST_PROCESS_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(20);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (1..=n)
        .map(|i| base ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect()
}

/// One random list command on the lists of `prefix`; `next` numbers the pushed values.
fn list_command(rng: &mut XorShift, prefix: &str, next: &mut u64) -> Vec<String> {
    let key = |rng: &mut XorShift| format!("{prefix}:l{}", rng.below(2));
    let pushed = (*next).max(1);
    let mut value = || {
        *next += 1;
        format!("v{next}")
    };
    let k = key(rng);
    let s = |x: &str| x.to_string();
    match rng.below(18) {
        0..=2 => vec![s("LPUSH"), k, value()],
        3..=5 => vec![s("RPUSH"), k, value()],
        6 => vec![s("LPUSH"), k, value(), value(), value()],
        7 => vec![s("RPUSH"), k, value(), value()],
        8 | 9 => vec![s("LPOP"), k],
        10 | 11 => vec![s("RPOP"), k],
        12 => {
            let pivot = format!("v{}", 1 + rng.below(pushed));
            let side = if rng.below(2) == 0 { "BEFORE" } else { "AFTER" };
            vec![s("LINSERT"), k, s(side), pivot, value()]
        }
        13 => {
            let to = key(rng);
            let a = if rng.below(2) == 0 { "LEFT" } else { "RIGHT" };
            let b = if rng.below(2) == 0 { "LEFT" } else { "RIGHT" };
            vec![s("LMOVE"), k, to, s(a), s(b)]
        }
        14 => vec![s("LTRIM"), k, s("0"), (3 + rng.below(6)).to_string()],
        15 => vec![s("LSET"), k, s("-1"), value()],
        16 => vec![s("LPOP"), k, s("2")],
        _ => vec![s("DEL"), k],
    }
}

/// Every list of `prefix` on every node, as `node key=[..]` lines.
fn lists(c: &mut Cluster, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for id in c.ids() {
        let label = c.label(id);
        let mut line = label.clone();
        for k in 0..2 {
            let key = format!("{prefix}:l{k}");
            let items = c.q(id, &["LRANGE", &key, "0", "-1"]);
            let items: Vec<String> = items.items().iter().map(|r| r.text()).collect();
            line.push_str(&format!(" {key}=[{}]", items.join(" ")));
        }
        out.push(line);
    }
    out
}

#[test]
fn lists_converge_across_processes_for_many_seeds() {
    let started = Instant::now();
    // Regions' clocks disagree by a few hundred ms, so an insert made later can carry a
    // smaller stamp than a concurrent one made earlier elsewhere.
    let mut c = Cluster::start_with(&REGIONS, &[1, 1, 1], None, |b| {
        let skew = match b.participant_name() {
            "A" => "0",
            "B" => "400",
            _ => "-300",
        };
        b.arg("--repl-backlog-size")
            .arg("4kb")
            .arg("--clock-skew-ms")
            .arg(skew)
    });
    c.wait_links_up(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("links did not come up: {e}"));
    let seeds = seeds();
    for (n, seed) in seeds.iter().enumerate() {
        let mut rng = XorShift::new(*seed);
        let prefix = format!("s{n}");
        let mut next = 0u64;
        let mut schedule = Vec::new();
        for _ in 0..ROUNDS {
            schedule.push(c.random_fault(&mut rng));
            for i in 0..OPS_PER_ROUND {
                let region = rng.below(3) as usize;
                let cmd = list_command(&mut rng, &prefix, &mut next);
                let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                // Errors (WRONGTYPE cannot happen here; a pivot may be missing) are replies
                // too: only a broken connection fails the run.
                c.call((region, 0), &args)
                    .unwrap_or_else(|e| panic!("seed {seed}: {cmd:?} on {}: {e}", REGIONS[region]));
                if i == OPS_PER_ROUND / 2 && rng.below(2) == 0 {
                    schedule.push(c.random_fault(&mut rng));
                }
            }
        }
        c.heal_all();
        if let Err(e) = c.converge_digest(Duration::from_secs(10)) {
            panic!(
                "LIST_PROCESS_SEED={seed}: digests differ 10 s after the final heal: {e}\nlists:\n{}\nschedule: {}",
                lists(&mut c, &prefix).join("\n"),
                schedule.join(", ")
            );
        }
        let all = lists(&mut c, &prefix);
        let first = all[0].split_once(' ').map(|(_, l)| l.to_owned());
        for line in &all[1..] {
            assert_eq!(
                line.split_once(' ').map(|(_, l)| l.to_owned()),
                first,
                "LIST_PROCESS_SEED={seed}: lists differ:\n{}",
                all.join("\n")
            );
        }
    }
    eprintln!("{} seeds converged in {:?}", seeds.len(), started.elapsed());
}
