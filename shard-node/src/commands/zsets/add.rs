//! ZADD and ZINCRBY: option words, and the register writes or counter increments they make.

use super::*;
use crate::crdt::value::FastMap;
use smallvec::SmallVec;

const ERR_NX_XX: &str = "ERR XX and NX options at the same time are not compatible";
const ERR_GT_LT_NX: &str = "ERR GT, LT, and/or NX options at the same time are not compatible";
const ERR_INCR_PAIRS: &str = "ERR INCR option supports a single increment-element pair";
const ERR_NAN: &str = "ERR resulting score is not a number (NaN)";

pub(super) fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, false)
}

pub(super) fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
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
