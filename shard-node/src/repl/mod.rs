//! Replication: replicas inside a region and active-active peer links across regions.
//!
//! Contract:
//! - Every effect a node applies (local or received) is recorded in order in its [`Backlog`]
//!   and its log; replicas and peers read that stream, so a replica mirrors everything its
//!   primary has, peer effects included.
//! - A replica follows one primary (`--replicaof`, `REPLICAOF`): it resumes by (replication id,
//!   offset) while the primary's backlog holds the offset, otherwise it receives a full copy that
//!   replaces its state. Before either, it hands over whatever it holds that the primary lacks
//!   (`handoff`), so a demoted primary's writes are merged, never replaced. It refuses writes
//!   (`READONLY`) and acknowledges offsets for `WAIT`.
//! - A peer link pulls from the same shard of another participant starting at this node's
//!   vector clock; if the peer's backlog no longer covers it, the peer sends its full state and
//!   this node merges it (a join, always safe). Received effects go through the causal gate:
//!   duplicates are dropped by dot, early ones wait for their dependencies.
//! - Promotion (`REPLICAOF NO ONE`) starts a new epoch of this shard's actor. A primary that
//!   applies an effect from a newer epoch of its own shard stops taking writes (fenced).
//! - Links authenticate with the node's password (`AUTH`) and announce a protocol version;
//!   a mismatch is refused with a message saying why.
//! - With `--tls-cert/--tls-key/--tls-ca`, links run over TLS with mutual authentication: the
//!   link client dials the peer's or primary's `--tls-port` and both ends present certificates
//!   signed by the CA (see `transport::tls`); the frames inside are the same.
//! - This module holds the replication state the commands read and change; the link tasks
//!   that carry it out are in `links`.
//!
//! Wire format, on the RESP port: the link client sends `AA.HELLO <version> <participant>
//! <shard> <replica|peer> <name>`, then `AA.HANDOFF <clock>` and `AA.SYNC <replid> <offset>`
//! (a replica) or `AA.PULL <clock>` (a peer); the
//! server answers with frames that are RESP arrays of bulk strings:
//! `CONT replid offset` or `FULL replid offset`, `META m`, `KEY k`…, `END` (full transfer),
//! `E effect` (one effect), `HB clock now_ms next_offset stable` (heartbeat, every 100 ms).
//! The client acknowledges with `REPLCONF ACK <offset>` (replica) or `AA.ACK <clock>` (peer).

pub mod backlog;

pub use backlog::Backlog;

/// What a link client asked for (`AA.SYNC`, `AA.PULL`).
#[derive(Clone, Debug, PartialEq)]
pub enum LinkRequest {
    /// A replica resuming (replication id, next offset) or starting over (`None`).
    Sync { replid: String, offset: Option<u64> },
    /// A peer that has everything its clock covers.
    Pull { clock: VectorClock },
}

/// True when an effect comes from a newer epoch of this node's own shard.
pub fn is_newer_epoch(ks: &crate::crdt::Keyspace, effect: &crate::crdt::Effect) -> bool {
    effect.dot.actor.lineage() == ks.actor_id().lineage()
        && effect.dot.actor.generation() > crate::crdt::clock::generation_of(ks.actor().epoch)
}

/// Pub/sub messages carried by an effect.
pub fn messages(
    effect: &crate::crdt::Effect,
) -> impl Iterator<Item = (&bytes::Bytes, &bytes::Bytes)> {
    effect.ops.iter().filter_map(|op| match &op.kind {
        crate::crdt::OpKind::Publish { channel, payload } => Some((channel, payload)),
        _ => None,
    })
}

use crate::crdt::replica::CausalBuffer;
use crate::crdt::VectorClock;
use std::collections::BTreeMap;

/// Version of the link protocol this build speaks.
pub const LINK_PROTOCOL_VERSION: u32 = 1;

/// Default backlog budget in bytes.
pub const DEFAULT_BACKLOG_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Syncing,
    Up,
    Down,
}

