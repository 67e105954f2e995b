//! XCLAIM and XAUTOCLAIM: moving pending entries of a consumer group to another consumer.

use super::groups::{blob, group_op, idle, nogroup_for_key};
use super::*;
use crate::crdt::types::stream::{Group, GroupChange};
use crate::crdt::Blob;

/// The stream, the group and the minimum idle time (`args[4]`) of XCLAIM and XAUTOCLAIM.
pub(super) fn claim_target<'a>(
    ks: &'a Keyspace,
    args: &[Bytes],
    now_ms: u64,
    name: &str,
) -> Result<(&'a StreamValue, &'a Group, u64), CmdError> {
    let (key, group) = (&args[1], &args[2]);
    let x = read_stream(ks, key, now_ms)?;
    let Some((x, g)) = x.and_then(|x| x.groups.get(&group[..]).map(|g| (x, g))) else {
        return Err(nogroup_for_key(key, group));
    };
    let min_idle = crate::resp::parse_i64_strict(&args[4])
        .ok_or_else(|| Cow::Owned(format!("ERR Invalid min-idle-time argument for {name}")))?;
    Ok((x, g, min_idle.max(0) as u64))
}

pub(super) fn xclaim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let group = &args[2];
    let consumer = &args[3];
    let (x, g, min_idle) = claim_target(&ctx.db.ks, args, ctx.now_ms, "XCLAIM")?;
    let mut ids = Vec::new();
    let mut i = 5;
    while i < args.len() {
        match parse_id(&args[i], 0) {
            Some(id) => ids.push(id),
            None => break,
        }
        i += 1;
    }
    let now = ctx.now_ms;
    let mut delivered_ms = now;
    let mut retry_count = None;
    let mut force = false;
    let mut justid = false;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "force") {
            force = true;
            i += 1;
        } else if is(&args[i], "justid") {
            justid = true;
            i += 1;
        } else if is(&args[i], "idle") && more >= 1 {
            let ms = int_arg(&args[i + 1])
                .map_err(|_| Cow::Borrowed("ERR Invalid IDLE option argument for XCLAIM"))?;
            delivered_ms = now.saturating_sub(ms.max(0) as u64);
            i += 2;
        } else if is(&args[i], "time") && more >= 1 {
            let at = int_arg(&args[i + 1])
                .map_err(|_| Cow::Borrowed("ERR Invalid TIME option argument for XCLAIM"))?;
            delivered_ms = at.max(0) as u64;
            i += 2;
        } else if is(&args[i], "retrycount") && more >= 1 {
            retry_count = Some(
                int_arg(&args[i + 1])
                    .map_err(|_| {
                        Cow::Borrowed("ERR Invalid RETRYCOUNT option argument for XCLAIM")
                    })?
                    .max(0) as u64,
            );
            i += 2;
        } else if is(&args[i], "lastid") && more >= 1 {
            id_arg(&args[i + 1])?;
            i += 2;
        } else {
            return Err(Cow::Owned(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(&args[i])
            )));
        }
    }
    let mut claimed = Vec::new();
    let mut gone = Vec::new();
    let mut replies: Vec<(StreamId, Option<Vec<Blob>>)> = Vec::new();
    for id in ids {
        let pending = g.pending.get(&id);
        let entry = x.entries.get(&id);
        let Some(entry) = entry else {
            if pending.is_some() {
                gone.push(id);
            }
            continue;
        };
        let deliveries = match pending {
            Some(p) => {
                if idle(now, p.delivered_ms) < min_idle {
                    continue;
                }
                p.deliveries
            }
            None if force => 0,
            None => continue,
        };
        let deliveries = retry_count.unwrap_or(if justid { deliveries } else { deliveries + 1 });
        claimed.push((id, deliveries));
        replies.push((id, (!justid).then(|| entry.fields.clone())));
    }
    ctx.out.array(replies.len());
    write_claimed(&mut ctx.out, &replies);
    let claim = Claim {
        key,
        group,
        consumer,
        delivered_ms,
    };
    commit_claim(ctx, &claim, gone, claimed);
    Ok(())
}

