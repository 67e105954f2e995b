//! The extra Lua libraries Redis gives scripts: `bit` (LuaBitOp), `cmsgpack` (lua-cmsgpack's
//! `pack` and `unpack`) and `cjson` (lua-cjson's `encode`, `decode` and `null`).
//!
//! Contract: results are Redis 7.0's for the same input. `bit` works on signed 32-bit integers
//! (numbers are rounded and wrapped into that range first); `cmsgpack.pack` encodes each
//! argument with the smallest MessagePack form lua-cmsgpack picks (integral numbers as
//! integers, other numbers as float32 when exact, else float64; tables with keys 1..n as
//! arrays, others as maps; deeper than 16 levels as nil) and `cmsgpack.unpack` returns every
//! value of its input. `cjson.encode` writes numbers with 14 significant digits, tables with
//! keys 1..n as arrays (holes as `null`, too sparse an array is an error), other non-empty
//! tables as objects and empty ones as `{}`; `cjson.decode` maps `null` to `cjson.null`. Bad
//! input is a script error, never a panic.

use mlua::{Lua, MultiValue, Table, Value};

/// A table's key/value pairs.
type Pairs = Vec<(Value, Value)>;

/// A table's pairs, and its greatest key when every key is a positive integer (`Some(0)` for an
/// empty table): what both encoders need to tell arrays from maps.
fn table_shape(t: &Table) -> mlua::Result<(Pairs, Option<usize>)> {
    let mut pairs: Pairs = Vec::new();
    for pair in t.clone().pairs::<Value, Value>() {
        pairs.push(pair?);
    }
    let index = |k: &Value| match k {
        Value::Integer(i) if *i >= 1 => Some(*i as usize),
        Value::Number(n) if *n >= 1.0 && n.fract() == 0.0 => Some(*n as usize),
        _ => None,
    };
    let max = pairs
        .iter()
        .map(|(k, _)| index(k))
        .try_fold(0usize, |m, i| i.map(|i| m.max(i)));
    Ok((pairs, max))
}

/// Nesting depth past which lua-cmsgpack encodes nil.
const MAX_NESTING: usize = 16;

/// Installs `bit` and `cmsgpack` as globals of `lua`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    lua.globals().raw_set("bit", bit_library(lua)?)?;
    lua.globals().raw_set("cmsgpack", msgpack_library(lua)?)?;
    lua.globals().raw_set("cjson", json_library(lua)?)?;
    Ok(())
}

/// An error raised by a library function, prefixed with the script line like Lua's own
/// (`user_script:1: Missing bytes in input.`).
fn lib_error(lua: &Lua, message: &str) -> mlua::Error {
    let text = match super::lua::location(lua) {
        Some((chunk, line)) => format!("ERR {}:{line}: {message}", chunk.trim_start_matches('@')),
        None => format!("ERR {message}"),
    };
    super::lua::script_error(lua, &text)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => s.to_str().ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// LuaBitOp's normalisation: round to the nearest integer and keep its low 32 bits.
fn tobit(n: f64) -> i32 {
    if !n.is_finite() {
        return 0;
    }
    let rounded = n.round_ties_even();
    (rounded.rem_euclid(4_294_967_296.0) as u64 as u32) as i32
}

fn arg(lua: &Lua, args: &MultiValue, i: usize) -> mlua::Result<i32> {
    args.get(i)
        .and_then(number)
        .map(tobit)
        .ok_or_else(|| lib_error(lua, &format!("bad argument #{} (number expected)", i + 1)))
}

fn bit_library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "tobit",
        lua.create_function(|lua, a: MultiValue| Ok(f64::from(arg(lua, &a, 0)?)))?,
    )?;
    t.raw_set(
        "bnot",
        lua.create_function(|lua, a: MultiValue| Ok(f64::from(!arg(lua, &a, 0)?)))?,
    )?;
    for (name, op) in [
        ("band", (|x: i32, y: i32| x & y) as fn(i32, i32) -> i32),
        ("bor", |x, y| x | y),
        ("bxor", |x, y| x ^ y),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |lua, a: MultiValue| {
                let mut acc = arg(lua, &a, 0)?;
                for i in 1..a.len() {
                    acc = op(acc, arg(lua, &a, i)?);
                }
                Ok(f64::from(acc))
            })?,
        )?;
    }
    for (name, op) in [
        (
            "lshift",
            (|x: i32, n: u32| ((x as u32) << n) as i32) as fn(i32, u32) -> i32,
        ),
        ("rshift", |x, n| ((x as u32) >> n) as i32),
        ("arshift", |x, n| x >> n),
        ("rol", |x, n| (x as u32).rotate_left(n) as i32),
        ("ror", |x, n| (x as u32).rotate_right(n) as i32),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |lua, a: MultiValue| {
                let x = arg(lua, &a, 0)?;
                let n = (arg(lua, &a, 1)? & 31) as u32;
                Ok(f64::from(op(x, n)))
            })?,
        )?;
    }
    t.raw_set(
        "bswap",
        lua.create_function(|lua, a: MultiValue| Ok(f64::from(arg(lua, &a, 0)?.swap_bytes())))?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|lua, a: MultiValue| {
            let x = arg(lua, &a, 0)? as u32;
            let n = if a.len() > 1 { arg(lua, &a, 1)? } else { 8 };
            let upper = n < 0;
            let digits = n.unsigned_abs().min(8) as usize;
            let text = if upper {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            Ok(text[8 - digits..].to_string())
        })?,
    )?;
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// cmsgpack

