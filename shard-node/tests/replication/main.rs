//! Integration tests of replication with real processes on loopback: replicas, peer regions,
//! failover, TLS links and convergence under faults. One module per former test file, all
//! linked into one test binary.

#[path = "../common/mod.rs"]
mod common;
#[path = "../replication_support/mod.rs"]
mod replication_support;

mod blocking_across_regions;
mod eviction_across_regions;
mod full_copy_durability;
mod list_convergence_processes;
mod oversized_writes;
mod replication_basics;
mod replication_catchup;
mod replication_convergence;
mod replication_failover;
mod replication_semantics;
mod replication_tls;
mod split_brain;
mod streams_across_regions;
