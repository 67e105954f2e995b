//! XINFO STREAM / GROUPS / CONSUMERS / HELP.
//!
//! The radix-tree figures Redis reports describe its storage layout; here they are what
//! Redis's layout would hold for the same entries (blocks of 100), so tools that read them get
//! plausible numbers. Entry counts, IDs and group figures are exact.

use super::*;
use crate::crdt::types::stream::Group;

pub(super) fn xinfo(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = lower(&args[1]);
    match sub.as_str() {
        "help" if args.len() == 2 => {
            let lines = [
                "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CONSUMERS <key> <groupname>",
                "    Show consumers of <groupname>.",
                "GROUPS <key>",
                "    Show the stream consumer groups.",
                "STREAM <key> [FULL [COUNT <count>]",
                "    Show information about the stream.",
                "HELP",
                "    Prints this help.",
            ];
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.simple(l);
            }
            Ok(())
        }
        "stream" if args.len() >= 3 => stream(ctx, args),
        "groups" if args.len() == 3 => {
            let x = existing(&ctx.db.ks, &args[2], ctx.now_ms)?;
            let groups: Vec<(&crate::crdt::Blob, &Group)> = x.groups.iter().collect();
            let lags: Vec<Option<u64>> = groups.iter().map(|(_, g)| lag(x, g)).collect();
            ctx.out.array(groups.len());
            for ((name, g), lag) in groups.into_iter().zip(lags) {
                write_group(&mut ctx.out, name, g, lag);
            }
            Ok(())
        }
        "consumers" if args.len() == 4 => {
            let x = existing(&ctx.db.ks, &args[2], ctx.now_ms)?;
            let Some(g) = x.groups.get(&args[3][..]) else {
                return Err(Cow::Owned(format!(
                    "NOGROUP No such consumer group '{}' for key name '{}'",
                    String::from_utf8_lossy(&args[3]),
                    String::from_utf8_lossy(&args[2])
                )));
            };
            let now = ctx.now_ms;
            ctx.out.array(g.consumers.len());
            for (name, c) in &g.consumers {
                let pending = g.pending.values().filter(|p| p.consumer == *name).count();
                ctx.out.map(3);
                ctx.out.bulk(b"name");
                ctx.out.bulk(name);
                ctx.out.bulk(b"pending");
                ctx.out.int(pending as i64);
                ctx.out.bulk(b"idle");
                ctx.out.int(now.saturating_sub(c.seen_ms) as i64);
            }
            Ok(())
        }
        "stream" | "groups" | "consumers" | "help" => Err(arity_error(&format!("xinfo|{sub}"))),
        _ => Err(Cow::Owned(format!(
            "ERR unknown subcommand '{}'. Try XINFO HELP.",
            String::from_utf8_lossy(&args[1])
        ))),
    }
}

fn existing<'a>(ks: &'a Keyspace, key: &[u8], now_ms: u64) -> Result<&'a StreamValue, CmdError> {
    read_stream(ks, key, now_ms)?.ok_or(Cow::Borrowed(ERR_NO_KEY))
}

/// Entries of the stream the group has not read yet, when that can be told.
fn lag(x: &StreamValue, g: &Group) -> Option<u64> {
    if x.entries.is_empty() {
        return Some(0);
    }
    if g.last_delivered >= x.last_id {
        return Some(0);
    }
    g.entries_read
        .map(|read| x.entries_added().saturating_sub(read))
        .filter(|_| x.max_deleted == StreamId::MIN || x.max_deleted < g.last_delivered)
}

fn write_group(out: &mut ReplyWriter<'_>, name: &[u8], g: &Group, lag: Option<u64>) {
    out.map(6);
    out.bulk(b"name");
    out.bulk(name);
    out.bulk(b"consumers");
    out.int(g.consumers.len() as i64);
    out.bulk(b"pending");
    out.int(g.pending.len() as i64);
    out.bulk(b"last-delivered-id");
    out.bulk(g.last_delivered.render().as_bytes());
    out.bulk(b"entries-read");
    match g.entries_read {
        Some(n) => out.int(n as i64),
        None => out.null(),
    }
    out.bulk(b"lag");
    match lag {
        Some(n) => out.int(n as i64),
        None => out.null(),
    }
}

