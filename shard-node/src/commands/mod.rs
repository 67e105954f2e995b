//! Command dispatch: the command table, per-client state and the checks Redis runs before a
//! command (unknown command, arity, authentication, transactions, pub/sub context, memory,
//! persistence health).
//!
//! Contract:
//! - One handler per command, `fn(&mut Ctx, &[Bytes]) -> CmdResult`, grouped by family in the
//!   sibling modules. `args[0]` is the command name. A handler either writes exactly one reply
//!   with `ctx.out` and returns `Ok(())`, or writes nothing and returns `Err(text)` — the
//!   dispatcher then writes the error reply. (`CLIENT REPLY OFF|SKIP` are the exception: they
//!   have no reply, and the dispatcher takes back the replies they suppress.)
//! - A handler that needs its connection to do something once the reply is sent (close, wait
//!   for replicas, block, become a replication stream, receive a handover) says so with
//!   [`Ctx::then`]; [`dispatch`] returns that [`AfterReply`] to the connection.
//! - Handlers read with `ctx.db.ks.get(..)` and write only through [`Ctx::write`], which turns
//!   operations into one CRDT effect (or adds them to the open transaction's effect). They must
//!   check types (`slot_for_write`) and arguments before writing anything, so a failing command
//!   changes nothing.
//! - Replies and error texts are Redis 7.0's, byte for byte.

pub mod acl;
pub mod bitmaps;
pub mod blocking;
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod eviction;
pub mod hashes;
pub mod hyperloglog;
pub mod info;
pub mod introspection;
pub mod keys;
pub mod keyspace_admin;
pub mod latency;
pub mod lists;
pub mod object;
pub mod persistence;
pub mod pubsub;
pub mod pubsub_queue;
pub mod replication;
pub mod scripting;
pub mod sets;
pub mod slowlog;
pub mod sort;
pub mod streams;
pub mod strings;
pub mod testing;
pub mod transactions;
pub mod util;
pub mod zsets;

use crate::crdt::{Keyspace, Kind, Op, OpKind, Slot};
use crate::resp::{Protocol, ReplyWriter};
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// An error reply's text without the leading `-` (e.g. `"ERR syntax error"`).
pub type CmdError = Cow<'static, str>;
pub type CmdResult = Result<(), CmdError>;
pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult;

pub const ERR_SYNTAX: &str = "ERR syntax error";
pub const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";
pub const ERR_WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const ERR_NO_KEY: &str = "ERR no such key";
pub const ERR_INDEX: &str = "ERR index out of range";

/// Flags of a command, as `COMMAND` reports them and as the dispatcher uses them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    pub write: bool,
    pub readonly: bool,
    pub denyoom: bool,
    pub admin: bool,
    pub pubsub: bool,
    pub noscript: bool,
    /// May block the client (BLPOP…).
    pub blocking: bool,
    pub loading: bool,
    pub stale: bool,
    pub fast: bool,
    pub no_auth: bool,
    pub allowed_in_subscribe: bool,
    /// Runs immediately even inside MULTI (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET).
    pub no_multi_queue: bool,
}

/// One entry of the command table.
pub struct Command {
    pub name: &'static str,
    /// Redis arity: positive = exact argument count, negative = at least that many.
    pub arity: i32,
    pub flags: Flags,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub handler: Handler,
    pub group: &'static str,
    pub summary: &'static str,
}

/// Commands whose keys follow a count (`LMPOP numkeys key...`), with the count's position; the
/// keys their table entry names (`ZUNIONSTORE`'s destination) are keys too.
const NUMKEYS_COMMANDS: [(&str, usize); 18] = [
    ("lmpop", 1),
    ("sintercard", 1),
    ("zunion", 1),
    ("zinter", 1),
    ("zdiff", 1),
    ("zintercard", 1),
    ("zmpop", 1),
    ("zunionstore", 2),
    ("zinterstore", 2),
    ("zdiffstore", 2),
    ("blmpop", 2),
    ("bzmpop", 2),
    ("eval", 2),
    ("evalsha", 2),
    ("eval_ro", 2),
    ("evalsha_ro", 2),
    ("fcall", 2),
    ("fcall_ro", 2),
];

