//! The handover before following: a node that starts following a primary first gives it every
//! effect the primary has not seen, so a demoted primary's acknowledged writes are merged into
//! the shard instead of being replaced by the primary's copy.
//!
//! Contract:
//! - Every replica link session sends `AA.HANDOFF <clock>` after the handshake and before
//!   `AA.SYNC`. The primary answers:
//!   - `+OK` when its clock already covers the replica's (the common case: a replica never has
//!     more than its primary);
//!   - `-NOTPRIMARY …` when it is not a primary and lacks something: the replica keeps what it
//!     has and retries, rather than follow and discard it;
//!   - a `CLOCK <clock>` frame otherwise. The replica then sends what the primary lacks and a
//!     `DONE` frame: `E effect` frames when its backlog covers everything from the primary's
//!     clock on, else `FULL`, `META`, `KEY`…, `END`, its whole state.
//! - The primary takes them as it takes a peer's: effects through the causal gate, a whole state
//!   by a join (never a replacement), recorded so that its replicas and peers get them. It
//!   answers `+OK` only once they are durable (the log flushed; after a join, a snapshot
//!   written). Only then does the replica ask for its copy, which replaces its state.
//! - A primary that does not know the command (an older build) answers an unknown-command
//!   error; the replica then follows without handing over, as older builds did.

use super::link::LinkError;
use super::serve::{decode_key, frame, write_full_state};
use crate::crdt::keyspace::{Entry, KeyspaceMeta};
use crate::crdt::{Blob, Dot, Effect, VectorClock};
use crate::resp::{Limits, RequestParser};
use crate::server::Shared;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the primary may take to make a handover durable (a join ends with a snapshot).
const DURABLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long either side waits for the next bytes of a handover.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What a handover did, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Handed {
    /// The primary had everything already.
    Nothing,
    /// This many effects were handed over.
    Effects(usize),
    /// The whole state was handed over, to be joined.
    State { keys: usize },
    /// The primary does not know handovers (an older build).
    Unsupported,
}

/// The replica's side: offers this node's history to the primary on `socket` (after the link
/// handshake), and returns once the primary holds it durably.
pub(super) async fn offer<S>(
    shared: &Shared,
    socket: &mut S,
    buf: &mut BytesMut,
) -> Result<Handed, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mine = postcard::to_allocvec(shared.state.lock().db.ks.clock()).unwrap_or_default();
    let mut out = BytesMut::new();
    crate::resp::write_command(&mut out, &[&b"AA.HANDOFF"[..], &mine]);
    socket.write_all(&out).await?;
    fill(socket, buf, 1, IO_TIMEOUT).await?;
    if buf[0] != b'*' {
        let line = super::link::read_line(socket, buf).await?;
        return match line.strip_prefix('-') {
            None => Ok(Handed::Nothing),
            Some(e) if e.starts_with("ERR unknown command") => Ok(Handed::Unsupported),
            Some(e) => Err(LinkError::Refused(e.to_string())),
        };
    }
    let reply = read_frame(socket, buf).await?;
    let theirs = match reply.as_slice() {
        [word, clock] if &word[..] == b"CLOCK" => postcard::from_bytes::<VectorClock>(clock)
            .map_err(|_| LinkError::Io("the primary sent a malformed clock".into()))?,
        _ => return Err(LinkError::Io("unexpected answer to AA.HANDOFF".into())),
    };
    let (payload, handed) = {
        let state = shared.state.lock();
        let db = &state.db;
        let backlog = &db.repl.backlog;
        let mut out = BytesMut::new();
        let effects = backlog
            .start_for_clock(&theirs)
            .and_then(|o| backlog.since_offset(o));
        let handed = match effects {
            Some(effects) => {
                let mut count = 0;
                for (_, encoded) in effects.iter().filter(|(d, _)| !theirs.covers(*d)) {
                    frame(&mut out, &[b"E", encoded]);
                    count += 1;
                }
                Handed::Effects(count)
            }
            None => {
                let keys = write_full_state(&mut out, &db.ks, &backlog.replid, 0);
                Handed::State { keys }
            }
        };
        frame(&mut out, &[b"DONE"]);
        (out, handed)
    };
    socket.write_all(&payload).await?;
    fill(socket, buf, 1, DURABLE_TIMEOUT).await?;
    let line = super::link::read_line(socket, buf).await?;
    match line.strip_prefix('-') {
        None => Ok(handed),
        Some(e) => Err(LinkError::Refused(format!("handover refused: {e}"))),
    }
}

/// Reads until `buf` holds at least `n` bytes.
async fn fill<S: AsyncRead + Unpin>(
    socket: &mut S,
    buf: &mut BytesMut,
    n: usize,
    timeout: Duration,
) -> Result<(), LinkError> {
    while buf.len() < n {
        let read = tokio::time::timeout(timeout, socket.read_buf(buf))
            .await
            .map_err(|_| LinkError::Io("the primary did not answer the handover".into()))??;
        if read == 0 {
            return Err(LinkError::Io(
                "connection closed during the handover".into(),
            ));
        }
    }
    Ok(())
}

/// Reads one frame (an array of bulk strings).
async fn read_frame<S: AsyncRead + Unpin>(
    socket: &mut S,
    buf: &mut BytesMut,
) -> Result<Vec<Bytes>, LinkError> {
    let mut parser = RequestParser::new();
    let limits = Limits::default();
    loop {
        match parser.parse(buf, &limits, true) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => fill(socket, buf, buf.len() + 1, IO_TIMEOUT).await?,
            Err(e) => return Err(LinkError::Io(format!("garbage on the link: {}", e.0))),
        }
    }
}

