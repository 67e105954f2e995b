//! One test per rule of the conflict semantics (`docs/semantics.md`), played on two or three
//! in-memory regions through the real command dispatcher.
//!
//! Every rule runs its concurrent effects in every delivery order, each region receiving the
//! others' effects in that order (out-of-causal-order arrivals are buffered by the causal gate),
//! then receiving everything a second time (duplicates). After each order, every region must
//! give the documented replies and all regions must hold the same visible state.

use bytes::Bytes;
use shard_node::commands::testing::TestDb;
use shard_node::crdt::replica::CausalBuffer;
use shard_node::crdt::Effect;

const NAMES: [&str; 3] = ["A", "B", "C"];
const T0: u64 = 1_700_000_000_000;

struct Region {
    db: TestDb,
    gate: CausalBuffer,
}

impl Region {
    fn new(i: usize) -> Self {
        let mut db = TestDb::region(NAMES[i]);
        db.now_ms = T0;
        Region {
            db,
            gate: CausalBuffer::new(),
        }
    }

    fn run(&mut self, cmd: &[&str]) -> String {
        self.db.text(cmd)
    }

    fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.db.db.ks.outbox)
    }

    fn receive(&mut self, effect: &Effect) {
        self.gate.offer(&mut self.db.db.ks, effect.clone());
    }
}

/// A conflict scenario: commands run on region 0 and shared first, then each region's
/// concurrent commands (with its own clock reading), then checks.
struct Rule<'a> {
    regions: usize,
    setup: &'a [&'a [&'a str]],
    /// (region, clock offset in ms, commands)
    concurrent: &'a [(usize, u64, &'a [&'a [&'a str]])],
}

/// Plays `rule` in every delivery order and calls `check` on each region after each order.
fn play<F: Fn(&mut Region)>(rule: &Rule<'_>, check: F) {
    let fresh = || -> (Vec<Region>, Vec<(usize, Effect)>) {
        let mut regions: Vec<Region> = (0..rule.regions).map(Region::new).collect();
        for cmd in rule.setup {
            let reply = regions[0].run(cmd);
            assert!(!reply.starts_with('-'), "setup {cmd:?} failed: {reply}");
        }
        let shared = regions[0].take_effects();
        for r in regions.iter_mut().skip(1) {
            for e in &shared {
                r.receive(e);
            }
        }
        let mut concurrent = Vec::new();
        for (i, offset, cmds) in rule.concurrent {
            let region = &mut regions[*i];
            region.db.now_ms = T0 + offset;
            for cmd in *cmds {
                region.run(cmd);
            }
            for e in region.take_effects() {
                concurrent.push((*i, e));
            }
        }
        (regions, concurrent)
    };
    let (_, effects) = fresh();
    let n = effects.len();
    assert!(n > 0, "the scenario made no effects");
    let mut orders = Vec::new();
    permutations(&mut (0..n).collect::<Vec<_>>(), 0, &mut orders);
    for order in &orders {
        let (mut regions, effects) = fresh();
        for pass in 0..2 {
            for &idx in order {
                let (origin, effect) = &effects[idx];
                for (r, region) in regions.iter_mut().enumerate() {
                    if r != *origin || pass == 1 {
                        region.receive(effect);
                    }
                }
            }
        }
        let now = regions[0].db.now_ms.max(T0 + 10_000);
        let reference = regions[0].db.db.ks.visible(now);
        for (r, region) in regions.iter_mut().enumerate() {
            assert_eq!(region.gate.waiting(), 0, "region {r} still buffers effects");
            region.db.now_ms = now;
            assert_eq!(
                region.db.db.ks.visible(now),
                reference,
                "region {} diverged from region A for delivery order {order:?}",
                NAMES[r]
            );
            check(region);
        }
    }
}

fn permutations(items: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
    if k == items.len() {
        out.push(items.clone());
        return;
    }
    for i in k..items.len() {
        items.swap(k, i);
        permutations(items, k + 1, out);
        items.swap(k, i);
    }
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{}\r\n", s.len(), s)
}

fn expect(region: &mut Region, cmd: &[&str], reply: &str) {
    let got = region.run(cmd);
    assert_eq!(
        got,
        reply,
        "{cmd:?} on region {}",
        region.db.db.ks.actor().participant
    );
}

/// Members of a set/array reply, sorted, for order-independent comparisons.
fn members(region: &mut Region, cmd: &[&str]) -> Vec<String> {
    let reply = region.run(cmd);
    let mut out: Vec<String> = reply
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.starts_with('$') && !l.is_empty())
        .map(String::from)
        .collect();
    out.sort();
    out
}

/// The region whose actor id is smaller wins timestamp ties.
fn smaller_of_a_and_b() -> usize {
    let a = Region::new(0).db.db.ks.actor_id();
    let b = Region::new(1).db.db.ks.actor_id();
    if a < b {
        0
    } else {
        1
    }
}

// ---- Keys and deletes ----

