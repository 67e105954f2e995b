//! Deleting what a database no longer needs: the objects of participants that left the spec,
//! and every object of the database when it is deleted.
//!
//! Contract:
//! - [`APPLIED_ANNOTATION`] on the database records, as JSON, every participant this operator
//!   created objects for (name, namespace, kubeconfig Secret of its cluster); a recorded
//!   participant the plan no longer manages has its StatefulSets, Deployments, Services,
//!   PodDisruptionBudgets and password copy deleted in its own cluster and namespace, and its
//!   volume claims too when `spec.persistence.reclaimPolicy` is `Delete` (by default they are
//!   kept, so the participant added back finds its data), with a Normal Event
//!   `ParticipantRemoved` saying which; one whose cluster cannot be reached stays recorded and
//!   is retried on the next reconcile;
//! - in the database's namespace of the local cluster, StatefulSets, Services and
//!   PodDisruptionBudgets labelled with a participant no longer in the plan (or, with
//!   `--participant`, not managed by this operator) are deleted;
//! - on deletion ([`cleanup`]) the supervisor stops and, in every managed participant's
//!   namespace and the database's own, the database's StatefulSets and Deployments (foreground), Services,
//!   PodDisruptionBudgets and password copies are deleted, then, with `reclaimPolicy: Delete`,
//!   its volume claims once no StatefulSet is left (with `Retain`, the default, they are kept
//!   and the Event says so). While anything is left, or a cluster cannot be reached, the cleanup
//!   fails with [`ReconcileError::Cleanup`] naming what is left and why, and the finalizer
//!   stays; once nothing is left, a Normal Event `Deleted` is recorded.

use std::sync::Arc;

use aadb_crd::ActiveActiveDatabase;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::json;

use crate::labels;
use crate::plan::{plan, ClusterTarget, Topology};

use super::{dereference, publish, Context, ReconcileError};

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

