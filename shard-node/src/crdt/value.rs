//! The replicated value types, under the paths they have always had: each type now lives in
//! its own module under [`super::types`], which also documents each type's conflict rule.

pub use super::types::hash::HashValue;
pub use super::types::list::{CollectedOrigin, Elem, ListValue, Origin};
pub use super::types::register::{parse_num, Counted, Num};
pub use super::types::set::SetValue;
pub use super::types::zset::{Score, ZSetValue};
pub use super::types::{Blob, FastMap, Kind, Value};

pub(crate) use super::types::join_dotted;
