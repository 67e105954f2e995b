//! Incremental RESP request parser (multibulk and inline requests).
//!
//! Contract: [`RequestParser::parse`] behaves like Redis 7.0's `processInputBuffer` with
//! `processMultibulkBuffer` / `processInlineBuffer`:
//!
//! - A request starting with `*` is a multibulk request: `*<count>\r\n` followed by `count` bulk
//!   strings `$<len>\r\n<bytes>\r\n`. Counts and lengths follow `string2ll` rules. As in Redis,
//!   the byte after each `\r` and the two bytes after each bulk payload are skipped without being
//!   checked. `*0` and negative counts yield no command.
//! - Anything else is an inline request: one line ended by `\n` (an optional `\r` before it is
//!   dropped), split into arguments with `sdssplitargs` rules (blanks, `"..."` with `\n \r \t \b
//!   \a \xHH` escapes, `'...'` with `\'`). Lines with no arguments yield no command.
//! - Like Redis's `strchr` on its NUL-terminated query buffer, a line-terminator search stops at
//!   a NUL byte: a request line containing NUL never completes and eventually fails with the
//!   "too big" error of its kind.
//! - Errors carry Redis's exact reply texts; after one the connection must be closed (the parser
//!   state is then unspecified, but further calls never panic).
//!
//! One deliberate difference: Redis checks the "too big ... request/count string" limits only
//! while a terminator has not been received yet, so whether an over-long line is rejected
//! depends on how the bytes were chunked by the network. Here a line longer than
//! [`Limits::max_inline_len`] is rejected even when it arrives complete, which makes the
//! outcome independent of chunking. The same limit (`PROTO_INLINE_MAX_SIZE`, 64 KiB by default)
//! applies to inline lines, multibulk count lines and bulk length lines, as in Redis.
//!
//! The parser is incremental: it keeps the multibulk count, the pending bulk length and the
//! arguments read so far across calls and remembers how far it has already searched for a line
//! terminator, so every input byte is examined a bounded number of times however the input is
//! chunked. Bulk arguments are zero-copy slices of the input buffer.

use bytes::{Buf, Bytes, BytesMut};

/// Default [`Limits::max_bulk_len`]: Redis's `proto-max-bulk-len` default (512 MiB).
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Default [`Limits::max_multibulk_len`]: the largest count Redis accepts (`INT_MAX`).
pub const DEFAULT_MAX_MULTIBULK_LEN: usize = i32::MAX as usize;
/// Default [`Limits::max_inline_len`]: Redis's `PROTO_INLINE_MAX_SIZE` (64 KiB).
pub const DEFAULT_MAX_INLINE_LEN: usize = 64 * 1024;
/// Largest multibulk count accepted before authentication.
pub const UNAUTHENTICATED_MAX_MULTIBULK_LEN: i64 = 10;
/// Largest bulk length accepted before authentication.
pub const UNAUTHENTICATED_MAX_BULK_LEN: i64 = 16384;

/// Never reserve room for more arguments than this from a client-supplied count.
const MAX_PREALLOCATED_ARGS: usize = 1024;

/// Size limits enforced while parsing requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk argument length (`proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Largest accepted multibulk argument count (never above `i32::MAX`).
    pub max_multibulk_len: usize,
    /// Longest accepted inline request line, multibulk count line or bulk length line.
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            max_multibulk_len: DEFAULT_MAX_MULTIBULK_LEN,
            max_inline_len: DEFAULT_MAX_INLINE_LEN,
        }
    }
}

/// A malformed request. The message is Redis's error reply text without the leading `-` and
/// the trailing CRLF, e.g. `ERR Protocol error: invalid bulk length`; reply it with
/// [`crate::resp::ReplyWriter::error`] and close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(what: &str) -> Self {
        Self(format!("ERR Protocol error: {what}"))
    }

    fn expected_dollar(got: u8) -> Self {
        // Redis formats the byte with `%c` and then maps CR and LF to spaces. Bytes above 0x7f
        // cannot be carried in a `String` as-is and are rendered as the Latin-1 character.
        let got = match got {
            b'\r' | b'\n' => ' ',
            other => char::from(other),
        };
        Self(format!("ERR Protocol error: expected '$', got '{got}'"))
    }
}

