//! Differential tests: the same command scripts run against a real `redis-server` and against
//! `shard-node`, and every reply must be identical byte for byte.
//!
//! # Contract
//!
//! Each `tests/diff/<family>.redis` file is one script and one `#[test]` of the same name.
//! For every script a fresh pair of servers is started on free loopback ports with temporary
//! data directories: `redis-server` 7.0 from `PATH` (a missing binary or another release fails
//! the test, it never skips it; it runs with `--appendfsync no` like shard-node) and the
//! `shard-node` binary of this crate. Both get `FLUSHALL`, then a fresh connection runs the
//! script on each; both processes are killed when the test ends. Every command is sent as a
//! RESP multibulk, exactly one complete RESP2/RESP3 reply is read from each server as raw bytes,
//! and the two byte strings are compared. All mismatches of a script are collected and
//! reported together at the end (file, line, command, both replies escaped in the string
//! syntax of `intended.toml`, so they can be pasted there).
//!
//! `scripts_are_well_formed` and the other small tests check the suite itself without servers:
//! every script parses and has a test, the scripts hold at least `MIN_TOTAL_COMMANDS` commands,
//! and every `intended.toml` entry names an existing script line.
//!
//! # Script syntax
//!
//! One command per line, split like `redis-cli` does: whitespace separates arguments; double
//! quotes allow `\"` `\\` `\n` `\r` `\t` `\b` `\a` and `\xHH`; single quotes allow `\'`. Blank
//! lines and lines starting with `#` are ignored. `HELLO 3` inside a script switches the
//! connection to RESP3 on both servers like any other command.
//!
//! # Directives
//!
//! A line may start with one directive; only these exist, and each is for replies that are
//! legitimately nondeterministic, never to hide a difference:
//!
//! - `!unordered CMD…` — the reply is an aggregate; its header must match exactly and its
//!   top-level elements are compared as a multiset (map entries as key+value pairs).
//!   `!unordered:N` groups N consecutive elements (e.g. `!unordered:2 HGETALL h` in RESP2).
//! - `!scan CMD…` / `!scan:N CMD…` — a SCAN-family reply `[cursor, [elements]]`: the cursor must
//!   match exactly and the elements are compared as a multiset of groups of N (default 1).
//! - `!type-only CMD…` — only the reply shape is compared: RESP types, nulls and aggregate
//!   lengths, recursively (e.g. `TIME`, `COMMAND COUNT`, `HELLO`).
//! - `!ignore CMD…` — the reply only has to be a non-error on both servers (e.g. `INFO`).
//!
//! # Intended differences
//!
//! `tests/diff/intended.toml` (explained in `tests/diff/INTENDED_DIFFERENCES.md`) lists the
//! places where shard-node deliberately answers differently. An entry names a script and the
//! exact command text of a line (after its directive); on every such line the Redis reply must
//! equal the entry's `redis` value and the shard-node reply its `shard_node` value (compared
//! under the line's directive), so intended differences are still asserted. An entry that
//! matches no line is an error.
//!
//! # Environment
//!
//! - `DIFF_ONLY_REDIS=1` runs the scripts against `redis-server` alone and prints every reply
//!   (`cargo test -p shard-node --test protocol differential:: -- --nocapture
//!   --test-threads=1`); use it to check what a script does while writing it. Entries of the
//!   intended list are checked against Redis in this mode too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHARD_NODE_BIN: &str = env!("CARGO_BIN_EXE_shard-node");
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_TOTAL_COMMANDS: usize = 300;
/// The scripts and the intended-differences list are recorded against this Redis release.
const REFERENCE_REDIS_VERSION: &str = "7.0.";
/// Connection failures in a row after which the rest of a script is abandoned.
const MAX_FAILURES_IN_A_ROW: u32 = 3;
/// Largest bulk or aggregate length the reply reader accepts.
const MAX_LEN: i64 = 64 * 1024 * 1024;

macro_rules! script_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_script(stringify!($name), Target::Node);
            }
        )*
        /// Every script that has a test; `scripts_are_well_formed` checks the directory agrees.
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

script_tests!(
    strings,
    counters,
    keys,
    hashes,
    sets,
    zsets,
    lists,
    server,
    transactions,
    resp3,
    wrongtype,
    acl,
    blocking,
    streams,
    geo,
    geo_searches,
    scripting,
    hyperloglog,
    bitmaps,
);

