//! The CRDT data model: clocks, effects, value types, the keyspace and causal delivery.
//!
//! Contract: the rules of `docs/semantics.md` are implemented here and nowhere else. Commands
//! read the keyspace and describe writes as operations; the keyspace turns them into effects.

pub mod clock;
pub mod effect;
pub mod keyspace;
pub mod replica;
pub mod types;
pub mod value;

pub use clock::{Actor, ActorId, Dot, Hlc, Stamp, VectorClock};
pub use effect::{Delta, Effect, ElemId, Op, OpKind};
pub use keyspace::{Entry, Keyspace, Slot, Visible, WrongType, NEW_SLOT};
pub use value::{Blob, Kind, Num, Value};

/// Renders a float the way counters print it: the shortest text that reads back as the same
/// number, never in exponent form.
pub fn render_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let text = format!("{f}");
    text
}
