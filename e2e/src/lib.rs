//! End-to-end support: a real local Kubernetes control plane started as processes, a node agent
//! that runs pods as local processes, and the scenarios that use them.
//!
//! Contract: the control plane listens on 127.0.0.0/8, and with pod networking also on the
//! private host address of the pod network ([`net`]); pods use private ranges inside network
//! namespaces the harness makes, never another address. The upstream binaries come from
//! `make k8s-bins` (`target/k8s/bin/`); [`LocalCluster`] fails with a message naming that
//! command when they are missing.
#![forbid(unsafe_code)]

pub mod agent;
pub mod bins;
pub mod certs;
pub mod cluster;
pub mod disks;
mod error;
pub mod fleet;
/// The HTTP client of probes and tests: one request with a deadline.
pub use aadb_http::client as http;
pub mod net;
pub mod process;
pub mod testapp;

pub use agent::{ImageTable, NodeAgent};
pub use cluster::{Addressing, ClusterSpec, LocalCluster};
pub use error::{Error, Result};

/// Whether the kubelet reports `pod` Ready (its `Ready` condition is `True`).
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
