//! String and counter commands: GET, SET (all options), SETNX, SETEX, PSETEX, GETSET, GETDEL,
//! GETEX, MGET, MSET, MSETNX, APPEND, STRLEN, GETRANGE (and its old name SUBSTR), SETRANGE,
//! INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT, LCS.
//!
//! Contract: a string is a register; the INCR family adds counter increments instead of
//! overwriting, so concurrent increments in two regions add up. Integer counters stay within
//! ±2^58 (a local increment that would leave that range fails with Redis's overflow error).

mod counters;
mod lcs;

use super::*;
use crate::crdt::{Delta, Num, Value};
use counters::{decr, decrby, incr, incrby, incrbyfloat};
use lcs::lcs;

/// Largest magnitude an integer counter may reach by a local increment.
pub const COUNTER_LIMIT: i128 = 1 << 58;
const MAX_STRING: usize = 512 * 1024 * 1024;

pub fn commands() -> Vec<Command> {
    vec![
        cmd(
            "get",
            2,
            "readonly fast",
            1,
            1,
            1,
            "string",
            "Returns the string value of a key.",
            get,
        ),
        cmd(
            "set",
            -3,
            "write denyoom",
            1,
            1,
            1,
            "string",
            "Sets the string value of a key.",
            set,
        ),
        cmd(
            "setnx",
            3,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Sets a key only if it does not exist.",
            setnx,
        ),
        cmd(
            "setex",
            4,
            "write denyoom",
            1,
            1,
            1,
            "string",
            "Sets a key with an expiry in seconds.",
            setex,
        ),
        cmd(
            "psetex",
            4,
            "write denyoom",
            1,
            1,
            1,
            "string",
            "Sets a key with an expiry in milliseconds.",
            psetex,
        ),
        cmd(
            "getset",
            3,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Sets a key and returns its old value.",
            getset,
        ),
        cmd(
            "getdel",
            2,
            "write fast",
            1,
            1,
            1,
            "string",
            "Returns a key's value and deletes it.",
            getdel,
        ),
        cmd(
            "getex",
            -2,
            "write fast",
            1,
            1,
            1,
            "string",
            "Returns a key's value and changes its expiry.",
            getex,
        ),
        cmd(
            "mget",
            -2,
            "readonly fast",
            1,
            -1,
            1,
            "string",
            "Returns the values of several keys.",
            mget,
        ),
        cmd(
            "mset",
            -3,
            "write denyoom",
            1,
            -1,
            2,
            "string",
            "Sets several keys.",
            mset,
        ),
        cmd(
            "msetnx",
            -3,
            "write denyoom",
            1,
            -1,
            2,
            "string",
            "Sets several keys only if none exists.",
            msetnx,
        ),
        cmd(
            "append",
            3,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Appends to a string.",
            append,
        ),
        cmd(
            "strlen",
            2,
            "readonly fast",
            1,
            1,
            1,
            "string",
            "Returns the length of a string.",
            strlen,
        ),
        cmd(
            "getrange",
            4,
            "readonly",
            1,
            1,
            1,
            "string",
            "Returns a substring.",
            getrange,
        ),
        cmd(
            "substr",
            4,
            "readonly",
            1,
            1,
            1,
            "string",
            "Returns a substring.",
            getrange,
        ),
        cmd(
            "lcs",
            -3,
            "readonly",
            1,
            2,
            1,
            "string",
            "Finds the longest common substring.",
            lcs,
        ),
        cmd(
            "setrange",
            4,
            "write denyoom",
            1,
            1,
            1,
            "string",
            "Overwrites part of a string.",
            setrange,
        ),
        cmd(
            "incr",
            2,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Increments a counter by one.",
            incr,
        ),
        cmd(
            "decr",
            2,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Decrements a counter by one.",
            decr,
        ),
        cmd(
            "incrby",
            3,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Increments a counter.",
            incrby,
        ),
        cmd(
            "decrby",
            3,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Decrements a counter.",
            decrby,
        ),
        cmd(
            "incrbyfloat",
            3,
            "write denyoom fast",
            1,
            1,
            1,
            "string",
            "Increments a float counter.",
            incrbyfloat,
        ),
    ]
}

