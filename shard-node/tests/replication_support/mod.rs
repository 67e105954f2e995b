//! Multi-region harness for the replication tests: real shard-node processes on loopback.
//!
//! Contract:
//! - [`Cluster::start`] starts one primary per region (participant) and the requested number
//!   of replicas per region. Every replication link runs through its own
//!   [`BlockingFaultProxy`]: a primary's `--peer NAME=HOST:PORT` points at a proxy in front of
//!   the other region's primary, and a replica's `--replicaof` at a proxy in front of its
//!   primary, so a test can partition any link and heal it. Dropping the cluster kills every
//!   process; if the test is failing, their logs are printed and their directories kept
//!   (see `common`).
//! - [`Client`] is a blocking RESP2 client that returns parsed [`Reply`]s. After an I/O failure
//!   (a killed node, a reset connection) it reconnects on the next call.
//! - Waiting is polling with a deadline. A cluster has converged when every running node
//!   reports the same `AA.DIGEST` (the visible keyspace) and the same vector clock
//!   (`crdt_vector_clock` of `INFO crdt`, so every effect has arrived everywhere).
#![allow(dead_code)] // every test binary uses a different part of the harness

use crate::common::{self, NodeBuilder, RawConn, ShardNode, XorShift, POLL_INTERVAL};
use aadb_faultproxy::BlockingFaultProxy;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A parsed reply (RESP2; the few RESP3 types map onto these).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    /// Parses exactly one complete frame.
    pub fn parse(frame: &[u8]) -> Result<Reply, String> {
        let (reply, used) = parse_at(frame, 0)?;
        if used != frame.len() {
            return Err(format!(
                "trailing bytes after a reply: {}",
                common::show(&frame[used..])
            ));
        }
        Ok(reply)
    }

    /// A compact canonical text: status and bulk strings as they are, errors with a leading
    /// `-`, integers in decimal, nil as `(nil)`, arrays as `[a,b,…]`.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Error(e) => format!("-{e}"),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            Reply::Nil => "(nil)".to_owned(),
            Reply::Array(items) => {
                let parts: Vec<String> = items.iter().map(Reply::text).collect();
                format!("[{}]", parts.join(","))
            }
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// An integer reply, or a bulk string holding an integer.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// A bulk or status string.
    pub fn string(&self) -> Option<String> {
        match self {
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Status(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The elements of an array reply (empty for anything else).
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(items) => items,
            _ => &[],
        }
    }
}

fn parse_at(buf: &[u8], pos: usize) -> Result<(Reply, usize), String> {
    let kind = *buf.get(pos).ok_or("empty reply")?;
    let line_end = buf[pos..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| pos + p)
        .ok_or("reply without CRLF")?;
    let line = String::from_utf8_lossy(&buf[pos + 1..line_end]).into_owned();
    let next = line_end + 2;
    let number = |s: &str| -> Result<i64, String> {
        s.parse::<i64>()
            .map_err(|_| format!("bad number {s:?} in a reply"))
    };
    match kind {
        b'+' => Ok((Reply::Status(line), next)),
        b'-' => Ok((Reply::Error(line), next)),
        b':' => Ok((Reply::Int(number(&line)?), next)),
        b',' => Ok((Reply::Status(line), next)),
        b'#' => Ok((Reply::Int(i64::from(line == "t")), next)),
        b'_' => Ok((Reply::Nil, next)),
        b'$' | b'=' | b'!' => {
            let n = number(&line)?;
            if n < 0 {
                return Ok((Reply::Nil, next));
            }
            let end = next + n as usize;
            let data = buf.get(next..end).ok_or("short bulk string")?;
            Ok((Reply::Bulk(data.to_vec()), end + 2))
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = number(&line)?;
            if n < 0 {
                return Ok((Reply::Nil, next));
            }
            let count = if kind == b'%' { 2 * n } else { n };
            let mut items = Vec::with_capacity(count as usize);
            let mut at = next;
            for _ in 0..count {
                let (item, used) = parse_at(buf, at)?;
                items.push(item);
                at = used;
            }
            Ok((Reply::Array(items), at))
        }
        other => Err(format!("unknown reply type {:?}", other as char)),
    }
}

/// A blocking client of one node; reconnects after any I/O failure.
pub struct Client {
    port: u16,
    password: Option<String>,
    conn: Option<RawConn>,
}

