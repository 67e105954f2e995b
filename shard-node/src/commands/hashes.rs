//! Hash commands: HSET, HMSET, HSETNX, HGET, HMGET, HDEL, HGETALL, HKEYS, HVALS, HLEN, HEXISTS,
//! HSTRLEN, HINCRBY, HINCRBYFLOAT, HRANDFIELD, HSCAN.
//!
//! Contract: a hash is an observed-remove map of fields (`docs/semantics.md`, Hashes). Each
//! field's value is a register written by HSET/HSETNX and a counter incremented by HINCRBY
//! (integer increments) and HINCRBYFLOAT (float increments), so concurrent increments in two
//! regions add up. Integer results stay within ±2^58 like string counters
//! ([`super::strings::COUNTER_LIMIT`]). A deletion that leaves a hash empty is committed as a
//! `Del` of the key: like Redis, the emptied key is gone, with its expiry. Field order in replies
//! is unspecified. HSCAN follows the cursor scheme of [`super::util::scan::scan_page`]: hashes Redis
//! keeps as a listpack (at most 128 fields, fields and values at most 64 bytes) and hashes no
//! larger than `COUNT` come back whole with cursor 0.

use super::strings::COUNTER_LIMIT;
use super::util::args::distinct_present;
use super::util::random::{check_random_reply, pick_positions, random_count_arg, random_positions};
use super::util::scan::{parse_scan_cursor, parse_scan_options, scan_page, write_empty_scan};
use super::*;
use crate::crdt::value::{Counted, HashValue};
use crate::crdt::{Blob, Delta, Value, NEW_SLOT};
use rand::Rng;

const ERR_HASH_NOT_INTEGER: &str = "ERR hash value is not an integer";
const ERR_HASH_NOT_FLOAT: &str = "ERR hash value is not a float";
/// Hashes up to this many fields, with short fields and values, are a listpack in Redis 7.0.
const LISTPACK_MAX_ENTRIES: usize = 128;
const LISTPACK_MAX_VALUE: usize = 64;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("hset", -4, "write denyoom fast", 1, 1, 1, "hash", "Sets fields of a hash.", hset),
        cmd("hmset", -4, "write denyoom fast", 1, 1, 1, "hash", "Sets fields of a hash.", hmset),
        cmd("hsetnx", 4, "write denyoom fast", 1, 1, 1, "hash", "Sets a field only if it does not exist.", hsetnx),
        cmd("hget", 3, "readonly fast", 1, 1, 1, "hash", "Returns the value of a field.", hget),
        cmd("hmget", -3, "readonly fast", 1, 1, 1, "hash", "Returns the values of fields.", hmget),
        cmd("hdel", -3, "write fast", 1, 1, 1, "hash", "Deletes fields of a hash.", hdel),
        cmd("hgetall", 2, "readonly", 1, 1, 1, "hash", "Returns all fields and values of a hash.", hgetall),
        cmd("hkeys", 2, "readonly", 1, 1, 1, "hash", "Returns all fields of a hash.", hkeys),
        cmd("hvals", 2, "readonly", 1, 1, 1, "hash", "Returns all values of a hash.", hvals),
        cmd("hlen", 2, "readonly fast", 1, 1, 1, "hash", "Returns the number of fields of a hash.", hlen),
        cmd("hexists", 3, "readonly fast", 1, 1, 1, "hash", "Tells whether a field exists.", hexists),
        cmd("hstrlen", 3, "readonly fast", 1, 1, 1, "hash", "Returns the length of a field's value.", hstrlen),
        cmd("hincrby", 4, "write denyoom fast", 1, 1, 1, "hash", "Increments an integer field.", hincrby),
        cmd("hincrbyfloat", 4, "write denyoom fast", 1, 1, 1, "hash", "Increments a float field.", hincrbyfloat),
        cmd("hrandfield", -2, "readonly", 1, 1, 1, "hash", "Returns random fields of a hash.", hrandfield),
        cmd("hscan", -3, "readonly", 1, 1, 1, "hash", "Iterates over the fields of a hash.", hscan),
    ]
}

