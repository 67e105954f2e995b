//! HyperLogLog: Redis's 16384 six-bit registers, merged register by register with `max`.
//!
//! Conflict rules (a delete wins over the concurrent `PFADD`s to the version of the key it
//! saw):
//! - `PFADD` and `PFMERGE` raise registers; concurrent raises merge by maximum, so every
//!   region's elements count.
//! - The value has an *epoch*, the number of deletes it went through. A raise carries the
//!   epoch its writer saw, but whether it counts is decided by what it saw: a raise concurrent
//!   with a delete the value still remembers is dropped; one that saw every remembered delete
//!   joins the current epoch. (Counts alone would be wrong: a region that collected a stable
//!   delete forgets it and counts from zero again, while another still remembers it.)
//! - A delete (`DEL`, `FLUSHALL`, a write of another type) that observed at least one raise of
//!   the current epoch clears the registers and starts the next epoch; concurrent deletes of
//!   one epoch all start the same next epoch. A delete that observed nothing of the current
//!   epoch changes nothing. A raise concurrent with a delete of its epoch is therefore lost in
//!   every region, whichever arrives first.
//! - A delete is remembered until every participant has seen it, so the value and its epoch
//!   outlive it until then.
//!
//! Join (state merge): the greater epoch wins; within one epoch registers join by maximum.

use crate::crdt::clock::{Dot, VectorClock};
use serde::{Deserialize, Serialize};

/// Number of registers (Redis's `HLL_REGISTERS`, precision 14).
pub const REGISTERS: usize = 16384;
/// Registers set before the representation turns dense.
const SPARSE_MAX: usize = 1024;

/// The registers, sparse (sorted `(index, value)` pairs of non-zero registers) while few are
/// set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Registers {
    Sparse(Vec<(u16, u8)>),
    Dense(Vec<u8>),
}

impl Default for Registers {
    fn default() -> Self {
        Registers::Sparse(Vec::new())
    }
}

impl Registers {
    pub fn get(&self, index: u16) -> u8 {
        match self {
            Registers::Sparse(v) => v
                .binary_search_by_key(&index, |(i, _)| *i)
                .map_or(0, |at| v[at].1),
            Registers::Dense(d) => d.get(usize::from(index)).copied().unwrap_or(0),
        }
    }

    /// Raises register `index` to `value`; true when it changed.
    pub fn raise(&mut self, index: u16, value: u8) -> bool {
        if usize::from(index) >= REGISTERS || value == 0 {
            return false;
        }
        match self {
            Registers::Sparse(v) => match v.binary_search_by_key(&index, |(i, _)| *i) {
                Ok(at) if v[at].1 >= value => false,
                Ok(at) => {
                    v[at].1 = value;
                    true
                }
                Err(at) => {
                    v.insert(at, (index, value));
                    if v.len() > SPARSE_MAX {
                        let mut dense = vec![0u8; REGISTERS];
                        for (i, r) in v.iter() {
                            dense[usize::from(*i)] = *r;
                        }
                        *self = Registers::Dense(dense);
                    }
                    true
                }
            },
            Registers::Dense(d) => {
                let slot = &mut d[usize::from(index)];
                if *slot >= value {
                    false
                } else {
                    *slot = value;
                    true
                }
            }
        }
    }

    /// Every non-zero register.
    pub fn nonzero(&self) -> Vec<(u16, u8)> {
        match self {
            Registers::Sparse(v) => v.clone(),
            Registers::Dense(d) => d
                .iter()
                .enumerate()
                .filter(|(_, r)| **r > 0)
                .map(|(i, r)| (i as u16, *r))
                .collect(),
        }
    }

