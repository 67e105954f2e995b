//! The client side of replication links: a replica following its primary, and a node pulling
//! from a peer.
//!
//! Contract: one task per link, reconnecting with backoff until its generation is superseded
//! (REPLICAOF / AA.PEER changed it) or the server shuts down. Received effects pass the causal
//! gate, are applied, logged and recorded in this node's backlog (so this node's own replicas
//! and peers get them), and acknowledged. A full transfer replaces a replica's state and is
//! merged (joined) into a peer's state. A refused handshake (wrong password, version, shard) is
//! logged with the reason and retried more slowly.
//! - When the node has TLS settings, every link runs over TLS: the node presents its
//!   certificate and accepts only a server certified by its CA for the host it dialled. A
//!   failed TLS handshake counts as a refusal.

use crate::crdt::keyspace::{Entry, KeyspaceMeta};
use crate::crdt::{Blob, Effect, Keyspace, VectorClock};
use crate::repl::{LinkState, Role, LINK_PROTOCOL_VERSION};
use crate::resp::{Limits, RequestParser};
use crate::server::{now_ms, Shared};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Which link a task serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkTarget {
    Primary,
    Peer(String),
}

/// Where the link should connect now, or `None` when the task is superseded.
fn current_address(shared: &Shared, target: &LinkTarget, generation: u64) -> Option<String> {
    current_address_locked(&shared.state.lock().db.repl, target, generation)
}

fn set_status(
    shared: &Shared,
    target: &LinkTarget,
    generation: u64,
    state: LinkState,
    error: Option<String>,
) {
    let mut st = shared.state.lock();
    let repl = &mut st.db.repl;
    match target {
        LinkTarget::Primary => {
            if let Some(m) = repl.master.as_mut().filter(|m| m.generation == generation) {
                m.state = state;
                if let Some(e) = error {
                    m.last_error = e;
                }
            }
        }
        LinkTarget::Peer(name) => {
            if let Some(p) = repl
                .peers
                .get_mut(name)
                .filter(|p| p.generation == generation)
            {
                p.state = state;
                if let Some(e) = error {
                    p.last_error = e;
                }
            }
        }
    }
}

/// Runs one link until it is superseded or the server shuts down.
pub async fn run(shared: Arc<Shared>, target: LinkTarget, generation: u64) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(addr) = current_address(&shared, &target, generation) else {
            return;
        };
        let outcome = tokio::select! {
            r = session(&shared, &target, generation, &addr) => r,
            _ = shutdown.changed() => return,
        };
        match outcome {
            Ok(()) => return,
            Err(LinkError::Refused(reason)) => {
                tracing::warn!(link = ?target, %addr, %reason, "link refused by the other node");
                set_status(&shared, &target, generation, LinkState::Down, Some(reason));
                backoff = Duration::from_secs(1);
            }
            Err(LinkError::Io(reason)) => {
                tracing::debug!(link = ?target, %addr, %reason, "link down");
                set_status(&shared, &target, generation, LinkState::Down, Some(reason));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

pub(super) enum LinkError {
    /// The other node said no (password, version, shard): worth a log line.
    Refused(String),
    /// Connection trouble.
    Io(String),
}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> Self {
        LinkError::Io(e.to_string())
    }
}

/// Reads one reply line (`+…` or `-…`) of the handshake.
pub(super) async fn read_line<S: AsyncRead + Unpin>(
    socket: &mut S,
    buf: &mut BytesMut,
) -> Result<String, LinkError> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(pos + 2);
            return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
        }
        if buf.len() > 64 * 1024 {
            return Err(LinkError::Io("handshake reply too long".into()));
        }
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read_buf(buf))
            .await
            .map_err(|_| LinkError::Io("handshake timed out".into()))??;
        if n == 0 {
            return Err(LinkError::Io("connection closed during handshake".into()));
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    buf: &mut BytesMut,
    args: &[&[u8]],
) -> Result<String, LinkError> {
    let mut out = BytesMut::new();
    crate::resp::write_command(&mut out, args);
    socket.write_all(&out).await?;
    let line = read_line(socket, buf).await?;
    if let Some(err) = line.strip_prefix('-') {
        return Err(LinkError::Refused(err.to_string()));
    }
    Ok(line)
}

/// A full state transfer being received.
struct FullTransfer {
    meta: Option<KeyspaceMeta>,
    entries: Vec<(Blob, Entry)>,
    offset: u64,
    replid: String,
}

