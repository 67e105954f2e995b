//! Reading what a database's spec refers to: the password Secret and the API clients of the
//! participants' clusters.
//!
//! Contract: only reads, never writes. Secrets are read only from the database's own
//! namespace of the local cluster: the password Secret and kubeconfig Secrets are named
//! without a namespace. The password Secret's its key is `password` unless the spec names another. A
//! Secret or key that is missing, or a value that is not UTF-8, is a problem sentence saying
//! how to create it (the reconcile goes on without a password); an API failure reading it is a
//! [`ReconcileError`]. A cluster that cannot be reached is [`ReconcileError::Cluster`], which
//! reads as the [`ClusterError`](crate::clusters::ClusterError) sentence, except that a
//! kubeconfig refused as unsafe is a spec problem ([`unsafe_kubeconfigs`]).

use aadb_crd::{ActiveActiveDatabaseSpec, Auth};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::clusters::ClusterError;
use crate::plan::ClusterTarget;

use super::{Context, ReconcileError};

/// The client of the cluster `target`, for a database in `database_namespace`.
pub(super) async fn cluster_client(
    ctx: &Context,
    database_namespace: &str,
    target: &ClusterTarget,
) -> Result<kube::Client, ReconcileError> {
    Ok(ctx.clusters.client_for(database_namespace, target).await?)
}

/// The Secret `name` in `namespace` of the local cluster, if it exists.
pub(super) async fn password_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.clusters.local(), namespace);
    Ok(secrets.get_opt(name).await?)
}

/// The password `auth` refers to, for a database in `namespace`: `Ok(Err(problem))` when the
/// Secret or its key is missing, with a sentence saying how to create it.
pub(super) async fn password(
    ctx: &Context,
    namespace: &str,
    auth: &Auth,
) -> Result<Result<String, String>, ReconcileError> {
    let secret_ref = &auth.password_secret_ref;
    let key = secret_ref.key.clone().unwrap_or_else(|| "password".into());
    let found = password_secret(ctx, namespace, &secret_ref.name)
        .await?
        .and_then(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get(&key))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        });
    Ok(found.ok_or_else(|| {
        format!(
            "password Secret {namespace}/{} has no key {key:?}: create it (kubectl create secret generic {} --from-literal={key}=...)",
            secret_ref.name, secret_ref.name
        )
    }))
}

/// Sentences about the kubeconfig Secrets of `spec`'s participants (in `database_namespace`)
/// that are refused as unsafe ([`crate::clusters::kubeconfig_hazards`]); checked before any of
/// them is loaded. A Secret that cannot be read or parsed is not reported here: applying its
/// participant reports it.
pub(super) async fn unsafe_kubeconfigs(
    ctx: &Context,
    database_namespace: &str,
    spec: &ActiveActiveDatabaseSpec,
) -> Vec<String> {
    let mut refs: Vec<&aadb_crd::SecretKeyRef> = spec
        .participants
        .iter()
        .filter_map(|p| p.cluster.as_ref()?.kubeconfig_secret_ref.as_ref())
        .collect();
    refs.sort_by(|a, b| (&a.name, &a.key).cmp(&(&b.name, &b.key)));
    refs.dedup();
    let mut problems = Vec::new();
    for r in refs {
        let target = ClusterTarget::Remote(r.clone());
        if let Err(e @ ClusterError::Unsafe { .. }) =
            ctx.clusters.client_for(database_namespace, &target).await
        {
            problems.push(e.to_string());
        }
    }
    problems
}
