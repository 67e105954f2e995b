//! Argument helpers shared by command families: distinct keys, and the arguments of the
//! multi-key pops.

use crate::commands::{is, CmdError, ERR_SYNTAX};
use bytes::Bytes;
use std::borrow::Cow;
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

/// What the multi-key pops (LMPOP, BLMPOP, ZMPOP, BZMPOP) were asked: the keys, the side the
/// word after them names, and how many elements to pop.
pub struct MultiPopArgs<'a, Side> {
    pub keys: &'a [Bytes],
    pub side: Side,
    pub count: usize,
}

/// Parses `numkeys key... SIDE [COUNT count]` (`args` starts at `numkeys`) with Redis's errors;
/// `side` reads the word after the keys.
pub fn multi_pop_args<'a, Side>(
    args: &'a [Bytes],
    side: impl Fn(&[u8]) -> Result<Side, CmdError>,
) -> Result<MultiPopArgs<'a, Side>, CmdError> {
    let numkeys = match args.first().and_then(|a| crate::resp::parse_i64_strict(a)) {
        Some(n) if n >= 1 => n as u64,
        _ => return Err(Cow::Borrowed("ERR numkeys should be greater than 0")),
    };
    // The side follows the keys; too few arguments for them is a syntax error.
    let side_at = match usize::try_from(numkeys) {
        Ok(n) if n < args.len().saturating_sub(1) => n + 1,
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    };
    let side = side(&args[side_at])?;
    let mut count: Option<i64> = None;
    let mut i = side_at + 1;
    while i < args.len() {
        if count.is_none() && is(&args[i], "count") && i + 1 < args.len() {
            count = Some(match crate::resp::parse_i64_strict(&args[i + 1]) {
                Some(n) if n >= 1 => n,
                _ => return Err(Cow::Borrowed("ERR count should be greater than 0")),
            });
            i += 2;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    Ok(MultiPopArgs {
        keys: &args[1..side_at],
        side,
        count: usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX),
    })
}
