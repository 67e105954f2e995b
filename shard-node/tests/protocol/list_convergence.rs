//! Randomized list convergence on three in-memory regions, driven the way the real links drive
//! them: every region keeps the stream of effects it applied (its own and received ones, like
//! its backlog), each directed link pulls that stream in order from a cursor, links are cut and
//! healed at random, every delivery is followed by an acknowledgement of the receiver's clock,
//! and tombstones are collected at the clock every participant is known to have seen (the same
//! rule the server uses). Occasionally a receiver merges the sender's whole state instead, as a
//! link does when the sender's backlog no longer covers it.
//!
//! Workloads push at both ends (single and multi-value), pop at both ends, insert next to
//! pivots, move elements between lists, trim, remove and delete, with each region's wall
//! clock skewed. After every link heals, every region must hold the same lists.
//!
//! `LIST_SEEDS=<n>` runs more seeds; `LIST_SEED=<seed>` replays one.

use crate::common::XorShift;
use shard_node::commands::testing::TestDb;
use shard_node::crdt::keyspace::Visible;
use shard_node::crdt::replica::CausalBuffer;
use shard_node::crdt::{Effect, VectorClock};

const NAMES: [&str; 3] = ["A", "B", "C"];
const T0: u64 = 1_700_000_000_000;

struct Region {
    db: TestDb,
    gate: CausalBuffer,
    /// Every effect applied here, in order: what a peer pulling from this region receives.
    stream: Vec<Effect>,
    /// The clock each other region acknowledged to this one.
    acked: [Option<VectorClock>; 3],
    /// Wall-clock skew of this region, in ms.
    skew: i64,
}

struct World {
    regions: Vec<Region>,
    /// `cursor[src][dst]`: how far `dst` has pulled `src`'s stream.
    cursor: [[usize; 3]; 3],
    up: [[bool; 3]; 3],
    now: u64,
    next_value: u64,
    trace: Vec<String>,
}

impl World {
    fn new(rng: &mut XorShift) -> Self {
        let regions = (0..3)
            .map(|i| {
                let mut db = TestDb::region(NAMES[i]);
                db.now_ms = T0;
                Region {
                    db,
                    gate: CausalBuffer::new(),
                    stream: Vec::new(),
                    acked: [None, None, None],
                    skew: rng.below(600) as i64 - 300,
                }
            })
            .collect();
        World {
            regions,
            cursor: [[0; 3]; 3],
            up: [[true; 3]; 3],
            now: T0,
            next_value: 0,
            trace: Vec::new(),
        }
    }

    fn value(&mut self) -> String {
        self.next_value += 1;
        format!("e{}", self.next_value)
    }

    fn command(&mut self, rng: &mut XorShift) -> Vec<String> {
        let key = |rng: &mut XorShift| format!("l{}", rng.below(2));
        let k = key(rng);
        let s = |x: &str| x.to_string();
        match rng.below(20) {
            0..=3 => vec![s("LPUSH"), k, self.value()],
            4..=7 => vec![s("RPUSH"), k, self.value()],
            8 => vec![s("LPUSH"), k, self.value(), self.value(), self.value()],
            9 => vec![s("RPUSH"), k, self.value(), self.value()],
            10 | 11 => vec![s("LPOP"), k],
            12 | 13 => vec![s("RPOP"), k],
            14 => {
                let pivot = format!("e{}", rng.below(self.next_value.max(1)) + 1);
                let side = if rng.below(2) == 0 { "BEFORE" } else { "AFTER" };
                vec![s("LINSERT"), k, s(side), pivot, self.value()]
            }
            15 => {
                let dst = key(rng);
                let a = if rng.below(2) == 0 { "LEFT" } else { "RIGHT" };
                let b = if rng.below(2) == 0 { "LEFT" } else { "RIGHT" };
                vec![s("LMOVE"), k, dst, s(a), s(b)]
            }
            16 => vec![s("LTRIM"), k, s("0"), (2 + rng.below(4)).to_string()],
            17 => {
                let v = format!("e{}", rng.below(self.next_value.max(1)) + 1);
                vec![s("LREM"), k, s("0"), v]
            }
            18 => vec![s("LSET"), k, s("0"), self.value()],
            _ => vec![s("DEL"), k],
        }
    }

    fn local_write(&mut self, r: usize, rng: &mut XorShift) {
        let cmd = self.command(rng);
        self.write(r, cmd);
    }

    fn write(&mut self, r: usize, cmd: Vec<String>) {
        let region = &mut self.regions[r];
        region.db.now_ms = (self.now as i64 + region.skew) as u64;
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        region.db.run(&refs);
        let made = std::mem::take(&mut region.db.db.ks.outbox);
        self.trace.push(format!("{}: {}", NAMES[r], cmd.join(" ")));
        region.stream.extend(made);
    }