macro_rules! proxy_script_tests {
    ($($name:ident),* $(,)?) => {
        /// The scripts through a `shard-node proxy` in front of three shards.
        mod through_proxy {
            $(
                #[test]
                fn $name() {
                    super::run_script(stringify!($name), super::Target::Proxy);
                }
            )*
        }
        /// The scripts run through the proxy.
        const PROXY_SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

proxy_script_tests!(
    strings,
    counters,
    keys,
    hashes,
    sets,
    zsets,
    lists,
    server,
    resp3,
    wrongtype,
    acl,
    blocking,
    streams,
    geo,
    geo_searches,
    hyperloglog,
    bitmaps
);

/// Scripts not run through the proxy, and why (INTENDED_DIFFERENCES.md, Through the proxy).
const NOT_THROUGH_PROXY: &[(&str, &str)] = &[
    (
        "transactions",
        "its transactions mix keys of several shards, which a transaction through the proxy \
         refuses by design; tests/protocol/proxy.rs covers transactions through the proxy",
    ),
    (
        "scripting",
        "its scripts touch keys they do not declare and keys of several shards, which a \
         script through the proxy cannot do (Redis Cluster semantics: a script runs on the \
         shard of its declared keys); tests/protocol/scripting.rs covers scripts through the \
         proxy",
    ),
];

#[test]
fn every_script_runs_through_the_proxy_or_says_why() {
    for script in SCRIPTS {
        let listed = PROXY_SCRIPTS.contains(script);
        let excused = NOT_THROUGH_PROXY.iter().any(|(s, _)| s == script);
        assert!(
            listed != excused,
            "{script}: run it through the proxy or say why not (not both)"
        );
    }
}

fn diff_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("diff")
}

// ---------------------------------------------------------------------------------------------
// Escaping (one format for reports, scripts' double quotes and the intended list)
// ---------------------------------------------------------------------------------------------

fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

fn escape_limited(bytes: &[u8]) -> String {
    const LIMIT: usize = 4096;
    if bytes.len() <= LIMIT {
        escape(bytes)
    } else {
        format!(
            "{} …({} more bytes)",
            escape(&bytes[..LIMIT]),
            bytes.len() - LIMIT
        )
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Script tokenizer and parser
// ---------------------------------------------------------------------------------------------

/// Splits one script line into arguments, following `redis-cli`'s rules.
fn tokenize(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let s = line.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= s.len() {
            return Ok(args);
        }
        let mut cur = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let Some(&c) = s.get(i) else {
                    return Err("unbalanced double quotes".into());
                };
                if c == b'\\' && s.get(i + 1) == Some(&b'x') {
                    let hi = s.get(i + 2).copied().and_then(hex_value);
                    let lo = s.get(i + 3).copied().and_then(hex_value);
                    if let (Some(hi), Some(lo)) = (hi, lo) {
                        cur.push(hi * 16 + lo);
                        i += 4;
                        continue;
                    }
                    cur.push(b'x');
                    i += 2;
                    continue;
                }
                if c == b'\\' && i + 1 < s.len() {
                    cur.push(match s[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    if s.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err("closing double quote must be followed by a space".into());
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else if in_single {
                let Some(&c) = s.get(i) else {
                    return Err("unbalanced single quotes".into());
                };
                if c == b'\\' && s.get(i + 1) == Some(&b'\'') {
                    cur.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if s.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err("closing single quote must be followed by a space".into());
                    }
                    i += 1;
                    break;
                }
                cur.push(c);
                i += 1;
            } else {
                match s.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => cur.push(c),
                }
                i += 1;
            }
        }
        args.push(cur);
    }
}

/// How the two replies of one line are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Exact,
    /// Multiset of top-level elements in groups of the given size (`None`: 2 for maps, else 1).
    Unordered(Option<usize>),
    /// `[cursor, [elements]]`, elements as a multiset of groups of the given size.
    Scan(usize),
    TypeOnly,
    Ignore,
}

#[derive(Clone, Debug)]
struct Step {
    line: usize,
    /// The command as written, without its directive; the key of intended-difference entries.
    text: String,
    mode: Mode,
    args: Vec<Vec<u8>>,
}

fn parse_group(name: &str, suffix: Option<&str>) -> Result<Option<usize>, String> {
    match suffix {
        None => Ok(None),
        Some(n) => match n.parse::<usize>() {
            Ok(g) if g > 0 => Ok(Some(g)),
            _ => Err(format!("bad group size in directive {name}")),
        },
    }
}

fn parse_directive(word: &str) -> Result<Mode, String> {
    let (name, suffix) = match word.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (word, None),
    };
    match name {
        "!unordered" => Ok(Mode::Unordered(parse_group(word, suffix)?)),
        "!scan" => Ok(Mode::Scan(parse_group(word, suffix)?.unwrap_or(1))),
        "!type-only" if suffix.is_none() => Ok(Mode::TypeOnly),
        "!ignore" if suffix.is_none() => Ok(Mode::Ignore),
        _ => Err(format!("unknown directive {word}")),
    }
}

fn parse_script(source: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (idx, raw) in source.lines().enumerate() {
        let line = idx + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (mode, text) = if trimmed.starts_with('!') {
            let (word, rest) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            let mode = parse_directive(word).map_err(|e| format!("line {line}: {e}"))?;
            (mode, rest.trim())
        } else {
            (Mode::Exact, trimmed)
        };
        let args = tokenize(text).map_err(|e| format!("line {line}: {e}"))?;
        if args.is_empty() {
            return Err(format!("line {line}: directive without a command"));
        }
        steps.push(Step {
            line,
            text: text.to_string(),
            mode,
            args,
        });
    }
    Ok(steps)
}

fn load_script(name: &str) -> Vec<Step> {
    let path = diff_dir().join(format!("{name}.redis"));
    let source = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read script {}: {e}", path.display()));
    parse_script(&source).unwrap_or_else(|e| panic!("{name}.redis: {e}"))
}

// ---------------------------------------------------------------------------------------------
// RESP2/RESP3 frames
// ---------------------------------------------------------------------------------------------

/// One complete reply: its type byte, its raw bytes, and its elements if it is an aggregate
/// (a map's or attribute's elements are its keys and values, alternating).
#[derive(Clone, Debug)]
struct Frame {
    kind: u8,
    raw: Vec<u8>,
    header: Vec<u8>,
    null: bool,
    children: Vec<Frame>,
}

impl Frame {
    fn is_aggregate(&self) -> bool {
        matches!(self.kind, b'*' | b'~' | b'>' | b'%' | b'|') && !self.null
    }

    fn is_error(&self) -> bool {
        matches!(self.kind, b'-' | b'!')
    }

    /// RESP types, nulls and aggregate lengths, recursively; no scalar contents.
    fn shape(&self, out: &mut String) {
        out.push(char::from(self.kind));
        if self.null {
            out.push_str("null");
        } else if self.is_aggregate() {
            let _ = write!(out, "{}[", self.children.len());
            for (i, c) in self.children.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                c.shape(out);
            }
            out.push(']');
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_len(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= -1 && *n <= MAX_LEN)
        .ok_or_else(|| format!("bad length {}", escape(line)))
}

fn to_usize(n: i64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("bad length {n}"))
}

