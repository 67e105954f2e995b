//! Merging the replies of several shards into the one reply a client expects, and the `SCAN`
//! cursors that carry the shard.
//!
//! Contract:
//! - A merge takes the replies in the order the requests were made and gives one complete
//!   frame. If any part failed (an error frame or a proxy error) the first failure is the
//!   reply, as a client of one Redis would see it.
//! - A proxy `SCAN` cursor is `((shard + 1) << 53) | (node cursor >> 11)`, 0 for the start.
//!   Dropping the node cursor's low 11 bits resumes a little earlier, which may return a key
//!   twice (SCAN allows that) but never skips one.

use super::backend::Reply;
use super::reply;
use crate::resp::{Protocol, ReplyWriter};
use bytes::{Bytes, BytesMut};

/// How the replies of a fanned-out or split command become one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// One part; its reply as it is.
    Pass,
    /// Integer replies added up (`DEL`, `EXISTS`, `DBSIZE`…).
    Sum,
    /// The first reply when none failed (`MSET`, `FLUSHALL`, `CONFIG SET`…).
    First,
    /// The arrays of `MGET` parts, each element put back at its key's position.
    Mget {
        positions: Vec<Vec<usize>>,
        total: usize,
    },
    /// Arrays joined (`KEYS`).
    Concat,
    /// One of the non-null replies, chosen at random (`RANDOMKEY`).
    Random,
    /// The first shard's `INFO` with the keyspace section summed over all.
    Info,
    /// The smallest integer (`WAIT`: replicas that acknowledged on every shard).
    Min,
}

const SHARD_SHIFT: u32 = 53;
const DROPPED_BITS: u32 = 11;

/// The proxy cursor for node cursor `position` of shard `shard`.
pub fn scan_cursor(shard: usize, position: u64) -> u64 {
    ((shard as u64 + 1) << SHARD_SHIFT) | (position >> DROPPED_BITS)
}

/// The shard and node cursor a proxy cursor stands for; `None` for a shard out of range.
pub fn scan_position(cursor: u64, shards: usize) -> Option<(usize, u64)> {
    if cursor == 0 {
        return Some((0, 0));
    }
    let shard = (cursor >> SHARD_SHIFT).checked_sub(1)? as usize;
    let position = (cursor & ((1 << SHARD_SHIFT) - 1)) << DROPPED_BITS;
    (shard < shards).then_some((shard, position))
}

/// What one shard's `SCAN` page gives.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanStep {
    /// The shard is done and shards remain: scan the next one, carrying these keys.
    Continue(Vec<Bytes>),
    /// The reply for the client.
    Reply(Bytes),
}

/// Folds shard `shard`'s page (`reply`) into the keys `carried` from the shards before it.
/// A shard that is done hands over to the next within the same call, so a scan whose keys
/// fit one page ends with cursor 0, as on one server.
pub fn scan_page(
    reply: Reply,
    shard: usize,
    shards: usize,
    mut carried: Vec<Bytes>,
    proto: Protocol,
) -> ScanStep {
    let frame = match reply {
        Err(text) => return ScanStep::Reply(error_frame(&text)),
        Ok(f) if reply::error_text(&f).is_some() => return ScanStep::Reply(f),
        Ok(f) => f,
    };
    let parts = reply::elements(&frame).unwrap_or_default();
    let cursor = parts
        .first()
        .and_then(|c| reply::bulk(c))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u64>().ok());
    let (Some(cursor), Some(keys)) = (cursor, parts.get(1).and_then(reply::elements)) else {
        return ScanStep::Reply(error_frame(UNEXPECTED));
    };
    carried.extend(keys);
    if cursor == 0 && shard + 1 < shards {
        return ScanStep::Continue(carried);
    }
    let next = if cursor == 0 {
        0
    } else {
        scan_cursor(shard, cursor)
    };
    let mut buf = BytesMut::new();
    let mut w = ReplyWriter::new(&mut buf, proto);
    w.array(2);
    w.bulk(next.to_string().as_bytes());
    w.array(carried.len());
    for k in carried {
        w.raw(&k);
    }
    ScanStep::Reply(buf.freeze())
}

fn error_frame(text: &str) -> Bytes {
    let mut buf = BytesMut::new();
    ReplyWriter::new(&mut buf, Protocol::Resp2).error(text);
    buf.freeze()
}

const UNEXPECTED: &str = "ERR a shard sent a reply of an unexpected type";

