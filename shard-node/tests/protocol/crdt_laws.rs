//! Property tests for the CRDT laws over random workloads on three regions:
//! - op exchange converges whatever the delivery order (commutativity), and redelivery changes
//!   nothing (idempotence);
//! - state merge is commutative, associative and idempotent;
//! - op exchange equals state merge.
//!
//! Workloads mix the value types (strings, counters, hashes, sets, sorted sets, lists, streams,
//! HyperLogLogs) on a few keys (so types collide), with a round of partial synchronisation in
//! the middle so effects have causal dependencies.

use proptest::prelude::*;
use shard_node::commands::testing::TestDb;
use shard_node::crdt::replica::CausalBuffer;
use shard_node::crdt::Effect;

const T0: u64 = 1_700_000_000_000;
const NAMES: [&str; 3] = ["A", "B", "C"];

/// The commands of one step: usually one, or a transaction (one effect with several
/// operations on the same key, whose increments share the effect's dot).
fn commands(kind: u8, key: u8, member: u8, n: i8) -> Vec<Vec<String>> {
    let k = format!("k{}", key % 4);
    let m = format!("m{}", member % 3);
    let step = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    match kind % 27 {
        24 => vec![
            step(&["MULTI"]),
            step(&["INCRBY", &k, &n.to_string()]),
            step(&["INCRBY", &k, "1"]),
            step(&["INCRBYFLOAT", &k, "0.1"]),
            step(&["INCRBYFLOAT", &k, "0.2"]),
            step(&["EXEC"]),
        ],
        25 => vec![
            step(&["MULTI"]),
            step(&["HINCRBY", &k, &m, &n.to_string()]),
            step(&["HINCRBYFLOAT", &k, &m, "0.1"]),
            step(&["HINCRBY", &k, &m, "2"]),
            step(&["EXEC"]),
        ],
        26 => vec![
            step(&["MULTI"]),
            step(&["ZINCRBY", &k, "0.1", &m]),
            step(&["ZINCRBY", &k, &n.to_string(), &m]),
            step(&["ZINCRBY", &k, "0.2", &m]),
            step(&["EXEC"]),
        ],
        _ => vec![command(kind, &k, m, n)],
    }
}

fn command(kind: u8, key: &str, m: String, n: i8) -> Vec<String> {
    let key = key.to_string();
    let n = i64::from(n);
    let v = |x: &str| x.to_string();
    match kind % 27 {
        0 => vec![v("SET"), key, m],
        1 => vec![v("INCRBY"), key, n.to_string()],
        2 => vec![v("DEL"), key],
        3 => vec![v("SADD"), key, m],
        4 => vec![v("SREM"), key, m],
        5 => vec![v("HSET"), key, m, n.to_string()],
        6 => vec![v("HDEL"), key, m],
        7 => vec![v("HINCRBY"), key, m, n.to_string()],
        8 => vec![v("ZADD"), key, n.to_string(), m],
        9 => vec![v("ZINCRBY"), key, n.to_string(), m],
        10 => vec![v("ZREM"), key, m],
        11 => vec![v("RPUSH"), key, m],
        12 => vec![v("LPUSH"), key, m],
        13 => vec![v("LPOP"), key],
        14 => vec![v("EXPIRE"), key, (1000 + n.abs()).to_string()],
        15 => vec![v("PERSIST"), key],
        16 => vec![v("LINSERT"), key, v("AFTER"), m, v("z")],
        17 => vec![v("XADD"), key, v("*"), v("f"), m],
        18 => vec![
            v("XADD"),
            key,
            v("MAXLEN"),
            v("="),
            v("2"),
            v("*"),
            v("f"),
            m,
        ],
        19 => vec![v("XTRIM"), key, v("MAXLEN"), v("1")],
        20 => vec![v("PFADD"), key, m],
        21 => vec![v("PFMERGE"), key, format!("k{}", (n.unsigned_abs() % 4))],
        22 => vec![v("XADD"), key, format!("{}-1", n.abs() + 1), v("f"), m],
        _ => vec![v("FLUSHALL")],
    }
}

