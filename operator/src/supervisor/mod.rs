//! The per-database supervisor: probes every shard-node, fails primaries over, keeps replicas
//! and cross-region links wired, and publishes what it saw.
//!
//! Contract:
//! - one task per database, started by the reconciler and given each new plan with
//!   [`Supervisor::update`]; it ticks every `detection_timeout / probes`;
//! - each tick, for every participant this operator manages: lists the database's pods and
//!   StatefulSets and the cluster's nodes, probes every pod with an address (concurrently),
//!   feeds [`crate::failover::HealthTracker`], asks [`crate::failover::decide`] per shard and
//!   executes its actions: `REPLICAOF NO ONE` on the pod to promote, then the `aadb.dev/role`
//!   labels (the Services follow them), then `REPLICAOF` for pods that must follow;
//! - every shard primary that answers as a primary gets `AA.PEER SET` for the same shard in
//!   every other participant, at the address read from that participant's primary Service
//!   (LoadBalancer ingress, a node address and NodePort, or the explicit endpoint host), and
//!   `AA.PEER DEL` for links to regions no longer in the spec;
//! - the result of each tick is published as an [`Observation`] (per-shard status, readiness,
//!   link states, held failovers, errors), which the reconciler turns into the object's status;
//! - rolls: the StatefulSets use the `OnDelete` strategy and the supervisor replaces the pods
//!   that do not run their StatefulSet's latest revision, one pod of a shard at a time and
//!   only while nothing else is being done about the shard: replicas first (a broken one at
//!   once, a healthy one only when the whole shard is healthy), then the primary, which first
//!   hands over to an in-sync replica (a planned switchover,
//!   [`ShardView::retiring`](crate::failover::ShardView::retiring)) and is replaced once it
//!   follows the new primary; a shard without replicas has its only pod replaced directly;
//! - scaling down: while the primary's ordinal is beyond the pods the plan keeps (the
//!   reconciler then holds the StatefulSet at that size), it hands over the same way once the
//!   shard is healthy;
//! - failovers and demotions are recorded as Events on the database object and in metrics;
//! - nothing here panics on what the API or a node returns; an unreachable cluster or node
//!   is an error in the observation, retried next tick.
//!
//! Source layout: this file holds the public types. `tick` is the task: its state between
//! ticks, one tick over every participant, and per shard the steps observe → decide → execute
//! (then the links, the status and a roll step); the steps share a `ShardTick`. `observe` turns
//! Pods, Nodes, StatefulSets and probe answers into [`PodView`](crate::failover::PodView)s and
//! into the published status (no I/O); `execute` carries out a decision's actions (election,
//! promotion or switchover hand-over, following and demotion) and the role labels; `roll`
//! replaces outdated pods and starts the switchovers of rolls and scale-downs; `peers` reads
//! the addresses other regions use and wires the links between regions.

mod execute;
mod observe;
mod peers;
mod roll;
mod tick;
mod topology;

use std::sync::Arc;

use aadb_crd::ParticipantStatus;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Recorder;
use tokio::sync::watch;

use crate::clusters::ClusterClients;
use crate::failover::FailoverSettings;
use crate::plan::Topology;

pub use peers::link_connected;

/// What a supervisor needs to know about its database.
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    /// The plan.
    pub topology: Topology,
    /// Failover settings.
    pub settings: FailoverSettings,
    /// How the operator authenticates to the shard-nodes and proxies (the internal user).
    pub password: Option<crate::node_client::Credentials>,
    /// With TLS, the CA (PEM) the nodes' and proxies' certificates chain to: the operator
    /// reaches them over TLS.
    pub tls_ca: Option<String>,
    /// The database object, for Events.
    pub reference: ObjectReference,
}

/// What one tick saw.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// Per-participant status, in plan order.
    pub participants: Vec<ParticipantStatus>,
    /// Shards (over managed regions) whose primary and replicas are all up and wired.
    pub ready_shards: u32,
    /// Shards over managed regions.
    pub total_shards: u32,
    /// Every replica follows its primary and every cross-region link is connected.
    pub replication_healthy: bool,
    /// Regions whose proxies are not all ready or lag behind the topology, one sentence each.
    pub proxies_not_ready: Vec<String>,
    /// Cross-region links that are not connected, as `region/shard -> region: state`.
    pub links_down: Vec<String>,
    /// Failovers held back, with the reason.
    pub holding: Vec<String>,
    /// Problems reaching clusters or nodes.
    pub errors: Vec<String>,
    /// Failovers performed by this supervisor.
    pub failovers: u64,
    /// Ticks completed (0: nothing observed yet).
    pub ticks: u64,
    /// The plan this observation was made with (`None` before the first tick): a status
    /// written for a newer plan must not take it as that plan's state.
    pub topology: Option<Topology>,
}

/// Handle of a running supervisor.
pub struct Supervisor {
    spec: watch::Sender<Arc<SupervisorSpec>>,
    observed: watch::Receiver<Arc<Observation>>,
    task: tokio::task::JoinHandle<()>,
}

/// Callback for failovers: (database, participant, shard, seconds from failure to promotion).
pub type FailoverHook = Arc<dyn Fn(&str, &str, u32, f64) + Send + Sync>;

impl Supervisor {
    /// Starts supervising.
    pub fn start(
        spec: SupervisorSpec,
        clusters: ClusterClients,
        recorder: Recorder,
        on_failover: FailoverHook,
    ) -> Self {
        let (spec_tx, spec_rx) = watch::channel(Arc::new(spec));
        let (obs_tx, obs_rx) = watch::channel(Arc::new(Observation::default()));
        let task = tokio::spawn(tick::run(spec_rx, obs_tx, clusters, recorder, on_failover));
        Supervisor {
            spec: spec_tx,
            observed: obs_rx,
            task,
        }
    }

    /// Gives the supervisor a new plan.
    pub fn update(&self, spec: SupervisorSpec) {
        self.spec.send_replace(Arc::new(spec));
    }

    /// The latest observation.
    pub fn observed(&self) -> Arc<Observation> {
        self.observed.borrow().clone()
    }

    /// A receiver of observations (to wait for the next tick).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Observation>> {
        self.observed.clone()
    }

    /// Stops the task.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
