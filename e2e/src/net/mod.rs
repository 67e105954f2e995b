//! Pod networking of the local plane: network namespaces, veth pairs, a bridge per cluster,
//! routes between clusters, and packet-drop failure injection.
//!
//! Contract:
//! - [`mode`] is [`NetworkMode::Pods`] when the process may manage network namespaces (root or
//!   `CAP_NET_ADMIN`, with `ip` and `nft` installed), else [`NetworkMode::SharedHost`], announced
//!   in one line. `AADB_E2E_NETWORK=host` forces the shared-host mode, `=pods` requires pods.
//! - Addresses (all private, used only on links this module creates; nothing routes them off
//!   the machine): the host has [`HOST_IP`] on the link `aadb-fabric` to the namespace
//!   `aadb-fabric`, which routes between clusters. Cluster `c` has the namespace
//!   `aadb-c<c>-<pid>` (the "node network" every node of the cluster shares, where its
//!   kube-proxy runs) with a bridge `cbr0` carrying the pod range `10.<128+c>.0.0/17` (gateway
//!   `.0.1`, node `n`'s address `10.<128+c>.<n+1>.1`, its pods `10.<128+c>.<n+1>.<m>`), Service
//!   cluster IPs in `10.<128+c>.240.0/20` and LoadBalancer addresses in `10.<128+c>.200.0/24`.
//!   The host routes each cluster's `/16` and its uplink `10.127.<c+1>.0/24` to the fabric,
//!   which routes them to the cluster's namespace (uplink address `10.127.<c+1>.2`). A range
//!   that holds a name server of the host or overlaps one of its routes or addresses is
//!   refused with an error, so the pod network never hides a real network.
//! - Every pod gets the namespace `aadb-c<c>-<pid>-<seq>`, whose `eth0` is a veth on `cbr0`.
//! - Failure injection adds `drop` rules to the table `inet aadb` of the cluster's namespace,
//!   which sees every packet of its pods (routed, and bridged through br_netfilter).
//! - Cleanup: dropping a [`ClusterNet`] deletes its pods' and its own namespaces (their links,
//!   routes and rules go with them) and the fabric once no cluster uses it. Every
//!   [`ClusterNet::attach`] first deletes what processes that are gone left behind, so a
//!   crashed harness leaves nothing once the next one starts; [`leftovers`] counts what exists.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{Error, Result};

mod host;
use host::*;
pub use host::{leftovers, sweep_stale, Leftovers};

/// How pods get their network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// Every pod in its own network namespace on a bridge of its cluster.
    Pods,
    /// Pods share the host's network; each gets a loopback address of its own.
    SharedHost,
}

/// The host's address on the fabric link: what pods reach the apiservers at.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 127, 0, 1);
/// The fabric's address on the host link.
const FABRIC_HOST_SIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 127, 0, 2);
const FABRIC_NS: &str = "aadb-fabric";
const HOST_LINK: &str = "aadb-fabric";
/// Every cluster's addresses (used in drop rules inside namespaces; the host routes each
/// cluster's own `/16` only).
const ALL_CLUSTERS: &str = "10.128.0.0/9";
const NETNS_DIR: &str = "/run/netns";
const BRIDGE: &str = "cbr0";

/// The network mode of this process (decided once).
pub fn mode() -> NetworkMode {
    static MODE: OnceLock<NetworkMode> = OnceLock::new();
    *MODE.get_or_init(|| {
        let forced = std::env::var("AADB_E2E_NETWORK").unwrap_or_default();
        if forced == "host" {
            return NetworkMode::SharedHost;
        }
        match can_manage_namespaces() {
            Ok(()) => NetworkMode::Pods,
            Err(why) if forced == "pods" => {
                panic!("AADB_E2E_NETWORK=pods, but pods cannot get their own network: {why}")
            }
            Err(why) => {
                eprintln!(
                    "aadb-e2e: {why}, so pods share the host's network (shared-host mode: loopback addresses, no kube-proxy)"
                );
                NetworkMode::SharedHost
            }
        }
    })
}

/// An IPv4 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prefix {
    addr: u32,
    len: u32,
}

impl Prefix {
    fn parse(text: &str) -> Option<Prefix> {
        let (a, len) = match text.split_once('/') {
            Some((a, l)) => (a, l.parse().ok()?),
            None => (text, 32),
        };
        let addr: Ipv4Addr = a.parse().ok()?;
        (len <= 32).then_some(Prefix {
            addr: u32::from(addr),
            len,
        })
    }

    fn mask(len: u32) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }

    fn overlaps(&self, other: &Prefix) -> bool {
        let m = Self::mask(self.len.min(other.len));
        self.addr & m == other.addr & m
    }
}

