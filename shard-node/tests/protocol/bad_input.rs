//! Hostile and malformed client input, on raw TCP connections with exact bytes.
//!
//! Every scenario runs against shard-node and against Debian's `redis-server` 7.0, the
//! reference: where Redis's reply is deterministic the bytes must be identical, and the
//! reference run also proves the scenario itself is right. After each scenario the server is
//! still up and a fresh client is served.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{
    assert_pong, encode, info_field, poll_until, require_command, show, try_ping, NodeBuilder,
    RawConn, ReadEnd, RedisServer, XorShift, IO_TIMEOUT,
};

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// One exchange on a fresh connection: send `input`, read `replies` frames, then either the
/// server closes the connection or it still answers a `PING` (whose reply is recorded too).
struct Case {
    name: &'static str,
    input: Vec<u8>,
    replies: usize,
    closes: bool,
    /// The exact first reply, where it is part of the contract.
    expect: Option<&'static [u8]>,
}

fn case(name: &'static str, input: &[u8], replies: usize, closes: bool) -> Case {
    Case {
        name,
        input: input.to_vec(),
        replies,
        closes,
        expect: None,
    }
}

fn exact(name: &'static str, input: &[u8], closes: bool, expect: &'static [u8]) -> Case {
    Case {
        name,
        input: input.to_vec(),
        replies: 1,
        closes,
        expect: Some(expect),
    }
}

/// The frames the server sent, or what went differently from the case's shape.
fn run_case(port: u16, c: &Case) -> Result<Vec<Vec<u8>>, String> {
    let mut conn = RawConn::try_connect(port).map_err(|e| format!("connect: {e}"))?;
    // The server may close the connection before it has read everything; that is fine.
    let _ = conn.send(&c.input);
    let mut frames = Vec::new();
    for i in 0..c.replies {
        match conn.read_frame() {
            Ok(f) => frames.push(f),
            Err(e) => {
                return Err(format!(
                    "reply {} of {}: {e:?} (after {:?})",
                    i + 1,
                    c.replies,
                    frames.iter().map(|f| show(f)).collect::<Vec<_>>()
                ))
            }
        }
    }
    if c.closes {
        match conn.read_to_close() {
            Ok(rest) if rest.is_empty() => {}
            Ok(rest) => return Err(format!("extra bytes before close: {}", show(&rest))),
            Err(_) => return Err(format!("connection still open after {IO_TIMEOUT:?}")),
        }
    } else {
        conn.send(PING)
            .map_err(|e| format!("connection closed: {e}"))?;
        match conn.read_frame() {
            Ok(f) => frames.push(f),
            Err(e) => return Err(format!("PING after the input: {e:?}")),
        }
    }
    if let (Some(want), Some(got)) = (c.expect, frames.first()) {
        if want != got.as_slice() {
            return Err(format!("expected {}, got {}", show(want), show(got)));
        }
    }
    Ok(frames)
}

/// A fresh client (authenticating first if `password` is set) gets `+PONG`.
fn fresh_client_served(port: u16, password: Option<&str>) {
    let mut c = RawConn::connect(port);
    if let Some(p) = password {
        assert_eq!(c.cmd_str(&["AUTH", p]), b"+OK\r\n");
    }
    assert_eq!(c.cmd(&[b"PING"]), b"+PONG\r\n");
}

