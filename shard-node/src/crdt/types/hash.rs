//! Hash: an observed-remove map of fields to registers/counters.
//!
//! Conflict rule: each field's value is a register with counter increments, as for strings
//! (see [`super::register`]): concurrent writes of one field follow the register rule, and
//! concurrent increments add up. A field is present while any of its writes or increments
//! survives; a remove (`HDEL`, `DEL`) cancels only the field writes it observed, so a write it
//! had not observed survives, even when the remove has the later timestamp.
//!
//! Join: field by field; a field only one side has is joined against an empty register, which
//! keeps exactly the dots the other side has not seen. Fields left empty are dropped.

use super::{join_maps, Blob, Counted, FastMap};
use crate::crdt::clock::{Dot, VectorClock};
use crate::crdt::effect::Delta;
use serde::{Deserialize, Serialize};

/// Hash: an observed-remove map of fields to registers/counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HashValue {
    pub fields: FastMap<Blob, Counted<Blob>>,
}

impl HashValue {
    /// Writes `value` to `field` as a register write of `dot` at `ts` (`HSET`).
    pub fn apply_set(
        &mut self,
        observed: &VectorClock,
        dot: Dot,
        ts: u64,
        field: &[u8],
        value: &[u8],
    ) {
        self.fields.entry(Blob::from(field)).or_default().write(
            observed,
            dot,
            ts,
            Blob::from(value),
        );
    }

    /// Adds an increment of `dot` to `field` (`HINCRBY`).
    pub fn apply_add(&mut self, dot: Dot, field: &[u8], delta: Delta) {
        let f = self.fields.entry(Blob::from(field)).or_default();
        f.add(dot, delta);
    }

    /// Cancels the observed writes and increments of `field`, dropping it when empty (`HDEL`).
    pub fn apply_del(&mut self, observed: &VectorClock, field: &[u8]) {
        if let Some(f) = self.fields.get_mut(field) {
            f.remove_observed(observed);
            if f.is_empty() {
                self.fields.remove(field);
            }
        }
    }

    /// Cancels every field write and increment the observed clock covers.
    pub fn remove_observed(&mut self, observed: &VectorClock) {
        self.fields.retain(|_, f| {
            f.remove_observed(observed);
            !f.is_empty()
        });
    }

    /// State merge.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &HashValue, their_ctx: &VectorClock) {
        join_maps(&mut self.fields, &other.fields, |x, y| {
            x.join(mine_ctx, y, their_ctx)
        });
        self.fields.retain(|_, f| !f.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::clock::Dot;
    use crate::crdt::effect::Delta;
    use crate::crdt::types::laws::{assert_join_laws, clock, dot, State};

    fn field(base: &[(Dot, u64, &str)], adds: &[(Dot, Delta)]) -> Counted<Blob> {
        Counted {
            base: base
                .iter()
                .map(|(d, ts, v)| (*d, *ts, Blob::from(v.as_bytes())))
                .collect(),
            adds: adds.iter().copied().collect(),
        }
    }

    fn hash(fields: Vec<(&str, Counted<Blob>)>) -> HashValue {
        HashValue {
            fields: fields
                .into_iter()
                .map(|(k, v)| (Blob::from(k.as_bytes()), v))
                .collect(),
        }
    }

    fn join(a: &mut HashValue, ac: &VectorClock, b: &HashValue, bc: &VectorClock) {
        a.join(ac, b, bc)
    }

    /// Four replicas' views of one hash, in canonical form.
    fn states() -> Vec<State<HashValue>> {
        vec![
            (HashValue::default(), clock(&[])),
            // 1: HSET h f1 a.
            (
                hash(vec![("f1", field(&[(dot(1, 1), 10, "a")], &[]))]),
                clock(&[(1, 1)]),
            ),
            // 2, concurrently: HSET h f1 b at the same timestamp; HINCRBY h f2 5.
            (
                hash(vec![
                    ("f1", field(&[(dot(2, 1), 10, "b")], &[])),
                    ("f2", field(&[], &[(dot(2, 2), Delta::Int(5))])),
                ]),
                clock(&[(2, 2)]),
            ),
            // 3, after 1's write: HDEL h f1; HSET h f2 1.
            (
                hash(vec![("f2", field(&[(dot(3, 2), 30, "1")], &[]))]),
                clock(&[(1, 1), (3, 2)]),
            ),
            // 1, after seeing 2: HINCRBY h f2 1.
            (
                hash(vec![
                    (
                        "f1",
                        field(&[(dot(1, 1), 10, "a"), (dot(2, 1), 10, "b")], &[]),
                    ),
                    (
                        "f2",
                        field(
                            &[],
                            &[(dot(1, 2), Delta::Int(1)), (dot(2, 2), Delta::Int(5))],
                        ),
                    ),
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
    fn an_unobserved_field_write_survives_a_remove() {
        let s = states();
        let mut v = s[3].0.clone();
        v.join(&s[3].1, &s[4].0, &s[4].1);
        let f1 = &v.fields[b"f1".as_slice()];
        // The HDEL had observed 1's write only: 2's survives.
        assert_eq!(f1.read().as_ref(), b"b");
        let f2 = &v.fields[b"f2".as_slice()];
        assert_eq!(f2.read().as_ref(), b"7");
    }
}
