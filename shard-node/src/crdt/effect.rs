//! Effects: the unit that is applied, logged and shipped.
//!
//! Contract: a command that writes is turned into exactly one [`Effect`] (a transaction into one
//! effect holding all its operations). An effect carries its [`Dot`], its hybrid-logical-clock
//! timestamp and `deps`, the origin's vector clock just before the effect was made. Applying an
//! effect is deterministic given the state and the effect; under causal delivery (every effect
//! covered by `deps` applied first) replicas that applied the same set of effects hold the same
//! state. "Observed" for an effect means covered by `deps` plus its own dot, so operations later
//! in one effect see the ones before them.
//!
//! The wire and log encoding is `postcard` over these serde types; the leading
//! [`EFFECT_FORMAT_VERSION`] byte lets the format evolve.

use super::clock::{Dot, Stamp, VectorClock};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Version byte written before every encoded effect.
pub const EFFECT_FORMAT_VERSION: u8 = 1;

/// A numeric increment: integer counters and float counters accumulate separately typed deltas.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Delta {
    Int(i64),
    Float(f64),
}

/// Identity of a list element: the inserting effect's dot plus the index within that effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ElemId {
    pub dot: Dot,
    pub index: u32,
}

/// One operation on one key. Typed writes carry `slot`, the creation stamp of the value they
/// write as the origin saw it (for a new key, the effect's own stamp); it decides which type wins
/// when two regions create one key with different types concurrently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpKind {
    /// Observed-remove of everything in the key (every type, every expiry vote).
    Del,
    /// Observed-remove of every key (`FLUSHDB`/`FLUSHALL`); the op's key is empty.
    FlushAll,
    /// Replaces the observed expiry votes with a deadline (unix ms).
    Expire {
        at_ms: u64,
    },
    /// Replaces the observed expiry votes with a persist vote.
    Persist,
    /// Drops the observed expiry votes (a `SET` without `KEEPTTL`).
    ClearExpiry,
    /// Register write of a string; cancels the observed value and increments.
    StrSet {
        slot: Stamp,
        value: Bytes,
    },
    /// Counter increment on a string.
    StrAdd {
        slot: Stamp,
        delta: Delta,
    },
    HashSet {
        slot: Stamp,
        field: Bytes,
        value: Bytes,
    },
    HashAdd {
        slot: Stamp,
        field: Bytes,
        delta: Delta,
    },
    HashDel {
        field: Bytes,
    },
    SetAdd {
        slot: Stamp,
        member: Bytes,
    },
    SetRem {
        member: Bytes,
    },
    ZAdd {
        slot: Stamp,
        member: Bytes,
        score: f64,
    },
    ZAddDelta {
        slot: Stamp,
        member: Bytes,
        delta: f64,
    },
    ZRem {
        member: Bytes,
    },
    /// Inserts an element right after `after` (`None`: at the head).
    ListInsert {
        slot: Stamp,
        id: ElemId,
        after: Option<ElemId>,
        value: Bytes,
    },
    ListRemove {
        id: ElemId,
    },
    /// Last-writer-wins write of an element's value.
    ListSet {
        id: ElemId,
        value: Bytes,
    },
    /// A pub/sub message: changes no key; delivered to subscribers wherever it is applied, so
    /// it reaches every region exactly once and in publish order. The op's key is empty.
    Publish {
        channel: Bytes,
        payload: Bytes,
    },
    // Variants are only ever added at the end: the encoding numbers them in order.
    /// Adds a stream entry under `id` (field, value, field, value…).
    StreamAdd {
        slot: Stamp,
        id: super::types::StreamId,
        fields: Vec<Bytes>,
    },
    /// Makes a stream exist without an entry (`XGROUP CREATE … MKSTREAM`), and raises its last
    /// ID and largest deleted ID (`XSETID`).
    StreamTouch {
        slot: Stamp,
        last_id: super::types::StreamId,
        max_deleted: Option<super::types::StreamId>,
    },
    /// Removes the observed entries with these IDs (`XDEL`; trimming when `trim`, which
    /// leaves the largest deleted ID as it is, as in Redis).
    StreamDel {
        ids: Vec<super::types::StreamId>,
        trim: bool,
    },
    /// A consumer-group change, applied only by the nodes of `region`.
    StreamGroup {
        region: String,
        change: super::types::GroupChange,
    },
    /// Raises HyperLogLog registers (`(index, value)`) in `epoch` (the deletes the key went
    /// through as the writer saw it), creating the key if needed.
    HllRaise {
        slot: Stamp,
        epoch: u64,
        registers: Vec<(u16, u8)>,
    },
    /// An eviction under `maxmemory`: the nodes of `region` drop the key and everything held
    /// for it; other regions ignore it.
    Evict {
        region: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub key: Bytes,
    pub kind: OpKind,
}

