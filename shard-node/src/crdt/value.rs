//! The replicated value types (dot stores) of one key.
//!
//! Contract: every piece of state that an observed-remove can cancel is tagged with the dot of
//! the effect that wrote it. A remove carries the remover's observed clock and cancels exactly
//! the dots that clock covers, so writes the remover had not seen survive (add/update wins).
//! Each type has `apply`-style mutators used by the keyspace and a `join` used for full state
//! merge, where a dot present on one side only survives unless the other side's clock covers it
//! (then the other side removed it). Reads never mutate.

use super::clock::{Dot, Stamp, VectorClock};
use super::effect::{Delta, ElemId};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeSet, HashMap, VecDeque};
use thin_vec::ThinVec;

/// Owned bytes as stored in the keyspace (never a view into a network buffer).
pub type Blob = Box<[u8]>;

pub type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Keeps entries of `entries` that `other` also has, or that `other_ctx` has not seen.
pub(crate) fn join_dotted<T: Clone, F: Fn(&T) -> Dot>(
    mine: &mut Vec<T>,
    mine_ctx: &VectorClock,
    theirs: &[T],
    their_ctx: &VectorClock,
    dot: F,
) {
    let their_dots: Vec<Dot> = theirs.iter().map(&dot).collect();
    mine.retain(|e| their_dots.contains(&dot(e)) || !their_ctx.covers(dot(e)));
    for e in theirs {
        let d = dot(e);
        if !mine.iter().any(|m| dot(m) == d) && !mine_ctx.covers(d) {
            mine.push(e.clone());
        }
    }
}

/// A number held by a counter: integers stay exact, any float makes the sum a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub fn add_delta(self, delta: Delta) -> Num {
        match (self, delta) {
            (Num::Int(a), Delta::Int(b)) => Num::Int(a + i128::from(b)),
            (Num::Int(a), Delta::Float(b)) => Num::Float(a as f64 + b),
            (Num::Float(a), Delta::Int(b)) => Num::Float(a + b as f64),
            (Num::Float(a), Delta::Float(b)) => Num::Float(a + b),
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Text as Redis prints it (integers in decimal, floats in the shortest form).
    pub fn render(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => crate::crdt::render_float(f),
        }
    }
}

/// Parses the numeric reading of a register value: an integer if it is one, else a float.
pub fn parse_num(bytes: &[u8]) -> Option<Num> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Ok(i) = text.parse::<i64>() {
        if !text.starts_with('+') && (text == "0" || !text.starts_with('0')) && text != "-0" {
            return Some(Num::Int(i128::from(i)));
        }
    }
    let f: f64 = text.parse().ok()?;
    if f.is_finite() && !text.trim().is_empty() && text.trim() == text {
        Some(Num::Float(f))
    } else {
        None
    }
}

/// A multi-value register plus counter increments: strings, hash fields and sorted-set scores.
///
/// The visible value is the base entry with the greatest stamp; increments add on top. A write
/// cancels the observed base entries and increments, so unobserved increments stay on top of the
/// new value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counted<T> {
    pub base: SmallVec<[(Dot, u64, T); 1]>,
    /// Increments, usually none: a thin vector costs one word when empty.
    pub adds: ThinVec<(Dot, Delta)>,
}

impl<T> Default for Counted<T> {
    fn default() -> Self {
        Counted {
            base: SmallVec::new(),
            adds: ThinVec::new(),
        }
    }
}

