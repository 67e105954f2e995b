//! The serving side of a replication link: streams this node's effects to a replica or a peer.
//!
//! Contract: after `AA.SYNC`/`AA.PULL` the connection carries only frames (see the module docs
//! of `repl`). The stream starts with `CONT` (resume from the backlog) or `FULL` + a complete
//! copy of the state, then every effect recorded from the start offset on, in order, plus a
//! heartbeat every 100 ms. If the backlog overruns a slow reader, the stream is closed and the
//! client reconnects (getting a full copy). Acknowledgements read from the client update
//! replica offsets (for `WAIT`) and peers' clocks (for collecting tombstones).

use crate::crdt::keyspace::Entry;
use crate::crdt::{Blob, Keyspace, VectorClock};
use crate::repl::{LinkRequest, LinkState, ReplicaInfo};
use crate::resp::{Limits, RequestParser};
use crate::server::{now_ms, Shared};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Appends one frame (an array of bulk strings).
pub fn frame(out: &mut BytesMut, parts: &[&[u8]]) {
    crate::resp::write_command(out, parts);
}

/// Serves a link until the client goes away, the stream overruns the backlog or shutdown.
/// The stream is a plain TCP connection or a TLS one.
pub async fn serve_link<S>(
    socket: S,
    shared: Arc<Shared>,
    client_id: u64,
    addr: String,
    peer_name: String,
    request: LinkRequest,
    mut input: BytesMut,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut out = BytesMut::with_capacity(64 * 1024);
    let is_replica = matches!(request, LinkRequest::Sync { .. });
    let mut offsets = shared.offsets.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    // Decide where to start, and take a full copy if needed, under one lock.
    let (mut sent, mut known_clock) = {
        let mut state = shared.state.lock();
        let db = &mut state.db;
        let backlog = &db.repl.backlog;
        let resume = match &request {
            LinkRequest::Sync { replid, offset } => {
                offset.filter(|o| *replid == backlog.replid && backlog.since_offset(*o).is_some())
            }
            LinkRequest::Pull { clock } => backlog.start_for_clock(clock),
        };
        let replid = backlog.replid.clone();
        let start = match resume {
            Some(o) => {
                frame(
                    &mut out,
                    &[b"CONT", replid.as_bytes(), o.to_string().as_bytes()],
                );
                o
            }
            None => {
                let next = backlog.next_offset();
                write_full_state(&mut out, &db.ks, &replid, next);
                next
            }
        };
        if is_replica {
            db.repl.replicas.insert(
                client_id,
                ReplicaInfo {
                    addr: addr.clone(),
                    ack_offset: 0,
                    state: LinkState::Syncing,
                },
            );
        }
        let known = match &request {
            LinkRequest::Pull { clock } => Some(clock.clone()),
            LinkRequest::Sync { .. } => None,
        };
        (start, known)
    };
    let stream_replid = shared.state.lock().db.repl.backlog.replid.clone();
    tracing::info!(%addr, peer = %peer_name, replica = is_replica, "replication stream started");
    let (mut rd, mut wr) = tokio::io::split(socket);
    let mut heartbeat = tokio::time::interval(Duration::from_millis(100));
    let mut parser = RequestParser::new();
    let limits = Limits::default();
    let reason: &str = 'stream: loop {
        // Effects recorded since the last write.
        {
            let state = shared.state.lock();
            let backlog = &state.db.repl.backlog;
            if backlog.replid != stream_replid {
                break 'stream "this node's history restarted (new replication id)";
            }
            match backlog.since_offset(sent) {
                Some(effects) => {
                    for (dot, encoded) in &effects {
                        let skip = known_clock.as_ref().is_some_and(|c| c.covers(*dot));
                        if !skip {
                            frame(&mut out, &[b"E", encoded]);
                        }
                    }
                    sent += effects.len() as u64;
                }
                None => break 'stream "the backlog no longer holds the next offset",
            }
        }
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                break 'stream "write failed";
            }
            out.clear();
        }
        tokio::select! {
            _ = offsets.changed() => {}
            _ = heartbeat.tick() => {
                let state = shared.state.lock();
                let db = &state.db;
                let clock = postcard::to_allocvec(db.ks.clock()).unwrap_or_default();
                let stable = db
                    .repl
                    .stable_clock(db.ks.clock())
                    .map(|c| postcard::to_allocvec(&c).unwrap_or_default())
                    .unwrap_or_default();
                frame(
                    &mut out,
                    &[
                        b"HB",
                        &clock,
                        now_ms().to_string().as_bytes(),
                        db.repl.backlog.next_offset().to_string().as_bytes(),
                        &stable,
                    ],
                );
            }
            read = rd.read_buf(&mut input) => {
                match read {
                    Ok(0) | Err(_) => break 'stream "the client closed the link",
                    Ok(_) => {}
                }
                loop {
                    // Only acknowledgements (RESP arrays) are valid here; inline text is noise.
                    if !parser.in_progress() && input.first().is_some_and(|b| *b != b'*') {
                        break 'stream "garbage on the link";
                    }
                    match parser.parse(&mut input, &limits, true) {
                        Ok(Some(args)) => {
                            if !handle_ack(&shared, client_id, &peer_name, &args, &mut known_clock) {
                                break 'stream "unexpected command on the link";
                            }
                        }
                        Ok(None) => break,
                        Err(_) => break 'stream "garbage on the link",
                    }
                }
            }
            _ = shutdown.changed() => break 'stream "shutting down",
        }
    };
    tracing::info!(%addr, peer = %peer_name, reason, "replication stream ended");
    let mut state = shared.state.lock();
    state.db.repl.replicas.remove(&client_id);
    state.db.clients.remove(&client_id);
}