impl LinkState {
    pub fn name(&self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Syncing => "sync",
            LinkState::Up => "up",
            LinkState::Down => "down",
        }
    }
}

/// This node's role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// Following a primary.
    Replica {
        host: String,
        port: u16,
    },
    /// A former primary that saw a newer epoch of its shard: read-only until re-pointed.
    Fenced,
}

/// The link to this node's primary, when it is a replica.
#[derive(Clone, Debug)]
pub struct MasterLink {
    pub state: LinkState,
    pub master_replid: Option<String>,
    /// Offset in the primary's stream of the next effect expected.
    pub master_offset: Option<u64>,
    pub last_io_ms: u64,
    pub last_error: String,
    /// Bumped when the link is restarted, so an old link task knows to stop.
    pub generation: u64,
}

/// A replica connected to this node.
#[derive(Clone, Debug)]
pub struct ReplicaInfo {
    pub addr: String,
    pub ack_offset: u64,
    pub state: LinkState,
}

/// A peer link of this node (the same shard in another participant).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: String,
    pub state: LinkState,
    pub last_error: String,
    /// The peer's clock as it last reported it (heartbeats).
    pub their_clock: VectorClock,
    /// What the peer has acknowledged receiving from this node (its clock).
    pub acked_clock: Option<VectorClock>,
    /// When this node last had everything the peer has (ms).
    pub caught_up_ms: u64,
    pub generation: u64,
    pub full_merges: u64,
}

/// A link task the server must start or restart after a command changed the topology
/// (requested through `commands::ServerRequests::links`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplAction {
    FollowPrimary,
    PeerChanged(String),
}

/// A pending `WAIT`.
#[derive(Clone, Copy, Debug)]
pub struct WaitRequest {
    pub replicas: usize,
    pub timeout_ms: u64,
    pub offset: u64,
}

pub struct ReplState {
    pub role: Role,
    pub backlog: Backlog,
    pub replicas: BTreeMap<u64, ReplicaInfo>,
    pub peers: BTreeMap<String, PeerInfo>,
    pub master: Option<MasterLink>,
    pub gate: CausalBuffer,
    pub next_generation: u64,
    /// Outgoing links run over TLS (the node has `--tls-cert/--tls-key/--tls-ca`).
    pub links_use_tls: bool,
    /// A restarted primary refuses client writes until this time (ms since the epoch) or
    /// until it is told its role (`REPLICAOF`), so it cannot acknowledge writes that a
    /// failover decided meanwhile would discard (`--restart-hold-ms`); 0: no hold.
    pub write_hold_until_ms: u64,
}

impl ReplState {
    pub fn new(clock: VectorClock) -> Self {
        ReplState {
            role: Role::Primary,
            backlog: Backlog::new(DEFAULT_BACKLOG_BYTES, clock),
            replicas: BTreeMap::new(),
            links_use_tls: false,
            write_hold_until_ms: 0,
            peers: BTreeMap::new(),
            master: None,
            gate: CausalBuffer::new(),
            next_generation: 1,
        }
    }

    pub fn is_primary(&self) -> bool {
        self.role == Role::Primary
    }

    pub fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Replicas whose acknowledged offset reached `offset`.
    pub fn replicas_at(&self, offset: u64) -> usize {
        self.replicas
            .values()
            .filter(|r| r.ack_offset >= offset)
            .count()
    }

    /// The clock every participant is known to have seen (for collecting tombstones), if every
    /// peer has reported one.
    pub fn stable_clock(&self, mine: &VectorClock) -> Option<VectorClock> {
        // An effect concurrent with a remove may still be on its way from a peer until this node
        // has everything that peer had when it acknowledged; only then is the meet safe.
        let mut stable = mine.clone();
        for p in self.peers.values() {
            let theirs = p.acked_clock.as_ref()?;
            if !mine.dominates(theirs) {
                return None;
            }
            stable = stable.meet(theirs);
        }
        Some(stable)
    }

