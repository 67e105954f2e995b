//! State shared between a [`Store`](super::Store), its [`SyncHandle`]s and
//! [`SnapshotWriter`](super::SnapshotWriter)s: the current segment file, the
//! flushed/synced byte counters, the sticky failure flag, fsync latency statistics and the
//! fault injector.
//!
//! Contract:
//! - `flushed` counts bytes handed to the OS since the store was opened; `synced` is a lower
//!   bound of the bytes known to be on stable storage. A sync reads `flushed` *before* picking
//!   the file to sync, and a rotation syncs the old segment before installing the new one, so
//!   `synced` never claims bytes that were not made durable.
//! - The first write or fsync error is recorded once and is permanent for the life of the
//!   process ([`Shared::mark_failed`]): after a failed fsync the kernel may have dropped the
//!   dirty pages, so retrying could silently lose acknowledged data.
//! - Group commit ([`DurableAt`]): batches wait (asynchronously) for one syncer thread, which
//!   fsyncs everything flushed whenever a waiter wants more than is durable, then wakes every
//!   waiter; so one fsync serves every batch that waited meanwhile. Positions a failure
//!   abandoned (`Store::reopen_after_failure`) are never reported durable.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::format::segment_file_name;
use super::StoreError;

/// Upper bounds (inclusive, microseconds) of the fsync latency histogram buckets; a final
/// implicit bucket counts everything slower.
pub const FSYNC_LATENCY_BOUNDS_MICROS: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

const BUCKETS: usize = FSYNC_LATENCY_BOUNDS_MICROS.len() + 1;

/// A point-in-time copy of the fsync latency statistics of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsyncStats {
    /// Successful fsyncs.
    pub count: u64,
    /// Failed fsyncs (at most a handful: the first failure fails the store).
    pub failures: u64,
    /// Sum of the latencies of successful fsyncs, in microseconds.
    pub total_micros: u64,
    /// Latency of the most recent successful fsync, in microseconds.
    pub last_micros: u64,
    /// Slowest successful fsync, in microseconds.
    pub max_micros: u64,
    /// `buckets[i]` counts fsyncs with latency `<= FSYNC_LATENCY_BOUNDS_MICROS[i]` and greater
    /// than the previous bound (not cumulative); the last entry counts the rest.
    pub buckets: [u64; BUCKETS],
}

impl FsyncStats {
    /// Mean latency of successful fsyncs, if there were any.
    pub fn mean_micros(&self) -> Option<u64> {
        self.total_micros.checked_div(self.count)
    }
}

#[derive(Debug, Default)]
pub(crate) struct LatencyRecorder {
    count: AtomicU64,
    failures: AtomicU64,
    total: AtomicU64,
    last: AtomicU64,
    max: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl LatencyRecorder {
    fn record(&self, micros: u64) {
        let idx = FSYNC_LATENCY_BOUNDS_MICROS
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(BUCKETS - 1);
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(micros, Ordering::Relaxed);
        self.last.store(micros, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> FsyncStats {
        let mut buckets = [0u64; BUCKETS];
        for (dst, src) in buckets.iter_mut().zip(self.buckets.iter()) {
            *dst = src.load(Ordering::Relaxed);
        }
        FsyncStats {
            count: self.count.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            total_micros: self.total.load(Ordering::Relaxed),
            last_micros: self.last.load(Ordering::Relaxed),
            max_micros: self.max.load(Ordering::Relaxed),
            buckets,
        }
    }
}

/// Makes the store's writes and fsyncs fail on demand, to exercise failure handling in tests
/// and fault drills. Obtained from [`Store::fault_injector`](super::Store::fault_injector);
/// clones share the same switches. When no switch is on it costs one relaxed atomic load per
/// write or fsync.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    inner: Arc<FaultFlags>,
}

#[derive(Debug, Default)]
struct FaultFlags {
    writes: AtomicBool,
    syncs: AtomicBool,
}

impl FaultInjector {
    /// While on, every write to a log segment or snapshot fails with an I/O error.
    pub fn fail_writes(&self, on: bool) {
        self.inner.writes.store(on, Ordering::Relaxed);
    }

    /// While on, every fsync of a log segment or snapshot fails with an I/O error.
    pub fn fail_syncs(&self, on: bool) {
        self.inner.syncs.store(on, Ordering::Relaxed);
    }

    pub(crate) fn check_write(&self) -> io::Result<()> {
        if self.inner.writes.load(Ordering::Relaxed) {
            Err(io::Error::other("injected write failure"))
        } else {
            Ok(())
        }
    }

    pub(crate) fn check_sync(&self) -> io::Result<()> {
        if self.inner.syncs.load(Ordering::Relaxed) {
            Err(io::Error::other("injected fsync failure"))
        } else {
            Ok(())
        }
    }
}

/// Sizes of the live files, maintained by the store and by snapshot installation.
#[derive(Debug, Default)]
pub(crate) struct FileSizes {
    /// Live log segments: sequence number to length in bytes (header included).
    pub(crate) segments: std::collections::BTreeMap<u64, u64>,
    /// Installed snapshot: (base sequence, length in bytes).
    pub(crate) snapshot: Option<(u64, u64)>,
}

/// The segment currently appended to.
pub(crate) struct CurrentSegment {
    pub(crate) seq: u64,
    pub(crate) file: Arc<File>,
}

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) current: Mutex<CurrentSegment>,
    pub(crate) flushed: AtomicU64,
    pub(crate) synced: AtomicU64,
    failure: Mutex<Option<String>>,
    pub(crate) latency: LatencyRecorder,
    pub(crate) faults: FaultInjector,
    pub(crate) files: Mutex<FileSizes>,
    /// The group-commit syncer ([`DurableAt`]).
    group: Arc<GroupSync>,
    /// Ranges of positions `(after, up_to]` a failure abandoned before they were durable.
    pub(crate) abandoned: Mutex<Vec<(u64, u64)>>,
}

