//! Opening a data directory that does not exist yet, or is empty.

use crate::store_support::{names, segment, FILE_HEADER_LEN};
use shard_node::store::{FsyncPolicy, Recovered, Store};

#[test]
fn store_open_creates_missing_dir_and_first_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("data");
    let (store, recovered) = Store::open(&dir, FsyncPolicy::EverySec).unwrap();
    assert_eq!(recovered, Recovered::default());
    assert_eq!(store.current_seq(), 1);
    assert_eq!(store.failed(), None);
    assert_eq!(names(&dir), vec!["effects.00000000000000000001.log"]);
    assert_eq!(
        std::fs::metadata(segment(&dir, 1)).unwrap().len(),
        FILE_HEADER_LEN
    );
    let header = std::fs::read(segment(&dir, 1)).unwrap();
    assert_eq!(&header[..8], b"AADBLOG1");
    drop(store);

    // Reopening an empty log is clean and reuses the same segment.
    let (store, recovered) = Store::open(&dir, FsyncPolicy::EverySec).unwrap();
    assert_eq!(recovered, Recovered::default());
    assert_eq!(store.current_seq(), 1);
    assert_eq!(names(&dir), vec!["effects.00000000000000000001.log"]);
}

#[test]
fn store_open_ignores_unrelated_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(tmp.path().join("effects.1.log"), b"not ours").unwrap();
    let (_store, recovered) = Store::open(tmp.path(), FsyncPolicy::No).unwrap();
    assert_eq!(recovered, Recovered::default());
    assert_eq!(
        std::fs::read(tmp.path().join("notes.txt")).unwrap(),
        b"hello"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("effects.1.log")).unwrap(),
        b"not ours"
    );
}