impl<T: Clone> Counted<T> {
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.adds.is_empty()
    }

    pub fn remove_observed(&mut self, observed: &VectorClock) {
        self.base.retain(|(d, _, _)| !observed.covers(*d));
        self.adds.retain(|(d, _)| !observed.covers(*d));
    }

    pub fn write(&mut self, observed: &VectorClock, dot: Dot, ts: u64, value: T) {
        self.remove_observed(observed);
        self.base.push((dot, ts, value));
    }

    /// Adds an increment. Increments are kept in dot order, so a float sum is the same on
    /// every replica whatever order the increments arrived in.
    pub fn add(&mut self, dot: Dot, delta: Delta) {
        match self.adds.last() {
            Some((last, _)) if *last > dot => {
                let pos = self.adds.partition_point(|(d, _)| *d < dot);
                self.adds.insert(pos, (dot, delta));
            }
            _ => self.adds.push((dot, delta)),
        }
    }

    /// The base value with the greatest stamp.
    pub fn winner(&self) -> Option<&T> {
        self.base
            .iter()
            .max_by_key(|(d, ts, _)| Stamp {
                ts: *ts,
                actor: d.actor,
            })
            .map(|(_, _, v)| v)
    }

    pub fn join(&mut self, mine_ctx: &VectorClock, other: &Counted<T>, their_ctx: &VectorClock) {
        let mut base: Vec<(Dot, u64, T)> = self.base.drain(..).collect();
        join_dotted(
            &mut base,
            mine_ctx,
            &other.base.iter().cloned().collect::<Vec<_>>(),
            their_ctx,
            |e| e.0,
        );
        base.sort_by_key(|e| e.0);
        self.base = base.into_iter().collect();
        let mut adds: Vec<(Dot, Delta)> = self.adds.drain(..).collect();
        join_dotted(&mut adds, mine_ctx, &other.adds, their_ctx, |e| e.0);
        adds.sort_by_key(|e| e.0);
        self.adds = adds.into_iter().collect();
    }
}

fn delta_f64(d: Delta) -> f64 {
    match d {
        Delta::Int(i) => i as f64,
        Delta::Float(f) => f,
    }
}

impl Counted<Blob> {
    /// The numeric value: base (or 0 without one) plus every increment. `None` when the base is
    /// not a number (then increments the writer had not seen are not shown).
    pub fn number(&self) -> Option<Num> {
        let mut total = match self.winner() {
            Some(v) => parse_num(v)?,
            None => Num::Int(0),
        };
        for (_, d) in &self.adds {
            total = total.add_delta(*d);
        }
        Some(total)
    }

    /// The visible string.
    pub fn read(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.adds.is_empty() {
            if let Some(v) = self.winner() {
                return std::borrow::Cow::Borrowed(v);
            }
        }
        match self.number() {
            Some(n) => std::borrow::Cow::Owned(n.render().into_bytes()),
            None => std::borrow::Cow::Borrowed(self.winner().map(|v| &v[..]).unwrap_or(b"")),
        }
    }
}

impl Counted<f64> {
    pub fn score(&self) -> f64 {
        let mut total = self.winner().copied().unwrap_or(0.0);
        for (_, d) in &self.adds {
            total += delta_f64(*d);
        }
        total
    }
}

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

/// Hash: an observed-remove map of fields to registers/counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HashValue {
    pub fields: FastMap<Blob, Counted<Blob>>,
}

/// Set: an observed-remove set; each member holds the dots of the adds that put it there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetValue {
    pub members: FastMap<Blob, SmallVec<[Dot; 1]>>,
}

/// Sorted set: observed-remove membership, register-or-counter scores, plus an order index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ZSetValue {
    pub members: FastMap<Blob, Counted<f64>>,
    pub order: BTreeSet<(Score, Blob)>,
}

/// Where a list element was inserted.
///
/// Encoded like `Option<ElemId>` for the first two variants (postcard writes an option's tag
/// and an enum's variant index as the same byte), so data written before `Collected` existed
/// still decodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// At the head of the list.
    Head,
    /// Right after this element.
    After(ElemId),
    /// Right after an element this replica has collected: the element now orders among its
    /// neighbours by the order key that element had (see [`ListValue::collect`]). Boxed so
    /// that the common variants keep an element as small as before.
    Collected(Box<CollectedOrigin>),
}

/// The origin of an element whose origin was collected, and the order key it inherited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectedOrigin {
    pub id: ElemId,
    pub key: Stamp,
}

impl Origin {
    pub fn from_after(after: Option<ElemId>) -> Self {
        match after {
            None => Origin::Head,
            Some(id) => Origin::After(id),
        }
    }