/// Claimed entries in a reply: each entry, or its ID alone (JUSTID).
pub(super) fn write_claimed(out: &mut ReplyWriter<'_>, replies: &[(StreamId, Option<Vec<Blob>>)]) {
    for (id, fields) in replies {
        match fields {
            Some(f) => write_entry(out, *id, f),
            None => out.bulk(id.render().as_bytes()),
        }
    }
}

/// Who claims, and when the claimed entries count as delivered.
pub(super) struct Claim<'a> {
    key: &'a Bytes,
    group: &'a [u8],
    consumer: &'a [u8],
    delivered_ms: u64,
}

/// Writes a claim: entries found deleted leave the pending list, the consumer is seen, and the
/// claimed entries become its own with their delivery counts.
pub(super) fn commit_claim(
    ctx: &mut Ctx<'_>,
    claim: &Claim<'_>,
    gone: Vec<StreamId>,
    claimed: Vec<(StreamId, u64)>,
) {
    let (key, group, consumer) = (claim.key, claim.group, claim.consumer);
    let mut ops = Vec::new();
    if !gone.is_empty() {
        ops.push(group_op(
            ctx,
            key,
            GroupChange::Ack {
                group: blob(group),
                ids: gone,
            },
        ));
    }
    ops.push(group_op(
        ctx,
        key,
        GroupChange::SeeConsumer {
            group: blob(group),
            consumer: blob(consumer),
            now_ms: ctx.now_ms,
        },
    ));
    if !claimed.is_empty() {
        ops.push(group_op(
            ctx,
            key,
            GroupChange::SetPending {
                group: blob(group),
                consumer: blob(consumer),
                delivered_ms: claim.delivered_ms,
                entries: claimed,
            },
        ));
    }
    ctx.write(ops);
}

pub(super) fn xautoclaim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let group = &args[2];
    let consumer = &args[3];
    let (x, g, min_idle) = claim_target(&ctx.db.ks, args, ctx.now_ms, "XAUTOCLAIM")?;
    let start = super::bound_arg(&args[5], true)?.unwrap_or(StreamId::MAX);
    let mut count = 100usize;
    let mut justid = false;
    let mut i = 6;
    while i < args.len() {
        if is(&args[i], "count") && i + 1 < args.len() {
            let n = int_arg(&args[i + 1])?;
            if !(1..=i64::MAX / 10).contains(&n) {
                return Err(Cow::Borrowed("ERR COUNT must be > 0"));
            }
            count = n as usize;
            i += 2;
        } else if is(&args[i], "justid") {
            justid = true;
            i += 1;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let now = ctx.now_ms;
    let mut attempts = count.saturating_mul(10);
    let mut claimed = Vec::new();
    let mut replies: Vec<(StreamId, Option<Vec<Blob>>)> = Vec::new();
    let mut gone = Vec::new();
    let mut next = StreamId::MIN;
    let mut iter = g.pending.range(start..).peekable();
    while attempts > 0 && claimed.len() < count {
        let Some((id, p)) = iter.next() else {
            break;
        };
        attempts -= 1;
        match x.entries.get(id) {
            None => gone.push(*id),
            Some(e) => {
                if idle(now, p.delivered_ms) < min_idle {
                    continue;
                }
                let deliveries = if justid {
                    p.deliveries
                } else {
                    p.deliveries + 1
                };
                claimed.push((*id, deliveries));
                replies.push((*id, (!justid).then(|| e.fields.clone())));
            }
        }
    }
    if let Some((id, _)) = iter.peek() {
        next = **id;
    }
    ctx.out.array(3);
    ctx.out.bulk(next.render().as_bytes());
    ctx.out.array(replies.len());
    write_claimed(&mut ctx.out, &replies);
    ctx.out.array(gone.len());
    for id in &gone {
        ctx.out.bulk(id.render().as_bytes());
    }
    let claim = Claim {
        key,
        group,
        consumer,
        delivered_ms: now,
    };
    commit_claim(ctx, &claim, gone, claimed);
    Ok(())
}