impl Command {
    /// Positions of every key argument of `args`, including the keys that follow a count
    /// (`LMPOP`, `SINTERCARD`, `ZUNION`…), those after `STREAMS`, the STORE keys (`SORT`,
    /// `GEORADIUS`) and those of container commands' subcommands (`XGROUP`, `XINFO`); an
    /// unreadable count, or one beyond the arguments, yields none of them (the handler refuses
    /// it).
    pub fn keys_in(&self, args: &[Bytes]) -> Vec<usize> {
        if matches!(self.name, "xread" | "xreadgroup") {
            return streams::stream_keys(args);
        }
        if matches!(self.name, "xgroup" | "xinfo") {
            // The subcommands name the key after themselves (HELP has none).
            return if args.len() > 2 { vec![2] } else { Vec::new() };
        }
        let store = match self.name {
            "sort" => Some(sort::store_key_position(args)),
            "georadius" | "georadiusbymember" => Some(zsets::geo::radius_store_key(args)),
            _ => None,
        };
        if let Some(store) = store {
            let mut keys: Vec<usize> = self.key_positions(args.len()).collect();
            keys.extend(store);
            return keys;
        }
        if let Some((_, at)) = NUMKEYS_COMMANDS.iter().find(|(n, _)| *n == self.name) {
            let count = args
                .get(*at)
                .and_then(|a| crate::resp::parse_i64_strict(a))
                .filter(|n| *n > 0)
                .map_or(0, |n| n as usize);
            let first = at + 1;
            let mut keys: Vec<usize> = self.key_positions(args.len()).collect();
            // Like Redis's key extraction, a count beyond the arguments names no keys.
            if first.saturating_add(count) <= args.len() {
                keys.extend(first..first + count);
            }
            return keys;
        }
        self.key_positions(args.len()).collect()
    }

    /// Positions of key arguments in `args`.
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> {
        let first = self.first_key.max(0) as usize;
        let last = if self.last_key < 0 {
            (argc as i64 + i64::from(self.last_key)).max(0) as usize
        } else {
            self.last_key as usize
        };
        let step = self.step.max(1) as usize;
        let valid = self.first_key > 0;
        (first..=last.min(argc.saturating_sub(1)))
            .step_by(step)
            .filter(move |_| valid)
    }
}

impl crate::acl::Checked for Command {
    fn name(&self) -> &str {
        self.name
    }

    fn keys_in(&self, args: &[Bytes]) -> Vec<usize> {
        Command::keys_in(self, args)
    }
}

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
    /// Set by BGREWRITEAOF/BGSAVE/SAVE: the server starts a compaction.
    pub compaction_requested: bool,
    /// Set by SHUTDOWN: the server stops gracefully.
    pub shutdown_requested: bool,
    /// `CLIENT PAUSE` in force, if any.
    pub client_pause: Option<ClientPause>,
    /// Set by `CLIENT PAUSE` / `CLIENT UNPAUSE`: the server wakes the connections waiting.
    pub pause_changed: bool,
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
            compaction_requested: false,
            shutdown_requested: false,
            client_pause: None,
            pause_changed: false,
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

/// Whether `args` from `client` must wait for the `CLIENT PAUSE` in force to end. `CLIENT`
/// itself never waits (so the pause can be lifted), nor does a command queued in `MULTI`; `EXEC`
/// waits in `WRITE` mode when a queued command writes.
pub fn paused(db: &Db, client: &ClientState, args: &[Bytes], now_ms: u64) -> bool {
    let Some(pause) = db.client_pause else {
        return false;
    };
    if now_ms >= pause.until_ms {
        return false;
    }
    let Some(command) = args.first().and_then(|name| lookup(name)) else {
        return false;
    };
    if command.name == "client" {
        return false;
    }
    if !pause.writes_only {
        return true;
    }
    // Scripts that may write wait too, as in Redis (not the `_RO` forms).
    let changes = |c: &Command, a: &[Bytes]| {
        writes(c, a)
            || matches!(
                c.name,
                "publish" | "spublish" | "eval" | "evalsha" | "fcall"
            )
    };
    match (&client.multi, command.name) {
        (Some(queued), "exec") => queued
            .iter()
            .filter_map(|q| q.first().and_then(|name| lookup(name)).map(|c| (c, q)))
            .any(|(c, q)| changes(c, q)),
        (Some(_), _) => false,
        (None, _) => changes(command, args),
    }
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
    after_reply: Option<AfterReply>,
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

/// What a handler works with.
pub struct Ctx<'a> {
    pub db: &'a mut Db,
    pub client: &'a mut ClientState,
    pub out: ReplyWriter<'a>,
    pub now_ms: u64,
}

