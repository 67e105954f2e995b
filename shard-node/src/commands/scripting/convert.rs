//! Conversions between Redis replies and Lua values, as Redis 7.0 does them
//! (`redisProtocolToLuaType` and `luaReplyToRedisReply` in `script_lua.c`).
//!
//! Contract:
//! - [`parse_reply`] reads one complete RESP2/RESP3 reply (as written by a command handler)
//!   into a [`Reply`] tree; malformed or truncated bytes are an error, never a panic.
//! - [`reply_to_lua`] turns a reply into the Lua value a script sees: integers are numbers,
//!   bulk strings strings, a null bulk or null array `false` (RESP2) or `nil` (RESP3), a status
//!   `{ok=...}`, an error `{err=...}`, arrays tables, and in RESP3 maps `{map={...}}`, sets
//!   `{set={member=true}}`, doubles `{double=n}`, big numbers `{big_number=s}`, booleans and
//!   verbatim strings `{verbatim_string={format=..., string=...}}`.
//! - [`write_lua_value`] writes the reply of a script's result: numbers truncated to integers,
//!   strings as bulk strings, `true` as 1 (or `#t` after `redis.setresp(3)`), `false` and `nil`
//!   as null, tables with `err` / `ok` / `double` / `big_number` / `map` / `set` fields as those
//!   replies, other tables as arrays that stop at the first `nil`.

use crate::resp::{Protocol, ReplyWriter};
use mlua::{Lua, Table, Value};

/// Deepest nesting of replies and of script result tables accepted.
const MAX_DEPTH: usize = 1000;

/// One reply, as far as scripts can tell replies apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Bool(bool),
    BigNumber(Vec<u8>),
    Verbatim(Vec<u8>, Vec<u8>),
}

/// The bytes of a reply are not RESP (a handler bug, reported to the script as an error).
#[derive(Debug, thiserror::Error)]
#[error("ERR malformed reply from a command called by a script")]
pub struct MalformedReply;

/// Parses the first complete reply of `buf`.
pub fn parse_reply(buf: &[u8]) -> Result<Reply, MalformedReply> {
    let mut pos = 0;
    parse_at(buf, &mut pos, 0)
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8], MalformedReply> {
    let rest = buf.get(*pos..).ok_or(MalformedReply)?;
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(MalformedReply)?;
    *pos += end + 2;
    Ok(&rest[..end])
}

fn number(text: &[u8]) -> Result<i64, MalformedReply> {
    crate::resp::parse_i64_strict(text).ok_or(MalformedReply)
}

fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Reply, MalformedReply> {
    if depth > MAX_DEPTH {
        return Err(MalformedReply);
    }
    let kind = *buf.get(*pos).ok_or(MalformedReply)?;
    *pos += 1;
    let head = line(buf, pos)?;
    let count = |n: i64| usize::try_from(n).map_err(|_| MalformedReply);
    Ok(match kind {
        b'+' => Reply::Status(head.to_vec()),
        b'-' => Reply::Error(head.to_vec()),
        b':' => Reply::Int(number(head)?),
        b'_' => Reply::Null,
        b'#' => Reply::Bool(head == b"t"),
        b',' => Reply::Double(parse_double(head)?),
        b'(' => Reply::BigNumber(head.to_vec()),
        b'$' | b'=' | b'!' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Reply::Null);
            }
            let n = count(n)?;
            let data = buf.get(*pos..*pos + n).ok_or(MalformedReply)?.to_vec();
            *pos += n + 2;
            match kind {
                b'=' if data.len() >= 4 => Reply::Verbatim(data[..3].to_vec(), data[4..].to_vec()),
                b'!' => Reply::Error(data),
                _ => Reply::Bulk(data),
            }
        }
        b'*' | b'~' | b'>' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Reply::Null);
            }
            let n = count(n)?;
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(parse_at(buf, pos, depth + 1)?);
            }
            if kind == b'~' {
                Reply::Set(items)
            } else {
                Reply::Array(items)
            }
        }
        b'%' => {
            let n = count(number(head)?)?;
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let k = parse_at(buf, pos, depth + 1)?;
                let v = parse_at(buf, pos, depth + 1)?;
                items.push((k, v));
            }
            Reply::Map(items)
        }
        _ => return Err(MalformedReply),
    })
}

