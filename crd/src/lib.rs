//! API types of the `ActiveActiveDatabase` custom resource (group `aadb.dev`, `v1alpha1`).
//!
//! Contract: pure data types, validation and defaulting only; no client code. The types are
//! filled in together with the operator; until then this crate is intentionally empty.
#![forbid(unsafe_code)]
