//! List commands: LPUSH, RPUSH, LPUSHX, RPUSHX, LINSERT, LPOP, RPOP, LMPOP, LLEN, LINDEX,
//! LSET, LRANGE, LTRIM, LREM, LPOS, LMOVE, RPOPLPUSH, and the list side of the blocking
//! commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP; declared and waited on in `blocking`).
//!
//! Contract: a list is a sequence CRDT (see `crdt::types::list::ListValue`). Every element has an id
//! made of the inserting effect's dot and the element's index among the list inserts of that
//! effect, so ids stay unique inside a transaction. An insert names the visible element it goes
//! right after, `None` for the head; the operations of one command are applied
//! in order, so a multi-value push chains its inserts exactly like Redis. Pops, LREM, LTRIM and
//! the source side of LMOVE remove the elements they select by id; LSET writes an element's
//! value (last writer wins). Pushes and pops at either end only look at that end of the list.
//! Replies and errors are those of Redis 7.0.

use super::*;
use crate::crdt::value::{Elem, ListValue};
use crate::crdt::{Dot, ElemId, Stamp, Value, NEW_SLOT};

mod pops;
pub(super) use pops::{blmove, blmpop, blpop, brpop, brpoplpush};
use pops::{lmove, lmpop, lpop, rpop, rpoplpush};

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("lpush", -3, "write denyoom fast", 1, 1, 1, "list", "Prepends one or more elements to a list.", lpush),
        cmd("rpush", -3, "write denyoom fast", 1, 1, 1, "list", "Appends one or more elements to a list.", rpush),
        cmd("lpushx", -3, "write denyoom fast", 1, 1, 1, "list", "Prepends elements to a list only when the list exists.", lpushx),
        cmd("rpushx", -3, "write denyoom fast", 1, 1, 1, "list", "Appends elements to a list only when the list exists.", rpushx),
        cmd("linsert", 5, "write denyoom", 1, 1, 1, "list", "Inserts an element before or after another element in a list.", linsert),
        cmd("lpop", -2, "write fast", 1, 1, 1, "list", "Returns and removes the first elements of a list.", lpop),
        cmd("rpop", -2, "write fast", 1, 1, 1, "list", "Returns and removes the last elements of a list.", rpop),
        cmd("lmpop", -4, "write", 0, 0, 0, "list", "Returns and removes elements from the first non-empty of several lists.", lmpop),
        cmd("llen", 2, "readonly fast", 1, 1, 1, "list", "Returns the length of a list.", llen),
        cmd("lindex", 3, "readonly", 1, 1, 1, "list", "Returns an element of a list by its index.", lindex),
        cmd("lset", 4, "write denyoom", 1, 1, 1, "list", "Sets the value of an element of a list by its index.", lset),
        cmd("lrange", 4, "readonly", 1, 1, 1, "list", "Returns a range of elements of a list.", lrange),
        cmd("ltrim", 4, "write", 1, 1, 1, "list", "Removes the elements outside a range of a list.", ltrim),
        cmd("lrem", 4, "write", 1, 1, 1, "list", "Removes elements equal to a value from a list.", lrem),
        cmd("lpos", -3, "readonly", 1, 1, 1, "list", "Returns the positions of matching elements in a list.", lpos),
        cmd("lmove", 5, "write denyoom", 1, 2, 1, "list", "Moves an element from one end of a list to an end of another.", lmove),
        cmd("rpoplpush", 3, "write denyoom", 1, 2, 1, "list", "Moves the last element of a list to the head of another.", rpoplpush),
    ]
}

const ERR_POSITIVE: &str = "ERR value is out of range, must be positive";

