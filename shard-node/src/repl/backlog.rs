//! The replication backlog: the most recent effects this node applied, in apply order.
//!
//! Contract: offsets count effects (the first effect ever recorded under a replication id has
//! offset 0, `next_offset` is the offset the next one gets). The backlog keeps effects up to a
//! byte budget and remembers the vector clock just before its oldest entry (`base_clock`), so it
//! can answer both kinds of resume request:
//! - by offset (a replica of this node: same replication id, offset still held), and
//! - by vector clock (a peer: everything it lacks is held iff its clock dominates `base_clock`).
//!
//! Because entries are in apply order, streaming them from any start point preserves causal
//! order.

use crate::crdt::{Dot, VectorClock};
use bytes::Bytes;
use std::collections::VecDeque;

pub struct Backlog {
    /// Each effect's dot and its encoding (owned bytes: nothing else is kept alive).
    entries: VecDeque<(Dot, Bytes)>,
    first_offset: u64,
    next_offset: u64,
    base_clock: VectorClock,
    bytes: usize,
    limit: usize,
    pub replid: String,
}

/// Memory an entry costs besides its encoding (queue slot, allocation headers), so the budget
/// tracks real memory use.
const ENTRY_OVERHEAD: usize = 112;

/// A fresh random replication id (40 hex characters, like Redis).
pub fn new_replid() -> String {
    format!(
        "{:032x}{:08x}",
        rand::random::<u128>(),
        rand::random::<u32>()
    )
}

impl Backlog {
    pub fn new(limit: usize, clock: VectorClock) -> Self {
        Backlog {
            entries: VecDeque::new(),
            first_offset: 0,
            next_offset: 0,
            base_clock: clock,
            bytes: 0,
            limit,
            replid: new_replid(),
        }
    }

    /// Starts over under a new replication id with nothing held (after a full sync or merge).
    pub fn reset(&mut self, clock: VectorClock) {
        *self = Backlog::new(self.limit, clock);
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
        self.trim();
    }

    pub fn push(&mut self, dot: Dot, encoded: Bytes) -> u64 {
        self.bytes += encoded.len() + ENTRY_OVERHEAD;
        self.entries.push_back((dot, encoded));
        let offset = self.next_offset;
        self.next_offset += 1;
        self.trim();
        offset
    }

    fn trim(&mut self) {
        while self.bytes > self.limit && self.entries.len() > 1 {
            if let Some((dot, encoded)) = self.entries.pop_front() {
                self.bytes -= encoded.len() + ENTRY_OVERHEAD;
                self.base_clock.raise(dot.actor, dot.seq);
                self.first_offset += 1;
            }
        }
    }

    /// Effects from `offset` on, if the backlog still holds them.
    pub fn since_offset(&self, offset: u64) -> Option<Vec<(Dot, Bytes)>> {
        if offset < self.first_offset || offset > self.next_offset {
            return None;
        }
        let skip = (offset - self.first_offset) as usize;
        Some(self.entries.iter().skip(skip).cloned().collect())
    }

    /// The offset to stream from for a peer whose clock is `clock`, if the backlog covers
    /// everything it lacks.
    pub fn start_for_clock(&self, clock: &VectorClock) -> Option<u64> {
        if !clock.dominates(&self.base_clock) {
            return None;
        }
        let first_missing = self
            .entries
            .iter()
            .position(|(dot, _)| !clock.covers(*dot))
            .unwrap_or(self.entries.len());
        Some(self.first_offset + first_missing as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::ActorId;

    fn effect(actor: u64, seq: u64) -> (Dot, Bytes) {
        (
            Dot {
                actor: ActorId(actor),
                seq,
            },
            Bytes::from(vec![0u8; 16]),
        )
    }

    #[test]
    fn resumes_by_offset_and_by_clock_until_trimmed() {
        let mut b = Backlog::new((16 + ENTRY_OVERHEAD) * 3, VectorClock::new());
        for seq in 1..=5 {
            let (dot, bytes) = effect(1, seq);
            b.push(dot, bytes);
        }
        assert_eq!(b.next_offset(), 5);
        assert_eq!(b.first_offset(), 2, "only three entries fit");
        assert!(b.since_offset(1).is_none());
        assert_eq!(b.since_offset(3).map(|v| v.len()), Some(2));
        let mut clock = VectorClock::new();
        assert_eq!(
            b.start_for_clock(&clock),
            None,
            "the peer lacks trimmed effects"
        );
        clock.raise(ActorId(1), 3);
        assert_eq!(b.start_for_clock(&clock), Some(3));
        clock.raise(ActorId(1), 5);
        assert_eq!(b.start_for_clock(&clock), Some(5));
    }
}
