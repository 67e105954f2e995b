//! The controller of `ActiveActiveDatabase` objects.
//!
//! Contract, per reconcile of one object:
//! 1. the finalizer `aadb.dev/cleanup` is added before anything is created; on delete, every
//!    object of every participant this operator manages is deleted (StatefulSets, Services,
//!    PodDisruptionBudgets, volume claims) and the finalizer is released only once none is left;
//! 2. validate (pure): an invalid spec gets `SpecValid=False` with every problem as a sentence,
//!    phase `Invalid`, a Warning Event, and nothing is created or changed;
//! 3. plan and build (pure), then server-side apply with the field manager `aadb-operator` into
//!    each managed participant's cluster and namespace (created if missing); objects of
//!    participants that left the spec are deleted from the local cluster;
//! 4. the database's [`Supervisor`] is started or given the new plan; it probes, fails over and
//!    wires links continuously;
//! 5. status is written from the supervisor's latest observation (conditions `Ready`,
//!    `Reconciling`, `Degraded`, `ReplicationHealthy`, `SpecValid`, per-shard primaries,
//!    replicas, offsets and links), only when it changed; Events mark Ready and Degraded
//!    transitions.
//!
//! Errors requeue with exponential backoff (0.5 s doubling to 60 s); one participant's
//! unreachable cluster does not stop the others from being reconciled. The operator never
//! panics on an object's content.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aadb_crd::{ActiveActiveDatabase, ActiveActiveDatabaseStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::clusters::{ClusterClients, ClusterError};
use crate::conditions::{self, upsert};
use crate::failover::FailoverSettings;
use crate::labels;
use crate::objects::{participant_objects, ObjectsError};
use crate::plan::{plan, ClusterTarget, ParticipantPlan, Topology};
use crate::status::{self as rules, Observed, Phase};
use crate::supervisor::{FailoverHook, Supervisor, SupervisorSpec};
use crate::validate::validate;

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

/// Callback after each reconcile: (namespace, database, success, seconds, ready shards, total
/// shards, databases supervised).
pub type ReconcileHook = Arc<dyn Fn(&str, &str, bool, f64, u32, u32, usize) + Send + Sync>;

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
    /// Called on every failover.
    pub on_failover: FailoverHook,
    /// Called after every reconcile.
    pub on_reconcile: ReconcileHook,
    supervisors: Mutex<HashMap<(String, String), Supervised>>,
    failures: Mutex<HashMap<(String, String), u32>>,
    status_written: Mutex<HashMap<(String, String), std::time::Instant>>,
}

impl Context {
    /// A context for the operator identified by `reporter`.
    pub fn new(
        clusters: ClusterClients,
        only_participant: Option<String>,
        reporter: Reporter,
        on_failover: FailoverHook,
        on_reconcile: ReconcileHook,
    ) -> Self {
        let recorder = Recorder::new(clusters.local(), reporter);
        Context {
            clusters,
            only_participant,
            recorder,
            on_failover,
            on_reconcile,
            supervisors: Mutex::default(),
            failures: Mutex::default(),
            status_written: Mutex::default(),
        }
    }