    /// The element inserted after, `None` for the head.
    pub fn id(&self) -> Option<ElemId> {
        match self {
            Origin::Head => None,
            Origin::After(id) => Some(*id),
            Origin::Collected(c) => Some(c.id),
        }
    }
}

/// One list element: a position in the sequence CRDT plus a last-writer-wins value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Elem {
    pub id: ElemId,
    /// The element it was inserted after; used to replay it in a merge, and to order it once
    /// that element is collected.
    pub origin: Origin,
    /// Stamp of the insert; orders concurrent inserts at one place.
    pub stamp: Stamp,
    pub value: Blob,
    pub value_stamp: Stamp,
    /// Dot of the effect that removed it; removed elements stay as position markers.
    pub removed: Option<Dot>,
}

impl Elem {
    /// The key this element is ordered by against a concurrent insert at the same place: its
    /// own stamp, or the key inherited from its collected origin.
    pub fn order_key(&self) -> Stamp {
        match &self.origin {
            Origin::Collected(c) => c.key,
            _ => self.stamp,
        }
    }
}

/// List: a replicated growable array (RGA).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ListValue {
    pub elems: VecDeque<Elem>,
    pub visible: usize,
}

impl ListValue {
    /// Position of an element; searched from both ends at once, so pushes and pops at either
    /// end cost O(1).
    fn position_of(&self, id: ElemId) -> Option<usize> {
        let n = self.elems.len();
        for k in 0..n.div_ceil(2) {
            if self.elems[n - 1 - k].id == id {
                return Some(n - 1 - k);
            }
            if self.elems[k].id == id {
                return Some(k);
            }
        }
        None
    }

    /// Places a new element after `after` (head when `None`), skipping concurrent inserts at
    /// the same place that order before it (a greater [`Elem::order_key`]), so every replica
    /// orders them the same way. The caller guarantees `elem` is not already present (effects
    /// are applied once; a merge checks first).
    pub fn integrate(&mut self, after: Option<ElemId>, mut elem: Elem) {
        let mut pos = match after {
            None => 0,
            Some(a) => match self.position_of(a) {
                Some(p) => p + 1,
                // Unreachable under causal delivery: an element is collected only once every
                // insert that can refer to it is here. Keep the value rather than lose it.
                None => self.elems.len(),
            },
        };
        // The origin is here, so the element orders by its own stamp.
        elem.origin = Origin::from_after(after);
        while pos < self.elems.len() && self.elems[pos].order_key() > elem.stamp {
            pos += 1;
        }
        if elem.removed.is_none() {
            self.visible += 1;
        }
        if pos == 0 {
            self.elems.push_front(elem);
        } else if pos == self.elems.len() {
            self.elems.push_back(elem);
        } else {
            self.elems.insert(pos, elem);
        }
    }

    pub fn remove(&mut self, id: ElemId, by: Dot) -> bool {
        if let Some(pos) = self.position_of(id) {
            let e = &mut self.elems[pos];
            if e.removed.is_none() {
                e.removed = Some(by);
                self.visible -= 1;
                return true;
            }
        }
        false
    }

    pub fn remove_observed(&mut self, observed: &VectorClock, by: Dot) {
        for e in self.elems.iter_mut() {
            if e.removed.is_none() && observed.covers(e.id.dot) {
                e.removed = Some(by);
                self.visible -= 1;
            }
        }
    }

    pub fn set(&mut self, id: ElemId, value: Blob, stamp: Stamp) {
        if let Some(pos) = self.position_of(id) {
            let e = &mut self.elems[pos];
            if stamp > e.value_stamp {
                e.value = value;
                e.value_stamp = stamp;
            }
        }
    }

    /// Drops removed elements whose removal every participant has seen.
    ///
    /// The order of concurrent inserts at one place is decided by comparing stamps along the
    /// list (see [`ListValue::integrate`]): an insert skips every element that orders before it.
    /// A removed element is part of that comparison for the elements inserted after it: they
    /// sit in its subtree and order, against an insert at the collected element's place, by
    /// the collected element's key, not by their own (greater) stamps. Dropping the element
    /// without passing its key on would let a later insert skip those elements on this
    /// replica and stop before them on a replica that has not collected yet, so regions would
    /// keep the same elements in different orders. Every element whose origin is dropped
    /// therefore inherits the dropped element's order key.
    pub fn collect(&mut self, stable: &VectorClock) {
        self.drop_where(|e| matches!(e.removed, Some(d) if stable.covers(d)));
    }

