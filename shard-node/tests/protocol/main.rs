//! Integration tests of commands, replies and clients on one node or on in-memory regions: one
//! module per former test file, all linked into one test binary.

#[path = "../common/mod.rs"]
mod common;

mod acl;
mod bad_input;
mod blocking;
mod cluster_mode;
mod command_table;
mod crdt_laws;
mod differential;
mod eviction;
mod job_queues;
mod list_convergence;
mod proxy;
mod real_clients;
mod redis_cli_interactive;
mod resp_fuzz;
mod scripting;
mod semantics;
mod server_features;
mod streams;
