//! RESP commands from the operator to shard-node pods: probing roles and offsets, promoting and
//! re-pointing replicas, and wiring peer links between regions.
//!
//! Contract:
//! - [`NodeClients`] keeps one multiplexed connection per address (`host:port`), reused by every
//!   call to that address. A connection that fails in any way other than the node refusing a
//!   command (I/O error, timeout, authentication, a reply that is not RESP) is dropped, and the
//!   next call dials again. Changing the password drops every cached connection.
//! - The timeout given to [`NodeClients::new`] bounds the dial (TCP connect and `AUTH`) and each
//!   round trip separately; `WAIT` gets its own timeout on top.
//! - Nothing here panics on what a node answers: a reply of the wrong shape, a missing INFO
//!   field or bytes that are not RESP become a [`WiringError`] that names the address.
//! - [`NodeClients::probe`] sends `ROLE`, `INFO replication` and `INFO crdt persistence` in one
//!   pipeline (one round trip); `aadb_persistence_error` of the persistence section, when
//!   present, says the node cannot write its log. A primary's offset is `master_repl_offset`; a replica's is its position
//!   in its primary's stream (`slave_repl_offset`), so the two compare directly. The generation
//!   is `crdt_epoch` of `INFO crdt`, which shard-node reports as the generation part of its
//!   actor epoch (`epoch >> 12`); a promotion raises it. A fenced former primary (it saw a newer
//!   generation of its shard and stopped taking writes) is reported as a replica of `""` with
//!   its link down.
//! - Idempotence: `REPLICAOF host port` naming the primary a node already follows is answered
//!   `OK Already connected to specified master` by shard-node without touching the link, so
//!   [`NodeClients::follow`] sends it unconditionally. `REPLICAOF NO ONE` on a primary is a no-op
//!   on the node. `AA.PEER SET` always restarts the peer link on the node, so
//!   [`NodeClients::set_peer`] first reads `AA.PEERS` and sends nothing when the link already
//!   points at the same address. `AA.PEER DEL` of an unknown name succeeds.

mod errors;
mod parse;

use errors::*;
use parse::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};

use crate::failover::NodeReport;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, Pipeline, RedisConnectionInfo,
    Value,
};

/// Why a call to a shard-node failed. Every variant names the node's address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WiringError {
    /// The address is not `host:port`.
    #[error("shard-node address '{addr}' is not HOST:PORT")]
    InvalidAddress { addr: String },
    /// The TCP connection could not be established.
    #[error("cannot connect to shard-node {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The dial or a command did not complete in time.
    #[error("shard-node {addr} did not answer {command} within {after:?}")]
    Timeout {
        addr: String,
        command: String,
        after: Duration,
    },
    /// The node refused the password, or wants one and none is configured.
    #[error("shard-node {addr} refused authentication: {reason}")]
    Auth { addr: String, reason: String },
    /// The connection broke or carried bytes that are not RESP.
    #[error("connection to shard-node {addr} failed during {command}: {reason}")]
    Protocol {
        addr: String,
        command: String,
        reason: String,
    },
    /// The node answered the command with an error reply.
    #[error("shard-node {addr} refused {command}: {message}")]
    Refused {
        addr: String,
        command: String,
        message: String,
    },
    /// The node answered, but not in the shape shard-node answers that command.
    #[error("shard-node {addr} answered {command} unexpectedly: {detail}")]
    UnexpectedReply {
        addr: String,
        command: String,
        detail: String,
    },
}

impl WiringError {
    /// The address of the node the failed call went to.
    pub fn addr(&self) -> &str {
        match self {
            WiringError::InvalidAddress { addr }
            | WiringError::Connect { addr, .. }
            | WiringError::Timeout { addr, .. }
            | WiringError::Auth { addr, .. }
            | WiringError::Protocol { addr, .. }
            | WiringError::Refused { addr, .. }
            | WiringError::UnexpectedReply { addr, .. } => addr,
        }
    }

    /// Whether the node did not answer at all (no connection, or no reply in time), as
    /// opposed to answering something wrong.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            WiringError::Connect { .. } | WiringError::Timeout { .. }
        )
    }

    /// Whether the cached connection stays usable after this error.
    fn keeps_connection(&self) -> bool {
        matches!(self, WiringError::Refused { .. })
    }
}