async fn session(
    shared: &Arc<Shared>,
    target: &LinkTarget,
    generation: u64,
    addr: &str,
) -> Result<(), LinkError> {
    set_status(shared, target, generation, LinkState::Connecting, None);
    let socket = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Io(format!("connecting to {addr} timed out")))??;
    let _ = socket.set_nodelay(true);
    let tls = shared.tls.as_ref().map(|t| t.current());
    match tls {
        Some(tls) => {
            let socket = tokio::time::timeout(Duration::from_secs(5), tls.connect(addr, socket))
                .await
                .map_err(|_| LinkError::Io(format!("TLS handshake with {addr} timed out")))?
                .map_err(LinkError::Refused)?;
            speak(shared, target, generation, addr, socket).await
        }
        None => speak(shared, target, generation, addr, socket).await,
    }
}

/// Runs the handshake and then receives frames on a connected (plain or TLS) stream.
async fn speak<S>(
    shared: &Arc<Shared>,
    target: &LinkTarget,
    generation: u64,
    addr: &str,
    mut socket: S,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (secret, participant, shard, resume) = {
        let state = shared.state.lock();
        let db = &state.db;
        let resume = match (target, db.repl.master.as_ref()) {
            (LinkTarget::Primary, Some(m)) => (
                m.master_replid.clone().unwrap_or_else(|| "?".into()),
                m.master_offset.map(|o| o as i64).unwrap_or(-1),
            ),
            _ => ("?".into(), -1),
        };
        let credentials = match &db.settings.link_credentials {
            Some((user, pass)) => Some((Some(user.clone()), pass.clone())),
            None => db.settings.requirepass.clone().map(|p| (None, p)),
        };
        (
            credentials,
            db.participant.clone(),
            db.ks.actor().shard,
            resume,
        )
    };
    match &secret {
        Some((Some(user), pass)) => {
            command(&mut socket, &mut buf, &[b"AUTH", user, pass]).await?;
        }
        Some((None, pass)) => {
            command(&mut socket, &mut buf, &[b"AUTH", pass]).await?;
        }
        None => {}
    }
    let kind: &[u8] = if *target == LinkTarget::Primary {
        b"replica"
    } else {
        b"peer"
    };
    command(
        &mut socket,
        &mut buf,
        &[
            b"AA.HELLO",
            LINK_PROTOCOL_VERSION.to_string().as_bytes(),
            participant.as_bytes(),
            shard.to_string().as_bytes(),
            kind,
            participant.as_bytes(),
        ],
    )
    .await?;
    if *target == LinkTarget::Primary {
        let port = shared.state.lock().db.tcp_port;
        command(
            &mut socket,
            &mut buf,
            &[b"REPLCONF", b"listening-port", port.to_string().as_bytes()],
        )
        .await?;
        match super::handoff::offer(shared, &mut socket, &mut buf).await? {
            super::handoff::Handed::Nothing => {}
            super::handoff::Handed::Unsupported => {
                tracing::warn!(%addr, "the primary cannot take a handover (an older build); following without one")
            }
            handed => tracing::info!(%addr, ?handed, "handed over what the primary lacked"),
        }
    }
    let mut out = BytesMut::new();
    match target {
        LinkTarget::Primary => {
            crate::resp::write_command(
                &mut out,
                &[
                    b"AA.SYNC",
                    resume.0.as_bytes(),
                    resume.1.to_string().as_bytes(),
                ],
            );
        }
        LinkTarget::Peer(_) => {
            let clock =
                postcard::to_allocvec(shared.state.lock().db.ks.clock()).unwrap_or_default();
            crate::resp::write_command(&mut out, &[&b"AA.PULL"[..], &clock]);
        }
    }
    socket.write_all(&out).await?;
    set_status(
        shared,
        target,
        generation,
        LinkState::Syncing,
        Some(String::new()),
    );
    tracing::info!(link = ?target, %addr, "link connected");

    let mut parser = RequestParser::new();
    let limits = Limits::default();
    let mut full: Option<FullTransfer> = None;
    let mut frames: Vec<Vec<Bytes>> = Vec::new();
    loop {
        loop {
            match parser.parse(&mut buf, &limits, true) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return Err(LinkError::Io(format!("garbage on the link: {}", e.0))),
            }
        }
        while !frames.is_empty() {
            let applied = apply_frames(shared, target, generation, &mut frames, &mut full)?;
            if applied.installed_full {
                make_full_transfer_durable(shared).await?;
                // Up only once what the link brought survives a crash.
                let mut state = shared.state.lock();
                if current_address_locked(&state.db.repl, target, generation).is_some() {
                    set_link_up(&mut state, target);
                }
            }
            if let Some(ack) = applied.ack {
                socket.write_all(&ack).await?;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read_buf(&mut buf))
            .await
            .map_err(|_| LinkError::Io("no heartbeat for 5 s".into()))??;
        if n == 0 {
            return Err(LinkError::Io("the other node closed the link".into()));
        }
    }
}

