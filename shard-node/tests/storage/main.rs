//! Integration tests of the store: the effect log and snapshots on disk, and durability of a
//! real node across crashes and restarts. One module per former test file, all linked into one
//! test binary.

#[path = "../common/mod.rs"]
mod common;
#[path = "../store_support/mod.rs"]
mod store_support;

mod crash_recovery;
mod disk_full;
mod store_bad_crc;
mod store_empty_dir;
mod store_fsync_failure;
mod store_garbage_tail;
mod store_group_commit;
mod store_prop;
mod store_roundtrip;
mod store_snapshot;
mod store_torn_snapshot;
mod store_torn_tail;
