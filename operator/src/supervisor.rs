//! The per-database supervisor: probes every shard-node, fails primaries over, keeps replicas
//! and cross-region links wired, and publishes what it saw.
//!
//! Contract:
//! - one task per database, started by the reconciler and given each new plan with
//!   [`Supervisor::update`]; it ticks every `detection_timeout / probes`;
//! - each tick, for every participant this operator manages: lists the database's pods and the
//!   cluster's nodes, probes every pod with an address (concurrently), feeds
//!   [`crate::failover::HealthTracker`], asks [`crate::failover::decide`] per shard and
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
//!   hands over to an in-sync replica (a planned switchover, [`ShardView::retiring`]) and is
//!   replaced once it follows the new primary; a shard without replicas has its only pod
//!   replaced directly;
//! - scaling down: while the primary's ordinal is beyond the pods the plan keeps (the
//!   reconciler then holds the StatefulSet at that size), it hands over the same way once the
//!   shard is healthy;
//! - failovers and demotions are recorded as Events on the database object and in metrics;
//! - nothing here panics on what the API or a node returns; an unreachable cluster or node
//!   is an error in the observation, retried next tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aadb_crd::{
    EndpointType, NodeStatus, ParticipantStatus, PeerLinkStatus, ShardStatus, SHARD_NODE_PORT,
};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;

use crate::clusters::ClusterClients;
use crate::failover::{
    decide, Action, FailoverSettings, HealthTracker, PodView, ProbeOutcome, ReportedRole, ShardView,
};
use crate::labels;
use crate::plan::{ParticipantPlan, ShardPlan, Topology};
use crate::wiring::{NodeClients, NodeDetail};

/// What a supervisor needs to know about its database.
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    /// The plan.
    pub topology: Topology,
    /// Failover settings.
    pub settings: FailoverSettings,
    /// The shard-nodes' password.
    pub password: Option<String>,
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
        let task = tokio::spawn(run(spec_rx, obs_tx, clusters, recorder, on_failover));
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

struct Loop {
    clusters: ClusterClients,
    recorder: Recorder,
    nodes: NodeClients,
    trackers: HashMap<(String, u32), HealthTracker>,
    last_failover: HashMap<(String, u32), Instant>,
    last_holding: HashMap<(String, u32), String>,
    /// Planned switchovers under way: the primary pod being replaced and since when.
    retiring: HashMap<(String, u32), (String, Instant)>,
    failovers: u64,
    on_failover: FailoverHook,
}

