//! Sorted-set commands: ZADD (NX XX GT LT CH INCR), ZINCRBY, ZREM, ZSCORE, ZMSCORE, ZCARD,
//! ZRANK, ZREVRANK, ZRANGE (BYSCORE BYLEX REV LIMIT WITHSCORES), ZRANGESTORE, ZRANGEBYSCORE,
//! ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZREVRANGE, ZCOUNT, ZLEXCOUNT, ZPOPMIN,
//! ZPOPMAX, ZSCAN.
//!
//! Contract:
//! - Membership is an observed-remove set. A plain score write (ZADD) is a register write
//!   ([`OpKind::ZAdd`]); ZADD INCR and ZINCRBY are counter increments ([`OpKind::ZAddDelta`]) so
//!   concurrent increments add up. ZREM and the pops remove what they observed
//!   ([`OpKind::ZRem`]). A command that changes nothing visible writes nothing (a ZADD of the
//!   score a member already has is not an effect), like Redis, which does not count it as a
//!   change either.
//! - Replies and errors are Redis 7.0's, including the order in which arguments are checked.
//!   Score ranges are parsed like Redis's `zslParseRange` (`strtod`: leading blanks, the empty
//!   string and out-of-range values are accepted), lex ranges like `zslParseLexRange`.
//! - Scores are stored with `-0` folded into `0`, as Redis's compact encoding does for every
//!   sorted set that ZSCAN returns in one call.
//! - Lex ranges on a set whose scores differ give the same answer as Redis's compact encoding
//!   (a walk in score order); when every score is equal they are answered through the index.
//! - ZSCAN returns a set of at most 128 members of at most 64 bytes in one call with cursor 0
//!   and scores printed like Redis's compact encoding (exactly Redis's reply). A larger set is
//!   paged by the SCAN family's shared member-hash positions (`util::scan::scan_page`), so every
//!   member present for a whole iteration is returned exactly once whatever its score does.
//! - Ranks are computed by walking the order index (O(rank)); ZADD, ZSCORE, ZINCRBY and ZREM are
//!   O(log n) in the size of the set.

use super::util::scan::{parse_scan_cursor, parse_scan_options, scan_page, write_empty_scan};
use super::*;
use crate::crdt::value::{Blob, FastMap, Score, ZSetValue};
use crate::crdt::{Stamp, Value, NEW_SLOT};
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::ops::Bound;

const ERR_NX_XX: &str = "ERR XX and NX options at the same time are not compatible";
const ERR_GT_LT_NX: &str = "ERR GT, LT, and/or NX options at the same time are not compatible";
const ERR_INCR_PAIRS: &str = "ERR INCR option supports a single increment-element pair";
const ERR_NAN: &str = "ERR resulting score is not a number (NaN)";
const ERR_MINMAX_FLOAT: &str = "ERR min or max is not a float";
const ERR_MINMAX_LEX: &str = "ERR min or max not valid string range item";
const ERR_LIMIT_RANK: &str =
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX";
const ERR_WITHSCORES_LEX: &str =
    "ERR syntax error, WITHSCORES not supported in combination with BYLEX";
const ERR_POSITIVE: &str = "ERR value is out of range, must be positive";

/// Redis's `zset-max-listpack-entries` / `zset-max-listpack-value` defaults: sets within both
/// limits are the ones Redis scans in a single call.
const COMPACT_ENTRIES: usize = 128;
const COMPACT_VALUE: usize = 64;

