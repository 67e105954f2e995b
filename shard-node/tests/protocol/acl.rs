//! Users and permissions on real processes: a node (and a proxy) with an internal user keeps
//! replication, peer, topology and admin commands from the application's `default` user, the
//! internal user replicates and links, `ACL` categories are Redis's, and protected mode keeps
//! out clients that do not come over loopback while no password is set.

use crate::common::{
    free_port, poll_until, require_command, NodeBuilder, ProxyProcess, RawConn, RedisServer,
};
use std::process::Command;
use std::time::Duration;

const APP: &str = "app-secret";
const INTERNAL: &str = "internal-secret";

fn node_with_users(extra: &[&str]) -> crate::common::ShardNode {
    let mut b = NodeBuilder::new()
        .requirepass(APP)
        .arg("--internal-password")
        .arg(INTERNAL);
    for a in extra {
        b = b.arg(*a);
    }
    b.start()
}

fn text(c: &mut RawConn, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.cmd_str(args)).into_owned()
}

/// Commands the application user must never run, with a form each that a node would accept
/// from an administrator.
const ADMIN_ONLY: &[&[&str]] = &[
    &["REPLICAOF", "127.0.0.1", "1"],
    &["SLAVEOF", "127.0.0.1", "1"],
    &["AA.PEER", "SET", "evil", "127.0.0.1:1"],
    &["AA.PEERS"],
    &["AA.TOPOLOGY", "SET", "99", "0-16383=127.0.0.1:1"],
    &["AA.SYNC", "?", "-1"],
    &["AA.PULL", "x"],
    &["AA.HELLO", "1", "x", "0", "peer", "x"],
    &["REPLCONF", "ACK", "100"],
    &["CONFIG", "SET", "requirepass", "x"],
    &["CONFIG", "SET", "maxmemory", "1"],
    &["SHUTDOWN", "NOSAVE"],
    &["CLIENT", "PAUSE", "100000"],
    &["CLIENT", "UNPAUSE"],
    &["CLIENT", "KILL", "ID", "1"],
    &["ACL", "SETUSER", "x", "on"],
    &["ACL", "LIST"],
];

