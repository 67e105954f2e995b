//! The apply phase of a reconcile: from a database's spec to its objects in every managed
//! participant's cluster, its supervisor, and its status.
//!
//! Contract:
//! - an invalid spec ([`validate`]; a participant outside the database's namespace without
//!   `--allow-foreign-namespaces` ([`namespace_problems`]); a kubeconfig Secret refused as
//!   unsafe ([`dereference::unsafe_kubeconfigs`])) stops the database's supervisor, gets `SpecValid=False`
//!   and phase `Invalid` (from [`rules::invalid`]), a Warning Event `InvalidSpec` when the
//!   problems changed, and is requeued after 300 s; nothing is created or changed;
//! - a valid spec is planned ([`plan`]); each participant this operator manages gets its
//!   namespace (created if missing, unless it is the database's own in the local cluster), a
//!   copy of the password Secret when it lives elsewhere, and its StatefulSets, Services and
//!   PodDisruptionBudgets, server-side applied with the field manager `aadb-operator`; only
//!   objects in the database's own namespace and cluster get an owner reference. A failure of
//!   one participant is reported in the status and does not stop the others;
//! - before an object is applied, it is read: one that exists without the database's labels
//!   (`aadb.dev/database`, `aadb.dev/database-namespace`) is someone else's and is left
//!   unchanged; the status says so (`ObjectsOwned=False`, reason `ObjectConflict`, naming its
//!   kind, namespace and name) and a Warning Event `ObjectConflict` is recorded when the set
//!   of conflicts changes. The same holds for the password copies, and for the proxies'
//!   Deployment and budget when proxies are turned off (deleted only if they are the
//!   database's);
//! - a StatefulSet is not scaled below the pod labelled primary: it keeps that pod until the
//!   supervisor has handed the role over, which is reported as rolling out, as is every
//!   StatefulSet whose pods do not all run and are ready on its latest revision;
//! - then the departed participants are pruned ([`super::prune`]), the password is read
//!   ([`super::dereference`]), the supervisor is started or given the new plan, and the status
//!   assessed by [`rules::assess`] from what this phase did and the supervisor's latest
//!   observation is written; Events `Ready` and `Degraded` mark the transitions to those
//!   phases. A Ready database is requeued after 3 s, any other after 1 s.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aadb_crd::{ActiveActiveDatabase, ActiveActiveDatabaseStatus};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::conditions;
use crate::failover::FailoverSettings;
use crate::labels;
use crate::objects::participant_objects;
use crate::plan::{plan, ClusterTarget, ParticipantPlan, Topology};
use crate::status::{self as rules, Observed, Phase};
use crate::supervisor::{Observation, Supervisor, SupervisorSpec};
use crate::validate::{namespace_problems, validate};

use super::{certificates, credentials, users};
use super::{
    dereference, key, prune, publish, write_conditions, write_status, Context, ReconcileError,
    Supervised,
};

