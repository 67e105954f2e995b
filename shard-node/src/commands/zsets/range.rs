//! The ZRANGE family (ZRANGE, ZRANGESTORE, ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE,
//! ZRANGEBYLEX, ZREVRANGEBYLEX) and the range counts ZCOUNT and ZLEXCOUNT.

use super::bounds::{LexRange, ScoreRange};
use super::*;
use crate::crdt::value::{Blob, Score};

const ERR_LIMIT_RANK: &str =
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX";
const ERR_WITHSCORES_LEX: &str =
    "ERR syntax error, WITHSCORES not supported in combination with BYLEX";

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

pub(super) fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Auto, Direction::Auto)
}

pub(super) fn zrangestore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 2, true, RangeType::Auto, Direction::Auto)
}

pub(super) fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Rank, Direction::Reverse)
}

pub(super) fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Score, Direction::Forward)
}

pub(super) fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Score, Direction::Reverse)
}

pub(super) fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Lex, Direction::Forward)
}

pub(super) fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, 1, false, RangeType::Lex, Direction::Reverse)
}

/// The parsed range of a ZRANGE-family command.
pub(super) enum Range<'a> {
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
pub(super) fn collect_range<'a, 'r: 'a>(
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
pub(super) fn write_range_reply(
    out: &mut ReplyWriter<'_>,
    items: &[(&[u8], f64)],
    withscores: bool,
) {
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

pub(super) fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = ScoreRange::parse(&args[2], &args[3])?;
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let n = z.map(|z| range.iter(z, false).count()).unwrap_or(0);
    ctx.out.int(n as i64);
    Ok(())
}

pub(super) fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = LexRange::parse(&args[2], &args[3])?;
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let n = match z.and_then(|z| range.start(z, false)) {
        Some(it) => it.take_while(|(_, m)| range.lte_max(m)).count(),
        None => 0,
    };
    ctx.out.int(n as i64);
    Ok(())
}
