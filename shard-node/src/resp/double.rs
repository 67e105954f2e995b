//! Floating-point conversions with Redis 7.0's exact rules.
//!
//! Contract:
//! - [`format_double_g17`] is C's `printf("%.17g")` (glibc output, round-half-even on exact
//!   ties), as used by Redis 7.0's `addReplyDouble` for scores and other doubles.
//! - [`format_double_human`] is the INCRBYFLOAT / HINCRBYFLOAT reply text: the shortest decimal
//!   that round-trips, never in exponent notation.
//! - [`parse_f64_strict`] accepts exactly what Redis's `string2d` (`strtod` plus checks)
//!   accepts: decimal and hexadecimal floats, `inf`/`infinity` with optional sign; no blanks,
//!   no NaN, no overflow to infinity and no underflow to zero.

use std::fmt::{self, Write as _};

/// Longest `%.17g` output: `-1.2345678901234567e-308`.
pub(crate) const G17_MAX_LEN: usize = 24;

/// A fixed-capacity `fmt::Write` sink on the stack; writing past the end fails.
pub(crate) struct StackBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    pub(crate) fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, b: u8) {
        // Callers size the buffer for the longest output; an overflow would be a logic error,
        // and dropping the byte keeps it panic-free.
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn extend(&mut self, s: &[u8]) {
        for &b in s {
            self.push(b);
        }
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Formats `v` like C's `printf("%.17g", v)` with glibc: 17 significant digits, trailing zeros
/// removed, exponent notation (`1.0000000000000001e+20`, `1e-05`) when the decimal exponent is
/// below -4 or at least 17, `inf`/`-inf`/`nan`/`-nan` and `-0` for the special values.
pub fn format_double_g17(v: f64) -> String {
    let out = g17(v);
    String::from_utf8_lossy(out.as_bytes()).into_owned()
}

/// `%.17g` into a stack buffer (see [`format_double_g17`]).
pub(crate) fn g17(v: f64) -> StackBuf<32> {
    let mut out = StackBuf::<32>::new();
    let negative = v.is_sign_negative();
    if v.is_nan() {
        out.extend(if negative { b"-nan" } else { b"nan" });
        return out;
    }
    if negative {
        out.push(b'-');
    }
    if v.is_infinite() {
        out.extend(b"inf");
        return out;
    }
    if v == 0.0 {
        out.push(b'0');
        return out;
    }
    // Rust's exact formatting rounds half to even like glibc: "d.dddddddddddddddde<exp>".
    let mut sci = StackBuf::<32>::new();
    if write!(sci, "{:.16e}", v.abs()).is_err() {
        return out;
    }
    let sci = sci.as_bytes();
    let Some(e_pos) = sci.iter().position(|&b| b == b'e') else {
        return out;
    };
    let exp: i32 = std::str::from_utf8(&sci[e_pos + 1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut digits = [0u8; 17];
    let mut n = 0;
    for &b in sci[..e_pos].iter().filter(|b| b.is_ascii_digit()) {
        if let Some(slot) = digits.get_mut(n) {
            *slot = b;
            n += 1;
        }
    }
    // Significant digits without trailing zeros (the first digit is never zero).
    let sig = digits[..n]
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(1, |i| i + 1);
    if !(-4..17).contains(&exp) {
        out.push(digits[0]);
        if sig > 1 {
            out.push(b'.');
            out.extend(&digits[1..sig]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let mag = exp.unsigned_abs();
        if mag < 10 {
            out.push(b'0');
        }
        let mut tmp = [0u8; crate::resp::number::MAX_U64_DIGITS];
        let start = crate::resp::number::write_u64(u64::from(mag), &mut tmp);
        out.extend(&tmp[start..]);
    } else if exp >= 0 {
        // At most 17 integer digits, then the remaining significant ones as the fraction.
        let int_len = exp as usize + 1;
        out.extend(&digits[..int_len]);
        if sig > int_len {
            out.push(b'.');
            out.extend(&digits[int_len..sig]);
        }
    } else {
        out.extend(b"0.");
        for _ in 0..(-exp - 1) {
            out.push(b'0');
        }
        out.extend(&digits[..sig]);
    }
    out
}

/// The INCRBYFLOAT / HINCRBYFLOAT reply for `v`: the shortest decimal string that parses back
/// to `v`, in plain notation (`1e20` is `100000000000000000000`, `1e-7` is `0.0000001`), no
/// trailing `.0`. Callers reject infinities and NaN before formatting.
pub fn format_double_human(v: f64) -> String {
    // `Display` for f64 is the shortest round-trip representation without exponent notation.
    v.to_string()
}

/// C `isspace` in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Parses a float with Redis's `string2d` rules (ZADD, ZINCRBY, INCRBYFLOAT, ...):
/// the whole input must be a `strtod` number: optional sign, then decimal digits with an
/// optional point and `e` exponent (`1e3`, `.5`, `5.`), a hexadecimal float (`0x1.8p1`), or
/// `inf`/`infinity` (any case). Rejects the empty string, leading or trailing blanks, NaN,
/// finite values that overflow to infinity and non-zero values that underflow to zero.
///
/// Redis's INCRBYFLOAT parses with `strtold` into a long double; this crate uses `f64`, so
/// magnitudes beyond the `f64` range are rejected here as they are for ZADD.
pub fn parse_f64_strict(s: &[u8]) -> Option<f64> {
    let (&first, _) = s.split_first()?;
    if is_space(first) {
        return None;
    }
    let (negative, body) = match first {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
        let v = parse_hex(&body[2..])?;
        return Some(if negative { -v } else { v });
    }
    // Rust's float grammar is the decimal subset of strtod's (with the same `inf`,
    // `infinity` and `nan` spellings), and its conversion is correctly rounded like glibc's.
    let text = std::str::from_utf8(s).ok()?;
    let v: f64 = text.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    let literal_infinity = body.first().is_some_and(|&c| c | 0x20 == b'i');
    if v.is_infinite() && !literal_infinity {
        return None; // ERANGE overflow
    }
    if v == 0.0 {
        let mantissa = body.split(|&c| c | 0x20 == b'e').next().unwrap_or(&[]);
        if mantissa.iter().any(|c| (b'1'..=b'9').contains(c)) {
            return None; // ERANGE underflow
        }
    }
    Some(v)
}

/// Parses the part of a C99 hexadecimal float after `0x` (`h*[.h*][p[+-]d+]`, at least one hex
/// digit), rounding to nearest-even like glibc. `None` for malformed input, overflow, or a
/// non-zero value that rounds to zero.
fn parse_hex(s: &[u8]) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut sticky = false;
    // Value = mantissa * 2^exp2 (+ sticky bits below it).
    let mut exp2: i64 = 0;
    let mut any_digit = false;
    let mut seen_point = false;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'.' && !seen_point {
            seen_point = true;
            i += 1;
            continue;
        }
        let Some(d) = hex_digit(c) else { break };
        any_digit = true;
        if mantissa >> 60 == 0 {
            mantissa = mantissa << 4 | u64::from(d);
            if seen_point {
                exp2 -= 4;
            }
        } else {
            sticky |= d != 0;
            if !seen_point {
                exp2 += 4;
            }
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    if let Some(&p) = s.get(i) {
        if p | 0x20 != b'p' {
            return None;
        }
        let rest = &s[i + 1..];
        let (exp_negative, digits) = match rest.first() {
            Some(b'-') => (true, &rest[1..]),
            Some(b'+') => (false, &rest[1..]),
            _ => (false, rest),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // Saturate: anything beyond this is far outside the f64 range either way.
        let mut e: i64 = 0;
        for &c in digits {
            e = (e * 10 + i64::from(c - b'0')).min(1 << 20);
        }
        exp2 += if exp_negative { -e } else { e };
    }
    if mantissa == 0 {
        return Some(0.0);
    }
    // Normalize so the top bit of the 64-bit mantissa is set; the leading bit weighs 2^top.
    let lz = mantissa.leading_zeros();
    let m = u128::from(mantissa << lz);
    exp2 -= i64::from(lz);
    let top = exp2 + 63;
    // Keep 53 bits for normal results, fewer for subnormal ones (lowest bit weighs 2^-1074).
    let keep = if top >= -1022 { 53 } else { top + 1075 };
    let shift = 64 - keep; // >= 11
    let (mut kept, round_up) = if shift >= 128 {
        (0u128, false)
    } else {
        let kept = m >> shift;
        let rest = m & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        let up = rest > half || (rest == half && (sticky || kept & 1 == 1));
        (kept, up)
    };
    if round_up {
        kept += 1;
    }
    if kept == 0 {
        return None; // ERANGE underflow
    }
    let bits = if keep == 53 {
        let mut q = exp2 + shift; // kept * 2^q
        if kept == 1 << 53 {
            kept >>= 1;
            q += 1;
        }
        let biased = q + 52 + 1023;
        if biased >= 2047 {
            return None; // ERANGE overflow
        }
        (biased as u64) << 52 | (kept as u64 & ((1 << 52) - 1))
    } else {
        // Subnormal: kept * 2^-1074 (a carry into 2^52 is the smallest normal, same encoding).
        kept as u64
    };
    Some(f64::from_bits(bits))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_matches_glibc() {
        // Expected strings produced by glibc printf("%.17g").
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.1, "0.10000000000000001"),
            (0.5, "0.5"),
            (2.5, "2.5"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (1e20, "1e+20"),
            (1.0000000000000002e20, "1.0000000000000002e+20"),
            (123456789012345680000.0, "1.2345678901234568e+20"),
            (1e-4, "0.0001"),
            (1.5e-4, "0.00014999999999999999"),
            (1e-5, "1.0000000000000001e-05"),
            (5e-324, "4.9406564584124654e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            // Exact ties round to even, like glibc.
            (1e15 + 0.25, "1000000000000000.2"),
            (1e15 + 0.75, "1000000000000000.8"),
            (1125899906842624.5, "1125899906842624.5"),
            (123.456, "123.456"),
            (3.0e100, "2.9999999999999999e+100"),
            (9007199254740993.0, "9007199254740992"),
            (99999999999999999.0, "1e+17"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-f64::NAN, "-nan"),
        ];
        for &(v, want) in cases {
            assert_eq!(format_double_g17(v), want, "{v:e}");
        }
    }

    #[test]
    fn human_format() {
        assert_eq!(format_double_human(10.6), "10.6");
        assert_eq!(format_double_human(3.0), "3");
        assert_eq!(format_double_human(-0.5), "-0.5");
        assert_eq!(format_double_human(1e20), "100000000000000000000");
        assert_eq!(format_double_human(1e-7), "0.0000001");
        assert_eq!(format_double_human(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_double_human(5.0e3), "5000");
    }

    #[test]
    fn parse_accepts_strtod_numbers() {
        let cases: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-1", -1.0),
            ("+1", 1.0),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("1e-5", 1e-5),
            (".5", 0.5),
            ("5.", 5.0),
            ("-.5", -0.5),
            ("+.5", 0.5),
            ("007", 7.0),
            ("0", 0.0),
            ("0e-99999", 0.0),
            ("0.000", 0.0),
            ("inf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("INFinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("3e-324", 5e-324),
            ("2.4703282292062328e-324", 5e-324),
            ("1.7976931348623157e308", f64::MAX),
            ("0.1", 0.1),
            ("0x10", 16.0),
            ("0X1P3", 8.0),
            ("0x1p+3", 8.0),
            ("+0x1p3", 8.0),
            ("-0x1p3", -8.0),
            ("0x1.8p1", 3.0),
            ("0x.8", 0.5),
            ("0x1.", 1.0),
            ("0x1.p1", 2.0),
            ("0x0p99999", 0.0),
            ("0x1p-1074", 5e-324),
            ("0x1.0000000000001p-1075", 5e-324),
            ("0x1.fffffffffffff7p1023", f64::MAX),
            ("0x1.fffffffffffffp1023", f64::MAX),
            ("0x1p-1022", f64::MIN_POSITIVE),
            ("0x0.fffffffffffff8p-1022", f64::MIN_POSITIVE),
            ("0x123456789abcdef0123", 5.373003642731685e21),
            ("0x1.00000000000008p0", 1.0),
            ("0x1.000000000000080000001p0", 1.0000000000000002),
            ("0x1.00000000000018p0", 1.0000000000000004),
        ];
        for &(s, want) in cases {
            let got = parse_f64_strict(s.as_bytes());
            assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{s}: {got:?}");
        }
        assert!(parse_f64_strict(b"-0").is_some_and(|v| v == 0.0 && v.is_sign_negative()));
    }

    #[test]
    fn parse_rejects_what_redis_rejects() {
        for s in [
            "",
            " 1",
            "1 ",
            "\t1",
            "nan",
            "NaN",
            "-nan",
            "nan(1)",
            "1e400",
            "-1e400",
            "1e-400",
            "1e-324",
            "2.4703282292062327e-324",
            "0x",
            "0x.",
            "0x.p1",
            "0xp1",
            "0x1p",
            "0x1p+",
            "0xg",
            "0x1.fffffffffffff8p1023",
            "0x1p1024",
            "0x1p-1075",
            "0x1p-1076",
            "1e",
            "1e+",
            ".",
            "+",
            "-",
            "+-1",
            "1,5",
            "1e0x",
            "infin",
            "infinityy",
            "1_000",
            "1.5.2",
            "\x001",
            "1\x00",
            "0x1p99999999999999999999",
            "--1",
        ] {
            assert_eq!(parse_f64_strict(s.as_bytes()), None, "{s:?}");
        }
        assert_eq!(parse_f64_strict(b"\xff"), None);
    }
}
