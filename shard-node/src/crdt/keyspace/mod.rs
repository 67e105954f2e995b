//! The CRDT keyspace: keys to values, the node's clock, and effect application (`apply`),
//! collection and the state merge (`merge`).
//!
//! Contract:
//! - Local writes go through [`Keyspace::commit`]: the operations become one [`Effect`] with the
//!   next dot of this node's actor, a fresh HLC timestamp and the current clock as `deps`; it is
//!   applied by the same code as a remote effect ([`Keyspace::apply`]) and queued in
//!   [`Keyspace::outbox`] for the log and for replication.
//! - [`Keyspace::apply`] expects causal delivery without duplicates (see `replica.rs`, which
//!   enforces it) and is deterministic: equal sets of effects give equal states.
//! - A key may hold values of several types only after concurrent creation with different
//!   types; the one created with the greatest stamp is visible, the others stay hidden until an
//!   observed remove cancels them.
//! - Expiry is a set of votes (a deadline, or persist). Any persist vote wins; otherwise the
//!   latest deadline. A key past its deadline reads as absent; only the node whose vote won
//!   deletes it (by committing a `Del`).
//! - State that exists only to order concurrent effects (removed list elements, separate
//!   increments of one actor, expiry votes of deleted keys, creation markers of values emptied
//!   by removing their elements) is kept until [`Keyspace::collect`]
//!   is told the clock every participant has seen. A keyspace created as single-participant
//!   collects at once.

use super::clock::{Actor, ActorId, Dot, Hlc, Stamp, VectorClock};
use super::effect::{Effect, Op, OpKind};
use super::value::{Blob, FastMap, Kind, Value};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet};

mod apply;
mod merge;

/// One value of one type inside a key, with the stamp of its creation.
///
/// The creation stamp is itself replicated state: every write into the slot leaves a marker
/// `(dot, stamp it wrote under)` that replaces the markers it observed, and observed removes of
/// the whole key cancel markers like any other dot. `created` is the greatest remaining marker,
/// so which type wins a conflict does not depend on the order effects arrive in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub created: Stamp,
    pub markers: SmallVec<[(Dot, Stamp); 1]>,
    pub value: Value,
}

impl Slot {
    /// Whether the slot must be kept. A value emptied by removing its elements (`ZREM` of the
    /// last member, a popped list) keeps its creation markers, because a concurrent write of
    /// the same type that arrives later joins this value and must see the same creation stamp
    /// in every region; with a single participant there is no such write.
    ///
    /// A HyperLogLog that went through deletes keeps their count (its epoch) for good when
    /// there are other participants: a raise is judged by the number of deletes its writer
    /// counted, and a region that forgot the count would start again from zero while others
    /// still count on.
    fn holds_state(&self, single_participant: bool) -> bool {
        !self.value.is_dead()
            || (!single_participant && (!self.markers.is_empty() || self.counts_deletes()))
    }

    /// Whether this is a HyperLogLog that went through deletes (see [`Slot::holds_state`]).
    fn counts_deletes(&self) -> bool {
        matches!(&self.value, Value::Hll(h) if h.epoch > 0)
    }

    fn markers_stable(&self, stable: &VectorClock) -> bool {
        self.markers.iter().all(|(d, _)| stable.covers(*d))
    }

    fn refresh_created(&mut self) {
        if let Some(max) = self.markers.iter().map(|(_, s)| *s).max() {
            self.created = max;
        }
    }
}

/// Everything stored under one key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub slots: SmallVec<[Slot; 1]>,
    /// Expiry votes: `(dot, Some(deadline_ms))` or `(dot, None)` for persist.
    pub expiry: thin_vec::ThinVec<(Dot, Option<u64>)>,
}

impl Entry {
    /// The visible slot: the non-empty one created with the greatest stamp.
    pub fn winner(&self) -> Option<&Slot> {
        self.slots
            .iter()
            .filter(|s| !s.value.is_visibly_empty())
            .max_by_key(|s| s.created)
    }

    /// The deadline in force, with the dot of the vote that set it.
    pub fn deadline_vote(&self) -> Option<(u64, Dot)> {
        if self.expiry.iter().any(|(_, d)| d.is_none()) {
            return None;
        }
        self.expiry
            .iter()
            .filter_map(|(dot, d)| d.map(|ms| (ms, *dot)))
            .max()
    }

    pub fn deadline(&self) -> Option<u64> {
        self.deadline_vote().map(|(ms, _)| ms)
    }

