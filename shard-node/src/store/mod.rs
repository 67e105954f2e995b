//! Durable storage for shard-node: an append-only log of opaque records plus snapshots for
//! compaction, with crash recovery.
//!
//! The store never interprets records: callers serialize CRDT effects and keyspace entries
//! into byte slices and get the same byte slices back, in order, after a restart.
//!
//! # Files in the data directory
//!
//! - `effects.<seq:020>.log`: log segments, appended in order of `seq`.
//! - `snapshot.<seq:020>.snap`: a snapshot with base `seq` holds the state as of the moment
//!   segment `seq` was opened. Recovery is therefore the newest complete snapshot (if any)
//!   followed by every segment with a sequence number at or above its base, in order.
//! - `*.corrupt`: damaged files set aside by recovery; never read or deleted by the store.
//!
//! The byte format is described in [`format`]; recovery rules in [`recovery`]; snapshot
//! installation in [`snapshot`].
//!
//! # Writing
//!
//! [`Store::append`] only frames the record into an in-memory buffer, so it is cheap enough
//! to call under the keyspace lock. [`Store::flush`] hands the buffer to the OS and, with
//! [`FsyncPolicy::Always`], fdatasyncs before returning; the server calls it once per batch of
//! commands before sending replies. With [`FsyncPolicy::EverySec`] a background task calls
//! [`SyncHandle::sync`] once a second (see [`SyncHandle::spawn_periodic`]); with
//! [`FsyncPolicy::No`] the OS decides (segments are still fsynced when rotated and on
//! [`Store::close`]). [`Store::flush_deferred`] is the group-commit form of `flush`: it writes
//! under the lock and returns the position to make durable, which the caller waits for outside
//! the lock ([`DurableAt::wait`]), so one fsync serves every batch that waits meanwhile.
//!
//! # Failure
//!
//! The first failed write or fsync — from the store or from any [`SyncHandle`] — marks the
//! store failed: [`Store::failed`] returns the message and every later [`Store::append`],
//! [`Store::flush`] and [`Store::rotate`] returns [`StoreError::Failed`], so the server
//! refuses writes with a clear error rather than acknowledging data it cannot persist.
//! [`Store::reopen_after_failure`] starts over on a fresh segment (what the failed one lost is
//! abandoned); the caller then writes a snapshot of its state on that base, and the store is
//! whole again once it is installed. Restarting also recovers everything that reached the
//! file. Snapshot failures do not fail the store (the log still has everything).
//!
//! # Compaction
//!
//! 1. Under the keyspace lock: `let base = store.rotate()?;` and take a consistent copy of the
//!    state (it is exactly the state as of the opening of segment `base`).
//! 2. Anywhere, e.g. on another thread: `let mut w = store.begin_snapshot(base, header)?;`,
//!    [`SnapshotWriter::add`] every record, then [`SnapshotWriter::finish`]. Meanwhile the
//!    store keeps appending to segment `base` and later ones.
//! 3. `finish` installs the snapshot durably and only then deletes segments `< base` and
//!    older snapshots.
//!
//! [`Store::info`] reports sizes (the INFO `aof_*` fields and the input for deciding when to
//! compact) and fsync latency statistics. At most one process may use a data directory at a
//! time.

pub mod format;
mod log;
pub mod recovery;
pub mod snapshot;
mod sync;

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use format::{segment_file_name, snapshot_file_name, MAX_RECORD_LEN};
pub use snapshot::SnapshotWriter;
pub use sync::{
    DurableAt, FaultInjector, FsyncStats, PeriodicSync, SyncHandle, FSYNC_LATENCY_BOUNDS_MICROS,
};

use format::{encode_frame, FILE_HEADER_LEN, FIRST_SEQ};
use sync::{CurrentSegment, FileSizes, Shared};

/// Buffers larger than this are released after a flush instead of being kept for reuse.
const MAX_RETAINED_BUFFER: usize = 4 << 20;

/// When the log is fsynced (`appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fdatasync in every [`Store::flush`], before replies are sent.
    Always,
    /// fdatasync about once a second from a background task via [`SyncHandle`].
    #[default]
    EverySec,
    /// Leave it to the OS.
    No,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        })
    }
}