/// The hash stored at `key`, `None` when absent, or WRONGTYPE.
pub fn read_hash<'a>(
    db: &'a Db,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'a HashValue>, CmdError> {
    match db.ks.get(key, now_ms) {
        None => Ok(None),
        Some(slot) => match &slot.value {
            Value::Hash(h) => Ok(Some(h)),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// The slot stamp for writing into the hash at `key`, its field count and the field `field`.
fn hash_for_write<'a>(
    ctx: &'a Ctx<'_>,
    key: &[u8],
    field: Option<&[u8]>,
) -> Result<(crate::crdt::Stamp, usize, Option<&'a Counted<Blob>>), CmdError> {
    match ctx.get(key) {
        None => Ok((NEW_SLOT, 0, None)),
        Some(slot) => match &slot.value {
            Value::Hash(h) => Ok((
                slot.created,
                h.fields.len(),
                field.and_then(|f| h.fields.get(f)),
            )),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

fn hash_len(ctx: &Ctx<'_>, key: &[u8]) -> usize {
    match read_hash(ctx.db, key, ctx.now_ms) {
        Ok(Some(h)) => h.fields.len(),
        _ => 0,
    }
}

fn hset_generic(ctx: &mut Ctx<'_>, args: &[Bytes], name: &str) -> CmdResult {
    if !args.len().is_multiple_of(2) {
        return Err(arity_error(name));
    }
    let key = &args[1];
    let (slot, before, _) = hash_for_write(ctx, key, None)?;
    let ops = args[2..]
        .chunks_exact(2)
        .map(|pair| {
            op(
                key,
                OpKind::HashSet {
                    slot,
                    field: pair[0].clone(),
                    value: pair[1].clone(),
                },
            )
        })
        .collect();
    ctx.write(ops);
    if name == "hmset" {
        ctx.out.simple("OK");
    } else {
        let after = hash_len(ctx, key);
        ctx.out.int(after.saturating_sub(before) as i64);
    }
    Ok(())
}

fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    hset_generic(ctx, args, "hset")
}

fn hmset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    hset_generic(ctx, args, "hmset")
}

fn hsetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let (slot, _, existing) = hash_for_write(ctx, key, Some(&args[2]))?;
    if existing.is_some() {
        ctx.out.int(0);
        return Ok(());
    }
    ctx.write(vec![op(
        key,
        OpKind::HashSet {
            slot,
            field: args[2].clone(),
            value: args[3].clone(),
        },
    )]);
    ctx.out.int(1);
    Ok(())
}

fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let value = read_hash(ctx.db, &args[1], ctx.now_ms)?
        .and_then(|h| h.fields.get(&args[2][..]))
        .map(|c| c.read());
    ctx.out.bulk_or_null(value.as_deref());
    Ok(())
}

fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = read_hash(ctx.db, &args[1], ctx.now_ms)?;
    ctx.out.array(args.len() - 2);
    for field in &args[2..] {
        let value = hash
            .and_then(|h| h.fields.get(&field[..]))
            .map(|c| c.read());
        ctx.out.bulk_or_null(value.as_deref());
    }
    Ok(())
}

fn hdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let Some(hash) = read_hash(ctx.db, key, ctx.now_ms)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let gone = distinct_present(&args[2..], |f| hash.fields.contains_key(f));
    let removed = gone.len();
    let empties = removed == hash.fields.len();
    if removed > 0 {
        let ops = if empties {
            vec![op(key, OpKind::Del)]
        } else {
            gone.into_iter()
                .map(|f| op(key, OpKind::HashDel { field: f.clone() }))
                .collect()
        };
        ctx.write(ops);
    }
    ctx.out.int(removed as i64);
    Ok(())
}

fn hgetall_generic(ctx: &mut Ctx<'_>, args: &[Bytes], fields: bool, values: bool) -> CmdResult {
    let hash = read_hash(ctx.db, &args[1], ctx.now_ms)?;
    let len = hash.map_or(0, |h| h.fields.len());
    if fields && values {
        ctx.out.map(len);
    } else {
        ctx.out.array(len);
    }
    if let Some(h) = hash {
        for (f, v) in h.fields.iter() {
            if fields {
                ctx.out.bulk(f);
            }
            if values {
                ctx.out.bulk(&v.read());
            }
        }
    }
    Ok(())
}

fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    hgetall_generic(ctx, args, true, true)
}

fn hkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    hgetall_generic(ctx, args, true, false)
}

fn hvals(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    hgetall_generic(ctx, args, false, true)
}

fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = read_hash(ctx.db, &args[1], ctx.now_ms)?.map_or(0, |h| h.fields.len());
    ctx.out.int(len as i64);
    Ok(())
}

fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let found = read_hash(ctx.db, &args[1], ctx.now_ms)?
        .is_some_and(|h| h.fields.contains_key(&args[2][..]));
    ctx.out.int(i64::from(found));
    Ok(())
}

fn hstrlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = read_hash(ctx.db, &args[1], ctx.now_ms)?
        .and_then(|h| h.fields.get(&args[2][..]))
        .map_or(0, |c| c.read().len());
    ctx.out.int(len as i64);
    Ok(())
}

fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let incr = int_arg(&args[3])?;
    let (key, field) = (&args[1], &args[2]);
    let (slot, _, existing) = hash_for_write(ctx, key, Some(field))?;
    let current = match existing {
        None => 0i128,
        Some(c) => match crate::resp::parse_i64_strict(&c.read()) {
            Some(v) => i128::from(v),
            None => return Err(Cow::Borrowed(ERR_HASH_NOT_INTEGER)),
        },
    };
    let next = current + i128::from(incr);
    if next >= COUNTER_LIMIT || next <= -COUNTER_LIMIT {
        return Err(Cow::Borrowed(ERR_OVERFLOW));
    }
    // Alone, a node writes the result (exactly Redis); with other participants it writes an
    // increment so concurrent ones add up.
    let kind = if ctx.db.ks.is_single_participant() {
        OpKind::HashSet {
            slot,
            field: field.clone(),
            value: Bytes::from(next.to_string()),
        }
    } else {
        OpKind::HashAdd {
            slot,
            field: field.clone(),
            delta: Delta::Int(incr),
        }
    };
    ctx.write(vec![op(key, kind)]);
    ctx.out.int(next as i64);
    Ok(())
}

fn hincrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let incr = float_arg(&args[3])?;
    if !incr.is_finite() {
        return Err(Cow::Borrowed("ERR value is NaN or Infinity"));
    }
    let (key, field) = (&args[1], &args[2]);
    let (slot, _, existing) = hash_for_write(ctx, key, Some(field))?;
    let (current, numeric) = match existing {
        None => (0.0, true),
        Some(c) => match crate::resp::parse_f64_strict(&c.read()) {
            // A value `strtold` reads but the counter does not (e.g. hexadecimal) cannot take
            // increments on top: the result is written as a new value instead.
            Some(v) => (v, c.number().is_some()),
            None => return Err(Cow::Borrowed(ERR_HASH_NOT_FLOAT)),
        },
    };
    let next = current + incr;
    if !next.is_finite() {
        return Err(Cow::Borrowed("ERR increment would produce NaN or Infinity"));
    }
    let kind = if numeric && !ctx.db.ks.is_single_participant() {
        OpKind::HashAdd {
            slot,
            field: field.clone(),
            delta: Delta::Float(incr),
        }
    } else {
        OpKind::HashSet {
            slot,
            field: field.clone(),
            value: Bytes::from(crate::resp::format_double_human(next + 0.0)),
        }
    };
    ctx.write(vec![op(key, kind)]);
    // Reply with the stored value as HGET shows it.
    let shown = read_hash(ctx.db, key, ctx.now_ms)
        .ok()
        .flatten()
        .and_then(|h| h.fields.get(&field[..]))
        .map(|c| c.read());
    match shown {
        Some(v) => ctx.out.bulk(&v),
        None => ctx
            .out
            .bulk(crate::resp::format_double_human(next + 0.0).as_bytes()),
    }
    Ok(())
}

fn hrandfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() >= 3 {
        return hrandfield_count(ctx, args);
    }
    let hash = read_hash(ctx.db, &args[1], ctx.now_ms)?;
    let pick = hash.and_then(|h| {
        h.fields
            .keys()
            .nth(rand::rng().random_range(0..h.fields.len().max(1)))
    });
    ctx.out.bulk_or_null(pick.map(|f| &f[..]));
    Ok(())
}

