//! List: a replicated growable array (RGA), a sequence CRDT.
//!
//! Conflict rule: every element has an id (the inserting effect's dot plus the index of the
//! insert within that effect), an origin (the element it was inserted right after, or the
//! head), the stamp of the insert, and a last-writer-wins value with its own stamp (`LSET`:
//! the greater stamp wins). Applying an insert places the element right after its origin, then
//! moves it past every following element whose order key is greater than the new element's
//! stamp, so concurrent inserts at one place come out in one order on every node, the one with
//! the greater stamp first. An element's order key is its own stamp, unless its origin has been
//! collected on this node: then it inherits the collected element's order key. Removals cancel
//! the elements they select (by id, or the elements a `DEL` observed); removed elements stay
//! as tombstones, so an insert made next to one still finds its place, until every
//! participant has seen the removal and they are collected.
//!
//! Join: removals and `LSET` values are merged; then elements only the other side has are
//! inserted after their origins in stamp order, while every element this side holds is still
//! there to order them; last, the elements the other side removed and collected are dropped
//! here too, passing their order keys on as a collection does.

use super::Blob;
use crate::crdt::clock::{Dot, Stamp, VectorClock};
use crate::crdt::effect::ElemId;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

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

    /// Inserts the new element `id` holding `value`, written at `stamp`, right after `after`.
    pub fn apply_insert(&mut self, after: Option<ElemId>, id: ElemId, stamp: Stamp, value: &[u8]) {
        self.integrate(
            after,
            Elem {
                id,
                origin: Origin::from_after(after),
                stamp,
                value: Blob::from(value),
                value_stamp: stamp,
                removed: None,
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::clock::ActorId;
    use crate::crdt::types::laws::{assert_join_laws, clock, dot, merged, State};

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

    /// Id of the `index`-th insert of effect `(actor, seq)`.
    fn eid(actor: u64, seq: u64, index: u32) -> ElemId {
        ElemId {
            dot: dot(actor, seq),
            index,
        }
    }

    /// Inserts `value` after `after` as the keyspace does: the value stamp is the insert's.
    fn insert(l: &mut ListValue, after: Option<ElemId>, id: ElemId, ts: u64, value: &str) {
        let stamp = Stamp {
            ts,
            actor: id.dot.actor,
        };
        l.integrate(
            after,
            Elem {
                id,
                origin: Origin::from_after(after),
                stamp,
                value: Blob::from(value.as_bytes()),
                value_stamp: stamp,
                removed: None,
            },
        );
    }

    fn join(a: &mut ListValue, ac: &VectorClock, b: &ListValue, bc: &VectorClock) {
        a.join(ac, b, bc)
    }

    fn values(l: &ListValue) -> Vec<&[u8]> {
        l.iter_visible().map(|e| &e.value[..]).collect()
    }

    /// `[a, b, c]`, pushed by 1 in one effect.
    fn abc() -> ListValue {
        let mut l = ListValue::default();
        insert(&mut l, None, eid(1, 1, 0), 10, "a");
        insert(&mut l, Some(eid(1, 1, 0)), eid(1, 1, 1), 10, "b");
        insert(&mut l, Some(eid(1, 1, 1)), eid(1, 1, 2), 10, "c");
        l
    }

    /// Replicas' views of one list, nothing collected: concurrent pops of one element,
    /// concurrent inserts at one place and concurrent `LSET`s of one element.
    fn states() -> Vec<State<ListValue>> {
        let a = eid(1, 1, 0);
        let b = eid(1, 1, 1);
        let c = eid(1, 1, 2);
        // 2, after 1: LPOP L.
        let mut popped = abc();
        assert!(popped.remove(a, dot(2, 1)));
        // 3, after 1: LINSERT L AFTER a z.
        let mut z = abc();
        insert(&mut z, Some(a), eid(3, 1, 0), 20, "z");
        // 4, after 1: LINSERT L AFTER a w; LSET L 2 q; LPOP L.
        let mut w = abc();
        insert(&mut w, Some(a), eid(4, 1, 0), 25, "w");
        w.set(
            b,
            Blob::from(&b"q"[..]),
            Stamp {
                ts: 26,
                actor: ActorId(4),
            },
        );
        assert!(w.remove(a, dot(4, 3)));
        // 5, after 1 and 2: LSET L 0 r; RPUSH L e.
        let mut e = popped.clone();
        e.set(
            b,
            Blob::from(&b"r"[..]),
            Stamp {
                ts: 22,
                actor: ActorId(5),
            },
        );
        insert(&mut e, Some(c), eid(5, 2, 0), 28, "e");
        vec![
            (ListValue::default(), clock(&[])),
            (abc(), clock(&[(1, 1)])),
            (popped, clock(&[(1, 1), (2, 1)])),
            (z, clock(&[(1, 1), (3, 1)])),
            (w, clock(&[(1, 1), (4, 3)])),
            (e, clock(&[(1, 1), (2, 1), (5, 2)])),
        ]
    }

    /// Replicas' views of one list after every participant has seen 2's pop of `a`: some
    /// have collected `a`, some not, and 5 appended after that.
    fn collected_states() -> Vec<State<ListValue>> {
        let mut popped = abc();
        assert!(popped.remove(eid(1, 1, 0), dot(2, 1)));
        let mut collected = popped.clone();
        collected.collect(&clock(&[(2, 1)]));
        let mut e = popped.clone();
        insert(&mut e, Some(eid(1, 1, 2)), eid(5, 1, 0), 30, "e");
        let mut e_collected = e.clone();
        e_collected.collect(&clock(&[(2, 1)]));
        vec![
            (popped, clock(&[(1, 1), (2, 1)])),
            (collected, clock(&[(1, 1), (2, 1)])),
            (e, clock(&[(1, 1), (2, 1), (5, 1)])),
            (e_collected, clock(&[(1, 1), (2, 1), (5, 1)])),
        ]
    }

    #[test]
    fn join_is_commutative_associative_and_idempotent() {
        assert_join_laws(&states(), join);
        assert_join_laws(&collected_states(), join);
    }

    #[test]
    fn joined_replicas_agree_on_inserts_pops_and_sets() {
        let all = states();
        let mut total = all[0].clone();
        for s in &all[1..] {
            total = merged(&total, s, join);
        }
        // w has the greater stamp of the two inserts after a, so it goes first; 4's LSET of b
        // has the greater stamp; a was popped twice, and keeps the smaller removing dot.
        assert_eq!(values(&total.0), vec![&b"w"[..], b"z", b"q", b"c", b"e"]);
        assert_eq!(total.0.elems[0].removed, Some(dot(2, 1)));
        assert_eq!(total.0.visible, 5);
    }
}
