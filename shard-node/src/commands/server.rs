//! Connection, server, transaction and pub/sub commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT,
//! RESET, CLIENT, COMMAND, INFO, CONFIG, DBSIZE, TIME, ROLE, FLUSHDB, FLUSHALL, MULTI, EXEC,
//! DISCARD, WATCH, UNWATCH, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBSUB,
//! BGREWRITEAOF, BGSAVE, SAVE, LASTSAVE, SHUTDOWN, AA.DIGEST.
//!
//! Contract: replies match Redis 7.0; `FLUSHDB`/`FLUSHALL` are an observed remove of every key;
//! `EXEC` applies the queued commands as one effect; `AA.DIGEST` returns a digest of the
//! visible keyspace that is equal on nodes holding equal data.

use super::*;
use crate::resp::Protocol;

/// The Redis version shard-node reports to clients (the command set it follows).
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

pub fn commands() -> Vec<Command> {
    vec![
        cmd(
            "ping",
            -1,
            "fast subscribe_ok",
            0,
            0,
            0,
            "connection",
            "Returns the server's liveliness response.",
            ping,
        ),
        cmd(
            "echo",
            2,
            "fast",
            0,
            0,
            0,
            "connection",
            "Returns the given string.",
            echo,
        ),
        cmd(
            "hello",
            -1,
            "fast no_auth",
            0,
            0,
            0,
            "connection",
            "Handshakes with the server.",
            hello,
        ),
        cmd(
            "auth",
            -2,
            "fast no_auth",
            0,
            0,
            0,
            "connection",
            "Authenticates the connection.",
            auth,
        ),
        cmd(
            "select",
            2,
            "fast",
            0,
            0,
            0,
            "connection",
            "Changes the selected database.",
            select,
        ),
        cmd(
            "quit",
            -1,
            "fast no_auth subscribe_ok no_queue",
            0,
            0,
            0,
            "connection",
            "Closes the connection.",
            quit,
        ),
        cmd(
            "reset",
            1,
            "fast no_auth subscribe_ok no_queue",
            0,
            0,
            0,
            "connection",
            "Resets the connection.",
            reset,
        ),
        cmd(
            "client",
            -2,
            "admin",
            0,
            0,
            0,
            "connection",
            "A container for client connection commands.",
            client,
        ),
        cmd(
            "command",
            -1,
            "loading stale",
            0,
            0,
            0,
            "server",
            "Returns detailed information about all commands.",
            command,
        ),
        cmd(
            "info",
            -1,
            "loading stale",
            0,
            0,
            0,
            "server",
            "Returns information and statistics about the server.",
            info,
        ),
        cmd(
            "config",
            -2,
            "admin",
            0,
            0,
            0,
            "server",
            "A container for server configuration commands.",
            config,
        ),
        cmd(
            "dbsize",
            1,
            "readonly fast",
            0,
            0,
            0,
            "server",
            "Returns the number of keys in the database.",
            dbsize,
        ),
        cmd(
            "time",
            1,
            "fast",
            0,
            0,
            0,
            "server",
            "Returns the server time.",
            time,
        ),
        cmd(
            "flushdb",
            -1,
            "write",
            0,
            0,
            0,
            "server",
            "Removes all keys.",
            flush,
        ),
        cmd(
            "flushall",
            -1,
            "write",
            0,
            0,
            0,
            "server",
            "Removes all keys.",
            flush,
        ),
        cmd(
            "multi",
            1,
            "fast no_queue",
            0,
            0,
            0,
            "transactions",
            "Starts a transaction.",
            multi,
        ),
        cmd(
            "exec",
            1,
            "no_queue",
            0,
            0,
            0,
            "transactions",
            "Executes all commands in a transaction.",
            exec,
        ),
        cmd(
            "discard",
            1,
            "fast no_queue",
            0,
            0,
            0,
            "transactions",
            "Discards a transaction.",
            discard,
        ),
        cmd(
            "watch",
            -2,
            "fast no_queue",
            1,
            -1,
            1,
            "transactions",
            "Monitors changes to keys.",
            watch,
        ),
        cmd(
            "unwatch",
            1,
            "fast",
            0,
            0,
            0,
            "transactions",
            "Forgets all watched keys.",
            unwatch,
        ),
        cmd(
            "publish",
            3,
            "pubsub fast",
            0,
            0,
            0,
            "pubsub",
            "Posts a message to a channel.",
            publish,
        ),
        cmd(
            "subscribe",
            -2,
            "pubsub subscribe_ok",
            0,
            0,
            0,
            "pubsub",
            "Listens for messages on channels.",
            subscribe,
        ),
        cmd(
            "unsubscribe",
            -1,
            "pubsub subscribe_ok",
            0,
            0,
            0,
            "pubsub",
            "Stops listening to channels.",
            unsubscribe,
        ),
        cmd(
            "psubscribe",
            -2,
            "pubsub subscribe_ok",
            0,
            0,
            0,
            "pubsub",
            "Listens for messages on channel patterns.",
            psubscribe,
        ),
        cmd(
            "punsubscribe",
            -1,
            "pubsub subscribe_ok",
            0,
            0,
            0,
            "pubsub",
            "Stops listening to channel patterns.",
            punsubscribe,
        ),
        cmd(
            "pubsub",
            -2,
            "pubsub",
            0,
            0,
            0,
            "pubsub",
            "A container for pub/sub introspection.",
            pubsub,
        ),
        cmd(
            "bgrewriteaof",
            1,
            "admin",
            0,
            0,
            0,
            "server",
            "Compacts the effect log into a snapshot.",
            bgrewriteaof,
        ),
        cmd(
            "bgsave",
            -1,
            "admin",
            0,
            0,
            0,
            "server",
            "Compacts the effect log into a snapshot.",
            bgsave,
        ),
        cmd(
            "save",
            1,
            "admin",
            0,
            0,
            0,
            "server",
            "Compacts the effect log into a snapshot.",
            bgsave,
        ),
        cmd(
            "lastsave",
            1,
            "fast",
            0,
            0,
            0,
            "server",
            "Returns the time of the last snapshot.",
            lastsave,
        ),
        cmd(
            "shutdown",
            -1,
            "admin no_auth",
            0,
            0,
            0,
            "server",
            "Stops the server gracefully.",
            shutdown,
        ),
        cmd(
            "aa.digest",
            1,
            "readonly",
            0,
            0,
            0,
            "crdt",
            "Returns a digest of the visible keyspace.",
            digest,
        ),
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

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Checks a password (user must be `default`); `Ok(())` when accepted.
fn check_password(ctx: &mut Ctx<'_>, user: Option<&[u8]>, pass: &[u8]) -> CmdResult {
    if let Some(u) = user {
        if u != b"default" {
            return Err(Cow::Borrowed(WRONGPASS));
        }
    }
    match &ctx.db.settings.requirepass {
        None => {
            if user.is_none() {
                return Err(Cow::Borrowed("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"));
            }
            ctx.client.authenticated = true;
            Ok(())
        }
        Some(p) if &p[..] == pass => {
            ctx.client.authenticated = true;
            Ok(())
        }
        Some(_) => Err(Cow::Borrowed(WRONGPASS)),
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
    ctx.client.close_after_reply = true;
    ctx.out.simple("OK");
    Ok(())
}

fn reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.client.multi = None;
    ctx.client.multi_dirty = false;
    ctx.client.watched.clear();
    unsubscribe_all(ctx, false);
    unsubscribe_all(ctx, true);
    ctx.client.proto = Protocol::Resp2;
    ctx.out.proto = Protocol::Resp2;
    ctx.client.name = None;
    if ctx.db.settings.requirepass.is_some() {
        ctx.client.authenticated = false;
    }
    ctx.out.simple("RESET");
    Ok(())
}

fn validate_client_name(name: &[u8]) -> CmdResult {
    if name.iter().any(|b| *b < b'!' || *b > b'~') {
        return Err(Cow::Borrowed(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

fn set_client_name(ctx: &mut Ctx<'_>, name: Option<Bytes>) {
    let name = name.filter(|n| !n.is_empty());
    ctx.client.name = name.clone();
    if let Some(meta) = ctx.db.clients.get_mut(&ctx.client.id) {
        meta.name = name;
    }
}

/// One `CLIENT LIST` line for a client.
fn client_line(meta: &ClientMeta, now_ms: u64) -> String {
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db=0 sub={} psub={} ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={}\n",
        meta.id,
        meta.addr,
        meta.laddr,
        meta.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default(),
        now_ms.saturating_sub(meta.created_ms) / 1000,
        now_ms.saturating_sub(meta.last_ms) / 1000,
        meta.sub,
        meta.psub,
        meta.multi,
        meta.last_cmd,
        if meta.proto == Protocol::Resp3 { 3 } else { 2 },
    )
}

fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    let wrong = || arity_error(&format!("client|{sub}"));
    match sub.as_str() {
        "id" if args.len() == 2 => ctx.out.int(ctx.client.id as i64),
        "setname" if args.len() == 3 => {
            validate_client_name(&args[2])?;
            set_client_name(ctx, Some(args[2].clone()));
            ctx.out.simple("OK");
        }
        "getname" if args.len() == 2 => {
            let name = ctx.client.name.clone();
            ctx.out.bulk_or_null(name.as_deref());
        }
        "list" => {
            let text: String = ctx
                .db
                .clients
                .values()
                .map(|m| client_line(m, ctx.now_ms))
                .collect();
            ctx.out.verbatim("txt", text.as_bytes());
        }
        "info" if args.len() == 2 => {
            let text = ctx
                .db
                .clients
                .get(&ctx.client.id)
                .map(|m| client_line(m, ctx.now_ms))
                .unwrap_or_default();
            ctx.out.verbatim("txt", text.as_bytes());
        }
        "setinfo" if args.len() == 4 => ctx.out.simple("OK"),
        "pause" if args.len() == 3 || args.len() == 4 => {
            let timeout = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|t| *t <= i64::MAX as u64)
                .ok_or(Cow::Borrowed(
                    "ERR timeout is not an integer or out of range",
                ))?;
            let writes_only = match args.get(3).map(|m| lower(m)).as_deref() {
                None | Some("all") => false,
                Some("write") => true,
                Some(_) => return Err(Cow::Borrowed("ERR syntax error")),
            };
            ctx.db.client_pause = Some(crate::commands::ClientPause {
                until_ms: ctx.now_ms.saturating_add(timeout),
                writes_only,
            });
            ctx.db.pause_changed = true;
            ctx.out.simple("OK");
        }
        "unpause" if args.len() == 2 => {
            ctx.db.client_pause = None;
            ctx.db.pause_changed = true;
            ctx.out.simple("OK");
        }
        "no-evict" | "no-touch" if args.len() == 3 => ctx.out.simple("OK"),
        "help" => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ID",
                "    Return the ID of the current connection.",
                "GETNAME",
                "    Return the name of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST",
                "    Return information about client connections.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "PAUSE <timeout> [WRITE|ALL]",
                "    Suspend clients' commands (only writes with WRITE) for <timeout> milliseconds.",
                "UNPAUSE",
                "    Resume the commands of paused clients.",
                "HELP",
                "    Print this help.",
            ];
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.simple(l);
            }
        }
        "id" | "setname" | "getname" | "info" | "setinfo" | "no-evict" | "no-touch" | "pause"
        | "unpause" => return Err(wrong()),
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}

fn flag_names(c: &Command) -> Vec<&'static str> {
    let f = c.flags;
    let mut out = Vec::new();
    if f.write {
        out.push("write");
    }
    if f.readonly {
        out.push("readonly");
    }
    if f.denyoom {
        out.push("denyoom");
    }
    if f.admin {
        out.push("admin");
    }
    if f.pubsub {
        out.push("pubsub");
    }
    if f.loading {
        out.push("loading");
    }
    if f.stale {
        out.push("stale");
    }
    if f.fast {
        out.push("fast");
    }
    if f.no_auth {
        out.push("no_auth");
    }
    out
}