/// Fails when `cidr` holds a name server of the host or overlaps a route or address the host
/// already has (other than this module's), so the pod network never hides a real network.
fn check_unused(cidr: &str) -> Result<()> {
    let Some(mine) = Prefix::parse(cidr) else {
        return Err(Error::Invalid(format!("{cidr} is not a prefix")));
    };
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<String> = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|x| x.trim().to_string())
        .collect();
    let routes = ip(&["-4", "-o", "route", "show", "table", "all"]).unwrap_or_default();
    let addrs = ip(&["-4", "-o", "addr", "show"]).unwrap_or_default();
    let mut used: Vec<String> = servers;
    for l in routes.lines().filter(|l| !l.contains(HOST_LINK)) {
        let mut words = l.split_whitespace();
        let first = match words.next() {
            Some("local" | "unicast" | "broadcast" | "multicast") => words.next(),
            other => other,
        };
        if let Some(w) = first.filter(|w| *w != "default") {
            used.push(w.to_string());
        }
    }
    for l in addrs.lines().filter(|l| !l.contains(HOST_LINK)) {
        let mut words = l.split_whitespace();
        if words.any(|w| w == "inet") {
            if let Some(w) = words.next() {
                used.push(w.to_string());
            }
        }
    }
    for u in used {
        if let Some(p) = Prefix::parse(&u) {
            if p.addr >> 24 != 127 && p.overlaps(&mine) {
                return Err(Error::Invalid(format!(
                    "the pod network {cidr} would hide {u}, which this machine already uses"
                )));
            }
        }
    }
    Ok(())
}

/// The addresses of cluster `index` in [`NetworkMode::Pods`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodRanges {
    second_octet: u8,
}

impl PodRanges {
    pub fn new(index: u8) -> Self {
        PodRanges {
            second_octet: 128u8.saturating_add(index),
        }
    }

    /// The whole cluster: `10.<128+c>.0.0/16`.
    pub fn cluster_cidr(&self) -> String {
        format!("10.{}.0.0/16", self.second_octet)
    }

    /// Pods and nodes: `10.<128+c>.0.0/17`.
    pub fn pod_cidr(&self) -> String {
        format!("10.{}.0.0/17", self.second_octet)
    }

    /// The gateway of every pod (on the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.second_octet, 0, 1)
    }

    /// Node `n`'s address.
    pub fn node_ip(&self, n: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.second_octet, node_octet(n), 1)
    }

    /// Pod slot `m` (2..=254) of node `n`.
    pub fn pod_ip(&self, n: usize, m: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.second_octet, node_octet(n), m)
    }

    /// LoadBalancer address slot `m` (2..=254).
    pub fn load_balancer_ip(&self, m: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.second_octet, 200, m)
    }

    /// The Service cluster-IP range.
    pub fn service_cidr(&self) -> String {
        format!("10.{}.240.0/20", self.second_octet)
    }

    /// The first Service IP (the `kubernetes` Service).
    pub fn first_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.second_octet, 240, 1)
    }

    fn uplink_net(&self) -> u8 {
        self.second_octet - 127
    }

    /// The link between the fabric (`.1`) and the cluster's namespace (`.2`).
    fn uplink_cidr(&self) -> String {
        format!("10.127.{}.0/24", self.uplink_net())
    }
}

fn node_octet(n: usize) -> u8 {
    u8::try_from(n.min(119) + 1).unwrap_or(120)
}

/// A one-way or two-way cut, for [`ClusterNet::cut`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Nothing reaches this address (a LoadBalancer ingress) any more.
    Address(Ipv4Addr),
    /// Nothing passes between this cluster and any other cluster.
    Region,
    /// Packets from this cluster to cluster `to` are dropped; the other way still passes.
    OneWay { to: u8 },
    /// Nothing passes between this pod address and any other pod, of any cluster.
    Pod(Ipv4Addr),
}

impl Cut {
    fn rules(&self, mine: &PodRanges) -> Vec<String> {
        let own = mine.cluster_cidr();
        match self {
            Cut::Region => vec![
                format!("ip saddr {own} ip daddr {ALL_CLUSTERS} ip daddr != {own} drop"),
                format!("ip daddr {own} ip saddr {ALL_CLUSTERS} ip saddr != {own} drop"),
            ],
            Cut::OneWay { to } => {
                let theirs = PodRanges::new(*to).cluster_cidr();
                vec![format!("ip saddr {own} ip daddr {theirs} drop")]
            }
            Cut::Address(addr) => vec![format!("ip daddr {addr} drop")],
            Cut::Pod(addr) => vec![
                format!("ip saddr {addr} ip daddr {ALL_CLUSTERS} drop"),
                format!("ip daddr {addr} ip saddr {ALL_CLUSTERS} drop"),
            ],
        }
    }
}