/// Outcome of reading a multibulk count line.
enum Header {
    /// The line is not complete yet.
    Incomplete,
    /// A count of zero or less: no command.
    Empty,
    /// A positive count; the arguments follow.
    Started,
}

/// Incremental request parser; one per connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Bulk arguments still to read for the current multibulk request (0 between requests).
    multibulk_left: usize,
    /// Length of the bulk argument being read, once its `$<len>` line was parsed.
    bulk_len: Option<usize>,
    /// Arguments of the current multibulk request read so far.
    args: Vec<Bytes>,
    /// Prefix of the buffer already searched for the current line's terminator.
    scanned: usize,
    /// The current line's terminator search hit a NUL byte; it can never complete.
    blocked: bool,
}

impl RequestParser {
    /// A parser at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when part of a request has been consumed and the rest is awaited.
    pub fn in_progress(&self) -> bool {
        self.multibulk_left > 0
    }

    /// Bytes of the arguments of the current request read so far (0 between requests).
    pub fn pending_bytes(&self) -> usize {
        self.args.iter().map(|a| a.len()).sum()
    }

    /// While a bulk argument is being read, the number of bytes (payload plus CRLF) it still
    /// needs beyond what `buf` holds now, so the caller can reserve room for it in one step.
    pub fn bulk_bytes_missing(&self, buf: &BytesMut) -> Option<usize> {
        let len = self.bulk_len?;
        Some(len.saturating_add(2).saturating_sub(buf.len()))
    }

