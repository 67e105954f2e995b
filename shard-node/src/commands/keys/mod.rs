//! Keyspace commands: DEL, UNLINK, EXISTS, TYPE, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL,
//! PTTL, EXPIRETIME, PEXPIRETIME, PERSIST, KEYS, SCAN, RENAME, RENAMENX, RANDOMKEY, TOUCH,
//! COPY, MOVE, SWAPDB.
//!
//! Contract: `DEL` is an observed remove; expiry commands add expiry votes (see the keyspace
//! docs). `COPY` writes a new value under the destination (after a `Del` of what it held, with
//! `REPLACE`) with the source's deadline, in one effect. Only database 0 exists: `COPY … DB n`,
//! `MOVE` and `SWAPDB` accept 0 and answer any other index with Redis's out-of-range error. `SCAN` cursors are positions in a stable 64-bit hash order of the keys: every key that
//! exists for the whole scan is returned exactly once, and the cursor stays valid across writes.

use super::*;
use crate::crdt::types::GroupChange;
use crate::crdt::{Blob, ElemId, Value};

mod copies;
use copies::{copy, move_cmd, randomkey, rename, renamenx, swapdb};
pub use copies::{list_ops, recreate_ops};

pub fn commands() -> Vec<Command> {
    vec![
        cmd(
            "del",
            -2,
            "write",
            1,
            -1,
            1,
            "generic",
            "Deletes keys.",
            del,
        ),
        cmd(
            "unlink",
            -2,
            "write fast",
            1,
            -1,
            1,
            "generic",
            "Deletes keys.",
            del,
        ),
        cmd(
            "exists",
            -2,
            "readonly fast",
            1,
            -1,
            1,
            "generic",
            "Counts existing keys.",
            exists,
        ),
        cmd(
            "touch",
            -2,
            "readonly fast",
            1,
            -1,
            1,
            "generic",
            "Counts existing keys.",
            exists,
        ),
        cmd(
            "type",
            2,
            "readonly fast",
            1,
            1,
            1,
            "generic",
            "Returns the type of a key.",
            type_cmd,
        ),
        cmd(
            "expire",
            -3,
            "write fast",
            1,
            1,
            1,
            "generic",
            "Sets a key's time to live in seconds.",
            expire,
        ),
        cmd(
            "pexpire",
            -3,
            "write fast",
            1,
            1,
            1,
            "generic",
            "Sets a key's time to live in milliseconds.",
            pexpire,
        ),
        cmd(
            "expireat",
            -3,
            "write fast",
            1,
            1,
            1,
            "generic",
            "Sets a key's expiry as a unix time in seconds.",
            expireat,
        ),
        cmd(
            "pexpireat",
            -3,
            "write fast",
            1,
            1,
            1,
            "generic",
            "Sets a key's expiry as a unix time in milliseconds.",
            pexpireat,
        ),
        cmd(
            "ttl",
            2,
            "readonly fast",
            1,
            1,
            1,
            "generic",
            "Returns a key's time to live in seconds.",
            ttl,
        ),
        cmd(
            "pttl",
            2,
            "readonly fast",
            1,
            1,
            1,
            "generic",
            "Returns a key's time to live in milliseconds.",
            pttl,
        ),
        cmd(
            "expiretime",
            2,
            "readonly fast",
            1,
            1,
            1,
            "generic",
            "Returns a key's expiry as a unix time in seconds.",
            expiretime,
        ),
        cmd(
            "pexpiretime",
            2,
            "readonly fast",
            1,
            1,
            1,
            "generic",
            "Returns a key's expiry as a unix time in milliseconds.",
            pexpiretime,
        ),
        cmd(
            "persist",
            2,
            "write fast",
            1,
            1,
            1,
            "generic",
            "Removes a key's expiry.",
            persist,
        ),
        cmd(
            "keys",
            2,
            "readonly",
            0,
            0,
            0,
            "generic",
            "Returns the keys matching a pattern.",
            keys,
        ),
        cmd(
            "scan",
            -2,
            "readonly",
            0,
            0,
            0,
            "generic",
            "Iterates over the keys.",
            scan,
        ),
        cmd(
            "rename",
            3,
            "write",
            1,
            2,
            1,
            "generic",
            "Renames a key.",
            rename,
        ),
        cmd(
            "renamenx",
            3,
            "write fast",
            1,
            2,
            1,
            "generic",
            "Renames a key if the new name is free.",
            renamenx,
        ),
        cmd(
            "randomkey",
            1,
            "readonly",
            0,
            0,
            0,
            "generic",
            "Returns a random key.",
            randomkey,
        ),
        cmd(
            "copy",
            -3,
            "write denyoom",
            1,
            2,
            1,
            "generic",
            "Copies the value of a key to a new key.",
            copy,
        ),
        cmd(
            "move",
            3,
            "write fast",
            1,
            1,
            1,
            "generic",
            "Moves a key to another database.",
            move_cmd,
        ),
        cmd(
            "swapdb",
            3,
            "write fast",
            0,
            0,
            0,
            "server",
            "Swaps two databases.",
            swapdb,
        ),
    ]
}

fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut ops = Vec::new();
    let mut count = 0;
    for key in &args[1..] {
        if ctx.get(key).is_some() && !ops.iter().any(|o: &Op| o.key == key) {
            ops.push(op(key, OpKind::Del));
            count += 1;
        }
    }
    ctx.write(ops);
    ctx.out.int(count);
    Ok(())
}

fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let count = args[1..].iter().filter(|k| ctx.get(k).is_some()).count();
    ctx.out.int(count as i64);
    Ok(())
}

fn type_cmd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let name = ctx
        .get(&args[1])
        .map(|s| s.value.kind().name())
        .unwrap_or("none");
    ctx.out.simple(name);
    Ok(())
}

fn expire_generic(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    unit_ms: bool,
    absolute: bool,
    name: &str,
) -> CmdResult {
    let n = int_arg(&args[2])?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for a in &args[3..] {
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if is(a, "gt") {
            gt = true;
        } else if is(a, "lt") {
            lt = true;
        } else {
            return Err(Cow::Owned(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(a)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Cow::Borrowed(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(Cow::Borrowed(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let invalid = || Cow::Owned(format!("ERR invalid expire time in '{name}' command"));
    let mut when: i64 = n;
    if !unit_ms {
        when = when.checked_mul(1000).ok_or_else(invalid)?;
    }
    if !absolute {
        when = when.checked_add(ctx.now_ms as i64).ok_or_else(invalid)?;
    }
    let key = &args[1];
    if ctx.get(key).is_none() {
        ctx.out.int(0);
        return Ok(());
    }
    let current = ctx.db.ks.deadline(key, ctx.now_ms);
    let allowed = if nx {
        current.is_none()
    } else if xx {
        current.is_some()
            && (!gt || current.is_some_and(|c| when > c as i64))
            && (!lt || current.is_some_and(|c| when < c as i64))
    } else if gt {
        current.is_some_and(|c| when > c as i64)
    } else if lt {
        current.is_none_or(|c| when < c as i64)
    } else {
        true
    };
    if !allowed {
        ctx.out.int(0);
        return Ok(());
    }
    if when <= ctx.now_ms as i64 {
        ctx.write(vec![op(key, OpKind::Del)]);
    } else {
        ctx.write(vec![op(key, OpKind::Expire { at_ms: when as u64 })]);
    }
    ctx.out.int(1);
    Ok(())
}

fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, false, false, "expire")
}
fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, true, false, "pexpire")
}
fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, false, true, "expireat")
}
fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, true, true, "pexpireat")
}

/// Remaining time to live: -2 missing, -1 no expiry.
fn ttl_of(ctx: &Ctx<'_>, key: &[u8]) -> i64 {
    if ctx.get(key).is_none() {
        return -2;
    }
    match ctx.db.ks.deadline(key, ctx.now_ms) {
        None => -1,
        Some(d) => d.saturating_sub(ctx.now_ms) as i64,
    }
}

fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let t = ttl_of(ctx, &args[1]);
    ctx.out.int(if t < 0 { t } else { (t + 500) / 1000 });
    Ok(())
}

fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let t = ttl_of(ctx, &args[1]);
    ctx.out.int(t);
    Ok(())
}

fn expiretime_generic(ctx: &mut Ctx<'_>, args: &[Bytes], ms: bool) -> CmdResult {
    let key = &args[1];
    let v = if ctx.get(key).is_none() {
        -2
    } else {
        match ctx.db.ks.deadline(key, ctx.now_ms) {
            None => -1,
            Some(d) if ms => d as i64,
            Some(d) => ((d + 500) / 1000) as i64,
        }
    };
    ctx.out.int(v);
    Ok(())
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expiretime_generic(ctx, args, false)
}
fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expiretime_generic(ctx, args, true)
}

fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    if ctx.get(key).is_some() && ctx.db.ks.deadline(key, ctx.now_ms).is_some() {
        ctx.write(vec![op(key, OpKind::Persist)]);
        ctx.out.int(1);
    } else {
        ctx.out.int(0);
    }
    Ok(())
}

fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let pattern = &args[1];
    let all = &pattern[..] == b"*";
    let found: Vec<Blob> = ctx
        .db
        .ks
        .entries()
        .filter(|(k, _)| all || crate::glob::glob_match(pattern, k))
        .filter(|(k, _)| ctx.db.ks.get(k, ctx.now_ms).is_some())
        .map(|(k, _)| k.clone())
        .collect();
    ctx.out.array(found.len());
    for k in found {
        ctx.out.bulk(&k);
    }
    Ok(())
}

fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = super::util::scan::parse_scan_cursor(&args[1])?;
    let opts = super::util::scan::parse_scan_options(&args[2..], true)?;
    let want_type = opts
        .type_name
        .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase());
    let now = ctx.now_ms;
    let ks = &ctx.db.ks;
    let items = ks.entries().filter_map(|(k, _)| {
        let slot = ks.get(k, now)?;
        Some((&k[..], (k, slot.value.kind().name())))
    });
    let (next, page) = super::util::scan::scan_page(items, cursor, opts.count);
    let keys: Vec<&Blob> = page
        .into_iter()
        .filter(|(k, t)| opts.matches(k) && want_type.as_deref().is_none_or(|w| w == *t))
        .map(|(k, _)| k)
        .collect();
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(keys.len());
    for k in keys {
        ctx.out.bulk(k);
    }
    Ok(())
}
