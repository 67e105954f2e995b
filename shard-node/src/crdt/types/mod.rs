//! The replicated value types (dot stores) of one key, one module per type, and the [`Value`]
//! that holds one of them.
//!
//! Contract: every piece of state that an observed-remove can cancel is tagged with the dot of
//! the effect that wrote it. A remove carries the remover's observed clock and cancels exactly
//! the dots that clock covers, so writes the remover had not seen survive (add/update wins).
//! Each type has `apply`-style mutators used by the keyspace and a `join` used for full state
//! merge, where a dot present on one side only survives unless the other side's clock covers it
//! (then the other side removed it). Reads never mutate.
//!
//! - [`register`]: the register with counter increments of strings, hash fields and scores;
//! - [`hash`]: an observed-remove map of fields to registers;
//! - [`set`]: an observed-remove set, adds win;
//! - [`zset`]: observed-remove membership with register scores, plus an order index;
//! - [`list`]: a replicated growable array (RGA);
//! - [`stream`]: entries by ID, plus the consumer groups of this node's region;
//! - [`hll`]: HyperLogLog registers merged by maximum, deletes win.

pub mod hash;
pub mod hll;
pub mod list;
pub mod register;
pub mod set;
pub mod stream;
pub mod zset;

pub use hash::HashValue;
pub use hll::HllValue;
pub use list::{CollectedOrigin, Elem, ListValue, Origin};
pub use register::{parse_num, Counted, Num};
pub use set::SetValue;
pub use stream::{GroupChange, StreamId, StreamValue};
pub use zset::{Score, ZSetValue};