impl Ctx<'_> {
    /// Asks the connection to do `what` once this command's reply is sent (the last request
    /// of a command wins).
    pub fn then(&mut self, what: AfterReply) {
        self.client.after_reply = Some(what);
    }

    /// The blocking request this command has made so far, to adjust it.
    pub fn block_request(&mut self) -> Option<&mut blocking::BlockRequest> {
        match self.client.after_reply.as_mut() {
            Some(AfterReply::Block(request)) => Some(request),
            _ => None,
        }
    }

    /// Commits write operations as one effect (or into the open transaction).
    pub fn write(&mut self, ops: Vec<Op>) {
        self.db.ks.commit(self.now_ms, ops);
    }

    /// The visible value of a key.
    pub fn get(&self, key: &[u8]) -> Option<&Slot> {
        self.db.ks.get(key, self.now_ms)
    }

    /// The slot stamp for writing `kind` into `key`, or the WRONGTYPE error.
    pub fn slot_for(&self, key: &[u8], kind: Kind) -> Result<crate::crdt::Stamp, CmdError> {
        self.db
            .ks
            .slot_for_write(key, kind, self.now_ms)
            .map_err(|_| Cow::Borrowed(ERR_WRONGTYPE))
    }
}

/// Builds an operation.
pub fn op(key: &Bytes, kind: OpKind) -> Op {
    Op {
        key: key.clone(),
        kind,
    }
}

/// Parses an integer argument (Redis `string2ll` rules).
pub fn int_arg(arg: &[u8]) -> Result<i64, CmdError> {
    crate::resp::parse_i64_strict(arg).ok_or(Cow::Borrowed(ERR_NOT_INTEGER))
}

/// Parses a float argument (Redis `string2ld`/`strtod` rules).
pub fn float_arg(arg: &[u8]) -> Result<f64, CmdError> {
    crate::resp::parse_f64_strict(arg).ok_or(Cow::Borrowed(ERR_NOT_FLOAT))
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Lower-case command name of `args[0]` as Redis prints it in errors.
pub fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

/// `ERR wrong number of arguments for '<name>' command`.
pub fn arity_error(name: &str) -> CmdError {
    Cow::Owned(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// The full command table.
pub fn table() -> &'static HashMap<&'static str, Command> {
    static TABLE: std::sync::OnceLock<HashMap<&'static str, Command>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut all = Vec::new();
        all.extend(strings::commands());
        all.extend(bitmaps::commands());
        all.extend(keys::commands());
        all.extend(connection::commands());
        all.extend(acl::commands());
        all.extend(client::commands());
        all.extend(introspection::commands());
        all.extend(info::commands());
        all.extend(config::commands());
        all.extend(keyspace_admin::commands());
        all.extend(latency::commands());
        all.extend(transactions::commands());
        all.extend(pubsub::commands());
        all.extend(persistence::commands());
        all.extend(hashes::commands());
        all.extend(sets::commands());
        all.extend(slowlog::commands());
        all.extend(sort::commands());
        all.extend(zsets::commands());
        all.extend(lists::commands());
        all.extend(blocking::commands());
        all.extend(streams::commands());
        all.extend(hyperloglog::commands());
        all.extend(object::commands());
        all.extend(replication::commands());
        all.extend(cluster::commands());
        all.extend(scripting::commands());
        all.into_iter().map(|c| (c.name, c)).collect()
    })
}

/// Whether this build has a command of that name.
pub fn is_command(name: &str) -> bool {
    lookup(name.as_bytes()).is_some()
}

/// Looks a command up by its (any-case) name.
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    if name.len() > 32 {
        return None;
    }
    let mut lowered = [0u8; 32];
    for (i, b) in name.iter().enumerate() {
        lowered[i] = b.to_ascii_lowercase();
    }
    let text = std::str::from_utf8(&lowered[..name.len()]).ok()?;
    table().get(text)
}

/// A compact way for family modules to declare commands.
#[allow(clippy::too_many_arguments)]
pub fn cmd(
    name: &'static str,
    arity: i32,
    flags: &str,
    first_key: i32,
    last_key: i32,
    step: i32,
    group: &'static str,
    summary: &'static str,
    handler: Handler,
) -> Command {
    let mut f = Flags::default();
    for word in flags.split_whitespace() {
        match word {
            "write" => f.write = true,
            "readonly" => f.readonly = true,
            "denyoom" => f.denyoom = true,
            "admin" => f.admin = true,
            "pubsub" => f.pubsub = true,
            "noscript" => f.noscript = true,
            "blocking" => f.blocking = true,
            "loading" => f.loading = true,
            "stale" => f.stale = true,
            "fast" => f.fast = true,
            "no_auth" => f.no_auth = true,
            "subscribe_ok" => f.allowed_in_subscribe = true,
            "no_queue" => f.no_multi_queue = true,
            _ => {}
        }
    }
    Command {
        name,
        arity,
        flags: f,
        first_key,
        last_key,
        step,
        handler,
        group,
        summary,
    }
}

