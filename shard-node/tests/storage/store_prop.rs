//! Property: whatever happens to the tail of the log (cut, garbled byte, appended garbage),
//! the recovered records are a prefix of what was written, reopening is clean afterwards,
//! and records appended after recovery survive.

use crate::store_support;
use crate::store_support::{open, segment};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Damage {
    Cut(u64),
    Flip(u64, u8),
    Garbage(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<u64>().prop_map(Damage::Cut),
        (any::<u64>(), 1..=255u8).prop_map(|(o, m)| Damage::Flip(o, m)),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Garbage),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_prop_recovered_records_are_a_prefix(
        recs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..30),
        rotate_every in 1usize..10,
        damage in damage(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (mut store, _) = open(tmp.path());
        for (i, r) in recs.iter().enumerate() {
            store.append(r).unwrap();
            if (i + 1) % rotate_every == 0 {
                store.rotate().unwrap();
            }
        }
        store.flush().unwrap();
        let last = segment(tmp.path(), store.current_seq());
        drop(store);

        let len = std::fs::metadata(&last).unwrap().len();
        match &damage {
            Damage::Cut(at) => store_support::cut(&last, at % (len + 1)),
            Damage::Flip(at, mask) => store_support::flip(&last, at % len, *mask),
            Damage::Garbage(bytes) => store_support::append_bytes(&last, bytes),
        }

        let (mut store, recovered) = open(tmp.path());
        prop_assert!(recovered.log_records.len() <= recs.len());
        prop_assert_eq!(&recovered.log_records[..], &recs[..recovered.log_records.len()]);
        store.append(b"survivor").unwrap();
        store.flush().unwrap();
        drop(store);

        let (_store, again) = open(tmp.path());
        prop_assert!(again.truncated.is_empty(), "{:?}", again.truncated);
        let mut expected = recovered.log_records.clone();
        expected.push(b"survivor".to_vec());
        prop_assert_eq!(again.log_records, expected);
    }
}
