//! The SCAN family's cursors, options and paging (SCAN, SSCAN, HSCAN, ZSCAN).
//!
//! Contract: every element has a fixed 64-bit position (a hash of its bytes that is the same in
//! every process); a cursor is the position to resume from and a call returns the elements with
//! the next positions, so every element present for the whole iteration is returned, and only
//! once, whatever is added or removed meanwhile. A page holds at least `COUNT` elements and at
//! least 1/[`SCAN_MAX_CALLS`] of the collection, so a full iteration never takes more than
//! about [`SCAN_MAX_CALLS`] calls (each call reads the whole collection).

use crate::commands::{int_arg, is, CmdError, ERR_SYNTAX};
use crate::glob::glob_match;
use crate::resp::ReplyWriter;
use bytes::Bytes;
use std::borrow::Cow;

/// Most calls a full scan of a large collection takes: pages grow to `len / SCAN_MAX_CALLS`.
pub const SCAN_MAX_CALLS: usize = 256;

/// Parses a SCAN cursor like Redis (`strtoul` in base 10: optional sign, a negative value wraps,
/// no blanks, no overflow; the empty string is cursor 0).
pub fn parse_scan_cursor(arg: &[u8]) -> Result<u64, CmdError> {
    let invalid = || Cow::Borrowed("ERR invalid cursor");
    let (negative, digits) = match arg.first() {
        Some(b'-') => (true, &arg[1..]),
        Some(b'+') => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() {
        // `strtoul` parsed nothing: the end pointer is the start of the text, which is only
        // accepted when the whole text is empty.
        return if arg.is_empty() {
            Ok(0)
        } else {
            Err(invalid())
        };
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(invalid());
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(invalid)?;
    }
    Ok(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// The options after a SCAN-family cursor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScanOptions<'a> {
    /// `COUNT`, at least 1 (default 10).
    pub count: usize,
    /// `MATCH` pattern; `None` when absent or a lone `*`.
    pub pattern: Option<&'a [u8]>,
    /// `TYPE` (keyspace SCAN only).
    pub type_name: Option<&'a [u8]>,
}

impl ScanOptions<'_> {
    /// True when `item` passes the MATCH filter.
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern.is_none_or(|p| glob_match(p, item))
    }
}

/// Parses `[MATCH pattern] [COUNT count]` (and `[TYPE type]` when `allow_type`, for SCAN) with
/// Redis's errors: a bad COUNT is `ERR value is not an integer or out of range`, a COUNT below 1
/// or an unknown/incomplete option is `ERR syntax error`.
pub fn parse_scan_options(args: &[Bytes], allow_type: bool) -> Result<ScanOptions<'_>, CmdError> {
    let mut opts = ScanOptions {
        count: 10,
        pattern: None,
        type_name: None,
    };
    let mut i = 0;
    while i < args.len() {
        let has_value = i + 1 < args.len();
        if is(&args[i], "count") && has_value {
            let count = int_arg(&args[i + 1])?;
            if count < 1 {
                return Err(Cow::Borrowed(ERR_SYNTAX));
            }
            opts.count = usize::try_from(count).unwrap_or(usize::MAX);
        } else if is(&args[i], "match") && has_value {
            let pattern = &args[i + 1][..];
            opts.pattern = if pattern == b"*" { None } else { Some(pattern) };
        } else if allow_type && is(&args[i], "type") && has_value {
            opts.type_name = Some(&args[i + 1][..]);
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        i += 2;
    }
    Ok(opts)
}

/// The fixed scan position of an element: a 64-bit hash of its bytes (the same in every
/// process and on every platform), never 0 (cursor 0 means start and end).
pub fn scan_position(item: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = K ^ (item.len() as u64).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    let mut chunks = item.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 29;
    }
    // MurmurHash3's finalizer spreads the bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h.max(1)
}

/// One page of a scan over `items` (each element's name and what to return for it), resuming at
/// `cursor`: the elements with the smallest positions at or after the cursor, in position order,
/// at least `count` of them (more for large collections, see the module docs; elements sharing a
/// position always come together), and the cursor of the next page (0 when this is the last).
pub fn scan_page<'a, T>(
    items: impl Iterator<Item = (&'a [u8], T)>,
    cursor: u64,
    count: usize,
) -> (u64, Vec<T>) {
    let mut total = 0usize;
    let mut candidates: Vec<(u64, T)> = Vec::new();
    for (name, item) in items {
        total += 1;
        let pos = scan_position(name);
        if pos >= cursor {
            candidates.push((pos, item));
        }
    }
    let page = count.max(total.div_ceil(SCAN_MAX_CALLS)).max(1);
    if candidates.len() <= page {
        candidates.sort_unstable_by_key(|c| c.0);
        return (0, candidates.into_iter().map(|c| c.1).collect());
    }
    candidates.select_nth_unstable_by_key(page - 1, |c| c.0);
    let boundary = candidates[page - 1].0;
    // Everything at the boundary position goes into this page, so the next cursor can be the
    // first position after it.
    let mut next: Option<u64> = None;
    let mut taken = Vec::with_capacity(page);
    for c in candidates {
        if c.0 <= boundary {
            taken.push(c);
        } else {
            next = Some(next.map_or(c.0, |n| n.min(c.0)));
        }
    }
    taken.sort_unstable_by_key(|c| c.0);
    (next.unwrap_or(0), taken.into_iter().map(|c| c.1).collect())
}