type Workload = Vec<(usize, u8, u8, u8, i8)>;

fn workload() -> impl Strategy<Value = (Workload, Workload, Vec<bool>, Vec<usize>)> {
    let op = (0usize..3, any::<u8>(), any::<u8>(), any::<u8>(), -5i8..6);
    (
        prop::collection::vec(op.clone(), 1..14),
        prop::collection::vec(op, 0..10),
        prop::collection::vec(any::<bool>(), 64),
        prop::collection::vec(0usize..1000, 64),
    )
}

struct Region {
    db: TestDb,
    gate: CausalBuffer,
    log: Vec<Effect>,
}

/// Runs the workload: round 1, a partial exchange chosen by `deliver`, round 2. Returns the
/// regions and every effect made.
fn build(round1: &Workload, round2: &Workload, deliver: &[bool]) -> (Vec<Region>, Vec<Effect>) {
    let mut regions: Vec<Region> = (0..3)
        .map(|i| {
            let mut db = TestDb::region(NAMES[i]);
            db.now_ms = T0;
            Region {
                db,
                gate: CausalBuffer::new(),
                log: Vec::new(),
            }
        })
        .collect();
    let mut all = Vec::new();
    let mut step = 0u64;
    let mut run = |regions: &mut Vec<Region>, ops: &Workload, all: &mut Vec<Effect>| {
        for (r, kind, key, member, n) in ops {
            step += 1;
            let region = &mut regions[*r];
            region.db.now_ms = T0 + step;
            for args in commands(*kind, *key, *member, *n) {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                region.db.run(&refs);
            }
            let made = std::mem::take(&mut region.db.db.ks.outbox);
            region.log.extend(made.iter().cloned());
            all.extend(made);
        }
    };
    run(&mut regions, round1, &mut all);
    let mut flag = deliver.iter().cycle();
    let snapshot = all.clone();
    for region in regions.iter_mut() {
        for e in &snapshot {
            if *flag.next().unwrap_or(&true) {
                region.gate.offer(&mut region.db.db.ks, e.clone());
            }
        }
    }
    run(&mut regions, round2, &mut all);
    (regions, all)
}

fn shuffled(effects: &[Effect], seeds: &[usize]) -> Vec<Effect> {
    let mut out = effects.to_vec();
    for i in (1..out.len()).rev() {
        let j = seeds[i % seeds.len()] % (i + 1);
        out.swap(i, j);
    }
    out
}

fn visible(r: &Region) -> String {
    format!("{:?}", r.db.db.ks.visible(T0 + 100_000))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn op_exchange_converges_in_any_order_and_is_idempotent(
        (round1, round2, deliver, seeds) in workload()
    ) {
        let (mut regions, all) = build(&round1, &round2, &deliver);
        for (i, region) in regions.iter_mut().enumerate() {
            // Each region gets everything in its own random order, then everything again.
            let order = shuffled(&all, &seeds[i * 7 % seeds.len()..]);
            for e in order.iter().chain(all.iter()) {
                region.gate.offer(&mut region.db.db.ks, e.clone());
            }
            prop_assert_eq!(region.gate.waiting(), 0);
        }
        let a = visible(&regions[0]);
        prop_assert_eq!(&a, &visible(&regions[1]));
        prop_assert_eq!(&a, &visible(&regions[2]));
    }

    #[test]
    fn state_merge_is_a_join_and_equals_op_exchange(
        (round1, round2, deliver, seeds) in workload()
    ) {
        // Op exchange result.
        let (mut exchanged, all) = build(&round1, &round2, &deliver);
        let region = &mut exchanged[0];
        for e in shuffled(&all, &seeds) {
            region.gate.offer(&mut region.db.db.ks, e);
        }
        let by_ops = visible(&exchanged[0]);

        // (A ⊔ B) ⊔ C
        let (mut r1, _) = build(&round1, &round2, &deliver);
        let (b, c) = (r1.remove(1), r1.remove(1));
        let mut left = r1.remove(0);
        left.db.db.ks.join(&b.db.db.ks);
        left.db.db.ks.join(&c.db.db.ks);
        prop_assert_eq!(&visible(&left), &by_ops, "state merge differs from op exchange");

        // A ⊔ (C ⊔ B), the other grouping and order.
        let (mut r2, _) = build(&round1, &round2, &deliver);
        let a = r2.remove(0);
        let b = r2.remove(0);
        let mut right = r2.remove(0);
        right.db.db.ks.join(&b.db.db.ks);
        let mut outer = a;
        outer.db.db.ks.join(&right.db.db.ks);
        prop_assert_eq!(&visible(&outer), &by_ops, "merge is not associative/commutative");

        // Idempotent: merging again changes nothing.
        let (mut r3, _) = build(&round1, &round2, &deliver);
        let b = r3.remove(1);
        left.db.db.ks.join(&b.db.db.ks);
        left.db.db.ks.join(&outer.db.db.ks);
        prop_assert_eq!(&visible(&left), &by_ops, "merge is not idempotent");

        // After a merge, the same effects delivered as ops change nothing either.
        for e in &all {
            left.gate.offer(&mut left.db.db.ks, e.clone());
        }
        prop_assert_eq!(&visible(&left), &by_ops);
        let _ = &r3;
    }
}