/// The list at `key` for a write: `None` when absent, WRONGTYPE when another type is visible.
/// Also returns the slot stamp inserts into the list must carry.
fn list_for_write<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<(Stamp, &'a ListValue)>, CmdError> {
    match ks.get(key, now_ms) {
        None => Ok(None),
        Some(slot) => match &slot.value {
            Value::List(l) => Ok(Some((slot.created, l))),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// The list at `key` for a read command, counting the keyspace hit or miss.
fn list_for_read<'a>(
    ks: &'a Keyspace,
    stats: &mut Stats,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'a ListValue>, CmdError> {
    match ks.get(key, now_ms) {
        None => {
            stats.keyspace_misses += 1;
            Ok(None)
        }
        Some(slot) => {
            stats.keyspace_hits += 1;
            match &slot.value {
                Value::List(l) => Ok(Some(l)),
                _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
            }
        }
    }
}

/// Element ids for the list inserts of the command about to be committed.
struct IdGen {
    dot: Dot,
    base: u32,
}

impl IdGen {
    fn new(ks: &Keyspace) -> Self {
        IdGen {
            dot: ks.next_dot(),
            base: ks.batch_list_inserts(),
        }
    }

    /// Id of the `i`-th insert of this command.
    fn id(&self, i: usize) -> ElemId {
        ElemId {
            dot: self.dot,
            index: self.base.wrapping_add(i as u32),
        }
    }
}

/// Calls `f` on up to `n` visible elements from the head (`left`) or the tail, in that order.
fn from_end<'a>(l: &'a ListValue, left: bool, n: usize, f: impl FnMut(&'a Elem)) {
    if left {
        l.iter_visible().take(n).for_each(f);
    } else {
        l.iter_visible().rev().take(n).for_each(f);
    }
}

/// Calls `f` on the visible elements at positions `start..start + n`, in order.
fn for_range<'a>(l: &'a ListValue, start: usize, n: usize, f: impl FnMut(&'a Elem)) {
    if l.visible == l.elems.len() {
        let end = start.saturating_add(n).min(l.elems.len());
        if start < end {
            l.elems.range(start..end).for_each(f);
        }
    } else {
        l.iter_visible().skip(start).take(n).for_each(f);
    }
}

/// Redis's LRANGE/LTRIM index arithmetic: the visible positions `start..=end` for a list of
/// `len` elements, or `None` when the range is empty.
fn resolve_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

/// Resolves a possibly negative index against `len` visible elements.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// A non-negative integer argument; anything else is the error `msg`.
fn positive_arg(arg: &[u8], msg: &'static str) -> Result<i64, CmdError> {
    match crate::resp::parse_i64_strict(arg) {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(Cow::Borrowed(msg)),
    }
}

/// `LEFT` (true) or `RIGHT` (false).
fn side_arg(arg: &[u8]) -> Result<bool, CmdError> {
    if is(arg, "left") {
        Ok(true)
    } else if is(arg, "right") {
        Ok(false)
    } else {
        Err(Cow::Borrowed(ERR_SYNTAX))
    }
}

fn push_generic(ctx: &mut Ctx<'_>, args: &[Bytes], left: bool, only_existing: bool) -> CmdResult {
    let key = &args[1];
    let (slot, len, mut after) = match list_for_write(&ctx.db.ks, key, ctx.now_ms)? {
        Some((slot, l)) => (slot, l.visible, if left { None } else { l.last_id() }),
        None if only_existing => {
            ctx.out.int(0);
            return Ok(());
        }
        None => (NEW_SLOT, 0, None),
    };
    let ids = IdGen::new(&ctx.db.ks);
    let values = &args[2..];
    let mut ops = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let id = ids.id(i);
        ops.push(op(
            key,
            OpKind::ListInsert {
                slot,
                id,
                after,
                value: value.clone(),
            },
        ));
        // LPUSH puts every value at the head (so they end up reversed, like Redis); RPUSH
        // chains each value after the previous one.
        if !left {
            after = Some(id);
        }
    }
    ctx.write(ops);
    ctx.out.int((len + values.len()) as i64);
    Ok(())
}

fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, true, false)
}

fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, false, false)
}

fn lpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, true, true)
}

fn rpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, false, true)
}

