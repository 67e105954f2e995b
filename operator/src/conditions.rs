//! Standard `metav1.Condition`s of a database's status. Pure.
//!
//! Contract: [`upsert`] sets a condition's status, reason, message and observed generation and
//! moves `lastTransitionTime` only when the status changes, so a condition that stays the same
//! across reconciles keeps the time it became so. Reasons are CamelCase words; messages are
//! sentences.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Every shard of every managed region has a ready primary and all its replicas, and every
/// link is up.
pub const READY: &str = "Ready";
/// The operator is creating or changing objects.
pub const RECONCILING: &str = "Reconciling";
/// Something is down (a pod, a link, a failover held back).
pub const DEGRADED: &str = "Degraded";
/// Replicas follow their primaries and every cross-region link is connected.
pub const REPLICATION_HEALTHY: &str = "ReplicationHealthy";
/// The spec passed validation.
pub const SPEC_VALID: &str = "SpecValid";
/// No object the operator would create exists already as someone else's (`False`, reason
/// `ObjectConflict`, names the objects it left alone).
pub const OBJECTS_OWNED: &str = "ObjectsOwned";

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    /// The operator cannot tell (for example, a region it could not reach).
    Unknown,
}

impl Truth {
    /// The word Kubernetes uses.
    pub fn word(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Truth {
    fn from(b: bool) -> Self {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
}

/// Sets condition `kind` in `conditions`.
pub fn upsert(
    conditions: &mut Vec<Condition>,
    kind: &str,
    status: impl Into<Truth>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status_word = status.into().word();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == kind) {
        if c.status != status_word {
            c.last_transition_time = now.clone();
        }
        c.status = status_word.into();
        c.reason = reason.into();
        c.message = message.into();
        c.observed_generation = generation;
        return;
    }
    conditions.push(Condition {
        type_: kind.into(),
        status: status_word.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    });
}

/// Whether condition `kind` is `True`.
pub fn is_true(conditions: &[Condition], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid time"))
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        upsert(
            &mut c,
            READY,
            false,
            "Provisioning",
            "waiting",
            Some(1),
            &at(10),
        );
        upsert(
            &mut c,
            READY,
            false,
            "Provisioning",
            "still waiting",
            Some(1),
            &at(20),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, at(10));
        assert_eq!(c[0].message, "still waiting");
        upsert(
            &mut c,
            READY,
            true,
            "AllShardsReady",
            "ok",
            Some(2),
            &at(30),
        );
        assert_eq!(c[0].last_transition_time, at(30));
        assert!(is_true(&c, READY));
        assert!(!is_true(&c, DEGRADED));
    }
}
