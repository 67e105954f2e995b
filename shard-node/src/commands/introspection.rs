//! COMMAND and its subcommands: COUNT, INFO, DOCS, LIST, GETKEYS.
//!
//! Contract: replies follow Redis 7.0's shapes, built from the command table; the full listings
//! are in command-name order, so the order in which families join the table does not matter.
//! Argument documentation is not in the table: COMMAND DOCS without names is refused (redis-cli
//! then uses its built-in help), and named commands get their summary, group and version.

use super::*;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("command", -1, "loading stale", 0, 0, 0, "server", "Returns detailed information about all commands.", command),
    ]
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
    if f.noscript {
        out.push("noscript");
    }
    if f.blocking {
        out.push("blocking");
    }
    if f.loading {
        out.push("loading");
    }
    if f.stale {
        out.push("stale");
    }
    let script = matches!(
        c.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    );
    if script {
        out.push("skip_monitor");
    }
    if f.fast {
        out.push("fast");
    }
    if f.no_auth {
        out.push("no_auth");
    }
    if script {
        out.push("no_mandatory_keys");
    }
    if NUMKEYS_COMMANDS.iter().any(|(n, _)| *n == c.name) {
        out.push("movablekeys");
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
    // The ACL categories Redis gives the command, or its group for a command they omit.
    let categories: Vec<&str> = crate::acl::categories::UNITS
        .binary_search_by(|(name, _)| name.cmp(&c.name))
        .map(|i| crate::acl::categories::UNITS[i].1.split(' ').collect())
        .unwrap_or_else(|_| vec![c.group]);
    ctx.out.set(categories.len());
    for category in categories {
        ctx.out.simple(&format!("@{category}"));
    }
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
                .keys_in(&args[2..])
                .into_iter()
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
