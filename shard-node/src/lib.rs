//! shard-node library root.
#![forbid(unsafe_code)]

pub mod acl;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod crdt;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod repl;
pub mod resp;
pub mod store;
