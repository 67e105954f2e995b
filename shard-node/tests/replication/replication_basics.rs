//! In-region replication and link security, with real processes on loopback: a replica
//! refuses writes with Redis's READONLY error; `INFO replication` and `ROLE` carry Redis's
//! fields and shapes; `WAIT` counts the replicas that acknowledged; a link with the wrong
//! password is refused and the refused node logs why; garbage on a replication link closes
//! that link without crashing either node.

use crate::common;
use crate::common::{info_field, NodeBuilder, RawConn, ShardNode};
use crate::replication_support;
use crate::replication_support::{loopback, poll_ok, wait_closed, Client, Reply};
use aadb_faultproxy::BlockingFaultProxy;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const LINK_UP: Duration = Duration::from_secs(20);
const READONLY: &str = "-READONLY You can't write against a read only replica.";

fn replica_of(port: u16, participant: &str) -> ShardNode {
    NodeBuilder::new()
        .participant(participant)
        .arg("--replicaof")
        .arg(format!("127.0.0.1:{port}"))
        .start()
}

fn info(c: &mut Client, section: &str) -> String {
    c.info(section)
        .unwrap_or_else(|e| panic!("INFO {section} on port {}: {e}", c.port()))
}

fn field(info: &str, name: &str) -> Option<String> {
    info_field(info.as_bytes(), name)
}

/// Waits until the replica's link is up and it acknowledged everything the primary has.
fn wait_caught_up(primary: &mut Client, replica: &mut Client) -> u64 {
    poll_ok(LINK_UP, || {
        let p = primary.info("replication")?;
        let r = replica.info("replication")?;
        let offset = field(&p, "master_repl_offset").ok_or("no master_repl_offset")?;
        if field(&r, "master_link_status").as_deref() != Some("up") {
            return Err(format!("replica link not up:\n{r}"));
        }
        if field(&r, "slave_repl_offset").as_deref() != Some(offset.as_str()) {
            return Err(format!("replica behind:\n{r}\nprimary:\n{p}"));
        }
        offset.parse().map_err(|_| "bad offset".to_owned())
    })
    .unwrap_or_else(|e| panic!("the replica did not catch up: {e}"))
}

