//! Persistence commands: BGREWRITEAOF, BGSAVE, SAVE, LASTSAVE, SHUTDOWN.
//!
//! Contract: replies match Redis 7.0. BGREWRITEAOF, BGSAVE and SAVE only set
//! `db.requests.compact` and SHUTDOWN only sets `db.requests.shutdown` (it writes no reply
//! and closes the connection); the server layer does the compaction or the stop. LASTSAVE
//! reports the server's start time.

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("bgrewriteaof", 1, "admin", 0, 0, 0, "server", "Compacts the effect log into a snapshot.", bgrewriteaof),
        cmd("bgsave", -1, "admin", 0, 0, 0, "server", "Compacts the effect log into a snapshot.", bgsave),
        cmd("save", 1, "admin", 0, 0, 0, "server", "Compacts the effect log into a snapshot.", bgsave),
        cmd("lastsave", 1, "fast loading stale", 0, 0, 0, "server", "Returns the time of the last snapshot.", lastsave),
        cmd("shutdown", -1, "admin no_auth", 0, 0, 0, "server", "Stops the server gracefully.", shutdown),
    ]
}

fn bgrewriteaof(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.db.requests.compact = true;
    ctx.out
        .simple("Background append only file rewriting started");
    Ok(())
}

fn bgsave(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ctx.db.requests.compact = true;
    if is(&args[0], "save") {
        ctx.out.simple("OK");
    } else {
        ctx.out.simple("Background saving started");
    }
    Ok(())
}

fn lastsave(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.out.int((ctx.db.started_ms / 1000) as i64);
    Ok(())
}

fn shutdown(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    for a in &args[1..] {
        if !(is(a, "nosave") || is(a, "save") || is(a, "now") || is(a, "force") || is(a, "abort")) {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    if !ctx.client.authenticated {
        return Err(Cow::Borrowed("NOAUTH Authentication required."));
    }
    ctx.db.requests.shutdown = true;
    ctx.then(super::AfterReply::Close);
    Ok(())
}