async fn run(
    mut spec_rx: watch::Receiver<Arc<SupervisorSpec>>,
    obs_tx: watch::Sender<Arc<Observation>>,
    clusters: ClusterClients,
    recorder: Recorder,
    on_failover: FailoverHook,
) {
    let first = spec_rx.borrow().clone();
    let probe_timeout = first
        .settings
        .probe_interval()
        .max(Duration::from_millis(200));
    let mut state = Loop {
        clusters,
        recorder,
        nodes: NodeClients::new(first.password.clone(), probe_timeout),
        trackers: HashMap::new(),
        last_failover: HashMap::new(),
        last_holding: HashMap::new(),
        retiring: HashMap::new(),
        failovers: 0,
        on_failover,
    };
    let mut ticks = 0u64;
    loop {
        let spec = spec_rx.borrow_and_update().clone();
        state.nodes.set_password(spec.password.clone());
        let started = Instant::now();
        let mut obs = state.tick(&spec).await;
        ticks += 1;
        obs.ticks = ticks;
        obs.failovers = state.failovers;
        obs.topology = Some(spec.topology.clone());
        obs_tx.send_replace(Arc::new(obs));
        let pause = spec
            .settings
            .probe_interval()
            .saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = spec_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The address of shard `shard` of `p` when the participant gives an explicit host.
fn host_endpoint(p: &ParticipantPlan, shard: &ShardPlan) -> Option<String> {
    p.endpoint_host
        .as_ref()
        .map(|(h, port)| format!("{h}:{}", u32::from(*port) + shard.index))
}

/// The address other regions use for shard `shard` of `p`, from its primary Service.
async fn shard_endpoint(
    client: &Client,
    p: &ParticipantPlan,
    shard: &ShardPlan,
) -> Result<Option<String>, String> {
    if p.endpoint_type == EndpointType::Host {
        return Ok(host_endpoint(p, shard));
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &p.namespace);
    let svc = match services.get_opt(&shard.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("read Service {}/{}: {e}", p.namespace, shard.name)),
    };
    match p.endpoint_type {
        EndpointType::LoadBalancer => Ok(svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.into_iter().next())
            .and_then(|i| i.ip.or(i.hostname))
            .map(|host| format!("{host}:{SHARD_NODE_PORT}"))),
        EndpointType::NodePort => {
            let port = svc
                .spec
                .and_then(|s| s.ports)
                .and_then(|p| p.into_iter().next())
                .and_then(|p| p.node_port);
            let Some(port) = port else { return Ok(None) };
            let nodes: Api<Node> = Api::all(client.clone());
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("list nodes: {e}"))?;
            let address = list
                .items
                .iter()
                .filter(|n| node_ready(n))
                .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
                .flatten()
                .find(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                .map(|a| a.address.clone());
            Ok(address.map(|a| format!("{a}:{port}")))
        }
        EndpointType::Host => Ok(None),
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Why the scheduler cannot place `pod`, and the fix, while its `PodScheduled` condition is
/// False; `zones` are the zones its participant's pods may run in.
fn unschedulable(pod: &Pod, zones: &[String]) -> Option<String> {
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let said = condition
        .message
        .clone()
        .or_else(|| condition.reason.clone())
        .unwrap_or_else(|| "no reason given".into());
    Some(format!(
        "cannot be scheduled ({}): it needs a Ready node labeled {}={}: add such a node or change the participant's zones",
        said.trim_end_matches('.'),
        labels::ZONE,
        zones.join("|")
    ))
}

/// When a pod's trouble began: the earlier of its failing probes and its readiness loss.
fn trouble_since(v: &PodView) -> Option<Instant> {
    match (v.failing_since, v.not_ready_since) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn pod_address(p: &Pod) -> Option<String> {
    let ip = p.status.as_ref()?.pod_ip.clone()?;
    if ip.is_empty() {
        return None;
    }
    Some(format!("{ip}:{SHARD_NODE_PORT}"))
}

/// The label the StatefulSet controller puts on each pod: the revision it was created from.
const REVISION_LABEL: &str = "controller-revision-hash";

/// The pods of `pods` (not terminating) that do not run `sts`'s latest revision. Empty while
/// the StatefulSet's controller has not caught up with its spec (the revision is not known).
fn outdated_pods(sts: Option<&StatefulSet>, pods: &[&Pod]) -> Vec<String> {
    let Some(sts) = sts else { return Vec::new() };
    let Some(status) = sts.status.as_ref() else {
        return Vec::new();
    };
    if status.observed_generation < sts.metadata.generation {
        return Vec::new();
    }
    let Some(latest) = status.update_revision.as_deref() else {
        return Vec::new();
    };
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .is_some_and(|r| r != latest)
        })
        .filter_map(|pod| pod.metadata.name.clone())
        .collect()
}

fn ordinal(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(u32::MAX)
}

/// One shard's pods as the API shows them.
struct ShardPods<'a> {
    plan: &'a ShardPlan,
    pods: Vec<&'a Pod>,
    statefulset: Option<&'a StatefulSet>,
}

impl Loop {
    async fn tick(&mut self, spec: &SupervisorSpec) -> Observation {
        let topo = &spec.topology;
        let mut obs = Observation {
            replication_healthy: true,
            ..Observation::default()
        };
        // Clients and shard endpoints of every participant (managed or not).
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        let mut endpoints: BTreeMap<(String, u32), String> = BTreeMap::new();
        for p in &topo.participants {
            match self.clusters.client_for(&topo.namespace, &p.cluster).await {
                Ok(c) => {
                    clients.insert(p.name.clone(), c);
                }
                Err(e) => obs.errors.push(format!("participant {}: {e}", p.name)),
            }
        }
        let endpoint_reads = topo.participants.iter().flat_map(|p| {
            let client = clients.get(&p.name).cloned();
            p.shards.iter().map(move |s| {
                let client = client.clone();
                async move {
                    let r = match &client {
                        Some(c) => shard_endpoint(c, p, s).await,
                        None if p.endpoint_type == EndpointType::Host => Ok(host_endpoint(p, s)),
                        None => Ok(None),
                    };
                    (p.name.clone(), s.index, r)
                }
            })
        });
        for (name, shard, r) in join_all(endpoint_reads).await {
            match r {
                Ok(Some(a)) => {
                    endpoints.insert((name, shard), a);
                }
                Ok(None) => {}
                Err(e) => obs.errors.push(e),
            }
        }
        for p in topo.participants.iter().filter(|p| p.managed) {
            let status = match clients.get(&p.name) {
                Some(c) => {
                    self.participant(spec, p, c.clone(), &endpoints, &mut obs)
                        .await
                }
                None => ParticipantStatus {
                    name: p.name.clone(),
                    message: Some("cluster unreachable".into()),
                    ..ParticipantStatus::default()
                },
            };
            obs.total_shards += p.shards.len() as u32;
            obs.participants.push(status);
        }
        obs
    }

