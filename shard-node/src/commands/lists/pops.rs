//! The list commands that remove elements from an end: LPOP, RPOP, LMPOP, LMOVE, RPOPLPUSH,
//! and the list side of the blocking forms (BLPOP, BRPOP, BLMPOP, BLMOVE, BRPOPLPUSH). The
//! rules are in the contract of `lists`.

use super::*;

pub(super) fn pop_generic(ctx: &mut Ctx<'_>, args: &[Bytes], left: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(arity_error(if left { "lpop" } else { "rpop" }));
    }
    let count = match args.get(2) {
        Some(a) => Some(positive_arg(a, ERR_POSITIVE)?),
        None => None,
    };
    let key = &args[1];
    let ops = {
        let Ctx {
            db, out, now_ms, ..
        } = ctx;
        let Some((_, l)) = list_for_write(&db.ks, key, *now_ms)? else {
            if count.is_some() {
                out.null_array();
            } else {
                out.null();
            }
            return Ok(());
        };
        match count {
            None => {
                let mut ops = Vec::with_capacity(1);
                from_end(l, left, 1, |e| {
                    out.bulk(&e.value);
                    ops.push(op(key, OpKind::ListRemove { id: e.id }));
                });
                if ops.is_empty() {
                    // A visible list is never empty; answer like a missing key regardless.
                    out.null();
                }
                ops
            }
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(l.visible);
                out.array(n);
                let mut ops = Vec::with_capacity(n);
                from_end(l, left, n, |e| {
                    out.bulk(&e.value);
                    ops.push(op(key, OpKind::ListRemove { id: e.id }));
                });
                ops
            }
        }
    };
    ctx.write(ops);
    Ok(())
}

pub(super) fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, true)
}

pub(super) fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, false)
}

pub(super) fn lmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let request = MultiPop::parse(&args[1..])?;
    if !request.serve(ctx)? {
        ctx.out.null_array();
    }
    Ok(())
}

/// The arguments of LMPOP after its name (BLMPOP's after its timeout):
/// `numkeys key... LEFT|RIGHT [COUNT n]`.
struct MultiPop<'a> {
    keys: &'a [Bytes],
    left: bool,
    count: usize,
}

impl<'a> MultiPop<'a> {
    fn parse(args: &'a [Bytes]) -> Result<Self, CmdError> {
        let parsed = super::util::args::multi_pop_args(args, side_arg)?;
        Ok(MultiPop {
            keys: parsed.keys,
            left: parsed.side,
            count: parsed.count,
        })
    }

    /// Pops from the first non-empty list and replies `[key, [elements]]`; false (and no
    /// reply) when every list is empty.
    fn serve(&self, ctx: &mut Ctx<'_>) -> Result<bool, CmdError> {
        let ops = {
            let Ctx {
                db, out, now_ms, ..
            } = ctx;
            let mut found = None;
            for key in self.keys {
                if let Some((_, l)) = list_for_write(&db.ks, key, *now_ms)? {
                    if l.visible > 0 {
                        found = Some((key, l));
                        break;
                    }
                }
            }
            let Some((key, l)) = found else {
                return Ok(false);
            };
            let n = self.count.min(l.visible);
            out.array(2);
            out.bulk(key);
            out.array(n);
            let mut ops = Vec::with_capacity(n);
            from_end(l, self.left, n, |e| {
                out.bulk(&e.value);
                ops.push(op(key, OpKind::ListRemove { id: e.id }));
            });
            ops
        };
        ctx.write(ops);
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking variants (the waiting itself is in `blocking` and the server)

pub(in crate::commands) fn blpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    blocking_pop(ctx, args, true)
}

pub(in crate::commands) fn brpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    blocking_pop(ctx, args, false)
}

