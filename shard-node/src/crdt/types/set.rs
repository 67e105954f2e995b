//! Set: an observed-remove set in which adds win.
//!
//! Conflict rule: each member holds the dots of the adds that put it there, and is present
//! while at least one add of it has not been cancelled by a remove that observed it. A remove
//! cancels only the adds it observed, so a concurrent add of the same member survives.
//!
//! Join: member by member; an add dot present on one side only survives unless the other
//! side's clock covers it (then the other side removed it). Members left without dots are
//! dropped.

use super::{join_dotted, join_maps, Blob, FastMap};
use crate::crdt::clock::{Dot, VectorClock};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// Set: an observed-remove set; each member holds the dots of the adds that put it there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetValue {
    pub members: FastMap<Blob, SmallVec<[Dot; 1]>>,
}

impl SetValue {
    /// Adds `member` with the add's `dot`, replacing the adds of it the observed clock covers.
    pub fn add(&mut self, observed: &VectorClock, dot: Dot, member: &[u8]) {
        let dots = self.members.entry(Blob::from(member)).or_default();
        dots.retain(|d| !observed.covers(*d));
        dots.push(dot);
    }

    /// Cancels the observed adds of `member`, dropping it when none is left.
    pub fn remove(&mut self, observed: &VectorClock, member: &[u8]) {
        if let Some(dots) = self.members.get_mut(member) {
            dots.retain(|d| !observed.covers(*d));
            if dots.is_empty() {
                self.members.remove(member);
            }
        }
    }

    /// Cancels every add the observed clock covers.
    pub fn remove_observed(&mut self, observed: &VectorClock) {
        self.members.retain(|_, dots| {
            dots.retain(|d| !observed.covers(*d));
            !dots.is_empty()
        });
    }

    /// State merge.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &SetValue, their_ctx: &VectorClock) {
        join_maps(&mut self.members, &other.members, |x, y| {
            let mut mine: Vec<Dot> = x.drain(..).collect();
            join_dotted(&mut mine, mine_ctx, y, their_ctx, |d| *d);
            mine.sort();
            *x = mine.into_iter().collect();
        });
        self.members.retain(|_, d| !d.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::types::laws::{assert_join_laws, clock, dot, State};

    fn set(members: &[(&str, &[Dot])]) -> SetValue {
        SetValue {
            members: members
                .iter()
                .map(|(m, dots)| (Blob::from(m.as_bytes()), dots.iter().copied().collect()))
                .collect(),
        }
    }

    fn join(a: &mut SetValue, ac: &VectorClock, b: &SetValue, bc: &VectorClock) {
        a.join(ac, b, bc)
    }

    /// Five replicas' views of one set, in canonical form (dots in order).
    fn states() -> Vec<State<SetValue>> {
        vec![
            (SetValue::default(), clock(&[])),
            // 1: SADD s x; SADD s y.
            (
                set(&[("x", &[dot(1, 1)]), ("y", &[dot(1, 2)])]),
                clock(&[(1, 2)]),
            ),
            // 2, concurrently: SADD s x.
            (set(&[("x", &[dot(2, 1)])]), clock(&[(2, 1)])),
            // 3, after 1: SREM s x; SADD s z.
            (
                set(&[("y", &[dot(1, 2)]), ("z", &[dot(3, 2)])]),
                clock(&[(1, 2), (3, 2)]),
            ),
            // 1, after seeing 2: SREM s y.
            (
                set(&[("x", &[dot(1, 1), dot(2, 1)])]),
                clock(&[(1, 3), (2, 1)]),
            ),
        ]
    }

    #[test]
    fn join_is_commutative_associative_and_idempotent() {
        assert_join_laws(&states(), join);
    }

    #[test]
    fn an_unobserved_add_survives_a_remove() {
        let s = states();
        let mut v = s[3].0.clone();
        v.join(&s[3].1, &s[4].0, &s[4].1);
        // 3 removed x having seen 1's add only; 1 removed y, which 3 still had.
        assert_eq!(v, set(&[("x", &[dot(2, 1)]), ("z", &[dot(3, 2)])]));
    }
}
