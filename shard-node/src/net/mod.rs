//! The connection layer: accepts clients, runs their commands against the shared state
//! (`server`), writes effects to the log before replying, and hands link connections to
//! `links`.
//!
//! Contract:
//! - Each connection reads whatever is available, parses every complete command, runs them all
//!   under one lock, appends the resulting effects to the log, flushes the log and only then
//!   sends the replies. With `appendfsync always` the replies also wait, after the lock is
//!   released, until the log is durable up to the batch (one fsync serves every batch waiting
//!   meanwhile; a batch that only read waits for what was written before it). If the log
//!   cannot be written or synced the replies of that batch are not sent (the connection is
//!   closed) and later writes are refused with a `MISCONF` error.
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

use crate::client_limits;
use crate::commands::{dispatch, paused, AfterReply, ClientMeta, ClientState, PubMessage};
use crate::links::start_links;
use crate::server::{now_ms, Shared, State};

use crate::resp::{Protocol, ReplyWriter, RequestParser};
use bytes::BytesMut;
use waits::{
    carry_out_requests, wait_blocked, wait_durable, wait_for_replicas, wait_while_paused, BlockEnd,
    BlockIo,
};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod waits;

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
    if let Err(refusal) = admit(&shared, addr) {
        let _ = socket.write_all(refusal.as_bytes()).await;
        return;
    }
    let mut client = register_client(&shared, id, addr, laddr, tx);
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
                    let mut durable = None;
                    let processed = process_input(&shared, &mut client, &mut parser, &mut input, &mut output, &mut commands, &mut durable);
                    if let Some(durable) = durable {
                        if !wait_durable(&shared, durable).await {
                            break 'conn;
                        }
                    }
                    match processed {
                        Processed::Closed => break 'conn,
                        Processed::Continue { more } => {
                            if !flush(&mut socket, &mut output).await {
                                break 'conn;
                            }
                            if output.capacity() > 4 * 1024 * 1024 {
                                output = BytesMut::with_capacity(16 * 1024);
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
                            crate::links::serve::serve_link(socket, shared.clone(), id, link_addr, name, request, input).await;
                            return;
                        }
                        Processed::Handoff => {
                            if !flush(&mut socket, &mut output).await {
                                break 'conn;
                            }
                            if let Err(reason) = crate::links::handoff::receive(&mut socket, &shared, &mut input).await {
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
                            if !flush(&mut socket, &mut output).await {
                                break 'conn;
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
                            if !flush(&mut socket, &mut output).await {
                                break 'conn;
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
    forget_client(&shared, &client);
}

/// Whether a new connection from `addr` may be served; the refusal to send when it may not
/// (`maxclients` reached, or protected mode).
fn admit(shared: &Shared, addr: SocketAddr) -> Result<(), &'static str> {
    let mut state = shared.state.lock();
    let db = &mut state.db;
    db.stats.total_connections += 1;
    let refusal = if db.clients.len() as u64 >= db.settings.maxclients {
        "-ERR max number of clients reached\r\n"
    } else if protected_mode_refuses(db, addr) {
        PROTECTED_MODE_DENIED
    } else {
        return Ok(());
    };
    db.stats.rejected_connections += 1;
    Err(refusal)
}

/// Adds the client to `CLIENT LIST` and counts its connection; returns its state.
fn register_client(
    shared: &Shared,
    id: u64,
    addr: SocketAddr,
    laddr: SocketAddr,
    sender: crate::commands::pubsub_queue::PubSender,
) -> ClientState {
    let mut state = shared.state.lock();
    let db = &mut state.db;
    let now = now_ms();
    let mut client = ClientState::new(id, db.acl.default_is_open());
    client.sender = Some(sender);
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
    drop(state);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    client
}

/// Removes a client that left: from `CLIENT LIST`, its subscriptions, and the connection count.
fn forget_client(shared: &Shared, client: &ClientState) {
    let id = client.id;
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

/// Sends what the output holds, if anything, and empties it; false when the client is gone.
async fn flush<S: AsyncWrite + Unpin>(socket: &mut S, output: &mut BytesMut) -> bool {
    if output.is_empty() {
        return true;
    }
    if socket.write_all(output).await.is_err() {
        return false;
    }
    output.clear();
    true
}

enum Processed {
    /// Replies (if any) are in the output; `more` when commands may still be buffered.
    Continue { more: bool },
    /// The connection asked to become a replication stream.
    Link(crate::repl::LinkRequest),
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

/// Parses and runs the complete commands in `input` (all of them under one lock), writing
/// their effects to the log before returning; with `appendfsync always`, `durable` is set to
/// the log position the replies must wait for (see [`wait_durable`]). Stops after one command
/// while unauthenticated, because authentication changes what the parser accepts.
fn process_input(
    shared: &Arc<Shared>,
    client: &mut ClientState,
    parser: &mut RequestParser,
    input: &mut BytesMut,
    output: &mut BytesMut,
    commands: &mut Vec<Vec<bytes::Bytes>>,
    durable: &mut Option<crate::store::DurableAt>,
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
            let after = dispatch(&mut state.db, client, args, output, now);
            done += 1;
            match after {
                None => continue,
                Some(AfterReply::Close) => close = true,
                Some(AfterReply::ServeLink(req)) => special = Some(Processed::Link(req)),
                Some(AfterReply::Handoff) => special = Some(Processed::Handoff),
                Some(AfterReply::Wait(wait)) => special = Some(Processed::Wait(wait)),
                Some(AfterReply::Block(request)) => special = Some(Processed::Block(request)),
            }
            break;
        }
        commands.drain(..done);
        if close {
            commands.clear();
        }
        if let Some(meta) = state.db.clients.get_mut(&client.id) {
            meta.last_ms = now;
            meta.multi = client.multi.as_ref().map(|q| q.len() as i64).unwrap_or(-1);
        }
        let had_effects = !state.db.ks.outbox.is_empty();
        match state.persist_outbox_deferred() {
            Ok(pending) => *durable = pending,
            Err(_) => return Processed::Closed,
        }
        let wakes = carry_out_requests(shared, &mut state);
        drop(state);
        wakes.send(shared, had_effects);
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