fn parse_double(text: &[u8]) -> Result<f64, MalformedReply> {
    match text {
        b"inf" => Ok(f64::INFINITY),
        b"-inf" => Ok(f64::NEG_INFINITY),
        b"nan" => Ok(f64::NAN),
        _ => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(MalformedReply),
    }
}

/// A table `{<field> = value}`.
fn single(lua: &Lua, field: &str, value: impl mlua::IntoLua) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(field, value)?;
    Ok(Value::Table(t))
}

/// The Lua value a script sees for `reply` (see the module contract).
pub fn reply_to_lua(lua: &Lua, reply: &Reply, proto: Protocol) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Status(s) => single(lua, "ok", lua.create_string(s)?)?,
        Reply::Error(e) => single(lua, "err", lua.create_string(e)?)?,
        Reply::Int(n) => Value::Number(*n as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(b)?),
        Reply::Null if proto == Protocol::Resp3 => Value::Nil,
        Reply::Null => Value::Boolean(false),
        Reply::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, reply_to_lua(lua, item, proto)?)?;
            }
            Value::Table(t)
        }
        Reply::Map(entries) => {
            let inner = lua.create_table()?;
            for (k, v) in entries {
                inner.raw_set(reply_to_lua(lua, k, proto)?, reply_to_lua(lua, v, proto)?)?;
            }
            single(lua, "map", inner)?
        }
        Reply::Set(items) => {
            let inner = lua.create_table()?;
            for item in items {
                inner.raw_set(reply_to_lua(lua, item, proto)?, true)?;
            }
            single(lua, "set", inner)?
        }
        Reply::Double(d) => single(lua, "double", *d)?,
        Reply::Bool(b) => Value::Boolean(*b),
        Reply::BigNumber(s) => single(lua, "big_number", lua.create_string(s)?)?,
        Reply::Verbatim(format, text) => {
            let inner = lua.create_table()?;
            inner.raw_set("format", lua.create_string(format)?)?;
            inner.raw_set("string", lua.create_string(text)?)?;
            single(lua, "verbatim_string", inner)?
        }
    })
}