    /// Effects the peer has that this node lacks.
    pub fn lag_effects(mine: &VectorClock, theirs: &VectorClock) -> u64 {
        theirs
            .iter()
            .map(|(a, s)| s.saturating_sub(mine.get(a)))
            .sum()
    }

    /// The `# Replication` section of INFO.
    pub fn info(&self, now_ms: u64) -> String {
        let mut out = String::new();
        match &self.role {
            Role::Primary => {
                out.push_str("role:master\r\n");
                if now_ms < self.write_hold_until_ms {
                    out.push_str("aadb_write_hold:1\r\n");
                }
                out.push_str(&format!("connected_slaves:{}\r\n", self.replicas.len()));
                for (i, r) in self.replicas.values().enumerate() {
                    let (ip, port) = r.addr.rsplit_once(':').unwrap_or((&r.addr, "0"));
                    out.push_str(&format!(
                        "slave{i}:ip={ip},port={port},state=online,offset={},lag=0\r\n",
                        r.ack_offset
                    ));
                }
            }
            Role::Replica { host, port } => {
                let link = self.master.as_ref();
                let up = link.is_some_and(|l| l.state == LinkState::Up);
                out.push_str("role:slave\r\n");
                out.push_str(&format!("master_host:{host}\r\nmaster_port:{port}\r\n"));
                out.push_str(&format!(
                    "master_link_status:{}\r\n",
                    if up { "up" } else { "down" }
                ));
                out.push_str(&format!(
                    "master_last_io_seconds_ago:{}\r\n",
                    link.map(|l| now_ms.saturating_sub(l.last_io_ms) / 1000)
                        .unwrap_or(0)
                ));
                out.push_str(&format!(
                    "master_sync_in_progress:{}\r\n",
                    u8::from(link.is_some_and(|l| l.state == LinkState::Syncing))
                ));
                out.push_str(&format!(
                    "slave_repl_offset:{}\r\n",
                    link.and_then(|l| l.master_offset).unwrap_or(0)
                ));
                out.push_str("slave_read_only:1\r\nconnected_slaves:0\r\n");
            }
            Role::Fenced => {
                out.push_str("role:slave\r\nmaster_host:\r\nmaster_port:0\r\nmaster_link_status:down\r\nslave_read_only:1\r\nconnected_slaves:0\r\naadb_fenced:1\r\n");
            }
        }
        // A replica reports its position in the primary's stream, as Redis does.
        let (replid, offset) = match (&self.role, &self.master) {
            (Role::Replica { .. }, Some(m)) => (
                m.master_replid
                    .clone()
                    .unwrap_or_else(|| self.backlog.replid.clone()),
                m.master_offset.unwrap_or(0),
            ),
            _ => (self.backlog.replid.clone(), self.backlog.next_offset()),
        };
        out.push_str(&format!("master_replid:{replid}\r\n"));
        out.push_str(&format!("master_repl_offset:{offset}\r\n"));
        out.push_str(&format!(
            "repl_backlog_active:1\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n",
            self.backlog.limit(),
            self.backlog.first_offset(),
            self.backlog.len()
        ));
        out
    }

    /// Per-peer lines for `INFO crdt`.
    pub fn crdt_info(&self, mine: &VectorClock, now_ms: u64) -> String {
        let mut out = format!("crdt_peers:{}\r\n", self.peers.len());
        for (name, p) in &self.peers {
            let lag = Self::lag_effects(mine, &p.their_clock);
            let lag_ms = if lag == 0 {
                0
            } else {
                now_ms.saturating_sub(p.caught_up_ms)
            };
            out.push_str(&format!(
                "crdt_peer_{name}:addr={},state={},lag_effects={lag},lag_ms={lag_ms},full_merges={},last_error={}\r\n",
                p.addr,
                p.state.name(),
                p.full_merges,
                p.last_error.replace([',', '\r', '\n'], " ")
            ));
        }
        out
    }
}