/// Merges `replies` (see the module contract).
pub fn merge(how: &Merge, replies: Vec<Reply>, proto: Protocol) -> Bytes {
    let mut frames = Vec::with_capacity(replies.len());
    for r in replies {
        match r {
            Err(text) => return error_frame(&text),
            Ok(f) if how != &Merge::Pass && reply::error_text(&f).is_some() => return f,
            Ok(f) => frames.push(f),
        }
    }
    let mut buf = BytesMut::new();
    let mut w = ReplyWriter::new(&mut buf, proto);
    match how {
        Merge::Pass | Merge::First => return frames.into_iter().next().unwrap_or_default(),
        Merge::Sum | Merge::Min => {
            let mut values = Vec::with_capacity(frames.len());
            for f in &frames {
                match reply::integer(f) {
                    Some(v) => values.push(v),
                    None => return error_frame(UNEXPECTED),
                }
            }
            let v = if how == &Merge::Sum {
                values.iter().fold(0i64, |a, b| a.saturating_add(*b))
            } else {
                values.iter().copied().min().unwrap_or(0)
            };
            w.int(v);
        }
        Merge::Mget { positions, total } => {
            let mut slots: Vec<Option<Bytes>> = vec![None; *total];
            for (f, at) in frames.iter().zip(positions) {
                let Some(values) = reply::elements(f) else {
                    return error_frame(UNEXPECTED);
                };
                if values.len() != at.len() {
                    return error_frame(UNEXPECTED);
                }
                for (v, i) in values.into_iter().zip(at) {
                    if let Some(slot) = slots.get_mut(*i) {
                        *slot = Some(v);
                    }
                }
            }
            w.array(*total);
            for s in slots {
                match s {
                    Some(v) => w.raw(&v),
                    None => w.null(),
                }
            }
        }
        Merge::Concat => {
            let mut all = Vec::new();
            for f in &frames {
                match reply::elements(f) {
                    Some(values) => all.extend(values),
                    None => return error_frame(UNEXPECTED),
                }
            }
            w.array(all.len());
            for v in all {
                w.raw(&v);
            }
        }
        Merge::Random => {
            let found: Vec<&Bytes> = frames.iter().filter(|f| reply::bulk(f).is_some()).collect();
            if found.is_empty() {
                w.null();
            } else {
                let pick = rand::random_range(0..found.len());
                w.raw(found[pick]);
            }
        }
        Merge::Info => {
            let texts: Vec<&[u8]> = frames.iter().filter_map(|f| reply::bulk(f)).collect();
            if texts.len() != frames.len() || texts.is_empty() {
                return error_frame(UNEXPECTED);
            }
            let merged = merge_info(&texts);
            w.verbatim("txt", merged.as_bytes());
        }
    }
    buf.freeze()
}

