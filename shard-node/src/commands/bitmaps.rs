//! Bitmap commands on strings: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD,
//! BITFIELD_RO.
//!
//! Contract:
//! - A string is a register (`docs/semantics.md`, Strings, *Bitmaps*). Every bit write (SETBIT,
//!   BITFIELD SET/INCRBY, BITOP's destination) is a read-modify-write of the whole value,
//!   committed as a register write of the resulting string ([`OpKind::StrSet`]) like APPEND and
//!   SETRANGE: concurrent bit writes to one key in two regions resolve last-writer-wins on the
//!   whole string. A counter (INCR) is read as its decimal text, and the write cancels the
//!   increments it observed.
//! - A command that changes nothing (the bit already has the value, BITFIELD results equal to
//!   the stored bytes) writes nothing.
//! - Replies and error texts are Redis 7.0's, in Redis's order of checks (BITCOUNT and BITPOS
//!   read the key before they parse the range, so a missing key answers without looking at it).
//! - Bits are numbered from the most significant bit of the first byte; offsets are limited to
//!   `proto-max-bulk-len` bytes, as in Redis.

use super::strings::{read_string, string_write_ops, TtlChange};
use super::*;

const ERR_BIT_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const ERR_BIT_VALUE: &str = "ERR bit is not an integer or out of range";
const ERR_BIT_ARG: &str = "ERR The bit argument must be 1 or 0.";
const ERR_BITFIELD_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
const ERR_OVERFLOW_TYPE: &str = "ERR Invalid OVERFLOW type specified";
const ERR_BITFIELD_RO: &str = "ERR BITFIELD_RO only supports the GET subcommand";
const ERR_BITOP_NOT: &str = "ERR BITOP NOT must be called with a single source key.";

#[rustfmt::skip]
pub fn commands() -> Vec<Command> {
    vec![
        cmd("setbit", 4, "write denyoom", 1, 1, 1, "bitmap", "Sets or clears the bit at offset of the string value.", setbit),
        cmd("getbit", 3, "readonly fast", 1, 1, 1, "bitmap", "Returns a bit value by offset.", getbit),
        cmd("bitcount", -2, "readonly", 1, 1, 1, "bitmap", "Counts the number of set bits in a string.", bitcount),
        cmd("bitpos", -3, "readonly", 1, 1, 1, "bitmap", "Finds the first set or clear bit in a string.", bitpos),
        cmd("bitop", -4, "write denyoom", 2, -1, 1, "bitmap", "Performs bitwise operations on strings and stores the result.", bitop),
        cmd("bitfield", -2, "write denyoom", 1, 1, 1, "bitmap", "Performs arbitrary bitfield integer operations on strings.", bitfield),
        cmd("bitfield_ro", -2, "readonly fast", 1, 1, 1, "bitmap", "Performs read-only bitfield integer operations on strings.", bitfield_ro),
    ]
}