pub fn commands() -> Vec<Command> {
    vec![
        cmd(
            "zadd",
            -4,
            "write denyoom fast",
            1,
            1,
            1,
            "sorted_set",
            "Adds members to a sorted set, or updates their scores.",
            zadd,
        ),
        cmd(
            "zincrby",
            4,
            "write denyoom fast",
            1,
            1,
            1,
            "sorted_set",
            "Increments the score of a member of a sorted set.",
            zincrby,
        ),
        cmd(
            "zrem",
            -3,
            "write fast",
            1,
            1,
            1,
            "sorted_set",
            "Removes members from a sorted set.",
            zrem,
        ),
        cmd(
            "zscore",
            3,
            "readonly fast",
            1,
            1,
            1,
            "sorted_set",
            "Returns the score of a member of a sorted set.",
            zscore,
        ),
        cmd(
            "zmscore",
            -3,
            "readonly fast",
            1,
            1,
            1,
            "sorted_set",
            "Returns the scores of several members of a sorted set.",
            zmscore,
        ),
        cmd(
            "zcard",
            2,
            "readonly fast",
            1,
            1,
            1,
            "sorted_set",
            "Returns the number of members of a sorted set.",
            zcard,
        ),
        cmd(
            "zrank",
            3,
            "readonly fast",
            1,
            1,
            1,
            "sorted_set",
            "Returns the rank of a member in ascending score order.",
            zrank,
        ),
        cmd(
            "zrevrank",
            3,
            "readonly fast",
            1,
            1,
            1,
            "sorted_set",
            "Returns the rank of a member in descending score order.",
            zrevrank,
        ),
        cmd(
            "zrange",
            -4,
            "readonly",
            1,
            1,
            1,
            "sorted_set",
            "Returns members in a range of ranks, scores or names.",
            zrange,
        ),
        cmd(
            "zrangestore",
            -5,
            "write denyoom",
            1,
            2,
            1,
            "sorted_set",
            "Stores a range of a sorted set in another key.",
            zrangestore,
        ),
        cmd(
            "zrangebyscore",
            -4,
            "readonly",
            1,
            1,
            1,
            "sorted_set",
            "Returns members in a range of scores.",
            zrangebyscore,
        ),
        cmd(
            "zrevrangebyscore",
            -4,
            "readonly",
            1,
            1,
            1,
            "sorted_set",
            "Returns members in a range of scores, highest first.",
            zrevrangebyscore,
        ),
        cmd(
            "zrangebylex",
            -4,
            "readonly",
            1,
            1,
            1,
            "sorted_set",
            "Returns members in a lexicographical range.",
            zrangebylex,
        ),
        cmd(
            "zrevrangebylex",
            -4,
            "readonly",
            1,
            1,
            1,
            "sorted_set",
            "Returns members in a lexicographical range, highest first.",
            zrevrangebylex,
        ),
        cmd(
            "zrevrange",
            -4,
            "readonly",
            1,
            1,
            1,
            "sorted_set",
            "Returns members in a range of ranks, highest score first.",
            zrevrange,
        ),
        cmd(
            "zcount",
            4,
            "readonly fast",
            1,
            1,
            1,
            "sorted_set",
            "Counts the members with scores in a range.",
            zcount,
        ),
        cmd(
            "zlexcount",
            4,
            "readonly fast",
            1,
            1,
            1,
            "sorted_set",
            "Counts the members in a lexicographical range.",
            zlexcount,
        ),
        cmd(
            "zpopmin",
            -2,
            "write fast",
            1,
            1,
            1,
            "sorted_set",
            "Removes and returns the members with the lowest scores.",
            zpopmin,
        ),
        cmd(
            "zpopmax",
            -2,
            "write fast",
            1,
            1,
            1,
            "sorted_set",
            "Removes and returns the members with the highest scores.",
            zpopmax,
        ),
        cmd(
            "zscan",
            -3,
            "readonly",
            1,
            1,
            1,
            "sorted_set",
            "Iterates over the members and scores of a sorted set.",
            zscan,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Lookups

/// The sorted set at `key` for a read command, counting a keyspace hit or miss like Redis's
/// `lookupKeyRead`; WRONGTYPE for another type.
fn read_zset<'a>(
    ks: &'a Keyspace,
    stats: &mut Stats,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'a ZSetValue>, CmdError> {
    match ks.get(key, now_ms) {
        None => {
            stats.keyspace_misses += 1;
            Ok(None)
        }
        Some(slot) => {
            stats.keyspace_hits += 1;
            match &slot.value {
                Value::ZSet(z) => Ok(Some(z)),
                _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
            }
        }
    }
}

/// The sorted set at `key` for a write command, with the slot stamp writes must carry
/// (`NEW_SLOT` when the key is absent); WRONGTYPE for another type.
fn write_zset<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now_ms: u64,
) -> Result<(Stamp, Option<&'a ZSetValue>), CmdError> {
    match ks.get(key, now_ms) {
        None => Ok((NEW_SLOT, None)),
        Some(slot) => match &slot.value {
            Value::ZSet(z) => Ok((slot.created, Some(z))),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// A key created by this write must not inherit expiry votes left behind by a delete that had
/// not seen them.
fn clear_stale_expiry(ks: &Keyspace, key: &Bytes, ops: &mut Vec<Op>) {
    if ks.raw_entry(key).is_some_and(|e| !e.expiry.is_empty()) {
        ops.push(op(key, OpKind::ClearExpiry));
    }
}

/// Scores are stored with `-0` folded into `0`.
fn stored(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

// ---------------------------------------------------------------------------------------------
// ZADD / ZINCRBY / ZREM

fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, false)
}

fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, true)
}

/// ZADD and ZINCRBY (`zaddGenericCommand`): ZINCRBY is ZADD with INCR forced on, and accepts
/// the same option words.
fn zadd_generic(ctx: &mut Ctx<'_>, args: &[Bytes], mut incr: bool) -> CmdResult {
    // Alone, a node writes resulting scores; with other participants, increments.
    let single = ctx.db.ks.is_single_participant();
    let (mut nx, mut xx, mut gt, mut lt, mut ch) = (false, false, false, false, false);
    let mut idx = 2;
    while let Some(a) = args.get(idx) {
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if is(a, "ch") {
            ch = true;
        } else if is(a, "incr") {
            incr = true;
        } else if is(a, "gt") {
            gt = true;
        } else if is(a, "lt") {
            lt = true;
        } else {
            break;
        }
        idx += 1;
    }
    let rest = args.len() - idx;
    if rest == 0 || !rest.is_multiple_of(2) {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    }
    let elements = rest / 2;
    if nx && xx {
        return Err(Cow::Borrowed(ERR_NX_XX));
    }
    if ((gt || lt) && nx) || (gt && lt) {
        return Err(Cow::Borrowed(ERR_GT_LT_NX));
    }
    if incr && elements > 1 {
        return Err(Cow::Borrowed(ERR_INCR_PAIRS));
    }
    let pairs = &args[idx..];
    let mut scores: SmallVec<[f64; 4]> = SmallVec::with_capacity(elements);
    for pair in pairs.chunks_exact(2) {
        scores.push(float_arg(&pair[0])?);
    }

    let key = &args[1];
    let now = ctx.now_ms;
    let (slot, zset) = write_zset(&ctx.db.ks, key, now)?;
    if zset.is_none() && xx {
        if incr {
            ctx.out.null();
        } else {
            ctx.out.int(0);
        }
        return Ok(());
    }

    let mut ops: Vec<Op> = Vec::with_capacity(elements + 1);
    if zset.is_none() {
        clear_stale_expiry(&ctx.db.ks, key, &mut ops);
    }
    // Scores this command has already written, so repeated members see their own updates.
    let mut pending: Option<FastMap<&[u8], f64>> = if elements > 1 {
        Some(FastMap::default())
    } else {
        None
    };
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = 0.0f64;
    for (pair, &input) in pairs.chunks_exact(2).zip(scores.iter()) {
        let member = &pair[1];
        let current = match pending.as_ref().and_then(|p| p.get(&member[..])) {
            Some(&s) => Some(s),
            None => zset
                .and_then(|z| z.members.get(&member[..]))
                .map(|c| c.score()),
        };
        let score = match current {
            Some(cur) => {
                if nx {
                    continue;
                }
                let score = if incr { cur + input } else { input };
                if score.is_nan() {
                    return Err(Cow::Borrowed(ERR_NAN));
                }
                if (lt && score >= cur) || (gt && score <= cur) {
                    continue;
                }
                processed += 1;
                last = score;
                if score == cur {
                    continue;
                }
                updated += 1;
                score
            }
            None => {
                if xx {
                    continue;
                }
                added += 1;
                processed += 1;
                last = input;
                input
            }
        };
        let kind = if incr && !single {
            OpKind::ZAddDelta {
                slot,
                member: member.clone(),
                delta: input,
            }
        } else {
            OpKind::ZAdd {
                slot,
                member: member.clone(),
                score: stored(score),
            }
        };
        ops.push(op(key, kind));
        if let Some(p) = pending.as_mut() {
            p.insert(&member[..], stored(score));
        }
    }
    if added + updated > 0 {
        ctx.write(ops);
    }
    if incr {
        if processed > 0 {
            ctx.out.double(last);
        } else {
            ctx.out.null();
        }
    } else {
        ctx.out.int(if ch { added + updated } else { added });
    }
    Ok(())
}

fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let (_, zset) = write_zset(&ctx.db.ks, key, ctx.now_ms)?;
    let Some(z) = zset else {
        ctx.out.int(0);
        return Ok(());
    };
    let members = &args[2..];
    let mut ops = Vec::new();
    let mut seen: Option<FastMap<&[u8], ()>> = if members.len() > 1 {
        Some(FastMap::default())
    } else {
        None
    };
    for m in members {
        if !z.members.contains_key(&m[..]) {
            continue;
        }
        if let Some(seen) = seen.as_mut() {
            if seen.insert(&m[..], ()).is_some() {
                continue;
            }
        }
        ops.push(op(key, OpKind::ZRem { member: m.clone() }));
    }
    let deleted = ops.len() as i64;
    if deleted > 0 {
        ctx.write(ops);
    }
    ctx.out.int(deleted);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Point reads

fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    match z.and_then(|z| z.members.get(&args[2][..])) {
        Some(c) => ctx.out.double(c.score()),
        None => ctx.out.null(),
    }
    Ok(())
}

fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    ctx.out.array(args.len() - 2);
    for m in &args[2..] {
        match z.and_then(|z| z.members.get(&m[..])) {
            Some(c) => ctx.out.double(c.score()),
            None => ctx.out.null(),
        }
    }
    Ok(())
}

fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    ctx.out.int(z.map(|z| z.members.len() as i64).unwrap_or(0));
    Ok(())
}

fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rank_generic(ctx, args, false)
}

fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rank_generic(ctx, args, true)
}

fn rank_generic(ctx: &mut Ctx<'_>, args: &[Bytes], reverse: bool) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let Some(z) = z else {
        ctx.out.null();
        return Ok(());
    };
    let Some((member, c)) = z.members.get_key_value(&args[2][..]) else {
        ctx.out.null();
        return Ok(());
    };
    let below = z.order.range(..(Score(c.score()), member.clone())).count();
    let rank = if reverse {
        z.order.len().saturating_sub(below + 1)
    } else {
        below
    };
    ctx.out.int(rank as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Ranges

/// A score interval as `zslParseRange` reads it.
#[derive(Clone, Copy, Debug)]
struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
        let err = || Cow::Borrowed(ERR_MINMAX_FLOAT);
        let (min, minex) = parse_score_bound(min).ok_or_else(err)?;
        let (max, maxex) = parse_score_bound(max).ok_or_else(err)?;
        Ok(ScoreRange {
            min,
            max,
            minex,
            maxex,
        })
    }

    fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }

    /// Ranges that can hold nothing (`zslIsInRange`).
    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }

    /// Members in the range, in ascending (or with `reverse` descending) order.
    fn iter<'a>(&self, z: &'a ZSetValue, reverse: bool) -> ZIter<'a> {
        let r = *self;
        if r.is_empty() {
            return Box::new(std::iter::empty());
        }
        if reverse {
            let hi = if r.max == f64::INFINITY {
                Bound::Unbounded
            } else {
                Bound::Excluded((Score(r.max.next_up()), Blob::default()))
            };
            Box::new(
                z.order
                    .range((Bound::Unbounded, hi))
                    .rev()
                    .skip_while(move |(s, _)| !r.lte_max(s.0))
                    .take_while(move |(s, _)| r.gte_min(s.0)),
            )
        } else {
            // `-0` sorts before `0` in the index but compares equal to it.
            let start = if r.min == 0.0 { -0.0 } else { r.min };
            let lo = Bound::Included((Score(start), Blob::default()));
            Box::new(
                z.order
                    .range((lo, Bound::Unbounded))
                    .skip_while(move |(s, _)| !r.gte_min(s.0))
                    .take_while(move |(s, _)| r.lte_max(s.0)),
            )
        }
    }
}

/// One end of a score range: `(` marks it exclusive, the rest is read with C's `strtod`, which
/// accepts leading blanks, the empty string (0) and values beyond the double range (±inf or 0).
/// Like C, the argument ends at its first NUL byte.
fn parse_score_bound(arg: &[u8]) -> Option<(f64, bool)> {
    let arg = match arg.iter().position(|&b| b == 0) {
        Some(end) => &arg[..end],
        None => arg,
    };
    let (text, exclusive) = match arg.split_first() {
        Some((b'(', rest)) => (rest, true),
        _ => (arg, false),
    };
    c_strtod(text).map(|v| (v, exclusive))
}

/// `strtod` over the whole of `text` (the end pointer must reach the end); `None` for NaN.
fn c_strtod(text: &[u8]) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    let start = text
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    let body = &text[start..];
    let unsigned = match body.first() {
        Some(b'+') | Some(b'-') => &body[1..],
        _ => body,
    };
    let v = if unsigned.len() > 2 && unsigned[0] == b'0' && (unsigned[1] | 0x20) == b'x' {
        crate::resp::parse_f64_strict(body)?
    } else {
        std::str::from_utf8(body).ok()?.parse::<f64>().ok()?
    };
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// One end of a lex range.
#[derive(Clone, Copy, Debug)]
enum LexItem<'a> {
    /// `-`: below every string.
    Min,
    /// `+`: above every string.
    Max,
    Value(&'a [u8]),
}

/// `sdscmplex`.
fn cmp_lex(a: LexItem<'_>, b: LexItem<'_>) -> Ordering {
    match (a, b) {
        (LexItem::Min, LexItem::Min) | (LexItem::Max, LexItem::Max) => Ordering::Equal,
        (LexItem::Min, _) | (_, LexItem::Max) => Ordering::Less,
        (LexItem::Max, _) | (_, LexItem::Min) => Ordering::Greater,
        (LexItem::Value(x), LexItem::Value(y)) => x.cmp(y),
    }
}

/// A walk over the order index.
type ZIter<'z> = Box<dyn Iterator<Item = &'z (Score, Blob)> + 'z>;

/// A lex interval as `zslParseLexRange` reads it.
#[derive(Clone, Copy, Debug)]
struct LexRange<'a> {
    min: LexItem<'a>,
    max: LexItem<'a>,
    minex: bool,
    maxex: bool,
}

impl<'a> LexRange<'a> {
    fn parse(min: &'a [u8], max: &'a [u8]) -> Result<LexRange<'a>, CmdError> {
        let err = || Cow::Borrowed(ERR_MINMAX_LEX);
        let (min, minex) = parse_lex_item(min).ok_or_else(err)?;
        let (max, maxex) = parse_lex_item(max).ok_or_else(err)?;
        Ok(LexRange {
            min,
            max,
            minex,
            maxex,
        })
    }

    fn gte_min(&self, v: &[u8]) -> bool {
        let c = cmp_lex(LexItem::Value(v), self.min);
        if self.minex {
            c == Ordering::Greater
        } else {
            c != Ordering::Less
        }
    }

    fn lte_max(&self, v: &[u8]) -> bool {
        let c = cmp_lex(LexItem::Value(v), self.max);
        if self.maxex {
            c == Ordering::Less
        } else {
            c != Ordering::Greater
        }
    }

    /// `zzlIsInLexRange`: false when the range is empty or misses the set's ends.
    fn touches(&self, z: &ZSetValue) -> bool {
        let c = cmp_lex(self.min, self.max);
        if c == Ordering::Greater || (c == Ordering::Equal && (self.minex || self.maxex)) {
            return false;
        }
        match (z.order.first(), z.order.last()) {
            (Some(first), Some(last)) => self.gte_min(&last.1) && self.lte_max(&first.1),
            _ => false,
        }
    }

    /// Members from the first one in range, walking in score order like Redis's compact
    /// encoding (`zzlFirstInLexRange` / `zzlLastInLexRange`); the caller stops at the first
    /// member past the other end. With equal scores the walk starts through the index.
    fn start<'z>(&self, z: &'z ZSetValue, reverse: bool) -> Option<ZIter<'z>>
    where
        'a: 'z,
    {
        if !self.touches(z) {
            return None;
        }
        let r = *self;
        let uniform = match (z.order.first(), z.order.last()) {
            (Some(a), Some(b)) => a.0 == b.0,
            _ => false,
        };
        // With one score for every member the index is in name order: seek to the bound.
        let seek = |item: LexItem<'_>, exclusive: bool| match (uniform, item) {
            (true, LexItem::Value(v)) => {
                let score = z.order.first().map(|e| e.0).unwrap_or(Score(0.0));
                let bound = (score, Blob::from(v));
                if exclusive {
                    Bound::Excluded(bound)
                } else {
                    Bound::Included(bound)
                }
            }
            _ => Bound::Unbounded,
        };
        let mut it: ZIter<'z> = if reverse {
            let hi = seek(r.max, r.maxex);
            Box::new(
                z.order
                    .range((Bound::Unbounded, hi))
                    .rev()
                    .skip_while(move |(_, m)| !r.lte_max(m)),
            )
        } else {
            let lo = seek(r.min, r.minex);
            Box::new(
                z.order
                    .range((lo, Bound::Unbounded))
                    .skip_while(move |(_, m)| !r.gte_min(m)),
            )
        };
        // The first member reached must also be within the other end.
        let first = it.next()?;
        if !r.still_in(&first.1, reverse) {
            return None;
        }
        Some(Box::new(std::iter::once(first).chain(it)))
    }

    /// `still_in(m)`: the test that ends a walk started by [`LexRange::start`].
    fn still_in(&self, m: &[u8], reverse: bool) -> bool {
        if reverse {
            self.gte_min(m)
        } else {
            self.lte_max(m)
        }
    }
}

