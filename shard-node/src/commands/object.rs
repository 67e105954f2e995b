//! OBJECT (ENCODING, FREQ, IDLETIME, REFCOUNT, HELP) and MEMORY (USAGE, STATS, DOCTOR,
//! MALLOC-STATS, PURGE, HELP): what Redis reports about the representation of values.
//!
//! Contract:
//! - Values here have one representation each (CRDT state), so OBJECT ENCODING reports what
//!   Redis 7.0 would use for the same data, from the current content and the encoding
//!   thresholds of CONFIG (`hash-max-listpack-*`, `set-max-intset-entries`,
//!   `zset-max-listpack-*`): strings `int` / `embstr` / `raw` by their text, hashes `listpack` /
//!   `hashtable`, sets `intset` / `hashtable`, sorted sets `listpack` / `skiplist`, lists
//!   `quicklist`. Redis also keeps a value in its larger encoding after it shrinks, and
//!   makes strings changed in place (APPEND, SETRANGE, SETBIT) `raw`; here the encoding follows
//!   the content.
//! - OBJECT REFCOUNT is 2147483647 for the integers 0..9999 Redis shares, 1 otherwise.
//! - Access times and frequencies are not tracked: IDLETIME is 0, FREQ (under an LFU
//!   `maxmemory-policy`, Redis's error otherwise) is 0.
//! - MEMORY USAGE is an estimate of the bytes a key and its value take here; MEMORY STATS
//!   reports the allocator's figures this server has.
//! - Replies to missing keys, argument errors and help texts are Redis 7.0's.

use super::config::int_param;
use super::*;
use crate::crdt::Value;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("object", -2, "", 2, 2, 1, "generic", "A container for object introspection commands.", object),
        cmd("memory", -2, "", 2, 2, 1, "server", "A container for memory diagnostics commands.", memory),
    ]
}

const ERR_LFU_NOT_SELECTED: &str = "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
const ERR_LFU_SELECTED: &str = "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";

/// Largest string Redis stores in the embedded encoding.
const EMBSTR_MAX: usize = 44;
/// Integers Redis shares between keys (`OBJ_SHARED_INTEGERS`).
const SHARED_INTEGERS: i64 = 10_000;
/// Redis's reference count of a shared object.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// `string2l` over a value Redis would try to encode as an integer.
fn as_long(text: &[u8]) -> Option<i64> {
    if text.len() > 20 {
        return None;
    }
    crate::resp::parse_i64_strict(text)
}

/// What Redis 7.0 would use to store `value`.
fn encoding(db: &Db, value: &Value) -> &'static str {
    match value {
        Value::Stream(_) => "stream",
        // Redis stores a HyperLogLog as a string of more than 44 bytes.
        Value::Hll(_) => "raw",
        Value::Str(c) => {
            let text = c.read();
            if as_long(&text).is_some() {
                "int"
            } else if text.len() <= EMBSTR_MAX {
                "embstr"
            } else {
                "raw"
            }
        }
        Value::Hash(h) => {
            let entries = int_param(db, "hash-max-listpack-entries");
            let max = int_param(db, "hash-max-listpack-value");
            let small = |b: &[u8]| (b.len() as i64) <= max;
            if (h.fields.len() as i64) <= entries
                && h.fields.iter().all(|(f, v)| small(f) && small(&v.read()))
            {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Value::Set(s) => {
            let entries = int_param(db, "set-max-intset-entries");
            if (s.members.len() as i64) <= entries && s.members.keys().all(|m| as_long(m).is_some())
            {
                "intset"
            } else {
                "hashtable"
            }
        }
        Value::ZSet(z) => {
            let entries = int_param(db, "zset-max-listpack-entries");
            let max = int_param(db, "zset-max-listpack-value");
            if (z.members.len() as i64) <= entries
                && z.members.keys().all(|m| (m.len() as i64) <= max)
            {
                "listpack"
            } else {
                "skiplist"
            }
        }
        Value::List(_) => "quicklist",
    }
}

fn lfu_policy(db: &Db) -> bool {
    db.settings
        .params
        .get("maxmemory-policy")
        .is_some_and(|p| p.contains("lfu"))
}

fn object(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    let keyed = matches!(sub.as_str(), "encoding" | "freq" | "idletime" | "refcount");
    if keyed && args.len() == 3 {
        let Some(value) = ctx.get(&args[2]).map(|s| &s.value) else {
            ctx.out.null();
            return Ok(());
        };
        match sub.as_str() {
            "encoding" => {
                let e = encoding(ctx.db, value);
                ctx.out.bulk(e.as_bytes());
            }
            "refcount" => {
                let shared = match value {
                    Value::Str(c) => {
                        as_long(&c.read()).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n))
                    }
                    _ => false,
                };
                ctx.out.int(if shared { SHARED_REFCOUNT } else { 1 });
            }
            "freq" => {
                if !lfu_policy(ctx.db) {
                    return Err(Cow::Borrowed(ERR_LFU_NOT_SELECTED));
                }
                ctx.out.int(0);
            }
            _ => {
                if lfu_policy(ctx.db) {
                    return Err(Cow::Borrowed(ERR_LFU_SELECTED));
                }
                ctx.out.int(0);
            }
        }
        return Ok(());
    }
    match (sub.as_str(), args.len()) {
        ("help", 2) => ctx.reply_help(&[
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ]),
        ("help", _) => return Err(arity_error("object|help")),
        _ if keyed => return Err(arity_error(&format!("object|{sub}"))),
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}

