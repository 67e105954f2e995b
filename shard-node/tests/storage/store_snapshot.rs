//! Snapshots: recovery from a snapshot plus the segments after it, compaction deleting
//! superseded files, writing a snapshot on another thread while appends go on.

use crate::store_support;
use crate::store_support::{append_all, names, open, records, segment, snapshot};
use shard_node::store::{FsyncPolicy, Store, StoreError};

#[test]
fn store_snapshot_plus_later_segments_recover_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let before = records(10, 41);
    let state = records(4, 42);
    let after = records(6, 43);
    let later = records(3, 44);

    let (mut store, _) = open(tmp.path());
    append_all(&mut store, &before);
    let base = store.rotate().unwrap();
    assert_eq!(base, 2);
    let mut writer = store.begin_snapshot(base, b"state-header").unwrap();
    // The store keeps appending to the new segment while the snapshot is being written.
    append_all(&mut store, &after);
    for r in &state {
        writer.add(r).unwrap();
    }
    assert_eq!(writer.records(), state.len() as u64);
    writer.finish().unwrap();
    store.rotate().unwrap();
    append_all(&mut store, &later);
    let info = store.info();
    assert_eq!(info.snapshot_base, Some(2));
    assert!(info.snapshot_bytes.unwrap() > 0);
    assert_eq!(info.segments, 2);
    drop(store);

    let (store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_base, Some(2));
    assert_eq!(
        recovered.snapshot_header.as_deref(),
        Some(&b"state-header"[..])
    );
    assert_eq!(recovered.snapshot_records, state);
    let log: Vec<Vec<u8>> = after.iter().chain(&later).cloned().collect();
    assert_eq!(recovered.log_records, log);
    assert!(recovered.truncated.is_empty());
    assert_eq!(store.current_seq(), 3);
    assert_eq!(
        store.snapshot_size(),
        std::fs::metadata(snapshot(tmp.path(), 2))
            .ok()
            .map(|m| m.len())
    );
}

#[test]
fn store_rotate_snapshot_finish_deletes_superseded_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = open(tmp.path());
    append_all(&mut store, &records(5, 45));
    store.rotate().unwrap();
    append_all(&mut store, &records(5, 46));
    let base = store.rotate().unwrap();
    assert_eq!(base, 3);
    let mut w = store.begin_snapshot(base, b"h1").unwrap();
    w.add(b"s1").unwrap();
    // Nothing is deleted before the snapshot is installed.
    assert_eq!(
        names(tmp.path()),
        vec![
            "effects.00000000000000000001.log",
            "effects.00000000000000000002.log",
            "effects.00000000000000000003.log",
            "snapshot.00000000000000000003.snap.tmp",
        ]
    );
    w.finish().unwrap();
    assert_eq!(
        names(tmp.path()),
        vec![
            "effects.00000000000000000003.log",
            "snapshot.00000000000000000003.snap",
        ]
    );

    append_all(&mut store, &[b"x".to_vec()]);
    let base = store.rotate().unwrap();
    let mut w = store.begin_snapshot(base, b"h2").unwrap();
    w.add(b"s2").unwrap();
    w.finish().unwrap();
    assert_eq!(
        names(tmp.path()),
        vec![
            "effects.00000000000000000004.log",
            "snapshot.00000000000000000004.snap",
        ]
    );
    assert_eq!(store.info().segments, 1);
    drop(store);

    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_header.as_deref(), Some(&b"h2"[..]));
    assert_eq!(recovered.snapshot_records, vec![b"s2".to_vec()]);
    assert!(recovered.log_records.is_empty());
}

#[test]
fn store_snapshot_written_on_another_thread_while_appending() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::EverySec).unwrap();
    append_all(&mut store, &records(20, 47));
    let base = store.rotate().unwrap();
    let state = records(500, 48);
    let mut writer = store.begin_snapshot(base, b"").unwrap();
    let to_write = state.clone();
    let worker = std::thread::spawn(move || {
        for r in &to_write {
            writer.add(r).unwrap();
        }
        writer.finish()
    });
    let concurrent = records(200, 49);
    for r in &concurrent {
        store.append(r).unwrap();
        store.flush().unwrap();
    }
    worker.join().unwrap().unwrap();
    drop(store);

    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_base, Some(base));
    assert_eq!(recovered.snapshot_records, state);
    assert_eq!(recovered.log_records, concurrent);
    assert!(!segment(tmp.path(), 1).exists());
}

#[test]
fn store_snapshot_abandoned_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = open(tmp.path());
    append_all(&mut store, &records(3, 50));
    let base = store.rotate().unwrap();
    let mut w = store.begin_snapshot(base, b"h").unwrap();
    w.add(b"partial").unwrap();
    drop(w);
    assert_eq!(
        names(tmp.path()),
        vec![
            "effects.00000000000000000001.log",
            "effects.00000000000000000002.log",
        ]
    );
    let (_s, recovered) = {
        drop(store);
        open(tmp.path())
    };
    assert_eq!(recovered.snapshot_base, None);
    assert_eq!(recovered.log_records, records(3, 50));
}

#[test]
fn store_stale_snapshot_tmp_is_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    store_support::write_records(tmp.path(), &records(2, 51));
    std::fs::write(
        tmp.path().join("snapshot.00000000000000000001.snap.tmp"),
        b"half a snapshot",
    )
    .unwrap();
    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.log_records, records(2, 51));
    assert!(recovered.truncated.is_empty());
    assert_eq!(names(tmp.path()), vec!["effects.00000000000000000001.log"]);
}

#[test]
fn store_snapshot_base_is_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = open(tmp.path());
    assert!(matches!(
        store.begin_snapshot(0, b""),
        Err(StoreError::InvalidSnapshotBase { base: 0, .. })
    ));
    assert!(matches!(
        store.begin_snapshot(2, b""),
        Err(StoreError::InvalidSnapshotBase { base: 2, .. })
    ));
    let base = store.rotate().unwrap();
    let w = store.begin_snapshot(base, b"").unwrap();
    // Only one writer per base at a time.
    assert!(matches!(
        store.begin_snapshot(base, b""),
        Err(StoreError::InvalidSnapshotBase { .. })
    ));
    w.finish().unwrap();
    store.rotate().unwrap();
    // Older than the installed snapshot.
    assert!(matches!(
        store.begin_snapshot(1, b""),
        Err(StoreError::InvalidSnapshotBase { base: 1, .. })
    ));
}

#[test]
fn store_snapshot_from_segment_base_without_rotation_covers_nothing_twice() {
    // A snapshot whose base is the current segment, taken right after opening an empty
    // store: recovery must not replay anything twice.
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = open(tmp.path());
    let w = store.begin_snapshot(store.current_seq(), b"empty").unwrap();
    w.finish().unwrap();
    append_all(&mut store, &[b"a".to_vec(), b"b".to_vec()]);
    drop(store);
    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_base, Some(1));
    assert!(recovered.snapshot_records.is_empty());
    assert_eq!(recovered.log_records, vec![b"a".to_vec(), b"b".to_vec()]);
}
