//! shard-node library root.
#![forbid(unsafe_code)]

pub mod acl;
pub mod client_limits;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod crdt;
pub mod glob;
pub mod links;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod repl;
pub mod resp;
pub mod server;
pub mod store;
pub mod transport;