impl AppliedParticipant {
    /// The cluster the participant's objects are in.
    fn cluster(&self) -> ClusterTarget {
        match &self.kubeconfig {
            None => ClusterTarget::Local,
            Some(r) => ClusterTarget::Remote(r.clone()),
        }
    }
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
pub(super) async fn prune_left_participants(
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
        let client = match dereference::cluster_client(ctx, &topo.namespace, &gone.cluster()).await
        {
            Ok(c) => c,
            Err(e) => {
                // Retried next time: keep it recorded.
                tracing::warn!(participant = %gone.name, error = %e, "cannot reach a participant that left the spec");
                kept.push(gone.clone());
                continue;
            }
        };
        let delete_claims = db.spec.effective_reclaim_policy() == aadb_crd::ReclaimPolicy::Delete;
        delete_left_participant(&client, topo, gone, delete_claims).await?;
        let claims = if delete_claims {
            "and its volume claims"
        } else {
            "and kept its volume claims (reclaimPolicy Retain)"
        };
        publish(
            ctx,
            db,
            EventType::Normal,
            "ParticipantRemoved",
            format!(
                "deleted the objects of participant {} (namespace {}) {claims}",
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

/// Deletes every object of participant `gone` of the database in `topo` from its namespace in
/// the cluster of `client`.
async fn delete_left_participant(
    client: &kube::Client,
    topo: &Topology,
    gone: &AppliedParticipant,
    delete_claims: bool,
) -> Result<(), ReconcileError> {
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
    Api::<Deployment>::namespaced(client.clone(), &gone.namespace)
        .delete_collection(&dp, &lp)
        .await?;
    Api::<Service>::namespaced(client.clone(), &gone.namespace)
        .delete_collection(&dp, &lp)
        .await?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &gone.namespace)
        .delete_collection(&dp, &lp)
        .await?;
    if delete_claims {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &gone.namespace)
            .delete_collection(&dp, &lp)
            .await?;
    }
    Api::<Secret>::namespaced(client.clone(), &gone.namespace)
        .delete_collection(&dp, &lp)
        .await?;
    Api::<NetworkPolicy>::namespaced(client.clone(), &gone.namespace)
        .delete_collection(&dp, &lp)
        .await?;
    Ok(())
}

/// Deletes, from the local cluster's database namespace, objects of participants no longer in
/// the spec.
pub(super) async fn prune_departed(ctx: &Context, topo: &Topology) -> Result<(), ReconcileError> {
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
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &topo.namespace);
    for o in deployments
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|o| !known(*o))
    {
        let _ = deployments
            .delete(&o.name_any(), &DeleteParams::background())
            .await;
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

/// The finalizer's cleanup: deletes every object of the database this operator manages and
/// succeeds only once none is left.
pub(super) async fn cleanup(
    db: Arc<ActiveActiveDatabase>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = db.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = db.name_any();
    ctx.stop_supervising(&(ns.clone(), name.clone()));
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
    let delete_claims = db.spec.effective_reclaim_policy() == aadb_crd::ReclaimPolicy::Delete;
    for (target, namespace) in places {
        match dereference::cluster_client(&ctx, &ns, &target).await {
            Ok(client) => {
                remaining.extend(delete_all_in(&client, &namespace, &lp, delete_claims).await?)
            }
            Err(e) => remaining.push(format!("{namespace}: {e}")),
        }
    }
    if remaining.is_empty() {
        let message = if delete_claims {
            "every object of the database was deleted"
        } else {
            "every object of the database was deleted except its volume claims (reclaimPolicy Retain)"
        };
        publish(&ctx, &db, EventType::Normal, "Deleted", message.into()).await;
        Ok(Action::await_change())
    } else {
        Err(ReconcileError::Cleanup(remaining.join("; ")))
    }
}

/// Deletes the database's objects selected by `lp` from `namespace` of the cluster of
/// `client`; returns what is left, with the reason of any refused deletion.
async fn delete_all_in(
    client: &kube::Client,
    namespace: &str,
    lp: &ListParams,
    delete_claims: bool,
) -> Result<Option<String>, ReconcileError> {
    let dp = DeleteParams::foreground();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let svc: Api<Service> = Api::namespaced(client.clone(), namespace);
    let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    let pvc: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    // A refused deletion (RBAC, say) is reported: the objects left are counted below and the
    // finalizer stays, so the reason must be visible.
    let mut refused = Vec::new();
    let mut note = |kind: &str, r: Result<(), kube::Error>| {
        if let Err(e) = r {
            refused.push(format!("delete {kind}: {e}"));
        }
    };
    note(
        "StatefulSets",
        sts.delete_collection(&dp, lp).await.map(drop),
    );
    note(
        "Deployments",
        deployments.delete_collection(&dp, lp).await.map(drop),
    );
    let plain = DeleteParams::default();
    note(
        "Services",
        svc.delete_collection(&plain, lp).await.map(drop),
    );
    note(
        "PodDisruptionBudgets",
        pdb.delete_collection(&plain, lp).await.map(drop),
    );
    // Password copies (labelled as the database's); the user's own Secrets carry no such
    // labels.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    note(
        "Secrets",
        secrets.delete_collection(&plain, lp).await.map(drop),
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    note(
        "NetworkPolicies",
        policies.delete_collection(&plain, lp).await.map(drop),
    );
    let left_sts = sts.list(lp).await?.items.len() + deployments.list(lp).await?.items.len();
    let left_svc = svc.list(lp).await?.items.len();
    let left_pdb = pdb.list(lp).await?.items.len();
    // Claims go once their pods are gone (the StatefulSet retention policy also deletes them;
    // this covers claims kept by an earlier scale-down).
    if left_sts == 0 && delete_claims {
        note("claims", pvc.delete_collection(&plain, lp).await.map(drop));
    }
    let left_pvc = if delete_claims {
        pvc.list(lp).await?.items.len()
    } else {
        0
    };
    if left_sts + left_svc + left_pdb + left_pvc == 0 {
        return Ok(None);
    }
    let why = if refused.is_empty() {
        String::new()
    } else {
        format!(" ({})", refused.join("; "))
    };
    Ok(Some(format!(
        "{namespace}: {left_sts} StatefulSets, {left_svc} Services, {left_pdb} PodDisruptionBudgets, {left_pvc} claims left{why}"
    )))
}