    /// All 16384 registers.
    pub fn dense(&self) -> Vec<u8> {
        match self {
            Registers::Dense(d) => d.clone(),
            Registers::Sparse(v) => {
                let mut d = vec![0u8; REGISTERS];
                for (i, r) in v {
                    d[usize::from(*i)] = *r;
                }
                d
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Registers::Sparse(v) => v.is_empty(),
            Registers::Dense(d) => d.iter().all(|r| *r == 0),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HllValue {
    /// Deletes this value went through (see the module docs).
    pub epoch: u64,
    pub regs: Registers,
    /// The first raise of each actor in this epoch: the value exists while there is one, and
    /// a delete that observed one of them ends the epoch.
    pub made: Vec<Dot>,
    /// Deletes not yet known to every participant, the latest per actor.
    pub deletes: Vec<Dot>,
}

/// Keeps the latest dot per actor in `dots` after adding `dot`.
fn note_latest(dots: &mut Vec<Dot>, dot: Dot) {
    if let Some(d) = dots.iter_mut().find(|d| d.actor == dot.actor) {
        if dot.seq > d.seq {
            *d = dot;
        }
    } else {
        dots.push(dot);
        dots.sort();
    }
}

/// Keeps the first dot per actor in `dots` after adding `dot`.
fn note_first(dots: &mut Vec<Dot>, dot: Dot) {
    if let Some(d) = dots.iter_mut().find(|d| d.actor == dot.actor) {
        if dot.seq < d.seq {
            *d = dot;
        }
    } else {
        dots.push(dot);
        dots.sort();
    }
}

impl HllValue {
    pub fn exists(&self) -> bool {
        !self.made.is_empty()
    }

    /// Applies a raise made by effect `dot`, whose writer had seen `observed` and counted
    /// `epoch` deletes of the key.
    ///
    /// A region forgets a delete once every participant has seen it (collection), and a
    /// HyperLogLog left empty by it goes with it, so a writer may count fewer deletes than a
    /// region that still remembers them, or more than one that forgot them. A raise of an
    /// older epoch is dropped only when it is concurrent with a delete this value remembers;
    /// one that saw every remembered delete also saw the forgotten ones (a delete is forgotten
    /// only once every raise concurrent with it has arrived), so it joins the current epoch. A
    /// raise of a newer epoch means this value forgot deletes its writer still counts: its
    /// content came after them too, so the raise joins it and the count is taken up.
    pub fn raise(&mut self, dot: Dot, epoch: u64, changes: &[(u16, u8)], observed: &VectorClock) {
        if epoch < self.epoch && self.deletes.iter().any(|d| !observed.covers(*d)) {
            return;
        }
        self.epoch = self.epoch.max(epoch);
        note_first(&mut self.made, dot);
        for (i, r) in changes {
            self.regs.raise(*i, *r);
        }
    }

    /// A delete by effect `by` that observed `observed` (see the module docs).
    pub fn delete(&mut self, observed: &VectorClock, by: Dot) {
        if !self.made.iter().any(|d| observed.covers(*d)) {
            return;
        }
        self.epoch += 1;
        self.regs = Registers::default();
        self.made.clear();
        note_latest(&mut self.deletes, by);
    }

    /// Forgets deletes every participant has seen.
    pub fn collect(&mut self, stable: &VectorClock) {
        self.deletes.retain(|d| !stable.covers(*d));
    }

    /// State merge (see the module docs). An epoch count that differs only because one side
    /// forgot deletes the other still remembers (every delete the greater side remembers was
    /// seen by the other) is no reason to drop the other side's raises: the two join.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &HllValue, their_ctx: &VectorClock) {
        let forgotten_here =
            other.epoch > self.epoch && other.deletes.iter().all(|d| mine_ctx.covers(*d));
        let forgotten_there =
            self.epoch > other.epoch && self.deletes.iter().all(|d| their_ctx.covers(*d));
        if other.epoch == self.epoch || forgotten_here || forgotten_there {
            self.epoch = self.epoch.max(other.epoch);
            for (i, r) in other.regs.nonzero() {
                self.regs.raise(i, r);
            }
            for d in &other.made {
                note_first(&mut self.made, *d);
            }
        } else if other.epoch > self.epoch {
            self.epoch = other.epoch;
            self.regs = other.regs.clone();
            self.made = other.made.clone();
        }
        for d in &other.deletes {
            note_latest(&mut self.deletes, *d);
        }
    }
}

/// Redis's MurmurHash64A with seed 0xadc83b19.
fn murmur64a(key: &[u8]) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let seed: u64 = 0xadc8_3b19;
    let mut h: u64 = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u64::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in and the value it sets (Redis's hllPatLen).
pub fn pattern(element: &[u8]) -> (u16, u8) {
    let hash = murmur64a(element);
    let index = (hash & (REGISTERS as u64 - 1)) as u16;
    let rest = (hash >> 14) | (1u64 << 50);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if before == z {
            return z / 3.0;
        }
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

/// Redis 7's cardinality estimate of a set of registers (Ertl's improved estimator).
pub fn count(regs: &[u8]) -> u64 {
    let m = REGISTERS as f64;
    let mut histo = [0u32; 64];
    for r in regs {
        histo[usize::from(*r).min(63)] += 1;
    }
    let q = 50;
    let mut z = m * tau((m - f64::from(histo[q + 1])) / m);
    for j in (1..=q).rev() {
        z += f64::from(histo[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histo[0]) / m);
    let alpha_inf = 0.721_347_520_444_481_7;
    (alpha_inf * m * m / z).round() as u64
}

/// The value as Redis stores it: the dense encoding (`HYLL`, encoding 0, the cardinality cache
/// marked stale, 12288 bytes of packed six-bit registers).
pub fn encode_dense(regs: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + REGISTERS * 6 / 8);
    out.extend_from_slice(b"HYLL");
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80]);
    let mut packed = vec![0u8; REGISTERS * 6 / 8];
    for (i, r) in regs.iter().enumerate() {
        let bit = i * 6;
        let byte = bit / 8;
        let shift = bit % 8;
        let v = u16::from(*r & 0x3f) << shift;
        packed[byte] |= (v & 0xff) as u8;
        if byte + 1 < packed.len() {
            packed[byte + 1] |= (v >> 8) as u8;
        }
    }
    out.extend_from_slice(&packed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::types::laws::{assert_join_laws, clock, dot, State};

    fn with(epoch: u64, made: &[Dot], regs: &[(u16, u8)], deletes: &[Dot]) -> HllValue {
        let mut v = HllValue {
            epoch,
            ..HllValue::default()
        };
        for d in made {
            note_first(&mut v.made, *d);
        }
        for (i, r) in regs {
            v.regs.raise(*i, *r);
        }
        for d in deletes {
            note_latest(&mut v.deletes, *d);
        }
        v
    }

    fn join(a: &mut HllValue, ac: &VectorClock, b: &HllValue, bc: &VectorClock) {
        a.join(ac, b, bc)
    }

    fn states() -> Vec<State<HllValue>> {
        vec![
            (HllValue::default(), clock(&[])),
            // 1: PFADD raising registers 1 and 2.
            (
                with(0, &[dot(1, 1)], &[(1, 3), (2, 1)], &[]),
                clock(&[(1, 1)]),
            ),
            // 2, concurrently: PFADD raising register 1 higher and 7.
            (
                with(0, &[dot(2, 1)], &[(1, 5), (7, 2)], &[]),
                clock(&[(2, 1)]),
            ),
            // 3, after 1: DEL, then a PFADD.
            (
                with(1, &[dot(3, 2)], &[(9, 1)], &[dot(3, 1)]),
                clock(&[(1, 1), (3, 2)]),
            ),
        ]
    }

    #[test]
    fn join_is_commutative_associative_and_idempotent() {
        assert_join_laws(&states(), join);
    }

    #[test]
    fn a_delete_drops_the_raises_of_its_epoch_in_any_order() {
        let first = dot(1, 1);
        // Order 1: the concurrent raise arrives first, then the delete clears it.
        let mut a = HllValue::default();
        a.raise(first, 0, &[(3, 1)], &clock(&[]));
        a.raise(dot(2, 1), 0, &[(4, 2)], &clock(&[]));
        a.delete(&clock(&[(1, 1)]), dot(3, 1));
        // Order 2: the delete first; the raise, which did not see it, is dropped.
        let mut b = HllValue::default();
        b.raise(first, 0, &[(3, 1)], &clock(&[]));
        b.delete(&clock(&[(1, 1)]), dot(3, 1));
        b.raise(dot(2, 1), 0, &[(4, 2)], &clock(&[]));
        assert_eq!(a, b);
        assert!(!a.exists());
        // A raise made after seeing the delete counts.
        b.raise(dot(2, 2), 1, &[(5, 1)], &clock(&[(1, 1), (3, 1)]));
        assert!(b.exists());
        assert_eq!(b.regs.get(5), 1);
        // A delete that saw nothing of the current epoch changes nothing.
        b.delete(&clock(&[(1, 1)]), dot(4, 1));
        assert!(b.exists());
        // A writer that forgot the delete (it was stable there) counts fewer deletes; its raise
        // saw the delete, so it counts here too.
        b.raise(dot(5, 1), 0, &[(6, 3)], &clock(&[(1, 1), (3, 1)]));
        assert_eq!((b.regs.get(6), b.epoch), (3, 1));
    }

    #[test]
    fn counts_match_redis_for_small_and_large_sets() {
        // Figures from redis-server 7.0: PFADD of the elements, then PFCOUNT.
        let mut regs = vec![0u8; REGISTERS];
        for e in ["a", "b", "c", "d", "e", "f", "g"] {
            let (i, r) = pattern(e.as_bytes());
            regs[usize::from(i)] = regs[usize::from(i)].max(r);
        }
        assert_eq!(count(&regs), 7);
    }
}
