//! Stream: entries keyed by their ID, plus the consumer groups of this node's region.
//!
//! Conflict rules:
//! - An entry is added once, under an ID that its region made unique (see
//!   `commands::streams` for how automatic IDs stay unique across regions). If two regions add
//!   entries under the same explicit ID concurrently, the one with the greater stamp is the one
//!   read, everywhere; the other is kept aside (`shadowed`) and is read again if a removal
//!   that observed only the winner removes it.
//! - `XDEL`, trimming and `DEL` remove the entries they observed (by dot), so an entry added
//!   concurrently in another region survives them.
//! - The stream exists while it has entries or while an unremoved effect made it (an `XADD`,
//!   `XGROUP CREATE … MKSTREAM`): a stream emptied by `XDEL` still exists, as in Redis, until a
//!   `DEL` that observed those effects.
//! - The last ID (the floor of the next `XADD`), the largest deleted ID and the count of
//!   entries added only grow: they join by maximum (the count per actor).
//! - Consumer groups belong to one region. Their changes travel in effects like everything
//!   else, but only the nodes of the region that made them apply them (that region's primary
//!   and replicas apply them in one order, so they need no merge). A state merge with another
//!   region keeps this node's groups. A `DEL` that observed a group's creation removes it.
//!
//! Join: entries by ID, where an entry on one side only survives unless the other side's clock
//! covers its dot (then the other side removed it); on an ID with two different entries the
//! greater stamp wins. The made-dots join the same way.

use super::{join_dotted, Blob};
use crate::crdt::clock::{ActorId, Dot, Stamp, VectorClock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stream entry ID: milliseconds and a sequence number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The next ID, `None` past the largest.
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId {
                ms: self.ms,
                seq: self.seq + 1,
            })
        } else if self.ms < u64::MAX {
            Some(StreamId {
                ms: self.ms + 1,
                seq: 0,
            })
        } else {
            None
        }
    }

    /// The previous ID, `None` before the smallest.
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId {
                ms: self.ms,
                seq: self.seq - 1,
            })
        } else if self.ms > 0 {
            Some(StreamId {
                ms: self.ms - 1,
                seq: u64::MAX,
            })
        } else {
            None
        }
    }

    pub fn render(self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }
}

/// One entry: its field/value pairs, and the effect that added it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub dot: Dot,
    pub stamp: Stamp,
    /// Field, value, field, value…
    pub fields: Vec<Blob>,
}

/// A message delivered to a consumer and not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEntry {
    pub consumer: Blob,
    pub delivered_ms: u64,
    pub deliveries: u64,
}

/// A consumer of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub seen_ms: u64,
}

/// A consumer group (region-local, see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The effect that created it: a `DEL` that observed it removes the group.
    pub created: Dot,
    pub last_delivered: StreamId,
    pub entries_read: Option<u64>,
    pub pending: BTreeMap<StreamId, PendingEntry>,
    pub consumers: BTreeMap<Blob, Consumer>,
}