    /// Drops the elements `gone` selects, passing each one's order key on to the elements
    /// inserted right after it (see [`ListValue::collect`]). Returns how many visible
    /// elements were dropped.
    fn drop_where(&mut self, mut gone: impl FnMut(&Elem) -> bool) -> usize {
        let mut keys: HashMap<ElemId, Stamp> = HashMap::new();
        let mut visible_dropped = 0;
        // An element always comes after its origin, so one pass in list order sees every
        // dropped origin before the elements that inherit from it.
        for e in self.elems.iter_mut() {
            if let Some(origin) = e.origin.id() {
                if let Some(key) = keys.get(&origin) {
                    e.origin = Origin::Collected(Box::new(CollectedOrigin {
                        id: origin,
                        key: *key,
                    }));
                }
            }
            if gone(e) {
                keys.insert(e.id, e.order_key());
                if e.removed.is_none() {
                    visible_dropped += 1;
                }
            }
        }
        if !keys.is_empty() {
            self.elems.retain(|e| !keys.contains_key(&e.id));
            self.visible -= visible_dropped;
        }
        visible_dropped
    }

    /// Drops every removed element at the ends (used when there are no other participants).
    pub fn trim_removed_ends(&mut self) {
        while matches!(self.elems.front(), Some(e) if e.removed.is_some()) {
            self.elems.pop_front();
        }
        while matches!(self.elems.back(), Some(e) if e.removed.is_some()) {
            self.elems.pop_back();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// Visible elements in order.
    pub fn iter_visible(&self) -> impl DoubleEndedIterator<Item = &Elem> {
        self.elems.iter().filter(|e| e.removed.is_none())
    }

    /// The visible element at `index` (0-based).
    pub fn nth_visible(&self, index: usize) -> Option<&Elem> {
        if self.visible == self.elems.len() {
            return self.elems.get(index);
        }
        self.iter_visible().nth(index)
    }

    /// Id of the nearest visible element before `id` (`None`: the head).
    ///
    /// New elements are only ever placed after a visible element (or the head): an element
    /// whose removal every participant has seen can then be collected safely, because no
    /// insert that is still on its way can refer to it.
    pub fn predecessor(&self, id: ElemId) -> Option<ElemId> {
        let pos = self.position_of(id)?;
        self.visible_before(pos)
    }

    /// Id of the nearest visible element before position `pos`.
    pub fn visible_before(&self, pos: usize) -> Option<ElemId> {
        self.elems
            .range(..pos.min(self.elems.len()))
            .rev()
            .find(|e| e.removed.is_none())
            .map(|e| e.id)
    }

    /// Id of the last visible element: where RPUSH attaches (see [`ListValue::predecessor`]).
    pub fn last_id(&self) -> Option<ElemId> {
        self.elems
            .iter()
            .rev()
            .find(|e| e.removed.is_none())
            .map(|e| e.id)
    }

    /// State merge. Elements only the other side has are placed first, while every element
    /// this side holds is still here to order them; then the elements the other side has
    /// collected are dropped here too, passing their order keys on as [`ListValue::collect`]
    /// does.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &ListValue, their_ctx: &VectorClock) {
        // Removals and value writes from the other side.
        for theirs in &other.elems {
            if let Some(pos) = self.position_of(theirs.id) {
                let mine = &mut self.elems[pos];
                if mine.removed.is_none() {
                    if let Some(d) = theirs.removed {
                        mine.removed = Some(d);
                        self.visible -= 1;
                    }
                } else if let (Some(a), Some(b)) = (mine.removed, theirs.removed) {
                    mine.removed = Some(a.min(b));
                }
                let mine = &mut self.elems[pos];
                if theirs.value_stamp > mine.value_stamp {
                    mine.value = theirs.value.clone();
                    mine.value_stamp = theirs.value_stamp;
                }
            }
        }
        // Elements only the other side has, replayed as inserts in stamp order (an element's
        // origin always has a smaller stamp, so it is present before the element is placed:
        // this side cannot have collected it, or it would hold every element inserted after it).
        let mut missing: Vec<Elem> = other
            .elems
            .iter()
            .filter(|e| self.position_of(e.id).is_none() && !mine_ctx.covers(e.id.dot))
            .cloned()
            .collect();
        missing.sort_by_key(|e| (e.stamp, e.id));
        for elem in missing {
            let after = elem.origin.id();
            self.integrate(after, elem);
        }
        // Elements the other side removed and collected: covered by its clock but absent there.
        let their_ids: std::collections::HashSet<ElemId> =
            other.elems.iter().map(|e| e.id).collect();
        self.drop_where(|e| !their_ids.contains(&e.id) && their_ctx.covers(e.id.dot));
    }
}

/// The type of a value, as `TYPE` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Str,
    Hash,
    Set,
    ZSet,
    List,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::List => "list",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Str(Counted<Blob>),
    // Collections are boxed so the common string case keeps entries small.
    Hash(Box<HashValue>),
    Set(Box<SetValue>),
    ZSet(Box<ZSetValue>),
    List(Box<ListValue>),
}