impl Client {
    pub fn new(port: u16, password: Option<&str>) -> Client {
        Client {
            port,
            password: password.map(str::to_owned),
            conn: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops the connection; the next call opens a new one.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Sends one command and reads its reply. `Err` on connection trouble (the connection is
    /// dropped; the next call reconnects).
    pub fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&bytes)
    }

    pub fn call_bytes(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let result = self.try_call(args);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn connection(&mut self) -> Result<&mut RawConn, String> {
        if self.conn.is_none() {
            let mut c = RawConn::try_connect(self.port)
                .map_err(|e| format!("connect to port {}: {e}", self.port))?;
            if let Some(p) = &self.password {
                c.send(&common::encode(&[b"AUTH", p.as_bytes()]))
                    .map_err(|e| format!("send AUTH: {e}"))?;
                let f = c.read_frame().map_err(|e| format!("AUTH: {e:?}"))?;
                if f != b"+OK\r\n" {
                    return Err(format!("AUTH answered {}", common::show(&f)));
                }
            }
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| "not connected".to_owned())
    }

    fn try_call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let c = self.connection()?;
        c.send(&common::encode(args))
            .map_err(|e| format!("send: {e}"))?;
        let frame = c.read_frame().map_err(|e| format!("read: {e:?}"))?;
        Reply::parse(&frame)
    }

    /// Like [`Client::call`], panicking on connection trouble.
    pub fn q(&mut self, args: &[&str]) -> Reply {
        self.call(args)
            .unwrap_or_else(|e| panic!("`{}` on port {}: {e}", args.join(" "), self.port))
    }

    /// Sends every command, then reads every reply (one round trip).
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, String> {
        let result = (|| {
            let c = self.connection()?;
            let mut out = Vec::new();
            for cmd in commands {
                let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
                out.extend(common::encode(&args));
            }
            c.send(&out).map_err(|e| format!("send: {e}"))?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in commands {
                let frame = c.read_frame().map_err(|e| format!("read: {e:?}"))?;
                replies.push(Reply::parse(&frame)?);
            }
            Ok(replies)
        })();
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// `INFO section` as text.
    pub fn info(&mut self, section: &str) -> Result<String, String> {
        match self.call(&["INFO", section])? {
            Reply::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => Err(format!("INFO {section} answered {}", other.text())),
        }
    }
}

/// Reads (and discards) whatever arrives on `conn` until the other end closes it; `Err` if
/// it is still open after `timeout` (a stream that keeps sending heartbeats never times out
/// a single read, hence the overall deadline).
pub fn wait_closed(conn: &mut RawConn, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    conn.set_read_timeout(Duration::from_millis(200));
    let mut frames = 0usize;
    loop {
        match conn.read_frame() {
            Ok(_) => frames += 1,
            Err(common::ReadEnd::Closed(_)) => return Ok(()),
            Err(common::ReadEnd::Timeout(_)) => {}
            Err(e) => return Err(format!("reading until close: {e:?}")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "still open after {timeout:?} ({frames} frames read meanwhile)"
            ));
        }
    }
}

/// `127.0.0.1:port`.
/// `Ok` once the replica behind `c` reports its link to its primary up.
pub fn replica_link_up(c: &mut Client) -> Result<(), String> {
    let info = c.info("replication")?;
    if info.contains("master_link_status:up") {
        Ok(())
    } else {
        Err("the replica's link is not up".into())
    }
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Milliseconds of the wall clock.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Returns once the wall clock reads at least 2 ms more than when called. A write made after
/// this returns carries a later hybrid-logical-clock timestamp than any write acknowledged
/// before it (the nodes share this machine's clock), which is how the tests make "the later
/// write" of a conflict rule deterministic.
pub fn let_the_clock_tick() {
    let target = wall_ms() + 2;
    while wall_ms() < target {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Polls `cond` until it returns `Ok` or `timeout` passes; the error is the last one seen.
pub fn poll_ok<T>(
    timeout: Duration,
    mut cond: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match cond() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("still not true after {timeout:?}: {e}"))
            }
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// A node of a cluster: (region, index); index 0 is the primary, 1… the replicas.
pub type NodeId = (usize, usize);

/// A replication link of a cluster, each behind its own proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Link {
    /// Region `.0`'s primary pulls from region `.1`'s primary.
    Peer(usize, usize),
    /// Replica `.1` of region `.0` follows its primary.
    Replica(usize, usize),
}

/// Digest and vector clock of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub digest: String,
    pub clock: String,
}

/// Several regions, each a primary plus replicas, every link behind a fault proxy.
pub struct Cluster {
    pub names: Vec<String>,
    password: Option<String>,
    nodes: Vec<Vec<ShardNode>>,
    proxies: BTreeMap<Link, BlockingFaultProxy>,
    partitioned: BTreeSet<Link>,
    clients: BTreeMap<NodeId, Client>,
}

impl Cluster {
    /// Starts `names.len()` regions; region `i` gets `replicas[i]` replicas.
    pub fn start(names: &[&str], replicas: &[usize]) -> Cluster {
        Self::start_with(names, replicas, None, |b| b)
    }