impl Shared {
    pub(crate) fn new(dir: PathBuf, current: CurrentSegment, files: FileSizes) -> Self {
        Self {
            dir,
            current: Mutex::new(current),
            flushed: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            failure: Mutex::new(None),
            latency: LatencyRecorder::default(),
            faults: FaultInjector::default(),
            files: Mutex::new(files),
            group: Arc::new(GroupSync::default()),
            abandoned: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Forgets the failure (the store starts over on a fresh segment).
    pub(crate) fn clear_failure(&self) {
        *self.failure.lock() = None;
    }

    pub(crate) fn ensure_ok(&self) -> Result<(), StoreError> {
        match self.failure() {
            Some(msg) => Err(StoreError::Failed(msg.to_owned())),
            None => Ok(()),
        }
    }

    /// Records `msg` as the store's failure (the first one wins) and returns the error to
    /// report.
    pub(crate) fn mark_failed(&self, msg: String) -> StoreError {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            tracing::error!(
                dir = %self.dir.display(),
                error = %msg,
                "persistence failed; the store refuses writes until a retry succeeds"
            );
            *failure = Some(msg);
        }
        StoreError::Failed(failure.clone().unwrap_or_default())
    }

    /// fdatasyncs `file` (segment `seq`), recording latency; a failure fails the store.
    pub(crate) fn fsync_segment(&self, file: &File, seq: u64) -> Result<(), StoreError> {
        let start = Instant::now();
        let res = self.faults.check_sync().and_then(|()| file.sync_data());
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        match res {
            Ok(()) => {
                self.latency.record(micros);
                Ok(())
            }
            Err(e) => {
                self.latency.record_failure();
                Err(self.mark_failed(format!(
                    "fdatasync of {} failed: {e}",
                    self.dir.join(segment_file_name(seq)).display()
                )))
            }
        }
    }

    /// Records that everything up to `position` is durable, and tells the batches waiting for
    /// it (every path that makes bytes durable goes through here: a flush, a rotation, the
    /// periodic sync, the group syncer, a repair).
    pub(crate) fn advance_synced(&self, position: u64) {
        self.synced.fetch_max(position, Ordering::AcqRel);
        self.group
            .synced
            .send_replace(self.synced.load(Ordering::Acquire));
    }

    /// Makes every byte flushed so far durable. Returns whether an fsync was issued.
    pub(crate) fn sync_pending(&self) -> Result<bool, StoreError> {
        self.ensure_ok()?;
        let target = self.flushed.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(false);
        }
        let (seq, file) = {
            let cur = self.current.lock();
            (cur.seq, Arc::clone(&cur.file))
        };
        self.fsync_segment(&file, seq)?;
        self.advance_synced(target);
        Ok(true)
    }
}

/// A cloneable, `Send` handle that fsyncs the store's current segment without holding the
/// [`Store`](super::Store). Used for `appendfsync everysec`: a background task calls
/// [`SyncHandle::sync`] once a second (or use [`SyncHandle::spawn_periodic`]).
///
/// `sync` blocks on disk I/O; from async code call it via `spawn_blocking`. A failed fsync
/// fails the whole store, exactly like a failure inside [`Store::flush`](super::Store::flush).
#[derive(Clone)]
pub struct SyncHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl SyncHandle {
    /// fdatasyncs the current segment if anything was flushed since the last sync. Returns
    /// `Ok(true)` if an fsync was issued, `Ok(false)` if there was nothing to do.
    pub fn sync(&self) -> Result<bool, StoreError> {
        self.shared.sync_pending()
    }

    /// Whether log position `position` is durable; an error when a failure abandoned it.
    fn is_durable(&self, position: u64) -> Result<bool, StoreError> {
        let abandoned = self
            .shared
            .abandoned
            .lock()
            .iter()
            .any(|(after, up_to)| position > *after && position <= *up_to);
        if abandoned {
            return Err(StoreError::Failed(format!(
                "the log failed before position {position} was durable"
            )));
        }
        if self.shared.synced.load(Ordering::Acquire) >= position {
            return Ok(true);
        }
        self.shared.ensure_ok().map(|()| false)
    }

