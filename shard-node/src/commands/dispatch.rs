//! Running one command for a client: the checks Redis makes before a command (unknown
//! command, arity, authentication, permissions, transactions, pub/sub context, memory,
//! persistence health), MULTI queueing, expiry of the keys it touches, then the handler.

use super::*;

/// Whether `args` from `client` must wait for the `CLIENT PAUSE` in force to end. `CLIENT`
/// itself never waits (so the pause can be lifted), nor does a command queued in `MULTI`; `EXEC`
/// waits in `WRITE` mode when a queued command writes.
pub fn paused(db: &Db, client: &ClientState, args: &[Bytes], now_ms: u64) -> bool {
    let Some(pause) = db.client_pause else {
        return false;
    };
    if now_ms >= pause.until_ms {
        return false;
    }
    let Some(command) = args.first().and_then(|name| lookup(name)) else {
        return false;
    };
    if command.name == "client" {
        return false;
    }
    if !pause.writes_only {
        return true;
    }
    // Scripts that may write wait too, as in Redis (not the `_RO` forms).
    let changes = |c: &Command, a: &[Bytes]| {
        writes(c, a)
            || matches!(
                c.name,
                "publish" | "spublish" | "eval" | "evalsha" | "fcall"
            )
    };
    match (&client.multi, command.name) {
        (Some(queued), "exec") => queued
            .iter()
            .filter_map(|q| q.first().and_then(|name| lookup(name)).map(|c| (c, q)))
            .any(|(c, q)| changes(c, q)),
        (Some(_), _) => false,
        (None, _) => changes(command, args),
    }
}

/// Runs one command for a client: every pre-check, MULTI queueing, expiry, then the handler.
/// `CLIENT REPLY OFF|SKIP` take back the reply it wrote. Returns what the command asks of the
/// connection next ([`AfterReply`]).
pub fn dispatch(
    db: &mut Db,
    client: &mut ClientState,
    args: &[Bytes],
    out: &mut bytes::BytesMut,
    now_ms: u64,
) -> Option<AfterReply> {
    let start = out.len();
    client.after_reply = None;
    dispatch_command(db, client, args, out, now_ms);
    if client.reply_off || std::mem::take(&mut client.reply_skip) {
        out.truncate(start);
    }
    if std::mem::take(&mut client.reply_skip_next) {
        client.reply_skip = true;
    }
    client.after_reply.take()
}

fn dispatch_command(
    db: &mut Db,
    client: &mut ClientState,
    args: &[Bytes],
    out: &mut bytes::BytesMut,
    now_ms: u64,
) {
    let proto = client.proto;
    let mut w = ReplyWriter::new(out, proto);
    let Some(command) = lookup(&args[0]) else {
        let mut shown = String::new();
        for a in &args[1..] {
            if shown.len() >= 128 {
                break;
            }
            let room = 128 - shown.len();
            let text = String::from_utf8_lossy(a);
            let cut: String = text.chars().take(room).collect();
            shown.push_str(&format!("'{cut}' "));
        }
        let name: String = String::from_utf8_lossy(&args[0])
            .chars()
            .take(128)
            .collect();
        flag_multi(client);
        reply_error(
            db,
            &mut w,
            &format!("ERR unknown command '{name}', with args beginning with: {shown}"),
        );
        return;
    };
    let argc = args.len() as i32;
    if (command.arity > 0 && argc != command.arity) || (command.arity < 0 && argc < -command.arity)
    {
        if command.name == "exec" {
            let reason = arity_error(command.name);
            abort_exec(
                db,
                client,
                &mut w,
                reason.strip_prefix("ERR ").unwrap_or(&reason),
            );
            return;
        }
        flag_multi(client);
        reply_error(db, &mut w, &arity_error(command.name));
        return;
    }
    if !client.authenticated && !command.flags.no_auth {
        flag_multi(client);
        reply_error(db, &mut w, "NOAUTH Authentication required.");
        return;
    }
    if let Err(denied) = crate::acl::check(&db.acl, &client.user, command, args) {
        if command.name == "exec" {
            abort_exec(db, client, &mut w, &denied.message());
            return;
        }
        flag_multi(client);
        if db.acl.user(&client.user).is_none() {
            // The user was removed: the connection ends, as in Redis.
            client.after_reply = Some(AfterReply::Close);
        }
        reply_error(db, &mut w, &denied.message());
        return;
    }
    if (client.subscribe_only || client.subscriptions() > 0 && proto == Protocol::Resp2)
        && !command.flags.allowed_in_subscribe
    {
        reply_error(
            db,
            &mut w,
            &format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                command.name
            ),
        );
        return;
    }
    if let Err(e) = cluster::route(db, client, command, args) {
        flag_multi(client);
        reply_error(db, &mut w, &e);
        return;
    }
    if let Err(e) = admission(db, command, args, now_ms) {
        flag_multi(client);
        reply_error(db, &mut w, &e);
        return;
    }
    if client.multi.is_some() && !command.flags.no_multi_queue {
        if let Some(q) = client.multi.as_mut() {
            q.push(args.to_vec());
        }
        w.simple("QUEUED");
        return;
    }
    run(db, client, command, args, w, now_ms);
}