    fn supervisors(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Supervised>> {
        self.supervisors.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key(db: &ActiveActiveDatabase) -> (String, String) {
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
    let started = std::time::Instant::now();
    let ns = db.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<ActiveActiveDatabase> = Api::namespaced(ctx.clusters.local(), &ns);
    let name = db.name_any();
    let result = finalizer(&api, labels::FINALIZER, db, |event| async {
        match event {
            FinalizerEvent::Apply(db) => apply(db, ctx.clone()).await,
            FinalizerEvent::Cleanup(db) => cleanup(db, ctx.clone()).await,
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
    (ctx.on_reconcile)(
        &ns,
        &name,
        result.is_ok(),
        started.elapsed().as_secs_f64(),
        ready,
        total,
        databases,
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
    api: &Api<ActiveActiveDatabase>,
    db: &ActiveActiveDatabase,
    status: ActiveActiveDatabaseStatus,
) -> Result<(), ReconcileError> {
    if db.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let k = key(db);
    let recently = ctx
        .status_written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&k)
        .is_some_and(|t| t.elapsed() < PROGRESS_WRITE_INTERVAL);
    if recently && db.status.clone().map(without_progress) == Some(without_progress(status.clone()))
    {
        return Ok(());
    }
    let patch = json!({"status": status});
    api.patch_status(
        &db.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.status_written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(k, std::time::Instant::now());
    Ok(())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn apply(db: Arc<ActiveActiveDatabase>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = db.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = db.name_any();
    let api: Api<ActiveActiveDatabase> = Api::namespaced(ctx.clusters.local(), &ns);
    let generation = db.metadata.generation;
    let previous = db.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.regions = Some(db.spec.participants.len() as u32);
    let stamp = now();

    let problems = validate(&name, &db.spec, ctx.only_participant.as_deref());
    if !problems.is_empty() {
        if let Some(s) = ctx.supervisors().remove(&(ns.clone(), name.clone())) {
            s.supervisor.stop();
        }
        let verdict = rules::invalid(&problems);
        let message = problems.join("; ");
        let already = previous.conditions.iter().any(|c| {
            c.type_ == conditions::SPEC_VALID && c.status == "False" && c.message == message
        });
        status.phase = Some(verdict.phase.as_str().into());
        write_conditions(&mut status, &verdict, generation, &stamp);
        write_status(&ctx, &api, &db, status).await?;
        if !already {
            publish(&ctx, &db, EventType::Warning, "InvalidSpec", message).await;
        }
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    let topo = plan(&name, &ns, &db.spec, ctx.only_participant.as_deref());
    let owner = db.controller_owner_ref(&());
    let mut participant_errors: BTreeMap<String, String> = BTreeMap::new();
    let mut unreached: BTreeMap<String, String> = BTreeMap::new();
    let mut rolling_out: Vec<String> = Vec::new();
    for p in topo.participants.iter().filter(|p| p.managed) {
        let local_here = p.cluster == ClusterTarget::Local && p.namespace == ns;
        let owner = owner.as_ref().filter(|_| local_here);
        match apply_participant(&ctx, &topo, &db, p, owner).await {
            Ok(pending) => rolling_out.extend(pending),
            Err(e) => {
                tracing::warn!(database = %name, participant = %p.name, error = %e, "cannot apply participant");
                let into = if matches!(e, ReconcileError::Cluster(_)) {
                    &mut unreached
                } else {
                    &mut participant_errors
                };
                into.insert(p.name.clone(), e.to_string());
            }
        }
    }
    if let Err(e) = prune_departed(&ctx, &topo).await {
        participant_errors.insert("(pruning)".into(), e.to_string());
    }
    if let Err(e) = prune_left_participants(&ctx, &db, &topo).await {
        participant_errors.insert("(pruning)".into(), e.to_string());
    }

    let password = match &db.spec.auth {
        None => None,
        Some(a) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.clusters.local(), &ns);
            let key = a
                .password_secret_ref
                .key
                .clone()
                .unwrap_or_else(|| "password".into());
            match secrets.get_opt(&a.password_secret_ref.name).await? {
                Some(s) => s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&key))
                    .and_then(|b| String::from_utf8(b.0.clone()).ok()),
                None => None,
            }
            .or_else(|| {
                participant_errors.insert(
                    "(auth)".into(),
                    format!(
                        "password Secret {ns}/{} has no key {key:?}: create it (kubectl create secret generic {} --from-literal={key}=...)",
                        a.password_secret_ref.name, a.password_secret_ref.name
                    ),
                );
                None
            })
        }
    };
    let failover = db.spec.effective_failover();
    let sup_spec = SupervisorSpec {
        topology: topo.clone(),
        settings: FailoverSettings {
            enabled: failover.enabled,
            detection_timeout: Duration::from_millis(u64::from(failover.detection_timeout_millis)),
            probes: failover.probes.max(1),
        },
        password,
        reference: db.object_ref(&()),
    };
    let observation = {
        let mut sups = ctx.supervisors();
        let entry = sups.entry((ns.clone(), name.clone()));
        let s = match entry {
            std::collections::hash_map::Entry::Occupied(o) => {
                o.get().supervisor.update(sup_spec);
                o.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                tracing::info!(database = %name, namespace = %ns, participants = topo.participants.len(), shards = db.spec.shards, "supervising");
                v.insert(Supervised {
                    supervisor: Supervisor::start(
                        sup_spec,
                        ctx.clusters.clone(),
                        ctx.recorder.clone(),
                        ctx.on_failover.clone(),
                    ),
                    failovers_base: previous.failovers,
                })
            }
        };
        (s.supervisor.observed(), s.failovers_base)
    };
    let (obs, base) = observation;
    status.failovers = status.failovers.max(base + obs.failovers);
    if obs.ticks > 0 {
        status.participants = obs.participants.clone();
        for p in topo.participants.iter().filter(|p| p.managed) {
            if let Some(e) = participant_errors.get(&p.name).or(unreached.get(&p.name)) {
                if let Some(ps) = status.participants.iter_mut().find(|s| s.name == p.name) {
                    ps.message = Some(e.clone());
                }
            }
        }
    }
    // Before the first observation the total comes from the plan.
    let planned_shards: u32 = topo
        .participants
        .iter()
        .filter(|p| p.managed)
        .map(|p| p.shards.len() as u32)
        .sum();
    let total_shards = if obs.ticks > 0 {
        obs.total_shards
    } else {
        planned_shards
    };
    status.ready_shards = Some(format!("{}/{}", obs.ready_shards, total_shards));
    let previous_phase = previous.phase.as_deref().and_then(Phase::parse);
    let verdict = rules::assess(&Observed {
        previous_phase,
        spec_changed: previous.observed_generation != generation,
        seen: obs.ticks > 0,
        // An observation made with an older plan says nothing about this generation.
        observed_this_plan: obs.topology.as_ref() == Some(&topo),
        rolling_out,
        ready_shards: obs.ready_shards,
        total_shards,
        replication_healthy: obs.replication_healthy,
        links_down: obs.links_down.clone(),
        unreached,
        problems: participant_errors,
        holding: obs.holding.clone(),
        errors: obs.errors.clone(),
    });
    write_conditions(&mut status, &verdict, generation, &stamp);
    let phase = verdict.phase;
    if previous_phase != Some(phase) {
        let detail = status
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        tracing::info!(database = %name, namespace = %ns, from = ?previous.phase, to = phase.as_str(), detail = %detail, "phase changed");
    }
    status.phase = Some(phase.as_str().into());
    write_status(&ctx, &api, &db, status).await?;
    if previous_phase != Some(phase) {
        match phase {
            Phase::Ready => {
                publish(
                    &ctx,
                    &db,
                    EventType::Normal,
                    "Ready",
                    verdict.shards_message,
                )
                .await
            }
            Phase::Degraded => {
                publish(
                    &ctx,
                    &db,
                    EventType::Warning,
                    "Degraded",
                    verdict.trouble.join("; "),
                )
                .await
            }
            _ => {}
        }
    }
    Ok(Action::requeue(if verdict.all_ready {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(1)
    }))
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

async fn apply_participant(
    ctx: &Context,
    topo: &Topology,
    db: &ActiveActiveDatabase,
    p: &ParticipantPlan,
    owner: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<Vec<String>, ReconcileError> {
    let client = ctx.clusters.client_for(&topo.namespace, &p.cluster).await?;
    if p.namespace != topo.namespace || p.cluster != ClusterTarget::Local {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(&p.namespace).await?.is_none() {
            let nsobj: Namespace =
                serde_json::from_value(json!({"metadata": {"name": p.namespace}}))
                    .map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
            match namespaces.create(&PostParams::default(), &nsobj).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(auth) = &db.spec.auth {
        if p.namespace != topo.namespace || p.cluster != ClusterTarget::Local {
            copy_password(ctx, topo, &client, p, &auth.password_secret_ref.name).await?;
        }
    }
    let objs = participant_objects(topo, &db.spec, p, owner)?;
    let params = PatchParams::apply(labels::FIELD_MANAGER).force();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &p.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
    let mut rolling_out = Vec::new();
    for o in &objs.stateful_sets {
        let mut o = o.clone();
        if let Some((keep, primary)) = primary_beyond(&pods, &o).await? {
            // Scaling down would delete the primary's pod: keep it until the supervisor has
            // handed its role over to a pod that stays.
            rolling_out.push(format!(
                "{} keeps {keep} pods until its primary {primary} has handed over",
                o.name_any()
            ));
            o.spec.replicas = Some(keep);
        }
        let o = &o;
        let applied = sts.patch(&o.name_any(), &params, &Patch::Apply(o)).await?;
        if let Some(pending) = rollout_pending(&applied) {
            rolling_out.push(format!("{} {pending}", applied.name_any()));
        }
    }
    let svc: Api<Service> = Api::namespaced(client.clone(), &p.namespace);
    for o in &objs.services {
        svc.patch(&o.name_any(), &params, &Patch::Apply(o)).await?;
    }
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client, &p.namespace);
    for o in &objs.disruption_budgets {
        pdb.patch(&o.name_any(), &params, &Patch::Apply(o)).await?;
    }
    tracing::debug!(participant = %p.name, namespace = %p.namespace, statefulsets = objs.stateful_sets.len(), services = objs.services.len(), "applied");
    Ok(rolling_out)
}

/// When `sts` (as it is to be applied) asks for fewer pods than the ordinal of the pod labeled
/// primary among its pods: the number of pods that keeps that pod, and its name.
async fn primary_beyond(
    pods: &Api<Pod>,
    sts: &StatefulSet,
) -> Result<Option<(i32, String)>, ReconcileError> {
    let spec = &sts.spec;
    let want = spec.replicas.unwrap_or(1);
    let selector: Vec<String> = spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .chain([format!("{}={}", labels::ROLE, labels::ROLE_PRIMARY)])
        .collect();
    let list = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await?;
    let beyond = list
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let name = pod.metadata.name.clone()?;
            let ordinal: i32 = name.rsplit('-').next()?.parse().ok()?;
            (ordinal >= want).then_some((ordinal + 1, name))
        })
        .max();
    Ok(beyond)
}

/// How far a StatefulSet is from running its current spec on every pod, if it is not there:
/// its controller has not seen the latest change, or not every pod runs the latest revision.
fn rollout_pending(sts: &StatefulSet) -> Option<String> {
    let want = sts.spec.replicas.unwrap_or(1);
    let status = sts.status.clone().unwrap_or_default();
    if status.observed_generation < sts.metadata.generation {
        return Some("has a change its controller has not picked up yet".into());
    }
    // The OnDelete strategy never advances `currentRevision`: count the pods on the latest
    // revision, and the ready ones (a replaced pod is on it before it is ready).
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < want {
        return Some(format!("has {updated}/{want} pods on the latest revision"));
    }
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < want {
        return Some(format!("has {ready}/{want} pods ready"));
    }
    None
}

/// Copies the password Secret from the database's namespace into participant `p`'s namespace
/// (labelled as the database's, so deleting the database deletes the copy). A Secret of the
/// same name that the operator did not create is left alone.
async fn copy_password(
    ctx: &Context,
    topo: &Topology,
    client: &kube::Client,
    p: &ParticipantPlan,
    name: &str,
) -> Result<(), ReconcileError> {
    let source: Api<Secret> = Api::namespaced(ctx.clusters.local(), &topo.namespace);
    let Some(secret) = source.get_opt(name).await? else {
        return Ok(());
    };
    let target: Api<Secret> = Api::namespaced(client.clone(), &p.namespace);
    if let Some(existing) = target.get_opt(name).await? {
        let ours = existing
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::MANAGED_BY))
            .is_some_and(|v| v == labels::MANAGER);
        if !ours {
            return Ok(());
        }
    }
    let mut l = labels::database_labels(&topo.database, &topo.namespace);
    l.insert(labels::PARTICIPANT.into(), p.name.clone());
    let copy: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": p.namespace, "labels": l},
        "type": secret.type_.clone().unwrap_or_else(|| "Opaque".into()),
        "data": secret.data.clone().unwrap_or_default(),
    }))
    .map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
    target
        .patch(
            name,
            &PatchParams::apply(labels::FIELD_MANAGER).force(),
            &Patch::Apply(&copy),
        )
        .await?;
    Ok(())
}

/// Annotation on the database recording where this operator created participants, so that a
/// participant removed from the spec can be deleted from its cluster.
pub const APPLIED_ANNOTATION: &str = "aadb.dev/applied-participants";

/// One participant this operator created objects for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct AppliedParticipant {
    name: String,
    namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kubeconfig: Option<aadb_crd::SecretKeyRef>,
}