    /// Latency statistics of every fsync of the log (from this handle, the store, rotations).
    pub fn fsync_stats(&self) -> FsyncStats {
        self.shared.latency.snapshot()
    }

    /// The failure message, while the store is failed.
    pub fn failed(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Bytes handed to the OS but not yet known to be durable.
    pub fn pending_bytes(&self) -> u64 {
        let flushed = self.shared.flushed.load(Ordering::Acquire);
        flushed.saturating_sub(self.shared.synced.load(Ordering::Acquire))
    }

    /// Starts a thread that calls [`SyncHandle::sync`] every `interval` until the returned
    /// guard is dropped or the store fails.
    pub fn spawn_periodic(&self, interval: Duration) -> io::Result<PeriodicSync> {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = self.clone();
        let thread = std::thread::Builder::new()
            .name("aof-fsync".to_owned())
            .spawn(move || {
                // A disconnected channel (guard dropped) also ends the loop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                    if handle.sync().is_err() {
                        // The failure is recorded on the store and logged once there.
                        break;
                    }
                }
            })?;
        Ok(PeriodicSync {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A log position a batch's replies wait for before they are sent (`appendfsync always`):
/// see [`Store::flush_deferred`](super::Store::flush_deferred).
#[derive(Debug)]
pub struct DurableAt {
    pub(crate) handle: SyncHandle,
    pub(crate) position: u64,
}

impl DurableAt {
    /// Whether the position is already durable (no need to wait).
    pub fn is_durable(&self) -> bool {
        matches!(self.handle.is_durable(self.position), Ok(true))
    }

    /// Waits until the position is durable, asking the syncer thread for an fsync when it is
    /// not; fails if the store failed before it was.
    pub async fn wait(self) -> Result<(), StoreError> {
        let shared = &self.handle.shared;
        let mut synced = shared.group.synced.subscribe();
        loop {
            if self.handle.is_durable(self.position)? {
                return Ok(());
            }
            GroupSync::request(shared, self.position);
            if synced.changed().await.is_err() {
                return Err(StoreError::Failed("the log was closed".to_owned()));
            }
        }
    }
}

/// The group-commit syncer: one thread, started on the first request, that fsyncs whenever a
/// waiter wants a position that is not durable, then tells every waiter (by sending the
/// durable position, also after a failure, so that they look again).
#[derive(Default)]
pub(crate) struct GroupSync {
    state: Mutex<GroupState>,
    wake: parking_lot::Condvar,
    synced: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct GroupState {
    /// The highest position a waiter asked for.
    wanted: u64,
    running: bool,
}

impl GroupSync {
    /// Asks for `position` to be made durable (starting the syncer thread if needed).
    fn request(shared: &Arc<Shared>, position: u64) {
        let group = &shared.group;
        let mut state = group.state.lock();
        state.wanted = state.wanted.max(position);
        if !state.running {
            let weak = Arc::downgrade(shared);
            let owned = Arc::clone(group);
            let started = std::thread::Builder::new()
                .name("aof-group-fsync".to_owned())
                .spawn(move || owned.run(weak));
            match started {
                Ok(_) => state.running = true,
                Err(e) => {
                    drop(state);
                    shared.mark_failed(format!("cannot start the fsync thread: {e}"));
                    group
                        .synced
                        .send_replace(shared.synced.load(Ordering::Acquire));
                    return;
                }
            }
        }
        group.wake.notify_one();
    }

    /// The syncer thread: ends once the store and every handle are gone.
    fn run(self: Arc<Self>, shared: std::sync::Weak<Shared>) {
        loop {
            {
                let mut state = self.state.lock();
                loop {
                    let Some(s) = shared.upgrade() else {
                        state.running = false;
                        return;
                    };
                    if state.wanted > s.synced.load(Ordering::Acquire) {
                        break;
                    }
                    drop(s);
                    self.wake.wait_for(&mut state, Duration::from_secs(1));
                }
            }
            let Some(s) = shared.upgrade() else {
                self.state.lock().running = false;
                return;
            };
            if s.sync_pending().is_err() {
                // The failure is recorded on the store and every waiter sees it when it looks
                // again; the requests so far are answered by it.
                self.state.lock().wanted = 0;
            }
            // Wake the waiters even when this pass made nothing durable (another path may have,
            // or the log failed).
            self.synced.send_replace(s.synced.load(Ordering::Acquire));
        }
    }
}

/// Guard of the thread started by [`SyncHandle::spawn_periodic`]; dropping it stops and joins
/// the thread.
#[derive(Debug)]
pub struct PeriodicSync {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for PeriodicSync {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the periodic fsync thread panicked");
            }
        }
    }
}
