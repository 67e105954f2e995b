//! The `timeout` setting: a client idle for longer than it is disconnected, as Redis does.
//!
//! Contract: `CONFIG SET timeout N` (seconds; 0, the default, disables) takes effect on every
//! connection within a second. A connection is idle while it sends nothing; its replies and
//! pub/sub messages do not count. Subscribed clients (pub/sub) are never disconnected for being
//! idle, and neither are clients in a blocking command, links between nodes, or a connection
//! waiting for `WAIT`: only the plain command loop checks, once per [`CHECK_INTERVAL`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often an idle connection looks at the clock.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

static TIMEOUT_SECS: AtomicU64 = AtomicU64::new(0);

/// Sets the idle timeout of every connection (0: none).
pub fn set_timeout_secs(seconds: u64) {
    TIMEOUT_SECS.store(seconds, Ordering::Relaxed);
}

/// Whether a connection last heard from at `last_activity` has been idle too long.
pub fn timed_out(last_activity: Instant, subscribed: bool) -> bool {
    let seconds = TIMEOUT_SECS.load(Ordering::Relaxed);
    seconds > 0 && !subscribed && last_activity.elapsed() > Duration::from_secs(seconds)
}