/// What one [`apply_frames`] call did.
struct Applied {
    /// The acknowledgement to send.
    ack: Option<BytesMut>,
    /// A full transfer was installed (the frames after it are left for the next call): it
    /// must be made durable before anything is applied on top of it.
    installed_full: bool,
}

/// Writes a snapshot of the state a full transfer installed, before the link applies or
/// acknowledges anything after it. Until then the log holds the state from before the
/// transfer, which is consistent on its own; effects logged on top of it without the snapshot
/// would recover as a state whose clock covers what it does not hold, and a later merge of
/// that state would drop those writes elsewhere.
async fn make_full_transfer_durable(shared: &Arc<Shared>) -> Result<(), LinkError> {
    let shared = Arc::clone(shared);
    let written =
        tokio::task::spawn_blocking(move || crate::server::persist::compact_once(&shared)).await;
    match written {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(LinkError::Io(format!(
            "could not make the full transfer durable: {e}"
        ))),
        Err(e) => Err(LinkError::Io(format!("the snapshot task failed: {e}"))),
    }
}

/// Applies received frames under one lock, up to and including the end of a full transfer;
/// returns what was done.
fn apply_frames(
    shared: &Shared,
    target: &LinkTarget,
    generation: u64,
    frames: &mut Vec<Vec<Bytes>>,
    full: &mut Option<FullTransfer>,
) -> Result<Applied, LinkError> {
    let mut state = shared.state.lock();
    if current_address_locked(&state.db.repl, target, generation).is_none() {
        return Err(LinkError::Io("link superseded".into()));
    }
    let now = now_ms();
    let mut applied: Vec<Effect> = Vec::new();
    // Received encodings, reused for this node's log and backlog (copied: the frame is a view
    // into the socket buffer).
    let mut encodings: std::collections::HashMap<crate::crdt::Dot, Bytes> = Default::default();
    let mut got_effects = false;
    let mut installed_full = false;
    let mut pending = std::mem::take(frames).into_iter();
    for f in pending.by_ref() {
        let word = |i: usize| f.get(i).map(|a| &a[..]).unwrap_or(b"");
        match word(0) {
            b"FULL" => {
                *full = Some(FullTransfer {
                    meta: None,
                    entries: Vec::new(),
                    offset: parse_u64(word(2)),
                    replid: String::from_utf8_lossy(word(1)).into_owned(),
                });
            }
            b"META" => {
                if let Some(t) = full.as_mut() {
                    t.meta = postcard::from_bytes(word(1)).ok();
                }
            }
            b"KEY" => {
                if let (Some(t), Some(pair)) = (full.as_mut(), super::serve::decode_key(word(1))) {
                    t.entries.push(pair);
                }
            }
            b"END" => {
                let Some(t) = full.take() else { continue };
                let Some(meta) = t.meta else {
                    return Err(LinkError::Io("full transfer without META".into()));
                };
                finish_full_transfer(&mut state, target, meta, t.entries, t.replid, t.offset);
                installed_full = true;
                break;
            }
            b"CONT" => {
                if let (LinkTarget::Primary, Some(m)) = (target, state.db.repl.master.as_mut()) {
                    m.master_replid = Some(String::from_utf8_lossy(word(1)).into_owned());
                    m.master_offset = Some(parse_u64(word(2)));
                }
                set_link_up(&mut state, target);
            }
            b"E" => {
                let effect = Effect::decode(word(1))
                    .map_err(|e| LinkError::Io(format!("undecodable effect: {e}")))?;
                encodings.insert(effect.dot, Bytes::copy_from_slice(word(1)));
                got_effects = true;
                let db = &mut state.db;
                if let (LinkTarget::Primary, Some(m)) = (target, db.repl.master.as_mut()) {
                    m.master_offset = Some(m.master_offset.unwrap_or(0) + 1);
                    m.last_io_ms = now;
                }
                db.repl.gate.offer_collect(&mut db.ks, effect, &mut applied);
            }
            b"HB" => {
                let db = &mut state.db;
                if let Ok(theirs) = postcard::from_bytes::<VectorClock>(word(1)) {
                    if let LinkTarget::Peer(name) = target {
                        let lag = crate::repl::ReplState::lag_effects(db.ks.clock(), &theirs);
                        if let Some(p) = db.repl.peers.get_mut(name) {
                            if lag == 0 {
                                p.caught_up_ms = now;
                            }
                            p.their_clock = theirs;
                            if p.state != LinkState::Up {
                                p.state = LinkState::Up;
                            }
                        }
                    }
                }
                if let (LinkTarget::Primary, Some(m)) = (target, db.repl.master.as_mut()) {
                    m.last_io_ms = now;
                    let primary_clock = postcard::from_bytes::<VectorClock>(word(1));
                    if let (Ok(primary_clock), Ok(stable)) =
                        (primary_clock, postcard::from_bytes::<VectorClock>(word(4)))
                    {
                        // The primary's view of what every participant has seen; safe to act
                        // on once this replica has everything the primary had then.
                        if db.ks.clock().dominates(&primary_clock) {
                            db.ks.collect(&stable);
                        }
                    }
                }
            }
            _ => return Err(LinkError::Io("unknown frame on the link".into())),
        }
    }
    *frames = pending.collect();
    for effect in applied {
        let encoded = encodings.remove(&effect.dot);
        state.record_received(effect, encoded);
    }
    let _ = state.flush_log();
    let db = &state.db;
    let ack = match target {
        LinkTarget::Primary => db
            .repl
            .master
            .as_ref()
            .and_then(|m| m.master_offset)
            .map(|o| {
                let mut out = BytesMut::new();
                crate::resp::write_command(
                    &mut out,
                    &[&b"REPLCONF"[..], b"ACK", o.to_string().as_bytes()],
                );
                out
            }),
        LinkTarget::Peer(_) => {
            if got_effects || full.is_none() {
                let clock = postcard::to_allocvec(db.ks.clock()).unwrap_or_default();
                let mut out = BytesMut::new();
                crate::resp::write_command(&mut out, &[&b"AA.ACK"[..], &clock]);
                Some(out)
            } else {
                None
            }
        }
    };
    drop(state);
    shared.offsets.send_modify(|n| *n += 1);
    shared.blocked_wake.send_modify(|n| *n += 1);
    Ok(Applied {
        ack: if installed_full { None } else { ack },
        installed_full,
    })
}