/// One peer link of a shard-node, as `AA.PEERS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLink {
    /// The other participant's name.
    pub name: String,
    /// `host:port` the link dials.
    pub address: String,
    /// `connecting`, `sync`, `up` or `down`.
    pub state: String,
    /// Effects the peer has that this node has not applied yet, when reported.
    pub lag_effects: Option<i64>,
}

/// What [`NodeClients::probe_detail`] learns about a node in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDetail {
    /// Role, offset and generation.
    pub report: NodeReport,
    /// Its peer links (`AA.PEERS`).
    pub peers: Vec<PeerLink>,
    /// Replicas connected to it (`connected_slaves`; 0 on a replica).
    pub connected_replicas: u32,
    /// The replication id of the stream its offset counts in (`master_replid`: its own on a
    /// primary, its primary's on a replica).
    pub replid: Option<String>,
}

/// Parses `host:port` (IPv6 hosts in brackets) into its parts.
pub fn split_address(addr: &str) -> Result<(String, u16), WiringError> {
    let invalid = || WiringError::InvalidAddress {
        addr: addr.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(invalid)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(invalid());
    }
    Ok((host.to_string(), port))
}

/// `host:port` from its parts (IPv6 hosts in brackets).
fn join_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Who the operator is towards the shard-nodes: a user (none: `default`) and its password.
/// `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: String,
}

