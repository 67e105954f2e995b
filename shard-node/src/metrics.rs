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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
/// `shutdown` turns true. At most [`METRICS_MAX_CONNECTIONS`] connections are served at once;
/// a connection that does not send its request within [`METRICS_IO_TIMEOUT`] is closed.
pub async fn serve_http<F>(listener: TcpListener, mut shutdown: watch::Receiver<bool>, render: F)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((mut socket, _)) = accepted else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Too many scrapers at once: refuse rather than queue.
            tokio::spawn(async move {
                let refuse = async {
                    socket
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await?;
                    socket.shutdown().await?;
                    // Read what the client sent before closing: closing with unread bytes
                    // resets the connection, which can destroy the reply before it is read.
                    let mut sink = [0u8; 1024];
                    while socket.read(&mut sink).await? > 0 {}
                    Ok::<(), std::io::Error>(())
                };
                let _ = tokio::time::timeout(METRICS_IO_TIMEOUT, refuse).await;
            });
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut buf = vec![0u8; 4096];
            let mut used = 0;
            // Read the request head (bounded in size and time); the path is all that matters.
            let read_head = async {
                while used < buf.len() {
                    match socket.read(&mut buf[used..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => used += n,
                    }
                    if buf[..used].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            };
            if tokio::time::timeout(METRICS_IO_TIMEOUT, read_head)
                .await
                .is_err()
            {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..used]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body, ctype) = if path == "/metrics" {
                (
                    "200 OK",
                    render(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                ("404 Not Found", "not found\n".to_string(), "text/plain")
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(METRICS_IO_TIMEOUT, socket.write_all(response.as_bytes()))
                .await;
        });
    }
}
