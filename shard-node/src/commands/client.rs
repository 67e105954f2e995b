//! CLIENT and its subcommands: ID, SETNAME, GETNAME, LIST, INFO, SETINFO, PAUSE, UNPAUSE,
//! UNBLOCK, NO-EVICT, NO-TOUCH, REPLY, HELP; plus the client-name checks HELLO SETNAME shares.
//!
//! Contract: replies match Redis 7.0. CLIENT PAUSE and CLIENT UNPAUSE only set
//! `db.client_pause` and `db.requests.pause_changed`; the server layer holds and wakes the connections.
//! CLIENT REPLY only sets the client's reply flags; `dispatch` drops the replies they suppress.

use super::*;
use crate::resp::Protocol;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("client", -2, "", 0, 0, 0, "connection", "A container for client connection commands.", client),
    ]
}

pub fn validate_client_name(name: &[u8]) -> CmdResult {
    if name.iter().any(|b| *b < b'!' || *b > b'~') {
        return Err(Cow::Borrowed(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

pub(super) fn set_client_name(ctx: &mut Ctx<'_>, name: Option<Bytes>) {
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
            ctx.db.requests.pause_changed = true;
            ctx.out.simple("OK");
        }
        "unpause" if args.len() == 2 => {
            ctx.db.client_pause = None;
            ctx.db.requests.pause_changed = true;
            ctx.out.simple("OK");
        }
        "unblock" if args.len() == 3 || args.len() == 4 => {
            let id = int_arg(&args[2])?;
            let how = match args.get(3).map(|m| lower(m)).as_deref() {
                None | Some("timeout") => super::blocking::Unblock::Timeout,
                Some("error") => super::blocking::Unblock::Error,
                Some(_) => {
                    return Err(Cow::Borrowed(
                        "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                    ))
                }
            };
            let done = u64::try_from(id).is_ok_and(|id| ctx.db.blocked.unblock(id, how));
            ctx.db.requests.wake_blocked |= done;
            ctx.out.int(i64::from(done));
        }
        "no-evict" | "no-touch" if args.len() == 3 => ctx.out.simple("OK"),
        "reply" if args.len() == 3 => {
            // OFF and SKIP have no reply of their own (the dispatcher drops replies).
            if is(&args[2], "on") {
                ctx.client.reply_off = false;
                ctx.client.reply_skip = false;
                ctx.out.simple("OK");
            } else if is(&args[2], "off") {
                ctx.client.reply_off = true;
            } else if is(&args[2], "skip") {
                if !ctx.client.reply_off {
                    ctx.client.reply_skip_next = true;
                }
            } else {
                return Err(Cow::Borrowed(ERR_SYNTAX));
            }
        }
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
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "    Unblock the specified blocked client.",
                "HELP",
                "    Print this help.",
            ];
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.simple(l);
            }
        }
        "id" | "setname" | "getname" | "info" | "setinfo" | "no-evict" | "no-touch" | "pause"
        | "unpause" | "unblock" | "reply" => return Err(wrong()),
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod reply_tests {
    use crate::commands::testing::TestDb;

    #[test]
    fn client_reply_off_skip_and_on() {
        let mut t = TestDb::new();
        assert_eq!(t.text(&["CLIENT", "REPLY", "OFF"]), "");
        assert_eq!(t.text(&["SET", "k", "v"]), "");
        assert_eq!(t.text(&["GET", "nokey", "extra"]), "");
        // SKIP while OFF changes nothing.
        assert_eq!(t.text(&["CLIENT", "REPLY", "SKIP"]), "");
        assert_eq!(t.text(&["CLIENT", "REPLY", "ON"]), "+OK\r\n");
        assert_eq!(t.text(&["GET", "k"]), "$1\r\nv\r\n");
        assert_eq!(t.text(&["CLIENT", "REPLY", "SKIP"]), "");
        assert_eq!(t.text(&["GET", "k"]), "");
        assert_eq!(t.text(&["GET", "k"]), "$1\r\nv\r\n");
        // ON right after SKIP is answered.
        assert_eq!(t.text(&["CLIENT", "REPLY", "SKIP"]), "");
        assert_eq!(t.text(&["CLIENT", "REPLY", "ON"]), "+OK\r\n");
        assert_eq!(
            t.text(&["CLIENT", "REPLY", "MAYBE"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            t.text(&["CLIENT", "REPLY"]),
            "-ERR wrong number of arguments for 'client|reply' command\r\n"
        );
    }
}
