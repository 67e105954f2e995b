//! Recovery: rebuilds what the data directory holds when the store is opened.
//!
//! Procedure (every step logs what it does):
//!
//! 1. Leftover `snapshot.*.snap.tmp` files are unfinished snapshots and are removed.
//! 2. Snapshots are tried newest first. A snapshot that is torn or garbled (bad header, bad
//!    frame, missing trailer) is renamed to `*.corrupt` and the next older one is tried. The
//!    first complete snapshot is used; older snapshots and log segments with a smaller
//!    sequence number are superseded by it and deleted.
//! 3. Log segments with a sequence number at or above the snapshot's base (all of them when
//!    there is no snapshot) are replayed in order:
//!    - a segment whose header is bad (wrong magic, version, sequence or checksum, or too
//!      short) is renamed to `*.corrupt` and skipped;
//!    - a torn or garbled tail of the **newest** segment (short record, impossible length,
//!      checksum mismatch) is truncated in place at the end of the last good record with a
//!      warning naming the file, offset and number of bytes dropped. This is the expected
//!      result of a crash mid-write and never an error;
//!    - garbage in an **older** segment cannot come from a crash (the segment was fsynced and
//!      closed before the next one was created), so it is logged at error level. The segment
//!      is truncated there as well, the dropped bytes are first copied to
//!      `<segment>.at-<offset>.corrupt` for inspection, and replay **continues with the later
//!      segments**. Stopping at the first bad byte instead would silently discard every later
//!      (intact) effect; CRDT effects tolerate a missing predecessor far better than a node
//!      that has lost all writes since the damage, and the loss is reported loudly either way;
//!    - a hole in the sequence numbers (a missing segment) is reported as
//!      [`TruncationReason::MissingSegments`] and logged at error level.
//! 4. Everything that was dropped or set aside is returned in [`Recovered::truncated`].
//!
//! Files are never deleted unless they are superseded by a complete snapshot; damaged files
//! are renamed, never removed. Only I/O errors (e.g. permission denied) make recovery fail.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{classify, segment_file_name, DataFile, FIRST_SEQ};
use super::log::{scan_segment, sync_dir, SegmentScan};
use super::snapshot::load_snapshot;
use super::{io_context, Recovered, StoreError, TruncationNote, TruncationReason};

/// What recovery found, including what the store needs to resume appending.
#[derive(Debug)]
pub(crate) struct RecoveryOutcome {
    pub(crate) recovered: Recovered,
    /// The newest valid segment, to keep appending to: (sequence, valid length).
    pub(crate) last_segment: Option<(u64, u64)>,
    /// The other live segments: sequence to length.
    pub(crate) segments: BTreeMap<u64, u64>,
    /// The snapshot in use: (base, length).
    pub(crate) snapshot: Option<(u64, u64)>,
}

