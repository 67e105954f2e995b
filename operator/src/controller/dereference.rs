//! Reading what a database's spec refers to: the password Secret and the API clients of the
//! participants' clusters.
//!
//! Contract: only reads, never writes. The password Secret is read from the database's
//! namespace of the local cluster; its key is `password` unless the spec names another. A
//! Secret or key that is missing, or a value that is not UTF-8, is a problem sentence saying
//! how to create it (the reconcile goes on without a password); an API failure reading it is a
//! [`ReconcileError`]. A cluster that cannot be reached is [`ReconcileError::Cluster`], which
//! reads as the [`ClusterError`](crate::clusters::ClusterError) sentence.

use aadb_crd::Auth;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

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
