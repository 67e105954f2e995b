//! Argument helpers shared by command families.

use bytes::Bytes;
use std::collections::HashSet;

/// The distinct arguments for which `present` holds, in argument order.
pub fn distinct_present(args: &[Bytes], present: impl Fn(&[u8]) -> bool) -> Vec<&Bytes> {
    let mut out: Vec<&Bytes> = Vec::with_capacity(args.len().min(64));
    if args.len() <= 8 {
        for a in args {
            if present(a) && !out.iter().any(|o| o[..] == a[..]) {
                out.push(a);
            }
        }
    } else {
        let mut seen: HashSet<&[u8], ahash::RandomState> = HashSet::default();
        for a in args {
            if present(a) && seen.insert(&a[..]) {
                out.push(a);
            }
        }
    }
    out
}
