//! The network server: accepts clients, runs their commands against the shared keyspace, writes
//! effects to the log, and runs the background tasks (expiry sweep, fsync, compaction, memory
//! accounting, metrics).
//!
//! Contract:
//! - Each connection reads whatever is available, parses every complete command, runs them all
//!   under one lock, appends the resulting effects to the log, flushes the log (fsyncing with
//!   `appendfsync always`) and only then sends the replies. If the log cannot be written the
//!   replies of that batch are not sent (the connection is closed) and later writes are refused
//!   with a `MISCONF` error.
//! - A protocol error is answered with Redis's error text and the connection is closed.
//! - `CLIENT PAUSE`: a connection whose next command must wait (see
//!   [`crate::commands::paused`]) runs the commands before it, sends their replies, and waits
//!   for the pause to end or be lifted before going on; shutdown ends the wait. The expiry
//!   sweep also waits, so a paused primary's dataset and offset stay still.
//! - Blocking commands (BLPOP…, see [`crate::commands::blocking`]): a command that leaves a
//!   block request is answered only once it is served, times out or is unblocked; commands
//!   pipelined behind it stay buffered until then, and a client that goes away leaves the
//!   line. The request is run again under the lock after every wake-up that finds it first in
//!   line for a key holding a value.
//! - SIGTERM/SIGINT or `SHUTDOWN`: stop accepting, let connections finish the batch in hand,
//!   flush and fsync the log, exit 0.
//! - With a TLS listener (`--tls-port`), connections accepted there first complete a TLS
//!   handshake that requires a client certificate signed by the node's CA (a refusal is logged
//!   with the reason), then are served exactly like plain connections.

pub mod client_limits;
pub mod persist;
pub mod stream;
pub mod tls;

use crate::commands::{dispatch, paused, ClientMeta, ClientState, Db, PubMessage};
use crate::resp::{Limits, Protocol, ReplyWriter, RequestParser};
use bytes::BytesMut;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Everything protected by the server's one lock: the command state and the log.
pub struct State {
    pub db: Db,
    pub store: Option<crate::store::Store>,
}

impl State {
    /// Moves locally committed effects into the log and the replication backlog, then flushes
    /// the log. On failure the error is recorded so later writes are refused.
    pub fn persist_outbox(&mut self) -> Result<(), String> {
        if self.db.ks.outbox.is_empty() {
            return Ok(());
        }
        let effects = std::mem::take(&mut self.db.ks.outbox);
        for e in &effects {
            self.record(e);
        }
        self.flush_log()
    }

    /// Records an effect received over a link (already applied): fencing check, pub/sub
    /// delivery, log and backlog.
    pub fn record_received(&mut self, effect: crate::crdt::Effect, encoded: Option<bytes::Bytes>) {
        if self.db.repl.is_primary() && crate::repl::link::is_newer_epoch(&self.db.ks, &effect) {
            tracing::warn!(
                generation = effect.dot.actor.generation(),
                "a newer epoch of this shard exists: this node stops taking writes"
            );
            self.db.repl.role = crate::repl::Role::Fenced;
        }
        let messages: Vec<(bytes::Bytes, bytes::Bytes)> = crate::repl::link::messages(&effect)
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect();
        for (channel, payload) in messages {
            crate::commands::pubsub::deliver(&mut self.db, &channel, &payload);
        }
        match encoded {
            Some(bytes) => self.record_encoded(effect.dot, bytes),
            None => self.record(&effect),
        }
    }

    /// Appends an applied effect to the log buffer and the replication backlog.
    fn record(&mut self, effect: &crate::crdt::Effect) {
        let mut buf = Vec::with_capacity(64);
        effect.encode(&mut buf);
        self.record_encoded(effect.dot, bytes::Bytes::from(buf));
    }

    /// Like [`State::record`] with the effect's encoding at hand (owned bytes).
    fn record_encoded(&mut self, dot: crate::crdt::Dot, encoded: bytes::Bytes) {
        if let Some(store) = self.store.as_mut() {
            if let Err(err) = store.append(&encoded) {
                self.note_log_failure(err.to_string());
            }
        }
        self.db.repl.backlog.push(dot, encoded);
    }

