//! Records survive a reopen, under every fsync policy and across segment rotations.

use crate::store_support::{append_all, records};
use shard_node::store::{FsyncPolicy, Store};

#[test]
fn store_records_round_trip_across_reopen_for_every_policy() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        let tmp = tempfile::tempdir().unwrap();
        let first = records(50, 1);
        let mut second = records(30, 2);
        second.push(vec![0xEE; 1 << 20]);

        let (mut store, recovered) = Store::open(tmp.path(), policy).unwrap();
        assert!(recovered.log_records.is_empty());
        append_all(&mut store, &first);
        drop(store);

        let (mut store, recovered) = Store::open(tmp.path(), policy).unwrap();
        assert_eq!(recovered.log_records, first, "{policy}");
        assert!(recovered.truncated.is_empty(), "{policy}");
        append_all(&mut store, &second);
        store.close().unwrap();

        let (_store, recovered) = Store::open(tmp.path(), policy).unwrap();
        let all: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
        assert_eq!(recovered.log_records, all, "{policy}");
        assert!(recovered.truncated.is_empty(), "{policy}");
    }
}

#[test]
fn store_records_round_trip_across_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let recs = records(40, 3);
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::EverySec).unwrap();
    for chunk in recs.chunks(7) {
        append_all(&mut store, chunk);
        let before = store.current_seq();
        assert_eq!(store.rotate().unwrap(), before + 1);
    }
    assert_eq!(store.info().segments, recs.chunks(7).count() + 1);
    drop(store);

    let (store, recovered) = Store::open(tmp.path(), FsyncPolicy::EverySec).unwrap();
    assert_eq!(recovered.log_records, recs);
    assert!(recovered.truncated.is_empty());
    assert_eq!(store.current_seq(), recs.chunks(7).count() as u64 + 1);
}

#[test]
fn store_unflushed_records_are_written_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::No).unwrap();
    store.append(b"buffered").unwrap();
    drop(store);
    let (_store, recovered) = Store::open(tmp.path(), FsyncPolicy::No).unwrap();
    assert_eq!(recovered.log_records, vec![b"buffered".to_vec()]);
}

#[test]
fn store_sync_handle_syncs_only_pending_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::EverySec).unwrap();
    let handle = store.sync_handle();
    assert!(!handle.sync().unwrap(), "nothing to sync yet");
    store.append(b"x").unwrap();
    store.flush().unwrap();
    assert_eq!(handle.pending_bytes(), 9);
    assert_eq!(
        store.fsync_stats().count,
        0,
        "everysec does not sync in flush"
    );
    let worker = std::thread::spawn(move || handle.sync().unwrap());
    assert!(worker.join().unwrap());
    let stats = store.fsync_stats();
    assert_eq!(stats.count, 1);
    assert_eq!(stats.buckets.iter().sum::<u64>(), 1);
    assert!(stats.max_micros >= stats.last_micros);
    assert_eq!(store.info().pending_fsync_bytes, 0);
    assert!(!store.sync_handle().sync().unwrap());
}

#[test]
fn store_always_policy_syncs_every_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::Always).unwrap();
    for i in 0..3u8 {
        store.append(&[i]).unwrap();
        store.flush().unwrap();
    }
    // A flush with nothing new does not sync again.
    store.flush().unwrap();
    assert_eq!(store.fsync_stats().count, 3);
    assert_eq!(store.info().pending_fsync_bytes, 0);
}