fn command_info(ctx: &mut Ctx<'_>, c: &Command) {
    let flags = flag_names(c);
    ctx.out.array(10);
    ctx.out.bulk(c.name.as_bytes());
    ctx.out.int(i64::from(c.arity));
    ctx.out.set(flags.len());
    for f in flags {
        ctx.out.simple(f);
    }
    ctx.out.int(i64::from(c.first_key));
    ctx.out.int(i64::from(c.last_key));
    ctx.out.int(i64::from(c.step));
    ctx.out.set(1);
    ctx.out.simple(&format!("@{}", c.group));
    ctx.out.set(0);
    ctx.out.set(0);
    ctx.out.set(0);
}

fn command_docs_entry(ctx: &mut Ctx<'_>, c: &Command) {
    ctx.out.bulk(c.name.as_bytes());
    ctx.out.map(3);
    ctx.out.bulk(b"summary");
    ctx.out.bulk(c.summary.as_bytes());
    ctx.out.bulk(b"since");
    ctx.out.bulk(b"1.0.0");
    ctx.out.bulk(b"group");
    ctx.out.bulk(c.group.as_bytes());
}

fn command(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut all: Vec<&'static Command> = table().values().collect();
    all.sort_by_key(|c| c.name);
    if args.len() == 1 {
        ctx.out.array(all.len());
        for c in all {
            command_info(ctx, c);
        }
        return Ok(());
    }
    let sub = lower(&args[1]);
    match sub.as_str() {
        "count" if args.len() == 2 => ctx.out.int(all.len() as i64),
        "info" => {
            let wanted: Vec<Option<&'static Command>> = if args.len() == 2 {
                all.iter().map(|c| Some(*c)).collect()
            } else {
                args[2..].iter().map(|n| lookup(n)).collect()
            };
            ctx.out.array(wanted.len());
            for c in wanted {
                match c {
                    Some(c) => command_info(ctx, c),
                    None => ctx.out.null_array(),
                }
            }
        }
        "docs" => {
            // Argument documentation is not carried in the command table. Without names we
            // refuse, and redis-cli then uses its own complete help (argument hints included);
            // named commands get their summary, group and version.
            if args.len() == 2 {
                return Err(Cow::Borrowed(
                    "ERR COMMAND DOCS needs command names on this server; redis-cli falls back to its built-in help",
                ));
            }
            let wanted: Vec<&'static Command> =
                args[2..].iter().filter_map(|n| lookup(n)).collect();
            ctx.out.map(wanted.len());
            for c in wanted {
                command_docs_entry(ctx, c);
            }
        }
        "list" => {
            ctx.out.array(all.len());
            for c in all {
                ctx.out.bulk(c.name.as_bytes());
            }
        }
        "getkeys" if args.len() >= 3 => {
            let Some(c) = lookup(&args[2]) else {
                return Err(Cow::Borrowed("ERR Invalid command specified"));
            };
            let keys: Vec<Bytes> = c
                .key_positions(args.len() - 2)
                .map(|p| args[p + 2].clone())
                .collect();
            if keys.is_empty() {
                return Err(Cow::Borrowed("ERR The command has no key arguments"));
            }
            ctx.out.array(keys.len());
            for k in keys {
                ctx.out.bulk(&k);
            }
        }
        "count" => return Err(arity_error("command|count")),
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}