fn applied_participants(topo: &Topology) -> Vec<AppliedParticipant> {
    topo.participants
        .iter()
        .filter(|p| p.managed)
        .map(|p| AppliedParticipant {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            kubeconfig: match &p.cluster {
                ClusterTarget::Local => None,
                ClusterTarget::Remote(r) => Some(r.clone()),
            },
        })
        .collect()
}

/// Deletes the objects of participants recorded in [`APPLIED_ANNOTATION`] that the plan no
/// longer manages (in their own cluster and namespace), then records the current ones.
async fn prune_left_participants(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    topo: &Topology,
) -> Result<(), ReconcileError> {
    let before: Vec<AppliedParticipant> = db
        .annotations()
        .get(APPLIED_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let now = applied_participants(topo);
    let mut kept = Vec::new();
    for gone in before.iter().filter(|b| !now.contains(b)) {
        let target = match &gone.kubeconfig {
            None => ClusterTarget::Local,
            Some(r) => ClusterTarget::Remote(r.clone()),
        };
        let client = match ctx.clusters.client_for(&topo.namespace, &target).await {
            Ok(c) => c,
            Err(e) => {
                // Retried next time: keep it recorded.
                tracing::warn!(participant = %gone.name, error = %e, "cannot reach a participant that left the spec");
                kept.push(gone.clone());
                continue;
            }
        };
        let selector = format!(
            "{},{}={}",
            labels::database_selector(&topo.database, &topo.namespace),
            labels::PARTICIPANT,
            gone.name
        );
        let lp = ListParams::default().labels(&selector);
        let dp = DeleteParams::background();
        tracing::info!(participant = %gone.name, namespace = %gone.namespace, "deleting a participant that left the spec");
        Api::<StatefulSet>::namespaced(client.clone(), &gone.namespace)
            .delete_collection(&dp, &lp)
            .await?;
        Api::<Service>::namespaced(client.clone(), &gone.namespace)
            .delete_collection(&dp, &lp)
            .await?;
        Api::<PodDisruptionBudget>::namespaced(client.clone(), &gone.namespace)
            .delete_collection(&dp, &lp)
            .await?;
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &gone.namespace)
            .delete_collection(&dp, &lp)
            .await?;
        Api::<Secret>::namespaced(client.clone(), &gone.namespace)
            .delete_collection(&dp, &lp)
            .await?;
        publish(
            ctx,
            db,
            EventType::Normal,
            "ParticipantRemoved",
            format!(
                "deleted the objects of participant {} (namespace {})",
                gone.name, gone.namespace
            ),
        )
        .await;
    }
    let mut record = now;
    record.extend(kept);
    if record != before {
        let value =
            serde_json::to_string(&record).map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
        let patch = json!({"metadata": {"annotations": {APPLIED_ANNOTATION: value}}});
        Api::<ActiveActiveDatabase>::namespaced(ctx.clusters.local(), &topo.namespace)
            .patch(
                &db.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(())
}

/// Deletes, from the local cluster's database namespace, objects of participants no longer in
/// the spec.
async fn prune_departed(ctx: &Context, topo: &Topology) -> Result<(), ReconcileError> {
    let selector = labels::database_selector(&topo.database, &topo.namespace);
    let lp = ListParams::default().labels(&selector);
    let known = |o: &dyn ResourceLabels| {
        o.participant().is_none_or(|p| {
            topo.participant(p)
                .is_some_and(|pp| pp.managed || ctx.only_participant.is_none())
        })
    };
    let client = ctx.clusters.local();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &topo.namespace);
    for o in sts.list(&lp).await?.items.iter().filter(|o| !known(*o)) {
        tracing::info!(statefulset = %o.name_any(), "deleting objects of a participant that left the spec");
        let _ = sts.delete(&o.name_any(), &DeleteParams::background()).await;
    }
    let svc: Api<Service> = Api::namespaced(client.clone(), &topo.namespace);
    for o in svc.list(&lp).await?.items.iter().filter(|o| !known(*o)) {
        let _ = svc.delete(&o.name_any(), &DeleteParams::background()).await;
    }
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client, &topo.namespace);
    for o in pdb.list(&lp).await?.items.iter().filter(|o| !known(*o)) {
        let _ = pdb.delete(&o.name_any(), &DeleteParams::background()).await;
    }
    Ok(())
}

