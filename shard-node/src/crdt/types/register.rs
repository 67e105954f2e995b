//! The register with counter increments ([`Counted`]): the value of a string, of a hash field
//! and of a sorted-set member's score.
//!
//! Conflict rule: a register is a set of (dot, timestamp, value) entries of which the one with
//! the greatest stamp is visible (the later timestamp; on equal timestamps the smaller actor
//! id). A counter adds increments instead of overwriting: the value is the visible register
//! value (0 without one) plus every surviving increment, summed in dot order so a float sum is
//! identical on every node; concurrent increments add up. A write cancels the base entries and
//! increments it observed, so unobserved increments stay on top of the new value. If the
//! visible register value is not a number, that value is shown and the increments it had not
//! observed are not.
//!
//! Join: an entry or increment present on one side only survives unless the other side's clock
//! covers its dot (then the other side removed it).

use super::{join_dotted, Blob};
use crate::crdt::clock::{Dot, Stamp, VectorClock};
use crate::crdt::effect::Delta;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use thin_vec::ThinVec;

/// A number held by a counter: integers stay exact, any float makes the sum a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub fn add_delta(self, delta: Delta) -> Num {
        match (self, delta) {
            (Num::Int(a), Delta::Int(b)) => Num::Int(a + i128::from(b)),
            (Num::Int(a), Delta::Float(b)) => Num::Float(a as f64 + b),
            (Num::Float(a), Delta::Int(b)) => Num::Float(a + b as f64),
            (Num::Float(a), Delta::Float(b)) => Num::Float(a + b),
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Text as Redis prints it (integers in decimal, floats in the shortest form).
    pub fn render(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => crate::crdt::render_float(f),
        }
    }
}

/// Parses the numeric reading of a register value: an integer if it is one, else a float.
pub fn parse_num(bytes: &[u8]) -> Option<Num> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Ok(i) = text.parse::<i64>() {
        if !text.starts_with('+') && (text == "0" || !text.starts_with('0')) && text != "-0" {
            return Some(Num::Int(i128::from(i)));
        }
    }
    let f: f64 = text.parse().ok()?;
    if f.is_finite() && !text.trim().is_empty() && text.trim() == text {
        Some(Num::Float(f))
    } else {
        None
    }
}

/// A multi-value register plus counter increments: strings, hash fields and sorted-set scores.
///
/// The visible value is the base entry with the greatest stamp; increments add on top. A write
/// cancels the observed base entries and increments, so unobserved increments stay on top of the
/// new value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counted<T> {
    pub base: SmallVec<[(Dot, u64, T); 1]>,
    /// Increments, usually none: a thin vector costs one word when empty.
    pub adds: ThinVec<(Dot, Delta)>,
}

impl<T> Default for Counted<T> {
    fn default() -> Self {
        Counted {
            base: SmallVec::new(),
            adds: ThinVec::new(),
        }
    }
}

impl<T: Clone> Counted<T> {
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.adds.is_empty()
    }

    pub fn remove_observed(&mut self, observed: &VectorClock) {
        self.base.retain(|(d, _, _)| !observed.covers(*d));
        self.adds.retain(|(d, _)| !observed.covers(*d));
    }

    pub fn write(&mut self, observed: &VectorClock, dot: Dot, ts: u64, value: T) {
        self.remove_observed(observed);
        self.base.push((dot, ts, value));
    }

    /// Adds an increment. Increments are kept in dot order, so a float sum is the same on
    /// every replica whatever order the increments arrived in.
    ///
    /// Increments of one effect (a transaction or script incrementing one value twice) share
    /// its dot. They are combined into one entry, in the effect's order, so every replica and
    /// every state merge holds the same entry. Two integers whose sum does not fit stay
    /// separate entries, after the ones already there (their sum is exact in any order).
    pub fn add(&mut self, dot: Dot, delta: Delta) {
        let end = self.adds.partition_point(|(d, _)| *d <= dot);
        if end > 0 && self.adds[end - 1].0 == dot {
            if let Some(sum) = combine(self.adds[end - 1].1, delta) {
                self.adds[end - 1].1 = sum;
                return;
            }
        }
        self.adds.insert(end, (dot, delta));
    }

    /// The base value with the greatest stamp.
    pub fn winner(&self) -> Option<&T> {
        self.base
            .iter()
            .max_by_key(|(d, ts, _)| Stamp {
                ts: *ts,
                actor: d.actor,
            })
            .map(|(_, _, v)| v)
    }

    pub fn join(&mut self, mine_ctx: &VectorClock, other: &Counted<T>, their_ctx: &VectorClock) {
        let mut base: Vec<(Dot, u64, T)> = self.base.drain(..).collect();
        join_dotted(
            &mut base,
            mine_ctx,
            &other.base.iter().cloned().collect::<Vec<_>>(),
            their_ctx,
            |e| e.0,
        );
        base.sort_by_key(|e| e.0);
        self.base = base.into_iter().collect();
        let mut adds: Vec<(Dot, Delta)> = self.adds.drain(..).collect();
        join_dotted(&mut adds, mine_ctx, &other.adds, their_ctx, |e| e.0);
        adds.sort_by_key(|e| e.0);
        self.adds = adds.into_iter().collect();
    }
}

