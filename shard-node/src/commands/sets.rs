//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SINTER, SUNION, SDIFF,
//! SINTERCARD, SINTERSTORE, SUNIONSTORE, SDIFFSTORE, SSCAN, SPOP, SRANDMEMBER, SMOVE.
//!
//! Contract:
//! - A set is an observed-remove set where adds win (`docs/semantics.md`, Sets). `SADD` of a
//!   member that is already there still commits an add, so a concurrent remove in another region
//!   that did not see this add cannot take the member away; the reply counts only new members.
//! - A removal that leaves a set empty (SREM, SPOP, SMOVE) is committed as a `Del` of the key:
//!   like Redis, the emptied key is gone, with its expiry.
//! - The store commands replace the destination: a `Del` of whatever it held, then an add of
//!   every member into a new set. An empty result only deletes the destination.
//! - `SPOP` removes the popped members with observed removes; two regions may pop the same
//!   member concurrently and both return it.
//! - SSCAN follows the SCAN family's cursor scheme (`super::util::scan`). Sets Redis keeps in a
//!   compact encoding (integer-only sets up to 512 members), and sets no larger than `COUNT`,
//!   are returned whole in one call with cursor 0 whatever the cursor, as Redis does (a set that
//!   shrinks to such a size during an iteration is then returned again whole).

use super::util::args::distinct_present;
use super::util::random::{check_random_reply, pick_positions, random_count_arg, random_positions};
use super::util::scan::{parse_scan_cursor, parse_scan_options, scan_page, write_empty_scan};
use super::*;
use crate::crdt::value::SetValue;
use crate::crdt::{Value, NEW_SLOT};
use rand::Rng;
use std::collections::HashSet;

/// Largest integer-only set Redis 7.0 keeps as an intset (`set-max-intset-entries`), which SSCAN
/// returns whole.
const INTSET_MAX_ENTRIES: usize = 512;

const ERR_NOT_POSITIVE: &str = "ERR value is out of range, must be positive";

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("sadd", -3, "write denyoom fast", 1, 1, 1, "set", "Adds members to a set.", sadd),
        cmd("srem", -3, "write fast", 1, 1, 1, "set", "Removes members from a set.", srem),
        cmd("smembers", 2, "readonly", 1, 1, 1, "set", "Returns all members of a set.", smembers),
        cmd("sismember", 3, "readonly fast", 1, 1, 1, "set", "Tells whether a member is in a set.", sismember),
        cmd("smismember", -3, "readonly fast", 1, 1, 1, "set", "Tells whether members are in a set.", smismember),
        cmd("scard", 2, "readonly fast", 1, 1, 1, "set", "Returns the number of members of a set.", scard),
        cmd("sinter", -2, "readonly", 1, -1, 1, "set", "Returns the intersection of sets.", sinter),
        cmd("sunion", -2, "readonly", 1, -1, 1, "set", "Returns the union of sets.", sunion),
        cmd("sdiff", -2, "readonly", 1, -1, 1, "set", "Returns the difference of sets.", sdiff),
        cmd("sintercard", -3, "readonly", 0, 0, 0, "set", "Returns the size of the intersection of sets.", sintercard),
        cmd("sinterstore", -3, "write denyoom", 1, -1, 1, "set", "Stores the intersection of sets.", sinterstore),
        cmd("sunionstore", -3, "write denyoom", 1, -1, 1, "set", "Stores the union of sets.", sunionstore),
        cmd("sdiffstore", -3, "write denyoom", 1, -1, 1, "set", "Stores the difference of sets.", sdiffstore),
        cmd("sscan", -3, "readonly", 1, 1, 1, "set", "Iterates over the members of a set.", sscan),
        cmd("spop", -2, "write fast", 1, 1, 1, "set", "Removes and returns random members.", spop),
        cmd("srandmember", -2, "readonly", 1, 1, 1, "set", "Returns random members.", srandmember),
        cmd("smove", 4, "write fast", 1, 2, 1, "set", "Moves a member from one set to another.", smove),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the other collection families