/// Where the link of `target` should connect, or `None` when `generation` is superseded.
fn current_address_locked(
    repl: &crate::repl::ReplState,
    target: &LinkTarget,
    generation: u64,
) -> Option<String> {
    match target {
        LinkTarget::Primary => match (&repl.role, &repl.master) {
            (Role::Replica { host, port }, Some(m)) if m.generation == generation => {
                Some(format!("{host}:{port}"))
            }
            _ => None,
        },
        LinkTarget::Peer(name) => repl
            .peers
            .get(name)
            .filter(|p| p.generation == generation)
            .map(|p| p.addr.clone()),
    }
}

fn set_link_up(state: &mut crate::server::State, target: &LinkTarget) {
    let repl = &mut state.db.repl;
    match target {
        LinkTarget::Primary => {
            if let Some(m) = repl.master.as_mut() {
                m.state = LinkState::Up;
            }
        }
        LinkTarget::Peer(name) => {
            if let Some(p) = repl.peers.get_mut(name) {
                p.state = LinkState::Up;
            }
        }
    }
}

fn parse_u64(b: &[u8]) -> u64 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Installs a full transfer: a replica takes the primary's state as its own; a peer's state is
/// merged in. Either way this node's own history restarts (new replication id); the caller
/// writes a snapshot so the log matches the new state ([`make_full_transfer_durable`]).
fn finish_full_transfer(
    state: &mut crate::server::State,
    target: &LinkTarget,
    meta: KeyspaceMeta,
    entries: Vec<(Blob, Entry)>,
    replid: String,
    offset: u64,
) {
    let db = &mut state.db;
    match target {
        LinkTarget::Primary => {
            let keys = entries.len();
            db.ks.replace_with(meta, entries);
            db.repl.gate.clear();
            if let Some(m) = db.repl.master.as_mut() {
                m.master_replid = Some(replid);
                m.master_offset = Some(offset);
            }
            tracing::info!(keys, "full copy received from the primary");
        }
        LinkTarget::Peer(name) => {
            if let Some(p) = db.repl.peers.get_mut(name) {
                p.full_merges += 1;
            }
            let released = join_full_state(state, meta, entries);
            tracing::info!(peer = %name, released, "merged the full state of a peer whose backlog no longer covered this node");
        }
    }
    let db = &mut state.db;
    let clock = db.ks.clock().clone();
    db.repl.backlog.reset(clock);
}

/// Joins another node's whole state into this node's, then applies the effects that waited in
/// the causal gate for what it brought. Returns how many were released. The join is not in the
/// log or the backlog: the caller restarts the backlog or writes a snapshot.
pub(super) fn join_full_state(
    state: &mut crate::server::State,
    meta: KeyspaceMeta,
    entries: Vec<(Blob, Entry)>,
) -> usize {
    let db = &mut state.db;
    let mut theirs = Keyspace::new(meta.actor.clone(), false);
    theirs.restore_meta(meta);
    for (k, e) in entries {
        theirs.restore_entry(k, e);
    }
    db.ks.join(&theirs);
    let mut released = Vec::new();
    db.repl.gate.release(&mut db.ks, &mut released);
    let count = released.len();
    for effect in released {
        state.record_received(effect, None);
    }
    count
}
