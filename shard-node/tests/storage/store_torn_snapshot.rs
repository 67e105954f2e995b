//! A torn or garbled snapshot is detected and ignored: recovery falls back to the previous
//! snapshot and its segments, which are still on disk because they are only deleted after a
//! newer snapshot is durable.

use crate::store_support::{append_all, copy_dir, cut, flip, names, open, records, snapshot};
use shard_node::store::TruncationReason;

/// Builds: snapshot 2 (records s1), segment 2 (log a), segment 3 (log b). Returns the bytes of
/// a complete snapshot 3 made from that state, as `finish` would have installed it, plus the
/// expected recovery without it.
fn build(dir: &std::path::Path) -> (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let s1 = records(4, 61);
    let a = records(5, 62);
    let b = records(5, 63);
    let (mut store, _) = open(dir);
    append_all(&mut store, &records(3, 60));
    let base = store.rotate().unwrap();
    let mut w = store.begin_snapshot(base, b"first").unwrap();
    for r in &s1 {
        w.add(r).unwrap();
    }
    w.finish().unwrap();
    append_all(&mut store, &a);
    let base2 = store.rotate().unwrap();
    append_all(&mut store, &b);
    drop(store);

    // Produce snapshot 3 in a scratch copy so `dir` keeps its pre-compaction files.
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(dir, scratch.path());
    let (store, _) = open(scratch.path());
    let mut w = store.begin_snapshot(base2, b"second").unwrap();
    w.add(b"newer state").unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(snapshot(scratch.path(), base2)).unwrap();
    let log: Vec<Vec<u8>> = a.iter().chain(&b).cloned().collect();
    (bytes, s1, log)
}

#[test]
fn store_torn_snapshot_at_every_length_falls_back_to_previous() {
    let pristine = tempfile::tempdir().unwrap();
    let (snap3, s1, log) = build(pristine.path());

    for len in 0..snap3.len() {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), tmp.path());
        std::fs::write(snapshot(tmp.path(), 3), &snap3[..len]).unwrap();

        let (_store, recovered) = open(tmp.path());
        assert_eq!(recovered.snapshot_base, Some(2), "len {len}");
        assert_eq!(recovered.snapshot_header.as_deref(), Some(&b"first"[..]));
        assert_eq!(recovered.snapshot_records, s1, "len {len}");
        assert_eq!(recovered.log_records, log, "len {len}");
        assert_eq!(recovered.truncated.len(), 1, "len {len}");
        assert!(matches!(
            recovered.truncated[0].reason,
            TruncationReason::TornSnapshot(_)
        ));
        assert!(tmp
            .path()
            .join("snapshot.00000000000000000003.snap.corrupt")
            .exists());
    }

    // The complete snapshot is used, and it supersedes snapshot 2 and segment 2.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(pristine.path(), tmp.path());
    std::fs::write(snapshot(tmp.path(), 3), &snap3).unwrap();
    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_base, Some(3));
    assert_eq!(recovered.snapshot_records, vec![b"newer state".to_vec()]);
    assert_eq!(recovered.log_records, records(5, 63));
    assert!(recovered.truncated.is_empty());
    assert_eq!(
        names(tmp.path()),
        vec![
            "effects.00000000000000000003.log",
            "snapshot.00000000000000000003.snap",
        ]
    );
}

#[test]
fn store_garbled_snapshot_falls_back_to_previous() {
    let pristine = tempfile::tempdir().unwrap();
    let (snap3, s1, log) = build(pristine.path());
    // Flip one bit at a spread of offsets, including the header and the trailer.
    for off in (0..snap3.len()).step_by(3).chain([snap3.len() - 1]) {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), tmp.path());
        let path = snapshot(tmp.path(), 3);
        std::fs::write(&path, &snap3).unwrap();
        flip(&path, off as u64, 0x10);
        let (_store, recovered) = open(tmp.path());
        assert_eq!(recovered.snapshot_base, Some(2), "offset {off}");
        assert_eq!(recovered.snapshot_records, s1);
        assert_eq!(recovered.log_records, log);
    }
    // Bytes after the trailer also make the snapshot unusable.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(pristine.path(), tmp.path());
    let mut longer = snap3.clone();
    longer.extend_from_slice(&[0; 3]);
    std::fs::write(snapshot(tmp.path(), 3), &longer).unwrap();
    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_base, Some(2));
}

#[test]
fn store_only_snapshot_torn_reports_missing_segments() {
    // With its predecessors already deleted, a damaged sole snapshot cannot be replaced:
    // the surviving segments are replayed and the gap is reported.
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = open(tmp.path());
    append_all(&mut store, &records(3, 64));
    let base = store.rotate().unwrap();
    store.begin_snapshot(base, b"h").unwrap().finish().unwrap();
    append_all(&mut store, &[b"tail".to_vec()]);
    drop(store);
    let path = snapshot(tmp.path(), base);
    let len = std::fs::metadata(&path).unwrap().len();
    cut(&path, len - 1);

    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_base, None);
    assert_eq!(recovered.log_records, vec![b"tail".to_vec()]);
    assert!(recovered
        .truncated
        .iter()
        .any(|n| matches!(n.reason, TruncationReason::TornSnapshot(_))));
    assert!(recovered
        .truncated
        .iter()
        .any(|n| n.reason == TruncationReason::MissingSegments { first: 1, last: 1 }));
}