/// Parses one frame starting at `pos`. `Ok(None)` means the buffer does not hold a complete
/// frame yet; `Err` means the bytes are not RESP.
fn parse_frame(buf: &[u8], pos: usize) -> Result<Option<(Frame, usize)>, String> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(eol) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..eol];
    let mut end = eol + 2;
    let mut null = false;
    let mut children = Vec::new();
    match kind {
        b'+' | b'-' | b':' | b',' | b'#' | b'(' => {}
        b'_' => {
            if !line.is_empty() {
                return Err("null frame with a payload".into());
            }
            null = true;
        }
        b'$' | b'!' | b'=' if line == b"?" => loop {
            // Streamed string: `;len\r\n<bytes>\r\n` chunks until `;0\r\n`.
            let Some(&b';') = buf.get(end) else {
                return if end >= buf.len() {
                    Ok(None)
                } else {
                    Err("bad streamed string chunk".into())
                };
            };
            let Some(ceol) = find_crlf(buf, end + 1) else {
                return Ok(None);
            };
            let n = parse_len(&buf[end + 1..ceol])?;
            if n <= 0 {
                end = ceol + 2;
                break;
            }
            let data_end = ceol + 2 + to_usize(n)?;
            if buf.len() < data_end + 2 {
                return Ok(None);
            }
            if &buf[data_end..data_end + 2] != b"\r\n" {
                return Err("streamed chunk not terminated by CRLF".into());
            }
            end = data_end + 2;
        },
        b'$' | b'!' | b'=' => {
            let n = parse_len(line)?;
            if n == -1 {
                if kind != b'$' {
                    return Err("negative length".into());
                }
                null = true;
            } else {
                let data_end = end + to_usize(n)?;
                if buf.len() < data_end + 2 {
                    return Ok(None);
                }
                if &buf[data_end..data_end + 2] != b"\r\n" {
                    return Err("bulk string not terminated by CRLF".into());
                }
                end = data_end + 2;
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            if line == b"?" {
                // Streamed aggregate: elements until `.\r\n`.
                loop {
                    if buf.get(end..end + 3) == Some(b".\r\n") {
                        end += 3;
                        break;
                    }
                    if buf.len() < end + 3 {
                        return Ok(None);
                    }
                    match parse_frame(buf, end)? {
                        None => return Ok(None),
                        Some((child, next)) => {
                            children.push(child);
                            end = next;
                        }
                    }
                }
            } else {
                let n = parse_len(line)?;
                if n == -1 {
                    if kind != b'*' {
                        return Err("negative length".into());
                    }
                    null = true;
                } else {
                    let count = if matches!(kind, b'%' | b'|') {
                        2 * n
                    } else {
                        n
                    };
                    for _ in 0..count {
                        match parse_frame(buf, end)? {
                            None => return Ok(None),
                            Some((child, next)) => {
                                children.push(child);
                                end = next;
                            }
                        }
                    }
                }
            }
            if kind == b'|' {
                // An attribute is followed by the reply it annotates; keep both together.
                match parse_frame(buf, end)? {
                    None => return Ok(None),
                    Some((child, next)) => {
                        children.push(child);
                        end = next;
                    }
                }
            }
        }
        other => return Err(format!("unknown RESP type byte {}", escape(&[other]))),
    }
    Ok(Some((
        Frame {
            kind,
            raw: buf[pos..end].to_vec(),
            header: buf[pos..eol + 2].to_vec(),
            null,
            children,
        },
        end,
    )))
}

