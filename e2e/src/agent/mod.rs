//! The node agent: registers Nodes and runs the pods bound to them as local processes.
//!
//! Contract (see `docs/development.md`):
//! - registers `zones × nodes_per_zone` Nodes named `<cluster>-<zone letter>-<i>` labelled with
//!   `topology.kubernetes.io/zone`, `topology.kubernetes.io/region` (the cluster's name) and
//!   `kubernetes.io/hostname`, Ready, with the InternalIP of [`Addressing::node_ip`], and
//!   renews a Lease per node in `kube-node-lease` every `heartbeat_interval`;
//! - runs every pod bound to one of its nodes as processes (`pods`), in a network namespace of
//!   its own on the cluster's pod network when there is one ([`crate::net`]), binds every
//!   pending PersistentVolumeClaim to a directory-backed PersistentVolume (`volumes`), and
//!   gives every Service of type LoadBalancer an ingress address (`lb`; kube-proxy carries its
//!   traffic, or on the shared host the agent forwards TCP to a ready endpoint);
//! - failure injection: [`NodeAgent::kill_container`], [`NodeAgent::stop_heartbeats`] (the node
//!   goes NotReady after the controller manager's grace period; its pods keep running but the
//!   agent stops writing anything about them, like a partitioned kubelet),
//!   [`NodeAgent::resume_heartbeats`], [`NodeAgent::cut_load_balancer`],
//!   [`NodeAgent::heal_load_balancer`] and the region partition
//!   [`NodeAgent::cut_all_load_balancers`] (packet drops with a pod network);
//! - dropping or aborting the agent kills every pod process (SIGKILL to its process group).

mod images;
mod lb;
mod nodes;
mod pods;
mod probes;
pub mod spec;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::Client;
use nix::sys::signal::Signal;
use tokio::task::JoinHandle;

pub use images::{repository_name, Entrypoint, ImageEntry, ImageTable};

use crate::cluster::Addressing;
use crate::{Error, Result};

/// How the agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Cluster name (region label, node name prefix).
    pub cluster: String,
    /// The cluster's loopback ranges.
    pub addressing: Addressing,
    /// Zone label values.
    pub zones: Vec<String>,
    /// Nodes per zone.
    pub nodes_per_zone: usize,
    /// Lease renewal period.
    pub heartbeat_interval: Duration,
    /// Directory for pod working directories, volumes and logs.
    pub dir: PathBuf,
    /// Image → binary table.
    pub images: ImageTable,
    /// Reported as the kubelet version.
    pub kubernetes_version: String,
    /// What pods get as `KUBERNETES_SERVICE_HOST`.
    pub api_host: String,
    /// What pods get as `KUBERNETES_SERVICE_PORT`.
    pub api_port: u16,
    /// The cluster's pod network: every pod gets a network namespace on it (none on the
    /// shared host).
    pub net: Option<Arc<crate::net::ClusterNet>>,
}

/// One node the agent runs.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Zone label.
    pub zone: String,
    /// Index in the cluster (selects its address range).
    pub index: usize,
    /// Its InternalIP.
    pub ip: Ipv4Addr,
}

pub(crate) struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub tx: tokio::sync::watch::Sender<Option<Arc<k8s_openapi::api::core::v1::Pod>>>,
    /// Container name → process id of its running process.
    pub pids: Arc<Mutex<HashMap<String, u32>>>,
    pub task: Option<AbortOnDrop>,
}

pub(crate) struct Shared {
    pub client: Client,
    pub config: AgentConfig,
    pub nodes: Vec<NodeInfo>,
    pub paused: Mutex<HashSet<String>>,
    pub pods: Mutex<HashMap<String, PodEntry>>,
    pub finished: Mutex<HashSet<String>>,
    pub ips: Mutex<IpPool>,
    pub lbs: lb::LbState,
    pub path_env: String,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn is_paused(&self, node: &str) -> bool {
        lock(&self.paused).contains(node)
    }
}

/// Pod addresses in use, per node.
#[derive(Default)]
pub(crate) struct IpPool {
    next: HashMap<usize, u8>,
    used: HashSet<Ipv4Addr>,
}