/// Error parsing an [`FsyncPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid appendfsync policy {0:?}: expected always, everysec or no")]
pub struct ParseFsyncPolicyError(pub String);

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    /// Accepts `always`, `everysec` and `no`, in any letter case (like Redis).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("always") {
            Ok(FsyncPolicy::Always)
        } else if s.eq_ignore_ascii_case("everysec") {
            Ok(FsyncPolicy::EverySec)
        } else if s.eq_ignore_ascii_case("no") {
            Ok(FsyncPolicy::No)
        } else {
            Err(ParseFsyncPolicyError(s.to_owned()))
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed (opening, recovery, creating a segment, writing a snapshot).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A write or fsync of the log failed earlier; the store refuses all writes.
    #[error("persistence failed, writes are refused: {0}")]
    Failed(String),
    /// A record larger than [`MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    /// [`Store::begin_snapshot`] with a base that cannot be used.
    #[error("cannot snapshot at base {base}: {reason}")]
    InvalidSnapshotBase { base: u64, reason: String },
}

pub(crate) fn io_context(context: String) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io { context, source }
}

/// Why recovery dropped or set aside data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TruncationReason {
    /// The file ends in the middle of a record (the typical torn write).
    ShortRecord,
    /// A length prefix larger than [`MAX_RECORD_LEN`].
    BadLength { len: u32 },
    /// A record whose checksum does not match.
    BadCrc,
    /// The file header is unusable; the whole file was set aside.
    BadHeader(String),
    /// The snapshot is torn or garbled; it was set aside and an older one used.
    TornSnapshot(String),
    /// Segments in this range of sequence numbers are missing.
    MissingSegments { first: u64, last: u64 },
}

impl fmt::Display for TruncationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TruncationReason::ShortRecord => f.write_str("incomplete record"),
            TruncationReason::BadLength { len } => write!(f, "impossible record length {len}"),
            TruncationReason::BadCrc => f.write_str("record checksum mismatch"),
            TruncationReason::BadHeader(r) => write!(f, "bad file header: {r}"),
            TruncationReason::TornSnapshot(r) => write!(f, "incomplete snapshot: {r}"),
            TruncationReason::MissingSegments { first, last } => {
                write!(f, "log segments {first}..={last} are missing")
            }
        }
    }
}

/// One place where recovery dropped or set aside data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncationNote {
    /// The file concerned (its name before any rename).
    pub file: PathBuf,
    /// Offset where the dropped bytes start (0 when a whole file was set aside).
    pub offset: u64,
    /// Number of bytes dropped.
    pub bytes_dropped: u64,
    pub reason: TruncationReason,
    /// Where the file or the dropped bytes were moved, if they were kept.
    pub moved_to: Option<PathBuf>,
}

/// What [`Store::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Base sequence of the snapshot used, if any.
    pub snapshot_base: Option<u64>,
    /// The header passed to [`Store::begin_snapshot`] for that snapshot.
    pub snapshot_header: Option<Vec<u8>>,
    /// The snapshot's records, in the order they were added.
    pub snapshot_records: Vec<Vec<u8>>,
    /// Every log record after the snapshot, in the order they were appended.
    pub log_records: Vec<Vec<u8>>,
    /// Everything that was dropped or set aside. Empty after a clean shutdown.
    pub truncated: Vec<TruncationNote>,
}

/// Sizes and counters for INFO and for deciding when to compact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    pub policy: FsyncPolicy,
    /// Sequence number of the segment being appended to.
    pub current_seq: u64,
    /// Length of the current segment, header included (flushed bytes only).
    pub current_segment_bytes: u64,
    /// Live log segments (at or after the installed snapshot's base).
    pub segments: usize,
    /// Total length of the live log segments.
    pub log_bytes: u64,
    /// Base of the installed snapshot.
    pub snapshot_base: Option<u64>,
    /// Length of the installed snapshot.
    pub snapshot_bytes: Option<u64>,
    /// Record bytes flushed to the OS since the store was opened.
    pub bytes_written: u64,
    /// Appended bytes not yet flushed.
    pub buffered_bytes: u64,
    /// Flushed bytes not yet known to be durable.
    pub pending_fsync_bytes: u64,
    /// The failure message, once the store has failed.
    pub failed: Option<String>,
    pub fsync: FsyncStats,
}