/// Parses bytes that must hold exactly one complete frame.
fn parse_whole(bytes: &[u8]) -> Result<Frame, String> {
    match parse_frame(bytes, 0)? {
        Some((frame, end)) if end == bytes.len() => Ok(frame),
        Some(_) => Err("trailing bytes after the reply".into()),
        None => Err("incomplete reply".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

fn multiset(frame: &Frame, group: Option<usize>) -> Result<Vec<Vec<u8>>, String> {
    if !frame.is_aggregate() {
        return Err(format!(
            "expected an aggregate reply, got {}",
            escape_limited(&frame.raw)
        ));
    }
    let g = group.unwrap_or(if matches!(frame.kind, b'%' | b'|') {
        2
    } else {
        1
    });
    let groups = frame.children.chunks_exact(g);
    if !groups.remainder().is_empty() {
        return Err(format!(
            "{} elements cannot be grouped by {g}",
            frame.children.len()
        ));
    }
    let mut items: Vec<Vec<u8>> = groups
        .map(|chunk| chunk.iter().flat_map(|f| f.raw.iter().copied()).collect())
        .collect();
    items.sort();
    Ok(items)
}

fn unordered_eq(a: &Frame, b: &Frame, group: Option<usize>) -> Result<bool, String> {
    if !a.is_aggregate() || !b.is_aggregate() {
        // Errors and nulls still have to be identical.
        return Ok(a.raw == b.raw);
    }
    Ok(a.header == b.header && multiset(a, group)? == multiset(b, group)?)
}

fn scan_parts(frame: &Frame) -> Option<(&Frame, &Frame)> {
    if frame.kind == b'*' && frame.children.len() == 2 && frame.children[1].is_aggregate() {
        Some((&frame.children[0], &frame.children[1]))
    } else {
        None
    }
}

/// Whether two replies agree under `mode`. `Err` means a reply does not have the structure the
/// directive requires (a script bug if it happens on Redis).
fn equivalent(mode: Mode, a: &[u8], b: &[u8]) -> Result<bool, String> {
    if mode == Mode::Exact {
        return Ok(a == b);
    }
    let fa = parse_whole(a)?;
    let fb = parse_whole(b)?;
    match mode {
        Mode::Exact => Ok(a == b),
        Mode::Unordered(group) => unordered_eq(&fa, &fb, group),
        Mode::Scan(group) => match (scan_parts(&fa), scan_parts(&fb)) {
            (Some((ca, ea)), Some((cb, eb))) => {
                Ok(ca.raw == cb.raw && unordered_eq(ea, eb, Some(group))?)
            }
            _ => Ok(a == b),
        },
        Mode::TypeOnly => {
            let (mut sa, mut sb) = (String::new(), String::new());
            fa.shape(&mut sa);
            fb.shape(&mut sb);
            Ok(sa == sb)
        }
        Mode::Ignore => Ok(!fa.is_error() && !fb.is_error()),
    }
}

/// Checks that a (Redis) reply has the structure the line's directive expects.
fn check_directive_applies(mode: Mode, reply: &[u8]) -> Result<(), String> {
    let frame = parse_whole(reply)?;
    match mode {
        Mode::Exact | Mode::TypeOnly => Ok(()),
        Mode::Unordered(group) => multiset(&frame, group).map(|_| ()),
        Mode::Scan(group) => {
            let (_, elements) = scan_parts(&frame)
                .ok_or_else(|| "!scan needs a [cursor, [elements]] reply".to_string())?;
            multiset(elements, Some(group)).map(|_| ())
        }
        Mode::Ignore if frame.is_error() => Err("!ignore line answered with an error".into()),
        Mode::Ignore => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Intended differences
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Intended {
    /// Line in `intended.toml` where the entry starts.
    at: usize,
    script: String,
    command: String,
    reason: String,
    redis: Vec<u8>,
    shard_node: Vec<u8>,
}

/// Parses a basic string (`"…"`, TOML escapes plus `\xHH`) that makes up a whole value.
fn parse_string_value(value: &str) -> Result<Vec<u8>, String> {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or("value must be a double-quoted string")?;
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            return Err("unescaped quote inside a string".into());
        }
        if c != '\\' {
            let mut tmp = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            continue;
        }
        let esc = chars.next().ok_or("dangling backslash")?;
        match esc {
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            '"' => out.push(b'"'),
            '\\' => out.push(b'\\'),
            'x' | 'u' | 'U' => {
                let digits = match esc {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(digits).collect();
                let code = Some(&hex)
                    .filter(|h| h.len() == digits && h.chars().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad \\{esc} escape"))?;
                if esc == 'x' {
                    out.push(u8::try_from(code).map_err(|_| "bad \\x escape")?);
                } else {
                    let c = char::from_u32(code).ok_or("bad unicode escape")?;
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
            other => return Err(format!("unknown escape \\{other}")),
        }
    }
    Ok(out)
}

fn parse_intended(source: &str) -> Result<Vec<Intended>, String> {
    fn finish(
        at: usize,
        fields: &mut BTreeMap<String, Vec<u8>>,
        out: &mut Vec<Intended>,
    ) -> Result<(), String> {
        let mut take = |key: &str| {
            fields
                .remove(key)
                .ok_or_else(|| format!("entry at line {at}: missing `{key}`"))
        };
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes).map_err(|_| format!("entry at line {at}: not UTF-8"))
        };
        let entry = Intended {
            at,
            script: text(take("script")?)?,
            command: text(take("command")?)?,
            reason: text(take("reason")?)?,
            redis: take("redis")?,
            shard_node: take("shard_node")?,
        };
        if let Some(extra) = fields.keys().next() {
            return Err(format!("entry at line {at}: unknown key `{extra}`"));
        }
        for (what, bytes) in [("redis", &entry.redis), ("shard_node", &entry.shard_node)] {
            parse_whole(bytes).map_err(|e| format!("entry at line {at}: `{what}`: {e}"))?;
        }
        out.push(entry);
        Ok(())
    }

    let mut out = Vec::new();
    let mut current: Option<(usize, BTreeMap<String, Vec<u8>>)> = None;
    for (idx, raw) in source.lines().enumerate() {
        let line = idx + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed == "[[difference]]" {
            if let Some((at, mut fields)) = current.take() {
                finish(at, &mut fields, &mut out)?;
            }
            current = Some((line, BTreeMap::new()));
            continue;
        }
        let (key, value) = trimmed
            .split_once('=')
            .ok_or_else(|| format!("line {line}: expected `key = \"value\"`"))?;
        let (_, fields) = current
            .as_mut()
            .ok_or_else(|| format!("line {line}: key outside a [[difference]] entry"))?;
        let value = parse_string_value(value.trim()).map_err(|e| format!("line {line}: {e}"))?;
        if fields.insert(key.trim().to_string(), value).is_some() {
            return Err(format!("line {line}: duplicate key"));
        }
    }
    if let Some((at, mut fields)) = current.take() {
        finish(at, &mut fields, &mut out)?;
    }
    Ok(out)
}

fn load_intended(file: &str) -> Vec<Intended> {
    let path = diff_dir().join(file);
    let source =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_intended(&source).unwrap_or_else(|e| panic!("{file}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Servers and connections
// ---------------------------------------------------------------------------------------------

/// A server process for one test; killed and reaped on drop.
struct Server {
    name: &'static str,
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// Processes this one needs (a proxy's shards), stopped with it.
    companions: Vec<Server>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the reference server and checks that it is the Redis version the scripts and
    /// `intended.toml` were recorded against.
    fn redis() -> Server {
        let server = Self::start_redis();
        let info = Conn::open(server.port)
            .and_then(|mut c| c.command(&[b"INFO".to_vec(), b"server".to_vec()]))
            .unwrap_or_else(|e| panic!("redis-server: INFO server: {e}"));
        let info = String::from_utf8_lossy(&info);
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown");
        assert!(
            version.starts_with(REFERENCE_REDIS_VERSION),
            "the differential tests compare against Redis {REFERENCE_REDIS_VERSION}x, but \
             redis-server on PATH is version {version}"
        );
        server
    }

    fn start_redis() -> Server {
        Self::start("redis-server", |port, dir| {
            let mut cmd = Command::new("redis-server");
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                // shard-node runs with `--appendfsync no`; configure Redis the same way so
                // `CONFIG GET appendfsync` is comparable.
                .args(["--appendfsync", "no"])
                .arg("--dir")
                .arg(dir);
            cmd
        })
    }

    fn shard_node() -> Server {
        Self::start("shard-node", |port, dir| {
            let mut cmd = Command::new(SHARD_NODE_BIN);
            cmd.args(["server", "--bind", "127.0.0.1", "--port", &port.to_string()])
                .arg("--dir")
                .arg(dir)
                .args([
                    "--participant",
                    "diff",
                    "--shard",
                    "0",
                    "--appendfsync",
                    "no",
                ]);
            cmd
        })
    }

    /// A proxy over `shards` shard-nodes that split the slots evenly.
    fn proxy_over(shards: usize) -> Server {
        let nodes: Vec<Server> = (0..shards)
            .map(|i| {
                Self::start("shard-node", |port, dir| {
                    let mut cmd = Command::new(SHARD_NODE_BIN);
                    cmd.args(["server", "--bind", "127.0.0.1", "--port", &port.to_string()])
                        .arg("--dir")
                        .arg(dir)
                        .args(["--participant", "diff", "--appendfsync", "no"])
                        .args(["--shard", &i.to_string()]);
                    cmd
                })
            })
            .collect();
        let per = 16384 / shards;
        let map = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let end = if i + 1 == shards {
                    16383
                } else {
                    (i + 1) * per - 1
                };
                format!("{}-{end}=127.0.0.1:{}", i * per, n.port)
            })
            .collect::<Vec<_>>()
            .join(",");
        for n in &nodes {
            let reply = Conn::open(n.port)
                .and_then(|mut c| {
                    c.command(&[
                        b"AA.TOPOLOGY".to_vec(),
                        b"SET".to_vec(),
                        b"1".to_vec(),
                        map.as_bytes().to_vec(),
                    ])
                })
                .unwrap_or_else(|e| panic!("AA.TOPOLOGY SET: {e}"));
            assert_eq!(reply, b"+OK\r\n", "{}", escape_limited(&reply));
        }
        let mut proxy = Self::start("shard-node proxy", |port, _dir| {
            let mut cmd = Command::new(SHARD_NODE_BIN);
            cmd.args(["proxy", "--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--shard-map", &map]);
            cmd
        });
        proxy.companions = nodes;
        proxy
    }

    fn start(name: &'static str, build: impl Fn(u16, &Path) -> Command) -> Server {
        let mut failures = Vec::new();
        // A port picked from the kernel can be taken again before the server binds it; retry
        // with a new port when the server exits before it is ready.
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("create temp dir");
            let data = dir.path().join("data");
            fs::create_dir(&data).expect("create data dir");
            let log = dir.path().join("server.log");
            let port = crate::common::free_port();
            let mut cmd = build(port, &data);
            let out = fs::File::create(&log).expect("create log file");
            let err = out.try_clone().expect("clone log file");
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err));
            let child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) if e.kind() == io::ErrorKind::NotFound && name == "redis-server" => panic!(
                    "redis-server is not installed or not on PATH; the differential tests \
                     need Redis 7.0 (Debian/Ubuntu: apt-get install redis-server)"
                ),
                Err(e) => panic!("cannot start {name} ({cmd:?}): {e}"),
            };
            let mut server = Server {
                name,
                port,
                child,
                log,
                _dir: dir,
                companions: Vec::new(),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => failures.push(format!("port {port}: {e}\n{}", server.log_tail())),
            }
        }
        panic!("{name} did not become ready:\n{}", failures.join("\n---\n"));
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before answering PING",
                    self.name
                ));
            }
            let last = match Conn::open(self.port).and_then(|mut c| c.command(&[b"PING".to_vec()]))
            {
                Ok(reply) if reply == b"+PONG\r\n" => return Ok(()),
                Ok(reply) => format!("PING answered {}", escape_limited(&reply)),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "no PONG within {STARTUP_DEADLINE:?} (last: {last})"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "last log lines of {}:\n{}",
            self.name,
            lines[from..].join("\n")
        )
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status, if the process exits within `limit`.
    fn exit_status_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return None,
            }
        }
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> io::Result<Conn> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, args: &[Vec<u8>]) -> io::Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out)
    }

    /// Reads exactly one complete reply and returns its raw bytes.
    fn read_reply(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match parse_frame(&self.buf, 0) {
                Ok(Some((_, end))) => return Ok(self.buf.drain(..end).collect()),
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("invalid RESP ({e}) in {}", escape_limited(&self.buf)),
                    ))
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn command(&mut self, args: &[Vec<u8>]) -> io::Result<Vec<u8>> {
        self.send(args)?;
        self.read_reply()
    }

    /// Bytes received beyond the last reply read (an unsolicited or extra reply).
    fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// A fresh connection to a server on which `FLUSHALL` has been answered `+OK`.
