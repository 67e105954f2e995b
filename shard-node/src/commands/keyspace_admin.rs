//! Keyspace-wide commands: DBSIZE, FLUSHDB, FLUSHALL, AA.DIGEST, AA.INSPECT; and TIME.
//!
//! Contract: replies match Redis 7.0; `FLUSHDB`/`FLUSHALL` are an observed remove of every key;
//! `AA.DIGEST` returns a digest of the visible keyspace that is equal on nodes holding equal
//! data; `AA.INSPECT` shows the replicated state of one key, for diagnosis (its format is not
//! stable).

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("dbsize", 1, "readonly fast", 0, 0, 0, "server", "Returns the number of keys in the database.", dbsize),
        cmd("time", 1, "fast loading stale", 0, 0, 0, "server", "Returns the server time.", time),
        cmd("flushdb", -1, "write", 0, 0, 0, "server", "Removes all keys.", flush),
        cmd("flushall", -1, "write", 0, 0, 0, "server", "Removes all keys.", flush),
        cmd("aa.inspect", 2, "readonly admin", 1, 1, 1, "crdt", "Shows the conflict-resolution state kept for a key.", inspect),
        cmd("aa.digest", 1, "readonly", 0, 0, 0, "crdt", "Returns a digest of the visible keyspace.", digest),
    ]
}

fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let n = ctx
        .db
        .ks
        .entries()
        .filter(|(_, e)| e.winner().is_some())
        .count();
    ctx.out.int(n as i64);
    Ok(())
}

fn time(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ctx.out.array(2);
    ctx.out.bulk(now.as_secs().to_string().as_bytes());
    ctx.out.bulk(now.subsec_micros().to_string().as_bytes());
    Ok(())
}

fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args.len() {
        1 => {}
        2 if is(&args[1], "async") || is(&args[1], "sync") => {}
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    }
    if !ctx.db.ks.is_empty() {
        ctx.write(vec![Op {
            key: Bytes::new(),
            kind: OpKind::FlushAll,
        }]);
    }
    ctx.db.ks.touch_all_watched();
    ctx.out.simple("OK");
    Ok(())
}

fn digest(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let d = ctx.db.ks.digest(ctx.now_ms);
    ctx.out.bulk(format!("{d:016x}").as_bytes());
    Ok(())
}

/// `AA.INSPECT key`: the replicated state of one key (every slot with its dots, timestamps,
/// increments and expiry votes) in a readable form, or nil. Two nodes whose `AA.DIGEST`
/// differ can be compared key by key with it.
fn inspect(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match ctx.db.ks.raw_entry(&args[1]) {
        Some(entry) => ctx.out.bulk(format!("{entry:?}").as_bytes()),
        None => ctx.out.null(),
    }
    Ok(())
}