trait ResourceLabels {
    fn participant(&self) -> Option<&str>;
}

impl<T: ResourceExt> ResourceLabels for T {
    fn participant(&self) -> Option<&str> {
        self.labels().get(labels::PARTICIPANT).map(String::as_str)
    }
}

async fn cleanup(
    db: Arc<ActiveActiveDatabase>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = db.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = db.name_any();
    if let Some(s) = ctx.supervisors().remove(&(ns.clone(), name.clone())) {
        s.supervisor.stop();
    }
    let topo = plan(&name, &ns, &db.spec, ctx.only_participant.as_deref());
    let selector = labels::database_selector(&name, &ns);
    let lp = ListParams::default().labels(&selector);
    let mut remaining = Vec::new();
    // Also the database's own namespace in the local cluster, for objects of participants that
    // left the spec.
    let mut places: Vec<(ClusterTarget, String)> = topo
        .participants
        .iter()
        .filter(|p| p.managed)
        .map(|p| (p.cluster.clone(), p.namespace.clone()))
        .collect();
    places.push((ClusterTarget::Local, ns.clone()));
    places.dedup();
    for (target, namespace) in places {
        let client = match ctx.clusters.client_for(&ns, &target).await {
            Ok(c) => c,
            Err(e) => {
                remaining.push(format!("{namespace}: {e}"));
                continue;
            }
        };
        let dp = DeleteParams::foreground();
        let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
        let svc: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
        let pvc: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        // A refused deletion (RBAC, say) is reported: the objects left are counted below and
        // the finalizer stays, so the reason must be visible.
        let mut refused = Vec::new();
        let mut note = |kind: &str, r: Result<(), kube::Error>| {
            if let Err(e) = r {
                refused.push(format!("delete {kind}: {e}"));
            }
        };
        note(
            "StatefulSets",
            sts.delete_collection(&dp, &lp).await.map(drop),
        );
        let plain = DeleteParams::default();
        note(
            "Services",
            svc.delete_collection(&plain, &lp).await.map(drop),
        );
        note(
            "PodDisruptionBudgets",
            pdb.delete_collection(&plain, &lp).await.map(drop),
        );
        // Password copies (labelled as the database's); the user's own Secrets carry no such
        // labels.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        note(
            "Secrets",
            secrets.delete_collection(&plain, &lp).await.map(drop),
        );
        let left_sts = sts.list(&lp).await?.items.len();
        let left_svc = svc.list(&lp).await?.items.len();
        let left_pdb = pdb.list(&lp).await?.items.len();
        // Claims go once their pods are gone (the StatefulSet retention policy also deletes
        // them; this covers claims kept by an earlier scale-down).
        if left_sts == 0 {
            note("claims", pvc.delete_collection(&plain, &lp).await.map(drop));
        }
        let left_pvc = pvc.list(&lp).await?.items.len();
        if left_sts + left_svc + left_pdb + left_pvc > 0 {
            let why = if refused.is_empty() {
                String::new()
            } else {
                format!(" ({})", refused.join("; "))
            };
            remaining.push(format!(
                "{namespace}: {left_sts} StatefulSets, {left_svc} Services, {left_pdb} PodDisruptionBudgets, {left_pvc} claims left{why}"
            ));
        }
    }
    if remaining.is_empty() {
        publish(
            &ctx,
            &db,
            EventType::Normal,
            "Deleted",
            "every object of the database was deleted".into(),
        )
        .await;
        Ok(Action::await_change())
    } else {
        Err(ReconcileError::Cleanup(remaining.join("; ")))
    }
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