fn hrandfield_count(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = random_count_arg(&args[2])?;
    let with_values = match args.len() {
        3 => false,
        4 if is(&args[3], "withvalues") => true,
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    };
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n) {
        return Err(Cow::Borrowed("ERR value is out of range"));
    }
    let Some(hash) = read_hash(ctx.db, &args[1], ctx.now_ms)? else {
        ctx.out.array(0);
        return Ok(());
    };
    let count = n.unsigned_abs();
    let len = hash.fields.len();
    if count == 0 || len == 0 {
        ctx.out.array(0);
        return Ok(());
    }
    let resp3 = ctx.out.proto == crate::resp::Protocol::Resp3;
    let header = |out: &mut ReplyWriter<'_>, n: usize| {
        if with_values && !resp3 {
            out.array(n.saturating_mul(2));
        } else {
            out.array(n);
        }
    };
    let entry = |out: &mut ReplyWriter<'_>, f: &[u8], v: &Counted<Blob>| {
        if with_values && resp3 {
            out.array(2);
        }
        out.bulk(f);
        if with_values {
            out.bulk(&v.read());
        }
    };
    if n < 0 || count == 1 {
        check_random_reply(count)?;
        let all: Vec<(&Blob, &Counted<Blob>)> = hash.fields.iter().collect();
        header(&mut ctx.out, count as usize);
        let mut rng = rand::rng();
        for _ in 0..count {
            let (f, v) = all[rng.random_range(0..all.len())];
            entry(&mut ctx.out, f, v);
        }
    } else if count >= len as u64 {
        header(&mut ctx.out, len);
        for (f, v) in hash.fields.iter() {
            entry(&mut ctx.out, f, v);
        }
    } else {
        let positions = random_positions(len, count as usize);
        let picked = pick_positions(hash.fields.iter(), &positions);
        header(&mut ctx.out, picked.len());
        for (f, v) in picked {
            entry(&mut ctx.out, f, v);
        }
    }
    Ok(())
}