/// A string field of a table, if the field holds a string (`rawget`, as Redis).
fn string_field(t: &Table, field: &str) -> Option<mlua::String> {
    match t.raw_get::<Value>(field) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Writes the reply for a script's result `v`; `script_proto` is the protocol the script
/// chose with `redis.setresp` (it decides how booleans are sent).
pub fn write_lua_value(w: &mut ReplyWriter<'_>, v: &Value, script_proto: Protocol) {
    write_value(w, v, script_proto, 0)
}

fn write_value(w: &mut ReplyWriter<'_>, v: &Value, script_proto: Protocol, depth: usize) {
    if depth > MAX_DEPTH {
        w.error("ERR reached lua stack limit");
        return;
    }
    match v {
        Value::String(s) => w.bulk(&s.as_bytes()),
        Value::Boolean(b) if script_proto == Protocol::Resp3 => w.bool(*b),
        Value::Boolean(true) => w.int(1),
        Value::Integer(n) => w.int(*n),
        Value::Number(n) => w.int(*n as i64),
        Value::Table(t) => write_table(w, t, script_proto, depth),
        _ => w.null(),
    }
}

fn write_table(w: &mut ReplyWriter<'_>, t: &Table, script_proto: Protocol, depth: usize) {
    if let Some(err) = string_field(t, "err") {
        let text = String::from_utf8_lossy(&err.as_bytes()).into_owned();
        w.error(error_text(&text));
        return;
    }
    if let Some(ok) = string_field(t, "ok") {
        w.simple(&String::from_utf8_lossy(&ok.as_bytes()));
        return;
    }
    if let Ok(Value::Number(d)) = t.raw_get::<Value>("double") {
        w.double(d);
        return;
    }
    if let Ok(Value::Integer(d)) = t.raw_get::<Value>("double") {
        w.double(d as f64);
        return;
    }
    if let Some(big) = string_field(t, "big_number") {
        let text = String::from_utf8_lossy(&big.as_bytes()).into_owned();
        if w.proto == Protocol::Resp3 {
            w.raw(format!("({text}\r\n").as_bytes());
        } else {
            w.bulk(text.as_bytes());
        }
        return;
    }
    if let Ok(Value::Table(inner)) = t.raw_get::<Value>("verbatim_string") {
        if let (Some(format), Some(text)) = (
            string_field(&inner, "format"),
            string_field(&inner, "string"),
        ) {
            w.verbatim(
                &String::from_utf8_lossy(&format.as_bytes()),
                &text.as_bytes(),
            );
            return;
        }
    }
    if let Ok(Value::Table(inner)) = t.raw_get::<Value>("map") {
        let pairs: Vec<(Value, Value)> = inner.pairs().filter_map(Result::ok).collect();
        w.map(pairs.len());
        for (k, v) in &pairs {
            write_value(w, k, script_proto, depth + 1);
            write_value(w, v, script_proto, depth + 1);
        }
        return;
    }
    if let Ok(Value::Table(inner)) = t.raw_get::<Value>("set") {
        let members: Vec<Value> = inner
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .collect();
        w.set(members.len());
        for m in &members {
            write_value(w, m, script_proto, depth + 1);
        }
        return;
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(v),
        }
    }
    w.array(items.len());
    for item in &items {
        write_value(w, item, script_proto, depth + 1);
    }
}

/// The text of an error reply made from a script's `{err=...}`: Redis sends it as given
/// (`-%s`), without trailing line breaks.
pub fn error_text(text: &str) -> &str {
    text.trim_end_matches(['\r', '\n'])
}

/// The `err` text Redis stores in a Lua error table for an error message (`luaPushErrorBuff`):
/// `-CODE message` loses its dash, a text without a code gets `ERR `, line breaks at the end go.
pub fn lua_error_text(text: &str) -> String {
    let (code, msg) = match text.strip_prefix('-') {
        Some(rest) => match rest.split_once(' ') {
            Some((code, msg)) => (code, msg),
            None => ("ERR", rest),
        },
        None => ("ERR", text),
    };
    format!("{code} {}", msg.trim_matches(['\r', '\n']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_malformed_or_truncated_ones_are_errors() {
        let all = b"*3\r\n:1\r\n$2\r\nab\r\n%1\r\n+k\r\n_\r\n";
        assert_eq!(
            parse_reply(all).ok(),
            Some(Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(b"ab".to_vec()),
                Reply::Map(vec![(Reply::Status(b"k".to_vec()), Reply::Null)]),
            ]))
        );
        for end in 0..all.len() - 1 {
            assert!(parse_reply(&all[..end]).is_err(), "prefix of {end} bytes");
        }
        for bad in [
            &b"?x\r\n"[..],
            b"$-5x\r\n",
            b"*99999999999999999999\r\n",
            b":\r\n",
        ] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(parse_reply(deep.as_bytes()).is_err());
    }

    #[test]
    fn lua_error_texts_follow_redis() {
        assert_eq!(
            lua_error_text("-WRONGTYPE bad type\r\n"),
            "WRONGTYPE bad type"
        );
        assert_eq!(lua_error_text("-nocode"), "ERR nocode");
        assert_eq!(lua_error_text("plain text"), "ERR plain text");
        assert_eq!(error_text("x\r\n"), "x");
        assert_eq!(
            super::super::sha1_hex(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
