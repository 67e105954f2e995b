//! Sorted set: observed-remove membership, register-or-counter scores, plus an order index.
//!
//! Conflict rule: membership is an observed-remove set; each member's score is a register with
//! increments (see [`super::register`]). `ZADD` writes the score as a register, so of
//! concurrent writes the one with the greater stamp wins; `ZINCRBY` adds increments on top of
//! the register value. A remove cancels only the score entries it observed: increments it had
//! not observed survive and the member stays with their sum as its score, and a write it had
//! not observed wins over it.
//!
//! Join: member by member as for registers; members left empty are dropped and the order index
//! is rebuilt from the joined scores.

use super::{join_maps, Blob, Counted, FastMap};
use crate::crdt::clock::{Dot, VectorClock};
use crate::crdt::effect::Delta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A total order on scores (no NaN is ever stored) for the sorted-set index.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score(pub f64);

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Sorted set: observed-remove membership, register-or-counter scores, plus an order index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ZSetValue {
    pub members: FastMap<Blob, Counted<f64>>,
    pub order: BTreeSet<(Score, Blob)>,
}

impl ZSetValue {
    /// Writes `score` to `member` as a register write of `dot` at `ts` (`ZADD`).
    pub fn apply_add(
        &mut self,
        observed: &VectorClock,
        dot: Dot,
        ts: u64,
        member: &[u8],
        score: f64,
    ) {
        self.update(member, |c| c.write(observed, dot, ts, score));
    }

    /// Adds an increment of `dot` to the score of `member` (`ZINCRBY`).
    pub fn apply_delta(&mut self, dot: Dot, member: &[u8], delta: f64) {
        self.update(member, |c| {
            c.add(dot, Delta::Float(delta));
        });
    }

    /// Cancels the observed score entries of `member`, if present (`ZREM`).
    pub fn apply_rem(&mut self, observed: &VectorClock, member: &[u8]) {
        if self.members.contains_key(member) {
            self.update(member, |c| c.remove_observed(observed));
        }
    }

    /// Updates one sorted-set member through `change`, keeping the order index in step.
    fn update<F: FnOnce(&mut Counted<f64>)>(&mut self, member: &[u8], change: F) {
        let old = self.members.get(member).map(|c| c.score());
        let c = match self.members.get_mut(member) {
            Some(c) => c,
            None => self.members.entry(Blob::from(member)).or_default(),
        };
        change(c);
        let gone = c.is_empty();
        let new = c.score();
        if let Some(s) = old {
            if gone || s != new {
                self.order.remove(&(Score(s), Blob::from(member)));
            }
        }
        if gone {
            self.members.remove(member);
        } else if old != Some(new) {
            self.order.insert((Score(new), Blob::from(member)));
        }
    }

    /// Cancels every score entry and increment the observed clock covers, keeping the order
    /// index in step.
    pub fn remove_observed(&mut self, observed: &VectorClock) {
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        for (m, c) in self.members.iter_mut() {
            let before = c.score();
            c.remove_observed(observed);
            if c.is_empty() {
                gone.push((Score(before), m.clone()));
            } else if c.score() != before {
                changed.push((Score(before), m.clone(), Score(c.score())));
            }
        }
        for (s, m) in gone {
            self.order.remove(&(s, m.clone()));
            self.members.remove(&m);
        }
        for (old, m, new) in changed {
            self.order.remove(&(old, m.clone()));
            self.order.insert((new, m));
        }
    }

    /// State merge.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &ZSetValue, their_ctx: &VectorClock) {
        join_maps(&mut self.members, &other.members, |x, y| {
            x.join(mine_ctx, y, their_ctx)
        });
        self.members.retain(|_, c| !c.is_empty());
        self.order = self
            .members
            .iter()
            .map(|(m, c)| (Score(c.score()), m.clone()))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::clock::Dot;
    use crate::crdt::effect::Delta;
    use crate::crdt::types::laws::{assert_join_laws, clock, dot, State};

    fn score(base: &[(Dot, u64, f64)], adds: &[(Dot, f64)]) -> Counted<f64> {
        Counted {
            base: base.iter().copied().collect(),
            adds: adds.iter().map(|(d, f)| (*d, Delta::Float(*f))).collect(),
        }
    }

    /// A sorted set with its order index built from the scores.
    fn zset(members: Vec<(&str, Counted<f64>)>) -> ZSetValue {
        let members: FastMap<Blob, Counted<f64>> = members
            .into_iter()
            .map(|(m, c)| (Blob::from(m.as_bytes()), c))
            .collect();
        let order = members
            .iter()
            .map(|(m, c)| (Score(c.score()), m.clone()))
            .collect();
        ZSetValue { members, order }
    }

    fn join(a: &mut ZSetValue, ac: &VectorClock, b: &ZSetValue, bc: &VectorClock) {
        a.join(ac, b, bc)
    }

    /// Five replicas' views of one sorted set, in canonical form.
    fn states() -> Vec<State<ZSetValue>> {
        vec![
            (ZSetValue::default(), clock(&[])),
            // 1: ZADD z 1.5 x.
            (
                zset(vec![("x", score(&[(dot(1, 1), 10, 1.5)], &[]))]),
                clock(&[(1, 1)]),
            ),
            // 2, concurrently: ZINCRBY z 2 x; ZADD z 3 y.
            (
                zset(vec![
                    ("x", score(&[], &[(dot(2, 1), 2.0)])),
                    ("y", score(&[(dot(2, 2), 20, 3.0)], &[])),
                ]),
                clock(&[(2, 2)]),
            ),
            // 3, after 1: ZREM z x; ZADD z 0.5 y.
            (
                zset(vec![("y", score(&[(dot(3, 2), 30, 0.5)], &[]))]),
                clock(&[(1, 1), (3, 2)]),
            ),
            // 1, after seeing 2: ZINCRBY z 1 x.
            (
                zset(vec![
                    (
                        "x",
                        score(
                            &[(dot(1, 1), 10, 1.5)],
                            &[(dot(1, 2), 1.0), (dot(2, 1), 2.0)],
                        ),
                    ),
                    ("y", score(&[(dot(2, 2), 20, 3.0)], &[])),
                ]),
                clock(&[(1, 2), (2, 2)]),
            ),
        ]
    }

    #[test]
    fn join_is_commutative_associative_and_idempotent() {
        assert_join_laws(&states(), join);
    }

    #[test]
    fn unobserved_increments_survive_a_remove() {
        let s = states();
        let mut v = s[3].0.clone();
        v.join(&s[3].1, &s[4].0, &s[4].1);
        // The ZREM had observed 1's ZADD only: both increments stay, as x's score. y is a
        // register write on both sides, and 3's has the greater stamp.
        let order: Vec<(f64, &[u8])> = v.order.iter().map(|(s, m)| (s.0, &m[..])).collect();
        assert_eq!(order, vec![(0.5, &b"y"[..]), (3.0, &b"x"[..])]);
    }
}
