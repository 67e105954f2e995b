//! What the commands share and keep: the database state behind the server's lock ([`Db`]),
//! its settings and counters, each connection's state ([`ClientState`]) and what a command
//! asks of its connection once it has replied ([`AfterReply`]).

use super::{blocking, config, latency, pubsub_queue, scripting, slowlog, MAX_EFFECT_BYTES};
use crate::crdt::Keyspace;
use crate::resp::Protocol;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

/// A message delivered to a subscribed connection.
#[derive(Clone, Debug)]
pub struct PubMessage {
    pub pattern: Option<Bytes>,
    pub channel: Bytes,
    pub payload: Bytes,
}

/// What the server knows about each connected client (for `CLIENT LIST`, pub/sub, limits).
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: Option<Bytes>,
    pub created_ms: u64,
    pub last_ms: u64,
    pub last_cmd: String,
    pub proto: Protocol,
    pub sub: usize,
    pub psub: usize,
    pub multi: i64,
}

/// Server-wide mutable settings (`CONFIG GET/SET`). `Debug` hides the passwords.
#[derive(Clone)]
pub struct Settings {
    pub requirepass: Option<Bytes>,
    /// Refuse non-loopback clients while the `default` user needs no password.
    pub protected_mode: bool,
    /// (user, password) this node authenticates with towards its primary and its peers; when
    /// absent, `requirepass` as the `default` user.
    pub link_credentials: Option<(Bytes, Bytes)>,
    pub maxmemory: u64,
    pub appendfsync: String,
    pub appendonly: bool,
    pub maxclients: u64,
    pub bind: String,
    pub port: u16,
    pub dir: String,
    pub proto_max_bulk_len: u64,
    /// The most argument bytes one write (or one transaction's writes) may carry
    /// (`--max-effect-bytes`): its effect must fit a log record and a link frame.
    pub max_effect_bytes: u64,
    pub timeout: u64,
    /// `client-query-buffer-limit` in bytes (`client_limits`).
    pub query_buffer_limit: u64,
    pub databases: u64,
    /// Redis parameters stored and reported without effect (`config::PARAMS`).
    pub params: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { "<hidden>" } else { "<none>" };
        f.debug_struct("Settings")
            .field("requirepass", &hidden(self.requirepass.is_some()))
            .field("protected_mode", &self.protected_mode)
            .field(
                "link_credentials",
                &self
                    .link_credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<hidden>")),
            )
            .field("maxmemory", &self.maxmemory)
            .field("appendfsync", &self.appendfsync)
            .field("appendonly", &self.appendonly)
            .field("maxclients", &self.maxclients)
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Counters reported by INFO and /metrics.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub commands: HashMap<&'static str, (u64, u64)>,
    pub total_commands: u64,
    pub total_connections: u64,
    pub rejected_connections: u64,
    pub expired_keys: u64,
    /// Keys evicted under `maxmemory` (INFO `evicted_keys`).
    pub evicted_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub error_replies: HashMap<String, u64>,
}

