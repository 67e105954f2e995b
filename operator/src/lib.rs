//! The aadb operator: reconciles `ActiveActiveDatabase` objects into every participating cluster.
//!
//! Contract: depends on `aadb-crd` only for API types; talks to shard-nodes over RESP, never by
//! linking them. The reconciler is built on top of the shard-node and its replication.
#![forbid(unsafe_code)]
