//! SORT and SORT_RO (`sortCommandGeneric`): BY, LIMIT, GET, ASC/DESC, ALPHA, STORE.
//!
//! Contract:
//! - Lists, sets and sorted sets are sorted by their elements' numeric values (C `strtod` of
//!   the whole text), or with ALPHA by their bytes; equal numbers are ordered by their bytes, as
//!   in Redis. `BY` with a pattern sorts by the string value (or hash field, `->field`) of the
//!   key the pattern names for each element; a pattern without `*` skips sorting (lists and
//!   sorted sets keep their order, sets their iteration order). `GET` patterns (and `#`, the
//!   element itself) choose what is returned. Replies and error texts are Redis 7.0's.
//! - `STORE` replaces the destination with a list of the result in one effect (a `Del` of what
//!   it held, then list inserts); an empty result only deletes it. It is a composition of
//!   existing operations (docs/semantics.md, Lists).
//! - Under a shard topology the keys a BY or GET pattern names may live on another shard, so
//!   those options are refused as Redis Cluster refuses them, unless the pattern carries a hash
//!   tag (before its `*`) of the sorted key's slot: then every key it names is in that slot.
//!   A user without access to every key gets Redis's ACL error for them.

use super::keys::list_ops;
use super::zsets::bounds::c_strtod;
use super::*;
use crate::crdt::Value;
use std::cmp::Ordering;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("sort", -2, "write denyoom", 1, 1, 1, "generic", "Sorts the elements of a list, a set or a sorted set, optionally storing the result.", sort),
        cmd("sort_ro", -2, "readonly", 1, 1, 1, "generic", "Sorts the elements of a list, a set or a sorted set.", sort_ro),
    ]
}

/// The positions of SORT's STORE key (`sortGetKeys`): the last STORE given, skipping the
/// arguments of LIMIT, GET and BY.
pub fn store_key_position(args: &[Bytes]) -> Option<usize> {
    let mut found = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if is(a, "limit") {
            i += 2;
        } else if is(a, "get") || is(a, "by") {
            i += 1;
        } else if is(a, "store") && i + 1 < args.len() {
            found = Some(i + 1);
        }
        i += 1;
    }
    found
}

fn sort(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, false)
}

fn sort_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, true)
}

/// The value `pattern` names for `element` (`lookupKeyByPattern`): `#` is the element itself,
/// `prefix*suffix` a string key, `prefix*suffix->field` a hash field.
fn lookup_by_pattern(ctx: &Ctx<'_>, pattern: &[u8], element: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(element.to_vec());
    }
    let star = pattern.iter().position(|&b| b == b'*')?;
    let rest = &pattern[star + 1..];
    let (suffix, field) = match rest.windows(2).position(|w| w == b"->") {
        Some(at) if at + 2 < rest.len() => (&rest[..at], Some(&rest[at + 2..])),
        _ => (rest, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(suffix);
    let slot = ctx.get(&key)?;
    match (&slot.value, field) {
        (Value::Str(c), None) => Some(c.read().into_owned()),
        (Value::Hash(h), Some(f)) => h.fields.get(f).map(|v| v.read().into_owned()),
        _ => None,
    }
}

/// Whether every key `pattern` can name hashes to the slot of `key`: `#` and patterns without
/// `*` name no key; otherwise the pattern must carry a non-empty hash tag before its `*` (so
/// the element cannot change the tag) and that tag must be `key`'s slot.
fn stays_in_slot(pattern: &[u8], key: &[u8]) -> bool {
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return true;
    };
    if pattern == b"#" {
        return true;
    }
    let Some(open) = pattern.iter().position(|&b| b == b'{') else {
        return false;
    };
    let Some(close) = pattern[open + 1..]
        .iter()
        .position(|&b| b == b'}')
        .map(|c| open + 1 + c)
    else {
        return false;
    };
    close > open + 1
        && close < star
        && crate::cluster::key_slot(&pattern[..=close]) == crate::cluster::key_slot(key)
}