/// Shard 0's `INFO` text with each `dbN:keys=..,expires=..` line summed over every shard.
fn merge_info(texts: &[&[u8]]) -> String {
    let parse = |line: &str| -> Option<(String, u64, u64, String)> {
        let (db, rest) = line.split_once(':')?;
        if !db.starts_with("db") {
            return None;
        }
        let mut keys = None;
        let mut expires = None;
        let mut ttl = String::from("0");
        for field in rest.split(',') {
            match field.split_once('=')? {
                ("keys", v) => keys = v.parse().ok(),
                ("expires", v) => expires = v.parse().ok(),
                ("avg_ttl", v) => ttl = v.to_string(),
                _ => {}
            }
        }
        Some((db.to_string(), keys?, expires?, ttl))
    };
    let mut totals: Vec<(String, u64, u64, String)> = Vec::new();
    for text in texts {
        for line in String::from_utf8_lossy(text).lines() {
            if let Some((db, k, e, ttl)) = parse(line.trim_end()) {
                match totals.iter_mut().find(|t| t.0 == db) {
                    Some(t) => {
                        t.1 += k;
                        t.2 += e;
                    }
                    None => totals.push((db, k, e, ttl)),
                }
            }
        }
    }
    let first = String::from_utf8_lossy(texts[0]);
    let mut out = String::with_capacity(first.len());
    let mut in_keyspace = false;
    let mut written = false;
    for line in first.split("\r\n") {
        if line.starts_with('#') {
            in_keyspace = line.trim() == "# Keyspace";
        }
        if in_keyspace && parse(line).is_some() {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if in_keyspace && !written {
            for (db, k, e, ttl) in &totals {
                out.push_str(&format!("{db}:keys={k},expires={e},avg_ttl={ttl}\r\n"));
            }
            written = true;
        }
    }
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &'static [u8]) -> Reply {
        Ok(Bytes::from_static(s))
    }

    #[test]
    fn scan_cursors_carry_the_shard_and_round_down() {
        assert_eq!(scan_position(0, 3), Some((0, 0)));
        for (shard, pos) in [(0, 0), (0, 1 << 40), (2, u64::MAX), (1, 12345 << 11)] {
            let c = scan_cursor(shard, pos);
            assert_ne!(c, 0);
            let (s, p) = scan_position(c, 3).unwrap();
            assert_eq!(s, shard);
            assert!(p <= pos && pos - p < 2048, "{pos} -> {p}");
        }
        assert_eq!(scan_position(scan_cursor(3, 5), 3), None);
        assert_eq!(scan_position(5, 3), None);
    }

    #[test]
    fn merges_put_replies_back_together() {
        let p = Protocol::Resp2;
        assert_eq!(
            merge(&Merge::Sum, vec![ok(b":2\r\n"), ok(b":3\r\n")], p),
            &b":5\r\n"[..]
        );
        assert_eq!(
            merge(&Merge::Min, vec![ok(b":2\r\n"), ok(b":1\r\n")], p),
            &b":1\r\n"[..]
        );
        let mget = Merge::Mget {
            positions: vec![vec![0, 2], vec![1]],
            total: 3,
        };
        let got = merge(
            &mget,
            vec![ok(b"*2\r\n$1\r\na\r\n$-1\r\n"), ok(b"*1\r\n$1\r\nb\r\n")],
            p,
        );
        assert_eq!(got, &b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n"[..]);
        let failed = merge(
            &Merge::Sum,
            vec![ok(b":1\r\n"), Err("CLUSTERDOWN x".into())],
            p,
        );
        assert_eq!(failed, &b"-CLUSTERDOWN x\r\n"[..]);
        let wrong = merge(&Merge::First, vec![ok(b"+OK\r\n"), ok(b"-ERR no\r\n")], p);
        assert_eq!(wrong, &b"-ERR no\r\n"[..]);
        assert_eq!(
            merge(
                &Merge::Concat,
                vec![ok(b"*1\r\n$1\r\na\r\n"), ok(b"*0\r\n")],
                p
            ),
            &b"*1\r\n$1\r\na\r\n"[..]
        );
        assert_eq!(
            merge(&Merge::Random, vec![ok(b"$-1\r\n")], p),
            &b"$-1\r\n"[..]
        );
        assert_eq!(
            merge(&Merge::Random, vec![ok(b"_\r\n")], Protocol::Resp3),
            &b"_\r\n"[..]
        );
    }

    #[test]
    fn scan_pages_move_to_the_next_shard_when_one_is_done() {
        let p = Protocol::Resp2;
        let page = |cursor: &str| {
            Ok(Bytes::from(format!(
                "*2\r\n${}\r\n{cursor}\r\n*1\r\n$1\r\nk\r\n",
                cursor.len()
            )))
        };
        let k = Bytes::from_static(b"$1\r\nk\r\n");
        assert_eq!(
            scan_page(page("0"), 0, 2, Vec::new(), p),
            ScanStep::Continue(vec![k.clone()])
        );
        let last = scan_page(page("0"), 1, 2, vec![k.clone()], p);
        assert_eq!(
            last,
            ScanStep::Reply(Bytes::from_static(
                b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nk\r\n$1\r\nk\r\n"
            ))
        );
        let next = scan_cursor(0, 4096).to_string();
        let mid = scan_page(page("4096"), 0, 2, Vec::new(), p);
        let want = format!("*2\r\n${}\r\n{next}\r\n*1\r\n$1\r\nk\r\n", next.len());
        assert_eq!(mid, ScanStep::Reply(Bytes::from(want)));
        assert_eq!(
            scan_page(
                Ok(Bytes::from_static(b"-ERR invalid cursor\r\n")),
                0,
                2,
                Vec::new(),
                p
            ),
            ScanStep::Reply(Bytes::from_static(b"-ERR invalid cursor\r\n"))
        );
    }

    #[test]
    fn info_sums_the_keyspace_of_every_shard() {
        let a = b"# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=5\r\n";
        let b = b"# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n";
        let merged = merge_info(&[a, b]);
        assert!(
            merged.contains("db0:keys=5,expires=1,avg_ttl=5\r\n"),
            "{merged}"
        );
        assert!(merged.starts_with("# Server\r\nredis_version:7.0.15\r\n"));
        assert_eq!(merged.matches("db0:").count(), 1);
    }
}
