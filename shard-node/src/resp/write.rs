//! RESP2 / RESP3 reply encoding.
//!
//! Contract: every [`ReplyWriter`] method appends exactly the bytes Redis 7.0 sends for the same
//! reply to a client speaking the writer's [`Protocol`] (`addReply*` in `networking.c`). The
//! writer borrows the connection's output buffer and never allocates beyond growing it (except
//! [`ReplyWriter::bulk_display`] for values longer than 64 bytes). Aggregate headers (`array`,
//! `map`, `set`, `push`) only write the header: the caller then writes exactly that many
//! elements (twice as many for `map`: key, value, key, value, ...).

use std::fmt::{self, Write as _};

use bytes::{BufMut, BytesMut};

use super::double::{g17, StackBuf, G17_MAX_LEN};
use super::number::{extend_i64, write_u64, MAX_U64_DIGITS};
use super::Protocol;

/// Appends replies to a connection's output buffer in the connection's protocol.
///
/// A short-lived view: build one per reply (or per batch of replies) with
/// [`ReplyWriter::new`]; it costs nothing to create.
#[derive(Debug)]
pub struct ReplyWriter<'a> {
    /// The output buffer replies are appended to.
    pub buf: &'a mut BytesMut,
    /// The protocol of the connection (`HELLO 2` / `HELLO 3`).
    pub proto: Protocol,
}

impl<'a> ReplyWriter<'a> {
    /// A writer appending to `buf` in protocol `proto`.
    pub fn new(buf: &'a mut BytesMut, proto: Protocol) -> Self {
        Self { buf, proto }
    }

    fn is_resp3(&self) -> bool {
        self.proto == Protocol::Resp3
    }

