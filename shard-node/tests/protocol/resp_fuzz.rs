//! Property tests of the RESP request parser: it never panics on arbitrary bytes, its output
//! does not depend on how the input is chunked, and it parses back the commands that
//! `write_command` (multibulk) and an inline quoting encoder produce.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use shard_node::resp::{write_command, Limits, ProtocolError, RequestParser};

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Command(Vec<Bytes>),
    Error(ProtocolError),
}

/// What a parser produced from a whole input: events up to and including the first error, and
/// the number of bytes left unconsumed when no error occurred.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Event>,
    leftover: Option<usize>,
}

/// Feeds `input` to a fresh parser in pieces ending at `cuts` and drains every command after
/// each piece, stopping at the first error (the connection would be closed).
fn run(input: &[u8], cuts: &[usize], limits: &Limits, auth: bool) -> Outcome {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            match parser.parse(&mut buf, limits, auth) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty(), "a command always has arguments");
                    events.push(Event::Command(args));
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(e.0.starts_with("ERR Protocol error: "), "{e}");
                    events.push(Event::Error(e));
                    return Outcome {
                        events,
                        leftover: None,
                    };
                }
            }
        }
    }
    Outcome {
        events,
        leftover: Some(buf.len()),
    }
}

fn cuts_from(len: usize, picks: &[Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Checks that one-shot, byte-at-a-time and randomly chunked feeding agree.
fn check_deterministic(input: &[u8], picks: &[Index], limits: &Limits, auth: bool) {
    let whole = run(input, &[], limits, auth);
    let chunked = run(input, &cuts_from(input.len(), picks), limits, auth);
    assert_eq!(
        whole, chunked,
        "one-shot and randomly chunked feeding differ"
    );
    let every: Vec<usize> = (1..input.len()).collect();
    let bytewise = run(input, &every, limits, auth);
    assert_eq!(
        whole, bytewise,
        "one-shot and byte-at-a-time feeding differ"
    );
}

/// Either the default limits or tiny ones that the generated inputs can exceed.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (0usize..48, 0usize..8, 0usize..48).prop_map(|(bulk, mbulk, inline)| Limits {
            max_bulk_len: bulk,
            max_multibulk_len: mbulk,
            max_inline_len: inline,
        }),
    ]
}

/// Byte strings made of protocol fragments, so the parser gets past the first byte often.
fn protocol_soup() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\0".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\x4".to_vec()),
        Just(b"-".to_vec()),
        Just(b"+".to_vec()),
        (0u32..20).prop_map(|n| n.to_string().into_bytes()),
        Just(b"*2\r\n".to_vec()),
        Just(b"$3\r\n".to_vec()),
        Just(b"foo\r\n".to_vec()),
        Just(b"*0\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"PING\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 1..6)
}

/// Inline encoding: every argument double-quoted, bytes other than letters and digits escaped
/// as `\xHH`.
fn encode_inline(args: &[Vec<u8>], out: &mut Vec<u8>) {
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(b'"');
        for &b in arg {
            if b.is_ascii_alphanumeric() {
                out.push(b);
            } else {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
}

fn as_vecs(outcome: &Outcome) -> Vec<Vec<Vec<u8>>> {
    outcome
        .events
        .iter()
        .map(|e| match e {
            Event::Command(args) => args.iter().map(|a| a.to_vec()).collect(),
            Event::Error(err) => panic!("unexpected protocol error: {err}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn resp_arbitrary_bytes_parse_the_same_however_chunked(
        input in proptest::collection::vec(any::<u8>(), 0..256),
        picks in proptest::collection::vec(any::<Index>(), 0..16),
        limits in limits(),
        auth in any::<bool>(),
    ) {
        check_deterministic(&input, &picks, &limits, auth);
    }

    #[test]
    fn resp_protocol_soup_parses_the_same_however_chunked(
        input in protocol_soup(),
        picks in proptest::collection::vec(any::<Index>(), 0..16),
        limits in limits(),
        auth in any::<bool>(),
    ) {
        check_deterministic(&input, &picks, &limits, auth);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn resp_encoded_commands_round_trip(
        cmds in proptest::collection::vec((command(), any::<bool>()), 0..8),
        picks in proptest::collection::vec(any::<Index>(), 0..16),
    ) {
        let mut input = Vec::new();
        for (args, inline) in &cmds {
            if *inline {
                encode_inline(args, &mut input);
            } else {
                let mut buf = BytesMut::new();
                write_command(&mut buf, args);
                input.extend_from_slice(&buf);
            }
        }
        let want: Vec<Vec<Vec<u8>>> = cmds.iter().map(|(args, _)| args.clone()).collect();
        let limits = Limits::default();
        let whole = run(&input, &[], &limits, false);
        prop_assert_eq!(as_vecs(&whole), want.clone());
        prop_assert_eq!(whole.leftover, Some(0));
        let chunked = run(&input, &cuts_from(input.len(), &picks), &limits, false);
        prop_assert_eq!(as_vecs(&chunked), want);
        prop_assert_eq!(chunked.leftover, Some(0));
    }
}
