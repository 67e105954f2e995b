//! The supervisor's task: its state between ticks, one tick over every participant, and per
//! shard the steps observe → decide → execute, then the links, the status and a roll step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aadb_crd::{ParticipantStatus, ShardStatus};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::Client;
use tokio::sync::watch;

use super::observe::{
    not_ready_message, outdated_pods, pod_address, pod_ready, pod_views, shard_pods, shard_status,
    ShardPods,
};
use super::peers::{service_endpoint, shard_endpoints};
use super::topology::{shard_map, RegionTopology, ShardPlacement};
use super::{FailoverHook, Observation, SupervisorSpec};
use crate::clusters::ClusterClients;
use crate::failover::{decide, Decision, HealthTracker, PodView, ShardView};
use crate::labels;
use crate::plan::ParticipantPlan;
use crate::wiring::{NodeClients, NodeDetail};

/// The supervisor's state between ticks.
pub(super) struct Loop {
    pub(super) clusters: ClusterClients,
    pub(super) recorder: Recorder,
    pub(super) nodes: NodeClients,
    pub(super) trackers: HashMap<(String, u32), HealthTracker>,
    pub(super) last_failover: HashMap<(String, u32), Instant>,
    pub(super) last_holding: HashMap<(String, u32), String>,
    /// Planned switchovers under way: the primary pod being replaced and since when.
    pub(super) retiring: HashMap<(String, u32), (String, Instant)>,
    pub(super) failovers: u64,
    pub(super) on_failover: FailoverHook,
    /// Per participant, the topology last pushed to its shard-nodes and proxies.
    pub(super) topologies: HashMap<String, RegionTopology>,
}

pub(super) async fn run(
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
        topologies: HashMap::new(),
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

/// One shard in one tick, with what the tick saw of its participant: what the steps of
/// [`Loop::shard`] share.
pub(super) struct ShardTick<'a> {
    pub(super) spec: &'a SupervisorSpec,
    pub(super) p: &'a ParticipantPlan,
    pub(super) s: &'a ShardPods<'a>,
    /// `(participant, shard)`, the key of the supervisor's per-shard state.
    pub(super) key: (String, u32),
    /// Probe answers of the participant's pods, by pod name.
    pub(super) details: &'a HashMap<String, Result<NodeDetail, String>>,
    pub(super) node_by_name: &'a HashMap<&'a str, &'a Node>,
    pub(super) pods_api: &'a Api<Pod>,
    /// The address other regions use for each `(participant, shard)`.
    pub(super) endpoints: &'a BTreeMap<(String, u32), String>,
    pub(super) now: Instant,
}

/// What a tick saw of a shard's pods and decided about them.
pub(super) struct Assessment {
    /// The shard's pods, in ordinal order.
    pub(super) views: Vec<PodView>,
    /// Pods that do not run their StatefulSet's latest revision.
    pub(super) outdated: Vec<String>,
    /// The planned switchover under way: the primary pod being replaced and since when.
    pub(super) retiring: Option<(String, Instant)>,
    /// The labeled primary's ordinal is beyond the pods the plan keeps.
    pub(super) primary_dropped: bool,
    pub(super) decision: Decision,
}