/// Runs every case against the reference first (a mismatch there is a mistake in the table),
/// then against shard-node, and reports all differences at once.
fn compare_with_redis(cases: &[Case], password: Option<&str>) {
    let mut redis_args = Vec::new();
    let mut builder = NodeBuilder::new();
    if let Some(p) = password {
        redis_args.extend(["--requirepass", p]);
        builder = builder.requirepass(p);
    }
    let redis = RedisServer::start_with(&redis_args, None);
    let mut reference = Vec::new();
    for c in cases {
        match run_case(redis.port(), c) {
            Ok(frames) => reference.push(frames),
            Err(e) => panic!("case `{}` does not hold for redis-server: {e}", c.name),
        }
    }
    drop(redis);
    let mut node = builder.start();
    let mut failures = Vec::new();
    for (c, want) in cases.iter().zip(&reference) {
        match run_case(node.port(), c) {
            Ok(got) if &got == want => {}
            Ok(got) => failures.push(format!(
                "`{}`: redis-server sent {:?}, shard-node sent {:?}",
                c.name,
                want.iter().map(|f| show(f)).collect::<Vec<_>>(),
                got.iter().map(|f| show(f)).collect::<Vec<_>>()
            )),
            Err(e) => failures.push(format!("`{}`: {e}", c.name)),
        }
        node.assert_running();
        fresh_client_served(node.port(), password);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from redis-server:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

#[test]
fn protocol_errors_match_redis_byte_for_byte() {
    let invalid_bulk: &[u8] = b"-ERR Protocol error: invalid bulk length\r\n";
    let invalid_multibulk: &[u8] = b"-ERR Protocol error: invalid multibulk length\r\n";
    let cases = vec![
        exact(
            "bulk length not a number",
            b"*1\r\n$x\r\n",
            true,
            invalid_bulk,
        ),
        exact("negative bulk length", b"*1\r\n$-1\r\n", true, invalid_bulk),
        exact(
            "bulk longer than proto-max-bulk-len (512 MiB)",
            b"*1\r\n$536870913\r\n",
            true,
            invalid_bulk,
        ),
        exact(
            "multibulk length not a number",
            b"*x\r\n",
            true,
            invalid_multibulk,
        ),
        exact(
            "multibulk length above INT_MAX",
            b"*3000000000\r\n",
            true,
            invalid_multibulk,
        ),
        exact(
            "multibulk element that is not a bulk",
            b"*1\r\n+PING\r\n",
            true,
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        exact(
            "inline command with unbalanced quotes",
            b"SET \"abc\r\n",
            true,
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        Case {
            name: "inline request over 64 KiB without a newline",
            input: vec![b'a'; 64 * 1024 + 1],
            replies: 1,
            closes: true,
            expect: Some(b"-ERR Protocol error: too big inline request\r\n"),
        },
        exact(
            "unknown command",
            b"*2\r\n$3\r\nFOO\r\n$3\r\nbar\r\n",
            false,
            b"-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n",
        ),
        exact(
            "unknown inline command",
            b"foo bar\r\n",
            false,
            b"-ERR unknown command 'foo', with args beginning with: 'bar' \r\n",
        ),
        exact(
            "wrong number of arguments",
            b"*1\r\n$3\r\nGET\r\n",
            false,
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        exact("inline PING", b"PING\r\n", false, b"+PONG\r\n"),
        case(
            "empty lines and empty or negative multibulks are skipped",
            b"\r\n\r\n*0\r\n*-5\r\n",
            0,
            false,
        ),
        case(
            "a valid command, then a protocol error in the same packet",
            b"*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n",
            2,
            true,
        ),
        case(
            "wrong type",
            &[
                encode(&[b"SET", b"bad:str", b"v"]),
                encode(&[b"LPUSH", b"bad:str", b"x"]),
                encode(&[b"GET", b"bad:str"]),
            ]
            .concat(),
            3,
            false,
        ),
        case(
            "not an integer",
            &[
                encode(&[b"SET", b"bad:num", b"abc"]),
                encode(&[b"INCR", b"bad:num"]),
                encode(&[b"INCRBY", b"bad:num2", b"1.5"]),
            ]
            .concat(),
            3,
            false,
        ),
        case(
            "binary-safe keys and values",
            &[
                encode(&[b"SET", b"bin:\x00\r\n\xff", b"\r\n\x00*1\r\n"]),
                encode(&[b"GET", b"bin:\x00\r\n\xff"]),
            ]
            .concat(),
            2,
            false,
        ),
    ];
    compare_with_redis(&cases, None);
}

#[test]
fn unauthenticated_limits_match_redis() {
    let mut del20 = vec![b"DEL".to_vec()];
    del20.extend((1..20).map(|i| format!("k{i}").into_bytes()));
    let del20: Vec<&[u8]> = del20.iter().map(|a| a.as_slice()).collect();
    let cases = vec![
        exact(
            "command before AUTH",
            PING,
            false,
            b"-NOAUTH Authentication required.\r\n",
        ),
        exact(
            "wrong password",
            b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n",
            false,
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        ),
        exact(
            "unauthenticated multibulk above 10 elements",
            b"*100\r\n",
            true,
            b"-ERR Protocol error: unauthenticated multibulk length\r\n",
        ),
        exact(
            "unauthenticated multibulk of 10 million elements",
            b"*10000000\r\n",
            true,
            b"-ERR Protocol error: unauthenticated multibulk length\r\n",
        ),
        exact(
            "unauthenticated bulk above 16 KiB",
            b"*1\r\n$100000\r\n",
            true,
            b"-ERR Protocol error: unauthenticated bulk length\r\n",
        ),
        case(
            "after AUTH, a 20-element command is fine",
            &[encode(&[b"AUTH", b"secret"]), encode(&del20)].concat(),
            2,
            false,
        ),
    ];
    compare_with_redis(&cases, Some("secret"));
}

/// A client announces ten million elements and sends a few; the server waits for the rest
/// without replying, serves everyone else meanwhile, and forgets it when it hangs up.
fn huge_multibulk_header(port: u16) {
    let mut a = RawConn::connect(port);
    a.send(b"*10000000\r\n").expect("send header");
    a.set_read_timeout(Duration::from_millis(300));
    match a.read_frame() {
        Err(ReadEnd::Timeout(b)) if b.is_empty() => {}
        other => panic!("expected the server to wait for the elements, got {other:?}"),
    }
    assert_pong(port);
    a.send(&b"$3\r\nfoo\r\n".repeat(1000))
        .expect("send elements");
    match a.read_frame() {
        Err(ReadEnd::Timeout(b)) if b.is_empty() => {}
        other => panic!("expected the server to keep waiting, got {other:?}"),
    }
    assert_pong(port);
    drop(a);
    // Many clients doing the same at once, all hanging up.
    let clients: Vec<RawConn> = (0..200)
        .map(|_| {
            let mut c = RawConn::connect(port);
            c.send(b"*10000000\r\n$3\r\nfoo\r\n").expect("send header");
            c
        })
        .collect();
    assert_pong(port);
    drop(clients);
    assert_pong(port);
}

#[test]
fn huge_multibulk_header_then_silence() {
    let redis = RedisServer::start();
    huge_multibulk_header(redis.port());
    let mut node = NodeBuilder::new().start();
    huge_multibulk_header(node.port());
    node.assert_running();
}

/// A pipeline of valid commands with random bytes flipped, inserted or dropped.
fn mutated_resp(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let mut clean = Vec::new();
    let mut i = 0u64;
    while clean.len() < len {
        let k = format!("g:{}", rng.below(64));
        let v = format!("v{i}");
        let cmd = match rng.below(8) {
            0 => encode(&[b"SET", k.as_bytes(), v.as_bytes()]),
            1 => encode(&[b"GET", k.as_bytes()]),
            2 => encode(&[b"INCR", k.as_bytes()]),
            3 => encode(&[b"LPUSH", k.as_bytes(), v.as_bytes()]),
            4 => encode(&[b"SADD", k.as_bytes(), v.as_bytes()]),
            5 => encode(&[b"HSET", k.as_bytes(), b"f", v.as_bytes()]),
            6 => encode(&[b"ECHO", v.as_bytes()]),
            _ => format!("PING {v}\r\n").into_bytes(),
        };
        clean.extend(cmd);
        i += 1;
    }
    let mut out = Vec::with_capacity(clean.len());
    for b in clean {
        match rng.below(200) {
            0 => out.push((rng.next_u64() >> 56) as u8),
            1 => {}
            2 => {
                out.push(b);
                out.push((rng.next_u64() >> 56) as u8);
            }
            _ => out.push(b),
        }
    }
    out
}

/// Random and half-valid bytes on many connections; a bystander is served throughout, and a
/// key written before is intact afterwards.
fn binary_garbage(port: u16) {
    let mut bystander = RawConn::connect(port);
    assert_eq!(
        bystander.cmd_str(&["SET", "sentinel", "intact"]),
        b"+OK\r\n"
    );
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..8u64)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = XorShift::new(0xBAD_5EED + t);
                    for round in 0..4 {
                        let bytes = if (t + round) % 2 == 0 {
                            rng.bytes(64 * 1024)
                        } else {
                            mutated_resp(&mut rng, 64 * 1024)
                        };
                        let mut c = RawConn::connect(port);
                        let _ = c.send(&bytes);
                        c.shutdown_write();
                        // Whatever the replies, the server must notice the end of input and
                        // close its side.
                        if c.read_to_close().is_err() {
                            panic!(
                                "thread {t} round {round}: connection not closed after EOF \
                                 within {IO_TIMEOUT:?}"
                            );
                        }
                    }
                })
            })
            .collect();
        let mut pings = 0u32;
        while !workers.iter().all(|w| w.is_finished()) || pings == 0 {
            assert_eq!(bystander.cmd(&[b"PING"]), b"+PONG\r\n");
            pings += 1;
        }
        for w in workers {
            w.join().expect("garbage thread");
        }
    });
    assert_pong(port);
    let mut c = RawConn::connect(port);
    assert_eq!(c.cmd_str(&["GET", "sentinel"]), b"$6\r\nintact\r\n");
}

