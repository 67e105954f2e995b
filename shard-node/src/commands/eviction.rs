//! Eviction: making room under `maxmemory` by the `maxmemory-policy`, before a command that
//! may grow the dataset runs.
//!
//! Contract:
//! - Memory is counted as Redis counts it against `maxmemory`, without the buffers that feed
//!   replicas and peers: used memory minus the replication backlog ([`counted_memory`]).
//!   While the log is compacted, the snapshot being written keeps the previous state of every
//!   key changed meanwhile alive (as Redis's fork does, uncounted): the server keeps the used
//!   memory it sampled before the compaction began until it ends, so evicting then does not
//!   empty the dataset for memory it would not free.
//! - With `noeviction` (the default), or while counted memory is within `maxmemory`, nothing
//!   happens; `admission` then refuses growing commands with `OOM` over the limit.
//! - Otherwise keys are evicted until the estimated bytes freed cover the excess (at most
//!   [`MAX_EVICTIONS_PER_COMMAND`] per command), chosen like Redis approximates its policies:
//!   `volatile-ttl` takes the key whose deadline is nearest; the other `volatile-*` policies a
//!   key with a deadline, the `allkeys-*` policies any key, in the keyspace's hash order. No
//!   access times or frequencies are kept, so the LRU and LFU policies choose like the random
//!   ones.
//! - An eviction is this region's decision: it is an [`OpKind::Evict`] that the region's
//!   replicas apply too (a failover keeps it) and other regions ignore, so the key lives on
//!   there (docs/semantics.md, Eviction). It is counted in INFO `evicted_keys`.

use super::*;
use crate::crdt::Blob;

/// Most keys evicted before one command (used memory is sampled, so the excess a command
/// finds may be what many commands before it wrote).
pub const MAX_EVICTIONS_PER_COMMAND: usize = 4096;

/// Keys picked per scan of the keyspace.
const BATCH: usize = 64;

/// Memory counted against `maxmemory`: used memory without the replication backlog.
pub fn counted_memory(db: &Db) -> u64 {
    db.used_memory
        .saturating_sub(db.repl.backlog.bytes() as u64)
}

/// Evicts keys by the policy until used memory is estimated to be within `maxmemory`.
pub fn make_room(db: &mut Db, now_ms: u64) {
    let limit = db.settings.maxmemory;
    if limit == 0 || counted_memory(db) <= limit || !db.repl.is_primary() {
        return;
    }
    let policy = db
        .settings
        .params
        .get("maxmemory-policy")
        .cloned()
        .unwrap_or_else(|| "noeviction".to_string());
    if policy == "noeviction" {
        return;
    }
    let volatile = policy.starts_with("volatile-");
    let by_ttl = policy == "volatile-ttl";
    let mut evicted = 0;
    while evicted < MAX_EVICTIONS_PER_COMMAND && counted_memory(db) > limit {
        let victims: Vec<Blob> = if volatile {
            db.ks.volatile_key(by_ttl).into_iter().collect()
        } else {
            db.ks
                .entries()
                .filter(|(k, _)| db.ks.get(k, now_ms).is_some())
                .map(|(k, _)| k.clone())
                .take(BATCH)
                .collect()
        };
        if victims.is_empty() {
            return;
        }
        for key in victims {
            if counted_memory(db) <= limit {
                return;
            }
            let freed = db
                .ks
                .get(&key, now_ms)
                .map_or(64, |slot| super::object::usage(&key, &slot.value))
                as u64;
            let key = Bytes::copy_from_slice(&key);
            let region = db.participant.clone();
            db.ks
                .commit(now_ms, vec![op(&key, OpKind::Evict { region })]);
            db.stats.evicted_keys += 1;
            evicted += 1;
            // The allocator's figure is sampled; count the estimate until the next sample.
            db.used_memory = db.used_memory.saturating_sub(freed.max(1));
        }
    }
}
