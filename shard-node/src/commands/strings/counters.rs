//! INCR, DECR, INCRBY, DECRBY and INCRBYFLOAT: counter increments that add up across
//! regions (see the parent module's contract).

use super::*;

/// Adds an integer to a counter key and replies with the new value.
pub(super) fn incr_by(ctx: &mut Ctx<'_>, key: &Bytes, delta: i64) -> CmdResult {
    let slot = ctx.slot_for(key, Kind::Str)?;
    let current = match read_counter(ctx.get(key))? {
        None => 0i128,
        Some(Num::Int(i)) => i,
        Some(Num::Float(_)) => return Err(Cow::Borrowed(ERR_NOT_INTEGER)),
    };
    if ctx.get(key).is_some() {
        // A stored value that is not an integer cannot be incremented.
        if let Some(Value::Str(c)) = ctx.get(key).map(|s| &s.value) {
            if c.adds.is_empty() {
                let text = c.read();
                if crate::resp::parse_i64_strict(&text).is_none() {
                    return Err(Cow::Borrowed(ERR_NOT_INTEGER));
                }
            }
        }
    }
    let next = current + i128::from(delta);
    if next >= COUNTER_LIMIT || next <= -COUNTER_LIMIT || next > i128::from(i64::MAX) {
        return Err(Cow::Borrowed(ERR_OVERFLOW));
    }
    // Alone, a node writes the result (exactly Redis, and nothing accumulates); with other
    // participants it writes an increment so concurrent ones add up.
    if ctx.db.ks.is_single_participant() {
        let ops = string_write_ops(ctx, key, Bytes::from(next.to_string()), TtlChange::Keep);
        ctx.write(ops);
    } else {
        ctx.write(vec![op(
            key,
            OpKind::StrAdd {
                slot,
                delta: Delta::Int(delta),
            },
        )]);
    }
    ctx.out.int(next as i64);
    Ok(())
}

pub(super) fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    incr_by(ctx, &args[1], 1)
}

pub(super) fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    incr_by(ctx, &args[1], -1)
}

pub(super) fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let delta = int_arg(&args[2])?;
    incr_by(ctx, &args[1], delta)
}

pub(super) fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let delta = int_arg(&args[2])?;
    if delta == i64::MIN {
        return Err(Cow::Borrowed("ERR decrement would overflow"));
    }
    incr_by(ctx, &args[1], -delta)
}

pub(super) fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let slot = ctx.slot_for(key, Kind::Str)?;
    let delta = float_arg(&args[2])?;
    let current = match ctx.get(key) {
        None => 0.0,
        Some(s) => match &s.value {
            Value::Str(c) => {
                let text = c.read();
                match crate::resp::parse_f64_strict(&text) {
                    Some(f) if f.is_finite() => f,
                    _ => return Err(Cow::Borrowed(ERR_NOT_FLOAT)),
                }
            }
            _ => return Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    };
    let next = current + delta;
    if !next.is_finite() || !delta.is_finite() {
        return Err(Cow::Borrowed("ERR increment would produce NaN or Infinity"));
    }
    if ctx.db.ks.is_single_participant() {
        let text = crate::resp::format_double_human(next + 0.0);
        let ops = string_write_ops(ctx, key, Bytes::from(text), TtlChange::Keep);
        ctx.write(ops);
    } else {
        ctx.write(vec![op(
            key,
            OpKind::StrAdd {
                slot,
                delta: Delta::Float(delta),
            },
        )]);
    }
    let shown = match ctx.get(key).map(|s| &s.value) {
        Some(Value::Str(c)) => c.read().into_owned(),
        _ => crate::resp::format_double_human(next).into_bytes(),
    };
    ctx.out.bulk(&shown);
    Ok(())
}
