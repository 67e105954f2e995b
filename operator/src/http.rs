//! The operator's HTTP endpoint and its metrics.
//!
//! Contract:
//! - [`serve`] answers on `aadb-http`'s server: `GET /metrics` is the OpenMetrics text
//!   exposition of the registry, `GET /healthz` is `200 ok` while the process runs, `GET
//!   /readyz` is `200 ok` when [`HealthState`] is ready and `503` with the reason otherwise;
//!   other paths are `404`, other methods `405` with `Allow`. `HEAD` is answered like `GET`
//!   without a body. Bad requests, slow clients and the connection cap
//!   ([`MAX_CONNECTIONS`], [`READ_TIMEOUT`], [`WRITE_TIMEOUT`]) are handled as that crate's
//!   contract says. When `shutdown` resolves, [`serve`] stops accepting and returns.
//! - [`OperatorMetrics::new`] registers every operator metric, each named `aadb_operator_*`.

use std::sync::Arc;
use std::time::Duration;

use aadb_http::{Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
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
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: HealthState,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = aadb_http::Limits {
        max_connections: MAX_CONNECTIONS,
        header_read_timeout: READ_TIMEOUT,
        write_timeout: WRITE_TIMEOUT,
        ..aadb_http::Limits::default()
    };
    let handler = move |req: Request| {
        let response = respond(&req, &registry, &health);
        async move { response }
    };
    aadb_http::serve(listener, limits, handler, shutdown).await
}

/// The answer to one request.
fn respond(req: &Request, registry: &Registry, health: &HealthState) -> Response {
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Response::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD");
    }
    match req.path.as_str() {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => Response::new(200, METRICS_CONTENT_TYPE, body),
                Err(_) => Response::text(500, "encoding the metrics failed\n"),
            }
        }
        "/healthz" => Response::text(200, "ok"),
        "/readyz" => match health.readiness() {
            Readiness::Ready => Response::text(200, "ok"),
            Readiness::NotReady(reason) => Response::text(503, format!("not ready: {reason}\n")),
        },
        _ => Response::text(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    //! The operator's routes over a real socket; the server's own behaviour (bad requests,
    //! limits, slow clients) is tested in `aadb-http`.
    use super::*;
    use aadb_http::client;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    struct Server {
        addr: SocketAddr,
        health: HealthState,
        metrics: OperatorMetrics,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<()>,
    }

    impl Server {
        async fn start() -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let mut registry = Registry::default();
            let metrics = OperatorMetrics::new(&mut registry);
            let health = HealthState::new();
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(
                listener,
                Arc::new(registry),
                health.clone(),
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
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("server returns after shutdown")
                .expect("server task did not panic");
        }
    }

    /// Sends `request` raw, reads until the server closes, returns the whole response.
    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("server answers and closes in time")
            .expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get(addr: SocketAddr, path: &str) -> client::Response {
        client::get(addr, path, Duration::from_secs(5))
            .await
            .expect("answered")
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
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
        srv.stop().await;
    }

    #[tokio::test]
    async fn readyz_follows_the_ready_flag_with_reason() {
        let srv = Server::start().await;
        let resp = get(srv.addr, "/readyz").await;
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (503, "not ready: starting\n")
        );
        srv.health.set_ready();
        let resp = get(srv.addr, "/readyz").await;
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
        srv.health.set_not_ready("not the leader");
        let resp = get(srv.addr, "/readyz?verbose=1").await;
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (503, "not ready: not the leader\n")
        );
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
        let resp = raw(srv.addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert_eq!(status(&resp), "200", "{resp}");
        assert!(
            resp.contains(&format!("content-type: {METRICS_CONTENT_TYPE}\r\n")),
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
        assert_eq!(get(srv.addr, "/nope").await.status, 404);
        let resp = raw(
            srv.addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await;
        assert_eq!(status(&resp), "405", "{resp}");
        assert!(resp.contains("allow: GET, HEAD\r\n"), "{resp}");
        srv.stop().await;
    }

    #[tokio::test]
    async fn head_has_headers_without_body() {
        let srv = Server::start().await;
        let resp = raw(srv.addr, b"HEAD /healthz HTTP/1.0\r\n\r\n").await;
        assert_eq!(status(&resp), "200", "{resp}");
        assert!(resp.contains("content-length: 2\r\n"), "{resp}");
        assert_eq!(body(&resp), "");
        srv.stop().await;
    }
}