/// The string at `key` for a read, counting a keyspace hit or miss; WRONGTYPE otherwise.
fn read_bits(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Option<Vec<u8>>, CmdError> {
    let value = read_string(ctx, key)?.map(|v| v.into_owned());
    if value.is_some() {
        ctx.db.stats.keyspace_hits += 1;
    } else {
        ctx.db.stats.keyspace_misses += 1;
    }
    Ok(value)
}

/// `getBitOffsetFromArgument`: a bit offset below `proto-max-bulk-len * 8`; with `bits`
/// (BITFIELD), `#n` means `n * bits`.
fn bit_offset(ctx: &Ctx<'_>, arg: &[u8], bits: Option<u32>) -> Result<u64, CmdError> {
    let err = || Cow::Borrowed(ERR_BIT_OFFSET);
    let (text, scale) = match (arg.split_first(), bits) {
        (Some((b'#', rest)), Some(bits)) => (rest, i64::from(bits)),
        _ => (arg, 1),
    };
    let n = crate::resp::parse_i64_strict(text)
        .ok_or_else(err)?
        .wrapping_mul(scale);
    if n < 0 || (n as u64 >> 3) >= ctx.db.settings.proto_max_bulk_len {
        return Err(err());
    }
    Ok(n as u64)
}

fn get_bit(bytes: &[u8], offset: u64) -> bool {
    let byte = (offset >> 3) as usize;
    bytes
        .get(byte)
        .is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

fn set_bit(bytes: &mut [u8], offset: u64, on: bool) {
    let byte = (offset >> 3) as usize;
    if let Some(b) = bytes.get_mut(byte) {
        let mask = 0x80 >> (offset & 7);
        if on {
            *b |= mask;
        } else {
            *b &= !mask;
        }
    }
}

/// Writes `value` as the new register value of `key`, keeping its expiry.
fn write_value(ctx: &mut Ctx<'_>, key: &Bytes, value: Vec<u8>) {
    let ops = string_write_ops(ctx, key, Bytes::from(value), TtlChange::Keep);
    ctx.write(ops);
}

fn setbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2], None)?;
    let on = match crate::resp::parse_i64_strict(&args[3]) {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(Cow::Borrowed(ERR_BIT_VALUE)),
    };
    let key = &args[1];
    let old = read_string(ctx, key)?.map(|v| v.into_owned());
    let existed = old.is_some();
    let mut value = old.unwrap_or_default();
    let previous = get_bit(&value, offset);
    let needed = (offset >> 3) as usize + 1;
    let grows = value.len() < needed;
    if grows {
        value.resize(needed, 0);
    }
    set_bit(&mut value, offset, on);
    if !existed || grows || previous != on {
        write_value(ctx, key, value);
    }
    ctx.out.int(i64::from(previous));
    Ok(())
}

fn getbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2], None)?;
    let value = read_bits(ctx, &args[1])?;
    let bit = value.is_some_and(|v| get_bit(&v, offset));
    ctx.out.int(i64::from(bit));
    Ok(())
}

/// A `start end [BYTE|BIT]` range resolved to inclusive bit positions, or `None` when empty.
/// `end` is `None` for BITPOS without an end (the range runs to the end of the string).
fn bit_range(len: usize, start: i64, end: Option<i64>, unit_bits: bool) -> Option<(u64, u64)> {
    let total: i64 = if unit_bits {
        (len as i64).saturating_mul(8)
    } else {
        len as i64
    };
    let mut start = start;
    let mut end = end.unwrap_or(total - 1);
    if start < 0 {
        start = start.saturating_add(total);
    }
    if end < 0 {
        end = end.saturating_add(total);
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    if start > end {
        return None;
    }
    if unit_bits {
        Some((start as u64, end as u64))
    } else {
        Some((start as u64 * 8, end as u64 * 8 + 7))
    }
}

/// `BYTE` or `BIT` (true).
fn unit_arg(arg: &[u8]) -> Result<bool, CmdError> {
    if is(arg, "bit") {
        Ok(true)
    } else if is(arg, "byte") {
        Ok(false)
    } else {
        Err(Cow::Borrowed(ERR_SYNTAX))
    }
}

/// Set bits in the inclusive bit range.
fn count_bits(bytes: &[u8], lo: u64, hi: u64) -> u64 {
    let (first, last) = ((lo >> 3) as usize, (hi >> 3) as usize);
    let mut count: u64 = bytes[first..=last]
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    // Remove the bits of the edge bytes outside the range.
    let head = bytes[first] & !(0xffu8 >> (lo & 7));
    let tail = bytes[last] & 0xffu8.checked_shr((hi & 7) as u32 + 1).unwrap_or(0);
    count -= u64::from(head.count_ones()) + u64::from(tail.count_ones());
    count
}

fn bitcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(value) = read_bits(ctx, &args[1])? else {
        ctx.out.int(0);
        return Ok(());
    };
    let range = match args.len() {
        2 => bit_range(value.len(), 0, None, false),
        4 | 5 => {
            let start = int_arg(&args[2])?;
            let end = int_arg(&args[3])?;
            let unit_bits = match args.get(4) {
                Some(a) => unit_arg(a)?,
                None => false,
            };
            if start < 0 && end < 0 && start > end {
                ctx.out.int(0);
                return Ok(());
            }
            bit_range(value.len(), start, Some(end), unit_bits)
        }
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    };
    let n = match range {
        Some((lo, hi)) => count_bits(&value, lo, hi),
        None => 0,
    };
    ctx.out.int(n as i64);
    Ok(())
}