#[test]
fn concurrent_creation_with_two_types_later_timestamp_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[
            (0, 5, &[&["SET", "k", "v"]]),
            (1, 1, &[&["SADD", "k", "x"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["TYPE", "k"], "+string\r\n");
        expect(r, &["GET", "k"], &bulk("v"));
    });
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[
            (0, 1, &[&["SET", "k", "v"]]),
            (1, 5, &[&["SADD", "k", "x"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["SMEMBERS", "k"], "*1\r\n$1\r\nx\r\n")
    });
}

#[test]
fn a_value_emptied_by_removes_keeps_its_creation_stamp_against_another_type() {
    // C's stream is created between B's and A's sorted-set writes. A empties its sorted set
    // before it hears of B's member; the sorted set still counts as created by A's later write,
    // so once B's member joins it, it wins in every region and every delivery order.
    let rule = Rule {
        regions: 3,
        setup: &[],
        concurrent: &[
            (1, 1, &[&["ZADD", "k", "0", "m0"]]),
            (2, 2, &[&["XADD", "k", "*", "f", "m0"]]),
            (0, 3, &[&["ZADD", "k", "0", "m1"]]),
            (0, 4, &[&["ZREM", "k", "m1"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["TYPE", "k"], "+zset\r\n");
        expect(r, &["ZRANGE", "k", "0", "-1"], "*1\r\n$2\r\nm0\r\n");
    });
}

#[test]
fn an_emptied_value_is_kept_only_until_every_region_has_seen_it() {
    let mut a = Region::new(0);
    a.run(&["ZADD", "k", "0", "m"]);
    a.run(&["ZREM", "k", "m"]);
    a.run(&["RPUSH", "l", "x"]);
    a.run(&["LPOP", "l"]);
    expect(&mut a, &["EXISTS", "k", "l"], ":0\r\n");
    assert_eq!(
        a.db.db.ks.tombstones_pending(),
        2,
        "a sorted set marker and a popped element"
    );
    // Nothing is stable while the other regions have seen nothing.
    let nothing = shard_node::crdt::VectorClock::new();
    a.db.db.ks.collect(&nothing);
    assert!(a.db.db.ks.raw_entry(b"k").is_some());
    let everything = a.db.db.ks.clock().clone();
    a.db.db.ks.collect(&everything);
    assert!(a.db.db.ks.raw_entry(b"k").is_none());
    assert!(a.db.db.ks.raw_entry(b"l").is_none());
    assert_eq!(a.db.db.ks.tombstones_pending(), 0);
}

#[test]
fn a_pfadd_after_a_forgotten_delete_counts_where_the_delete_is_still_remembered() {
    // A deletes a HyperLogLog every region has. C learns that every region saw the delete and
    // collects; A has not collected yet. C's next PFADD came after the delete, so it must count
    // in A too (C keeps the key's count of deletes, so its PFADD does not look older than the
    // delete A remembers).
    let mut regions: Vec<Region> = (0..3).map(Region::new).collect();
    let share = |regions: &mut Vec<Region>, from: usize| {
        let effects = regions[from].take_effects();
        for (i, r) in regions.iter_mut().enumerate() {
            if i != from {
                for e in &effects {
                    r.receive(e);
                }
            }
        }
    };
    regions[0].run(&["PFADD", "k", "a"]);
    share(&mut regions, 0);
    regions[0].run(&["DEL", "k"]);
    share(&mut regions, 0);
    // Every region has seen the delete; C alone collects.
    let everything = regions[0].db.db.ks.clock().clone();
    regions[2].db.db.ks.collect(&everything);
    expect(&mut regions[2], &["EXISTS", "k"], ":0\r\n");
    expect(&mut regions[0], &["EXISTS", "k"], ":0\r\n");
    assert_eq!(regions[2].run(&["PFADD", "k", "b"]), ":1\r\n");
    share(&mut regions, 2);
    for r in regions.iter_mut() {
        expect(r, &["PFCOUNT", "k"], ":1\r\n");
    }
    // Collection everywhere changes nothing visible.
    let everything = regions[2].db.db.ks.clock().clone();
    for r in regions.iter_mut() {
        r.db.db.ks.collect(&everything);
        expect(r, &["PFCOUNT", "k"], ":1\r\n");
    }
}

#[test]
fn a_pfadd_concurrent_with_a_remembered_delete_is_lost_everywhere() {
    // B's PFADD did not see A's delete; wherever it arrives after the delete it is dropped,
    // and where it arrives first the delete clears it.
    let rule = Rule {
        regions: 2,
        setup: &[&["PFADD", "k", "a"]],
        concurrent: &[(0, 1, &[&["DEL", "k"]]), (1, 1, &[&["PFADD", "k", "b"]])],
    };
    play(&rule, |r| expect(r, &["EXISTS", "k"], ":0\r\n"));
}

#[test]
fn local_write_of_another_type_is_wrongtype() {
    let mut r = Region::new(0);
    r.run(&["SET", "k", "v"]);
    assert!(r.run(&["SADD", "k", "x"]).starts_with("-WRONGTYPE"));
}

#[test]
fn del_vs_concurrent_sadd_update_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SADD", "k", "a"]],
        concurrent: &[(0, 1, &[&["DEL", "k"]]), (1, 1, &[&["SADD", "k", "x"]])],
    };
    play(&rule, |r| {
        expect(r, &["SMEMBERS", "k"], "*1\r\n$1\r\nx\r\n")
    });
}

#[test]
fn del_vs_concurrent_set_update_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "k", "old"]],
        concurrent: &[(0, 9, &[&["DEL", "k"]]), (1, 1, &[&["SET", "k", "v"]])],
    };
    play(&rule, |r| expect(r, &["GET", "k"], &bulk("v")));
}