fn fresh_connection(server: &Server) -> Result<Conn, String> {
    let describe = |e: io::Error| format!("{}: {e}", server.name);
    let mut setup = Conn::open(server.port).map_err(describe)?;
    let reply = setup.command(&[b"FLUSHALL".to_vec()]).map_err(describe)?;
    if reply != b"+OK\r\n" {
        return Err(format!(
            "{}: FLUSHALL answered {}",
            server.name,
            escape_limited(&reply)
        ));
    }
    drop(setup);
    Conn::open(server.port).map_err(describe)
}

// ---------------------------------------------------------------------------------------------
// Running a script
// ---------------------------------------------------------------------------------------------

struct Mismatch {
    line: usize,
    command: String,
    detail: String,
}

fn mode_label(mode: Mode) -> String {
    match mode {
        Mode::Exact => String::new(),
        Mode::Unordered(None) => " [!unordered]".into(),
        Mode::Unordered(Some(g)) => format!(" [!unordered:{g}]"),
        Mode::Scan(g) => format!(" [!scan:{g}]"),
        Mode::TypeOnly => " [!type-only]".into(),
        Mode::Ignore => " [!ignore]".into(),
    }
}

fn only_redis() -> bool {
    std::env::var_os("DIFF_ONLY_REDIS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// What the scripts are compared on, besides `redis-server`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// One shard-node.
    Node,
    /// A `shard-node proxy` over [`PROXIED_SHARDS`] shard-nodes; `intended_proxy.toml` adds the
    /// differences the proxy makes (an entry there replaces one of `intended.toml` for the
    /// same line).
    Proxy,
}

/// Shards behind the proxy in [`Target::Proxy`].
const PROXIED_SHARDS: usize = 3;

fn run_script(name: &str, target: Target) {
    let steps = load_script(name);
    let file = format!("{name}.redis");
    let mut intended: Vec<Intended> = load_intended("intended.toml")
        .into_iter()
        .filter(|e| e.script == file)
        .collect();
    if target == Target::Proxy {
        let proxy: Vec<Intended> = load_intended("intended_proxy.toml")
            .into_iter()
            .filter(|e| e.script == file)
            .collect();
        intended.retain(|e| !proxy.iter().any(|p| p.command == e.command));
        intended.splice(0..0, proxy);
    }
    let mut used = BTreeSet::new();
    let mismatches = if only_redis() {
        run_against_redis_only(&file, &steps, &intended, &mut used)
    } else {
        run_against_both(&file, &steps, &intended, &mut used, target)
    };
    report(&file, steps.len(), &intended, &used, mismatches);
}

/// `DIFF_ONLY_REDIS` mode: prints every Redis reply and checks the directives and the `redis`
/// values of intended-difference entries against Redis.
fn run_against_redis_only(
    file: &str,
    steps: &[Step],
    intended: &[Intended],
    used: &mut BTreeSet<usize>,
) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    let redis = Server::redis();
    let mut conn = fresh_connection(&redis).unwrap_or_else(|e| panic!("{e}"));
    let mut out = format!("==== {file} against redis-server only ====\n");
    for step in steps {
        let reply = conn
            .command(&step.args)
            .unwrap_or_else(|e| panic!("{file}:{}: redis-server: {e}", step.line));
        let marker = if reply.first().is_some_and(|b| matches!(b, b'-' | b'!')) {
            "ERR"
        } else {
            "   "
        };
        let _ = writeln!(
            out,
            "{marker} {file}:{:<4} {}{}\n      -> {}",
            step.line,
            step.text,
            mode_label(step.mode),
            escape_limited(&reply)
        );
        if let Err(e) = check_directive_applies(step.mode, &reply) {
            mismatches.push(Mismatch {
                line: step.line,
                command: step.text.clone(),
                detail: format!("directive does not fit the Redis reply: {e}"),
            });
        }
        if let Some(i) = intended.iter().position(|e| e.command == step.text) {
            used.insert(i);
            let entry = &intended[i];
            if !equivalent(step.mode, &entry.redis, &reply).unwrap_or(false) {
                mismatches.push(Mismatch {
                    line: step.line,
                    command: step.text.clone(),
                    detail: format!(
                        "intended.toml entry (line {}) expects Redis to answer {}, it answered {}",
                        entry.at,
                        escape_limited(&entry.redis),
                        escape_limited(&reply)
                    ),
                });
            }
        }
    }
    println!("{out}");
    mismatches
}

