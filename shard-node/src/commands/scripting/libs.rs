//! The extra Lua libraries Redis gives scripts: `bit` (LuaBitOp) and `cmsgpack`
//! (lua-cmsgpack's `pack` and `unpack`).
//!
//! Contract: results are Redis 7.0's for the same input. `bit` works on signed 32-bit integers
//! (numbers are rounded and wrapped into that range first); `cmsgpack.pack` encodes each
//! argument with the smallest MessagePack form lua-cmsgpack picks (integral numbers as
//! integers, other numbers as float32 when exact, else float64; tables with keys 1..n as
//! arrays, others as maps; deeper than 16 levels as nil) and `cmsgpack.unpack` returns every
//! value of its input. Bad input is a script error, never a panic.

use mlua::{Lua, MultiValue, Table, Value};

/// Nesting depth past which lua-cmsgpack encodes nil.
const MAX_NESTING: usize = 16;

/// Installs `bit` and `cmsgpack` as globals of `lua`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    lua.globals().raw_set("bit", bit_library(lua)?)?;
    lua.globals().raw_set("cmsgpack", msgpack_library(lua)?)?;
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
            let mut pairs: Vec<(Value, Value)> = Vec::new();
            for pair in t.clone().pairs::<Value, Value>() {
                pairs.push(pair?);
            }
            let index = |k: &Value| match k {
                Value::Integer(i) if *i > 0 => Some(*i as usize),
                Value::Number(n) if *n > 0.0 && n.fract() == 0.0 => Some(*n as usize),
                _ => None,
            };
            let max = pairs
                .iter()
                .map(|(k, _)| index(k))
                .try_fold(0usize, |m, i| i.map(|i| m.max(i)));
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
