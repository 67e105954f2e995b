//! Helpers shared by the `store_*` integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use shard_node::store::{segment_file_name, snapshot_file_name, FsyncPolicy, Recovered, Store};

/// Length of every file header.
pub const FILE_HEADER_LEN: u64 = 24;
/// Length of every record's `len | crc` prefix.
pub const FRAME_HEADER_LEN: u64 = 8;

/// Deterministic records of varied sizes (including an empty one) derived from `seed`.
pub fn records(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = if i % 7 == 3 {
                0
            } else {
                (state >> 33) as usize % 300
            };
            (0..len)
                .map(|j| (state >> ((j % 8) * 8)) as u8 ^ j as u8)
                .collect()
        })
        .collect()
}

/// Opens the store in `dir`, panicking on error.
pub fn open(dir: &Path) -> (Store, Recovered) {
    Store::open(dir, FsyncPolicy::Always).expect("open store")
}

/// Appends and flushes `recs`.
pub fn append_all(store: &mut Store, recs: &[Vec<u8>]) {
    for r in recs {
        store.append(r).expect("append");
    }
    store.flush().expect("flush");
}

/// Opens the store, appends `recs`, flushes and closes it.
pub fn write_records(dir: &Path, recs: &[Vec<u8>]) {
    let (mut store, _) = open(dir);
    append_all(&mut store, recs);
    store.close().expect("close");
}

pub fn segment(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

pub fn snapshot(dir: &Path, seq: u64) -> PathBuf {
    dir.join(snapshot_file_name(seq))
}

/// Sorted file names in `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Copies every regular file of `src` into `dst` (created if needed).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("create dst");
    for e in fs::read_dir(src).expect("read dir") {
        let e = e.expect("entry");
        fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
}

/// Encoded size of one record.
pub fn framed_len(r: &[u8]) -> u64 {
    FRAME_HEADER_LEN + r.len() as u64
}

/// Truncates the file at `path` to `len` bytes.
pub fn cut(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for cut")
        .set_len(len)
        .expect("set_len");
}

/// Appends raw bytes to the file at `path`.
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append")
        .write_all(bytes)
        .expect("append bytes");
}

/// XORs the byte at `offset` of the file at `path` with `mask`.
pub fn flip(path: &Path, offset: u64, mask: u8) {
    let mut data = fs::read(path).expect("read");
    data[offset as usize] ^= mask;
    fs::write(path, data).expect("write");
}
