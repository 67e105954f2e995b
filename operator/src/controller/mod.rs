//! The controller of `ActiveActiveDatabase` objects.
//!
//! Contract, per reconcile of one object:
//! 1. the finalizer `aadb.dev/cleanup` is added before anything is created; on delete, every
//!    object of every participant this operator manages is deleted (StatefulSets, Services,
//!    PodDisruptionBudgets, volume claims) and the finalizer is released only once none is left;
//! 2. validate (pure, plus the placement rule and the kubeconfig Secrets' safety check): an
//!    invalid spec gets `SpecValid=False` with every problem as a sentence, phase `Invalid`, a
//!    Warning Event, and nothing is created or changed;
//! 3. plan and build (pure), then server-side apply with the field manager `aadb-operator` into
//!    each managed participant's cluster and namespace (created if missing), except over an
//!    object of the same name that lacks the database's labels (left alone and reported);
//!    objects of participants that left the spec are deleted from the local cluster;
//! 4. the database's [`Supervisor`] is started or given the new plan; it probes, fails over and
//!    wires links continuously;
//! 5. status is written from the supervisor's latest observation (conditions `Ready`,
//!    `Reconciling`, `Degraded`, `ReplicationHealthy`, `SpecValid`, `ObjectsOwned`, per-shard
//!    primaries, replicas, offsets and links), only when it changed; Events mark Ready and
//!    Degraded transitions, and conflicts with objects that are not the database's.
//!
//! Errors requeue with exponential backoff (0.5 s doubling to 60 s); one participant's
//! unreachable cluster does not stop the others from being reconciled. The operator never
//! panics on an object's content. Every reconcile of an object with a namespace is counted in
//! [`Metrics`]; a failed one under the `reason` [`ReconcileError::metric_label`].
//!
//! Source layout: this file holds the shared state ([`Context`]), the error type, the
//! controller loop ([`run`]), the finalizer dispatch and back-off, and the helpers that record
//! what a reconcile decided (Events, conditions, status). `dereference` reads what the spec
//! refers to (the password Secret, the clients of participants' clusters); `apply` is the apply
//! phase (validation, objects per participant, rollout detection, the supervisor, status from
//! [`crate::status`]); `prune` deletes the objects of participants that left the spec, and
//! every object on deletion; `metrics` is the handle on the Prometheus metrics.

mod apply;
mod certificates;
mod credentials;
mod dereference;
mod metrics;
mod prune;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aadb_crd::{ActiveActiveDatabase, ActiveActiveDatabaseStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::clusters::{ClusterClients, ClusterError};
use crate::conditions::upsert;
use crate::labels;
use crate::objects::ObjectsError;
use crate::status as rules;
use crate::supervisor::Supervisor;

pub use metrics::Metrics;
pub use prune::APPLIED_ANNOTATION;

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API refused or failed a call.
    #[error("{}", crate::status::api_error_sentence(.0))]
    Kube(#[from] kube::Error),
    /// A participant's cluster could not be reached.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// An object could not be built.
    #[error(transparent)]
    Objects(#[from] ObjectsError),
    /// The object has no namespace.
    #[error("object has no namespace")]
    NoNamespace,
    /// Deletion is still in progress.
    #[error("waiting for deletion: {0}")]
    Cleanup(String),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ReconcileError {
    /// The kind of this error as a stable snake_case word: the `reason` label of
    /// `aadb_operator_reconcile_errors_total`. Dashboards and alerts depend on these words;
    /// never change one.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "api",
            ReconcileError::Cluster(_) => "cluster_unreachable",
            ReconcileError::Objects(_) => "objects",
            ReconcileError::NoNamespace => "no_namespace",
            ReconcileError::Cleanup(_) => "cleanup",
            ReconcileError::Finalizer(_) => "finalizer",
        }
    }
}

/// Namespace and name of a database.
type Key = (String, String);

/// A running supervisor and the failover count the status had when it started.
struct Supervised {
    supervisor: Supervisor,
    failovers_base: u64,
}

/// Shared state of the controller.
pub struct Context {
    /// Clients of every cluster.
    pub clusters: ClusterClients,
    /// `--participant`: the only participant this operator manages.
    pub only_participant: Option<String>,
    /// Events are recorded with this.
    pub recorder: Recorder,
    /// Reconciles and failovers are counted here.
    pub metrics: Metrics,
    /// `--allow-foreign-namespaces`: participants may live in namespaces other than the
    /// database's (false by default).
    pub allow_foreign_namespaces: bool,
    supervisors: Mutex<HashMap<Key, Supervised>>,
    failures: Mutex<HashMap<Key, u32>>,
    status_written: Mutex<HashMap<Key, Instant>>,
}

impl Context {
    /// A context for the operator identified by `reporter`.
    pub fn new(
        clusters: ClusterClients,
        only_participant: Option<String>,
        reporter: Reporter,
        metrics: Metrics,
    ) -> Self {
        let recorder = Recorder::new(clusters.local(), reporter);
        Context {
            clusters,
            only_participant,
            recorder,
            metrics,
            allow_foreign_namespaces: false,
            supervisors: Mutex::default(),
            failures: Mutex::default(),
            status_written: Mutex::default(),
        }
    }

