//! The operator's HTTP endpoint and its metrics.
//!
//! Contract:
//! - [`serve`] answers one HTTP/1.x request per connection, then closes it (`Connection: close`):
//!   `GET /metrics` is the OpenMetrics text exposition of the registry, `GET /healthz` is
//!   `200 ok` while the process runs, `GET /readyz` is `200 ok` when [`HealthState`] is ready
//!   and `503` with the reason otherwise; other paths are `404`, other methods `405`, a request
//!   that is not HTTP/1.x is `400`, a request head over [`MAX_HEAD_BYTES`] is `431`, and a client
//!   that does not send its head within [`READ_TIMEOUT`] gets `408`. `HEAD` is answered like
//!   `GET` without a body. Nothing a client sends can make it panic.
//! - At most [`MAX_CONNECTIONS`] connections are served at once; further ones are closed at
//!   once. When `shutdown` resolves, [`serve`] stops accepting and returns.
//! - [`OperatorMetrics::new`] registers every operator metric, each named `aadb_operator_*`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Connections served at the same time.
pub const MAX_CONNECTIONS: usize = 64;
/// The content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one database.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatabaseLabels {
    /// Namespace of the `ActiveActiveDatabase`.
    pub namespace: String,
    /// Name of the `ActiveActiveDatabase`.
    pub database: String,
}

/// Labels of one reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Namespace of the reconciled `ActiveActiveDatabase`.
    pub namespace: String,
    /// Name of the reconciled `ActiveActiveDatabase`.
    pub database: String,
}

/// Labels of one failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileErrorLabels {
    /// Namespace of the reconciled `ActiveActiveDatabase`.
    pub namespace: String,
    /// Name of the reconciled `ActiveActiveDatabase`.
    pub database: String,
    /// Stable category of the error, a snake_case word
    /// ([`ReconcileError::metric_label`](crate::controller::ReconcileError::metric_label)).
    pub reason: String,
}

/// Labels of one shard failover.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    /// Name of the `ActiveActiveDatabase`.
    pub database: String,
    /// The participant (region) whose shard primary moved.
    pub participant: String,
    /// Index of the shard.
    pub shard: u32,
}

/// Every metric the operator exports; cheap to clone (clones share the values).
#[derive(Clone, Debug)]
pub struct OperatorMetrics {
    /// `aadb_operator_reconciles_total`: reconciles started.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// `aadb_operator_reconcile_errors_total`: reconciles that ended in an error.
    pub reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    /// `aadb_operator_reconcile_seconds`: duration of reconciles.
    pub reconcile_seconds: Histogram,
    /// `aadb_operator_failovers_total`: shard primaries promoted by the operator.
    pub failovers: Family<FailoverLabels, Counter>,
    /// `aadb_operator_failover_seconds`: from a primary judged failed to its replacement
    /// promoted.
    pub failover_seconds: Histogram,
    /// `aadb_operator_leader`: 1 while this process holds the leader Lease, else 0.
    pub leader: Gauge,
    /// `aadb_operator_databases`: `ActiveActiveDatabase` objects this process manages.
    pub databases: Gauge,
    /// `aadb_operator_shards_desired`: shards (over all participants) each database asks for.
    pub shards_desired: Family<DatabaseLabels, Gauge>,
    /// `aadb_operator_shards_ready`: shards (over all participants) with a Ready primary.
    pub shards_ready: Family<DatabaseLabels, Gauge>,
}

impl OperatorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = OperatorMetrics {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            failovers: Family::default(),
            failover_seconds: Histogram::new([
                0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
            ]),
            leader: Gauge::default(),
            databases: Gauge::default(),
            shards_desired: Family::default(),
            shards_ready: Family::default(),
        };
        registry.register(
            "aadb_operator_reconciles",
            "Reconciles of ActiveActiveDatabase objects started",
            metrics.reconciles.clone(),
        );
        registry.register(
            "aadb_operator_reconcile_errors",
            "Reconciles that ended in an error, by error reason",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "aadb_operator_reconcile_seconds",
            "Duration of reconciles in seconds",
            metrics.reconcile_seconds.clone(),
        );
        registry.register(
            "aadb_operator_failovers",
            "Shard primaries promoted by the operator",
            metrics.failovers.clone(),
        );
        registry.register(
            "aadb_operator_failover_seconds",
            "Seconds from a shard primary judged failed to its replacement promoted",
            metrics.failover_seconds.clone(),
        );
        registry.register(
            "aadb_operator_leader",
            "1 while this process holds the leader Lease, else 0",
            metrics.leader.clone(),
        );
        registry.register(
            "aadb_operator_databases",
            "ActiveActiveDatabase objects managed",
            metrics.databases.clone(),
        );
        registry.register(
            "aadb_operator_shards_desired",
            "Shards over all participants a database asks for",
            metrics.shards_desired.clone(),
        );
        registry.register(
            "aadb_operator_shards_ready",
            "Shards over all participants with a Ready primary",
            metrics.shards_ready.clone(),
        );
        metrics
    }
}

