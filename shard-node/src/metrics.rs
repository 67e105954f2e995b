//! Prometheus metrics on `--metrics-port`.
//!
//! Contract: `GET /metrics` returns the OpenMetrics text of a registry built from the server's
//! counters at scrape time (nothing is counted twice on the command path); any other path gets
//! 404. The endpoint listens on the same address as the RESP server.

use crate::server::Shared;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    prefix: String,
}

/// Renders every metric as OpenMetrics text.
pub fn render(shared: &Shared) -> String {
    let mut registry = Registry::with_prefix("shard_node");
    let state = shared.state.lock();
    let db = &state.db;

    let connections: Gauge = Gauge::default();
    connections.set(db.clients.len() as i64);
    registry.register("connected_clients", "Connected clients", connections);

    let total_connections: Counter<u64, AtomicU64> = Counter::default();
    total_connections.inc_by(db.stats.total_connections);
    registry.register(
        "connections_received",
        "Connections accepted since start",
        total_connections,
    );

    let commands = Family::<CommandLabel, Counter<u64, AtomicU64>>::default();
    let command_seconds = Family::<CommandLabel, Counter<f64, AtomicU64>>::default();
    for (name, (calls, micros)) in &db.stats.commands {
        let label = CommandLabel {
            command: name.to_string(),
        };
        commands.get_or_create(&label).inc_by(*calls);
        command_seconds
            .get_or_create(&label)
            .inc_by(*micros as f64 / 1e6);
    }
    registry.register("commands", "Commands executed, by command", commands);
    registry.register(
        "command_duration_seconds",
        "Time spent executing commands, by command",
        command_seconds,
    );

    let errors = Family::<ErrorLabel, Counter<u64, AtomicU64>>::default();
    for (prefix, n) in &db.stats.error_replies {
        errors
            .get_or_create(&ErrorLabel {
                prefix: prefix.clone(),
            })
            .inc_by(*n);
    }
    registry.register("error_replies", "Error replies, by error prefix", errors);

    let keys: Gauge = Gauge::default();
    keys.set(db.ks.len() as i64);
    registry.register("keys", "Keys in the keyspace", keys);

    let memory: Gauge = Gauge::default();
    memory.set(db.used_memory as i64);
    registry.register(
        "used_memory_bytes",
        "Bytes allocated by the process",
        memory,
    );

    let effects: Counter<u64, AtomicU64> = Counter::default();
    effects.inc_by(db.ks.effects_applied);
    registry.register(
        "effects_applied",
        "CRDT effects applied (local and remote)",
        effects,
    );

    let tombstones: Gauge = Gauge::default();
    tombstones.set(db.ks.tombstones_pending() as i64);
    registry.register(
        "tombstones_pending",
        "Ordering-only state waiting for collection",
        tombstones,
    );

    if let Some(store) = &state.store {
        let stats = store.fsync_stats();
        let fsyncs: Counter<u64, AtomicU64> = Counter::default();
        fsyncs.inc_by(stats.count);
        registry.register("fsyncs", "Successful fsyncs of the effect log", fsyncs);
        let fsync_seconds: Counter<f64, AtomicU64> = Counter::default();
        fsync_seconds.inc_by(stats.total_micros as f64 / 1e6);
        registry.register(
            "fsync_duration_seconds",
            "Total time spent in fsync of the effect log",
            fsync_seconds,
        );
        let fsync_max: Gauge<f64, AtomicU64> = Gauge::default();
        fsync_max.set(stats.max_micros as f64 / 1e6);
        registry.register(
            "fsync_max_seconds",
            "Slowest fsync of the effect log",
            fsync_max,
        );
        let log_bytes: Gauge = Gauge::default();
        log_bytes.set(store.log_size() as i64);
        registry.register("log_bytes", "Size of the live effect log", log_bytes);
    }
    let persistence_ok: Gauge = Gauge::default();
    persistence_ok.set(i64::from(db.persistence_error.is_none()));
    registry.register(
        "persistence_ok",
        "1 while the effect log can be written",
        persistence_ok,
    );
    drop(state);

    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    out
}

/// Serves the node's `/metrics` until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.subscribe();
    serve_http(listener, shutdown, move || render(&shared)).await
}

/// Scrapes served at once; more connections are answered `503` and closed.
pub const METRICS_MAX_CONNECTIONS: usize = 32;
/// How long a scraper may take to send its request, and to read the answer.
pub const METRICS_IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` with the text `render` produces at each scrape (404 elsewhere) until
/// `shutdown` turns true, on `aadb-http`'s server: at most [`METRICS_MAX_CONNECTIONS`]
/// connections at once, and a scraper that does not send its request or read its answer
/// within [`METRICS_IO_TIMEOUT`] is disconnected.
pub async fn serve_http<F>(listener: TcpListener, mut shutdown: watch::Receiver<bool>, render: F)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let limits = aadb_http::Limits {
        max_connections: METRICS_MAX_CONNECTIONS,
        header_read_timeout: METRICS_IO_TIMEOUT,
        write_timeout: METRICS_IO_TIMEOUT,
        max_body_bytes: 64 * 1024,
        ..aadb_http::Limits::default()
    };
    let handler = move |req: aadb_http::Request| {
        let response = if req.path == "/metrics" {
            aadb_http::Response::new(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(),
            )
        } else {
            aadb_http::Response::text(404, "not found\n")
        };
        async move { response }
    };
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    aadb_http::serve(listener, limits, handler, stopped).await
}
