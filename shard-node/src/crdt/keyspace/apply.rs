//! Applying one effect: each operation changes its key's entry (the value type carries the
//! operation out), then the entry drops what is dead and the deadline index and watch versions
//! follow. See the contract of the parent module.

use super::{Entry, Keyspace};
use crate::crdt::clock::VectorClock;
use crate::crdt::effect::{Effect, Op, OpKind};
use crate::crdt::value::{Blob, Kind, Value};

impl Keyspace {
    /// Applies one effect (causal delivery, no duplicates: see the module contract).
    pub fn apply(&mut self, effect: &Effect) {
        self.hlc.observe(effect.ts);
        self.clock.raise(effect.dot.actor, effect.dot.seq);
        let observed = effect.observed();
        for op in &effect.ops {
            self.apply_op(op, effect, &observed);
        }
        self.effects_applied += 1;
    }

    pub(super) fn apply_op(&mut self, op: &Op, effect: &Effect, observed: &VectorClock) {
        if let OpKind::Publish { .. } = op.kind {
            return;
        }
        if let OpKind::FlushAll = op.kind {
            let keys: Vec<Blob> = self.entries.keys().cloned().collect();
            for key in keys {
                self.touch_key(&key, |e| e.remove_observed(observed, effect.dot));
            }
            return;
        }
        if let OpKind::StreamGroup { region, .. } = &op.kind {
            if *region != self.actor.participant {
                // Another region's consumer group.
                return;
            }
        }
        if let OpKind::Evict { region } = &op.kind {
            if *region == self.actor.participant {
                self.drop_key(&op.key);
            }
            return;
        }
        let stamp = effect.stamp();
        let dot = effect.dot;
        let ts = effect.ts;
        let key = &op.key[..];
        self.touch_key(key, |entry| match &op.kind {
            OpKind::FlushAll | OpKind::Publish { .. } | OpKind::Evict { .. } => {}
            OpKind::Del => entry.remove_observed(observed, dot),
            OpKind::Expire { at_ms } => {
                entry.expiry.retain(|(d, _)| !observed.covers(*d));
                entry.expiry.push((dot, Some(*at_ms)));
            }
            OpKind::Persist => {
                entry.expiry.retain(|(d, _)| !observed.covers(*d));
                entry.expiry.push((dot, None));
            }
            OpKind::ClearExpiry => entry.expiry.retain(|(d, _)| !observed.covers(*d)),
            OpKind::StrSet { slot, value } => {
                if let Value::Str(c) = entry.slot_mut(Kind::Str, *slot, dot, observed) {
                    c.write(observed, dot, ts, Blob::from(&value[..]));
                }
            }
            OpKind::StrAdd { slot, delta } => {
                if let Value::Str(c) = entry.slot_mut(Kind::Str, *slot, dot, observed) {
                    c.add(dot, *delta);
                }
            }
            OpKind::HashSet { slot, field, value } => {
                if let Value::Hash(h) = entry.slot_mut(Kind::Hash, *slot, dot, observed) {
                    h.apply_set(observed, dot, ts, field, value);
                }
            }
            OpKind::HashAdd { slot, field, delta } => {
                if let Value::Hash(h) = entry.slot_mut(Kind::Hash, *slot, dot, observed) {
                    h.apply_add(dot, field, *delta);
                }
            }
            OpKind::HashDel { field } => {
                for v in entry.slots_of(Kind::Hash) {
                    if let Value::Hash(h) = v {
                        h.apply_del(observed, field);
                    }
                }
            }
            OpKind::SetAdd { slot, member } => {
                if let Value::Set(s) = entry.slot_mut(Kind::Set, *slot, dot, observed) {
                    s.add(observed, dot, member);
                }
            }
            OpKind::SetRem { member } => {
                for v in entry.slots_of(Kind::Set) {
                    if let Value::Set(s) = v {
                        s.remove(observed, member);
                    }
                }
            }
            OpKind::ZAdd {
                slot,
                member,
                score,
            } => {
                if let Value::ZSet(z) = entry.slot_mut(Kind::ZSet, *slot, dot, observed) {
                    z.apply_add(observed, dot, ts, member, *score);
                }
            }
            OpKind::ZAddDelta {
                slot,
                member,
                delta,
            } => {
                if let Value::ZSet(z) = entry.slot_mut(Kind::ZSet, *slot, dot, observed) {
                    z.apply_delta(dot, member, *delta);
                }
            }
            OpKind::ZRem { member } => {
                for v in entry.slots_of(Kind::ZSet) {
                    if let Value::ZSet(z) = v {
                        z.apply_rem(observed, member);
                    }
                }
            }
            OpKind::ListInsert {
                slot,
                id,
                after,
                value,
            } => {
                if let Value::List(l) = entry.slot_mut(Kind::List, *slot, dot, observed) {
                    l.apply_insert(*after, *id, stamp, value);
                }
            }
            OpKind::ListRemove { id } => {
                for v in entry.slots_of(Kind::List) {
                    if let Value::List(l) = v {
                        l.remove(*id, dot);
                    }
                }
            }
            OpKind::ListSet { id, value } => {
                for v in entry.slots_of(Kind::List) {
                    if let Value::List(l) = v {
                        l.set(*id, Blob::from(&value[..]), stamp);
                    }
                }
            }
            OpKind::StreamAdd { slot, id, fields } => {
                if let Value::Stream(x) = entry.slot_mut(Kind::Stream, *slot, dot, observed) {
                    let fields = fields.iter().map(|f| Blob::from(&f[..])).collect();
                    x.add(dot, stamp, *id, fields);
                }
            }
            OpKind::StreamTouch {
                slot,
                last_id,
                max_deleted,
            } => {
                if let Value::Stream(x) = entry.slot_mut(Kind::Stream, *slot, dot, observed) {
                    x.touch(dot);
                    x.raise_ids(*last_id, *max_deleted);
                }
            }
            OpKind::StreamDel { ids, trim } => {
                for v in entry.slots_of(Kind::Stream) {
                    if let Value::Stream(x) = v {
                        x.remove(observed, ids, !*trim);
                    }
                }
            }
            OpKind::StreamGroup { change, .. } => {
                for v in entry.slots_of(Kind::Stream) {
                    if let Value::Stream(x) = v {
                        x.apply_group(dot, change);
                    }
                }
            }
            OpKind::HllRaise {
                slot,
                epoch,
                registers,
            } => {
                if let Value::Hll(h) = entry.slot_mut(Kind::Hll, *slot, dot, observed) {
                    h.raise(dot, *epoch, registers, observed);
                }
            }
        });
    }

