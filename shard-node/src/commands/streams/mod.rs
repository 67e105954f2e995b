//! Stream commands: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XSETID, XREAD (blocking too),
//! and, in `groups`, the consumer groups (XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM,
//! XAUTOCLAIM), in `info`, XINFO.
//!
//! Contract:
//! - Replies and errors are Redis 7.0's. Entries are `crdt::types::StreamValue` entries;
//!   `XADD` is one [`OpKind::StreamAdd`], `XDEL` and trimming one [`OpKind::StreamDel`] of the
//!   IDs they observed, consumer-group changes [`OpKind::StreamGroup`] ops that only this
//!   region applies.
//! - Automatic IDs (`*`, `ms-*`) follow Redis while the node is the only participant. With
//!   peers (or as a replica) the sequence part carries the region: its low 20 bits are a hash
//!   of the participant name and the rest counts up, so two regions adding at the same
//!   millisecond never make the same ID and every new ID is still greater than every ID the
//!   node has seen.
//! - Trimming with `~` removes whole blocks of 100 entries from the head, like Redis's
//!   default node size (everything when nothing is to be kept); with `=` it is exact. A trim removes only entries this node has; an
//!   entry added concurrently in another region survives it, so a stream may hold more than
//!   MAXLEN entries until the next trim.
//! - `XREAD`/`XREADGROUP` with `BLOCK` wait through [`super::blocking`]; `$` is resolved to the
//!   stream's last ID when the command first runs.

mod claims;
mod groups;
mod info;
mod read;

use read::{read_options, write_streams_reply, ReadOptions, Served};
use read::{xlen, xrange, xread, xrevrange};

use super::*;
use crate::crdt::types::{StreamId, StreamValue};
use crate::crdt::{Stamp, Value, NEW_SLOT};
use crate::resp::Protocol;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("xadd", -5, "write denyoom fast", 1, 1, 1, "stream", "Appends a new message to a stream. Creates the key if it doesn't exist.", xadd),
        cmd("xlen", 2, "readonly fast", 1, 1, 1, "stream", "Return the number of messages in a stream.", xlen),
        cmd("xrange", -4, "readonly", 1, 1, 1, "stream", "Returns the messages from a stream within a range of IDs.", xrange),
        cmd("xrevrange", -4, "readonly", 1, 1, 1, "stream", "Returns the messages from a stream within a range of IDs in reverse order.", xrevrange),
        cmd("xdel", -3, "write fast", 1, 1, 1, "stream", "Returns the number of messages after removing them from a stream.", xdel),
        cmd("xtrim", -4, "write", 1, 1, 1, "stream", "Deletes messages from the beginning of a stream.", xtrim),
        cmd("xsetid", -3, "write denyoom fast", 1, 1, 1, "stream", "An internal command for replicating stream values.", xsetid),
        cmd("xread", -4, "readonly blocking", 0, 0, 0, "stream", "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise.", xread),
        cmd("xgroup", -2, "", 0, 0, 0, "stream", "A container for consumer groups commands.", groups::xgroup),
        cmd("xreadgroup", -7, "write blocking", 0, 0, 0, "stream", "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise.", groups::xreadgroup),
        cmd("xack", -4, "write fast", 1, 1, 1, "stream", "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream.", groups::xack),
        cmd("xpending", -3, "readonly", 1, 1, 1, "stream", "Returns the information and entries from a stream consumer group's pending entries list.", groups::xpending),
        cmd("xclaim", -6, "write fast", 1, 1, 1, "stream", "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member.", claims::xclaim),
        cmd("xautoclaim", -6, "write fast", 1, 1, 1, "stream", "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member.", claims::xautoclaim),
        cmd("xinfo", -2, "", 0, 0, 0, "stream", "A container for stream introspection commands.", info::xinfo),
    ]
}

pub(super) const ERR_INVALID_ID: &str =
    "ERR Invalid stream ID specified as stream command argument";

/// Keys of XREAD and XREADGROUP: the first half of the arguments after `STREAMS`.
pub fn stream_keys(args: &[Bytes]) -> Vec<usize> {
    let Some(at) = args.iter().position(|a| is(a, "streams")) else {
        return Vec::new();
    };
    let rest = args.len() - at - 1;
    if rest == 0 || !rest.is_multiple_of(2) {
        return Vec::new();
    }
    (at + 1..at + 1 + rest / 2).collect()
}