/// Runs the script on both servers and returns every mismatch.
fn run_against_both(
    file: &str,
    steps: &[Step],
    intended: &[Intended],
    used: &mut BTreeSet<usize>,
    target: Target,
) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    let redis = Server::redis();
    let mut shard = match target {
        Target::Node => Server::shard_node(),
        Target::Proxy => Server::proxy_over(PROXIED_SHARDS),
    };
    let mut rconn = fresh_connection(&redis).unwrap_or_else(|e| panic!("{e}"));
    let mut sconn = match fresh_connection(&shard) {
        Ok(c) => Some(c),
        Err(e) => {
            mismatches.push(Mismatch {
                line: 0,
                command: "(setup: FLUSHALL on a fresh connection)".into(),
                detail: e,
            });
            Conn::open(shard.port).ok()
        }
    };

    let mut failures_in_a_row = 0;
    for (idx, step) in steps.iter().enumerate() {
        let rreply = rconn
            .command(&step.args)
            .unwrap_or_else(|e| panic!("{file}:{}: redis-server: {e}", step.line));
        let rextra = rconn.take_leftover();
        assert!(
            rextra.is_empty(),
            "{file}:{}: redis-server sent more than one reply: {}",
            step.line,
            escape_limited(&rextra)
        );

        let sresult = match sconn.as_mut() {
            Some(c) => c
                .command(&step.args)
                .map(|reply| (reply, c.take_leftover())),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "no connection")),
        };
        let mut push = |detail: String| {
            mismatches.push(Mismatch {
                line: step.line,
                command: format!("{}{}", step.text, mode_label(step.mode)),
                detail,
            })
        };
        let (sreply, sextra) = match sresult {
            Ok(r) => {
                failures_in_a_row = 0;
                r
            }
            Err(e) => {
                push(format!(
                    "redis:      {}\n    shard-node: <{e}>",
                    escape_limited(&rreply)
                ));
                // The connection's state is unknown now: start over on a new one, unless the
                // server is gone or keeps failing (a hung server would cost a timeout per line).
                failures_in_a_row += 1;
                sconn = if failures_in_a_row < MAX_FAILURES_IN_A_ROW && shard.is_running() {
                    Conn::open(shard.port).ok()
                } else {
                    None
                };
                if sconn.is_none() {
                    let left = steps.len() - idx - 1;
                    let state = match shard.exit_status_within(Duration::from_secs(2)) {
                        Some(status) => format!("exited with {status}"),
                        None => format!("still running, {failures_in_a_row} failure(s) in a row"),
                    };
                    mismatches.push(Mismatch {
                        line: step.line,
                        command: "(abort)".into(),
                        detail: format!(
                            "shard-node is unreachable ({state}); {left} remaining command(s) \
                             not run\n{}",
                            shard.log_tail()
                        ),
                    });
                    break;
                }
                continue;
            }
        };
        if !sextra.is_empty() {
            push(format!(
                "shard-node sent more than one reply; extra bytes: {}",
                escape_limited(&sextra)
            ));
        }

        if let Some(i) = intended.iter().position(|e| e.command == step.text) {
            used.insert(i);
            let entry = &intended[i];
            let redis_ok = equivalent(step.mode, &entry.redis, &rreply).unwrap_or(false);
            let shard_ok = equivalent(step.mode, &entry.shard_node, &sreply).unwrap_or(false);
            if !redis_ok || !shard_ok {
                push(format!(
                    "intended difference (intended.toml line {}: {})\n    \
                     expected redis:      {}\n    redis:               {}\n    \
                     expected shard-node: {}\n    shard-node:          {}",
                    entry.at,
                    entry.reason,
                    escape_limited(&entry.redis),
                    escape_limited(&rreply),
                    escape_limited(&entry.shard_node),
                    escape_limited(&sreply)
                ));
            }
            continue;
        }
        match equivalent(step.mode, &rreply, &sreply) {
            Ok(true) => {}
            Ok(false) => push(format!(
                "redis:      {}\n    shard-node: {}",
                escape_limited(&rreply),
                escape_limited(&sreply)
            )),
            Err(e) => push(format!(
                "cannot compare ({e})\n    redis:      {}\n    shard-node: {}",
                escape_limited(&rreply),
                escape_limited(&sreply)
            )),
        }
    }
    mismatches
}