impl Value {
    pub fn empty(kind: Kind) -> Value {
        match kind {
            Kind::Str => Value::Str(Counted::default()),
            Kind::Hash => Value::Hash(Box::default()),
            Kind::Set => Value::Set(Box::default()),
            Kind::ZSet => Value::ZSet(Box::default()),
            Kind::List => Value::List(Box::default()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::Str,
            Value::Hash(_) => Kind::Hash,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
            Value::List(_) => Kind::List,
        }
    }

    /// True when nothing in the value is visible (the key reads as absent).
    pub fn is_visibly_empty(&self) -> bool {
        match self {
            Value::Str(c) => c.is_empty(),
            Value::Hash(h) => h.fields.is_empty(),
            Value::Set(s) => s.members.is_empty(),
            Value::ZSet(z) => z.members.is_empty(),
            Value::List(l) => l.visible == 0,
        }
    }

    /// True when the value holds no state at all and can be dropped.
    pub fn is_dead(&self) -> bool {
        match self {
            Value::List(l) => l.is_empty(),
            other => other.is_visibly_empty(),
        }
    }

    /// Cancels every dot the observed clock covers.
    pub fn remove_observed(&mut self, observed: &VectorClock, by: Dot) {
        match self {
            Value::Str(c) => c.remove_observed(observed),
            Value::Hash(h) => {
                h.fields.retain(|_, f| {
                    f.remove_observed(observed);
                    !f.is_empty()
                });
            }
            Value::Set(s) => {
                s.members.retain(|_, dots| {
                    dots.retain(|d| !observed.covers(*d));
                    !dots.is_empty()
                });
            }
            Value::ZSet(z) => {
                let mut gone = Vec::new();
                let mut changed = Vec::new();
                for (m, c) in z.members.iter_mut() {
                    let before = c.score();
                    c.remove_observed(observed);
                    if c.is_empty() {
                        gone.push((Score(before), m.clone()));
                    } else if c.score() != before {
                        changed.push((Score(before), m.clone(), Score(c.score())));
                    }
                }
                for (s, m) in gone {
                    z.order.remove(&(s, m.clone()));
                    z.members.remove(&m);
                }
                for (old, m, new) in changed {
                    z.order.remove(&(old, m.clone()));
                    z.order.insert((new, m));
                }
            }
            Value::List(l) => l.remove_observed(observed, by),
        }
    }

    /// State merge of two values of the same kind.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &Value, their_ctx: &VectorClock) {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a.join(mine_ctx, b, their_ctx),
            (Value::Hash(a), Value::Hash(b)) => {
                join_maps(&mut a.fields, &b.fields, |x, y| {
                    x.join(mine_ctx, y, their_ctx)
                });
                a.fields.retain(|_, f| !f.is_empty());
            }
            (Value::Set(a), Value::Set(b)) => {
                join_maps(&mut a.members, &b.members, |x, y| {
                    let mut mine: Vec<Dot> = x.drain(..).collect();
                    join_dotted(&mut mine, mine_ctx, y, their_ctx, |d| *d);
                    mine.sort();
                    *x = mine.into_iter().collect();
                });
                a.members.retain(|_, d| !d.is_empty());
            }
            (Value::ZSet(a), Value::ZSet(b)) => {
                join_maps(&mut a.members, &b.members, |x, y| {
                    x.join(mine_ctx, y, their_ctx)
                });
                a.members.retain(|_, c| !c.is_empty());
                a.order = a
                    .members
                    .iter()
                    .map(|(m, c)| (Score(c.score()), m.clone()))
                    .collect();
            }
            (Value::List(a), Value::List(b)) => a.join(mine_ctx, b, their_ctx),
            _ => {}
        }
    }
}

