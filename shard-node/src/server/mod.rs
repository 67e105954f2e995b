//! The server's shared state: the one lock around the command state and the log ([`State`]),
//! what every task shares ([`Shared`]), the clock, persistence and the background tasks.
//!
//! Contract:
//! - Every change to the keyspace happens under `Shared::state`; effects committed under it are
//!   moved to the log and the replication backlog ([`State::persist_outbox`]) before the lock is
//!   released, so the log, the backlog and the keyspace never disagree.
//! - [`now_ms`] is the node's wall clock (shifted by `--clock-skew-ms` for tests).
//! - This module knows commands and replication state, and nothing of connections or links:
//!   the connection layer (`net`) and the link tasks (`links`) are built on it.

pub mod background;
pub mod persist;

use crate::commands::Db;
use crate::resp::Limits;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
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

    /// Like [`State::persist_outbox`], but with `appendfsync always` leaves the fsync to the
    /// caller: returns the log position the batch's replies must wait for, to be waited on
    /// after the lock is released (group commit: one fsync serves every batch waiting
    /// meanwhile). A batch that wrote nothing still waits for what others wrote before it, so
    /// no reply shows data that is not yet durable; while the log is failed it does not wait.
    pub fn persist_outbox_deferred(&mut self) -> Result<Option<crate::store::DurableAt>, String> {
        let wrote = !self.db.ks.outbox.is_empty();
        if wrote {
            let effects = std::mem::take(&mut self.db.ks.outbox);
            for e in &effects {
                self.record(e);
            }
        }
        if let Some(reason) = &self.db.persistence_error {
            return if wrote { Err(reason.clone()) } else { Ok(None) };
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(None);
        };
        match store.flush_deferred() {
            Ok(durable) => Ok(durable),
            Err(_) if !wrote => Ok(None),
            Err(err) => {
                let msg = err.to_string();
                self.note_log_failure(msg.clone());
                Err(msg)
            }
        }
    }

    /// Records an effect received over a link (already applied): fencing check, pub/sub
    /// delivery, log and backlog.
    pub fn record_received(&mut self, effect: crate::crdt::Effect, encoded: Option<bytes::Bytes>) {
        if self.db.repl.is_primary() && crate::repl::is_newer_epoch(&self.db.ks, &effect) {
            tracing::warn!(
                generation = effect.dot.actor.generation(),
                "a newer epoch of this shard exists: this node stops taking writes"
            );
            self.db.repl.role = crate::repl::Role::Fenced;
        }
        let messages: Vec<(bytes::Bytes, bytes::Bytes)> = crate::repl::messages(&effect)
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

    /// Refuses writes from now on with `msg` as the reason (the log failed).
    pub fn note_log_failure(&mut self, msg: String) {
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
    /// Set when a command asked for a compaction (`BGREWRITEAOF`, `BGSAVE`, `SAVE`): the
    /// compactor runs one at its next look.
    pub compaction_requested: std::sync::atomic::AtomicBool,
    /// TLS (`--tls-cert/--tls-key/--tls-ca`), reloaded when its files change: outgoing links
    /// use it, and so does the TLS listener.
    pub tls: Option<Arc<crate::transport::tls::ReloadableTls>>,
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
