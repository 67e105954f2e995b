//! The commands: the command table and what a handler works with ([`Ctx`]); the shared and
//! per-connection state is in `state`, and running a command with the checks Redis makes
//! before it (unknown command, arity, authentication, transactions, pub/sub context, memory,
//! persistence health) is in `dispatch`.
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
mod dispatch;
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
mod state;
pub mod streams;
pub mod strings;
pub mod testing;
pub mod transactions;
pub mod util;
pub mod zsets;

use dispatch::admission;
pub use dispatch::{
    argument_bytes, dispatch, effect_too_large, paused, reply_error, run, writes, MAX_EFFECT_BYTES,
};
pub use state::{
    AfterReply, ClientMeta, ClientPause, ClientState, Db, PubMessage, ServerRequests, Settings,
    Stats,
};

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

/// What a handler works with.
pub struct Ctx<'a> {
    pub db: &'a mut Db,
    pub client: &'a mut ClientState,
    pub out: ReplyWriter<'a>,
    pub now_ms: u64,
    /// Set when [`Ctx::write`] refused a write that would make its effect larger than
    /// `max-effect-bytes`: the command's reply is replaced by this error.
    pub refused: Option<CmdError>,
}

impl Ctx<'_> {
    /// Replies with a `HELP` text, one simple string per line.
    pub fn reply_help(&mut self, lines: &[&str]) {
        self.out.array(lines.len());
        for l in lines {
            self.out.simple(l);
        }
    }

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
    /// Applies a command's operations as (part of) one effect. Operations that would make the
    /// effect larger than `max-effect-bytes` (a script, a transaction, or a command such as
    /// COPY or SUNIONSTORE whose effect its arguments do not bound) are refused instead: nothing
    /// of them is applied, later writes of the command are skipped, and the command answers
    /// with the error ([`Ctx::refused`]).
    pub fn write(&mut self, ops: Vec<Op>) {
        if self.refused.is_some() {
            return;
        }
        let limit = self.db.settings.max_effect_bytes;
        let bytes = self.db.ks.open_batch_bytes()
            + ops.iter().map(crate::crdt::Op::size_estimate).sum::<u64>();
        if bytes > limit {
            self.refused = Some(effect_too_large(bytes, limit, "ERR this write"));
            return;
        }
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