    /// The slot of `kind`, created if absent, with the writer's creation marker recorded.
    fn slot_mut(
        &mut self,
        kind: Kind,
        created: Stamp,
        dot: Dot,
        observed: &VectorClock,
    ) -> &mut Value {
        let idx = match self.slots.iter().position(|s| s.value.kind() == kind) {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    created,
                    markers: SmallVec::new(),
                    value: Value::empty(kind),
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[idx];
        slot.markers.retain(|(d, _)| !observed.covers(*d));
        slot.markers.push((dot, created));
        slot.refresh_created();
        &mut slot.value
    }

    fn slots_of(&mut self, kind: Kind) -> impl Iterator<Item = &mut Value> {
        self.slots
            .iter_mut()
            .filter(move |s| s.value.kind() == kind)
            .map(|s| &mut s.value)
    }

    fn remove_observed(&mut self, observed: &VectorClock, by: Dot) {
        for slot in self.slots.iter_mut() {
            slot.value.remove_observed(observed, by);
            slot.markers.retain(|(d, _)| !observed.covers(*d));
            slot.refresh_created();
        }
        self.expiry.retain(|(d, _)| !observed.covers(*d));
    }
}

/// A key's visible content, in a canonical form for comparisons and digests.
#[derive(Clone, Debug, PartialEq)]
pub enum Visible {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    ZSet(Vec<(Vec<u8>, String)>),
    List(Vec<Vec<u8>>),
    /// Entries as (ID, fields); consumer groups are region-local and not part of it.
    Stream(Vec<(String, Vec<Vec<u8>>)>),
    /// Non-zero registers.
    Hll(Vec<(u16, u8)>),
}

/// Header of a snapshot: the node's identity and clocks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyspaceMeta {
    pub actor: Actor,
    pub own_actors: Vec<ActorId>,
    pub clock: VectorClock,
    pub hlc: u64,
}

/// Error for a local write on a key that holds another type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
pub struct WrongType;

pub struct Keyspace {
    actor: Actor,
    actor_id: ActorId,
    own_actors: Vec<ActorId>,
    clock: VectorClock,
    hlc: Hlc,
    /// Entries are boxed: the hash table's buckets stay small, which matters more for memory
    /// than the extra indirection costs in speed.
    entries: FastMap<Blob, Box<Entry>>,
    deadlines: BTreeSet<(u64, Blob)>,
    single_participant: bool,
    watched: FastMap<Blob, u64>,
    /// Effects committed locally and not yet taken by the log/replication.
    pub outbox: Vec<Effect>,
    pub effects_applied: u64,
    /// `Some(None)`: a batch is open but has no effect yet; `Some(Some(e))`: its effect so far.
    batch: Option<Option<Effect>>,
    /// [`Op::size_estimate`] of the operations in the open batch.
    batch_bytes: u64,
    /// Keys written since they were last fully collected (only tracked with other participants).
    uncollected: std::collections::HashSet<Blob, ahash::RandomState>,
    /// Pre-images of keys changed while a snapshot is being captured (see `begin_capture`).
    capture: Option<FastMap<Blob, Option<Entry>>>,
}

/// The stamp used in operations for "a value this effect creates"; replaced by the effect's own
/// stamp in [`Keyspace::commit`].
pub const NEW_SLOT: Stamp = Stamp {
    ts: 0,
    actor: ActorId(0),
};

