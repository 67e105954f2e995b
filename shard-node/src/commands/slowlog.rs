//! SLOWLOG (GET, LEN, RESET, HELP) and the slow log it reads.
//!
//! Contract: after every command [`record`] keeps it when it ran for at least
//! `slowlog-log-slower-than` microseconds (a negative threshold disables the log, 0 logs every
//! command), newest first, at most `slowlog-max-len` entries. An entry holds what Redis's holds:
//! id, start time in seconds, duration in microseconds, the arguments (at most 32, each cut to
//! 128 bytes, the way Redis shortens them), the client's address and name. The arguments of
//! AUTH and HELLO are not kept. EXEC is not logged itself; the commands it runs are. The log is
//! local to this node.

use super::*;
use std::collections::VecDeque;

const MAX_ARGC: usize = 32;
const MAX_STRING: usize = 128;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("slowlog", -2, "", 0, 0, 0, "server", "A container for slow log commands.", slowlog),
    ]
}

/// One logged command.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub time_s: u64,
    pub micros: u64,
    pub args: Vec<Bytes>,
    pub addr: String,
    pub name: Bytes,
}

/// The slow log and its two settings.
#[derive(Debug, Clone)]
pub struct Slowlog {
    pub log_slower_than: i64,
    pub max_len: u64,
    next_id: u64,
    entries: VecDeque<Entry>,
}

impl Default for Slowlog {
    fn default() -> Self {
        Slowlog {
            log_slower_than: 10_000,
            max_len: 128,
            next_id: 0,
            entries: VecDeque::new(),
        }
    }
}

impl Slowlog {
    /// Changes the length limit, dropping the oldest entries beyond it.
    pub fn set_max_len(&mut self, max_len: u64) {
        self.max_len = max_len;
        self.entries
            .truncate(usize::try_from(max_len).unwrap_or(usize::MAX));
    }
}

/// Logs `args` when the command took at least the threshold.
pub fn record(
    db: &mut Db,
    client: &ClientState,
    command: &Command,
    args: &[Bytes],
    micros: u64,
    now_ms: u64,
) {
    let log = &db.slowlog;
    if log.log_slower_than < 0 || (micros as i128) < i128::from(log.log_slower_than) {
        return;
    }
    if command.name == "exec" || log.max_len == 0 {
        return;
    }
    let redact = matches!(command.name, "auth" | "hello");
    let keep = args.len().min(MAX_ARGC);
    let mut logged = Vec::with_capacity(keep);
    for (j, arg) in args.iter().take(keep).enumerate() {
        if keep != args.len() && j == keep - 1 {
            let more = args.len() - keep + 1;
            logged.push(Bytes::from(format!("... ({more} more arguments)")));
        } else if redact && j > 0 {
            logged.push(Bytes::from_static(b"(redacted)"));
        } else if arg.len() > MAX_STRING {
            let mut cut = arg[..MAX_STRING].to_vec();
            cut.extend_from_slice(
                format!("... ({} more bytes)", arg.len() - MAX_STRING).as_bytes(),
            );
            logged.push(Bytes::from(cut));
        } else {
            logged.push(arg.clone());
        }
    }
    let meta = db.clients.get(&client.id);
    let entry = Entry {
        id: db.slowlog.next_id,
        time_s: now_ms / 1000,
        micros,
        args: logged,
        addr: meta.map(|m| m.addr.clone()).unwrap_or_default(),
        name: client.name.clone().unwrap_or_default(),
    };
    let log = &mut db.slowlog;
    log.next_id += 1;
    log.entries.push_front(entry);
    log.entries
        .truncate(usize::try_from(log.max_len).unwrap_or(usize::MAX));
}

