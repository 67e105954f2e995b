//! Links between regions: the address other regions use for each shard (the explicit
//! endpoint host, the LoadBalancer ingress or a node address and NodePort of its primary
//! Service), and `AA.PEER SET` / `AA.PEER DEL` on each shard primary so that it links to the
//! same shard in every other participant.

use std::collections::BTreeMap;

use aadb_crd::{EndpointType, PeerLinkStatus, SHARD_NODE_PORT};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, ListParams};
use kube::Client;

use super::observe::node_ready;
use super::tick::{Loop, ShardTick};
use super::Observation;
use crate::failover::ReportedRole;
use crate::node_client::NodeDetail;
use crate::plan::{ParticipantPlan, ShardPlan, Topology};

/// The address other regions use for every shard of every participant (managed or not), by
/// `(participant, shard)`, read at once; `clients` are the participants' clusters that could
/// be reached.
pub(super) async fn shard_endpoints(
    topo: &Topology,
    clients: &BTreeMap<String, Client>,
    obs: &mut Observation,
) -> BTreeMap<(String, u32), String> {
    let mut endpoints: BTreeMap<(String, u32), String> = BTreeMap::new();
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
    endpoints
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
    service_endpoint(client, p, &shard.name).await
}

/// The address clients reach Service `name` of `p` at (its LoadBalancer ingress, or a node
/// address and its NodePort); `None` while it has none.
pub(super) async fn service_endpoint(
    client: &Client,
    p: &ParticipantPlan,
    name: &str,
) -> Result<Option<String>, String> {
    let services: Api<Service> = Api::namespaced(client.clone(), &p.namespace);
    let svc = match services.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("read Service {}/{}: {e}", p.namespace, name)),
    };
    let nodes = if p.endpoint_type == EndpointType::NodePort {
        Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list nodes: {e}"))?
            .items
    } else {
        Vec::new()
    };
    Ok(service_address(&svc, p.endpoint_type, &nodes))
}

/// The address clients reach `svc` at: its first LoadBalancer ingress, or for a NodePort
/// Service a Ready node's address (of `nodes`) and the node port.
pub(super) fn service_address(
    svc: &Service,
    endpoint_type: EndpointType,
    nodes: &[Node],
) -> Option<String> {
    match endpoint_type {
        EndpointType::LoadBalancer => svc
            .status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()?
            .first()
            .and_then(|i| i.ip.clone().or(i.hostname.clone()))
            .map(|host| format!("{host}:{SHARD_NODE_PORT}")),
        EndpointType::NodePort => {
            let port = svc.spec.as_ref()?.ports.as_ref()?.first()?.node_port?;
            let address = nodes
                .iter()
                .filter(|n| node_ready(n))
                .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
                .flatten()
                .find(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                .map(|a| a.address.clone())?;
            Some(format!("{address}:{port}"))
        }
        EndpointType::Host => None,
    }
}

/// Whether a link state string reported by a shard-node means connected.
pub fn link_connected(state: &str) -> bool {
    matches!(state, "up" | "connected" | "online")
}

impl Loop {
    /// The cross-region links of the shard's `primary` pod (at `primary_address`), wired when
    /// it answers as a primary; links that are missing or not connected make replication
    /// unhealthy in `obs`.
    pub(super) async fn shard_links(
        &mut self,
        t: &ShardTick<'_>,
        primary: Option<&str>,
        primary_address: Option<&str>,
        obs: &mut Observation,
    ) -> Vec<PeerLinkStatus> {
        let (spec, p, s) = (t.spec, t.p, t.s);
        let mut peers_status = Vec::new();
        if let Some(primary) = primary {
            if let (Some(addr), Some(Ok(detail))) =
                (primary_address, t.details.get(primary).map(|d| d.as_ref()))
            {
                if matches!(detail.report.role, ReportedRole::Primary) {
                    peers_status = self.wire_peers(t, addr, detail, obs).await;
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
        peers_status
    }

    /// Points the primary at `addr` (which answered with `detail`) at the same shard of every
    /// other participant and unlinks participants no longer in the spec.
    async fn wire_peers(
        &mut self,
        t: &ShardTick<'_>,
        addr: &str,
        detail: &NodeDetail,
        obs: &mut Observation,
    ) -> Vec<PeerLinkStatus> {
        let (spec, p, shard, endpoints) = (t.spec, t.p, t.s.plan, t.endpoints);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_endpoints_count_ports_up_from_shard_0() {
        let shard = |index| ShardPlan {
            index,
            name: format!("db-east-{index}"),
            headless_service: String::new(),
            slots: (0, 0),
            pods: Vec::new(),
        };
        let mut p = ParticipantPlan {
            name: "east".into(),
            namespace: "ns".into(),
            cluster: crate::plan::ClusterTarget::Local,
            managed: true,
            zones: Vec::new(),
            replicas: 1,
            endpoint_type: EndpointType::Host,
            endpoint_host: Some(("db.example.com".into(), 7000)),
            source_ranges: Vec::new(),
            region_service: "db-east".into(),
            shards: Vec::new(),
            proxies: 0,
            proxy_name: "db-east-proxy".into(),
        };
        assert_eq!(
            host_endpoint(&p, &shard(0)).as_deref(),
            Some("db.example.com:7000")
        );
        assert_eq!(
            host_endpoint(&p, &shard(3)).as_deref(),
            Some("db.example.com:7003")
        );
        p.endpoint_host = None;
        assert_eq!(host_endpoint(&p, &shard(0)), None);
    }

    #[test]
    fn connected_link_states() {
        for state in ["up", "connected", "online"] {
            assert!(link_connected(state), "{state}");
        }
        for state in ["down", "connecting", "no-address", "", "Up"] {
            assert!(!link_connected(state), "{state}");
        }
    }
}