/// Handles one message from the link client; `false` for anything that is not a well-formed
/// acknowledgement (the link is then closed).
fn handle_ack(
    shared: &Shared,
    client_id: u64,
    peer_name: &str,
    args: &[Bytes],
    known_clock: &mut Option<VectorClock>,
) -> bool {
    let word = |i: usize| args.get(i).map(|a| &a[..]).unwrap_or(b"");
    if args.len() == 3
        && word(0).eq_ignore_ascii_case(b"replconf")
        && word(1).eq_ignore_ascii_case(b"ack")
    {
        let Some(offset) = crate::resp::parse_i64_strict(word(2)) else {
            return false;
        };
        let mut state = shared.state.lock();
        if let Some(r) = state.db.repl.replicas.get_mut(&client_id) {
            r.ack_offset = offset.max(0) as u64;
            r.state = LinkState::Up;
        }
        drop(state);
        shared.acks.send_modify(|n| *n += 1);
        return true;
    }
    if args.len() == 2 && word(0).eq_ignore_ascii_case(b"aa.ack") {
        let Ok(clock) = postcard::from_bytes::<VectorClock>(word(1)) else {
            return false;
        };
        let mut state = shared.state.lock();
        if let Some(p) = state.db.repl.peers.get_mut(peer_name) {
            p.acked_clock = Some(clock.clone());
        }
        *known_clock = Some(clock);
        return true;
    }
    false
}

/// Appends a complete copy of `ks` (`FULL replid next`, `META`, `KEY`…, `END`); returns the
/// number of keys.
pub fn write_full_state(out: &mut BytesMut, ks: &Keyspace, replid: &str, next: u64) -> usize {
    frame(
        out,
        &[b"FULL", replid.as_bytes(), next.to_string().as_bytes()],
    );
    let meta = postcard::to_allocvec(&ks.meta()).unwrap_or_default();
    frame(out, &[b"META", &meta]);
    let mut keys = 0;
    for (k, e) in ks.entries() {
        let record = postcard::to_allocvec(&(k, e)).unwrap_or_default();
        frame(out, &[b"KEY", &record]);
        keys += 1;
    }
    frame(out, &[b"END"]);
    keys
}

/// Decodes a `KEY` frame of a full transfer.
pub fn decode_key(record: &[u8]) -> Option<(Blob, Entry)> {
    postcard::from_bytes(record).ok()
}
