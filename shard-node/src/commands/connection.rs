//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.
//!
//! Contract: replies match Redis 7.0. AUTH and `HELLO … AUTH` check a user's password
//! ([`crate::acl`]); `AUTH <password>` is for the `default` user. Only database 0 exists. RESET
//! ends a transaction, drops watched keys and subscriptions, and returns the connection to
//! RESP2, without a name, as the `default` user (unauthenticated when it needs a password).

use super::client::{set_client_name, validate_client_name};
use super::info::REDIS_COMPAT_VERSION;
use super::pubsub::unsubscribe_all;
use super::*;
use crate::resp::Protocol;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("ping", -1, "fast subscribe_ok", 0, 0, 0, "connection", "Returns the server's liveliness response.", ping),
        cmd("echo", 2, "fast loading stale", 0, 0, 0, "connection", "Returns the given string.", echo),
        cmd("hello", -1, "fast no_auth loading stale", 0, 0, 0, "connection", "Handshakes with the server.", hello),
        cmd("auth", -2, "fast no_auth loading stale", 0, 0, 0, "connection", "Authenticates the connection.", auth),
        cmd("select", 2, "fast loading stale", 0, 0, 0, "connection", "Changes the selected database.", select),
        cmd("quit", -1, "fast no_auth loading stale subscribe_ok no_queue", 0, 0, 0, "connection", "Closes the connection.", quit),
        cmd("reset", 1, "fast no_auth loading stale subscribe_ok no_queue", 0, 0, 0, "connection", "Resets the connection.", reset),
    ]
}

fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 {
        return Err(arity_error("ping"));
    }
    if ctx.client.subscriptions() > 0 && ctx.client.proto == Protocol::Resp2 {
        ctx.out.array(2);
        ctx.out.bulk(b"pong");
        ctx.out.bulk(args.get(1).map(|a| &a[..]).unwrap_or(b""));
        return Ok(());
    }
    match args.get(1) {
        Some(msg) => ctx.out.bulk(msg),
        None => ctx.out.simple("PONG"),
    }
    Ok(())
}

fn echo(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ctx.out.bulk(&args[1]);
    Ok(())
}

/// Checks a user's password (`None`: the `default` user); on success the connection is
/// authenticated as that user.
fn check_password(ctx: &mut Ctx<'_>, user: Option<&[u8]>, pass: &[u8]) -> CmdResult {
    if user.is_none() && ctx.db.acl.default_is_open() {
        return Err(Cow::Borrowed("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"));
    }
    let name = user.unwrap_or(crate::acl::DEFAULT_USER.as_bytes());
    let found = ctx.db.acl.authenticate(name, pass).map(|u| u.name.clone());
    match found {
        Ok(name) => {
            ctx.client.authenticated = true;
            ctx.client.user = name;
            Ok(())
        }
        Err(e) => Err(Cow::Borrowed(e)),
    }
}

fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args.len() {
        2 => check_password(ctx, None, &args[1])?,
        3 => check_password(ctx, Some(&args[1]), &args[2])?,
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    }
    ctx.out.simple("OK");
    Ok(())
}

fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut proto = ctx.client.proto;
    let mut i = 1;
    if let Some(v) = args.get(1) {
        let Some(n) = crate::resp::parse_i64_strict(v) else {
            return Err(Cow::Borrowed(
                "ERR Protocol version is not an integer or out of range",
            ));
        };
        proto = match n {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => return Err(Cow::Borrowed("NOPROTO unsupported protocol version")),
        };
        i = 2;
    }
    let mut setname = None;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "auth") && more >= 2 {
            check_password(ctx, Some(&args[i + 1]), &args[i + 2])?;
            i += 3;
        } else if is(&args[i], "setname") && more >= 1 {
            let name = args[i + 1].clone();
            validate_client_name(&name)?;
            setname = Some(name);
            i += 2;
        } else {
            return Err(Cow::Owned(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            )));
        }
    }
    if !ctx.client.authenticated {
        return Err(Cow::Borrowed("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
    }
    if let Some(name) = setname {
        set_client_name(ctx, Some(name));
    }
    ctx.client.proto = proto;
    ctx.out.proto = proto;
    if let Some(meta) = ctx.db.clients.get_mut(&ctx.client.id) {
        meta.proto = proto;
    }
    ctx.out.map(7);
    ctx.out.bulk(b"server");
    ctx.out.bulk(b"redis");
    ctx.out.bulk(b"version");
    ctx.out.bulk(REDIS_COMPAT_VERSION.as_bytes());
    ctx.out.bulk(b"proto");
    ctx.out.int(if proto == Protocol::Resp3 { 3 } else { 2 });
    ctx.out.bulk(b"id");
    ctx.out.int(ctx.client.id as i64);
    ctx.out.bulk(b"mode");
    ctx.out.bulk(b"standalone");
    ctx.out.bulk(b"role");
    ctx.out.bulk(b"master");
    ctx.out.bulk(b"modules");
    ctx.out.array(0);
    Ok(())
}

fn select(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = crate::resp::parse_i64_strict(&args[1])
        .ok_or(Cow::Borrowed("ERR value is not an integer or out of range"))?;
    if n != 0 {
        return Err(Cow::Borrowed("ERR DB index is out of range"));
    }
    ctx.out.simple("OK");
    Ok(())
}

fn quit(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.then(super::AfterReply::Close);
    ctx.out.simple("OK");
    Ok(())
}

fn reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.client.forget_transaction();
    unsubscribe_all(ctx, false);
    unsubscribe_all(ctx, true);
    ctx.client.proto = Protocol::Resp2;
    ctx.out.proto = Protocol::Resp2;
    ctx.client.name = None;
    ctx.client.user = crate::acl::DEFAULT_USER.to_string();
    ctx.client.authenticated = ctx.db.acl.default_is_open();
    ctx.out.simple("RESET");
    Ok(())
}