fn slowlog(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("get", 2 | 3) => {
            let count = match args.get(2) {
                None => 10usize,
                Some(a) => match crate::resp::parse_i64_strict(a) {
                    Some(-1) => usize::MAX,
                    Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                    _ => {
                        return Err(Cow::Borrowed(
                            "ERR count should be greater than or equal to -1",
                        ))
                    }
                },
            };
            let entries: Vec<Entry> = ctx.db.slowlog.entries.iter().take(count).cloned().collect();
            ctx.out.array(entries.len());
            for e in entries {
                ctx.out.array(6);
                ctx.out.int(e.id as i64);
                ctx.out.int(e.time_s as i64);
                ctx.out.int(e.micros as i64);
                ctx.out.array(e.args.len());
                for a in &e.args {
                    ctx.out.bulk(a);
                }
                ctx.out.bulk(e.addr.as_bytes());
                ctx.out.bulk(&e.name);
            }
        }
        ("len", 2) => ctx.out.int(ctx.db.slowlog.entries.len() as i64),
        ("reset", 2) => {
            ctx.db.slowlog.entries.clear();
            ctx.out.simple("OK");
        }
        ("help", 2) => {
            let lines = [
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Prints this help.",
            ];
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.simple(l);
            }
        }
        ("get" | "len" | "reset" | "help", _) => {
            return Err(arity_error(&format!("slowlog|{sub}")))
        }
        _ => {
            return Err(Cow::Owned(format!(
                "ERR unknown subcommand '{}'. Try SLOWLOG HELP.",
                String::from_utf8_lossy(&args[1])
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::TestDb;

    #[test]
    fn every_command_is_logged_at_threshold_zero_and_cut_like_redis() {
        let mut t = TestDb::new();
        assert_eq!(t.text(&["SLOWLOG", "LEN"]), ":0\r\n");
        assert_eq!(
            t.text(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
            "+OK\r\n"
        );
        let long = "x".repeat(130);
        t.run(&["SET", "k", &long]);
        t.run(&["AUTH", "secret"]);
        // LEN counts SET, AUTH and the CONFIG SET itself.
        assert_eq!(t.text(&["SLOWLOG", "LEN"]), ":3\r\n");
        // The newest first: SLOWLOG LEN, AUTH, SET.
        let got = t.text(&["SLOWLOG", "GET", "3"]);
        assert!(got.starts_with("*3\r\n*6\r\n:3\r\n"), "{got}");
        assert!(got.contains("(redacted)"), "{got}");
        assert!(!got.contains("secret"), "{got}");
        assert!(got.contains("... (2 more bytes)"), "{got}");
        let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let mut args = vec!["DEL"];
        args.extend(many.iter().map(String::as_str));
        t.run(&args);
        let got = t.text(&["SLOWLOG", "GET", "1"]);
        assert!(got.contains("... (10 more arguments)"), "{got}");
        assert_eq!(t.text(&["SLOWLOG", "RESET"]), "+OK\r\n");
        assert_eq!(t.text(&["SLOWLOG", "LEN"]), ":1\r\n");
        assert_eq!(
            t.text(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]),
            "+OK\r\n"
        );
        t.run(&["SLOWLOG", "RESET"]);
        t.run(&["GET", "k"]);
        assert_eq!(t.text(&["SLOWLOG", "LEN"]), ":0\r\n");
        assert_eq!(
            t.text(&["SLOWLOG", "GET", "-2"]),
            "-ERR count should be greater than or equal to -1\r\n"
        );
    }

    #[test]
    fn max_len_keeps_the_newest() {
        let mut t = TestDb::new();
        t.run(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        t.run(&["CONFIG", "SET", "slowlog-max-len", "2"]);
        for i in 0..5 {
            t.run(&["SET", "k", &i.to_string()]);
        }
        let got = t.text(&["SLOWLOG", "GET", "-1"]);
        assert!(got.starts_with("*2\r\n"), "{got}");
        assert!(
            got.contains("$1\r\n4\r\n") && got.contains("$1\r\n3\r\n"),
            "{got}"
        );
    }
}
