//! Background tasks of a node: expiry of due keys, collection of ordering-only state, and the
//! memory figure `maxmemory` and INFO use.

use super::{now_ms, Shared, State};
use std::sync::Arc;
use std::time::Duration;

/// Bytes currently allocated by the process (jemalloc's `stats.allocated`).
pub fn allocated_bytes() -> u64 {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64
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
        let used = allocated_bytes();
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