/// The network of one cluster: its namespace, bridge, uplink and pods.
#[derive(Debug)]
pub struct ClusterNet {
    index: u8,
    ranges: PodRanges,
    ns: String,
    next_pod: AtomicU32,
    cuts: Mutex<Vec<Cut>>,
    removed: bool,
}

impl ClusterNet {
    /// Creates the cluster's namespace with its bridge and node addresses, linked to the
    /// fabric (made first if no cluster has it yet).
    pub fn attach(index: u8, nodes: usize) -> Result<Self> {
        let lock = FabricLock::take()?;
        sweep(&lock);
        let ranges = PodRanges::new(index);
        let uplink = ranges.uplink_cidr();
        if !namespaces().iter().any(|n| n == FABRIC_NS) {
            check_unused("10.127.0.0/24")?;
        }
        check_unused(&ranges.cluster_cidr())?;
        check_unused(&uplink)?;
        ensure_fabric(&lock)?;
        let ns = format!("aadb-c{index}-{}", std::process::id());
        let via = FABRIC_HOST_SIDE_IP.to_string();
        let made = Self::build(&ns, index, ranges, nodes).and_then(|()| {
            // The host reaches the cluster's pods and its uplink through the fabric.
            for cidr in [ranges.cluster_cidr(), uplink.clone()] {
                ip(&["route", "replace", &cidr, "via", &via, "dev", HOST_LINK])?;
            }
            Ok(())
        });
        if let Err(e) = made {
            // Undo what was made (the lock is held: no sweep here).
            let _ = ip(&["netns", "del", &ns]);
            return Err(e);
        }
        drop(lock);
        Ok(ClusterNet {
            index,
            ranges,
            ns,
            next_pod: AtomicU32::new(1),
            cuts: Mutex::new(Vec::new()),
            removed: false,
        })
    }

    fn build(ns: &str, index: u8, ranges: PodRanges, nodes: usize) -> Result<()> {
        let u = ranges.uplink_net();
        let fabric_side = format!("10.127.{u}.1");
        let cluster_side = format!("10.127.{u}.2");
        let fabric_link = format!("c{index}");
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // A namespace deleted a moment ago (a previous cluster with this index) frees its
        // links asynchronously: the old uplink may still be there for a short while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let made = ip(&[
                "-n",
                FABRIC_NS,
                "link",
                "add",
                &fabric_link,
                "type",
                "veth",
                "peer",
                "name",
                "uplink",
                "netns",
                ns,
            ]);
            match made {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => {
                    let _ = ip(&["-n", FABRIC_NS, "link", "del", &fabric_link]);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
        ip(&[
            "-n",
            FABRIC_NS,
            "addr",
            "add",
            &format!("{fabric_side}/24"),
            "dev",
            &fabric_link,
        ])?;
        ip(&["-n", FABRIC_NS, "link", "set", &fabric_link, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{cluster_side}/24"),
            "dev",
            "uplink",
        ])?;
        ip(&["-n", ns, "link", "set", "uplink", "up"])?;
        ip(&["-n", ns, "route", "add", "default", "via", &fabric_side])?;
        ip(&[
            "-n",
            FABRIC_NS,
            "route",
            "replace",
            &ranges.cluster_cidr(),
            "via",
            &cluster_side,
        ])?;
        ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/17", ranges.gateway()),
            "dev",
            BRIDGE,
        ])?;
        for n in 0..nodes {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/32", ranges.node_ip(n)),
                "dev",
                BRIDGE,
            ])?;
        }
        ip(&["-n", ns, "link", "set", BRIDGE, "up"])?;
        sysctl(ns, "net.ipv4.ip_forward", "1")?;
        // Bridged pod-to-pod packets go through conntrack and the filter rules, as kube-proxy
        // needs (the same setting a kubelet requires).
        sysctl(ns, "net.bridge.bridge-nf-call-iptables", "1")?;
        nft(
            ns,
            // Before kube-proxy's address translation (dstnat, -100), after connection tracking.
            "table inet aadb {\n chain cuts { type filter hook prerouting priority -150; policy accept; }\n}\n",
        )
    }

    /// The cluster's namespace (where its kube-proxy runs).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Its addresses.
    pub fn ranges(&self) -> PodRanges {
        self.ranges
    }

    /// The cluster index.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Makes a namespace for a pod with address `addr` on the cluster's bridge.
    pub fn add_pod(&self, addr: Ipv4Addr) -> Result<PodNet> {
        let seq = self.next_pod.fetch_add(1, Ordering::SeqCst);
        let ns = format!("{}-{seq}", self.ns);
        let host_end = format!("p{seq}");
        let made = (|| -> Result<()> {
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &self.ns, "link", "add", &host_end, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &self.ns, "link", "set", &host_end, "master", BRIDGE])?;
            ip(&["-n", &self.ns, "link", "set", &host_end, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/17"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &self.ranges.gateway().to_string(),
            ])?;
            Ok(())
        })();
        let pod = PodNet { ns };
        made.map(|()| pod)
    }

    /// Starts dropping the packets `cut` describes (idempotent).
    pub fn cut(&self, cut: Cut) -> Result<()> {
        let mut cuts = crate::agent::lock(&self.cuts);
        if !cuts.contains(&cut) {
            cuts.push(cut);
        }
        self.apply_cuts(&cuts)
    }

    /// Stops dropping what `cut` described.
    pub fn heal(&self, cut: &Cut) -> Result<()> {
        let mut cuts = crate::agent::lock(&self.cuts);
        cuts.retain(|c| c != cut);
        self.apply_cuts(&cuts)
    }

    /// Stops every cut.
    pub fn heal_all(&self) -> Result<()> {
        let mut cuts = crate::agent::lock(&self.cuts);
        cuts.clear();
        self.apply_cuts(&cuts)
    }

    fn apply_cuts(&self, cuts: &[Cut]) -> Result<()> {
        let mut script = String::from("flush chain inet aadb cuts\n");
        for c in cuts {
            for r in c.rules(&self.ranges) {
                script.push_str(&format!("add rule inet aadb cuts {r}\n"));
            }
        }
        nft(&self.ns, &script)
    }

    /// The prefix that runs a program inside namespace `ns` (`ip netns exec <ns>`).
    pub fn exec_prefix(ns: &str) -> Vec<String> {
        let ip = which("ip").unwrap_or_else(|| "ip".into());
        vec![
            ip.display().to_string(),
            "netns".into(),
            "exec".into(),
            ns.to_string(),
        ]
    }

    /// Deletes every pod namespace of the cluster and its own namespace, and the fabric when
    /// no cluster is left.
    pub fn remove(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        let prefix = format!("{}-", self.ns);
        for ns in namespaces() {
            if ns.starts_with(&prefix) {
                let _ = ip(&["netns", "del", &ns]);
            }
        }
        let lock = FabricLock::take();
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["-n", FABRIC_NS, "route", "del", &self.ranges.cluster_cidr()]);
        for cidr in [self.ranges.cluster_cidr(), self.ranges.uplink_cidr()] {
            let _ = ip(&["route", "del", &cidr, "dev", HOST_LINK]);
        }
        if let Ok(lock) = lock {
            sweep(&lock);
        }
    }
}

