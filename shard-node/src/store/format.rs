//! On-disk encoding shared by log segments and snapshots.
//!
//! Every file starts with a [`FILE_HEADER_LEN`]-byte header:
//!
//! ```text
//! magic [8] | format version u32 LE | seq u64 LE | crc32 u32 LE of the preceding 20 bytes
//! ```
//!
//! The magic is `AADBLOG1` for log segments and `AADBSNP1` for snapshots; `seq` repeats the
//! sequence number in the file name so a renamed or copied file is detected.
//!
//! Records follow the header, each framed as
//!
//! ```text
//! len u32 LE | crc u32 LE | payload [len]
//! ```
//!
//! where `crc` is CRC-32 (IEEE) over the four length bytes followed by the payload. Covering the
//! length as well as the payload means a run of zero bytes (a common shape of a torn write on
//! some file systems) never decodes as a valid empty record, and a flipped bit in the length is
//! caught like one in the payload. A payload is at most [`MAX_RECORD_LEN`] bytes.
//!
//! Nothing here panics on arbitrary file contents: every malformed frame is reported as a
//! [`TruncationReason`] together with the offset where the valid prefix ends.

use std::io::{self, Read};

use super::TruncationReason;

/// Magic at the start of every log segment.
pub const LOG_MAGIC: [u8; 8] = *b"AADBLOG1";
/// Magic at the start of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"AADBSNP1";
/// Version of the on-disk format written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the header at the start of every file.
pub const FILE_HEADER_LEN: u64 = 24;
/// Length of the `len | crc` prefix of every record.
pub const FRAME_HEADER_LEN: u64 = 8;
/// Largest payload a record may carry (1 GiB). Larger length prefixes on disk are corruption.
pub const MAX_RECORD_LEN: usize = 1 << 30;
/// Sequence number of the first log segment of a fresh data directory.
pub const FIRST_SEQ: u64 = 1;

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Encodes the header of a file with the given magic and sequence number.
pub(crate) fn encode_file_header(magic: [u8; 8], seq: u64) -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a file header read from disk; `buf` holds whatever bytes the file had (possibly fewer
/// than a full header). Returns a human-readable reason on mismatch.
pub(crate) fn check_file_header(buf: &[u8], magic: [u8; 8], seq: u64) -> Result<(), String> {
    if buf.len() < FILE_HEADER_LEN as usize {
        return Err(format!(
            "file header is {} bytes, expected {FILE_HEADER_LEN}",
            buf.len()
        ));
    }
    if buf[..8] != magic {
        return Err(format!(
            "bad magic \"{}\", expected \"{}\"",
            buf[..8].escape_ascii(),
            magic.escape_ascii()
        ));
    }
    let crc = le_u32(&buf[20..24]);
    if crc32fast::hash(&buf[..20]) != crc {
        return Err("file header checksum mismatch".to_owned());
    }
    let version = le_u32(&buf[8..12]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported format version {version}, expected {FORMAT_VERSION}"
        ));
    }
    let found = le_u64(&buf[12..20]);
    if found != seq {
        return Err(format!(
            "header names sequence {found} but the file name says {seq}"
        ));
    }
    Ok(())
}

/// Computes the `len | crc` prefix of a record whose payload is the concatenation of `parts`.
/// The caller guarantees the total length is at most [`MAX_RECORD_LEN`].
pub(crate) fn frame_header(parts: &[&[u8]]) -> [u8; FRAME_HEADER_LEN as usize] {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= MAX_RECORD_LEN);
    let len_le = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_le);
    for p in parts {
        hasher.update(p);
    }
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    h[..4].copy_from_slice(&len_le);
    h[4..].copy_from_slice(&hasher.finalize().to_le_bytes());
    h
}

/// Appends one framed record to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&frame_header(&[payload]));
    out.extend_from_slice(payload);
}

/// Outcome of reading one frame.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A complete record whose checksum matched.
    Record(Vec<u8>),
    /// The end of the file was reached exactly at a frame boundary.
    End,
    /// The bytes from [`FrameReader::pos`] on are not a valid frame.
    Bad(TruncationReason),
}

/// Reads frames sequentially from a file of known length.
///
/// The reader never allocates more than the bytes that remain in the file, so a garbage length
/// prefix cannot trigger a huge allocation.
pub(crate) struct FrameReader<R> {
    inner: R,
    pos: u64,
    end: u64,
}

impl<R: Read> FrameReader<R> {
    /// `inner` must be positioned at byte `pos` of a file that is `end` bytes long.
    pub(crate) fn new(inner: R, pos: u64, end: u64) -> Self {
        Self { inner, pos, end }
    }