/// `zslParseLexRangeItem`: `(x` / `[x`, or exactly `-` / `+`. Like C, `+` and `-` are checked
/// up to the first NUL byte.
fn parse_lex_item(arg: &[u8]) -> Option<(LexItem<'_>, bool)> {
    match arg.split_first() {
        Some((b'+', rest)) if rest.first().is_none_or(|&b| b == 0) => Some((LexItem::Max, true)),
        Some((b'-', rest)) if rest.first().is_none_or(|&b| b == 0) => Some((LexItem::Min, true)),
        Some((b'(', rest)) => Some((LexItem::Value(rest), true)),
        Some((b'[', rest)) => Some((LexItem::Value(rest), false)),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RangeType {
    Auto,
    Rank,
    Score,
    Lex,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Auto,
    Forward,
    Reverse,
}

fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Auto, Direction::Auto)
}

fn zrangestore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 2, true, RangeType::Auto, Direction::Auto)
}

fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Rank, Direction::Reverse)
}

fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Score, Direction::Forward)
}

fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Score, Direction::Reverse)
}

fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Lex, Direction::Forward)
}

fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Lex, Direction::Reverse)
}

/// The parsed range of a ZRANGE-family command.
enum Range<'a> {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange<'a>),
}

/// ZRANGE, ZRANGESTORE and the older range commands (`zrangeGenericCommand`). `src` is the
/// index of the source key; `min` and `max` follow it, then the options.
fn zrange_generic(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    src: usize,
    store: bool,
    mut rangetype: RangeType,
    mut direction: Direction,
) -> CmdResult {
    let mut withscores = false;
    let mut offset: i64 = 0;
    let mut limit: i64 = -1;
    let mut j = src + 3;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if !store && is(a, "withscores") {
            withscores = true;
        } else if is(a, "limit") && left >= 2 {
            offset = int_arg(&args[j + 1])?;
            limit = int_arg(&args[j + 2])?;
            j += 2;
        } else if direction == Direction::Auto && is(a, "rev") {
            direction = Direction::Reverse;
        } else if rangetype == RangeType::Auto && is(a, "bylex") {
            rangetype = RangeType::Lex;
        } else if rangetype == RangeType::Auto && is(a, "byscore") {
            rangetype = RangeType::Score;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        j += 1;
    }
    let reverse = direction == Direction::Reverse;
    if rangetype == RangeType::Auto {
        rangetype = RangeType::Rank;
    }
    if limit != -1 && rangetype == RangeType::Rank {
        return Err(Cow::Borrowed(ERR_LIMIT_RANK));
    }
    if withscores && rangetype == RangeType::Lex {
        return Err(Cow::Borrowed(ERR_WITHSCORES_LEX));
    }
    let (mut min_idx, mut max_idx) = (src + 1, src + 2);
    if reverse && rangetype != RangeType::Rank {
        std::mem::swap(&mut min_idx, &mut max_idx);
    }
    let range = match rangetype {
        RangeType::Score => Range::Score(ScoreRange::parse(&args[min_idx], &args[max_idx])?),
        RangeType::Lex => Range::Lex(LexRange::parse(&args[min_idx], &args[max_idx])?),
        _ => Range::Rank(int_arg(&args[min_idx])?, int_arg(&args[max_idx])?),
    };

    let now = ctx.now_ms;
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[src], now)?;
    let items: Vec<(&[u8], f64)> = match z {
        None => Vec::new(),
        Some(z) => collect_range(z, &range, reverse, offset, limit),
    };
    if !store {
        write_range_reply(&mut ctx.out, &items, withscores);
        return Ok(());
    }
    // ZRANGESTORE: the destination is replaced by the result, or deleted when it is empty.
    let dst = &args[1];
    let mut ops = Vec::with_capacity(items.len() + 1);
    if ctx.db.ks.raw_entry(dst).is_some() {
        ops.push(op(dst, OpKind::Del));
    }
    for (member, score) in &items {
        ops.push(op(
            dst,
            OpKind::ZAdd {
                slot: NEW_SLOT,
                member: Bytes::copy_from_slice(member),
                score: stored(*score),
            },
        ));
    }
    let count = items.len() as i64;
    if !ops.is_empty() {
        ctx.write(ops);
    }
    ctx.out.int(count);
    Ok(())
}

/// The members a parsed range selects, in reply order.
fn collect_range<'a, 'r: 'a>(
    z: &'a ZSetValue,
    range: &Range<'r>,
    reverse: bool,
    offset: i64,
    limit: i64,
) -> Vec<(&'a [u8], f64)> {
    let entry = |e: &'a (Score, Blob)| (&e.1[..], e.0 .0);
    // A negative offset walks off the end (Redis's `while (ln && offset--)`); a negative limit
    // means no limit.
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    match range {
        Range::Rank(start, end) => {
            let len = z.order.len() as i64;
            let mut start = if *start < 0 { len + start } else { *start };
            let mut end = if *end < 0 { len + end } else { *end };
            if start < 0 {
                start = 0;
            }
            if start > end || start >= len {
                return Vec::new();
            }
            if end >= len {
                end = len - 1;
            }
            let n = (end - start + 1) as usize;
            let mut out = Vec::with_capacity(n);
            if reverse {
                out.extend(z.order.iter().rev().skip(start as usize).take(n).map(entry));
            } else {
                out.extend(z.order.iter().skip(start as usize).take(n).map(entry));
            }
            out
        }
        Range::Score(r) => {
            if offset < 0 || (offset > 0 && offset as u64 >= z.order.len() as u64) {
                return Vec::new();
            }
            r.iter(z, reverse)
                .skip(offset as usize)
                .take(take)
                .map(entry)
                .collect()
        }
        Range::Lex(r) => {
            if offset < 0 {
                return Vec::new();
            }
            let Some(it) = r.start(z, reverse) else {
                return Vec::new();
            };
            let r = *r;
            it.skip(offset as usize)
                .take(take)
                .take_while(|(_, m)| r.still_in(m, reverse))
                .map(entry)
                .collect()
        }
    }
}