/// BLPOP / BRPOP: `[key, element]` from the first non-empty list; a key of another type met
/// first is WRONGTYPE.
pub(super) fn blocking_pop(ctx: &mut Ctx<'_>, args: &[Bytes], left: bool) -> CmdResult {
    let deadline = blocking::deadline_arg(&args[args.len() - 1], ctx.now_ms)?;
    let keys = &args[1..args.len() - 1];
    for key in keys {
        let ops = {
            let Ctx {
                db, out, now_ms, ..
            } = ctx;
            let Some((_, l)) = list_for_write(&db.ks, key, *now_ms)? else {
                continue;
            };
            let mut ops = Vec::with_capacity(1);
            from_end(l, left, 1, |e| {
                out.array(2);
                out.bulk(key);
                out.bulk(&e.value);
                ops.push(op(key, OpKind::ListRemove { id: e.id }));
            });
            ops
        };
        if !ops.is_empty() {
            ctx.write(ops);
            return Ok(());
        }
    }
    blocking::block(
        ctx,
        args,
        keys.to_vec(),
        deadline,
        blocking::NothingReady::NullArray,
    )
}

pub(in crate::commands) fn blmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let from_left = side_arg(&args[3])?;
    let to_left = side_arg(&args[4])?;
    let deadline = blocking::deadline_arg(&args[5], ctx.now_ms)?;
    blocking_move(ctx, args, deadline, from_left, to_left)
}

pub(in crate::commands) fn brpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let deadline = blocking::deadline_arg(&args[3], ctx.now_ms)?;
    blocking_move(ctx, args, deadline, false, true)
}

pub(super) fn blocking_move(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    deadline: Option<u64>,
    from_left: bool,
    to_left: bool,
) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    if list_for_write(&ctx.db.ks, src, ctx.now_ms)?.is_some() {
        return move_generic(ctx, src, dst, from_left, to_left);
    }
    blocking::block(
        ctx,
        args,
        vec![src.clone()],
        deadline,
        blocking::NothingReady::NullBulk,
    )
}

/// BLMPOP timeout numkeys key... LEFT|RIGHT [COUNT n].
pub(in crate::commands) fn blmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let deadline = blocking::deadline_arg(&args[1], ctx.now_ms)?;
    let request = MultiPop::parse(&args[2..])?;
    if request.serve(ctx)? {
        return Ok(());
    }
    let keys = request.keys.to_vec();
    blocking::block(ctx, args, keys, deadline, blocking::NothingReady::NullArray)
}

/// Pops one element from an end of `src` and pushes it onto an end of `dst` (LMOVE).
pub(super) fn move_generic(
    ctx: &mut Ctx<'_>,
    src: &Bytes,
    dst: &Bytes,
    from_left: bool,
    to_left: bool,
) -> CmdResult {
    let ops = {
        let Ctx {
            db, out, now_ms, ..
        } = ctx;
        let Some((_, from)) = list_for_write(&db.ks, src, *now_ms)? else {
            out.null();
            return Ok(());
        };
        let (slot, after) = match list_for_write(&db.ks, dst, *now_ms)? {
            Some((slot, to)) => (slot, if to_left { None } else { to.last_id() }),
            None => (NEW_SLOT, None),
        };
        let mut moved = None;
        from_end(from, from_left, 1, |e| moved = Some(e));
        let Some(elem) = moved else {
            out.null();
            return Ok(());
        };
        let id = IdGen::new(&db.ks).id(0);
        out.bulk(&elem.value);
        // Insert before removing: rotating a one-element list never empties it in between.
        vec![
            op(
                dst,
                OpKind::ListInsert {
                    slot,
                    id,
                    after,
                    value: Bytes::copy_from_slice(&elem.value),
                },
            ),
            op(src, OpKind::ListRemove { id: elem.id }),
        ]
    };
    ctx.write(ops);
    Ok(())
}

pub(super) fn lmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let from_left = side_arg(&args[3])?;
    let to_left = side_arg(&args[4])?;
    move_generic(ctx, &args[1], &args[2], from_left, to_left)
}

pub(super) fn rpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    move_generic(ctx, &args[1], &args[2], false, true)
}