/// Everything the commands share, owned by one lock.
pub struct Db {
    pub ks: Keyspace,
    pub settings: Settings,
    pub stats: Stats,
    pub clients: BTreeMap<u64, ClientMeta>,
    pub channels: HashMap<Bytes, Vec<(u64, pubsub_queue::PubSender)>>,
    pub patterns: HashMap<Bytes, Vec<(u64, pubsub_queue::PubSender)>>,
    /// Set when the log could not be written or synced: writes are refused with this reason.
    pub persistence_error: Option<String>,
    /// Bytes allocated by the process (refreshed by the server), for `maxmemory` and INFO.
    pub used_memory: u64,
    pub started_ms: u64,
    pub run_id: String,
    pub tcp_port: u16,
    /// Extra INFO lines provided by the server layer (persistence, replication, crdt).
    pub info_extra: BTreeMap<&'static str, String>,
    /// What commands and role changes ask of the server beyond their replies; the server
    /// takes and carries them out after each batch of commands ([`ServerRequests`]).
    pub requests: ServerRequests,
    /// `CLIENT PAUSE` in force, if any.
    pub client_pause: Option<ClientPause>,
    /// Replication role, backlog, replicas and peer links.
    pub repl: crate::repl::ReplState,
    /// This node's participant (region) name.
    pub participant: String,
    /// The region's shards and which slots this node serves (`--shard-map`,
    /// `AA.TOPOLOGY SET`); `None`: every slot is served here.
    pub topology: Option<crate::cluster::Topology>,
    /// The address clients are told to use for this node (`AA.TOPOLOGY ANNOUNCE`): how it
    /// finds itself in a topology that names nodes by addresses other than its own.
    pub announced: Option<String>,
    /// Users and their permissions.
    pub acl: crate::acl::Acl,
    /// The file `ACL LOAD` reads (`--aclfile`).
    pub acl_file: Option<std::path::PathBuf>,
    /// Clients waiting in blocking commands.
    pub blocked: blocking::Blocked,
    /// Lua interpreters, script cache and function libraries of this node.
    pub scripting: scripting::Engine,
    /// Commands slower than `slowlog-log-slower-than` (SLOWLOG).
    pub slowlog: slowlog::Slowlog,
    /// Per-command latency histograms (LATENCY HISTOGRAM).
    pub latency: latency::Histograms,
}

impl Db {
    /// A fresh database around a keyspace, with Redis's default settings; the server then
    /// applies its command line.
    pub fn new(ks: Keyspace) -> Db {
        Db {
            settings: Settings {
                requirepass: None,
                protected_mode: true,
                link_credentials: None,
                maxmemory: 0,
                appendfsync: "everysec".into(),
                appendonly: true,
                maxclients: 10000,
                bind: "127.0.0.1".into(),
                port: 6379,
                dir: ".".into(),
                proto_max_bulk_len: 512 * 1024 * 1024,
                max_effect_bytes: MAX_EFFECT_BYTES,
                timeout: 0,
                query_buffer_limit: crate::client_limits::DEFAULT_QUERY_BUFFER_LIMIT,
                databases: 1,
                params: config::default_params(),
            },
            stats: Stats::default(),
            clients: BTreeMap::new(),
            channels: HashMap::new(),
            patterns: HashMap::new(),
            persistence_error: None,
            used_memory: 0,
            started_ms: 0,
            run_id: "0".repeat(40),
            tcp_port: 6379,
            info_extra: BTreeMap::new(),
            requests: ServerRequests::default(),
            client_pause: None,
            participant: ks.actor().participant.clone(),
            topology: None,
            announced: None,
            acl: crate::acl::Acl::default(),
            acl_file: None,
            blocked: blocking::Blocked::default(),
            scripting: scripting::Engine::default(),
            slowlog: slowlog::Slowlog::default(),
            latency: latency::Histograms::default(),
            repl: crate::repl::ReplState::new(ks.clock().clone()),
            ks,
        }
    }
}

/// A `CLIENT PAUSE`: commands of clients wait until `until_ms` (or `CLIENT UNPAUSE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientPause {
    /// End of the pause, in milliseconds since the Unix epoch.
    pub until_ms: u64,
    /// `WRITE` mode: only commands that change the dataset (or publish) wait; `ALL`: every
    /// command but `CLIENT` waits.
    pub writes_only: bool,
}

