//! The aadb operator: turns `ActiveActiveDatabase` objects into shard-node StatefulSets,
//! Services and PodDisruptionBudgets in every participant's cluster, wires replication inside
//! each region and links between regions, fails shard primaries over, and reports status.
//!
//! Pure parts (no I/O, unit-tested): [`validate`], [`plan`], [`objects`], [`failover`],
//! [`conditions`], [`status`] (phase and conditions). Parts that talk to the world: [`clusters`] (API clients per participant),
//! [`node_client`] (RESP commands to shard-nodes), [`supervisor`] (probe loop, failover executor,
//! link wiring), [`controller`] (the reconcile loop:
//! objects, pruning, cleanup, status), [`leader`] (Lease election), [`http`]
//! (`/metrics`, `/healthz`, `/readyz`).

#![forbid(unsafe_code)]

pub mod clusters;
pub mod conditions;
pub mod controller;
pub mod failover;
pub mod http;
pub mod labels;
pub mod leader;
pub mod node_client;
pub mod objects;
pub mod plan;
pub mod status;
pub mod supervisor;
pub mod validate;
