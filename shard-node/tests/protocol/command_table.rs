//! The command table and the configuration parameters against redis-server 7.0.
//!
//! `COMMAND` (names, arity, flags as far as shard-node models them, first/last/step key
//! positions) and the names `CONFIG GET *` reports are read from both servers. Every
//! difference must be listed in `tests/diff/command_table_differences.toml` with a reason,
//! and every listed name must still differ exactly as stated, so the list cannot go stale:
//! a command that lands fails the test until its entry is removed.

use crate::common::{NodeBuilder, RawConn, RedisServer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The flags shard-node's `COMMAND` reports; Redis's others are not compared.
const MODELLED_FLAGS: &[&str] = &[
    "write", "readonly", "denyoom", "admin", "pubsub", "loading", "stale", "fast", "no_auth",
];

/// A RESP2 reply, as far as `COMMAND` and `CONFIG GET` need.
#[derive(Debug, Clone)]
enum Resp {
    Text(String),
    Int(i64),
    Array(Vec<Resp>),
    Nil,
}

fn parse(buf: &[u8], at: &mut usize) -> Resp {
    let end = buf[*at..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| *at + p)
        .expect("a complete RESP line");
    let kind = buf[*at];
    let line = String::from_utf8_lossy(&buf[*at + 1..end]).into_owned();
    *at = end + 2;
    match kind {
        b'+' | b'-' => Resp::Text(line),
        b':' => Resp::Int(line.parse().expect("integer")),
        b'$' => {
            let n: i64 = line.parse().expect("bulk length");
            if n < 0 {
                return Resp::Nil;
            }
            let n = n as usize;
            let text = String::from_utf8_lossy(&buf[*at..*at + n]).into_owned();
            *at += n + 2;
            Resp::Text(text)
        }
        b'*' => {
            let n: i64 = line.parse().expect("array length");
            if n < 0 {
                return Resp::Nil;
            }
            Resp::Array((0..n).map(|_| parse(buf, at)).collect())
        }
        other => panic!("unexpected RESP type {:?}", char::from(other)),
    }
}

fn request(conn: &mut RawConn, args: &[&str]) -> Resp {
    let raw = conn.cmd_str(args);
    parse(&raw, &mut 0)
}

/// `"<arity> <flags> <first> <last> <step>"` of every command.
fn command_table(conn: &mut RawConn) -> BTreeMap<String, String> {
    let Resp::Array(commands) = request(conn, &["COMMAND"]) else {
        panic!("COMMAND did not answer an array");
    };
    let mut out = BTreeMap::new();
    for c in commands {
        let Resp::Array(fields) = c else {
            panic!("a COMMAND entry is not an array");
        };
        let text = |i: usize| match &fields[i] {
            Resp::Text(t) => t.clone(),
            Resp::Int(n) => n.to_string(),
            other => panic!("unexpected field {other:?}"),
        };
        let Resp::Array(flags) = &fields[2] else {
            panic!("flags are not an array");
        };
        let mut flags: Vec<String> = flags
            .iter()
            .filter_map(|f| match f {
                Resp::Text(t) if MODELLED_FLAGS.contains(&t.as_str()) => Some(t.clone()),
                _ => None,
            })
            .collect();
        flags.sort();
        out.insert(
            text(0),
            format!(
                "{} {} {} {} {}",
                text(1),
                flags.join(","),
                text(3),
                text(4),
                text(5)
            ),
        );
    }
    out
}

fn parameter_names(conn: &mut RawConn) -> BTreeSet<String> {
    let Resp::Array(items) = request(conn, &["CONFIG", "GET", "*"]) else {
        panic!("CONFIG GET * did not answer an array");
    };
    items
        .iter()
        .step_by(2)
        .map(|i| match i {
            Resp::Text(t) => t.clone(),
            other => panic!("unexpected parameter name {other:?}"),
        })
        .collect()
}

/// One entry of the differences list.
#[derive(Debug, Default)]
struct Entry {
    table: String,
    difference: String,
    names: Vec<String>,
    redis: Option<String>,
    shard_node: Option<String>,
    reason: String,
    line: usize,
}

/// Reads the TOML subset the list is written in.
fn read_entries(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut in_names = false;
    let unquote = |v: &str, line: usize| -> String {
        let v = v.trim().trim_end_matches(',');
        assert!(
            v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
            "line {line}: expected a quoted string, got {v:?}"
        );
        v[1..v.len() - 1].to_string()
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let no = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if in_names {
            if line == "]" {
                in_names = false;
            } else {
                let e = entries.last_mut().expect("names inside an entry");
                e.names.push(unquote(line, no));
            }
            continue;
        }
        if let Some(table) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            assert!(
                table == "command" || table == "parameter",
                "line {no}: unknown table {table}"
            );
            entries.push(Entry {
                table: table.to_string(),
                line: no,
                ..Entry::default()
            });
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {no}: expected key = value"));
        let e = entries
            .last_mut()
            .unwrap_or_else(|| panic!("line {no}: key outside an entry"));
        match key.trim() {
            "difference" => e.difference = unquote(value, no),
            "reason" => e.reason = unquote(value, no),
            "redis" => e.redis = Some(unquote(value, no)),
            "shard_node" => e.shard_node = Some(unquote(value, no)),
            "names" => {
                let v = value.trim();
                if v == "[" {
                    in_names = true;
                } else {
                    let inner = v
                        .strip_prefix('[')
                        .and_then(|v| v.strip_suffix(']'))
                        .unwrap_or_else(|| panic!("line {no}: names must be an array"));
                    e.names.extend(
                        inner
                            .split(',')
                            .filter(|s| !s.trim().is_empty())
                            .map(|s| unquote(s, no)),
                    );
                }
            }
            other => panic!("line {no}: unknown key {other}"),
        }
    }
    entries
}

/// Checks the differences of one kind of name (commands or parameters) against the entries;
/// returns the problems found.
fn check(
    what: &str,
    redis: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
    entries: &[&Entry],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut listed: BTreeMap<&str, &Entry> = BTreeMap::new();
    for e in entries {
        if e.reason.trim().is_empty() {
            problems.push(format!("line {}: entry without a reason", e.line));
        }
        for n in &e.names {
            if listed.insert(n.as_str(), e).is_some() {
                problems.push(format!("{what} {n} is listed twice"));
            }
        }
        if e.difference == "entry"
            && (e.names.len() != 1 || e.redis.is_none() || e.shard_node.is_none())
        {
            problems.push(format!(
                "line {}: an \"entry\" difference names one {what} and gives redis and shard_node",
                e.line
            ));
        }
    }
    let names: BTreeSet<&String> = redis.keys().chain(ours.keys()).collect();
    for name in names {
        let actual = match (redis.get(name), ours.get(name)) {
            (Some(_), None) => "missing",
            (None, Some(_)) => "extra",
            (Some(a), Some(b)) if a != b => "entry",
            _ => "same",
        };
        match (listed.get(name.as_str()), actual) {
            (None, "same") => {}
            (None, _) => problems.push(format!(
                "{what} {name}: {actual} (redis {:?}, shard-node {:?}) is not listed",
                redis.get(name),
                ours.get(name)
            )),
            (Some(e), _) if e.difference != actual => problems.push(format!(
                "{what} {name}: listed as {} but is {actual} (redis {:?}, shard-node {:?}); update or remove the entry",
                e.difference,
                redis.get(name),
                ours.get(name)
            )),
            (Some(e), "entry")
                if e.redis.as_ref() != redis.get(name) || e.shard_node.as_ref() != ours.get(name) =>
            {
                problems.push(format!(
                    "{what} {name}: listed as redis {:?} / shard-node {:?} but is {:?} / {:?}",
                    e.redis,
                    e.shard_node,
                    redis.get(name),
                    ours.get(name)
                ));
            }
            _ => {}
        }
    }
    for (name, e) in &listed {
        if !redis.contains_key(*name) && !ours.contains_key(*name) {
            problems.push(format!(
                "{what} {name} (line {}) exists on neither server; remove it",
                e.line
            ));
        }
    }
    problems
}

#[test]
fn command_table_and_parameters_differ_from_redis_only_as_listed() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diff/command_table_differences.toml");
    let text = std::fs::read_to_string(&path).expect("read command_table_differences.toml");
    let entries = read_entries(&text);
    for e in &entries {
        let kinds: &[&str] = if e.table == "command" {
            &["missing", "extra", "entry"]
        } else {
            &["missing", "extra"]
        };
        assert!(
            kinds.contains(&e.difference.as_str()),
            "line {}: difference {:?} is not one of {kinds:?}",
            e.line,
            e.difference
        );
    }

    let redis = RedisServer::start();
    let node = NodeBuilder::new().start();
    let mut theirs = RawConn::connect(redis.port());
    let mut ours = RawConn::connect(node.port());

    let commands: Vec<&Entry> = entries.iter().filter(|e| e.table == "command").collect();
    let mut problems = check(
        "command",
        &command_table(&mut theirs),
        &command_table(&mut ours),
        &commands,
    );
    let as_map = |names: BTreeSet<String>| -> BTreeMap<String, String> {
        names.into_iter().map(|n| (n, String::new())).collect()
    };
    let parameters: Vec<&Entry> = entries.iter().filter(|e| e.table == "parameter").collect();
    problems.extend(check(
        "parameter",
        &as_map(parameter_names(&mut theirs)),
        &as_map(parameter_names(&mut ours)),
        &parameters,
    ));
    assert!(
        problems.is_empty(),
        "{} problem(s) with tests/diff/command_table_differences.toml:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