/// What applying the participants (and pruning, and reading the password) found, for the
/// status.
#[derive(Debug, Default)]
struct Applied {
    /// Problems by participant (or `(pruning)`, `(auth)`), as sentences.
    problems: BTreeMap<String, String>,
    /// Participants whose cluster could not be reached, with the reason.
    unreached: BTreeMap<String, String>,
    /// StatefulSets not yet running their spec on every pod, with how far they are.
    rolling_out: Vec<String>,
    /// Objects left alone because they exist without this database's labels: sentences
    /// naming kind, namespace and name.
    conflicts: Vec<String>,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The apply phase of one reconcile of `db` (the finalizer is in place).
pub(super) async fn apply(
    db: Arc<ActiveActiveDatabase>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = db.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = db.name_any();
    let mut status = db.status.clone().unwrap_or_default();
    status.observed_generation = db.metadata.generation;
    status.regions = Some(db.spec.participants.len() as u32);
    let stamp = now();

    let mut problems = validate(&name, &db.spec, ctx.only_participant.as_deref());
    problems.extend(namespace_problems(
        &ns,
        &db.spec,
        ctx.allow_foreign_namespaces,
    ));
    problems.extend(dereference::unsafe_kubeconfigs(&ctx, &ns, &db.spec).await);
    if !problems.is_empty() {
        return reject(&ctx, &db, &problems, status, &stamp).await;
    }

    let topo = plan(&name, &ns, &db.spec, ctx.only_participant.as_deref());
    // The Secrets exist before the pods that read them.
    let passwords = credentials::ensure(&ctx, &db, &topo).await?;
    let tls = certificates::ensure(&ctx, &db, &topo).await?;
    let (app_password, auth_problem) = match &db.spec.auth {
        None => (passwords.app.clone(), None),
        Some(auth) => match dereference::password(&ctx, &ns, auth).await? {
            Ok(password) => (Some(password), None),
            Err(problem) => (None, Some(problem)),
        },
    };
    // The users file follows the application password (rotation keeps the previous one for
    // a while); without a password yet, it is written once there is one.
    let mut user_problems = Vec::new();
    if let Some(password) = &app_password {
        let (rotation, problems) = users::ensure(&ctx, &db, &topo, password).await?;
        status.password_rotation = rotation;
        user_problems = problems;
    }
    let mut applied = apply_participants(&ctx, &db, &topo).await;
    for problem in &passwords.problems {
        applied
            .problems
            .insert("(passwords)".into(), problem.clone());
    }
    let tls_ca = match tls {
        None => None,
        Some(Ok(ca)) => Some(ca),
        Some(Err(problem)) => {
            applied.problems.insert("(tls)".into(), problem);
            None
        }
    };
    if let Err(e) = prune::prune_departed(&ctx, &topo).await {
        applied.problems.insert("(pruning)".into(), e.to_string());
    }
    if let Err(e) = prune::prune_left_participants(&ctx, &db, &topo).await {
        applied.problems.insert("(pruning)".into(), e.to_string());
    }
    if let Some(problem) = auth_problem {
        applied.problems.insert("(auth)".into(), problem);
    }
    if !user_problems.is_empty() {
        applied
            .problems
            .insert("(users)".into(), user_problems.join("; "));
    }
    let (obs, failovers_base) = supervise(&ctx, &db, &topo, passwords.internal, tls_ca);
    status.failovers = status.failovers.max(failovers_base + obs.failovers);
    let password = crate::plan::password_secret(&name, &db.spec);
    status.password_secret_ref = Some(aadb_crd::SecretKeyRef {
        name: password.name,
        key: Some(password.key),
    });
    report(&ctx, &db, &topo, applied, &obs, status, &stamp).await
}

/// Writes the verdict on a spec with `problems` and stops the database's supervisor.
async fn reject(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    problems: &[String],
    mut status: ActiveActiveDatabaseStatus,
    stamp: &Time,
) -> Result<Action, ReconcileError> {
    ctx.stop_supervising(&key(db));
    let verdict = rules::invalid(problems);
    let message = problems.join("; ");
    let already = db.status.as_ref().is_some_and(|previous| {
        previous.conditions.iter().any(|c| {
            c.type_ == conditions::SPEC_VALID && c.status == "False" && c.message == message
        })
    });
    status.phase = Some(verdict.phase.as_str().into());
    write_conditions(&mut status, &verdict, db.metadata.generation, stamp);
    write_status(ctx, db, status).await?;
    if !already {
        publish(ctx, db, EventType::Warning, "InvalidSpec", message).await;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Applies the objects of every participant this operator manages; a participant that fails
/// is recorded and the others go on.
async fn apply_participants(ctx: &Context, db: &ActiveActiveDatabase, topo: &Topology) -> Applied {
    let mut applied = Applied::default();
    let owner = db.controller_owner_ref(&());
    for p in topo.participants.iter().filter(|p| p.managed) {
        let local_here = p.cluster == ClusterTarget::Local && p.namespace == topo.namespace;
        let owner = owner.as_ref().filter(|_| local_here);
        match apply_participant(ctx, topo, db, p, owner, &mut applied.conflicts).await {
            Ok(pending) => applied.rolling_out.extend(pending),
            Err(e) => {
                tracing::warn!(database = %db.name_any(), participant = %p.name, error = %e, "cannot apply participant");
                let into = if matches!(e, ReconcileError::Cluster(_)) {
                    &mut applied.unreached
                } else {
                    &mut applied.problems
                };
                into.insert(p.name.clone(), e.to_string());
            }
        }
    }
    applied
}

/// Starts the database's supervisor or gives it the new plan; returns its latest observation
/// and the failover count the status had when it started.
fn supervise(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    topo: &Topology,
    password: Option<crate::node_client::Credentials>,
    tls_ca: Option<String>,
) -> (Arc<Observation>, u64) {
    let failover = db.spec.effective_failover();
    let spec = SupervisorSpec {
        topology: topo.clone(),
        settings: FailoverSettings {
            enabled: failover.enabled,
            detection_timeout: Duration::from_millis(u64::from(failover.detection_timeout_millis)),
            probes: failover.probes.max(1),
        },
        password,
        tls_ca,
        reference: db.object_ref(&()),
    };
    let mut sups = ctx.supervisors();
    let s = match sups.entry(key(db)) {
        Entry::Occupied(o) => {
            o.get().supervisor.update(spec);
            o.into_mut()
        }
        Entry::Vacant(v) => {
            tracing::info!(database = %topo.database, namespace = %topo.namespace, participants = topo.participants.len(), shards = db.spec.shards, "supervising");
            v.insert(Supervised {
                supervisor: Supervisor::start(
                    spec,
                    ctx.clusters.clone(),
                    ctx.recorder.clone(),
                    ctx.metrics.failover_hook(),
                ),
                failovers_base: db.status.as_ref().map_or(0, |s| s.failovers),
            })
        }
    };
    (s.supervisor.observed(), s.failovers_base)
}

/// Assesses and writes the status of a valid spec from what this phase `applied` and the
/// supervisor's observation `obs`; records the Events of a phase change.
async fn report(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    topo: &Topology,
    applied: Applied,
    obs: &Observation,
    mut status: ActiveActiveDatabaseStatus,
    stamp: &Time,
) -> Result<Action, ReconcileError> {
    let previous = db.status.clone().unwrap_or_default();
    let generation = db.metadata.generation;
    if obs.ticks > 0 {
        status.participants = obs.participants.clone();
        for p in topo.participants.iter().filter(|p| p.managed) {
            let error = applied
                .problems
                .get(&p.name)
                .or(applied.unreached.get(&p.name));
            if let Some(e) = error {
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
        observed_this_plan: obs.topology.as_ref() == Some(topo),
        rolling_out: applied.rolling_out,
        ready_shards: obs.ready_shards,
        total_shards,
        replication_healthy: obs.replication_healthy,
        proxies_not_ready: obs.proxies_not_ready.clone(),
        links_down: obs.links_down.clone(),
        unreached: applied.unreached,
        problems: applied.problems,
        conflicts: applied.conflicts.clone(),
        holding: obs.holding.clone(),
        errors: obs.errors.clone(),
    });
    write_conditions(&mut status, &verdict, generation, stamp);
    let conflicts_before = previous
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::OBJECTS_OWNED && c.status == "False")
        .map(|c| c.message.clone());
    let conflicts_now = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::OBJECTS_OWNED && c.status == "False")
        .map(|c| c.message.clone());
    let phase = verdict.phase;
    let changed = previous_phase != Some(phase);
    if changed {
        let detail = status
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        tracing::info!(database = %topo.database, namespace = %topo.namespace, from = ?previous.phase, to = phase.as_str(), detail = %detail, "phase changed");
    }
    status.phase = Some(phase.as_str().into());
    write_status(ctx, db, status).await?;
    if let Some(message) = conflicts_now.filter(|m| Some(m) != conflicts_before.as_ref()) {
        publish(ctx, db, EventType::Warning, "ObjectConflict", message).await;
    }
    let requeue = if verdict.all_ready {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(1)
    };
    if changed {
        announce(ctx, db, verdict).await;
    }
    Ok(Action::requeue(requeue))
}

/// Records the Event of a transition to the phase `verdict` decided, if it has one.
async fn announce(ctx: &Context, db: &ActiveActiveDatabase, verdict: rules::Assessment) {
    match verdict.phase {
        Phase::Ready => publish(ctx, db, EventType::Normal, "Ready", verdict.shards_message).await,
        Phase::Degraded => {
            publish(
                ctx,
                db,
                EventType::Warning,
                "Degraded",
                verdict.trouble.join("; "),
            )
            .await
        }
        _ => {}
    }
}

/// Applies participant `p`'s namespace, password copy and objects; returns the StatefulSets
/// still rolling out.
async fn apply_participant(
    ctx: &Context,
    topo: &Topology,
    db: &ActiveActiveDatabase,
    p: &ParticipantPlan,
    owner: Option<&OwnerReference>,
    conflicts: &mut Vec<String>,
) -> Result<Vec<String>, ReconcileError> {
    let client = dereference::cluster_client(ctx, &topo.namespace, &p.cluster).await?;
    let elsewhere = p.namespace != topo.namespace || p.cluster != ClusterTarget::Local;
    if elsewhere {
        ensure_namespace(&client, &p.namespace).await?;
    }
    if elsewhere {
        let secrets = [
            crate::plan::password_secret(&topo.database, &db.spec).name,
            crate::plan::internal_secret(&topo.database).name,
            crate::plan::acl_secret(&topo.database),
        ];
        for secret in secrets
            .into_iter()
            .chain(crate::plan::tls_secret(&topo.database, &db.spec))
        {
            if let Some(conflict) = copy_password(ctx, topo, &client, p, &secret).await? {
                conflicts.push(conflict);
            }
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
        if let Some(applied) = apply_owned(&sts, topo, &o, &params, conflicts).await? {
            if let Some(pending) = rollout_pending(&applied) {
                rolling_out.push(format!("{} {pending}", applied.name_any()));
            }
        }
    }
    let svc: Api<Service> = Api::namespaced(client.clone(), &p.namespace);
    for o in &objs.services {
        apply_owned(&svc, topo, o, &params, conflicts).await?;
    }
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &p.namespace);
    for o in &objs.disruption_budgets {
        apply_owned(&pdb, topo, o, &params, conflicts).await?;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &p.namespace);
    for o in &objs.deployments {
        apply_owned(&deployments, topo, o, &params, conflicts).await?;
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &p.namespace);
    for o in &objs.network_policies {
        apply_owned(&policies, topo, o, &params, conflicts).await?;
    }
    if objs.network_policies.is_empty() && db.spec.network_policy.is_none() {
        // Turned off (or never on): none of ours stays.
        let lp = ListParams::default().labels(&format!(
            "{},{}={}",
            labels::database_selector(&topo.database, &topo.namespace),
            labels::PARTICIPANT,
            p.name
        ));
        match policies
            .delete_collection(&DeleteParams::default(), &lp)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if objs.deployments.is_empty() {
        // Proxies turned off: their Deployment and budget go (only if they are ours).
        delete_owned(&deployments, topo, &p.proxy_name).await?;
        delete_owned(&pdb, topo, &p.proxy_name).await?;
    }
    tracing::debug!(participant = %p.name, namespace = %p.namespace, statefulsets = objs.stateful_sets.len(), services = objs.services.len(), "applied");
    Ok(rolling_out)
}

/// Creates namespace `name` in the cluster of `client` unless it exists.
async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), ReconcileError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let nsobj: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
        .map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
    match namespaces.create(&PostParams::default(), &nsobj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
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
/// same name that is not this database's is left alone, and returned as a conflict.
async fn copy_password(
    ctx: &Context,
    topo: &Topology,
    client: &kube::Client,
    p: &ParticipantPlan,
    name: &str,
) -> Result<Option<String>, ReconcileError> {
    let Some(secret) = dereference::password_secret(ctx, &topo.namespace, name).await? else {
        return Ok(None);
    };
    let target: Api<Secret> = Api::namespaced(client.clone(), &p.namespace);
    if let Some(conflict) = foreign(&target, topo, name).await? {
        return Ok(Some(conflict));
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
    Ok(None)
}

/// Whether `labels` mark an object as database `topo`'s.
fn belongs(topo: &Topology, labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(labels::DATABASE) == Some(&topo.database)
            && l.get(labels::DATABASE_NAMESPACE) == Some(&topo.namespace)
    })
}

/// A sentence naming object `name` of `api` when it exists without database `topo`'s labels
/// (someone else's object, which the operator must not take over); None when it does not
/// exist or is the database's.
async fn foreign<K>(
    api: &Api<K>,
    topo: &Topology,
    name: &str,
) -> Result<Option<String>, ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(found) = api.get_metadata_opt(name).await? else {
        return Ok(None);
    };
    if belongs(topo, found.metadata.labels.as_ref()) {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} {}/{name} exists and is not this database's (it lacks the labels {}={} and {}={}): the operator leaves it alone; delete or rename it",
        K::kind(&()),
        found.metadata.namespace.as_deref().unwrap_or_default(),
        labels::DATABASE,
        topo.database,
        labels::DATABASE_NAMESPACE,
        topo.namespace,
    )))
}

/// Server-side applies `object` (with force) unless an object of that name exists that is not
/// the database's: then it is left unchanged, the conflict is added to `conflicts`, and None
/// is returned.
async fn apply_owned<K>(
    api: &Api<K>,
    topo: &Topology,
    object: &K,
    params: &PatchParams,
    conflicts: &mut Vec<String>,
) -> Result<Option<K>, ReconcileError>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let name = object.name_any();
    if let Some(conflict) = foreign(api, topo, &name).await? {
        conflicts.push(conflict);
        return Ok(None);
    }
    Ok(Some(api.patch(&name, params, &Patch::Apply(object)).await?))
}

/// Deletes object `name` of `api` if it exists and is the database's.
async fn delete_owned<K>(api: &Api<K>, topo: &Topology, name: &str) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_metadata_opt(name).await? {
        Some(found) if belongs(topo, found.metadata.labels.as_ref()) => {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        _ => Ok(()),
    }
}