impl Drop for ClusterNet {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The network namespace of one pod; deleted on drop.
pub struct PodNet {
    ns: String,
}

impl PodNet {
    /// Its name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_keep_clusters_apart_and_off_loopback() {
        let a = PodRanges::new(0);
        let b = PodRanges::new(1);
        assert_eq!(a.pod_ip(2, 7), Ipv4Addr::new(10, 128, 3, 7));
        assert_eq!(a.node_ip(0), Ipv4Addr::new(10, 128, 1, 1));
        assert_eq!(b.load_balancer_ip(2), Ipv4Addr::new(10, 129, 200, 2));
        assert_eq!(b.service_cidr(), "10.129.240.0/20");
        assert_eq!(b.first_service_ip(), Ipv4Addr::new(10, 129, 240, 1));
        assert_eq!(a.uplink_net(), 1);
    }

    #[test]
    fn namespace_names_carry_their_owner() {
        assert_eq!(owner_pid("aadb-c3-4242"), Some(4242));
        assert_eq!(owner_pid("aadb-c3-4242-17"), Some(4242));
        assert_eq!(owner_pid("aadb-fabric"), None);
        assert_eq!(owner_pid("other"), None);
    }

    #[test]
    fn prefixes_overlap_when_one_holds_the_other() {
        let p = |s: &str| Prefix::parse(s).expect("prefix");
        assert!(p("10.128.0.0/16").overlaps(&p("10.128.3.7")));
        assert!(p("10.0.0.0/8").overlaps(&p("10.128.0.0/16")));
        assert!(!p("10.128.0.0/16").overlaps(&p("10.255.255.53")));
        assert!(!p("10.128.0.0/16").overlaps(&p("10.129.0.0/16")));
        assert!(Prefix::parse("nonsense").is_none());
    }

    #[test]
    fn cuts_drop_only_what_they_name() {
        let r = PodRanges::new(1);
        let region = Cut::Region.rules(&r);
        assert!(region[0].contains("ip saddr 10.129.0.0/16"));
        assert!(region[0].contains("ip daddr != 10.129.0.0/16"));
        let one = Cut::OneWay { to: 2 }.rules(&r);
        assert_eq!(
            one,
            vec!["ip saddr 10.129.0.0/16 ip daddr 10.130.0.0/16 drop"]
        );
    }
}