/// A whole state being received.
struct Incoming {
    meta: Option<KeyspaceMeta>,
    entries: Vec<(Blob, Entry)>,
}

/// The primary's side, after `AA.HANDOFF` asked for it: sends this node's clock, takes what
/// the replica sends until `DONE`, makes it durable and answers `+OK` (or `-ERR …`). Returns
/// an error when the connection must close; `input` keeps whatever followed `DONE`.
pub async fn receive<S>(
    socket: &mut S,
    shared: &Arc<Shared>,
    input: &mut BytesMut,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    let clock = postcard::to_allocvec(shared.state.lock().db.ks.clock()).unwrap_or_default();
    frame(&mut out, &[b"CLOCK", &clock]);
    socket.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut parser = RequestParser::new();
    let limits = Limits::default();
    let mut incoming: Option<Incoming> = None;
    let mut joined = false;
    let mut effects = 0usize;
    let mut frames: Vec<Vec<Bytes>> = Vec::new();
    let result: Result<(), String> = 'receive: loop {
        let mut done = false;
        loop {
            match parser.parse(input, &limits, true) {
                Ok(Some(f)) => {
                    let last = f.first().is_some_and(|w| &w[..] == b"DONE");
                    frames.push(f);
                    if last {
                        done = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => break 'receive Err(format!("garbage in the handover: {}", e.0)),
            }
        }
        let mut effect_frames = Vec::new();
        for f in frames.drain(..) {
            let word = |i: usize| f.get(i).map(|a| &a[..]).unwrap_or(b"");
            match word(0) {
                b"E" => match Effect::decode(word(1)) {
                    Ok(effect) => effect_frames.push((effect, Bytes::copy_from_slice(word(1)))),
                    Err(e) => break 'receive Err(format!("undecodable effect: {e}")),
                },
                b"FULL" => {
                    incoming = Some(Incoming {
                        meta: None,
                        entries: Vec::new(),
                    })
                }
                b"META" => {
                    if let Some(t) = incoming.as_mut() {
                        t.meta = postcard::from_bytes(word(1)).ok();
                    }
                }
                b"KEY" => match (incoming.as_mut(), decode_key(word(1))) {
                    (Some(t), Some(pair)) => t.entries.push(pair),
                    _ => break 'receive Err("a malformed key in the handover".into()),
                },
                b"END" => {
                    let Some(Incoming {
                        meta: Some(meta),
                        entries,
                    }) = incoming.take()
                    else {
                        break 'receive Err("a whole state without META".into());
                    };
                    let mut state = shared.state.lock();
                    let keys = entries.len();
                    super::link::join_full_state(&mut state, meta, entries);
                    tracing::info!(keys, "joined the state a node handed over before following");
                    joined = true;
                }
                b"DONE" => {}
                _ => break 'receive Err("unknown frame in the handover".into()),
            }
        }
        if !effect_frames.is_empty() {
            effects += effect_frames.len();
            apply_effects(shared, effect_frames);
        }
        if done {
            break Ok(());
        }
        match tokio::time::timeout(IO_TIMEOUT, socket.read_buf(input)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => break Err("the node closed the connection during the handover".into()),
            Ok(Err(e)) => break Err(e.to_string()),
            Err(_) => break Err("the handover stalled".into()),
        }
    };
    if joined {
        // The join is not in the log: everyone downstream starts from the joined state.
        let mut state = shared.state.lock();
        let clock = state.db.ks.clock().clone();
        state.db.repl.backlog.reset(clock);
    }
    shared.offsets.send_modify(|n| *n += 1);
    shared.blocked_wake.send_modify(|n| *n += 1);
    result?;
    let durable = make_durable(shared, joined).await;
    let answer = match &durable {
        Ok(()) => {
            if effects > 0 || joined {
                tracing::info!(
                    effects,
                    joined,
                    "a node handed over what this primary lacked"
                );
            }
            "+OK\r\n".to_string()
        }
        Err(e) => format!("-ERR the handover is not durable: {e}\r\n"),
    };
    socket
        .write_all(answer.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Applies handed-over effects like a peer's, and records them.
fn apply_effects(shared: &Shared, effects: Vec<(Effect, Bytes)>) {
    let mut state = shared.state.lock();
    let mut encodings: HashMap<Dot, Bytes> = HashMap::new();
    let mut applied = Vec::new();
    for (effect, encoded) in effects {
        encodings.insert(effect.dot, encoded);
        let db = &mut state.db;
        db.repl.gate.offer_collect(&mut db.ks, effect, &mut applied);
    }
    for effect in applied {
        let encoded = encodings.remove(&effect.dot);
        state.record_received(effect, encoded);
    }
}

/// Flushes the log; after a join, writes a snapshot (the join is not in the log).
async fn make_durable(shared: &Arc<Shared>, joined: bool) -> Result<(), String> {
    shared.state.lock().flush_log()?;
    if joined {
        let shared = shared.clone();
        let snapshot =
            tokio::task::spawn_blocking(move || crate::server::persist::compact_once(&shared));
        tokio::time::timeout(DURABLE_TIMEOUT, snapshot)
            .await
            .map_err(|_| "the snapshot took too long".to_string())?
            .map_err(|e| e.to_string())??;
    }
    Ok(())
}
