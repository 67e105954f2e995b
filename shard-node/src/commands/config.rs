//! CONFIG: GET, SET, RESETSTAT, REWRITE over the settings in `db.settings`, and
//! [`parse_memory`], which the command line uses too.
//!
//! Contract: replies and error texts match Redis 7.0. CONFIG SET checks every pair before
//! changing anything, so a failing CONFIG SET changes nothing; settings fixed at startup are
//! refused as immutable.
//!
//! Redis parameters that have no effect on this server ([`PARAMS`]: encoding thresholds,
//! `save`, lazy freeing, latency tracking, `notify-keyspace-events`, …) are validated like Redis
//! does, stored in `db.settings.params` and reported by CONFIG GET (under their name and their
//! old alias), so applications that set or check them keep working. The encoding thresholds are
//! what OBJECT ENCODING reports against; `maxmemory-policy` is read by `eviction`;
//! `slowlog-log-slower-than` and `slowlog-max-len` drive the slow log (`db.slowlog`).

use super::*;
use std::collections::BTreeMap;

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("config", -2, "", 0, 0, 0, "server", "A container for server configuration commands.", config),
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

/// How a stored parameter's value is checked.
#[derive(Clone, Copy)]
enum Check {
    /// An integer within the inclusive range.
    Int(i64, i64),
    Bool,
    Enum(&'static [&'static str]),
    Save,
    Events,
    Percentiles,
}

/// A Redis parameter stored and reported, without effect here (or read where noted).
pub struct Param {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub default: &'static str,
    check: Check,
}

const fn param(
    name: &'static str,
    alias: Option<&'static str>,
    default: &'static str,
    check: Check,
) -> Param {
    Param {
        name,
        alias,
        default,
        check,
    }
}

const POLICIES: &[&str] = &[
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];

const LONG: i64 = i64::MAX;
const INT: i64 = i32::MAX as i64;

/// The stored parameters, with Redis 7.0's defaults and checks.
pub const PARAMS: &[Param] = &[
    param("activerehashing", None, "yes", Check::Bool),
    param(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        "512",
        Check::Int(0, LONG),
    ),
    param(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        "64",
        Check::Int(0, LONG),
    ),
    param("latency-monitor-threshold", None, "0", Check::Int(0, LONG)),
    param("latency-tracking", None, "yes", Check::Bool),
    param(
        "latency-tracking-info-percentiles",
        None,
        "50 99 99.9",
        Check::Percentiles,
    ),
    param("lazyfree-lazy-eviction", None, "no", Check::Bool),
    param("lazyfree-lazy-expire", None, "no", Check::Bool),
    param("lazyfree-lazy-server-del", None, "no", Check::Bool),
    param("lazyfree-lazy-user-del", None, "no", Check::Bool),
    param("lazyfree-lazy-user-flush", None, "no", Check::Bool),
    param("list-compress-depth", None, "0", Check::Int(0, INT)),
    param(
        "list-max-listpack-size",
        Some("list-max-ziplist-size"),
        "-2",
        Check::Int(i32::MIN as i64, INT),
    ),
    param(
        "maxmemory-policy",
        None,
        "noeviction",
        Check::Enum(POLICIES),
    ),
    param("maxmemory-samples", None, "5", Check::Int(1, INT)),
    param("notify-keyspace-events", None, "", Check::Events),
    param(
        "replica-lazy-flush",
        Some("slave-lazy-flush"),
        "no",
        Check::Bool,
    ),
    param("save", None, "", Check::Save),
    param("set-max-intset-entries", None, "512", Check::Int(0, LONG)),
    param(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        "128",
        Check::Int(0, LONG),
    ),
    param(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        "64",
        Check::Int(0, LONG),
    ),
];

/// Every stored parameter at its default.
pub fn default_params() -> BTreeMap<&'static str, String> {
    PARAMS
        .iter()
        .map(|p| (p.name, p.default.to_string()))
        .collect()
}

/// The stored parameter `name` (or its alias).
fn find_param(name: &str) -> Option<&'static Param> {
    PARAMS
        .iter()
        .find(|p| p.name == name || p.alias == Some(name))
}

/// A stored integer parameter (its default when unreadable).
pub fn int_param(db: &Db, name: &str) -> i64 {
    let text = db.settings.params.get(name).map(String::as_str);
    text.and_then(|t| t.parse().ok())
        .or_else(|| find_param(name).and_then(|p| p.default.parse().ok()))
        .unwrap_or(0)
}

/// Keyspace event classes in Redis's canonical order (`keyspaceEventsFlagsToString`).
const EVENT_CLASSES: &[char] = &['g', '$', 'l', 's', 'h', 'z', 'x', 'e', 't', 'd', 'n'];
/// The classes `A` stands for.
const EVENT_ALL: &[char] = &['g', '$', 'l', 's', 'h', 'z', 'x', 'e', 't', 'd'];

/// `notify-keyspace-events` in Redis's canonical form, or `None` for an unknown class.
fn canonical_events(value: &[u8]) -> Option<String> {
    let mut set: Vec<char> = Vec::new();
    for &b in value {
        let c = char::from(b);
        match c {
            'A' => set.extend_from_slice(EVENT_ALL),
            'K' | 'E' | 'm' => set.push(c),
            _ if EVENT_CLASSES.contains(&c) => set.push(c),
            _ => return None,
        }
    }
    let mut out = String::new();
    if EVENT_ALL.iter().all(|c| set.contains(c)) {
        out.push('A');
        if set.contains(&'n') {
            out.push('n');
        }
    } else {
        out.extend(EVENT_CLASSES.iter().filter(|c| set.contains(c)));
    }
    out.extend(['K', 'E', 'm'].iter().filter(|c| set.contains(c)));
    Some(out)
}