fn hscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = parse_scan_cursor(&args[2])?;
    let Some(hash) = read_hash(ctx.db, &args[1], ctx.now_ms)? else {
        write_empty_scan(&mut ctx.out);
        return Ok(());
    };
    let opts = parse_scan_options(&args[3..], false)?;
    let len = hash.fields.len();
    let whole = len <= opts.count
        || (len <= LISTPACK_MAX_ENTRIES
            && hash.fields.iter().all(|(f, v)| {
                f.len() <= LISTPACK_MAX_VALUE && v.read().len() <= LISTPACK_MAX_VALUE
            }));
    let (next, page): (u64, Vec<(&Blob, &Counted<Blob>)>) = if whole {
        (0, hash.fields.iter().collect())
    } else {
        scan_page(
            hash.fields.iter().map(|(f, v)| (&f[..], (f, v))),
            cursor,
            opts.count,
        )
    };
    let shown: Vec<(&Blob, &Counted<Blob>)> =
        page.into_iter().filter(|(f, _)| opts.matches(f)).collect();
    ctx.out.array(2);
    ctx.out.bulk_display(next);
    ctx.out.array(shown.len() * 2);
    for (f, v) in shown {
        ctx.out.bulk(f);
        ctx.out.bulk(&v.read());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::TestDb;

    const WRONG: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    fn bulks(reply: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = reply.split("\r\n");
        while let Some(line) = lines.next() {
            if line.starts_with('$') && line != "$-1" {
                out.push(lines.next().unwrap_or_default().to_string());
            }
        }
        out
    }

    /// The field/value pairs of a flat reply, sorted (`skip` leading bulks are ignored).
    fn pairs_after(reply: &str, skip: usize) -> Vec<(String, String)> {
        let items: Vec<String> = bulks(reply).into_iter().skip(skip).collect();
        let mut out: Vec<(String, String)> = items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        out.sort();
        out
    }

    fn pairs(reply: &str) -> Vec<(String, String)> {
        pairs_after(reply, 0)
    }

    #[test]
    fn hset_and_reads() {
        let mut db = TestDb::new();
        assert_eq!(db.text(&["HSET", "h", "f1", "v1"]), ":1\r\n");
        assert_eq!(
            db.text(&["HSET", "h", "f1", "v1b", "f2", "v2", "f2", "v2b"]),
            ":1\r\n"
        );
        assert_eq!(db.text(&["HMSET", "h", "f3", "v3"]), "+OK\r\n");
        assert_eq!(
            db.text(&["HSET", "h", "f1"]),
            "-ERR wrong number of arguments for 'hset' command\r\n"
        );
        assert_eq!(
            db.text(&["HMSET", "h", "a", "b", "c"]),
            "-ERR wrong number of arguments for 'hmset' command\r\n"
        );
        assert_eq!(db.text(&["HGET", "h", "f1"]), "$3\r\nv1b\r\n");
        assert_eq!(db.text(&["HGET", "h", "f2"]), "$3\r\nv2b\r\n");
        assert_eq!(db.text(&["HGET", "h", "nofield"]), "$-1\r\n");
        assert_eq!(db.text(&["HGET", "nokey", "f"]), "$-1\r\n");
        assert_eq!(
            db.text(&["HMGET", "h", "f1", "nofield"]),
            "*2\r\n$3\r\nv1b\r\n$-1\r\n"
        );
        assert_eq!(db.text(&["HMGET", "nokey", "a"]), "*1\r\n$-1\r\n");
        assert_eq!(db.text(&["HLEN", "h"]), ":3\r\n");
        assert_eq!(db.text(&["HLEN", "nokey"]), ":0\r\n");
        assert_eq!(db.text(&["HEXISTS", "h", "f3"]), ":1\r\n");
        assert_eq!(db.text(&["HEXISTS", "h", "zz"]), ":0\r\n");
        assert_eq!(db.text(&["HSTRLEN", "h", "f1"]), ":3\r\n");
        assert_eq!(db.text(&["HSTRLEN", "h", "zz"]), ":0\r\n");
        let all = db.text(&["HGETALL", "h"]);
        assert!(all.starts_with("*6\r\n"));
        assert_eq!(
            pairs(&all),
            [
                ("f1".to_string(), "v1b".to_string()),
                ("f2".to_string(), "v2b".to_string()),
                ("f3".to_string(), "v3".to_string())
            ]
        );
        let mut keys = bulks(&db.text(&["HKEYS", "h"]));
        keys.sort();
        assert_eq!(keys, ["f1", "f2", "f3"]);
        let mut vals = bulks(&db.text(&["HVALS", "h"]));
        vals.sort();
        assert_eq!(vals, ["v1b", "v2b", "v3"]);
        assert_eq!(db.text(&["HGETALL", "nokey"]), "*0\r\n");
        assert_eq!(db.text(&["HKEYS", "nokey"]), "*0\r\n");
        db.text(&["HELLO", "3"]);
        assert!(db.text(&["HGETALL", "h"]).starts_with("%3\r\n"));
        assert_eq!(db.text(&["HGETALL", "nokey"]), "%0\r\n");
        assert_eq!(db.text(&["HKEYS", "nokey"]), "*0\r\n");
    }

    #[test]
    fn wrong_type_everywhere() {
        let mut db = TestDb::new();
        db.text(&["SET", "str", "x"]);
        for cmd in [
            &["HSET", "str", "f", "v"][..],
            &["HMSET", "str", "f", "v"],
            &["HSETNX", "str", "f", "v"],
            &["HGET", "str", "f"],
            &["HMGET", "str", "f"],
            &["HDEL", "str", "f"],
            &["HGETALL", "str"],
            &["HKEYS", "str"],
            &["HVALS", "str"],
            &["HLEN", "str"],
            &["HEXISTS", "str", "f"],
            &["HSTRLEN", "str", "f"],
            &["HINCRBY", "str", "f", "1"],
            &["HINCRBYFLOAT", "str", "f", "1"],
            &["HRANDFIELD", "str"],
            &["HRANDFIELD", "str", "0"],
            &["HSCAN", "str", "0"],
        ] {
            assert_eq!(db.text(cmd), WRONG, "{cmd:?}");
        }
        // Arguments are checked before the key.
        assert_eq!(
            db.text(&["HINCRBY", "str", "f", "x"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "str", "f", "x"]),
            "-ERR value is not a valid float\r\n"
        );
        assert_eq!(db.text(&["HSCAN", "str", "x"]), "-ERR invalid cursor\r\n");
        assert_eq!(db.text(&["GET", "str"]), "$1\r\nx\r\n");
    }

    #[test]
    fn hdel_and_hsetnx() {
        let mut db = TestDb::new();
        assert_eq!(db.text(&["HSETNX", "h", "f", "v"]), ":1\r\n");
        assert_eq!(db.text(&["HSETNX", "h", "f", "w"]), ":0\r\n");
        assert_eq!(db.text(&["HGET", "h", "f"]), "$1\r\nv\r\n");
        db.text(&["HSET", "h", "g", "1", "k", "2"]);
        db.text(&["EXPIRE", "h", "100"]);
        assert_eq!(db.text(&["HDEL", "h", "f", "f", "zz"]), ":1\r\n");
        assert_eq!(db.text(&["HDEL", "nokey", "f"]), ":0\r\n");
        assert_eq!(db.text(&["HLEN", "h"]), ":2\r\n");
        assert_eq!(db.text(&["HDEL", "h", "g", "k"]), ":2\r\n");
        assert_eq!(db.text(&["EXISTS", "h"]), ":0\r\n");
        assert!(
            db.db.ks.raw_entry(b"h").is_none(),
            "the emptied key is deleted"
        );
        assert_eq!(db.text(&["HSET", "h", "a", "b"]), ":1\r\n");
        assert_eq!(db.text(&["TTL", "h"]), ":-1\r\n");
    }

    #[test]
    fn hincrby_counts_and_checks() {
        let mut db = TestDb::new();
        assert_eq!(db.text(&["HINCRBY", "h", "n", "5"]), ":5\r\n");
        assert_eq!(db.text(&["HINCRBY", "h", "n", "-8"]), ":-3\r\n");
        assert_eq!(db.text(&["HGET", "h", "n"]), "$2\r\n-3\r\n");
        db.text(&["HSET", "h", "s", "text", "sp", " 1", "ten", "10"]);
        assert_eq!(
            db.text(&["HINCRBY", "h", "s", "1"]),
            "-ERR hash value is not an integer\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBY", "h", "sp", "1"]),
            "-ERR hash value is not an integer\r\n"
        );
        assert_eq!(db.text(&["HINCRBY", "h", "ten", "1"]), ":11\r\n");
        assert_eq!(db.text(&["HSET", "h", "ten", "100"]), ":0\r\n");
        assert_eq!(db.text(&["HINCRBY", "h", "ten", "1"]), ":101\r\n");
        assert_eq!(
            db.text(&["HINCRBY", "h", "n", "9223372036854775808"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBY", "big", "n", "1000000000000000000"]),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(db.text(&["EXISTS", "big"]), ":0\r\n");
        db.text(&["HSET", "h", "max", "9223372036854775807"]);
        assert_eq!(
            db.text(&["HINCRBY", "h", "max", "1"]),
            "-ERR increment or decrement would overflow\r\n"
        );
    }

    #[test]
    fn hincrbyfloat_counts_and_checks() {
        let mut db = TestDb::new();
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "h", "x", "10.5"]),
            "$4\r\n10.5\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "h", "x", "0.25"]),
            "$5\r\n10.75\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "h", "x", "-20"]),
            "$5\r\n-9.25\r\n"
        );
        assert_eq!(db.text(&["HGET", "h", "x"]), "$5\r\n-9.25\r\n");
        assert_eq!(db.text(&["HINCRBYFLOAT", "h", "y", "3"]), "$1\r\n3\r\n");
        assert_eq!(db.text(&["HINCRBY", "h", "y", "1"]), ":4\r\n");
        assert_eq!(db.text(&["HINCRBYFLOAT", "h", "z", "-0"]), "$1\r\n0\r\n");
        db.text(&[
            "HSET", "h", "i", "5", "s", "text", "hex", "0x10", "inf", "inf",
        ]);
        assert_eq!(db.text(&["HINCRBYFLOAT", "h", "i", "1.5"]), "$3\r\n6.5\r\n");
        assert_eq!(
            db.text(&["HINCRBY", "h", "i", "1"]),
            "-ERR hash value is not an integer\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "h", "s", "1"]),
            "-ERR hash value is not a float\r\n"
        );
        assert_eq!(db.text(&["HINCRBYFLOAT", "h", "hex", "1"]), "$2\r\n17\r\n");
        assert_eq!(db.text(&["HINCRBY", "h", "hex", "1"]), ":18\r\n");
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "h", "inf", "1"]),
            "-ERR increment would produce NaN or Infinity\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "h", "x", "inf"]),
            "-ERR value is NaN or Infinity\r\n"
        );
        assert_eq!(
            db.text(&["HINCRBYFLOAT", "h", "x", "nan"]),
            "-ERR value is not a valid float\r\n"
        );
    }

    #[test]
    fn concurrent_field_increments_add_up() {
        let mut a = TestDb::region("a");
        let mut b = TestDb::region("b");
        a.text(&["HSET", "h", "n", "10"]);
        let base: Vec<_> = a.db.ks.outbox.drain(..).collect();
        for e in &base {
            b.db.ks.apply(e);
        }
        a.text(&["HINCRBY", "h", "n", "7"]);
        b.text(&["HINCRBY", "h", "n", "3"]);
        let from_a: Vec<_> = a.db.ks.outbox.drain(..).collect();
        let from_b: Vec<_> = b.db.ks.outbox.drain(..).collect();
        for e in &from_b {
            a.db.ks.apply(e);
        }
        for e in &from_a {
            b.db.ks.apply(e);
        }
        assert_eq!(a.text(&["HGET", "h", "n"]), "$2\r\n20\r\n");
        assert_eq!(b.text(&["HGET", "h", "n"]), "$2\r\n20\r\n");
    }

    #[test]
    fn hrandfield_variants() {
        let mut db = TestDb::new();
        db.text(&["HSET", "h", "a", "1", "b", "2", "c", "3"]);
        assert_eq!(bulks(&db.text(&["HRANDFIELD", "h"])).len(), 1);
        assert_eq!(db.text(&["HRANDFIELD", "nokey"]), "$-1\r\n");
        assert_eq!(db.text(&["HRANDFIELD", "nokey", "3"]), "*0\r\n");
        assert_eq!(db.text(&["HRANDFIELD", "h", "0"]), "*0\r\n");
        let all = db.text(&["HRANDFIELD", "h", "5", "WITHVALUES"]);
        assert!(all.starts_with("*6\r\n"));
        assert_eq!(pairs(&all).len(), 3);
        let two = bulks(&db.text(&["HRANDFIELD", "h", "2"]));
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        assert!(db.text(&["HRANDFIELD", "h", "-5"]).starts_with("*5\r\n"));
        assert_eq!(
            db.text(&["HRANDFIELD", "h", "1", "x"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            db.text(&["HRANDFIELD", "h", "1", "WITHVALUES", "x"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            db.text(&["HRANDFIELD", "h", "4611686018427387904", "WITHVALUES"]),
            "-ERR value is out of range\r\n"
        );
        assert_eq!(
            db.text(&["HRANDFIELD", "h", "abc"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        db.text(&["HELLO", "3"]);
        let resp3 = db.text(&["HRANDFIELD", "h", "-2", "WITHVALUES"]);
        assert!(resp3.starts_with("*2\r\n*2\r\n"), "{resp3}");
    }

    #[test]
    fn hscan_small_and_large() {
        let mut db = TestDb::new();
        db.text(&["HSET", "hs", "a", "1", "b", "2", "c", "3", "d", "4"]);
        let reply = db.text(&["HSCAN", "hs", "0"]);
        assert!(reply.starts_with("*2\r\n$1\r\n0\r\n*8\r\n"));
        let reply = db.text(&["HSCAN", "hs", "0", "MATCH", "[ab]", "COUNT", "1"]);
        assert!(reply.starts_with("*2\r\n$1\r\n0\r\n*4\r\n"), "{reply}");
        assert_eq!(
            pairs_after(&reply, 1),
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            db.text(&["HSCAN", "nokey", "0", "BAD"]),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(
            db.text(&["HSCAN", "nokey", "abc"]),
            "-ERR invalid cursor\r\n"
        );
        assert_eq!(
            db.text(&["HSCAN", "hs", "0", "COUNT", "0"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            db.text(&["HSCAN", "hs", "0", "COUNT", "abc"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            db.text(&["HSCAN", "hs", "0", "BADOPT"]),
            "-ERR syntax error\r\n"
        );

        let mut cmd = vec!["HSET".to_string(), "big".to_string()];
        for i in 0..200 {
            cmd.push(format!("f{i}"));
            cmd.push(format!("v{i}"));
        }
        let refs: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
        assert_eq!(db.text(&refs), ":200\r\n");
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        for _ in 0..1000 {
            let reply = db.text(&["HSCAN", "big", &cursor]);
            let items = bulks(&reply);
            cursor = items[0].clone();
            seen.extend(items[1..].chunks(2).map(|c| (c[0].clone(), c[1].clone())));
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(cursor, "0");
        seen.sort();
        let mut want: Vec<(String, String)> = (0..200)
            .map(|i| (format!("f{i}"), format!("v{i}")))
            .collect();
        want.sort();
        assert_eq!(seen, want);
    }
}
