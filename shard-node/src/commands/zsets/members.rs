//! ZREM, the point reads (ZSCORE, ZMSCORE, ZCARD, ZRANK, ZREVRANK), ZPOPMIN / ZPOPMAX and
//! ZSCAN.

use super::*;
use crate::commands::util::scan::{
    parse_scan_cursor, parse_scan_options, scan_page, write_empty_scan,
};
use crate::crdt::value::{FastMap, Score};

const ERR_POSITIVE: &str = "ERR value is out of range, must be positive";

/// Redis's `zset-max-listpack-entries` / `zset-max-listpack-value` defaults: sets within both
/// limits are the ones Redis scans in a single call.
const COMPACT_ENTRIES: usize = 128;
const COMPACT_VALUE: usize = 64;

// ---------------------------------------------------------------------------------------------
// ZREM

pub(super) fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
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

pub(super) fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    match z.and_then(|z| z.members.get(&args[2][..])) {
        Some(c) => ctx.out.double(c.score()),
        None => ctx.out.null(),
    }
    Ok(())
}

pub(super) fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
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

pub(super) fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    ctx.out.int(z.map(|z| z.members.len() as i64).unwrap_or(0));
    Ok(())
}

pub(super) fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rank_generic(ctx, args, false)
}

pub(super) fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
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
// Pops

pub(super) fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, false)
}

pub(super) fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
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

pub(super) fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
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

// ---------------------------------------------------------------------------------------------
// ZMPOP

/// ZMPOP numkeys key... MIN|MAX [COUNT count]: pops from the first non-empty sorted set and
/// replies `[key, [[member, score], ...]]`, or a null array when every set is empty.
pub(super) fn zmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let parsed = super::util::args::multi_pop_args(&args[1..], |word| {
        if is(word, "min") {
            Ok(false)
        } else if is(word, "max") {
            Ok(true)
        } else {
            Err(Cow::Borrowed(ERR_SYNTAX))
        }
    })?;
    let (max, count) = (parsed.side, parsed.count);
    let mut found = None;
    for key in parsed.keys {
        if let (_, Some(z)) = write_zset(&ctx.db.ks, key, ctx.now_ms)? {
            if !z.order.is_empty() {
                found = Some((key, z));
                break;
            }
        }
    }
    let Some((key, z)) = found else {
        ctx.out.null_array();
        return Ok(());
    };
    let n = count.min(z.order.len());
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
    ctx.out.array(2);
    ctx.out.bulk(key);
    ctx.out.array(n);
    let mut ops = Vec::with_capacity(n);
    for (member, score) in &popped {
        ctx.out.array(2);
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
    ctx.write(ops);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ZRANDMEMBER

/// ZRANDMEMBER key [count [WITHSCORES]] (`zrandmemberCommand`): a negative count may repeat
/// members; a count at least the size of the set returns it whole, highest score first.
pub(super) fn zrandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    use crate::commands::util::random::{
        check_random_reply, pick_positions, random_count_arg, random_positions,
    };
    use rand::Rng;
    if args.len() == 2 {
        let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
        let pick = z.and_then(|z| {
            let len = z.order.len();
            if len == 0 {
                return None;
            }
            let at = rand::rng().random_range(0..len);
            z.order.iter().nth(at).map(|(_, m)| &m[..])
        });
        ctx.out.bulk_or_null(pick);
        return Ok(());
    }
    let n = random_count_arg(&args[2])?;
    let withscores = match args.len() {
        3 => false,
        4 if is(&args[3], "withscores") => {
            if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n) {
                return Err(Cow::Borrowed("ERR value is out of range"));
            }
            true
        }
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    };
    let z = read_zset(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?;
    let Some(z) = z else {
        ctx.out.array(0);
        return Ok(());
    };
    let len = z.order.len();
    let count = n.unsigned_abs();
    if len == 0 || count == 0 {
        ctx.out.array(0);
        return Ok(());
    }
    let picked: Vec<(&[u8], f64)> = if n < 0 || count == 1 {
        check_random_reply(count)?;
        let all: Vec<(&[u8], f64)> = z.order.iter().map(|(s, m)| (&m[..], s.0)).collect();
        let mut rng = rand::rng();
        (0..count)
            .map(|_| all[rng.random_range(0..all.len())])
            .collect()
    } else if count >= len as u64 {
        // The whole set, highest score first, as Redis walks it.
        z.order.iter().rev().map(|(s, m)| (&m[..], s.0)).collect()
    } else {
        let positions = random_positions(len, count as usize);
        pick_positions(z.order.iter().map(|(s, m)| (&m[..], s.0)), &positions)
    };
    super::range::write_range_reply(&mut ctx.out, &picked, withscores);
    Ok(())
}
