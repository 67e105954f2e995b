//! Limits on one client connection, as Redis sets them: the idle `timeout` and the
//! `client-query-buffer-limit`.
//!
//! Contract:
//! - A connection whose unprocessed input (the part of a command read so far, and anything
//!   after it) passes `client-query-buffer-limit` (1gb by default, as in Redis; at least 1mb)
//!   is closed, with a warning in the log.
//! - `CONFIG SET timeout N` (seconds; 0, the default, disables) takes effect on every
//!   connection within a second. A connection is idle while it sends nothing; its replies and
//!   pub/sub messages do not count. Subscribed clients (pub/sub) are never disconnected for
//!   being idle, and neither are clients in a blocking command, links between nodes, or a
//!   connection waiting for `WAIT`: only the plain command loop checks, once per
//!   [`CHECK_INTERVAL`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often an idle connection looks at the clock.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

static TIMEOUT_SECS: AtomicU64 = AtomicU64::new(0);

/// The default `client-query-buffer-limit`.
pub const DEFAULT_QUERY_BUFFER_LIMIT: u64 = 1 << 30;

/// The smallest `client-query-buffer-limit` (as in Redis).
pub const MIN_QUERY_BUFFER_LIMIT: u64 = 1 << 20;

static QUERY_BUFFER_LIMIT: AtomicU64 = AtomicU64::new(DEFAULT_QUERY_BUFFER_LIMIT);

/// Sets every connection's query-buffer limit.
pub fn set_query_buffer_limit(bytes: u64) {
    QUERY_BUFFER_LIMIT.store(bytes, Ordering::Relaxed);
}

/// Whether `pending` unprocessed input bytes pass the query-buffer limit.
pub fn query_buffer_exceeded(pending: usize) -> bool {
    pending as u64 > QUERY_BUFFER_LIMIT.load(Ordering::Relaxed)
}

/// Sets the idle timeout of every connection (0: none).
pub fn set_timeout_secs(seconds: u64) {
    TIMEOUT_SECS.store(seconds, Ordering::Relaxed);
}

/// Whether a connection last heard from at `last_activity` has been idle too long.
pub fn timed_out(last_activity: Instant, subscribed: bool) -> bool {
    let seconds = TIMEOUT_SECS.load(Ordering::Relaxed);
    seconds > 0 && !subscribed && last_activity.elapsed() > Duration::from_secs(seconds)
}