/// The increment that has the effect of `first` then `second`; `None` when two integers'
/// sum overflows.
fn combine(first: Delta, second: Delta) -> Option<Delta> {
    match (first, second) {
        (Delta::Int(a), Delta::Int(b)) => a.checked_add(b).map(Delta::Int),
        (a, b) => Some(Delta::Float(delta_f64(a) + delta_f64(b))),
    }
}

fn delta_f64(d: Delta) -> f64 {
    match d {
        Delta::Int(i) => i as f64,
        Delta::Float(f) => f,
    }
}

impl Counted<Blob> {
    /// The numeric value: base (or 0 without one) plus every increment. `None` when the base is
    /// not a number (then increments the writer had not seen are not shown).
    pub fn number(&self) -> Option<Num> {
        let mut total = match self.winner() {
            Some(v) => parse_num(v)?,
            None => Num::Int(0),
        };
        for (_, d) in &self.adds {
            total = total.add_delta(*d);
        }
        Some(total)
    }

    /// The visible string.
    pub fn read(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.adds.is_empty() {
            if let Some(v) = self.winner() {
                return std::borrow::Cow::Borrowed(v);
            }
        }
        match self.number() {
            Some(n) => std::borrow::Cow::Owned(n.render().into_bytes()),
            None => std::borrow::Cow::Borrowed(self.winner().map(|v| &v[..]).unwrap_or(b"")),
        }
    }
}

impl Counted<f64> {
    pub fn score(&self) -> f64 {
        let mut total = self.winner().copied().unwrap_or(0.0);
        for (_, d) in &self.adds {
            total += delta_f64(*d);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::types::laws::{assert_join_laws, clock, dot, State};

    fn reg(base: &[(Dot, u64, &str)], adds: &[(Dot, Delta)]) -> Counted<Blob> {
        Counted {
            base: base
                .iter()
                .map(|(d, ts, v)| (*d, *ts, Blob::from(v.as_bytes())))
                .collect(),
            adds: adds.iter().copied().collect(),
        }
    }

    fn join(a: &mut Counted<Blob>, ac: &VectorClock, b: &Counted<Blob>, bc: &VectorClock) {
        a.join(ac, b, bc)
    }

    /// Five replicas' views of one string, in canonical form (entries in dot order).
    fn states() -> Vec<State<Counted<Blob>>> {
        vec![
            (Counted::default(), clock(&[])),
            // 1: SET k 5.
            (reg(&[(dot(1, 1), 10, "5")], &[]), clock(&[(1, 1)])),
            // 2, concurrently: SET k 7 at the same timestamp; INCRBY k 3.
            (
                reg(&[(dot(2, 1), 10, "7")], &[(dot(2, 2), Delta::Int(3))]),
                clock(&[(2, 2)]),
            ),
            // 3, after 1 and 2's SET: SET k 100; INCRBYFLOAT k 0.5.
            (
                reg(&[(dot(3, 1), 30, "100")], &[(dot(3, 2), Delta::Float(0.5))]),
                clock(&[(1, 1), (2, 1), (3, 2)]),
            ),
            // 1, after seeing 2: INCR k.
            (
                reg(
                    &[(dot(1, 1), 10, "5"), (dot(2, 1), 10, "7")],
                    &[(dot(1, 2), Delta::Int(1)), (dot(2, 2), Delta::Int(3))],
                ),
                clock(&[(1, 2), (2, 2)]),
            ),
        ]
    }

    #[test]
    fn join_is_commutative_associative_and_idempotent() {
        assert_join_laws(&states(), join);
    }

    #[test]
    fn score_registers_obey_the_join_laws() {
        let f = |base: &[(Dot, u64, f64)], adds: &[(Dot, f64)]| Counted::<f64> {
            base: base.iter().copied().collect(),
            adds: adds.iter().map(|(d, x)| (*d, Delta::Float(*x))).collect(),
        };
        let states = vec![
            (Counted::default(), clock(&[])),
            (f(&[(dot(1, 1), 10, 1.5)], &[]), clock(&[(1, 1)])),
            (f(&[], &[(dot(2, 1), 2.0)]), clock(&[(2, 1)])),
            (f(&[(dot(3, 1), 20, 4.0)], &[]), clock(&[(1, 1), (3, 1)])),
        ];
        let join = |a: &mut Counted<f64>, ac: &VectorClock, b: &Counted<f64>, bc: &VectorClock| {
            a.join(ac, b, bc)
        };
        assert_join_laws(&states, join);
    }

    #[test]
    fn unobserved_increments_stay_on_top_of_a_write() {
        let s = states();
        let mut v = s[3].0.clone();
        v.join(&s[3].1, &s[4].0, &s[4].1);
        // 3's SET had observed both earlier SETs but neither INCR nor INCRBY.
        assert_eq!(v.read().as_ref(), b"104.5");
        // Of two concurrent writes at one timestamp, the smaller actor's wins.
        let mut tie = s[1].0.clone();
        tie.join(&s[1].1, &s[2].0, &s[2].1);
        assert_eq!(tie.winner().map(|v| &v[..]), Some(&b"5"[..]));
        assert_eq!(tie.read().as_ref(), b"8");
    }
}