fn report(
    file: &str,
    commands: usize,
    intended: &[Intended],
    used: &BTreeSet<usize>,
    mut mismatches: Vec<Mismatch>,
) {
    for (i, entry) in intended.iter().enumerate() {
        if !used.contains(&i) {
            mismatches.push(Mismatch {
                line: 0,
                command: entry.command.clone(),
                detail: format!(
                    "intended.toml entry at line {} matches no line of {file}",
                    entry.at
                ),
            });
        }
    }
    if mismatches.is_empty() {
        return;
    }
    let mut out = format!(
        "{file}: {} mismatch(es) in {commands} command(s)\n",
        mismatches.len()
    );
    for (n, m) in mismatches.iter().enumerate() {
        let _ = write!(
            out,
            "\n[{}] {file}:{}  {}\n    {}\n",
            n + 1,
            m.line,
            m.command,
            m.detail
        );
    }
    panic!("{out}");
}

// ---------------------------------------------------------------------------------------------
// Checks of the suite itself (no servers needed)
// ---------------------------------------------------------------------------------------------

#[test]
fn scripts_are_well_formed() {
    let mut on_disk = BTreeSet::new();
    for entry in fs::read_dir(diff_dir()).expect("read tests/diff") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "redis") {
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
            on_disk.insert(stem.to_string());
        }
    }
    let declared: BTreeSet<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        on_disk, declared,
        "every tests/diff/*.redis script needs an entry in script_tests!"
    );

    let mut total = 0;
    let mut texts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in SCRIPTS {
        let steps = load_script(name);
        assert!(!steps.is_empty(), "{name}.redis has no commands");
        total += steps.len();
        texts.insert(
            format!("{name}.redis"),
            steps.into_iter().map(|s| s.text).collect(),
        );
    }
    assert!(
        total >= MIN_TOTAL_COMMANDS,
        "only {total} commands in all scripts, expected at least {MIN_TOTAL_COMMANDS}"
    );

    for file in ["intended.toml", "intended_proxy.toml"] {
        let mut seen = BTreeSet::new();
        for entry in load_intended(file) {
            assert!(
                seen.insert((entry.script.clone(), entry.command.clone())),
                "{file} line {}: a second entry for `{}` in {}",
                entry.at,
                entry.command,
                entry.script
            );
            let lines = texts.get(&entry.script).unwrap_or_else(|| {
                panic!("{file} line {}: no script named {}", entry.at, entry.script)
            });
            assert!(
                lines.contains(&entry.command),
                "{file} line {}: {} has no line `{}`",
                entry.at,
                entry.script,
                entry.command
            );
            assert!(
                !entry.reason.trim().is_empty(),
                "{file} line {}: empty reason",
                entry.at
            );
            assert_ne!(
                entry.redis, entry.shard_node,
                "{file} line {}: both replies are equal, so this is no difference",
                entry.at
            );
        }
    }
}

#[test]
fn tokenizer_follows_redis_cli() {
    let t = |s: &str| tokenize(s).expect("tokenize");
    assert_eq!(
        t("SET k v"),
        vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]
    );
    assert_eq!(t("  a   \"\"  "), vec![b"a".to_vec(), Vec::new()]);
    assert_eq!(
        t(r#"SET "a b" "x\"y\\z\n\xff""#),
        vec![b"SET".to_vec(), b"a b".to_vec(), b"x\"y\\z\n\xff".to_vec()]
    );
    assert_eq!(
        t(r"ECHO 'it\'s \n'"),
        vec![b"ECHO".to_vec(), b"it's \\n".to_vec()]
    );
    assert!(tokenize("\"open").is_err());
    assert!(tokenize("'open").is_err());
    assert!(tokenize("\"a\"b").is_err());
}