impl Keyspace {
    pub fn new(actor: Actor, single_participant: bool) -> Self {
        let actor_id = actor.id();
        Keyspace {
            actor,
            actor_id,
            own_actors: vec![actor_id],
            clock: VectorClock::new(),
            hlc: Hlc::new(),
            entries: FastMap::default(),
            deadlines: BTreeSet::new(),
            single_participant,
            watched: FastMap::default(),
            outbox: Vec::new(),
            effects_applied: 0,
            batch: None,
            batch_bytes: 0,
            capture: None,
            uncollected: Default::default(),
        }
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn actor_id(&self) -> ActorId {
        self.actor_id
    }

    pub fn clock(&self) -> &VectorClock {
        &self.clock
    }

    pub fn hlc_last(&self) -> u64 {
        self.hlc.last()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether removed state is dropped at once (no other participants) or kept until
    /// [`Keyspace::collect`] is told every participant has seen it.
    pub fn set_single_participant(&mut self, single: bool) {
        self.single_participant = single;
    }

    pub fn is_single_participant(&self) -> bool {
        self.single_participant
    }

    /// Replaces all data and clocks by a full copy received from the primary (replica sync).
    pub fn replace_with(&mut self, meta: KeyspaceMeta, entries: Vec<(Blob, Entry)>) {
        self.entries = FastMap::default();
        self.deadlines = BTreeSet::new();
        self.clock = VectorClock::new();
        self.batch = None;
        self.capture = None;
        self.outbox.clear();
        self.restore_meta(meta);
        for (k, e) in entries {
            self.restore_entry(k, e);
        }
        self.touch_all_watched();
    }

    /// The highest generation of this node's participant and shard that it has seen.
    pub fn highest_own_generation(&self) -> u64 {
        let lineage = self.actor_id.lineage();
        self.clock
            .iter()
            .filter(|(a, _)| a.lineage() == lineage)
            .map(|(a, _)| a.generation())
            .max()
            .unwrap_or(0)
            .max(super::clock::generation_of(self.actor.epoch))
    }

    /// An epoch of `generation` whose incarnation no actor this node knows of uses.
    pub fn fresh_epoch(&self, generation: u64) -> u64 {
        let lineage = self.actor_id.lineage();
        let taken: Vec<u64> = self
            .clock
            .iter()
            .filter(|(a, _)| a.lineage() == lineage)
            .map(|(a, _)| a.epoch())
            .chain(std::iter::once(self.actor.epoch))
            .collect();
        loop {
            let candidate = super::clock::epoch_of(generation, rand::random::<u64>());
            if !taken.contains(&candidate) {
                return candidate;
            }
        }
    }

    pub fn keys_with_deadline(&self) -> usize {
        self.deadlines.len()
    }

    /// Starts a new epoch: later effects are made by a new actor of the same participant/shard.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.actor.epoch = epoch;
        self.actor_id = self.actor.id();
        if !self.own_actors.contains(&self.actor_id) {
            self.own_actors.push(self.actor_id);
        }
    }

    pub fn meta(&self) -> KeyspaceMeta {
        KeyspaceMeta {
            actor: self.actor.clone(),
            own_actors: self.own_actors.clone(),
            clock: self.clock.clone(),
            hlc: self.hlc.last(),
        }
    }

    /// Restores identity and clocks from a snapshot header.
    pub fn restore_meta(&mut self, meta: KeyspaceMeta) {
        for id in meta.own_actors {
            if !self.own_actors.contains(&id) {
                self.own_actors.push(id);
            }
        }
        self.clock.join(&meta.clock);
        self.hlc.observe(meta.hlc);
        if meta.actor.participant == self.actor.participant
            && meta.actor.shard == self.actor.shard
            && meta.actor.epoch > self.actor.epoch
        {
            self.set_epoch(meta.actor.epoch);
        }
    }

    /// Inserts an entry read from a snapshot.
    pub fn restore_entry(&mut self, key: Blob, entry: Entry) {
        if let Some(d) = entry.deadline() {
            self.deadlines.insert((d, key.clone()));
        }
        self.entries.insert(key, Box::new(entry));
    }

    /// Every key with its entry (for snapshots and scans).
    pub fn entries(&self) -> impl Iterator<Item = (&Blob, &Entry)> {
        self.entries.iter().map(|(k, e)| (k, &**e))
    }

    pub fn raw_entry(&self, key: &[u8]) -> Option<&Entry> {
        self.entries.get(key).map(|e| &**e)
    }

    fn is_expired(entry: &Entry, now_ms: u64) -> bool {
        matches!(entry.deadline(), Some(d) if d <= now_ms)
    }

    /// The visible value of `key`, or `None` when absent or expired.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<&Slot> {
        let entry = self.entries.get(key)?;
        if Self::is_expired(entry, now_ms) {
            return None;
        }
        entry.winner()
    }

    /// The deadline (unix ms) of a visible key.
    pub fn deadline(&self, key: &[u8], now_ms: u64) -> Option<u64> {
        let entry = self.entries.get(key)?;
        if Self::is_expired(entry, now_ms) || entry.winner().is_none() {
            return None;
        }
        entry.deadline()
    }

    /// The slot stamp a local write of `kind` to `key` must carry, or WRONGTYPE.
    pub fn slot_for_write(&self, key: &[u8], kind: Kind, now_ms: u64) -> Result<Stamp, WrongType> {
        match self.get(key, now_ms) {
            None => Ok(NEW_SLOT),
            Some(slot) if slot.value.kind() == kind => Ok(slot.created),
            Some(_) => Err(WrongType),
        }
    }

