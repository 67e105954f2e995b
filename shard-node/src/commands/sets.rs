//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SINTER, SUNION, SDIFF,
//! SINTERCARD, SINTERSTORE, SUNIONSTORE, SDIFFSTORE, SSCAN, SPOP, SRANDMEMBER, SMOVE; plus what
//! the whole SCAN family shares: the MATCH glob matcher ([`glob_match`]), cursor and option
//! parsing ([`parse_scan_cursor`], [`parse_scan_options`]) and the cursor scheme
//! ([`scan_page`]).
//!
//! Contract:
//! - A set is an observed-remove set where adds win (`docs/semantics.md`, Sets). `SADD` of a
//!   member that is already there still commits an add, so a concurrent remove in another region
//!   that did not see this add cannot take the member away; the reply counts only new members.
//! - A removal that leaves a set empty (SREM, SPOP, SMOVE) is committed as a `Del` of the key:
//!   like Redis, the emptied key is gone, with its expiry.
//! - The store commands replace the destination: a `Del` of whatever it held, then an add of
//!   every member into a new set. An empty result only deletes the destination.
//! - `SPOP` removes the popped members with observed removes; two regions may pop the same
//!   member concurrently and both return it.
//! - Scan cursors: every element has a fixed 64-bit position (a hash of its bytes that is the
//!   same in every process); a cursor is the position to resume from and a call returns the
//!   elements with the next positions, so every element present for the whole iteration is
//!   returned, and only once, whatever is added or removed meanwhile. Collections Redis keeps in
//!   a compact encoding, and collections no larger than `COUNT`, are returned whole in one call
//!   with cursor 0 whatever the cursor (what Redis does for them; a collection that shrinks to
//!   such a size during an iteration is then returned again whole). A page holds at least
//!   `COUNT` elements and at least 1/[`SCAN_MAX_CALLS`] of the collection, so a full iteration
//!   never takes more than about [`SCAN_MAX_CALLS`] calls (each call reads the whole
//!   collection).

use super::*;
use crate::crdt::value::SetValue;
use crate::crdt::{Value, NEW_SLOT};
use rand::Rng;
use std::collections::HashSet;

/// Largest number of elements a random pick with repetitions (negative count) may return;
/// larger requests are refused instead of building an unbounded reply.
pub const MAX_RANDOM_REPLY: u64 = 1 << 24;
/// Most calls a full scan of a large collection takes: pages grow to `len / SCAN_MAX_CALLS`.
pub const SCAN_MAX_CALLS: usize = 256;
/// Largest integer-only set Redis 7.0 keeps as an intset (`set-max-intset-entries`), which SSCAN
/// returns whole.
const INTSET_MAX_ENTRIES: usize = 512;
/// Deepest `*` nesting the glob matcher follows (Redis's protection against abusive patterns).
const GLOB_MAX_NESTING: u32 = 1000;

const ERR_NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
const ERR_COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";
const ERR_RANDOM_TOO_MANY: &str = "ERR value is out of range";

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("sadd", -3, "write denyoom fast", 1, 1, 1, "set", "Adds members to a set.", sadd),
        cmd("srem", -3, "write fast", 1, 1, 1, "set", "Removes members from a set.", srem),
        cmd("smembers", 2, "readonly", 1, 1, 1, "set", "Returns all members of a set.", smembers),
        cmd("sismember", 3, "readonly fast", 1, 1, 1, "set", "Tells whether a member is in a set.", sismember),
        cmd("smismember", -3, "readonly fast", 1, 1, 1, "set", "Tells whether members are in a set.", smismember),
        cmd("scard", 2, "readonly fast", 1, 1, 1, "set", "Returns the number of members of a set.", scard),
        cmd("sinter", -2, "readonly", 1, -1, 1, "set", "Returns the intersection of sets.", sinter),
        cmd("sunion", -2, "readonly", 1, -1, 1, "set", "Returns the union of sets.", sunion),
        cmd("sdiff", -2, "readonly", 1, -1, 1, "set", "Returns the difference of sets.", sdiff),
        cmd("sintercard", -3, "readonly", 0, 0, 0, "set", "Returns the size of the intersection of sets.", sintercard),
        cmd("sinterstore", -3, "write denyoom", 1, -1, 1, "set", "Stores the intersection of sets.", sinterstore),
        cmd("sunionstore", -3, "write denyoom", 1, -1, 1, "set", "Stores the union of sets.", sunionstore),
        cmd("sdiffstore", -3, "write denyoom", 1, -1, 1, "set", "Stores the difference of sets.", sdiffstore),
        cmd("sscan", -3, "readonly", 1, 1, 1, "set", "Iterates over the members of a set.", sscan),
        cmd("spop", -2, "write fast", 1, 1, 1, "set", "Removes and returns random members.", spop),
        cmd("srandmember", -2, "readonly", 1, 1, 1, "set", "Returns random members.", srandmember),
        cmd("smove", 4, "write fast", 1, 2, 1, "set", "Moves a member from one set to another.", smove),
    ]
}

// ---------------------------------------------------------------------------------------------
// Glob matching (MATCH of KEYS, SCAN, SSCAN, HSCAN, ZSCAN)

