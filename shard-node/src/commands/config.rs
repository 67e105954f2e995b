//! CONFIG: GET, SET, RESETSTAT, REWRITE over the settings in `db.settings`, and
//! [`parse_memory`], which the command line uses too.
//!
//! Contract: replies and error texts match Redis 7.0. CONFIG SET checks every pair before
//! changing anything, so a failing CONFIG SET changes nothing; settings fixed at startup are
//! refused as immutable.

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("config", -2, "admin", 0, 0, 0, "server", "A container for server configuration commands.", config),
    ]
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
        (
            "busy-reply-threshold",
            db.scripting.time_limit_ms.to_string(),
        ),
        ("databases", s.databases.to_string()),
        ("dir", s.dir.clone()),
        ("lua-time-limit", db.scripting.time_limit_ms.to_string()),
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
                    if super::util::glob::glob_match(p.as_bytes(), name.as_bytes())
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
                    "busy-reply-threshold" | "lua-time-limit" => {
                        let n = crate::resp::parse_i64_strict(value)
                            .ok_or_else(|| bad("argument couldn't be parsed into an integer"))?;
                        if n < 0 {
                            return Err(bad(
                                "argument must be between 0 and 9223372036854775807 inclusive",
                            ));
                        }
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
                    "busy-reply-threshold" | "lua-time-limit" => {
                        ctx.db.scripting.time_limit_ms =
                            crate::resp::parse_i64_strict(&value).unwrap_or(0) as u64
                    }
                    "requirepass" => {
                        s.requirepass = if value.is_empty() { None } else { Some(value) };
                        ctx.db.acl.set_default_password(s.requirepass.as_deref());
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
