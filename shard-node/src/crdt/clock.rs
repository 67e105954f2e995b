//! Identity and time: actors, dots, vector clocks and the hybrid logical clock.
//!
//! Contract:
//! - An [`Actor`] is the origin of effects: (participant, shard, epoch). Its [`ActorId`] is a
//!   stable 64-bit identifier derived from those three values, identical on every node, so it
//!   can be compared everywhere without a shared registry. "Smaller replica id" in the conflict
//!   rules means the smaller `ActorId`.
//! - A [`Dot`] `(actor, seq)` names one effect; sequence numbers of one actor start at 1 and
//!   have no gaps in delivery order (causal delivery is enforced by the replica layer).
//! - A [`VectorClock`] maps actors to the highest contiguous sequence delivered. Under causal
//!   delivery it is exactly the set of effects seen, so "observed" means "covered by the clock".
//! - [`Hlc`] timestamps never go backwards on a node and always exceed every timestamp the node
//!   has seen, so an effect made after seeing another is stamped later.
//! - [`Stamp`] orders concurrent writes: later timestamp wins; equal timestamps: smaller actor
//!   id wins. `a > b` means `a` wins.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::fmt;

/// Stable identifier of an actor; see the module docs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct ActorId(pub u64);

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The origin of effects: one epoch of one shard of one participant (region).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub participant: String,
    pub shard: u32,
    pub epoch: u64,
}

impl Actor {
    pub fn new(participant: impl Into<String>, shard: u32, epoch: u64) -> Self {
        Actor {
            participant: participant.into(),
            shard,
            epoch,
        }
    }

    /// The identifier: the high 40 bits are FNV-1a over the participant and shard (the same for
    /// every epoch of a shard), the low 24 bits the epoch. Stable across nodes and builds, and it
    /// lets a node tell that an effect comes from a newer epoch of its own shard.
    pub fn id(&self) -> ActorId {
        ActorId((self.lineage() << EPOCH_BITS) | (self.epoch & EPOCH_MASK))
    }

    /// The 40-bit hash of participant and shard shared by all epochs of this actor.
    pub fn lineage(&self) -> u64 {
        let mut bytes = self.participant.as_bytes().to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(&self.shard.to_le_bytes());
        fnv1a(&bytes) >> (64 - 40)
    }
}

/// 64-bit FNV-1a: a stable hash, identical on every node, build and platform.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Bits of an [`ActorId`] that hold the epoch.
pub const EPOCH_BITS: u32 = 24;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// The epoch is `generation << INCARNATION_BITS | incarnation`. Promotion raises the
/// generation (and fencing compares generations); a restart keeps the generation and takes a
/// fresh incarnation, so a restarted node never reuses the sequence numbers of its previous
/// run, and never collides with a replica promoted meanwhile.
pub const INCARNATION_BITS: u32 = 12;

/// An epoch from its generation and incarnation.
pub fn epoch_of(generation: u64, incarnation: u64) -> u64 {
    ((generation << INCARNATION_BITS) | (incarnation & ((1 << INCARNATION_BITS) - 1))) & EPOCH_MASK
}

/// The generation part of an epoch.
pub fn generation_of(epoch: u64) -> u64 {
    epoch >> INCARNATION_BITS
}

impl ActorId {
    /// The epoch part of the id.
    pub fn epoch(self) -> u64 {
        self.0 & EPOCH_MASK
    }

    /// The generation of the epoch (raised by each promotion).
    pub fn generation(self) -> u64 {
        generation_of(self.epoch())
    }

    /// The participant-and-shard part of the id.
    pub fn lineage(self) -> u64 {
        self.0 >> EPOCH_BITS
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.participant, self.shard, self.epoch)
    }
}

/// One effect's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub struct Dot {
    pub actor: ActorId,
    pub seq: u64,
}

/// A timestamp with its actor: the order used by last-writer-wins. Greater wins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Debug, Default)]
pub struct Stamp {
    pub ts: u64,
    pub actor: ActorId,
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> Ordering {
        // Later timestamp wins; on a tie the smaller actor id wins, so it must compare greater.
        self.ts
            .cmp(&other.ts)
            .then_with(|| other.actor.cmp(&self.actor))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Highest contiguous sequence delivered per actor. Entries are kept sorted by actor.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VectorClock {
    entries: SmallVec<[(ActorId, u64); 4]>,
}

impl fmt::Debug for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(a, s)| (a, s)))
            .finish()
    }
}