/// A transaction that increments one counter several times makes one effect whose increments
/// share a dot. A region that receives the effect and one that merges the origin's state hold
/// the same value as the origin, and merging again changes nothing.
#[test]
fn increments_of_one_transaction_survive_op_exchange_and_state_merge() {
    let mut origin = TestDb::region("A");
    origin.now_ms = T0;
    for args in [
        &["SET", "n", "10"][..],
        &["MULTI"],
        &["INCRBY", "n", "-4"],
        &["INCRBY", "n", "1"],
        &["HINCRBY", "h", "f", "2"],
        &["HINCRBYFLOAT", "h", "f", "0.5"],
        &["ZINCRBY", "z", "0.1", "m"],
        &["ZINCRBY", "z", "0.2", "m"],
        &["INCRBY", "big", "200000000000000000"],
        &["DECRBY", "big", "200000000000000000"],
        &["EXEC"],
    ] {
        origin.run(args);
    }
    let effects = std::mem::take(&mut origin.db.ks.outbox);
    let reads = |db: &mut TestDb| {
        [
            db.text(&["GET", "n"]),
            db.text(&["HGET", "h", "f"]),
            db.text(&["ZSCORE", "z", "m"]),
            db.text(&["GET", "big"]),
        ]
    };
    let expected = reads(&mut origin);
    assert_eq!(expected[0], "$1\r\n7\r\n");
    assert_eq!(expected[1], "$3\r\n2.5\r\n");
    assert_eq!(expected[3], "$1\r\n0\r\n");
    // The two increments of `n` are kept as one, their sum.
    let state = origin.text(&["AA.INSPECT", "n"]);
    assert!(state.contains("Int(-3)"), "{state}");
    assert!(!state.contains("Int(-4)"), "{state}");
    assert_eq!(origin.text(&["AA.INSPECT", "absent"]), "$-1\r\n");

    let mut by_ops = TestDb::region("B");
    let mut gate = CausalBuffer::new();
    for e in &effects {
        gate.offer(&mut by_ops.db.ks, e.clone());
    }
    assert_eq!(reads(&mut by_ops), expected, "op exchange");

    let mut by_merge = TestDb::region("C");
    by_merge.db.ks.join(&origin.db.ks);
    assert_eq!(reads(&mut by_merge), expected, "state merge");
    by_merge.db.ks.join(&by_ops.db.ks);
    by_merge.db.ks.join(&origin.db.ks);
    assert_eq!(reads(&mut by_merge), expected, "merging again");
    origin.db.ks.join(&by_merge.db.ks);
    assert_eq!(reads(&mut origin), expected, "the origin after a merge");
}
