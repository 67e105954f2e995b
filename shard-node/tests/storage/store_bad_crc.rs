//! Damage in the middle of the log: a bad checksum in the newest segment truncates from
//! there; in an older segment the rest of that segment is set aside and replay continues
//! with the later segments; a bad file header sets the whole file aside.

use crate::store_support;
use crate::store_support::{
    append_all, flip, framed_len, names, open, records, segment, FILE_HEADER_LEN,
};
use shard_node::store::TruncationReason;

#[test]
fn store_bad_crc_in_newest_segment_truncates_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let recs = records(8, 31);
    store_support::write_records(tmp.path(), &recs);
    let seg = segment(tmp.path(), 1);
    let full_len = std::fs::metadata(&seg).unwrap().len();
    // Damage the payload of record 4 (the offsets of records 0..4 precede it).
    let start: u64 = FILE_HEADER_LEN + recs[..4].iter().map(|r| framed_len(r)).sum::<u64>();
    assert!(!recs[4].is_empty());
    flip(&seg, start + 8, 0x40);

    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.log_records, recs[..4]);
    assert_eq!(recovered.truncated.len(), 1);
    let note = &recovered.truncated[0];
    assert_eq!(note.offset, start);
    assert_eq!(note.bytes_dropped, full_len - start);
    assert_eq!(note.reason, TruncationReason::BadCrc);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), start);
}

#[test]
fn store_bad_crc_in_older_segment_continues_with_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let first = records(6, 32);
    let second = records(5, 33);
    let (mut store, _) = open(tmp.path());
    append_all(&mut store, &first);
    store.rotate().unwrap();
    append_all(&mut store, &second);
    drop(store);

    let seg1 = segment(tmp.path(), 1);
    let seg1_len = std::fs::metadata(&seg1).unwrap().len();
    let start: u64 = FILE_HEADER_LEN + first[..2].iter().map(|r| framed_len(r)).sum::<u64>();
    // Damage the CRC field of record 2.
    flip(&seg1, start + 5, 0xFF);
    let damaged = std::fs::read(&seg1).unwrap();

    let (mut store, recovered) = open(tmp.path());
    let expected: Vec<Vec<u8>> = first[..2].iter().chain(&second).cloned().collect();
    assert_eq!(recovered.log_records, expected);
    assert_eq!(recovered.truncated.len(), 1);
    let note = &recovered.truncated[0];
    assert_eq!(note.file, seg1);
    assert_eq!(note.offset, start);
    assert_eq!(note.bytes_dropped, seg1_len - start);
    assert_eq!(note.reason, TruncationReason::BadCrc);
    // The dropped bytes were kept for inspection.
    let side = note.moved_to.clone().expect("dropped bytes saved");
    assert_eq!(std::fs::read(&side).unwrap(), damaged[start as usize..]);
    assert_eq!(std::fs::metadata(&seg1).unwrap().len(), start);

    // Appends go on in the newest segment and everything survives another reopen.
    assert_eq!(store.current_seq(), 2);
    store.append(b"later").unwrap();
    store.flush().unwrap();
    drop(store);
    let (_store, recovered) = open(tmp.path());
    assert!(recovered.truncated.is_empty());
    assert_eq!(recovered.log_records.len(), expected.len() + 1);
}

#[test]
fn store_bad_header_sets_file_aside_and_skips_it() {
    let tmp = tempfile::tempdir().unwrap();
    let one = records(3, 34);
    let two = records(3, 35);
    let three = records(3, 36);
    let (mut store, _) = open(tmp.path());
    append_all(&mut store, &one);
    store.rotate().unwrap();
    append_all(&mut store, &two);
    store.rotate().unwrap();
    append_all(&mut store, &three);
    drop(store);

    let seg2 = segment(tmp.path(), 2);
    let original = std::fs::read(&seg2).unwrap();
    flip(&seg2, 0, b'A' ^ b'X'); // magic "XADBLOG1"

    let (store, recovered) = open(tmp.path());
    let expected: Vec<Vec<u8>> = one.iter().chain(&three).cloned().collect();
    assert_eq!(recovered.log_records, expected);
    assert_eq!(recovered.truncated.len(), 1);
    let note = &recovered.truncated[0];
    assert!(matches!(&note.reason, TruncationReason::BadHeader(r) if r.contains("magic")));
    assert_eq!(note.bytes_dropped, original.len() as u64);
    let corrupt = tmp.path().join("effects.00000000000000000002.log.corrupt");
    assert_eq!(note.moved_to.as_deref(), Some(corrupt.as_path()));
    // The user's file is kept, byte for byte apart from the damage.
    let kept = std::fs::read(&corrupt).unwrap();
    assert_eq!(kept[1..], original[1..]);
    assert!(!names(tmp.path()).contains(&"effects.00000000000000000002.log".to_owned()));

    // A segment file named for one sequence number but holding another is also rejected.
    std::fs::copy(segment(tmp.path(), 3), segment(tmp.path(), 4)).unwrap();
    drop(store);
    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.log_records, expected);
    assert!(recovered
        .truncated
        .iter()
        .any(|n| matches!(&n.reason, TruncationReason::BadHeader(r) if r.contains("sequence"))));
}