fn msgpack_library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                return Err(lib_error(
                    lua,
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                encode(&mut out, v, 0)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, s: mlua::String| {
            let bytes = s.as_bytes().to_vec();
            let mut at = 0;
            let mut values = Vec::new();
            while at < bytes.len() {
                values.push(decode(lua, &bytes, &mut at)?);
            }
            Ok(MultiValue::from_iter(values))
        })?,
    )?;
    Ok(t)
}

fn encode_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    if n.is_finite() && (n as i64) as f64 == n {
        encode_int(out, n as i64);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_bits().to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_bits().to_be_bytes());
    }
}

fn encode_len(out: &mut Vec<u8>, len: usize, fix: u8, fix_max: usize, w16: u8, w32: u8) {
    if len <= fix_max {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(w16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(w32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn encode(out: &mut Vec<u8>, v: &Value, depth: usize) -> mlua::Result<()> {
    match v {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => encode_int(out, *i),
        Value::Number(n) => encode_number(out, *n),
        Value::String(s) => {
            let bytes = s.as_bytes();
            let len = bytes.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len <= 0xff {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else if len <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(&bytes);
        }
        Value::Table(t) if depth < MAX_NESTING => {
            let (pairs, max) = table_shape(t)?;
            match max {
                Some(max) if max == pairs.len() => {
                    encode_len(out, max, 0x90, 15, 0xdc, 0xdd);
                    for i in 1..=max {
                        let item: Value = t.raw_get(i)?;
                        encode(out, &item, depth + 1)?;
                    }
                }
                _ => {
                    encode_len(out, pairs.len(), 0x80, 15, 0xde, 0xdf);
                    for (k, v) in &pairs {
                        encode(out, k, depth + 1)?;
                        encode(out, v, depth + 1)?;
                    }
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

fn take<'a>(lua: &Lua, bytes: &'a [u8], at: &mut usize, n: usize) -> mlua::Result<&'a [u8]> {
    let end = at.checked_add(n).filter(|e| *e <= bytes.len());
    let Some(end) = end else {
        return Err(lib_error(lua, "Missing bytes in input."));
    };
    let s = &bytes[*at..end];
    *at = end;
    Ok(s)
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn decode(lua: &Lua, bytes: &[u8], at: &mut usize) -> mlua::Result<Value> {
    let tag = take(lua, bytes, at, 1)?[0];
    let num = |n: f64| Value::Number(n);
    Ok(match tag {
        0x00..=0x7f => num(f64::from(tag)),
        0xe0..=0xff => num(f64::from(tag as i8)),
        0xc0 => Value::Nil,
        0xc2 => Value::Boolean(false),
        0xc3 => Value::Boolean(true),
        0xcc => num(be(take(lua, bytes, at, 1)?) as f64),
        0xcd => num(be(take(lua, bytes, at, 2)?) as f64),
        0xce => num(be(take(lua, bytes, at, 4)?) as f64),
        0xcf => num(be(take(lua, bytes, at, 8)?) as f64),
        0xd0 => num(f64::from(take(lua, bytes, at, 1)?[0] as i8)),
        0xd1 => num(f64::from(be(take(lua, bytes, at, 2)?) as u16 as i16)),
        0xd2 => num(f64::from(be(take(lua, bytes, at, 4)?) as u32 as i32)),
        0xd3 => num(be(take(lua, bytes, at, 8)?) as i64 as f64),
        0xca => num(f64::from(f32::from_bits(
            be(take(lua, bytes, at, 4)?) as u32
        ))),
        0xcb => num(f64::from_bits(be(take(lua, bytes, at, 8)?))),
        0xa0..=0xbf | 0xd9 | 0xda | 0xdb | 0xc4 | 0xc5 | 0xc6 => {
            let len = match tag {
                0xa0..=0xbf => usize::from(tag & 0x1f),
                0xd9 | 0xc4 => be(take(lua, bytes, at, 1)?) as usize,
                0xda | 0xc5 => be(take(lua, bytes, at, 2)?) as usize,
                _ => be(take(lua, bytes, at, 4)?) as usize,
            };
            Value::String(lua.create_string(take(lua, bytes, at, len)?)?)
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let len = match tag {
                0x90..=0x9f => usize::from(tag & 0x0f),
                0xdc => be(take(lua, bytes, at, 2)?) as usize,
                _ => be(take(lua, bytes, at, 4)?) as usize,
            };
            let t = lua.create_table()?;
            for i in 1..=len {
                t.raw_set(i, decode(lua, bytes, at)?)?;
            }
            Value::Table(t)
        }
        0x80..=0x8f | 0xde | 0xdf => {
            let len = match tag {
                0x80..=0x8f => usize::from(tag & 0x0f),
                0xde => be(take(lua, bytes, at, 2)?) as usize,
                _ => be(take(lua, bytes, at, 4)?) as usize,
            };
            let t = lua.create_table()?;
            for _ in 0..len {
                let k = decode(lua, bytes, at)?;
                let v = decode(lua, bytes, at)?;
                if !matches!(k, Value::Nil) {
                    t.raw_set(k, v)?;
                }
            }
            Value::Table(t)
        }
        _ => return Err(lib_error(lua, "Bad data format in input.")),
    })
}

// ---------------------------------------------------------------------------------------------
// cjson

/// Nesting depth past which encoding fails, as in lua-cjson.
const JSON_MAX_DEPTH: usize = 1000;

fn null() -> Value {
    Value::LightUserData(mlua::LightUserData(std::ptr::null_mut()))
}

fn json_library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("null", null())?;
    t.raw_set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let mut out = Vec::new();
            json_encode(lua, &mut out, &v, 0)?;
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            let bytes = s.as_bytes().to_vec();
            let mut p = JsonParser {
                lua,
                bytes: &bytes,
                at: 0,
            };
            p.skip_ws();
            let v = p.value(0)?;
            p.skip_ws();
            if p.at < bytes.len() {
                return Err(p.error("Expected the end but found invalid token"));
            }
            Ok(v)
        })?,
    )?;
    Ok(t)
}

/// C's `%.14g`.
fn format_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{n:.13e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..14).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (13 - exp).max(0) as usize;
        let fixed = format!("{n:.decimals$}");
        if fixed.contains('.') {
            fixed
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            fixed
        }
    }
}

fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let raw = out;
    for &b in bytes {
        match b {
            b'"' => raw.extend_from_slice(b"\\\""),
            b'\\' => raw.extend_from_slice(b"\\\\"),
            b'/' => raw.extend_from_slice(b"\\/"),
            b'\n' => raw.extend_from_slice(b"\\n"),
            b'\r' => raw.extend_from_slice(b"\\r"),
            b'\t' => raw.extend_from_slice(b"\\t"),
            0x08 => raw.extend_from_slice(b"\\b"),
            0x0c => raw.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => raw.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            other => raw.push(other),
        }
    }
    // Bytes that are not UTF-8 go through as they are (a Lua string is bytes).
    raw.push(b'"');
}

fn json_encode(lua: &Lua, out: &mut Vec<u8>, v: &Value, depth: usize) -> mlua::Result<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(u) if u.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => out.extend_from_slice(format_g14(*i as f64).as_bytes()),
        Value::Number(n) => {
            if !n.is_finite() {
                return Err(lib_error(
                    lua,
                    "Cannot serialise number: must not be NaN or Inf",
                ));
            }
            out.extend_from_slice(format_g14(*n).as_bytes());
        }
        Value::String(s) => json_string(out, &s.as_bytes()),
        Value::Table(t) => {
            if depth + 1 > JSON_MAX_DEPTH {
                return Err(lib_error(
                    lua,
                    &format!("Cannot serialise, excessive nesting ({})", depth + 2),
                ));
            }
            let (pairs, max) = table_shape(t)?;
            match max {
                Some(max) if max > 0 => {
                    if max > pairs.len() * 2 && max > 10 {
                        return Err(lib_error(
                            lua,
                            "Cannot serialise table: excessively sparse array",
                        ));
                    }
                    out.push(b'[');
                    for i in 1..=max {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i)?;
                        json_encode(lua, out, &item, depth + 1)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    for (n, (k, val)) in pairs.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        match k {
                            Value::String(s) => json_string(out, &s.as_bytes()),
                            Value::Integer(i) => json_string(out, format_g14(*i as f64).as_bytes()),
                            Value::Number(x) => json_string(out, format_g14(*x).as_bytes()),
                            other => {
                                return Err(lib_error(
                                    lua,
                                    &format!(
                                        "Cannot serialise {}: table key must be a number or string",
                                        other.type_name()
                                    ),
                                ))
                            }
                        }
                        out.push(b':');
                        json_encode(lua, out, val, depth + 1)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(lib_error(
                lua,
                &format!("Cannot serialise {}: type not supported", other.type_name()),
            ))
        }
    }
    Ok(())
}

struct JsonParser<'a> {
    lua: &'a Lua,
    bytes: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn error(&self, what: &str) -> mlua::Error {
        lib_error(self.lua, &format!("{what} at character {}", self.at + 1))
    }

    fn skip_ws(&mut self) {
        while self.at < self.bytes.len()
            && matches!(self.bytes[self.at], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.at += 1;
        }
    }

    /// Steps over a container's opening character; true when it closes right away (`{}`, `[]`).
    fn open(&mut self, close: u8) -> bool {
        self.at += 1;
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&close) {
            self.at += 1;
            return true;
        }
        false
    }

    /// After an item: true at the container's end, false after a comma.
    fn closed(&mut self, close: u8, what: &str) -> mlua::Result<bool> {
        self.skip_ws();
        match self.bytes.get(self.at) {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(c) if *c == close => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(self.error(&format!(
                "Expected comma or {what} end but found invalid token"
            ))),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> mlua::Result<Value> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(v)
        } else {
            Err(self.error("Expected value but found invalid token"))
        }
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        if depth > JSON_MAX_DEPTH {
            return Err(self.error("Found too many nested data structures"));
        }
        self.skip_ws();
        let Some(&c) = self.bytes.get(self.at) else {
            return Err(self.error("Expected value but found T_END"));
        };
        match c {
            b'{' => {
                let t = self.lua.create_table()?;
                if self.open(b'}') {
                    return Ok(Value::Table(t));
                }
                loop {
                    self.skip_ws();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return Err(
                            self.error("Expected object key string but found invalid token")
                        );
                    }
                    let key = self.string()?;
                    self.skip_ws();
                    if self.bytes.get(self.at) != Some(&b':') {
                        return Err(self.error("Expected colon but found invalid token"));
                    }
                    self.at += 1;
                    let v = self.value(depth + 1)?;
                    t.raw_set(key, v)?;
                    if self.closed(b'}', "object")? {
                        return Ok(Value::Table(t));
                    }
                }
            }
            b'[' => {
                let t = self.lua.create_table()?;
                if self.open(b']') {
                    return Ok(Value::Table(t));
                }
                for i in 1.. {
                    let v = self.value(depth + 1)?;
                    t.raw_set(i, v)?;
                    if self.closed(b']', "array")? {
                        break;
                    }
                }
                Ok(Value::Table(t))
            }
            b'"' => Ok(Value::String(self.string()?)),
            b't' => self.literal(b"true", Value::Boolean(true)),
            b'f' => self.literal(b"false", Value::Boolean(false)),
            b'n' => self.literal(b"null", null()),
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                while self.at < self.bytes.len()
                    && matches!(
                        self.bytes[self.at],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.at += 1;
                }
                std::str::from_utf8(&self.bytes[start..self.at])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Value::Number)
                    .ok_or_else(|| {
                        self.at = start;
                        self.error("Expected value but found invalid number")
                    })
            }
            _ => Err(self.error("Expected value but found invalid token")),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.bytes.get(self.at..self.at + 4)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
        self.at += 4;
        Some(v)
    }

    fn string(&mut self) -> mlua::Result<mlua::String> {
        self.at += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.bytes.get(self.at) else {
                return Err(self.error("Expected value but found unexpected end of string"));
            };
            self.at += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.bytes.get(self.at) else {
                        return Err(self.error("Expected value but found invalid escape code"));
                    };
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let Some(mut code) = self.hex4() else {
                                return Err(self.error(
                                    "Expected value but found invalid unicode escape code",
                                ));
                            };
                            if (0xd800..0xdc00).contains(&code)
                                && self.bytes.get(self.at..self.at + 2) == Some(b"\\u")
                            {
                                self.at += 2;
                                let low = self.hex4().unwrap_or(0);
                                code = 0x10000
                                    + ((code - 0xd800) << 10)
                                    + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.error("Expected value but found invalid escape code")),
                    }
                }
                other => out.push(other),
            }
        }
        self.lua.create_string(&out)
    }
}