/// Redis's `stringmatchlen` (case-sensitive): `*` any run, `?` one byte, `[abc]`, `[^a]`,
/// `[a-z]` (ends in either order; bytes compare as C `char`, i.e. signed), `\x` a literal `x`.
/// An unterminated class ends at the end of the pattern. Like Redis, a text can only be matched
/// by consuming it: the empty text matches only the empty pattern (callers treat a lone `*` as
/// match-all themselves, as Redis does), and patterns nesting more than 1000 `*` match nothing.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let mut skip_longer = false;
    glob_at(pattern, text, &mut skip_longer, 0)
}

fn glob_at(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > GLOB_MAX_NESTING {
        return false;
    }
    while let (Some(&pc), Some(&sc)) = (p.first(), s.first()) {
        match pc {
            b'*' => {
                while p.get(1) == Some(&b'*') {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if glob_at(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                // No match for the rest of the pattern anywhere in the rest of the text: an
                // earlier `*` matching more could not help either.
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s = &s[1..];
                p = &p[1..];
            }
            b'[' => {
                p = &p[1..];
                let negate = p.first() == Some(&b'^');
                if negate {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    match p {
                        [b'\\', escaped, ..] => {
                            if *escaped == sc {
                                matched = true;
                            }
                            p = &p[2..];
                        }
                        [b']', ..] | [] => break,
                        [start, b'-', end, ..] => {
                            // C `char` is signed: compare the bytes as i8.
                            let (mut lo, mut hi) = (*start as i8, *end as i8);
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            let c = sc as i8;
                            if c >= lo && c <= hi {
                                matched = true;
                            }
                            p = &p[3..];
                        }
                        [literal, ..] => {
                            if *literal == sc {
                                matched = true;
                            }
                            p = &p[1..];
                        }
                    }
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                // Past the closing `]` (an unterminated class has consumed the whole pattern).
                if !p.is_empty() {
                    p = &p[1..];
                }
            }
            _ => {
                let literal = if pc == b'\\' && p.len() >= 2 {
                    p = &p[1..];
                    p[0]
                } else {
                    pc
                };
                if literal != sc {
                    return false;
                }
                s = &s[1..];
                p = &p[1..];
            }
        }
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

// ---------------------------------------------------------------------------------------------
// The SCAN family's cursor and options

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

// ---------------------------------------------------------------------------------------------
// Helpers shared with the other collection families

/// The set stored at `key`, `None` when absent, or WRONGTYPE.
pub fn read_set<'a>(db: &'a Db, key: &[u8], now_ms: u64) -> Result<Option<&'a SetValue>, CmdError> {
    match db.ks.get(key, now_ms) {
        None => Ok(None),
        Some(slot) => match &slot.value {
            Value::Set(s) => Ok(Some(s)),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

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

/// A SRANDMEMBER / HRANDFIELD count: any integer but `i64::MIN` (Redis's `-LONG_MAX..LONG_MAX`).
pub fn random_count_arg(arg: &[u8]) -> Result<i64, CmdError> {
    let n = int_arg(arg)?;
    if n == i64::MIN {
        return Err(Cow::Borrowed(ERR_COUNT_RANGE));
    }
    Ok(n)
}

/// Refuses a random pick with repetitions larger than [`MAX_RANDOM_REPLY`].
pub fn check_random_reply(count: u64) -> CmdResult {
    if count > MAX_RANDOM_REPLY {
        return Err(Cow::Borrowed(ERR_RANDOM_TOO_MANY));
    }
    Ok(())
}

/// `amount` distinct positions below `len`, ascending (`amount < len`).
pub fn random_positions(len: usize, amount: usize) -> Vec<usize> {
    let mut rng = rand::rng();
    let mut picked = rand::seq::index::sample(&mut rng, len, amount.min(len)).into_vec();
    picked.sort_unstable();
    picked
}

/// The elements of `items` at the ascending `positions`.
pub fn pick_positions<T>(items: impl Iterator<Item = T>, positions: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(positions.len());
    let mut want = positions.iter().peekable();
    for (i, item) in items.enumerate() {
        match want.peek() {
            Some(&&p) if p == i => {
                out.push(item);
                want.next();
            }
            Some(_) => {}
            None => break,
        }
    }
    out
}

fn random_index(len: usize) -> usize {
    rand::rng().random_range(0..len.max(1))
}

/// Puts a whole set's members in the order Redis 7.0 lists them where that order is defined: an
/// integer-only set of at most 512 members is an intset there, listed in ascending numeric
/// order. Other sets keep their storage order.
fn intset_order(members: &mut Vec<&[u8]>) {
    if members.len() > INTSET_MAX_ENTRIES {
        return;
    }
    let mut keyed = Vec::with_capacity(members.len());
    for m in members.iter() {
        match crate::resp::parse_i64_strict(m) {
            Some(v) => keyed.push((v, *m)),
            None => return,
        }
    }
    keyed.sort_unstable_by_key(|k| k.0);
    members.clear();
    members.extend(keyed.into_iter().map(|k| k.1));
}

fn blob_bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

// ---------------------------------------------------------------------------------------------
// Commands

fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let (slot, before) = match ctx.get(key) {
        None => (NEW_SLOT, 0),
        Some(s) => match &s.value {
            Value::Set(set) => (s.created, set.members.len()),
            _ => return Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    };
    let ops = args[2..]
        .iter()
        .map(|m| {
            op(
                key,
                OpKind::SetAdd {
                    slot,
                    member: m.clone(),
                },
            )
        })
        .collect();
    ctx.write(ops);
    let after = match read_set(ctx.db, key, ctx.now_ms) {
        Ok(Some(s)) => s.members.len(),
        _ => before,
    };
    ctx.out.int(after.saturating_sub(before) as i64);
    Ok(())
}

fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let Some(set) = read_set(ctx.db, key, ctx.now_ms)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let gone = distinct_present(&args[2..], |m| set.members.contains_key(m));
    let removed = gone.len();
    let empties = removed == set.members.len();
    if removed > 0 {
        let ops = if empties {
            vec![op(key, OpKind::Del)]
        } else {
            gone.into_iter()
                .map(|m| op(key, OpKind::SetRem { member: m.clone() }))
                .collect()
        };
        ctx.write(ops);
    }
    ctx.out.int(removed as i64);
    Ok(())
}

fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match read_set(ctx.db, &args[1], ctx.now_ms)? {
        None => ctx.out.set(0),
        Some(set) if set.members.len() <= INTSET_MAX_ENTRIES => {
            let mut members: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
            intset_order(&mut members);
            ctx.out.set(members.len());
            for m in members {
                ctx.out.bulk(m);
            }
        }
        Some(set) => {
            ctx.out.set(set.members.len());
            for m in set.members.keys() {
                ctx.out.bulk(m);
            }
        }
    }
    Ok(())
}

fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let found = read_set(ctx.db, &args[1], ctx.now_ms)?
        .is_some_and(|s| s.members.contains_key(&args[2][..]));
    ctx.out.int(i64::from(found));
    Ok(())
}

fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let set = read_set(ctx.db, &args[1], ctx.now_ms)?;
    ctx.out.array(args.len() - 2);
    for m in &args[2..] {
        let found = set.is_some_and(|s| s.members.contains_key(&m[..]));
        ctx.out.int(i64::from(found));
    }
    Ok(())
}

fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = read_set(ctx.db, &args[1], ctx.now_ms)?.map_or(0, |s| s.members.len());
    ctx.out.int(len as i64);
    Ok(())
}

/// The sets at `keys` (`None` for a missing key), or WRONGTYPE if any key holds another type.
fn load_sets<'a>(
    db: &'a Db,
    keys: &[Bytes],
    now_ms: u64,
) -> Result<Vec<Option<&'a SetValue>>, CmdError> {
    keys.iter().map(|k| read_set(db, k, now_ms)).collect()
}