impl Credentials {
    /// The `default` user's password.
    pub fn default_user(password: impl Into<String>) -> Credentials {
        Credentials {
            user: None,
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Connection state shared by the clones of one [`NodeClients`].
struct Shared {
    timeout: Duration,
    state: Mutex<CacheState>,
}

struct CacheState {
    password: Option<Credentials>,
    /// With TLS, the CA (PEM) the nodes' certificates chain to.
    tls_ca: Option<String>,
    /// Bumped when the password changes, so a dial started before does not cache its result.
    password_epoch: u64,
    connections: HashMap<String, MultiplexedConnection>,
}

/// Connections to shard-nodes, reused between calls (one cached multiplexed connection per
/// address; dropped and re-dialed on error). Cheap to clone: clones share the cache.
#[derive(Clone)]
pub struct NodeClients {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClients")
            .field("timeout", &self.shared.timeout)
            .field("cached_connections", &self.lock().connections.len())
            .finish()
    }
}

impl NodeClients {
    /// Clients that authenticate with `password` (none: no `AUTH`); `timeout` bounds the dial
    /// and each command.
    pub fn new(password: Option<Credentials>, timeout: Duration) -> Self {
        NodeClients {
            shared: Arc::new(Shared {
                timeout,
                state: Mutex::new(CacheState {
                    password,
                    tls_ca: None,
                    password_epoch: 0,
                    connections: HashMap::new(),
                }),
            }),
        }
    }

    /// Changes the password used from now on; drops every cached connection if it differs.
    pub fn set_password(&self, password: Option<Credentials>) {
        let mut state = self.lock();
        if state.password != password {
            state.password = password;
            state.password_epoch += 1;
            state.connections.clear();
        }
    }

    /// Reaches the nodes over TLS, trusting `ca` (PEM), from now on (`None`: plain TCP); drops
    /// every cached connection if it differs. Any certificate the CA signed is accepted,
    /// whatever address it names: the CA is the database's own.
    pub fn set_tls(&self, ca: Option<String>) {
        let mut state = self.lock();
        if state.tls_ca != ca {
            state.tls_ca = ca;
            state.password_epoch += 1;
            state.connections.clear();
        }
    }

    /// Drops the cached connection to `addr`, if any (for a node that went away).
    pub fn forget(&self, addr: &str) {
        self.lock().connections.remove(addr);
    }

    /// The timeout given to [`NodeClients::new`].
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// `ROLE`, `INFO replication` and `INFO crdt` in one round trip: the node's role, offset
    /// and generation.
    pub async fn probe(&self, addr: &str) -> Result<NodeReport, WiringError> {
        let detail = self.settle(addr, self.probe_inner(addr, false).await)?;
        Ok(detail.report)
    }

    /// [`NodeClients::probe`] plus `AA.PEERS`, the connected replicas and the replication id,
    /// still in one round trip.
    pub async fn probe_detail(&self, addr: &str) -> Result<NodeDetail, WiringError> {
        self.settle(addr, self.probe_inner(addr, true).await)
    }

    async fn probe_inner(&self, addr: &str, with_peers: bool) -> Result<NodeDetail, WiringError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ROLE")
            .cmd("INFO")
            .arg("replication")
            .cmd("INFO")
            .arg("crdt")
            .arg("persistence");
        let mut labels = vec!["ROLE", "INFO replication", "INFO crdt persistence"];
        if with_peers {
            pipe.cmd("AA.PEERS");
            labels.push("AA.PEERS");
        }
        let replies = self.round_trip(addr, &labels, &pipe, None).await?;
        interpret_probe(&replies).map_err(|(command, detail)| unexpected(addr, command, detail))
    }

    /// `REPLICAOF NO ONE`: makes the node a primary with a new generation (a no-op on a
    /// primary).
    pub async fn promote(&self, addr: &str) -> Result<(), WiringError> {
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg("NO").arg("ONE");
        let result = self
            .single(addr, "REPLICAOF NO ONE", cmd, None)
            .await
            .and_then(|reply| expect_ok(addr, "REPLICAOF NO ONE", &reply));
        self.settle(addr, result)
    }

    /// `AA.TOPOLOGY SET version map` on a shard-node or a proxy. `Ok(true)` when it installed
    /// the map, `Ok(false)` when it already holds this version or a newer one.
    pub async fn set_topology(
        &self,
        addr: &str,
        version: u64,
        map: &str,
    ) -> Result<bool, WiringError> {
        let mut cmd = redis::cmd("AA.TOPOLOGY");
        cmd.arg("SET").arg(version).arg(map);
        let result = match self.single(addr, "AA.TOPOLOGY SET", cmd, None).await {
            Ok(reply) => expect_ok(addr, "AA.TOPOLOGY SET", &reply).map(|()| true),
            Err(e) if e.to_string().contains("is not newer") => Ok(false),
            Err(e) => Err(e),
        };
        self.settle(addr, result)
    }

    /// `AA.TOPOLOGY ANNOUNCE endpoint` on a proxy or shard-node: the address it gives
    /// cluster-aware clients for itself.
    pub async fn announce(&self, addr: &str, endpoint: &str) -> Result<(), WiringError> {
        let mut cmd = redis::cmd("AA.TOPOLOGY");
        cmd.arg("ANNOUNCE").arg(endpoint);
        let result = self
            .single(addr, "AA.TOPOLOGY ANNOUNCE", cmd, None)
            .await
            .and_then(|reply| expect_ok(addr, "AA.TOPOLOGY ANNOUNCE", &reply));
        self.settle(addr, result)
    }

    /// `CLIENT PAUSE ms WRITE`: the node holds its clients' writes (they wait, unanswered) for
    /// up to `length` or until [`NodeClients::unpause`].
    pub async fn pause_writes(&self, addr: &str, length: Duration) -> Result<(), WiringError> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("PAUSE").arg(length.as_millis() as u64).arg("WRITE");
        let result = self
            .single(addr, "CLIENT PAUSE", cmd, None)
            .await
            .and_then(|reply| expect_ok(addr, "CLIENT PAUSE", &reply));
        self.settle(addr, result)
    }