#[test]
fn the_application_user_cannot_reach_replication_peer_topology_or_admin_commands() {
    let node = node_with_users(&[]);
    let mut c = RawConn::connect(node.port());
    assert!(text(&mut c, &["GET", "k"]).starts_with("-NOAUTH"));
    assert!(text(&mut c, &["AUTH", "wrong"]).starts_with("-WRONGPASS"));
    assert!(text(&mut c, &["AUTH", "aadb-internal", APP]).starts_with("-WRONGPASS"));
    assert!(text(&mut c, &["HELLO", "3", "AUTH", "default", APP]).starts_with('%'));
    assert_eq!(text(&mut c, &["HELLO", "2"]).chars().next(), Some('*'));
    assert_eq!(text(&mut c, &["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(text(&mut c, &["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");
    for args in ADMIN_ONLY {
        let reply = text(&mut c, args);
        assert!(
            reply.starts_with("-NOPERM this user has no permissions to run the '"),
            "{args:?}: {reply:?}"
        );
    }
    assert_eq!(
        text(&mut c, &["CLIENT", "PAUSE", "100"]),
        "-NOPERM this user has no permissions to run the 'client|pause' command\r\n"
    );
    // Nothing refused took effect: the node still accepts writes and has no peer.
    assert_eq!(text(&mut c, &["SET", "k", "v2"]), "+OK\r\n");
    let mut admin = RawConn::connect(node.port());
    assert_eq!(
        text(&mut admin, &["AUTH", "aadb-internal", INTERNAL]),
        "+OK\r\n"
    );
    assert_eq!(text(&mut admin, &["AA.PEERS"]), "*0\r\n");
    assert_eq!(
        text(&mut admin, &["CONFIG", "GET", "maxmemory"]),
        "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
    );
    // A refused command inside MULTI aborts the transaction, as in Redis.
    assert_eq!(text(&mut c, &["MULTI"]), "+OK\r\n");
    assert!(text(&mut c, &["REPLICAOF", "NO", "ONE"]).starts_with("-NOPERM"));
    assert!(text(&mut c, &["EXEC"]).starts_with("-EXECABORT"));
    // RESET returns to an unauthenticated default user.
    assert_eq!(text(&mut c, &["RESET"]), "+RESET\r\n");
    assert!(text(&mut c, &["GET", "k"]).starts_with("-NOAUTH"));
}

#[test]
fn users_from_acl_setuser_and_an_acl_file_are_enforced_and_removed_users_lose_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.acl");
    std::fs::write(
        &file,
        "# readers\nuser reader on >r ~app:* &news.* -@all +@read +@connection\n",
    )
    .unwrap();
    let node = node_with_users(&["--aclfile", file.to_str().unwrap()]);
    let mut admin = RawConn::connect(node.port());
    assert_eq!(
        text(&mut admin, &["AUTH", "aadb-internal", INTERNAL]),
        "+OK\r\n"
    );
    let mut r = RawConn::connect(node.port());
    assert_eq!(text(&mut r, &["AUTH", "reader", "r"]), "+OK\r\n");
    assert_eq!(text(&mut r, &["GET", "app:1"]), "$-1\r\n");
    assert_eq!(
        text(&mut r, &["GET", "secret"]),
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    );
    assert_eq!(
        text(&mut r, &["SET", "app:1", "x"]),
        "-NOPERM this user has no permissions to run the 'set' command\r\n"
    );
    // A user added at run time, then removed: its open connection ends.
    assert_eq!(
        text(
            &mut admin,
            &[
                "ACL",
                "SETUSER",
                "writer",
                "on",
                ">w",
                "~*",
                "+@write",
                "+@connection"
            ]
        ),
        "+OK\r\n"
    );
    let mut w = RawConn::connect(node.port());
    assert_eq!(text(&mut w, &["AUTH", "writer", "w"]), "+OK\r\n");
    assert_eq!(text(&mut w, &["SET", "app:1", "x"]), "+OK\r\n");
    assert_eq!(text(&mut r, &["GET", "app:1"]), "$1\r\nx\r\n");
    assert_eq!(text(&mut admin, &["ACL", "DELUSER", "writer"]), ":1\r\n");
    assert!(text(&mut w, &["SET", "app:1", "y"]).starts_with("-NOPERM"));
    assert!(
        w.read_to_close().is_ok(),
        "the removed user's connection stays open"
    );
    // ACL LOAD re-reads the file: the reader loses its key pattern.
    std::fs::write(
        &file,
        "user reader on >r ~other:* -@all +@read +@connection\n",
    )
    .unwrap();
    assert_eq!(text(&mut admin, &["ACL", "LOAD"]), "+OK\r\n");
    assert!(text(&mut r, &["GET", "app:1"]).starts_with("-NOPERM"));
    // A bad file is refused whole, with the line.
    std::fs::write(&file, "user reader on +@bogus\n").unwrap();
    let reply = text(&mut admin, &["ACL", "LOAD"]);
    assert!(
        reply.starts_with("-ERR Error loading ACLs: line 1:"),
        "{reply}"
    );
    assert_eq!(text(&mut r, &["GET", "other:1"]), "$-1\r\n");
    // The file is watched: a new version is loaded without ACL LOAD, and users it no longer
    // names are gone.
    std::fs::write(&file, "user later on >l ~* +@all\n").unwrap();
    let loaded = poll_until(Duration::from_secs(20), || {
        let mut c = RawConn::connect(node.port());
        (text(&mut c, &["AUTH", "later", "l"]) == "+OK\r\n").then_some(())
    });
    assert!(loaded.is_some(), "the changed ACL file was not loaded");
    assert!(
        text(&mut RawConn::connect(node.port()), &["AUTH", "reader", "r"])
            .starts_with("-WRONGPASS")
    );
    assert_eq!(
        text(&mut admin, &["ACL", "WHOAMI"]),
        "$13\r\naadb-internal\r\n"
    );
}

#[test]
fn the_internal_user_replicates_and_links_regions() {
    let primary = node_with_users(&[]);
    let replica = node_with_users(&["--replicaof", &format!("127.0.0.1:{}", primary.port())]);
    let other_region = NodeBuilder::new()
        .participant("east")
        .requirepass("east-app")
        .arg("--internal-password")
        .arg(INTERNAL)
        .arg("--peer")
        .arg(format!("local=127.0.0.1:{}", primary.port()))
        .start();
    let mut admin = RawConn::connect(primary.port());
    assert_eq!(
        text(&mut admin, &["AUTH", "aadb-internal", INTERNAL]),
        "+OK\r\n"
    );
    assert_eq!(
        text(
            &mut admin,
            &[
                "AA.PEER",
                "SET",
                "east",
                &format!("127.0.0.1:{}", other_region.port())
            ]
        ),
        "+OK\r\n"
    );
    let mut app = RawConn::connect(primary.port());
    assert_eq!(text(&mut app, &["AUTH", APP]), "+OK\r\n");
    assert_eq!(text(&mut app, &["INCRBY", "visits", "5"]), ":5\r\n");
    let mut east = RawConn::connect(other_region.port());
    assert_eq!(text(&mut east, &["AUTH", "east-app"]), "+OK\r\n");
    // 7, or 12 if the first increment has already arrived.
    let reply = text(&mut east, &["INCRBY", "visits", "7"]);
    assert!(reply == ":7\r\n" || reply == ":12\r\n", "{reply}");
    let mut on_replica = RawConn::connect(replica.port());
    assert_eq!(text(&mut on_replica, &["AUTH", APP]), "+OK\r\n");
    for (name, conn) in [
        ("replica", &mut on_replica),
        ("east", &mut east),
        ("primary", &mut app),
    ] {
        let seen = poll_until(Duration::from_secs(20), || {
            (text(conn, &["GET", "visits"]) == "$2\r\n12\r\n").then_some(())
        });
        assert!(
            seen.is_some(),
            "{name} never saw both regions' increments: {}",
            text(conn, &["GET", "visits"])
        );
    }
}

#[test]
fn the_proxy_enforces_the_same_users_and_reaches_the_shards_as_the_internal_user() {
    let node = node_with_users(&[]);
    let map = format!("0-16383=127.0.0.1:{}", node.port());
    let proxy = ProxyProcess::start(
        &map,
        &["--requirepass", APP, "--internal-password", INTERNAL],
    );
    let mut c = RawConn::connect(proxy.port());
    assert!(text(&mut c, &["GET", "k"]).starts_with("-NOAUTH"));
    assert_eq!(text(&mut c, &["AUTH", "default", APP]), "+OK\r\n");
    assert_eq!(text(&mut c, &["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(text(&mut c, &["GET", "k"]), "$1\r\nv\r\n");
    for args in [
        &["AA.TOPOLOGY", "SET", "99", "0-16383=127.0.0.1:1"][..],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["ACL", "LIST"],
    ] {
        assert!(text(&mut c, args).starts_with("-NOPERM"), "{args:?}");
    }
    let mut admin = RawConn::connect(proxy.port());
    assert_eq!(
        text(&mut admin, &["AUTH", "aadb-internal", INTERNAL]),
        "+OK\r\n"
    );
    let version = text(&mut admin, &["AA.TOPOLOGY", "GET"]);
    assert!(version.contains("0-16383"), "{version}");
    assert_eq!(
        text(&mut admin, &["ACL", "WHOAMI"]),
        "$13\r\naadb-internal\r\n"
    );
}

/// `ACL CAT <category>` names the same commands here as on redis-server, for every command
/// this server has (its `AA.*` commands are only in `@admin`, `@slow` and `@dangerous`).
#[test]
fn acl_categories_are_redis_categories() {
    let redis = RedisServer::start();
    let node = NodeBuilder::new().start();
    let mut ours = RawConn::connect(node.port());
    let mut theirs = RawConn::connect(redis.port());
    let list = |c: &mut RawConn, args: &[&str]| -> Vec<String> {
        let reply = String::from_utf8_lossy(&c.cmd_str(args)).into_owned();
        let mut names: Vec<String> = reply
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    let categories = list(&mut ours, &["ACL", "CAT"]);
    assert_eq!(categories, list(&mut theirs, &["ACL", "CAT"]));
    let our_commands: std::collections::BTreeSet<String> =
        list(&mut ours, &["COMMAND", "LIST"]).into_iter().collect();
    for category in &categories {
        let here: Vec<String> = list(&mut ours, &["ACL", "CAT", category])
            .into_iter()
            .filter(|n| !n.starts_with("aa."))
            .collect();
        let there: Vec<String> = list(&mut theirs, &["ACL", "CAT", category])
            .into_iter()
            .filter(|n| our_commands.contains(n.split('|').next().unwrap()))
            .collect();
        assert_eq!(here, there, "category {category}");
    }
}

/// Runs `args` inside network namespace `ns`.
fn in_namespace(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("run ip netns exec")
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// A node without a password serves loopback clients only; with `--protected-mode no`, or
/// once a password is set, others too. Runs in a network namespace of its own, where the
/// client reaches the node at a non-loopback address (on the namespace's `lo`).
#[test]
fn a_node_without_a_password_refuses_clients_that_are_not_on_loopback() {
    require_command("ip", "iproute2");
    require_command("redis-cli", "redis-tools");
    let ns = Namespace(format!("aadb-acl-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    for args in [
        &["link", "set", "lo", "up"][..],
        &["addr", "add", "10.253.0.1/32", "dev", "lo"],
    ] {
        let mut full = vec!["netns", "exec", &ns.0, "ip"];
        full.extend_from_slice(args);
        ip(&full);
    }
    let binary = crate::common::shard_node_bin();
    let dir = tempfile::tempdir().unwrap();
    for (protected, expect_denied) in [("yes", true), ("no", false)] {
        let port = free_port().to_string();
        let data = dir.path().join(protected);
        let mut server = Command::new("ip")
            .args([
                "netns", "exec", &ns.0, binary, "server", "--bind", "0.0.0.0", "--port", &port,
            ])
            .args(["--protected-mode", protected, "--appendonly", "no", "--dir"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start shard-node in the namespace");
        let ping = |host: &str| {
            let out = in_namespace(&ns.0, &["redis-cli", "-h", host, "-p", &port, "PING"]);
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        };
        let up = poll_until(Duration::from_secs(20), || {
            ping("127.0.0.1").contains("PONG").then_some(())
        });
        assert!(up.is_some(), "the node never answered on loopback");
        let remote = ping("10.253.0.1");
        if expect_denied {
            assert!(
                remote.contains("DENIED") && remote.contains("protected mode"),
                "{remote}"
            );
            // Setting a password from loopback opens the node to authenticated clients.
            let set = in_namespace(
                &ns.0,
                &[
                    "redis-cli",
                    "-p",
                    &port,
                    "CONFIG",
                    "SET",
                    "requirepass",
                    "pw",
                ],
            );
            assert!(String::from_utf8_lossy(&set.stdout).contains("OK"));
            let out = in_namespace(
                &ns.0,
                &[
                    "redis-cli",
                    "-h",
                    "10.253.0.1",
                    "-p",
                    &port,
                    "-a",
                    "pw",
                    "--no-auth-warning",
                    "PING",
                ],
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("PONG"));
        } else {
            assert!(remote.contains("PONG"), "{remote}");
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}