    /// Consumes bytes from the front of `buf` and returns the next complete command as its
    /// arguments (never empty), or `Ok(None)` when more bytes are needed. Between calls the
    /// caller may only append to `buf`. Bulk arguments share `buf`'s storage.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.multibulk_left == 0 {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first == b'*' {
                    match self.multibulk_header(buf, limits, authenticated)? {
                        Header::Incomplete => return Ok(None),
                        Header::Empty => continue,
                        Header::Started => {}
                    }
                } else {
                    match self.inline(buf, limits)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                    }
                }
            }
            while self.multibulk_left > 0 {
                let len = match self.bulk_len {
                    Some(len) => len,
                    None => match self.bulk_header(buf, limits, authenticated)? {
                        Some(len) => {
                            self.bulk_len = Some(len);
                            len
                        }
                        None => return Ok(None),
                    },
                };
                if buf.len() < len || buf.len() - len < 2 {
                    return Ok(None);
                }
                let arg = if len == 0 {
                    Bytes::new()
                } else {
                    buf.split_to(len).freeze()
                };
                buf.advance(2);
                self.args.push(arg);
                self.bulk_len = None;
                self.multibulk_left -= 1;
            }
            return Ok(Some(std::mem::take(&mut self.args)));
        }
    }

    /// Position of the first `target` byte in `buf`, searching only bytes not searched before
    /// for the current line. `None` if absent or preceded by a NUL byte (C `strchr` semantics).
    fn find(&mut self, buf: &[u8], target: u8) -> Option<usize> {
        if self.blocked {
            return None;
        }
        let start = self.scanned.min(buf.len());
        match find_byte_or_nul(&buf[start..], target) {
            Some(i) if buf[start + i] == target => {
                self.scanned = start + i;
                Some(start + i)
            }
            Some(_) => {
                self.blocked = true;
                None
            }
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// Removes a line of `n` bytes (terminator included) from the front of `buf`.
    fn consume_line(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.scanned = 0;
        self.blocked = false;
    }

    /// Finds the `\r` ending a count or length line. `Ok(None)`: more bytes are needed.
    fn count_line(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        too_big: &str,
    ) -> Result<Option<usize>, ProtocolError> {
        match self.find(buf, b'\r') {
            // The line, without its terminator, is longer than the limit.
            Some(cr) if cr > limits.max_inline_len => Err(ProtocolError::new(too_big)),
            // The byte after `\r` (normally `\n`) must be present too.
            Some(cr) if cr + 1 < buf.len() => Ok(Some(cr)),
            Some(_) => Ok(None),
            None if buf.len() > limits.max_inline_len => Err(ProtocolError::new(too_big)),
            None => Ok(None),
        }
    }

    fn multibulk_header(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        authenticated: bool,
    ) -> Result<Header, ProtocolError> {
        let Some(cr) = self.count_line(buf, limits, "too big mbulk count string")? else {
            return Ok(Header::Incomplete);
        };
        let count = match crate::resp::parse_i64_strict(&buf[1..cr]) {
            Some(n) if n <= 0 => n,
            Some(n)
                if n <= i64::from(i32::MAX)
                    && usize::try_from(n).is_ok_and(|n| n <= limits.max_multibulk_len) =>
            {
                n
            }
            _ => return Err(ProtocolError::new("invalid multibulk length")),
        };
        if count > UNAUTHENTICATED_MAX_MULTIBULK_LEN && !authenticated {
            return Err(ProtocolError::new("unauthenticated multibulk length"));
        }
        self.consume_line(buf, cr + 2);
        let Ok(count @ 1..) = usize::try_from(count) else {
            return Ok(Header::Empty);
        };
        self.multibulk_left = count;
        self.bulk_len = None;
        self.args = Vec::with_capacity(count.min(MAX_PREALLOCATED_ARGS));
        Ok(Header::Started)
    }

    fn bulk_header(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
        authenticated: bool,
    ) -> Result<Option<usize>, ProtocolError> {
        let Some(cr) = self.count_line(buf, limits, "too big bulk count string")? else {
            return Ok(None);
        };
        if buf[0] != b'$' {
            return Err(ProtocolError::expected_dollar(buf[0]));
        }
        let len = crate::resp::parse_i64_strict(&buf[1..cr])
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= limits.max_bulk_len)
            .ok_or_else(|| ProtocolError::new("invalid bulk length"))?;
        if !authenticated && len > UNAUTHENTICATED_MAX_BULK_LEN as usize {
            return Err(ProtocolError::new("unauthenticated bulk length"));
        }
        self.consume_line(buf, cr + 2);
        Ok(Some(len))
    }

    fn inline(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let too_big = || ProtocolError::new("too big inline request");
        let Some(lf) = self.find(buf, b'\n') else {
            if buf.len() > limits.max_inline_len {
                return Err(too_big());
            }
            return Ok(None);
        };
        if lf > limits.max_inline_len {
            return Err(too_big());
        }
        let end = if lf > 0 && buf[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        let line = buf.split_to(lf + 1).freeze().slice(..end);
        self.scanned = 0;
        self.blocked = false;
        split_args(&line)
            .map(Some)
            .ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))
    }
}

/// Index of the first byte of `hay` equal to `target` or to 0, eight bytes at a time.
#[inline]
fn find_byte_or_nul(hay: &[u8], target: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    #[inline]
    fn zero_bytes(v: u64) -> u64 {
        // Flags (at least) the lowest zero byte of `v` exactly; higher flags may be spurious.
        v.wrapping_sub(LO) & !v & HI
    }
    let pattern = LO * u64::from(target);
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let hits = zero_bytes(v) | zero_bytes(v ^ pattern);
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == target || b == 0)
        .map(|i| offset + i)
}