#[test]
fn flushall_is_an_observed_remove_of_every_key() {
    let rule = Rule {
        regions: 3,
        setup: &[&["SET", "a", "1"], &["SADD", "s", "m"]],
        concurrent: &[
            (0, 1, &[&["FLUSHALL"]]),
            (1, 1, &[&["SET", "b", "2"]]),
            (2, 1, &[&["SADD", "s", "n"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["EXISTS", "a"], ":0\r\n");
        expect(r, &["GET", "b"], &bulk("2"));
        expect(r, &["SMEMBERS", "s"], "*1\r\n$1\r\nn\r\n");
    });
}

#[test]
fn rename_is_a_delete_plus_a_write_within_one_slot() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "{t}a", "1"]],
        concurrent: &[
            (0, 1, &[&["RENAME", "{t}a", "{t}b"]]),
            (1, 1, &[&["SET", "{t}a", "2"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["GET", "{t}b"], &bulk("1"));
        expect(r, &["GET", "{t}a"], &bulk("2"));
    });
    let mut r = Region::new(0);
    r.run(&["SET", "foo", "1"]);
    assert!(r.run(&["RENAME", "foo", "bar"]).starts_with("-CROSSSLOT"));
}

// ---- Strings ----

#[test]
fn concurrent_set_last_writer_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[(0, 1, &[&["SET", "k", "a"]]), (1, 2, &[&["SET", "k", "b"]])],
    };
    play(&rule, |r| expect(r, &["GET", "k"], &bulk("b")));
}

#[test]
fn concurrent_set_with_equal_timestamps_smaller_replica_wins() {
    let winner = smaller_of_a_and_b();
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[(0, 1, &[&["SET", "k", "a"]]), (1, 1, &[&["SET", "k", "b"]])],
    };
    let expected = if winner == 0 { "a" } else { "b" };
    play(&rule, |r| expect(r, &["GET", "k"], &bulk(expected)));
}

#[test]
fn append_and_setrange_are_register_writes() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "k", "ab"]],
        concurrent: &[
            (0, 1, &[&["APPEND", "k", "c"]]),
            (1, 2, &[&["SETRANGE", "k", "0", "X"]]),
        ],
    };
    play(&rule, |r| expect(r, &["GET", "k"], &bulk("Xb")));
}

#[test]
fn concurrent_setbits_resolve_last_writer_wins_on_the_whole_string() {
    // From "\x00": A sets bit 0, B (later) sets bit 7; B's whole value wins, A's bit is lost.
    let rule = Rule {
        regions: 2,
        setup: &[&["SETBIT", "b", "7", "0"]],
        concurrent: &[
            (0, 1, &[&["SETBIT", "b", "0", "1"]]),
            (1, 2, &[&["SETBIT", "b", "7", "1"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["GET", "b"], "$1\r\n\x01\r\n");
        expect(r, &["GETBIT", "b", "0"], ":0\r\n");
        expect(r, &["BITCOUNT", "b"], ":1\r\n");
    });
}

#[test]
fn setbit_on_a_counter_keeps_unobserved_increments() {
    // SETBIT reads the counter as its text ("0" = 0x30) and writes "1" (0x31) as a register
    // write, like SET: the increment it had not observed stays on top.
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "c", "0"]],
        concurrent: &[
            (0, 2, &[&["SETBIT", "c", "7", "1"]]),
            (1, 1, &[&["INCR", "c"]]),
        ],
    };
    play(&rule, |r| expect(r, &["GET", "c"], &bulk("2")));
}

// ---- Counters ----

#[test]
fn concurrent_increments_accumulate() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "c", "0"]],
        concurrent: &[
            (0, 1, &[&["INCRBY", "c", "7"]]),
            (1, 1, &[&["INCRBY", "c", "3"]]),
        ],
    };
    play(&rule, |r| expect(r, &["GET", "c"], &bulk("10")));
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "c", "10"]],
        concurrent: &[
            (0, 1, &[&["DECRBY", "c", "3"]]),
            (1, 1, &[&["INCRBY", "c", "6"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["GET", "c"], &bulk("13"));
        expect(r, &["TYPE", "c"], "+string\r\n");
    });
}

#[test]
fn integer_counters_are_limited_to_59_bits() {
    let mut r = Region::new(0);
    let limit = (1i64 << 58) - 1;
    assert_eq!(
        r.run(&["INCRBY", "c", &limit.to_string()]),
        format!(":{limit}\r\n")
    );
    assert_eq!(
        r.run(&["INCR", "c"]),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(r.run(&["GET", "c"]), bulk(&limit.to_string()));
}

#[test]
fn incrbyfloat_accumulates() {
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[
            (0, 1, &[&["INCRBYFLOAT", "f", "1.5"]]),
            (1, 1, &[&["INCRBYFLOAT", "f", "2.25"]]),
        ],
    };
    play(&rule, |r| expect(r, &["GET", "f"], &bulk("3.75")));
}

#[test]
fn set_on_a_counter_keeps_unobserved_increments() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "c", "5"]],
        concurrent: &[(0, 1, &[&["SET", "c", "100"]]), (1, 1, &[&["INCR", "c"]])],
    };
    play(&rule, |r| expect(r, &["GET", "c"], &bulk("101")));
}

// ---- Hashes ----