/// Checks `value` for `p` and returns the text CONFIG GET will report, or the reason.
fn check_param(p: &Param, value: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(value).into_owned();
    match p.check {
        Check::Int(min, max) => {
            let n = crate::resp::parse_i64_strict(value)
                .ok_or("argument couldn't be parsed into an integer")?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(n.to_string())
        }
        Check::Bool => match text.to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".into()),
            "no" => Ok("no".into()),
            _ => Err("argument must be 'yes' or 'no'".into()),
        },
        Check::Enum(values) => {
            let v = text.to_ascii_lowercase();
            if values.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(format!(
                    "argument(s) must be one of the following: {}",
                    values.join(", ")
                ))
            }
        }
        Check::Save => {
            let words: Vec<&str> = text.split_whitespace().collect();
            let numbers = words.iter().all(|w| w.parse::<i64>().is_ok_and(|n| n >= 0));
            if !words.len().is_multiple_of(2) || !numbers {
                return Err("Invalid save parameters".into());
            }
            Ok(words.join(" "))
        }
        Check::Events => canonical_events(value)
            .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string()),
        Check::Percentiles => {
            let mut out = Vec::new();
            for w in text.split_whitespace() {
                let v: f64 = w
                    .parse()
                    .map_err(|_| "Invalid latency-tracking-info-percentiles parameters")?;
                if !(0.0..=100.0).contains(&v) {
                    return Err(
                        "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                            .into(),
                    );
                }
                out.push(crate::resp::format_double_human(v));
            }
            Ok(out.join(" "))
        }
    }
}

fn config_values(db: &Db) -> Vec<(&'static str, String)> {
    let s = &db.settings;
    let mut values = vec![
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
        ("port", s.port.to_string()),
        ("proto-max-bulk-len", s.proto_max_bulk_len.to_string()),
        (
            "requirepass",
            s.requirepass
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
        ),
        ("timeout", s.timeout.to_string()),
        (
            "client-query-buffer-limit",
            s.query_buffer_limit.to_string(),
        ),
        (
            "slowlog-log-slower-than",
            db.slowlog.log_slower_than.to_string(),
        ),
        ("slowlog-max-len", db.slowlog.max_len.to_string()),
    ];
    for p in PARAMS {
        let value = s.params.get(p.name).cloned().unwrap_or_default();
        if let Some(alias) = p.alias {
            values.push((alias, value.clone()));
        }
        values.push((p.name, value));
    }
    values
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
                    if crate::glob::glob_match(p.as_bytes(), name.as_bytes())
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
                    "client-query-buffer-limit" => {
                        let bytes = parse_memory(value)
                            .ok_or_else(|| bad("argument must be a memory value"))?;
                        if bytes < crate::client_limits::MIN_QUERY_BUFFER_LIMIT {
                            return Err(bad(&format!(
                                "argument must be between {} and {} inclusive",
                                crate::client_limits::MIN_QUERY_BUFFER_LIMIT,
                                i64::MAX
                            )));
                        }
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
                    "requirepass" => {}
                    "slowlog-log-slower-than" | "slowlog-max-len" => {
                        let min = if name == "slowlog-max-len" { 0 } else { -1 };
                        let n = crate::resp::parse_i64_strict(value)
                            .ok_or_else(|| bad("argument couldn't be parsed into an integer"))?;
                        if n < min {
                            return Err(bad(&format!(
                                "argument must be between {min} and 9223372036854775807 inclusive"
                            )));
                        }
                    }
                    "port" | "bind" | "dir" | "databases" | "appendonly" | "proto-max-bulk-len" => {
                        return Err(bad("can't set immutable config"));
                    }
                    _ if find_param(&name).is_some() => {
                        let p = find_param(&name).ok_or_else(|| bad("unknown"))?;
                        let stored = check_param(p, value).map_err(|reason| bad(&reason))?;
                        updates.push((p.name.to_string(), Bytes::from(stored)));
                        continue;
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
                    "client-query-buffer-limit" => {
                        s.query_buffer_limit = parse_memory(&value)
                            .unwrap_or(crate::client_limits::DEFAULT_QUERY_BUFFER_LIMIT);
                        crate::client_limits::set_query_buffer_limit(s.query_buffer_limit);
                    }
                    "maxclients" => {
                        s.maxclients = crate::resp::parse_i64_strict(&value).unwrap_or(0) as u64
                    }
                    "timeout" => {
                        s.timeout = crate::resp::parse_i64_strict(&value).unwrap_or(0) as u64;
                        crate::client_limits::set_timeout_secs(s.timeout);
                    }
                    "appendfsync" => s.appendfsync = lower(&value),
                    "busy-reply-threshold" | "lua-time-limit" => {
                        ctx.db.scripting.time_limit_ms =
                            crate::resp::parse_i64_strict(&value).unwrap_or(0) as u64
                    }
                    "slowlog-log-slower-than" => {
                        ctx.db.slowlog.log_slower_than =
                            crate::resp::parse_i64_strict(&value).unwrap_or(-1)
                    }
                    "slowlog-max-len" => {
                        ctx.db
                            .slowlog
                            .set_max_len(crate::resp::parse_i64_strict(&value).unwrap_or(0) as u64);
                    }
                    _ if find_param(&name).is_some() => {
                        s.params
                            .insert(find_param(&name).map_or("", |p| p.name), lower_keep(&value));
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

/// A checked parameter value as stored (already in its canonical form).
fn lower_keep(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}