#[test]
fn reply_reader_delimits_resp2_and_resp3() {
    let whole: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":-12\r\n",
        b"$-1\r\n",
        b"$0\r\n\r\n",
        b"$5\r\na\r\nbc\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        b"_\r\n",
        b",1.5\r\n",
        b",inf\r\n",
        b"#t\r\n",
        b"(123456789012345678901234567890\r\n",
        b"=8\r\ntxt:abcd\r\n",
        b"!3\r\nERR\r\n",
        b"%2\r\n+a\r\n:1\r\n+b\r\n~1\r\n,2\r\n",
        b"~2\r\n$1\r\nx\r\n$1\r\ny\r\n",
        b">2\r\n+message\r\n$1\r\nz\r\n",
        b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
        b"$?\r\n;2\r\nab\r\n;1\r\nc\r\n;0\r\n",
        b"*?\r\n:1\r\n:2\r\n.\r\n",
    ];
    for bytes in whole {
        let frame = parse_whole(bytes).unwrap_or_else(|e| panic!("{}: {e}", escape(bytes)));
        assert_eq!(&frame.raw, bytes);
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse_frame(&bytes[..cut], 0), Ok(None)),
                "prefix of {} taken as complete",
                escape(bytes)
            );
        }
    }
    let map = parse_whole(b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n").expect("map");
    assert_eq!(map.children.len(), 4);
    assert!(parse_whole(b"?x\r\n").is_err());
    assert!(parse_whole(b"$2\r\nabc\r\n").is_err());
    assert!(parse_whole(b"+OK\r\n+OK\r\n").is_err());
}

#[test]
fn comparison_modes() {
    let eq = |m, a: &[u8], b: &[u8]| equivalent(m, a, b).expect("comparable");
    let set_ab = b"*2\r\n$1\r\na\r\n$1\r\nb\r\n";
    let set_ba = b"*2\r\n$1\r\nb\r\n$1\r\na\r\n";
    assert!(!eq(Mode::Exact, set_ab, set_ba));
    assert!(eq(Mode::Unordered(None), set_ab, set_ba));
    assert!(!eq(
        Mode::Unordered(None),
        set_ab,
        b"*2\r\n$1\r\na\r\n$1\r\na\r\n"
    ));
    assert!(!eq(
        Mode::Unordered(None),
        set_ab,
        b"~2\r\n$1\r\nb\r\n$1\r\na\r\n"
    ));
    // Pairs stay pairs.
    let h1 = b"*4\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$1\r\n2\r\n";
    let h2 = b"*4\r\n$1\r\ng\r\n$1\r\n2\r\n$1\r\nf\r\n$1\r\n1\r\n";
    let h3 = b"*4\r\n$1\r\nf\r\n$1\r\n2\r\n$1\r\ng\r\n$1\r\n1\r\n";
    assert!(eq(Mode::Unordered(Some(2)), h1, h2));
    assert!(!eq(Mode::Unordered(Some(2)), h1, h3));
    let m1 = b"%2\r\n$1\r\nf\r\n:1\r\n$1\r\ng\r\n:2\r\n";
    let m2 = b"%2\r\n$1\r\ng\r\n:2\r\n$1\r\nf\r\n:1\r\n";
    let m3 = b"%2\r\n$1\r\ng\r\n:1\r\n$1\r\nf\r\n:2\r\n";
    assert!(eq(Mode::Unordered(None), m1, m2));
    assert!(!eq(Mode::Unordered(None), m1, m3));
    // Errors and nulls under !unordered are compared exactly.
    assert!(eq(Mode::Unordered(None), b"*-1\r\n", b"*-1\r\n"));
    assert!(!eq(Mode::Unordered(None), b"-ERR a\r\n", b"-ERR b\r\n"));
    // Scan: cursor exact, elements unordered.
    let s1 = b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n";
    let s2 = b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\na\r\n";
    let s3 = b"*2\r\n$1\r\n7\r\n*2\r\n$1\r\nb\r\n$1\r\na\r\n";
    assert!(eq(Mode::Scan(1), s1, s2));
    assert!(!eq(Mode::Scan(1), s1, s3));
    // Shapes.
    let t1 = b"*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n";
    let t2 = b"*2\r\n$10\r\n1700000001\r\n$5\r\n12345\r\n";
    assert!(eq(Mode::TypeOnly, t1, t2));
    assert!(!eq(Mode::TypeOnly, t1, b"*1\r\n$1\r\n1\r\n"));
    assert!(!eq(Mode::TypeOnly, b"$-1\r\n", b"$1\r\nx\r\n"));
    assert!(eq(Mode::Ignore, b"$3\r\nabc\r\n", b"=7\r\ntxt:abc\r\n"));
    assert!(!eq(Mode::Ignore, b"$3\r\nabc\r\n", b"-ERR no\r\n"));
}

#[test]
fn intended_list_parser() {
    let parsed = parse_intended(
        "# comment\n[[difference]]\nscript = \"a.redis\"\ncommand = \"GET \\\"k\\\"\"\n\
         reason = \"because\"\nredis = \"+OK\\r\\n\"\nshard_node = \"$1\\r\\n\\xff\\r\\n\"\n",
    )
    .expect("parse");
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].command, "GET \"k\"");
    assert_eq!(parsed[0].redis, b"+OK\r\n");
    assert_eq!(parsed[0].shard_node, b"$1\r\n\xff\r\n");
    assert!(parse_intended("[[difference]]\nscript = \"a\"\n").is_err());
    assert!(parse_intended("script = \"a\"\n").is_err());
    assert!(parse_intended(
        "[[difference]]\nscript=\"a\"\ncommand=\"b\"\nreason=\"c\"\nredis=\"+OK\"\n\
         shard_node=\"+OK\\r\\n\"\n"
    )
    .is_err());
}