    /// True when `key` is past its deadline and this node should delete it: for a write always
    /// (the key is logically gone), otherwise only if this node's expiry vote won.
    pub fn needs_expiry_delete(&self, key: &[u8], now_ms: u64, for_write: bool) -> bool {
        let Some(entry) = self.entries.get(key) else {
            return false;
        };
        match entry.deadline_vote() {
            Some((ms, dot)) if ms <= now_ms => for_write || self.own_actors.contains(&dot.actor),
            _ => false,
        }
    }

    /// Keys past their deadline whose expiry this node owns, at most `limit` of them.
    pub fn due_for_expiry(&self, now_ms: u64, limit: usize) -> Vec<Blob> {
        let mut out = Vec::new();
        for (ms, key) in self.deadlines.iter() {
            if *ms > now_ms || out.len() >= limit {
                break;
            }
            if self.needs_expiry_delete(key, now_ms, false) {
                out.push(key.clone());
            }
        }
        out
    }

    /// Opens a batch: every `commit` until [`Keyspace::end_batch`] becomes part of one effect
    /// (a transaction). Operations are applied as they are committed, so later commands of the
    /// transaction read the earlier ones' writes.
    pub fn begin_batch(&mut self) {
        self.batch = Some(None);
        self.batch_bytes = 0;
    }

    /// About how many bytes the open batch's effect holds so far (0 without a batch).
    pub fn open_batch_bytes(&self) -> u64 {
        if self.batch.is_some() {
            self.batch_bytes
        } else {
            0
        }
    }

    /// True while a batch (a transaction or a script) is open.
    pub fn in_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// Closes the batch and queues its effect, if it wrote anything.
    pub fn end_batch(&mut self) {
        if let Some(Some(effect)) = self.batch.take() {
            self.effects_applied += 1;
            self.outbox.push(effect);
        }
    }

    /// Makes an effect of local operations, applies it and queues it in the outbox (or adds the
    /// operations to the open batch).
    pub fn commit(&mut self, now_ms: u64, mut ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        let (open, in_batch) = match self.batch.take() {
            Some(Some(effect)) => (Some(effect), true),
            Some(None) => (None, true),
            None => (None, false),
        };
        let mut effect = match open {
            Some(e) => e,
            None => {
                let seq = self.clock.get(self.actor_id) + 1;
                let ts = self.hlc.now(now_ms);
                let effect = Effect {
                    dot: Dot {
                        actor: self.actor_id,
                        seq,
                    },
                    ts,
                    deps: self.clock.clone(),
                    ops: Vec::new(),
                };
                self.clock.raise(self.actor_id, seq);
                effect
            }
        };
        let stamp = effect.stamp();
        for op in ops.iter_mut() {
            match &mut op.kind {
                OpKind::StrSet { slot, .. }
                | OpKind::StrAdd { slot, .. }
                | OpKind::HashSet { slot, .. }
                | OpKind::HashAdd { slot, .. }
                | OpKind::SetAdd { slot, .. }
                | OpKind::ZAdd { slot, .. }
                | OpKind::ZAddDelta { slot, .. }
                | OpKind::ListInsert { slot, .. }
                | OpKind::StreamAdd { slot, .. }
                | OpKind::StreamTouch { slot, .. }
                | OpKind::HllRaise { slot, .. }
                    if *slot == NEW_SLOT =>
                {
                    *slot = stamp;
                }
                _ => {}
            }
        }
        let observed = effect.observed();
        for op in &ops {
            self.apply_op(op, &effect, &observed);
        }
        if in_batch {
            self.batch_bytes += ops.iter().map(Op::size_estimate).sum::<u64>();
        }
        effect.ops.extend(ops);
        if in_batch {
            self.batch = Some(Some(effect));
        } else {
            self.effects_applied += 1;
            self.outbox.push(effect);
        }
    }

    /// The dot the next local effect will get (list element ids are derived from it).
    pub fn next_dot(&self) -> Dot {
        match &self.batch {
            Some(Some(e)) => e.dot,
            _ => Dot {
                actor: self.actor_id,
                seq: self.clock.get(self.actor_id) + 1,
            },
        }
    }

    /// Number of list elements the open batch has already inserted (to keep element ids unique).
    pub fn batch_list_inserts(&self) -> u32 {
        match &self.batch {
            Some(Some(e)) => e
                .ops
                .iter()
                .filter(|o| matches!(o.kind, OpKind::ListInsert { .. }))
                .count() as u32,
            _ => 0,
        }
    }

    /// Starts capturing a consistent snapshot of the current state: returns every key; from now
    /// on the first change to a key saves its previous entry, so [`Keyspace::captured_entry`]
    /// returns the entry as it was at this moment however the key changes meanwhile.
    pub fn begin_capture(&mut self) -> Vec<Blob> {
        self.capture = Some(FastMap::default());
        self.entries.keys().cloned().collect()
    }