/// Bytes an allocation of `n` takes, rounded to a 16-byte size class.
fn alloc(n: usize) -> usize {
    n.div_ceil(16).max(1) * 16
}

/// An estimate of the memory a key and its value take.
pub(super) fn usage(key: &[u8], value: &Value) -> usize {
    let per_key = 24 + alloc(key.len() + 3) + 16;
    let body = match value {
        Value::Str(c) => {
            let text = c.read();
            if as_long(&text).is_some() {
                0
            } else {
                alloc(text.len() + 3)
            }
        }
        Value::Hash(h) => h
            .fields
            .iter()
            .map(|(f, v)| 24 + alloc(f.len() + 3) + alloc(v.read().len() + 3))
            .sum(),
        Value::Set(s) => s.members.keys().map(|m| 24 + alloc(m.len() + 3)).sum(),
        Value::ZSet(z) => z.members.keys().map(|m| 56 + alloc(m.len() + 3)).sum(),
        Value::List(l) => l.iter_visible().map(|e| 16 + e.value.len()).sum::<usize>() + 32,
        Value::Stream(x) => {
            x.entries
                .values()
                .map(|e| 48 + e.fields.iter().map(|f| alloc(f.len())).sum::<usize>())
                .sum::<usize>()
                + 64
        }
        Value::Hll(h) => match &h.regs {
            crate::crdt::types::hll::Registers::Sparse(v) => 16 + v.len() * 3,
            crate::crdt::types::hll::Registers::Dense(d) => 16 + d.len(),
        },
    };
    per_key + body
}

fn memory(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("usage", n) if n >= 3 => {
            let mut j = 3;
            while j < args.len() {
                if is(&args[j], "samples") && j + 1 < args.len() {
                    if int_arg(&args[j + 1])? < 0 {
                        return Err(Cow::Borrowed(ERR_SYNTAX));
                    }
                    j += 2;
                } else {
                    return Err(Cow::Borrowed(ERR_SYNTAX));
                }
            }
            match ctx.get(&args[2]) {
                None => ctx.out.null(),
                Some(slot) => {
                    let n = usage(&args[2], &slot.value);
                    ctx.out.int(n as i64);
                }
            }
        }
        ("stats", 2) => {
            let used = ctx.db.used_memory as i64;
            let keys = ctx.db.ks.len() as i64;
            let per_key = if keys > 0 { used / keys } else { 0 };
            ctx.out.map(6);
            ctx.out.bulk(b"peak.allocated");
            ctx.out.int(used);
            ctx.out.bulk(b"total.allocated");
            ctx.out.int(used);
            ctx.out.bulk(b"keys.count");
            ctx.out.int(keys);
            ctx.out.bulk(b"keys.bytes-per-key");
            ctx.out.int(per_key);
            ctx.out.bulk(b"dataset.bytes");
            ctx.out.int(used);
            ctx.out.bulk(b"allocator.allocated");
            ctx.out.int(used);
        }
        ("doctor", 2) => {
            let text: &[u8] = if ctx.db.used_memory < 5 * 1024 * 1024 {
                b"Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.\n"
            } else {
                b"Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.\n"
            };
            ctx.out.verbatim("txt", text);
        }
        ("malloc-stats", 2) => ctx
            .out
            .bulk(b"Stats not supported for the current allocator"),
        ("purge", 2) => ctx.out.simple("OK"),
        ("help", 2) => ctx.reply_help(&[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "HELP",
            "    Prints this help.",
        ]),
        ("usage" | "stats" | "doctor" | "malloc-stats" | "purge" | "help", _) => {
            return Err(arity_error(&format!("memory|{sub}")))
        }
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try MEMORY HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}