/// The durable log; see the [module docs](self).
pub struct Store {
    shared: Arc<Shared>,
    policy: FsyncPolicy,
    buf: Vec<u8>,
    seq: u64,
    file: Arc<File>,
    segment_len: u64,
    bytes_written: u64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .field("policy", &self.policy)
            .field("seq", &self.seq)
            .field("segment_len", &self.segment_len)
            .field("buffered", &self.buf.len())
            .field("failed", &self.shared.failure())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the data directory `dir`, recovers its contents and gets
    /// ready to append. Damaged data is truncated or set aside as described in [`recovery`]
    /// and reported in [`Recovered::truncated`]; only I/O errors are returned as errors.
    pub fn open(dir: &Path, policy: FsyncPolicy) -> Result<(Store, Recovered), StoreError> {
        std::fs::create_dir_all(dir).map_err(io_context(format!("creating {}", dir.display())))?;
        let outcome = recovery::recover(dir)?;
        let (seq, file, segment_len) = match outcome.last_segment {
            Some((seq, len)) => {
                let path = dir.join(segment_file_name(seq));
                (seq, log::open_for_append(&path)?, len)
            }
            None => {
                let seq = outcome.snapshot.map_or(FIRST_SEQ, |(base, _)| base);
                (seq, log::create_segment(dir, seq)?, FILE_HEADER_LEN)
            }
        };
        let file = Arc::new(file);
        let files = FileSizes {
            segments: outcome.segments,
            snapshot: outcome.snapshot,
        };
        let shared = Arc::new(Shared::new(
            dir.to_path_buf(),
            CurrentSegment {
                seq,
                file: Arc::clone(&file),
            },
            files,
        ));
        let recovered = outcome.recovered;
        tracing::info!(
            dir = %dir.display(),
            snapshot_base = ?recovered.snapshot_base,
            snapshot_records = recovered.snapshot_records.len(),
            log_records = recovered.log_records.len(),
            truncations = recovered.truncated.len(),
            current_seq = seq,
            %policy,
            "store opened"
        );
        let store = Store {
            shared,
            policy,
            buf: Vec::new(),
            seq,
            file,
            segment_len,
            bytes_written: 0,
        };
        Ok((store, recovered))
    }

