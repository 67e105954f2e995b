//! The controller's handle on the operator's Prometheus metrics.
//!
//! Contract: [`Metrics`] writes into the metrics [`OperatorMetrics`] registered (their names
//! and label names are defined there, in [`crate::http`]); it only records, never fails and
//! never blocks on I/O. After every reconcile of an object with a namespace:
//! [`Metrics::supervised`] sets `aadb_operator_databases`, and [`Metrics::reconciled`] counts
//! `aadb_operator_reconciles_total`, observes `aadb_operator_reconcile_seconds`, sets
//! `aadb_operator_shards_ready` and `aadb_operator_shards_desired`, and for a failed reconcile
//! counts `aadb_operator_reconcile_errors_total` with `reason` the error's
//! [`metric_label`](ReconcileError::metric_label). Each failover counts
//! `aadb_operator_failovers_total` and observes `aadb_operator_failover_seconds`
//! ([`Metrics::failed_over`], handed to supervisors as [`Metrics::failover_hook`]).

use std::sync::Arc;

use crate::http::{
    DatabaseLabels, FailoverLabels, OperatorMetrics, ReconcileErrorLabels, ReconcileLabels,
};
use crate::supervisor::FailoverHook;

use super::ReconcileError;

/// Where the controller records what it did; cheap to clone (clones share the values).
#[derive(Clone, Debug)]
pub struct Metrics {
    metrics: OperatorMetrics,
}

impl Metrics {
    /// A handle recording into `metrics` (a clone of the registered metrics shares their
    /// values).
    pub fn new(metrics: OperatorMetrics) -> Self {
        Metrics { metrics }
    }

    /// One reconcile of database `namespace/database` ended with `outcome` after `seconds`;
    /// the database's supervisor last saw `ready` of `total` shards ready.
    pub fn reconciled(
        &self,
        namespace: &str,
        database: &str,
        outcome: Result<(), &ReconcileError>,
        seconds: f64,
        ready: u32,
        total: u32,
    ) {
        let m = &self.metrics;
        m.reconciles
            .get_or_create(&ReconcileLabels {
                namespace: namespace.into(),
                database: database.into(),
            })
            .inc();
        if let Err(error) = outcome {
            m.reconcile_errors
                .get_or_create(&ReconcileErrorLabels {
                    namespace: namespace.into(),
                    database: database.into(),
                    reason: error.metric_label().into(),
                })
                .inc();
        }
        m.reconcile_seconds.observe(seconds);
        let db = DatabaseLabels {
            namespace: namespace.into(),
            database: database.into(),
        };
        m.shards_ready.get_or_create(&db).set(i64::from(ready));
        m.shards_desired.get_or_create(&db).set(i64::from(total));
    }

    /// This process supervises `databases` databases.
    pub fn supervised(&self, databases: usize) {
        self.metrics
            .databases
            .set(i64::try_from(databases).unwrap_or(i64::MAX));
    }

    /// The primary of shard `shard` of `participant` in `database` was replaced, `seconds`
    /// after it was judged failed.
    pub fn failed_over(&self, database: &str, participant: &str, shard: u32, seconds: f64) {
        self.metrics
            .failovers
            .get_or_create(&FailoverLabels {
                database: database.into(),
                participant: participant.into(),
                shard,
            })
            .inc();
        self.metrics.failover_seconds.observe(seconds);
    }

    /// [`Metrics::failed_over`] as the callback a supervisor takes.
    pub fn failover_hook(&self) -> FailoverHook {
        let metrics = self.clone();
        Arc::new(
            move |database: &str, participant: &str, shard: u32, seconds: f64| {
                metrics.failed_over(database, participant, shard, seconds)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn a_failed_reconcile_is_counted_under_its_reason() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(OperatorMetrics::new(&mut registry));
        metrics.supervised(2);
        metrics.reconciled("ns", "db", Ok(()), 0.01, 3, 6);
        let cleanup = ReconcileError::Cleanup("ns: 1 StatefulSets left".into());
        metrics.reconciled("ns", "db", Err(&cleanup), 0.02, 4, 6);
        metrics.failover_hook()("db", "east", 1, 0.7);
        let text = exposition(&registry);
        for line in [
            r#"aadb_operator_reconciles_total{namespace="ns",database="db"} 2"#,
            r#"aadb_operator_reconcile_errors_total{namespace="ns",database="db",reason="cleanup"} 1"#,
            "aadb_operator_reconcile_seconds_count 2",
            r#"aadb_operator_shards_ready{namespace="ns",database="db"} 4"#,
            r#"aadb_operator_shards_desired{namespace="ns",database="db"} 6"#,
            "aadb_operator_databases 2",
            r#"aadb_operator_failovers_total{database="db",participant="east",shard="1"} 1"#,
            "aadb_operator_failover_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(
            text.matches("aadb_operator_reconcile_errors_total{")
                .count(),
            1,
            "{text}"
        );
    }
}