/// Per-connection state.
#[derive(Debug)]
pub struct ClientState {
    pub id: u64,
    pub proto: Protocol,
    pub authenticated: bool,
    /// The user the connection is authenticated as (`default` until `AUTH`).
    pub user: String,
    pub name: Option<Bytes>,
    /// Queued commands of an open MULTI.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// An error while queueing: EXEC must abort.
    pub multi_dirty: bool,
    pub watched: Vec<(Bytes, u64)>,
    pub channels: Vec<Bytes>,
    pub patterns: Vec<Bytes>,
    pub sender: Option<pubsub_queue::PubSender>,
    /// What the command being run asks of its connection ([`Ctx::then`]); [`dispatch`]
    /// returns it.
    pub(super) after_reply: Option<AfterReply>,
    /// Set by AA.HELLO: (kind, name) of the link client.
    pub link_hello: Option<(String, String)>,
    /// Set by `REPLCONF listening-port`: the port a replica serves clients on.
    pub listening_port: Option<u16>,
    /// Set by `READONLY`: under a topology, a replica serves this connection's reads.
    pub readonly: bool,
    /// Set by `AA.TOPOLOGY SHARDWIDE` (a proxy's connections): one command's keys may be in
    /// any slots of this node's shard, not only in one slot.
    pub shard_wide: bool,
    /// Set by `AA.TOPOLOGY SUBSCRIBEONLY` (a proxy's subscriber connections): only the
    /// commands allowed in a RESP2 subscribed context run, whatever the protocol.
    pub subscribe_only: bool,
    /// `CLIENT REPLY OFF`: no replies until `CLIENT REPLY ON`.
    pub reply_off: bool,
    /// `CLIENT REPLY SKIP`: the next command's reply is dropped.
    pub reply_skip_next: bool,
    /// The reply of the command being run is dropped (the one after `CLIENT REPLY SKIP`).
    pub reply_skip: bool,
}

impl ClientState {
    /// Ends the transaction in progress, if any, and forgets the watched keys (`DISCARD`,
    /// `RESET`, an `EXEC` that is aborted).
    pub fn forget_transaction(&mut self) {
        self.multi = None;
        self.multi_dirty = false;
        self.watched.clear();
    }

    pub fn new(id: u64, authenticated: bool) -> Self {
        ClientState {
            id,
            proto: Protocol::Resp2,
            authenticated,
            user: crate::acl::DEFAULT_USER.to_string(),
            name: None,
            multi: None,
            multi_dirty: false,
            watched: Vec::new(),
            channels: Vec::new(),
            patterns: Vec::new(),
            sender: None,
            after_reply: None,
            link_hello: None,
            listening_port: None,
            readonly: false,
            shard_wide: false,
            subscribe_only: false,
            reply_off: false,
            reply_skip_next: false,
            reply_skip: false,
        }
    }

    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// What commands and role changes ask of the server, which the command layer cannot do
/// itself: start tasks, stop the process, wake connections waiting on another lock. Handlers
/// record requests on [`Db::requests`]; the server takes them all at once after running a
/// batch of commands (a transaction or a script may make several) and carries them out.
#[derive(Debug, Default)]
pub struct ServerRequests {
    /// Link tasks to start or restart (`REPLICAOF`, `AA.PEER`, `--peer`, a promotion).
    pub links: Vec<crate::repl::ReplAction>,
    /// Compact the log into a snapshot now (`BGREWRITEAOF`, `BGSAVE`, `SAVE`).
    pub compact: bool,
    /// Stop gracefully (`SHUTDOWN`).
    pub shutdown: bool,
    /// A `CLIENT PAUSE` started or ended: paused connections look again.
    pub pause_changed: bool,
    /// Blocked clients must look again without a write (`CLIENT UNBLOCK`, a demotion).
    pub wake_blocked: bool,
}

/// What a command asks of its connection once its reply, if it wrote one, is sent. A handler
/// says it with [`Ctx::then`], [`dispatch`] returns it, and the connection carries it out
/// before it runs the next command.
#[derive(Debug)]
pub enum AfterReply {
    /// Close the connection (`QUIT`, `SHUTDOWN`, a command of a user that was removed).
    Close,
    /// Become a replication stream (`AA.SYNC`, `AA.PULL`).
    ServeLink(crate::repl::LinkRequest),
    /// Receive one handover (`AA.HANDOFF` when this primary lacks what the connecting node
    /// has; `repl/handoff.rs`).
    Handoff,
    /// Wait for replica acknowledgements, then reply (`WAIT`).
    Wait(crate::repl::WaitRequest),
    /// Wait in line until the blocking command can be served (it found nothing ready and
    /// wrote no reply).
    Block(blocking::BlockRequest),
}
