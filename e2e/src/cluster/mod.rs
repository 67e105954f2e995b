//! One local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler as processes, plus the node agent.
//!
//! Contract:
//! - everything listens on 127.0.0.1 (free ports) and every address the cluster hands out is in
//!   its own loopback range `127.<10+index>.0.0/16` ([`Addressing`]), so several clusters run
//!   side by side without sharing anything;
//! - the run directory holds the certificates, the admin kubeconfig (`kubeconfig`), etcd's
//!   data, one log per component (`logs/<component>.log`) and the node agent's pod
//!   directories;
//! - [`LocalCluster::start`] returns once the apiserver answers `/readyz`, the controller
//!   manager has created the `default` ServiceAccount and every node is registered and Ready;
//! - [`LocalCluster::stop`] (or dropping the value) stops the pods, then the components by
//!   process id in reverse order; when dropped during a panic the tail of every log is
//!   printed and the run directory is kept, otherwise it is removed unless `AADB_E2E_KEEP` is
//!   set.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::agent::{AgentConfig, ImageTable, NodeAgent};
use crate::bins::Binaries;
use crate::certs::{CertPair, ClusterCerts};
use crate::process::{free_port, tail, Component};
use crate::{Error, Result};

mod addressing;
pub use addressing::Addressing;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Cluster name; also the `topology.kubernetes.io/region` label of its nodes.
    pub name: String,
    /// Selects the loopback range; distinct for clusters that run side by side.
    pub index: u8,
    /// Zone label values; one node per zone per `nodes_per_zone`.
    pub zones: Vec<String>,
    /// Nodes in each zone.
    pub nodes_per_zone: usize,
    /// The controller manager's `--node-monitor-grace-period`: how long a node may go without
    /// heartbeats before it is marked NotReady.
    pub node_monitor_grace: Duration,
    /// How often the agent renews each node's Lease.
    pub heartbeat_interval: Duration,
    /// Image to local binary table of the node agent.
    pub images: ImageTable,
    /// Start the node agent (nodes and pods); without it the cluster has no nodes.
    pub agent: bool,
    /// Keep the run directory when the cluster stops (it is always kept after a failure).
    pub keep_dir: bool,
}

impl ClusterSpec {
    /// Defaults: zones `<name>-a`, `<name>-b`, `<name>-c`, one node each, a 12 s node grace
    /// period, 2 s heartbeats, the default image table, with the node agent.
    pub fn new(name: &str, index: u8) -> Self {
        ClusterSpec {
            name: name.to_string(),
            index,
            zones: ["a", "b", "c"]
                .iter()
                .map(|z| format!("{name}-{z}"))
                .collect(),
            nodes_per_zone: 1,
            node_monitor_grace: Duration::from_secs(12),
            heartbeat_interval: Duration::from_secs(2),
            images: ImageTable::with_defaults(),
            agent: true,
            keep_dir: false,
        }
    }

    /// Sets `count` zones named `<name>-a`, `<name>-b`, ….
    pub fn zones(mut self, count: usize) -> Self {
        self.zones = (0..count)
            .map(|i| {
                let letter = char::from(b'a' + u8::try_from(i % 26).unwrap_or(0));
                format!("{}-{letter}", self.name)
            })
            .collect();
        self
    }
}

/// A running local cluster.
pub struct LocalCluster {
    spec: ClusterSpec,
    addressing: Addressing,
    dir: PathBuf,
    kubeconfig: PathBuf,
    api_port: u16,
    certs: ClusterCerts,
    components: Vec<Component>,
    client: Client,
    agent: Option<NodeAgent>,
    /// The cluster's pod network (absent in the shared-host mode).
    net: Option<std::sync::Arc<crate::net::ClusterNet>>,
    stopped: bool,
    failed: bool,
}

/// What the second half of the start-up needs from the first.
struct Boot {
    bins: Binaries,
    logs: PathBuf,
    paths: crate::certs::CertPaths,
    kcm_kubeconfig: PathBuf,
    sched_kubeconfig: PathBuf,
    sched_config: PathBuf,
}

const API_READY_TIMEOUT: Duration = Duration::from_secs(120);