    /// `dst` pulls up to `n` effects of `src`'s stream, then acknowledges its clock.
    fn deliver(&mut self, src: usize, dst: usize, n: usize) {
        let start = self.cursor[src][dst];
        let end = start.saturating_add(n).min(self.regions[src].stream.len());
        let batch: Vec<Effect> = self.regions[src].stream[start..end].to_vec();
        self.cursor[src][dst] = end;
        let region = &mut self.regions[dst];
        let mut applied = Vec::new();
        for effect in batch {
            region
                .gate
                .offer_collect(&mut region.db.db.ks, effect, &mut applied);
        }
        self.trace.push(format!(
            "{} receives {} effects of {}, applies {}",
            NAMES[dst],
            end - start,
            NAMES[src],
            applied.len()
        ));
        region.stream.extend(applied);
        let clock = region.db.db.ks.clock().clone();
        self.regions[src].acked[dst] = Some(clock);
    }

    /// `dst` merges `src`'s whole state (a full transfer), then acknowledges its clock.
    fn full_merge(&mut self, src: usize, dst: usize) {
        let (a, b) = if src < dst {
            let (l, r) = self.regions.split_at_mut(dst);
            (&l[src], &mut r[0])
        } else {
            let (l, r) = self.regions.split_at_mut(src);
            (&r[0], &mut l[dst])
        };
        b.db.db.ks.join(&a.db.db.ks);
        // As the server does: effects that waited for what the merge brought apply now.
        let mut released = Vec::new();
        b.gate.release(&mut b.db.db.ks, &mut released);
        b.stream.extend(released);
        self.trace
            .push(format!("{} merges the state of {}", NAMES[dst], NAMES[src]));
        self.cursor[src][dst] = self.regions[src].stream.len();
        let clock = self.regions[dst].db.db.ks.clock().clone();
        self.regions[src].acked[dst] = Some(clock);
    }

    /// Collects tombstones at `r` the way the server does: at the meet of its clock and every
    /// peer's acknowledged clock, once it has everything each peer had when acknowledging.
    fn collect(&mut self, r: usize) {
        let region = &mut self.regions[r];
        let mine = region.db.db.ks.clock().clone();
        let mut stable = mine.clone();
        for (i, acked) in region.acked.iter().enumerate() {
            if i == r {
                continue;
            }
            let Some(theirs) = acked else { return };
            if !mine.dominates(theirs) {
                return;
            }
            stable = stable.meet(theirs);
        }
        let dropped = region.db.db.ks.collect(&stable);
        if dropped > 0 {
            self.trace.push(format!("{} collects {dropped}", NAMES[r]));
        }
    }

    fn heal_and_settle(&mut self) {
        self.up = [[true; 3]; 3];
        for _ in 0..4 {
            for src in 0..3 {
                for dst in 0..3 {
                    if src != dst {
                        self.deliver(src, dst, usize::MAX);
                    }
                }
            }
            for r in 0..3 {
                self.collect(r);
            }
        }
    }

    /// Every list of region `r`, as text.
    fn lists(&self, r: usize) -> String {
        let ks = &self.regions[r].db.db.ks;
        let mut out = String::new();
        for (key, (value, _)) in ks.visible(self.now + 1_000_000) {
            if let Visible::List(items) = value {
                let items: Vec<String> = items
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                out.push_str(&format!(
                    "{}=[{}] ",
                    String::from_utf8_lossy(&key),
                    items.join(" ")
                ));
            }
        }
        out
    }
}

/// One run: `steps` random actions, then every link healed. Returns the trace on divergence.
fn run(seed: u64, steps: usize, merges: bool) -> Result<(), String> {
    let mut rng = XorShift::new(seed);
    let mut w = World::new(&mut rng);
    for _ in 0..steps {
        w.now += rng.below(3);
        match rng.below(10) {
            0..=3 => {
                let r = rng.below(3) as usize;
                w.local_write(r, &mut rng);
            }
            5..=7 => {
                let src = rng.below(3) as usize;
                let dst = (src + 1 + rng.below(2) as usize) % 3;
                if w.up[src][dst] {
                    if merges && rng.below(25) == 0 {
                        w.full_merge(src, dst);
                    } else {
                        let n = 1 + rng.below(6) as usize;
                        w.deliver(src, dst, n);
                    }
                }
            }
            4 => {
                let src = rng.below(3) as usize;
                let dst = (src + 1 + rng.below(2) as usize) % 3;
                w.up[src][dst] = !w.up[src][dst];
            }
            _ => {
                let r = rng.below(3) as usize;
                w.collect(r);
            }
        }
    }
    w.heal_and_settle();
    if std::env::var_os("LIST_TRACE").is_some() {
        eprintln!("{}", w.trace.join("\n"));
        for r in &w.regions {
            eprintln!(
                "clock {:?} waiting {}",
                r.db.db.ks.clock(),
                r.gate.waiting()
            );
        }
    }
    let a = w.lists(0);
    for (r, name) in NAMES.iter().enumerate().skip(1) {
        let b = w.lists(r);
        if a != b {
            return Err(format!(
                "seed {seed}: A and {name} differ\nA: {a}\n{name}: {b}"
            ));
        }
        if w.regions[r].db.db.ks.clock() != w.regions[0].db.db.ks.clock() {
            return Err(format!("seed {seed}: {name} did not receive everything"));
        }
    }
    Ok(())
}

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("LIST_SEED") {
        return vec![s.trim().parse().expect("LIST_SEED is a number")];
    }
    let n = std::env::var("LIST_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default);
    (1..=n)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect()
}