/// The set stored at `key`, `None` when absent, or WRONGTYPE.
pub fn read_set<'a>(db: &'a Db, key: &[u8], now_ms: u64) -> Result<Option<&'a SetValue>, CmdError> {
    match db.ks.get(key, now_ms) {
        None => Ok(None),
        Some(slot) => match &slot.value {
            Value::Set(s) => Ok(Some(s)),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

fn random_index(len: usize) -> usize {
    rand::rng().random_range(0..len.max(1))
}

/// Puts a whole set's members in the order Redis 7.0 lists them where that order is defined: an
/// integer-only set of at most 512 members is an intset there, listed in ascending numeric
/// order. Other sets keep their storage order.
fn intset_order(members: &mut Vec<&[u8]>) {
    if members.len() > INTSET_MAX_ENTRIES {
        return;
    }
    let mut keyed = Vec::with_capacity(members.len());
    for m in members.iter() {
        match crate::resp::parse_i64_strict(m) {
            Some(v) => keyed.push((v, *m)),
            None => return,
        }
    }
    keyed.sort_unstable_by_key(|k| k.0);
    members.clear();
    members.extend(keyed.into_iter().map(|k| k.1));
}

fn blob_bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

// ---------------------------------------------------------------------------------------------
// Commands

fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let (slot, before) = match ctx.get(key) {
        None => (NEW_SLOT, 0),
        Some(s) => match &s.value {
            Value::Set(set) => (s.created, set.members.len()),
            _ => return Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    };
    let ops = args[2..]
        .iter()
        .map(|m| {
            op(
                key,
                OpKind::SetAdd {
                    slot,
                    member: m.clone(),
                },
            )
        })
        .collect();
    ctx.write(ops);
    let after = match read_set(ctx.db, key, ctx.now_ms) {
        Ok(Some(s)) => s.members.len(),
        _ => before,
    };
    ctx.out.int(after.saturating_sub(before) as i64);
    Ok(())
}

fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let Some(set) = read_set(ctx.db, key, ctx.now_ms)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let gone = distinct_present(&args[2..], |m| set.members.contains_key(m));
    let removed = gone.len();
    let empties = removed == set.members.len();
    if removed > 0 {
        let ops = if empties {
            vec![op(key, OpKind::Del)]
        } else {
            gone.into_iter()
                .map(|m| op(key, OpKind::SetRem { member: m.clone() }))
                .collect()
        };
        ctx.write(ops);
    }
    ctx.out.int(removed as i64);
    Ok(())
}

fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match read_set(ctx.db, &args[1], ctx.now_ms)? {
        None => ctx.out.set(0),
        Some(set) if set.members.len() <= INTSET_MAX_ENTRIES => {
            let mut members: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
            intset_order(&mut members);
            ctx.out.set(members.len());
            for m in members {
                ctx.out.bulk(m);
            }
        }
        Some(set) => {
            ctx.out.set(set.members.len());
            for m in set.members.keys() {
                ctx.out.bulk(m);
            }
        }
    }
    Ok(())
}

fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let found = read_set(ctx.db, &args[1], ctx.now_ms)?
        .is_some_and(|s| s.members.contains_key(&args[2][..]));
    ctx.out.int(i64::from(found));
    Ok(())
}

fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let set = read_set(ctx.db, &args[1], ctx.now_ms)?;
    ctx.out.array(args.len() - 2);
    for m in &args[2..] {
        let found = set.is_some_and(|s| s.members.contains_key(&m[..]));
        ctx.out.int(i64::from(found));
    }
    Ok(())
}

fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = read_set(ctx.db, &args[1], ctx.now_ms)?.map_or(0, |s| s.members.len());
    ctx.out.int(len as i64);
    Ok(())
}

/// The sets at `keys` (`None` for a missing key), or WRONGTYPE if any key holds another type.
fn load_sets<'a>(
    db: &'a Db,
    keys: &[Bytes],
    now_ms: u64,
) -> Result<Vec<Option<&'a SetValue>>, CmdError> {
    keys.iter().map(|k| read_set(db, k, now_ms)).collect()
}

