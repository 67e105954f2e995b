//! Collection of ordering-only state once every participant has seen it, and the state merge
//! (a join) with another keyspace. See the contract of the parent module.

use super::{Entry, Keyspace, Slot};
use crate::crdt::clock::{Dot, Stamp, VectorClock};
use crate::crdt::value::{Blob, Value};
use smallvec::SmallVec;
use std::collections::BTreeSet;

impl Keyspace {
    /// Drops ordering-only state that every participant has seen (see the module contract).
    pub fn collect(&mut self, stable: &VectorClock) -> usize {
        let mut dropped = 0;
        // Only keys written since they were last fully collected can hold anything to drop.
        let keys: Vec<Blob> = std::mem::take(&mut self.uncollected).into_iter().collect();
        for key in keys {
            let mut remove = false;
            let mut settled = true;
            if let Some(entry) = self.entries.get_mut(&key) {
                for slot in entry.slots.iter_mut() {
                    match &mut slot.value {
                        Value::List(l) => {
                            let n = l.elems.len();
                            l.collect(stable);
                            dropped += n - l.elems.len();
                        }
                        // Increments are never merged: a state merge with a peer that merged
                        // them differently would lose some.
                        Value::Hll(h) => {
                            let n = h.deletes.len();
                            h.collect(stable);
                            dropped += n - h.deletes.len();
                        }
                        Value::Str(_)
                        | Value::Hash(_)
                        | Value::ZSet(_)
                        | Value::Set(_)
                        | Value::Stream(_) => {}
                    }
                }
                // An emptied value's creation markers matter only against writes concurrent
                // with them, and once they are stable every such write has been applied here.
                entry.slots.retain(|s| {
                    let keep =
                        !s.value.is_dead() || !s.markers_stable(stable) || s.counts_deletes();
                    if !keep {
                        dropped += s.markers.len();
                    }
                    keep
                });
                if entry.slots.is_empty() && entry.expiry.iter().all(|(d, _)| stable.covers(*d)) {
                    dropped += entry.expiry.len();
                    remove = true;
                }
                settled = remove || entry_settled(entry, stable);
            }
            if !settled {
                self.uncollected.insert(key.clone());
            }
            if remove {
                if let Some(entry) = self.entries.remove(&key) {
                    if let Some(ms) = entry.deadline() {
                        self.deadlines.remove(&(ms, key));
                    }
                }
            }
        }
        dropped
    }

    /// Ordering-only state waiting for collection: removed list elements, creation markers of
    /// emptied values and expiry votes of keys without a value.
    pub fn tombstones_pending(&self) -> usize {
        self.entries
            .values()
            .map(|e| {
                let list: usize = e
                    .slots
                    .iter()
                    .map(|s| match &s.value {
                        // Kept for good for its count of deletes, not waiting for collection.
                        _ if s.value.is_dead() && s.counts_deletes() => 0,
                        _ if s.value.is_dead() => s.markers.len(),
                        Value::List(l) => l.elems.len() - l.visible,
                        Value::Hll(h) => h.deletes.len(),
                        _ => 0,
                    })
                    .sum();
                let votes = if e.slots.is_empty() {
                    e.expiry.len()
                } else {
                    0
                };
                list + votes
            })
            .sum()
    }

    /// State merge with another keyspace (a join: commutative, associative, idempotent).
    pub fn join(&mut self, other: &Keyspace) {
        let mine_ctx = self.clock.clone();
        let their_ctx = other.clock.clone();
        let empty = Entry::default();
        let single = self.single_participant;
        let mut keys: BTreeSet<Blob> = self.entries.keys().cloned().collect();
        keys.extend(other.entries.keys().cloned());
        for key in keys {
            let theirs = other.entries.get(&key).map(|e| &**e).unwrap_or(&empty);
            let mine = self.entries.entry(key.clone()).or_default();
            for t in &theirs.slots {
                let kind = t.value.kind();
                let idx = match mine.slots.iter().position(|s| s.value.kind() == kind) {
                    Some(i) => i,
                    None => {
                        mine.slots.push(Slot {
                            created: t.created,
                            markers: SmallVec::new(),
                            value: Value::empty(kind),
                        });
                        mine.slots.len() - 1
                    }
                };
                let m = &mut mine.slots[idx];
                m.value.join(&mine_ctx, &t.value, &their_ctx);
                let mut markers: Vec<(Dot, Stamp)> = m.markers.drain(..).collect();
                markers.retain(|(d, _)| {
                    t.markers.iter().any(|(x, _)| x == d) || !their_ctx.covers(*d)
                });
                for (d, st) in &t.markers {
                    if !markers.iter().any(|(x, _)| x == d) && !mine_ctx.covers(*d) {
                        markers.push((*d, *st));
                    }
                }
                markers.sort();
                m.markers = markers.into_iter().collect();
                m.refresh_created();
            }
            for m in mine.slots.iter_mut() {
                let kind = m.value.kind();
                if !theirs.slots.iter().any(|s| s.value.kind() == kind) {
                    let empty_value = Value::empty(kind);
                    m.value.join(&mine_ctx, &empty_value, &their_ctx);
                    m.markers.retain(|(d, _)| !their_ctx.covers(*d));
                    m.refresh_created();
                }
            }
            let mut votes: Vec<(Dot, Option<u64>)> = mine.expiry.drain(..).collect();
            crate::crdt::value::join_dotted(
                &mut votes,
                &mine_ctx,
                &theirs.expiry,
                &their_ctx,
                |v| v.0,
            );
            votes.sort();
            mine.expiry = votes.into_iter().collect();
            mine.slots.retain(|s| s.holds_state(single));
            if mine.slots.is_empty() && mine.expiry.is_empty() {
                self.entries.remove(&key);
            }
        }
        self.clock.join(&their_ctx);
        self.hlc.observe(other.hlc.last());
        self.deadlines = self
            .entries
            .iter()
            .filter_map(|(k, e)| e.deadline().map(|d| (d, k.clone())))
            .collect();
    }
}

/// True when nothing in the entry waits for collection at `stable`: no emptied value, no
/// removed list element, no pair of increments that could still merge, no expiry vote on a key
/// without value.
fn entry_settled(entry: &Entry, stable: &VectorClock) -> bool {
    entry.slots.iter().all(|slot| match &slot.value {
        // A HyperLogLog kept only for its count of deletes has nothing left to collect.
        Value::Hll(h) if slot.counts_deletes() && slot.value.is_dead() => {
            h.deletes.is_empty() && slot.markers_stable(stable)
        }
        _ if slot.value.is_dead() => false,
        Value::List(l) => l.elems.len() == l.visible,
        Value::Hll(h) => h.deletes.is_empty(),
        _ => true,
    }) && (!entry.slots.is_empty() || entry.expiry.iter().all(|(d, _)| stable.covers(*d)))
}