/// The stream at `key` for a read: `None` when absent, WRONGTYPE for another type.
pub(super) fn read_stream<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'a StreamValue>, CmdError> {
    match ks.get(key, now_ms) {
        None => Ok(None),
        Some(slot) => match &slot.value {
            Value::Stream(x) => Ok(Some(x)),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// Like [`read_stream`], with the slot stamp a write must carry.
pub(super) fn write_stream<'a>(
    ks: &'a Keyspace,
    key: &[u8],
    now_ms: u64,
) -> Result<(Stamp, Option<&'a StreamValue>), CmdError> {
    match ks.get(key, now_ms) {
        None => Ok((NEW_SLOT, None)),
        Some(slot) => match &slot.value {
            Value::Stream(x) => Ok((slot.created, Some(x))),
            _ => Err(Cow::Borrowed(ERR_WRONGTYPE)),
        },
    }
}

/// Parses `ms-seq` or `ms`; `missing_seq` is the sequence of a bare `ms`.
pub(super) fn parse_id(arg: &[u8], missing_seq: u64) -> Option<StreamId> {
    let text = std::str::from_utf8(arg).ok()?;
    let number = |t: &str| -> Option<u64> {
        if t.is_empty() || t.starts_with('+') || t.starts_with('-') {
            return None;
        }
        t.parse::<u64>().ok()
    };
    match text.split_once('-') {
        Some((ms, seq)) => Some(StreamId {
            ms: number(ms)?,
            seq: number(seq)?,
        }),
        None => Some(StreamId {
            ms: number(text)?,
            seq: missing_seq,
        }),
    }
}

/// An ID argument that must be a plain ID.
pub(super) fn id_arg(arg: &[u8]) -> Result<StreamId, CmdError> {
    parse_id(arg, 0).ok_or(Cow::Borrowed(ERR_INVALID_ID))
}

/// A range bound: `-`, `+`, an ID, or `(ID` (exclusive). `start` tells which end it is.
fn bound_arg(arg: &[u8], start: bool) -> Result<Option<StreamId>, CmdError> {
    match arg {
        b"-" => return Ok(Some(StreamId::MIN)),
        b"+" => return Ok(Some(StreamId::MAX)),
        _ => {}
    }
    let missing = if start { 0 } else { u64::MAX };
    if let Some(rest) = arg.strip_prefix(b"(") {
        let id = parse_id(rest, missing).ok_or(Cow::Borrowed(ERR_INVALID_ID))?;
        return if start {
            id.next()
                .map(Some)
                .ok_or(Cow::Borrowed("ERR invalid start ID for the interval"))
        } else {
            id.prev()
                .map(Some)
                .ok_or(Cow::Borrowed("ERR invalid end ID for the interval"))
        };
    }
    Ok(Some(
        parse_id(arg, missing).ok_or(Cow::Borrowed(ERR_INVALID_ID))?,
    ))
}

/// `[id, [field, value, …]]`.
pub(super) fn write_entry(out: &mut ReplyWriter<'_>, id: StreamId, fields: &[crate::crdt::Blob]) {
    out.array(2);
    out.bulk(id.render().as_bytes());
    out.array(fields.len());
    for f in fields {
        out.bulk(f);
    }
}

/// A `COUNT` argument: negative or zero means no limit (Redis's XRANGE and XREAD rules).
fn count_arg(arg: &[u8]) -> Result<Option<usize>, CmdError> {
    let n = int_arg(arg)?;
    Ok(if n <= 0 { None } else { Some(n as usize) })
}

// ---------------------------------------------------------------------------------------------
// XADD, XTRIM

/// MAXLEN / MINID with its threshold and options.
#[derive(Clone, Copy, Debug)]
enum Trim {
    MaxLen {
        len: u64,
        approx: bool,
        limit: u64,
    },
    MinId {
        id: StreamId,
        approx: bool,
        limit: u64,
    },
}

/// Entries per block for `~` trimming (Redis's default `stream-node-max-entries`).
const BLOCK_ENTRIES: u64 = 100;

/// Parses the trim options at `args[*i..]`; XADD (`nomkstream` given) also takes NOMKSTREAM
/// and stops at its ID, XTRIM refuses anything else.
fn parse_trim(
    args: &[Bytes],
    i: &mut usize,
    mut nomkstream: Option<&mut bool>,
) -> Result<Option<Trim>, CmdError> {
    let xadd = nomkstream.is_some();
    let mut trim: Option<Trim> = None;
    let mut limit: Option<u64> = None;
    while *i < args.len() {
        let a = &args[*i];
        let more = args.len() - *i - 1;
        if is(a, "nomkstream") && xadd {
            if let Some(flag) = nomkstream.as_deref_mut() {
                *flag = true;
            }
            *i += 1;
        } else if (is(a, "maxlen") || is(a, "minid")) && more >= 1 {
            let mut approx = false;
            let mut j = *i + 1;
            if &args[j][..] == b"~" {
                approx = true;
                j += 1;
            } else if &args[j][..] == b"=" {
                j += 1;
            }
            if j >= args.len() {
                return Err(Cow::Borrowed(ERR_SYNTAX));
            }
            if trim.is_some_and(|t| matches!(t, Trim::MaxLen { .. }) != is(a, "maxlen")) {
                return Err(Cow::Borrowed(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            trim = Some(if is(a, "maxlen") {
                let n = int_arg(&args[j])?;
                if n < 0 {
                    return Err(Cow::Borrowed("ERR The MAXLEN argument must be >= 0."));
                }
                Trim::MaxLen {
                    len: n as u64,
                    approx,
                    limit: 0,
                }
            } else {
                Trim::MinId {
                    id: id_arg(&args[j])?,
                    approx,
                    limit: 0,
                }
            });
            *i = j + 1;
        } else if is(a, "limit") && more >= 1 {
            let n = int_arg(&args[*i + 1])?;
            if n < 0 {
                return Err(Cow::Borrowed("ERR The LIMIT argument must be >= 0."));
            }
            limit = Some(n as u64);
            *i += 2;
        } else if xadd {
            break;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let Some(mut trim) = trim else {
        if limit.is_some() && !xadd {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        return Ok(None);
    };
    let (approx, slot) = match &mut trim {
        Trim::MaxLen { approx, limit, .. } | Trim::MinId { approx, limit, .. } => (*approx, limit),
    };
    match limit {
        Some(_) if !approx => {
            return Err(Cow::Borrowed(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ))
        }
        Some(n) => *slot = n,
        None => *slot = if approx { BLOCK_ENTRIES * 100 } else { 0 },
    }
    Ok(Some(trim))
}

/// The IDs a trim removes from `x` (after `extra` more entries, for XADD's new entry).
fn trimmed_ids(x: &StreamValue, trim: Trim, extra: Option<StreamId>) -> Vec<StreamId> {
    let len = x.entries.len() as u64 + u64::from(extra.is_some());
    let ids = x.entries.keys().copied().chain(extra);
    match trim {
        Trim::MaxLen {
            len: max,
            approx,
            limit,
        } => {
            let mut over = len.saturating_sub(max);
            if approx && max > 0 {
                over = over / BLOCK_ENTRIES * BLOCK_ENTRIES;
                if limit > 0 {
                    over = over.min(limit / BLOCK_ENTRIES * BLOCK_ENTRIES);
                }
            }
            ids.take(over as usize).collect()
        }
        Trim::MinId { id, approx, limit } => {
            let below = ids.take_while(|e| *e < id).collect::<Vec<_>>();
            if approx && (below.len() as u64) < len {
                let mut n = below.len() as u64 / BLOCK_ENTRIES * BLOCK_ENTRIES;
                if limit > 0 {
                    n = n.min(limit / BLOCK_ENTRIES * BLOCK_ENTRIES);
                }
                below.into_iter().take(n as usize).collect()
            } else {
                below
            }
        }
    }
}

/// Low 20 bits of automatic sequence numbers in multi-region mode: a hash of the region.
fn region_tag(participant: &str) -> u64 {
    crate::crdt::clock::fnv1a(participant.as_bytes()) & REGION_TAG_MASK
}

const REGION_TAG_BITS: u32 = 20;
const REGION_TAG_MASK: u64 = (1 << REGION_TAG_BITS) - 1;

/// The ID of a new entry: `*` (ms `None`) or `ms-*`, after `last`.
fn auto_id(ctx: &Ctx<'_>, last: StreamId, ms: Option<u64>) -> Result<StreamId, CmdError> {
    let exhausted = || {
        Cow::Borrowed("ERR The stream has exhausted the last possible ID, unable to add more items")
    };
    let smaller = || {
        Cow::Borrowed(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        )
    };
    let tag = (!ctx.db.ks.is_single_participant()).then(|| region_tag(&ctx.db.participant));
    let first_seq = tag.unwrap_or(0);
    let after = |seq: u64| -> Option<u64> {
        match tag {
            None => seq.checked_add(1),
            Some(t) => {
                let counter = (seq >> REGION_TAG_BITS).checked_add(1)?;
                counter.checked_mul(1 << REGION_TAG_BITS).map(|c| c | t)
            }
        }
    };
    match ms {
        Some(ms) if ms < last.ms => Err(smaller()),
        Some(ms) if ms == last.ms => match after(last.seq) {
            Some(seq) => Ok(StreamId { ms, seq }),
            None => Err(smaller()),
        },
        Some(ms) => Ok(StreamId { ms, seq: first_seq }),
        None => {
            let now = ctx.now_ms;
            if now > last.ms {
                return Ok(StreamId {
                    ms: now,
                    seq: first_seq,
                });
            }
            match after(last.seq) {
                Some(seq) => Ok(StreamId { ms: last.ms, seq }),
                None if last.ms < u64::MAX => Ok(StreamId {
                    ms: last.ms + 1,
                    seq: first_seq,
                }),
                None => Err(exhausted()),
            }
        }
    }
}

fn xadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let mut i = 2;
    let mut nomkstream = false;
    let trim = parse_trim(args, &mut i, Some(&mut nomkstream))?;
    if i >= args.len() {
        return Err(arity_error("xadd"));
    }
    let id_arg_at = i;
    let fields = &args[i + 1..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return Err(arity_error("xadd"));
    }
    // The ID: `*`, `ms-*` or explicit.
    enum Wanted {
        Auto(Option<u64>),
        Exact(StreamId),
    }
    let raw = &args[id_arg_at];
    let wanted = if &raw[..] == b"*" {
        Wanted::Auto(None)
    } else if let Some(ms) = raw.strip_suffix(b"-*") {
        let ms = parse_id(ms, 0)
            .filter(|_| !ms.contains(&b'-'))
            .ok_or(Cow::Borrowed(ERR_INVALID_ID))?;
        Wanted::Auto(Some(ms.ms))
    } else {
        let id = id_arg(raw)?;
        if id == StreamId::MIN {
            return Err(Cow::Borrowed(
                "ERR The ID specified in XADD must be greater than 0-0",
            ));
        }
        Wanted::Exact(id)
    };
    let (slot, existing) = write_stream(&ctx.db.ks, key, ctx.now_ms)?;
    if existing.is_none() && nomkstream {
        ctx.out.null();
        return Ok(());
    }
    let last = existing.map_or(StreamId::MIN, |x| x.last_id);
    if last == StreamId::MAX {
        return Err(Cow::Borrowed(
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    let id =
        match wanted {
            Wanted::Auto(ms) => auto_id(ctx, last, ms)?,
            Wanted::Exact(id) if id <= last => return Err(Cow::Borrowed(
                "ERR The ID specified in XADD is equal or smaller than the target stream top item",
            )),
            Wanted::Exact(id) => id,
        };
    let removed = match (trim, existing) {
        (Some(t), Some(x)) => trimmed_ids(x, t, Some(id)),
        (Some(t), None) => trimmed_ids(&StreamValue::default(), t, Some(id)),
        (None, _) => Vec::new(),
    };
    let mut ops = vec![op(
        key,
        OpKind::StreamAdd {
            slot,
            id,
            fields: fields.to_vec(),
        },
    )];
    if !removed.is_empty() {
        ops.push(op(
            key,
            OpKind::StreamDel {
                ids: removed,
                trim: true,
            },
        ));
    }
    ctx.out.bulk(id.render().as_bytes());
    ctx.write(ops);
    Ok(())
}

fn xtrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let mut i = 2;
    let trim = parse_trim(args, &mut i, None)?.ok_or(Cow::Borrowed(ERR_SYNTAX))?;
    let Some(x) = read_stream(&ctx.db.ks, key, ctx.now_ms)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let removed = trimmed_ids(x, trim, None);
    ctx.out.int(removed.len() as i64);
    if !removed.is_empty() {
        ctx.write(vec![op(
            key,
            OpKind::StreamDel {
                ids: removed,
                trim: true,
            },
        )]);
    }
    Ok(())
}

fn xdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let ids = args[2..]
        .iter()
        .map(|a| id_arg(a))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(x) = read_stream(&ctx.db.ks, key, ctx.now_ms)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let mut present: Vec<StreamId> = ids
        .into_iter()
        .filter(|id| x.entries.contains_key(id))
        .collect();
    present.sort();
    present.dedup();
    ctx.out.int(present.len() as i64);
    if !present.is_empty() {
        ctx.write(vec![op(
            key,
            OpKind::StreamDel {
                ids: present,
                trim: false,
            },
        )]);
    }
    Ok(())
}

fn xsetid(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let last = id_arg(&args[2])?;
    let mut max_deleted = None;
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "entriesadded") && i + 1 < args.len() {
            let n = int_arg(&args[i + 1])?;
            if n < 0 {
                return Err(Cow::Borrowed("ERR entries_added must be positive"));
            }
            i += 2;
        } else if is(&args[i], "maxdeletedid") && i + 1 < args.len() {
            max_deleted = Some(id_arg(&args[i + 1])?);
            i += 2;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let (slot, x) = write_stream(&ctx.db.ks, key, ctx.now_ms)?;
    let Some(x) = x else {
        return Err(Cow::Borrowed(ERR_NO_KEY));
    };
    if let Some(m) = max_deleted {
        if last < m {
            return Err(Cow::Borrowed(
                "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
            ));
        }
    }
    if last < x.top_id() {
        return Err(Cow::Borrowed(
            "ERR The ID specified in XSETID is smaller than the target stream top item",
        ));
    }
    ctx.out.simple("OK");
    ctx.write(vec![op(
        key,
        OpKind::StreamTouch {
            slot,
            last_id: last,
            max_deleted,
        },
    )]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XLEN, XRANGE, XREVRANGE