impl VectorClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, actor: ActorId) -> u64 {
        match self.entries.binary_search_by(|(a, _)| a.cmp(&actor)) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Raises the entry for `actor` to at least `seq`.
    pub fn raise(&mut self, actor: ActorId, seq: u64) {
        match self.entries.binary_search_by(|(a, _)| a.cmp(&actor)) {
            Ok(i) => {
                if self.entries[i].1 < seq {
                    self.entries[i].1 = seq;
                }
            }
            Err(i) => {
                if seq > 0 {
                    self.entries.insert(i, (actor, seq))
                }
            }
        }
    }

    pub fn covers(&self, dot: Dot) -> bool {
        dot.seq <= self.get(dot.actor)
    }

    /// True when every entry of `other` is covered by `self`.
    pub fn dominates(&self, other: &VectorClock) -> bool {
        other.entries.iter().all(|(a, s)| self.get(*a) >= *s)
    }

    /// Entry-wise maximum.
    pub fn join(&mut self, other: &VectorClock) {
        for (a, s) in &other.entries {
            self.raise(*a, *s);
        }
    }

    /// Entry-wise minimum (actors missing from either side count as 0).
    pub fn meet(&self, other: &VectorClock) -> VectorClock {
        let mut out = VectorClock::new();
        for (a, s) in &self.entries {
            let m = (*s).min(other.get(*a));
            out.raise(*a, m);
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.entries.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of all entries: the number of effects seen.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|(_, s)| *s).sum()
    }
}

/// Number of low bits of a timestamp that hold the logical counter.
const LOGICAL_BITS: u32 = 16;

/// Hybrid logical clock: `physical_ms << 16 | logical`.
#[derive(Clone, Debug, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn pack(physical_ms: u64, logical: u64) -> u64 {
        (physical_ms << LOGICAL_BITS) | (logical & ((1 << LOGICAL_BITS) - 1))
    }

    pub fn physical_ms(ts: u64) -> u64 {
        ts >> LOGICAL_BITS
    }

    /// A new timestamp greater than every one produced or observed so far.
    pub fn now(&mut self, physical_ms: u64) -> u64 {
        let candidate = Self::pack(physical_ms, 0);
        self.last = if candidate > self.last {
            candidate
        } else {
            // Saturates rather than overflowing if a peer sent an absurd timestamp.
            self.last.saturating_add(1)
        };
        self.last
    }

    /// Notes a timestamp seen on a remote effect.
    pub fn observe(&mut self, ts: u64) {
        if ts > self.last {
            self.last = ts;
        }
    }

    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_ties_go_to_the_smaller_actor() {
        let small = Stamp {
            ts: 5,
            actor: ActorId(1),
        };
        let big = Stamp {
            ts: 5,
            actor: ActorId(2),
        };
        assert!(small > big);
        let later = Stamp {
            ts: 6,
            actor: ActorId(9),
        };
        assert!(later > small);
    }

    #[test]
    fn hlc_is_monotonic_and_passes_observed_times() {
        let mut hlc = Hlc::new();
        let a = hlc.now(100);
        let b = hlc.now(100);
        let c = hlc.now(99);
        assert!(a < b && b < c);
        hlc.observe(Hlc::pack(500, 3));
        let d = hlc.now(100);
        assert!(d > Hlc::pack(500, 3));
    }

    #[test]
    fn clock_join_meet_cover() {
        let mut a = VectorClock::new();
        a.raise(ActorId(1), 3);
        a.raise(ActorId(2), 1);
        let mut b = VectorClock::new();
        b.raise(ActorId(1), 1);
        b.raise(ActorId(3), 4);
        let m = a.meet(&b);
        assert_eq!(m.get(ActorId(1)), 1);
        assert_eq!(m.get(ActorId(2)), 0);
        a.join(&b);
        assert_eq!(a.get(ActorId(3)), 4);
        assert!(a.dominates(&b));
        assert!(a.covers(Dot {
            actor: ActorId(1),
            seq: 3
        }));
        assert!(!a.covers(Dot {
            actor: ActorId(1),
            seq: 4
        }));
    }

    #[test]
    fn actor_ids_are_stable_and_distinct() {
        let a = Actor::new("us-east", 0, 1);
        assert_eq!(a.id(), Actor::new("us-east", 0, 1).id());
        assert_ne!(a.id(), Actor::new("us-east", 0, 2).id());
        assert_ne!(a.id(), Actor::new("us-east", 1, 1).id());
        assert_ne!(a.id(), Actor::new("eu-west", 0, 1).id());
        assert_eq!(a.id().lineage(), Actor::new("us-east", 0, 7).id().lineage());
        assert_eq!(Actor::new("us-east", 0, 7).id().epoch(), 7);
    }
}