    /// Frames `record` into the in-memory buffer. Nothing reaches the OS until
    /// [`Store::flush`].
    pub fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        self.shared.ensure_ok()?;
        if record.len() > MAX_RECORD_LEN {
            return Err(StoreError::RecordTooLarge {
                len: record.len(),
                max: MAX_RECORD_LEN,
            });
        }
        encode_frame(&mut self.buf, record);
        Ok(())
    }

    /// Writes the buffered records to the OS; with [`FsyncPolicy::Always`] also fdatasyncs
    /// before returning. A failure fails the store.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.write_buffer()?;
        if self.policy == FsyncPolicy::Always {
            self.shared.sync_pending()?;
        }
        Ok(())
    }

    /// Writes the buffered records to the OS like [`Store::flush`], but leaves the fsync to
    /// the caller: with [`FsyncPolicy::Always`], returns the position everything written so far
    /// reaches while it is not yet durable, for the caller to wait on ([`DurableAt::wait`])
    /// outside its locks, so that one fsync serves many batches (group commit). A write
    /// failure fails the store.
    pub fn flush_deferred(&mut self) -> Result<Option<DurableAt>, StoreError> {
        self.write_buffer()?;
        if self.policy != FsyncPolicy::Always {
            return Ok(None);
        }
        let position = self.shared.flushed.load(Ordering::Acquire);
        if self.shared.synced.load(Ordering::Acquire) >= position {
            return Ok(None);
        }
        Ok(Some(DurableAt {
            handle: self.sync_handle(),
            position,
        }))
    }

    /// Hands the buffered records to the OS. A failure fails the store.
    fn write_buffer(&mut self) -> Result<(), StoreError> {
        self.shared.ensure_ok()?;
        if !self.buf.is_empty() {
            let res = self
                .shared
                .faults
                .check_write()
                .and_then(|()| (&*self.file).write_all(&self.buf));
            if let Err(e) = res {
                self.buf.clear();
                return Err(self.shared.mark_failed(format!(
                    "write to {} failed: {e}",
                    self.shared.dir.join(segment_file_name(self.seq)).display()
                )));
            }
            let n = self.buf.len() as u64;
            self.segment_len += n;
            self.bytes_written += n;
            self.shared.flushed.fetch_add(n, Ordering::AcqRel);
            self.buf.clear();
            if self.buf.capacity() > MAX_RETAINED_BUFFER {
                self.buf = Vec::new();
            }
        }
        Ok(())
    }

    /// A handle for fsyncing from another thread; see [`SyncHandle`].
    pub fn sync_handle(&self) -> SyncHandle {
        SyncHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The failure message, while the store is failed.
    pub fn failed(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Marks the store failed with `msg` (a snapshot meant to repair it failed).
    pub fn fail(&self, msg: String) -> StoreError {
        self.shared.mark_failed(msg)
    }

    /// After a failure: drops what was buffered, starts segment `seq + 1` and clears the
    /// failure; returns the new sequence number. Records written before may be missing from
    /// the failed segment, so the caller must write a snapshot of its whole state with the
    /// returned base before anything relies on the log again.
    pub fn reopen_after_failure(&mut self) -> Result<u64, StoreError> {
        self.buf.clear();
        let next = self.start_next_segment()?;
        // Whatever the failed segment did not make durable is abandoned; batches waiting for
        // it are told so.
        let flushed = self.shared.flushed.load(Ordering::Acquire);
        let synced = self.shared.synced.load(Ordering::Acquire);
        if flushed > synced {
            self.shared.abandoned.lock().push((synced, flushed));
        }
        self.shared.advance_synced(flushed);
        self.shared.clear_failure();
        tracing::warn!(
            seq = next,
            "the log starts over on a fresh segment after a failure"
        );
        Ok(next)
    }

    /// Flushes and fsyncs the current segment, then starts segment `seq + 1` and returns its
    /// sequence number. The new segment's base is a consistent point for a snapshot.
    pub fn rotate(&mut self) -> Result<u64, StoreError> {
        self.flush()?;
        let target = self.shared.flushed.load(Ordering::Acquire);
        self.shared.fsync_segment(&self.file, self.seq)?;
        self.shared.advance_synced(target);
        let next = self.start_next_segment()?;
        tracing::debug!(seq = next, "started new log segment");
        Ok(next)
    }

    /// Creates segment `seq + 1` and appends to it from now on; returns its sequence number.
    fn start_next_segment(&mut self) -> Result<u64, StoreError> {
        let next = self.seq + 1;
        let file = Arc::new(log::create_segment(&self.shared.dir, next)?);
        self.shared
            .files
            .lock()
            .segments
            .insert(self.seq, self.segment_len);
        {
            let mut cur = self.shared.current.lock();
            cur.seq = next;
            cur.file = Arc::clone(&file);
        }
        self.file = file;
        self.seq = next;
        self.segment_len = FILE_HEADER_LEN;
        Ok(next)
    }

    /// Starts a snapshot with base `base_seq` (at most the current sequence number, and not
    /// older than the installed snapshot). `header` is returned as
    /// [`Recovered::snapshot_header`]. See [`SnapshotWriter`].
    ///
    /// The records added must be exactly the state as of the moment segment `base_seq` was
    /// opened — normally `base_seq` is the value [`Store::rotate`] returned when the state
    /// was captured. Recovery replays every record of segment `base_seq` and later on top of
    /// the snapshot, so a later capture would apply some records twice.
    pub fn begin_snapshot(
        &self,
        base_seq: u64,
        header: &[u8],
    ) -> Result<SnapshotWriter, StoreError> {
        let invalid = |reason: String| StoreError::InvalidSnapshotBase {
            base: base_seq,
            reason,
        };
        if base_seq < FIRST_SEQ {
            return Err(invalid(format!("sequence numbers start at {FIRST_SEQ}")));
        }
        if base_seq > self.seq {
            return Err(invalid(format!("the current log segment is {}", self.seq)));
        }
        if let Some((installed, _)) = self.shared.files.lock().snapshot {
            if base_seq < installed {
                return Err(invalid(format!(
                    "a snapshot with base {installed} is already installed"
                )));
            }
        }
        SnapshotWriter::begin(Arc::clone(&self.shared), base_seq, header)
    }

    /// Changes the fsync policy (`CONFIG SET appendfsync`).
    pub fn set_policy(&mut self, policy: FsyncPolicy) {
        self.policy = policy;
    }

    /// The fsync policy in force.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Sequence number of the segment being appended to.
    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    /// Record bytes flushed to the OS since the store was opened.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Total length of the live log segments (the INFO `aof_current_size`).
    pub fn log_size(&self) -> u64 {
        self.shared.files.lock().segments.values().sum::<u64>() + self.segment_len
    }

    /// Length of the installed snapshot (the INFO `aof_base_size`).
    pub fn snapshot_size(&self) -> Option<u64> {
        self.shared.files.lock().snapshot.map(|(_, len)| len)
    }

    /// fsync latency statistics of the log.
    pub fn fsync_stats(&self) -> FsyncStats {
        self.shared.latency.snapshot()
    }

    /// Switches for making writes and fsyncs fail, for tests and fault drills.
    pub fn fault_injector(&self) -> FaultInjector {
        self.shared.faults.clone()
    }

    /// Sizes, counters and state for INFO.
    pub fn info(&self) -> StoreInfo {
        let (segments, closed_bytes, snapshot) = {
            let files = self.shared.files.lock();
            (
                files.segments.len(),
                files.segments.values().sum::<u64>(),
                files.snapshot,
            )
        };
        let flushed = self.shared.flushed.load(Ordering::Acquire);
        let synced = self.shared.synced.load(Ordering::Acquire);
        StoreInfo {
            policy: self.policy,
            current_seq: self.seq,
            current_segment_bytes: self.segment_len,
            segments: segments + 1,
            log_bytes: closed_bytes + self.segment_len,
            snapshot_base: snapshot.map(|(base, _)| base),
            snapshot_bytes: snapshot.map(|(_, len)| len),
            bytes_written: self.bytes_written,
            buffered_bytes: self.buf.len() as u64,
            pending_fsync_bytes: flushed.saturating_sub(synced),
            failed: self.failed(),
            fsync: self.fsync_stats(),
        }
    }

    /// Flushes and fsyncs everything, for a clean shutdown.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.flush()?;
        self.shared.sync_pending()?;
        Ok(())
    }
}

