//! Commands that write a key's value under another name: RENAME, RENAMENX, COPY, and the
//! operations that recreate a value under a new key (`recreate_ops`, `list_ops`), which
//! other families use too; also RANDOMKEY and the single-database MOVE and SWAPDB.

use super::*;

/// Operations that write a copy of `value` under `key` as a new value (RENAME, *STORE),
/// after a delete of `key` when it exists.
pub fn recreate_ops(ctx: &Ctx<'_>, key: &Bytes, value: &Value) -> Vec<Op> {
    let slot = crate::crdt::NEW_SLOT;
    let b = |x: &[u8]| Bytes::copy_from_slice(x);
    let mut ops = Vec::new();
    match value {
        Value::Str(c) => ops.push(op(
            key,
            OpKind::StrSet {
                slot,
                value: b(&c.read()),
            },
        )),
        Value::Hash(h) => {
            for (f, v) in &h.fields {
                ops.push(op(
                    key,
                    OpKind::HashSet {
                        slot,
                        field: b(f),
                        value: b(&v.read()),
                    },
                ));
            }
        }
        Value::Set(s) => {
            for m in s.members.keys() {
                ops.push(op(key, OpKind::SetAdd { slot, member: b(m) }));
            }
        }
        Value::ZSet(z) => {
            for (score, m) in &z.order {
                ops.push(op(
                    key,
                    OpKind::ZAdd {
                        slot,
                        member: b(m),
                        score: score.0,
                    },
                ));
            }
        }
        Value::List(l) => ops = list_ops(ctx, key, l.iter_visible().map(|e| b(&e.value))),
        Value::Hll(h) => ops.push(op(
            key,
            OpKind::HllRaise {
                slot,
                // Any HyperLogLog at `key` is deleted first, which starts its next epoch.
                epoch: super::hyperloglog::epoch_after_delete(&ctx.db.ks, key),
                registers: h.regs.nonzero(),
            },
        )),
        Value::Stream(x) => {
            ops.push(op(
                key,
                OpKind::StreamTouch {
                    slot,
                    last_id: x.last_id,
                    max_deleted: Some(x.max_deleted),
                },
            ));
            for (id, e) in &x.entries {
                ops.push(op(
                    key,
                    OpKind::StreamAdd {
                        slot,
                        id: *id,
                        fields: e.fields.iter().map(|f| b(f)).collect(),
                    },
                ));
            }
            let region = ctx.db.participant.clone();
            for (name, g) in &x.groups {
                let group = name.clone();
                let mut change = |change| {
                    ops.push(op(
                        key,
                        OpKind::StreamGroup {
                            region: region.clone(),
                            change,
                        },
                    ))
                };
                change(GroupChange::Create {
                    group: group.clone(),
                    last_delivered: g.last_delivered,
                    entries_read: g.entries_read,
                });
                for (consumer, c) in &g.consumers {
                    change(GroupChange::SeeConsumer {
                        group: group.clone(),
                        consumer: consumer.clone(),
                        now_ms: c.seen_ms,
                    });
                }
                for (id, p) in &g.pending {
                    change(GroupChange::SetPending {
                        group: group.clone(),
                        consumer: p.consumer.clone(),
                        delivered_ms: p.delivered_ms,
                        entries: vec![(*id, p.deliveries)],
                    });
                }
            }
        }
    }
    ops
}

/// Operations that write `values`, in order, as a new list under `key` (RENAME, SORT STORE).
pub fn list_ops(ctx: &Ctx<'_>, key: &Bytes, values: impl Iterator<Item = Bytes>) -> Vec<Op> {
    let slot = crate::crdt::NEW_SLOT;
    let dot = ctx.db.ks.next_dot();
    let base = ctx.db.ks.batch_list_inserts();
    let mut after = None;
    let mut ops = Vec::new();
    for (i, value) in values.enumerate() {
        let id = ElemId {
            dot,
            index: base + i as u32,
        };
        ops.push(op(
            key,
            OpKind::ListInsert {
                slot,
                id,
                after,
                value,
            },
        ));
        after = Some(id);
    }
    ops
}