/// Formats `bytes` the way Redis's INFO prints memory (`1.50M`).
fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{}B", n as u64)
    } else if n < 1024.0 * 1024.0 {
        format!("{:.2}K", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", n / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", n / 1024.0 / 1024.0 / 1024.0)
    }
}

/// The text of INFO for the requested sections.
pub fn info_text(db: &Db, sections: &[String], now_ms: u64) -> String {
    let everything = sections.is_empty()
        || sections
            .iter()
            .any(|s| s == "all" || s == "everything" || s == "default");
    let want = |name: &str| everything || sections.iter().any(|s| s == name);
    let mut out = String::new();
    let mut section = |title: &str, body: String| {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str("# ");
        out.push_str(title);
        out.push_str("\r\n");
        out.push_str(&body);
    };
    let uptime = now_ms.saturating_sub(db.started_ms) / 1000;
    if want("server") {
        section(
            "Server",
            format!(
                "redis_version:{REDIS_COMPAT_VERSION}\r\nshard_node_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:shard-node\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                db.run_id,
                db.tcp_port,
                uptime,
                uptime / 86400
            ),
        );
    }
    if want("clients") {
        let blocked = 0;
        section(
            "Clients",
            format!(
                "connected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{blocked}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n",
                db.clients.len(),
                db.settings.maxclients,
                db.channels.len(),
                db.patterns.len()
            ),
        );
    }
    if want("memory") {
        section(
            "Memory",
            format!(
                "used_memory:{}\r\nused_memory_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:noeviction\r\n",
                db.used_memory,
                human_bytes(db.used_memory),
                db.settings.maxmemory,
                human_bytes(db.settings.maxmemory)
            ),
        );
    }
    if want("persistence") {
        section(
            "Persistence",
            format!(
                "loading:0\r\naof_enabled:{}\r\naof_last_write_status:{}\r\n{}",
                u8::from(db.settings.appendonly),
                if db.persistence_error.is_some() {
                    "err"
                } else {
                    "ok"
                },
                db.info_extra
                    .get("persistence")
                    .cloned()
                    .unwrap_or_default()
            ),
        );
    }
    if want("stats") {
        section(
            "Stats",
            format!(
                "total_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\ntotal_error_replies:{}\r\n",
                db.stats.total_connections,
                db.stats.total_commands,
                db.stats.rejected_connections,
                db.stats.expired_keys,
                db.stats.keyspace_hits,
                db.stats.keyspace_misses,
                db.channels.len(),
                db.stats.error_replies.values().sum::<u64>()
            ),
        );
    }
    if want("replication") {
        section("Replication", db.repl.info(now_ms));
    }
    if want("commandstats") {
        let mut names: Vec<&&'static str> = db.stats.commands.keys().collect();
        names.sort();
        let body: String = names
            .into_iter()
            .map(|n| {
                let (calls, usec) = db.stats.commands[n];
                format!(
                    "cmdstat_{n}:calls={calls},usec={usec},usec_per_call={:.2},rejected_calls=0,failed_calls=0\r\n",
                    usec as f64 / calls.max(1) as f64
                )
            })
            .collect();
        section("Commandstats", body);
    }
    if want("errorstats") {
        let mut names: Vec<&String> = db.stats.error_replies.keys().collect();
        names.sort();
        let body: String = names
            .into_iter()
            .map(|n| format!("errorstat_{n}:count={}\r\n", db.stats.error_replies[n]))
            .collect();
        section("Errorstats", body);
    }
    if want("crdt") {
        let clock: Vec<String> = db
            .ks
            .clock()
            .iter()
            .map(|(a, s)| format!("{a}:{s}"))
            .collect();
        section(
            "CRDT",
            format!(
                "crdt_participant:{}\r\ncrdt_shard:{}\r\ncrdt_epoch:{}\r\ncrdt_actor:{}\r\ncrdt_vector_clock:{}\r\ncrdt_effects_applied:{}\r\ncrdt_tombstones_pending:{}\r\n{}",
                db.ks.actor().participant,
                db.ks.actor().shard,
                crate::crdt::clock::generation_of(db.ks.actor().epoch),
                db.ks.actor_id(),
                clock.join(","),
                db.ks.effects_applied,
                db.ks.tombstones_pending(),
                db.repl.crdt_info(db.ks.clock(), now_ms)
            ),
        );
    }
    if want("keyspace") {
        let body = if db.ks.is_empty() {
            String::new()
        } else {
            format!(
                "db0:keys={},expires={},avg_ttl=0\r\n",
                db.ks.len(),
                db.ks.keys_with_deadline()
            )
        };
        section("Keyspace", body);
    }
    out
}

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sections: Vec<String> = args[1..].iter().map(|a| lower(a)).collect();
    let text = info_text(ctx.db, &sections, ctx.now_ms);
    ctx.out.verbatim("txt", text.as_bytes());
    Ok(())
}