    /// The entry of `key` as it was when the capture began.
    pub fn captured_entry(&self, key: &[u8]) -> Option<Entry> {
        match self.capture.as_ref().and_then(|c| c.get(key)) {
            Some(pre) => pre.clone(),
            None => self.entries.get(key).map(|e| (**e).clone()),
        }
    }

    pub fn end_capture(&mut self) {
        self.capture = None;
    }

    /// Whether a snapshot is being captured (`begin_capture` … `end_capture`).
    pub fn capture_active(&self) -> bool {
        self.capture.is_some()
    }

    /// Drops everything held for `key` at once (an eviction: not an observed-remove, and not
    /// replicated to other regions).
    fn drop_key(&mut self, key: &[u8]) {
        if let Some(capture) = &mut self.capture {
            if let Some(existing) = self.entries.get(key) {
                if !capture.contains_key(key) {
                    capture.insert(Blob::from(key), Some((**existing).clone()));
                }
            }
        }
        if let Some(entry) = self.entries.remove(key) {
            if let Some(ms) = entry.deadline() {
                self.deadlines.remove(&(ms, Blob::from(key)));
            }
        }
        self.uncollected.remove(key);
        if let Some(v) = self.watched.get_mut(key) {
            *v += 1;
        }
    }

    /// A key with a deadline to evict: the nearest deadline with `nearest`, otherwise one
    /// picked at a random point of the deadlines.
    pub fn volatile_key(&self, nearest: bool) -> Option<Blob> {
        let first = self.deadlines.iter().next()?;
        if nearest {
            return Some(first.1.clone());
        }
        let last = self.deadlines.iter().next_back()?;
        let at = if last.0 > first.0 {
            rand::random_range(first.0..=last.0)
        } else {
            first.0
        };
        self.deadlines
            .range((at, Blob::from(&b""[..]))..)
            .next()
            .or(Some(first))
            .map(|(_, k)| k.clone())
    }

    /// Registers interest in `key` for WATCH; returns its current version.
    pub fn watch(&mut self, key: &[u8]) -> u64 {
        *self.watched.entry(Blob::from(key)).or_insert(0)
    }

    /// Current watch version of `key` (only meaningful while watched).
    pub fn watch_version(&self, key: &[u8]) -> u64 {
        self.watched.get(key).copied().unwrap_or(0)
    }

    /// Marks every watched key as changed (FLUSHALL and similar).
    pub fn touch_all_watched(&mut self) {
        for v in self.watched.values_mut() {
            *v += 1;
        }
    }

    /// The visible state of every key (expired keys excluded), canonical and comparable.
    pub fn visible(&self, now_ms: u64) -> BTreeMap<Vec<u8>, (Visible, Option<u64>)> {
        let mut out = BTreeMap::new();
        for (key, entry) in &self.entries {
            if Self::is_expired(entry, now_ms) {
                continue;
            }
            if let Some(slot) = entry.winner() {
                out.insert(key.to_vec(), (visible_of(&slot.value), entry.deadline()));
            }
        }
        out
    }

    /// A digest of the visible state (64-bit FNV-1a over the canonical form).
    pub fn digest(&self, now_ms: u64) -> u64 {
        let text = format!("{:?}", self.visible(now_ms));
        super::clock::fnv1a(text.as_bytes())
    }
}

/// Canonical visible form of a value.
pub fn visible_of(value: &Value) -> Visible {
    match value {
        Value::Str(c) => Visible::Str(c.read().to_vec()),
        Value::Hash(h) => Visible::Hash(
            h.fields
                .iter()
                .map(|(k, v)| (k.to_vec(), v.read().to_vec()))
                .collect(),
        ),
        Value::Set(s) => Visible::Set(s.members.keys().map(|k| k.to_vec()).collect()),
        Value::ZSet(z) => Visible::ZSet(
            z.order
                .iter()
                .map(|(s, m)| (m.to_vec(), crate::crdt::render_float(s.0)))
                .collect(),
        ),
        Value::List(l) => Visible::List(l.iter_visible().map(|e| e.value.to_vec()).collect()),
        Value::Hll(h) => Visible::Hll(h.regs.nonzero()),
        Value::Stream(x) => Visible::Stream(
            x.entries
                .iter()
                .map(|(id, e)| (id.render(), e.fields.iter().map(|f| f.to_vec()).collect()))
                .collect(),
        ),
    }
}