/// `strtod` over the whole text as SORT reads a number; `None` when it is not one.
fn sort_number(text: &[u8]) -> Option<f64> {
    let v = c_strtod(text)?;
    if v.is_infinite() && !text.to_ascii_lowercase().windows(3).any(|w| w == b"inf") {
        return None;
    }
    Some(v)
}

struct Item {
    obj: Vec<u8>,
    score: f64,
    cmp: Option<Vec<u8>>,
}

fn sort_generic(ctx: &mut Ctx<'_>, args: &[Bytes], readonly: bool) -> CmdResult {
    let (mut desc, mut alpha) = (false, false);
    let (mut limit_start, mut limit_count): (i64, i64) = (0, -1);
    let mut store: Option<&Bytes> = None;
    let mut sortby: Option<&Bytes> = None;
    let mut dontsort = false;
    let mut gets: Vec<&Bytes> = Vec::new();
    let full_key_access = ctx
        .db
        .acl
        .user(&ctx.client.user)
        .is_some_and(|u| u.all_keys());
    let clustered = ctx.db.topology.is_some();
    let mut j = 2;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if is(a, "asc") {
            desc = false;
        } else if is(a, "desc") {
            desc = true;
        } else if is(a, "alpha") {
            alpha = true;
        } else if is(a, "limit") && left >= 2 {
            limit_start = int_arg(&args[j + 1])?;
            limit_count = int_arg(&args[j + 2])?;
            j += 2;
        } else if !readonly && is(a, "store") && left >= 1 {
            store = Some(&args[j + 1]);
            j += 1;
        } else if is(a, "by") && left >= 1 {
            sortby = Some(&args[j + 1]);
            if !args[j + 1].contains(&b'*') {
                dontsort = true;
            } else if clustered && !stays_in_slot(&args[j + 1], &args[1]) {
                return Err(Cow::Borrowed(
                    "ERR BY option of SORT denied in Cluster mode.",
                ));
            } else if !full_key_access {
                return Err(Cow::Borrowed(
                    "ERR BY option of SORT denied due to insufficient ACL permissions.",
                ));
            }
            j += 1;
        } else if is(a, "get") && left >= 1 {
            if clustered && !stays_in_slot(&args[j + 1], &args[1]) {
                return Err(Cow::Borrowed(
                    "ERR GET option of SORT denied in Cluster mode.",
                ));
            }
            if !full_key_access {
                return Err(Cow::Borrowed(
                    "ERR GET option of SORT denied due to insufficient ACL permissions.",
                ));
            }
            gets.push(&args[j + 1]);
            j += 1;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        j += 1;
    }

    // The elements, in the order Redis loads them.
    let value = match ctx.get(&args[1]) {
        None => {
            ctx.db.stats.keyspace_misses += 1;
            None
        }
        Some(slot) => Some(slot.value.clone()),
    };
    if value.is_some() {
        ctx.db.stats.keyspace_hits += 1;
    }
    let mut is_set = false;
    let elements: Vec<Vec<u8>> = match &value {
        None => Vec::new(),
        Some(Value::List(l)) => l.iter_visible().map(|e| e.value.to_vec()).collect(),
        Some(Value::Set(s)) => {
            is_set = true;
            s.members.keys().map(|m| m.to_vec()).collect()
        }
        Some(Value::ZSet(z)) => z.order.iter().map(|(_, m)| m.to_vec()).collect(),
        Some(_) => return Err(Cow::Borrowed(ERR_WRONGTYPE)),
    };
    // A set sorted for STORE must give the same result everywhere: sort it by its bytes.
    if dontsort && is_set && store.is_some() {
        dontsort = false;
        alpha = true;
        sortby = None;
    }
    let len = elements.len() as i64;
    let mut start = limit_start.max(0);
    let mut end = if limit_count < 0 {
        len - 1
    } else {
        start.saturating_add(limit_count) - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }

    let mut items: Vec<Item> = elements
        .into_iter()
        .map(|obj| Item {
            obj,
            score: 0.0,
            cmp: None,
        })
        .collect();
    if dontsort && desc && !is_set {
        // Lists and sorted sets keep their order, reversed by DESC.
        items.reverse();
    }
    let mut conversion_error = false;
    if !dontsort {
        for item in items.iter_mut() {
            let byval = match sortby {
                Some(pattern) => match lookup_by_pattern(ctx, pattern, &item.obj) {
                    Some(v) => v,
                    None => continue,
                },
                None => item.obj.clone(),
            };
            if alpha {
                if sortby.is_some() {
                    item.cmp = Some(byval);
                }
            } else {
                match sort_number(&byval) {
                    Some(v) => item.score = v,
                    None => conversion_error = true,
                }
            }
        }
        let by_pattern = sortby.is_some();
        items.sort_by(|a, b| {
            let cmp = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.obj.cmp(&b.obj))
            } else if by_pattern {
                match (&a.cmp, &b.cmp) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) => x.cmp(y),
                }
            } else {
                a.obj.cmp(&b.obj)
            };
            if desc {
                cmp.reverse()
            } else {
                cmp
            }
        });
    }
    if conversion_error {
        return Err(Cow::Borrowed(
            "ERR One or more scores can't be converted into double",
        ));
    }
    let selected: &[Item] = if start <= end && start >= 0 {
        &items[start as usize..=end as usize]
    } else {
        &[]
    };

    match store {
        None => {
            let per = gets.len().max(1);
            ctx.out.array(selected.len() * per);
            for item in selected {
                if gets.is_empty() {
                    ctx.out.bulk(&item.obj);
                }
                for pattern in &gets {
                    let v = lookup_by_pattern(ctx, pattern, &item.obj);
                    ctx.out.bulk_or_null(v.as_deref());
                }
            }
        }
        Some(dest) => {
            let mut values: Vec<Bytes> = Vec::new();
            for item in selected {
                if gets.is_empty() {
                    values.push(Bytes::copy_from_slice(&item.obj));
                }
                for pattern in &gets {
                    let v = lookup_by_pattern(ctx, pattern, &item.obj).unwrap_or_default();
                    values.push(Bytes::from(v));
                }
            }
            let count = values.len();
            let mut ops = Vec::new();
            if ctx.db.ks.raw_entry(dest).is_some() {
                ops.push(op(dest, OpKind::Del));
            }
            ops.extend(list_ops(ctx, dest, values.into_iter()));
            if !ops.is_empty() {
                ctx.write(ops);
            }
            ctx.out.int(count as i64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_stay_in_the_slot_only_with_a_fixed_hash_tag() {
        assert!(stays_in_slot(b"#", b"{s}l"));
        assert!(stays_in_slot(b"nostar", b"{s}l"));
        assert!(stays_in_slot(b"{s}w_*", b"{s}l"));
        assert!(stays_in_slot(b"x{s}w_*->f", b"{s}l"));
        assert!(!stays_in_slot(b"w_*", b"{s}l"));
        assert!(!stays_in_slot(b"{t}w_*", b"{s}l"));
        assert!(!stays_in_slot(b"{*}w", b"{s}l"));
        assert!(!stays_in_slot(b"{}w_*", b"{s}l"));
        assert!(!stays_in_slot(b"{s*}", b"{s}l"));
    }

    #[test]
    fn store_key_is_the_last_store_outside_option_arguments() {
        let args: Vec<Bytes> = [
            "SORT", "k", "GET", "store", "STORE", "d1", "LIMIT", "0", "1", "STORE", "d2",
        ]
        .iter()
        .map(|a| Bytes::from(a.to_string()))
        .collect();
        assert_eq!(store_key_position(&args), Some(10));
        let args: Vec<Bytes> = ["SORT", "k", "BY", "store"]
            .iter()
            .map(|a| Bytes::from(a.to_string()))
            .collect();
        assert_eq!(store_key_position(&args), None);
    }
}