fn radix_keys(len: usize) -> usize {
    len.div_ceil(100)
}

fn stream(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut full = false;
    let mut count: usize = 10;
    let mut i = 3;
    while i < args.len() {
        if !full && is(&args[i], "full") {
            full = true;
            i += 1;
        } else if full && is(&args[i], "count") && i + 1 < args.len() {
            let n = int_arg(&args[i + 1])?;
            count = if n <= 0 { usize::MAX } else { n as usize };
            i += 2;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        }
    }
    let x = existing(&ctx.db.ks, &args[2], ctx.now_ms)?;
    let out = &mut ctx.out;
    let len = x.entries.len();
    let first = x.entries.iter().next();
    let recorded_first = first.map_or(StreamId::MIN, |(id, _)| *id);
    out.map(if full { 9 } else { 10 });
    out.bulk(b"length");
    out.int(len as i64);
    out.bulk(b"radix-tree-keys");
    out.int(radix_keys(len) as i64);
    out.bulk(b"radix-tree-nodes");
    out.int((radix_keys(len) + 1) as i64);
    out.bulk(b"last-generated-id");
    out.bulk(x.last_id.render().as_bytes());
    out.bulk(b"max-deleted-entry-id");
    out.bulk(x.max_deleted.render().as_bytes());
    out.bulk(b"entries-added");
    out.int(x.entries_added() as i64);
    out.bulk(b"recorded-first-entry-id");
    out.bulk(recorded_first.render().as_bytes());
    if !full {
        out.bulk(b"groups");
        out.int(x.groups.len() as i64);
        out.bulk(b"first-entry");
        match first {
            Some((id, e)) => write_entry(out, *id, &e.fields),
            None => out.null(),
        }
        out.bulk(b"last-entry");
        match x.entries.iter().next_back() {
            Some((id, e)) => write_entry(out, *id, &e.fields),
            None => out.null(),
        }
        return Ok(());
    }
    let shown: Vec<_> = x.entries.iter().take(count).collect();
    out.bulk(b"entries");
    out.array(shown.len());
    for (id, e) in shown {
        write_entry(out, *id, &e.fields);
    }
    out.bulk(b"groups");
    out.array(x.groups.len());
    for (name, g) in &x.groups {
        out.map(7);
        out.bulk(b"name");
        out.bulk(name);
        out.bulk(b"last-delivered-id");
        out.bulk(g.last_delivered.render().as_bytes());
        out.bulk(b"entries-read");
        match g.entries_read {
            Some(n) => out.int(n as i64),
            None => out.null(),
        }
        out.bulk(b"lag");
        match lag(x, g) {
            Some(n) => out.int(n as i64),
            None => out.null(),
        }
        out.bulk(b"pel-count");
        out.int(g.pending.len() as i64);
        let pel: Vec<_> = g.pending.iter().take(count).collect();
        out.bulk(b"pending");
        out.array(pel.len());
        for (id, p) in pel {
            out.array(4);
            out.bulk(id.render().as_bytes());
            out.bulk(&p.consumer);
            out.int(p.delivered_ms as i64);
            out.int(p.deliveries as i64);
        }
        out.bulk(b"consumers");
        out.array(g.consumers.len());
        for (cname, c) in &g.consumers {
            let mine: Vec<_> = g
                .pending
                .iter()
                .filter(|(_, p)| p.consumer == *cname)
                .take(count)
                .collect();
            let total = g.pending.values().filter(|p| p.consumer == *cname).count();
            out.map(4);
            out.bulk(b"name");
            out.bulk(cname);
            out.bulk(b"seen-time");
            out.int(c.seen_ms as i64);
            out.bulk(b"pel-count");
            out.int(total as i64);
            out.bulk(b"pending");
            out.array(mine.len());
            for (id, p) in mine {
                out.array(3);
                out.bulk(id.render().as_bytes());
                out.int(p.delivered_ms as i64);
                out.int(p.deliveries as i64);
            }
        }
    }
    Ok(())
}
