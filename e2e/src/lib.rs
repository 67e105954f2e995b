//! End-to-end support: a real local Kubernetes control plane started as processes, a node agent
//! that runs pods as local processes, and the scenarios that use them.
//!
//! Contract: everything listens on 127.0.0.0/8 only. Filled in with the control-plane work.
#![forbid(unsafe_code)]
