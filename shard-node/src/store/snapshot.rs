//! Snapshots: `snapshot.<base:020>.snap`, the full state as of the moment log segment `base`
//! was opened.
//!
//! File layout: the common file header (magic `AADBSNP1`, base sequence), then framed records
//! whose payload starts with a kind byte:
//!
//! ```text
//! [KIND_HEADER  | caller's header bytes]        exactly one, first
//! [KIND_RECORD  | caller's record bytes]        zero or more
//! [KIND_TRAILER | record count u64 LE]          exactly one, last; nothing may follow it
//! ```
//!
//! The kind byte keeps caller records from ever being mistaken for the trailer. A snapshot is
//! complete only if the trailer is present, its count matches and the file ends right after
//! it; anything else is a torn snapshot and recovery ignores it.
//!
//! Installation ([`SnapshotWriter::finish`]): write to `snapshot.<base>.snap.tmp`, fsync it,
//! rename it to its final name, fsync the directory, and only then delete log segments with
//! a smaller sequence number and older snapshots. Until the new snapshot is durable, the
//! previous snapshot and every segment after it remain on disk, so a crash at any point
//! recovers either the old or the new snapshot plus the segments that follow it.
//!
//! A [`SnapshotWriter`] is `Send` and independent of the [`Store`](super::Store): the store
//! keeps appending to newer segments while a snapshot is written on another thread. Failures
//! while writing a snapshot do not fail the store (the log still holds everything); the
//! temporary file is removed and the error returned.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    check_file_header, classify, encode_file_header, frame_header, snapshot_file_name,
    snapshot_tmp_name, DataFile, Frame, FrameReader, FILE_HEADER_LEN, MAX_RECORD_LEN,
    SNAPSHOT_MAGIC,
};
use super::log::sync_dir;
use super::sync::Shared;
use super::{io_context, StoreError};

const KIND_HEADER: u8 = 1;
const KIND_RECORD: u8 = 2;
const KIND_TRAILER: u8 = 3;

/// Writes one snapshot; see the [module docs](self) for the protocol.
///
/// Dropping a writer without calling [`SnapshotWriter::finish`] abandons the snapshot and
/// removes its temporary file.
pub struct SnapshotWriter {
    shared: Arc<Shared>,
    base: u64,
    tmp: PathBuf,
    dest: PathBuf,
    out: Option<BufWriter<File>>,
    records: u64,
    bytes: u64,
    installed: bool,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("base", &self.base)
            .field("tmp", &self.tmp)
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl SnapshotWriter {
    pub(crate) fn begin(shared: Arc<Shared>, base: u64, header: &[u8]) -> Result<Self, StoreError> {
        check_len(header.len())?;
        let tmp = shared.dir.join(snapshot_tmp_name(base));
        let dest = shared.dir.join(snapshot_file_name(base));
        let file = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::InvalidSnapshotBase {
                    base,
                    reason: "a snapshot with this base is already being written".to_owned(),
                })
            }
            Err(e) => {
                return Err(StoreError::Io {
                    context: format!("creating {}", tmp.display()),
                    source: e,
                })
            }
        };
        let mut writer = Self {
            shared,
            base,
            tmp,
            dest,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            records: 0,
            bytes: 0,
            installed: false,
        };
        writer.write_parts(&[&encode_file_header(SNAPSHOT_MAGIC, base)])?;
        writer.write_frame(KIND_HEADER, header)?;
        Ok(writer)
    }

    /// Base sequence of this snapshot.
    pub fn base_seq(&self) -> u64 {
        self.base
    }

    /// Records added so far (the header not included).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Adds one opaque record to the snapshot.
    pub fn add(&mut self, record: &[u8]) -> Result<(), StoreError> {
        check_len(record.len())?;
        self.write_frame(KIND_RECORD, record)?;
        self.records += 1;
        Ok(())
    }

    /// Completes the snapshot, installs it durably and then deletes the log segments and
    /// snapshots it supersedes. Returns once the snapshot is durable; failures to delete
    /// superseded files are logged, not returned (the next start deletes them).
    pub fn finish(mut self) -> Result<(), StoreError> {
        let trailer = self.records.to_le_bytes();
        self.write_frame(KIND_TRAILER, &trailer)?;
        let out = self.out.take().ok_or_else(|| self.aborted())?;
        let file = out.into_inner().map_err(|e| StoreError::Io {
            context: format!("writing {}", self.tmp.display()),
            source: e.into_error(),
        })?;
        self.shared
            .faults
            .check_sync()
            .and_then(|()| file.sync_all())
            .map_err(io_context(format!("fsyncing {}", self.tmp.display())))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(io_context(format!(
            "renaming {} to {}",
            self.tmp.display(),
            self.dest.display()
        )))?;
        self.installed = true;
        sync_dir(&self.shared.dir).map_err(io_context(format!(
            "fsyncing directory {}",
            self.shared.dir.display()
        )))?;

        let superseded = {
            let mut files = self.shared.files.lock();
            if files.snapshot.is_some_and(|(b, _)| b > self.base) {
                true
            } else {
                files.snapshot = Some((self.base, self.bytes));
                files.segments.retain(|&seq, _| seq >= self.base);
                false
            }
        };
        if superseded {
            tracing::info!(
                file = %self.dest.display(),
                "a newer snapshot was installed meanwhile; discarding this one"
            );
            remove_quietly(&self.dest);
            return Ok(());
        }
        tracing::info!(
            file = %self.dest.display(),
            records = self.records,
            bytes = self.bytes,
            "snapshot installed"
        );
        delete_superseded(&self.shared.dir, self.base);
        Ok(())
    }

    /// Abandons the snapshot and removes its temporary file (same as dropping the writer).
    pub fn abort(self) {}

    fn aborted(&self) -> StoreError {
        StoreError::Io {
            context: format!("writing {}", self.tmp.display()),
            source: std::io::Error::other("snapshot abandoned after an earlier error"),
        }
    }

    fn write_frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), StoreError> {
        let kind = [kind];
        let header = frame_header(&[&kind, payload]);
        self.write_parts(&[&header, &kind, payload])
    }

    fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), StoreError> {
        let Some(out) = self.out.as_mut() else {
            return Err(self.aborted());
        };
        let mut res = self.shared.faults.check_write();
        for p in parts {
            if res.is_err() {
                break;
            }
            res = out.write_all(p);
        }
        match res {
            Ok(()) => {
                self.bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
                Ok(())
            }
            Err(e) => {
                // A partial frame may be buffered: nothing more may be written to this file.
                self.out = None;
                Err(StoreError::Io {
                    context: format!("writing {}", self.tmp.display()),
                    source: e,
                })
            }
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.installed {
            drop(self.out.take());
            remove_quietly(&self.tmp);
        }
    }
}