impl Op {
    /// About how many bytes this operation adds to its effect once encoded: its key and the
    /// bytes it carries, plus an allowance for stamps, ids and numbers. It errs on the large
    /// side; the writes refused for it are those near `--max-effect-bytes`, which leaves the
    /// log's frame limit twice as far.
    pub fn size_estimate(&self) -> u64 {
        const FIXED: usize = 48;
        let carried = match &self.kind {
            OpKind::StrSet { value, .. }
            | OpKind::ListInsert { value, .. }
            | OpKind::ListSet { value, .. } => value.len(),
            OpKind::HashSet { field, value, .. } => field.len() + value.len(),
            OpKind::HashAdd { field, .. } | OpKind::HashDel { field } => field.len(),
            OpKind::SetAdd { member, .. }
            | OpKind::SetRem { member }
            | OpKind::ZAdd { member, .. }
            | OpKind::ZAddDelta { member, .. }
            | OpKind::ZRem { member } => member.len(),
            OpKind::Publish { channel, payload } => channel.len() + payload.len(),
            OpKind::StreamAdd { fields, .. } => fields.iter().map(|f| f.len() + 8).sum(),
            OpKind::StreamDel { ids, .. } => ids.len() * 16,
            OpKind::StreamGroup { region, change } => {
                region.len() + postcard::to_allocvec(change).map_or(0, |v| v.len())
            }
            OpKind::HllRaise { registers, .. } => registers.len() * 3,
            OpKind::Evict { region } => region.len(),
            OpKind::Del
            | OpKind::FlushAll
            | OpKind::Expire { .. }
            | OpKind::Persist
            | OpKind::ClearExpiry
            | OpKind::StrAdd { .. }
            | OpKind::ListRemove { .. }
            | OpKind::StreamTouch { .. } => 0,
        };
        (self.key.len() + carried + FIXED) as u64
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub dot: Dot,
    pub ts: u64,
    pub deps: VectorClock,
    pub ops: Vec<Op>,
}

/// Errors decoding an effect from bytes that came from disk or from a peer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty effect record")]
    Empty,
    #[error("unsupported effect format version {0}")]
    Version(u8),
    #[error("malformed effect: {0}")]
    Malformed(#[from] postcard::Error),
}

impl Effect {
    pub fn stamp(&self) -> Stamp {
        Stamp {
            ts: self.ts,
            actor: self.dot.actor,
        }
    }

    /// `deps` plus this effect's own dot: what the effect's operations have observed.
    pub fn observed(&self) -> VectorClock {
        let mut seen = self.deps.clone();
        seen.raise(self.dot.actor, self.dot.seq);
        seen
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(EFFECT_FORMAT_VERSION);
        // Serializing these plain types into a Vec cannot fail.
        if let Ok(bytes) = postcard::to_allocvec(self) {
            out.extend_from_slice(&bytes);
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Effect, DecodeError> {
        let (version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if *version != EFFECT_FORMAT_VERSION {
            return Err(DecodeError::Version(*version));
        }
        Ok(postcard::from_bytes(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::clock::ActorId;

    #[test]
    fn effect_round_trips_and_rejects_garbage() {
        let mut deps = VectorClock::new();
        deps.raise(ActorId(7), 3);
        let effect = Effect {
            dot: Dot {
                actor: ActorId(9),
                seq: 4,
            },
            ts: 1234,
            deps,
            ops: vec![Op {
                key: Bytes::from_static(b"k"),
                kind: OpKind::StrAdd {
                    slot: Stamp::default(),
                    delta: Delta::Int(-5),
                },
            }],
        };
        let mut buf = Vec::new();
        effect.encode(&mut buf);
        assert_eq!(Effect::decode(&buf).unwrap(), effect);
        assert!(Effect::decode(&[]).is_err());
        assert!(Effect::decode(&[99, 1, 2]).is_err());
        assert!(Effect::decode(&buf[..buf.len() - 1]).is_err());
    }
}
