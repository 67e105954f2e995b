//! Parses the same pipelined request stream with shard-node's `RequestParser` and with the
//! `redis-protocol` crate's zero-copy RESP2 decoder, and prints commands per second for each.
//! Both produce the arguments as `Bytes` views of the input, which is what a server needs.

use bytes::{Bytes, BytesMut};
use shard_node::resp::{Limits, RequestParser};
use std::time::Instant;

fn stream(commands: usize) -> BytesMut {
    let mut out = BytesMut::new();
    for i in 0..commands {
        let key = format!("key:{i:06}");
        let parts: [&[u8]; 3] = [b"SET", key.as_bytes(), b"some-value-xxxxxxxx"];
        shard_node::resp::write_command(&mut out, &parts);
    }
    out
}

fn ours(input: &BytesMut) -> usize {
    let mut buf = input.clone();
    let mut parser = RequestParser::new();
    let limits = Limits::default();
    let mut n = 0;
    while let Ok(Some(args)) = parser.parse(&mut buf, &limits, true) {
        n += args.len();
    }
    n
}

fn theirs(input: &BytesMut) -> usize {
    let mut buf = input.clone();
    let mut n = 0;
    while let Ok(Some((frame, _, _))) = redis_protocol::resp2::decode::decode_bytes_mut(&mut buf) {
        if let redis_protocol::resp2::types::BytesFrame::Array(items) = frame {
            for item in items {
                if let redis_protocol::resp2::types::BytesFrame::BulkString(b) = item {
                    let b: Bytes = b;
                    n += usize::from(!b.is_empty());
                }
            }
        }
    }
    n
}

fn main() {
    let commands = 200_000;
    let input = stream(commands);
    for round in 1..=3 {
        for (name, f) in [
            ("shard-node RequestParser", ours as fn(&BytesMut) -> usize),
            ("redis-protocol 6 decode_bytes_mut", theirs),
        ] {
            let t = Instant::now();
            let args = f(&input);
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(args, commands * 3, "{name} parsed every argument");
            println!(
                "round {round}  {name:36} {:>12.0} commands/s",
                commands as f64 / secs
            );
        }
    }
}
