//! The queue of pub/sub messages waiting for one subscribed connection, bounded as Redis
//! bounds a pub/sub client's output buffer (`client-output-buffer-limit pubsub 32mb 8mb 60`).
//!
//! Contract: [`PubSender::send`] counts the bytes of every queued message and
//! [`PubReceiver::take`] uncounts them once they are handed to the socket writer. A connection
//! whose queue holds more than [`HARD_LIMIT`] bytes, or more than [`SOFT_LIMIT`] for
//! [`SOFT_SECONDS`] without falling below it, is marked overflowed: nothing more is queued for it
//! and [`PubReceiver::overflowed`] wakes its connection, which closes, as Redis closes a
//! subscriber that does not read. Publishers are never slowed by a slow subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};

use super::PubMessage;

/// Queued bytes past which a subscriber is disconnected at once.
pub const HARD_LIMIT: usize = 32 * 1024 * 1024;
/// Queued bytes a subscriber may hold for at most [`SOFT_SECONDS`].
pub const SOFT_LIMIT: usize = 8 * 1024 * 1024;
/// How long a subscriber may stay above [`SOFT_LIMIT`].
pub const SOFT_SECONDS: u64 = 60;

#[derive(Debug, Default)]
struct Gauge {
    queued: AtomicUsize,
    /// When the queue last went above the soft limit (ms since the epoch), 0 while below.
    over_soft_since: AtomicU64,
    overflowed: AtomicBool,
    wake: Notify,
}

/// The publishing side (kept in the channel and pattern registries).
#[derive(Clone, Debug)]
pub struct PubSender {
    tx: mpsc::UnboundedSender<PubMessage>,
    gauge: Arc<Gauge>,
}

/// The connection's side.
#[derive(Debug)]
pub struct PubReceiver {
    rx: mpsc::UnboundedReceiver<PubMessage>,
    gauge: Arc<Gauge>,
}

/// A new queue for one connection.
pub fn pub_queue() -> (PubSender, PubReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gauge = Arc::new(Gauge::default());
    (
        PubSender {
            tx,
            gauge: gauge.clone(),
        },
        PubReceiver { rx, gauge },
    )
}

/// What a message costs in the queue: its bytes plus a fixed overhead, as Redis counts a
/// reply's size.
fn cost(msg: &PubMessage) -> usize {
    msg.channel.len() + msg.payload.len() + msg.pattern.as_ref().map_or(0, |p| p.len()) + 64
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl PubSender {
    /// Queues `msg`. False when the connection is gone or has overflowed (now or before).
    pub fn send(&self, msg: PubMessage) -> bool {
        self.send_with_limits(msg, HARD_LIMIT, SOFT_LIMIT, SOFT_SECONDS * 1000, now_ms())
    }

    fn send_with_limits(
        &self,
        msg: PubMessage,
        hard: usize,
        soft: usize,
        soft_ms: u64,
        now: u64,
    ) -> bool {
        let g = &self.gauge;
        if g.overflowed.load(Ordering::Acquire) {
            return false;
        }
        let size = cost(&msg);
        let queued = g.queued.fetch_add(size, Ordering::AcqRel) + size;
        let over = if queued > hard {
            true
        } else if queued > soft {
            match g.over_soft_since.compare_exchange(
                0,
                now.max(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => false,
                Err(since) => now.saturating_sub(since) >= soft_ms,
            }
        } else {
            false
        };
        if over {
            g.queued.fetch_sub(size, Ordering::AcqRel);
            g.overflowed.store(true, Ordering::Release);
            g.wake.notify_one();
            return false;
        }
        if self.tx.send(msg).is_err() {
            g.queued.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Whether this connection was disconnected for overflowing.
    pub fn has_overflowed(&self) -> bool {
        self.gauge.overflowed.load(Ordering::Acquire)
    }
}

impl PubReceiver {
    /// The next message, waiting for one.
    pub async fn recv(&mut self) -> Option<PubMessage> {
        let msg = self.rx.recv().await?;
        self.taken(&msg);
        Some(msg)
    }

    /// A message already queued, if any.
    pub fn try_recv(&mut self) -> Option<PubMessage> {
        let msg = self.rx.try_recv().ok()?;
        self.taken(&msg);
        Some(msg)
    }

    fn taken(&self, msg: &PubMessage) {
        let g = &self.gauge;
        let size = cost(msg);
        let left = g.queued.fetch_sub(size, Ordering::AcqRel) - size;
        if left <= SOFT_LIMIT {
            g.over_soft_since.store(0, Ordering::Release);
        }
    }

    /// What tells the connection that its queue overflowed.
    pub fn overflow_signal(&self) -> OverflowSignal {
        OverflowSignal(self.gauge.clone())
    }
}

/// Resolves [`OverflowSignal::wait`] once the queue has overflowed (the connection must then
/// close).
#[derive(Debug)]
pub struct OverflowSignal(Arc<Gauge>);

impl OverflowSignal {
    pub async fn wait(&self) {
        loop {
            let notified = self.0.wake.notified();
            if self.0.overflowed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(n: usize) -> PubMessage {
        PubMessage {
            pattern: None,
            channel: Bytes::from_static(b"c"),
            payload: Bytes::from(vec![b'x'; n]),
        }
    }

    #[test]
    fn a_reader_that_keeps_up_is_never_cut_off() {
        let (tx, mut rx) = pub_queue();
        for _ in 0..1000 {
            assert!(tx.send_with_limits(msg(1000), 4000, 2000, 1000, 1));
            assert!(rx.try_recv().is_some());
        }
        assert!(!tx.has_overflowed());
    }

    #[test]
    fn the_hard_limit_cuts_off_at_once() {
        let (tx, _rx) = pub_queue();
        assert!(tx.send_with_limits(msg(1000), 2500, 100_000, 1000, 1));
        assert!(tx.send_with_limits(msg(1000), 2500, 100_000, 1000, 1));
        assert!(!tx.send_with_limits(msg(1000), 2500, 100_000, 1000, 1));
        assert!(tx.has_overflowed());
        assert!(!tx.send_with_limits(msg(1), 2500, 100_000, 1000, 1));
    }

    #[test]
    fn the_soft_limit_cuts_off_after_its_time_unless_the_queue_drains() {
        let (tx, mut rx) = pub_queue();
        assert!(tx.send_with_limits(msg(1000), 100_000, 500, 1000, 10));
        // Above the soft limit for 999 ms: still queued.
        assert!(tx.send_with_limits(msg(1000), 100_000, 500, 1000, 1009));
        // Drained below it: the clock starts again.
        while rx.try_recv().is_some() {}
        assert!(tx.send_with_limits(msg(1000), 100_000, 500, 1000, 1500));
        assert!(tx.send_with_limits(msg(1000), 100_000, 500, 1000, 2400));
        // 1000 ms above it: cut off.
        assert!(!tx.send_with_limits(msg(1000), 100_000, 500, 1000, 2500));
        assert!(tx.has_overflowed());
    }
}