    /// Like [`Cluster::start`]; `configure` adjusts every node's options and `password` is
    /// passed to every node as `--requirepass`.
    pub fn start_with(
        names: &[&str],
        replicas: &[usize],
        password: Option<&str>,
        configure: impl Fn(NodeBuilder) -> NodeBuilder,
    ) -> Cluster {
        assert_eq!(names.len(), replicas.len(), "one replica count per region");
        let n = names.len();
        // The proxies exist before the nodes (their addresses go on the command lines); they
        // forward to a closed port until their target node is up.
        let nowhere = loopback(common::free_port());
        let mut proxies = BTreeMap::new();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let p = BlockingFaultProxy::start(nowhere).expect("start a fault proxy");
                    proxies.insert(Link::Peer(i, j), p);
                }
            }
        }
        let builder = |name: &str| {
            let b = NodeBuilder::new().participant(name);
            let b = match password {
                Some(p) => b.requirepass(p),
                None => b,
            };
            configure(b)
        };
        let mut nodes: Vec<Vec<ShardNode>> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut b = builder(name);
            for (j, other) in names.iter().enumerate() {
                if j != i {
                    b = b
                        .arg("--peer")
                        .arg(format!("{other}={}", proxies[&Link::Peer(i, j)].addr()));
                }
            }
            nodes.push(vec![b.start()]);
        }
        for (link, p) in &proxies {
            if let Link::Peer(_, j) = link {
                p.set_target(loopback(nodes[*j][0].port()));
            }
        }
        for (i, name) in names.iter().enumerate() {
            for k in 1..=replicas[i] {
                let p = BlockingFaultProxy::start(loopback(nodes[i][0].port()))
                    .expect("start a fault proxy");
                let node = builder(name)
                    .arg("--replicaof")
                    .arg(p.addr().to_string())
                    .start();
                proxies.insert(Link::Replica(i, k), p);
                nodes[i].push(node);
            }
        }
        Cluster {
            names: names.iter().map(|s| s.to_string()).collect(),
            password: password.map(str::to_owned),
            nodes,
            proxies,
            partitioned: BTreeSet::new(),
            clients: BTreeMap::new(),
        }
    }

    /// `A` for a primary, `A/r1` for a replica.
    pub fn label(&self, id: NodeId) -> String {
        if id.1 == 0 {
            self.names[id.0].clone()
        } else {
            format!("{}/r{}", self.names[id.0], id.1)
        }
    }

    pub fn regions(&self) -> usize {
        self.nodes.len()
    }

    /// Every node, primaries and replicas.
    pub fn ids(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for (i, region) in self.nodes.iter().enumerate() {
            for k in 0..region.len() {
                out.push((i, k));
            }
        }
        out
    }

    /// The nodes whose process is running.
    pub fn running_ids(&mut self) -> Vec<NodeId> {
        let ids = self.ids();
        ids.into_iter()
            .filter(|id| self.nodes[id.0][id.1].is_running())
            .collect()
    }

    pub fn node(&self, id: NodeId) -> &ShardNode {
        &self.nodes[id.0][id.1]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut ShardNode {
        &mut self.nodes[id.0][id.1]
    }

    /// SIGKILL of a node (its cached client connection goes too).
    pub fn kill9(&mut self, id: NodeId) {
        self.clients.remove(&id);
        self.node_mut(id).kill9();
    }

    /// Restarts a killed node on its port and data directory.
    pub fn restart(&mut self, id: NodeId) {
        self.clients.remove(&id);
        self.node_mut(id).restart();
    }

    pub fn port(&self, id: NodeId) -> u16 {
        self.node(id).port()
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn proxy(&self, link: Link) -> &BlockingFaultProxy {
        &self.proxies[&link]
    }

    /// The cluster's own client of a node.
    pub fn client(&mut self, id: NodeId) -> &mut Client {
        let port = self.port(id);
        let password = self.password.clone();
        self.clients
            .entry(id)
            .or_insert_with(|| Client::new(port, password.as_deref()))
    }

    /// A new client of a node (for threads of a workload).
    pub fn new_client(&self, id: NodeId) -> Client {
        Client::new(self.port(id), self.password.as_deref())
    }

    /// Runs a command on a node; panics on connection trouble.
    pub fn q(&mut self, id: NodeId, args: &[&str]) -> Reply {
        let label = self.label(id);
        self.client(id)
            .call(args)
            .unwrap_or_else(|e| panic!("`{}` on {label}: {e}", args.join(" ")))
    }

    pub fn call(&mut self, id: NodeId, args: &[&str]) -> Result<Reply, String> {
        self.client(id).call(args)
    }

    /// Cuts a link both ways (open connections are reset, new ones refused).
    pub fn cut(&mut self, link: Link) {
        self.proxies[&link].partition();
        self.partitioned.insert(link);
    }

    /// Cuts both peer links between two regions.
    pub fn partition_regions(&mut self, a: usize, b: usize) {
        self.cut(Link::Peer(a, b));
        self.cut(Link::Peer(b, a));
    }

    /// Cuts every peer link: each region is alone (replicas still follow their primaries).
    pub fn isolate_regions(&mut self) {
        let links: Vec<Link> = self
            .proxies
            .keys()
            .filter(|l| matches!(l, Link::Peer(..)))
            .copied()
            .collect();
        for l in links {
            self.cut(l);
        }
    }

    /// Clears every fault of every link.
    pub fn heal_all(&mut self) {
        for p in self.proxies.values() {
            p.heal();
        }
        self.partitioned.clear();
    }

    pub fn heal(&mut self, link: Link) {
        self.proxies[&link].heal();
        self.partitioned.remove(&link);
    }

    /// Waits until no connection is open through any cut link, so nothing written from now
    /// on can cross it.
    pub fn wait_cut(&self) {
        let timeout = Duration::from_secs(10);
        poll_ok(timeout, || {
            let open: Vec<String> = self
                .partitioned
                .iter()
                .filter(|l| self.proxies[l].connections() > 0)
                .map(|l| format!("{l:?}"))
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("connections still open through {open:?}"))
            }
        })
        .unwrap_or_else(|e| panic!("partition: {e}"));
    }

    /// Waits until every running primary's peer links that are not cut are `up` and every
    /// running replica whose link is not cut reports `master_link_status:up`.
    pub fn wait_links_up(&mut self, timeout: Duration) -> Result<(), String> {
        poll_ok(timeout, || {
            for id in self.running_ids() {
                if id.1 == 0 {
                    let peers = self.peers(id)?;
                    for p in &peers {
                        let name = p.get("name").cloned().unwrap_or_default();
                        let Some(j) = self.names.iter().position(|n| *n == name) else {
                            continue;
                        };
                        if self.partitioned.contains(&Link::Peer(id.0, j)) {
                            continue;
                        }
                        if p.get("state").map(String::as_str) != Some("up") {
                            return Err(format!("{}: peer link {p:?}", self.label(id)));
                        }
                    }
                } else if !self.partitioned.contains(&Link::Replica(id.0, id.1)) {
                    let info = self.client(id).info("replication")?;
                    if common::info_field(info.as_bytes(), "master_link_status").as_deref()
                        != Some("up")
                    {
                        return Err(format!("{}: master link not up", self.label(id)));
                    }
                }
            }
            Ok(())
        })
    }

    /// `AA.PEERS` of a node, one map per peer.
    pub fn peers(&mut self, id: NodeId) -> Result<Vec<BTreeMap<String, String>>, String> {
        let reply = self.client(id).call(&["AA.PEERS"])?;
        parse_peers(&reply)
    }

    /// Digest and vector clock of a node.
    pub fn state(&mut self, id: NodeId) -> Result<NodeState, String> {
        let c = self.client(id);
        let digest = c.call(&["AA.DIGEST"])?;
        let digest = digest
            .string()
            .ok_or_else(|| format!("AA.DIGEST answered {}", digest.text()))?;
        let info = c.info("crdt")?;
        let clock = common::info_field(info.as_bytes(), "crdt_vector_clock")
            .ok_or("INFO crdt has no crdt_vector_clock")?;
        Ok(NodeState { digest, clock })
    }

    /// One line per running node: label, digest and clock (or the error).
    pub fn describe(&mut self) -> String {
        let mut out = String::new();
        for id in self.running_ids() {
            let label = self.label(id);
            match self.state(id) {
                Ok(s) => out.push_str(&format!(
                    "  {label:6} digest={} clock={}\n",
                    s.digest, s.clock
                )),
                Err(e) => out.push_str(&format!("  {label:6} error: {e}\n")),
            }
        }
        out
    }

    /// Polls until every running node has the same digest and vector clock; returns how long
    /// that took.
    pub fn converge(&mut self, timeout: Duration) -> Result<Duration, String> {
        let ids = self.running_ids();
        self.converge_among(&ids, timeout)
    }

    /// Like [`Cluster::converge`], for the nodes `ids` only.
    pub fn converge_among(
        &mut self,
        ids: &[NodeId],
        timeout: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        poll_ok(timeout, || {
            let mut first: Option<NodeState> = None;
            for id in ids {
                let s = self.state(*id)?;
                match &first {
                    None => first = Some(s),
                    Some(f) if *f == s => {}
                    Some(_) => return Err("nodes differ".to_owned()),
                }
            }
            Ok(())
        })
        .map(|()| started.elapsed())
        .map_err(|e| format!("{e}\n{}links:\n{}", self.describe(), self.describe_links()))
    }

    /// Polls until every running node has the same digest (the vector clocks may still
    /// differ); returns how long that took.
    pub fn converge_digest(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        poll_ok(timeout, || {
            let mut digests = BTreeSet::new();
            for id in self.running_ids() {
                digests.insert(self.state(id)?.digest);
            }
            if digests.len() == 1 {
                Ok(())
            } else {
                Err(format!("{} different digests", digests.len()))
            }
        })
        .map(|()| started.elapsed())
        .map_err(|e| format!("{e}\n{}", self.describe()))
    }
}