/// Members of the intersection (at most `limit` of them when given).
fn intersection<'a>(sets: &[Option<&'a SetValue>], limit: Option<usize>) -> Vec<&'a [u8]> {
    let mut present: Vec<&SetValue> = Vec::with_capacity(sets.len());
    for s in sets {
        match s {
            Some(s) => present.push(s),
            None => return Vec::new(),
        }
    }
    present.sort_by_key(|s| s.members.len());
    let Some((smallest, others)) = present.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in smallest.members.keys() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        if others.iter().all(|o| o.members.contains_key(m)) {
            out.push(&m[..]);
        }
    }
    out
}

fn union<'a>(sets: &[Option<&'a SetValue>]) -> Vec<&'a [u8]> {
    let present: Vec<&SetValue> = sets.iter().flatten().copied().collect();
    match present.as_slice() {
        [] => Vec::new(),
        [only] => only.members.keys().map(|m| &m[..]).collect(),
        many => {
            let capacity = many.iter().map(|s| s.members.len()).max().unwrap_or(0);
            let mut seen: HashSet<&[u8], ahash::RandomState> =
                HashSet::with_capacity_and_hasher(capacity, ahash::RandomState::default());
            let mut out = Vec::with_capacity(capacity);
            for s in many {
                for m in s.members.keys() {
                    if seen.insert(&m[..]) {
                        out.push(&m[..]);
                    }
                }
            }
            out
        }
    }
}

fn difference<'a>(sets: &[Option<&'a SetValue>]) -> Vec<&'a [u8]> {
    let Some((Some(first), others)) = sets.split_first() else {
        return Vec::new();
    };
    let others: Vec<&SetValue> = others.iter().flatten().copied().collect();
    first
        .members
        .keys()
        .filter(|m| !others.iter().any(|o| o.members.contains_key(&m[..])))
        .map(|m| &m[..])
        .collect()
}

#[derive(Clone, Copy)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

fn combine<'a>(sets: &[Option<&'a SetValue>], how: SetOp) -> Vec<&'a [u8]> {
    match how {
        SetOp::Inter => intersection(sets, None),
        SetOp::Union => union(sets),
        SetOp::Diff => difference(sets),
    }
}

