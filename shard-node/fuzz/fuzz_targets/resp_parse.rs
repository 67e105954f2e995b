//! Fuzzes the RESP request parser: no input may make it panic, and the commands and error it
//! produces must not depend on how the input is split into reads.
//!
//! Input layout: the first byte selects authentication and the limits, the rest is the byte
//! stream a client sends.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shard_node::resp::{Limits, ProtocolError, RequestParser};

/// Commands parsed until the first error, the error, and the unconsumed byte count otherwise.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    commands: Vec<Vec<Bytes>>,
    error: Option<ProtocolError>,
    leftover: usize,
}

fn run(input: &[u8], cuts: &[usize], limits: &Limits, authenticated: bool) -> Outcome {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            match parser.parse(&mut buf, limits, authenticated) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty());
                    commands.push(args);
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        commands,
                        error: Some(error),
                        leftover: 0,
                    }
                }
            }
        }
    }
    Outcome {
        commands,
        error: None,
        leftover: buf.len(),
    }
}

/// Deterministic pseudo-random cut points derived from the input (xorshift64).
fn cuts(input: &[u8]) -> Vec<usize> {
    let mut state = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut cuts = Vec::new();
    let mut pos = 0usize;
    while pos < input.len() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        pos += 1 + (state % 16) as usize;
        cuts.push(pos.min(input.len()));
    }
    cuts
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let authenticated = flags & 1 == 1;
    let limits = if flags & 2 == 0 {
        Limits::default()
    } else {
        let small = usize::from(flags >> 2);
        Limits {
            max_bulk_len: small * 4,
            max_multibulk_len: small % 8,
            max_inline_len: small * 2,
        }
    };
    let whole = run(input, &[], &limits, authenticated);
    let chunked = run(input, &cuts(input), &limits, authenticated);
    assert_eq!(whole, chunked, "chunked feeding changed the outcome");
    let every: Vec<usize> = (1..input.len()).collect();
    let bytewise = run(input, &every, &limits, authenticated);
    assert_eq!(
        whole, bytewise,
        "byte-at-a-time feeding changed the outcome"
    );
});