impl Cluster {
    /// Every visible key of a node with its type and a canonical rendering of its value
    /// (members of sets sorted), for showing what differs when digests do.
    pub fn dump(&mut self, id: NodeId) -> Result<BTreeMap<String, String>, String> {
        let c = self.client(id);
        let keys = c.call(&["KEYS", "*"])?;
        let mut out = BTreeMap::new();
        for k in keys.items() {
            let k = k.text();
            let kind = c.call(&["TYPE", &k])?.text();
            let value = match kind.as_str() {
                "string" => c.call(&["GET", &k])?.text(),
                "hash" => {
                    let r = c.call(&["HGETALL", &k])?;
                    let mut pairs: Vec<String> = r
                        .items()
                        .chunks(2)
                        .map(|p| {
                            format!(
                                "{}={}",
                                p[0].text(),
                                p.get(1).map(Reply::text).unwrap_or_default()
                            )
                        })
                        .collect();
                    pairs.sort();
                    pairs.join(",")
                }
                "set" => {
                    let mut m: Vec<String> = c
                        .call(&["SMEMBERS", &k])?
                        .items()
                        .iter()
                        .map(Reply::text)
                        .collect();
                    m.sort();
                    m.join(",")
                }
                "zset" => c.call(&["ZRANGE", &k, "0", "-1", "WITHSCORES"])?.text(),
                "list" => c.call(&["LRANGE", &k, "0", "-1"])?.text(),
                _ => String::new(),
            };
            let ttl = c.call(&["PTTL", &k])?.int().unwrap_or(-3);
            let ttl = if ttl >= 0 { " (expires)" } else { "" };
            out.insert(k, format!("{kind} {value}{ttl}"));
        }
        Ok(out)
    }

