//! Recovery at start and background compaction of the effect log into a snapshot.
//!
//! Contract:
//! - [`recover`] rebuilds the keyspace from the newest complete snapshot plus every logged
//!   effect after it, in log order. A record that cannot be decoded ends the replay of that
//!   record with a warning (the store has already cut torn tails); it never stops the start.
//! - [`compactor`] writes a snapshot when asked (`BGREWRITEAOF`, `BGSAVE`, `SAVE`) or when the
//!   log has grown past its threshold. Under the lock it only rotates the log and lists the
//!   keys; entries are then copied in small chunks, each under a short lock, from a capture that
//!   keeps every key's state as of the rotation (see `Keyspace::begin_capture`), and encoded
//!   and written outside the lock. Clients are not stalled for the length of the snapshot.
//! - While the log is failed (a full disk, an I/O error), writes are refused with `MISCONF`
//!   and [`repair_once`] is tried every [`REPAIR_INTERVAL`]: a fresh segment and a snapshot of
//!   the state in memory. Once the snapshot is installed the node takes writes again, with no
//!   restart.

use super::{Shared, State};
use crate::crdt::keyspace::{Entry, KeyspaceMeta};
use crate::crdt::{Blob, Effect, Keyspace};
use crate::store::Recovered;
use std::sync::Arc;
use std::time::Duration;

/// Log size after which a compaction starts by itself (and the log is at least twice the
/// snapshot).
pub const AUTO_COMPACT_BYTES: u64 = 64 * 1024 * 1024;

/// Rebuilds `ks` from what the store recovered. Returns the number of effects replayed.
pub fn recover(ks: &mut Keyspace, recovered: Recovered) -> usize {
    for note in &recovered.truncated {
        tracing::warn!(
            ?note,
            "the log had a damaged part; it was cut off and set aside"
        );
    }
    if let Some(header) = &recovered.snapshot_header {
        match postcard::from_bytes::<KeyspaceMeta>(header) {
            Ok(meta) => ks.restore_meta(meta),
            Err(e) => tracing::warn!(error = %e, "snapshot header unreadable; ignoring it"),
        }
        for record in &recovered.snapshot_records {
            match postcard::from_bytes::<(Blob, Entry)>(record) {
                Ok((key, entry)) => ks.restore_entry(key, entry),
                Err(e) => tracing::warn!(error = %e, "snapshot record unreadable; skipped"),
            }
        }
    }
    let mut replayed = 0;
    for record in &recovered.log_records {
        match Effect::decode(record) {
            Ok(effect) => {
                if ks.clock().covers(effect.dot) {
                    continue;
                }
                ks.apply(&effect);
                replayed += 1;
            }
            Err(e) => tracing::warn!(error = %e, "log record unreadable; skipped"),
        }
    }
    ks.outbox.clear();
    replayed
}

/// Runs one compaction. Returns the number of keys written.
pub fn compact_once(shared: &Shared) -> Result<usize, String> {
    snapshot(shared, Start::Rotate)
}

/// After the log failed (a full disk, an I/O error): starts a fresh segment and writes a
/// snapshot of the state in memory on it; once that is installed, writes are taken again.
/// Returns the number of keys written; on failure the store stays failed.
pub fn repair_once(shared: &Shared) -> Result<usize, String> {
    match snapshot(shared, Start::AfterFailure) {
        Ok(keys) => {
            let mut state = shared.state.lock();
            state.db.persistence_error = None;
            tracing::warn!(
                keys,
                "persistence works again: the state is on disk, writes are taken again"
            );
            Ok(keys)
        }
        Err(e) => {
            let state = shared.state.lock();
            if let Some(store) = state.store.as_ref() {
                let _ = store.fail(format!("repairing the log failed: {e}"));
            }
            Err(e)
        }
    }
}

/// How a snapshot's base segment is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Flush, fsync and rotate (a compaction).
    Rotate,
    /// Abandon the failed segment and start a fresh one (a repair).
    AfterFailure,
}

fn snapshot(shared: &Shared, start: Start) -> Result<usize, String> {
    let _one_at_a_time = shared.snapshot_lock.lock();
    let (base, header, keys) = {
        let mut state = shared.state.lock();
        let State { db, store } = &mut *state;
        let Some(store) = store.as_mut() else {
            return Ok(0);
        };
        let base = match start {
            Start::Rotate => store.rotate(),
            Start::AfterFailure => store.reopen_after_failure(),
        }
        .map_err(|e| e.to_string())?;
        let header = postcard::to_allocvec(&db.ks.meta()).map_err(|e| e.to_string())?;
        let keys = db.ks.begin_capture();
        (base, header, keys)
    };
    let writer = {
        let state = shared.state.lock();
        match state.store.as_ref() {
            Some(store) => store.begin_snapshot(base, &header),
            None => return Ok(0),
        }
    };
    let mut writer = match writer {
        Ok(w) => w,
        Err(e) => {
            shared.state.lock().db.ks.end_capture();
            return Err(e.to_string());
        }
    };
    let mut written = 0;
    let mut result = Ok(());
    for chunk in keys.chunks(1024) {
        let entries: Vec<(Blob, Entry)> = {
            let state = shared.state.lock();
            chunk
                .iter()
                .filter_map(|k| state.db.ks.captured_entry(k).map(|e| (k.clone(), e)))
                .collect()
        };
        for pair in &entries {
            let record = match postcard::to_allocvec(pair) {
                Ok(r) => r,
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            };
            if let Err(e) = writer.add(&record) {
                result = Err(e.to_string());
                break;
            }
            written += 1;
        }
        if result.is_err() {
            break;
        }
    }
    shared.state.lock().db.ks.end_capture();
    result?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(written)
}

/// How often a failed log is retried.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(1);

/// Background task: compacts on request or when the log has grown, and retries a failed log
/// every [`REPAIR_INTERVAL`] until it works again.
pub async fn compactor(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut shutdown_rx = shared.shutdown.subscribe();
    let mut last_repair: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown_rx.changed() => return,
        }
        let failed = {
            let state = shared.state.lock();
            state.store.as_ref().is_some_and(|s| s.failed().is_some())
                || (state.store.is_some() && state.db.persistence_error.is_some())
        };
        if failed {
            if last_repair.is_none_or(|t: std::time::Instant| t.elapsed() >= REPAIR_INTERVAL) {
                last_repair = Some(std::time::Instant::now());
                let shared2 = shared.clone();
                match tokio::task::spawn_blocking(move || repair_once(&shared2)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the log is still failing; writes stay refused")
                    }
                    Err(e) => tracing::warn!(error = %e, "repair task failed"),
                }
            }
            continue;
        }
        let due = {
            let state = shared.state.lock();
            let requested = shared
                .compaction_requested
                .swap(false, std::sync::atomic::Ordering::Relaxed);
            let grown = state.store.as_ref().is_some_and(|s| {
                s.log_size() > AUTO_COMPACT_BYTES
                    && s.log_size() > 2 * s.snapshot_size().unwrap_or(0)
            });
            requested || grown
        };
        if !due {
            continue;
        }
        let shared2 = shared.clone();
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || compact_once(&shared2)).await {
            Ok(Ok(keys)) => tracing::info!(
                keys,
                ms = started.elapsed().as_millis() as u64,
                "snapshot written; older log segments removed"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "compaction failed; the log still holds everything")
            }
            Err(e) => tracing::warn!(error = %e, "compaction task failed"),
        }
    }
}
