//! The ways a connection waits after running its commands, and what it does for the server
//! once they ran: carrying out the commands' requests (`ServerRequests`) and sending the
//! wake-ups; waiting for the log to be durable (group commit), for a `CLIENT PAUSE` to end,
//! for replicas to acknowledge (`WAIT`), and in line in a blocking command. The guarantees
//! are in the contract of `net`.

use super::*;

/// Wake-ups to send once the lock is released, after [`carry_out_requests`].
pub(super) struct Wakes {
    pub(super) pause: bool,
    pub(super) blocked: bool,
}

impl Wakes {
    /// Wakes paused connections, replication streams and blocked clients as needed; a batch
    /// that recorded effects wakes the streams and the blocked clients.
    pub(super) fn send(&self, shared: &Shared, had_effects: bool) {
        if self.pause {
            shared.pauses.send_modify(|n| *n += 1);
        }
        if had_effects {
            shared.offsets.send_modify(|n| *n += 1);
        }
        if had_effects || self.blocked {
            shared.blocked_wake.send_modify(|n| *n += 1);
        }
    }
}

/// Carries out what the commands just run asked of the server (`ServerRequests`): starts
/// link tasks, flags a compaction, starts the shutdown. Returns the wake-ups to send once the
/// lock is released.
pub(super) fn carry_out_requests(shared: &Arc<Shared>, state: &mut State) -> Wakes {
    let requests = std::mem::take(&mut state.db.requests);
    if !requests.links.is_empty() {
        start_links(shared, state, requests.links);
    }
    if requests.compact {
        shared
            .compaction_requested
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if requests.shutdown {
        let _ = shared.shutdown.send(true);
    }
    Wakes {
        pause: requests.pause_changed,
        blocked: requests.wake_blocked,
    }
}

/// Waits until a batch's effects (and whatever was written before them) are durable, with the
/// other batches waiting meanwhile (group commit: one fsync serves them all). On failure the
/// log is marked failed, writes are refused from then on, and the caller closes the connection
/// without sending the batch's replies: nothing that may be lost is acknowledged.
pub(super) async fn wait_durable(shared: &Arc<Shared>, durable: crate::store::DurableAt) -> bool {
    if durable.is_durable() {
        return true;
    }
    match durable.wait().await {
        Ok(()) => true,
        Err(err) => {
            shared.state.lock().note_log_failure(err.to_string());
            false
        }
    }
}

/// What a blocked connection works with while it waits.
pub(super) struct BlockIo<'a, S> {
    pub(super) socket: &'a mut S,
    /// Bytes the client sends meanwhile stay here, unparsed.
    pub(super) input: &'a mut BytesMut,
    /// Receives the blocked command's final reply.
    pub(super) output: &'a mut BytesMut,
    pub(super) shutdown: &'a mut watch::Receiver<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum BlockEnd {
    /// The reply is in the output.
    Answered,
    /// The client went away, or the server is stopping.
    Gone,
}

/// Waits in line for a blocking command until it is served, times out, is unblocked or its
/// client leaves; see the module contract.
pub(super) async fn wait_blocked<S>(
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
                let after = dispatch(&mut state.db, client, &request.args, io.output, now);
                if !matches!(after, Some(AfterReply::Block(_))) {
                    state.db.blocked.unregister(seq);
                    let had_effects = !state.db.ks.outbox.is_empty();
                    if state.persist_outbox().is_err() {
                        return BlockEnd::Gone;
                    }
                    let mut wakes = carry_out_requests(shared, &mut state);
                    drop(state);
                    // Waiters behind this one may now be first in line.
                    wakes.blocked = true;
                    wakes.send(shared, had_effects);
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
pub(super) async fn wait_while_paused(shared: &Shared) {
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
pub(super) async fn wait_for_replicas(shared: &Shared, wait: crate::repl::WaitRequest) -> usize {
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