    fn supervisors(&self) -> MutexGuard<'_, HashMap<Key, Supervised>> {
        self.supervisors.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failures(&self) -> MutexGuard<'_, HashMap<Key, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status_written(&self) -> MutexGuard<'_, HashMap<Key, Instant>> {
        self.status_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the supervisor of database `key`, if one runs.
    fn stop_supervising(&self, key: &Key) {
        if let Some(s) = self.supervisors().remove(key) {
            s.supervisor.stop();
        }
    }
}

fn key(db: &ActiveActiveDatabase) -> Key {
    (db.namespace().unwrap_or_default(), db.name_any())
}

/// Runs the controller until `shutdown` resolves; `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.clusters.local();
    let (dbs, sts, svc, pdb) = match &namespace {
        Some(ns) => (
            Api::<ActiveActiveDatabase>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let owned =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    Controller::new(dbs, watcher::Config::default())
        .owns(sts, owned.clone())
        .owns(svc, owned.clone())
        .owns(pdb, owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile round");
            }
        })
        .await;
}

async fn reconcile(
    db: Arc<ActiveActiveDatabase>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let ns = db.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<ActiveActiveDatabase> = Api::namespaced(ctx.clusters.local(), &ns);
    let name = db.name_any();
    let result = finalizer(&api, labels::FINALIZER, db, |event| async {
        match event {
            FinalizerEvent::Apply(db) => apply::apply(db, ctx.clone()).await,
            FinalizerEvent::Cleanup(db) => prune::cleanup(db, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    });
    let (ready, total, databases) = {
        let sups = ctx.supervisors();
        let (r, t) = sups
            .get(&(ns.clone(), name.clone()))
            .map(|s| {
                let o = s.supervisor.observed();
                (o.ready_shards, o.total_shards)
            })
            .unwrap_or((0, 0));
        (r, t, sups.len())
    };
    ctx.metrics.supervised(databases);
    ctx.metrics.reconciled(
        &ns,
        &name,
        result.as_ref().map(drop),
        started.elapsed().as_secs_f64(),
        ready,
        total,
    );
    if result.is_ok() {
        ctx.failures().remove(&(ns, name));
    }
    result
}

fn error_policy(
    db: Arc<ActiveActiveDatabase>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let mut failures = ctx.failures();
    let n = failures.entry(key(&db)).or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_millis(500u64.saturating_mul(1 << (*n - 1).min(7)))
        .min(Duration::from_secs(60));
    tracing::warn!(database = %db.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Records an Event on `db`; a failure to record it is only logged.
async fn publish(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    kind: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_: kind,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &db.object_ref(&())).await {
        tracing::debug!(error = %e, "cannot record event");
    }
}

/// Writes the conditions `verdict` decided.
fn write_conditions(
    status: &mut ActiveActiveDatabaseStatus,
    verdict: &rules::Assessment,
    generation: Option<i64>,
    stamp: &Time,
) {
    for c in &verdict.conditions {
        upsert(
            &mut status.conditions,
            c.kind,
            c.status,
            c.reason,
            &c.message,
            generation,
            stamp,
        );
    }
}

/// How often a status that differs only in offsets and lag is written.
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(3);

/// The status without what changes with every write (offsets, lag).
fn without_progress(mut s: ActiveActiveDatabaseStatus) -> ActiveActiveDatabaseStatus {
    for shard in s.participants.iter_mut().flat_map(|p| p.shards.iter_mut()) {
        if let Some(p) = shard.primary.as_mut() {
            p.offset = None;
        }
        for r in &mut shard.replicas {
            r.offset = None;
        }
        for l in &mut shard.peers {
            l.lag_effects = None;
        }
    }
    s
}

/// Writes `status` unless it equals the current one; a change of offsets or lag alone is
/// written at most every [`PROGRESS_WRITE_INTERVAL`] (each write triggers another reconcile).
async fn write_status(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    status: ActiveActiveDatabaseStatus,
) -> Result<(), ReconcileError> {
    if db.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let k = key(db);
    let recently = ctx
        .status_written()
        .get(&k)
        .is_some_and(|t| t.elapsed() < PROGRESS_WRITE_INTERVAL);
    if recently && db.status.clone().map(without_progress) == Some(without_progress(status.clone()))
    {
        return Ok(());
    }
    let patch = json!({"status": status});
    let api: Api<ActiveActiveDatabase> = Api::namespaced(ctx.clusters.local(), &k.0);
    api.patch_status(
        &db.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.status_written().insert(k, Instant::now());
    Ok(())
}

/// Checks the CRD is installed; the error says how to install it.
pub async fn check_crd_installed(client: kube::Client) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    match crds.get_opt("activeactivedatabases.aadb.dev").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the ActiveActiveDatabase CRD is not installed: run `kubectl apply -f manifests/crd/activeactivedatabases.yaml` (or install the Helm chart charts/aadb-operator)".into()),
        Err(e) => Err(format!("cannot check for the ActiveActiveDatabase CRD: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant, with its label.
    fn one_of_each() -> Vec<(ReconcileError, &'static str)> {
        vec![
            (
                ReconcileError::Kube(kube::Error::Api(
                    kube::core::Status::failure("the server is on fire", "InternalError")
                        .with_code(500)
                        .boxed(),
                )),
                "api",
            ),
            (
                ReconcileError::Cluster(ClusterError::Invalid {
                    namespace: "ns".into(),
                    name: "west-kubeconfig".into(),
                    reason: "no key \"kubeconfig\"".into(),
                }),
                "cluster_unreachable",
            ),
            (
                ReconcileError::Objects(ObjectsError::for_test("StatefulSet db-east-0")),
                "objects",
            ),
            (ReconcileError::NoNamespace, "no_namespace"),
            (
                ReconcileError::Cleanup("ns: 1 StatefulSets left".into()),
                "cleanup",
            ),
            (
                ReconcileError::Finalizer("failed to add finalizer".into()),
                "finalizer",
            ),
        ]
    }

    #[test]
    fn every_error_has_its_own_stable_metric_label() {
        let all = one_of_each();
        for (error, label) in &all {
            // Exhaustive without a wildcard: a new variant does not compile until it is added
            // here, and then to `one_of_each`.
            match error {
                ReconcileError::Kube(_)
                | ReconcileError::Cluster(_)
                | ReconcileError::Objects(_)
                | ReconcileError::NoNamespace
                | ReconcileError::Cleanup(_)
                | ReconcileError::Finalizer(_) => {}
            }
            assert_eq!(error.metric_label(), *label, "{error:?}");
        }
        let mut labels: Vec<&str> = all.iter().map(|(e, _)| e.metric_label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len(), "labels are distinct: {labels:?}");
        for label in labels {
            assert!(
                !label.is_empty()
                    && !label.starts_with('_')
                    && !label.ends_with('_')
                    && label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label:?} is snake_case"
            );
        }
    }
}
