//! What the operator observes of a shard: its pods as Kubernetes and the probes see them.

use std::time::Instant;

/// What one probe of a shard-node returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The node answered.
    Answered(NodeReport),
    /// Connection refused, timeout, protocol error...
    Failed(String),
}

/// What a shard-node says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// Its replication role.
    pub role: ReportedRole,
    /// replication offset the node reports (master_repl_offset for a primary, its processed
    /// offset for a replica)
    pub offset: i64,
    /// the generation of the shard's actor the node runs (raised by each promotion); 0 if
    /// unknown
    pub generation: u64,
    /// Why the node cannot write its log (a full disk, an I/O error), while it cannot: it
    /// refuses writes until a retry succeeds (`aadb_persistence_error` of INFO persistence)
    pub log_failure: Option<String>,
    /// A primary that restarted with data and refuses writes until it is told its role
    /// (`aadb_write_hold:1` of INFO replication)
    pub write_held: bool,
    /// How much of the shard's history the node holds: the sum of its vector clock's entries
    /// (`crdt_vector_clock` of INFO crdt). Unlike offsets it survives restarts: a node started
    /// on an empty volume has 0.
    pub coverage: u64,
}

impl NodeReport {
    /// Whether the node is a primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.role, ReportedRole::Primary)
    }

    /// Whether the node is a replica of `address` (link up or not).
    pub fn follows(&self, address: &str) -> bool {
        matches!(&self.role, ReportedRole::Replica { primary, .. } if primary == address)
    }

    /// Whether the node is a replica of `address` with its link up.
    pub fn linked_to(&self, address: &str) -> bool {
        matches!(&self.role, ReportedRole::Replica { primary, link_up: true } if primary == address)
    }
}

/// Replication role a node reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportedRole {
    /// Takes writes.
    Primary,
    /// `primary` is "host:port" it follows; link_up = master_link_status:up
    Replica {
        /// The address it follows.
        primary: String,
        /// Whether its link to that address is up.
        link_up: bool,
    },
}

/// Kubernetes' view plus the probe history of one pod of a shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// pod name, e.g. "db-east-0-1"
    pub pod: String,
    /// StatefulSet ordinal
    pub ordinal: u32,
    /// "podIP:6379" once the pod has an IP
    pub address: Option<String>,
    /// carries aadb.dev/role=primary
    pub labeled_primary: bool,
    /// kubelet's Ready condition
    pub pod_ready: bool,
    /// deletionTimestamp set
    pub terminating: bool,
    /// its node's Ready condition (true if unknown)
    pub node_ready: bool,
    /// when pod_ready (or node_ready) last became false, None if ready
    pub not_ready_since: Option<Instant>,
    /// latest probe
    pub last: Option<ProbeOutcome>,
    /// consecutive failed probes
    pub failed_probes: u32,
    /// first failure of the current failing streak
    pub failing_since: Option<Instant>,
    /// When its shard-node container was last seen dead or restarted (its process exited);
    /// filled by [`HealthTracker::annotate`](super::HealthTracker::annotate)
    pub crashed_at: Option<Instant>,
    /// Why the scheduler cannot place the pod, with the fix, while it cannot (its
    /// `PodScheduled` condition is False)
    pub unschedulable: Option<String>,
    /// Since when its answers have reported a log failure, while they do; filled by
    /// [`HealthTracker::annotate`](super::HealthTracker::annotate)
    pub log_failing_since: Option<Instant>,
}

impl PodView {
    /// The latest report, if the latest probe answered and no probe failed since.
    pub fn report(&self) -> Option<&NodeReport> {
        match &self.last {
            Some(ProbeOutcome::Answered(report)) if self.failed_probes == 0 => Some(report),
            _ => None,
        }
    }

    /// Ready, not terminating, on a Ready node: Kubernetes routes to it.
    pub fn serving(&self) -> bool {
        self.pod_ready && self.node_ready && !self.terminating
    }

    /// The latest report if it says primary.
    pub(super) fn primary_report(&self) -> Option<&NodeReport> {
        self.report().filter(|r| r.is_primary())
    }

    /// Why the pod is not serving, for messages.
    pub(super) fn not_serving_reason(&self) -> &'static str {
        if self.terminating {
            "terminating"
        } else if !self.node_ready {
            "on a node that is not Ready"
        } else {
            "not Ready"
        }
    }

    /// Why the node cannot write its log, when its latest answer says it cannot.
    pub(super) fn log_failure(&self) -> Option<&str> {
        self.report().and_then(|r| r.log_failure.as_deref())
    }

    /// Why the pod does not answer, for messages.
    pub(super) fn silence_reason(&self) -> String {
        match &self.last {
            Some(ProbeOutcome::Failed(error)) => {
                format!("{} failed probes: {error}", self.failed_probes)
            }
            _ if self.failed_probes > 0 => format!("{} failed probes", self.failed_probes),
            _ => "not probed yet".to_string(),
        }
    }
}

/// One shard of one participant, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardView {
    /// Shard index.
    pub shard: u32,
    /// Its pods (those that exist).
    pub pods: Vec<PodView>,
    /// When the operator last promoted a replica of this shard.
    pub last_failover: Option<Instant>,
    /// A planned switchover: the pod the operator is about to replace (a roll or a
    /// scale-down). When it is the labeled primary and still serving, the shard hands over to a
    /// replica first.
    pub retiring: Option<String>,
}