#[test]
fn binary_garbage_does_not_hurt_the_server() {
    let redis = RedisServer::start();
    binary_garbage(redis.port());
    let mut node = NodeBuilder::new().start();
    binary_garbage(node.port());
    node.assert_running();
}

/// Opens `n` idle connections from a python3 child (a test process cannot raise its own
/// open-files limit without `unsafe`), then checks the server still answers quickly, counts
/// them, serves all of them, and releases them when they close.
const IDLE_CLIENTS_PY: &str = r#"
import resource, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
want = n + 64
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != resource.RLIM_INFINITY and soft < want:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard) if hard != resource.RLIM_INFINITY else hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
try:
    for _ in range(n):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
except OSError as e:
    print(f"error after {len(socks)} connections: {e}", flush=True)
    sys.exit(1)
print(f"open {len(socks)}", flush=True)
if sys.stdin.readline().strip() == "ping":
    ok, bad = 0, []
    for s in socks:
        try:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
        except OSError as e:
            bad.append(repr(e))
    for s in socks:
        buf = b""
        try:
            while len(buf) < 7:
                d = s.recv(7 - len(buf))
                if not d:
                    break
                buf += d
        except OSError as e:
            buf = repr(e).encode()
        if buf == b"+PONG\r\n":
            ok += 1
        elif len(bad) < 3:
            bad.append(buf)
    print(f"pong {ok} {bad!r}", flush=True)