fn check_len(len: usize) -> Result<(), StoreError> {
    // One byte of every snapshot frame is the kind.
    if len >= MAX_RECORD_LEN {
        Err(StoreError::RecordTooLarge {
            len,
            max: MAX_RECORD_LEN - 1,
        })
    } else {
        Ok(())
    }
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not remove file"),
    }
}

/// Deletes log segments and snapshots older than `base`.
pub(crate) fn delete_superseded(dir: &Path, base: u64) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not list data directory");
            return;
        }
    };
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match classify(name) {
            Some(DataFile::Segment(s) | DataFile::Snapshot(s)) if s < base => {
                remove_quietly(&entry.path());
                removed += 1;
            }
            _ => {}
        }
    }
    if removed > 0 {
        if let Err(e) = sync_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not fsync data directory");
        }
        tracing::info!(dir = %dir.display(), base, removed, "deleted superseded log files");
    }
}

/// A complete snapshot read from disk.
#[derive(Debug)]
pub(crate) struct LoadedSnapshot {
    pub(crate) header: Vec<u8>,
    pub(crate) records: Vec<Vec<u8>>,
    pub(crate) file_len: u64,
}

/// Reads the snapshot at `path` with base `base`. The inner `Err` says why the snapshot is
/// unusable (torn, garbled); the outer one is an I/O error.
pub(crate) fn load_snapshot(
    path: &Path,
    base: u64,
) -> std::io::Result<Result<LoadedSnapshot, String>> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut header = Vec::with_capacity(FILE_HEADER_LEN as usize);
    (&mut reader)
        .take(FILE_HEADER_LEN)
        .read_to_end(&mut header)?;
    if let Err(reason) = check_file_header(&header, SNAPSHOT_MAGIC, base) {
        return Ok(Err(reason));
    }
    let mut frames = FrameReader::new(reader, FILE_HEADER_LEN, file_len);
    let mut user_header = None;
    let mut records = Vec::new();
    loop {
        let at = frames.pos();
        let payload = match frames.next_frame()? {
            Frame::Record(p) => p,
            Frame::End => {
                return Ok(Err(format!(
                    "snapshot ends at offset {at} without a trailer"
                )))
            }
            Frame::Bad(reason) => return Ok(Err(format!("{reason} at offset {at}"))),
        };
        let Some((&kind, body)) = payload.split_first() else {
            return Ok(Err(format!("empty record at offset {at}")));
        };
        match (kind, user_header.is_some()) {
            (KIND_HEADER, false) => user_header = Some(body.to_vec()),
            (KIND_RECORD, true) => records.push(body.to_vec()),
            (KIND_TRAILER, true) => {
                let Ok(count) = <[u8; 8]>::try_from(body).map(u64::from_le_bytes) else {
                    return Ok(Err(format!("malformed trailer at offset {at}")));
                };
                if count != records.len() as u64 {
                    return Ok(Err(format!(
                        "trailer counts {count} records but {} were read",
                        records.len()
                    )));
                }
                if frames.pos() != file_len {
                    return Ok(Err(format!(
                        "{} unexpected bytes after the trailer",
                        file_len - frames.pos()
                    )));
                }
                return Ok(Ok(LoadedSnapshot {
                    header: user_header.unwrap_or_default(),
                    records,
                    file_len,
                }));
            }
            _ => return Ok(Err(format!("unexpected record kind {kind} at offset {at}"))),
        }
    }
}
