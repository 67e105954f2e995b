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
//! - Blocking commands (`BLPOP`…) outside a transaction go to the shard on a connection of
//!   the client's own, kept for its next blocking commands; the client's next command waits
//!   for their reply.
//! - A command that moves a client's requests to another connection waits for the replies to
//!   its earlier requests (see `Client::waits_for_earlier`), so a client's requests run in
//!   the order it sent them.
//! - `MOVED` and `READONLY` replies mean the request was refused, not run: the backend
//!   connection sends it again once the shard is found (see [`super::backend`]).
//!
//! Source layout: this file holds the connection loop, the queue of owed replies and the
//! ordering barriers; `route` decides where each command goes (and what is refused),
//! `transaction` pins transactions, `local` answers what the proxy answers itself, `pubsub`
//! joins subscribers to the pub/sub shard.

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
use tokio::sync::oneshot;

mod local;
mod pubsub;
mod route;
mod transaction;

use transaction::Transaction;

const ERR_CROSSSLOT_SHARDS: &str =
    "CROSSSLOT Keys in request are served by different shards; use {hash tags} to keep them together";
const NOAUTH: &str = "NOAUTH Authentication required.";
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

struct Client {
    core: Arc<Core>,
    id: u64,
    proto: Protocol,
    authenticated: bool,
    /// The user the client is authenticated as (`default` until `AUTH`).
    user: String,
    name: Option<Bytes>,
    /// The address this client reached the proxy at, for the Cluster API when no address
    /// is announced.
    local: String,
    backends: Vec<Option<Backend>>,
    /// Connections of this client's blocking commands, per shard (see `Client::blocking`).
    blocking: Vec<Option<Backend>>,
    wrote_to: BTreeSet<usize>,
    tx: Option<Transaction>,
    pending: VecDeque<Pending>,
    closing: bool,
    subscribe: Option<Bytes>,
    /// A command waiting for every earlier reply before it is sent (it moves this client's
    /// requests to another connection, see `Client::waits_for_earlier`).
    held: Option<Vec<Bytes>>,
    /// The next command waits for every earlier reply (after `EXEC`, `HELLO 3`…).
    hold_next: bool,
}

/// Serves one client until it disconnects.
pub async fn serve(
    core: Arc<Core>,
    mut socket: crate::transport::stream::Stream,
    peer: SocketAddr,
) {
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
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:6379".into());
    let authenticated = core.acl.read().default_is_open();
    if core.settings.protected_mode && authenticated && !crate::net::is_loopback(peer) {
        core.metrics
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = socket
            .write_all(crate::net::PROTECTED_MODE_DENIED.as_bytes())
            .await;
        return;
    }
    let mut client = Client {
        id: core.next_client_id(),
        core,
        proto: Protocol::Resp2,
        authenticated,
        user: crate::acl::DEFAULT_USER.to_string(),
        name: None,
        local,
        backends: Vec::new(),
        blocking: Vec::new(),
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
    async fn run(&mut self, socket: crate::transport::stream::Stream) {
        let (mut rd, mut wr) = socket.split();
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
                    if let Some(stream) = crate::transport::stream::reunite(rd, wr) {
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
    /// (`EXEC`, `DISCARD`, `UNWATCH`, a protocol switch, `RESET`, a blocking command) or
    /// starts one (`MULTI` or `WATCH` opening a transaction's connection, a blocking command
    /// outside a transaction). Requests of one client then run in the order sent even though
    /// they travel on different connections.
    fn waits_for_earlier(&self, args: &[Bytes]) -> bool {
        if self.hold_next {
            return true;
        }
        let opening = self
            .tx
            .as_ref()
            .is_none_or(|t| t.pinned.is_none() && !t.in_multi);
        opening
            && (is_any(&args[0], &["multi", "watch"])
                || lookup(&args[0]).is_some_and(|c| c.flags.blocking))
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

    /// The connection this client's blocking commands to `shard` wait on: its own, so a
    /// command that waits holds up no other client's requests.
    fn blocking_backend(&mut self, shard: usize) -> Backend {
        if self.blocking.len() <= shard {
            self.blocking.resize(shard + 1, None);
        }
        match &self.blocking[shard] {
            Some(b) if !b.is_closed() => b.clone(),
            _ => {
                let b = Backend::spawn(
                    self.core.clone(),
                    shard,
                    self.proto == Protocol::Resp3,
                    false,
                );
                self.blocking[shard] = Some(b.clone());
                b
            }
        }
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