fn set_op_reply(ctx: &mut Ctx<'_>, args: &[Bytes], how: SetOp) -> CmdResult {
    let sets = load_sets(ctx.db, &args[1..], ctx.now_ms)?;
    let mut members = combine(&sets, how);
    intset_order(&mut members);
    ctx.out.set(members.len());
    for m in members {
        ctx.out.bulk(m);
    }
    Ok(())
}

fn sinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_reply(ctx, args, SetOp::Inter)
}

fn sunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_reply(ctx, args, SetOp::Union)
}

fn sdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_reply(ctx, args, SetOp::Diff)
}

fn sintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let numkeys = match int_arg(&args[1]) {
        Ok(n) if n >= 1 => n as u64,
        _ => return Err(Cow::Borrowed("ERR numkeys should be greater than 0")),
    };
    if numkeys > (args.len() - 2) as u64 {
        return Err(Cow::Borrowed(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys_end = 2 + numkeys as usize;
    let mut limit = 0usize;
    let mut i = keys_end;
    while i < args.len() {
        if is(&args[i], "limit") && i + 1 < args.len() {
            limit = match int_arg(&args[i + 1]) {
                Ok(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(Cow::Borrowed("ERR LIMIT can't be negative")),
            };
            i += 2;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let sets = load_sets(ctx.db, &args[2..keys_end], ctx.now_ms)?;
    let n = intersection(&sets, (limit > 0).then_some(limit)).len();
    ctx.out.int(n as i64);
    Ok(())
}

/// Replaces `dest` with a set of `members` (deletes it when there are none); returns how many
/// members were stored.
fn store_set(ctx: &mut Ctx<'_>, dest: &Bytes, members: Vec<Bytes>) -> usize {
    let mut ops = Vec::with_capacity(members.len() + 1);
    if ctx.db.ks.raw_entry(dest).is_some() {
        ops.push(op(dest, OpKind::Del));
    }
    let stored = members.len();
    ops.extend(members.into_iter().map(|member| {
        op(
            dest,
            OpKind::SetAdd {
                slot: NEW_SLOT,
                member,
            },
        )
    }));
    ctx.write(ops);
    stored
}

fn set_op_store(ctx: &mut Ctx<'_>, args: &[Bytes], how: SetOp) -> CmdResult {
    let members: Vec<Bytes> = {
        let sets = load_sets(ctx.db, &args[2..], ctx.now_ms)?;
        combine(&sets, how).into_iter().map(blob_bytes).collect()
    };
    let stored = store_set(ctx, &args[1], members);
    ctx.out.int(stored as i64);
    Ok(())
}

fn sinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_store(ctx, args, SetOp::Inter)
}

fn sunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_store(ctx, args, SetOp::Union)
}

fn sdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_store(ctx, args, SetOp::Diff)
}

fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = parse_scan_cursor(&args[2])?;
    let Some(set) = read_set(ctx.db, &args[1], ctx.now_ms)? else {
        write_empty_scan(&mut ctx.out);
        return Ok(());
    };
    let opts = parse_scan_options(&args[3..], false)?;
    let len = set.members.len();
    let whole = len <= opts.count
        || (len <= INTSET_MAX_ENTRIES
            && set
                .members
                .keys()
                .all(|m| crate::resp::parse_i64_strict(m).is_some()));
    let (next, page): (u64, Vec<&[u8]>) = if whole {
        let mut all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        intset_order(&mut all);
        (0, all)
    } else {
        scan_page(
            set.members.keys().map(|m| (&m[..], &m[..])),
            cursor,
            opts.count,
        )
    };
    let shown: Vec<&[u8]> = page.into_iter().filter(|m| opts.matches(m)).collect();
    ctx.out.array(2);
    ctx.out.bulk_display(next);
    ctx.out.array(shown.len());
    for m in shown {
        ctx.out.bulk(m);
    }
    Ok(())
}

fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args.len() {
        2 => {}
        3 => return spop_count(ctx, args),
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    }
    let key = &args[1];
    let (member, last) = match read_set(ctx.db, key, ctx.now_ms)? {
        None => {
            ctx.out.null();
            return Ok(());
        }
        Some(set) => {
            let len = set.members.len();
            let pick = set.members.keys().nth(random_index(len));
            (pick.map(|m| blob_bytes(m)), len <= 1)
        }
    };
    let Some(member) = member else {
        ctx.out.null();
        return Ok(());
    };
    let kind = if last {
        OpKind::Del
    } else {
        OpKind::SetRem {
            member: member.clone(),
        }
    };
    ctx.write(vec![op(key, kind)]);
    ctx.out.bulk(&member);
    Ok(())
}