/// Runs one command for a client: every pre-check, MULTI queueing, expiry, then the handler.
/// `CLIENT REPLY OFF|SKIP` take back the reply it wrote. Returns what the command asks of the
/// connection next ([`AfterReply`]).
pub fn dispatch(
    db: &mut Db,
    client: &mut ClientState,
    args: &[Bytes],
    out: &mut bytes::BytesMut,
    now_ms: u64,
) -> Option<AfterReply> {
    let start = out.len();
    client.after_reply = None;
    dispatch_command(db, client, args, out, now_ms);
    if client.reply_off || std::mem::take(&mut client.reply_skip) {
        out.truncate(start);
    }
    if std::mem::take(&mut client.reply_skip_next) {
        client.reply_skip = true;
    }
    client.after_reply.take()
}

fn dispatch_command(
    db: &mut Db,
    client: &mut ClientState,
    args: &[Bytes],
    out: &mut bytes::BytesMut,
    now_ms: u64,
) {
    let proto = client.proto;
    let mut w = ReplyWriter::new(out, proto);
    let Some(command) = lookup(&args[0]) else {
        let mut shown = String::new();
        for a in &args[1..] {
            if shown.len() >= 128 {
                break;
            }
            let room = 128 - shown.len();
            let text = String::from_utf8_lossy(a);
            let cut: String = text.chars().take(room).collect();
            shown.push_str(&format!("'{cut}' "));
        }
        let name: String = String::from_utf8_lossy(&args[0])
            .chars()
            .take(128)
            .collect();
        flag_multi(client);
        reply_error(
            db,
            &mut w,
            &format!("ERR unknown command '{name}', with args beginning with: {shown}"),
        );
        return;
    };
    let argc = args.len() as i32;
    if (command.arity > 0 && argc != command.arity) || (command.arity < 0 && argc < -command.arity)
    {
        if command.name == "exec" {
            // Redis aborts the transaction and says why.
            client.multi = None;
            client.multi_dirty = false;
            client.watched.clear();
            let reason = arity_error(command.name);
            let reason = reason.strip_prefix("ERR ").unwrap_or(&reason);
            reply_error(
                db,
                &mut w,
                &format!("EXECABORT Transaction discarded because of: {reason}"),
            );
            return;
        }
        flag_multi(client);
        reply_error(db, &mut w, &arity_error(command.name));
        return;
    }
    if !client.authenticated && !command.flags.no_auth {
        flag_multi(client);
        reply_error(db, &mut w, "NOAUTH Authentication required.");
        return;
    }
    if let Err(denied) = crate::acl::check(&db.acl, &client.user, command, args) {
        if command.name == "exec" {
            // Redis aborts the transaction and says why.
            client.multi = None;
            client.multi_dirty = false;
            client.watched.clear();
            let reason = denied.message();
            reply_error(
                db,
                &mut w,
                &format!("EXECABORT Transaction discarded because of: {reason}"),
            );
            return;
        }
        flag_multi(client);
        if db.acl.user(&client.user).is_none() {
            // The user was removed: the connection ends, as in Redis.
            client.after_reply = Some(AfterReply::Close);
        }
        reply_error(db, &mut w, &denied.message());
        return;
    }
    if (client.subscribe_only || client.subscriptions() > 0 && proto == Protocol::Resp2)
        && !command.flags.allowed_in_subscribe
    {
        reply_error(
            db,
            &mut w,
            &format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                command.name
            ),
        );
        return;
    }
    if let Err(e) = cluster::route(db, client, command, args) {
        flag_multi(client);
        reply_error(db, &mut w, &e);
        return;
    }
    if let Err(e) = admission(db, command, args, now_ms) {
        flag_multi(client);
        reply_error(db, &mut w, &e);
        return;
    }
    if client.multi.is_some() && !command.flags.no_multi_queue {
        if let Some(q) = client.multi.as_mut() {
            q.push(args.to_vec());
        }
        w.simple("QUEUED");
        return;
    }
    run(db, client, command, args, w, now_ms);
}

