//! Integer conversions with Redis's exact rules.
//!
//! Contract: [`parse_i64_strict`] accepts exactly the strings Redis's `string2ll` accepts, and
//! `write_u64` / `write_i64` format integers like `%llu` / `%lld` without allocating.

/// Longest decimal representation of a `u64` / `i64` magnitude.
pub(crate) const MAX_U64_DIGITS: usize = 20;

/// `string2ll` rejects strings of this length or longer (`LONG_STR_SIZE` in Redis).
const LONG_STR_SIZE: usize = 21;

const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Parses a signed 64-bit integer with Redis's `string2ll` rules: optional leading `-` (no
/// `+`), no leading zeros (except the string `"0"` itself), no spaces, no `"-0"`, at most 20
/// characters, and the value must fit in an `i64`.
pub fn parse_i64_strict(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= LONG_STR_SIZE {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut v = u64::from(first - b'0');
    for &c in rest {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if negative {
        if v > i64::MIN.unsigned_abs() {
            return None;
        }
        // `v` is at most 2^63, so the wrapping negation is exact (and yields i64::MIN for 2^63).
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Writes the decimal digits of `n` at the end of `out`; returns the index of the first digit.
#[inline]
pub(crate) fn write_u64(mut n: u64, out: &mut [u8; MAX_U64_DIGITS]) -> usize {
    let mut i = MAX_U64_DIGITS;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        out[i] = b'0' + n as u8;
    }
    i
}

/// Appends the decimal representation of `v` (like `%lld`) to `dst`.
#[inline]
pub(crate) fn extend_i64(dst: &mut bytes::BytesMut, v: i64) {
    let mut digits = [0u8; MAX_U64_DIGITS];
    let start = write_u64(v.unsigned_abs(), &mut digits);
    if v < 0 {
        dst.extend_from_slice(b"-");
    }
    dst.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_accepts_canonical_integers() {
        let cases: &[(&[u8], i64)] = &[
            (b"0", 0),
            (b"1", 1),
            (b"-1", -1),
            (b"10", 10),
            (b"1234567890", 1_234_567_890),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
            (b"-9223372036854775807", -i64::MAX),
        ];
        for (s, want) in cases {
            assert_eq!(
                parse_i64_strict(s),
                Some(*want),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn string2ll_rejects_non_canonical_forms() {
        let cases: &[&[u8]] = &[
            b"",
            b"-",
            b"+1",
            b"-0",
            b"00",
            b"01",
            b"-01",
            b" 1",
            b"1 ",
            b"1a",
            b"0x10",
            b"1.0",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551616",
            b"99999999999999999999",
            b"000000000000000000001",
            b"\x001",
            b"1\x00",
        ];
        for s in cases {
            assert_eq!(
                parse_i64_strict(s),
                None,
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn write_u64_matches_display() {
        let mut probes = vec![
            0u64,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            u64::MAX,
            u64::MAX - 1,
        ];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            probes.extend([p - 1, p, p + 1]);
            p = next;
        }
        for n in probes {
            let mut buf = [0u8; MAX_U64_DIGITS];
            let start = write_u64(n, &mut buf);
            assert_eq!(&buf[start..], n.to_string().as_bytes());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -100, 12345] {
            let mut out = bytes::BytesMut::new();
            extend_i64(&mut out, v);
            assert_eq!(&out[..], v.to_string().as_bytes());
        }
    }
}
