//! The proxy's counters and their `/metrics` text.
//!
//! Contract: counting is a relaxed atomic add on the request path; the OpenMetrics text is
//! built at scrape time. Per-shard counters exist for shards 0..[`super::MAX_SHARDS`].

use super::{Core, MAX_SHARDS};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every connection of the proxy.
pub struct Counters {
    pub requests: Box<[AtomicU64]>,
    pub backend_errors: Box<[AtomicU64]>,
    pub retries: AtomicU64,
    pub unknown_outcomes: AtomicU64,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub bytes_to_shards: AtomicU64,
    pub topology_version: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        let zeros = || (0..MAX_SHARDS).map(|_| AtomicU64::new(0)).collect();
        Counters {
            requests: zeros(),
            backend_errors: zeros(),
            retries: AtomicU64::new(0),
            unknown_outcomes: AtomicU64::new(0),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            bytes_to_shards: AtomicU64::new(0),
            topology_version: AtomicU64::new(0),
        }
    }
}

impl Counters {
    pub fn request(&self, shard: usize) {
        if let Some(c) = self.requests.get(shard) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn backend_error(&self, shard: usize) {
        if let Some(c) = self.backend_errors.get(shard) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

fn counter(value: u64) -> Counter<u64, AtomicU64> {
    let c: Counter<u64, AtomicU64> = Counter::default();
    c.inc_by(value);
    c
}

/// Renders every metric as OpenMetrics text.
pub fn render(core: &Core) -> String {
    let m = &core.metrics;
    let mut registry = Registry::with_prefix("shard_node_proxy");
    let connections: Gauge = Gauge::default();
    connections.set(core.connections.load(Ordering::Relaxed) as i64);
    registry.register("connected_clients", "Connected clients", connections);
    registry.register(
        "connections_received",
        "Client connections accepted since start",
        counter(m.connections_received.load(Ordering::Relaxed)),
    );
    registry.register(
        "rejected_connections",
        "Client connections refused at maxclients",
        counter(m.rejected_connections.load(Ordering::Relaxed)),
    );
    let shards = core.routes().shards().min(MAX_SHARDS);
    let requests = Family::<ShardLabel, Counter<u64, AtomicU64>>::default();
    let errors = Family::<ShardLabel, Counter<u64, AtomicU64>>::default();
    for i in 0..shards {
        let label = ShardLabel {
            shard: i.to_string(),
        };
        requests
            .get_or_create(&label)
            .inc_by(m.requests[i].load(Ordering::Relaxed));
        errors
            .get_or_create(&label)
            .inc_by(m.backend_errors[i].load(Ordering::Relaxed));
    }
    registry.register("requests", "Requests sent to each shard", requests);
    registry.register("backend_errors", "Failed connections to each shard", errors);
    registry.register(
        "retries",
        "Requests sent again after a MOVED or READONLY refusal",
        counter(m.retries.load(Ordering::Relaxed)),
    );
    registry.register(
        "unknown_outcomes",
        "Requests whose connection failed after they were written",
        counter(m.unknown_outcomes.load(Ordering::Relaxed)),
    );
    registry.register(
        "backend_bytes",
        "Bytes of requests written to shards",
        counter(m.bytes_to_shards.load(Ordering::Relaxed)),
    );
    let version: Gauge = Gauge::default();
    version.set(m.topology_version.load(Ordering::Relaxed) as i64);
    registry.register(
        "topology_version",
        "Version of the topology in force",
        version,
    );
    let served: Gauge = Gauge::default();
    served.set(core.routes().served_slots() as i64);
    registry.register("served_slots", "Slots some shard serves", served);
    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    out
}