fn spop_count(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let count = match int_arg(&args[2]) {
        Ok(n) if n >= 0 => n as u64,
        _ => return Err(Cow::Borrowed(ERR_NOT_POSITIVE)),
    };
    let key = &args[1];
    let Some(set) = read_set(ctx.db, key, ctx.now_ms)? else {
        ctx.out.set(0);
        return Ok(());
    };
    let len = set.members.len();
    if count == 0 {
        ctx.out.set(0);
        return Ok(());
    }
    let (popped, ops): (Vec<Bytes>, Vec<Op>) = if count >= len as u64 {
        let mut all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        intset_order(&mut all);
        let all = all.into_iter().map(blob_bytes).collect();
        (all, vec![op(key, OpKind::Del)])
    } else {
        let positions = random_positions(len, count as usize);
        let popped: Vec<Bytes> = pick_positions(set.members.keys(), &positions)
            .into_iter()
            .map(|m| blob_bytes(m))
            .collect();
        let ops = popped
            .iter()
            .map(|m| op(key, OpKind::SetRem { member: m.clone() }))
            .collect();
        (popped, ops)
    };
    ctx.write(ops);
    ctx.out.set(popped.len());
    for m in &popped {
        ctx.out.bulk(m);
    }
    Ok(())
}

fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args.len() {
        2 => {}
        3 => return srandmember_count(ctx, args),
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    }
    match read_set(ctx.db, &args[1], ctx.now_ms)? {
        None => ctx.out.null(),
        Some(set) => {
            let pick = set.members.keys().nth(random_index(set.members.len()));
            ctx.out.bulk_or_null(pick.map(|m| &m[..]));
        }
    }
    Ok(())
}

fn srandmember_count(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = random_count_arg(&args[2])?;
    let Some(set) = read_set(ctx.db, &args[1], ctx.now_ms)? else {
        ctx.out.array(0);
        return Ok(());
    };
    let count = n.unsigned_abs();
    let len = set.members.len();
    if count == 0 || len == 0 {
        ctx.out.array(0);
        return Ok(());
    }
    if n < 0 || count == 1 {
        check_random_reply(count)?;
        let all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        ctx.out.array(count as usize);
        let mut rng = rand::rng();
        for _ in 0..count {
            ctx.out.bulk(all[rng.random_range(0..all.len())]);
        }
    } else if count >= len as u64 {
        let mut all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        intset_order(&mut all);
        ctx.out.array(all.len());
        for m in all {
            ctx.out.bulk(m);
        }
    } else {
        let positions = random_positions(len, count as usize);
        let picked = pick_positions(set.members.keys(), &positions);
        ctx.out.array(picked.len());
        for m in picked {
            ctx.out.bulk(m);
        }
    }
    Ok(())
}