/// C `isspace` in the "C" locale.
#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline request line into arguments like Redis's `sdssplitargs`; `None` on
/// unbalanced quotes (or a closing quote not followed by a blank). The line is treated as a C
/// string: a NUL byte ends it. Unquoted arguments are slices of `line`.
pub(crate) fn split_args(line: &Bytes) -> Option<Vec<Bytes>> {
    // The byte at `i`, with the C string terminator past the end.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(args);
        }
        // Fast path: a token without quotes ends at the first blank and is taken as is.
        let mut end = p;
        while !matches!(at(end), b' ' | b'\n' | b'\r' | b'\t' | 0 | b'"' | b'\'') {
            end += 1;
        }
        if !matches!(at(end), b'"' | b'\'') {
            args.push(line.slice(p..end));
            p = end;
            if at(p) != 0 {
                p += 1;
            }
            continue;
        }
        let mut current = Vec::new();
        let (mut in_dq, mut in_sq, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_dq {
                let hex = (c == b'\\' && at(p + 1) == b'x')
                    .then(|| Some(hex_value(at(p + 2))? * 16 + hex_value(at(p + 3))?))
                    .flatten();
                if let Some(byte) = hex {
                    current.push(byte);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    // A closing quote must be followed by a blank or the end of the line.
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_sq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    _ => current.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(Bytes::from(current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    /// Parses everything in `input` at once; returns the commands and the first error.
    fn parse_all(input: &[u8], limits: &Limits, auth: bool) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match parser.parse(&mut buf, limits, auth) {
                Ok(Some(args)) => out.push(args.iter().map(|a| a.to_vec()).collect()),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.0)),
            }
        }
    }

    fn cmds(input: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let (out, err) = parse_all(input, &limits(), true);
        assert_eq!(err, None, "input {:?}", String::from_utf8_lossy(input));
        out
    }

    fn err(input: &[u8]) -> String {
        err_with(input, &limits(), true)
    }

    fn err_with(input: &[u8], limits: &Limits, auth: bool) -> String {
        let (_, err) = parse_all(input, limits, auth);
        err.unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)))
    }

    fn v(args: &[&[u8]]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn multibulk_commands() {
        assert_eq!(cmds(b"*1\r\n$4\r\nPING\r\n"), vec![v(&[b"PING"])]);
        assert_eq!(
            cmds(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n"),
            vec![v(&[b"SET", b"k", b""]), v(&[b"PING"])]
        );
        // Binary payloads, including CR, LF and NUL, are taken by length.
        assert_eq!(
            cmds(b"*1\r\n$5\r\na\r\n\x00b\r\n"),
            vec![v(&[b"a\r\n\x00b"])]
        );
    }

    #[test]
    fn multibulk_terminators_are_not_checked() {
        // Redis skips the byte after `\r` and the two bytes after a payload unchecked.
        assert_eq!(
            cmds(b"*1\rX$4\rXPINGXY*1\r\n$4\r\nPING\r\n"),
            vec![v(&[b"PING"]), v(&[b"PING"])]
        );
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        assert_eq!(
            cmds(b"*0\r\n*-1\r\n*-5\r\n*1\r\n$1\r\na\r\n"),
            vec![v(&[b"a"])]
        );
        assert_eq!(cmds(b"*0\r\n"), Vec::<Vec<Vec<u8>>>::new());
    }

    #[test]
    fn incomplete_input_waits() {
        for input in [
            &b"*"[..],
            b"*1",
            b"*1\r",
            b"*1\r\n",
            b"*1\r\n$",
            b"*1\r\n$4",
            b"*1\r\n$4\r",
            b"*1\r\n$4\r\nPI",
            b"*1\r\n$4\r\nPING",
            b"*1\r\n$4\r\nPING\r",
            b"PING",
            b"PING\r",
            b"\"unterminated",
        ] {
            let (out, err) = parse_all(input, &limits(), false);
            assert!(
                out.is_empty() && err.is_none(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn inline_commands() {
        assert_eq!(cmds(b"PING\r\n"), vec![v(&[b"PING"])]);
        assert_eq!(cmds(b"PING\n"), vec![v(&[b"PING"])]);
        assert_eq!(cmds(b"SET  k\tv\r\n"), vec![v(&[b"SET", b"k", b"v"])]);
        // Only one CR before the LF is stripped; the other ends the token.
        assert_eq!(cmds(b"ECHO a\r\r\n"), vec![v(&[b"ECHO", b"a"])]);
        // Empty and blank lines yield no command.
        assert_eq!(cmds(b"\r\n\n   \n\t\r\nPING\n"), vec![v(&[b"PING"])]);
        // Inline and multibulk mix in one buffer.
        assert_eq!(
            cmds(b"PING\r\n*1\r\n$4\r\nPING\r\nECHO x\n"),
            vec![v(&[b"PING"]), v(&[b"PING"]), v(&[b"ECHO", b"x"])]
        );
    }

    #[test]
    fn inline_quoting_follows_sdssplitargs() {
        assert_eq!(
            cmds(b"ECHO \"a\\x41\\n\\z\\r\\t\\b\\a\\\"\"\r\n"),
            vec![v(&[b"ECHO", b"aA\nz\r\t\x08\x07\""])]
        );
        assert_eq!(cmds(b"ECHO 'b\\'c'\r\n"), vec![v(&[b"ECHO", b"b'c"])]);
        assert_eq!(cmds(b"ECHO 'b\\nc'\r\n"), vec![v(&[b"ECHO", b"b\\nc"])]);
        assert_eq!(cmds(b"ECHO \"\\x4g\"\r\n"), vec![v(&[b"ECHO", b"x4g"])]);
        assert_eq!(cmds(b"ECHO \"\"\r\n"), vec![v(&[b"ECHO", b""])]);
        assert_eq!(cmds(b"ECHO a\"b c\"\r\n"), vec![v(&[b"ECHO", b"ab c"])]);
        assert_eq!(
            cmds(b"ECHO \"a\"\x0bb\r\n"),
            vec![v(&[b"ECHO", b"a", b"b"])]
        );
        // Vertical tab and form feed are blanks between tokens but not inside them.
        assert_eq!(cmds(b"ECHO \x0bab\r\n"), vec![v(&[b"ECHO", b"ab"])]);
        assert_eq!(cmds(b"ECHO a\x0bb\r\n"), vec![v(&[b"ECHO", b"a\x0bb"])]);
        assert_eq!(cmds(b"ECHO\x0ca\r\n"), vec![v(&[b"ECHO\x0ca"])]);
        assert_eq!(cmds(b"ECHO \xff\xfe\r\n"), vec![v(&[b"ECHO", b"\xff\xfe"])]);
    }

    #[test]
    fn unbalanced_quotes() {
        let want = "ERR Protocol error: unbalanced quotes in request";
        assert_eq!(err(b"ECHO \"abc\r\n"), want);
        assert_eq!(err(b"ECHO 'abc\r\n"), want);
        assert_eq!(err(b"ECHO 'abc'x\r\n"), want);
        assert_eq!(err(b"ECHO \"a\"b\r\n"), want);
        assert_eq!(err(b"ECHO \"a\\\"\r\n"), want);
        assert_eq!(err(b"ECHO \"a\\\r\n"), want);
    }

    #[test]
    fn invalid_multibulk_length() {
        let want = "ERR Protocol error: invalid multibulk length";
        for input in [
            &b"*\r\n"[..],
            b"*-\r\n",
            b"*-0\r\n",
            b"*+1\r\n",
            b"*01\r\n",
            b"*1 \r\n",
            b"*x\r\n",
            b"*2147483648\r\n",
            b"*99999999999999999999\r\n",
            b"*00000000000000000001\r\n",
        ] {
            assert_eq!(err(input), want, "{:?}", String::from_utf8_lossy(input));
        }
        let small = Limits {
            max_multibulk_len: 3,
            ..Limits::default()
        };
        assert_eq!(err_with(b"*4\r\n", &small, true), want);
        assert!(parse_all(b"*3\r\n", &small, true).1.is_none());
    }

    #[test]
    fn invalid_bulk_length() {
        let want = "ERR Protocol error: invalid bulk length";
        for input in [
            &b"*1\r\n$-1\r\n"[..],
            b"*1\r\n$\r\n",
            b"*1\r\n$+3\r\n",
            b"*1\r\n$-0\r\n",
            b"*1\r\n$00\r\n",
            b"*1\r\n$1 \r\n",
            b"*1\r\n$536870913\r\n",
            b"*1\r\n$9223372036854775808\r\n",
        ] {
            assert_eq!(err(input), want, "{:?}", String::from_utf8_lossy(input));
        }
        // The limit itself is accepted.
        assert!(parse_all(b"*1\r\n$536870912\r\n", &limits(), true)
            .1
            .is_none());
        let small = Limits {
            max_bulk_len: 3,
            ..Limits::default()
        };
        assert_eq!(err_with(b"*1\r\n$4\r\n", &small, true), want);
        assert!(parse_all(b"*1\r\n$3\r\nabc\r\n", &small, true).1.is_none());
    }

    #[test]
    fn expected_dollar() {
        assert_eq!(
            err(b"*1\r\nx\r\n"),
            "ERR Protocol error: expected '$', got 'x'"
        );
        assert_eq!(
            err(b"*1\r\n:1\r\n"),
            "ERR Protocol error: expected '$', got ':'"
        );
        // CR and LF are shown as spaces, as Redis's error formatting does.
        assert_eq!(
            err(b"*1\r\n\r\n"),
            "ERR Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            err(b"*1\r\n\nX\r\n"),
            "ERR Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            err(b"*2\r\n$1\r\na\r\n*1\r\n"),
            "ERR Protocol error: expected '$', got '*'"
        );
    }

    #[test]
    fn too_big_lines() {
        let l = limits();
        let mut mbulk = b"*".to_vec();
        mbulk.resize(65537, b'1');
        assert_eq!(
            err(&mbulk),
            "ERR Protocol error: too big mbulk count string"
        );
        mbulk.truncate(65536);
        assert_eq!(parse_all(&mbulk, &l, true), (vec![], None));

        let mut bulk = b"*1\r\n$".to_vec();
        bulk.resize(4 + 65537, b'1');
        assert_eq!(err(&bulk), "ERR Protocol error: too big bulk count string");
        bulk.truncate(4 + 65536);
        assert_eq!(parse_all(&bulk, &l, true), (vec![], None));

        let mut inline = vec![b'a'; 65537];
        assert_eq!(err(&inline), "ERR Protocol error: too big inline request");
        inline.truncate(65536);
        assert_eq!(parse_all(&inline, &l, true), (vec![], None));
        // A line at the limit is accepted once complete; one byte more is rejected.
        inline.push(b'\n');
        assert_eq!(parse_all(&inline, &l, true).0.len(), 1);
        let mut long = vec![b'a'; 65537];
        long.extend_from_slice(b"\r\n");
        assert_eq!(err(&long), "ERR Protocol error: too big inline request");
    }

    #[test]
    fn nul_blocks_a_line_like_strchr() {
        // Redis searches the terminator with strchr, which stops at NUL: the request never
        // completes and the connection fails once the pending input exceeds the limit.
        let small = Limits {
            max_inline_len: 16,
            ..Limits::default()
        };
        assert_eq!(
            parse_all(b"PING\x00\r\nPING\r\n", &small, true),
            (vec![], None)
        );
        assert_eq!(
            err_with(b"PING\x00\r\nPING\r\nPING\r\n", &small, true),
            "ERR Protocol error: too big inline request"
        );
        assert_eq!(parse_all(b"*1\x00\r\n", &small, true), (vec![], None));
        assert_eq!(
            err_with(b"*\x00\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", &small, true),
            "ERR Protocol error: too big mbulk count string"
        );
        assert_eq!(
            err_with(
                b"*1\r\n$\x00\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
                &small,
                true
            ),
            "ERR Protocol error: too big bulk count string"
        );
        // A NUL inside a bulk payload is data.
        assert_eq!(cmds(b"*1\r\n$1\r\n\x00\r\n"), vec![v(&[b"\x00"])]);
    }

    #[test]
    fn unauthenticated_limits() {
        let l = limits();
        assert_eq!(
            err_with(b"*11\r\n", &l, false),
            "ERR Protocol error: unauthenticated multibulk length"
        );
        assert!(parse_all(b"*10\r\n", &l, false).1.is_none());
        assert!(parse_all(b"*11\r\n", &l, true).1.is_none());
        assert_eq!(
            err_with(b"*1\r\n$16385\r\n", &l, false),
            "ERR Protocol error: unauthenticated bulk length"
        );
        assert!(parse_all(b"*1\r\n$16384\r\n", &l, false).1.is_none());
        // Validity is checked first.
        assert_eq!(
            err_with(b"*2147483648\r\n", &l, false),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            err_with(b"*1\r\n$536870913\r\n", &l, false),
            "ERR Protocol error: invalid bulk length"
        );
        // Negative counts are skipped, not rejected.
        assert_eq!(parse_all(b"*-11\r\n", &l, false), (vec![], None));
    }

    #[test]
    fn huge_count_does_not_preallocate() {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(&b"*2147483647\r\n$1\r\na\r\n"[..]);
        assert_eq!(parser.parse(&mut buf, &limits(), true), Ok(None));
        assert!(parser.in_progress());
        assert_eq!(parser.args.len(), 1);
        assert!(parser.args.capacity() <= MAX_PREALLOCATED_ARGS);
        assert!(buf.is_empty());
    }

    #[test]
    fn trickled_multibulk_is_consumed_as_it_arrives() {
        // Every complete argument leaves the buffer as soon as it arrives, so later calls never
        // look at it again: total work is linear in the request size.
        const N: usize = 100_000;
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(format!("*{N}\r\n").as_bytes());
        let l = limits();
        for i in 0..N {
            let arg = i.to_string();
            let piece = format!("${}\r\n{arg}\r\n", arg.len());
            let (a, b) = piece.as_bytes().split_at(piece.len() / 2);
            buf.extend_from_slice(a);
            assert_eq!(parser.parse(&mut buf, &l, true), Ok(None));
            assert!(buf.len() <= a.len());
            buf.extend_from_slice(b);
            let got = parser.parse(&mut buf, &l, true).expect("valid input");
            assert!(buf.is_empty());
            assert_eq!(got.is_some(), i == N - 1);
            if let Some(args) = got {
                assert_eq!(args.len(), N);
                assert_eq!(&args[12345][..], b"12345");
            }
        }
    }

    #[test]
    fn bulk_bytes_missing_reports_the_payload_still_needed() {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(&b"*1\r\n$10\r\nabc"[..]);
        assert_eq!(parser.parse(&mut buf, &limits(), true), Ok(None));
        assert_eq!(parser.bulk_bytes_missing(&buf), Some(9));
        buf.extend_from_slice(b"defghij\r\n");
        assert_eq!(parser.bulk_bytes_missing(&buf), Some(0));
        let args = parser
            .parse(&mut buf, &limits(), true)
            .expect("valid")
            .expect("complete");
        assert_eq!(&args[0][..], b"abcdefghij");
        assert_eq!(parser.bulk_bytes_missing(&buf), None);
    }

    #[test]
    fn find_byte_or_nul_matches_naive_search() {
        let mut hay = vec![b'a'; 40];
        for pos in 0..40 {
            for special in [b'\r', 0u8] {
                hay[pos] = special;
                assert_eq!(find_byte_or_nul(&hay, b'\r'), Some(pos));
                assert_eq!(find_byte_or_nul(&hay[pos + 1..], b'\r'), None);
                hay[pos] = b'a';
            }
        }
        // Bytes that only differ from the target or from 0 by a borrow are not hits.
        let tricky = [0x01u8, 0x81, 0xff, 0x0c, 0x0e, 0x8d, 0x0d];
        assert_eq!(find_byte_or_nul(&tricky, b'\r'), Some(6));
    }
}
