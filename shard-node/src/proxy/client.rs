//! One client connection of the proxy: reading commands, sending each where it belongs, and
//! writing the replies back in request order.
//!
//! Contract:
//! - A command whose keys are all served by one shard goes to that shard (its node accepts
//!   keys of several of its slots from the proxy); keys on different shards get `CROSSSLOT`,
//!   except for the commands split by slot.
//! - Replies are written in the order the requests arrived, whatever order the shards answer
//!   in. At most `--max-pending` requests of a client are in flight; past that the proxy stops
//!   reading the client until it reads its replies, so a client that never reads holds a
//!   bounded amount of memory.
//! - The proxy answers by itself: `PING`, `ECHO`, `HELLO`, `AUTH`, `SELECT 0`, `QUIT`,
//!   `RESET`, `CLIENT SETNAME`/`GETNAME`/`ID`/`SETINFO`, `READONLY`, `READWRITE`, `ASKING`,
//!   `CLUSTER` (presenting itself as the one node serving every slot) and `AA.TOPOLOGY`.
//! - A transaction (`WATCH`, or `MULTI` and its first command) is pinned to one shard on a
//!   connection of its own; a command of the transaction for another shard is refused with
//!   `CROSSSLOT` and makes `EXEC` fail with `EXECABORT`, as a queueing error does in Redis.
//! - `SUBSCRIBE`/`PSUBSCRIBE` join the client to a connection of its own to the pub/sub shard
//!   (shard 0's primary) for the rest of its life, on which only the commands of a subscribed
//!   connection run (RESP3 too); `PUBLISH` goes to the same shard, so every proxy's publishers
//!   reach every proxy's subscribers.
//! - Commands are refused when they belong to one shard-node rather than to the database
//!   (`REPLICAOF`, `SHUTDOWN`, `AA.*` links, `DEBUG`, `MONITOR`), would change how a shared
//!   connection behaves (`CLIENT REPLY`, `CLIENT PAUSE`, `CLIENT KILL`…) or set the nodes'
//!   passwords (`CONFIG SET requirepass`), inside transactions too.
//! - A command that moves a client's requests to another connection waits for the replies to
//!   its earlier requests (see [`Client::waits_for_earlier`]), so a client's requests run in
//!   the order it sent them.
//! - `MOVED` and `READONLY` replies mean the request was refused, not run: the backend
//!   connection sends it again once the shard is found (see [`super::backend`]).

use super::backend::{Backend, Reply};
use super::merge::{merge, scan_page, scan_position, Merge, ScanStep};
use super::Core;
use crate::cluster::{key_slot, node_id, SLOTS};
use crate::commands::{arity_error, lookup, Command};
use crate::resp::{write_command, Limits, Protocol, ReplyWriter, RequestParser};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const ERR_CROSSSLOT_SHARDS: &str =
    "CROSSSLOT Keys in request are served by different shards; use {hash tags} to keep them together";
const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
/// The shard that carries pub/sub and keyless commands.
const FIRST_SHARD: usize = 0;

struct Part {
    rx: oneshot::Receiver<Reply>,
    got: Option<Reply>,
}

impl Part {
    fn new(rx: oneshot::Receiver<Reply>) -> Part {
        Part { rx, got: None }
    }

    fn try_settle(&mut self) -> bool {
        if self.got.is_none() {
            match self.rx.try_recv() {
                Ok(r) => self.got = Some(r),
                Err(oneshot::error::TryRecvError::Empty) => return false,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.got = Some(Err("ERR the proxy lost the request".into()))
                }
            }
        }
        true
    }
}

/// What becomes of a reply slot once it reaches the front of the queue.
enum Deferred {
    /// `WAIT numreplicas timeout`, sent to the shards written to before it (all shards when
    /// none) once every earlier reply is in.
    Wait(Vec<usize>, Bytes, Bytes),
}

/// A `SCAN` going over the shards: the page asked of `shard`, and the keys found before it.
struct ScanChain {
    shard: usize,
    shards: usize,
    args: Vec<Bytes>,
    carried: Vec<Bytes>,
}

/// One reply owed to the client, in request order.
struct Pending {
    parts: Vec<Part>,
    merge: Merge,
    ready: Option<Bytes>,
    deferred: Option<Deferred>,
    scan: Option<ScanChain>,
}

impl Pending {
    fn ready(frame: Bytes) -> Pending {
        Pending {
            parts: Vec::new(),
            merge: Merge::Pass,
            ready: Some(frame),
            deferred: None,
            scan: None,
        }
    }

    fn parts(parts: Vec<Part>, merge: Merge) -> Pending {
        Pending {
            parts,
            merge,
            ready: None,
            deferred: None,
            scan: None,
        }
    }

    /// True when every part has its reply (checked without waiting).
    fn try_settle(&mut self) -> bool {
        if self.deferred.is_some() {
            return true;
        }
        self.parts.iter_mut().all(|p| p.try_settle())
    }
}

