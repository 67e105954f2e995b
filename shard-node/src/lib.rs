//! shard-node library root.
#![forbid(unsafe_code)]

pub mod crdt;
pub mod store;
pub mod resp;