    /// Flushes buffered log records (fsyncing with `appendfsync always`).
    pub fn flush_log(&mut self) -> Result<(), String> {
        if let Some(reason) = &self.db.persistence_error {
            return Err(reason.clone());
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        if let Err(err) = store.flush() {
            let msg = err.to_string();
            self.note_log_failure(msg.clone());
            return Err(msg);
        }
        Ok(())
    }

    fn note_log_failure(&mut self, msg: String) {
        if self.db.persistence_error.is_none() {
            tracing::error!(error = %msg, "cannot write the effect log; refusing writes from now on");
        }
        self.db.persistence_error = Some(msg);
    }
}

pub struct Shared {
    pub state: Mutex<State>,
    pub next_client_id: AtomicU64,
    pub connections: AtomicUsize,
    pub limits: Limits,
    pub shutdown: watch::Sender<bool>,
    /// Bumped whenever effects are recorded: replication streams wake up.
    pub offsets: watch::Sender<u64>,
    /// Bumped whenever a replica acknowledges: WAIT wakes up.
    pub acks: watch::Sender<u64>,
    /// Bumped by `CLIENT PAUSE` / `CLIENT UNPAUSE`: paused connections look again.
    pub pauses: watch::Sender<u64>,
    /// Bumped when keys may have become ready (local or received writes) or a blocked client
    /// left the line or was unblocked: clients in blocking commands look again.
    pub blocked_wake: watch::Sender<u64>,
    /// Held for the whole of a snapshot, so that two never run at once (the compactor, and a
    /// handover that must be durable before it is answered).
    pub snapshot_lock: Mutex<()>,
    /// TLS (`--tls-cert/--tls-key/--tls-ca`), reloaded when its files change: outgoing links
    /// use it, and so does the TLS listener.
    pub tls: Option<Arc<tls::ReloadableTls>>,
}

/// Starts the link tasks that commands asked for (REPLICAOF, AA.PEER, `--peer`).
pub fn start_links(shared: &Arc<Shared>, state: &mut State) {
    for action in std::mem::take(&mut state.db.repl.actions) {
        match action {
            crate::repl::ReplAction::FollowPrimary => {
                if let Some(m) = &state.db.repl.master {
                    let generation = m.generation;
                    tokio::spawn(crate::repl::link::run(
                        shared.clone(),
                        crate::repl::link::LinkTarget::Primary,
                        generation,
                    ));
                }
            }
            crate::repl::ReplAction::PeerChanged(name) => {
                if let Some(p) = state.db.repl.peers.get(&name) {
                    let generation = p.generation;
                    tokio::spawn(crate::repl::link::run(
                        shared.clone(),
                        crate::repl::link::LinkTarget::Peer(name),
                        generation,
                    ));
                }
            }
        }
    }
}

/// Offset added to the wall clock by [`now_ms`], set once at start (`--clock-skew-ms`).
static CLOCK_SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Shifts this process's wall clock by `ms` (fault injection for tests of clock skew).
pub fn set_clock_skew_ms(ms: i64) {
    CLOCK_SKEW_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Wall-clock milliseconds since the epoch, shifted by the configured skew.
pub fn now_ms() -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    wall.saturating_add_signed(CLOCK_SKEW_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// How long a TLS client has to complete its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves clients on `listener` (none: TLS only) and TLS clients on `tls_listener` when
/// given, which needs `shared.tls`, until shutdown; returns after the log is flushed.
pub async fn serve(
    listener: Option<TcpListener>,
    tls_listener: Option<TcpListener>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut shutdown_rx = shared.shutdown.subscribe();
    let laddr = match &listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let tls_laddr = match &tls_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    if tls_listener.is_some() && shared.tls.is_none() {
        anyhow::bail!("a TLS listener needs --tls-cert, --tls-key and --tls-ca");
    }
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = accept_optional(listener.as_ref()) => {
                let (socket, addr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and similar: back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let Some(laddr) = laddr else { continue };
                let shared = shared.clone();
                tasks.spawn(async move {
                    handle_connection(socket, addr, laddr, shared).await;
                });
                while tasks.try_join_next().is_some() {}
            }
            accepted = accept_optional(tls_listener.as_ref()) => {
                let (socket, addr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let (Some(tls), Some(tls_laddr)) = (shared.tls.as_ref().map(|t| t.current()), tls_laddr) else {
                    continue;
                };
                let shared = shared.clone();
                tasks.spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(socket)).await {
                        Ok(Ok(stream)) => handle_connection(stream, addr, tls_laddr, shared).await,
                        Ok(Err(reason)) => {
                            tracing::warn!(%addr, %reason, "TLS client refused");
                        }
                        Err(_) => {
                            tracing::warn!(%addr, reason = "handshake timed out", "TLS client refused");
                        }
                    }
                });
                while tasks.try_join_next().is_some() {}
            }
            _ = shutdown_rx.changed() => break,
        }
    }
    drop(listener);
    drop(tls_listener);
    // Let connections finish the batch in hand; they see the shutdown signal too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !tasks.is_empty() {
        if tokio::time::timeout_at(deadline, tasks.join_next())
            .await
            .is_err()
        {
            break;
        }
    }
    let mut state = shared.state.lock();
    let _ = state.persist_outbox();
    if let Some(store) = state.store.take() {
        if let Err(e) = store.close() {
            tracing::error!(error = %e, "final fsync of the effect log failed");
        }
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Accepts on `listener`, or never when there is none.
pub(crate) async fn accept_optional(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The refusal of a client that protected mode keeps out (Redis's `DENIED` reply, with this
/// server's ways out).
pub const PROTECTED_MODE_DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers, set a password for the default user (--requirepass, or CONFIG SET requirepass from the loopback interface), or, only on a network you trust, turn protected mode off (--protected-mode no).\r\n";

/// Whether protected mode refuses a client from `addr`: it is on, the `default` user needs no
/// password, and the client is not on loopback.
pub fn protected_mode_refuses(db: &crate::commands::Db, addr: SocketAddr) -> bool {
    db.settings.protected_mode && db.acl.default_is_open() && !is_loopback(addr)
}

/// Whether a client address is loopback (IPv4-mapped IPv6 loopback included).
pub fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

async fn handle_connection<S>(
    mut socket: S,
    addr: SocketAddr,
    laddr: SocketAddr,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = crate::commands::pubsub_queue::pub_queue();
    let overflow = rx.overflow_signal();
    let mut client;
    let rejected = {
        let mut state = shared.state.lock();
        let db = &mut state.db;
        db.stats.total_connections += 1;
        db.clients.len() as u64 >= db.settings.maxclients
    };
    if rejected {
        shared.state.lock().db.stats.rejected_connections += 1;
        let _ = socket
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    }
    let denied = {
        let state = shared.state.lock();
        protected_mode_refuses(&state.db, addr)
    };
    if denied {
        shared.state.lock().db.stats.rejected_connections += 1;
        let _ = socket.write_all(PROTECTED_MODE_DENIED.as_bytes()).await;
        return;
    }
    {
        let mut state = shared.state.lock();
        let db = &mut state.db;
        let now = now_ms();
        client = ClientState::new(id, db.acl.default_is_open());
        client.sender = Some(tx);
        db.clients.insert(
            id,
            ClientMeta {
                id,
                addr: addr.to_string(),
                laddr: laddr.to_string(),
                name: None,
                created_ms: now,
                last_ms: now,
                last_cmd: "NULL".into(),
                proto: Protocol::Resp2,
                sub: 0,
                psub: 0,
                multi: -1,
            },
        );
    }
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let mut shutdown_rx = shared.shutdown.subscribe();
    let mut parser = RequestParser::new();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut commands: Vec<Vec<bytes::Bytes>> = Vec::new();
    let mut idle_check = tokio::time::interval(client_limits::CHECK_INTERVAL);
    let mut last_activity = std::time::Instant::now();
    'conn: loop {
        tokio::select! {
            read = socket.read_buf(&mut input) => {
                match read {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                }
                last_activity = std::time::Instant::now();
                loop {
                    match process_input(&shared, &mut client, &mut parser, &mut input, &mut output, &mut commands) {
                        Processed::Closed => break 'conn,
                        Processed::Continue { more } => {
                            if !output.is_empty() {
                                if socket.write_all(&output).await.is_err() {
                                    break 'conn;
                                }
                                output.clear();
                                if output.capacity() > 4 * 1024 * 1024 {
                                    output = BytesMut::with_capacity(16 * 1024);
                                }
                            }
                            if !more {
                                break;
                            }
                        }
                        Processed::CloseAfterWrite => {
                            let _ = socket.write_all(&output).await;
                            break 'conn;
                        }
                        Processed::Link(request) => {
                            if !output.is_empty() && socket.write_all(&output).await.is_err() {
                                break 'conn;
                            }
                            let name = client.link_hello.as_ref().map(|(_, n)| n.clone()).unwrap_or_default();
                            shared.connections.fetch_sub(1, Ordering::Relaxed);
                            let input = std::mem::take(&mut input);
                            let link_addr = match client.listening_port {
                                Some(port) => format!("{}:{port}", addr.ip()),
                                None => addr.to_string(),
                            };
                            crate::repl::serve::serve_link(socket, shared.clone(), id, link_addr, name, request, input).await;
                            return;
                        }
                        Processed::Handoff => {
                            if !output.is_empty() {
                                if socket.write_all(&output).await.is_err() {
                                    break 'conn;
                                }
                                output.clear();
                            }
                            if let Err(reason) = crate::repl::handoff::receive(&mut socket, &shared, &mut input).await {
                                tracing::warn!(%addr, %reason, "a handover failed");
                                break 'conn;
                            }
                        }
                        Processed::Wait(wait) => {
                            let count = wait_for_replicas(&shared, wait).await;
                            let mut w = ReplyWriter::new(&mut output, client.proto);
                            w.int(count as i64);
                        }
                        Processed::Block(request) => {
                            if !output.is_empty() {
                                if socket.write_all(&output).await.is_err() {
                                    break 'conn;
                                }
                                output.clear();
                            }
                            let ended = wait_blocked(
                                &shared,
                                &mut client,
                                request,
                                BlockIo { socket: &mut socket, input: &mut input, output: &mut output, shutdown: &mut shutdown_rx },
                            )
                            .await;
                            if ended == BlockEnd::Gone {
                                break 'conn;
                            }
                        }
                        Processed::Paused => {
                            if !output.is_empty() {
                                if socket.write_all(&output).await.is_err() {
                                    break 'conn;
                                }
                                output.clear();
                            }
                            tokio::select! {
                                _ = wait_while_paused(&shared) => {}
                                _ = shutdown_rx.changed() => break 'conn,
                            }
                        }
                    }
                }
            }
            Some(msg) = rx.recv() => {
                write_message(&mut output, client.proto, &msg);
                while let Some(more) = rx.try_recv() {
                    write_message(&mut output, client.proto, &more);
                }
                // A subscriber that does not read is cut off at its limit, even mid-write.
                tokio::select! {
                    written = socket.write_all(&output) => if written.is_err() {
                        break 'conn;
                    },
                    _ = overflow.wait() => break 'conn,
                }
                output.clear();
            }
            _ = overflow.wait() => break 'conn,
            _ = idle_check.tick() => {
                let subscribed = !client.channels.is_empty() || !client.patterns.is_empty();
                if client_limits::timed_out(last_activity, subscribed) {
                    break 'conn;
                }
            }
            _ = shutdown_rx.changed() => break 'conn,
        }
    }
    let mut state = shared.state.lock();
    let db = &mut state.db;
    db.clients.remove(&id);
    for c in &client.channels {
        if let Some(subs) = db.channels.get_mut(c) {
            subs.retain(|(cid, _)| *cid != id);
            if subs.is_empty() {
                db.channels.remove(c);
            }
        }
    }
    for p in &client.patterns {
        if let Some(subs) = db.patterns.get_mut(p) {
            subs.retain(|(cid, _)| *cid != id);
            if subs.is_empty() {
                db.patterns.remove(p);
            }
        }
    }
    drop(state);
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

enum Processed {
    /// Replies (if any) are in the output; `more` when commands may still be buffered.
    Continue { more: bool },
    /// The connection asked to become a replication stream.
    Link(crate::repl::serve::LinkRequest),
    /// The connection receives a handover before anything else is answered.
    Handoff,
    /// A WAIT must be completed before anything else is answered.
    Wait(crate::repl::WaitRequest),
    /// A blocking command waits for one of its keys before anything else is answered.
    Block(crate::commands::blocking::BlockRequest),
    /// The next command waits for a `CLIENT PAUSE` to end (it stays buffered).
    Paused,
    /// Send the output, then close (QUIT, protocol error).
    CloseAfterWrite,
    /// Close without sending anything (the log failed: nothing may be acknowledged).
    Closed,
}

/// Parses and runs the complete commands in `input` (all of them under one lock), persisting
/// their effects before returning. Stops after one command while unauthenticated, because
/// authentication changes what the parser accepts.
fn process_input(
    shared: &Arc<Shared>,
    client: &mut ClientState,
    parser: &mut RequestParser,
    input: &mut BytesMut,
    output: &mut BytesMut,
    commands: &mut Vec<Vec<bytes::Bytes>>,
) -> Processed {
    let mut protocol_error = None;
    let mut more = false;
    loop {
        if let Some(missing) = parser.bulk_bytes_missing(input) {
            input.reserve(missing.min(64 * 1024 * 1024));
        }
        match parser.parse(input, &shared.limits, client.authenticated) {
            Ok(Some(args)) => {
                commands.push(args);
                if !client.authenticated || commands.len() >= 1024 {
                    more = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                protocol_error = Some(e);
                break;
            }
        }
    }
    if client_limits::query_buffer_exceeded(parser.pending_bytes() + input.len()) {
        tracing::warn!(
            client = client.id,
            bytes = parser.pending_bytes() + input.len(),
            "closing a client whose unprocessed input passed client-query-buffer-limit"
        );
        return Processed::Closed;
    }
    let mut close = false;
    let mut special = None;
    if !commands.is_empty() {
        let mut state = shared.state.lock();
        let now = now_ms();
        let mut done = 0;
        for args in commands.iter() {
            if paused(&state.db, client, args, now) {
                special = Some(Processed::Paused);
                break;
            }
            dispatch(&mut state.db, client, args, output, now);
            done += 1;
            if client.close_after_reply {
                close = true;
                break;
            }
            if let Some(req) = client.link_request.take() {
                special = Some(Processed::Link(req));
                break;
            }
            if std::mem::take(&mut client.handoff_requested) {
                special = Some(Processed::Handoff);
                break;
            }
            if let Some(wait) = client.pending_wait.take() {
                special = Some(Processed::Wait(wait));
                break;
            }
            if let Some(request) = client.pending_block.take() {
                special = Some(Processed::Block(request));
                break;
            }
        }
        commands.drain(..done);
        if close {
            commands.clear();
        }
        if !state.db.repl.actions.is_empty() {
            start_links(shared, &mut state);
        }
        if let Some(meta) = state.db.clients.get_mut(&client.id) {
            meta.last_ms = now;
            meta.multi = client.multi.as_ref().map(|q| q.len() as i64).unwrap_or(-1);
        }
        let had_effects = !state.db.ks.outbox.is_empty();
        if state.persist_outbox().is_err() {
            return Processed::Closed;
        }
        if state.db.shutdown_requested {
            let _ = shared.shutdown.send(true);
        }
        let pause_changed = std::mem::take(&mut state.db.pause_changed);
        let wake_blocked = std::mem::take(&mut state.db.blocked.wake_pending);
        drop(state);
        if pause_changed {
            shared.pauses.send_modify(|n| *n += 1);
        }
        if had_effects {
            shared.offsets.send_modify(|n| *n += 1);
        }
        if had_effects || wake_blocked {
            shared.blocked_wake.send_modify(|n| *n += 1);
        }
    }
    if let Some(special) = special {
        return special;
    }
    if let Some(e) = protocol_error {
        let mut w = ReplyWriter::new(output, client.proto);
        w.error(&e.0);
        close = true;
    }
    if close {
        Processed::CloseAfterWrite
    } else {
        Processed::Continue { more }
    }
}

/// What a blocked connection works with while it waits.
struct BlockIo<'a, S> {
    socket: &'a mut S,
    /// Bytes the client sends meanwhile stay here, unparsed.
    input: &'a mut BytesMut,
    /// Receives the blocked command's final reply.
    output: &'a mut BytesMut,
    shutdown: &'a mut watch::Receiver<bool>,
}

#[derive(Debug, PartialEq, Eq)]
enum BlockEnd {
    /// The reply is in the output.
    Answered,
    /// The client went away, or the server is stopping.
    Gone,
}

/// Waits in line for a blocking command until it is served, times out, is unblocked or its
/// client leaves; see the module contract.
async fn wait_blocked<S>(
    shared: &Arc<Shared>,
    client: &mut ClientState,
    request: crate::commands::blocking::BlockRequest,
    io: BlockIo<'_, S>,
) -> BlockEnd
where
    S: AsyncRead + Unpin,
{
    use crate::commands::blocking::Unblock;
    let mut wake = shared.blocked_wake.subscribe();
    let seq =
        shared
            .state
            .lock()
            .db
            .blocked
            .register(client.id, request.keys.clone(), request.ordered);
    let leave = |shared: &Shared| {
        shared.state.lock().db.blocked.unregister(seq);
        shared.blocked_wake.send_modify(|n| *n += 1);
    };
    loop {
        wake.borrow_and_update();
        {
            let mut state = shared.state.lock();
            let now = now_ms();
            let timed_out = request.deadline_ms.is_some_and(|d| now >= d);
            let unblocked = state.db.blocked.take_unblock(seq);
            if !state.db.repl.is_primary() {
                state.db.blocked.unregister(seq);
                drop(state);
                shared.blocked_wake.send_modify(|n| *n += 1);
                let mut w = ReplyWriter::new(io.output, client.proto);
                w.error(crate::commands::blocking::ERR_NOT_PRIMARY);
                return BlockEnd::Answered;
            }
            if timed_out || unblocked.is_some() {
                state.db.blocked.unregister(seq);
                drop(state);
                shared.blocked_wake.send_modify(|n| *n += 1);
                let mut w = ReplyWriter::new(io.output, client.proto);
                if unblocked == Some(Unblock::Error) {
                    w.error(crate::commands::blocking::ERR_UNBLOCKED);
                } else {
                    w.null_array();
                }
                return BlockEnd::Answered;
            }
            if state.db.blocked.may_retry(seq, &state.db.ks, now) {
                dispatch(&mut state.db, client, &request.args, io.output, now);
                if client.pending_block.take().is_none() {
                    state.db.blocked.unregister(seq);
                    if !state.db.repl.actions.is_empty() {
                        start_links(shared, &mut state);
                    }
                    let had_effects = !state.db.ks.outbox.is_empty();
                    if state.persist_outbox().is_err() {
                        return BlockEnd::Gone;
                    }
                    drop(state);
                    if had_effects {
                        shared.offsets.send_modify(|n| *n += 1);
                    }
                    shared.blocked_wake.send_modify(|n| *n += 1);
                    return BlockEnd::Answered;
                }
            }
        }
        let until = request.deadline_ms.map(|d| {
            tokio::time::Instant::now() + Duration::from_millis(d.saturating_sub(now_ms()))
        });
        let timeout = async {
            match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    leave(shared);
                    return BlockEnd::Gone;
                }
            }
            _ = timeout => {}
            read = io.socket.read_buf(io.input) => {
                if matches!(read, Ok(0) | Err(_)) {
                    leave(shared);
                    return BlockEnd::Gone;
                }
            }
            _ = io.shutdown.changed() => {
                leave(shared);
                return BlockEnd::Gone;
            }
        }
    }
}

/// Returns once no `CLIENT PAUSE` is in force (it ended or was lifted).
async fn wait_while_paused(shared: &Shared) {
    let mut changes = shared.pauses.subscribe();
    loop {
        let until = shared.state.lock().db.client_pause.map(|p| p.until_ms);
        let now = now_ms();
        let Some(until) = until.filter(|u| *u > now) else {
            return;
        };
        let left = Duration::from_millis(until - now);
        if let Ok(Err(_)) = tokio::time::timeout(left, changes.changed()).await {
            return;
        }
    }
}

/// Waits until enough replicas acknowledged `wait.offset` or the timeout passes; returns how
/// many did.
async fn wait_for_replicas(shared: &Shared, wait: crate::repl::WaitRequest) -> usize {
    let mut acks = shared.acks.subscribe();
    let deadline = if wait.timeout_ms == 0 {
        None
    } else {
        Some(tokio::time::Instant::now() + Duration::from_millis(wait.timeout_ms))
    };
    loop {
        let have = shared.state.lock().db.repl.replicas_at(wait.offset);
        if have >= wait.replicas {
            return have;
        }
        match deadline {
            Some(d) => {
                if tokio::time::timeout_at(d, acks.changed()).await.is_err() {
                    return shared.state.lock().db.repl.replicas_at(wait.offset);
                }
            }
            None => {
                if acks.changed().await.is_err() {
                    return have;
                }
            }
        }
    }
}

fn write_message(out: &mut BytesMut, proto: Protocol, msg: &PubMessage) {
    let mut w = ReplyWriter::new(out, proto);
    match &msg.pattern {
        None => {
            w.push(3);
            w.bulk(b"message");
            w.bulk(&msg.channel);
            w.bulk(&msg.payload);
        }
        Some(p) => {
            w.push(4);
            w.bulk(b"pmessage");
            w.bulk(p);
            w.bulk(&msg.channel);
            w.bulk(&msg.payload);
        }
    }
}

/// Deletes keys whose expiry this node owns once they are due, a bounded number per round.
pub async fn expiry_sweeper(shared: Arc<Shared>) {
    let mut rounds: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut shutdown_rx = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown_rx.changed() => return,
        }
        let now = now_ms();
        let mut state = shared.state.lock();
        rounds += 1;
        if rounds.is_multiple_of(10) {
            collect_tombstones(&mut state);
        }
        let writes_paused = state.db.client_pause.is_some_and(|p| now < p.until_ms);
        if state.db.ks.keys_with_deadline() == 0 || !state.db.repl.is_primary() || writes_paused {
            continue;
        }
        let due = state.db.ks.due_for_expiry(now, 500);
        for key in &due {
            state.db.ks.commit(
                now,
                vec![crate::crdt::Op {
                    key: bytes::Bytes::copy_from_slice(key),
                    kind: crate::crdt::OpKind::Del,
                }],
            );
            state.db.stats.expired_keys += 1;
        }
        let _ = state.persist_outbox();
        drop(state);
        if !due.is_empty() {
            shared.offsets.send_modify(|n| *n += 1);
        }
    }
}