    /// The state of every link as the nodes report it: `AA.PEERS` of the primaries and the
    /// master link of the replicas.
    pub fn describe_links(&mut self) -> String {
        let mut out = String::new();
        for id in self.running_ids() {
            let label = self.label(id);
            if id.1 == 0 {
                match self.peers(id) {
                    Ok(peers) => {
                        for p in peers {
                            let fields: Vec<String> =
                                p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            out.push_str(&format!("  {label:6} peer {}\n", fields.join(" ")));
                        }
                    }
                    Err(e) => out.push_str(&format!("  {label:6} AA.PEERS: {e}\n")),
                }
                if let Ok(info) = self.client(id).info("replication") {
                    let lines: Vec<&str> = info
                        .lines()
                        .filter(|l| l.starts_with("slave") || l.starts_with("master_repl_offset"))
                        .collect();
                    out.push_str(&format!("  {label:6} {}\n", lines.join(" ")));
                }
            } else {
                match self.client(id).info("replication") {
                    Ok(info) => {
                        let lines: Vec<&str> = info
                            .lines()
                            .filter(|l| {
                                l.starts_with("master_link_status")
                                    || l.starts_with("slave_repl_offset")
                                    || l.starts_with("master_sync_in_progress")
                                    || l.starts_with("master_last_io")
                            })
                            .collect();
                        let role = self
                            .client(id)
                            .call(&["ROLE"])
                            .map(|r| r.text())
                            .unwrap_or_else(|e| e);
                        out.push_str(&format!("  {label:6} {} ROLE {role}\n", lines.join(" ")));
                    }
                    Err(e) => out.push_str(&format!("  {label:6} INFO: {e}\n")),
                }
            }
        }
        out
    }