fn words(cmd: &str) -> Vec<String> {
    cmd.split_whitespace().map(str::to_string).collect()
}

/// The delivery order that made regions keep one list in two orders for good. `s` is removed
/// and collected at A while `c`, inserted after `s` at B with a clock running ahead, survives;
/// `e`, pushed at C after it saw `s` removed, reaches A after the collection and B before.
/// With `s` gone, A used to compare `e` with `c`'s own stamp and place it after `c`; B compares
/// it with `s` and places it before. Now `c` orders by the key it inherited from `s` at A too.
#[test]
fn an_insert_next_to_a_collected_element_lands_in_the_same_place_everywhere() {
    let (a, b, c) = (0, 1, 2);
    let mut rng = XorShift::new(1);
    let mut w = World::new(&mut rng);
    w.regions[a].skew = 0;
    w.regions[b].skew = 5_000;
    w.regions[c].skew = 0;
    let everywhere = |w: &mut World, from: usize| {
        for to in 0..3 {
            if to != from {
                w.deliver(from, to, usize::MAX);
            }
        }
    };
    w.write(a, words("RPUSH l o"));
    everywhere(&mut w, a);
    w.now += 1;
    w.write(a, words("RPUSH l s"));
    everywhere(&mut w, a);
    // B appends after s, with its clock 5 s ahead; nobody hears of it yet.
    w.write(b, words("RPUSH l c"));
    // A pops s; B and C learn it and acknowledge.
    w.now += 1;
    w.write(a, words("RPOP l"));
    w.deliver(a, b, usize::MAX);
    w.deliver(a, c, usize::MAX);
    // A gets c and B's acknowledgement: everyone has seen s removed, and A has everything B and
    // C had, so A collects s.
    w.deliver(b, a, usize::MAX);
    w.collect(a);
    // C, which never saw c, appends after o.
    w.now += 1;
    w.write(c, words("RPUSH l e"));
    // B receives e while it still holds s.
    w.deliver(c, b, usize::MAX);
    w.deliver(c, a, usize::MAX);
    assert_eq!(w.lists(b), "l=[o e c] ");
    assert_eq!(w.lists(a), w.lists(b), "A and B order the list differently");
    w.heal_and_settle();
    assert_eq!(w.lists(c), w.lists(a));
}

/// An effect that waits in the causal gate for effects a full state merge then brings applies
/// with the merge, not whenever some later effect happens to apply directly.
#[test]
fn a_state_merge_releases_the_effects_waiting_for_it() {
    let (a, b, c) = (0, 1, 2);
    let mut rng = XorShift::new(2);
    let mut w = World::new(&mut rng);
    for v in ["x", "y", "z"] {
        w.write(a, words(&format!("RPUSH l {v}")));
    }
    w.deliver(a, b, 2);
    // C receives only A's third effect: it waits for the first two.
    w.cursor[a][c] = 2;
    w.deliver(a, c, 1);
    assert_eq!(w.regions[c].gate.waiting(), 1);
    assert_eq!(w.lists(c), "");
    // B's state holds the first two.
    w.full_merge(b, c);
    assert_eq!(w.regions[c].gate.waiting(), 0);
    assert_eq!(w.lists(c), "l=[x y z] ");
}

#[test]
fn lists_converge_under_cut_links_and_collection() {
    let failures: Vec<String> = seeds(500)
        .into_iter()
        .filter_map(|s| run(s, 1500, false).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} runs diverged; first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn lists_converge_with_full_state_merges() {
    let failures: Vec<String> = seeds(500)
        .into_iter()
        .filter_map(|s| run(s ^ 0x5555, 1500, true).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} runs diverged; first: {}",
        failures.len(),
        failures[0]
    );
}
