//! Log segments: `effects.<seq:020>.log`, a file header followed by framed records.
//!
//! Contract:
//! - A segment is created with `create_new`, its header written and fsynced and the directory
//!   fsynced before any record is appended, so a crash leaves either no file or a file whose
//!   header is at worst torn (recovery then sets the file aside as `*.corrupt`).
//! - Records are only ever appended. [`scan_segment`] returns the records of the longest valid
//!   prefix and where (and why) that prefix ends; it never fails on bad contents, only on I/O
//!   errors.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::Path;

use super::format::{
    check_file_header, encode_file_header, segment_file_name, Frame, FrameReader, FILE_HEADER_LEN,
    LOG_MAGIC,
};
use super::{io_context, StoreError, TruncationReason};

/// Creates segment `seq` in `dir`, durably, and returns it opened for appending.
pub(crate) fn create_segment(dir: &Path, seq: u64) -> Result<File, StoreError> {
    let path = dir.join(segment_file_name(seq));
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_context(format!("creating {}", path.display())))?;
    let res = file
        .write_all(&encode_file_header(LOG_MAGIC, seq))
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_dir(dir));
    if let Err(e) = res {
        drop(file);
        // Best effort: a half-created segment would only be set aside at the next start.
        let _ = std::fs::remove_file(&path);
        return Err(StoreError::Io {
            context: format!("initialising {}", path.display()),
            source: e,
        });
    }
    Ok(file)
}

/// Opens an existing, already validated segment for appending.
pub(crate) fn open_for_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_context(format!("opening {} for append", path.display())))
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Result of scanning one segment.
#[derive(Debug)]
pub(crate) enum SegmentScan {
    /// The header is unusable; nothing was read.
    BadHeader { reason: String, file_len: u64 },
    /// The header is valid; records were appended to the output up to `valid_len`.
    Scanned {
        valid_len: u64,
        file_len: u64,
        stop: Option<TruncationReason>,
    },
}

/// Reads segment `seq` from `file`, pushing every record of its valid prefix onto `out`.
pub(crate) fn scan_segment(
    file: &File,
    seq: u64,
    out: &mut Vec<Vec<u8>>,
) -> std::io::Result<SegmentScan> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut header = Vec::with_capacity(FILE_HEADER_LEN as usize);
    (&mut reader)
        .take(FILE_HEADER_LEN)
        .read_to_end(&mut header)?;
    if let Err(reason) = check_file_header(&header, LOG_MAGIC, seq) {
        return Ok(SegmentScan::BadHeader { reason, file_len });
    }
    let mut frames = FrameReader::new(reader, FILE_HEADER_LEN, file_len);
    loop {
        match frames.next_frame()? {
            Frame::Record(r) => out.push(r),
            Frame::End => {
                return Ok(SegmentScan::Scanned {
                    valid_len: frames.pos(),
                    file_len,
                    stop: None,
                })
            }
            Frame::Bad(reason) => {
                return Ok(SegmentScan::Scanned {
                    valid_len: frames.pos(),
                    file_len,
                    stop: Some(reason),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::encode_frame;

    #[test]
    fn store_log_scan_reports_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = create_segment(dir.path(), 3).unwrap();
        let mut buf = Vec::new();
        encode_frame(&mut buf, b"one");
        encode_frame(&mut buf, b"two");
        let good = FILE_HEADER_LEN + buf.len() as u64;
        buf.extend_from_slice(&[0xAB; 5]);
        f.write_all(&buf).unwrap();
        drop(f);

        let f = File::open(dir.path().join(segment_file_name(3))).unwrap();
        let mut out = Vec::new();
        match scan_segment(&f, 3, &mut out).unwrap() {
            SegmentScan::Scanned {
                valid_len,
                file_len,
                stop,
            } => {
                assert_eq!(valid_len, good);
                assert_eq!(file_len, good + 5);
                assert_eq!(stop, Some(TruncationReason::ShortRecord));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(out, vec![b"one".to_vec(), b"two".to_vec()]);

        // The same file under another sequence number is rejected by its header.
        let mut out = Vec::new();
        assert!(matches!(
            scan_segment(&f, 4, &mut out).unwrap(),
            SegmentScan::BadHeader { .. }
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn store_log_create_refuses_existing_segment() {
        let dir = tempfile::tempdir().unwrap();
        create_segment(dir.path(), 1).unwrap();
        assert!(create_segment(dir.path(), 1).is_err());
    }
}
