//! The "cloud" of the local cluster: Services of type LoadBalancer.
//!
//! Contract: each LoadBalancer Service gets an ingress address in
//! `status.loadBalancer.ingress` ([`crate::cluster::Addressing::load_balancer_ip`]). With pod
//! networking that is all: kube-proxy sends the address's traffic to the Service's endpoints,
//! and partitions drop packets ([`crate::net::Cut`]). On the shared host the address is a
//! loopback one, and for each TCP port the agent listens on `<ingress>:<port>`
//! that forwards every connection to a ready pod selected by the Service, at the port's
//! `targetPort` (a number or a container port name), round robin. The pods are read
//! directly: EndpointSlices cannot hold loopback addresses (the apiserver refuses them), so
//! the endpoint-slice controller publishes nothing for these pods. A connection arriving
//! while no pod is ready is closed. A cut Service (region partition) closes its open connections
//! and every new one until healed. A Service that stops being a LoadBalancer, or is deleted,
//! loses its listeners and address.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{lock, AbortOnDrop, Shared};

struct Lb {
    ip: Ipv4Addr,
    ports: Vec<(String, u16)>,
    cut: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
    /// Dropping the entry stops its listeners.
    _listeners: Vec<AbortOnDrop>,
}

/// Load balancers of one agent.
#[derive(Default)]
pub(crate) struct LbState {
    inner: Mutex<HashMap<String, Lb>>,
    cut_all: AtomicBool,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl LbState {
    pub fn ip_of(&self, ns: &str, name: &str) -> Option<Ipv4Addr> {
        lock(&self.inner).get(&key(ns, name)).map(|l| l.ip)
    }

    pub fn set_cut(&self, ns: &str, name: &str, cut: bool) {
        if let Some(l) = lock(&self.inner).get(&key(ns, name)) {
            l.cut.store(cut, Ordering::SeqCst);
            l.cut_tx.send_modify(|g| *g += 1);
        }
    }

    pub fn set_cut_all(&self, cut: bool) {
        self.cut_all.store(cut, Ordering::SeqCst);
        for l in lock(&self.inner).values() {
            l.cut.store(cut, Ordering::SeqCst);
            l.cut_tx.send_modify(|g| *g += 1);
        }
    }

    pub fn clear(&self) {
        lock(&self.inner).clear();
    }
}

fn is_lb(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|sp| sp.type_.as_deref())
        .is_some_and(|t| t == "LoadBalancer")
}

