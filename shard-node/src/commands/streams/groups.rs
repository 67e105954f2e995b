//! Consumer groups: XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM.
//!
//! Every change to a group is an [`OpKind::StreamGroup`] op carrying this node's region, so
//! the region's replicas follow it and other regions ignore it (see
//! `crdt::types::stream`). The changes are computed here, in full (times, delivery counts),
//! so applying them needs no clock.

use super::*;
use crate::crdt::types::stream::{Group, GroupChange};
use crate::crdt::Blob;

pub(super) fn group_op(ctx: &Ctx<'_>, key: &Bytes, change: GroupChange) -> Op {
    op(
        key,
        OpKind::StreamGroup {
            region: ctx.db.participant.clone(),
            change,
        },
    )
}

pub(super) fn blob(b: &[u8]) -> Blob {
    Blob::from(b)
}

const ERR_KEY_REQUIRED: &str = "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.";

pub(super) fn nogroup_for_key(key: &[u8], group: &[u8]) -> CmdError {
    Cow::Owned(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// ENTRIESREAD's value: `None` for -1 (unknown).
fn entries_read_arg(arg: &[u8]) -> Result<Option<u64>, CmdError> {
    let n = int_arg(arg)?;
    if n < -1 {
        return Err(Cow::Borrowed(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok(u64::try_from(n).ok())
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

/// The options of XGROUP CREATE and SETID after the ID: `MKSTREAM` (CREATE only) and
/// `ENTRIESREAD n`.
fn xgroup_options(args: &[Bytes], create: bool) -> Result<(bool, Option<u64>), CmdError> {
    let mut mkstream = false;
    let mut entries_read = None;
    let mut i = 5;
    while i < args.len() {
        if create && is(&args[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if is(&args[i], "entriesread") && i + 1 < args.len() {
            entries_read = entries_read_arg(&args[i + 1])?;
            i += 2;
        } else {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try XGROUP HELP.",
                String::from_utf8_lossy(&args[1])
            )));
        }
    }
    Ok((mkstream, entries_read))
}

pub(super) fn xgroup(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    let arity_ok = match sub.as_str() {
        "create" | "setid" => args.len() >= 5,
        "destroy" => args.len() == 4,
        "createconsumer" | "delconsumer" => args.len() == 5,
        "help" => args.len() == 2,
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try XGROUP HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    };
    if !arity_ok {
        return Err(arity_error(&format!("xgroup|{sub}")));
    }
    if sub == "help" {
        ctx.reply_help(XGROUP_HELP);
        return Ok(());
    }
    let (key, group) = (&args[2], &args[3]);
    let (mkstream, entries_read) = if sub == "create" || sub == "setid" {
        xgroup_options(args, sub == "create")?
    } else {
        (false, None)
    };
    let (slot, x) = write_stream(&ctx.db.ks, key, ctx.now_ms)?;
    let Some(x) = x else {
        if sub == "create" && mkstream {
            let cursor = cursor_arg(&args[4], StreamId::MIN)?;
            ctx.out.simple("OK");
            let touch = OpKind::StreamTouch {
                slot,
                last_id: StreamId::MIN,
                max_deleted: None,
            };
            let create = GroupChange::Create {
                group: blob(group),
                last_delivered: cursor,
                entries_read,
            };
            let ops = vec![op(key, touch), group_op(ctx, key, create)];
            ctx.write(ops);
            return Ok(());
        }
        return Err(Cow::Borrowed(ERR_KEY_REQUIRED));
    };
    let existing = x.groups.get(&group[..]);
    let nogroup = || {
        Cow::Owned(format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            String::from_utf8_lossy(group),
            String::from_utf8_lossy(key)
        ))
    };
    // What the subcommand changes, once its reply is written; None: nothing changes.
    let change = match sub.as_str() {
        "create" | "setid" => {
            let last_delivered = cursor_arg(&args[4], x.last_id)?;
            let group = blob(group);
            if sub == "create" {
                if existing.is_some() {
                    return Err(Cow::Borrowed(
                        "BUSYGROUP Consumer Group name already exists",
                    ));
                }
                ctx.out.simple("OK");
                Some(GroupChange::Create {
                    group,
                    last_delivered,
                    entries_read,
                })
            } else {
                existing.ok_or_else(nogroup)?;
                ctx.out.simple("OK");
                Some(GroupChange::SetCursor {
                    group,
                    last_delivered,
                    entries_read,
                })
            }
        }
        "destroy" => {
            ctx.out.int(i64::from(existing.is_some()));
            existing.map(|_| GroupChange::Destroy { group: blob(group) })
        }
        "createconsumer" => {
            let g = existing.ok_or_else(nogroup)?;
            let consumer = &args[4];
            let known = g.consumers.contains_key(&consumer[..]);
            ctx.out.int(i64::from(!known));
            (!known).then(|| GroupChange::SeeConsumer {
                group: blob(group),
                consumer: blob(consumer),
                now_ms: ctx.now_ms,
            })
        }
        _ => {
            // DELCONSUMER replies with the number of entries the consumer still had pending.
            let g = existing.ok_or_else(nogroup)?;
            let consumer = &args[4];
            if g.consumers.contains_key(&consumer[..]) {
                let pending = g
                    .pending
                    .values()
                    .filter(|p| p.consumer[..] == consumer[..])
                    .count();
                ctx.out.int(pending as i64);
                Some(GroupChange::DeleteConsumer {
                    group: blob(group),
                    consumer: blob(consumer),
                })
            } else {
                ctx.out.int(0);
                None
            }
        }
    };
    if let Some(change) = change {
        let o = group_op(ctx, key, change);
        ctx.write(vec![o]);
    }
    Ok(())
}

/// A group cursor argument: `$` (the stream's last ID) or an ID.
fn cursor_arg(arg: &[u8], last: StreamId) -> Result<StreamId, CmdError> {
    if arg == b"$" {
        Ok(last)
    } else {
        id_arg(arg)
    }
}

/// Milliseconds a pending entry has been idle.
pub(super) fn idle(now_ms: u64, delivered_ms: u64) -> u64 {
    now_ms.saturating_sub(delivered_ms)
}

// ---------------------------------------------------------------------------------------------
// XREADGROUP

pub(super) fn xreadgroup(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let super::ReadOptions {
        count,
        block,
        group: names,
        noack,
        streams_at,
    } = super::read_options(
        args,
        ctx.now_ms,
        true,
        "ERR Unbalanced 'xreadgroup' list of streams: for each stream key an ID or '>' must be specified.",
    )?;
    let rest = args.len() - streams_at;
    let Some((group, consumer)) = names else {
        return Err(Cow::Borrowed("ERR Missing GROUP option for XREADGROUP"));
    };
    let n = rest / 2;
    let keys = &args[streams_at..streams_at + n];
    let ids = &args[streams_at + n..];
    // Check every stream, group and ID before serving any.
    let mut wanted: Vec<Option<StreamId>> = Vec::with_capacity(n);
    for (k, raw) in keys.iter().zip(ids) {
        let x = read_stream(&ctx.db.ks, k, ctx.now_ms)?;
        if &raw[..] == b"$" {
            return Err(Cow::Borrowed("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set."));
        }
        let id = if &raw[..] == b">" {
            None
        } else {
            Some(id_arg(raw)?)
        };
        if x.and_then(|x| x.groups.get(&group[..])).is_none() {
            return Err(Cow::Owned(format!(
                "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(group)
            )));
        }
        wanted.push(id);
    }
    let now = ctx.now_ms;
    let limit = count.unwrap_or(usize::MAX);
    let mut found = Vec::new();
    let mut ops = Vec::new();
    for (k, want) in keys.iter().zip(&wanted) {
        let Some(x) = read_stream(&ctx.db.ks, k, now)? else {
            continue;
        };
        let Some(g) = x.groups.get(&group[..]) else {
            continue;
        };
        let see = GroupChange::SeeConsumer {
            group: blob(group),
            consumer: blob(consumer),
            now_ms: now,
        };
        match want {
            None => {
                let start = g.last_delivered.next();
                let served: Served = match start {
                    Some(start) => x
                        .entries
                        .range(start..)
                        .take(limit)
                        .map(|(id, e)| (*id, Some(e.fields.clone())))
                        .collect(),
                    None => Vec::new(),
                };
                let Some(last) = served.last().map(|(id, _)| *id) else {
                    continue;
                };
                let entries_read = g.entries_read.map(|r| r + served.len() as u64).or_else(|| {
                    // Known again once everything from the first entry has been read.
                    (g.last_delivered == StreamId::MIN).then_some(served.len() as u64)
                });
                ops.push((k.clone(), see));
                ops.push((
                    k.clone(),
                    GroupChange::SetCursor {
                        group: blob(group),
                        last_delivered: last,
                        entries_read,
                    },
                ));
                if !noack {
                    ops.push((
                        k.clone(),
                        GroupChange::SetPending {
                            group: blob(group),
                            consumer: blob(consumer),
                            delivered_ms: now,
                            entries: served.iter().map(|(id, _)| (*id, 1)).collect(),
                        },
                    ));
                }
                found.push((k.clone(), served));
            }
            Some(after) => {
                let mut served = Vec::new();
                let mut redelivered = Vec::new();
                if let Some(start) = after.next() {
                    for (id, p) in g.pending.range(start..) {
                        if served.len() >= limit {
                            break;
                        }
                        if p.consumer[..] != consumer[..] {
                            continue;
                        }
                        match x.entries.get(id) {
                            Some(e) => {
                                served.push((*id, Some(e.fields.clone())));
                                redelivered.push((*id, p.deliveries + 1));
                            }
                            None => served.push((*id, None)),
                        }
                    }
                }
                ops.push((k.clone(), see));
                if !redelivered.is_empty() {
                    ops.push((
                        k.clone(),
                        GroupChange::SetPending {
                            group: blob(group),
                            consumer: blob(consumer),
                            delivered_ms: now,
                            entries: redelivered,
                        },
                    ));
                }
                found.push((k.clone(), served));
            }
        }
    }
    if found.is_empty() {
        if let Some(deadline) = block {
            return super::super::blocking::block_unordered(
                ctx,
                args,
                keys.to_vec(),
                deadline,
                super::super::blocking::NothingReady::NullArray,
            );
        }
        ctx.out.null_array();
        return Ok(());
    }
    write_streams_reply(&mut ctx.out, &found);
    let ops = ops
        .into_iter()
        .map(|(k, change)| group_op(ctx, &k, change))
        .collect();
    ctx.write(ops);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XACK, XPENDING

pub(super) fn xack(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let group = &args[2];
    let ids = args[3..]
        .iter()
        .map(|a| id_arg(a))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(g) = read_stream(&ctx.db.ks, key, ctx.now_ms)?.and_then(|x| x.groups.get(&group[..]))
    else {
        ctx.out.int(0);
        return Ok(());
    };
    let mut acked: Vec<StreamId> = ids
        .into_iter()
        .filter(|id| g.pending.contains_key(id))
        .collect();
    acked.sort();
    acked.dedup();
    ctx.out.int(acked.len() as i64);
    if !acked.is_empty() {
        let o = group_op(
            ctx,
            key,
            GroupChange::Ack {
                group: blob(group),
                ids: acked,
            },
        );
        ctx.write(vec![o]);
    }
    Ok(())
}

pub(super) fn xpending(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let group = &args[2];
    let mut min_idle = None;
    let mut at = 3;
    if args.len() > 3 && is(&args[3], "idle") {
        if args.len() < 5 {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        min_idle = Some(int_arg(&args[4])?);
        at = 5;
        if args.len() < 8 {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let extended = if args.len() > at {
        if args.len() < at + 3 || args.len() > at + 4 {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        let start = super::bound_arg(&args[at], true)?;
        let end = super::bound_arg(&args[at + 1], false)?;
        let count = int_arg(&args[at + 2])?.max(0) as usize;
        let consumer = args.get(at + 3);
        Some((start, end, count, consumer))
    } else {
        None
    };
    let x = read_stream(&ctx.db.ks, key, ctx.now_ms)?;
    let Some(g) = x.and_then(|x| x.groups.get(&group[..])) else {
        return Err(nogroup_for_key(key, group));
    };
    let now = ctx.now_ms;
    match extended {
        None => write_pending_summary(&mut ctx.out, g),
        Some((start, end, count, consumer)) => {
            let rows: Vec<_> = match (start, end) {
                (Some(s), Some(e)) if s <= e => g
                    .pending
                    .range(s..=e)
                    .filter(|(_, p)| consumer.is_none_or(|c| p.consumer[..] == c[..]))
                    .filter(|(_, p)| min_idle.is_none_or(|m| idle(now, p.delivered_ms) as i64 >= m))
                    .take(count)
                    .collect(),
                _ => Vec::new(),
            };
            ctx.out.array(rows.len());
            for (id, p) in rows {
                ctx.out.array(4);
                ctx.out.bulk(id.render().as_bytes());
                ctx.out.bulk(&p.consumer);
                ctx.out.int(idle(now, p.delivered_ms) as i64);
                ctx.out.int(p.deliveries as i64);
            }
        }
    }
    Ok(())
}

fn write_pending_summary(out: &mut ReplyWriter<'_>, g: &Group) {
    out.array(4);
    out.int(g.pending.len() as i64);
    if g.pending.is_empty() {
        out.null();
        out.null();
        out.null_array();
        return;
    }
    let first = g.pending.keys().next().copied().unwrap_or_default();
    let last = g.pending.keys().next_back().copied().unwrap_or_default();
    out.bulk(first.render().as_bytes());
    out.bulk(last.render().as_bytes());
    let mut per: BTreeMap<&[u8], usize> = BTreeMap::new();
    for p in g.pending.values() {
        *per.entry(&p.consumer[..]).or_default() += 1;
    }
    out.array(per.len());
    for (consumer, n) in per {
        out.array(2);
        out.bulk(consumer);
        out.bulk(n.to_string().as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// XCLAIM, XAUTOCLAIM
