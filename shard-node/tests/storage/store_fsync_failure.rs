//! A failed write or fsync fails the store for good: every later append and flush is refused,
//! whether the failure happened in the store or in a background sync handle.

use std::time::{Duration, Instant};

use crate::store_support::{append_all, names, open, records};
use shard_node::store::{FsyncPolicy, Store, StoreError};

#[test]
fn store_failed_fsync_refuses_further_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::Always).unwrap();
    append_all(&mut store, &records(3, 71));
    let faults = store.fault_injector();
    faults.fail_syncs(true);

    store.append(b"doomed").unwrap();
    let err = store.flush().unwrap_err();
    assert!(
        matches!(&err, StoreError::Failed(m) if m.contains("fdatasync")),
        "{err}"
    );
    let msg = store.failed().expect("store is failed").to_owned();
    assert!(msg.contains("injected fsync failure"), "{msg}");
    assert_eq!(store.fsync_stats().failures, 1);

    // Clearing the fault does not un-fail the store.
    faults.fail_syncs(false);
    assert!(matches!(store.append(b"x"), Err(StoreError::Failed(m)) if m == msg));
    assert!(matches!(store.flush(), Err(StoreError::Failed(_))));
    assert!(matches!(store.rotate(), Err(StoreError::Failed(_))));
    assert!(matches!(
        store.sync_handle().sync(),
        Err(StoreError::Failed(_))
    ));
    assert_eq!(store.info().failed.as_deref(), Some(msg.as_str()));
    drop(store);

    // After a restart everything that reached the file is recovered.
    let (mut store, recovered) = open(tmp.path());
    let mut expected = records(3, 71);
    expected.push(b"doomed".to_vec());
    assert_eq!(recovered.log_records, expected);
    assert_eq!(store.failed(), None);
    store.append(b"fine again").unwrap();
    store.flush().unwrap();
}

#[test]
fn store_failed_write_refuses_further_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::No).unwrap();
    store.fault_injector().fail_writes(true);
    store.append(b"lost").unwrap();
    let err = store.flush().unwrap_err();
    assert!(matches!(&err, StoreError::Failed(m) if m.contains("injected write failure")));
    store.fault_injector().fail_writes(false);
    assert!(matches!(store.append(b"y"), Err(StoreError::Failed(_))));
    drop(store);
    let (_store, recovered) = open(tmp.path());
    assert!(recovered.log_records.is_empty());
}

#[test]
fn store_failed_background_sync_fails_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::EverySec).unwrap();
    let handle = store.sync_handle();
    store.append(b"a").unwrap();
    store.flush().unwrap();
    store.fault_injector().fail_syncs(true);

    let worker = std::thread::spawn(move || handle.sync());
    let err = worker.join().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Failed(_)));
    assert!(store.failed().is_some());
    assert!(matches!(store.append(b"b"), Err(StoreError::Failed(_))));
    assert!(matches!(store.flush(), Err(StoreError::Failed(_))));
}

#[test]
fn store_periodic_sync_runs_and_stops_on_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(tmp.path(), FsyncPolicy::EverySec).unwrap();
    let periodic = store
        .sync_handle()
        .spawn_periodic(Duration::from_millis(5))
        .unwrap();
    store.append(b"a").unwrap();
    store.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.info().pending_fsync_bytes != 0 {
        assert!(Instant::now() < deadline, "periodic sync never ran");
        std::thread::yield_now();
    }
    assert!(store.fsync_stats().count >= 1);

    store.fault_injector().fail_syncs(true);
    store.append(b"b").unwrap();
    store.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.failed().is_none() {
        assert!(Instant::now() < deadline, "failure never observed");
        std::thread::yield_now();
    }
    assert!(matches!(store.append(b"c"), Err(StoreError::Failed(_))));
    drop(periodic);
}

#[test]
fn store_failed_snapshot_does_not_fail_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = open(tmp.path());
    append_all(&mut store, &records(2, 72));
    let base = store.rotate().unwrap();
    let mut w = store.begin_snapshot(base, b"h").unwrap();
    w.add(b"s").unwrap();
    store.fault_injector().fail_syncs(true);
    assert!(matches!(w.finish(), Err(StoreError::Io { .. })));
    store.fault_injector().fail_syncs(false);
    assert_eq!(store.failed(), None);
    assert_eq!(
        names(tmp.path()),
        vec![
            "effects.00000000000000000001.log",
            "effects.00000000000000000002.log",
        ]
    );
    store.append(b"still writable").unwrap();
    store.flush().unwrap();
    drop(store);
    let (_store, recovered) = open(tmp.path());
    assert_eq!(recovered.snapshot_base, None);
    assert_eq!(recovered.log_records.len(), 3);
}