/// The first bit equal to `bit` in the inclusive bit range, skipping whole bytes that cannot
/// hold it.
fn find_bit(bytes: &[u8], lo: u64, hi: u64, bit: bool) -> Option<u64> {
    let skip = if bit { 0x00 } else { 0xff };
    let mut i = lo;
    while i <= hi {
        let byte = (i >> 3) as usize;
        if i & 7 == 0 && i + 7 <= hi && bytes.get(byte).copied().unwrap_or(0) == skip {
            i += 8;
            continue;
        }
        if get_bit(bytes, i) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn bitpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let bit = match int_arg(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(Cow::Borrowed(ERR_BIT_ARG)),
    };
    let Some(value) = read_bits(ctx, &args[1])? else {
        ctx.out.int(if bit { -1 } else { 0 });
        return Ok(());
    };
    let (range, end_given) = match args.len() {
        3 => (bit_range(value.len(), 0, None, false), false),
        4..=6 => {
            let start = int_arg(&args[3])?;
            let unit_bits = match args.get(5) {
                Some(a) => unit_arg(a)?,
                None => false,
            };
            let end = match args.get(4) {
                Some(a) => Some(int_arg(a)?),
                None => None,
            };
            (bit_range(value.len(), start, end, unit_bits), end.is_some())
        }
        _ => return Err(Cow::Borrowed(ERR_SYNTAX)),
    };
    let Some((lo, hi)) = range else {
        ctx.out.int(-1);
        return Ok(());
    };
    let found = find_bit(&value, lo, hi, bit);
    let pos = match found {
        Some(i) => i as i64,
        None if bit || end_given => -1,
        // Without an end the string continues with clear bits.
        None => hi as i64 + 1,
    };
    ctx.out.int(pos);
    Ok(())
}

fn bitop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    #[derive(Clone, Copy, PartialEq)]
    enum BitOp {
        And,
        Or,
        Xor,
        Not,
    }
    let name = &args[1];
    let how = if is(name, "and") {
        BitOp::And
    } else if is(name, "or") {
        BitOp::Or
    } else if is(name, "xor") {
        BitOp::Xor
    } else if is(name, "not") {
        BitOp::Not
    } else {
        return Err(Cow::Borrowed(ERR_SYNTAX));
    };
    if how == BitOp::Not && args.len() != 4 {
        return Err(Cow::Borrowed(ERR_BITOP_NOT));
    }
    let mut sources: Vec<Option<Vec<u8>>> = Vec::with_capacity(args.len() - 3);
    for key in &args[3..] {
        let value = match ctx.get(key) {
            None => None,
            Some(slot) => match &slot.value {
                crate::crdt::Value::Str(c) => Some(c.read().into_owned()),
                _ => return Err(Cow::Borrowed(ERR_WRONGTYPE)),
            },
        };
        sources.push(value);
    }
    let maxlen = sources
        .iter()
        .map(|s| s.as_ref().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    let dest = &args[2];
    if maxlen == 0 {
        if ctx.db.ks.raw_entry(dest).is_some() {
            ctx.write(vec![op(dest, OpKind::Del)]);
        }
        ctx.out.int(0);
        return Ok(());
    }
    let byte = |s: &Option<Vec<u8>>, i: usize| s.as_ref().and_then(|v| v.get(i).copied());
    let mut result = Vec::with_capacity(maxlen);
    for i in 0..maxlen {
        let mut acc = byte(&sources[0], i).unwrap_or(0);
        match how {
            BitOp::Not => acc = !acc,
            BitOp::And => {
                for s in &sources[1..] {
                    acc &= byte(s, i).unwrap_or(0);
                }
            }
            BitOp::Or => {
                for s in &sources[1..] {
                    acc |= byte(s, i).unwrap_or(0);
                }
            }
            BitOp::Xor => {
                for s in &sources[1..] {
                    acc ^= byte(s, i).unwrap_or(0);
                }
            }
        }
        result.push(acc);
    }
    let ops = string_write_ops(ctx, dest, Bytes::from(result), TtlChange::Clear);
    ctx.write(ops);
    ctx.out.int(maxlen as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BITFIELD

#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq)]
enum FieldOp {
    Get,
    Set,
    Incrby,
}

#[derive(Clone, Copy)]
struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    value: i64,
    overflow: Overflow,
}

/// `getBitfieldTypeFromArgument`: `i1`..`i64` or `u1`..`u63`.
fn field_type(arg: &[u8]) -> Result<(bool, u32), CmdError> {
    let err = || Cow::Borrowed(ERR_BITFIELD_TYPE);
    let (signed, rest) = match arg.split_first() {
        Some((b'i', rest)) => (true, rest),
        Some((b'u', rest)) => (false, rest),
        _ => return Err(err()),
    };
    let bits = crate::resp::parse_i64_strict(rest).ok_or_else(err)?;
    if bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
        return Err(err());
    }
    Ok((signed, bits as u32))
}

/// The unsigned value of `bits` bits at `offset` (bits past the end read as 0).
fn get_field(bytes: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v: u64 = 0;
    for j in 0..u64::from(bits) {
        v = (v << 1) | u64::from(get_bit(bytes, offset + j));
    }
    v
}

fn get_signed(bytes: &[u8], offset: u64, bits: u32) -> i64 {
    let v = get_field(bytes, offset, bits);
    if bits < 64 && v & (1 << (bits - 1)) != 0 {
        (v | (u64::MAX << bits)) as i64
    } else {
        v as i64
    }
}

fn set_field(bytes: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..bits {
        let on = value & (1u64 << (bits - 1 - j)) != 0;
        set_bit(bytes, offset + u64::from(j), on);
    }
}

/// `value + incr` in a field of `bits` bits: `(result, overflowed)`, the result following the
/// overflow policy (meaningless under FAIL).
fn field_add(value: i128, incr: i64, signed: bool, bits: u32, how: Overflow) -> (i128, bool) {
    let (min, max): (i128, i128) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    let sum = value + i128::from(incr);
    let over = value > max || sum > max;
    let under = !over && (value < min || sum < min);
    if !over && !under {
        return (sum, false);
    }
    let result = match how {
        Overflow::Sat if over => max,
        Overflow::Sat => min,
        _ => {
            // Two's-complement wrap into the field's width.
            let raw = (sum as u64) & (u64::MAX >> (64 - bits));
            if signed && bits < 64 && raw & (1 << (bits - 1)) != 0 {
                i128::from((raw | (u64::MAX << bits)) as i64)
            } else if signed {
                i128::from(raw as i64)
            } else {
                i128::from(raw)
            }
        }
    };
    (result, true)
}

fn bitfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, false)
}

