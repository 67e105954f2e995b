//! Garbage after the last record (random bytes, zeros, a huge length prefix) is truncated;
//! the next open is clean and later appends survive.

use crate::store_support::{append_bytes, open, records, segment, write_records};
use shard_node::store::TruncationReason;

fn check_garbage(garbage: &[u8], expect: fn(&TruncationReason) -> bool) {
    let tmp = tempfile::tempdir().unwrap();
    let recs = records(10, 21);
    write_records(tmp.path(), &recs);
    let seg = segment(tmp.path(), 1);
    let good_len = std::fs::metadata(&seg).unwrap().len();
    append_bytes(&seg, garbage);

    let (mut store, recovered) = open(tmp.path());
    assert_eq!(recovered.log_records, recs);
    assert_eq!(recovered.truncated.len(), 1, "{:?}", recovered.truncated);
    let note = &recovered.truncated[0];
    assert_eq!(note.file, seg);
    assert_eq!(note.offset, good_len);
    assert_eq!(note.bytes_dropped, garbage.len() as u64);
    assert!(expect(&note.reason), "unexpected reason {:?}", note.reason);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);

    store.append(b"after garbage").unwrap();
    store.flush().unwrap();
    drop(store);

    let (_store, recovered) = open(tmp.path());
    assert!(recovered.truncated.is_empty(), "second open is clean");
    let mut expected = recs.clone();
    expected.push(b"after garbage".to_vec());
    assert_eq!(recovered.log_records, expected);
}

#[test]
fn store_garbage_random_bytes_are_truncated() {
    let garbage: Vec<u8> = (0..97u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    check_garbage(&garbage, |r| {
        matches!(
            r,
            TruncationReason::BadCrc
                | TruncationReason::ShortRecord
                | TruncationReason::BadLength { .. }
        )
    });
}

#[test]
fn store_garbage_zeros_are_truncated() {
    check_garbage(&[0u8; 4096], |r| *r == TruncationReason::BadCrc);
    check_garbage(&[0u8; 5], |r| *r == TruncationReason::ShortRecord);
}

#[test]
fn store_garbage_huge_length_prefix_is_truncated() {
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 1, 2, 3]);
    check_garbage(&huge, |r| {
        *r == TruncationReason::BadLength { len: u32::MAX }
    });
    // Plausible length, but longer than the file.
    let mut long = (1u32 << 20).to_le_bytes().to_vec();
    long.extend_from_slice(&[0; 20]);
    check_garbage(&long, |r| *r == TruncationReason::ShortRecord);
}