#[test]
fn a_replica_refuses_writes_with_readonly_and_serves_reads() {
    let primary = NodeBuilder::new().participant("A").start();
    let replica = replica_of(primary.port(), "A");
    let mut p = Client::new(primary.port(), None);
    let mut r = Client::new(replica.port(), None);
    assert_eq!(p.q(&["SET", "k", "v"]).text(), "OK");
    assert_eq!(p.q(&["RPUSH", "l", "a", "b"]).text(), "2");
    wait_caught_up(&mut p, &mut r);
    assert_eq!(r.q(&["GET", "k"]).text(), "v");
    assert_eq!(r.q(&["LRANGE", "l", "0", "-1"]).text(), "[a,b]");
    for cmd in [
        &["SET", "k", "w"][..],
        &["DEL", "k"],
        &["INCR", "n"],
        &["LPUSH", "l", "x"],
        &["HSET", "h", "f", "v"],
        &["SADD", "s", "m"],
        &["ZADD", "z", "1", "m"],
        &["EXPIRE", "k", "10"],
        &["FLUSHALL"],
    ] {
        assert_eq!(
            r.q(cmd).text(),
            READONLY,
            "`{}` on a replica",
            cmd.join(" ")
        );
    }
    assert_eq!(r.q(&["GET", "k"]).text(), "v", "nothing was written");
    assert_eq!(r.q(&["DBSIZE"]).text(), "2");
    // A write inside MULTI is refused when it is queued and the transaction aborts, as in
    // Redis.
    let replies = r
        .pipeline(&[
            vec![b"MULTI".to_vec()],
            vec![b"SET".to_vec(), b"k".to_vec(), b"w".to_vec()],
            vec![b"EXEC".to_vec()],
        ])
        .expect("pipeline");
    let texts: Vec<String> = replies.iter().map(Reply::text).collect();
    assert_eq!(r.q(&["GET", "k"]).text(), "v", "nothing was written");
    assert_eq!(
        texts,
        vec![
            "OK".to_owned(),
            READONLY.to_owned(),
            "-EXECABORT Transaction discarded because of previous errors.".to_owned()
        ],
        "MULTI / SET / EXEC on a replica"
    );
    // Promoted, it takes writes.
    assert_eq!(r.q(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
    assert_eq!(r.q(&["SET", "k", "w"]).text(), "OK");
    assert_eq!(r.q(&["GET", "k"]).text(), "w");
}

#[test]
fn info_replication_and_role_carry_redis_fields() {
    let primary = NodeBuilder::new().participant("A").start();
    let mut p = Client::new(primary.port(), None);
    for i in 0..5 {
        assert_eq!(p.q(&["SET", &format!("k{i}"), "v"]).text(), "OK");
    }
    // One replica starts after the writes (full copy), one before the next writes.
    let r1 = replica_of(primary.port(), "A");
    let r2 = replica_of(primary.port(), "A");
    let mut c1 = Client::new(r1.port(), None);
    let mut c2 = Client::new(r2.port(), None);
    wait_caught_up(&mut p, &mut c1);
    for i in 5..8 {
        assert_eq!(p.q(&["INCR", &format!("n{i}")]).text(), "1");
    }
    let offset = wait_caught_up(&mut p, &mut c1);
    assert_eq!(wait_caught_up(&mut p, &mut c2), offset);
    assert!(
        offset >= 8,
        "master_repl_offset {offset} counts the 8 writes"
    );

    // The primary.
    let pi = poll_ok(LINK_UP, || {
        let pi = p.info("replication")?;
        let lines: Vec<&str> = pi.lines().filter(|l| l.starts_with("slave")).collect();
        let all_acked = lines.len() == 2
            && lines
                .iter()
                .all(|l| l.contains(&format!(",offset={offset},")));
        if all_acked {
            Ok(pi)
        } else {
            Err(format!("slave lines not at offset {offset}:\n{pi}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(field(&pi, "role").as_deref(), Some("master"), "{pi}");
    assert_eq!(field(&pi, "connected_slaves").as_deref(), Some("2"), "{pi}");
    assert_eq!(
        field(&pi, "master_repl_offset"),
        Some(offset.to_string()),
        "{pi}"
    );
    let replid = field(&pi, "master_replid").unwrap_or_default();
    assert!(
        replid.len() == 40 && replid.chars().all(|c| c.is_ascii_hexdigit()),
        "master_replid {replid:?}"
    );
    for n in 0..2 {
        let line = field(&pi, &format!("slave{n}")).unwrap_or_default();
        let kv: std::collections::BTreeMap<&str, &str> =
            line.split(',').filter_map(|p| p.split_once('=')).collect();
        assert_eq!(kv.get("ip"), Some(&"127.0.0.1"), "slave{n}: {line}");
        assert_eq!(kv.get("state"), Some(&"online"), "slave{n}: {line}");
        assert_eq!(
            kv.get("offset"),
            Some(&offset.to_string().as_str()),
            "slave{n}: {line}"
        );
        assert!(
            kv.get("port").is_some_and(|p| p.parse::<u16>().is_ok()),
            "slave{n}: {line}"
        );
        assert!(
            kv.get("lag").is_some_and(|l| l.parse::<u64>().is_ok()),
            "slave{n}: {line}"
        );
    }

    // A replica.
    let ri = info(&mut c1, "replication");
    assert_eq!(field(&ri, "role").as_deref(), Some("slave"), "{ri}");
    assert_eq!(
        field(&ri, "master_host").as_deref(),
        Some("127.0.0.1"),
        "{ri}"
    );
    assert_eq!(
        field(&ri, "master_port"),
        Some(primary.port().to_string()),
        "{ri}"
    );
    assert_eq!(
        field(&ri, "master_link_status").as_deref(),
        Some("up"),
        "{ri}"
    );
    assert_eq!(
        field(&ri, "master_sync_in_progress").as_deref(),
        Some("0"),
        "{ri}"
    );
    assert_eq!(
        field(&ri, "slave_repl_offset"),
        Some(offset.to_string()),
        "{ri}"
    );
    assert_eq!(field(&ri, "slave_read_only").as_deref(), Some("1"), "{ri}");
    assert_eq!(field(&ri, "connected_slaves").as_deref(), Some("0"), "{ri}");
    assert!(
        field(&ri, "master_repl_offset").is_some_and(|o| o.parse::<u64>().is_ok()),
        "{ri}"
    );

    // ROLE on the primary: ["master", offset, [[ip, port-string, offset-string], …]].
    let role = p.q(&["ROLE"]);
    let items = role.items();
    assert_eq!(items.len(), 3, "ROLE {}", role.text());
    assert_eq!(items[0], Reply::Bulk(b"master".to_vec()));
    assert_eq!(items[1], Reply::Int(offset as i64));
    let replicas = items[2].items();
    assert_eq!(replicas.len(), 2, "ROLE {}", role.text());
    for r in replicas {
        let f = r.items();
        assert_eq!(f.len(), 3, "ROLE replica entry {}", r.text());
        assert_eq!(f[0], Reply::Bulk(b"127.0.0.1".to_vec()));
        assert!(
            matches!(&f[1], Reply::Bulk(b) if std::str::from_utf8(b).is_ok_and(|s| s.parse::<u16>().is_ok()))
        );
        assert_eq!(f[2], Reply::Bulk(offset.to_string().into_bytes()));
    }
    // ROLE on a replica: ["slave", host, port, "connected", offset].
    let role = c1.q(&["ROLE"]);
    assert_eq!(
        role,
        Reply::Array(vec![
            Reply::Bulk(b"slave".to_vec()),
            Reply::Bulk(b"127.0.0.1".to_vec()),
            Reply::Int(i64::from(primary.port())),
            Reply::Bulk(b"connected".to_vec()),
            Reply::Int(offset as i64),
        ])
    );

    // REPLICAOF transitions.
    let target = primary.port().to_string();
    assert_eq!(
        c2.q(&["REPLICAOF", "127.0.0.1", &target]).text(),
        "OK Already connected to specified master"
    );
    assert_eq!(c2.q(&["REPLICAOF", "NO", "ONE"]).text(), "OK");
    let role = c2.q(&["ROLE"]);
    assert_eq!(
        role.items().first().map(Reply::text).as_deref(),
        Some("master")
    );
    assert_eq!(
        field(&info(&mut c2, "replication"), "role").as_deref(),
        Some("master")
    );
    // The primary notices that it lost a replica.
    poll_ok(LINK_UP, || {
        let pi = p.info("replication")?;
        match field(&pi, "connected_slaves").as_deref() {
            Some("1") => Ok(()),
            other => Err(format!("connected_slaves {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c2.q(&["REPLICAOF", "127.0.0.1", &target]).text(), "OK");
    wait_caught_up(&mut p, &mut c2);
    assert_eq!(c2.q(&["GET", "k0"]).text(), "v");
    assert_eq!(c2.q(&["ROLE"]).items().len(), 5);
}

/// Redis reports each replica's listening port (sent with `REPLCONF listening-port`) in the
/// `slaveN` line and in `ROLE`, so tools can reach the replica from the primary's view.
#[test]
fn the_primary_reports_each_replica_by_its_listening_port() {
    let primary = NodeBuilder::new().participant("A").start();
    let replica = replica_of(primary.port(), "A");
    let mut p = Client::new(primary.port(), None);
    let mut r = Client::new(replica.port(), None);
    assert_eq!(p.q(&["SET", "k", "v"]).text(), "OK");
    wait_caught_up(&mut p, &mut r);
    let pi = info(&mut p, "replication");
    let line = field(&pi, "slave0").unwrap_or_default();
    assert!(
        line.contains(&format!(",port={},", replica.port())),
        "slave0 should name the replica's port {}: {line}",
        replica.port()
    );
    let role = p.q(&["ROLE"]);
    let entry = role
        .items()
        .get(2)
        .map(|r| r.items().to_vec())
        .unwrap_or_default();
    assert_eq!(
        entry.first().map(|e| e.items().get(1).map(Reply::text)),
        Some(Some(replica.port().to_string())),
        "ROLE {}",
        role.text()
    );
}

/// In Redis a replica's `master_repl_offset` is its primary's offset it has processed (that
/// is how the most up-to-date replica is picked for a failover).
#[test]
fn a_replica_reports_the_primary_offset_as_master_repl_offset() {
    let primary = NodeBuilder::new().participant("A").start();
    let mut p = Client::new(primary.port(), None);
    for i in 0..5 {
        assert_eq!(p.q(&["SET", &format!("k{i}"), "v"]).text(), "OK");
    }
    let replica = replica_of(primary.port(), "A");
    let mut r = Client::new(replica.port(), None);
    assert_eq!(p.q(&["SET", "k5", "v"]).text(), "OK");
    let offset = wait_caught_up(&mut p, &mut r);
    let ri = info(&mut r, "replication");
    assert_eq!(
        field(&ri, "master_repl_offset"),
        Some(offset.to_string()),
        "replica INFO:\n{ri}"
    );
}

#[test]
fn wait_counts_the_replicas_that_acknowledged() {
    let primary = NodeBuilder::new().participant("A").start();
    let to_primary = loopback(primary.port());
    let p1 = BlockingFaultProxy::start(to_primary).expect("proxy");
    let p2 = BlockingFaultProxy::start(to_primary).expect("proxy");
    let start_replica = |proxy: &BlockingFaultProxy| {
        NodeBuilder::new()
            .participant("A")
            .arg("--replicaof")
            .arg(proxy.addr().to_string())
            .start()
    };
    let r1 = start_replica(&p1);
    let r2 = start_replica(&p2);
    let mut p = Client::new(primary.port(), None);
    let mut c1 = Client::new(r1.port(), None);
    let mut c2 = Client::new(r2.port(), None);
    wait_caught_up(&mut p, &mut c1);
    wait_caught_up(&mut p, &mut c2);

    assert_eq!(p.q(&["SET", "a", "1"]).text(), "OK");
    assert_eq!(p.q(&["WAIT", "2", "5000"]).text(), "2");
    assert_eq!(
        p.q(&["WAIT", "0", "0"]).text(),
        "2",
        "everything is acknowledged"
    );
    let t = Instant::now();
    assert_eq!(
        p.q(&["WAIT", "3", "200"]).text(),
        "2",
        "only two replicas exist"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "WAIT returned before its timeout"
    );

    // One replica slowed down (its link delays every chunk by 3 s): a new write is
    // acknowledged by one replica until the delay is lifted.
    p2.delay(Duration::from_secs(3));
    assert_eq!(p.q(&["SET", "b", "2"]).text(), "OK");
    assert_eq!(p.q(&["WAIT", "1", "5000"]).text(), "1");
    let t = Instant::now();
    assert_eq!(p.q(&["WAIT", "2", "300"]).text(), "1");
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "WAIT returned before its timeout"
    );
    assert_eq!(c1.q(&["GET", "b"]).text(), "2");
    assert_eq!(
        c2.q(&["GET", "b"]).text(),
        "(nil)",
        "the slowed replica cannot have it yet"
    );

    p2.heal();
    assert_eq!(p.q(&["WAIT", "2", "10000"]).text(), "2");
    assert_eq!(c2.q(&["GET", "b"]).text(), "2");

    // One replica disconnected: the primary forgets it, WAIT counts one; back, two again.
    p2.partition();
    poll_ok(LINK_UP, || {
        match field(&p.info("replication")?, "connected_slaves").as_deref() {
            Some("1") => Ok(()),
            other => Err(format!("connected_slaves {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.q(&["SET", "c", "3"]).text(), "OK");
    assert_eq!(p.q(&["WAIT", "2", "200"]).text(), "1");
    p2.heal();
    assert_eq!(p.q(&["WAIT", "2", "10000"]).text(), "2");
    assert_eq!(c2.q(&["GET", "c"]).text(), "3");

    // WAIT is refused on a replica, as in Redis.
    assert!(c1.q(&["WAIT", "1", "10"]).is_error());
    drop((p1, p2));
}

#[test]
fn wait_pipelined_after_a_write_waits_for_that_write() {
    let primary = NodeBuilder::new().participant("A").start();
    let proxy = BlockingFaultProxy::start(loopback(primary.port())).expect("proxy");
    let replica = NodeBuilder::new()
        .participant("A")
        .arg("--replicaof")
        .arg(proxy.addr().to_string())
        .start();
    let mut p = Client::new(primary.port(), None);
    let mut r = Client::new(replica.port(), None);
    wait_caught_up(&mut p, &mut r);
    // The replica has everything so far; its link now holds every chunk for 3 s. A write and
    // a WAIT sent together run in one batch: the WAIT must count the write of that batch.
    proxy.delay(Duration::from_secs(3));
    let t = Instant::now();
    let replies = p
        .pipeline(&[
            vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()],
            vec![b"WAIT".to_vec(), b"1".to_vec(), b"300".to_vec()],
        ])
        .expect("pipeline");
    assert_eq!(replies[0].text(), "OK");
    assert_eq!(
        replies[1].text(),
        "0",
        "WAIT counted a replica that cannot have the write yet"
    );
    assert!(t.elapsed() >= Duration::from_millis(290));
    proxy.heal();
    assert_eq!(p.q(&["WAIT", "1", "10000"]).text(), "1");
    assert_eq!(r.q(&["GET", "k"]).text(), "v");
}

/// Waits until `node`'s log contains every one of `needles` on one line.
fn wait_log_line(node: &ShardNode, needles: &[&str]) -> String {
    poll_ok(Duration::from_secs(20), || {
        node.log()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .ok_or_else(|| format!("no log line with {needles:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", node.log()))
}

#[test]
fn a_link_with_the_wrong_password_is_refused_and_the_node_logs_why() {
    let a = NodeBuilder::new()
        .participant("A")
        .requirepass("right")
        .start();
    let mut ca = Client::new(a.port(), Some("right"));
    assert_eq!(ca.q(&["SET", "secret", "1"]).text(), "OK");

    // A peer with another password.
    let b = NodeBuilder::new()
        .participant("B")
        .requirepass("wrong")
        .arg("--peer")
        .arg(format!("A=127.0.0.1:{}", a.port()))
        .start();
    let line = wait_log_line(&b, &["refused", "WRONGPASS"]);
    eprintln!("B logged: {line}");
    let mut cb = Client::new(b.port(), Some("wrong"));
    let peers = replication_support::parse_peers(&cb.q(&["AA.PEERS"])).expect("AA.PEERS");
    assert_eq!(peers.len(), 1);
    assert_ne!(peers[0]["state"], "up", "{peers:?}");
    assert!(peers[0]["last_error"].contains("WRONGPASS"), "{peers:?}");
    assert_eq!(cb.q(&["GET", "secret"]).text(), "(nil)");

    // A replica with another password.
    let r = NodeBuilder::new()
        .participant("A")
        .requirepass("wrong")
        .arg("--replicaof")
        .arg(format!("127.0.0.1:{}", a.port()))
        .start();
    wait_log_line(&r, &["refused", "WRONGPASS"]);
    let mut cr = Client::new(r.port(), Some("wrong"));
    let ri = info(&mut cr, "replication");
    assert_eq!(
        field(&ri, "master_link_status").as_deref(),
        Some("down"),
        "{ri}"
    );
    assert_eq!(cr.q(&["GET", "secret"]).text(), "(nil)");

    // A peer without a password at all.
    let d = NodeBuilder::new()
        .participant("D")
        .arg("--peer")
        .arg(format!("A=127.0.0.1:{}", a.port()))
        .start();
    wait_log_line(&d, &["refused", "NOAUTH"]);

    // The right password works (and nothing above hurt A).
    let c = NodeBuilder::new()
        .participant("C")
        .requirepass("right")
        .arg("--peer")
        .arg(format!("A=127.0.0.1:{}", a.port()))
        .start();
    let mut cc = Client::new(c.port(), Some("right"));
    poll_ok(LINK_UP, || {
        match cc.call(&["GET", "secret"])?.text().as_str() {
            "1" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .unwrap_or_else(|e| panic!("the peer with the right password got nothing: {e}"));
    assert_eq!(
        cb.q(&["GET", "secret"]).text(),
        "(nil)",
        "B still has nothing"
    );
    assert_eq!(ca.q(&["PING"]).text(), "PONG");
}

#[test]
fn a_link_handshake_with_another_version_or_shard_is_refused() {
    let a = NodeBuilder::new().participant("A").start();
    let mut raw = RawConn::connect(a.port());
    let reply = Reply::parse(&raw.cmd_str(&["AA.HELLO", "999", "B", "0", "peer", "B"])).unwrap();
    assert!(
        matches!(&reply, Reply::Error(e) if e.contains("version")),
        "{}",
        reply.text()
    );
    let reply = Reply::parse(&raw.cmd_str(&["AA.HELLO", "1", "B", "7", "peer", "B"])).unwrap();
    assert!(
        matches!(&reply, Reply::Error(e) if e.contains("shard")),
        "{}",
        reply.text()
    );
    let reply = Reply::parse(&raw.cmd_str(&["AA.HELLO", "1", "A", "0", "peer", "A"])).unwrap();
    assert!(
        reply.is_error(),
        "a peer link to its own participant: {}",
        reply.text()
    );
    let reply = Reply::parse(&raw.cmd_str(&["AA.HELLO", "1", "B", "0", "replica", "B"])).unwrap();
    assert!(
        reply.is_error(),
        "a replica of another participant: {}",
        reply.text()
    );
    let reply = Reply::parse(&raw.cmd_str(&["AA.SYNC", "?", "-1"])).unwrap();
    assert!(
        reply.is_error(),
        "AA.SYNC without a handshake: {}",
        reply.text()
    );
    // The connection is still an ordinary client connection.
    assert_eq!(raw.cmd_str(&["PING"]), b"+PONG\r\n");
}

/// Garbage a client sends on an established replication stream closes that stream; the node
/// keeps serving.
#[test]
fn garbage_from_a_link_client_closes_the_link_not_the_node() {
    let node = NodeBuilder::new().participant("A").start();
    let mut c = Client::new(node.port(), None);
    assert_eq!(c.q(&["SET", "k", "v"]).text(), "OK");
    let garbage: [(&str, &[u8]); 5] = [
        ("a bad bulk length", b"*1\r\n$zz\r\n"),
        ("a bad array length", b"*-5x\r\n"),
        (
            "an oversized bulk length",
            b"*1\r\n$99999999999999999999\r\n",
        ),
        ("binary noise", b"\x00\xff\x13\x37*\r\n\xfe$\r\n"),
        (
            "a command that is not an acknowledgement",
            b"*1\r\n$3\r\nFOO\r\n",
        ),
    ];
    let mut failures = Vec::new();
    for (what, junk) in garbage {
        for kind in ["replica", "peer"] {
            let mut raw = RawConn::connect(node.port());
            let (who, start): (&str, Vec<&[u8]>) = if kind == "replica" {
                ("A", vec![b"AA.SYNC", b"?", b"-1"])
            } else {
                // An empty vector clock (postcard: zero entries).
                ("B", vec![b"AA.PULL", b"\x00"])
            };
            let hello = raw.cmd_str(&["AA.HELLO", "1", who, "0", kind, who]);
            assert_eq!(hello, b"+OK\r\n", "{}", common::show(&hello));
            raw.send(&common::encode(&start)).expect("send");
            // The stream starts with a full copy (FULL … END) or a CONT frame.
            let first = raw.read_frame().expect("first frame of the stream");
            let first = Reply::parse(&first).expect("a frame");
            assert!(
                matches!(
                    first.items().first().map(Reply::text).as_deref(),
                    Some("FULL" | "CONT")
                ),
                "{}",
                first.text()
            );
            raw.send(junk).expect("send garbage");
            if let Err(e) = wait_closed(&mut raw, Duration::from_secs(7)) {
                failures.push(format!("{what} on a {kind} stream did not close it: {e}"));
            }
            assert_eq!(
                c.q(&["PING"]).text(),
                "PONG",
                "after {what} on a {kind} stream"
            );
        }
    }
    // A malformed clock in AA.PULL is an error reply, not a crash.
    let mut raw = RawConn::connect(node.port());
    assert_eq!(
        raw.cmd_str(&["AA.HELLO", "1", "B", "0", "peer", "B"]),
        b"+OK\r\n"
    );
    let reply = Reply::parse(&raw.cmd(&[b"AA.PULL", b"\xff\xff\xff\xff\xff"])).unwrap();
    assert!(reply.is_error(), "{}", reply.text());
    assert_eq!(raw.cmd_str(&["PING"]), b"+PONG\r\n");
    wait_log_line(&node, &["replication stream ended", "garbage on the link"]);
    assert_eq!(c.q(&["GET", "k"]).text(), "v");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// A fake primary or peer that answers the handshake and then sends garbage: the node closes
/// the link, logs why, reconnects, and keeps serving.
#[test]
fn garbage_from_the_other_end_of_a_link_closes_it_not_the_node() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let fake = listener.local_addr().expect("addr");
    let effect_junk: &[u8] = b"*2\r\n$1\r\nE\r\n$4\r\n\xff\xfe\xfd\xfc\r\n";
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("not RESP", b"*1\r\n$zz\r\n".to_vec()),
        ("an unknown frame", b"*1\r\n$5\r\nHELLO\r\n".to_vec()),
        ("an undecodable effect", effect_junk.to_vec()),
        (
            "a full copy without META",
            b"*3\r\n$4\r\nFULL\r\n$1\r\nx\r\n$1\r\n0\r\n*1\r\n$3\r\nEND\r\n".to_vec(),
        ),
        (
            "an absurd length",
            b"*2\r\n$1\r\nE\r\n$999999999999\r\n".to_vec(),
        ),
        (
            "binary noise",
            (0u8..=255).rev().cycle().take(4096).collect(),
        ),
    ];
    let n = variants.len();
    let server = std::thread::spawn(move || {
        let mut closed = Vec::new();
        for (name, junk) in variants {
            let (stream, _) = listener.accept().expect("accept a link");
            let mut conn = RawConn::from_stream(stream).expect("stream");
            loop {
                let frame = match conn.read_frame() {
                    Ok(f) => f,
                    Err(e) => panic!("{name}: the node broke off the handshake: {e:?}"),
                };
                let text = String::from_utf8_lossy(&frame).to_ascii_uppercase();
                if text.contains("AA.PULL") || text.contains("AA.SYNC") {
                    break;
                }
                conn.send(b"+OK\r\n").expect("answer the handshake");
            }
            conn.send(&junk).expect("send garbage");
            let ended = wait_closed(&mut conn, Duration::from_secs(10));
            closed.push((name, ended));
        }
        closed
    });
    let peer = NodeBuilder::new()
        .participant("A")
        .arg("--peer")
        .arg(format!("X={fake}"))
        .start();
    let results = server.join().expect("fake peer");
    for (name, closed) in &results {
        if let Err(e) = closed {
            panic!("the node did not close the link after {name}: {e}");
        }
    }
    assert_eq!(results.len(), n);
    let mut c = Client::new(peer.port(), None);
    assert_eq!(c.q(&["SET", "k", "v"]).text(), "OK");
    assert_eq!(c.q(&["GET", "k"]).text(), "v");
    let peers = replication_support::parse_peers(&c.q(&["AA.PEERS"])).expect("AA.PEERS");
    assert_eq!(peers.len(), 1);
    assert_ne!(peers[0]["state"], "up", "{peers:?}");
    assert!(
        !peers[0]["last_error"].is_empty(),
        "AA.PEERS says why: {peers:?}"
    );

    // The same for a replica following a fake primary.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let fake = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept a link");
        let mut conn = RawConn::from_stream(stream).expect("stream");
        loop {
            let frame = conn.read_frame().expect("handshake");
            if String::from_utf8_lossy(&frame).contains("AA.SYNC") {
                break;
            }
            conn.send(b"+OK\r\n").expect("answer");
        }
        conn.send(b"*1\r\n$zz\r\n").expect("garbage");
        wait_closed(&mut conn, Duration::from_secs(10))
    });
    let replica = NodeBuilder::new()
        .participant("A")
        .arg("--replicaof")
        .arg(fake.to_string())
        .start();
    if let Err(e) = server.join().expect("fake primary") {
        panic!("the replica kept the link open after garbage: {e}");
    }
    let mut r = Client::new(replica.port(), None);
    assert_eq!(r.q(&["PING"]).text(), "PONG");
    let ri = info(&mut r, "replication");
    assert_eq!(
        field(&ri, "master_link_status").as_deref(),
        Some("down"),
        "{ri}"
    );
}