fn tcp_ports(s: &Service) -> Vec<(String, u16)> {
    s.spec
        .as_ref()
        .and_then(|sp| sp.ports.as_ref())
        .map(|ps| {
            ps.iter()
                .filter(|p| p.protocol.as_deref().is_none_or(|x| x == "TCP"))
                .filter_map(|p| {
                    Some((
                        p.name.clone().unwrap_or_default(),
                        u16::try_from(p.port).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn allocate_ip(
    shared: &Shared,
    taken: &HashMap<String, Lb>,
    wanted: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let used: Vec<Ipv4Addr> = taken.values().map(|l| l.ip).collect();
    if let Some(w) = wanted {
        if !used.contains(&w)
            && (2..=254).any(|m| shared.config.addressing.load_balancer_ip(m) == w)
        {
            return Some(w);
        }
    }
    (2..=254u8)
        .map(|m| shared.config.addressing.load_balancer_ip(m))
        .find(|ip| !used.contains(ip))
}

/// Watches Services and keeps the load balancers in line with them, until aborted.
pub(crate) async fn service_loop(shared: Arc<Shared>) {
    let api: Api<Service> = Api::all(shared.client.clone());
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                reconcile(&shared, &s).await
            }
            Ok(watcher::Event::Delete(s)) => {
                let k = key(
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default(),
                );
                lock(&shared.lbs.inner).remove(&k);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("service watch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn reconcile(shared: &Arc<Shared>, s: &Service) {
    let (Some(ns), Some(name)) = (s.metadata.namespace.clone(), s.metadata.name.clone()) else {
        return;
    };
    let k = key(&ns, &name);
    if !is_lb(s) || s.metadata.deletion_timestamp.is_some() {
        lock(&shared.lbs.inner).remove(&k);
        return;
    }
    let ports = tcp_ports(s);
    let reported: Option<Ipv4Addr> = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    let ip = {
        let mut map = lock(&shared.lbs.inner);
        let same = map.get(&k).is_some_and(|l| l.ports == ports);
        if !same {
            let previous = map.remove(&k).map(|l| l.ip);
            let Some(ip) = allocate_ip(shared, &map, previous.or(reported)) else {
                tracing::warn!("no free load balancer address for {k}");
                return;
            };
            let cut = Arc::new(AtomicBool::new(shared.lbs.cut_all.load(Ordering::SeqCst)));
            let (cut_tx, _) = watch::channel(0u64);
            let rr = Arc::new(AtomicUsize::new(0));
            // With pod networking kube-proxy carries the traffic; the agent only assigns the
            // address, as MetalLB or a cloud's controller does.
            let forwarded = if shared.config.net.is_some() {
                Vec::new()
            } else {
                ports.clone()
            };
            let listeners = forwarded
                .iter()
                .map(|(pname, port)| {
                    AbortOnDrop(tokio::spawn(listen(
                        shared.clone(),
                        ns.clone(),
                        name.clone(),
                        pname.clone(),
                        SocketAddr::new(ip.into(), *port),
                        cut.clone(),
                        cut_tx.subscribe(),
                        rr.clone(),
                    )))
                })
                .collect();
            map.insert(
                k.clone(),
                Lb {
                    ip,
                    ports: ports.clone(),
                    cut,
                    cut_tx,
                    _listeners: listeners,
                },
            );
        }
        match map.get(&k) {
            Some(l) => l.ip,
            None => return,
        }
    };
    if reported != Some(ip) {
        let api: Api<Service> = Api::namespaced(shared.client.clone(), &ns);
        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!("service {k} status: {e}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn listen(
    shared: Arc<Shared>,
    ns: String,
    svc: String,
    port_name: String,
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    cut_rx: watch::Receiver<u64>,
    rr: Arc<AtomicUsize>,
) {
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::debug!("load balancer {ns}/{svc} listening on {addr}");
                break l;
            }
            Err(e) => {
                tracing::warn!("load balancer {ns}/{svc} bind {addr}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(conn);
            continue;
        }
        let shared = shared.clone();
        let (ns, svc, port_name) = (ns.clone(), svc.clone(), port_name.clone());
        let (cut, mut cut_rx, rr) = (cut.clone(), cut_rx.clone(), rr.clone());
        tokio::spawn(async move {
            let Some(target) = pick_endpoint(&shared, &ns, &svc, &port_name, &rr).await else {
                tracing::debug!(
                    "load balancer {ns}/{svc}: no ready endpoint for port {port_name:?}"
                );
                return;
            };
            let Ok(Ok(mut upstream)) =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await
            else {
                tracing::debug!("load balancer {ns}/{svc}: cannot reach {target}");
                return;
            };
            let mut conn = conn;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
                _ = async {
                    loop {
                        if cut_rx.changed().await.is_err() || cut.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                } => {}
            }
        });
    }
}

async fn pick_endpoint(
    shared: &Shared,
    ns: &str,
    svc: &str,
    port_name: &str,
    rr: &AtomicUsize,
) -> Option<SocketAddr> {
    let services: Api<Service> = Api::namespaced(shared.client.clone(), ns);
    let service = match services.get(svc).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("service {ns}/{svc}: {e}");
            return None;
        }
    };
    let spec = service.spec?;
    let selector = spec.selector.filter(|s| !s.is_empty())?;
    let target = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.clone().unwrap_or_default() == port_name)
        .map(|p| p.target_port.clone().unwrap_or(IntOrString::Int(p.port)))?;
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let list = match pods
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("pods of {ns}/{svc}: {e}");
            return None;
        }
    };
    let mut candidates: Vec<SocketAddr> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && crate::pod_ready(p))
        .filter_map(|p| {
            let ip: Ipv4Addr = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            // Never forward outside loopback.
            if !ip.is_loopback() {
                return None;
            }
            let port = match &target {
                IntOrString::Int(i) => u16::try_from(*i).ok()?,
                IntOrString::String(name) => p
                    .spec
                    .as_ref()?
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())?,
            };
            Some(SocketAddr::new(ip.into(), port))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    candidates.sort();
    let i = rr.fetch_add(1, Ordering::Relaxed) % candidates.len();
    candidates.get(i).copied()
}