pub(super) fn rename_generic(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool) -> CmdResult {
    let (from, to) = (&args[1], &args[2]);
    if crate::cluster::key_slot(from) != crate::cluster::key_slot(to) {
        return Err(Cow::Borrowed(
            "CROSSSLOT Keys in request don't hash to the same slot",
        ));
    }
    let Some(slot) = ctx.get(from) else {
        return Err(Cow::Borrowed(ERR_NO_KEY));
    };
    let value = slot.value.clone();
    if from == to {
        if nx {
            ctx.out.int(0);
        } else {
            ctx.out.simple("OK");
        }
        return Ok(());
    }
    if nx && ctx.get(to).is_some() {
        ctx.out.int(0);
        return Ok(());
    }
    let deadline = ctx.db.ks.deadline(from, ctx.now_ms);
    let mut ops = vec![op(from, OpKind::Del)];
    if ctx.db.ks.raw_entry(to).is_some() {
        ops.push(op(to, OpKind::Del));
    }
    ops.extend(recreate_ops(ctx, to, &value));
    if let Some(at_ms) = deadline {
        ops.push(op(to, OpKind::Expire { at_ms }));
    }
    ctx.write(ops);
    if nx {
        ctx.out.int(1);
    } else {
        ctx.out.simple("OK");
    }
    Ok(())
}

pub(super) fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, false)
}
pub(super) fn renamenx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, true)
}

pub(super) fn randomkey(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms;
    let ks = &ctx.db.ks;
    let live: Vec<&Blob> = ks
        .entries()
        .filter(|(k, _)| ks.get(k, now).is_some())
        .map(|(k, _)| k)
        .take(64)
        .collect();
    if live.is_empty() {
        ctx.out.null();
    } else {
        let pick = rand::random_range(0..live.len());
        let key = live[pick].clone();
        ctx.out.bulk(&key);
    }
    Ok(())
}

pub(super) const ERR_SAME_OBJECT: &str = "ERR source and destination objects are the same";
pub(super) const ERR_DB_RANGE: &str = "ERR DB index is out of range";

/// A database index argument (`getIntFromObjectOrReply`, with `invalid` as its message when
/// the command gives one): only 0 exists.
pub(super) fn db_index(arg: &[u8], invalid: Option<&'static str>) -> Result<(), CmdError> {
    let invalid_or = |text: &'static str| Cow::Borrowed(invalid.unwrap_or(text));
    match crate::resp::parse_i64_strict(arg) {
        Some(n) if i32::try_from(n).is_err() => Err(invalid_or(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        )),
        Some(0) => Ok(()),
        Some(_) => Err(Cow::Borrowed(ERR_DB_RANGE)),
        None => Err(invalid_or(ERR_NOT_INTEGER)),
    }
}

pub(super) fn copy(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut replace = false;
    let mut j = 3;
    while j < args.len() {
        if is(&args[j], "replace") {
            replace = true;
        } else if is(&args[j], "db") && j + 1 < args.len() {
            db_index(&args[j + 1], None)?;
            j += 1;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
        j += 1;
    }
    let (src, dst) = (&args[1], &args[2]);
    if src == dst {
        return Err(Cow::Borrowed(ERR_SAME_OBJECT));
    }
    let Some(value) = ctx.get(src).map(|slot| slot.value.clone()) else {
        ctx.db.stats.keyspace_misses += 1;
        ctx.out.int(0);
        return Ok(());
    };
    ctx.db.stats.keyspace_hits += 1;
    if ctx.get(dst).is_some() && !replace {
        ctx.out.int(0);
        return Ok(());
    }
    let deadline = ctx.db.ks.deadline(src, ctx.now_ms);
    let mut ops = Vec::new();
    if ctx.db.ks.raw_entry(dst).is_some() {
        ops.push(op(dst, OpKind::Del));
    }
    ops.extend(recreate_ops(ctx, dst, &value));
    if let Some(at_ms) = deadline {
        ops.push(op(dst, OpKind::Expire { at_ms }));
    }
    ctx.write(ops);
    ctx.out.int(1);
    Ok(())
}

/// MOVE: database 0 is the only one, so the only valid target is the source itself.
pub(super) fn move_cmd(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    db_index(&args[2], None)?;
    Err(Cow::Borrowed(ERR_SAME_OBJECT))
}

/// SWAPDB: swapping database 0 with itself succeeds and changes nothing.
pub(super) fn swapdb(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    db_index(&args[1], Some("ERR invalid first DB index"))?;
    db_index(&args[2], Some("ERR invalid second DB index"))?;
    ctx.out.simple("OK");
    Ok(())
}