/// Whether `args` changes the dataset: a write command, or a writing subcommand of a container
/// command whose own flags are empty, as in Redis (`XGROUP CREATE`…).
/// The largest `--max-effect-bytes`: an effect's encoding must fit a link frame's bulk limit
/// (512 MiB on every node) with room for its header, and a log record (1 GiB).
pub const MAX_EFFECT_BYTES: u64 = 511 * 1024 * 1024;

/// Bytes of the arguments of a command.
pub fn argument_bytes(args: &[Bytes]) -> u64 {
    args.iter().map(|a| a.len() as u64).sum()
}

/// The error for writes whose effect would carry `bytes` over the limit.
pub fn effect_too_large(bytes: u64, limit: u64, what: &str) -> CmdError {
    Cow::Owned(format!(
        "{what} would carry {bytes} bytes, more than one write may replicate (max-effect-bytes {limit}); split it into smaller writes"
    ))
}

pub fn writes(command: &Command, args: &[Bytes]) -> bool {
    command.flags.write
        || (command.name == "xgroup" && args.get(1).is_some_and(|sub| !is(sub, "help")))
}

/// Checks that depend on server state: memory limit and persistence health for writes.
fn admission(db: &mut Db, command: &Command, args: &[Bytes], now_ms: u64) -> Result<(), CmdError> {
    let write = writes(command, args);
    if command.flags.denyoom {
        eviction::make_room(db, now_ms);
    }
    if command.flags.denyoom
        && db.settings.maxmemory > 0
        && eviction::counted_memory(db) > db.settings.maxmemory
    {
        return Err(Cow::Borrowed(
            "OOM command not allowed when used memory > 'maxmemory'.",
        ));
    }
    if write && !db.repl.is_primary() {
        return Err(Cow::Borrowed(
            "READONLY You can't write against a read only replica.",
        ));
    }
    if write {
        let bytes = argument_bytes(args);
        if bytes > db.settings.max_effect_bytes {
            return Err(effect_too_large(
                bytes,
                db.settings.max_effect_bytes,
                "ERR this write",
            ));
        }
    }
    if write && now_ms < db.repl.write_hold_until_ms {
        return Err(Cow::Borrowed(
            "READONLY this node restarted and does not take writes until it is told its role",
        ));
    }
    if write {
        if let Some(reason) = &db.persistence_error {
            return Err(Cow::Owned(format!(
                "MISCONF Errors writing to the AOF file: {reason}"
            )));
        }
    }
    Ok(())
}

/// Executes a command that passed the checks (also used by EXEC for queued commands).
pub fn run(
    db: &mut Db,
    client: &mut ClientState,
    command: &'static Command,
    args: &[Bytes],
    mut w: ReplyWriter<'_>,
    now_ms: u64,
) {
    if db.ks.keys_with_deadline() > 0 && db.repl.is_primary() {
        for pos in command.keys_in(args) {
            let key = &args[pos];
            if db.ks.needs_expiry_delete(key, now_ms, command.flags.write) {
                db.ks.commit(now_ms, vec![op(key, OpKind::Del)]);
                db.stats.expired_keys += 1;
            }
        }
    }
    let start = std::time::Instant::now();
    let result = {
        let mut ctx = Ctx {
            db,
            client,
            out: ReplyWriter::new(w.buf, w.proto),
            now_ms,
        };
        (command.handler)(&mut ctx, args)
    };
    let micros = start.elapsed().as_micros() as u64;
    slowlog::record(db, client, command, args, micros, now_ms);
    latency::record(db, command.name, micros);
    let entry = db.stats.commands.entry(command.name).or_insert((0, 0));
    entry.0 += 1;
    entry.1 += micros;
    db.stats.total_commands += 1;
    if let Err(e) = result {
        reply_error(db, &mut w, &e);
    }
}

fn flag_multi(client: &mut ClientState) {
    if client.multi.is_some() {
        client.multi_dirty = true;
    }
}

/// Writes an error reply and counts it by its prefix.
pub fn reply_error(db: &mut Db, w: &mut ReplyWriter<'_>, text: &str) {
    let prefix = text.split(' ').next().unwrap_or("ERR").to_string();
    *db.stats.error_replies.entry(prefix).or_insert(0) += 1;
    w.error(text);
}

/// Reads the integer value of a string key for INCR-style commands.
pub fn read_counter(slot: Option<&Slot>) -> Result<Option<crate::crdt::Num>, CmdError> {
    match slot {
        None => Ok(None),
        Some(s) => match &s.value {
            crate::crdt::Value::Str(c) => Ok(c.number()),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}