/// Waits until the front of `pending` has all its replies. Replies are stored in the queue
/// itself, so dropping this future loses nothing.
async fn settle_front(pending: &mut VecDeque<Pending>) {
    std::future::poll_fn(|cx| {
        let Some(front) = pending.front_mut() else {
            return Poll::Pending;
        };
        if front.deferred.is_some() {
            return Poll::Ready(());
        }
        let mut all = true;
        for part in front.parts.iter_mut().filter(|p| p.got.is_none()) {
            match std::pin::Pin::new(&mut part.rx).poll(cx) {
                Poll::Ready(r) => {
                    part.got =
                        Some(r.unwrap_or_else(|_| Err("ERR the proxy lost the request".into())))
                }
                Poll::Pending => all = false,
            }
        }
        if all {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// A transaction pinned to one shard.
#[derive(Default)]
struct Transaction {
    pinned: Option<(usize, Backend)>,
    in_multi: bool,
    /// `MULTI` was answered by the proxy and is still to be sent when the shard is known.
    multi_owed: bool,
    /// Keyless commands queued (answered `QUEUED` by the proxy) before a key chose the shard.
    held: Vec<Bytes>,
    failed: bool,
}

struct Client {
    core: Arc<Core>,
    id: u64,
    proto: Protocol,
    authenticated: bool,
    name: Option<Bytes>,
    /// The address this client reached the proxy at, for the Cluster API.
    local: String,
    backends: Vec<Option<Backend>>,
    wrote_to: BTreeSet<usize>,
    tx: Option<Transaction>,
    pending: VecDeque<Pending>,
    closing: bool,
    subscribe: Option<Bytes>,
    /// A command waiting for every earlier reply before it is sent (it moves this client's
    /// requests to another connection, see [`Client::waits_for_earlier`]).
    held: Option<Vec<Bytes>>,
    /// The next command waits for every earlier reply (after `EXEC`, `HELLO 3`…).
    hold_next: bool,
}

/// Serves one client until it disconnects.
pub async fn serve(core: Arc<Core>, mut socket: TcpStream, _peer: SocketAddr) {
    struct Count(Arc<Core>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let open = core.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _count = Count(core.clone());
    core.metrics
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    if open > core.settings.maxclients {
        core.metrics
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    }
    let local = match &core.settings.announce {
        Some(a) => a.clone(),
        None => socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "127.0.0.1:6379".into()),
    };
    let authenticated = core.settings.requirepass.is_none();
    let mut client = Client {
        id: core.next_client_id(),
        core,
        proto: Protocol::Resp2,
        authenticated,
        name: None,
        local,
        backends: Vec::new(),
        wrote_to: BTreeSet::new(),
        tx: None,
        pending: VecDeque::new(),
        closing: false,
        subscribe: None,
        held: None,
        hold_next: false,
    };
    client.run(socket).await;
}

/// Largest buffer kept between requests; a bigger one is given back once empty.
const KEEP_BUFFER: usize = 64 * 1024;

impl Client {
    async fn run(&mut self, socket: TcpStream) {
        let (mut rd, mut wr) = socket.into_split();
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        let mut parser = RequestParser::new();
        let limits = Limits::default();
        loop {
            if self.pending.is_empty() {
                if !out.is_empty() {
                    if wr.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    if out.capacity() > KEEP_BUFFER {
                        out = BytesMut::new();
                    }
                }
                if self.closing {
                    tracing::debug!(client = self.id, "closing the client connection");
                    let _ = wr.shutdown().await;
                    return;
                }
                if let Some(first) = self.subscribe.take() {
                    if let Ok(stream) = rd.reunite(wr) {
                        self.pass_through(stream, first, input).await;
                    }
                    return;
                }
                if let Some(args) = self.held.take() {
                    // Every earlier reply is written: send it, then what was read after it.
                    self.hold_next = false;
                    self.command(args);
                    self.take_commands(&mut parser, &mut input, &limits);
                    continue;
                }
            }
            let can_read = !self.closing
                && self.subscribe.is_none()
                && self.held.is_none()
                && self.pending.len() < self.core.settings.max_pending;
            let read = tokio::select! {
                biased;
                _ = settle_front(&mut self.pending), if !self.pending.is_empty() => None,
                r = async {
                    if input.capacity() - input.len() < 1024 {
                        input.reserve(4096);
                    }
                    rd.read_buf(&mut input).await
                }, if can_read => Some(r),
            };
            match read {
                None => {
                    self.write_settled(&mut out).await;
                    if !out.is_empty() {
                        if wr.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
                Some(Ok(0)) => {
                    tracing::debug!(client = self.id, "the client closed its side");
                    self.closing = true
                }
                Some(Err(e)) => {
                    tracing::debug!(client = self.id, "client connection failed: {e}");
                    return;
                }
                Some(Ok(_)) => {
                    self.take_commands(&mut parser, &mut input, &limits);
                    if input.is_empty() && input.capacity() > KEEP_BUFFER {
                        input = BytesMut::new();
                    }
                }
            }
        }
    }

    /// Handles every complete command in `input`, stopping at one that must wait for the
    /// earlier replies, at a subscription and at the end of the connection.
    fn take_commands(&mut self, parser: &mut RequestParser, input: &mut BytesMut, limits: &Limits) {
        while !self.closing && self.subscribe.is_none() && self.held.is_none() {
            match parser.parse(input, limits, self.authenticated) {
                Ok(Some(args)) => {
                    if !self.pending.is_empty() && self.waits_for_earlier(&args) {
                        self.held = Some(args);
                        return;
                    }
                    self.hold_next = false;
                    self.command(args);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(client = self.id, "protocol error: {e}");
                    self.error(&e.0);
                    self.closing = true;
                }
            }
        }
    }

    /// Whether `args` must wait for every earlier reply: it follows a change of connection
    /// (`EXEC`, `DISCARD`, `UNWATCH`, a protocol switch, `RESET`) or starts one (`MULTI` or
    /// `WATCH` opening a transaction's connection). Requests of one client then run in the
    /// order sent even though they travel on different connections.
    fn waits_for_earlier(&self, args: &[Bytes]) -> bool {
        if self.hold_next {
            return true;
        }
        let opening = self
            .tx
            .as_ref()
            .is_none_or(|t| t.pinned.is_none() && !t.in_multi);
        opening && (is_any(&args[0], &["multi", "watch"]))
    }

    /// Moves every settled reply at the front of the queue to `out`.
    async fn write_settled(&mut self, out: &mut BytesMut) {
        while let Some(mut front) = self.pending.pop_front() {
            if let Some(d) = front.deferred.take() {
                front = self.launch(d);
                self.pending.push_front(front);
                continue;
            }
            if !front.try_settle() {
                self.pending.push_front(front);
                return;
            }
            if let Some(frame) = front.ready.take() {
                out.extend_from_slice(&frame);
                continue;
            }
            let replies: Vec<Reply> = front
                .parts
                .iter_mut()
                .map(|p| {
                    p.got
                        .take()
                        .unwrap_or_else(|| Err("ERR the proxy lost the request".into()))
                })
                .collect();
            if let Some(chain) = front.scan.take() {
                let reply = replies
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Err("ERR the proxy lost the request".into()));
                match scan_page(reply, chain.shard, chain.shards, chain.carried, self.proto) {
                    ScanStep::Reply(frame) => out.extend_from_slice(&frame),
                    ScanStep::Continue(carried) => {
                        let next = ScanChain {
                            shard: chain.shard + 1,
                            shards: chain.shards,
                            args: chain.args,
                            carried,
                        };
                        let p = self.scan_shard(next, 0);
                        self.pending.push_front(p);
                    }
                }
                continue;
            }
            out.extend_from_slice(&merge(&front.merge, replies, self.proto));
        }
    }

    fn push(&mut self, p: Pending) {
        self.pending.push_back(p);
    }

    fn error(&mut self, text: &str) {
        self.push(Pending::ready(error_bytes(text)));
    }

    fn reply(&mut self, f: impl FnOnce(&mut ReplyWriter<'_>)) {
        let mut buf = BytesMut::new();
        f(&mut ReplyWriter::new(&mut buf, self.proto));
        self.push(Pending::ready(buf.freeze()));
    }

    fn backend(&mut self, shard: usize) -> Backend {
        if self.backends.len() <= shard {
            self.backends.resize(shard + 1, None);
        }
        match &self.backends[shard] {
            Some(b) if !b.is_closed() => b.clone(),
            _ => {
                let b = self
                    .core
                    .shared_backend(shard, self.proto == Protocol::Resp3, self.id);
                self.backends[shard] = Some(b.clone());
                b
            }
        }
    }

    /// Sends `args` to shard `shard`.
    fn forward(&mut self, shard: usize, args: &[Bytes]) {
        let frame = encode(args);
        self.core.metrics.request(shard);
        let rx = self.backend(shard).send(frame);
        self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
    }

    /// Sends one command per shard and merges the replies.
    fn fan_out(&mut self, args: &[Bytes], how: Merge) {
        let shards = self.core.routes().shards();
        if shards == 0 {
            self.error("CLUSTERDOWN The proxy has no topology yet");
            return;
        }
        let frame = encode(args);
        let parts = (0..shards)
            .map(|s| {
                self.core.metrics.request(s);
                Part::new(self.backend(s).send(frame.clone()))
            })
            .collect();
        self.push(Pending::parts(parts, how));
    }

    /// The shard serving `slot`, or the `CLUSTERDOWN` reply.
    fn shard_for(&mut self, slot: u16) -> Option<usize> {
        let shard = self.core.routes().shard_of(slot);
        if shard.is_none() {
            self.error(&format!("CLUSTERDOWN Hash slot {slot} is not served"));
        }
        shard
    }

    /// The shard serving every key of `keys`; `Some(None)` without keys; `None` after replying
    /// `CROSSSLOT` or `CLUSTERDOWN`.
    fn one_shard(&mut self, args: &[Bytes], keys: &[usize]) -> Option<Option<usize>> {
        let routes = self.core.routes();
        let mut target: Option<usize> = None;
        for i in keys {
            let slot = key_slot(&args[*i]);
            let Some(shard) = routes.shard_of(slot) else {
                self.error(&format!("CLUSTERDOWN Hash slot {slot} is not served"));
                return None;
            };
            match target {
                None => target = Some(shard),
                Some(s) if s == shard => {}
                Some(_) => {
                    self.error(ERR_CROSSSLOT_SHARDS);
                    return None;
                }
            }
        }
        Some(target)
    }

    fn command(&mut self, args: Vec<Bytes>) {
        let command = lookup(&args[0]);
        let name = command.map_or("", |c| c.name);
        if !self.authenticated && !matches!(name, "auth" | "hello" | "quit" | "reset") {
            self.error(NOAUTH);
            return;
        }
        if let Some(c) = command {
            let argc = args.len() as i32;
            if (c.arity > 0 && argc != c.arity) || (c.arity < 0 && argc < -c.arity) {
                if c.name == "exec" {
                    // Redis aborts the transaction and says why.
                    if let Some((_, b)) = self.tx.take().and_then(|t| t.pinned) {
                        drop(b.send(encode(&[Bytes::from_static(b"DISCARD")])));
                    }
                    return self.error("EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command");
                }
                self.fail_transaction();
                self.error(&arity_error(c.name));
                return;
            }
        }
        if let Some(why) = node_only(name, &args) {
            self.fail_transaction();
            return self.error(&why);
        }
        match name {
            "quit" => {
                self.reply(|w| w.simple("OK"));
                self.closing = true;
                return;
            }
            "reset" => {
                if let Some((_, b)) = self.tx.take().and_then(|t| t.pinned) {
                    drop(b.send(encode(&[Bytes::from_static(b"DISCARD")])));
                }
                self.proto = Protocol::Resp2;
                self.backends.clear();
                self.name = None;
                self.wrote_to.clear();
                self.authenticated = self.core.settings.requirepass.is_none();
                self.hold_next = true;
                return self.reply(|w| w.simple("RESET"));
            }
            _ => {}
        }
        if matches!(name, "multi" | "exec" | "discard" | "watch" | "unwatch")
            || self.tx.as_ref().is_some_and(|t| t.in_multi)
        {
            self.transaction(command, name, &args);
            return;
        }
        match name {
            "" => self.forward(FIRST_SHARD, &args),
            "ping" if args.len() > 2 => self.error(&arity_error("ping")),
            "ping" => match args.get(1) {
                Some(m) => self.reply(|w| w.bulk(m)),
                None => self.reply(|w| w.simple("PONG")),
            },
            "echo" => self.reply(|w| w.bulk(&args[1])),
            "hello" => self.hello(&args),
            "auth" => self.auth(&args),
            "select" => match crate::resp::parse_i64_strict(&args[1]) {
                Some(0) => self.reply(|w| w.simple("OK")),
                Some(_) => self.error("ERR DB index is out of range"),
                None => self.error("ERR value is not an integer or out of range"),
            },
            "client" => self.client_command(&args),
            "readonly" | "readwrite" | "asking" => self.reply(|w| w.simple("OK")),
            "cluster" => self.cluster(&args),
            "aa.topology" => self.topology_command(&args),
            "subscribe" | "psubscribe" => self.subscribe = Some(encode(&args)),
            "publish" | "pubsub" => self.forward(FIRST_SHARD, &args),
            // Not subscribed: nothing to leave. Answered here, as a node would send one reply
            // per channel, which a shared connection cannot carry.
            "unsubscribe" | "punsubscribe" => self.not_subscribed(name, &args),
            "dbsize" => self.fan_out(&args, Merge::Sum),
            "keys" => self.fan_out(&args, Merge::Concat),
            "flushall" | "flushdb" | "save" | "bgsave" | "bgrewriteaof" => {
                self.fan_out(&args, Merge::First)
            }
            "randomkey" => self.fan_out(&args, Merge::Random),
            "info" => self.fan_out(&args, Merge::Info),
            "config" if is_any(&args[1], &["set", "resetstat", "rewrite"]) => {
                self.fan_out(&args, Merge::First)
            }
            "scan" => self.scan(args),
            "wait" => {
                let numbers = [&args[1], &args[2]].map(|a| crate::resp::parse_i64_strict(a));
                match numbers {
                    [Some(_), Some(t)] if t < 0 => return self.error("ERR timeout is negative"),
                    [Some(_), Some(_)] => {}
                    _ => return self.error("ERR value is not an integer or out of range"),
                }
                // The shards written to before this WAIT, not those written after it.
                let shards: Vec<usize> = std::mem::take(&mut self.wrote_to).into_iter().collect();
                let mut p = Pending::parts(Vec::new(), Merge::Min);
                p.deferred = Some(Deferred::Wait(shards, args[1].clone(), args[2].clone()));
                self.push(p);
            }
            "mget" => self.split(&args, 1, SplitKind::Mget),
            "mset" => self.split(&args, 2, SplitKind::Ok),
            "del" | "unlink" => self.split(&args, 1, SplitKind::Sum),
            "exists" | "touch" => self.split(&args, 1, SplitKind::Count),
            _ => self.keyed(command, args),
        }
    }

    /// A command routed by the slot of its keys (shard 0 when it has none).
    fn keyed(&mut self, command: Option<&'static Command>, args: Vec<Bytes>) {
        let Some(c) = command else {
            self.forward(FIRST_SHARD, &args);
            return;
        };
        let keys = c.keys_in(&args);
        let Some(target) = self.one_shard(&args, &keys) else {
            return;
        };
        let Some(shard) = target else {
            self.forward(FIRST_SHARD, &args);
            return;
        };
        if c.flags.write {
            self.wrote_to.insert(shard);
        }
        self.forward(shard, &args);
    }

    /// `MGET`, `MSET`, `DEL`…: one command per shard, merged.
    fn split(&mut self, args: &[Bytes], step: usize, kind: SplitKind) {
        if !(args.len() - 1).is_multiple_of(step) {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            return self.error(&arity_error(&name));
        }
        let routes = self.core.routes();
        // (shard, argument indexes of its keys), per shard in order of first appearance.
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut i = 1;
        while i < args.len() {
            let slot = key_slot(&args[i]);
            let Some(shard) = routes.shard_of(slot) else {
                self.error(&format!("CLUSTERDOWN Hash slot {slot} is not served"));
                return;
            };
            match groups.iter_mut().find(|g| g.0 == shard) {
                Some(g) => g.1.push(i),
                None => groups.push((shard, vec![i])),
            }
            i += step;
        }
        if groups.len() == 1 {
            let shard = groups[0].0;
            if kind.writes() {
                self.wrote_to.insert(shard);
            }
            self.forward(shard, args);
            return;
        }
        let mut parts = Vec::with_capacity(groups.len());
        let mut positions = Vec::with_capacity(groups.len());
        for (shard, at) in &groups {
            let mut sub: Vec<&[u8]> = Vec::with_capacity(1 + at.len() * step);
            sub.push(&args[0]);
            for i in at {
                for k in 0..step {
                    sub.push(&args[i + k]);
                }
            }
            let mut buf = BytesMut::new();
            write_command(&mut buf, &sub);
            self.core.metrics.request(*shard);
            if kind.writes() {
                self.wrote_to.insert(*shard);
            }
            parts.push(Part::new(self.backend(*shard).send(buf.freeze())));
            positions.push(at.iter().map(|i| (i - 1) / step).collect());
        }
        let how = match kind {
            SplitKind::Mget => Merge::Mget {
                positions,
                total: (args.len() - 1) / step,
            },
            SplitKind::Ok => Merge::First,
            SplitKind::Sum | SplitKind::Count => Merge::Sum,
        };
        self.push(Pending::parts(parts, how));
    }

    /// `SCAN cursor [options]`: pages of the shard the cursor names, and of the shards after
    /// it when that one is done.
    fn scan(&mut self, args: Vec<Bytes>) {
        let shards = self.core.routes().shards();
        let cursor = crate::commands::util::scan::parse_scan_cursor(&args[1]);
        let Some((shard, position)) = cursor.ok().and_then(|c| scan_position(c, shards)) else {
            self.error("ERR invalid cursor");
            return;
        };
        let chain = ScanChain {
            shard,
            shards,
            args,
            carried: Vec::new(),
        };
        let p = self.scan_shard(chain, position);
        self.push(p);
    }

    /// Asks `chain.shard` for the page at `position`.
    fn scan_shard(&mut self, mut chain: ScanChain, position: u64) -> Pending {
        chain.args[1] = Bytes::from(position.to_string());
        let frame = encode(&chain.args);
        self.core.metrics.request(chain.shard);
        let rx = self.backend(chain.shard).send(frame);
        let mut p = Pending::parts(vec![Part::new(rx)], Merge::Pass);
        p.scan = Some(chain);
        p
    }

    /// Starts a deferred reply now that every earlier one is in.
    fn launch(&mut self, d: Deferred) -> Pending {
        match d {
            Deferred::Wait(mut shards, replicas, timeout) => {
                if shards.is_empty() {
                    // Nothing written through this connection: the replicas every shard has.
                    shards = (0..self.core.routes().shards()).collect();
                }
                let frame = encode(&[Bytes::from_static(b"WAIT"), replicas, timeout]);
                // A connection of its own per shard, so the wait holds up no other client.
                let parts = shards
                    .iter()
                    .map(|s| {
                        let b = Backend::spawn(self.core.clone(), *s, false, false);
                        Part::new(b.send(frame.clone()))
                    })
                    .collect();
                Pending::parts(parts, Merge::Min)
            }
        }
    }

    fn transaction(&mut self, command: Option<&'static Command>, name: &str, args: &[Bytes]) {
        let tx = self.tx.get_or_insert_with(Transaction::default);
        match name {
            "multi" if tx.in_multi => self.error("ERR MULTI calls can not be nested"),
            "multi" => {
                tx.in_multi = true;
                if let Some((shard, b)) = &tx.pinned {
                    let (shard, b) = (*shard, b.clone());
                    self.core.metrics.request(shard);
                    let rx = b.send(encode(args));
                    self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
                } else {
                    tx.multi_owed = true;
                    self.reply(|w| w.simple("OK"));
                }
            }
            "exec" | "discard" if !tx.in_multi => {
                let text = format!("ERR {} without MULTI", name.to_ascii_uppercase());
                self.error(&text)
            }
            "exec" | "discard" => {
                if name == "exec" && tx.pinned.is_none() && !tx.held.is_empty() && !tx.failed {
                    // Only keyless commands: they run on the first shard.
                    self.pin(FIRST_SHARD);
                }
                self.hold_next = true;
                let tx = self.tx.take().unwrap_or_default();
                match tx.pinned {
                    Some((_, b)) if tx.failed => {
                        drop(b.send(encode(&[Bytes::from_static(b"DISCARD")])));
                        if name == "exec" {
                            self.error(
                                "EXECABORT Transaction discarded because of previous errors.",
                            );
                        } else {
                            self.reply(|w| w.simple("OK"));
                        }
                    }
                    Some((shard, b)) => {
                        self.core.metrics.request(shard);
                        let rx = b.send(encode(args));
                        self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
                    }
                    None if tx.failed && name == "exec" => {
                        self.error("EXECABORT Transaction discarded because of previous errors.")
                    }
                    None if name == "exec" => self.reply(|w| w.array(0)),
                    None => self.reply(|w| w.simple("OK")),
                }
            }
            "watch" if tx.in_multi => self.error("ERR WATCH inside MULTI is not allowed"),
            "unwatch" if !tx.in_multi => {
                self.hold_next = true;
                let tx = self.tx.take().unwrap_or_default();
                match tx.pinned {
                    Some((_, b)) => {
                        let rx = b.send(encode(args));
                        self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
                    }
                    None => self.reply(|w| w.simple("OK")),
                }
            }
            _ => {
                // WATCH, or a command queued in MULTI: on the transaction's shard.
                let keys = command.map(|c| c.keys_in(args)).unwrap_or_default();
                let Some(target) = self.one_shard(args, &keys) else {
                    self.fail_transaction();
                    return;
                };
                let pinned = self
                    .tx
                    .as_ref()
                    .and_then(|t| t.pinned.as_ref().map(|p| p.0));
                let shard = match (target, pinned) {
                    (Some(shard), _) => shard,
                    (None, Some(shard)) => shard,
                    (None, None) if command.is_some() && name != "watch" => {
                        // Keyless, and no key has chosen the shard yet: queued here until one
                        // does (or EXEC sends them to the first shard).
                        if let Some(t) = self.tx.as_mut() {
                            t.held.push(encode(args));
                        }
                        return self.reply(|w| w.simple("QUEUED"));
                    }
                    (None, None) => FIRST_SHARD,
                };
                let Some(b) = self.pin(shard) else {
                    return;
                };
                self.core.metrics.request(shard);
                let rx = b.send(encode(args));
                self.push(Pending::parts(vec![Part::new(rx)], Merge::Pass));
            }
        }
    }

    fn fail_transaction(&mut self) {
        if let Some(t) = self.tx.as_mut() {
            if t.in_multi {
                t.failed = true;
            }
        }
    }

    /// The transaction's connection, opened on `shard` if it has none; refuses (and fails
    /// the transaction) when it is pinned to another shard.
    fn pin(&mut self, shard: usize) -> Option<Backend> {
        let core = self.core.clone();
        let resp3 = self.proto == Protocol::Resp3;
        let tx = self.tx.get_or_insert_with(Transaction::default);
        match &tx.pinned {
            Some((s, b)) if *s == shard => Some(b.clone()),
            Some((s, _)) => {
                let text = format!(
                    "CROSSSLOT Keys in a transaction must all be served by one shard (this one is on shard {s}, the keys are on shard {shard})"
                );
                self.fail_transaction();
                self.error(&text);
                None
            }
            None => {
                let b = Backend::spawn(core, shard, resp3, false);
                if tx.multi_owed {
                    // The client already has its +OK, and its QUEUED for the held commands.
                    drop(b.send(encode(&[Bytes::from_static(b"MULTI")])));
                    for frame in tx.held.drain(..) {
                        drop(b.send(frame));
                    }
                    tx.multi_owed = false;
                }
                tx.pinned = Some((shard, b.clone()));
                Some(b)
            }
        }
    }

    /// `UNSUBSCRIBE`/`PUNSUBSCRIBE` from a client that subscribed to nothing: one reply per
    /// name (one with a null name without names), each counting 0 subscriptions.
    fn not_subscribed(&mut self, name: &str, args: &[Bytes]) {
        let names: Vec<Option<&[u8]>> = if args.len() > 1 {
            args[1..].iter().map(|a| Some(&a[..])).collect()
        } else {
            vec![None]
        };
        let resp3 = self.proto == Protocol::Resp3;
        self.reply(|w| {
            for n in names {
                if resp3 {
                    w.push(3);
                } else {
                    w.array(3);
                }
                w.bulk(name.as_bytes());
                w.bulk_or_null(n);
                w.int(0);
            }
        });
    }

    fn hello(&mut self, args: &[Bytes]) {
        let mut proto = self.proto;
        let mut i = 1;
        if let Some(v) = args.get(1) {
            proto = match crate::resp::parse_i64_strict(v) {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return self.error("NOPROTO unsupported protocol version"),
                None => {
                    return self.error("ERR Protocol version is not an integer or out of range")
                }
            };
            i = 2;
        }
        let mut name = None;
        while i < args.len() {
            let more = args.len() - i - 1;
            if args[i].eq_ignore_ascii_case(b"auth") && more >= 2 {
                let default_user = args[i + 1][..] == b"default"[..];
                let checked = match &self.core.settings.requirepass {
                    _ if !default_user => Err(WRONGPASS),
                    None => Ok(()),
                    Some(_) => self.check_password(&args[i + 2]),
                };
                if let Err(e) = checked {
                    return self.error(e);
                }
                i += 3;
            } else if args[i].eq_ignore_ascii_case(b"setname") && more >= 1 {
                if let Err(e) = crate::commands::client::validate_client_name(&args[i + 1]) {
                    return self.error(&e);
                }
                name = Some(args[i + 1].clone());
                i += 2;
            } else {
                let text = format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                );
                return self.error(&text);
            }
        }
        if !self.authenticated {
            return self.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        }
        if name.is_some() {
            self.name = name.filter(|n| !n.is_empty());
        }
        if proto != self.proto {
            // Later requests use connections of the other protocol: they wait for the replies
            // of the earlier ones, so order is kept.
            self.backends.clear();
            self.hold_next = true;
        }
        self.proto = proto;
        let id = self.id;
        self.reply(|w| {
            w.map(7);
            w.bulk(b"server");
            w.bulk(b"redis");
            w.bulk(b"version");
            w.bulk(crate::commands::info::REDIS_COMPAT_VERSION.as_bytes());
            w.bulk(b"proto");
            w.int(if proto == Protocol::Resp3 { 3 } else { 2 });
            w.bulk(b"id");
            w.int(id as i64);
            w.bulk(b"mode");
            w.bulk(b"standalone");
            w.bulk(b"role");
            w.bulk(b"master");
            w.bulk(b"modules");
            w.array(0);
        });
    }

    fn check_password(&mut self, given: &[u8]) -> Result<(), &'static str> {
        match &self.core.settings.requirepass {
            None => Err(NO_PASSWORD),
            Some(p) if p[..] == *given => {
                self.authenticated = true;
                Ok(())
            }
            Some(_) => Err(WRONGPASS),
        }
    }

    fn auth(&mut self, args: &[Bytes]) {
        let no_password = self.core.settings.requirepass.is_none();
        let result = match args.len() {
            2 => self.check_password(&args[1]),
            // The default user without a password accepts any password, as in Redis.
            3 if args[1][..] == b"default"[..] && no_password => Ok(()),
            3 if args[1][..] == b"default"[..] => self.check_password(&args[2]),
            3 => Err(WRONGPASS),
            _ => Err("ERR syntax error"),
        };
        match result {
            Ok(()) => self.reply(|w| w.simple("OK")),
            Err(e) => self.error(e),
        }
    }

    fn client_command(&mut self, args: &[Bytes]) {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match (sub.as_str(), args.len()) {
            ("setname", 3) => match crate::commands::client::validate_client_name(&args[2]) {
                Ok(()) => {
                    self.name = Some(args[2].clone()).filter(|n| !n.is_empty());
                    self.reply(|w| w.simple("OK"));
                }
                Err(e) => self.error(&e),
            },
            ("getname", 2) => {
                let name = self.name.clone();
                self.reply(|w| w.bulk_or_null(name.as_deref()));
            }
            ("id", 2) => {
                let id = self.id as i64;
                self.reply(|w| w.int(id));
            }
            ("setinfo", 4) => self.reply(|w| w.simple("OK")),
            ("setname" | "getname" | "id" | "setinfo", _) => {
                self.error(&arity_error(&format!("client|{sub}")))
            }
            // LIST, INFO, HELP… describe shard 0's connections (the proxy's among them).
            _ => self.forward(FIRST_SHARD, args),
        }
    }

    /// The Cluster API: the proxy is the one node, serving every slot.
    fn cluster(&mut self, args: &[Bytes]) {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        let me = self.local.clone();
        let id = node_id(&me);
        let (host, port) = match me.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<i64>().unwrap_or(0)),
            None => (me.clone(), 0),
        };
        let routes = self.core.routes();
        match (sub.as_str(), args.len()) {
            ("keyslot", 3) => {
                let slot = key_slot(&args[2]);
                self.reply(|w| w.int(i64::from(slot)));
            }
            ("myid", 2) => self.reply(|w| w.bulk(id.as_bytes())),
            ("info", 2) => {
                let state = if routes.complete() { "ok" } else { "fail" };
                let text = format!(
                    "cluster_enabled:1\r\ncluster_state:{state}\r\ncluster_slots_assigned:{n}\r\ncluster_slots_ok:{n}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:{v}\r\ncluster_my_epoch:{v}\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n",
                    n = routes.served_slots(),
                    v = routes.version
                );
                self.reply(|w| w.verbatim("txt", text.as_bytes()));
            }
            ("nodes", 2) => {
                let text = format!(
                    "{id} {host}:{port}@{} myself,master - 0 0 1 connected 0-{}\n",
                    port + 10000,
                    SLOTS - 1
                );
                self.reply(|w| w.verbatim("txt", text.as_bytes()));
            }
            ("slots", 2) => self.reply(|w| {
                w.array(1);
                w.array(3);
                w.int(0);
                w.int(i64::from(SLOTS - 1));
                w.array(3);
                w.bulk(host.as_bytes());
                w.int(port);
                w.bulk(id.as_bytes());
            }),
            ("shards", 2) => self.reply(|w| {
                w.array(1);
                w.map(2);
                w.bulk(b"slots");
                w.array(2);
                w.int(0);
                w.int(i64::from(SLOTS - 1));
                w.bulk(b"nodes");
                w.array(1);
                w.map(7);
                w.bulk(b"id");
                w.bulk(id.as_bytes());
                w.bulk(b"port");
                w.int(port);
                w.bulk(b"ip");
                w.bulk(host.as_bytes());
                w.bulk(b"endpoint");
                w.bulk(host.as_bytes());
                w.bulk(b"role");
                w.bulk(b"master");
                w.bulk(b"replication-offset");
                w.int(0);
                w.bulk(b"health");
                w.bulk(b"online");
            }),
            ("countkeysinslot", 3) | ("getkeysinslot", 4) => {
                match crate::resp::parse_i64_strict(&args[2]) {
                    Some(s) if (0..i64::from(SLOTS)).contains(&s) => {
                        if let Some(shard) = self.shard_for(s as u16) {
                            self.forward(shard, args);
                        }
                    }
                    _ => self.error("ERR Invalid or out of range slot"),
                }
            }
            _ => self.error(&format!(
                "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CLUSTER HELP."
            )),
        }
    }

    fn topology_command(&mut self, args: &[Bytes]) {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match (sub.as_str(), args.len()) {
            ("set", 4) => {
                let version = match crate::resp::parse_i64_strict(&args[2]) {
                    Some(v) if v > 0 => v as u64,
                    _ => return self.error("ERR topology version must be a positive integer"),
                };
                let parsed = std::str::from_utf8(&args[3])
                    .map_err(|_| "the shard map is not UTF-8 text".to_string())
                    .and_then(|m| crate::cluster::ShardMap::parse(m).map_err(|e| e.to_string()))
                    .and_then(|map| self.core.install(version, map).map_err(|e| e.to_string()));
                match parsed {
                    Ok(()) => self.reply(|w| w.simple("OK")),
                    Err(e) => self.error(&format!("ERR topology refused: {e}")),
                }
            }
            ("get", 2) => {
                let routes = self.core.routes();
                let text = routes.map.to_text();
                self.reply(|w| {
                    w.array(3);
                    w.int(routes.version as i64);
                    w.bulk(text.as_bytes());
                    w.int(-1);
                });
            }
            _ => self.error(&format!(
                "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try AA.TOPOLOGY SET <version> <shard-map> or AA.TOPOLOGY GET."
            )),
        }
    }

    /// Joins the client to a connection of its own to the pub/sub shard for good.
    async fn pass_through(&mut self, mut client: TcpStream, first: Bytes, rest: BytesMut) {
        let routes = self.core.routes();
        let Some(addr) = routes.primary(FIRST_SHARD).map(str::to_string) else {
            let _ = client
                .write_all(b"-CLUSTERDOWN The proxy has no topology yet\r\n")
                .await;
            return;
        };
        let mut handshake: Vec<&[&[u8]]> = Vec::new();
        let password = self.core.settings.backend_password.clone();
        let auth: [&[u8]; 2] = [b"AUTH", password.as_deref().unwrap_or_default()];
        if password.is_some() {
            handshake.push(&auth);
        }
        let hello: [&[u8]; 2] = [b"HELLO", b"3"];
        if self.proto == Protocol::Resp3 {
            handshake.push(&hello);
        }
        // The joined client may only subscribe, unsubscribe, PING, QUIT and RESET, as on a
        // RESP2 subscribed connection: nothing else reaches the node through this connection.
        let subscriber: [&[u8]; 2] = [b"AA.TOPOLOGY", b"SUBSCRIBEONLY"];
        handshake.push(&subscriber);
        let backend = match super::backend::open(&addr, &handshake).await {
            Ok(s) => s,
            Err(e) => {
                let text = format!("CLUSTERDOWN the pub/sub shard is unreachable ({addr}: {e})");
                let _ = client.write_all(&error_bytes(&text)).await;
                return;
            }
        };
        let mut backend = backend;
        if backend.write_all(&first).await.is_err() || backend.write_all(&rest).await.is_err() {
            let _ = client
                .write_all(b"-ERR the pub/sub shard closed the connection\r\n")
                .await;
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    }
}

/// Why `name` is refused through the proxy, if it is: commands of one shard-node (replication,
/// links, topology pushes, shutdown, debugging), commands that would change how a shared
/// connection behaves (`CLIENT REPLY`, `CLIENT PAUSE`…), and passwords of the nodes.
fn node_only(name: &str, args: &[Bytes]) -> Option<String> {
    let refused = |what: &str| {
        Some(format!(
            "ERR {what} is a command of one shard-node, not of the database: send it to the node"
        ))
    };
    let sub = || {
        args.get(1)
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
    };
    match name {
        "replicaof" | "slaveof" | "shutdown" | "failover" | "sync" | "psync" | "replconf"
        | "monitor" | "debug" => refused(&name.to_ascii_uppercase()),
        "aa.topology" => None,
        n if n.starts_with("aa.") => refused(&n.to_ascii_uppercase()),
        "client" => match sub().as_deref() {
            Some(s @ ("reply" | "pause" | "unpause" | "kill" | "tracking" | "no-evict")) => {
                refused(&format!("CLIENT {}", s.to_ascii_uppercase()))
            }
            _ => None,
        },
        "config" if sub().as_deref() == Some("set") => {
            let touches_password = args
                .iter()
                .skip(2)
                .step_by(2)
                .any(|p| is_any(p, &["requirepass", "masterauth", "masteruser"]));
            touches_password.then(|| {
                "ERR the nodes' passwords are set by their configuration, not through the proxy"
                    .to_string()
            })
        }
        _ => None,
    }
}

/// How a split command's parts are merged, and whether it writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SplitKind {
    /// `MGET`: values back in key order.
    Mget,
    /// `MSET`: `OK` from every part.
    Ok,
    /// `DEL`, `UNLINK`: counts added up (writes).
    Sum,
    /// `EXISTS`, `TOUCH`: counts added up (reads).
    Count,
}

impl SplitKind {
    fn writes(self) -> bool {
        matches!(self, SplitKind::Ok | SplitKind::Sum)
    }
}

fn is_any(arg: &[u8], words: &[&str]) -> bool {
    words.iter().any(|w| arg.eq_ignore_ascii_case(w.as_bytes()))
}

fn encode<A: AsRef<[u8]>>(args: &[A]) -> Bytes {
    let mut buf = BytesMut::new();
    write_command(&mut buf, args);
    buf.freeze()
}

fn error_bytes(text: &str) -> Bytes {
    let mut buf = BytesMut::new();
    ReplyWriter::new(&mut buf, Protocol::Resp2).error(text);
    buf.freeze()
}