/// Members of the intersection (at most `limit` of them when given).
fn intersection<'a>(sets: &[Option<&'a SetValue>], limit: Option<usize>) -> Vec<&'a [u8]> {
    let mut present: Vec<&SetValue> = Vec::with_capacity(sets.len());
    for s in sets {
        match s {
            Some(s) => present.push(s),
            None => return Vec::new(),
        }
    }
    present.sort_by_key(|s| s.members.len());
    let Some((smallest, others)) = present.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in smallest.members.keys() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        if others.iter().all(|o| o.members.contains_key(m)) {
            out.push(&m[..]);
        }
    }
    out
}

fn union<'a>(sets: &[Option<&'a SetValue>]) -> Vec<&'a [u8]> {
    let present: Vec<&SetValue> = sets.iter().flatten().copied().collect();
    match present.as_slice() {
        [] => Vec::new(),
        [only] => only.members.keys().map(|m| &m[..]).collect(),
        many => {
            let capacity = many.iter().map(|s| s.members.len()).max().unwrap_or(0);
            let mut seen: HashSet<&[u8], ahash::RandomState> =
                HashSet::with_capacity_and_hasher(capacity, ahash::RandomState::default());
            let mut out = Vec::with_capacity(capacity);
            for s in many {
                for m in s.members.keys() {
                    if seen.insert(&m[..]) {
                        out.push(&m[..]);
                    }
                }
            }
            out
        }
    }
}

fn difference<'a>(sets: &[Option<&'a SetValue>]) -> Vec<&'a [u8]> {
    let Some((Some(first), others)) = sets.split_first() else {
        return Vec::new();
    };
    let others: Vec<&SetValue> = others.iter().flatten().copied().collect();
    first
        .members
        .keys()
        .filter(|m| !others.iter().any(|o| o.members.contains_key(&m[..])))
        .map(|m| &m[..])
        .collect()
}

#[derive(Clone, Copy)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

fn combine<'a>(sets: &[Option<&'a SetValue>], how: SetOp) -> Vec<&'a [u8]> {
    match how {
        SetOp::Inter => intersection(sets, None),
        SetOp::Union => union(sets),
        SetOp::Diff => difference(sets),
    }
}

fn set_op_reply(ctx: &mut Ctx<'_>, args: &[Bytes], how: SetOp) -> CmdResult {
    let sets = load_sets(ctx.db, &args[1..], ctx.now_ms)?;
    let mut members = combine(&sets, how);
    intset_order(&mut members);
    ctx.out.set(members.len());
    for m in members {
        ctx.out.bulk(m);
    }
    Ok(())
}

fn sinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_reply(ctx, args, SetOp::Inter)
}

fn sunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_reply(ctx, args, SetOp::Union)
}

fn sdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_reply(ctx, args, SetOp::Diff)
}