/// Whether `args` changes the dataset: a write command, or a writing subcommand of a container
/// command whose own flags are empty, as in Redis (`XGROUP CREATE`…).
/// The largest `--max-effect-bytes`: an effect's encoding must fit a link frame's bulk limit
/// (512 MiB on every node) with room for its header, and a log record (1 GiB).
pub const MAX_EFFECT_BYTES: u64 = 511 * 1024 * 1024;

/// Bytes of the arguments of a command.
pub fn argument_bytes(args: &[Bytes]) -> u64 {
    args.iter().map(|a| a.len() as u64).sum()
}

/// The error for writes whose effect would carry `bytes` over the limit.
pub fn effect_too_large(bytes: u64, limit: u64, what: &str) -> CmdError {
    Cow::Owned(format!(
        "{what} would carry {bytes} bytes, more than one write may replicate (max-effect-bytes {limit}); split it into smaller writes"
    ))
}

pub fn writes(command: &Command, args: &[Bytes]) -> bool {
    command.flags.write
        || (command.name == "xgroup" && args.get(1).is_some_and(|sub| !is(sub, "help")))
}

/// Checks that depend on server state: memory limit and persistence health for writes.
pub(super) fn admission(
    db: &mut Db,
    command: &Command,
    args: &[Bytes],
    now_ms: u64,
) -> Result<(), CmdError> {
    let write = writes(command, args);
    if command.flags.denyoom {
        eviction::make_room(db, now_ms);
    }
    if command.flags.denyoom
        && db.settings.maxmemory > 0
        && eviction::counted_memory(db) > db.settings.maxmemory
    {
        return Err(Cow::Borrowed(
            "OOM command not allowed when used memory > 'maxmemory'.",
        ));
    }
    if write && !db.repl.is_primary() {
        return Err(Cow::Borrowed(
            "READONLY You can't write against a read only replica.",
        ));
    }
    if write {
        let bytes = argument_bytes(args);
        if bytes > db.settings.max_effect_bytes {
            return Err(effect_too_large(
                bytes,
                db.settings.max_effect_bytes,
                "ERR this write",
            ));
        }
    }
    if write && now_ms < db.repl.write_hold_until_ms {
        return Err(Cow::Borrowed(
            "READONLY this node restarted and does not take writes until it is told its role",
        ));
    }
    if write {
        if let Some(reason) = &db.persistence_error {
            return Err(Cow::Owned(format!(
                "MISCONF Errors writing to the AOF file: {reason}"
            )));
        }
    }
    Ok(())
}

/// Executes a command that passed the checks (also used by EXEC for queued commands).
pub fn run(
    db: &mut Db,
    client: &mut ClientState,
    command: &'static Command,
    args: &[Bytes],
    mut w: ReplyWriter<'_>,
    now_ms: u64,
) {
    if db.ks.keys_with_deadline() > 0 && db.repl.is_primary() {
        for pos in command.keys_in(args) {
            let key = &args[pos];
            if db.ks.needs_expiry_delete(key, now_ms, command.flags.write) {
                db.ks.commit(now_ms, vec![op(key, OpKind::Del)]);
                db.stats.expired_keys += 1;
            }
        }
    }
    let start = std::time::Instant::now();
    let reply_start = w.buf.len();
    let result = {
        let mut ctx = Ctx {
            db,
            client,
            out: ReplyWriter::new(w.buf, w.proto),
            now_ms,
            refused: None,
        };
        let result = (command.handler)(&mut ctx, args);
        match ctx.refused.take() {
            Some(refusal) => Err(refusal),
            None => result,
        }
    };
    if result.is_err() {
        // A refused write replaces whatever reply the command had begun.
        w.buf.truncate(reply_start);
    }
    let micros = start.elapsed().as_micros() as u64;
    slowlog::record(db, client, command, args, micros, now_ms);
    latency::record(db, command.name, micros);
    let entry = db.stats.commands.entry(command.name).or_insert((0, 0));
    entry.0 += 1;
    entry.1 += micros;
    db.stats.total_commands += 1;
    if let Err(e) = result {
        reply_error(db, &mut w, &e);
    }
}

/// An `EXEC` refused before it runs: Redis aborts the transaction and says why.
fn abort_exec(db: &mut Db, client: &mut ClientState, w: &mut ReplyWriter<'_>, reason: &str) {
    client.forget_transaction();
    reply_error(
        db,
        w,
        &format!("EXECABORT Transaction discarded because of: {reason}"),
    );
}

fn flag_multi(client: &mut ClientState) {
    if client.multi.is_some() {
        client.multi_dirty = true;
    }
}

/// Writes an error reply and counts it by its prefix.
pub fn reply_error(db: &mut Db, w: &mut ReplyWriter<'_>, text: &str) {
    let prefix = text.split(' ').next().unwrap_or("ERR").to_string();
    *db.stats.error_replies.entry(prefix).or_insert(0) += 1;
    w.error(text);
}