fn linsert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let before = if is(&args[2], "before") {
        true
    } else if is(&args[2], "after") {
        false
    } else {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    };
    let key = &args[1];
    let pivot = &args[3][..];
    let (slot, len, after) = {
        let Some((slot, l)) = list_for_write(&ctx.db.ks, key, ctx.now_ms)? else {
            ctx.out.int(0);
            return Ok(());
        };
        let Some(pos) = l
            .elems
            .iter()
            .position(|e| e.removed.is_none() && *e.value == *pivot)
        else {
            ctx.out.int(-1);
            return Ok(());
        };
        // BEFORE the pivot is right after the nearest visible element before it.
        let after = if before {
            l.visible_before(pos)
        } else {
            l.elems.get(pos).map(|e| e.id)
        };
        (slot, l.visible, after)
    };
    let id = IdGen::new(&ctx.db.ks).id(0);
    ctx.write(vec![op(
        key,
        OpKind::ListInsert {
            slot,
            id,
            after,
            value: args[4].clone(),
        },
    )]);
    ctx.out.int(len as i64 + 1);
    Ok(())
}

fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = list_for_read(&ctx.db.ks, &mut ctx.db.stats, &args[1], ctx.now_ms)?
        .map(|l| l.visible)
        .unwrap_or(0);
    ctx.out.int(len as i64);
    Ok(())
}

fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Ctx {
        db, out, now_ms, ..
    } = ctx;
    let Db { ks, stats, .. } = &mut **db;
    let Some(l) = list_for_read(ks, stats, &args[1], *now_ms)? else {
        out.null();
        return Ok(());
    };
    let index = int_arg(&args[2])?;
    match resolve_index(index, l.visible).and_then(|i| l.nth_visible(i)) {
        Some(e) => out.bulk(&e.value),
        None => out.null(),
    }
    Ok(())
}

fn lset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let id = {
        let Some((_, l)) = list_for_write(&ctx.db.ks, key, ctx.now_ms)? else {
            return Err(Cow::Borrowed(ERR_NO_KEY));
        };
        let index = int_arg(&args[2])?;
        match resolve_index(index, l.visible).and_then(|i| l.nth_visible(i)) {
            Some(e) => e.id,
            None => return Err(Cow::Borrowed(ERR_INDEX)),
        }
    };
    ctx.write(vec![op(
        key,
        OpKind::ListSet {
            id,
            value: args[3].clone(),
        },
    )]);
    ctx.out.simple("OK");
    Ok(())
}

fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    let Ctx {
        db, out, now_ms, ..
    } = ctx;
    let Db { ks, stats, .. } = &mut **db;
    let Some(l) = list_for_read(ks, stats, &args[1], *now_ms)? else {
        out.array(0);
        return Ok(());
    };
    match resolve_range(start, end, l.visible) {
        None => out.array(0),
        Some((s, e)) => {
            let n = e - s + 1;
            out.array(n);
            for_range(l, s, n, |elem| out.bulk(&elem.value));
        }
    }
    Ok(())
}

fn ltrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    let key = &args[1];
    let ops = {
        let Some((_, l)) = list_for_write(&ctx.db.ks, key, ctx.now_ms)? else {
            ctx.out.simple("OK");
            return Ok(());
        };
        let len = l.visible;
        let (head, tail) = match resolve_range(start, end, len) {
            None => (len, 0),
            Some((s, e)) => (s, len - e - 1),
        };
        let mut ops = Vec::with_capacity(head + tail);
        from_end(l, true, head, |e| {
            ops.push(op(key, OpKind::ListRemove { id: e.id }))
        });
        from_end(l, false, tail, |e| {
            ops.push(op(key, OpKind::ListRemove { id: e.id }))
        });
        ops
    };
    ctx.write(ops);
    ctx.out.simple("OK");
    Ok(())
}

fn lrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let count = int_arg(&args[2])?;
    let key = &args[1];
    let target = &args[3][..];
    let ops = {
        let Some((_, l)) = list_for_write(&ctx.db.ks, key, ctx.now_ms)? else {
            ctx.out.int(0);
            return Ok(());
        };
        let limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        let remove =
            |e: &Elem| (*e.value == *target).then(|| op(key, OpKind::ListRemove { id: e.id }));
        let ops: Vec<Op> = if count >= 0 {
            l.iter_visible().filter_map(remove).take(limit).collect()
        } else {
            l.iter_visible()
                .rev()
                .filter_map(remove)
                .take(limit)
                .collect()
        };
        ops
    };
    let removed = ops.len();
    ctx.write(ops);
    ctx.out.int(removed as i64);
    Ok(())
}