impl IpPool {
    pub fn allocate(&mut self, addressing: &Addressing, node: usize) -> Option<Ipv4Addr> {
        let start = *self.next.get(&node).unwrap_or(&2);
        let mut m = start;
        loop {
            let ip = addressing.pod_ip(node, m);
            m = if m >= 254 { 2 } else { m + 1 };
            if self.used.insert(ip) {
                self.next.insert(node, m);
                return Some(ip);
            }
            if m == start {
                return None;
            }
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

/// A task handle that aborts the task when dropped.
pub(crate) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running agent.
pub struct NodeAgent {
    shared: Arc<Shared>,
    tasks: Vec<AbortOnDrop>,
}

impl NodeAgent {
    /// Registers the nodes, creates the default StorageClass and starts the pod, volume,
    /// load-balancer and heartbeat loops on the current runtime.
    pub async fn start(client: Client, config: AgentConfig) -> Result<Self> {
        for d in ["pods", "volumes", "logs"] {
            let p = config.dir.join(d);
            std::fs::create_dir_all(&p)
                .map_err(|e| Error::io(format!("create {}", p.display()), e))?;
        }
        let mut nodes = Vec::new();
        for (zi, zone) in config.zones.iter().enumerate() {
            for i in 0..config.nodes_per_zone {
                let index = zi * config.nodes_per_zone + i;
                let letter = zone.rsplit('-').next().unwrap_or(zone);
                nodes.push(NodeInfo {
                    name: format!("{}-{letter}-{i}", config.cluster),
                    zone: zone.clone(),
                    index,
                    ip: config.addressing.node_ip(index),
                });
            }
        }
        let shared = Arc::new(Shared {
            client,
            nodes,
            paused: Mutex::new(HashSet::new()),
            pods: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashSet::new()),
            ips: Mutex::new(IpPool::default()),
            lbs: lb::LbState::default(),
            path_env: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            config,
        });
        for n in &shared.nodes {
            nodes::register(&shared, n).await?;
        }
        volumes::ensure_storage_class(&shared).await?;
        let tasks = vec![
            AbortOnDrop(tokio::spawn(nodes::heartbeat_loop(shared.clone()))),
            AbortOnDrop(tokio::spawn(pods::dispatch_loop(shared.clone()))),
            AbortOnDrop(tokio::spawn(volumes::provisioner_loop(shared.clone()))),
            AbortOnDrop(tokio::spawn(lb::service_loop(shared.clone()))),
        ];
        Ok(NodeAgent { shared, tasks })
    }

    /// The nodes it runs.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.shared.nodes
    }

    /// The process id of a running container (the first container when `container` is None).
    pub fn container_pid(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Option<u32> {
        let pods = lock(&self.shared.pods);
        let e = pods
            .values()
            .find(|e| e.namespace == namespace && e.name == pod && !e.tx.is_closed())?;
        let pids = lock(&e.pids);
        match container {
            Some(c) => pids.get(c).copied(),
            None => {
                let mut v: Vec<(&String, &u32)> = pids.iter().collect();
                v.sort();
                v.first().map(|(_, p)| **p)
            }
        }
    }

    /// SIGKILLs a container's process group, as a crash would; returns the pid killed.
    pub fn kill_container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<u32> {
        let pid = self
            .container_pid(namespace, pod, container)
            .ok_or_else(|| {
                Error::Invalid(format!("no running process for pod {namespace}/{pod}"))
            })?;
        pods::signal_group(pid, Signal::SIGKILL)?;
        Ok(pid)
    }

    /// Stops renewing the node's Lease and status and freezes every write about its pods.
    pub fn stop_heartbeats(&self, node: &str) -> Result<()> {
        if self.shared.node(node).is_none() {
            return Err(Error::Invalid(format!("unknown node {node}")));
        }
        lock(&self.shared.paused).insert(node.to_string());
        Ok(())
    }

    /// Undoes [`NodeAgent::stop_heartbeats`].
    pub fn resume_heartbeats(&self, node: &str) {
        lock(&self.shared.paused).remove(node);
    }

    /// The loopback ingress address of a LoadBalancer Service, once assigned.
    pub fn load_balancer_ip(&self, namespace: &str, service: &str) -> Option<Ipv4Addr> {
        self.shared.lbs.ip_of(namespace, service)
    }

    /// Nothing reaches the Service's ingress address until healed: packets to it are dropped
    /// (on the shared host, its forwarder closes open connections and refuses new ones).
    pub fn cut_load_balancer(&self, namespace: &str, service: &str) {
        self.set_load_balancer_cut(namespace, service, true);
    }

    /// Undoes [`NodeAgent::cut_load_balancer`].
    pub fn heal_load_balancer(&self, namespace: &str, service: &str) {
        self.set_load_balancer_cut(namespace, service, false);
    }

    fn set_load_balancer_cut(&self, namespace: &str, service: &str, cut: bool) {
        match (
            &self.shared.config.net,
            self.load_balancer_ip(namespace, service),
        ) {
            (Some(_), Some(ip)) => self.set_packet_cut(crate::net::Cut::Address(ip), cut),
            _ => self.shared.lbs.set_cut(namespace, service, cut),
        }
    }

    /// Partitions the region (this cluster) from every other one: packets between its
    /// addresses and other clusters' are dropped (on the shared host, every LoadBalancer of
    /// the cluster stops forwarding).
    pub fn cut_all_load_balancers(&self) {
        self.set_region_cut(true);
    }

    /// Heals the partition of [`NodeAgent::cut_all_load_balancers`].
    pub fn heal_all_load_balancers(&self) {
        self.set_region_cut(false);
    }

    fn set_region_cut(&self, cut: bool) {
        match &self.shared.config.net {
            Some(_) => self.set_packet_cut(crate::net::Cut::Region, cut),
            None => self.shared.lbs.set_cut_all(cut),
        }
    }

    /// Adds or removes a drop rule of the pod network (panics when `nft` refuses: a test
    /// cannot go on with a partition it did not get).
    fn set_packet_cut(&self, what: crate::net::Cut, cut: bool) {
        let Some(net) = &self.shared.config.net else {
            return;
        };
        let done = if cut {
            net.cut(what.clone())
        } else {
            net.heal(&what)
        };
        if let Err(e) = done {
            panic!(
                "{} {what:?} in {}: {e}",
                if cut { "cut" } else { "heal" },
                self.shared.config.cluster
            );
        }
    }

    /// Log files of the pods it has run (for failure reports).
    pub fn log_files(&self) -> Vec<PathBuf> {
        let dir = self.shared.config.dir.join("logs");
        let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Stops the loops and kills every pod process, waiting briefly for them to go.
    pub async fn shutdown(mut self) {
        self.tasks.clear();
        let entries: Vec<PodEntry> = lock(&self.shared.pods).drain().map(|(_, v)| v).collect();
        let pids: Vec<u32> = entries
            .iter()
            .flat_map(|e| lock(&e.pids).values().copied().collect::<Vec<_>>())
            .collect();
        drop(entries);
        for pid in &pids {
            let _ = pods::signal_group(*pid, Signal::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|p| crate::process::pid_alive(*p))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.lbs.clear();
    }

    /// Stops everything without waiting (for `Drop`).
    pub fn abort(mut self) {
        self.tasks.clear();
        let entries: Vec<PodEntry> = lock(&self.shared.pods).drain().map(|(_, v)| v).collect();
        for e in &entries {
            for pid in lock(&e.pids).values() {
                let _ = pods::signal_group(*pid, Signal::SIGKILL);
            }
        }
        self.shared.lbs.clear();
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.tasks.clear();
        let entries: Vec<PodEntry> = lock(&self.shared.pods).drain().map(|(_, v)| v).collect();
        for e in &entries {
            for pid in lock(&e.pids).values() {
                let _ = pods::signal_group(*pid, Signal::SIGKILL);
            }
        }
        self.shared.lbs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_pool_hands_out_distinct_addresses_and_reuses_released_ones() {
        let a = Addressing::new(0).expect("addressing");
        let mut pool = IpPool::default();
        let x = pool.allocate(&a, 0).expect("x");
        let y = pool.allocate(&a, 0).expect("y");
        assert_ne!(x, y);
        assert_eq!(x, Ipv4Addr::new(127, 10, 1, 2));
        let z = pool.allocate(&a, 1).expect("z");
        assert_eq!(z, Ipv4Addr::new(127, 10, 2, 2));
        for _ in 0..251 {
            let _ = pool.allocate(&a, 0);
        }
        assert!(pool.allocate(&a, 0).is_none());
        pool.release(x);
        assert_eq!(pool.allocate(&a, 0), Some(x));
    }
}
