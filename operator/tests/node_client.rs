//! `aadb_operator::node_client` against real shard-node processes on loopback ports.
//!
//! The shard-node binary is the one built next to this test (`cargo build -p shard-node` for
//! the same profile; `cargo test --workspace` builds it) or `AADB_SHARD_NODE_BIN`. Every node
//! is killed when its handle drops, also when a test fails (its log is printed then). Waiting
//! is polling with a deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aadb_operator::failover::{NodeReport, ReportedRole};
use aadb_operator::node_client::{Credentials, NodeClients, PeerLink, WiringError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "wiring-secret";
/// How long replication or a peer link may take to reach the asserted state.
const CONVERGE: Duration = Duration::from_secs(20);
/// How long a node may take to answer its first request.
const READY: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

fn shard_node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AADB_SHARD_NODE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/wiring-<hash> → target/<profile>/shard-node
    let exe = std::env::current_exe().expect("path of the test binary");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("shard-node"))
        .expect("target directory of the test binary");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p shard-node` (same profile as this test) \
         or set AADB_SHARD_NODE_BIN",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    aadb_e2e::process::free_port(std::net::Ipv4Addr::LOCALHOST)
        .expect("bind an ephemeral loopback port")
}

/// A shard-node process; killed (and its directory removed) on drop.
struct Node {
    child: Option<Child>,
    port: u16,
    participant: String,
    dir: PathBuf,
}

impl Node {
    fn start(participant: &str) -> Node {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aadb-wiring-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the node directory");
        let mut node = Node {
            child: None,
            port: free_port(),
            participant: participant.to_string(),
            dir,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .expect("open the node log");
        let err = log.try_clone().expect("clone the log handle");
        let child = Command::new(shard_node_bin())
            .arg("server")
            .args(["--bind", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.join("data"))
            .args(["--participant", &self.participant])
            .args(["--shard", "0"])
            .args(["--requirepass", PASSWORD])
            .args(["--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn shard-node");
        self.child = Some(child);
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and starts a new one on the same port.
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!(
                "--- log of shard-node {} (last lines) ---\n{tail}",
                self.addr()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it returns `Ok`, or panics after `timeout` with its last error.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {timeout:?}; last observation: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

async fn ready(clients: &NodeClients, node: &Node) {
    eventually(&format!("{} answers", node.addr()), READY, || async {
        clients.probe(&node.addr()).await.map_err(|e| e.to_string())
    })
    .await;
}

/// A plain client connection for writing and reading data.
async fn data(node: &Node) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/", node.port);
    redis::Client::open(url)
        .expect("client URL")
        .get_multiplexed_async_connection()
        .await
        .expect("data connection")
}

async fn set(conn: &mut redis::aio::MultiplexedConnection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(conn)
        .await
        .expect("SET");
}

async fn get(conn: &redis::aio::MultiplexedConnection, key: &str) -> Result<String, String> {
    let mut conn = conn.clone();
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<String>>(&mut conn)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{key} is missing"))
}

async fn stat(conn: &mut redis::aio::MultiplexedConnection, field: &str) -> u64 {
    let text: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .expect("INFO stats");
    text.lines()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix(&format!("{field}:"))?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("INFO stats has no {field}: {text}"))
}

fn replica_of(report: &NodeReport) -> Option<(&str, bool)> {
    match &report.role {
        ReportedRole::Primary => None,
        ReportedRole::Replica { primary, link_up } => Some((primary.as_str(), *link_up)),
    }
}

/// Waits until `replica` follows `primary` with its link up.
async fn linked(clients: &NodeClients, replica: &Node, primary: &Node) -> NodeReport {
    eventually(
        &format!("{} follows {}", replica.addr(), primary.addr()),
        CONVERGE,
        || async {
            let report = clients
                .probe(&replica.addr())
                .await
                .map_err(|e| e.to_string())?;
            match replica_of(&report) {
                Some((p, true)) if p == primary.addr() => Ok(report),
                _ => Err(format!("{:?}", report.role)),
            }
        },
    )
    .await
}

fn clients() -> NodeClients {
    NodeClients::new(Some(Credentials::default_user(PASSWORD)), COMMAND_TIMEOUT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_report_offsets_and_promote() {
    let (a, b, c) = (
        Node::start("east"),
        Node::start("east"),
        Node::start("east"),
    );
    let clients = clients();
    for n in [&a, &b, &c] {
        ready(&clients, n).await;
    }

    let first = clients.probe(&a.addr()).await.expect("probe the primary");
    assert!(
        matches!(first.role, ReportedRole::Primary),
        "{:?}",
        first.role
    );
    assert!(first.generation >= 1, "generation {}", first.generation);

    clients
        .follow(&b.addr(), &a.addr())
        .await
        .expect("b follows a");
    clients
        .follow(&c.addr(), &a.addr())
        .await
        .expect("c follows a");
    linked(&clients, &b, &a).await;
    linked(&clients, &c, &a).await;

    let mut writer = data(&a).await;
    for i in 0..50 {
        set(&mut writer, &format!("k{i}"), &format!("v{i}")).await;
    }
    let after = clients.probe(&a.addr()).await.expect("probe after writes");
    assert!(
        after.offset > first.offset,
        "primary offset {} did not advance past {}",
        after.offset,
        first.offset
    );
    for replica in [&b, &c] {
        eventually("replica reaches the primary's offset", CONVERGE, || async {
            let r = clients
                .probe(&replica.addr())
                .await
                .map_err(|e| e.to_string())?;
            if r.offset == after.offset {
                Ok(())
            } else {
                Err(format!(
                    "replica at {}, primary at {}",
                    r.offset, after.offset
                ))
            }
        })
        .await;
    }
    assert_eq!(
        clients
            .wait_replicas(&a.addr(), 2, 5000)
            .await
            .expect("WAIT"),
        2
    );

    let detail = clients.probe_detail(&a.addr()).await.expect("detail of a");
    assert_eq!(detail.connected_replicas, 2);
    assert!(detail.peers.is_empty(), "{:?}", detail.peers);
    let replid = detail
        .replid
        .clone()
        .expect("the primary reports a replication id");
    assert!(!replid.is_empty());
    let replica_detail = clients.probe_detail(&b.addr()).await.expect("detail of b");
    assert_eq!(replica_detail.replid.as_deref(), Some(replid.as_str()));
    assert_eq!(replica_detail.connected_replicas, 0);

    // Following the same primary again leaves the link up and loses nothing.
    for _ in 0..3 {
        clients
            .follow(&b.addr(), &a.addr())
            .await
            .expect("repeated follow");
        let r = clients
            .probe(&b.addr())
            .await
            .expect("probe after repeated follow");
        assert_eq!(replica_of(&r), Some((a.addr().as_str(), true)));
        assert_eq!(r.offset, after.offset);
    }

    let refused = clients.wait_replicas(&b.addr(), 1, 10).await;
    assert!(
        matches!(&refused, Err(WiringError::Refused { addr, .. }) if *addr == b.addr()),
        "{refused:?}"
    );

    clients.promote(&b.addr()).await.expect("promote b");
    let promoted = clients.probe(&b.addr()).await.expect("probe b");
    assert!(
        matches!(promoted.role, ReportedRole::Primary),
        "{:?}",
        promoted.role
    );
    assert!(
        promoted.generation > after.generation,
        "promoted generation {} is not above {}",
        promoted.generation,
        after.generation
    );
    clients.promote(&b.addr()).await.expect("promote b again");
    let again = clients.probe(&b.addr()).await.expect("probe b again");
    assert_eq!(again.generation, promoted.generation);

    clients
        .follow(&c.addr(), &b.addr())
        .await
        .expect("c follows b");
    linked(&clients, &c, &b).await;
    let mut new_writer = data(&b).await;
    set(&mut new_writer, "after-failover", "yes").await;
    let reader = data(&c).await;
    let value = eventually("a write on the new primary reaches c", CONVERGE, || {
        get(&reader, "after-failover")
    })
    .await;
    assert_eq!(value, "yes");
    assert_eq!(get(&reader, "k49").await.as_deref(), Ok("v49"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_links_connect_regions() {
    let (east, west) = (Node::start("east"), Node::start("west"));
    let clients = clients();
    ready(&clients, &east).await;
    ready(&clients, &west).await;

    clients
        .set_peer(&east.addr(), "west", &west.addr())
        .await
        .expect("east links to west");
    clients
        .set_peer(&west.addr(), "east", &east.addr())
        .await
        .expect("west links to east");

    let mut on_east = data(&east).await;
    let mut on_west = data(&west).await;
    set(&mut on_east, "from-east", "1").await;
    set(&mut on_west, "from-west", "2").await;
    let got = eventually("east's write reaches west", CONVERGE, || {
        get(&on_west, "from-east")
    })
    .await;
    assert_eq!(got, "1");
    let got = eventually("west's write reaches east", CONVERGE, || {
        get(&on_east, "from-west")
    })
    .await;
    assert_eq!(got, "2");

    let expected = vec![PeerLink {
        name: "west".to_string(),
        address: west.addr(),
        state: "up".to_string(),
        lag_effects: Some(0),
    }];
    eventually("east lists its link to west as up", CONVERGE, || async {
        let peers = clients
            .peers(&east.addr())
            .await
            .map_err(|e| e.to_string())?;
        if peers == expected {
            Ok(())
        } else {
            Err(format!("{peers:?}"))
        }
    })
    .await;

    // Setting the same link again does not restart it.
    clients
        .set_peer(&east.addr(), "west", &west.addr())
        .await
        .expect("repeated set_peer");
    assert_eq!(clients.peers(&east.addr()).await.expect("peers"), expected);
    let detail = clients.probe_detail(&east.addr()).await.expect("detail");
    assert_eq!(detail.peers, expected);

    let own_name = clients.set_peer(&east.addr(), "east", &west.addr()).await;
    assert!(
        matches!(&own_name, Err(WiringError::Refused { .. })),
        "{own_name:?}"
    );
    let bad = clients.set_peer(&east.addr(), "west", "no-port").await;
    assert!(
        matches!(&bad, Err(WiringError::InvalidAddress { .. })),
        "{bad:?}"
    );

    clients
        .del_peer(&east.addr(), "west")
        .await
        .expect("del_peer");
    assert_eq!(clients.peers(&east.addr()).await.expect("peers"), vec![]);
    clients
        .del_peer(&east.addr(), "west")
        .await
        .expect("del_peer of a removed link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_are_errors() {
    let node = Node::start("east");
    ready(&clients(), &node).await;

    let wrong = NodeClients::new(
        Some(Credentials::default_user("not-the-password")),
        COMMAND_TIMEOUT,
    );
    let err = wrong.probe(&node.addr()).await;
    assert!(
        matches!(&err, Err(WiringError::Auth { addr, .. }) if *addr == node.addr()),
        "{err:?}"
    );
    assert!(err.is_err_and(|e| e.to_string().contains(&node.addr())));

    let none = NodeClients::new(None, COMMAND_TIMEOUT);
    let err = none.promote(&node.addr()).await;
    assert!(matches!(&err, Err(WiringError::Auth { .. })), "{err:?}");
    none.set_password(Some(Credentials::default_user(PASSWORD)));
    let report = none
        .probe(&node.addr())
        .await
        .expect("probe with the password");
    assert!(matches!(report.role, ReportedRole::Primary));
}

/// Accepts connections and answers every RESP command with `reply` (`None`: never answers).
async fn fake_server(reply: Option<&'static [u8]>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a fake server");
    let addr = listener
        .local_addr()
        .expect("fake server address")
        .to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(reply) = reply else { continue };
                    while let Some(used) = complete_command(&buf) {
                        buf.drain(..used);
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The length of the first complete RESP array-of-bulk-strings command in `buf`, if any.
fn complete_command(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let (header, mut at) = line(buf, 0)?;
    let count: usize = std::str::from_utf8(header.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    for _ in 0..count {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        at = next + len + 2;
        if buf.len() < at {
            return None;
        }
    }
    Some(at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_garbage_nodes_are_errors_within_the_timeout() {
    let timeout = Duration::from_millis(500);
    let clients = NodeClients::new(Some(Credentials::default_user(PASSWORD)), timeout);
    let bound = timeout * 3;

    // An address nothing in this binary binds: a free port on 127.0.0.1 can be taken by a
    // node another test starts meanwhile.
    let dead = format!("127.0.0.254:{}", free_port());
    let started = Instant::now();
    let err = clients.probe(&dead).await;
    assert!(
        matches!(&err, Err(e) if e.is_unreachable() && e.addr() == dead),
        "{err:?}"
    );
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());

    let silent = fake_server(None).await;
    let started = Instant::now();
    let err = clients.probe(&silent).await;
    assert!(matches!(&err, Err(WiringError::Timeout { .. })), "{err:?}");
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());

    let garbage = fake_server(Some(b"this is not RESP\r\n")).await;
    let err = clients.probe(&garbage).await;
    assert!(
        matches!(&err, Err(e) if !e.is_unreachable() && e.addr() == garbage),
        "{err:?}"
    );

    let wrong_shape = NodeClients::new(None, timeout);
    let ints = fake_server(Some(b":1\r\n")).await;
    for _ in 0..2 {
        let err = wrong_shape.probe(&ints).await;
        assert!(
            matches!(&err, Err(WiringError::UnexpectedReply { .. })),
            "{err:?}"
        );
        let err = wrong_shape.peers(&ints).await;
        assert!(
            matches!(&err, Err(WiringError::UnexpectedReply { .. })),
            "{err:?}"
        );
        let err = wrong_shape.follow(&ints, "127.0.0.1:1").await;
        assert!(
            matches!(&err, Err(WiringError::UnexpectedReply { .. })),
            "{err:?}"
        );
    }
    let err = clients.probe("no-port").await;
    assert!(
        matches!(&err, Err(WiringError::InvalidAddress { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_and_redialed_after_a_failure() {
    let mut node = Node::start("east");
    let clients = clients();
    ready(&clients, &node).await;

    let mut stats = data(&node).await;
    let before = stat(&mut stats, "total_connections_received").await;
    for _ in 0..20 {
        clients.probe(&node.addr()).await.expect("probe");
        clients
            .probe_detail(&node.addr())
            .await
            .expect("probe_detail");
    }
    let copy = clients.clone();
    copy.peers(&node.addr())
        .await
        .expect("peers through a clone");
    clients.set_password(Some(Credentials::default_user(PASSWORD)));
    clients
        .probe(&node.addr())
        .await
        .expect("probe after the same password");
    let after = stat(&mut stats, "total_connections_received").await;
    assert_eq!(after, before, "probes opened new connections");

    node.restart();
    ready(&clients, &node).await;
    let report = clients
        .probe(&node.addr())
        .await
        .expect("probe after restart");
    assert!(matches!(report.role, ReportedRole::Primary));
}