fn smove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let Some(src_set) = read_set(ctx.db, src, ctx.now_ms)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let dst_slot = ctx.slot_for(dst, Kind::Set)?;
    let found = src_set.members.contains_key(&member[..]);
    let last = src_set.members.len() == 1;
    if src == dst || !found {
        ctx.out.int(i64::from(found && src == dst));
        return Ok(());
    }
    let remove = if last {
        OpKind::Del
    } else {
        OpKind::SetRem {
            member: member.clone(),
        }
    };
    ctx.write(vec![
        op(src, remove),
        op(
            dst,
            OpKind::SetAdd {
                slot: dst_slot,
                member: member.clone(),
            },
        ),
    ]);
    ctx.out.int(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::TestDb;

    /// Every bulk string of a reply, depth first (the test values hold no CRLF).
    pub(crate) fn bulks(reply: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = reply.split("\r\n");
        while let Some(line) = lines.next() {
            if line.starts_with('$') && line != "$-1" {
                out.push(lines.next().unwrap_or_default().to_string());
            }
        }
        out
    }

    fn sorted_bulks(reply: &str) -> Vec<String> {
        let mut items = bulks(reply);
        items.sort();
        items
    }

    #[test]
    fn glob_basics() {
        assert!(glob_match(b"*", b"anything"));
        assert!(!glob_match(b"*", b""));
        assert!(!glob_match(b"**", b""));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"x"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(!glob_match(b"h?llo", b"hllo"));
        assert!(glob_match(b"h*llo", b"heeeello"));
        assert!(glob_match(b"h*llo", b"hllo"));
        assert!(glob_match(b"a*", b"a"));
        assert!(glob_match(b"a**", b"a"));
        assert!(glob_match(b"*a*b*", b"xxaxxbxx"));
        assert!(!glob_match(b"*a*b*", b"xxbxxaxx"));
        assert!(!glob_match(b"Hello", b"hello"));
    }

    #[test]
    fn glob_classes() {
        assert!(glob_match(b"h[ae]llo", b"hello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[ae]llo", b"hillo"));
        assert!(glob_match(b"h[^e]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(!glob_match(b"h[a-b]llo", b"hcllo"));
        assert!(glob_match(b"[z-a]", b"m"), "reversed range");
        assert!(glob_match(b"[\\]]", b"]"));
        assert!(glob_match(b"[\\-]", b"-"));
        assert!(!glob_match(b"[\\-]", b"a"));
        // `[a-]` is the range `]`..`a` of an unterminated class.
        assert!(glob_match(b"[a-]", b"^"));
        assert!(!glob_match(b"[a-]", b"-"));
        assert!(
            glob_match(b"[abc", b"b"),
            "an unterminated class ends the pattern"
        );
        assert!(!glob_match(b"[abc", b"bx"));
        assert!(!glob_match(b"[", b"x"));
        assert!(
            glob_match(b"[^", b"x"),
            "an empty negated class matches any byte"
        );
        // Bytes compare as signed C chars inside ranges: 0xff (-1) lies in [\xf0-a] (-16..97)
        // and 0x00 in [a-\xff] (-1..97).
        assert!(glob_match(b"[\xf0-a]", b"\xff"));
        assert!(glob_match(b"[\xf0-a]", b"\x00"));
        assert!(!glob_match(b"[\xf0-a]", b"b"));
        assert!(!glob_match(b"[\x00-a]", b"\xff"));
        assert!(glob_match(b"[a-\xff]", b"\x00"));
        assert!(!glob_match(b"[a-\xff]", b"b"));
    }

    #[test]
    fn glob_escapes() {
        assert!(glob_match(b"\\*", b"*"));
        assert!(!glob_match(b"\\*", b"x"));
        assert!(glob_match(b"a\\?", b"a?"));
        assert!(!glob_match(b"a\\?", b"ab"));
        assert!(
            glob_match(b"a\\", b"a\\"),
            "a trailing backslash is a literal"
        );
        assert!(glob_match(b"\\\\", b"\\"));
    }

    #[test]
    fn glob_abusive_patterns() {
        let text = vec![b'a'; 3000];
        let nested = |n: usize| b"*a".repeat(n);
        assert!(glob_match(&nested(1000), &text));
        assert!(!glob_match(&nested(1001), &text));
        // Exponential backtracking is cut short.
        let mut pattern = b"*a".repeat(30);
        pattern.push(b'b');
        assert!(!glob_match(&pattern, &[b'a'; 100]));
    }

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

    #[test]
    fn sadd_counts_new_members_and_commits_every_add() {
        let mut db = TestDb::new();
        assert_eq!(db.text(&["SADD", "s", "a", "b", "a"]), ":2\r\n");
        let effects = db.db.ks.effects_applied;
        assert_eq!(db.text(&["SADD", "s", "a"]), ":0\r\n");
        assert_eq!(
            db.db.ks.effects_applied,
            effects + 1,
            "an existing member is re-added"
        );
        assert_eq!(db.text(&["SCARD", "s"]), ":2\r\n");
        assert_eq!(db.text(&["SISMEMBER", "s", "b"]), ":1\r\n");
        assert_eq!(
            db.text(&["SMISMEMBER", "s", "a", "z"]),
            "*2\r\n:1\r\n:0\r\n"
        );
        assert_eq!(db.text(&["SMISMEMBER", "nokey", "a"]), "*1\r\n:0\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "s"])), ["a", "b"]);
        assert_eq!(db.text(&["SMEMBERS", "nokey"]), "*0\r\n");
        db.text(&["HELLO", "3"]);
        assert!(db.text(&["SMEMBERS", "s"]).starts_with("~2\r\n"));
    }

    /// Ships every effect `from` has made since the last call to `to`.
    fn ship(from: &mut TestDb, to: &mut TestDb) {
        for effect in from.db.ks.outbox.drain(..).collect::<Vec<_>>() {
            to.db.ks.apply(&effect);
        }
    }

    #[test]
    fn readding_an_existing_member_wins_over_a_concurrent_remove() {
        let mut a = TestDb::region("a");
        let mut b = TestDb::region("b");
        a.text(&["SADD", "s", "x", "y"]);
        ship(&mut a, &mut b);
        assert_eq!(b.text(&["SREM", "s", "x"]), ":1\r\n");
        assert_eq!(a.text(&["SADD", "s", "x"]), ":0\r\n");
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        for db in [&mut a, &mut b] {
            assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "s"])), ["x", "y"]);
        }
        // From {a,b}: A: SREM s a; SREM s c || B: SADD s c  ->  {b,c}.
        a.text(&["SADD", "t", "a", "b"]);
        ship(&mut a, &mut b);
        a.text(&["SREM", "t", "a"]);
        a.text(&["SREM", "t", "c"]);
        b.text(&["SADD", "t", "c"]);
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        for db in [&mut a, &mut b] {
            assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "t"])), ["b", "c"]);
        }
    }

    #[test]
    fn wrong_types_and_arity() {
        let mut db = TestDb::new();
        db.text(&["SET", "str", "x"]);
        let wrong = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        for cmd in [
            &["SADD", "str", "a"][..],
            &["SREM", "str", "a"],
            &["SMEMBERS", "str"],
            &["SISMEMBER", "str", "a"],
            &["SMISMEMBER", "str", "a"],
            &["SCARD", "str"],
            &["SINTER", "nokey", "str"],
            &["SUNIONSTORE", "d", "str"],
            &["SSCAN", "str", "0"],
            &["SPOP", "str"],
            &["SPOP", "str", "0"],
            &["SRANDMEMBER", "str", "0"],
            &["SMOVE", "str", "d", "a"],
            &["SINTERCARD", "2", "nokey", "str"],
        ] {
            assert_eq!(db.text(cmd), wrong, "{cmd:?}");
        }
        assert_eq!(db.text(&["SMOVE", "nokey", "str", "a"]), ":0\r\n");
        assert_eq!(
            db.text(&["SADD", "s"]),
            "-ERR wrong number of arguments for 'sadd' command\r\n"
        );
        assert_eq!(db.text(&["SPOP", "s", "1", "2"]), "-ERR syntax error\r\n");
        assert_eq!(
            db.text(&["SRANDMEMBER", "s", "1", "2"]),
            "-ERR syntax error\r\n"
        );
    }

    #[test]
    fn srem_deletes_the_emptied_key() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s", "a", "b", "c"]);
        db.text(&["EXPIRE", "s", "100"]);
        assert_eq!(db.text(&["SREM", "s", "a", "a", "z"]), ":1\r\n");
        assert_eq!(db.text(&["SREM", "nokey", "a"]), ":0\r\n");
        assert_eq!(db.text(&["SREM", "s", "b", "c"]), ":2\r\n");
        assert!(db.db.ks.raw_entry(b"s").is_none());
        assert_eq!(db.text(&["SCARD", "s"]), ":0\r\n");
    }

    #[test]
    fn algebra_and_store() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s1", "a", "b", "c", "d"]);
        db.text(&["SADD", "s2", "c", "d", "e"]);
        db.text(&["SADD", "s3", "d", "e", "f"]);
        assert_eq!(sorted_bulks(&db.text(&["SINTER", "s1", "s2"])), ["c", "d"]);
        assert_eq!(sorted_bulks(&db.text(&["SINTER", "s1", "s2", "s3"])), ["d"]);
        assert_eq!(db.text(&["SINTER", "s1", "nokey"]), "*0\r\n");
        assert_eq!(
            sorted_bulks(&db.text(&["SUNION", "s1", "s3", "nokey"])),
            ["a", "b", "c", "d", "e", "f"]
        );
        assert_eq!(
            sorted_bulks(&db.text(&["SDIFF", "s1", "s2", "s3"])),
            ["a", "b"]
        );
        assert_eq!(db.text(&["SDIFF", "nokey", "s1"]), "*0\r\n");
        assert_eq!(db.text(&["SDIFF", "s1", "s1"]), "*0\r\n");
        assert_eq!(db.text(&["SINTERCARD", "2", "s1", "s2"]), ":2\r\n");
        assert_eq!(
            db.text(&["SINTERCARD", "2", "s1", "s2", "LIMIT", "1"]),
            ":1\r\n"
        );
        assert_eq!(db.text(&["SINTERCARD", "2", "s1", "nokey"]), ":0\r\n");
        assert_eq!(
            db.text(&["SINTERCARD", "0", "s1"]),
            "-ERR numkeys should be greater than 0\r\n"
        );
        assert_eq!(
            db.text(&["SINTERCARD", "3", "s1", "s2"]),
            "-ERR Number of keys can't be greater than number of args\r\n"
        );
        assert_eq!(
            db.text(&["SINTERCARD", "1", "s1", "LIMIT", "-1"]),
            "-ERR LIMIT can't be negative\r\n"
        );
        // A store replaces any type and drops the old expiry.
        db.text(&["SET", "dst", "x"]);
        db.text(&["EXPIRE", "dst", "100"]);
        assert_eq!(db.text(&["SUNIONSTORE", "dst", "s1", "s2"]), ":5\r\n");
        assert_eq!(db.text(&["TYPE", "dst"]), "+set\r\n");
        assert_eq!(db.text(&["TTL", "dst"]), ":-1\r\n");
        assert_eq!(db.text(&["SINTERSTORE", "dst", "s1", "s3"]), ":1\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "dst"])), ["d"]);
        assert_eq!(db.text(&["SDIFFSTORE", "s1", "s1", "s2"]), ":2\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "s1"])), ["a", "b"]);
        assert_eq!(db.text(&["SINTERSTORE", "dst", "s1", "nokey"]), ":0\r\n");
        assert_eq!(db.text(&["EXISTS", "dst"]), ":0\r\n");
    }

    #[test]
    fn spop_and_srandmember() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s", "a", "b", "c", "d", "e"]);
        assert_eq!(
            db.text(&["SPOP", "s", "-1"]),
            "-ERR value is out of range, must be positive\r\n"
        );
        assert_eq!(db.text(&["SPOP", "s", "0"]), "*0\r\n");
        assert_eq!(db.text(&["SPOP", "nokey"]), "$-1\r\n");
        assert_eq!(db.text(&["SPOP", "nokey", "2"]), "*0\r\n");
        let two = sorted_bulks(&db.text(&["SPOP", "s", "2"]));
        assert_eq!(two.len(), 2);
        assert_eq!(db.text(&["SCARD", "s"]), ":3\r\n");
        let one = sorted_bulks(&db.text(&["SPOP", "s"]));
        assert_eq!(one.len(), 1);
        assert!(!two.contains(&one[0]));
        assert_eq!(db.text(&["SCARD", "s"]), ":2\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SPOP", "s", "10"])).len(), 2);
        assert_eq!(db.text(&["EXISTS", "s"]), ":0\r\n");

        db.text(&["SADD", "r", "a", "b", "c"]);
        assert_eq!(
            sorted_bulks(&db.text(&["SRANDMEMBER", "r", "10"])),
            ["a", "b", "c"]
        );
        let distinct = sorted_bulks(&db.text(&["SRANDMEMBER", "r", "2"]));
        assert_eq!(distinct.len(), 2);
        assert_ne!(distinct[0], distinct[1]);
        let repeats = db.text(&["SRANDMEMBER", "r", "-7"]);
        assert!(repeats.starts_with("*7\r\n"));
        assert_eq!(sorted_bulks(&repeats).len(), 7);
        assert_eq!(db.text(&["SRANDMEMBER", "r", "0"]), "*0\r\n");
        assert_eq!(db.text(&["SRANDMEMBER", "nokey", "3"]), "*0\r\n");
        assert_eq!(db.text(&["SRANDMEMBER", "nokey"]), "$-1\r\n");
        assert_eq!(
            db.text(&["SRANDMEMBER", "r", "-9223372036854775808"]),
            format!("-{ERR_COUNT_RANGE}\r\n")
        );
        assert_eq!(
            db.text(&["SRANDMEMBER", "r", "-9223372036854775807"]),
            "-ERR value is out of range\r\n"
        );
        assert_eq!(db.text(&["SCARD", "r"]), ":3\r\n");
        db.text(&["HELLO", "3"]);
        assert!(db.text(&["SPOP", "r", "1"]).starts_with("~1\r\n"));
        assert!(db.text(&["SRANDMEMBER", "r", "5"]).starts_with("*2\r\n"));
    }

    #[test]
    fn integer_sets_list_in_numeric_order_like_intsets() {
        let mut db = TestDb::new();
        db.text(&["SADD", "ints", "5", "3", "1", "-2", "10", "100"]);
        let want = "*6\r\n$2\r\n-2\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n5\r\n$2\r\n10\r\n$3\r\n100\r\n";
        assert_eq!(db.text(&["SMEMBERS", "ints"]), want);
        assert_eq!(db.text(&["SUNION", "ints", "nokey"]), want);
        assert_eq!(db.text(&["SRANDMEMBER", "ints", "10"]), want);
        assert_eq!(
            db.text(&["SSCAN", "ints", "0", "COUNT", "1"]),
            format!("*2\r\n$1\r\n0\r\n{want}")
        );
        // "010" is not an integer Redis would store in an intset.
        db.text(&["SADD", "mixed", "2", "010", "1"]);
        assert_eq!(
            sorted_bulks(&db.text(&["SMEMBERS", "mixed"])),
            ["010", "1", "2"]
        );
    }

    #[test]
    fn smove_moves_and_deletes_the_emptied_source() {
        let mut db = TestDb::new();
        db.text(&["SADD", "a", "x", "y"]);
        assert_eq!(db.text(&["SMOVE", "a", "b", "x"]), ":1\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "b", "x"]), ":0\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "a", "y"]), ":1\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "a", "x"]), ":0\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "b", "y"]), ":1\r\n");
        assert_eq!(db.text(&["EXISTS", "a"]), ":0\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "b"])), ["x", "y"]);
    }

    #[test]
    fn sscan_small_and_large() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s", "a", "b", "c", "1", "2"]);
        assert_eq!(
            sorted_bulks(&db.text(&["SSCAN", "s", "0"])),
            ["0", "1", "2", "a", "b", "c"]
        );
        let matched = db.text(&["SSCAN", "s", "0", "MATCH", "[a-b]"]);
        assert!(matched.starts_with("*2\r\n$1\r\n0\r\n*2\r\n"), "{matched}");
        assert_eq!(
            db.text(&["SSCAN", "nokey", "0", "BAD"]),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(db.text(&["SSCAN", "s", "x"]), "-ERR invalid cursor\r\n");
        assert_eq!(
            db.text(&["SSCAN", "s", "0", "COUNT", "0"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            db.text(&["SSCAN", "s", "0", "BAD", "x"]),
            "-ERR syntax error\r\n"
        );

        let members: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
        let mut cmd = vec!["SADD", "big"];
        cmd.extend(members.iter().map(|s| s.as_str()));
        db.text(&cmd);
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        for _ in 0..1000 {
            let reply = db.text(&["SSCAN", "big", &cursor, "COUNT", "7"]);
            let parts: Vec<&str> = reply.split("\r\n").collect();
            cursor = parts[2].to_string();
            let n: usize = parts[3][1..].parse().unwrap();
            assert!(n >= 7 || cursor == "0");
            seen.extend(parts[4..].chunks(2).take(n).map(|c| c[1].to_string()));
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(cursor, "0");
        seen.sort();
        let mut want = members.clone();
        want.sort();
        assert_eq!(seen, want);

        // An integer-only set up to 512 members is returned whole, like Redis's intset.
        let ints: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let mut cmd = vec!["SADD", "ints"];
        cmd.extend(ints.iter().map(|s| s.as_str()));
        db.text(&cmd);
        assert!(db
            .text(&["SSCAN", "ints", "0", "COUNT", "5"])
            .starts_with("*2\r\n$1\r\n0\r\n*100\r\n"));
    }
}