pub(crate) fn recover(dir: &Path) -> Result<RecoveryOutcome, StoreError> {
    let mut segments: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut snapshots: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut changed = false;

    let entries =
        std::fs::read_dir(dir).map_err(io_context(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_context(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match classify(name) {
            Some(DataFile::Segment(seq)) => {
                segments.insert(seq, entry.path());
            }
            Some(DataFile::Snapshot(seq)) => {
                snapshots.insert(seq, entry.path());
            }
            Some(DataFile::SnapshotTmp(_)) => {
                let path = entry.path();
                tracing::info!(file = %path.display(), "removing unfinished snapshot");
                std::fs::remove_file(&path)
                    .map_err(io_context(format!("removing {}", path.display())))?;
                changed = true;
            }
            None => {}
        }
    }

    let mut recovered = Recovered::default();

    // Newest complete snapshot.
    let mut chosen = None;
    for (&base, path) in snapshots.iter().rev() {
        let loaded =
            load_snapshot(path, base).map_err(io_context(format!("reading {}", path.display())))?;
        match loaded {
            Ok(snap) => {
                chosen = Some((base, snap));
                break;
            }
            Err(reason) => {
                let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                let moved = quarantine(path)?;
                tracing::warn!(
                    file = %path.display(),
                    moved_to = %moved.display(),
                    reason = %reason,
                    "ignoring incomplete snapshot; falling back to the previous one and its log"
                );
                recovered.truncated.push(TruncationNote {
                    file: path.clone(),
                    offset: 0,
                    bytes_dropped: len,
                    reason: TruncationReason::TornSnapshot(reason),
                    moved_to: Some(moved),
                });
                changed = true;
            }
        }
    }

    let mut snapshot = None;
    let mut expected = FIRST_SEQ;
    if let Some((base, snap)) = chosen {
        for (_, path) in snapshots.range(..base) {
            remove_superseded(path);
            changed = true;
        }
        let live = segments.split_off(&base);
        for (_, path) in std::mem::replace(&mut segments, live) {
            remove_superseded(&path);
            changed = true;
        }
        snapshot = Some((base, snap.file_len));
        recovered.snapshot_base = Some(base);
        recovered.snapshot_header = Some(snap.header);
        recovered.snapshot_records = snap.records;
        expected = base;
    }

    // Replay the log.
    let newest = segments.keys().next_back().copied();
    let mut live = BTreeMap::new();
    for (seq, path) in segments {
        if seq > expected {
            tracing::error!(
                dir = %dir.display(),
                first = expected,
                last = seq - 1,
                "log segments are missing; effects they held are lost"
            );
            recovered.truncated.push(TruncationNote {
                file: dir.join(segment_file_name(expected)),
                offset: 0,
                bytes_dropped: 0,
                reason: TruncationReason::MissingSegments {
                    first: expected,
                    last: seq - 1,
                },
                moved_to: None,
            });
        }
        expected = expected.max(seq.saturating_add(1));

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_context(format!("opening {}", path.display())))?;
        let scan = scan_segment(&file, seq, &mut recovered.log_records)
            .map_err(io_context(format!("reading {}", path.display())))?;
        match scan {
            SegmentScan::BadHeader { reason, file_len } => {
                drop(file);
                let moved = quarantine(&path)?;
                tracing::warn!(
                    file = %path.display(),
                    moved_to = %moved.display(),
                    bytes = file_len,
                    reason = %reason,
                    "skipping log segment with an unusable header"
                );
                recovered.truncated.push(TruncationNote {
                    file: path,
                    offset: 0,
                    bytes_dropped: file_len,
                    reason: TruncationReason::BadHeader(reason),
                    moved_to: Some(moved),
                });
                changed = true;
            }
            SegmentScan::Scanned {
                valid_len,
                stop: None,
                ..
            } => {
                live.insert(seq, valid_len);
            }
            SegmentScan::Scanned {
                valid_len,
                file_len,
                stop: Some(reason),
            } => {
                let dropped = file_len.saturating_sub(valid_len);
                let moved_to = if Some(seq) == newest {
                    tracing::warn!(
                        file = %path.display(),
                        offset = valid_len,
                        bytes_dropped = dropped,
                        reason = %reason,
                        "truncating torn tail of the log"
                    );
                    None
                } else {
                    let side = save_tail(&file, &path, valid_len)?;
                    tracing::error!(
                        file = %path.display(),
                        offset = valid_len,
                        bytes_dropped = dropped,
                        reason = %reason,
                        saved_to = %side.display(),
                        "corruption inside an older log segment: dropping the rest of this \
                         segment and continuing with the next one; effects were lost"
                    );
                    Some(side)
                };
                file.set_len(valid_len)
                    .and_then(|()| file.sync_all())
                    .map_err(io_context(format!("truncating {}", path.display())))?;
                recovered.truncated.push(TruncationNote {
                    file: path,
                    offset: valid_len,
                    bytes_dropped: dropped,
                    reason,
                    moved_to,
                });
                live.insert(seq, valid_len);
                changed = true;
            }
        }
    }

    if changed {
        sync_dir(dir).map_err(io_context(format!("fsyncing directory {}", dir.display())))?;
    }
    let last_segment = live.pop_last();
    Ok(RecoveryOutcome {
        recovered,
        last_segment,
        segments: live,
        snapshot,
    })
}

/// Deletes a file superseded by the snapshot in use. Failure is harmless (the file is
/// ignored and deleted again at the next start), so it is only logged.
fn remove_superseded(path: &Path) {
    tracing::info!(file = %path.display(), "deleting file superseded by a newer snapshot");
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            file = %path.display(),
            error = %e,
            "could not delete superseded file"
        ),
    }
}

/// A path `<path><suffix>` (or `<path><suffix>.<n>`) that does not exist yet.
fn unused_path(path: &Path, suffix: &str) -> Result<PathBuf, StoreError> {
    let mut base = path.as_os_str().to_owned();
    base.push(suffix);
    for n in 0..10_000u32 {
        let mut candidate = base.clone();
        if n > 0 {
            candidate.push(format!(".{n}"));
        }
        let candidate = PathBuf::from(candidate);
        match candidate.try_exists() {
            Ok(false) => return Ok(candidate),
            Ok(true) => {}
            Err(e) => {
                return Err(StoreError::Io {
                    context: format!("checking {}", candidate.display()),
                    source: e,
                })
            }
        }
    }
    Err(StoreError::Io {
        context: format!("finding a free name for {}{suffix}", path.display()),
        source: std::io::Error::other("too many files with that name"),
    })
}

/// Renames a damaged file out of the way (to `*.corrupt`) and returns its new path.
fn quarantine(path: &Path) -> Result<PathBuf, StoreError> {
    let dest = unused_path(path, ".corrupt")?;
    std::fs::rename(path, &dest).map_err(io_context(format!(
        "renaming {} to {}",
        path.display(),
        dest.display()
    )))?;
    Ok(dest)
}

/// Copies the bytes of `file` from `offset` to its end into a new side file.
fn save_tail(file: &File, path: &Path, offset: u64) -> Result<PathBuf, StoreError> {
    let dest = unused_path(path, &format!(".at-{offset}.corrupt"))?;
    let copy = || -> std::io::Result<()> {
        let mut src = file;
        src.seek(SeekFrom::Start(offset))?;
        let mut out = File::create_new(&dest)?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()
    };
    copy().map_err(io_context(format!(
        "saving damaged bytes of {} to {}",
        path.display(),
        dest.display()
    )))?;
    Ok(dest)
}