/// Joins two maps whose values are dot stores. A key only on the other side is joined against
/// an empty value, which keeps exactly its dots this side has not seen.
fn join_maps<V: Default + Clone, F: FnMut(&mut V, &V)>(
    mine: &mut FastMap<Blob, V>,
    theirs: &FastMap<Blob, V>,
    mut join: F,
) {
    let empty = V::default();
    for (k, v) in theirs {
        let slot = mine.entry(k.clone()).or_default();
        join(slot, v);
    }
    for (k, v) in mine.iter_mut() {
        if !theirs.contains_key(k) {
            join(v, &empty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::clock::ActorId;

    fn id(seq: u64) -> ElemId {
        ElemId {
            dot: Dot {
                actor: ActorId(7),
                seq,
            },
            index: 0,
        }
    }

    #[test]
    fn an_origin_is_no_bigger_than_the_option_it_replaced() {
        assert_eq!(
            std::mem::size_of::<Origin>(),
            std::mem::size_of::<Option<ElemId>>()
        );
    }

    #[test]
    fn origins_written_as_options_still_decode() {
        let head = postcard::to_allocvec(&None::<ElemId>).unwrap();
        let after = postcard::to_allocvec(&Some(id(3))).unwrap();
        assert_eq!(postcard::from_bytes::<Origin>(&head).unwrap(), Origin::Head);
        assert_eq!(
            postcard::from_bytes::<Origin>(&after).unwrap(),
            Origin::After(id(3))
        );
    }

    fn elem(seq: u64, origin: Option<ElemId>, ts: u64, removed: bool) -> Elem {
        Elem {
            id: id(seq),
            origin: Origin::from_after(origin),
            stamp: Stamp {
                ts,
                actor: ActorId(7),
            },
            value: Blob::from(format!("v{seq}").as_bytes()),
            value_stamp: Stamp::default(),
            removed: removed.then_some(Dot {
                actor: ActorId(9),
                seq: 1,
            }),
        }
    }

    #[test]
    fn collecting_an_element_passes_its_order_key_to_the_elements_after_it() {
        // o <- s (removed) <- c, and c <- d.
        let mut l = ListValue::default();
        l.integrate(None, elem(1, None, 10, false));
        l.integrate(Some(id(1)), elem(2, Some(id(1)), 20, true));
        l.integrate(Some(id(2)), elem(3, Some(id(2)), 90, false));
        l.integrate(Some(id(3)), elem(4, Some(id(3)), 95, false));
        let mut stable = VectorClock::new();
        stable.raise(ActorId(9), 1);
        l.collect(&stable);
        let keys: Vec<(u64, u64)> = l
            .elems
            .iter()
            .map(|e| (e.id.dot.seq, e.order_key().ts))
            .collect();
        // c orders by s's stamp now; d, whose origin is still here, by its own.
        assert_eq!(keys, vec![(1, 10), (3, 20), (4, 95)]);
        // An insert after o with a stamp between s's and c's goes before c, as it would
        // before s.
        l.integrate(Some(id(1)), elem(5, Some(id(1)), 50, false));
        let order: Vec<u64> = l.iter_visible().map(|e| e.id.dot.seq).collect();
        assert_eq!(order, vec![1, 5, 3, 4]);
    }
}