/// The visible string of a key, or WRONGTYPE.
pub fn read_string<'a>(ctx: &'a Ctx<'_>, key: &[u8]) -> Result<Option<Cow<'a, [u8]>>, CmdError> {
    match ctx.get(key) {
        None => Ok(None),
        Some(slot) => match &slot.value {
            Value::Str(c) => Ok(Some(c.read())),
            // A HyperLogLog reads as Redis's dense encoding of its registers.
            Value::Hll(h) => Ok(Some(Cow::Owned(crate::crdt::types::hll::encode_dense(
                &h.regs.dense(),
            )))),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let value = read_string(ctx, &args[1])?.map(|v| v.into_owned());
    if value.is_some() {
        ctx.db.stats.keyspace_hits += 1;
    } else {
        ctx.db.stats.keyspace_misses += 1;
    }
    ctx.out.bulk_or_null(value.as_deref());
    Ok(())
}

/// How a write treats the key's expiry.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum TtlChange {
    /// Drop any expiry (plain SET).
    Clear,
    /// Keep whatever expiry there is (KEEPTTL).
    Keep,
    /// Set this absolute deadline in unix ms.
    At(u64),
}

/// Turns a relative or absolute expire argument into a deadline, with Redis's checks.
pub fn deadline_from(
    arg: &[u8],
    unit_ms: bool,
    absolute: bool,
    now_ms: u64,
    command: &str,
) -> Result<u64, CmdError> {
    let n = int_arg(arg)?;
    let invalid = || Cow::Owned(format!("ERR invalid expire time in '{command}' command"));
    if n <= 0 || (!unit_ms && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut ms = if unit_ms { n } else { n * 1000 };
    if !absolute {
        if ms > i64::MAX - now_ms as i64 {
            return Err(invalid());
        }
        ms += now_ms as i64;
    }
    Ok(ms as u64)
}

/// Operations that write `value` as the string of `key`, replacing any other type.
pub fn string_write_ops(ctx: &Ctx<'_>, key: &Bytes, value: Bytes, ttl: TtlChange) -> Vec<Op> {
    let mut ops = Vec::with_capacity(2);
    let slot = match ctx.get(key) {
        Some(s) if s.value.kind() == Kind::Str => s.created,
        Some(_) => {
            ops.push(op(key, OpKind::Del));
            crate::crdt::NEW_SLOT
        }
        None => crate::crdt::NEW_SLOT,
    };
    if let TtlChange::At(ms) = ttl {
        if ms <= ctx.now_ms {
            // Already expired: the write is a delete.
            ops.push(op(key, OpKind::Del));
            return ops;
        }
    }
    ops.push(op(key, OpKind::StrSet { slot, value }));
    match ttl {
        TtlChange::At(ms) => ops.push(op(key, OpKind::Expire { at_ms: ms })),
        TtlChange::Clear => {
            // A SET without KEEPTTL counts as a PERSIST of the old expiry: it beats a concurrent
            // EXPIRE (docs/semantics.md, Expiry).
            if ctx
                .db
                .ks
                .raw_entry(key)
                .is_some_and(|e| !e.expiry.is_empty())
            {
                ops.push(op(key, OpKind::Persist));
            }
        }
        TtlChange::Keep => {}
    }
    ops
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx, mut get_old) = (false, false, false);
    let mut ttl = TtlChange::Clear;
    // Which expiry option was given; repeating the same one is accepted, as in Redis.
    let mut ttl_option: Option<&'static str> = None;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        let next = args.get(i + 1);
        let expiry_word = ["ex", "px", "exat", "pxat"].into_iter().find(|w| is(a, w));
        if is(a, "nx") && !xx {
            nx = true;
        } else if is(a, "xx") && !nx {
            xx = true;
        } else if is(a, "get") {
            get_old = true;
        } else if is(a, "keepttl") && ttl_option.is_none_or(|o| o == "keepttl") {
            ttl = TtlChange::Keep;
            ttl_option = Some("keepttl");
        } else if let (Some(word), Some(arg)) = (expiry_word, next) {
            if ttl_option.is_some_and(|o| o != word) {
                return Err(Cow::Borrowed(ERR_SYNTAX));
            }
            let unit_ms = word == "px" || word == "pxat";
            let absolute = word == "exat" || word == "pxat";
            ttl = TtlChange::At(deadline_from(arg, unit_ms, absolute, ctx.now_ms, "set")?);
            ttl_option = Some(word);
            i += 1;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        i += 1;
    }
    let key = &args[1];
    let old = if get_old {
        read_string(ctx, key)?.map(|v| v.into_owned())
    } else {
        None
    };
    let exists = ctx.get(key).is_some();
    if (nx && exists) || (xx && !exists) {
        if get_old {
            ctx.out.bulk_or_null(old.as_deref());
        } else {
            ctx.out.null();
        }
        return Ok(());
    }
    let ops = string_write_ops(ctx, key, args[2].clone(), ttl);
    ctx.write(ops);
    if get_old {
        ctx.out.bulk_or_null(old.as_deref());
    } else {
        ctx.out.simple("OK");
    }
    Ok(())
}

fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if ctx.get(&args[1]).is_some() {
        ctx.out.int(0);
        return Ok(());
    }
    let ops = string_write_ops(ctx, &args[1], args[2].clone(), TtlChange::Clear);
    ctx.write(ops);
    ctx.out.int(1);
    Ok(())
}

fn setex_generic(ctx: &mut Ctx<'_>, args: &[Bytes], unit_ms: bool, name: &str) -> CmdResult {
    let at = deadline_from(&args[2], unit_ms, false, ctx.now_ms, name)?;
    let ops = string_write_ops(ctx, &args[1], args[3].clone(), TtlChange::At(at));
    ctx.write(ops);
    ctx.out.simple("OK");
    Ok(())
}

fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setex_generic(ctx, args, false, "setex")
}

fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setex_generic(ctx, args, true, "psetex")
}

fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let old = read_string(ctx, &args[1])?.map(|v| v.into_owned());
    let ops = string_write_ops(ctx, &args[1], args[2].clone(), TtlChange::Clear);
    ctx.write(ops);
    ctx.out.bulk_or_null(old.as_deref());
    Ok(())
}

fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let old = read_string(ctx, &args[1])?.map(|v| v.into_owned());
    if old.is_some() {
        ctx.write(vec![op(&args[1], OpKind::Del)]);
    }
    ctx.out.bulk_or_null(old.as_deref());
    Ok(())
}

fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut change: Option<OpKind> = None;
    let mut delete = false;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if is(a, "persist") && change.is_none() && !delete {
            change = Some(OpKind::Persist);
        } else if (is(a, "ex") || is(a, "px") || is(a, "exat") || is(a, "pxat"))
            && change.is_none()
            && !delete
            && i + 1 < args.len()
        {
            let unit_ms = is(a, "px") || is(a, "pxat");
            let absolute = is(a, "exat") || is(a, "pxat");
            let at = deadline_from(&args[i + 1], unit_ms, absolute, ctx.now_ms, "getex")?;
            if at <= ctx.now_ms {
                delete = true;
            } else {
                change = Some(OpKind::Expire { at_ms: at });
            }
            i += 1;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        i += 1;
    }
    let old = read_string(ctx, &args[1])?.map(|v| v.into_owned());
    if old.is_some() {
        if delete {
            ctx.write(vec![op(&args[1], OpKind::Del)]);
        } else if let Some(kind) = change {
            let has_deadline = ctx.db.ks.deadline(&args[1], ctx.now_ms).is_some();
            // PERSIST on a key without expiry changes nothing.
            if !matches!(kind, OpKind::Persist) || has_deadline {
                ctx.write(vec![op(&args[1], kind)]);
            }
        }
    }
    ctx.out.bulk_or_null(old.as_deref());
    Ok(())
}

fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ctx.out.array(args.len() - 1);
    for key in &args[1..] {
        let value = match ctx.get(key) {
            Some(slot) => match &slot.value {
                Value::Str(c) => Some(c.read().into_owned()),
                _ => None,
            },
            None => None,
        };
        ctx.out.bulk_or_null(value.as_deref());
    }
    Ok(())
}

fn mset_generic(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(arity_error(if nx { "msetnx" } else { "mset" }));
    }
    if nx && args[1..].chunks(2).any(|kv| ctx.get(&kv[0]).is_some()) {
        ctx.out.int(0);
        return Ok(());
    }
    let mut ops = Vec::with_capacity(args.len());
    for kv in args[1..].chunks(2) {
        ops.extend(string_write_ops(
            ctx,
            &kv[0],
            kv[1].clone(),
            TtlChange::Clear,
        ));
    }
    ctx.write(ops);
    if nx {
        ctx.out.int(1);
    } else {
        ctx.out.simple("OK");
    }
    Ok(())
}

fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    mset_generic(ctx, args, false)
}

fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    mset_generic(ctx, args, true)
}

fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let old = read_string(ctx, &args[1])?.map(|v| v.into_owned());
    let mut value = old.unwrap_or_default();
    if value.len() + args[2].len() > MAX_STRING {
        return Err(Cow::Borrowed(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        ));
    }
    value.extend_from_slice(&args[2]);
    let len = value.len();
    let ops = string_write_ops(ctx, &args[1], Bytes::from(value), TtlChange::Keep);
    ctx.write(ops);
    ctx.out.int(len as i64);
    Ok(())
}

fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = read_string(ctx, &args[1])?.map(|v| v.len()).unwrap_or(0);
    ctx.out.int(len as i64);
    Ok(())
}

fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    let value = read_string(ctx, &args[1])?.map(|v| v.into_owned());
    let Some(value) = value else {
        ctx.out.bulk(b"");
        return Ok(());
    };
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        ctx.out.bulk(b"");
        return Ok(());
    }
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if e < 0 {
        e = 0;
    }
    if e >= len {
        e = len - 1;
    }
    if s > e || len == 0 {
        ctx.out.bulk(b"");
    } else {
        ctx.out.bulk(&value[s as usize..=e as usize]);
    }
    Ok(())
}

fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let offset = int_arg(&args[2])?;
    if offset < 0 {
        return Err(Cow::Borrowed("ERR offset is out of range"));
    }
    let old = read_string(ctx, &args[1])?.map(|v| v.into_owned());
    let piece = &args[3];
    let offset = offset as usize;
    match old {
        None if piece.is_empty() => {
            ctx.out.int(0);
            return Ok(());
        }
        Some(ref v) if piece.is_empty() => {
            ctx.out.int(v.len() as i64);
            return Ok(());
        }
        _ => {}
    }
    if offset.saturating_add(piece.len()) > MAX_STRING {
        return Err(Cow::Borrowed(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
        ));
    }
    let mut value = old.unwrap_or_default();
    if value.len() < offset + piece.len() {
        value.resize(offset + piece.len(), 0);
    }
    value[offset..offset + piece.len()].copy_from_slice(piece);
    let len = value.len();
    let ops = string_write_ops(ctx, &args[1], Bytes::from(value), TtlChange::Keep);
    ctx.write(ops);
    ctx.out.int(len as i64);
    Ok(())
}
