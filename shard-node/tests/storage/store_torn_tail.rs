//! A crash in the middle of writing the last record: cutting the last segment at every byte
//! offset of its last record keeps every complete record and never errors.

use crate::store_support;
use crate::store_support::{copy_dir, cut, framed_len, open, records, segment, write_records};
use shard_node::store::TruncationReason;

#[test]
fn store_torn_tail_at_every_offset_keeps_complete_records() {
    let pristine = tempfile::tempdir().unwrap();
    let mut recs = records(5, 11);
    recs.push((0..40u8).collect());
    write_records(pristine.path(), &recs);

    let seg = segment(pristine.path(), 1);
    let full_len = std::fs::metadata(&seg).unwrap().len();
    let last_start = full_len - framed_len(recs.last().unwrap());
    let complete = &recs[..recs.len() - 1];

    for at in last_start..full_len {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), tmp.path());
        cut(&segment(tmp.path(), 1), at);

        let (mut store, recovered) = open(tmp.path());
        assert_eq!(recovered.log_records, complete, "cut at {at}");
        if at == last_start {
            assert!(recovered.truncated.is_empty(), "cut at a record boundary");
        } else {
            assert_eq!(recovered.truncated.len(), 1, "cut at {at}");
            let note = &recovered.truncated[0];
            assert_eq!(note.offset, last_start);
            assert_eq!(note.bytes_dropped, at - last_start);
            assert_eq!(note.reason, TruncationReason::ShortRecord);
            assert_eq!(note.moved_to, None);
        }
        assert_eq!(
            std::fs::metadata(segment(tmp.path(), 1)).unwrap().len(),
            last_start,
            "truncated in place"
        );

        // Appends after the truncation point survive the next reopen.
        store.append(b"after").unwrap();
        store.flush().unwrap();
        drop(store);
        let (_store, recovered) = open(tmp.path());
        assert!(recovered.truncated.is_empty());
        assert_eq!(recovered.log_records.len(), complete.len() + 1);
        assert_eq!(recovered.log_records.last().unwrap(), b"after");
    }
}

#[test]
fn store_torn_header_of_newest_segment_is_set_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let recs = records(4, 12);
    let (mut store, _) = open(tmp.path());
    store_support::append_all(&mut store, &recs);
    store.rotate().unwrap();
    drop(store);
    // A crash while segment 2 was being created leaves a partial header.
    cut(&segment(tmp.path(), 2), 10);

    let (mut store, recovered) = open(tmp.path());
    assert_eq!(recovered.log_records, recs);
    assert_eq!(recovered.truncated.len(), 1);
    assert!(matches!(
        recovered.truncated[0].reason,
        TruncationReason::BadHeader(_)
    ));
    assert!(tmp
        .path()
        .join("effects.00000000000000000002.log.corrupt")
        .exists());
    // Appending continues in segment 1; a later rotation creates segment 2 afresh.
    assert_eq!(store.current_seq(), 1);
    store.append(b"more").unwrap();
    assert_eq!(store.rotate().unwrap(), 2);
    store.append(b"in two").unwrap();
    store.flush().unwrap();
    drop(store);

    let (_store, recovered) = open(tmp.path());
    assert!(recovered.truncated.is_empty());
    let mut expected = recs.clone();
    expected.push(b"more".to_vec());
    expected.push(b"in two".to_vec());
    assert_eq!(recovered.log_records, expected);
}