    /// Offset just past the last complete frame returned (where a bad frame starts).
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Reads the next frame. I/O errors other than a premature end of file are returned as
    /// errors; a premature end of file is a [`TruncationReason::ShortRecord`].
    pub(crate) fn next_frame(&mut self) -> io::Result<Frame> {
        let remaining = self.end.saturating_sub(self.pos);
        if remaining == 0 {
            return Ok(Frame::End);
        }
        if remaining < FRAME_HEADER_LEN {
            return Ok(Frame::Bad(TruncationReason::ShortRecord));
        }
        let mut hdr = [0u8; FRAME_HEADER_LEN as usize];
        if !read_full(&mut self.inner, &mut hdr)? {
            return Ok(Frame::Bad(TruncationReason::ShortRecord));
        }
        let len = le_u32(&hdr[..4]);
        let crc = le_u32(&hdr[4..]);
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > MAX_RECORD_LEN {
            return Ok(Frame::Bad(TruncationReason::BadLength { len }));
        }
        if u64::from(len) > remaining - FRAME_HEADER_LEN {
            return Ok(Frame::Bad(TruncationReason::ShortRecord));
        }
        let mut payload = vec![0u8; len_usize];
        if !read_full(&mut self.inner, &mut payload)? {
            return Ok(Frame::Bad(TruncationReason::ShortRecord));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&hdr[..4]);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            return Ok(Frame::Bad(TruncationReason::BadCrc));
        }
        self.pos += FRAME_HEADER_LEN + u64::from(len);
        Ok(Frame::Record(payload))
    }
}

/// `read_exact` that reports a premature end of file as `Ok(false)`.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// File name of log segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("effects.{seq:020}.log")
}

/// File name of the snapshot with base `seq`.
pub fn snapshot_file_name(seq: u64) -> String {
    format!("snapshot.{seq:020}.snap")
}

/// Temporary name a snapshot is written under before it is installed.
pub(crate) fn snapshot_tmp_name(seq: u64) -> String {
    format!("snapshot.{seq:020}.snap.tmp")
}

/// A file of the data directory recognised by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataFile {
    Segment(u64),
    Snapshot(u64),
    SnapshotTmp(u64),
}

/// Classifies a directory entry; names that are not exactly one of ours yield `None`.
pub(crate) fn classify(name: &str) -> Option<DataFile> {
    if let Some(num) = name
        .strip_prefix("effects.")
        .and_then(|r| r.strip_suffix(".log"))
    {
        return parse_seq(num).map(DataFile::Segment);
    }
    let rest = name.strip_prefix("snapshot.")?;
    if let Some(num) = rest.strip_suffix(".snap.tmp") {
        return parse_seq(num).map(DataFile::SnapshotTmp);
    }
    rest.strip_suffix(".snap")
        .and_then(parse_seq)
        .map(DataFile::Snapshot)
}

fn parse_seq(s: &str) -> Option<u64> {
    if s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_format_header_round_trip_and_rejects_damage() {
        let h = encode_file_header(LOG_MAGIC, 42);
        assert_eq!(check_file_header(&h, LOG_MAGIC, 42), Ok(()));
        assert!(check_file_header(&h, SNAPSHOT_MAGIC, 42).is_err());
        assert!(check_file_header(&h, LOG_MAGIC, 43).is_err());
        assert!(check_file_header(&h[..10], LOG_MAGIC, 42).is_err());
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x01;
            assert!(check_file_header(&bad, LOG_MAGIC, 42).is_err(), "byte {i}");
        }
    }

    #[test]
    fn store_format_frames_decode_and_zeros_are_not_records() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, b"hello");
        encode_frame(&mut buf, b"");
        let end = buf.len() as u64;
        let mut r = FrameReader::new(&buf[..], 0, end);
        assert!(matches!(r.next_frame().unwrap(), Frame::Record(p) if p == b"hello"));
        assert!(matches!(r.next_frame().unwrap(), Frame::Record(p) if p.is_empty()));
        assert!(matches!(r.next_frame().unwrap(), Frame::End));
        assert_eq!(r.pos(), end);

        let zeros = [0u8; 32];
        let mut r = FrameReader::new(&zeros[..], 0, 32);
        assert!(matches!(
            r.next_frame().unwrap(),
            Frame::Bad(TruncationReason::BadCrc)
        ));
        assert_eq!(r.pos(), 0);

        let huge = [0xff_u8; 16];
        let mut r = FrameReader::new(&huge[..], 0, 16);
        assert!(matches!(
            r.next_frame().unwrap(),
            Frame::Bad(TruncationReason::BadLength { .. })
        ));
    }

    #[test]
    fn store_format_classifies_names() {
        assert_eq!(classify(&segment_file_name(7)), Some(DataFile::Segment(7)));
        assert_eq!(
            classify(&snapshot_file_name(9)),
            Some(DataFile::Snapshot(9))
        );
        assert_eq!(
            classify(&snapshot_tmp_name(9)),
            Some(DataFile::SnapshotTmp(9))
        );
        assert_eq!(classify("effects.7.log"), None);
        assert_eq!(classify("effects.00000000000000000007.log.corrupt"), None);
        assert_eq!(classify("notes.txt"), None);
    }
}