/// A ZRANGE-family reply: RESP2 a flat array (member, score, ...); RESP3 with scores an array
/// of `[member, score]` pairs.
fn write_range_reply(out: &mut ReplyWriter<'_>, items: &[(&[u8], f64)], withscores: bool) {
    let resp3 = out.proto == Protocol::Resp3;
    if withscores && !resp3 {
        out.array(items.len() * 2);
    } else {
        out.array(items.len());
    }
    for (member, score) in items {
        if withscores && resp3 {
            out.array(2);
        }
        out.bulk(member);
        if withscores {
            out.double(*score);
        }
    }
}

fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = ScoreRange::parse(&args[2], &args[3])?;
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let n = z.map(|z| range.iter(z, false).count()).unwrap_or(0);
    ctx.out.int(n as i64);
    Ok(())
}

fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = LexRange::parse(&args[2], &args[3])?;
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let n = match z.and_then(|z| range.start(z, false)) {
        Some(it) => it.take_while(|(_, m)| range.lte_max(m)).count(),
        None => 0,
    };
    ctx.out.int(n as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pops

fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, false)
}

fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, true)
}

/// ZPOPMIN / ZPOPMAX (`zpopMinMaxCommand`): without a count a flat `[member, score]`; with a
/// count RESP3 nests the pairs.
fn pop_generic(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    }
    let count: Option<i64> = match args.get(2) {
        Some(a) => match crate::resp::parse_i64_strict(a) {
            Some(n) if n >= 0 => Some(n),
            _ => return Err(Cow::Borrowed(ERR_POSITIVE)),
        },
        None => None,
    };
    let key = &args[1];
    let (_, zset) = write_zset(&ctx.db.ks, key, ctx.now_ms)?;
    let Some(z) = zset else {
        ctx.out.array(0);
        return Ok(());
    };
    if count == Some(0) {
        ctx.out.array(0);
        return Ok(());
    }
    let n = (count.unwrap_or(1) as u64).min(z.order.len() as u64) as usize;
    let nested = ctx.out.proto == Protocol::Resp3 && count.is_some();
    let mut ops = Vec::with_capacity(n);
    let popped: Vec<(&[u8], f64)> = if max {
        z.order
            .iter()
            .rev()
            .take(n)
            .map(|(s, m)| (&m[..], s.0))
            .collect()
    } else {
        z.order.iter().take(n).map(|(s, m)| (&m[..], s.0)).collect()
    };
    if nested {
        ctx.out.array(n);
    } else {
        ctx.out.array(n * 2);
    }
    for (member, score) in &popped {
        if nested {
            ctx.out.array(2);
        }
        ctx.out.bulk(member);
        ctx.out.double(*score);
        ops.push(op(
            key,
            OpKind::ZRem {
                member: Bytes::copy_from_slice(member),
            },
        ));
    }
    drop(popped);
    if !ops.is_empty() {
        ctx.write(ops);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ZSCAN

fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = parse_scan_cursor(&args[2])?;
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let Some(z) = z else {
        write_empty_scan(&mut ctx.out);
        return Ok(());
    };
    let opts = parse_scan_options(&args[3..], false)?;
    // Sets within Redis's compact-encoding limits come back whole with Redis's score text.
    let compact =
        z.order.len() <= COMPACT_ENTRIES && z.members.keys().all(|m| m.len() <= COMPACT_VALUE);
    let (next, page): (u64, Vec<(&[u8], f64)>) = if compact {
        (0, z.order.iter().map(|(s, m)| (&m[..], s.0)).collect())
    } else {
        scan_page(
            z.members.iter().map(|(m, c)| (&m[..], (&m[..], c.score()))),
            cursor,
            opts.count,
        )
    };
    let shown: Vec<(&[u8], f64)> = page.into_iter().filter(|(m, _)| opts.matches(m)).collect();
    ctx.out.array(2);
    ctx.out.bulk_display(next);
    ctx.out.array(shown.len() * 2);
    for (member, score) in shown {
        ctx.out.bulk(member);
        if compact {
            ctx.out.bulk(compact_score_text(score).as_bytes());
        } else {
            ctx.out
                .bulk(crate::resp::format_double_g17(score).as_bytes());
        }
    }
    Ok(())
}

/// A score as Redis's compact encoding stores it: integers within ±2^62 as integers
/// (`double2ll`), anything else with `%.17g`.
fn compact_score_text(v: f64) -> String {
    const LIMIT: f64 = 4_611_686_018_427_387_904.0; // (double)(LLONG_MAX / 2)
    if v.is_finite() && (-LIMIT..=LIMIT).contains(&v) && v.trunc() == v {
        return (v as i64).to_string();
    }
    crate::resp::format_double_g17(v)
}

#[cfg(test)]
mod tests {
    use super::testing::TestDb;
    use super::{c_strtod, parse_score_bound};
    use crate::crdt::Effect;
    use crate::resp::Protocol;

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    fn t(db: &mut TestDb, args: &[&str]) -> String {
        db.text(args)
    }

    /// Moves every effect `from` has made so far to `to` (causal order is the outbox order).
    fn ship(from: &mut TestDb, to: &mut TestDb) {
        let effects: Vec<Effect> = std::mem::take(&mut from.db.ks.outbox);
        for e in &effects {
            to.db.ks.apply(e);
        }
    }

