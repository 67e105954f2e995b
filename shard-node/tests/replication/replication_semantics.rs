//! Every rule of the conflict semantics (`docs/semantics.md`) played for real: three regions of
//! shard-node processes on loopback (A and B each with a replica), every peer link behind a
//! fault proxy. The regions are partitioned, each makes its concurrent writes, the links heal,
//! and once every node has the same digest and vector clock the documented result is checked
//! on every node, replicas included.
//!
//! One test per section of `docs/semantics.md`; the rules of a section share one cluster (each
//! rule on its own keys) and one partition window per round, and every rule's failures are
//! collected before the test fails, so one run shows every broken rule. "The later write" is
//! made after the wall clock has moved on (the nodes share it), which makes its hybrid logical
//! timestamp the larger one. Equal timestamps cannot be produced on purpose between real
//! processes; that tie-break is covered by the in-process `semantics` tests.

use crate::common;
use crate::replication_support::{let_the_clock_tick, poll_ok, Cluster, Link, NodeId, Reply};
use std::time::{Duration, Instant};

const REGIONS: [&str; 3] = ["A", "B", "C"];
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const CONVERGE: Duration = Duration::from_secs(10);

/// What a reply must be.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Any reply that is not an error.
    Ok,
    /// This text (see `Reply::text`).
    Is(&'static str),
    /// An error starting with this prefix.
    Err(&'static str),
    /// An array with exactly these elements, in any order.
    Members(&'static [&'static str]),
    /// One of these texts.
    OneOf(&'static [&'static str]),
    /// A number within 1e-9 of this one.
    Float(f64),
    /// An integer in this inclusive range.
    IntIn(i64, i64),
}

impl Expect {
    fn check(&self, reply: &Reply) -> Result<(), String> {
        let text = reply.text();
        let ok = match self {
            Expect::Ok => !reply.is_error(),
            Expect::Is(want) => text == *want,
            Expect::Err(prefix) => {
                matches!(reply, Reply::Error(e) if e.starts_with(prefix))
            }
            Expect::Members(want) => {
                let mut got: Vec<String> = reply.items().iter().map(Reply::text).collect();
                let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
                got.sort();
                want.sort();
                matches!(reply, Reply::Array(_)) && got == want
            }
            Expect::OneOf(options) => options.contains(&text.as_str()),
            Expect::Float(want) => text
                .parse::<f64>()
                .is_ok_and(|got| (got - want).abs() < 1e-9),
            Expect::IntIn(lo, hi) => reply.int().is_some_and(|n| *lo <= n && n <= *hi),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("got {text:?}, want {self:?}"))
        }
    }
}

/// One concurrent write: (round, region, command, expected reply).
type Step = (u8, usize, &'static [&'static str], Expect);