/// Drops ordering-only state every participant has seen (once a second).
fn collect_tombstones(state: &mut State) {
    if !state.db.repl.is_primary() {
        return;
    }
    let mine = state.db.ks.clock().clone();
    let stable = if state.db.repl.peers.is_empty() {
        Some(mine)
    } else {
        state.db.repl.stable_clock(&mine)
    };
    if let Some(stable) = stable {
        state.db.ks.collect(&stable);
    }
}

/// Refreshes the process's allocated-bytes figure used by `maxmemory` and INFO.
pub async fn memory_sampler(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut shutdown_rx = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown_rx.changed() => return,
        }
        let used = crate::metrics::allocated_bytes();
        let mut state = shared.state.lock();
        // A compaction in progress keeps replaced state alive until it ends: the figure from
        // before it stands meanwhile (see `commands::eviction`).
        if !state.db.ks.capture_active() {
            state.db.used_memory = used;
        }
        if let Some(store) = &state.store {
            let info = store.info();
            let stats = store.fsync_stats();
            let text = format!(
                "aof_current_size:{}\r\naof_base_size:{}\r\naof_fsync_count:{}\r\naof_fsync_last_us:{}\r\naof_fsync_max_us:{}\r\n",
                store.log_size(),
                store.snapshot_size().unwrap_or(0),
                stats.count,
                stats.last_micros,
                stats.max_micros,
            );
            let _ = info;
            state.db.info_extra.insert("persistence", text);
        }
    }
}