fn lpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut rank: i64 = 1;
    let mut count: Option<i64> = None;
    let mut maxlen: i64 = 0;
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        if is(&args[i], "rank") && more {
            rank = int_arg(&args[i + 1])?;
            if rank == 0 {
                return Err(Cow::Borrowed(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(&args[i], "count") && more {
            count = Some(positive_arg(&args[i + 1], "ERR COUNT can't be negative")?);
        } else if is(&args[i], "maxlen") && more {
            maxlen = positive_arg(&args[i + 1], "ERR MAXLEN can't be negative")?;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        i += 2;
    }
    // A negative rank searches from the tail. Like Redis, the most negative rank stays
    // negative after the sign change, so it matches from the first match on.
    let from_tail = rank < 0;
    if from_tail {
        rank = rank.wrapping_neg();
    }
    let Ctx {
        db, out, now_ms, ..
    } = ctx;
    let Db { ks, stats, .. } = &mut **db;
    let Some(l) = list_for_read(ks, stats, &args[1], *now_ms)? else {
        if count.is_some() {
            out.array(0);
        } else {
            out.null();
        }
        return Ok(());
    };
    let element = &args[2][..];
    let len = l.visible as i64;
    let mut matches: i64 = 0;
    let mut found: Vec<i64> = Vec::new();
    let elems: Box<dyn Iterator<Item = &Elem>> = if from_tail {
        Box::new(l.iter_visible().rev())
    } else {
        Box::new(l.iter_visible())
    };
    for (index, e) in elems.enumerate() {
        let index = index as i64;
        if maxlen != 0 && index >= maxlen {
            break;
        }
        if *e.value != *element {
            continue;
        }
        matches += 1;
        if matches < rank {
            continue;
        }
        found.push(if from_tail { len - index - 1 } else { index });
        match count {
            None => break,
            Some(c) => {
                if c != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= c {
                    break;
                }
            }
        }
    }
    match count {
        Some(_) => {
            out.array(found.len());
            for p in found {
                out.int(p);
            }
        }
        None => match found.first() {
            Some(p) => out.int(*p),
            None => out.null(),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::testing::TestDb;
    use crate::crdt::{Actor, Keyspace};

    fn t(db: &mut TestDb, args: &[&str]) -> String {
        db.text(args)
    }

    fn range(db: &mut TestDb, key: &str) -> String {
        db.text(&["LRANGE", key, "0", "-1"])
    }

    #[test]
    fn push_orders_like_redis() {
        let mut db = TestDb::new();
        assert_eq!(t(&mut db, &["LPUSH", "l", "a", "b", "c"]), ":3\r\n");
        assert_eq!(
            range(&mut db, "l"),
            "*3\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n"
        );
        assert_eq!(t(&mut db, &["RPUSH", "l", "x", "y"]), ":5\r\n");
        assert_eq!(t(&mut db, &["LPUSH", "l", "h"]), ":6\r\n");
        assert_eq!(
            range(&mut db, "l"),
            "*6\r\n$1\r\nh\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n$1\r\nx\r\n$1\r\ny\r\n"
        );
        assert_eq!(t(&mut db, &["LLEN", "l"]), ":6\r\n");
        assert_eq!(t(&mut db, &["LLEN", "nope"]), ":0\r\n");
        assert_eq!(t(&mut db, &["LPUSHX", "nope", "a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["EXISTS", "nope"]), ":0\r\n");
        assert_eq!(t(&mut db, &["RPUSHX", "l", "z"]), ":7\r\n");
        assert_eq!(t(&mut db, &["LINDEX", "l", "-1"]), "$1\r\nz\r\n");
        assert_eq!(
            t(&mut db, &["LPUSH", "l"]),
            "-ERR wrong number of arguments for 'lpush' command\r\n"
        );
    }

    #[test]
    fn wrong_type_and_argument_errors() {
        let mut db = TestDb::new();
        t(&mut db, &["SET", "s", "x"]);
        t(&mut db, &["RPUSH", "l", "a", "b", "c"]);
        let wrong = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        for cmd in [
            &["LPUSH", "s", "a"][..],
            &["RPUSHX", "s", "a"],
            &["LPOP", "s"],
            &["LPOP", "s", "0"],
            &["LLEN", "s"],
            &["LINDEX", "s", "abc"],
            &["LSET", "s", "abc", "x"],
            &["LRANGE", "s", "0", "1"],
            &["LTRIM", "s", "0", "1"],
            &["LREM", "s", "0", "a"],
            &["LINSERT", "s", "BEFORE", "a", "b"],
            &["LPOS", "s", "a"],
            &["LMOVE", "l", "s", "LEFT", "LEFT"],
            &["LMOVE", "s", "l", "LEFT", "LEFT"],
            &["LMPOP", "2", "s", "l", "LEFT"],
        ] {
            assert_eq!(t(&mut db, cmd), wrong, "{cmd:?}");
        }
        assert_eq!(
            t(&mut db, &["LPOP", "l", "-1"]),
            "-ERR value is out of range, must be positive\r\n"
        );
        assert_eq!(
            t(&mut db, &["LPOP", "s", "abc"]),
            "-ERR value is out of range, must be positive\r\n"
        );
        assert_eq!(
            t(&mut db, &["RPOP", "l", "1", "2"]),
            "-ERR wrong number of arguments for 'rpop' command\r\n"
        );
        assert_eq!(t(&mut db, &["LINDEX", "missing", "abc"]), "$-1\r\n");
        assert_eq!(
            t(&mut db, &["LINDEX", "l", "abc"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t(&mut db, &["LSET", "missing", "abc", "x"]),
            "-ERR no such key\r\n"
        );
        assert_eq!(
            t(&mut db, &["LSET", "l", "abc", "x"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t(&mut db, &["LSET", "l", "3", "x"]),
            "-ERR index out of range\r\n"
        );
        assert_eq!(
            t(&mut db, &["LSET", "l", "-4", "x"]),
            "-ERR index out of range\r\n"
        );
        assert_eq!(
            t(&mut db, &["LRANGE", "missing", "a", "1"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t(&mut db, &["LINSERT", "missing", "MIDDLE", "a", "b"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(&mut db, &["LMOVE", "l", "l", "middle", "left"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            range(&mut db, "l"),
            "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
    }

    #[test]
    fn pops_with_and_without_count() {
        let mut db = TestDb::new();
        t(&mut db, &["RPUSH", "l", "a", "b", "c", "d", "e", "f"]);
        assert_eq!(t(&mut db, &["LPOP", "l"]), "$1\r\na\r\n");
        assert_eq!(t(&mut db, &["RPOP", "l"]), "$1\r\nf\r\n");
        assert_eq!(
            t(&mut db, &["LPOP", "l", "2"]),
            "*2\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(t(&mut db, &["RPOP", "l", "1"]), "*1\r\n$1\r\ne\r\n");
        assert_eq!(t(&mut db, &["LPOP", "l", "0"]), "*0\r\n");
        assert_eq!(t(&mut db, &["RPOP", "l", "10"]), "*1\r\n$1\r\nd\r\n");
        assert_eq!(t(&mut db, &["EXISTS", "l"]), ":0\r\n");
        assert_eq!(t(&mut db, &["LPOP", "l"]), "$-1\r\n");
        assert_eq!(t(&mut db, &["LPOP", "l", "0"]), "*-1\r\n");
        assert_eq!(t(&mut db, &["RPOP", "l", "3"]), "*-1\r\n");
    }

    #[test]
    fn ranges_and_indexes_match_redis() {
        let mut db = TestDb::new();
        t(
            &mut db,
            &[
                "RPUSH", "l", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
            ],
        );
        let cases: &[(&str, &str, &str)] = &[
            ("0", "0", "0"),
            ("2", "4", "234"),
            ("-3", "-1", "789"),
            ("-100", "2", "012"),
            ("8", "100", "89"),
            ("5", "2", ""),
            ("20", "30", ""),
            ("-1", "-3", ""),
            ("-9223372036854775808", "9223372036854775807", "0123456789"),
        ];
        for (s, e, want) in cases {
            let mut expect = format!("*{}\r\n", want.len());
            for c in want.chars() {
                expect.push_str(&format!("$1\r\n{c}\r\n"));
            }
            assert_eq!(t(&mut db, &["LRANGE", "l", s, e]), expect, "LRANGE {s} {e}");
        }
        assert_eq!(t(&mut db, &["LINDEX", "l", "-10"]), "$1\r\n0\r\n");
        assert_eq!(t(&mut db, &["LINDEX", "l", "-11"]), "$-1\r\n");
        assert_eq!(t(&mut db, &["LINDEX", "l", "10"]), "$-1\r\n");
        assert_eq!(t(&mut db, &["LSET", "l", "-1", "nine"]), "+OK\r\n");
        assert_eq!(t(&mut db, &["LINDEX", "l", "9"]), "$4\r\nnine\r\n");
        assert_eq!(t(&mut db, &["LRANGE", "missing", "0", "-1"]), "*0\r\n");
    }

    #[test]
    fn insert_remove_and_trim() {
        let mut db = TestDb::new();
        t(&mut db, &["RPUSH", "l", "a", "b", "c"]);
        assert_eq!(t(&mut db, &["LINSERT", "l", "BEFORE", "b", "x"]), ":4\r\n");
        assert_eq!(t(&mut db, &["LINSERT", "l", "AFTER", "c", "y"]), ":5\r\n");
        assert_eq!(t(&mut db, &["LINSERT", "l", "before", "a", "z"]), ":6\r\n");
        assert_eq!(
            t(&mut db, &["LINSERT", "l", "BEFORE", "nopivot", "q"]),
            ":-1\r\n"
        );
        assert_eq!(
            t(&mut db, &["LINSERT", "missing", "BEFORE", "a", "q"]),
            ":0\r\n"
        );
        assert_eq!(
            range(&mut db, "l"),
            "*6\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nx\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\ny\r\n"
        );

        t(&mut db, &["DEL", "l"]);
        t(&mut db, &["RPUSH", "l", "a", "b", "a", "c", "a", "b", "a"]);
        assert_eq!(t(&mut db, &["LREM", "l", "2", "a"]), ":2\r\n");
        assert_eq!(t(&mut db, &["LREM", "l", "-1", "a"]), ":1\r\n");
        assert_eq!(
            range(&mut db, "l"),
            "*4\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(t(&mut db, &["LREM", "l", "0", "b"]), ":2\r\n");
        assert_eq!(t(&mut db, &["LREM", "l", "0", "nothere"]), ":0\r\n");
        assert_eq!(t(&mut db, &["LREM", "missing", "1", "a"]), ":0\r\n");
        assert_eq!(
            t(&mut db, &["LREM", "l", "-9223372036854775808", "a"]),
            ":1\r\n"
        );

        t(
            &mut db,
            &[
                "RPUSH", "t", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
            ],
        );
        assert_eq!(t(&mut db, &["LTRIM", "t", "1", "-2"]), "+OK\r\n");
        assert_eq!(t(&mut db, &["LTRIM", "t", "-3", "-1"]), "+OK\r\n");
        assert_eq!(
            range(&mut db, "t"),
            "*3\r\n$1\r\n6\r\n$1\r\n7\r\n$1\r\n8\r\n"
        );
        assert_eq!(t(&mut db, &["LTRIM", "t", "2", "1"]), "+OK\r\n");
        assert_eq!(t(&mut db, &["EXISTS", "t"]), ":0\r\n");
        assert_eq!(t(&mut db, &["LTRIM", "missing", "0", "1"]), "+OK\r\n");
    }

    #[test]
    fn lpos_options() {
        let mut db = TestDb::new();
        t(&mut db, &["RPUSH", "l", "a", "b", "a", "c", "a"]);
        assert_eq!(t(&mut db, &["LPOS", "l", "a"]), ":0\r\n");
        assert_eq!(t(&mut db, &["LPOS", "l", "a", "RANK", "2"]), ":2\r\n");
        assert_eq!(t(&mut db, &["LPOS", "l", "a", "RANK", "-1"]), ":4\r\n");
        assert_eq!(
            t(&mut db, &["LPOS", "l", "a", "COUNT", "0"]),
            "*3\r\n:0\r\n:2\r\n:4\r\n"
        );
        assert_eq!(
            t(&mut db, &["LPOS", "l", "a", "COUNT", "0", "MAXLEN", "2"]),
            "*1\r\n:0\r\n"
        );
        assert_eq!(
            t(&mut db, &["LPOS", "l", "a", "RANK", "-2", "COUNT", "2"]),
            "*2\r\n:2\r\n:0\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &[
                    "LPOS",
                    "l",
                    "a",
                    "RANK",
                    "-9223372036854775808",
                    "COUNT",
                    "2"
                ]
            ),
            "*3\r\n:4\r\n:2\r\n:0\r\n"
        );
        assert_eq!(t(&mut db, &["LPOS", "l", "x"]), "$-1\r\n");
        assert_eq!(t(&mut db, &["LPOS", "l", "x", "COUNT", "2"]), "*0\r\n");
        assert_eq!(
            t(&mut db, &["LPOS", "missing", "x", "COUNT", "2"]),
            "*0\r\n"
        );
        assert_eq!(
            t(&mut db, &["LPOS", "l", "a", "RANK", "0"]),
            "-ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list\r\n"
        );
        assert_eq!(
            t(&mut db, &["LPOS", "l", "a", "COUNT", "abc"]),
            "-ERR COUNT can't be negative\r\n"
        );
        assert_eq!(
            t(&mut db, &["LPOS", "l", "a", "MAXLEN", "-1"]),
            "-ERR MAXLEN can't be negative\r\n"
        );
        assert_eq!(
            t(&mut db, &["LPOS", "l", "a", "RANK"]),
            "-ERR syntax error\r\n"
        );
    }

    #[test]
    fn lmove_and_lmpop() {
        let mut db = TestDb::new();
        t(&mut db, &["RPUSH", "l", "a", "b", "c"]);
        assert_eq!(
            t(&mut db, &["LMOVE", "l", "l", "LEFT", "RIGHT"]),
            "$1\r\na\r\n"
        );
        assert_eq!(
            range(&mut db, "l"),
            "*3\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n"
        );
        assert_eq!(t(&mut db, &["RPOPLPUSH", "l", "m"]), "$1\r\na\r\n");
        assert_eq!(
            t(&mut db, &["LMOVE", "l", "m", "RIGHT", "RIGHT"]),
            "$1\r\nc\r\n"
        );
        assert_eq!(range(&mut db, "m"), "*2\r\n$1\r\na\r\n$1\r\nc\r\n");
        assert_eq!(
            t(&mut db, &["LMOVE", "missing", "m", "LEFT", "LEFT"]),
            "$-1\r\n"
        );
        // Rotating a one-element list keeps the key (and its expiry).
        t(&mut db, &["RPUSH", "one", "x"]);
        t(&mut db, &["PEXPIRE", "one", "100000"]);
        assert_eq!(
            t(&mut db, &["LMOVE", "one", "one", "RIGHT", "LEFT"]),
            "$1\r\nx\r\n"
        );
        assert_eq!(range(&mut db, "one"), "*1\r\n$1\r\nx\r\n");
        assert!(db.db.ks.deadline(b"one", db.now_ms).is_some());

        assert_eq!(
            t(
                &mut db,
                &["LMPOP", "2", "missing", "m", "RIGHT", "COUNT", "10"]
            ),
            "*2\r\n$1\r\nm\r\n*2\r\n$1\r\nc\r\n$1\r\na\r\n"
        );
        assert_eq!(t(&mut db, &["LMPOP", "1", "m", "LEFT"]), "*-1\r\n");
        assert_eq!(
            t(&mut db, &["LMPOP", "2", "l", "LEFT"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(&mut db, &["LMPOP", "9223372036854775807", "l", "LEFT"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(&mut db, &["LMPOP", "0", "l", "LEFT"]),
            "-ERR numkeys should be greater than 0\r\n"
        );
        assert_eq!(
            t(&mut db, &["LMPOP", "1", "l", "LEFT", "COUNT", "0"]),
            "-ERR count should be greater than 0\r\n"
        );
        assert_eq!(
            t(
                &mut db,
                &["LMPOP", "1", "l", "LEFT", "COUNT", "1", "COUNT", "1"]
            ),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t(&mut db, &["LMPOP", "1", "l", "LEFT"]),
            "*2\r\n$1\r\nl\r\n*1\r\n$1\r\nb\r\n"
        );
    }

    /// Several pushes in one transaction get distinct ids, keep Redis's order, and a replica
    /// that applies the resulting effect ends with the same list.
    #[test]
    fn transaction_ids_are_unique_and_replicate() {
        let mut a = TestDb::region("a");
        a.db.ks.begin_batch();
        a.run(&["LPUSH", "l", "a", "b", "c"]);
        a.run(&["RPUSH", "l", "x", "y"]);
        a.run(&["LPUSH", "l", "h"]);
        a.run(&["LINSERT", "l", "AFTER", "h", "i"]);
        a.run(&["LINSERT", "l", "BEFORE", "y", "w"]);
        a.run(&["LMOVE", "l", "l", "LEFT", "RIGHT"]);
        a.db.ks.end_batch();
        let got = range(&mut a, "l");
        assert_eq!(
            got,
            "*8\r\n$1\r\ni\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n$1\r\nx\r\n$1\r\nw\r\n$1\r\ny\r\n$1\r\nh\r\n"
        );
        assert_eq!(a.db.ks.outbox.len(), 1);
        let mut b = Keyspace::new(Actor::new("b", 0, 1), false);
        for effect in &a.db.ks.outbox {
            b.apply(effect);
        }
        assert_eq!(b.visible(a.now_ms), a.db.ks.visible(a.now_ms));
    }

    /// Pops in a multi-region database leave removed elements behind; reads skip them.
    #[test]
    fn reads_skip_removed_elements() {
        let mut db = TestDb::region("a");
        db.run(&["RPUSH", "l", "0", "1", "2", "3", "4", "5"]);
        assert_eq!(db.text(&["LPOP", "l"]), "$1\r\n0\r\n");
        assert_eq!(db.text(&["RPOP", "l"]), "$1\r\n5\r\n");
        assert_eq!(db.text(&["LREM", "l", "0", "3"]), ":1\r\n");
        assert_eq!(
            db.text(&["LRANGE", "l", "1", "-1"]),
            "*2\r\n$1\r\n2\r\n$1\r\n4\r\n"
        );
        assert_eq!(db.text(&["LINDEX", "l", "2"]), "$1\r\n4\r\n");
        assert_eq!(db.text(&["LINSERT", "l", "BEFORE", "4", "x"]), ":4\r\n");
        assert_eq!(db.text(&["LPUSH", "l", "h"]), ":5\r\n");
        assert_eq!(db.text(&["RPUSH", "l", "t"]), ":6\r\n");
        assert_eq!(
            range(&mut db, "l"),
            "*6\r\n$1\r\nh\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\nx\r\n$1\r\n4\r\n$1\r\nt\r\n"
        );
        assert_eq!(db.text(&["LTRIM", "l", "1", "-2"]), "+OK\r\n");
        assert_eq!(
            range(&mut db, "l"),
            "*4\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\nx\r\n$1\r\n4\r\n"
        );
        assert_eq!(db.text(&["LPOS", "l", "x"]), ":2\r\n");
        assert_eq!(db.text(&["LLEN", "l"]), ":4\r\n");
    }

    #[test]
    fn resp3_nulls() {
        let mut db = TestDb::new();
        db.client.proto = crate::resp::Protocol::Resp3;
        assert_eq!(t(&mut db, &["LPOP", "missing", "2"]), "_\r\n");
        assert_eq!(t(&mut db, &["LPOP", "missing"]), "_\r\n");
        assert_eq!(t(&mut db, &["LMPOP", "1", "missing", "LEFT"]), "_\r\n");
    }
}