    #[test]
    fn zadd_flags_and_replies() {
        let mut db = TestDb::new();
        assert_eq!(t(&mut db, &["ZADD", "z", "1", "a", "2", "b"]), ":2\r\n");
        assert_eq!(
            t(&mut db, &["ZADD", "z", "NX", "5", "a", "3", "c"]),
            ":1\r\n"
        );
        assert_eq!(t(&mut db, &["ZSCORE", "z", "a"]), "$1\r\n1\r\n");
        assert_eq!(
            t(&mut db, &["ZADD", "z", "XX", "CH", "6", "a", "7", "d"]),
            ":1\r\n"
        );
        assert_eq!(t(&mut db, &["ZSCORE", "z", "d"]), "$-1\r\n");
        assert_eq!(
            t(&mut db, &["ZADD", "z", "GT", "CH", "1", "a", "9", "b"]),
            ":1\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZADD", "z", "LT", "CH", "10", "a", "0", "b"]),
            ":1\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            "*6\r\n$1\r\nb\r\n$1\r\n0\r\n$1\r\nc\r\n$1\r\n3\r\n$1\r\na\r\n$1\r\n6\r\n"
        );
        // A member repeated in one command sees its own earlier update.
        assert_eq!(
            t(&mut db, &["ZADD", "z", "CH", "1", "r", "2", "r", "2", "r"]),
            ":2\r\n"
        );
        assert_eq!(t(&mut db, &["ZSCORE", "z", "r"]), "$1\r\n2\r\n");
        assert_eq!(
            t(&mut db, &["ZADD", "z", "INCR", "2.5", "a"]),
            "$3\r\n8.5\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZADD", "z", "NX", "INCR", "1", "a"]),
            "$-1\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZADD", "z", "GT", "INCR", "-1", "a"]),
            "$-1\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZADD", "nokey", "XX", "INCR", "1", "a"]),
            "$-1\r\n"
        );
        assert_eq!(t(&mut db, &["ZADD", "nokey", "XX", "1", "a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["EXISTS", "nokey"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZINCRBY", "z", "-0.5", "a"]), "$1\r\n8\r\n");
        assert_eq!(
            t(&mut db, &["ZINCRBY", "z", "0.1", "new"]),
            "$19\r\n0.10000000000000001\r\n"
        );
        assert_eq!(t(&mut db, &["ZCARD", "z"]), ":5\r\n");
        // -0 is stored as 0, but the reply of the increment shows what was computed.
        assert_eq!(t(&mut db, &["ZINCRBY", "z", "-0", "m0"]), "$2\r\n-0\r\n");
        assert_eq!(t(&mut db, &["ZSCORE", "z", "m0"]), "$1\r\n0\r\n");
    }

    #[test]
    fn zadd_errors_in_redis_order() {
        let mut db = TestDb::new();
        t(&mut db, &["SET", "s", "x"]);
        let cases: &[(&[&str], &str)] = &[
            (
                &["ZADD", "z", "1"],
                "-ERR wrong number of arguments for 'zadd' command\r\n",
            ),
            (&["ZADD", "z", "1", "a", "2"], "-ERR syntax error\r\n"),
            (&["ZADD", "z", "NX", "XX"], "-ERR syntax error\r\n"),
            (&["ZADD", "z", "BAD", "1", "a"], "-ERR syntax error\r\n"),
            (
                &["ZADD", "z", "NX", "XX", "x", "a"],
                "-ERR XX and NX options at the same time are not compatible\r\n",
            ),
            (
                &["ZADD", "z", "GT", "LT", "1", "a"],
                "-ERR GT, LT, and/or NX options at the same time are not compatible\r\n",
            ),
            (
                &["ZADD", "z", "NX", "GT", "1", "a"],
                "-ERR GT, LT, and/or NX options at the same time are not compatible\r\n",
            ),
            (
                &["ZADD", "z", "INCR", "1", "a", "x", "b"],
                "-ERR INCR option supports a single increment-element pair\r\n",
            ),
            (
                &["ZADD", "z", "1", "a", "nan", "b"],
                "-ERR value is not a valid float\r\n",
            ),
            (
                &["ZADD", "s", "x", "a"],
                "-ERR value is not a valid float\r\n",
            ),
            (&["ZADD", "s", "1", "a"], WRONGTYPE),
            (&["ZINCRBY", "s", "1", "a"], WRONGTYPE),
            (&["ZINCRBY", "z", "nx", "a"], "-ERR syntax error\r\n"),
            (
                &["ZINCRBY", "z", "abc", "a"],
                "-ERR value is not a valid float\r\n",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(&t(&mut db, args), want, "{args:?}");
        }
        assert_eq!(t(&mut db, &["EXISTS", "z"]), ":0\r\n");
        t(&mut db, &["ZADD", "z", "+inf", "m"]);
        assert_eq!(
            t(&mut db, &["ZINCRBY", "z", "-inf", "m"]),
            "-ERR resulting score is not a number (NaN)\r\n"
        );
        assert_eq!(t(&mut db, &["ZSCORE", "z", "m"]), "$3\r\ninf\r\n");
    }

    #[test]
    fn unchanged_scores_write_nothing() {
        let mut db = TestDb::new();
        t(&mut db, &["ZADD", "z", "1", "a"]);
        let before = db.db.ks.outbox.len();
        assert_eq!(t(&mut db, &["ZADD", "z", "1", "a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZADD", "z", "NX", "5", "a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZADD", "z", "GT", "0", "a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZINCRBY", "z", "0", "a"]), "$1\r\n1\r\n");
        assert_eq!(t(&mut db, &["ZREM", "z", "nothere"]), ":0\r\n");
        assert_eq!(db.db.ks.outbox.len(), before);
    }

    #[test]
    fn point_reads_and_ranks() {
        let mut db = TestDb::new();
        t(
            &mut db,
            &["ZADD", "k", "1", "a", "2", "b", "3", "c", "3", "d"],
        );
        assert_eq!(t(&mut db, &["ZRANK", "k", "a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZRANK", "k", "d"]), ":3\r\n");
        assert_eq!(t(&mut db, &["ZREVRANK", "k", "d"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZREVRANK", "k", "a"]), ":3\r\n");
        assert_eq!(t(&mut db, &["ZRANK", "k", "zz"]), "$-1\r\n");
        assert_eq!(t(&mut db, &["ZRANK", "none", "a"]), "$-1\r\n");
        assert_eq!(
            t(&mut db, &["ZRANK", "k", "a", "WITHSCORE"]),
            "-ERR wrong number of arguments for 'zrank' command\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZMSCORE", "k", "a", "zz", "c"]),
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n"
        );
        assert_eq!(t(&mut db, &["ZMSCORE", "none", "a"]), "*1\r\n$-1\r\n");
        assert_eq!(t(&mut db, &["ZREM", "k", "a", "a", "b", "zz"]), ":2\r\n");
        assert_eq!(t(&mut db, &["ZREM", "k", "c", "d"]), ":2\r\n");
        assert_eq!(t(&mut db, &["EXISTS", "k"]), ":0\r\n");
        let hits = db.db.stats.keyspace_hits;
        t(&mut db, &["ZADD", "k", "1", "a"]);
        t(&mut db, &["ZSCORE", "k", "a"]);
        t(&mut db, &["ZSCORE", "none", "a"]);
        assert_eq!(db.db.stats.keyspace_hits, hits + 1);
    }

    #[test]
    fn ranges_by_rank_score_and_lex() {
        let mut db = TestDb::new();
        t(
            &mut db,
            &[
                "ZADD", "g", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
            ],
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "g", "-2", "-1"]),
            "*2\r\n$1\r\nd\r\n$1\r\ne\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "g", "0", "1", "REV"]),
            "*2\r\n$1\r\ne\r\n$1\r\nd\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZREVRANGE", "g", "-1", "-1"]),
            "*1\r\n$1\r\na\r\n"
        );
        assert_eq!(t(&mut db, &["ZRANGE", "g", "3", "1"]), "*0\r\n");
        // LIMIT with the default count -1 is accepted for a rank range.
        assert_eq!(
            t(&mut db, &["ZRANGE", "g", "0", "0", "LIMIT", "5", "-1"]),
            "*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["ZRANGE", "g", "(2", "4", "BYSCORE", "WITHSCORES"]
            ),
            "*4\r\n$1\r\nc\r\n$1\r\n3\r\n$1\r\nd\r\n$1\r\n4\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["ZRANGE", "g", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "2"]
            ),
            "*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["ZRANGEBYSCORE", "g", "-inf", "+inf", "LIMIT", "-1", "2"]
            ),
            "*0\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["ZREVRANGEBYSCORE", "g", "(3", "-inf", "LIMIT", "0", "-7"]
            ),
            "*2\r\n$1\r\nb\r\n$1\r\na\r\n"
        );
        // strtod rules: leading blanks, the empty string and huge values are accepted.
        assert_eq!(t(&mut db, &["ZCOUNT", "g", " 2", "(",]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZCOUNT", "g", "", "1e400"]), ":5\r\n");
        assert_eq!(t(&mut db, &["ZCOUNT", "g", "(1", "(5"]), ":3\r\n");
        assert_eq!(
            t(&mut db, &["ZCOUNT", "g", "2 ", "3"]),
            "-ERR min or max is not a float\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "g", "0", "-1", "LIMIT", "0", "1"]),
            "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "g", "-", "+", "BYLEX", "WITHSCORES"]),
            "-ERR syntax error, WITHSCORES not supported in combination with BYLEX\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "g", "0", "1", "REV", "REV"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGEBYSCORE", "g", "0", "1", "BYSCORE"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["ZRANGE", "g", "0", "1", "LIMIT", "x", "1", "BAD"]
            ),
            "-ERR value is not an integer or out of range\r\n"
        );

        t(
            &mut db,
            &[
                "ZADD", "lex", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e",
            ],
        );
        assert_eq!(
            t(&mut db, &["ZRANGEBYLEX", "lex", "(b", "[d"]),
            "*2\r\n$1\r\nc\r\n$1\r\nd\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["ZREVRANGEBYLEX", "lex", "+", "-", "LIMIT", "1", "2"]
            ),
            "*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "lex", "[d", "(b", "BYLEX", "REV"]),
            "*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
        );
        assert_eq!(t(&mut db, &["ZLEXCOUNT", "lex", "[b", "+"]), ":4\r\n");
        assert_eq!(t(&mut db, &["ZLEXCOUNT", "lex", "(a", "(a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZLEXCOUNT", "lex", "+", "-"]), ":0\r\n");
        assert_eq!(
            t(&mut db, &["ZLEXCOUNT", "lex", "b", "+"]),
            "-ERR min or max not valid string range item\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGEBYLEX", "lex", "-x", "+"]),
            "-ERR min or max not valid string range item\r\n"
        );
        // Different scores: the walk in score order of Redis's compact encoding.
        t(
            &mut db,
            &["ZADD", "mixed", "1", "z", "2", "y", "3", "x", "4", "a"],
        );
        assert_eq!(
            t(&mut db, &["ZRANGEBYLEX", "mixed", "-", "+"]),
            "*4\r\n$1\r\nz\r\n$1\r\ny\r\n$1\r\nx\r\n$1\r\na\r\n"
        );
        assert_eq!(t(&mut db, &["ZRANGEBYLEX", "mixed", "[b", "+"]), "*0\r\n");
        assert_eq!(t(&mut db, &["ZRANGEBYLEX", "mixed", "[a", "[y"]), "*0\r\n");

        t(&mut db, &["SET", "s", "x"]);
        assert_eq!(t(&mut db, &["ZRANGE", "s", "0", "1"]), WRONGTYPE);
        assert_eq!(
            t(&mut db, &["ZRANGE", "s", "x", "1"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t(&mut db, &["ZCOUNT", "s", "0", "1"]), WRONGTYPE);
        assert_eq!(
            t(&mut db, &["ZRANGE", "none", "0", "-1", "WITHSCORES"]),
            "*0\r\n"
        );
    }

    #[test]
    fn resp3_replies_nest_score_pairs() {
        let mut db = TestDb::new();
        db.client.proto = Protocol::Resp3;
        t(&mut db, &["ZADD", "z", "1.5", "m", "2", "n"]);
        assert_eq!(
            t(&mut db, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            "*2\r\n*2\r\n$1\r\nm\r\n,1.5\r\n*2\r\n$1\r\nn\r\n,2\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "z", "0", "-1"]),
            "*2\r\n$1\r\nm\r\n$1\r\nn\r\n"
        );
        assert_eq!(t(&mut db, &["ZSCORE", "z", "m"]), ",1.5\r\n");
        assert_eq!(t(&mut db, &["ZSCORE", "z", "x"]), "_\r\n");
        assert_eq!(t(&mut db, &["ZRANK", "none", "x"]), "_\r\n");
        assert_eq!(
            t(&mut db, &["ZPOPMAX", "z", "1"]),
            "*1\r\n*2\r\n$1\r\nn\r\n,2\r\n"
        );
        assert_eq!(t(&mut db, &["ZPOPMIN", "z"]), "*2\r\n$1\r\nm\r\n,1.5\r\n");
        assert_eq!(t(&mut db, &["ZPOPMIN", "z"]), "*0\r\n");
    }

    #[test]
    fn pops() {
        let mut db = TestDb::new();
        t(&mut db, &["ZADD", "p", "1", "a", "2", "b", "3", "c"]);
        assert_eq!(
            t(&mut db, &["ZPOPMAX", "p"]),
            "*2\r\n$1\r\nc\r\n$1\r\n3\r\n"
        );
        assert_eq!(t(&mut db, &["ZPOPMIN", "p", "0"]), "*0\r\n");
        assert_eq!(
            t(&mut db, &["ZPOPMIN", "p", "-1"]),
            "-ERR value is out of range, must be positive\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZPOPMIN", "p", "x"]),
            "-ERR value is out of range, must be positive\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZPOPMIN", "p", "1", "2"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZPOPMIN", "p", "10"]),
            "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        assert_eq!(t(&mut db, &["EXISTS", "p"]), ":0\r\n");
        assert_eq!(t(&mut db, &["ZPOPMAX", "p", "2"]), "*0\r\n");
        t(&mut db, &["SET", "s", "x"]);
        assert_eq!(t(&mut db, &["ZPOPMIN", "s"]), WRONGTYPE);
    }

    #[test]
    fn zrangestore_replaces_or_deletes_the_destination() {
        let mut db = TestDb::new();
        t(&mut db, &["ZADD", "src", "1", "a", "2", "b", "3", "c"]);
        t(&mut db, &["SET", "dst", "x"]);
        t(&mut db, &["EXPIRE", "dst", "100"]);
        assert_eq!(
            t(
                &mut db,
                &["ZRANGESTORE", "dst", "src", "2", "+inf", "BYSCORE"]
            ),
            ":2\r\n"
        );
        assert_eq!(t(&mut db, &["TYPE", "dst"]), "+zset\r\n");
        assert_eq!(t(&mut db, &["TTL", "dst"]), ":-1\r\n");
        assert_eq!(
            t(&mut db, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]),
            "*4\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\nc\r\n$1\r\n3\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["ZRANGESTORE", "dst", "src", "0", "0", "WITHSCORES"]
            ),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGESTORE", "dst", "src", "5", "9"]),
            ":0\r\n"
        );
        assert_eq!(t(&mut db, &["EXISTS", "dst"]), ":0\r\n");
        assert_eq!(
            t(&mut db, &["ZRANGESTORE", "src", "src", "0", "0"]),
            ":1\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZRANGE", "src", "0", "-1"]),
            "*1\r\n$1\r\na\r\n"
        );
    }

    #[test]
    fn zscan_small_and_paged() {
        let mut db = TestDb::new();
        t(
            &mut db,
            &["ZADD", "sc", "1", "a", "2.5", "b", "1e18", "c", "0.1", "d"],
        );
        assert_eq!(
            t(&mut db, &["ZSCAN", "sc", "77", "MATCH", "[ac]"]),
            "*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nc\r\n$19\r\n1000000000000000000\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZSCAN", "none", "0", "COUNT", "0"]),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(
            t(&mut db, &["ZSCAN", "sc", "0", "COUNT", "0"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(t(&mut db, &["ZSCAN", "sc", "x"]), "-ERR invalid cursor\r\n");
        assert_eq!(
            t(&mut db, &["ZSCAN", "sc", "0", "TYPE", "zset"]),
            "-ERR syntax error\r\n"
        );

        // A large set is paged; every member comes back exactly once.
        let mut args = vec!["ZADD".to_string(), "big".to_string()];
        for i in 0..300 {
            args.push((i % 37).to_string());
            args.push(format!("m{i}"));
        }
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        assert_eq!(t(&mut db, &args), ":300\r\n");
        let mut cursor = "0".to_string();
        let mut seen = std::collections::BTreeSet::new();
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 1000, "scan does not terminate");
            let reply = t(&mut db, &["ZSCAN", "big", &cursor, "COUNT", "20"]);
            let lines: Vec<&str> = reply.split("\r\n").collect();
            cursor = lines[2].to_string();
            for pair in lines[5..].chunks(4) {
                if pair.len() == 4 {
                    assert!(seen.insert(pair[0].to_string()), "duplicate {}", pair[0]);
                }
            }
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 300);
        assert!(calls > 5);
    }

    /// From x=1.5, A: ZINCRBY z 1 x ‖ B: ZINCRBY z 1 x → 3.5 everywhere.
    #[test]
    fn concurrent_increments_add_up() {
        let mut a = TestDb::region("a");
        let mut b = TestDb::region("b");
        t(&mut a, &["ZADD", "z", "1.5", "x"]);
        ship(&mut a, &mut b);
        assert_eq!(t(&mut a, &["ZINCRBY", "z", "1", "x"]), "$3\r\n2.5\r\n");
        assert_eq!(t(&mut b, &["ZADD", "z", "INCR", "1", "x"]), "$3\r\n2.5\r\n");
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        assert_eq!(t(&mut a, &["ZSCORE", "z", "x"]), "$3\r\n3.5\r\n");
        assert_eq!(t(&mut b, &["ZSCORE", "z", "x"]), "$3\r\n3.5\r\n");
        assert_eq!(t(&mut a, &["ZRANGE", "z", "0", "-1"]), "*1\r\n$1\r\nx\r\n");
    }

    /// From x=4, A: ZREM z x ‖ B: ZINCRBY z 2 x → x present with score 2.
    #[test]
    fn remove_cancels_only_the_observed_score() {
        let mut a = TestDb::region("a");
        let mut b = TestDb::region("b");
        t(&mut a, &["ZADD", "z", "4", "x", "1", "y"]);
        ship(&mut a, &mut b);
        assert_eq!(t(&mut a, &["ZREM", "z", "x"]), ":1\r\n");
        assert_eq!(t(&mut b, &["ZINCRBY", "z", "2", "x"]), "$1\r\n6\r\n");
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        for db in [&mut a, &mut b] {
            assert_eq!(t(db, &["ZSCORE", "z", "x"]), "$1\r\n2\r\n");
            assert_eq!(
                t(db, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
                "*4\r\n$1\r\ny\r\n$1\r\n1\r\n$1\r\nx\r\n$1\r\n2\r\n"
            );
        }
    }

    /// A: ZADD z 1 x ‖ B: ZADD z 2 x (B later) → 2 everywhere; a pop that had not seen a
    /// concurrent add leaves it.
    #[test]
    fn concurrent_score_writes_take_the_later_one() {
        let mut a = TestDb::region("a");
        let mut b = TestDb::region("b");
        t(&mut a, &["ZADD", "z", "1", "x"]);
        b.now_ms += 10;
        t(&mut b, &["ZADD", "z", "2", "x"]);
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        assert_eq!(t(&mut a, &["ZSCORE", "z", "x"]), "$1\r\n2\r\n");
        assert_eq!(t(&mut b, &["ZSCORE", "z", "x"]), "$1\r\n2\r\n");
        assert_eq!(t(&mut a, &["ZCARD", "z"]), ":1\r\n");
        assert_eq!(t(&mut a, &["ZPOPMIN", "z"]), "*2\r\n$1\r\nx\r\n$1\r\n2\r\n");
        t(&mut b, &["ZADD", "z", "5", "y"]);
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        assert_eq!(t(&mut a, &["ZRANGE", "z", "0", "-1"]), "*1\r\n$1\r\ny\r\n");
        assert_eq!(t(&mut b, &["ZRANGE", "z", "0", "-1"]), "*1\r\n$1\r\ny\r\n");
    }

    #[test]
    fn number_parsers_follow_c() {
        assert_eq!(c_strtod(b""), Some(0.0));
        assert_eq!(c_strtod(b" \t1.5"), Some(1.5));
        assert_eq!(c_strtod(b"1.5 "), None);
        assert_eq!(c_strtod(b"   "), None);
        assert_eq!(c_strtod(b"1e400"), Some(f64::INFINITY));
        assert_eq!(c_strtod(b"-0x1p1"), Some(-2.0));
        assert_eq!(c_strtod(b"nan"), None);
        assert_eq!(parse_score_bound(b"(3"), Some((3.0, true)));
        assert_eq!(parse_score_bound(b"("), Some((0.0, true)));
        assert_eq!(parse_score_bound(b"2\0junk"), Some((2.0, false)));
    }
}
