//! What [`decide`](super::decide) returns: the actions to execute, or why it holds.

/// Something the executor must do to a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// No pod is labeled primary (new shard, or label lost): label this one primary; it is
    /// already a primary or must be promoted.
    Elect {
        /// Pod to label primary.
        pod: String,
        /// Whether to send `REPLICAOF NO ONE` first.
        promote: bool,
    },
    /// Primary failed: promote `to` (REPLICAOF NO ONE), move the label from `from` to `to`.
    Promote {
        /// The failed primary.
        from: String,
        /// The pod that becomes primary.
        to: String,
        /// Why, for events and logs.
        reason: String,
    },
    /// `pod` must follow `primary_address` (REPLICAOF host port): a replica following the
    /// wrong/old primary, a restarted node that came up as a primary, or an old primary that
    /// returned (demotion).
    Follow {
        /// Pod to re-point.
        pod: String,
        /// "host:port" of the primary it must follow (while a live failed primary is drained:
        /// of the candidate about to be promoted).
        primary_address: String,
        /// Whether it answered as a primary (this demotes it).
        demote: bool,
    },
}

impl Action {
    /// The pod the action changes.
    pub fn pod(&self) -> &str {
        match self {
            Action::Elect { pod, .. } | Action::Follow { pod, .. } => pod,
            Action::Promote { to, .. } => to,
        }
    }
}

/// What to do about a shard now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Actions, in execution order.
    pub actions: Vec<Action>,
    /// Why nothing (more) was done although something is wrong, e.g. "primary db-east-0-0
    /// unreachable for 400ms (< 1s)", "no healthy replica to promote", "operator cannot reach
    /// primary but its replicas' links are up". Shown in status/events.
    pub holding: Option<String>,
    /// Whether the shard is fully healthy (labeled primary answering as primary, every replica
    /// following it with link up).
    pub healthy: bool,
}

impl Decision {
    pub(super) fn hold(message: String) -> Self {
        Decision {
            actions: Vec::new(),
            holding: Some(message),
            healthy: false,
        }
    }
}