    /// `<prefix><n>\r\n`.
    #[inline]
    fn header(&mut self, prefix: u8, n: u64) {
        let mut digits = [0u8; MAX_U64_DIGITS];
        let start = write_u64(n, &mut digits);
        self.buf.reserve(MAX_U64_DIGITS + 3);
        self.buf.put_u8(prefix);
        self.buf.extend_from_slice(&digits[start..]);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// `<prefix><text>\r\n`, with CR and LF in `text` replaced by spaces so a reply can never
    /// break the framing (Redis does the same for formatted errors).
    fn line(&mut self, prefix: u8, text: &[u8]) {
        self.buf.reserve(text.len() + 3);
        self.buf.put_u8(prefix);
        if text.iter().any(|&b| b == b'\r' || b == b'\n') {
            self.buf.extend(text.iter().map(|&b| match b {
                b'\r' | b'\n' => b' ',
                other => other,
            }));
        } else {
            self.buf.extend_from_slice(text);
        }
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Appends pre-encoded protocol bytes unchanged.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Simple string: `+OK\r\n` (CR and LF in `s` become spaces).
    pub fn simple(&mut self, s: &str) {
        self.line(b'+', s.as_bytes());
    }

    /// Error: `error("ERR syntax error")` writes `-ERR syntax error\r\n`. The caller includes the
    /// error code (`ERR`, `WRONGTYPE`, ...); CR and LF in `s` become spaces, as in Redis.
    pub fn error(&mut self, s: &str) {
        self.line(b'-', s.as_bytes());
    }

    /// Integer: `:<v>\r\n`.
    pub fn int(&mut self, v: i64) {
        self.buf.reserve(MAX_U64_DIGITS + 4);
        self.buf.put_u8(b':');
        extend_i64(self.buf, v);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Bulk string: `$<len>\r\n<data>\r\n`.
    pub fn bulk(&mut self, data: &[u8]) {
        self.buf.reserve(data.len() + MAX_U64_DIGITS + 5);
        self.header(b'$', data.len() as u64);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Bulk string, or the null bulk for `None`.
    pub fn bulk_or_null(&mut self, data: Option<&[u8]>) {
        match data {
            Some(data) => self.bulk(data),
            None => self.null(),
        }
    }

    /// The decimal representation of `v` as a bulk string (`$2\r\n42\r\n`).
    pub fn bulk_i64(&mut self, v: i64) {
        let mut digits = [0u8; MAX_U64_DIGITS];
        let start = write_u64(v.unsigned_abs(), &mut digits);
        let len = (MAX_U64_DIGITS - start) + usize::from(v < 0);
        self.buf.reserve(len + MAX_U64_DIGITS + 5);
        self.header(b'$', len as u64);
        if v < 0 {
            self.buf.put_u8(b'-');
        }
        self.buf.extend_from_slice(&digits[start..]);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// The `Display` output of `v` as a bulk string.
    pub fn bulk_display(&mut self, v: impl fmt::Display) {
        let mut small = StackBuf::<64>::new();
        if write!(small, "{v}").is_ok() {
            self.bulk(small.as_bytes());
        } else {
            self.bulk(v.to_string().as_bytes());
        }
    }

    /// Null bulk string: RESP2 `$-1\r\n`, RESP3 `_\r\n`.
    pub fn null(&mut self) {
        self.raw(if self.is_resp3() {
            b"_\r\n"
        } else {
            b"$-1\r\n"
        });
    }

    /// Null array: RESP2 `*-1\r\n`, RESP3 `_\r\n`.
    pub fn null_array(&mut self) {
        self.raw(if self.is_resp3() {
            b"_\r\n"
        } else {
            b"*-1\r\n"
        });
    }

    /// Array header: `*<len>\r\n`.
    pub fn array(&mut self, len: usize) {
        self.header(b'*', len as u64);
    }

    /// Map header for `len` key/value pairs: RESP2 `*<2*len>\r\n`, RESP3 `%<len>\r\n`.
    pub fn map(&mut self, len: usize) {
        if self.is_resp3() {
            self.header(b'%', len as u64);
        } else {
            self.header(b'*', (len as u64).saturating_mul(2));
        }
    }

    /// Set header: RESP2 `*<len>\r\n`, RESP3 `~<len>\r\n`.
    pub fn set(&mut self, len: usize) {
        let prefix = if self.is_resp3() { b'~' } else { b'*' };
        self.header(prefix, len as u64);
    }

    /// Push header (pub/sub messages): RESP2 `*<len>\r\n`, RESP3 `><len>\r\n`.
    pub fn push(&mut self, len: usize) {
        let prefix = if self.is_resp3() { b'>' } else { b'*' };
        self.header(prefix, len as u64);
    }

    /// Double formatted with `%.17g` like Redis 7.0's `addReplyDouble`: RESP2 a bulk string
    /// (`$19\r\n0.10000000000000001\r\n`, `$3\r\ninf\r\n`), RESP3 `,0.10000000000000001\r\n` /
    /// `,inf\r\n` / `,-inf\r\n`.
    pub fn double(&mut self, v: f64) {
        let text = g17(v);
        if self.is_resp3() {
            self.buf.reserve(G17_MAX_LEN + 3);
            self.buf.put_u8(b',');
            self.buf.extend_from_slice(text.as_bytes());
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text.as_bytes());
        }
    }

    /// Boolean: RESP2 `:1\r\n` / `:0\r\n`, RESP3 `#t\r\n` / `#f\r\n`.
    pub fn bool(&mut self, v: bool) {
        self.raw(match (self.is_resp3(), v) {
            (true, true) => b"#t\r\n",
            (true, false) => b"#f\r\n",
            (false, true) => b":1\r\n",
            (false, false) => b":0\r\n",
        });
    }

    /// Verbatim string (e.g. `kind` `"txt"` for INFO): RESP2 a bulk string of `text`, RESP3
    /// `=<len+4>\r\n<kind>:<text>\r\n` with `kind` cut or space-padded to three bytes.
    pub fn verbatim(&mut self, kind: &str, text: &[u8]) {
        if !self.is_resp3() {
            self.bulk(text);
            return;
        }
        self.buf.reserve(text.len() + MAX_U64_DIGITS + 9);
        self.header(b'=', text.len() as u64 + 4);
        let mut ext = [b' '; 3];
        for (slot, &b) in ext
            .iter_mut()
            .zip(kind.as_bytes().iter().take_while(|&&b| b != 0))
        {
            *slot = b;
        }
        self.buf.extend_from_slice(&ext);
        self.buf.put_u8(b':');
        self.buf.extend_from_slice(text);
        self.buf.extend_from_slice(b"\r\n");
    }
}

/// Appends a request in multibulk form (`*<n>\r\n`, then `$<len>\r\n<arg>\r\n` per argument),
/// as clients send commands; [`crate::resp::RequestParser`] parses it back to `args`.
pub fn write_command<A: AsRef<[u8]>>(buf: &mut BytesMut, args: &[A]) {
    let mut w = ReplyWriter::new(buf, Protocol::Resp2);
    w.array(args.len());
    for arg in args {
        w.bulk(arg.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a fresh writer for each protocol; returns (RESP2 bytes, RESP3 bytes).
    fn both(f: impl Fn(&mut ReplyWriter<'_>)) -> (Vec<u8>, Vec<u8>) {
        let run = |proto| {
            let mut buf = BytesMut::new();
            f(&mut ReplyWriter::new(&mut buf, proto));
            buf.to_vec()
        };
        (run(Protocol::Resp2), run(Protocol::Resp3))
    }

    fn same(f: impl Fn(&mut ReplyWriter<'_>), want: &[u8]) {
        let (r2, r3) = both(f);
        assert_eq!(r2, want, "RESP2: {:?}", String::from_utf8_lossy(&r2));
        assert_eq!(r3, want, "RESP3: {:?}", String::from_utf8_lossy(&r3));
    }

    fn differ(f: impl Fn(&mut ReplyWriter<'_>), want2: &[u8], want3: &[u8]) {
        let (r2, r3) = both(f);
        assert_eq!(r2, want2, "RESP2: {:?}", String::from_utf8_lossy(&r2));
        assert_eq!(r3, want3, "RESP3: {:?}", String::from_utf8_lossy(&r3));
    }

    #[test]
    fn simple_and_error() {
        same(|w| w.simple("OK"), b"+OK\r\n");
        same(|w| w.simple(""), b"+\r\n");
        same(|w| w.simple("a\r\nb"), b"+a  b\r\n");
        same(|w| w.error("ERR syntax error"), b"-ERR syntax error\r\n");
        same(
            |w| w.error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        );
        same(|w| w.error("ERR bad\nname"), b"-ERR bad name\r\n");
    }

    #[test]
    fn integers() {
        same(|w| w.int(0), b":0\r\n");
        same(|w| w.int(42), b":42\r\n");
        same(|w| w.int(-1), b":-1\r\n");
        same(|w| w.int(i64::MAX), b":9223372036854775807\r\n");
        same(|w| w.int(i64::MIN), b":-9223372036854775808\r\n");
    }

    #[test]
    fn bulks() {
        same(|w| w.bulk(b"foo"), b"$3\r\nfoo\r\n");
        same(|w| w.bulk(b""), b"$0\r\n\r\n");
        same(|w| w.bulk(b"a\r\nb"), b"$4\r\na\r\nb\r\n");
        let big = vec![b'x'; 12345];
        let mut want = b"$12345\r\n".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\n");
        same(|w| w.bulk(&big), &want);
        same(|w| w.bulk_i64(-12), b"$3\r\n-12\r\n");
        same(|w| w.bulk_i64(0), b"$1\r\n0\r\n");
        same(|w| w.bulk_i64(i64::MIN), b"$20\r\n-9223372036854775808\r\n");
        same(|w| w.bulk_display(7u8), b"$1\r\n7\r\n");
        same(|w| w.bulk_display("hello"), b"$5\r\nhello\r\n");
        let long = "y".repeat(100);
        let mut want = b"$100\r\n".to_vec();
        want.extend_from_slice(long.as_bytes());
        want.extend_from_slice(b"\r\n");
        same(|w| w.bulk_display(&long), &want);
        differ(|w| w.bulk_or_null(None), b"$-1\r\n", b"_\r\n");
        same(|w| w.bulk_or_null(Some(b"v")), b"$1\r\nv\r\n");
    }

    #[test]
    fn nulls() {
        differ(|w| w.null(), b"$-1\r\n", b"_\r\n");
        differ(|w| w.null_array(), b"*-1\r\n", b"_\r\n");
    }

    #[test]
    fn aggregates() {
        same(|w| w.array(0), b"*0\r\n");
        same(|w| w.array(3), b"*3\r\n");
        differ(|w| w.map(2), b"*4\r\n", b"%2\r\n");
        differ(|w| w.map(0), b"*0\r\n", b"%0\r\n");
        differ(|w| w.set(5), b"*5\r\n", b"~5\r\n");
        differ(|w| w.push(3), b"*3\r\n", b">3\r\n");
        differ(
            |w| {
                w.push(3);
                w.bulk(b"message");
                w.bulk(b"ch");
                w.bulk(b"hi");
            },
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        );
    }

    #[test]
    fn doubles() {
        differ(
            |w| w.double(0.1),
            b"$19\r\n0.10000000000000001\r\n",
            b",0.10000000000000001\r\n",
        );
        differ(|w| w.double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n");
        differ(|w| w.double(1e20), b"$5\r\n1e+20\r\n", b",1e+20\r\n");
        differ(|w| w.double(-0.0), b"$2\r\n-0\r\n", b",-0\r\n");
        differ(|w| w.double(3.0), b"$1\r\n3\r\n", b",3\r\n");
        differ(|w| w.double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n");
        differ(
            |w| w.double(f64::NEG_INFINITY),
            b"$4\r\n-inf\r\n",
            b",-inf\r\n",
        );
        differ(
            |w| w.double(5e-324),
            b"$23\r\n4.9406564584124654e-324\r\n",
            b",4.9406564584124654e-324\r\n",
        );
    }

    #[test]
    fn booleans() {
        differ(|w| w.bool(true), b":1\r\n", b"#t\r\n");
        differ(|w| w.bool(false), b":0\r\n", b"#f\r\n");
    }

    #[test]
    fn verbatim() {
        differ(
            |w| w.verbatim("txt", b"hello"),
            b"$5\r\nhello\r\n",
            b"=9\r\ntxt:hello\r\n",
        );
        differ(|w| w.verbatim("mkd", b""), b"$0\r\n\r\n", b"=4\r\nmkd:\r\n");
        differ(
            |w| w.verbatim("t", b"a\r\nb"),
            b"$4\r\na\r\nb\r\n",
            b"=8\r\nt  :a\r\nb\r\n",
        );
        differ(
            |w| w.verbatim("text", b"x"),
            b"$1\r\nx\r\n",
            b"=5\r\ntex:x\r\n",
        );
    }

    #[test]
    fn command_encoding() {
        let mut buf = BytesMut::new();
        write_command(&mut buf, &["SET", "k", ""]);
        assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn raw_is_verbatim_bytes() {
        same(|w| w.raw(b"+PONG\r\n"), b"+PONG\r\n");
    }
}