use crate::crdt::clock::{Dot, VectorClock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Owned bytes as stored in the keyspace (never a view into a network buffer).
pub type Blob = Box<[u8]>;

pub type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Joins two dot stores: keeps the entries of `mine` that `theirs` also has or that
/// `their_ctx` has not seen, and adds the entries of `theirs` that `mine` lacks and `mine_ctx`
/// has not seen.
///
/// One effect may leave several entries under one dot (entries are removed by dot, so they
/// are present or absent together). A dot only the other side holds brings all its entries.
pub(crate) fn join_dotted<T: Clone, F: Fn(&T) -> Dot>(
    mine: &mut Vec<T>,
    mine_ctx: &VectorClock,
    theirs: &[T],
    their_ctx: &VectorClock,
    dot: F,
) {
    let their_dots: Vec<Dot> = theirs.iter().map(&dot).collect();
    let my_dots: Vec<Dot> = mine.iter().map(&dot).collect();
    mine.retain(|e| their_dots.contains(&dot(e)) || !their_ctx.covers(dot(e)));
    for e in theirs {
        let d = dot(e);
        if !my_dots.contains(&d) && !mine_ctx.covers(d) {
            mine.push(e.clone());
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

/// The type of a value, as `TYPE` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Str,
    Hash,
    Set,
    ZSet,
    List,
    Stream,
    /// A HyperLogLog: a string for `TYPE`, as in Redis.
    Hll,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::List => "list",
            Kind::Stream => "stream",
            Kind::Hll => "string",
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
    Stream(Box<StreamValue>),
    Hll(Box<HllValue>),
}

impl Value {
    pub fn empty(kind: Kind) -> Value {
        match kind {
            Kind::Str => Value::Str(Counted::default()),
            Kind::Hash => Value::Hash(Box::default()),
            Kind::Set => Value::Set(Box::default()),
            Kind::ZSet => Value::ZSet(Box::default()),
            Kind::List => Value::List(Box::default()),
            Kind::Stream => Value::Stream(Box::default()),
            Kind::Hll => Value::Hll(Box::default()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::Str,
            Value::Hash(_) => Kind::Hash,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
            Value::List(_) => Kind::List,
            Value::Stream(_) => Kind::Stream,
            Value::Hll(_) => Kind::Hll,
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
            Value::Stream(x) => !x.exists(),
            Value::Hll(h) => !h.exists(),
        }
    }

    /// True when the value holds no state at all and can be dropped.
    pub fn is_dead(&self) -> bool {
        match self {
            Value::List(l) => l.is_empty(),
            Value::Hll(h) => !h.exists() && h.deletes.is_empty(),
            other => other.is_visibly_empty(),
        }
    }

    /// Cancels every dot the observed clock covers.
    pub fn remove_observed(&mut self, observed: &VectorClock, by: Dot) {
        match self {
            Value::Str(c) => c.remove_observed(observed),
            Value::Hash(h) => h.remove_observed(observed),
            Value::Set(s) => s.remove_observed(observed),
            Value::ZSet(z) => z.remove_observed(observed),
            Value::List(l) => l.remove_observed(observed, by),
            Value::Stream(x) => x.remove_observed(observed),
            Value::Hll(h) => h.delete(observed, by),
        }
    }

    /// State merge of two values of the same kind.
    pub fn join(&mut self, mine_ctx: &VectorClock, other: &Value, their_ctx: &VectorClock) {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a.join(mine_ctx, b, their_ctx),
            (Value::Hash(a), Value::Hash(b)) => a.join(mine_ctx, b, their_ctx),
            (Value::Set(a), Value::Set(b)) => a.join(mine_ctx, b, their_ctx),
            (Value::ZSet(a), Value::ZSet(b)) => a.join(mine_ctx, b, their_ctx),
            (Value::List(a), Value::List(b)) => a.join(mine_ctx, b, their_ctx),
            (Value::Stream(a), Value::Stream(b)) => a.join(mine_ctx, b, their_ctx),
            (Value::Hll(a), Value::Hll(b)) => a.join(mine_ctx, b, their_ctx),
            _ => {}
        }
    }
}

/// Shared by the type modules' tests: hand-built states and the three join laws.
#[cfg(test)]
pub(crate) mod laws {
    use crate::crdt::clock::{ActorId, Dot, VectorClock};
    use std::fmt::Debug;

    pub fn dot(actor: u64, seq: u64) -> Dot {
        Dot {
            actor: ActorId(actor),
            seq,
        }
    }

    /// A clock from `(actor, seq)` entries.
    pub fn clock(entries: &[(u64, u64)]) -> VectorClock {
        let mut c = VectorClock::new();
        for (a, s) in entries {
            c.raise(ActorId(*a), *s);
        }
        c
    }

    /// A replica's state of one value: the value and the clock of what that replica has seen.
    pub type State<V> = (V, VectorClock);

    /// `a ⊔ b`: the value joined as the type's `join` does it, and the union of the clocks.
    pub fn merged<V: Clone>(
        a: &State<V>,
        b: &State<V>,
        join: impl Fn(&mut V, &VectorClock, &V, &VectorClock),
    ) -> State<V> {
        let mut value = a.0.clone();
        join(&mut value, &a.1, &b.0, &b.1);
        let mut ctx = a.1.clone();
        ctx.join(&b.1);
        (value, ctx)
    }

    /// Commutativity, associativity and idempotence of `join` over `states`.
    pub fn assert_join_laws<V: Clone + PartialEq + Debug>(
        states: &[State<V>],
        join: impl Fn(&mut V, &VectorClock, &V, &VectorClock) + Copy,
    ) {
        assert_commutative(states, join);
        assert_associative(states, join);
        assert_idempotent(states, join);
    }

    /// `a ⊔ b == b ⊔ a` for every pair of `states`.
    pub fn assert_commutative<V: Clone + PartialEq + Debug>(
        states: &[State<V>],
        join: impl Fn(&mut V, &VectorClock, &V, &VectorClock) + Copy,
    ) {
        for (i, a) in states.iter().enumerate() {
            for (j, b) in states.iter().enumerate() {
                assert_eq!(merged(a, b, join), merged(b, a, join), "states {i} and {j}");
            }
        }
    }

    /// `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)` for every triple of `states`.
    pub fn assert_associative<V: Clone + PartialEq + Debug>(
        states: &[State<V>],
        join: impl Fn(&mut V, &VectorClock, &V, &VectorClock) + Copy,
    ) {
        for (i, a) in states.iter().enumerate() {
            for (j, b) in states.iter().enumerate() {
                for (k, c) in states.iter().enumerate() {
                    assert_eq!(
                        merged(&merged(a, b, join), c, join),
                        merged(a, &merged(b, c, join), join),
                        "states {i}, {j} and {k}"
                    );
                }
            }
        }
    }

    /// `a ⊔ a == a` for every state, and `(a ⊔ b) ⊔ b == a ⊔ b` for every pair.
    ///
    /// Structural equality: the states must be in the canonical form a join leaves (entries
    /// in dot order, no empty fields or members).
    pub fn assert_idempotent<V: Clone + PartialEq + Debug>(
        states: &[State<V>],
        join: impl Fn(&mut V, &VectorClock, &V, &VectorClock) + Copy,
    ) {
        for (i, a) in states.iter().enumerate() {
            assert_eq!(&merged(a, a, join), a, "state {i}");
            for (j, b) in states.iter().enumerate() {
                let ab = merged(a, b, join);
                assert_eq!(merged(&ab, b, join), ab, "states {i} and {j}");
            }
        }
    }
}