/// A change to a consumer group, as the command computed it (applied as is, in order, by the
/// nodes of the group's region).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GroupChange {
    Create {
        group: Blob,
        last_delivered: StreamId,
        entries_read: Option<u64>,
    },
    Destroy {
        group: Blob,
    },
    /// `XGROUP SETID`, and the cursor moved by `XREADGROUP … >`.
    SetCursor {
        group: Blob,
        last_delivered: StreamId,
        entries_read: Option<u64>,
    },
    /// Creates the consumer if needed and records when it was last seen.
    SeeConsumer {
        group: Blob,
        consumer: Blob,
        now_ms: u64,
    },
    DeleteConsumer {
        group: Blob,
        consumer: Blob,
    },
    /// Puts entries in a consumer's pending list with their delivery time and count
    /// (delivery, redelivery, claim).
    SetPending {
        group: Blob,
        consumer: Blob,
        delivered_ms: u64,
        entries: Vec<(StreamId, u64)>,
    },
    /// Acknowledges entries (`XACK`; also entries found deleted by `XAUTOCLAIM`).
    Ack {
        group: Blob,
        ids: Vec<StreamId>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamValue {
    /// The entry read under each ID.
    pub entries: BTreeMap<StreamId, StreamEntry>,
    /// Concurrent entries under an ID that lost to `entries`' (usually none).
    pub shadowed: BTreeMap<StreamId, Vec<StreamEntry>>,
    /// The effects that made the stream exist, the latest per actor.
    pub made: Vec<Dot>,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    /// Entries added, per actor (their sum is XINFO's `entries-added`).
    pub added: BTreeMap<ActorId, u64>,
    /// Consumer groups of this node's region.
    pub groups: BTreeMap<Blob, Group>,
}

impl StreamValue {
    /// True when the stream exists for reads (`EXISTS`, `TYPE`).
    pub fn exists(&self) -> bool {
        !self.entries.is_empty() || !self.made.is_empty()
    }

    /// XINFO's `entries-added`.
    pub fn entries_added(&self) -> u64 {
        self.added.values().sum()
    }

    /// The ID of the newest entry (or `0-0`).
    pub fn top_id(&self) -> StreamId {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(StreamId::MIN)
    }

    fn note_made(&mut self, dot: Dot) {
        self.made
            .retain(|d| d.actor != dot.actor || d.seq > dot.seq);
        if !self.made.iter().any(|d| d.actor == dot.actor) {
            self.made.push(dot);
            self.made.sort();
        }
    }

    /// Records that effect `dot` made the stream exist (without adding an entry).
    pub fn touch(&mut self, dot: Dot) {
        self.note_made(dot);
    }

    /// Adds an entry (the greater stamp is read under an ID two regions both used).
    pub fn add(&mut self, dot: Dot, stamp: Stamp, id: StreamId, fields: Vec<Blob>) {
        self.note_made(dot);
        *self.added.entry(dot.actor).or_default() += 1;
        if id > self.last_id {
            self.last_id = id;
        }
        let entry = StreamEntry { dot, stamp, fields };
        let mut versions = self.take_versions(id);
        if !versions.iter().any(|v| v.dot == dot) {
            versions.push(entry);
        }
        self.put_versions(id, versions);
    }

    /// Every version held under `id` (removed from the value).
    fn take_versions(&mut self, id: StreamId) -> Vec<StreamEntry> {
        let mut versions = self.shadowed.remove(&id).unwrap_or_default();
        versions.extend(self.entries.remove(&id));
        versions
    }

    /// Stores the versions of `id`: the greatest stamp is read, the others are shadowed.
    fn put_versions(&mut self, id: StreamId, mut versions: Vec<StreamEntry>) {
        versions.sort_by(|a, b| a.stamp.cmp(&b.stamp).then(a.dot.cmp(&b.dot)));
        if let Some(top) = versions.pop() {
            self.entries.insert(id, top);
        }
        if !versions.is_empty() {
            self.shadowed.insert(id, versions);
        }
    }

    /// Removes the observed entries among `ids`; `record` raises the largest deleted ID (XDEL
    /// does, trimming does not).
    pub fn remove(&mut self, observed: &VectorClock, ids: &[StreamId], record: bool) {
        for id in ids {
            let mut versions = self.take_versions(*id);
            let before = versions.len();
            versions.retain(|v| !observed.covers(v.dot));
            if record && versions.len() < before && *id > self.max_deleted {
                self.max_deleted = *id;
            }
            self.put_versions(*id, versions);
        }
    }

    /// Raises the last ID and the largest deleted ID (XSETID).
    pub fn raise_ids(&mut self, last: StreamId, max_deleted: Option<StreamId>) {
        self.last_id = self.last_id.max(last);
        if let Some(m) = max_deleted {
            self.max_deleted = self.max_deleted.max(m);
        }
    }

    /// Cancels everything the observed clock covers (DEL).
    pub fn remove_observed(&mut self, observed: &VectorClock) {
        self.entries.retain(|_, e| !observed.covers(e.dot));
        for versions in self.shadowed.values_mut() {
            versions.retain(|v| !observed.covers(v.dot));
        }
        let shadowed = std::mem::take(&mut self.shadowed);
        for (id, rest) in shadowed {
            let mut versions = rest;
            versions.extend(self.entries.remove(&id));
            self.put_versions(id, versions);
        }
        self.made.retain(|d| !observed.covers(*d));
        self.groups.retain(|_, g| !observed.covers(g.created));
        if !self.exists() {
            // A new stream starts from scratch, as after DEL in Redis.
            self.last_id = StreamId::MIN;
            self.max_deleted = StreamId::MIN;
            self.added.clear();
        }
    }

    /// Applies a group change made in this node's region (`dot`: the effect carrying it).
    pub fn apply_group(&mut self, dot: Dot, change: &GroupChange) {
        match change {
            GroupChange::Create {
                group,
                last_delivered,
                entries_read,
            } => {
                self.groups.entry(group.clone()).or_insert(Group {
                    created: dot,
                    last_delivered: *last_delivered,
                    entries_read: *entries_read,
                    pending: BTreeMap::new(),
                    consumers: BTreeMap::new(),
                });
            }
            GroupChange::Destroy { group } => {
                self.groups.remove(group);
            }
            GroupChange::SetCursor {
                group,
                last_delivered,
                entries_read,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.last_delivered = *last_delivered;
                    g.entries_read = *entries_read;
                }
            }
            GroupChange::SeeConsumer {
                group,
                consumer,
                now_ms,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.consumers
                        .entry(consumer.clone())
                        .or_insert(Consumer { seen_ms: *now_ms })
                        .seen_ms = *now_ms;
                }
            }
            GroupChange::DeleteConsumer { group, consumer } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.consumers.remove(consumer);
                    g.pending.retain(|_, p| p.consumer != *consumer);
                }
            }
            GroupChange::SetPending {
                group,
                consumer,
                delivered_ms,
                entries,
            } => {
                if let Some(g) = self.groups.get_mut(group) {
                    g.consumers.entry(consumer.clone()).or_insert(Consumer {
                        seen_ms: *delivered_ms,
                    });
                    for (id, deliveries) in entries {
                        g.pending.insert(
                            *id,
                            PendingEntry {
                                consumer: consumer.clone(),
                                delivered_ms: *delivered_ms,
                                deliveries: *deliveries,
                            },
                        );
                    }
                }
            }
            GroupChange::Ack { group, ids } => {
                if let Some(g) = self.groups.get_mut(group) {
                    for id in ids {
                        g.pending.remove(id);
                    }
                }
            }
        }
    }

    /// State merge (see the module docs); this node's groups are kept as they are.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &StreamValue, their_ctx: &VectorClock) {
        let mut ids: Vec<StreamId> = self.entries.keys().copied().collect();
        ids.extend(self.shadowed.keys().copied());
        ids.extend(other.entries.keys().copied());
        ids.extend(other.shadowed.keys().copied());
        ids.sort();
        ids.dedup();
        for id in ids {
            let mut mine = self.take_versions(id);
            let mut theirs: Vec<StreamEntry> = other.shadowed.get(&id).cloned().unwrap_or_default();
            theirs.extend(other.entries.get(&id).cloned());
            join_dotted(&mut mine, mine_ctx, &theirs, their_ctx, |v| v.dot);
            self.put_versions(id, mine);
        }
        let mut made = std::mem::take(&mut self.made);
        join_dotted(&mut made, mine_ctx, &other.made, their_ctx, |d| *d);
        self.made.clear();
        made.sort();
        for d in made {
            self.note_made(d);
        }
        self.last_id = self.last_id.max(other.last_id);
        self.max_deleted = self.max_deleted.max(other.max_deleted);
        for (actor, n) in &other.added {
            let mine = self.added.entry(*actor).or_default();
            *mine = (*mine).max(*n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::types::laws::{assert_join_laws, clock, dot, State};

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    fn stamp(ts: u64, actor: u64) -> Stamp {
        Stamp {
            ts,
            actor: ActorId(actor),
        }
    }

    fn with(adds: &[(StreamId, Dot, u64, &str)]) -> StreamValue {
        let mut s = StreamValue::default();
        for (i, d, ts, v) in adds {
            s.add(
                *d,
                stamp(*ts, d.actor.0),
                *i,
                vec![Blob::from(&b"f"[..]), Blob::from(v.as_bytes())],
            );
        }
        s
    }

    fn join(a: &mut StreamValue, ac: &VectorClock, b: &StreamValue, bc: &VectorClock) {
        a.join(ac, b, bc)
    }

    fn states() -> Vec<State<StreamValue>> {
        let mut removed = with(&[
            (id(1, 1), dot(1, 1), 10, "a"),
            (id(2, 1), dot(1, 2), 20, "b"),
        ]);
        removed.remove(&clock(&[(1, 2)]), &[id(1, 1)], true);
        vec![
            (StreamValue::default(), clock(&[])),
            // 1: XADD 1-1 a; XADD 2-1 b.
            (
                with(&[
                    (id(1, 1), dot(1, 1), 10, "a"),
                    (id(2, 1), dot(1, 2), 20, "b"),
                ]),
                clock(&[(1, 2)]),
            ),
            // 2, concurrently: XADD 3-2 c, and the same explicit ID 2-1 with a later stamp.
            (
                with(&[
                    (id(3, 2), dot(2, 1), 15, "c"),
                    (id(2, 1), dot(2, 2), 30, "z"),
                ]),
                clock(&[(2, 2)]),
            ),
            // 3, after 1: XDEL 1-1 (its own dot 3-1 is the delete).
            (removed, clock(&[(1, 2), (3, 1)])),
        ]
    }

    #[test]
    fn join_is_commutative_associative_and_idempotent() {
        // The counter of additions and the made-dots are part of the state compared.
        assert_join_laws(&states(), join);
    }

    #[test]
    fn an_id_used_twice_keeps_the_later_entry_and_a_delete_keeps_unobserved_entries() {
        let s = states();
        let mut v = s[3].0.clone();
        v.join(&s[3].1, &s[2].0, &s[2].1);
        let got: Vec<(StreamId, &[u8])> = v
            .entries
            .iter()
            .map(|(i, e)| (*i, &e.fields[1][..]))
            .collect();
        assert_eq!(
            got,
            vec![(id(2, 1), &b"z"[..]), (id(3, 2), &b"c"[..])],
            "1-1 deleted, 2-1 taken by the later add, 3-2 kept"
        );
        assert!(v.max_deleted >= id(1, 1));
        assert_eq!(v.last_id, id(3, 2));
    }

    #[test]
    fn a_delete_of_the_later_entry_under_an_id_reveals_the_concurrent_one_in_any_order() {
        let (a, c) = (dot(1, 1), dot(3, 1));
        let add = |v: &mut StreamValue, d: Dot, ts: u64, value: &str| {
            v.add(
                d,
                stamp(ts, d.actor.0),
                id(5, 1),
                vec![Blob::from(value.as_bytes())],
            );
        };
        // C added 5-1 after A did (greater stamp) without seeing A's, then deleted its own.
        let deletes_c = clock(&[(3, 1)]);
        let mut x = StreamValue::default();
        add(&mut x, a, 1, "a");
        add(&mut x, c, 3, "c");
        x.remove(&deletes_c, &[id(5, 1)], true);
        let mut y = StreamValue::default();
        add(&mut y, c, 3, "c");
        y.remove(&deletes_c, &[id(5, 1)], true);
        add(&mut y, a, 1, "a");
        assert_eq!(x.entries, y.entries);
        assert_eq!(&x.entries[&id(5, 1)].fields[0][..], b"a");
    }

    #[test]
    fn an_emptied_stream_exists_until_a_delete_observes_what_made_it() {
        let mut v = with(&[(id(1, 1), dot(1, 1), 10, "a")]);
        v.remove(&clock(&[(1, 1)]), &[id(1, 1)], true);
        assert!(v.entries.is_empty());
        assert!(v.exists());
        v.remove_observed(&clock(&[(1, 1)]));
        assert!(!v.exists());
    }
}