fn bitfield_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, true)
}

fn bitfield_generic(ctx: &mut Ctx<'_>, args: &[Bytes], readonly_cmd: bool) -> CmdResult {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut highest_write: Option<u64> = None;
    let mut j = 2;
    while j < args.len() {
        let remaining = args.len() - j - 1;
        let sub = &args[j];
        let op = if is(sub, "get") && remaining >= 2 {
            FieldOp::Get
        } else if is(sub, "set") && remaining >= 3 {
            FieldOp::Set
        } else if is(sub, "incrby") && remaining >= 3 {
            FieldOp::Incrby
        } else if is(sub, "overflow") && remaining >= 1 {
            let name = &args[j + 1];
            overflow = if is(name, "wrap") {
                Overflow::Wrap
            } else if is(name, "sat") {
                Overflow::Sat
            } else if is(name, "fail") {
                Overflow::Fail
            } else {
                return Err(Cow::Borrowed(ERR_OVERFLOW_TYPE));
            };
            j += 2;
            continue;
        } else {
            return Err(Cow::Borrowed(ERR_SYNTAX));
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(ctx, &args[j + 2], Some(bits))?;
        let mut value = 0;
        if op != FieldOp::Get {
            let last = offset + u64::from(bits) - 1;
            highest_write = Some(highest_write.map_or(last, |h| h.max(last)));
            value = int_arg(&args[j + 3])?;
        }
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            value,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    let key = &args[1];
    let Some(highest) = highest_write else {
        let value = read_bits(ctx, key)?.unwrap_or_default();
        ctx.out.array(fields.len());
        for f in &fields {
            if f.signed {
                ctx.out.int(get_signed(&value, f.offset, f.bits));
            } else {
                ctx.out.int(get_field(&value, f.offset, f.bits) as i64);
            }
        }
        return Ok(());
    };
    if readonly_cmd {
        return Err(Cow::Borrowed(ERR_BITFIELD_RO));
    }
    let old = read_string(ctx, key)?.map(|v| v.into_owned());
    let mut value = old.clone().unwrap_or_default();
    let needed = (highest >> 3) as usize + 1;
    if value.len() < needed {
        value.resize(needed, 0);
    }
    ctx.out.array(fields.len());
    for f in &fields {
        let old_field: i128 = if f.signed {
            i128::from(get_signed(&value, f.offset, f.bits))
        } else {
            i128::from(get_field(&value, f.offset, f.bits))
        };
        match f.op {
            FieldOp::Get => ctx.out.int(old_field as i64),
            FieldOp::Set | FieldOp::Incrby => {
                let (new, overflowed) = if f.op == FieldOp::Set {
                    // A SET checks the new value alone; unsigned fields read it as unsigned.
                    let v = if f.signed {
                        i128::from(f.value)
                    } else {
                        i128::from(f.value as u64)
                    };
                    let (wrapped, over) = field_add(v, 0, f.signed, f.bits, f.overflow);
                    (wrapped, over)
                } else {
                    field_add(old_field, f.value, f.signed, f.bits, f.overflow)
                };
                if overflowed && f.overflow == Overflow::Fail {
                    ctx.out.null();
                    continue;
                }
                let reply = if f.op == FieldOp::Set { old_field } else { new };
                ctx.out.int(reply as i64);
                set_field(&mut value, f.offset, f.bits, new as u64);
            }
        }
    }
    if old.as_deref() != Some(&value[..]) {
        write_value(ctx, key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_and_write_most_significant_bit_first() {
        let mut v = vec![0u8; 3];
        set_field(&mut v, 4, 8, 0xab);
        assert_eq!(v, vec![0x0a, 0xb0, 0]);
        assert_eq!(get_field(&v, 4, 8), 0xab);
        assert_eq!(get_signed(&v, 4, 8), 0xab_u8 as i8 as i64);
        assert_eq!(get_field(&v, 20, 8), 0);
    }

    #[test]
    fn overflow_policies() {
        assert_eq!(field_add(250, 10, false, 8, Overflow::Wrap), (4, true));
        assert_eq!(field_add(250, 10, false, 8, Overflow::Sat), (255, true));
        assert_eq!(field_add(120, 10, true, 8, Overflow::Wrap), (-126, true));
        assert_eq!(field_add(-120, -10, true, 8, Overflow::Sat), (-128, true));
        assert_eq!(field_add(1, 1, true, 64, Overflow::Wrap), (2, false));
        assert_eq!(
            field_add(i128::from(i64::MAX), 1, true, 64, Overflow::Wrap),
            (i128::from(i64::MIN), true)
        );
    }

    #[test]
    fn find_bit_skips_whole_bytes_and_respects_the_edges() {
        let v = [0x00u8, 0x00, 0x01, 0xff];
        assert_eq!(find_bit(&v, 0, 31, true), Some(23));
        assert_eq!(find_bit(&v, 0, 22, true), None);
        assert_eq!(find_bit(&v, 24, 31, false), None);
        assert_eq!(find_bit(&v, 3, 31, false), Some(3));
        let ones = [0xffu8; 4];
        assert_eq!(find_bit(&ones, 0, 31, false), None);
        assert_eq!(find_bit(&ones, 5, 9, true), Some(5));
    }

    #[test]
    fn count_bits_masks_the_edges() {
        let v = [0xffu8, 0xff];
        assert_eq!(count_bits(&v, 0, 15), 16);
        assert_eq!(count_bits(&v, 3, 12), 10);
        assert_eq!(count_bits(&v, 7, 7), 1);
    }
}
