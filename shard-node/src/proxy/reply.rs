//! Replies as the proxy sees them: framing of a stream of RESP2/RESP3 replies from a backend,
//! and the few decodings the proxy needs to merge replies of several shards.
//!
//! Contract:
//! - [`FrameScanner`] finds where each complete reply ends in a growing buffer, resuming where
//!   it stopped, so a reply arriving in many reads is scanned once (linear in its size). An
//!   attribute (`|`) belongs to the reply that follows it. Anything that is not RESP is a
//!   [`Malformed`] error, never a panic.
//! - [`elements`], [`integer`] and [`error_text`] decode one complete frame; they answer
//!   `None` for a frame of another kind.

use bytes::Bytes;

/// A backend sent bytes that are not a RESP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply from the backend: {0}")]
pub struct Malformed(pub &'static str);

/// Longest header line accepted (a type byte, a number or a simple string).
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Most elements an aggregate may announce.
const MAX_ELEMENTS: i64 = 1 << 32;
/// Deepest nesting of aggregates accepted.
const MAX_DEPTH: usize = 256;

/// Incremental framing of one reply at the front of a buffer.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Bytes of the current reply already scanned.
    pos: usize,
    /// Elements still expected by each open aggregate, outermost first.
    open: Vec<u64>,
    /// Bytes of a bulk payload (plus CRLF) still to skip once they arrive.
    bulk_left: usize,
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let mut at = 0;
    while let Some(i) = rest[at..].iter().position(|b| *b == b'\r') {
        let idx = at + i;
        if idx + 1 < rest.len() {
            if rest[idx + 1] == b'\n' {
                return Some(from + idx);
            }
            at = idx + 1;
        } else {
            return None;
        }
    }
    None
}

fn parse_len(digits: &[u8]) -> Result<i64, Malformed> {
    crate::resp::parse_i64_strict(digits).ok_or(Malformed("a length is not a number"))
}

impl FrameScanner {
    /// The length of the complete reply at the front of `buf`, or `None` while it is
    /// incomplete. After `Some(n)` the caller removes `n` bytes from the front and the scanner
    /// starts on the next reply; between calls the caller may only append to `buf`.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<usize>, Malformed> {
        loop {
            if self.bulk_left > 0 {
                let available = buf.len().saturating_sub(self.pos);
                if available < self.bulk_left {
                    return Ok(None);
                }
                self.pos += self.bulk_left;
                if buf.get(self.pos - 2..self.pos) != Some(&b"\r\n"[..]) {
                    return Err(Malformed("a bulk payload is not followed by CRLF"));
                }
                self.bulk_left = 0;
                if self.element_done() {
                    return Ok(Some(self.finish()));
                }
                continue;
            }
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            let Some(end) = find_crlf(buf, self.pos + 1) else {
                if buf.len() - self.pos > MAX_LINE {
                    return Err(Malformed("a header line is too long"));
                }
                return Ok(None);
            };
            let line = &buf[self.pos + 1..end];
            self.pos = end + 2;
            match kind {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
                b'$' | b'!' | b'=' => {
                    let len = parse_len(line)?;
                    if len >= 0 {
                        self.bulk_left = len as usize + 2;
                        continue;
                    }
                    if len != -1 {
                        return Err(Malformed("a bulk length is negative"));
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let len = parse_len(line)?;
                    if !(-1..=MAX_ELEMENTS).contains(&len) {
                        return Err(Malformed("an aggregate length is out of range"));
                    }
                    let mut count = len.max(0) as u64;
                    if kind == b'%' || kind == b'|' {
                        count *= 2;
                    }
                    if kind == b'|' {
                        // An attribute precedes the reply it describes: one more element.
                        count += 1;
                    }
                    if count > 0 {
                        if self.open.len() >= MAX_DEPTH {
                            return Err(Malformed("replies are nested too deeply"));
                        }
                        self.open.push(count);
                        continue;
                    }
                }
                _ => return Err(Malformed("unknown reply type byte")),
            }
            if self.element_done() {
                return Ok(Some(self.finish()));
            }
        }
    }

    /// Counts one finished element; true when the whole reply is complete.
    fn element_done(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }

    fn finish(&mut self) -> usize {
        std::mem::take(&mut self.pos)
    }
}