    async fn participant(
        &mut self,
        spec: &SupervisorSpec,
        p: &ParticipantPlan,
        client: Client,
        endpoints: &BTreeMap<(String, u32), String>,
        obs: &mut Observation,
    ) -> ParticipantStatus {
        let topo = &spec.topology;
        let mut status = ParticipantStatus {
            name: p.name.clone(),
            endpoint: None,
            message: None,
            shards: Vec::new(),
        };
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
        let selector = format!(
            "{}={},{}={}",
            labels::DATABASE,
            topo.database,
            labels::PARTICIPANT,
            p.name
        );
        let pods = match pods_api
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                let m = format!("list pods of {}: {e}", p.name);
                obs.errors.push(m.clone());
                status.message = Some(m);
                return status;
            }
        };
        let nodes: Vec<Node> = match Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                obs.errors.push(format!("list nodes of {}: {e}", p.name));
                Vec::new()
            }
        };
        let statefulsets: Vec<StatefulSet> =
            match Api::<StatefulSet>::namespaced(client.clone(), &p.namespace)
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(l) => l.items,
                Err(e) => {
                    obs.errors
                        .push(format!("list StatefulSets of {}: {e}", p.name));
                    Vec::new()
                }
            };
        let node_by_name: HashMap<&str, &Node> = nodes
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
            .collect();
        let shards: Vec<ShardPods<'_>> = p
            .shards
            .iter()
            .map(|s| ShardPods {
                plan: s,
                pods: pods
                    .iter()
                    .filter(|pod| {
                        pod.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(labels::SHARD))
                            .is_some_and(|v| *v == s.index.to_string())
                    })
                    .collect(),
                statefulset: statefulsets
                    .iter()
                    .find(|sts| sts.metadata.name.as_deref() == Some(s.name.as_str())),
            })
            .collect();
        // Probe every pod of the participant at once.
        let probes = shards.iter().flat_map(|s| s.pods.iter()).filter_map(|pod| {
            let addr = pod_address(pod)?;
            let name = pod.metadata.name.clone()?;
            let nodes = self.nodes.clone();
            Some(async move {
                let r = nodes.probe_detail(&addr).await;
                (name, r)
            })
        });
        let details: HashMap<String, Result<NodeDetail, String>> = join_all(probes)
            .await
            .into_iter()
            .map(|(n, r)| (n, r.map_err(|e| e.to_string())))
            .collect();
        let now = Instant::now();
        status.endpoint = endpoints.get(&(p.name.clone(), 0)).cloned();
        for s in &shards {
            let shard_status = self
                .shard(
                    spec,
                    p,
                    s,
                    &details,
                    &node_by_name,
                    &pods_api,
                    endpoints,
                    now,
                    obs,
                )
                .await;
            status.shards.push(shard_status);
        }
        if status.message.is_none() {
            let not_ready: Vec<String> = status
                .shards
                .iter()
                .filter(|s| {
                    s.primary.as_ref().is_none_or(|n| !n.ready)
                        || s.replicas.iter().any(|r| !r.ready)
                        || s.replicas.len() < p.replicas as usize
                })
                .map(|s| format!("shard {}", s.shard))
                .collect();
            if !not_ready.is_empty() {
                status.message = Some(format!("not ready: {}", not_ready.join(", ")));
            }
        }
        status
    }

    #[allow(clippy::too_many_arguments)]
    async fn shard(
        &mut self,
        spec: &SupervisorSpec,
        p: &ParticipantPlan,
        s: &ShardPods<'_>,
        details: &HashMap<String, Result<NodeDetail, String>>,
        node_by_name: &HashMap<&str, &Node>,
        pods_api: &Api<Pod>,
        endpoints: &BTreeMap<(String, u32), String>,
        now: Instant,
        obs: &mut Observation,
    ) -> ShardStatus {
        let key = (p.name.clone(), s.plan.index);
        let tracker = self.trackers.entry(key.clone()).or_default();
        let mut views = Vec::new();
        let live: Vec<String> = s
            .pods
            .iter()
            .filter_map(|pod| pod.metadata.name.clone())
            .collect();
        tracker.forget_missing(&live);
        for pod in &s.pods {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            let node = pod
                .spec
                .as_ref()
                .and_then(|sp| sp.node_name.as_deref())
                .and_then(|n| node_by_name.get(n));
            let node_ok = node.is_none_or(|n| node_ready(n));
            let ready = pod_ready(pod) && node_ok && pod.metadata.deletion_timestamp.is_none();
            tracker.record_readiness(&name, ready, now);
            if let Some(cs) = pod
                .status
                .as_ref()
                .and_then(|st| st.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == crate::objects::CONTAINER))
            {
                let running = cs.state.as_ref().is_some_and(|st| st.running.is_some());
                let restarts = u32::try_from(cs.restart_count).unwrap_or(0);
                tracker.record_container(&name, restarts, running, now);
            }
            if let Some(d) = details.get(&name) {
                let outcome = match d {
                    Ok(detail) => ProbeOutcome::Answered(detail.report.clone()),
                    Err(e) => ProbeOutcome::Failed(e.clone()),
                };
                tracker.record_probe(&name, outcome, now);
            }
            let mut view = PodView {
                ordinal: ordinal(&name),
                address: pod_address(pod),
                labeled_primary: pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::ROLE))
                    .is_some_and(|r| r == labels::ROLE_PRIMARY),
                pod_ready: pod_ready(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
                node_ready: node_ok,
                not_ready_since: None,
                last: None,
                failed_probes: 0,
                failing_since: None,
                crashed_at: None,
                unschedulable: unschedulable(pod, &p.zones),
                pod: name,
            };
            tracker.annotate(&mut view);
            views.push(view);
        }
        views.sort_by_key(|v| v.ordinal);
        let outdated = outdated_pods(s.statefulset, &s.pods);
        // A switchover is under way while the pod it replaces is labeled primary and outdated
        // or beyond the pods the plan keeps.
        let kept_pods = p.replicas + 1;
        let retiring = self.retiring.get(&key).cloned().filter(|(pod, _)| {
            views.iter().any(|v| {
                &v.pod == pod
                    && v.labeled_primary
                    && (outdated.contains(pod) || v.ordinal >= kept_pods)
            })
        });
        let primary_dropped = views
            .iter()
            .any(|v| v.labeled_primary && v.ordinal >= kept_pods);
        if retiring.is_none() {
            self.retiring.remove(&key);
        }
        let view = ShardView {
            shard: s.plan.index,
            pods: views.clone(),
            last_failover: self.last_failover.get(&key).copied(),
            retiring: retiring.as_ref().map(|(pod, _)| pod.clone()),
        };
        let decision = decide(&view, &spec.settings, now);
        let db = &spec.topology.database;
        if let Some(h) = &decision.holding {
            obs.holding
                .push(format!("{}/{}: {h}", p.name, s.plan.index));
            if self.last_holding.get(&key) != Some(h) {
                self.last_holding.insert(key.clone(), h.clone());
                self.event(
                    spec,
                    EventType::Warning,
                    "FailoverHeld",
                    &format!("{}/{} shard {}: {h}", db, p.name, s.plan.index),
                    None,
                )
                .await;
            }
        } else {
            self.last_holding.remove(&key);
        }
        let address_of = |pod: &str| {
            views
                .iter()
                .find(|v| v.pod == pod)
                .and_then(|v| v.address.clone())
        };
        let mut primary_pod: Option<String> = views
            .iter()
            .find(|v| v.labeled_primary)
            .map(|v| v.pod.clone());
        // The old primary of a switchover, whose writes are held until the actions are done.
        let mut paused: Option<String> = None;
        for action in &decision.actions {
            match action {
                Action::Elect { pod, promote } => {
                    let Some(addr) = address_of(pod) else {
                        continue;
                    };
                    if *promote {
                        if let Err(e) = self.nodes.promote(&addr).await {
                            obs.errors.push(format!("promote {pod}: {e}"));
                            continue;
                        }
                    }
                    if let Err(e) = set_role(pods_api, pod, labels::ROLE_PRIMARY).await {
                        obs.errors.push(e);
                        continue;
                    }
                    primary_pod = Some(pod.clone());
                    // Promoting a pod that was not labeled primary replaces a primary that is
                    // gone: a failover (counted, and it starts the flapping guard).
                    // Re-promoting the labeled pod is not one.
                    let replaced =
                        *promote && !views.iter().any(|v| &v.pod == pod && v.labeled_primary);
                    if replaced {
                        self.failovers += 1;
                        self.last_failover.insert(key.clone(), Instant::now());
                        let seconds = views
                            .iter()
                            .filter(|v| &v.pod != pod)
                            .filter_map(trouble_since)
                            .min()
                            .map(|t| Instant::now().saturating_duration_since(t).as_secs_f64())
                            .unwrap_or(0.0);
                        (self.on_failover)(db, &p.name, s.plan.index, seconds);
                        tracing::warn!(database = %db, participant = %p.name, shard = s.plan.index, to = %pod, "failed over: the primary pod was gone");
                    }
                    let (kind, reason) = if replaced {
                        (EventType::Warning, "FailedOver")
                    } else {
                        (EventType::Normal, "PrimaryElected")
                    };
                    self.event(
                        spec,
                        kind,
                        reason,
                        &format!(
                            "{}/{} shard {}: {pod} is the primary",
                            db, p.name, s.plan.index
                        ),
                        Some(pod_ref(p, pod)),
                    )
                    .await;
                }
                Action::Promote { from, to, reason } => {
                    let Some(addr) = address_of(to) else { continue };
                    let switchover = retiring.as_ref().is_some_and(|(pod, _)| pod == from);
                    if let (true, Some(from_addr)) = (switchover, address_of(from)) {
                        let held = self
                            .hold_writes_until_caught_up(&from_addr, &addr, &spec.settings)
                            .await;
                        if let Err(e) = held {
                            obs.errors.push(format!(
                                "switchover of {}/{} shard {} from {from} to {to}: {e}",
                                db, p.name, s.plan.index
                            ));
                            let _ = self.nodes.unpause(&from_addr).await;
                            break;
                        }
                        paused = Some(from_addr);
                    }
                    if let Err(e) = self.nodes.promote(&addr).await {
                        obs.errors.push(format!("promote {to}: {e}"));
                        continue;
                    }
                    if let Err(e) = set_role(pods_api, to, labels::ROLE_PRIMARY).await {
                        obs.errors.push(e);
                        continue;
                    }
                    // The old primary may be gone; its label only matters if it is still there.
                    let _ = set_role(pods_api, from, labels::ROLE_REPLICA).await;
                    primary_pod = Some(to.clone());
                    if let Some((_, since)) = retiring.as_ref().filter(|(pod, _)| pod == from) {
                        let seconds = Instant::now().saturating_duration_since(*since);
                        tracing::info!(database = %db, participant = %p.name, shard = s.plan.index, %from, %to, seconds = seconds.as_secs_f64(), "switched over");
                        self.event(
                            spec,
                            EventType::Normal,
                            "SwitchedOver",
                            &format!("{}/{} shard {}: {to} is the primary in place of {from}, which is being replaced; hand-over took {:.2}s", db, p.name, s.plan.index, seconds.as_secs_f64()),
                            Some(pod_ref(p, to)),
                        )
                        .await;
                        continue;
                    }
                    let failed_at = views
                        .iter()
                        .find(|v| &v.pod == from)
                        .and_then(trouble_since)
                        .unwrap_or(now);
                    let seconds = Instant::now()
                        .saturating_duration_since(failed_at)
                        .as_secs_f64();
                    self.failovers += 1;
                    self.last_failover.insert(key.clone(), Instant::now());
                    (self.on_failover)(db, &p.name, s.plan.index, seconds);
                    tracing::warn!(database = %db, participant = %p.name, shard = s.plan.index, %from, %to, %reason, seconds, "failed over");
                    self.event(
                        spec,
                        EventType::Warning,
                        "FailedOver",
                        &format!("{}/{} shard {}: promoted {to} in place of {from} ({reason}); {:.2}s after the primary failed", db, p.name, s.plan.index, seconds),
                        Some(pod_ref(p, to)),
                    )
                    .await;
                }
                Action::Follow {
                    pod,
                    primary_address,
                    demote,
                } => {
                    let Some(addr) = address_of(pod) else {
                        continue;
                    };
                    if let Err(e) = self.nodes.follow(&addr, primary_address).await {
                        obs.errors
                            .push(format!("point {pod} at {primary_address}: {e}"));
                        continue;
                    }
                    if let Err(e) = set_role(pods_api, pod, labels::ROLE_REPLICA).await {
                        obs.errors.push(e);
                    }
                    if *demote {
                        self.event(
                            spec,
                            EventType::Normal,
                            "Demoted",
                            &format!(
                                "{}/{} shard {}: {pod} follows {primary_address}",
                                db, p.name, s.plan.index
                            ),
                            Some(pod_ref(p, pod)),
                        )
                        .await;
                    }
                }
            }
        }
        if let Some(old_primary) = paused {
            // Demoted by now (or it stays a primary nobody routes to until the next tick
            // demotes it): its held writes go on and are refused as read-only.
            if let Err(e) = self.nodes.unpause(&old_primary).await {
                obs.errors
                    .push(format!("lift the write pause of {old_primary}: {e}"));
            }
        }
        // Label replicas that carry no role yet (fresh pods), so `kubectl get pods -L` is clear.
        for pod in &s.pods {
            let Some(name) = pod.metadata.name.as_deref() else {
                continue;
            };
            let has_role = pod
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::ROLE));
            if !has_role && primary_pod.as_deref() != Some(name) && primary_pod.is_some() {
                let _ = set_role(pods_api, name, labels::ROLE_REPLICA).await;
            }
        }
        // Cross-region links of the primary.
        let mut peers_status = Vec::new();
        if let Some(primary) = primary_pod.as_deref() {
            if let (Some(addr), Some(Ok(detail))) = (
                address_of(primary),
                details.get(primary).map(|d| d.as_ref()),
            ) {
                if matches!(detail.report.role, ReportedRole::Primary) {
                    peers_status = self
                        .wire_peers(spec, p, s.plan, &addr, detail, endpoints, obs)
                        .await;
                }
            }
        }
        if spec.topology.participants.len() > 1 && peers_status.is_empty() {
            obs.replication_healthy = false;
        }
        for link in &peers_status {
            if !link_connected(&link.state) {
                obs.replication_healthy = false;
                obs.links_down.push(format!(
                    "{}/{} -> {}: {}",
                    p.name, s.plan.index, link.participant, link.state
                ));
            }
        }
        // Status of the shard.
        let zone_of = |pod: &Pod| -> Option<String> {
            let node = pod.spec.as_ref()?.node_name.as_deref()?;
            node_by_name
                .get(node)?
                .metadata
                .labels
                .as_ref()?
                .get(labels::ZONE)
                .cloned()
        };
        let mut shard_status = ShardStatus {
            shard: s.plan.index,
            endpoint: endpoints.get(&(p.name.clone(), s.plan.index)).cloned(),
            primary: None,
            replicas: Vec::new(),
            peers: peers_status,
        };
        let mut healthy_replicas = 0usize;
        for pod in &s.pods {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            let detail = details.get(&name).and_then(|d| d.as_ref().ok());
            let is_primary = primary_pod.as_deref() == Some(name.as_str());
            let answering_right = detail.is_some_and(|d| match (&d.report.role, is_primary) {
                (ReportedRole::Primary, true) => true,
                (ReportedRole::Replica { primary, link_up }, false) => {
                    *link_up
                        && primary_pod.as_deref().and_then(address_of).as_deref()
                            == Some(primary.as_str())
                }
                _ => false,
            });
            let node = NodeStatus {
                pod: name.clone(),
                zone: zone_of(pod),
                offset: detail.map(|d| d.report.offset),
                ready: pod_ready(pod) && answering_right,
            };
            if is_primary {
                shard_status.primary = Some(node);
            } else {
                if node.ready {
                    healthy_replicas += 1;
                } else {
                    obs.replication_healthy = false;
                }
                shard_status.replicas.push(node);
            }
        }
        let primary_ok = shard_status.primary.as_ref().is_some_and(|n| n.ready);
        if primary_ok && healthy_replicas >= p.replicas as usize {
            obs.ready_shards += 1;
        }
        if decision.actions.is_empty()
            && decision.holding.is_none()
            && (!outdated.is_empty() || primary_dropped)
        {
            self.roll(
                spec,
                p,
                s,
                &views,
                decision.healthy,
                &outdated,
                pods_api,
                obs,
            )
            .await;
        }
        shard_status
    }

    /// The first half of a switchover from the primary at `from` to its replica at `to`: holds
    /// the primary's writes (`CLIENT PAUSE … WRITE`, for 2 × the detection timeout at most, so a
    /// pause outlives no operator) and waits until `to` has everything `from` has. The caller
    /// promotes `to`, demotes `from` and lifts the pause.
    async fn hold_writes_until_caught_up(
        &self,
        from: &str,
        to: &str,
        settings: &FailoverSettings,
    ) -> Result<(), String> {
        let limit = settings.detection_timeout;
        self.nodes
            .pause_writes(from, limit.saturating_mul(2))
            .await
            .map_err(|e| format!("pause writes: {e}"))?;
        let started = Instant::now();
        // Clients' writes stop here; what the primary still receives from other regions after
        // this point the new primary gets from them over its own links.
        let target = self
            .nodes
            .probe(from)
            .await
            .map_err(|e| e.to_string())?
            .offset;
        loop {
            let replica = self.nodes.probe(to).await.map_err(|e| e.to_string())?;
            if !matches!(replica.role, ReportedRole::Replica { link_up: true, .. }) {
                return Err(format!("{to} lost its link to {from}"));
            }
            if replica.offset >= target {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(format!(
                    "{to} did not catch up within {limit:?} (offset {} < {target})",
                    replica.offset
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Marks `primary` of shard `s` as retiring (the next decisions hand its role over), once.
    async fn start_switchover(
        &mut self,
        spec: &SupervisorSpec,
        p: &ParticipantPlan,
        s: &ShardPods<'_>,
        primary: &str,
        why: &str,
    ) {
        let key = (p.name.clone(), s.plan.index);
        if self.retiring.contains_key(&key) {
            return;
        }
        self.retiring
            .insert(key, (primary.to_string(), Instant::now()));
        let note = format!(
            "{}/{} shard {}: handing over from {primary} to a replica: {why}",
            spec.topology.database, p.name, s.plan.index
        );
        self.event(
            spec,
            EventType::Normal,
            "SwitchoverStarted",
            &note,
            Some(pod_ref(p, primary)),
        )
        .await;
    }

    /// One step of replacing the shard's outdated pods (see the module documentation).
    #[allow(clippy::too_many_arguments)]
    async fn roll(
        &mut self,
        spec: &SupervisorSpec,
        p: &ParticipantPlan,
        s: &ShardPods<'_>,
        views: &[PodView],
        healthy: bool,
        outdated: &[String],
        pods_api: &Api<Pod>,
        obs: &mut Observation,
    ) {
        let desired_pods = p.replicas as usize + 1;
        let db = &spec.topology.database;
        let dropped = views
            .iter()
            .find(|v| v.labeled_primary && v.ordinal as usize >= desired_pods);
        if let Some(primary) = dropped {
            if healthy {
                let why = format!("the shard scales down to {desired_pods} pods");
                self.start_switchover(spec, p, s, &primary.pod, &why).await;
            }
            return;
        }
        let settling = s
            .pods
            .iter()
            .any(|pod| pod.metadata.deletion_timestamp.is_some());
        if settling || s.pods.len() != desired_pods {
            return;
        }
        let view_of = |name: &str| views.iter().find(|v| v.pod == name);
        let replica = outdated
            .iter()
            .filter_map(|name| view_of(name))
            .filter(|v| !v.labeled_primary)
            .max_by_key(|v| (!v.serving(), v.ordinal));
        let victim = match replica {
            // A broken replica cannot get worse by being replaced; a healthy one waits until
            // the whole shard is healthy, so that one replica at a time is missing.
            Some(v) if healthy || !v.serving() => v,
            Some(_) => return,
            None => {
                let Some(primary) = outdated
                    .iter()
                    .filter_map(|name| view_of(name))
                    .find(|v| v.labeled_primary)
                else {
                    return;
                };
                if desired_pods > 1 {
                    if healthy {
                        let why = "its pod is replaced by the latest revision";
                        self.start_switchover(spec, p, s, &primary.pod, why).await;
                    }
                    return;
                }
                primary
            }
        };
        let revision = s
            .statefulset
            .and_then(|sts| sts.status.as_ref())
            .and_then(|st| st.update_revision.clone())
            .unwrap_or_default();
        match pods_api.delete(&victim.pod, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(database = %db, participant = %p.name, shard = s.plan.index, pod = %victim.pod, %revision, "replacing an outdated pod");
                self.event(
                    spec,
                    EventType::Normal,
                    "ReplacingPod",
                    &format!(
                        "{}/{} shard {}: replacing {} with revision {revision}",
                        db, p.name, s.plan.index, victim.pod
                    ),
                    Some(pod_ref(p, &victim.pod)),
                )
                .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => obs.errors.push(format!("replace {}: {e}", victim.pod)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn wire_peers(
        &mut self,
        spec: &SupervisorSpec,
        p: &ParticipantPlan,
        shard: &ShardPlan,
        addr: &str,
        detail: &NodeDetail,
        endpoints: &BTreeMap<(String, u32), String>,
        obs: &mut Observation,
    ) -> Vec<PeerLinkStatus> {
        let mut out = Vec::new();
        for other in spec
            .topology
            .participants
            .iter()
            .filter(|o| o.name != p.name)
        {
            let current = detail.peers.iter().find(|l| l.name == other.name);
            let Some(want) = endpoints.get(&(other.name.clone(), shard.index)) else {
                out.push(PeerLinkStatus {
                    participant: other.name.clone(),
                    state: "no-address".into(),
                    lag_effects: None,
                });
                continue;
            };
            if current.is_none_or(|c| &c.address != want) {
                if let Err(e) = self.nodes.set_peer(addr, &other.name, want).await {
                    obs.errors.push(format!(
                        "link {}/{} -> {}: {e}",
                        p.name, shard.index, other.name
                    ));
                }
                out.push(PeerLinkStatus {
                    participant: other.name.clone(),
                    state: "connecting".into(),
                    lag_effects: None,
                });
                continue;
            }
            if let Some(c) = current {
                out.push(PeerLinkStatus {
                    participant: other.name.clone(),
                    state: c.state.clone(),
                    lag_effects: c.lag_effects,
                });
            }
        }
        for stale in detail
            .peers
            .iter()
            .filter(|l| l.name != p.name && spec.topology.participant(&l.name).is_none())
        {
            if let Err(e) = self.nodes.del_peer(addr, &stale.name).await {
                obs.errors.push(format!(
                    "unlink {}/{} -> {}: {e}",
                    p.name, shard.index, stale.name
                ));
            }
        }
        out
    }

    /// Records an Event on the database; `related` names the pod it is about, which also keeps
    /// Events of different pods apart (the recorder folds repeats of one key into a series).
    async fn event(
        &self,
        spec: &SupervisorSpec,
        kind: EventType,
        reason: &str,
        note: &str,
        related: Option<ObjectReference>,
    ) {
        let ev = Event {
            type_: kind,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&ev, &spec.reference).await {
            tracing::debug!(error = %e, "cannot record event");
        }
    }
}

/// A reference to pod `pod` of participant `p`, for Events.
fn pod_ref(p: &ParticipantPlan, pod: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(p.namespace.clone()),
        name: Some(pod.to_string()),
        ..ObjectReference::default()
    }
}

/// Whether a link state string reported by a shard-node means connected.
pub fn link_connected(state: &str) -> bool {
    matches!(state, "up" | "connected" | "online")
}

async fn set_role(pods: &Api<Pod>, pod: &str, role: &str) -> Result<(), String> {
    let patch = json!({"metadata": {"labels": {labels::ROLE: role}}});
    match pods
        .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("label {pod} {role}: {e}")),
    }
}