#[test]
fn hash_fields_from_two_regions_are_all_kept() {
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[
            (0, 1, &[&["HSET", "h", "f1", "a"]]),
            (1, 1, &[&["HSET", "h", "f2", "b"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["HGET", "h", "f1"], &bulk("a"));
        expect(r, &["HGET", "h", "f2"], &bulk("b"));
        expect(r, &["HLEN", "h"], ":2\r\n");
    });
}

#[test]
fn hdel_vs_concurrent_hset_update_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[&["HSET", "h", "f", "old"]],
        concurrent: &[
            (0, 5, &[&["HDEL", "h", "f"]]),
            (1, 1, &[&["HSET", "h", "f", "x"]]),
        ],
    };
    play(&rule, |r| expect(r, &["HGET", "h", "f"], &bulk("x")));
}

#[test]
fn concurrent_hset_of_one_field_last_writer_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[
            (0, 3, &[&["HSET", "h", "f", "a"]]),
            (1, 2, &[&["HSET", "h", "f", "b"]]),
        ],
    };
    play(&rule, |r| expect(r, &["HGET", "h", "f"], &bulk("a")));
}

#[test]
fn hincrby_accumulates() {
    let rule = Rule {
        regions: 3,
        setup: &[&["HSET", "h", "n", "1"]],
        concurrent: &[
            (0, 1, &[&["HINCRBY", "h", "n", "2"]]),
            (1, 1, &[&["HINCRBY", "h", "n", "5"]]),
            (2, 1, &[&["HINCRBYFLOAT", "h", "m", "0.5"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["HGET", "h", "n"], &bulk("8"));
        expect(r, &["HGET", "h", "m"], &bulk("0.5"));
    });
}

// ---- Sets ----

#[test]
fn set_add_wins_over_unobserved_remove() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SADD", "s", "a", "b"]],
        concurrent: &[
            (0, 1, &[&["SREM", "s", "a"], &["SREM", "s", "c"]]),
            (1, 1, &[&["SADD", "s", "c"]]),
        ],
    };
    play(&rule, |r| {
        assert_eq!(members(r, &["SMEMBERS", "s"]), vec!["b", "c"])
    });
}

#[test]
fn concurrent_spop_may_return_the_same_member_in_both_regions() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SADD", "s", "x"]],
        concurrent: &[(0, 1, &[&["SPOP", "s"]]), (1, 1, &[&["SPOP", "s"]])],
    };
    play(&rule, |r| expect(r, &["EXISTS", "s"], ":0\r\n"));
    let mut a = Region::new(0);
    let mut b = Region::new(1);
    a.run(&["SADD", "s", "x"]);
    for e in a.take_effects() {
        b.receive(&e);
    }
    assert_eq!(a.run(&["SPOP", "s"]), bulk("x"));
    assert_eq!(b.run(&["SPOP", "s"]), bulk("x"));
}