    /// The keys on which running nodes disagree, one line per key and node.
    pub fn diff(&mut self) -> String {
        let ids = self.running_ids();
        let mut dumps = Vec::new();
        for id in &ids {
            match self.dump(*id) {
                Ok(d) => dumps.push((self.label(*id), d)),
                Err(e) => return format!("cannot dump {}: {e}", self.label(*id)),
            }
        }
        let mut keys = BTreeSet::new();
        for (_, d) in &dumps {
            keys.extend(d.keys().cloned());
        }
        let mut out = String::new();
        for k in keys {
            let values: BTreeSet<Option<&String>> = dumps.iter().map(|(_, d)| d.get(&k)).collect();
            if values.len() > 1 {
                out.push_str(&format!("  key {k:?}:\n"));
                for (label, d) in &dumps {
                    let v = d.get(&k).map(String::as_str).unwrap_or("(absent)");
                    out.push_str(&format!("    {label:6} {v}\n"));
                }
                for id in &ids {
                    let state = self.q(*id, &["AA.INSPECT", &k]).text();
                    out.push_str(&format!("    {:6} state {state}\n", self.label(*id)));
                }
            }
        }
        if out.is_empty() {
            out.push_str("  (no visible difference in the dumps)\n");
        }
        out
    }
}

/// Parses an `AA.PEERS` reply (RESP2: an array of flattened maps).
pub fn parse_peers(reply: &Reply) -> Result<Vec<BTreeMap<String, String>>, String> {
    let Reply::Array(rows) = reply else {
        return Err(format!("AA.PEERS answered {}", reply.text()));
    };
    let mut out = Vec::new();
    for row in rows {
        let items = row.items();
        if items.len() % 2 != 0 || items.is_empty() {
            return Err(format!("AA.PEERS row {}", row.text()));
        }
        let mut map = BTreeMap::new();
        for kv in items.chunks(2) {
            map.insert(kv[0].text(), kv[1].text());
        }
        out.push(map);
    }
    Ok(out)
}

impl Cluster {
    /// One random change of the network between the regions (partition, isolation, a cut
    /// link, a cut replica, a delay, a heal); returns what it did, for the test's log.
    /// Assumes every region has at least one replica.
    pub fn random_fault(&mut self, rng: &mut XorShift) -> String {
        let regions = self.regions();
        let a = rng.below(regions as u64) as usize;
        let b = (a + 1 + rng.below(regions as u64 - 1) as usize) % regions;
        let (na, nb) = (self.names[a].clone(), self.names[b].clone());
        match rng.below(8) {
            0 | 1 => {
                self.partition_regions(a, b);
                format!("partition {na}-{nb}")
            }
            2 => {
                for other in (0..regions).filter(|o| *o != a) {
                    self.partition_regions(a, other);
                }
                format!("isolate {na}")
            }
            3 => {
                self.cut(Link::Peer(a, b));
                format!("cut {na} pulling from {nb}")
            }
            4 => {
                self.cut(Link::Replica(a, 1));
                format!("cut the replica of {na}")
            }
            5 => {
                let ms = 5 + rng.below(60);
                self.proxy(Link::Peer(a, b))
                    .delay(Duration::from_millis(ms));
                format!("delay {na} pulling from {nb} by {ms} ms")
            }
            6 => {
                self.heal(Link::Peer(a, b));
                self.heal(Link::Peer(b, a));
                format!("heal {na}-{nb}")
            }
            _ => {
                self.heal_all();
                "heal everything".to_owned()
            }
        }
    }
}