/// Parses a memory size like Redis's config: `100`, `10kb`, `5mb`, `1gb`, `2k`, `3m`, `4g`.
pub fn parse_memory(text: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(text).ok()?.to_ascii_lowercase();
    let units: [(&str, u64); 6] = [
        ("kb", 1024),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1000 * 1000),
        ("g", 1000 * 1000 * 1000),
    ];
    for (suffix, mul) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<u64>().ok()?.checked_mul(mul);
        }
    }
    s.parse().ok()
}

fn config_values(db: &Db) -> Vec<(&'static str, String)> {
    let s = &db.settings;
    vec![
        ("appendfsync", s.appendfsync.clone()),
        ("appendonly", if s.appendonly { "yes" } else { "no" }.into()),
        ("bind", s.bind.clone()),
        ("databases", s.databases.to_string()),
        ("dir", s.dir.clone()),
        ("maxclients", s.maxclients.to_string()),
        ("maxmemory", s.maxmemory.to_string()),
        ("maxmemory-policy", "noeviction".into()),
        ("port", s.port.to_string()),
        ("proto-max-bulk-len", s.proto_max_bulk_len.to_string()),
        (
            "requirepass",
            s.requirepass
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
        ),
        ("save", String::new()),
        ("timeout", s.timeout.to_string()),
    ]
}

fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match sub.as_str() {
        "get" => {
            if args.len() < 3 {
                return Err(arity_error("config|get"));
            }
            let values = config_values(ctx.db);
            let mut picked: Vec<(&'static str, String)> = Vec::new();
            for pattern in &args[2..] {
                let p = String::from_utf8_lossy(pattern).to_ascii_lowercase();
                for (name, value) in &values {
                    if super::sets::glob_match(p.as_bytes(), name.as_bytes())
                        && !picked.iter().any(|(n, _)| n == name)
                    {
                        picked.push((name, value.clone()));
                    }
                }
            }
            ctx.out.map(picked.len());
            for (name, value) in picked {
                ctx.out.bulk(name.as_bytes());
                ctx.out.bulk(value.as_bytes());
            }
        }
        "set" => {
            if args.len() < 4 || !args.len().is_multiple_of(2) {
                return Err(arity_error("config|set"));
            }
            // Validate everything first so a failing CONFIG SET changes nothing.
            let mut updates = Vec::new();
            for pair in args[2..].chunks(2) {
                let name = lower(&pair[0]);
                let value = &pair[1];
                let bad = |reason: &str| {
                    Cow::Owned(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
                    ))
                };
                match name.as_str() {
                    "maxmemory" => {
                        parse_memory(value)
                            .ok_or_else(|| bad("argument must be a memory value"))?;
                    }
                    "maxclients" | "timeout" => {
                        crate::resp::parse_i64_strict(value)
                            .filter(|n| *n >= 0)
                            .ok_or_else(|| bad("argument couldn't be parsed into an integer"))?;
                    }
                    "appendfsync" => {
                        let v = lower(value);
                        if !matches!(v.as_str(), "always" | "everysec" | "no") {
                            return Err(bad(
                                "argument(s) must be one of the following: always, everysec, no",
                            ));
                        }
                    }
                    "maxmemory-policy" => {
                        if lower(value) != "noeviction" {
                            return Err(bad("only noeviction is supported"));
                        }
                    }
                    "requirepass" => {}
                    "port" | "bind" | "dir" | "databases" | "appendonly" | "proto-max-bulk-len"
                    | "save" => {
                        return Err(bad("can't set immutable config"));
                    }
                    _ => {
                        return Err(Cow::Owned(format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                        )))
                    }
                }
                updates.push((name, value.clone()));
            }
            for (name, value) in updates {
                let s = &mut ctx.db.settings;
                match name.as_str() {
                    "maxmemory" => s.maxmemory = parse_memory(&value).unwrap_or(0),
                    "maxclients" => {
                        s.maxclients = crate::resp::parse_i64_strict(&value).unwrap_or(0) as u64
                    }
                    "timeout" => {
                        s.timeout = crate::resp::parse_i64_strict(&value).unwrap_or(0) as u64
                    }
                    "appendfsync" => s.appendfsync = lower(&value),
                    "requirepass" => {
                        s.requirepass = if value.is_empty() { None } else { Some(value) }
                    }
                    _ => {}
                }
            }
            ctx.out.simple("OK");
        }
        "resetstat" if args.len() == 2 => {
            ctx.db.stats = Stats::default();
            ctx.out.simple("OK");
        }
        "rewrite" if args.len() == 2 => {
            return Err(Cow::Borrowed(
                "ERR The server is running without a config file",
            ))
        }
        "resetstat" | "rewrite" => return Err(arity_error(&format!("config|{sub}"))),
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
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
    if ctx.client.multi.take().is_none() {
        return Err(Cow::Borrowed("ERR DISCARD without MULTI"));
    }
    ctx.client.multi_dirty = false;
    ctx.client.watched.clear();
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
        if let Err(e) = admission(ctx.db, command) {
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

/// Delivers a message to local subscribers; returns how many received it.
pub fn deliver(db: &mut Db, channel: &Bytes, payload: &Bytes) -> usize {
    let mut count = 0;
    if let Some(subs) = db.channels.get(channel) {
        for (_, tx) in subs {
            if tx
                .send(PubMessage {
                    pattern: None,
                    channel: channel.clone(),
                    payload: payload.clone(),
                })
                .is_ok()
            {
                count += 1;
            }
        }
    }
    for (pattern, subs) in &db.patterns {
        if super::sets::glob_match(pattern, channel) {
            for (_, tx) in subs {
                if tx
                    .send(PubMessage {
                        pattern: Some(pattern.clone()),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    })
                    .is_ok()
                {
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
fn unsubscribe_all(ctx: &mut Ctx<'_>, pattern: bool) -> usize {
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
                .filter(|c| args.get(2).is_none_or(|p| super::sets::glob_match(p, c)))
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

fn bgrewriteaof(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.db.compaction_requested = true;
    ctx.out
        .simple("Background append only file rewriting started");
    Ok(())
}

fn bgsave(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ctx.db.compaction_requested = true;
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
    ctx.db.shutdown_requested = true;
    ctx.client.close_after_reply = true;
    Ok(())
}

fn digest(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let d = ctx.db.ks.digest(ctx.now_ms);
    ctx.out.bulk(format!("{d:016x}").as_bytes());
    Ok(())
}
