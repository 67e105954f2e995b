//! Sorted-set algebra: ZUNION, ZINTER, ZDIFF, ZINTERCARD and ZUNIONSTORE, ZINTERSTORE,
//! ZDIFFSTORE (`zunionInterDiffGenericCommand`).
//!
//! Inputs may be sorted sets or sets (every set member has score 1), as in Redis. Weights and
//! aggregation follow Redis: a weighted score that is NaN (`0 * inf`) counts as 0, a sum of
//! `+inf` and `-inf` is 0. The store commands replace the destination in one effect: a `Del`
//! of whatever it held, then a `ZAdd` of every member of the result into a new sorted set; an
//! empty result only deletes the destination.

use super::range::write_range_reply;
use super::*;
use crate::crdt::value::SetValue;
use std::collections::HashMap;

const ERR_WEIGHT: &str = "ERR weight value is not a float";
const ERR_LIMIT_NEGATIVE: &str = "ERR LIMIT can't be negative";

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// One input of the algebra.
#[derive(Clone, Copy)]
enum Source<'a> {
    Missing,
    ZSet(&'a ZSetValue),
    Set(&'a SetValue),
}

impl<'a> Source<'a> {
    fn len(&self) -> usize {
        match self {
            Source::Missing => 0,
            Source::ZSet(z) => z.members.len(),
            Source::Set(s) => s.members.len(),
        }
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            Source::Missing => None,
            Source::ZSet(z) => z.members.get(member).map(|c| c.score()),
            Source::Set(s) => s.members.contains_key(member).then_some(1.0),
        }
    }

    fn entries(&self) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            Source::Missing => Box::new(std::iter::empty()),
            Source::ZSet(z) => Box::new(z.order.iter().map(|(s, m)| (&m[..], s.0))),
            Source::Set(s) => Box::new(s.members.keys().map(|m| (&m[..], 1.0))),
        }
    }
}

/// `zunionInterAggregate`.
fn aggregate(target: &mut f64, value: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += value;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if value < *target {
                *target = value;
            }
        }
        Aggregate::Max => {
            if value > *target {
                *target = value;
            }
        }
    }
}

/// A weighted score; NaN counts as 0.
fn weighted(score: f64, weight: f64) -> f64 {
    let v = score * weight;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// What a parsed command asks for.
struct Request<'a> {
    sources: Vec<Source<'a>>,
    weights: Vec<f64>,
    how: Aggregate,
    withscores: bool,
    limit: usize,
}

/// Parses `numkeys key... [options]` from `args[numkeys_at]` on and reads the inputs, in
/// Redis's order of checks: the count, the number of arguments, the types of the inputs, then
/// the options. `store` and `card` select which options exist.
#[allow(clippy::too_many_arguments)]
fn parse<'a>(
    ks: &'a Keyspace,
    stats: &mut Stats,
    args: &[Bytes],
    numkeys_at: usize,
    op: SetOp,
    store: bool,
    card: bool,
    now_ms: u64,
) -> Result<Request<'a>, CmdError> {
    let setnum = int_arg(&args[numkeys_at])?;
    if setnum < 1 {
        return Err(Cow::Owned(format!(
            "ERR at least 1 input key is needed for '{}' command",
            lower(&args[0])
        )));
    }
    let first = numkeys_at + 1;
    if setnum as u64 > (args.len() - first) as u64 {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    }
    let setnum = setnum as usize;
    let mut sources = Vec::with_capacity(setnum);
    for key in &args[first..first + setnum] {
        let source = match ks.get(key, now_ms) {
            None => {
                stats.keyspace_misses += 1;
                Source::Missing
            }
            Some(slot) => {
                stats.keyspace_hits += 1;
                match &slot.value {
                    Value::ZSet(z) => Source::ZSet(z),
                    Value::Set(s) => Source::Set(s),
                    _ => return Err(Cow::Borrowed(ERR_WRONGTYPE)),
                }
            }
        };
        sources.push(source);
    }
    let mut req = Request {
        sources,
        weights: vec![1.0; setnum],
        how: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let mut j = first + setnum;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if op != SetOp::Diff && !card && remaining > setnum && is(a, "weights") {
            for (i, w) in args[j + 1..j + 1 + setnum].iter().enumerate() {
                req.weights[i] =
                    crate::resp::parse_f64_strict(w).ok_or(Cow::Borrowed(ERR_WEIGHT))?;
            }
            j += 1 + setnum;
        } else if op != SetOp::Diff && !card && remaining >= 2 && is(a, "aggregate") {
            let v = &args[j + 1];
            req.how = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(Cow::Borrowed(ERR_SYNTAX));
            };
            j += 2;
        } else if !store && !card && is(a, "withscores") {
            req.withscores = true;
            j += 1;
        } else if card && remaining >= 2 && is(a, "limit") {
            req.limit = match crate::resp::parse_i64_strict(&args[j + 1]) {
                Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(Cow::Borrowed(ERR_LIMIT_NEGATIVE)),
            };
            j += 2;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    Ok(req)
}