/// The elements of an array, set or push reply, each as its own complete frame; `None` for
/// any other reply (a null array included).
pub fn elements(frame: &Bytes) -> Option<Vec<Bytes>> {
    let kind = *frame.first()?;
    if !matches!(kind, b'*' | b'~' | b'>') {
        return None;
    }
    let end = find_crlf(frame, 1)?;
    let len = crate::resp::parse_i64_strict(&frame[1..end])?;
    if len < 0 {
        return None;
    }
    let mut out = Vec::with_capacity((len as usize).min(1024));
    let mut at = end + 2;
    for _ in 0..len {
        let mut scanner = FrameScanner::default();
        let n = scanner.next_frame(&frame[at..]).ok()??;
        out.push(frame.slice(at..at + n));
        at += n;
    }
    Some(out)
}

/// The value of an integer reply.
pub fn integer(frame: &[u8]) -> Option<i64> {
    let rest = frame.strip_prefix(b":")?;
    crate::resp::parse_i64_strict(rest.strip_suffix(b"\r\n")?)
}

/// The payload of a bulk or verbatim string reply (a verbatim string keeps its `txt:` prefix
/// off); `None` for a null or another kind.
pub fn bulk(frame: &[u8]) -> Option<&[u8]> {
    let kind = *frame.first()?;
    if kind != b'$' && kind != b'=' {
        return None;
    }
    let end = find_crlf(frame, 1)?;
    let len = crate::resp::parse_i64_strict(&frame[1..end])?;
    let body = frame.get(end + 2..end + 2 + usize::try_from(len).ok()?)?;
    if kind == b'=' {
        return body.get(4..);
    }
    Some(body)
}

/// The text of an error reply (simple or blob), without the type byte and CRLF.
pub fn error_text(frame: &[u8]) -> Option<&[u8]> {
    match frame.first()? {
        b'-' => frame.get(1..frame.len().checked_sub(2)?),
        b'!' => {
            let end = find_crlf(frame, 1)?;
            frame.get(end + 2..frame.len().checked_sub(2)?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(stream: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, Malformed> {
        let mut scanner = FrameScanner::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(n) = scanner.next_frame(&buf)? {
                out.push(buf.drain(..n).collect());
            }
        }
        assert!(
            buf.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(&buf)
        );
        Ok(out)
    }

    #[test]
    fn replies_are_framed_however_the_bytes_arrive() {
        let replies: [&[u8]; 12] = [
            b"+OK\r\n",
            b"-ERR no\r\n",
            b":42\r\n",
            b"$5\r\nhe\r\no\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n+x\r\n",
            b"%1\r\n+k\r\n*1\r\n:2\r\n",
            b"_\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$2\r\nab\r\n",
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
        ];
        let stream: Vec<u8> = replies.concat();
        for chunk in [1, 2, 3, 7, stream.len()] {
            let got = frames(&stream, chunk).unwrap();
            let want: Vec<Vec<u8>> = replies.iter().map(|r| r.to_vec()).collect();
            assert_eq!(got, want, "chunk {chunk}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"?what\r\n"[..],
            b"$abc\r\n",
            b"$3\r\nabcde\r\n",
            b"*-5\r\n",
            b"$-7\r\n",
        ] {
            assert!(
                frames(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn decodings_pick_out_what_merges_need() {
        let frame = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:7\r\n");
        let parts = elements(&frame).unwrap();
        assert_eq!(parts[0], &b"$1\r\na\r\n"[..]);
        assert_eq!(parts[1], &b"$-1\r\n"[..]);
        assert_eq!(parts[2], &b"*1\r\n:7\r\n"[..]);
        assert_eq!(elements(&Bytes::from_static(b"*-1\r\n")), None);
        assert_eq!(integer(b":-12\r\n"), Some(-12));
        assert_eq!(integer(b"+12\r\n"), None);
        assert_eq!(bulk(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
        assert_eq!(bulk(b"=7\r\ntxt:abc\r\n"), Some(&b"abc"[..]));
        assert_eq!(error_text(b"-MOVED 1 h:2\r\n"), Some(&b"MOVED 1 h:2"[..]));
        assert_eq!(error_text(b"!5\r\nERR x\r\n"), Some(&b"ERR x"[..]));
    }
}