sys.stdin.read()
"#;

fn connected_clients(port: u16) -> Option<u64> {
    let mut c = RawConn::try_connect(port).ok()?;
    c.send(&encode(&[b"INFO", b"clients"])).ok()?;
    let info = c.read_frame().ok()?;
    info_field(&info, "connected_clients")?.parse().ok()
}

fn idle_connections(port: u16, n: usize) {
    require_command("python3", "python3");
    let mut py = Command::new("python3")
        .args(["-c", IDLE_CLIENTS_PY, &port.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let stdout = py.stdout.take().expect("python stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        rx.recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("python3 did not report {what}: {e}"))
    };

    let opened = next_line("its connections");
    assert_eq!(
        opened,
        format!("open {n}"),
        "python3 could not open {n} connections"
    );

    let slowest = (0..20)
        .map(|_| try_ping(port).unwrap_or_else(|e| panic!("PING with {n} idle clients: {e}")))
        .max()
        .expect("20 pings");
    assert!(
        slowest < Duration::from_secs(1),
        "PING took {slowest:?} with {n} idle clients"
    );

    let counted = poll_until(Duration::from_secs(30), || {
        connected_clients(port).filter(|&c| c > n as u64)
    });
    assert!(
        counted.is_some(),
        "INFO clients never counted the {n} idle clients (last: {:?})",
        connected_clients(port)
    );

    let mut stdin = py.stdin.take().expect("python stdin");
    writeln!(stdin, "ping").expect("tell python3 to ping");
    let pongs = next_line("its PINGs");
    assert_eq!(
        pongs,
        format!("pong {n} []"),
        "not every idle client was served"
    );

    drop(stdin);
    let status = py.wait().expect("wait for python3");
    assert!(status.success(), "python3 exited with {status}");
    let released = poll_until(Duration::from_secs(30), || {
        connected_clients(port).filter(|&c| c <= 1)
    });
    assert!(
        released.is_some(),
        "closed connections were not released (connected_clients: {:?})",
        connected_clients(port)
    );
    assert_pong(port);
}

#[test]
fn ten_thousand_idle_connections() {
    const N: usize = 10_000;
    const LIMIT: u64 = 20_000;
    let redis = RedisServer::start_with(&["--maxclients", "10100"], Some(LIMIT));
    idle_connections(redis.port(), N);
    drop(redis);
    let mut node = NodeBuilder::new()
        .maxclients(10_100)
        .open_files(LIMIT)
        .start();
    idle_connections(node.port(), N);
    node.assert_running();
}

/// With `maxclients 10`, the eleventh client is told so and disconnected; once a client
/// leaves, a new one is accepted.
fn maxclients_limit(port: u16) -> Vec<u8> {
    let mut clients = Vec::new();
    for i in 0..10 {
        // A connection closed just before (the readiness probe) may not be released yet.
        let c = poll_until(Duration::from_secs(10), || {
            let mut c = RawConn::try_connect(port).ok()?;
            c.send(PING).ok()?;
            matches!(c.read_frame(), Ok(f) if f == b"+PONG\r\n").then_some(c)
        });
        clients.push(c.unwrap_or_else(|| panic!("client {} of 10 was not served", i + 1)));
    }
    // Redis answers a refused client at once, without waiting for a request; sending one could
    // turn the close into a reset that discards the reply.
    let mut extra = RawConn::connect(port);
    let reply = extra.read_to_close().unwrap_or_else(|b| {
        panic!(
            "the eleventh client was not disconnected (got {})",
            show(&b)
        )
    });
    drop(clients.pop());
    let served = poll_until(Duration::from_secs(10), || try_ping(port).ok());
    assert!(served.is_some(), "no client accepted after one left");
    reply
}

#[test]
fn maxclients_limit_matches_redis() {
    let redis = RedisServer::start_with(&["--maxclients", "10"], None);
    let want = maxclients_limit(redis.port());
    assert_eq!(want, b"-ERR max number of clients reached\r\n");
    let mut node = NodeBuilder::new().maxclients(10).start();
    let got = maxclients_limit(node.port());
    assert_eq!(show(&got), show(&want));
    node.assert_running();
}

/// Writes 4 KiB values until the first error (at most 64 MiB); returns that error. Reads
/// still work afterwards.
fn fill_until_oom(port: u16) -> Vec<u8> {
    let mut c = RawConn::connect(port);
    let value = vec![b'x'; 4096];
    for i in 0..16 * 1024 {
        let key = format!("fill:{i}");
        let reply = c.cmd(&[b"SET", key.as_bytes(), &value]);
        if reply != b"+OK\r\n" {
            assert!(i > 0, "the first write already failed: {}", show(&reply));
            let back = c.cmd_str(&["GET", "fill:0"]);
            assert_eq!(back.len(), 4096 + b"$4096\r\n\r\n".len(), "GET under OOM");
            assert_eq!(c.cmd(&[b"PING"]), b"+PONG\r\n");
            return reply;
        }
    }
    panic!("64 MiB written with maxmemory 8 MiB and no error");
}

#[test]
fn maxmemory_refuses_writes_like_redis() {
    const MAXMEMORY: u64 = 8 * 1024 * 1024;
    let redis = RedisServer::start_with(&["--maxmemory", &MAXMEMORY.to_string()], None);
    let want = fill_until_oom(redis.port());
    assert_eq!(
        want,
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    );
    let mut node = NodeBuilder::new().maxmemory(MAXMEMORY).start();
    let got = fill_until_oom(node.port());
    assert_eq!(show(&got), show(&want));
    node.assert_running();
}
