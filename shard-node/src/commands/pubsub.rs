//! Pub/sub commands: PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBSUB; and
//! [`deliver`], which hands a message to this node's subscribers.
//!
//! Contract: replies match Redis 7.0. On a primary, PUBLISH is also written as an effect, so
//! every region delivers the message once, in publish order.

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("publish", 3, "pubsub loading stale fast", 0, 0, 0, "pubsub", "Posts a message to a channel.", publish),
        cmd("subscribe", -2, "pubsub loading stale subscribe_ok", 0, 0, 0, "pubsub", "Listens for messages on channels.", subscribe),
        cmd("unsubscribe", -1, "pubsub loading stale subscribe_ok", 0, 0, 0, "pubsub", "Stops listening to channels.", unsubscribe),
        cmd("psubscribe", -2, "pubsub loading stale subscribe_ok", 0, 0, 0, "pubsub", "Listens for messages on channel patterns.", psubscribe),
        cmd("punsubscribe", -1, "pubsub loading stale subscribe_ok", 0, 0, 0, "pubsub", "Stops listening to channel patterns.", punsubscribe),
        cmd("pubsub", -2, "", 0, 0, 0, "pubsub", "A container for pub/sub introspection.", pubsub),
    ]
}

/// Delivers a message to local subscribers; returns how many received it. A subscriber whose
/// queue overflows its limit ([`super::pubsub_queue`]) is skipped and disconnected.
pub fn deliver(db: &mut Db, channel: &Bytes, payload: &Bytes) -> usize {
    let mut count = 0;
    if let Some(subs) = db.channels.get(channel) {
        for (_, tx) in subs {
            if tx.send(PubMessage {
                pattern: None,
                channel: channel.clone(),
                payload: payload.clone(),
            }) {
                count += 1;
            }
        }
    }
    for (pattern, subs) in &db.patterns {
        if crate::glob::glob_match(pattern, channel) {
            for (_, tx) in subs {
                if tx.send(PubMessage {
                    pattern: Some(pattern.clone()),
                    channel: channel.clone(),
                    payload: payload.clone(),
                }) {
                    count += 1;
                }
            }
        }
    }
    count
}

fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = deliver(ctx.db, &args[1], &args[2]);
    if ctx.db.repl.is_primary() {
        // Replicated as an effect so every region delivers it once, in publish order.
        ctx.write(vec![Op {
            key: Bytes::new(),
            kind: OpKind::Publish {
                channel: args[1].clone(),
                payload: args[2].clone(),
            },
        }]);
    }
    ctx.out.int(n as i64);
    Ok(())
}

fn sub_reply(ctx: &mut Ctx<'_>, kind: &[u8], name: Option<&[u8]>) {
    let count = ctx.client.subscriptions();
    ctx.out.push(3);
    ctx.out.bulk(kind);
    ctx.out.bulk_or_null(name);
    ctx.out.int(count as i64);
}

fn update_meta(ctx: &mut Ctx<'_>) {
    let (sub, psub) = (ctx.client.channels.len(), ctx.client.patterns.len());
    if let Some(meta) = ctx.db.clients.get_mut(&ctx.client.id) {
        meta.sub = sub;
        meta.psub = psub;
    }
}

fn subscribe_generic(ctx: &mut Ctx<'_>, args: &[Bytes], pattern: bool) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err(Cow::Borrowed(
            "ERR Command not allowed inside a transaction",
        ));
    }
    let Some(tx) = ctx.client.sender.clone() else {
        return Err(Cow::Borrowed("ERR this connection cannot subscribe"));
    };
    for name in &args[1..] {
        let id = ctx.client.id;
        let (mine, registry) = if pattern {
            (&mut ctx.client.patterns, &mut ctx.db.patterns)
        } else {
            (&mut ctx.client.channels, &mut ctx.db.channels)
        };
        if !mine.contains(name) {
            mine.push(name.clone());
            registry
                .entry(name.clone())
                .or_default()
                .push((id, tx.clone()));
        }
        sub_reply(
            ctx,
            if pattern { b"psubscribe" } else { b"subscribe" },
            Some(name),
        );
    }
    update_meta(ctx);
    Ok(())
}

fn remove_subscription(ctx: &mut Ctx<'_>, name: &Bytes, pattern: bool) -> bool {
    let id = ctx.client.id;
    let (mine, registry) = if pattern {
        (&mut ctx.client.patterns, &mut ctx.db.patterns)
    } else {
        (&mut ctx.client.channels, &mut ctx.db.channels)
    };
    let Some(pos) = mine.iter().position(|n| n == name) else {
        return false;
    };
    mine.remove(pos);
    if let Some(subs) = registry.get_mut(name) {
        subs.retain(|(cid, _)| *cid != id);
        if subs.is_empty() {
            registry.remove(name);
        }
    }
    true
}

/// Drops every channel (or pattern) subscription of the client, replying for each one when
/// `reply` is set.
pub(super) fn unsubscribe_all(ctx: &mut Ctx<'_>, pattern: bool) -> usize {
    let names = if pattern {
        ctx.client.patterns.clone()
    } else {
        ctx.client.channels.clone()
    };
    for n in &names {
        remove_subscription(ctx, n, pattern);
    }
    update_meta(ctx);
    names.len()
}

fn unsubscribe_generic(ctx: &mut Ctx<'_>, args: &[Bytes], pattern: bool) -> CmdResult {
    let kind: &[u8] = if pattern {
        b"punsubscribe"
    } else {
        b"unsubscribe"
    };
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else if pattern {
        ctx.client.patterns.clone()
    } else {
        ctx.client.channels.clone()
    };
    if names.is_empty() {
        sub_reply(ctx, kind, None);
    }
    for n in &names {
        remove_subscription(ctx, n, pattern);
        sub_reply(ctx, kind, Some(n));
    }
    update_meta(ctx);
    Ok(())
}

fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    subscribe_generic(ctx, args, false)
}
fn psubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    subscribe_generic(ctx, args, true)
}
fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    unsubscribe_generic(ctx, args, false)
}
fn punsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    unsubscribe_generic(ctx, args, true)
}

fn pubsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match sub.as_str() {
        "channels" if args.len() <= 3 => {
            let mut names: Vec<Bytes> = ctx
                .db
                .channels
                .keys()
                .filter(|c| args.get(2).is_none_or(|p| crate::glob::glob_match(p, c)))
                .cloned()
                .collect();
            names.sort();
            ctx.out.array(names.len());
            for n in names {
                ctx.out.bulk(&n);
            }
        }
        "numsub" => {
            ctx.out.map(args.len() - 2);
            for c in &args[2..] {
                let n = ctx.db.channels.get(c).map(|s| s.len()).unwrap_or(0);
                ctx.out.bulk(c);
                ctx.out.int(n as i64);
            }
        }
        "numpat" if args.len() == 2 => ctx.out.int(ctx.db.patterns.len() as i64),
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}