fn sintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let numkeys = match int_arg(&args[1]) {
        Ok(n) if n >= 1 => n as u64,
        _ => return Err(Cow::Borrowed("ERR numkeys should be greater than 0")),
    };
    if numkeys > (args.len() - 2) as u64 {
        return Err(Cow::Borrowed(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys_end = 2 + numkeys as usize;
    let mut limit = 0usize;
    let mut i = keys_end;
    while i < args.len() {
        if is(&args[i], "limit") && i + 1 < args.len() {
            limit = match int_arg(&args[i + 1]) {
                Ok(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(Cow::Borrowed("ERR LIMIT can't be negative")),
            };
            i += 2;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let sets = load_sets(ctx.db, &args[2..keys_end], ctx.now_ms)?;
    let n = intersection(&sets, (limit > 0).then_some(limit)).len();
    ctx.out.int(n as i64);
    Ok(())
}

/// Replaces `dest` with a set of `members` (deletes it when there are none); returns how many
/// members were stored.
fn store_set(ctx: &mut Ctx<'_>, dest: &Bytes, members: Vec<Bytes>) -> usize {
    let mut ops = Vec::with_capacity(members.len() + 1);
    if ctx.db.ks.raw_entry(dest).is_some() {
        ops.push(op(dest, OpKind::Del));
    }
    let stored = members.len();
    ops.extend(members.into_iter().map(|member| {
        op(
            dest,
            OpKind::SetAdd {
                slot: NEW_SLOT,
                member,
            },
        )
    }));
    ctx.write(ops);
    stored
}

fn set_op_store(ctx: &mut Ctx<'_>, args: &[Bytes], how: SetOp) -> CmdResult {
    let members: Vec<Bytes> = {
        let sets = load_sets(ctx.db, &args[2..], ctx.now_ms)?;
        combine(&sets, how).into_iter().map(blob_bytes).collect()
    };
    let stored = store_set(ctx, &args[1], members);
    ctx.out.int(stored as i64);
    Ok(())
}

fn sinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_store(ctx, args, SetOp::Inter)
}

fn sunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_store(ctx, args, SetOp::Union)
}

fn sdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op_store(ctx, args, SetOp::Diff)
}

fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = parse_scan_cursor(&args[2])?;
    let Some(set) = read_set(ctx.db, &args[1], ctx.now_ms)? else {
        write_empty_scan(&mut ctx.out);
        return Ok(());
    };
    let opts = parse_scan_options(&args[3..], false)?;
    let len = set.members.len();
    let whole = len <= opts.count
        || (len <= INTSET_MAX_ENTRIES
            && set
                .members
                .keys()
                .all(|m| crate::resp::parse_i64_strict(m).is_some()));
    let (next, page): (u64, Vec<&[u8]>) = if whole {
        let mut all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        intset_order(&mut all);
        (0, all)
    } else {
        scan_page(
            set.members.keys().map(|m| (&m[..], &m[..])),
            cursor,
            opts.count,
        )
    };
    let shown: Vec<&[u8]> = page.into_iter().filter(|m| opts.matches(m)).collect();
    ctx.out.array(2);
    ctx.out.bulk_display(next);
    ctx.out.array(shown.len());
    for m in shown {
        ctx.out.bulk(m);
    }
    Ok(())
}

fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args.len() {
        2 => {}
        3 => return spop_count(ctx, args),
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    }
    let key = &args[1];
    let (member, last) = match read_set(ctx.db, key, ctx.now_ms)? {
        None => {
            ctx.out.null();
            return Ok(());
        }
        Some(set) => {
            let len = set.members.len();
            let pick = set.members.keys().nth(random_index(len));
            (pick.map(|m| blob_bytes(m)), len <= 1)
        }
    };
    let Some(member) = member else {
        ctx.out.null();
        return Ok(());
    };
    let kind = if last {
        OpKind::Del
    } else {
        OpKind::SetRem {
            member: member.clone(),
        }
    };
    ctx.write(vec![op(key, kind)]);
    ctx.out.bulk(&member);
    Ok(())
}

fn spop_count(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let count = match int_arg(&args[2]) {
        Ok(n) if n >= 0 => n as u64,
        _ => return Err(Cow::Borrowed(ERR_NOT_POSITIVE)),
    };
    let key = &args[1];
    let Some(set) = read_set(ctx.db, key, ctx.now_ms)? else {
        ctx.out.set(0);
        return Ok(());
    };
    let len = set.members.len();
    if count == 0 {
        ctx.out.set(0);
        return Ok(());
    }
    let (popped, ops): (Vec<Bytes>, Vec<Op>) = if count >= len as u64 {
        let mut all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        intset_order(&mut all);
        let all = all.into_iter().map(blob_bytes).collect();
        (all, vec![op(key, OpKind::Del)])
    } else {
        let positions = random_positions(len, count as usize);
        let popped: Vec<Bytes> = pick_positions(set.members.keys(), &positions)
            .into_iter()
            .map(|m| blob_bytes(m))
            .collect();
        let ops = popped
            .iter()
            .map(|m| op(key, OpKind::SetRem { member: m.clone() }))
            .collect();
        (popped, ops)
    };
    ctx.write(ops);
    ctx.out.set(popped.len());
    for m in &popped {
        ctx.out.bulk(m);
    }
    Ok(())
}

fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args.len() {
        2 => {}
        3 => return srandmember_count(ctx, args),
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    }
    match read_set(ctx.db, &args[1], ctx.now_ms)? {
        None => ctx.out.null(),
        Some(set) => {
            let pick = set.members.keys().nth(random_index(set.members.len()));
            ctx.out.bulk_or_null(pick.map(|m| &m[..]));
        }
    }
    Ok(())
}