impl LocalCluster {
    /// Starts a cluster in `dir` (created; should be empty).
    pub async fn start(spec: ClusterSpec, dir: &Path) -> Result<Self> {
        // Pods run in directories of their own: every path handed to them must be absolute.
        let dir = &std::path::absolute(dir)
            .map_err(|e| Error::io(format!("resolve {}", dir.display()), e))?;
        let bins = Binaries::locate()?;
        let mode = crate::net::mode();
        let addressing = Addressing::for_mode(spec.index, mode)?;
        let logs = dir.join("logs");
        let pki = dir.join("pki");
        for d in [dir, &logs, &pki] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("create {}", d.display()), e))?;
        }
        let net = match mode {
            crate::net::NetworkMode::Pods => {
                let nodes = spec.zones.len() * spec.nodes_per_zone;
                Some(std::sync::Arc::new(crate::net::ClusterNet::attach(
                    spec.index, nodes,
                )?))
            }
            crate::net::NetworkMode::SharedHost => None,
        };
        let host = addressing.host_ip();
        let certs = ClusterCerts::generate(addressing.first_service_ip(), host)?;
        let paths = certs.write(&pki)?;
        let lo = Ipv4Addr::LOCALHOST;
        let etcd_port = free_port(lo)?;
        let etcd_peer_port = free_port(lo)?;
        let api_port = free_port(host)?;
        let server = format!("https://{host}:{api_port}");

        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &spec.name, &server, &certs, &certs.admin)?;
        let kcm_kubeconfig = pki.join("controller-manager.kubeconfig");
        write_kubeconfig(
            &kcm_kubeconfig,
            &spec.name,
            &server,
            &certs,
            &certs.controller_manager,
        )?;
        let sched_kubeconfig = pki.join("scheduler.kubeconfig");
        write_kubeconfig(
            &sched_kubeconfig,
            &spec.name,
            &server,
            &certs,
            &certs.scheduler,
        )?;
        let sched_config = pki.join("scheduler.json");
        let sched_json = serde_json::json!({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": { "kubeconfig": sched_kubeconfig },
            "leaderElection": { "leaderElect": false },
        });
        std::fs::write(&sched_config, serde_json::to_vec_pretty(&sched_json)?)
            .map_err(|e| Error::io("write scheduler config", e))?;

        let mut components = Vec::new();
        let p = |x: &Path| x.display().to_string();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            format!("--name={}", spec.name),
            format!("--data-dir={}", p(&dir.join("etcd"))),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={}={peer_url}", spec.name),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
            "--quota-backend-bytes=2147483648".into(),
        ];
        components.push(Component::spawn(
            "etcd",
            &bins.path("etcd"),
            &etcd_args,
            &[],
            &logs.join("etcd.log"),
        )?);

        let mut api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={host}"),
            format!("--advertise-address={host}"),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", p(&paths.apiserver_cert)),
            format!("--tls-private-key-file={}", p(&paths.apiserver_key)),
            format!("--client-ca-file={}", p(&paths.client_ca)),
            "--authorization-mode=Node,RBAC".into(),
            format!("--service-account-issuer={server}"),
            format!("--service-account-key-file={}", p(&paths.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&paths.sa_key)),
            format!("--service-cluster-ip-range={}", addressing.service_cidr()),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        if net.is_none() {
            // On the shared host there is no kube-proxy: the `kubernetes` Service needs no
            // endpoints (the reconciler also refuses a loopback advertise address).
            api_args.push("--endpoint-reconciler-type=none".into());
        }
        components.push(Component::spawn(
            "kube-apiserver",
            &bins.path("kube-apiserver"),
            &api_args,
            &[],
            &logs.join("kube-apiserver.log"),
        )?);

        let config = Kubeconfig::read_from(&kubeconfig)?;
        let client_config =
            kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(client_config)?;

        let mut cluster = LocalCluster {
            spec,
            addressing,
            dir: dir.to_path_buf(),
            kubeconfig,
            api_port,
            certs,
            components,
            client,
            agent: None,
            net,
            stopped: false,
            failed: false,
        };
        let boot = Boot {
            bins,
            logs,
            paths,
            kcm_kubeconfig,
            sched_kubeconfig,
            sched_config,
        };
        if let Err(e) = cluster.boot(boot).await {
            cluster.failed = true;
            eprintln!(
                "cluster {} did not start: {e}; run directory kept at {}{}",
                cluster.spec.name,
                cluster.dir.display(),
                cluster.log_report()
            );
            return Err(e);
        }
        Ok(cluster)
    }

    async fn boot(&mut self, b: Boot) -> Result<()> {
        let Boot {
            bins,
            logs,
            paths,
            kcm_kubeconfig,
            sched_kubeconfig,
            sched_config,
        } = b;
        let p = |x: &Path| x.display().to_string();
        self.wait_api_ready().await?;

        let grace = self.spec.node_monitor_grace.as_secs().max(2);
        let kcm_args = vec![
            format!("--kubeconfig={}", p(&kcm_kubeconfig)),
            format!("--authentication-kubeconfig={}", p(&kcm_kubeconfig)),
            format!("--authorization-kubeconfig={}", p(&kcm_kubeconfig)),
            format!("--service-account-private-key-file={}", p(&paths.sa_key)),
            format!("--root-ca-file={}", p(&paths.serving_ca)),
            "--use-service-account-credentials=true".into(),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            "--controllers=*".into(),
            format!("--cluster-name={}", self.spec.name),
            format!("--node-monitor-grace-period={grace}s"),
            "--node-monitor-period=1s".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        self.components.push(Component::spawn(
            "kube-controller-manager",
            &bins.path("kube-controller-manager"),
            &kcm_args,
            &[],
            &logs.join("kube-controller-manager.log"),
        )?);
        let sched_args = vec![
            format!("--config={}", p(&sched_config)),
            format!("--authentication-kubeconfig={}", p(&sched_kubeconfig)),
            format!("--authorization-kubeconfig={}", p(&sched_kubeconfig)),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        self.components.push(Component::spawn(
            "kube-scheduler",
            &bins.path("kube-scheduler"),
            &sched_args,
            &[],
            &logs.join("kube-scheduler.log"),
        )?);
        self.wait_default_service_account().await?;

        if self.spec.agent {
            let config = AgentConfig {
                cluster: self.spec.name.clone(),
                addressing: self.addressing,
                zones: self.spec.zones.clone(),
                nodes_per_zone: self.spec.nodes_per_zone,
                heartbeat_interval: self.spec.heartbeat_interval,
                dir: self.dir.join("agent"),
                images: self.spec.images.clone(),
                kubernetes_version: crate::bins::pinned_kubernetes_version().to_string(),
                // With pod networking, pods reach the apiserver as on a real cluster: through
                // the `kubernetes` Service, which kube-proxy sends to the apiserver.
                api_host: match &self.net {
                    Some(_) => self.addressing.first_service_ip().to_string(),
                    None => "127.0.0.1".into(),
                },
                api_port: if self.net.is_some() {
                    443
                } else {
                    self.api_port
                },
                net: self.net.clone(),
            };
            let agent = NodeAgent::start(self.client.clone(), config).await?;
            self.agent = Some(agent);
            self.wait_nodes_ready().await?;
            if let Some(net) = self.net.clone() {
                self.start_kube_proxy(&bins, &logs, &net)?;
            }
        }
        Ok(())
    }

    /// Runs kube-proxy (nftables mode) in the cluster's network namespace, where every pod's
    /// packets pass, acting for the cluster's first node.
    fn start_kube_proxy(
        &mut self,
        bins: &Binaries,
        logs: &Path,
        net: &crate::net::ClusterNet,
    ) -> Result<()> {
        let pki = self.dir.join("pki");
        let kubeconfig = pki.join("kube-proxy.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &self.spec.name,
            &self.server_url(),
            &self.certs,
            &self.certs.admin,
        )?;
        let first_node = {
            let zone = self.spec.zones.first().cloned().unwrap_or_default();
            let letter = zone.rsplit('-').next().unwrap_or(&zone).to_string();
            format!("{}-{letter}-0", self.spec.name)
        };
        let ranges = net.ranges();
        let config = serde_json::json!({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": { "kubeconfig": kubeconfig },
            "hostnameOverride": first_node,
            "clusterCIDR": ranges.pod_cidr(),
            "nodePortAddresses": [ranges.pod_cidr()],
            // Apply every Service and endpoint change at once, not at most once a second.
            "nftables": { "minSyncPeriod": "0s" },
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            // Leave the kernel's connection-tracking limits alone (a namespace cannot set them).
            "conntrack": { "maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s" },
        });
        let config_path = pki.join("kube-proxy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)
            .map_err(|e| Error::io("write the kube-proxy config", e))?;
        let mut argv = crate::net::ClusterNet::exec_prefix(net.namespace());
        let program = PathBuf::from(argv.remove(0));
        argv.push(bins.path("kube-proxy").display().to_string());
        argv.push(format!("--config={}", config_path.display()));
        argv.push("--v=1".into());
        self.components.push(Component::spawn(
            "kube-proxy",
            &program,
            &argv,
            &[],
            &logs.join("kube-proxy.log"),
        )?);
        Ok(())
    }

    async fn wait_api_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            for c in &mut self.components {
                c.check_running()?;
            }
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::Invalid(format!("readyz request: {e}")))?;
            if let Ok(body) = self.client.request_text(req).await {
                if body.trim() == "ok" {
                    return Ok(());
                }
            }
            if started.elapsed() > API_READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("kube-apiserver /readyz of {}", self.spec.name),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_default_service_account(&mut self) -> Result<()> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "default");
        let started = Instant::now();
        loop {
            for c in &mut self.components {
                c.check_running()?;
            }
            if let Ok(Some(_)) = api.get_opt("default").await {
                return Ok(());
            }
            if started.elapsed() > API_READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("default ServiceAccount in {}", self.spec.name),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_nodes_ready(&mut self) -> Result<()> {
        let want = self.spec.zones.len() * self.spec.nodes_per_zone;
        let api: Api<Node> = Api::all(self.client.clone());
        let started = Instant::now();
        loop {
            if let Ok(list) = api.list(&Default::default()).await {
                let ready = list.items.iter().filter(|n| node_is_ready(n)).count();
                if ready >= want {
                    return Ok(());
                }
            }
            if started.elapsed() > API_READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("{want} Ready nodes in {}", self.spec.name),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client with the admin identity.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL.
    pub fn server_url(&self) -> String {
        format!("https://{}:{}", self.addressing.host_ip(), self.api_port)
    }

    /// The cluster's pod network (absent in the shared-host mode).
    pub fn network(&self) -> Option<&crate::net::ClusterNet> {
        self.net.as_deref()
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What it was started with.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Its loopback addressing.
    pub fn addressing(&self) -> Addressing {
        self.addressing
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificates (to issue more client identities).
    pub fn certs(&self) -> &ClusterCerts {
        &self.certs
    }

    /// The node agent (absent when the spec disabled it).
    pub fn agent(&self) -> Result<&NodeAgent> {
        self.agent
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("cluster {} runs no node agent", self.spec.name)))
    }

    /// `(name, pid)` of every control-plane process.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.components
            .iter()
            .map(|c| (c.name().to_string(), c.pid()))
            .collect()
    }

    /// Writes a kubeconfig for another identity from the cluster's client CA.
    pub fn write_kubeconfig_for(&self, path: &Path, user: &CertPair) -> Result<()> {
        write_kubeconfig(path, &self.spec.name, &self.server_url(), &self.certs, user)
    }

    /// Fails if a control-plane process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for c in &mut self.components {
            c.check_running()?;
        }
        Ok(())
    }

    /// The tail of every component's log and the node agent's pod logs, for a failure
    /// report.
    pub fn log_report(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<PathBuf> = self
            .components
            .iter()
            .map(|c| c.log_path().to_path_buf())
            .collect();
        if let Some(a) = &self.agent {
            logs.extend(a.log_files());
        }
        for log in logs {
            out.push_str(&format!(
                "\n===== [{}] {} (tail) =====\n{}\n",
                self.spec.name,
                log.display(),
                tail(&log, 6000)
            ));
        }
        out
    }

    /// Stops the pods, then every component in reverse start order (the run directory is
    /// removed unless the spec keeps it or `AADB_E2E_KEEP` is set).
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
        // All at once: each component's own graceful shutdown then overlaps.
        for c in &self.components {
            let _ = crate::process::signal(c.pid(), nix::sys::signal::Signal::SIGTERM);
        }
        while let Some(mut c) = self.components.pop() {
            c.stop(Duration::from_secs(5));
        }
        self.net = None;
        crate::disks::unmount_under(&self.dir);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let failed = self.failed || std::thread::panicking();
        if std::thread::panicking() {
            eprintln!(
                "cluster {} failed; run directory kept at {}{}",
                self.spec.name,
                self.dir.display(),
                self.log_report()
            );
        }
        if let Some(agent) = self.agent.take() {
            agent.abort();
        }
        while let Some(mut c) = self.components.pop() {
            c.stop(Duration::from_secs(2));
        }
        self.net = None;
        crate::disks::unmount_under(&self.dir);
        if !failed && !self.spec.keep_dir && std::env::var_os("AADB_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether a Node's Ready condition is True.
pub fn node_is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Writes a kubeconfig with embedded certificates for `user` (JSON, which every kubeconfig
/// reader accepts).
pub fn write_kubeconfig(
    path: &Path,
    cluster: &str,
    server: &str,
    certs: &ClusterCerts,
    user: &CertPair,
) -> Result<()> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster,
            "cluster": {
                "server": server,
                "certificate-authority-data": b64(&certs.serving_ca.cert_pem),
            }
        }],
        "users": [{
            "name": format!("{cluster}-user"),
            "user": {
                "client-certificate-data": b64(&user.cert_pem),
                "client-key-data": b64(&user.key_pem),
            }
        }],
        "contexts": [{
            "name": cluster,
            "context": { "cluster": cluster, "user": format!("{cluster}-user"), "namespace": "default" }
        }],
        "current-context": cluster,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_keeps_clusters_apart() {
        let a = Addressing::new(0).expect("a");
        let b = Addressing::new(1).expect("b");
        assert_eq!(a.node_ip(0), Ipv4Addr::new(127, 10, 1, 1));
        assert_eq!(a.pod_ip(2, 7), Ipv4Addr::new(127, 10, 3, 7));
        assert_eq!(b.load_balancer_ip(2), Ipv4Addr::new(127, 11, 0, 2));
        assert_eq!(b.service_cidr(), "127.11.240.0/20");
        assert!(Addressing::new(100).is_err());
    }

    #[test]
    fn zones_are_named_after_the_cluster() {
        let s = ClusterSpec::new("east", 0).zones(2);
        assert_eq!(s.zones, vec!["east-a", "east-b"]);
    }
}
