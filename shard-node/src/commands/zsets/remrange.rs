//! ZREMRANGEBYRANK, ZREMRANGEBYSCORE and ZREMRANGEBYLEX (`zremrangeGenericCommand`).
//!
//! The range is parsed before the key is read, as in Redis. The members the range selects on
//! the local state are removed with observed removes ([`OpKind::ZRem`]), one per member, in one
//! effect: a member added or re-scored concurrently in another region, which this command had
//! not observed, survives, wherever its new score lies.

use super::bounds::{LexRange, ScoreRange};
use super::range::{collect_range, Range};
use super::*;

pub(super) fn zremrangebyrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = Range::Rank(int_arg(&args[2])?, int_arg(&args[3])?);
    remove_range(ctx, args, range)
}

pub(super) fn zremrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = Range::Score(ScoreRange::parse(&args[2], &args[3])?);
    remove_range(ctx, args, range)
}

pub(super) fn zremrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = Range::Lex(LexRange::parse(&args[2], &args[3])?);
    remove_range(ctx, args, range)
}

fn remove_range(ctx: &mut Ctx<'_>, args: &[Bytes], range: Range<'_>) -> CmdResult {
    let key = &args[1];
    let ops: Vec<Op> = {
        let (_, zset) = write_zset(&ctx.db.ks, key, ctx.now_ms)?;
        match zset {
            None => Vec::new(),
            Some(z) => collect_range(z, &range, false, 0, -1)
                .into_iter()
                .map(|(member, _)| {
                    op(
                        key,
                        OpKind::ZRem {
                            member: Bytes::copy_from_slice(member),
                        },
                    )
                })
                .collect(),
        }
    };
    let removed = ops.len() as i64;
    if !ops.is_empty() {
        ctx.write(ops);
    }
    ctx.out.int(removed);
    Ok(())
}
