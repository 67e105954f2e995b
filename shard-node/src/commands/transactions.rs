//! Transaction commands: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! Contract: replies match Redis 7.0; `EXEC` applies the queued commands as one effect.

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("multi", 1, "fast loading stale no_queue", 0, 0, 0, "transactions", "Starts a transaction.", multi),
        cmd("exec", 1, "loading stale no_queue", 0, 0, 0, "transactions", "Executes all commands in a transaction.", exec),
        cmd("discard", 1, "fast loading stale no_queue", 0, 0, 0, "transactions", "Discards a transaction.", discard),
        cmd("watch", -2, "fast loading stale no_queue", 1, -1, 1, "transactions", "Monitors changes to keys.", watch),
        cmd("unwatch", 1, "fast loading stale", 0, 0, 0, "transactions", "Forgets all watched keys.", unwatch),
    ]
}

fn multi(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err(Cow::Borrowed("ERR MULTI calls can not be nested"));
    }
    ctx.client.multi = Some(Vec::new());
    ctx.client.multi_dirty = false;
    ctx.out.simple("OK");
    Ok(())
}

fn discard(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_none() {
        return Err(Cow::Borrowed("ERR DISCARD without MULTI"));
    }
    ctx.client.forget_transaction();
    ctx.out.simple("OK");
    Ok(())
}

fn exec(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let Some(queued) = ctx.client.multi.take() else {
        return Err(Cow::Borrowed("ERR EXEC without MULTI"));
    };
    let watched = std::mem::take(&mut ctx.client.watched);
    if std::mem::take(&mut ctx.client.multi_dirty) {
        return Err(Cow::Borrowed(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    // One transaction is one effect: its writes together must fit.
    let bytes: u64 = queued
        .iter()
        .filter(|args| lookup(&args[0]).is_some_and(|c| writes(c, args)))
        .map(|args| argument_bytes(args))
        .sum();
    if bytes > ctx.db.settings.max_effect_bytes {
        return Err(effect_too_large(
            bytes,
            ctx.db.settings.max_effect_bytes,
            "EXECABORT Transaction discarded: its writes",
        ));
    }
    let touched = watched
        .iter()
        .any(|(k, v)| ctx.db.ks.watch_version(k) != *v);
    if touched {
        ctx.out.null_array();
        return Ok(());
    }
    ctx.out.array(queued.len());
    ctx.db.ks.begin_batch();
    for args in &queued {
        let Some(command) = lookup(&args[0]) else {
            ctx.out.error("ERR unknown command");
            continue;
        };
        if let Err(e) = admission(ctx.db, command, args, ctx.now_ms) {
            reply_error(ctx.db, &mut ctx.out, &e);
            continue;
        }
        let w = ReplyWriter::new(ctx.out.buf, ctx.out.proto);
        run(ctx.db, ctx.client, command, args, w, ctx.now_ms);
        ctx.out.proto = ctx.client.proto;
    }
    ctx.db.ks.end_batch();
    Ok(())
}

fn watch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err(Cow::Borrowed("ERR WATCH inside MULTI is not allowed"));
    }
    for key in &args[1..] {
        if !ctx.client.watched.iter().any(|(k, _)| k == key) {
            let v = ctx.db.ks.watch(key);
            ctx.client.watched.push((key.clone(), v));
        }
    }
    ctx.out.simple("OK");
    Ok(())
}

fn unwatch(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.client.watched.clear();
    ctx.out.simple("OK");
    Ok(())
}