impl Drop for Store {
    /// Hands unflushed records to the OS (best effort; they were never acknowledged).
    fn drop(&mut self) {
        if !self.buf.is_empty() && self.shared.failure().is_none() {
            if let Err(e) = self.flush() {
                tracing::warn!(error = %e, "could not flush the log while closing the store");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_fsync_policy_parses_and_displays() {
        for p in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
            assert_eq!(p.to_string().parse::<FsyncPolicy>(), Ok(p));
        }
        assert_eq!("EVERYSEC".parse::<FsyncPolicy>(), Ok(FsyncPolicy::EverySec));
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert!("".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn store_handles_are_send_and_sync() {
        fn assert_send<T: Send>() {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send::<Store>();
        assert_send::<SnapshotWriter>();
        assert_send_sync::<SyncHandle>();
        assert_send_sync::<FaultInjector>();
    }

    #[test]
    fn store_info_tracks_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, rec) = Store::open(dir.path(), FsyncPolicy::No).unwrap();
        assert_eq!(rec, Recovered::default());
        assert_eq!(store.log_size(), FILE_HEADER_LEN);
        store.append(b"abc").unwrap();
        assert_eq!(store.info().buffered_bytes, 8 + 3);
        store.flush().unwrap();
        let info = store.info();
        assert_eq!(info.bytes_written, 11);
        assert_eq!(info.pending_fsync_bytes, 11);
        assert_eq!(info.log_bytes, FILE_HEADER_LEN + 11);
        store.rotate().unwrap();
        let info = store.info();
        assert_eq!(info.segments, 2);
        assert_eq!(info.log_bytes, 2 * FILE_HEADER_LEN + 11);
        assert_eq!(info.pending_fsync_bytes, 0);
        assert_eq!(info.fsync.count, 1);
    }
}