/// One rule of `docs/semantics.md`.
struct Rule {
    name: &'static str,
    /// Run on A before the first partition; every node has seen it.
    setup: &'static [&'static [&'static str]],
    /// Run while every region is cut off from the others. Steps of one round run in the order
    /// listed; a step on another region than the previous step of the rule is made after the
    /// wall clock moved on, so it is "the later write". Rounds are separated by a heal and full
    /// convergence.
    concurrent: &'static [Step],
    /// Checked on every node after the last heal; every node must also give the same reply
    /// (except for SMEMBERS and HGETALL, which have no order).
    checks: &'static [(&'static [&'static str], Expect)],
}

/// Starts the three-region cluster and waits until every link is up.
fn cluster() -> Cluster {
    let mut c = Cluster::start(&REGIONS, &[1, 1, 0]);
    c.wait_links_up(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("links did not come up: {e}"));
    c
}

/// Plays `rules` on a fresh cluster; returns it with the list of failures.
fn play(rules: &[Rule]) -> (Cluster, Vec<String>) {
    let started = Instant::now();
    let mut c = cluster();
    let mut failures = Vec::new();
    for rule in rules {
        for cmd in rule.setup {
            let reply = c.q((A, 0), cmd);
            if reply.is_error() {
                failures.push(format!(
                    "{}: setup `{}` failed: {}",
                    rule.name,
                    cmd.join(" "),
                    reply.text()
                ));
            }
        }
    }
    if let Err(e) = c.converge(CONVERGE) {
        panic!("the setup did not reach every node: {e}");
    }
    let rounds = rules
        .iter()
        .flat_map(|r| r.concurrent.iter().map(|s| s.0))
        .max()
        .unwrap_or(0);
    for round in 0..=rounds {
        c.isolate_regions();
        c.wait_cut();
        for rule in rules {
            let mut previous: Option<usize> = None;
            for (r, region, cmd, expect) in rule.concurrent {
                if *r != round {
                    continue;
                }
                if previous.is_some_and(|p| p != *region) {
                    let_the_clock_tick();
                }
                previous = Some(*region);
                let reply = c.q((*region, 0), cmd);
                if let Err(e) = expect.check(&reply) {
                    failures.push(format!(
                        "{}: round {round}, `{}` on {}: {e}",
                        rule.name,
                        cmd.join(" "),
                        REGIONS[*region]
                    ));
                }
            }
        }
        c.heal_all();
        if let Err(e) = c.converge(CONVERGE) {
            failures.push(format!("round {round}: no convergence after the heal: {e}"));
        }
    }
    for rule in rules {
        for (cmd, expect) in rule.checks {
            let mut answers = Vec::new();
            for id in c.ids() {
                let reply = c.q(id, cmd);
                if let Err(e) = expect.check(&reply) {
                    failures.push(format!(
                        "{}: `{}` on {}: {e}",
                        rule.name,
                        cmd.join(" "),
                        c.label(id)
                    ));
                }
                answers.push(format!("{}={}", c.label(id), reply.text()));
            }
            let distinct: std::collections::BTreeSet<&str> = answers
                .iter()
                .filter_map(|a| a.split_once('=').map(|(_, v)| v))
                .collect();
            // Sets and hashes have no order (as in Redis); everything else must read the same.
            let unordered = matches!(cmd[0], "SMEMBERS" | "HGETALL");
            if distinct.len() > 1 && !unordered {
                failures.push(format!(
                    "{}: `{}` differs between nodes: {}",
                    rule.name,
                    cmd.join(" "),
                    answers.join(" ")
                ));
            }
        }
    }
    eprintln!("played {} rules in {:?}", rules.len(), started.elapsed());
    (c, failures)
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

fn play_all(rules: &[Rule]) {
    let (_cluster, failures) = play(rules);
    assert_no_failures(&failures);
}

// ---- Keys and deletes ----

#[test]
fn keys_and_deletes() {
    play_all(&[
        Rule {
            name: "concurrent creation with two types: the later timestamp's type wins (set later)",
            setup: &[],
            concurrent: &[
                (0, A, &["SET", "type1", "v"], Expect::Is("OK")),
                (0, B, &["SADD", "type1", "x"], Expect::Is("1")),
            ],
            checks: &[
                (&["TYPE", "type1"], Expect::Is("set")),
                (&["SMEMBERS", "type1"], Expect::Members(&["x"])),
            ],
        },
        Rule {
            name:
                "concurrent creation with two types: the later timestamp's type wins (string later)",
            setup: &[],
            concurrent: &[
                (0, B, &["SADD", "type2", "x"], Expect::Is("1")),
                (0, A, &["SET", "type2", "v"], Expect::Is("OK")),
            ],
            checks: &[
                (&["TYPE", "type2"], Expect::Is("string")),
                (&["GET", "type2"], Expect::Is("v")),
            ],
        },
        Rule {
            name: "a local write of another type is WRONGTYPE",
            setup: &[&["SET", "wt", "v"]],
            concurrent: &[(0, B, &["SADD", "wt", "x"], Expect::Err("WRONGTYPE"))],
            checks: &[
                (&["TYPE", "wt"], Expect::Is("string")),
                (&["GET", "wt"], Expect::Is("v")),
            ],
        },
        Rule {
            name: "DEL vs concurrent SADD: update wins",
            setup: &[&["SADD", "ds", "a"]],
            concurrent: &[
                (0, A, &["DEL", "ds"], Expect::Is("1")),
                (0, B, &["SADD", "ds", "x"], Expect::Is("1")),
            ],
            checks: &[(&["SMEMBERS", "ds"], Expect::Members(&["x"]))],
        },
        Rule {
            name: "DEL vs concurrent SET: update wins",
            setup: &[&["SET", "dk", "old"]],
            concurrent: &[
                (0, A, &["DEL", "dk"], Expect::Is("1")),
                (0, B, &["SET", "dk", "v"], Expect::Is("OK")),
            ],
            checks: &[(&["GET", "dk"], Expect::Is("v"))],
        },
        Rule {
            name: "DEL made later than a concurrent SET it did not see: update still wins",
            setup: &[&["SET", "dk2", "old"]],
            concurrent: &[
                (0, B, &["SET", "dk2", "v"], Expect::Is("OK")),
                (0, A, &["DEL", "dk2"], Expect::Is("1")),
            ],
            checks: &[(&["GET", "dk2"], Expect::Is("v"))],
        },
        Rule {
            name: "UNLINK is an observed-remove like DEL",
            setup: &[&["HSET", "ul", "a", "1"]],
            concurrent: &[
                (0, A, &["UNLINK", "ul"], Expect::Is("1")),
                (0, C, &["HSET", "ul", "b", "2"], Expect::Is("1")),
            ],
            checks: &[(&["HGETALL", "ul"], Expect::Is("[b,2]"))],
        },
        Rule {
            name: "RENAME is a delete of the old key plus a write of the new one",
            setup: &[&["SET", "{t}a", "1"]],
            concurrent: &[
                (0, A, &["RENAME", "{t}a", "{t}b"], Expect::Is("OK")),
                (0, B, &["SET", "{t}a", "2"], Expect::Is("OK")),
            ],
            checks: &[
                (&["GET", "{t}b"], Expect::Is("1")),
                (&["GET", "{t}a"], Expect::Is("2")),
            ],
        },
        Rule {
            name: "RENAME across slots is refused",
            setup: &[&["SET", "foo", "1"]],
            concurrent: &[(0, B, &["RENAME", "foo", "bar"], Expect::Err("CROSSSLOT"))],
            checks: &[
                (&["GET", "foo"], Expect::Is("1")),
                (&["EXISTS", "bar"], Expect::Is("0")),
            ],
        },
    ]);
}

#[test]
fn flushall_is_an_observed_remove_of_every_key() {
    play_all(&[Rule {
        name: "FLUSHALL removes only what the flushing region had seen",
        setup: &[
            &["SET", "fa", "1"],
            &["SADD", "fs", "m"],
            &["RPUSH", "fl", "x"],
        ],
        concurrent: &[
            (0, A, &["FLUSHALL"], Expect::Is("OK")),
            (0, B, &["SET", "fb", "2"], Expect::Is("OK")),
            (0, C, &["SADD", "fs", "n"], Expect::Is("1")),
            (0, C, &["RPUSH", "fl", "y"], Expect::Is("2")),
        ],
        checks: &[
            (&["EXISTS", "fa"], Expect::Is("0")),
            (&["GET", "fb"], Expect::Is("2")),
            (&["SMEMBERS", "fs"], Expect::Members(&["n"])),
            (&["LRANGE", "fl", "0", "-1"], Expect::Is("[y]")),
            (&["DBSIZE"], Expect::Is("3")),
        ],
    }]);
}

#[test]
fn tombstones_are_collected_once_every_participant_saw_the_delete() {
    let mut c = cluster();
    assert!(!c.q((A, 0), &["RPUSH", "tl", "a", "b", "c"]).is_error());
    c.converge(CONVERGE).unwrap_or_else(|e| panic!("{e}"));
    c.isolate_regions();
    c.wait_cut();
    assert_eq!(c.q((A, 0), &["LPOP", "tl"]).text(), "a");
    assert_eq!(c.q((B, 0), &["RPOP", "tl"]).text(), "c");
    // Neither delete can be collected while the others have not seen it.
    let pending = |c: &mut Cluster, id: NodeId| -> Result<i64, String> {
        let info = c.client(id).info("crdt")?;
        common::info_field(info.as_bytes(), "crdt_tombstones_pending")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "INFO crdt has no crdt_tombstones_pending".to_owned())
    };
    for id in [(A, 0), (A, 1), (B, 0), (B, 1)] {
        let label = c.label(id);
        poll_ok(Duration::from_secs(10), || match pending(&mut c, id)? {
            n if n >= 1 => Ok(()),
            n => Err(format!("{n} tombstones pending")),
        })
        .unwrap_or_else(|e| panic!("{label}: the delete left no tombstone: {e}"));
    }
    // A collects once a second; over a few periods it must keep the tombstone, since B and C
    // have not seen the delete.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let n = pending(&mut c, (A, 0)).unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 1, "A collected a tombstone that B and C had not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.heal_all();
    c.converge(CONVERGE).unwrap_or_else(|e| panic!("{e}"));
    for id in c.ids() {
        let label = c.label(id);
        assert_eq!(
            c.q(id, &["LRANGE", "tl", "0", "-1"]).text(),
            "[b]",
            "{label}"
        );
        poll_ok(Duration::from_secs(10), || match pending(&mut c, id)? {
            0 => Ok(()),
            n => Err(format!("{n} tombstones pending")),
        })
        .unwrap_or_else(|e| panic!("{label}: tombstones never collected: {e}"));
    }
}

/// Cuts every peer link, runs `on_a` on A and `on_c` on C, then lets B and C (but not A) pull
/// from A, so both see and acknowledge A's effect while C's concurrent effect has not reached
/// A. After A had a few collection periods (once a second), everything heals; returns the
/// cluster and whether it converged.
fn race_with_an_effect_in_flight(
    setup: &[&[&str]],
    on_a: &[&str],
    on_c: &[&str],
) -> (Cluster, Result<Duration, String>) {
    let mut c = cluster();
    for cmd in setup {
        assert!(!c.q((A, 0), cmd).is_error(), "{cmd:?}");
    }
    c.converge(CONVERGE).unwrap_or_else(|e| panic!("{e}"));
    c.isolate_regions();
    c.wait_cut();
    let mark = c.state((A, 0)).expect("state of A").clock;
    assert!(!c.q((A, 0), on_a).is_error(), "{on_a:?}");
    assert!(!c.q((C, 0), on_c).is_error(), "{on_c:?}");
    let after = c.state((A, 0)).expect("state of A").clock;
    assert_ne!(mark, after, "A's command made an effect");
    c.heal(Link::Peer(B, A));
    c.heal(Link::Peer(C, A));
    let wanted = parse_clock(&after);
    for id in [(B, 0), (C, 0)] {
        let label = c.label(id);
        poll_ok(Duration::from_secs(10), || {
            let mine = parse_clock(&c.state(id)?.clock);
            let (actor, seq) = wanted
                .iter()
                .find(|(a, s)| parse_clock(&mark).get(*a) != Some(s))
                .ok_or("A's clock did not move")?;
            if mine.get(actor).is_some_and(|m| m >= seq) {
                Ok(())
            } else {
                Err(format!("{label} has not received {actor}:{seq}"))
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    c.heal_all();
    let converged = c.converge(CONVERGE);
    (c, converged)
}

/// `actor:seq,…` (as `INFO crdt` prints a vector clock) as a map.
fn parse_clock(text: &str) -> std::collections::BTreeMap<String, u64> {
    text.split(',')
        .filter_map(|e| e.split_once(':'))
        .filter_map(|(a, s)| s.parse().ok().map(|s| (a.to_owned(), s)))
        .collect()
}

/// Reads `cmd` on every node; fails unless every node answers `want`.
fn assert_everywhere(
    c: &mut Cluster,
    cmd: &[&str],
    want: &str,
    converged: Result<Duration, String>,
) {
    let mut got = Vec::new();
    for id in c.ids() {
        got.push(format!("{}={}", c.label(id), c.q(id, cmd).text()));
    }
    assert!(
        converged.is_ok() && got.iter().all(|g| g.ends_with(&format!("={want}"))),
        "`{}`: want {want} everywhere, got {}\n{}",
        cmd.join(" "),
        got.join(" "),
        converged.err().unwrap_or_default()
    );
}

/// "Every participant has seen the delete" is not enough to drop a removed list element: a
/// participant may have inserted next to it, concurrently, and that insert may still be on its
/// way. Here B and C have seen A's LPOP (and acknowledged it), but A has not yet received C's
/// concurrent LINSERT AFTER the popped element.
#[test]
fn a_removed_element_is_kept_while_an_insert_next_to_it_is_in_flight() {
    let (mut c, converged) = race_with_an_effect_in_flight(
        &[&["RPUSH", "tr", "a", "b", "c"]],
        &["LPOP", "tr"],
        &["LINSERT", "tr", "AFTER", "a", "z"],
    );
    assert_everywhere(&mut c, &["LRANGE", "tr", "0", "-1"], "[z,b,c]", converged);
}

/// The same for counters: increments of one region that every participant has seen may be
/// merged into one entry only once no concurrent observed-remove can still arrive. Here A's
/// second increment is seen by B and C while C's DEL, which saw only the first, is in flight
/// to A: the DEL must remove the first increment and keep the second.
#[test]
fn increments_are_kept_apart_while_a_concurrent_delete_is_in_flight() {
    let (mut c, converged) = race_with_an_effect_in_flight(
        &[&["HINCRBY", "hc", "n", "1"]],
        &["HINCRBY", "hc", "n", "2"],
        &["DEL", "hc"],
    );
    assert_everywhere(&mut c, &["HGET", "hc", "n"], "2", converged);
}

// ---- Strings ----

#[test]
fn strings() {
    play_all(&[
        Rule {
            name: "concurrent SET: the later timestamp wins",
            setup: &[],
            concurrent: &[
                (0, A, &["SET", "s1", "a"], Expect::Is("OK")),
                (0, B, &["SET", "s1", "b"], Expect::Is("OK")),
            ],
            checks: &[(&["GET", "s1"], Expect::Is("b"))],
        },
        Rule {
            name: "concurrent SET in three regions: the latest wins",
            setup: &[&["SET", "s3", "old"]],
            concurrent: &[
                (0, B, &["SET", "s3", "b"], Expect::Is("OK")),
                (0, C, &["SET", "s3", "c"], Expect::Is("OK")),
                (0, A, &["SET", "s3", "a"], Expect::Is("OK")),
            ],
            checks: &[(&["GET", "s3"], Expect::Is("a"))],
        },
        Rule {
            name: "APPEND and SETRANGE are register writes of the resulting value",
            setup: &[&["SET", "ap", "ab"]],
            concurrent: &[
                (0, A, &["APPEND", "ap", "c"], Expect::Is("3")),
                (0, B, &["SETRANGE", "ap", "0", "X"], Expect::Is("2")),
            ],
            checks: &[(&["GET", "ap"], Expect::Is("Xb"))],
        },
        Rule {
            name: "GETSET and SET … GET are register writes",
            setup: &[&["SET", "gs", "old"]],
            concurrent: &[
                (0, A, &["GETSET", "gs", "a"], Expect::Is("old")),
                (0, B, &["SET", "gs", "b", "GET"], Expect::Is("old")),
            ],
            checks: &[(&["GET", "gs"], Expect::Is("b"))],
        },
    ]);
}

// ---- Counters ----

#[test]
fn counters() {
    play_all(&[
        Rule {
            name: "increments accumulate: from 0, INCRBY 7 ‖ INCRBY 3 → 10, then DECRBY 3 ‖ INCRBY 6 → 13",
            setup: &[],
            concurrent: &[
                (0, A, &["INCRBY", "c", "7"], Expect::Is("7")),
                (0, B, &["INCRBY", "c", "3"], Expect::Is("3")),
                (1, A, &["DECRBY", "c", "3"], Expect::Is("7")),
                (1, B, &["INCRBY", "c", "6"], Expect::Is("16")),
            ],
            checks: &[
                (&["GET", "c"], Expect::Is("13")),
                (&["TYPE", "c"], Expect::Is("string")),
            ],
        },
        Rule {
            name: "increments from three regions accumulate",
            setup: &[&["SET", "c3", "100"]],
            concurrent: &[
                (0, A, &["INCR", "c3"], Expect::Is("101")),
                (0, B, &["INCRBY", "c3", "5"], Expect::Is("105")),
                (0, C, &["DECRBY", "c3", "2"], Expect::Is("98")),
                (0, C, &["DECR", "c3"], Expect::Is("97")),
            ],
            checks: &[(&["GET", "c3"], Expect::Is("103"))],
        },
        Rule {
            name: "a local increment past 2^58 fails with the overflow error",
            setup: &[&["INCRBY", "ov", "288230376151711743"]],
            concurrent: &[
                (
                    0,
                    B,
                    &["INCR", "ov"],
                    Expect::Is("-ERR increment or decrement would overflow"),
                ),
                (
                    0,
                    A,
                    &["DECRBY", "ov", "576460752303423487"],
                    Expect::Err("ERR increment or decrement would overflow"),
                ),
            ],
            checks: &[(&["GET", "ov"], Expect::Is("288230376151711743"))],
        },
        Rule {
            name: "concurrent increments up to the 59-bit limit cannot overflow",
            setup: &[],
            concurrent: &[
                (0, A, &["INCRBY", "big", "288230376151711743"], Expect::Ok),
                (0, B, &["INCRBY", "big", "288230376151711743"], Expect::Ok),
            ],
            checks: &[(&["GET", "big"], Expect::Is("576460752303423486"))],
        },
        Rule {
            name: "INCRBYFLOAT accumulates",
            setup: &[],
            concurrent: &[
                (0, A, &["INCRBYFLOAT", "f", "1.5"], Expect::Is("1.5")),
                (0, B, &["INCRBYFLOAT", "f", "2.25"], Expect::Is("2.25")),
            ],
            checks: &[
                (&["GET", "f"], Expect::Is("3.75")),
                (&["TYPE", "f"], Expect::Is("string")),
            ],
        },
        Rule {
            name: "concurrent float increments give the same value everywhere (INCRBYFLOAT)",
            // (0.1 + 0.2) + 2.2 = 2.5 but (0.1 + 2.2) + 0.2 = 2.5000000000000004 in binary
            // floating point: the sum must not depend on the order effects arrived in.
            setup: &[&["SET", "fo", "0.1"]],
            concurrent: &[
                (0, A, &["INCRBYFLOAT", "fo", "0.2"], Expect::Ok),
                (0, B, &["INCRBYFLOAT", "fo", "2.2"], Expect::Ok),
            ],
            checks: &[(&["GET", "fo"], Expect::Float(2.5))],
        },
        Rule {
            name: "concurrent float increments give the same value everywhere (HINCRBYFLOAT)",
            setup: &[&["HSET", "hfo", "x", "0.1"]],
            concurrent: &[
                (0, A, &["HINCRBYFLOAT", "hfo", "x", "0.2"], Expect::Ok),
                (0, B, &["HINCRBYFLOAT", "hfo", "x", "2.2"], Expect::Ok),
            ],
            checks: &[(&["HGET", "hfo", "x"], Expect::Float(2.5))],
        },
        Rule {
            name: "SET on a counter keeps the increments the setter had not seen",
            setup: &[&["SET", "sc", "5"]],
            concurrent: &[
                (0, A, &["SET", "sc", "100"], Expect::Is("OK")),
                (0, B, &["INCR", "sc"], Expect::Is("6")),
            ],
            checks: &[(&["GET", "sc"], Expect::Is("101"))],
        },
    ]);
}

// ---- Hashes ----

#[test]
fn hashes() {
    play_all(&[
        Rule {
            name: "fields written in two regions are all kept",
            setup: &[],
            concurrent: &[
                (0, A, &["HSET", "h1", "f1", "a"], Expect::Is("1")),
                (0, B, &["HSET", "h1", "f2", "b"], Expect::Is("1")),
            ],
            checks: &[
                (&["HGET", "h1", "f1"], Expect::Is("a")),
                (&["HGET", "h1", "f2"], Expect::Is("b")),
                (&["HLEN", "h1"], Expect::Is("2")),
            ],
        },
        Rule {
            name: "HDEL vs concurrent HSET of the field: update wins",
            setup: &[&["HSET", "h2", "f", "old", "g", "1"]],
            concurrent: &[
                (0, A, &["HDEL", "h2", "f"], Expect::Is("1")),
                (0, B, &["HSET", "h2", "f", "x"], Expect::Is("0")),
            ],
            checks: &[
                (&["HGET", "h2", "f"], Expect::Is("x")),
                (&["HGET", "h2", "g"], Expect::Is("1")),
            ],
        },
        Rule {
            name: "concurrent HSET of one field: the later timestamp wins",
            setup: &[],
            concurrent: &[
                (0, A, &["HSET", "h3", "f", "a"], Expect::Is("1")),
                (0, B, &["HSET", "h3", "f", "b"], Expect::Is("1")),
            ],
            checks: &[(&["HGET", "h3", "f"], Expect::Is("b"))],
        },
        Rule {
            name: "HINCRBY and HINCRBYFLOAT accumulate",
            setup: &[&["HSET", "h4", "n", "1"]],
            concurrent: &[
                (0, A, &["HINCRBY", "h4", "n", "2"], Expect::Is("3")),
                (0, B, &["HINCRBY", "h4", "n", "5"], Expect::Is("6")),
                (0, A, &["HINCRBYFLOAT", "h4", "m", "0.5"], Expect::Is("0.5")),
                (
                    0,
                    C,
                    &["HINCRBYFLOAT", "h4", "m", "0.25"],
                    Expect::Is("0.25"),
                ),
            ],
            checks: &[
                (&["HGET", "h4", "n"], Expect::Is("8")),
                (&["HGET", "h4", "m"], Expect::Is("0.75")),
            ],
        },
        Rule {
            name: "DEL of a hash removes only the observed fields",
            setup: &[&["HSET", "h5", "a", "1"]],
            concurrent: &[
                (0, A, &["DEL", "h5"], Expect::Is("1")),
                (0, B, &["HSET", "h5", "b", "2"], Expect::Is("1")),
            ],
            checks: &[(&["HGETALL", "h5"], Expect::Is("[b,2]"))],
        },
    ]);
}

// ---- Sets ----

#[test]
fn sets() {
    play_all(&[
        Rule {
            name: "from {a,b}: SREM a; SREM c ‖ SADD c → {b,c}",
            setup: &[&["SADD", "s1", "a", "b"]],
            concurrent: &[
                (0, A, &["SREM", "s1", "a"], Expect::Is("1")),
                (0, A, &["SREM", "s1", "c"], Expect::Is("0")),
                (0, B, &["SADD", "s1", "c"], Expect::Is("1")),
            ],
            checks: &[(&["SMEMBERS", "s1"], Expect::Members(&["b", "c"]))],
        },
        Rule {
            name: "a remove made later than an add it did not see: add wins",
            setup: &[&["SADD", "s2", "a"]],
            concurrent: &[
                (0, B, &["SADD", "s2", "a"], Expect::Is("0")),
                (0, A, &["SREM", "s2", "a"], Expect::Is("1")),
            ],
            checks: &[(&["SMEMBERS", "s2"], Expect::Members(&["a"]))],
        },
        Rule {
            name: "adds from three regions are all kept",
            setup: &[],
            concurrent: &[
                (0, A, &["SADD", "s3", "x"], Expect::Is("1")),
                (0, B, &["SADD", "s3", "y"], Expect::Is("1")),
                (0, C, &["SADD", "s3", "z", "x"], Expect::Is("2")),
            ],
            checks: &[(&["SMEMBERS", "s3"], Expect::Members(&["x", "y", "z"]))],
        },
        Rule {
            name: "concurrent SPOP may return the same member in both regions",
            setup: &[&["SADD", "sp", "m"]],
            concurrent: &[
                (0, A, &["SPOP", "sp"], Expect::Is("m")),
                (0, B, &["SPOP", "sp"], Expect::Is("m")),
            ],
            checks: &[(&["EXISTS", "sp"], Expect::Is("0"))],
        },
    ]);
}

// ---- Sorted sets ----

#[test]
fn sorted_sets() {
    play_all(&[
        Rule {
            name: "ZADD score: ZADD 1.1 ‖ ZADD 2.1 (later) → 2.1",
            setup: &[],
            concurrent: &[
                (0, A, &["ZADD", "z1", "1.1", "x"], Expect::Is("1")),
                (0, B, &["ZADD", "z1", "2.1", "x"], Expect::Is("1")),
            ],
            checks: &[(&["ZSCORE", "z1", "x"], Expect::Float(2.1))],
        },
        Rule {
            name: "ZINCRBY accumulates on the register value: from 1.1, +1 ‖ +1 → 3.1",
            setup: &[&["ZADD", "z2", "1.1", "x"]],
            concurrent: &[
                (0, A, &["ZINCRBY", "z2", "1", "x"], Expect::Float(2.1)),
                (0, B, &["ZINCRBY", "z2", "1", "x"], Expect::Float(2.1)),
            ],
            checks: &[(&["ZSCORE", "z2", "x"], Expect::Float(3.1))],
        },
        Rule {
            name: "concurrent ZINCRBY give the same score everywhere",
            setup: &[&["ZADD", "zfo", "0.1", "x"]],
            concurrent: &[
                (0, A, &["ZINCRBY", "zfo", "0.2", "x"], Expect::Ok),
                (0, B, &["ZINCRBY", "zfo", "2.2", "x"], Expect::Ok),
            ],
            checks: &[(&["ZSCORE", "zfo", "x"], Expect::Float(2.5))],
        },
        Rule {
            name: "ZREM cancels only the observed score: from 4.1, ZREM ‖ ZINCRBY 2 → 2",
            setup: &[&["ZADD", "z3", "4.1", "x"]],
            concurrent: &[
                (0, A, &["ZREM", "z3", "x"], Expect::Is("1")),
                (0, B, &["ZINCRBY", "z3", "2", "x"], Expect::Float(6.1)),
            ],
            checks: &[
                (&["ZSCORE", "z3", "x"], Expect::Float(2.0)),
                (&["ZCARD", "z3"], Expect::Is("1")),
            ],
        },
        Rule {
            name: "ZADD wins over an unobserved ZREM",
            setup: &[&["ZADD", "z4", "1", "x"]],
            concurrent: &[
                (0, B, &["ZADD", "z4", "5", "x"], Expect::Is("0")),
                (0, A, &["ZREM", "z4", "x"], Expect::Is("1")),
            ],
            checks: &[(&["ZSCORE", "z4", "x"], Expect::Float(5.0))],
        },
        Rule {
            name: "DEL of a sorted set removes only the observed members",
            setup: &[&["ZADD", "z5", "1", "x"]],
            concurrent: &[
                (0, A, &["DEL", "z5"], Expect::Is("1")),
                (0, C, &["ZADD", "z5", "2", "y"], Expect::Is("1")),
            ],
            checks: &[(
                &["ZRANGE", "z5", "0", "-1", "WITHSCORES"],
                Expect::Is("[y,2]"),
            )],
        },
    ]);
}

// ---- Lists ----

#[test]
fn lists() {
    play_all(&[
        Rule {
            name: "concurrent LINSERT at one place: one order, the same everywhere",
            setup: &[&["RPUSH", "L1", "x"]],
            concurrent: &[
                (
                    0,
                    A,
                    &["LINSERT", "L1", "AFTER", "x", "y1"],
                    Expect::Is("2"),
                ),
                (
                    0,
                    B,
                    &["LINSERT", "L1", "AFTER", "x", "y2"],
                    Expect::Is("2"),
                ),
            ],
            checks: &[(
                &["LRANGE", "L1", "0", "-1"],
                Expect::OneOf(&["[x,y1,y2]", "[x,y2,y1]"]),
            )],
        },
        Rule {
            name: "concurrent pushes from three regions: one order everywhere",
            setup: &[],
            concurrent: &[
                (0, A, &["RPUSH", "L2", "a"], Expect::Is("1")),
                (0, B, &["RPUSH", "L2", "b"], Expect::Is("1")),
                (0, C, &["LPUSH", "L2", "c"], Expect::Is("1")),
            ],
            checks: &[(
                &["LRANGE", "L2", "0", "-1"],
                Expect::Members(&["a", "b", "c"]),
            )],
        },
        Rule {
            name: "DEL removes only observed elements: from [x], LPUSH y ‖ DEL → [y]",
            setup: &[&["RPUSH", "L3", "x"]],
            concurrent: &[
                (0, A, &["LPUSH", "L3", "y"], Expect::Is("2")),
                (0, B, &["DEL", "L3"], Expect::Is("1")),
            ],
            checks: &[(&["LRANGE", "L3", "0", "-1"], Expect::Is("[y]"))],
        },
        Rule {
            name: "concurrent LPOP return the same element, which is removed once",
            setup: &[&["RPUSH", "L4", "a", "b"]],
            concurrent: &[
                (0, A, &["LPOP", "L4"], Expect::Is("a")),
                (0, B, &["LPOP", "L4"], Expect::Is("a")),
            ],
            checks: &[(&["LRANGE", "L4", "0", "-1"], Expect::Is("[b]"))],
        },
        Rule {
            name: "concurrent RPOP return the same element, which is removed once",
            setup: &[&["RPUSH", "L5", "a", "b", "c"]],
            concurrent: &[
                (0, A, &["RPOP", "L5"], Expect::Is("c")),
                (0, B, &["RPOP", "L5"], Expect::Is("c")),
                (0, C, &["RPOP", "L5"], Expect::Is("c")),
            ],
            checks: &[(&["LRANGE", "L5", "0", "-1"], Expect::Is("[a,b]"))],
        },
        Rule {
            name: "an insert next to an element popped concurrently keeps its place",
            setup: &[&["RPUSH", "L9", "a", "b", "c"]],
            concurrent: &[
                (0, A, &["LPOP", "L9"], Expect::Is("a")),
                (0, B, &["LINSERT", "L9", "AFTER", "a", "z"], Expect::Is("4")),
            ],
            checks: &[(&["LRANGE", "L9", "0", "-1"], Expect::Is("[z,b,c]"))],
        },
        Rule {
            name: "LSET is a register write on the element",
            setup: &[&["RPUSH", "L6", "a", "b"]],
            concurrent: &[
                (0, A, &["LSET", "L6", "0", "p"], Expect::Is("OK")),
                (0, B, &["LSET", "L6", "0", "q"], Expect::Is("OK")),
            ],
            checks: &[(&["LRANGE", "L6", "0", "-1"], Expect::Is("[q,b]"))],
        },
        Rule {
            name: "LTRIM removes only the observed elements it selects",
            setup: &[&["RPUSH", "L7", "a", "b"]],
            concurrent: &[
                (0, A, &["LTRIM", "L7", "0", "0"], Expect::Is("OK")),
                (0, B, &["RPUSH", "L7", "c"], Expect::Is("3")),
            ],
            checks: &[(&["LRANGE", "L7", "0", "-1"], Expect::Is("[a,c]"))],
        },
        Rule {
            name: "LREM removes only the observed elements it selects",
            setup: &[&["RPUSH", "L8", "a", "b", "a"]],
            concurrent: &[
                (0, A, &["LREM", "L8", "0", "a"], Expect::Is("2")),
                (0, B, &["LPUSH", "L8", "a"], Expect::Is("4")),
            ],
            checks: &[(&["LRANGE", "L8", "0", "-1"], Expect::Is("[a,b]"))],
        },
    ]);
}

// ---- Expiry ----

#[test]
fn expiry() {
    let (mut c, mut failures) = play(&[
        Rule {
            name: "concurrent EXPIRE: the longest remaining lifetime wins",
            setup: &[&["SET", "e1", "v"]],
            concurrent: &[
                (0, B, &["EXPIRE", "e1", "1000"], Expect::Is("1")),
                (0, A, &["EXPIRE", "e1", "100"], Expect::Is("1")),
            ],
            checks: &[(&["TTL", "e1"], Expect::IntIn(980, 1000))],
        },
        Rule {
            name: "a concurrent PERSIST beats any expiry",
            setup: &[&["SET", "e2", "v", "EX", "500"]],
            concurrent: &[
                (0, A, &["PERSIST", "e2"], Expect::Is("1")),
                (0, B, &["EXPIRE", "e2", "1000"], Expect::Is("1")),
            ],
            checks: &[(&["TTL", "e2"], Expect::Is("-1"))],
        },
        Rule {
            name: "SET without KEEPTTL counts as a PERSIST of the old expiry",
            setup: &[&["SET", "e3", "v", "EX", "500"]],
            concurrent: &[
                (0, A, &["SET", "e3", "w"], Expect::Is("OK")),
                (0, B, &["EXPIRE", "e3", "1000"], Expect::Is("1")),
            ],
            checks: &[
                (&["TTL", "e3"], Expect::Is("-1")),
                (&["GET", "e3"], Expect::Is("w")),
            ],
        },
        Rule {
            name: "SET … KEEPTTL keeps the expiry",
            setup: &[&["SET", "e4", "v", "EX", "500"]],
            concurrent: &[(0, B, &["SET", "e4", "w", "KEEPTTL"], Expect::Is("OK"))],
            checks: &[
                (&["TTL", "e4"], Expect::IntIn(480, 500)),
                (&["GET", "e4"], Expect::Is("w")),
            ],
        },
        Rule {
            name: "an expired key reads as absent everywhere (set up here, checked below)",
            setup: &[&["SET", "e5", "v"], &["SET", "e6", "v"]],
            concurrent: &[
                (0, A, &["PEXPIRE", "e5", "1500"], Expect::Is("1")),
                (0, B, &["PEXPIRE", "e5", "300"], Expect::Is("1")),
                (0, B, &["PEXPIRE", "e6", "300"], Expect::Is("1")),
            ],
            checks: &[],
        },
    ]);
    // e5's winning expiry is A's (longer); e6 has only B's. Both must end up absent on every
    // node, and the deletes (made by the region whose expiry won) reach everyone.
    for id in c.ids() {
        let label = c.label(id);
        for key in ["e5", "e6"] {
            if let Err(e) = poll_ok(Duration::from_secs(10), || {
                match c.call(id, &["EXISTS", key])?.text().as_str() {
                    "0" => Ok(()),
                    other => Err(format!("EXISTS {key} = {other}")),
                }
            }) {
                failures.push(format!("expired key {key} on {label}: {e}"));
            }
        }
    }
    if let Err(e) = c.converge(CONVERGE) {
        failures.push(format!("no convergence after the keys expired: {e}"));
    }
    for id in c.ids() {
        let label = c.label(id);
        let n = c.q(id, &["DBSIZE"]);
        if n.text() != "4" {
            failures.push(format!(
                "DBSIZE on {label} after e5 and e6 expired: {} (want 4: e1, e2, e3, e4)",
                n.text()
            ));
        }
    }
    assert_no_failures(&failures);
}

// ---- Pub/sub ----

/// A subscriber connection on one node.
struct Subscriber {
    label: String,
    conn: common::RawConn,
}

impl Subscriber {
    fn new(c: &Cluster, id: NodeId, channel: &str) -> Subscriber {
        let mut conn = common::RawConn::connect(c.port(id));
        let reply = conn.cmd_str(&["SUBSCRIBE", channel]);
        assert_eq!(
            Reply::parse(&reply).map(|r| r.text()),
            Ok(format!("[subscribe,{channel},1]")),
            "SUBSCRIBE on {}",
            c.label(id)
        );
        Subscriber {
            label: c.label(id),
            conn,
        }
    }

    /// Reads messages until `last` arrives; returns every payload read, `last` included.
    fn read_until(&mut self, last: &str) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let frame = self.conn.read_frame().unwrap_or_else(|e| {
                panic!(
                    "{}: waiting for {last:?}, got {got:?}, then {e:?}",
                    self.label
                )
            });
            let reply = Reply::parse(&frame).unwrap_or_else(|e| panic!("{e}"));
            let items = reply.items();
            assert_eq!(
                items.first().map(Reply::text).as_deref(),
                Some("message"),
                "{}: {}",
                self.label,
                reply.text()
            );
            let payload = items.get(2).map(Reply::text).unwrap_or_default();
            let done = payload == last;
            got.push(payload);
            if done {
                return got;
            }
        }
    }
}

#[test]
fn publish_reaches_every_region_once_in_order() {
    let mut c = cluster();
    let mut subs: Vec<Subscriber> = c
        .ids()
        .iter()
        .map(|id| Subscriber::new(&c, *id, "news"))
        .collect();
    // Subscriptions are local; wait until the publisher's own region counts one subscriber.
    let mut published = Vec::new();
    let publish = |c: &mut Cluster, msg: &str, published: &mut Vec<String>| {
        let reply = c.q((A, 0), &["PUBLISH", "news", msg]);
        assert!(!reply.is_error(), "PUBLISH: {}", reply.text());
        published.push(msg.to_owned());
    };
    for i in 0..5 {
        publish(&mut c, &format!("m{i}"), &mut published);
    }
    // Messages published while the regions are cut off arrive after the heal, still once.
    c.isolate_regions();
    c.wait_cut();
    for i in 5..10 {
        publish(&mut c, &format!("m{i}"), &mut published);
    }
    c.heal_all();
    c.converge(CONVERGE).unwrap_or_else(|e| panic!("{e}"));
    publish(&mut c, "end", &mut published);
    for s in subs.iter_mut() {
        let got = s.read_until("end");
        assert_eq!(
            got, published,
            "{}: messages, in publish order, once each",
            s.label
        );
    }
    // A message published in another region arrives next (no late duplicates in between).
    let reply = c.q((C, 0), &["PUBLISH", "news", "from-c"]);
    assert!(!reply.is_error());
    for s in subs.iter_mut() {
        assert_eq!(
            s.read_until("from-c"),
            vec!["from-c".to_owned()],
            "{}",
            s.label
        );
    }
}

// ---- Transactions ----

#[test]
fn a_transaction_is_never_seen_half_applied() {
    let mut c = cluster();
    const ROUNDS: usize = 200;
    let readers: Vec<(String, common::RawConn)> = c
        .ids()
        .into_iter()
        .filter(|id| *id != (A, 0))
        .map(|id| (c.label(id), common::RawConn::connect(c.port(id))))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = readers
        .into_iter()
        .map(|(label, mut conn)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut last = 0i64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let frame = conn.cmd_str(&["MGET", "tx:a", "tx:b", "tx:c"]);
                    let reply = Reply::parse(&frame).unwrap_or_else(|e| panic!("{e}"));
                    let vals: Vec<i64> =
                        reply.items().iter().map(|r| r.int().unwrap_or(0)).collect();
                    assert!(
                        vals.len() == 3 && vals[0] == vals[1] && vals[1] == vals[2],
                        "{label} shows half a transaction: {}",
                        reply.text()
                    );
                    assert!(vals[0] >= last, "{label} went backwards");
                    last = vals[0];
                    reads += 1;
                }
                (label, reads, last)
            })
        })
        .collect();
    let mut w = c.new_client((A, 0));
    for i in 0..ROUNDS {
        if i == ROUNDS / 2 {
            // Half of the transactions travel as a backlog after a partition heals.
            c.isolate_regions();
            c.wait_cut();
        }
        let replies = w
            .pipeline(&[
                vec![b"MULTI".to_vec()],
                vec![b"INCR".to_vec(), b"tx:a".to_vec()],
                vec![b"INCR".to_vec(), b"tx:b".to_vec()],
                vec![b"INCR".to_vec(), b"tx:c".to_vec()],
                vec![b"EXEC".to_vec()],
            ])
            .unwrap_or_else(|e| panic!("transaction {i}: {e}"));
        let n = (i + 1).to_string();
        assert_eq!(
            replies.last().map(Reply::text),
            Some(format!("[{n},{n},{n}]")),
            "EXEC of transaction {i}"
        );
    }
    c.heal_all();
    c.converge(CONVERGE).unwrap_or_else(|e| panic!("{e}"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for h in handles {
        let (label, reads, _) = h.join().expect("a reader saw half a transaction");
        assert!(reads > 0, "{label} made no reads");
    }
    for id in c.ids() {
        let n = ROUNDS.to_string();
        assert_eq!(
            c.q(id, &["MGET", "tx:a", "tx:b", "tx:c"]).text(),
            format!("[{n},{n},{n}]"),
            "{}",
            c.label(id)
        );
    }
}
