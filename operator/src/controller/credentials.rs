//! The database's two passwords: the application's (the `default` user) and the internal
//! user's (replicas, peers, proxies and the operator).
//!
//! Contract:
//! - Without `spec.auth`, the application password lives in the Secret named after the
//!   database ([`crate::plan::password_secret`]), key `password`, in the database's namespace.
//!   The operator creates it with a random password when it does not exist, and never changes
//!   an existing one, so a user may create it beforehand with a password of their choice.
//! - The internal password always lives in the Secret `<database>-internal`, key `password`,
//!   created the same way; clients of the database never need it.
//! - Created Secrets carry the database's labels and an owner reference to the database, so
//!   they go when it goes.
//! - When every region has an operator of its own (`--participant`), only the operator of the
//!   first participant generates the Secrets; the others copy them from that participant's
//!   cluster (through its kubeconfig Secret) into their own, so every region has the same
//!   passwords. Until they exist there, the copy is a problem sentence naming what is awaited.
//! - A Secret that exists without the key, or whose value is not UTF-8, is a problem sentence
//!   (the reconcile goes on without that password); an API failure is a [`ReconcileError`].

use aadb_crd::ActiveActiveDatabase;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::labels;
use crate::node_client::Credentials;
use crate::plan::{internal_secret, password_secret, ParticipantPlan, SecretKey, Topology};

use super::{Context, ReconcileError};

/// Bytes of randomness in a generated password (shown as twice as many hex digits).
const GENERATED_BYTES: usize = 24;

/// The passwords of a database, as far as they could be read.
#[derive(Debug, Default)]
pub(super) struct Passwords {
    /// The internal user's credentials, which the operator uses towards the nodes.
    pub internal: Option<Credentials>,
    /// The generated application password (none with `spec.auth`).
    pub app: Option<String>,
    /// Sentences about Secrets that could not be used.
    pub problems: Vec<String>,
}

/// A random password of hex digits.
fn generate() -> Result<String, ReconcileError> {
    let mut bytes = [0u8; GENERATED_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ReconcileError::Finalizer("no randomness for a password".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Makes sure both Secrets exist (creating those that the operator generates, or copying
/// them from the first participant's cluster) and reads the internal password.
pub(super) async fn ensure(
    ctx: &Context,
    db: &ActiveActiveDatabase,
    topo: &Topology,
) -> Result<Passwords, ReconcileError> {
    let name = db.name_any();
    let ns = db.namespace().unwrap_or_default();
    let owner = db.controller_owner_ref(&());
    let mut keys = vec![];
    if db.spec.auth.is_none() {
        keys.push(password_secret(&name, &db.spec));
    }
    keys.push(internal_secret(&name));
    // With an operator per region, the first participant's operator generates.
    let source = match (&ctx.only_participant, topo.participants.first()) {
        (Some(me), Some(first)) if *me != first.name => Some(first),
        _ => None,
    };
    let mut out = Passwords::default();
    for key in &keys {
        let value = match source {
            None => ensure_secret(ctx, &ns, &name, key, owner.as_ref()).await?,
            Some(first) => copy_from_first(ctx, topo, first, key, owner.as_ref()).await?,
        };
        match value {
            Ok(password) if key.name == internal_secret(&name).name => {
                out.internal = Some(Credentials {
                    user: Some(crate::plan::INTERNAL_USER.to_string()),
                    password,
                })
            }
            Ok(password) => out.app = Some(password),
            Err(problem) => out.problems.push(problem),
        }
    }
    Ok(out)
}

/// Copies Secret `key` from the first participant's cluster into the database's namespace
/// here (updating a copy of ours that differs); returns the password.
async fn copy_from_first(
    ctx: &Context,
    topo: &Topology,
    first: &ParticipantPlan,
    key: &SecretKey,
    owner: Option<&OwnerReference>,
) -> Result<Result<String, String>, ReconcileError> {
    let remote = super::dereference::cluster_client(ctx, &topo.namespace, &first.cluster).await?;
    let there: Api<Secret> = Api::namespaced(remote, &first.namespace);
    let Some(value) = there
        .get_opt(&key.name)
        .await?
        .as_ref()
        .and_then(|s| value_of(s, &key.key))
    else {
        return Ok(Err(format!(
            "waiting for Secret {}/{} in the cluster of participant {:?}, whose operator generates the passwords of every region",
            first.namespace, key.name, first.name
        )));
    };
    let here: Api<Secret> = Api::namespaced(ctx.clusters.local(), &topo.namespace);
    match here.get_opt(&key.name).await? {
        Some(existing) if value_of(&existing, &key.key).as_deref() == Some(value.as_str()) => {}
        Some(existing) if !is_ours(&existing) => {
            return Ok(Err(format!(
                "Secret {}/{} exists here, is not the database's, and differs from participant {:?}'s: delete it or make it equal",
                topo.namespace, key.name, first.name
            )));
        }
        _ => {
            let copy: Secret = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": key.name,
                    "namespace": topo.namespace,
                    "labels": labels::database_labels(&topo.database, &topo.namespace),
                    "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
                },
                "type": "Opaque",
                "stringData": {key.key.clone(): value.clone()},
            }))
            .map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
            here.patch(
                &key.name,
                &PatchParams::apply(labels::FIELD_MANAGER).force(),
                &Patch::Apply(&copy),
            )
            .await?;
        }
    }
    Ok(Ok(value))
}

fn is_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER)
}

/// The UTF-8 value of `key` in `secret` (`data`, or `stringData` of a Secret just created).
fn value_of(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
}

/// Reads `key.key` of Secret `key.name`, creating the Secret with a generated password when
/// it does not exist.
async fn ensure_secret(
    ctx: &Context,
    namespace: &str,
    database: &str,
    key: &SecretKey,
    owner: Option<&OwnerReference>,
) -> Result<Result<String, String>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.clusters.local(), namespace);
    let secret = match secrets.get_opt(&key.name).await? {
        Some(s) => s,
        None => {
            let fresh: Secret = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": key.name,
                    "namespace": namespace,
                    "labels": labels::database_labels(database, namespace),
                    "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
                },
                "type": "Opaque",
                "stringData": {key.key.clone(): generate()?},
            }))
            .map_err(|e| ReconcileError::Finalizer(e.to_string()))?;
            match secrets.create(&PostParams::default(), &fresh).await {
                Ok(created) => created,
                // Created meanwhile (by another reconcile): read what is there.
                Err(kube::Error::Api(e)) if e.code == 409 => secrets.get(&key.name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let value = value_of(&secret, &key.key);
    Ok(value.ok_or_else(|| {
        format!(
            "Secret {namespace}/{} has no UTF-8 key {:?}: delete it and the operator creates it, or add the key",
            key.name, key.key
        )
    }))
}