fn srandmember_count(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = random_count_arg(&args[2])?;
    let Some(set) = read_set(ctx.db, &args[1], ctx.now_ms)? else {
        ctx.out.array(0);
        return Ok(());
    };
    let count = n.unsigned_abs();
    let len = set.members.len();
    if count == 0 || len == 0 {
        ctx.out.array(0);
        return Ok(());
    }
    if n < 0 || count == 1 {
        check_random_reply(count)?;
        let all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        ctx.out.array(count as usize);
        let mut rng = rand::rng();
        for _ in 0..count {
            ctx.out.bulk(all[rng.random_range(0..all.len())]);
        }
    } else if count >= len as u64 {
        let mut all: Vec<&[u8]> = set.members.keys().map(|m| &m[..]).collect();
        intset_order(&mut all);
        ctx.out.array(all.len());
        for m in all {
            ctx.out.bulk(m);
        }
    } else {
        let positions = random_positions(len, count as usize);
        let picked = pick_positions(set.members.keys(), &positions);
        ctx.out.array(picked.len());
        for m in picked {
            ctx.out.bulk(m);
        }
    }
    Ok(())
}

fn smove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let Some(src_set) = read_set(ctx.db, src, ctx.now_ms)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let dst_slot = ctx.slot_for(dst, Kind::Set)?;
    let found = src_set.members.contains_key(&member[..]);
    let last = src_set.members.len() == 1;
    if src == dst || !found {
        ctx.out.int(i64::from(found && src == dst));
        return Ok(());
    }
    let remove = if last {
        OpKind::Del
    } else {
        OpKind::SetRem {
            member: member.clone(),
        }
    };
    ctx.write(vec![
        op(src, remove),
        op(
            dst,
            OpKind::SetAdd {
                slot: dst_slot,
                member: member.clone(),
            },
        ),
    ]);
    ctx.out.int(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::TestDb;
    use crate::commands::util::random::ERR_COUNT_RANGE;

    /// Every bulk string of a reply, depth first (the test values hold no CRLF).
    pub(crate) fn bulks(reply: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = reply.split("\r\n");
        while let Some(line) = lines.next() {
            if line.starts_with('$') && line != "$-1" {
                out.push(lines.next().unwrap_or_default().to_string());
            }
        }
        out
    }

    fn sorted_bulks(reply: &str) -> Vec<String> {
        let mut items = bulks(reply);
        items.sort();
        items
    }

    #[test]
    fn sadd_counts_new_members_and_commits_every_add() {
        let mut db = TestDb::new();
        assert_eq!(db.text(&["SADD", "s", "a", "b", "a"]), ":2\r\n");
        let effects = db.db.ks.effects_applied;
        assert_eq!(db.text(&["SADD", "s", "a"]), ":0\r\n");
        assert_eq!(
            db.db.ks.effects_applied,
            effects + 1,
            "an existing member is re-added"
        );
        assert_eq!(db.text(&["SCARD", "s"]), ":2\r\n");
        assert_eq!(db.text(&["SISMEMBER", "s", "b"]), ":1\r\n");
        assert_eq!(
            db.text(&["SMISMEMBER", "s", "a", "z"]),
            "*2\r\n:1\r\n:0\r\n"
        );
        assert_eq!(db.text(&["SMISMEMBER", "nokey", "a"]), "*1\r\n:0\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "s"])), ["a", "b"]);
        assert_eq!(db.text(&["SMEMBERS", "nokey"]), "*0\r\n");
        db.text(&["HELLO", "3"]);
        assert!(db.text(&["SMEMBERS", "s"]).starts_with("~2\r\n"));
    }

    /// Ships every effect `from` has made since the last call to `to`.
    fn ship(from: &mut TestDb, to: &mut TestDb) {
        for effect in from.db.ks.outbox.drain(..).collect::<Vec<_>>() {
            to.db.ks.apply(&effect);
        }
    }

    #[test]
    fn readding_an_existing_member_wins_over_a_concurrent_remove() {
        let mut a = TestDb::region("a");
        let mut b = TestDb::region("b");
        a.text(&["SADD", "s", "x", "y"]);
        ship(&mut a, &mut b);
        assert_eq!(b.text(&["SREM", "s", "x"]), ":1\r\n");
        assert_eq!(a.text(&["SADD", "s", "x"]), ":0\r\n");
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        for db in [&mut a, &mut b] {
            assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "s"])), ["x", "y"]);
        }
        // From {a,b}: A: SREM s a; SREM s c || B: SADD s c  ->  {b,c}.
        a.text(&["SADD", "t", "a", "b"]);
        ship(&mut a, &mut b);
        a.text(&["SREM", "t", "a"]);
        a.text(&["SREM", "t", "c"]);
        b.text(&["SADD", "t", "c"]);
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        for db in [&mut a, &mut b] {
            assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "t"])), ["b", "c"]);
        }
    }

    #[test]
    fn wrong_types_and_arity() {
        let mut db = TestDb::new();
        db.text(&["SET", "str", "x"]);
        let wrong = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        for cmd in [
            &["SADD", "str", "a"][..],
            &["SREM", "str", "a"],
            &["SMEMBERS", "str"],
            &["SISMEMBER", "str", "a"],
            &["SMISMEMBER", "str", "a"],
            &["SCARD", "str"],
            &["SINTER", "nokey", "str"],
            &["SUNIONSTORE", "d", "str"],
            &["SSCAN", "str", "0"],
            &["SPOP", "str"],
            &["SPOP", "str", "0"],
            &["SRANDMEMBER", "str", "0"],
            &["SMOVE", "str", "d", "a"],
            &["SINTERCARD", "2", "nokey", "str"],
        ] {
            assert_eq!(db.text(cmd), wrong, "{cmd:?}");
        }
        assert_eq!(db.text(&["SMOVE", "nokey", "str", "a"]), ":0\r\n");
        assert_eq!(
            db.text(&["SADD", "s"]),
            "-ERR wrong number of arguments for 'sadd' command\r\n"
        );
        assert_eq!(db.text(&["SPOP", "s", "1", "2"]), "-ERR syntax error\r\n");
        assert_eq!(
            db.text(&["SRANDMEMBER", "s", "1", "2"]),
            "-ERR syntax error\r\n"
        );
    }

    #[test]
    fn srem_deletes_the_emptied_key() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s", "a", "b", "c"]);
        db.text(&["EXPIRE", "s", "100"]);
        assert_eq!(db.text(&["SREM", "s", "a", "a", "z"]), ":1\r\n");
        assert_eq!(db.text(&["SREM", "nokey", "a"]), ":0\r\n");
        assert_eq!(db.text(&["SREM", "s", "b", "c"]), ":2\r\n");
        assert!(db.db.ks.raw_entry(b"s").is_none());
        assert_eq!(db.text(&["SCARD", "s"]), ":0\r\n");
    }

    #[test]
    fn algebra_and_store() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s1", "a", "b", "c", "d"]);
        db.text(&["SADD", "s2", "c", "d", "e"]);
        db.text(&["SADD", "s3", "d", "e", "f"]);
        assert_eq!(sorted_bulks(&db.text(&["SINTER", "s1", "s2"])), ["c", "d"]);
        assert_eq!(sorted_bulks(&db.text(&["SINTER", "s1", "s2", "s3"])), ["d"]);
        assert_eq!(db.text(&["SINTER", "s1", "nokey"]), "*0\r\n");
        assert_eq!(
            sorted_bulks(&db.text(&["SUNION", "s1", "s3", "nokey"])),
            ["a", "b", "c", "d", "e", "f"]
        );
        assert_eq!(
            sorted_bulks(&db.text(&["SDIFF", "s1", "s2", "s3"])),
            ["a", "b"]
        );
        assert_eq!(db.text(&["SDIFF", "nokey", "s1"]), "*0\r\n");
        assert_eq!(db.text(&["SDIFF", "s1", "s1"]), "*0\r\n");
        assert_eq!(db.text(&["SINTERCARD", "2", "s1", "s2"]), ":2\r\n");
        assert_eq!(
            db.text(&["SINTERCARD", "2", "s1", "s2", "LIMIT", "1"]),
            ":1\r\n"
        );
        assert_eq!(db.text(&["SINTERCARD", "2", "s1", "nokey"]), ":0\r\n");
        assert_eq!(
            db.text(&["SINTERCARD", "0", "s1"]),
            "-ERR numkeys should be greater than 0\r\n"
        );
        assert_eq!(
            db.text(&["SINTERCARD", "3", "s1", "s2"]),
            "-ERR Number of keys can't be greater than number of args\r\n"
        );
        assert_eq!(
            db.text(&["SINTERCARD", "1", "s1", "LIMIT", "-1"]),
            "-ERR LIMIT can't be negative\r\n"
        );
        // A store replaces any type and drops the old expiry.
        db.text(&["SET", "dst", "x"]);
        db.text(&["EXPIRE", "dst", "100"]);
        assert_eq!(db.text(&["SUNIONSTORE", "dst", "s1", "s2"]), ":5\r\n");
        assert_eq!(db.text(&["TYPE", "dst"]), "+set\r\n");
        assert_eq!(db.text(&["TTL", "dst"]), ":-1\r\n");
        assert_eq!(db.text(&["SINTERSTORE", "dst", "s1", "s3"]), ":1\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "dst"])), ["d"]);
        assert_eq!(db.text(&["SDIFFSTORE", "s1", "s1", "s2"]), ":2\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "s1"])), ["a", "b"]);
        assert_eq!(db.text(&["SINTERSTORE", "dst", "s1", "nokey"]), ":0\r\n");
        assert_eq!(db.text(&["EXISTS", "dst"]), ":0\r\n");
    }

    #[test]
    fn spop_and_srandmember() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s", "a", "b", "c", "d", "e"]);
        assert_eq!(
            db.text(&["SPOP", "s", "-1"]),
            "-ERR value is out of range, must be positive\r\n"
        );
        assert_eq!(db.text(&["SPOP", "s", "0"]), "*0\r\n");
        assert_eq!(db.text(&["SPOP", "nokey"]), "$-1\r\n");
        assert_eq!(db.text(&["SPOP", "nokey", "2"]), "*0\r\n");
        let two = sorted_bulks(&db.text(&["SPOP", "s", "2"]));
        assert_eq!(two.len(), 2);
        assert_eq!(db.text(&["SCARD", "s"]), ":3\r\n");
        let one = sorted_bulks(&db.text(&["SPOP", "s"]));
        assert_eq!(one.len(), 1);
        assert!(!two.contains(&one[0]));
        assert_eq!(db.text(&["SCARD", "s"]), ":2\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SPOP", "s", "10"])).len(), 2);
        assert_eq!(db.text(&["EXISTS", "s"]), ":0\r\n");

        db.text(&["SADD", "r", "a", "b", "c"]);
        assert_eq!(
            sorted_bulks(&db.text(&["SRANDMEMBER", "r", "10"])),
            ["a", "b", "c"]
        );
        let distinct = sorted_bulks(&db.text(&["SRANDMEMBER", "r", "2"]));
        assert_eq!(distinct.len(), 2);
        assert_ne!(distinct[0], distinct[1]);
        let repeats = db.text(&["SRANDMEMBER", "r", "-7"]);
        assert!(repeats.starts_with("*7\r\n"));
        assert_eq!(sorted_bulks(&repeats).len(), 7);
        assert_eq!(db.text(&["SRANDMEMBER", "r", "0"]), "*0\r\n");
        assert_eq!(db.text(&["SRANDMEMBER", "nokey", "3"]), "*0\r\n");
        assert_eq!(db.text(&["SRANDMEMBER", "nokey"]), "$-1\r\n");
        assert_eq!(
            db.text(&["SRANDMEMBER", "r", "-9223372036854775808"]),
            format!("-{ERR_COUNT_RANGE}\r\n")
        );
        assert_eq!(
            db.text(&["SRANDMEMBER", "r", "-9223372036854775807"]),
            "-ERR value is out of range\r\n"
        );
        assert_eq!(db.text(&["SCARD", "r"]), ":3\r\n");
        db.text(&["HELLO", "3"]);
        assert!(db.text(&["SPOP", "r", "1"]).starts_with("~1\r\n"));
        assert!(db.text(&["SRANDMEMBER", "r", "5"]).starts_with("*2\r\n"));
    }

    #[test]
    fn integer_sets_list_in_numeric_order_like_intsets() {
        let mut db = TestDb::new();
        db.text(&["SADD", "ints", "5", "3", "1", "-2", "10", "100"]);
        let want = "*6\r\n$2\r\n-2\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n5\r\n$2\r\n10\r\n$3\r\n100\r\n";
        assert_eq!(db.text(&["SMEMBERS", "ints"]), want);
        assert_eq!(db.text(&["SUNION", "ints", "nokey"]), want);
        assert_eq!(db.text(&["SRANDMEMBER", "ints", "10"]), want);
        assert_eq!(
            db.text(&["SSCAN", "ints", "0", "COUNT", "1"]),
            format!("*2\r\n$1\r\n0\r\n{want}")
        );
        // "010" is not an integer Redis would store in an intset.
        db.text(&["SADD", "mixed", "2", "010", "1"]);
        assert_eq!(
            sorted_bulks(&db.text(&["SMEMBERS", "mixed"])),
            ["010", "1", "2"]
        );
    }

    #[test]
    fn smove_moves_and_deletes_the_emptied_source() {
        let mut db = TestDb::new();
        db.text(&["SADD", "a", "x", "y"]);
        assert_eq!(db.text(&["SMOVE", "a", "b", "x"]), ":1\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "b", "x"]), ":0\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "a", "y"]), ":1\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "a", "x"]), ":0\r\n");
        assert_eq!(db.text(&["SMOVE", "a", "b", "y"]), ":1\r\n");
        assert_eq!(db.text(&["EXISTS", "a"]), ":0\r\n");
        assert_eq!(sorted_bulks(&db.text(&["SMEMBERS", "b"])), ["x", "y"]);
    }

    #[test]
    fn sscan_small_and_large() {
        let mut db = TestDb::new();
        db.text(&["SADD", "s", "a", "b", "c", "1", "2"]);
        assert_eq!(
            sorted_bulks(&db.text(&["SSCAN", "s", "0"])),
            ["0", "1", "2", "a", "b", "c"]
        );
        let matched = db.text(&["SSCAN", "s", "0", "MATCH", "[a-b]"]);
        assert!(matched.starts_with("*2\r\n$1\r\n0\r\n*2\r\n"), "{matched}");
        assert_eq!(
            db.text(&["SSCAN", "nokey", "0", "BAD"]),
            "*2\r\n$1\r\n0\r\n*0\r\n"
        );
        assert_eq!(db.text(&["SSCAN", "s", "x"]), "-ERR invalid cursor\r\n");
        assert_eq!(
            db.text(&["SSCAN", "s", "0", "COUNT", "0"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            db.text(&["SSCAN", "s", "0", "BAD", "x"]),
            "-ERR syntax error\r\n"
        );

        let members: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
        let mut cmd = vec!["SADD", "big"];
        cmd.extend(members.iter().map(|s| s.as_str()));
        db.text(&cmd);
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        for _ in 0..1000 {
            let reply = db.text(&["SSCAN", "big", &cursor, "COUNT", "7"]);
            let parts: Vec<&str> = reply.split("\r\n").collect();
            cursor = parts[2].to_string();
            let n: usize = parts[3][1..].parse().unwrap();
            assert!(n >= 7 || cursor == "0");
            seen.extend(parts[4..].chunks(2).take(n).map(|c| c[1].to_string()));
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(cursor, "0");
        seen.sort();
        let mut want = members.clone();
        want.sort();
        assert_eq!(seen, want);

        // An integer-only set up to 512 members is returned whole, like Redis's intset.
        let ints: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let mut cmd = vec!["SADD", "ints"];
        cmd.extend(ints.iter().map(|s| s.as_str()));
        db.text(&cmd);
        assert!(db
            .text(&["SSCAN", "ints", "0", "COUNT", "5"])
            .starts_with("*2\r\n$1\r\n0\r\n*100\r\n"));
    }
}