impl Assessment {
    /// The address of pod `pod`, once it has one.
    pub(super) fn address_of(&self, pod: &str) -> Option<String> {
        self.views
            .iter()
            .find(|v| v.pod == pod)
            .and_then(|v| v.address.clone())
    }
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
        for p in &topo.participants {
            match self.clusters.client_for(&topo.namespace, &p.cluster).await {
                Ok(c) => {
                    clients.insert(p.name.clone(), c);
                }
                Err(e) => obs.errors.push(format!("participant {}: {e}", p.name)),
            }
        }
        let endpoints = shard_endpoints(topo, &clients, &mut obs).await;
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
            ..ParticipantStatus::default()
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
        let shards = shard_pods(p, &pods, &statefulsets);
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
        status.endpoint = if p.proxies > 0 {
            match service_endpoint(&client, p, &p.region_service).await {
                Ok(a) => a,
                Err(e) => {
                    obs.errors.push(e);
                    None
                }
            }
        } else {
            endpoints.get(&(p.name.clone(), 0)).cloned()
        };
        let mut placements = Vec::with_capacity(shards.len());
        for s in &shards {
            let t = ShardTick {
                spec,
                p,
                s,
                key: (p.name.clone(), s.plan.index),
                details: &details,
                node_by_name: &node_by_name,
                pods_api: &pods_api,
                endpoints,
                now,
            };
            let shard_status = self.shard(&t, obs).await;
            let address = |pod: &str| {
                s.pods
                    .iter()
                    .find(|x| x.metadata.name.as_deref() == Some(pod))
                    .and_then(|x| pod_address(x))
            };
            placements.push(ShardPlacement {
                slots: s.plan.slots,
                primary: shard_status.primary.as_ref().and_then(|n| address(&n.pod)),
                replicas: shard_status
                    .replicas
                    .iter()
                    .filter_map(|n| address(&n.pod))
                    .collect(),
            });
            status.shards.push(shard_status);
        }
        if p.proxies > 0 {
            self.region_topology(p, &pods, &placements, &mut status, obs)
                .await;
        }
        if status.message.is_none() {
            status.message = not_ready_message(&status.shards, p.replicas);
        }
        status
    }

    /// With proxies: pushes the region's topology to its shard-nodes and proxies, and reports
    /// the proxies and the acknowledged topology version (see [`super::topology`]).
    async fn region_topology(
        &mut self,
        p: &ParticipantPlan,
        pods: &[Pod],
        placements: &[ShardPlacement],
        status: &mut ParticipantStatus,
        obs: &mut Observation,
    ) {
        let proxies: Vec<&Pod> = pods
            .iter()
            .filter(|pod| {
                pod.metadata.deletion_timestamp.is_none()
                    && pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(labels::COMPONENT))
                        .is_some_and(|c| c == labels::COMPONENT_PROXY)
            })
            .collect();
        let ready = proxies.iter().filter(|pod| pod_ready(pod)).count();
        status.proxies = Some(format!("{ready}/{}", p.proxies));
        let Some(map) = shard_map(placements) else {
            obs.proxies_not_ready.push(format!(
                "{}: the proxies have no topology until every shard has a primary",
                p.name
            ));
            return;
        };
        let mut targets: Vec<String> = placements
            .iter()
            .flat_map(|s| s.primary.iter().chain(s.replicas.iter()).cloned())
            .collect();
        targets.extend(proxies.iter().filter_map(|pod| pod_address(pod)));
        let (all, version) = self
            .push_topology(&p.name, map, &targets, &mut obs.errors)
            .await;
        if all {
            status.topology_version = Some(version);
        } else {
            obs.proxies_not_ready.push(format!(
                "{}: topology version {version} is not yet acknowledged by every proxy and shard-node",
                p.name
            ));
        }
        if ready < p.proxies as usize {
            obs.proxies_not_ready.push(format!(
                "{}: {ready} of {} proxies ready",
                p.name, p.proxies
            ));
        }
    }

    /// One shard's tick: observe its pods, decide, carry the actions out, wire the primary's
    /// links, report, and take a roll step when nothing else is being done about the shard.
    async fn shard(&mut self, t: &ShardTick<'_>, obs: &mut Observation) -> ShardStatus {
        let tracker = self.trackers.entry(t.key.clone()).or_default();
        let views = pod_views(tracker, t);
        let a = self.assess(t, views, obs).await;
        let primary_pod = self.execute(t, &a, obs).await;
        let primary_address = primary_pod.as_deref().and_then(|pod| a.address_of(pod));
        let peers_status = self
            .shard_links(t, primary_pod.as_deref(), primary_address.as_deref(), obs)
            .await;
        let shard_status = shard_status(
            t.s,
            t.details,
            t.node_by_name,
            primary_pod.as_deref(),
            primary_address.as_deref(),
            t.endpoints.get(&t.key).cloned(),
            peers_status,
        );
        let mut healthy_replicas = 0usize;
        for replica in &shard_status.replicas {
            if replica.ready {
                healthy_replicas += 1;
            } else {
                obs.replication_healthy = false;
            }
        }
        let primary_ok = shard_status.primary.as_ref().is_some_and(|n| n.ready);
        if primary_ok && healthy_replicas >= t.p.replicas as usize {
            obs.ready_shards += 1;
        }
        if a.decision.actions.is_empty()
            && a.decision.holding.is_none()
            && (!a.outdated.is_empty() || a.primary_dropped)
        {
            self.roll(t, &a, obs).await;
        }
        shard_status
    }

    /// Decides about the shard: which planned switchover is still under way, then
    /// [`decide`]; a hold is reported, and recorded as an Event when its reason changes.
    async fn assess(
        &mut self,
        t: &ShardTick<'_>,
        views: Vec<PodView>,
        obs: &mut Observation,
    ) -> Assessment {
        let (spec, p, s, key) = (t.spec, t.p, t.s, &t.key);
        let outdated = outdated_pods(s.statefulset, &s.pods);
        // A switchover is under way while the pod it replaces is labeled primary and outdated
        // or beyond the pods the plan keeps.
        let kept_pods = p.replicas + 1;
        let retiring = self.retiring.get(key).cloned().filter(|(pod, _)| {
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
            self.retiring.remove(key);
        }
        let view = ShardView {
            shard: s.plan.index,
            pods: views.clone(),
            last_failover: self.last_failover.get(key).copied(),
            retiring: retiring.as_ref().map(|(pod, _)| pod.clone()),
        };
        let decision = decide(&view, &spec.settings, t.now);
        let db = &spec.topology.database;
        if let Some(h) = &decision.holding {
            obs.holding
                .push(format!("{}/{}: {h}", p.name, s.plan.index));
            if self.last_holding.get(key) != Some(h) {
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
            self.last_holding.remove(key);
        }
        Assessment {
            views,
            outdated,
            retiring,
            primary_dropped,
            decision,
        }
    }

    /// Records an Event on the database; `related` names the pod it is about, which also keeps
    /// Events of different pods apart (the recorder folds repeats of one key into a series).
    pub(super) async fn event(
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
pub(super) fn pod_ref(p: &ParticipantPlan, pod: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(p.namespace.clone()),
        name: Some(pod.to_string()),
        ..ObjectReference::default()
    }
}