/// `*2 $1 0 *0`: the reply to a scan of a missing key.
pub fn write_empty_scan(out: &mut ReplyWriter<'_>) {
    out.array(2);
    out.bulk(b"0");
    out.array(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ERR_NOT_INTEGER;

    #[test]
    fn scan_cursor_parsing() {
        assert_eq!(parse_scan_cursor(b"0").unwrap(), 0);
        assert_eq!(parse_scan_cursor(b"").unwrap(), 0);
        assert_eq!(parse_scan_cursor(b"+12").unwrap(), 12);
        assert_eq!(parse_scan_cursor(b"-1").unwrap(), u64::MAX);
        assert_eq!(
            parse_scan_cursor(b"18446744073709551615").unwrap(),
            u64::MAX
        );
        for bad in [
            &b"18446744073709551616"[..],
            b" 0",
            b"0 ",
            b"abc",
            b"-",
            b"+",
            b"0x1",
        ] {
            assert_eq!(
                parse_scan_cursor(bad).unwrap_err(),
                "ERR invalid cursor",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scan_pages_cover_everything_once_despite_changes() {
        let mut items: Vec<Vec<u8>> = (0..5000).map(|i| format!("m{i}").into_bytes()).collect();
        let mut seen = std::collections::HashMap::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            let (next, page) = scan_page(items.iter().map(|m| (&m[..], m.clone())), cursor, 10);
            calls += 1;
            for m in page {
                *seen.entry(m).or_insert(0) += 1;
            }
            // Elements come and go between calls.
            items.push(format!("new{calls}").into_bytes());
            items.retain(|m| m != format!("m{}", calls * 7).as_bytes());
            if next == 0 {
                break;
            }
            assert!(next > cursor);
            cursor = next;
        }
        assert!(calls <= SCAN_MAX_CALLS + 1, "{calls} calls");
        for i in 0..5000 {
            let name = format!("m{i}").into_bytes();
            let removed = i % 7 == 0 && i / 7 >= 1 && i / 7 <= calls;
            let n = seen.get(&name).copied().unwrap_or(0);
            if !removed {
                assert_eq!(n, 1, "m{i} returned {n} times");
            } else {
                assert!(n <= 1);
            }
        }
    }

    #[test]
    fn scan_page_small_collections_and_collisions() {
        let items = [&b"a"[..], b"b", b"c"];
        let (next, page) = scan_page(items.iter().map(|m| (*m, *m)), 0, 10);
        assert_eq!(next, 0);
        assert_eq!(page.len(), 3);
        let (next, page) = scan_page(items.iter().map(|m| (*m, *m)), 0, 1);
        assert_ne!(next, 0);
        assert_eq!(page.len(), 1);
        // Duplicate names share a position and always travel together.
        let same = [&b"x"[..], b"x", b"x", b"y"];
        let (_, page) = scan_page(same.iter().map(|m| (*m, *m)), 0, 1);
        assert!(page.len() == 3 || page == vec![&b"y"[..]]);
        assert_ne!(scan_position(b""), 0);
    }

    #[test]
    fn scan_options() {
        let args: Vec<Bytes> = ["MATCH", "a*", "count", "5"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        let o = parse_scan_options(&args, false).unwrap();
        assert_eq!(o.count, 5);
        assert_eq!(o.pattern, Some(&b"a*"[..]));
        assert!(o.matches(b"abc") && !o.matches(b"b"));
        let star: Vec<Bytes> = vec![Bytes::from("match"), Bytes::from("*")];
        assert_eq!(parse_scan_options(&star, false).unwrap().pattern, None);
        let bad = |v: &[&str]| {
            let a: Vec<Bytes> = v.iter().map(|s| Bytes::from(s.to_string())).collect();
            parse_scan_options(&a, false).unwrap_err()
        };
        assert_eq!(bad(&["count", "0"]), ERR_SYNTAX);
        assert_eq!(bad(&["count", "x"]), ERR_NOT_INTEGER);
        assert_eq!(bad(&["match"]), ERR_SYNTAX);
        assert_eq!(bad(&["type", "string"]), ERR_SYNTAX);
        let typed: Vec<Bytes> = vec![Bytes::from("TYPE"), Bytes::from("set")];
        assert_eq!(
            parse_scan_options(&typed, true).unwrap().type_name,
            Some(&b"set"[..])
        );
    }
}