    /// Runs `change` on the entry of `key` (created if absent), then drops dead state, keeps the
    /// deadline index right and bumps the key's watch version.
    pub(super) fn touch_key<F: FnOnce(&mut Entry)>(&mut self, key: &[u8], change: F) {
        let single = self.single_participant;
        if let Some(capture) = &mut self.capture {
            // Keys created after the capture began are not in the snapshot's key list, so only
            // existing keys need their previous state kept.
            if let Some(existing) = self.entries.get(key) {
                if !capture.contains_key(key) {
                    capture.insert(Blob::from(key), Some((**existing).clone()));
                }
            }
        }
        let (before, after, remove) = {
            let entry = match self.entries.get_mut(key) {
                Some(e) => e,
                None => self.entries.entry(Blob::from(key)).or_default(),
            };
            let before = entry.deadline();
            change(entry);
            if single {
                for slot in entry.slots.iter_mut() {
                    match &mut slot.value {
                        Value::List(l) => {
                            l.trim_removed_ends();
                            if l.visible == 0 {
                                l.elems.clear();
                            }
                        }
                        // No other participant can hold a raise concurrent with a delete.
                        Value::Hll(h) => h.deletes.clear(),
                        _ => {}
                    }
                }
            }
            entry.slots.retain(|s| s.holds_state(single));
            if entry.slots.is_empty() && single {
                entry.expiry.clear();
            }
            let after = entry.deadline();
            (
                before,
                after,
                entry.slots.is_empty() && entry.expiry.is_empty(),
            )
        };
        if before != after {
            if let Some(ms) = before {
                self.deadlines.remove(&(ms, Blob::from(key)));
            }
            if let Some(ms) = after {
                if !remove {
                    self.deadlines.insert((ms, Blob::from(key)));
                }
            }
        } else if remove {
            if let Some(ms) = before {
                self.deadlines.remove(&(ms, Blob::from(key)));
            }
        }
        if remove {
            self.entries.remove(key);
        }
        if !single && !remove && !self.uncollected.contains(key) {
            self.uncollected.insert(Blob::from(key));
        }
        if !self.watched.is_empty() {
            if let Some(v) = self.watched.get_mut(key) {
                *v += 1;
            }
        }
    }
}