    /// `CLIENT UNPAUSE`: the held writes go on.
    pub async fn unpause(&self, addr: &str) -> Result<(), WiringError> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNPAUSE");
        let result = self
            .single(addr, "CLIENT UNPAUSE", cmd, None)
            .await
            .and_then(|reply| expect_ok(addr, "CLIENT UNPAUSE", &reply));
        self.settle(addr, result)
    }

    /// `REPLICAOF host port`: makes the node follow `primary` (`host:port`). Repeating it for
    /// the primary the node already follows leaves the link alone (shard-node answers
    /// `OK Already connected to specified master`).
    pub async fn follow(&self, addr: &str, primary: &str) -> Result<(), WiringError> {
        let (host, port) = split_address(primary)?;
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg(&host).arg(port);
        let result = self
            .single(addr, "REPLICAOF", cmd, None)
            .await
            .and_then(|reply| expect_ok(addr, "REPLICAOF", &reply));
        self.settle(addr, result)
    }

    /// `AA.PEER SET name peer_addr`, skipped when the node already has a link named `name` to
    /// `peer_addr` (setting it again would restart that link).
    pub async fn set_peer(
        &self,
        addr: &str,
        name: &str,
        peer_addr: &str,
    ) -> Result<(), WiringError> {
        split_address(peer_addr)?;
        let current = self.peers(addr).await?;
        if current
            .iter()
            .any(|p| p.name == name && p.address == peer_addr)
        {
            return Ok(());
        }
        let mut cmd = redis::cmd("AA.PEER");
        cmd.arg("SET").arg(name).arg(peer_addr);
        let result = self
            .single(addr, "AA.PEER SET", cmd, None)
            .await
            .and_then(|reply| expect_ok(addr, "AA.PEER SET", &reply));
        self.settle(addr, result)
    }

    /// `AA.PEER DEL name`; removing a link the node does not have succeeds too.
    pub async fn del_peer(&self, addr: &str, name: &str) -> Result<(), WiringError> {
        let mut cmd = redis::cmd("AA.PEER");
        cmd.arg("DEL").arg(name);
        let result = match self.single(addr, "AA.PEER DEL", cmd, None).await {
            Ok(reply) => match int_of(&reply) {
                Some(0 | 1) => Ok(()),
                _ => Err(unexpected(
                    addr,
                    "AA.PEER DEL",
                    format!("expected 0 or 1, got {}", describe(&reply)),
                )),
            },
            Err(e) => Err(e),
        };
        self.settle(addr, result)
    }

    /// `AA.PEERS`: the node's peer links.
    pub async fn peers(&self, addr: &str) -> Result<Vec<PeerLink>, WiringError> {
        let result = match self
            .single(addr, "AA.PEERS", redis::cmd("AA.PEERS"), None)
            .await
        {
            Ok(reply) => parse_peers(&reply).map_err(|detail| unexpected(addr, "AA.PEERS", detail)),
            Err(e) => Err(e),
        };
        self.settle(addr, result)
    }

    /// `WAIT n timeout_ms` on a primary: how many of its replicas have acknowledged everything
    /// it has recorded so far, once `n` have or `timeout_ms` passed. The call may take
    /// `timeout_ms` on top of the usual timeout. A replica refuses the command.
    pub async fn wait_replicas(
        &self,
        addr: &str,
        n: u32,
        timeout_ms: u64,
    ) -> Result<u64, WiringError> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(n).arg(timeout_ms);
        let result = match self
            .single(addr, "WAIT", cmd, Some(Duration::from_millis(timeout_ms)))
            .await
        {
            Ok(reply) => int_of(&reply)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    unexpected(
                        addr,
                        "WAIT",
                        format!("expected a count, got {}", describe(&reply)),
                    )
                }),
            Err(e) => Err(e),
        };
        self.settle(addr, result)
    }

    /// Drops the cached connection to `addr` after an error that may have left it unusable.
    fn settle<T>(&self, addr: &str, result: Result<T, WiringError>) -> Result<T, WiringError> {
        if let Err(e) = &result {
            if !e.keeps_connection() {
                self.forget(addr);
            }
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // The lock is never held across a call that can panic; recover rather than propagate.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached connection to `addr`, dialing one if there is none.
    async fn connection(&self, addr: &str) -> Result<MultiplexedConnection, WiringError> {
        let (password, tls_ca, epoch) = {
            let state = self.lock();
            if let Some(conn) = state.connections.get(addr) {
                return Ok(conn.clone());
            }
            (
                state.password.clone(),
                state.tls_ca.clone(),
                state.password_epoch,
            )
        };
        let (host, port) = split_address(addr)?;
        let redis_info = RedisConnectionInfo {
            username: password.as_ref().and_then(|c| c.user.clone()),
            password: password.map(|c| c.password),
            ..RedisConnectionInfo::default()
        };
        let connect_error = |e: redis::RedisError| WiringError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
        let client = match tls_ca {
            None => Client::open(ConnectionInfo {
                addr: ConnectionAddr::Tcp(host, port),
                redis: redis_info,
            })
            .map_err(connect_error)?,
            Some(ca) => {
                let info = ConnectionInfo {
                    addr: ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure: false,
                        tls_params: None,
                    },
                    redis: redis_info,
                };
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.into_bytes()),
                };
                let with_ca = Client::build_with_tls(info, certificates).map_err(connect_error)?;
                let mut info = with_ca.get_connection_info().clone();
                info.addr.set_danger_accept_invalid_hostnames(true);
                Client::open(info).map_err(connect_error)?
            }
        };
        let timeout = self.shared.timeout;
        let config = AsyncConnectionConfig::new().set_connection_timeout(timeout);
        let dialed = tokio::time::timeout(
            timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        let conn = match dialed {
            Err(_) => {
                return Err(WiringError::Timeout {
                    addr: addr.to_string(),
                    command: "connect".to_string(),
                    after: timeout,
                })
            }
            Ok(Err(e)) => return Err(dial_error(addr, e, timeout)),
            Ok(Ok(conn)) => conn,
        };
        let mut state = self.lock();
        if state.password_epoch != epoch {
            // Dialed with a password that is no longer current: use it once, do not cache it.
            return Ok(conn);
        }
        Ok(state
            .connections
            .entry(addr.to_string())
            .or_insert(conn)
            .clone())
    }

    /// Sends `pipe` (one command per entry of `labels`) in one round trip and returns one
    /// reply per command; an error reply of the node becomes [`WiringError::Refused`] naming
    /// that command.
    async fn round_trip(
        &self,
        addr: &str,
        labels: &[&str],
        pipe: &Pipeline,
        extra: Option<Duration>,
    ) -> Result<Vec<Value>, WiringError> {
        let command = labels.join(" + ");
        let command = command.as_str();
        let count = labels.len();
        let mut conn = self.connection(addr).await?;
        let after = self.shared.timeout + extra.unwrap_or_default();
        let replies =
            match tokio::time::timeout(after, conn.req_packed_commands(pipe, 0, count)).await {
                Err(_) => {
                    return Err(WiringError::Timeout {
                        addr: addr.to_string(),
                        command: command.to_string(),
                        after,
                    })
                }
                Ok(Err(e)) => return Err(command_error(addr, command, e)),
                Ok(Ok(replies)) => replies,
            };
        if replies.len() != count {
            return Err(unexpected(
                addr,
                command,
                format!("{} replies to {count} commands", replies.len()),
            ));
        }
        for (reply, label) in replies.iter().zip(labels) {
            if let Value::ServerError(e) = reply {
                return Err(server_error(addr, label, e.code(), e.details()));
            }
        }
        Ok(replies)
    }

    /// One command, one reply.
    async fn single(
        &self,
        addr: &str,
        command: &str,
        cmd: redis::Cmd,
        extra: Option<Duration>,
    ) -> Result<Value, WiringError> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let mut replies = self.round_trip(addr, &[command], &pipe, extra).await?;
        replies
            .pop()
            .ok_or_else(|| unexpected(addr, command, "no reply".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::ReportedRole;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn addresses_split_and_join() {
        assert_eq!(
            split_address("10.0.0.1:6379").ok(),
            Some(("10.0.0.1".to_string(), 6379))
        );
        assert_eq!(
            split_address("[::1]:7000").ok(),
            Some(("::1".to_string(), 7000))
        );
        assert_eq!(join_address("::1", 7000), "[::1]:7000");
        assert_eq!(join_address("node-0.svc", 1), "node-0.svc:1");
        for bad in [
            "",
            "host",
            ":6379",
            "host:",
            "host:0",
            "host:70000",
            "h st:1",
            "[]:1",
        ] {
            assert!(
                matches!(split_address(bad), Err(WiringError::InvalidAddress { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn info_lines_become_fields() {
        let info = parse_info("# Replication\r\nrole:master\r\nmaster_replid:ab:cd\r\n\r\nbad\r\n");
        assert_eq!(info.get("role").map(String::as_str), Some("master"));
        assert_eq!(info.get("master_replid").map(String::as_str), Some("ab:cd"));
        assert_eq!(info.len(), 2);
    }

    #[test]
    fn peers_parse_from_resp2_and_resp3() {
        let flat = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("west"),
            bulk("address"),
            bulk("127.0.0.1:7001"),
            bulk("state"),
            bulk("up"),
            bulk("lag_effects"),
            Value::Int(3),
            bulk("last_error"),
            bulk(""),
        ])]);
        let map = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("west")),
            (bulk("address"), bulk("127.0.0.1:7001")),
            (bulk("state"), bulk("up")),
            (bulk("lag_effects"), Value::Int(3)),
        ])]);
        let expected = vec![PeerLink {
            name: "west".into(),
            address: "127.0.0.1:7001".into(),
            state: "up".into(),
            lag_effects: Some(3),
        }];
        assert_eq!(parse_peers(&flat), Ok(expected.clone()));
        assert_eq!(parse_peers(&map), Ok(expected));
        assert_eq!(parse_peers(&Value::Array(vec![])), Ok(vec![]));
    }

    #[test]
    fn malformed_peers_are_errors() {
        let cases = [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![bulk("name")])]),
            Value::Array(vec![Value::Array(vec![bulk("name"), bulk("w")])]),
            Value::Array(vec![Value::Array(vec![
                bulk("name"),
                bulk("w"),
                bulk("address"),
                bulk("a:1"),
                bulk("state"),
                Value::Array(vec![]),
            ])]),
            Value::Array(vec![Value::Array(vec![
                bulk("name"),
                bulk("w"),
                bulk("address"),
                bulk("a:1"),
                bulk("state"),
                bulk("up"),
                bulk("lag_effects"),
                bulk("many"),
            ])]),
        ];
        for case in cases {
            assert!(parse_peers(&case).is_err(), "{case:?}");
        }
    }

    #[test]
    fn ok_replies() {
        assert!(expect_ok("a:1", "X", &Value::Okay).is_ok());
        assert!(expect_ok(
            "a:1",
            "X",
            &Value::SimpleString("OK Already connected to specified master".into())
        )
        .is_ok());
        let err = expect_ok("a:1", "X", &bulk("OK")).err();
        assert!(matches!(err, Some(WiringError::UnexpectedReply { .. })));
        assert!(expect_ok("a:1", "X", &Value::SimpleString("OKAY".into())).is_err());
    }

    #[test]
    fn error_replies_are_classified() {
        assert!(matches!(
            server_error("a:1", "ROLE", "NOAUTH", Some("Authentication required.")),
            WiringError::Auth { .. }
        ));
        let refused = server_error("a:1", "WAIT", "ERR", Some("WAIT cannot be used"));
        assert!(refused.keeps_connection());
        assert!(refused.to_string().contains("a:1"), "{refused}");
        assert!(!refused.is_unreachable());
    }

    const PRIMARY_INFO: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\nmaster_replid:abc\r\nmaster_repl_offset:42\r\nrepl_backlog_active:1\r\n";
    const REPLICA_INFO: &str = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:7000\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:0\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:40\r\nslave_read_only:1\r\nconnected_slaves:0\r\nmaster_replid:abc\r\nmaster_repl_offset:40\r\n";
    const FENCED_INFO: &str = "# Replication\r\nrole:slave\r\nmaster_host:\r\nmaster_port:0\r\nmaster_link_status:down\r\nslave_read_only:1\r\nconnected_slaves:0\r\naadb_fenced:1\r\nmaster_replid:def\r\nmaster_repl_offset:77\r\n";
    const CRDT_INFO: &str = "# CRDT\r\ncrdt_participant:east\r\ncrdt_shard:0\r\ncrdt_epoch:3\r\ncrdt_actor:00aa\r\ncrdt_vector_clock:00aa:5,00bb:7\r\ncrdt_peers:0\r\n";

    fn primary_role() -> Value {
        Value::Array(vec![bulk("master"), Value::Int(42), Value::Array(vec![])])
    }

    fn replica_role(host: &str, port: i64, state: &str) -> Value {
        Value::Array(vec![
            bulk("slave"),
            bulk(host),
            Value::Int(port),
            bulk(state),
            Value::Int(40),
        ])
    }

    #[test]
    fn primaries_report_their_stream_offset() {
        let detail =
            interpret_probe(&[primary_role(), bulk(PRIMARY_INFO), bulk(CRDT_INFO)]).unwrap();
        assert_eq!(
            detail,
            NodeDetail {
                report: NodeReport {
                    role: ReportedRole::Primary,
                    offset: 42,
                    generation: 3,
                    log_failure: None,
                    write_held: false,
                    coverage: 12,
                },
                peers: vec![],
                connected_replicas: 2,
                replid: Some("abc".into()),
            }
        );
    }

    #[test]
    fn replicas_report_their_primary_link_and_position() {
        let verbatim = Value::VerbatimString {
            format: redis::VerbatimFormat::Text,
            text: REPLICA_INFO.into(),
        };
        let detail = interpret_probe(&[
            replica_role("10.0.0.1", 7000, "connected"),
            verbatim,
            bulk(CRDT_INFO),
            Value::Array(vec![]),
        ])
        .unwrap();
        assert_eq!(
            detail.report.role,
            ReportedRole::Replica {
                primary: "10.0.0.1:7000".into(),
                link_up: true
            }
        );
        assert_eq!(detail.report.offset, 40);
        assert_eq!(detail.connected_replicas, 0);

        let down = REPLICA_INFO.replace("master_link_status:up", "master_link_status:down");
        let detail = interpret_probe(&[
            replica_role("10.0.0.1", 7000, "connecting"),
            bulk(&down),
            bulk(CRDT_INFO),
        ])
        .unwrap();
        assert!(matches!(
            detail.report.role,
            ReportedRole::Replica { link_up: false, .. }
        ));
    }

    #[test]
    fn fenced_nodes_are_replicas_of_nobody() {
        let detail = interpret_probe(&[
            replica_role("", 0, "connect"),
            bulk(FENCED_INFO),
            bulk(CRDT_INFO),
        ])
        .unwrap();
        assert_eq!(
            detail.report.role,
            ReportedRole::Replica {
                primary: String::new(),
                link_up: false
            }
        );
        assert_eq!(detail.report.offset, 77);
    }

    #[test]
    fn inconsistent_or_malformed_probes_are_errors() {
        let no_epoch = CRDT_INFO.replace("crdt_epoch:3", "crdt_epoch:x");
        let cases: Vec<(Vec<Value>, &str)> = vec![
            (vec![], "ROLE"),
            (vec![primary_role(), bulk(PRIMARY_INFO)], "ROLE"),
            (
                vec![Value::Int(1), bulk(PRIMARY_INFO), bulk(CRDT_INFO)],
                "ROLE",
            ),
            (
                vec![
                    Value::Array(vec![bulk("sentinel")]),
                    bulk(PRIMARY_INFO),
                    bulk(CRDT_INFO),
                ],
                "ROLE",
            ),
            (
                vec![
                    Value::Array(vec![bulk("slave")]),
                    bulk(REPLICA_INFO),
                    bulk(CRDT_INFO),
                ],
                "ROLE",
            ),
            (
                vec![
                    replica_role("h", 70000, "connected"),
                    bulk(REPLICA_INFO),
                    bulk(CRDT_INFO),
                ],
                "ROLE",
            ),
            (
                vec![primary_role(), bulk(REPLICA_INFO), bulk(CRDT_INFO)],
                "INFO replication",
            ),
            (
                vec![
                    replica_role("h", 1, "connected"),
                    bulk(PRIMARY_INFO),
                    bulk(CRDT_INFO),
                ],
                "INFO replication",
            ),
            (
                vec![primary_role(), Value::Nil, bulk(CRDT_INFO)],
                "INFO replication",
            ),
            (
                vec![primary_role(), bulk("role:master\r\n"), bulk(CRDT_INFO)],
                "INFO replication",
            ),
            (
                vec![primary_role(), bulk(PRIMARY_INFO), bulk("")],
                "INFO crdt",
            ),
            (
                vec![primary_role(), bulk(PRIMARY_INFO), bulk(&no_epoch)],
                "INFO crdt",
            ),
            (
                vec![
                    primary_role(),
                    bulk(PRIMARY_INFO),
                    bulk(CRDT_INFO),
                    Value::Int(0),
                ],
                "AA.PEERS",
            ),
        ];
        for (replies, command) in cases {
            let err = interpret_probe(&replies).err();
            assert_eq!(err.map(|(c, _)| c), Some(command), "{replies:?}");
        }
    }

    #[test]
    fn long_replies_are_shortened_in_messages() {
        let long = bulk(&"é".repeat(500));
        assert!(describe(&long).chars().count() <= 121);
    }
}