/// The result of the operation, ordered by (score, member) like a sorted set.
fn compute<'a>(req: &Request<'a>, op: SetOp) -> Vec<(&'a [u8], f64)> {
    let mut result: Vec<(&'a [u8], f64)> = match op {
        SetOp::Union => {
            let mut order: Vec<usize> = (0..req.sources.len()).collect();
            order.sort_by_key(|&i| req.sources[i].len());
            let mut acc: HashMap<&'a [u8], f64> = HashMap::new();
            for i in order {
                let weight = req.weights[i];
                for (member, score) in req.sources[i].entries() {
                    let score = weighted(score, weight);
                    match acc.get_mut(member) {
                        Some(target) => aggregate(target, score, req.how),
                        None => {
                            acc.insert(member, score);
                        }
                    }
                }
            }
            acc.into_iter().collect()
        }
        SetOp::Inter => intersection(req, usize::MAX),
        SetOp::Diff => {
            let (first, rest) = match req.sources.split_first() {
                Some(split) => split,
                None => return Vec::new(),
            };
            first
                .entries()
                .filter(|(m, _)| rest.iter().all(|s| s.score(m).is_none()))
                .collect()
        }
    };
    for entry in result.iter_mut() {
        entry.1 = stored(entry.1);
    }
    result.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
    result
}

/// The members in every input, with aggregated scores; stops after `limit` members.
fn intersection<'a>(req: &Request<'a>, limit: usize) -> Vec<(&'a [u8], f64)> {
    let mut order: Vec<usize> = (0..req.sources.len()).collect();
    order.sort_by_key(|&i| req.sources[i].len());
    let Some((&smallest, others)) = order.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if limit == 0 {
        return out;
    }
    'members: for (member, score) in req.sources[smallest].entries() {
        let mut total = weighted(score, req.weights[smallest]);
        for &j in others {
            match req.sources[j].score(member) {
                Some(s) => aggregate(&mut total, s * req.weights[j], req.how),
                None => continue 'members,
            }
        }
        out.push((member, total));
        if out.len() >= limit {
            break;
        }
    }
    out
}

fn reply_generic(ctx: &mut Ctx<'_>, args: &[Bytes], op: SetOp) -> CmdResult {
    let now = ctx.now_ms;
    let req = parse(
        &ctx.db.ks,
        &mut ctx.db.stats,
        args,
        1,
        op,
        false,
        false,
        now,
    )?;
    let result = compute(&req, op);
    write_range_reply(&mut ctx.out, &result, req.withscores);
    Ok(())
}

fn store_generic(ctx: &mut Ctx<'_>, args: &[Bytes], op: SetOp) -> CmdResult {
    let now = ctx.now_ms;
    let dst = &args[1];
    let mut ops = Vec::new();
    {
        let req = parse(&ctx.db.ks, &mut ctx.db.stats, args, 2, op, true, false, now)?;
        let result = compute(&req, op);
        if ctx.db.ks.raw_entry(dst).is_some() {
            ops.push(op_del(dst));
        }
        for (member, score) in result {
            ops.push(super::op(
                dst,
                OpKind::ZAdd {
                    slot: NEW_SLOT,
                    member: Bytes::copy_from_slice(member),
                    score,
                },
            ));
        }
    }
    let count = ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::ZAdd { .. }))
        .count();
    if !ops.is_empty() {
        ctx.write(ops);
    }
    ctx.out.int(count as i64);
    Ok(())
}

fn op_del(key: &Bytes) -> Op {
    super::op(key, OpKind::Del)
}

pub(super) fn zunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    reply_generic(ctx, args, SetOp::Union)
}

pub(super) fn zinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    reply_generic(ctx, args, SetOp::Inter)
}

pub(super) fn zdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    reply_generic(ctx, args, SetOp::Diff)
}

pub(super) fn zunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    store_generic(ctx, args, SetOp::Union)
}

pub(super) fn zinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    store_generic(ctx, args, SetOp::Inter)
}

pub(super) fn zdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    store_generic(ctx, args, SetOp::Diff)
}

pub(super) fn zintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let req = parse(
        &ctx.db.ks,
        &mut ctx.db.stats,
        args,
        1,
        SetOp::Inter,
        false,
        true,
        now,
    )?;
    let limit = if req.limit == 0 {
        usize::MAX
    } else {
        req.limit
    };
    let n = intersection(&req, limit).len();
    ctx.out.int(n as i64);
    Ok(())
}
