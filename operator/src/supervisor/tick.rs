//! The supervisor's task: its state between ticks, one tick over every participant, and per
//! shard the steps observe → decide → execute, then the links, the status and a roll step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aadb_crd::{ParticipantStatus, ShardStatus};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::Client;
use tokio::sync::watch;

use super::observe::{
    not_ready_message, outdated_pods, pod_address, pod_ready, pod_views, shard_pods, shard_status,
    ShardPods,
};
use super::peers::{service_address, service_endpoint, shard_endpoints};
use super::topology::{shard_map, RegionTopology, ShardPlacement};
use super::{FailoverHook, Observation, SupervisorSpec};
use crate::clusters::ClusterClients;
use crate::failover::{decide, Decision, HealthTracker, PodView, ShardView};
use crate::labels;
use crate::node_client::{NodeClients, NodeDetail};
use crate::plan::{ParticipantPlan, Topology};

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
    /// Per proxy or (Cluster API mode) shard-node address, the address it was told to
    /// announce, and when.
    pub(super) announced: HashMap<String, (String, Instant)>,
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
        nodes: {
            let nodes = NodeClients::new(first.password.clone(), probe_timeout);
            nodes.set_tls(first.tls_ca.clone());
            nodes
        },
        trackers: HashMap::new(),
        last_failover: HashMap::new(),
        last_holding: HashMap::new(),
        retiring: HashMap::new(),
        failovers: 0,
        on_failover,
        topologies: HashMap::new(),
        announced: HashMap::new(),
    };
    let mut ticks = 0u64;
    loop {
        let spec = spec_rx.borrow_and_update().clone();
        state.nodes.set_password(spec.password.clone());
        state.nodes.set_tls(spec.tls_ca.clone());
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
        // Per shard, the primary's pod and the other pods' (for announced addresses).
        let mut pod_names: Vec<(Option<String>, Vec<String>)> = Vec::with_capacity(shards.len());
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
            pod_names.push((
                shard_status.primary.as_ref().map(|n| n.pod.clone()),
                shard_status
                    .replicas
                    .iter()
                    .map(|n| n.pod.clone())
                    .collect(),
            ));
            status.shards.push(shard_status);
        }
        if p.proxies > 0 || topo.cluster_api {
            let region = RegionView {
                pods: &pods,
                nodes: &nodes,
                placements: &placements,
                pod_names: &pod_names,
            };
            self.region_topology(topo, p, &client, region, &mut status, obs)
                .await;
        }
        if status.message.is_none() {
            status.message = not_ready_message(&status.shards, p.replicas);
        }
        status
    }

    /// With proxies or the Cluster API: pushes the region's topology to its shard-nodes and
    /// proxies, and reports the proxies and the acknowledged topology version (see
    /// [`super::topology`]). Proxies get the pods' own addresses; in Cluster API mode the
    /// nodes get the addresses of the pods' Services, which they announce to clients.
    async fn region_topology(
        &mut self,
        topo: &Topology,
        p: &ParticipantPlan,
        client: &Client,
        region: RegionView<'_>,
        status: &mut ParticipantStatus,
        obs: &mut Observation,
    ) {
        let proxies: Vec<&Pod> = region
            .pods
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
        if p.proxies > 0 {
            status.proxies = Some(format!("{ready}/{}", p.proxies));
            if ready < p.proxies as usize {
                obs.proxies_not_ready.push(format!(
                    "{}: {ready} of {} proxies ready",
                    p.name, p.proxies
                ));
            }
        }
        let Some(map) = shard_map(region.placements) else {
            obs.proxies_not_ready.push(format!(
                "{}: the topology waits until every shard has a primary",
                p.name
            ));
            return;
        };
        let node_targets: Vec<String> = region
            .placements
            .iter()
            .flat_map(|s| s.primary.iter().chain(s.replicas.iter()).cloned())
            .collect();
        let proxy_targets: Vec<String> =
            proxies.iter().filter_map(|pod| pod_address(pod)).collect();
        if let Some(endpoint) = status.endpoint.clone() {
            let to_proxies: Vec<(String, String)> = proxy_targets
                .iter()
                .map(|proxy| (proxy.clone(), endpoint.clone()))
                .collect();
            self.announce(&to_proxies, &mut obs.errors).await;
        }
        let mut acknowledged = true;
        let mut version = 0;
        if topo.cluster_api {
            match self.announced_map(p, client, &region).await {
                Ok(Some((announced, addresses))) => {
                    self.announce(&addresses, &mut obs.errors).await;
                    let (all, v) = self
                        .push_topology(
                            &format!("{}/nodes", p.name),
                            announced,
                            &node_targets,
                            &mut obs.errors,
                        )
                        .await;
                    acknowledged &= all;
                    version = v;
                }
                Ok(None) => {
                    acknowledged = false;
                    obs.proxies_not_ready.push(format!(
                        "{}: the topology waits for every shard-node pod's Service address",
                        p.name
                    ));
                }
                Err(e) => {
                    acknowledged = false;
                    obs.errors.push(e);
                }
            }
            if !proxy_targets.is_empty() {
                let (all, _) = self
                    .push_topology(
                        &format!("{}/proxies", p.name),
                        map,
                        &proxy_targets,
                        &mut obs.errors,
                    )
                    .await;
                acknowledged &= all;
            }
        } else {
            let mut targets = node_targets;
            targets.extend(proxy_targets);
            let (all, v) = self
                .push_topology(&p.name, map, &targets, &mut obs.errors)
                .await;
            acknowledged = all;
            version = v;
        }
        if acknowledged {
            status.topology_version = Some(version);
        } else {
            obs.proxies_not_ready.push(format!(
                "{}: topology version {version} is not yet acknowledged by every proxy and shard-node",
                p.name
            ));
        }
    }

    /// Tells each `(target, address)` target that has not heard it lately which address it
    /// announces to cluster-aware clients: the region endpoint for a proxy, its own Service's
    /// address for a shard-node in Cluster API mode (how it finds itself in the map).
    async fn announce(&mut self, pairs: &[(String, String)], errors: &mut Vec<String>) {
        let now = Instant::now();
        let due: Vec<&(String, String)> = pairs
            .iter()
            .filter(|(target, address)| {
                self.announced.get(target).is_none_or(|(a, at)| {
                    a != address || now.duration_since(*at) >= super::topology::REPUSH_AFTER
                })
            })
            .collect();
        let pushes = due.iter().map(|(target, address)| {
            let nodes = self.nodes.clone();
            async move {
                let result = nodes.announce(target, address).await;
                (target.clone(), address.clone(), result)
            }
        });
        for (target, address, r) in join_all(pushes).await {
            match r {
                Ok(()) => {
                    self.announced.insert(target, (address, Instant::now()));
                }
                Err(e) => errors.push(format!("announce {address} on {target}: {e}")),
            }
        }
    }

    /// The region's shard map with the addresses of the pods' own Services (Cluster API
    /// mode), and each pod's own address with its Service's; `None` while one of them has no
    /// address.
    async fn announced_map(
        &self,
        p: &ParticipantPlan,
        client: &Client,
        region: &RegionView<'_>,
    ) -> Result<Option<(String, Vec<(String, String)>)>, String> {
        let selector = format!("{}={}", labels::PARTICIPANT, p.name);
        let services: Vec<Service> = Api::<Service>::namespaced(client.clone(), &p.namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| format!("list Services of {}: {e}", p.name))?
            .items;
        let announced = |pod: &str| {
            services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(pod))
                .and_then(|s| service_address(s, p.endpoint_type, region.nodes))
        };
        let own_address = |pod: &str| {
            region
                .pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod))
                .and_then(pod_address)
        };
        let mut shards = Vec::with_capacity(region.pod_names.len());
        let mut addresses = Vec::new();
        for (placement, (primary, replicas)) in region.placements.iter().zip(region.pod_names) {
            let Some(primary) = primary.as_deref() else {
                return Ok(None);
            };
            let Some(primary_announced) = announced(primary) else {
                return Ok(None);
            };
            let mut others = Vec::with_capacity(replicas.len());
            for pod in std::iter::once(primary).chain(replicas.iter().map(String::as_str)) {
                let Some(a) = announced(pod) else {
                    return Ok(None);
                };
                if let Some(own) = own_address(pod) {
                    addresses.push((own, a.clone()));
                }
                if pod != primary {
                    others.push(a);
                }
            }
            shards.push(ShardPlacement {
                slots: placement.slots,
                primary: Some(primary_announced),
                replicas: others,
            });
        }
        Ok(shard_map(&shards).map(|map| (map, addresses)))
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

/// What the topology of a region is built from.
pub(super) struct RegionView<'a> {
    pods: &'a [Pod],
    nodes: &'a [Node],
    /// Per shard, the pods' own addresses.
    placements: &'a [ShardPlacement],
    /// Per shard, the primary's pod name and the other pods' names.
    pod_names: &'a [(Option<String>, Vec<String>)],
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