#[test]
fn concurrent_blocking_pops_remove_what_they_observed_and_may_deliver_one_element_twice() {
    let rule = Rule {
        regions: 3,
        setup: &[
            &["RPUSH", "q", "a", "b", "c"],
            &["ZADD", "z", "1", "m", "2", "n"],
        ],
        concurrent: &[
            (0, 1, &[&["BLPOP", "q", "0"], &["BZPOPMIN", "z", "0"]]),
            (1, 1, &[&["BLPOP", "q", "0"], &["BZPOPMIN", "z", "0"]]),
            (2, 1, &[&["BLMOVE", "q", "d", "RIGHT", "LEFT", "0"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["LRANGE", "q", "0", "-1"], "*1\r\n$1\r\nb\r\n");
        expect(r, &["LRANGE", "d", "0", "-1"], "*1\r\n$1\r\nc\r\n");
        expect(r, &["ZRANGE", "z", "0", "-1"], "*1\r\n$1\r\nn\r\n");
    });
    let mut a = Region::new(0);
    let mut b = Region::new(1);
    a.run(&["RPUSH", "q", "a"]);
    for e in a.take_effects() {
        b.receive(&e);
    }
    let served = "*2\r\n$1\r\nq\r\n$1\r\na\r\n";
    assert_eq!(a.run(&["BLPOP", "q", "0"]), served);
    assert_eq!(b.run(&["BLPOP", "q", "0"]), served);
}

// ---- Streams ----

/// The IDs of the entries of stream `key`, in order.
fn stream_ids(region: &mut Region, key: &str) -> Vec<String> {
    region
        .run(&["XRANGE", key, "-", "+"])
        .split("\r\n")
        .filter(|l| {
            l.split_once('-').is_some_and(|(ms, seq)| {
                !ms.is_empty()
                    && !seq.is_empty()
                    && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
            })
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn concurrent_xadds_with_automatic_ids_are_all_kept_under_distinct_ids() {
    let rule = Rule {
        regions: 3,
        setup: &[&["XADD", "s", "1-1", "f", "setup"]],
        concurrent: &[
            (
                0,
                1,
                &[
                    &["XADD", "s", "*", "f", "a1"],
                    &["XADD", "s", "*", "f", "a2"],
                ],
            ),
            (1, 1, &[&["XADD", "s", "*", "f", "b1"]]),
            (
                2,
                1,
                &[
                    &["XADD", "s", "*", "f", "c1"],
                    &["XADD", "s", "MAXLEN", "=", "2", "*", "f", "c2"],
                ],
            ),
        ],
    };
    play(&rule, |r| {
        let ids = stream_ids(r, "s");
        let mut distinct = ids.clone();
        distinct.dedup();
        assert_eq!(ids, distinct, "IDs are unique and ordered: {ids:?}");
        // C's MAXLEN 2 removed the oldest entry C had (the setup one); entries the other
        // regions added concurrently survive it, so the stream ends longer than 2.
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert!(!ids.contains(&"1-1".to_string()), "{ids:?}");
        let all = r.run(&["XRANGE", "s", "-", "+"]);
        for v in ["a1", "a2", "b1", "c1", "c2"] {
            assert!(all.contains(v), "{v} is missing: {all}");
        }
    });
}

#[test]
fn xdel_removes_only_what_it_observed_and_one_explicit_id_keeps_the_later_entry() {
    let rule = Rule {
        regions: 3,
        setup: &[&["XADD", "s", "1-1", "f", "old"]],
        concurrent: &[
            (0, 1, &[&["XDEL", "s", "1-1"]]),
            (1, 5, &[&["XADD", "s", "5-0", "f", "from-b"]]),
            (2, 9, &[&["XADD", "s", "5-0", "f", "from-c-later"]]),
        ],
    };
    play(&rule, |r| {
        expect(
            r,
            &["XRANGE", "s", "-", "+"],
            "*1\r\n*2\r\n$3\r\n5-0\r\n*2\r\n$1\r\nf\r\n$12\r\nfrom-c-later\r\n",
        );
        expect(r, &["XLEN", "s"], ":1\r\n");
    });
}

#[test]
fn a_consumer_group_belongs_to_the_region_that_made_it() {
    let mut a = Region::new(0);
    let mut b = Region::new(1);
    a.run(&["XADD", "s", "1-1", "f", "v"]);
    a.run(&["XGROUP", "CREATE", "s", "workers", "0"]);
    assert!(a
        .run(&["XREADGROUP", "GROUP", "workers", "w1", "STREAMS", "s", ">"])
        .contains("1-1"));
    for e in a.take_effects() {
        b.receive(&e);
    }
    // B has the entry, not A's group; its own group of the same name is independent.
    expect(&mut b, &["XLEN", "s"], ":1\r\n");
    let missing = b.run(&["XREADGROUP", "GROUP", "workers", "w1", "STREAMS", "s", ">"]);
    assert!(missing.starts_with("-NOGROUP"), "{missing}");
    b.run(&["XGROUP", "CREATE", "s", "workers", "0"]);
    assert!(b
        .run(&["XREADGROUP", "GROUP", "workers", "w2", "STREAMS", "s", ">"])
        .contains("1-1"));
    for e in b.take_effects() {
        a.receive(&e);
    }
    // A's group still has its own consumer and pending entry, untouched by B's.
    expect(
        &mut a,
        &["XPENDING", "s", "workers"],
        "*4\r\n:1\r\n$3\r\n1-1\r\n$3\r\n1-1\r\n*1\r\n*2\r\n$2\r\nw1\r\n$1\r\n1\r\n",
    );
    // Both regions see the same stream.
    assert_eq!(a.db.db.ks.visible(T0 + 1), b.db.db.ks.visible(T0 + 1));
    // A DEL that observed the group removes it with the stream.
    a.run(&["DEL", "s"]);
    let gone = a.run(&["XPENDING", "s", "workers"]);
    assert!(gone.starts_with("-NOGROUP"), "{gone}");
}

#[test]
fn concurrent_geoadd_of_one_member_keeps_the_later_position() {
    let rule = Rule {
        regions: 3,
        setup: &[&["GEOADD", "g", "13.361389", "38.115556", "palermo"]],
        concurrent: &[
            (0, 1, &[&["GEOADD", "g", "15.087269", "37.502669", "car"]]),
            (1, 5, &[&["GEOADD", "g", "13.583333", "37.316667", "car"]]),
            (2, 3, &[&["GEOADD", "g", "12.5", "37.8", "bike"]]),
        ],
    };
    play(&rule, |r| {
        expect(
            r,
            &["GEODIST", "g", "car", "palermo", "km"],
            "$7\r\n90.9778\r\n",
        );
        expect(r, &["ZCARD", "g"], ":3\r\n");
    });
}

// ---- HyperLogLog ----

#[test]
fn concurrent_pfadds_merge_register_by_register() {
    let rule = Rule {
        regions: 3,
        setup: &[&["PFADD", "visitors", "alice"]],
        concurrent: &[
            (0, 1, &[&["PFADD", "visitors", "bob", "carol"]]),
            (1, 2, &[&["PFADD", "visitors", "dave", "alice"]]),
            (
                2,
                3,
                &[
                    &["PFADD", "visitors", "erin"],
                    &["PFMERGE", "all", "visitors"],
                ],
            ),
        ],
    };
    play(&rule, |r| {
        expect(r, &["PFCOUNT", "visitors"], ":5\r\n");
        // C merged only what it had seen: alice and erin.
        expect(r, &["PFCOUNT", "all"], ":2\r\n");
    });
}

#[test]
fn a_delete_of_a_hyperloglog_wins_over_a_concurrent_pfadd() {
    let rule = Rule {
        regions: 3,
        setup: &[&["PFADD", "h", "a", "b"]],
        concurrent: &[
            (0, 1, &[&["DEL", "h"]]),
            (1, 2, &[&["PFADD", "h", "c"]]),
            (2, 3, &[&["PFADD", "other", "x"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["EXISTS", "h"], ":0\r\n");
        expect(r, &["PFCOUNT", "h"], ":0\r\n");
        expect(r, &["PFCOUNT", "other"], ":1\r\n");
    });
    // A PFADD made after seeing the delete counts everywhere.
    let mut a = Region::new(0);
    let mut b = Region::new(1);
    a.run(&["PFADD", "h", "a"]);
    a.run(&["DEL", "h"]);
    for e in a.take_effects() {
        b.receive(&e);
    }
    b.run(&["PFADD", "h", "z"]);
    for e in b.take_effects() {
        a.receive(&e);
    }
    expect(&mut a, &["PFCOUNT", "h"], ":1\r\n");
    expect(&mut b, &["PFCOUNT", "h"], ":1\r\n");
}

// ---- Sorted sets ----

#[test]
fn concurrent_zadd_score_last_writer_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[
            (0, 1, &[&["ZADD", "z", "1.1", "x"]]),
            (1, 2, &[&["ZADD", "z", "2.1", "x"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["ZSCORE", "z", "x"], &bulk("2.1000000000000001"))
    });
    let winner = smaller_of_a_and_b();
    let rule = Rule {
        regions: 2,
        setup: &[],
        concurrent: &[
            (0, 1, &[&["ZADD", "z", "1", "x"]]),
            (1, 1, &[&["ZADD", "z", "2", "x"]]),
        ],
    };
    let expected = if winner == 0 { "1" } else { "2" };
    play(&rule, |r| expect(r, &["ZSCORE", "z", "x"], &bulk(expected)));
}

#[test]
fn concurrent_zincrby_accumulates_on_the_register_value() {
    let rule = Rule {
        regions: 2,
        setup: &[&["ZADD", "z", "1.5", "x"]],
        concurrent: &[
            (0, 1, &[&["ZINCRBY", "z", "1", "x"]]),
            (1, 1, &[&["ZINCRBY", "z", "1", "x"]]),
        ],
    };
    play(&rule, |r| expect(r, &["ZSCORE", "z", "x"], &bulk("3.5")));
}

#[test]
fn zrem_cancels_only_the_observed_score() {
    let rule = Rule {
        regions: 2,
        setup: &[&["ZADD", "z", "4.5", "x"]],
        concurrent: &[
            (0, 1, &[&["ZREM", "z", "x"]]),
            (1, 1, &[&["ZINCRBY", "z", "2", "x"]]),
        ],
    };
    play(&rule, |r| expect(r, &["ZSCORE", "z", "x"], &bulk("2")));
}

#[test]
fn zadd_wins_over_unobserved_zrem() {
    let rule = Rule {
        regions: 2,
        setup: &[&["ZADD", "z", "1", "x"]],
        concurrent: &[
            (0, 9, &[&["ZREM", "z", "x"]]),
            (1, 1, &[&["ZADD", "z", "5", "x"]]),
        ],
    };
    play(&rule, |r| expect(r, &["ZSCORE", "z", "x"], &bulk("5")));
}

#[test]
fn zremrangebyscore_removes_only_the_members_it_observed() {
    // B adds a member inside A's range and re-scores another into it, concurrently: both
    // survive A's ZREMRANGEBYSCORE, which removed only what it saw.
    let rule = Rule {
        regions: 2,
        setup: &[&["ZADD", "z", "1", "a", "2", "b", "10", "c"]],
        concurrent: &[
            (0, 9, &[&["ZREMRANGEBYSCORE", "z", "0", "5"]]),
            (1, 1, &[&["ZADD", "z", "3", "new", "4", "c"]]),
        ],
    };
    play(&rule, |r| {
        expect(
            r,
            &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
            "*4\r\n$3\r\nnew\r\n$1\r\n3\r\n$1\r\nc\r\n$1\r\n4\r\n",
        )
    });
}

#[test]
fn zremrangebyrank_and_bylex_remove_what_they_observed() {
    let rule = Rule {
        regions: 2,
        setup: &[&["ZADD", "z", "0", "a", "0", "b", "0", "c"]],
        concurrent: &[
            (
                0,
                9,
                &[
                    &["ZREMRANGEBYRANK", "z", "0", "0"],
                    &["ZREMRANGEBYLEX", "z", "[b", "[c"],
                ],
            ),
            (1, 1, &[&["ZADD", "z", "0", "bb"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["ZRANGE", "z", "0", "-1"], "*1\r\n$2\r\nbb\r\n")
    });
}

#[test]
fn zunionstore_replaces_the_observed_destination() {
    // The store deletes what it observed under the destination and writes the result; a
    // member added to the destination concurrently survives next to the result.
    let rule = Rule {
        regions: 2,
        setup: &[
            &["ZADD", "{t}a", "1", "x"],
            &["ZADD", "{t}b", "2", "x", "3", "y"],
            &["ZADD", "{t}d", "9", "old"],
        ],
        concurrent: &[
            (0, 9, &[&["ZUNIONSTORE", "{t}d", "2", "{t}a", "{t}b"]]),
            (1, 1, &[&["ZADD", "{t}d", "5", "mine"]]),
        ],
    };
    play(&rule, |r| {
        expect(
            r,
            &["ZRANGE", "{t}d", "0", "-1", "WITHSCORES"],
            "*6\r\n$1\r\nx\r\n$1\r\n3\r\n$1\r\ny\r\n$1\r\n3\r\n$4\r\nmine\r\n$1\r\n5\r\n",
        )
    });
}

// ---- Lists ----

#[test]
fn concurrent_inserts_at_one_place_get_one_order_everywhere() {
    let rule = Rule {
        regions: 2,
        setup: &[&["RPUSH", "L", "x"]],
        concurrent: &[
            (0, 1, &[&["LINSERT", "L", "AFTER", "x", "y1"]]),
            (1, 1, &[&["LINSERT", "L", "AFTER", "x", "y2"]]),
        ],
    };
    play(&rule, |r| {
        let reply = r.run(&["LRANGE", "L", "0", "-1"]);
        let a = "*3\r\n$1\r\nx\r\n$2\r\ny1\r\n$2\r\ny2\r\n";
        let b = "*3\r\n$1\r\nx\r\n$2\r\ny2\r\n$2\r\ny1\r\n";
        assert!(reply == a || reply == b, "unexpected list {reply:?}");
    });
}

#[test]
fn list_del_removes_only_observed_elements() {
    let rule = Rule {
        regions: 2,
        setup: &[&["RPUSH", "L", "x"]],
        concurrent: &[(0, 1, &[&["LPUSH", "L", "y"]]), (1, 5, &[&["DEL", "L"]])],
    };
    play(&rule, |r| {
        expect(r, &["LRANGE", "L", "0", "-1"], "*1\r\n$1\r\ny\r\n")
    });
}

#[test]
fn concurrent_pops_return_the_same_element_which_is_removed_once() {
    let rule = Rule {
        regions: 2,
        setup: &[&["RPUSH", "L", "a", "b"]],
        concurrent: &[(0, 1, &[&["LPOP", "L"]]), (1, 1, &[&["LPOP", "L"]])],
    };
    play(&rule, |r| {
        expect(r, &["LRANGE", "L", "0", "-1"], "*1\r\n$1\r\nb\r\n")
    });
}

#[test]
fn lset_is_a_register_write_on_the_element() {
    let rule = Rule {
        regions: 2,
        setup: &[&["RPUSH", "L", "a", "b"]],
        concurrent: &[
            (0, 1, &[&["LSET", "L", "0", "p"]]),
            (1, 2, &[&["LSET", "L", "0", "q"]]),
        ],
    };
    play(&rule, |r| {
        expect(
            r,
            &["LRANGE", "L", "0", "-1"],
            "*2\r\n$1\r\nq\r\n$1\r\nb\r\n",
        )
    });
}

#[test]
fn ltrim_and_lrem_remove_only_observed_elements() {
    let rule = Rule {
        regions: 2,
        setup: &[&["RPUSH", "L", "a", "b", "b"]],
        concurrent: &[
            (0, 1, &[&["LTRIM", "L", "0", "0"]]),
            (1, 1, &[&["RPUSH", "L", "c"], &["LREM", "L", "0", "a"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["LRANGE", "L", "0", "-1"], "*1\r\n$1\r\nc\r\n")
    });
}

// ---- Expiry ----

#[test]
fn concurrent_expires_longest_lifetime_wins() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "k", "v"]],
        concurrent: &[
            (0, 0, &[&["EXPIRE", "k", "1000"]]),
            (1, 0, &[&["EXPIRE", "k", "2000"]]),
        ],
    };
    play(&rule, |r| {
        // `play` reads at T0 + 10 s.
        expect(r, &["TTL", "k"], ":1990\r\n");
    });
}

#[test]
fn concurrent_persist_beats_any_expiry() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "k", "v", "EX", "1000"]],
        concurrent: &[
            (0, 1, &[&["PERSIST", "k"]]),
            (1, 1, &[&["EXPIRE", "k", "5000"]]),
        ],
    };
    play(&rule, |r| expect(r, &["TTL", "k"], ":-1\r\n"));
}

#[test]
fn set_without_keepttl_clears_the_observed_expiry() {
    let rule = Rule {
        regions: 2,
        setup: &[&["SET", "k", "v", "EX", "1000"]],
        concurrent: &[
            (0, 1, &[&["SET", "k", "w"]]),
            (1, 1, &[&["SET", "j", "x", "EX", "500"]]),
        ],
    };
    play(&rule, |r| {
        expect(r, &["TTL", "k"], ":-1\r\n");
        expect(r, &["TTL", "j"], ":490\r\n");
    });
}

#[test]
fn only_the_region_whose_expiry_won_deletes_the_key() {
    let mut a = Region::new(0);
    let mut b = Region::new(1);
    a.run(&["SET", "k", "v", "PX", "1000"]);
    for e in a.take_effects() {
        b.receive(&e);
    }
    let later = T0 + 5_000;
    a.db.now_ms = later;
    b.db.now_ms = later;
    // Both read the key as absent once it is due.
    assert_eq!(a.run(&["GET", "k"]), "$-1\r\n");
    assert_eq!(b.run(&["GET", "k"]), "$-1\r\n");
    // Only A (owner of the winning vote) deletes it; B leaves it for A's delete.
    assert!(b.db.db.ks.due_for_expiry(later, 10).is_empty());
    assert!(
        b.take_effects().is_empty(),
        "B must not delete a key whose expiry it does not own"
    );
    let deletes = a.take_effects();
    assert_eq!(deletes.len(), 1, "A deletes the expired key exactly once");
    for e in &deletes {
        b.receive(e);
    }
    assert!(
        b.db.db.ks.raw_entry(b"k").is_none(),
        "the delete replicated to B"
    );
}

// ---- Transactions ----

#[test]
fn a_transaction_replicates_as_one_effect() {
    let mut a = Region::new(0);
    let mut b = Region::new(1);
    a.run(&["MULTI"]);
    a.run(&["SET", "x", "1"]);
    a.run(&["INCR", "n"]);
    a.run(&["SADD", "s", "m"]);
    a.run(&["EXEC"]);
    let effects = a.take_effects();
    assert_eq!(effects.len(), 1, "the transaction is one effect");
    assert_eq!(effects[0].ops.len(), 3);
    b.receive(&effects[0]);
    assert_eq!(b.run(&["GET", "x"]), bulk("1"));
    assert_eq!(b.run(&["GET", "n"]), bulk("1"));
    assert_eq!(b.run(&["SISMEMBER", "s", "m"]), ":1\r\n");
}

#[test]
fn effects_round_trip_through_their_encoding() {
    let mut a = Region::new(0);
    a.run(&["MSET", "a", "1", "b", "2"]);
    a.run(&["RPUSH", "L", "x", "y"]);
    a.run(&["ZINCRBY", "z", "2.5", "m"]);
    for e in a.take_effects() {
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert_eq!(Effect::decode(&buf).expect("decodes"), e);
    }
    let _ = Bytes::new();
}

// ---- Scripts ----

/// INCR a counter and give it a lifetime when the script created it.
const RATE_LIMITER: &str = "local n = redis.call('INCR', KEYS[1])\n\
     if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n\
     return n";

#[test]
fn a_script_replicates_as_one_effect() {
    let mut a = Region::new(0);
    let mut b = Region::new(1);
    let script = "redis.call('SET', KEYS[1], ARGV[1])\n\
                  redis.call('INCR', KEYS[2])\n\
                  redis.call('SADD', KEYS[3], ARGV[1])\n\
                  redis.call('GET', KEYS[1])\n\
                  return 'done'";
    assert_eq!(
        a.run(&["EVAL", script, "3", "x", "n", "s", "m"]),
        "$4\r\ndone\r\n"
    );
    let effects = a.take_effects();
    assert_eq!(effects.len(), 1, "the script is one effect");
    assert_eq!(
        effects[0].ops.len(),
        3,
        "one operation per write, none for reads"
    );
    // Before the effect arrives, region B has none of the writes; after it, all of them.
    assert_eq!(b.run(&["EXISTS", "x", "n", "s"]), ":0\r\n");
    b.receive(&effects[0]);
    assert_eq!(b.run(&["GET", "x"]), bulk("m"));
    assert_eq!(b.run(&["GET", "n"]), bulk("1"));
    assert_eq!(b.run(&["SISMEMBER", "s", "m"]), ":1\r\n");
    // A script that only reads, or whose write fails, makes no effect.
    a.run(&["EVAL", "return redis.call('GET', 'x')", "0"]);
    a.run(&["EVAL", "return redis.call('LPUSH', 'x', 'v')", "0"]);
    assert!(a.take_effects().is_empty());
    // A function's writes are one effect too.
    let lib = "#!lua name=lib\nredis.register_function('two', function(keys, args) \
               redis.call('SET', keys[1], args[1]) redis.call('SET', keys[2], args[1]) end)";
    assert_eq!(a.run(&["FUNCTION", "LOAD", lib]), bulk("lib"));
    a.run(&["FCALL", "two", "2", "p", "q", "v"]);
    let effects = a.take_effects();
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].ops.len(), 2);
}

#[test]
fn a_script_inside_a_transaction_joins_its_effect() {
    let mut a = Region::new(0);
    a.run(&["MULTI"]);
    a.run(&["SET", "x", "1"]);
    a.run(&[
        "EVAL",
        "redis.call('SET', 'y', '2') redis.call('SET', 'z', '3')",
        "0",
    ]);
    a.run(&["SET", "w", "4"]);
    a.run(&["EXEC"]);
    let effects = a.take_effects();
    assert_eq!(
        effects.len(),
        1,
        "the transaction with its script is one effect"
    );
    assert_eq!(effects[0].ops.len(), 4);
}

#[test]
fn concurrent_rate_limiter_scripts_converge() {
    let rule = Rule {
        regions: 3,
        setup: &[],
        concurrent: &[
            (0, 0, &[&["EVAL", RATE_LIMITER, "1", "rate", "100"]]),
            (1, 5, &[&["EVAL", RATE_LIMITER, "1", "rate", "100"]]),
            (2, 9, &[&["EVAL", RATE_LIMITER, "1", "rate", "100"]]),
        ],
    };
    play(&rule, |r| {
        // Each region counted its own request first; the counts add up everywhere, and the
        // longest lifetime (from the latest region's clock) wins: `play` reads at T0 + 10 s.
        expect(r, &["GET", "rate"], &bulk("3"));
        expect(r, &["PTTL", "rate"], ":90009\r\n");
    });
}