/// Readiness of the process as `/readyz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready to serve.
    Ready,
    /// Not ready, with a reason a person can act on.
    NotReady(String),
}

/// The shared readiness flag and its reason; cheap to clone (clones share the state).
#[derive(Clone, Debug)]
pub struct HealthState {
    readiness: Arc<watch::Sender<Readiness>>,
}

impl Default for HealthState {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthState {
    /// A state that is not ready yet (reason `starting`).
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Readiness::NotReady("starting".to_string()));
        HealthState {
            readiness: Arc::new(tx),
        }
    }

    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.readiness.send_replace(Readiness::Ready);
    }

    /// Marks the process not ready because of `reason`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.readiness
            .send_replace(Readiness::NotReady(reason.into()));
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        *self.readiness.borrow() == Readiness::Ready
    }

    /// The current readiness.
    pub fn readiness(&self) -> Readiness {
        self.readiness.borrow().clone()
    }

    /// A receiver that sees every change of readiness.
    pub fn subscribe(&self) -> watch::Receiver<Readiness> {
        self.readiness.subscribe()
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` resolves.
///
/// Accept errors (for example running out of file descriptors) are logged and retried after a
/// short pause; they do not end the server.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: HealthState,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with_read_timeout(listener, registry, health, READ_TIMEOUT, shutdown).await
}

/// [`serve`] with another limit on the time a client may take to send its request head.
async fn serve_with_read_timeout(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: HealthState,
    read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "http: accept failed");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "http: connection limit reached, closing");
            drop(stream);
            continue;
        };
        let registry = Arc::clone(&registry);
        let health = health.clone();
        tokio::spawn(async move {
            handle_connection(stream, &registry, &health, read_timeout).await;
            drop(slot);
        });
    }
}

/// One response: status, content type and body.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: false,
        }
    }

    fn encode(&self, with_body: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        if self.allow {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if with_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What reading a request head produced.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete head (request line and headers, without the blank line).
    Complete(Vec<u8>),
    /// The client closed the connection before sending anything.
    Empty,
    /// The client closed the connection in the middle of the head.
    Truncated,
    /// The head exceeds [`MAX_HEAD_BYTES`].
    TooLarge,
    /// The client took longer than the read timeout.
    TimedOut,
}

async fn handle_connection(
    mut stream: TcpStream,
    registry: &Registry,
    health: &HealthState,
    read_timeout: Duration,
) {
    let head = match tokio::time::timeout(read_timeout, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(_)) => return,
        Err(_) => Head::TimedOut,
    };
    let (response, with_body) = match head {
        Head::Empty => return,
        Head::Truncated => (Response::text(400, "bad request\n"), true),
        Head::TooLarge => (Response::text(431, "request head too large\n"), true),
        Head::TimedOut => (Response::text(408, "request timeout\n"), true),
        Head::Complete(bytes) => respond(&bytes, registry, health),
    };
    let write = async {
        stream.write_all(&response.encode(with_body)).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(WRITE_TIMEOUT, write).await.is_err() {
        return;
    }
    // Read what the client still sends (a body we ignore) until it closes, so closing our end
    // does not reset the connection before the client has read the response.
    let drain = async {
        let mut sink = [0u8; 1024];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Reads until the blank line that ends the head, at most [`MAX_HEAD_BYTES`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Head::Empty
            } else {
                Head::Truncated
            });
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf, scan_from) {
            if end > MAX_HEAD_BYTES {
                return Ok(Head::TooLarge);
            }
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}

/// The offset of the blank line ending a head (`\r\n\r\n` or `\n\n`), searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&i| buf[i..].starts_with(b"\r\n\r\n") || buf[i..].starts_with(b"\n\n"))
}

/// The response to a complete request head, and whether it carries its body (not for `HEAD`).
fn respond(head: &[u8], registry: &Registry, health: &HealthState) -> (Response, bool) {
    let Some((method, target)) = parse_request_line(head) else {
        return (Response::text(400, "bad request\n"), true);
    };
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        let mut r = Response::text(405, "method not allowed\n");
        r.allow = true;
        return (r, true);
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let response = match path {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => Response {
                    status: 200,
                    content_type: METRICS_CONTENT_TYPE,
                    body,
                    allow: false,
                },
                Err(_) => Response::text(500, "encoding the metrics failed\n"),
            }
        }
        "/healthz" => Response::text(200, "ok"),
        "/readyz" => match health.readiness() {
            Readiness::Ready => Response::text(200, "ok"),
            Readiness::NotReady(reason) => Response::text(503, format!("not ready: {reason}\n")),
        },
        _ => Response::text(404, "not found\n"),
    };
    (response, with_body)
}

/// `(method, target)` of a well-formed HTTP/1.x request line, else `None`.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    let target_ok = target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic());
    let version_ok = matches!(version, "HTTP/1.0" | "HTTP/1.1");
    (method_ok && target_ok && version_ok).then_some((method, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    struct Server {
        addr: SocketAddr,
        health: HealthState,
        metrics: OperatorMetrics,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<std::io::Result<()>>,
    }

    impl Server {
        async fn start() -> Server {
            Self::start_with_read_timeout(READ_TIMEOUT).await
        }

        async fn start_with_read_timeout(read_timeout: Duration) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let mut registry = Registry::default();
            let metrics = OperatorMetrics::new(&mut registry);
            let health = HealthState::new();
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve_with_read_timeout(
                listener,
                Arc::new(registry),
                health.clone(),
                read_timeout,
                async move {
                    let _ = stopped.await;
                },
            ));
            Server {
                addr,
                health,
                metrics,
                stop: Some(stop),
                task,
            }
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let res = tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("server returns after shutdown")
                .expect("server task did not panic");
            assert!(res.is_ok(), "serve returned {res:?}");
        }
    }

    /// Sends `request` raw, reads until the server closes, returns the whole response.
    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("server answers and closes in time")
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: t\r\n\r\n").as_bytes(),
        )
        .await
    }

    fn status(resp: &str) -> &str {
        resp.split(' ').nth(1).unwrap_or("")
    }

    fn body(resp: &str) -> &str {
        resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
    }

    #[tokio::test]
    async fn healthz_is_ok_while_running() {
        let srv = Server::start().await;
        let resp = get(srv.addr, "/healthz").await;
        assert_eq!(status(&resp), "200", "{resp}");
        assert_eq!(body(&resp), "ok");
        assert!(resp.contains("Content-Length: 2\r\n"), "{resp}");
        assert!(resp.contains("Connection: close\r\n"), "{resp}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn readyz_follows_the_ready_flag_with_reason() {
        let srv = Server::start().await;
        let resp = get(srv.addr, "/readyz").await;
        assert_eq!(status(&resp), "503", "{resp}");
        assert_eq!(body(&resp), "not ready: starting\n");
        srv.health.set_ready();
        let resp = get(srv.addr, "/readyz").await;
        assert_eq!(status(&resp), "200", "{resp}");
        assert_eq!(body(&resp), "ok");
        srv.health.set_not_ready("not the leader");
        let resp = get(srv.addr, "/readyz?verbose=1").await;
        assert_eq!(status(&resp), "503", "{resp}");
        assert_eq!(body(&resp), "not ready: not the leader\n");
        srv.stop().await;
    }

    #[tokio::test]
    async fn metrics_expose_every_operator_metric() {
        let srv = Server::start().await;
        srv.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                namespace: "ns".into(),
                database: "db".into(),
            })
            .inc();
        srv.metrics
            .failovers
            .get_or_create(&FailoverLabels {
                database: "db".into(),
                participant: "us".into(),
                shard: 2,
            })
            .inc();
        srv.metrics.leader.set(1);
        srv.metrics
            .shards_ready
            .get_or_create(&DatabaseLabels {
                namespace: "ns".into(),
                database: "db".into(),
            })
            .set(6);
        srv.metrics.reconcile_seconds.observe(0.02);
        let resp = get(srv.addr, "/metrics").await;
        assert_eq!(status(&resp), "200", "{resp}");
        assert!(
            resp.contains(&format!("Content-Type: {METRICS_CONTENT_TYPE}\r\n")),
            "{resp}"
        );
        let text = body(&resp);
        for line in [
            r#"aadb_operator_reconciles_total{namespace="ns",database="db"} 1"#,
            r#"aadb_operator_failovers_total{database="db",participant="us",shard="2"} 1"#,
            "aadb_operator_leader 1",
            r#"aadb_operator_shards_ready{namespace="ns",database="db"} 6"#,
            "aadb_operator_reconcile_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        for name in [
            "aadb_operator_reconcile_errors",
            "aadb_operator_failover_seconds",
            "aadb_operator_databases",
            "aadb_operator_shards_desired",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "missing {name} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_other_methods_405() {
        let srv = Server::start().await;
        let resp = get(srv.addr, "/nope").await;
        assert_eq!(status(&resp), "404", "{resp}");
        let resp = raw(
            srv.addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        assert_eq!(status(&resp), "405", "{resp}");
        assert!(resp.contains("Allow: GET, HEAD\r\n"), "{resp}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn head_has_headers_without_body() {
        let srv = Server::start().await;
        let resp = raw(srv.addr, b"HEAD /healthz HTTP/1.0\r\n\r\n").await;
        assert_eq!(status(&resp), "200", "{resp}");
        assert!(resp.contains("Content-Length: 2\r\n"), "{resp}");
        assert_eq!(body(&resp), "");
        srv.stop().await;
    }

    #[tokio::test]
    async fn garbage_gets_400_and_the_server_keeps_serving() {
        let srv = Server::start().await;
        let garbage: [&[u8]; 7] = [
            b"\x00\xff\xfe garbage\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /healthz\r\n\r\n",
            b"GET /healthz HTTP/2.0\r\n\r\n",
            b"GET healthz HTTP/1.1\r\n\r\n",
            b"GET /healthz HTTP/1.1 extra\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x", // closed mid-head
        ];
        for g in garbage {
            let mut s = TcpStream::connect(srv.addr).await.expect("connect");
            s.write_all(g).await.expect("write");
            s.shutdown().await.expect("half-close");
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
                .await
                .expect("answered in time")
                .expect("read");
            let resp = String::from_utf8_lossy(&out);
            assert_eq!(status(&resp), "400", "{g:?} -> {resp}");
        }
        // A connection closed without a request is closed without an answer.
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.shutdown().await.expect("half-close");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("closed in time")
            .expect("read");
        assert!(out.is_empty(), "{out:?}");
        let resp = get(srv.addr, "/healthz").await;
        assert_eq!(status(&resp), "200", "{resp}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn oversized_head_is_refused() {
        let srv = Server::start().await;
        let mut req = b"GET /healthz HTTP/1.1\r\n".to_vec();
        while req.len() <= MAX_HEAD_BYTES + 100 {
            req.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        req.extend_from_slice(b"\r\n");
        let resp = raw(srv.addr, &req).await;
        assert_eq!(status(&resp), "431", "{resp}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn slow_client_times_out_without_blocking_others() {
        let read_timeout = Duration::from_millis(300);
        let srv = Server::start_with_read_timeout(read_timeout).await;
        let mut slow = TcpStream::connect(srv.addr).await.expect("connect");
        slow.write_all(b"GET /hea").await.expect("write");
        // Others are served while the slow client holds its connection open.
        let resp = get(srv.addr, "/healthz").await;
        assert_eq!(status(&resp), "200", "{resp}");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut out))
            .await
            .expect("server gives up on the slow client")
            .expect("read");
        let resp = String::from_utf8_lossy(&out);
        assert_eq!(status(&resp), "408", "{resp}");
        srv.stop().await;
    }

    #[test]
    fn request_lines_are_parsed_strictly() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: a"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"HEAD /readyz?x=1 HTTP/1.0"),
            Some(("HEAD", "/readyz?x=1"))
        );
        assert_eq!(parse_request_line(b"get /metrics HTTP/1.1"), None);
        assert_eq!(parse_request_line(b"GET  /metrics HTTP/1.1"), None);
        assert_eq!(parse_request_line(b"GET /m\x01 HTTP/1.1"), None);
        assert_eq!(parse_request_line(b""), None);
        assert_eq!(parse_request_line(b"\xff\xff"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n", 0), Some(14));
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 0),
            Some(20)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n", 0), None);
    }
}
