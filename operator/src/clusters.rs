//! API clients for the participants' clusters.
//!
//! Contract: the local cluster's client is the one the operator started with; a participant
//! with `cluster.kubeconfigSecretRef` is reached with a client built from that Secret (in the
//! database's namespace of the local cluster, key `kubeconfig` unless given). Clients are
//! cached per Secret and rebuilt when the Secret's `resourceVersion` changes. A missing Secret,
//! key or unparsable kubeconfig is an error naming the Secret and what to fix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::plan::ClusterTarget;

/// Why a participant's cluster cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Secret could not be read.
    #[error("{}", secret_problem(.namespace, .name, .source))]
    Secret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The Secret has no such key or it is not a kubeconfig.
    #[error("kubeconfig Secret {namespace}/{name}: {reason}")]
    Invalid {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// Why Secret `namespace/name` could not be read, and how to fix it.
fn secret_problem(namespace: &str, name: &str, source: &kube::Error) -> String {
    match source {
        kube::Error::Api(status) if status.code == 404 => format!(
            "kubeconfig Secret {namespace}/{name} does not exist: create it (kubectl -n {namespace} create secret generic {name} --from-file=kubeconfig=<file>)"
        ),
        other => format!(
            "cannot read kubeconfig Secret {namespace}/{name}: {}",
            crate::status::api_error_sentence(other)
        ),
    }
}

type CacheKey = (String, String, String);

/// Clients of every cluster the operator reaches.
#[derive(Clone)]
pub struct ClusterClients {
    local: Client,
    cache: Arc<Mutex<HashMap<CacheKey, (String, Client)>>>,
}

impl ClusterClients {
    /// Clients around the local cluster's `local`.
    pub fn new(local: Client) -> Self {
        ClusterClients {
            local,
            cache: Arc::default(),
        }
    }

    /// The local cluster.
    pub fn local(&self) -> Client {
        self.local.clone()
    }

    /// The client of `target`, for a database in `database_namespace`.
    pub async fn client_for(
        &self,
        database_namespace: &str,
        target: &ClusterTarget,
    ) -> Result<Client, ClusterError> {
        let ClusterTarget::Remote(secret_ref) = target else {
            return Ok(self.local.clone());
        };
        let key_name = secret_ref
            .key
            .clone()
            .unwrap_or_else(|| "kubeconfig".into());
        let secrets: Api<Secret> = Api::namespaced(self.local.clone(), database_namespace);
        let secret =
            secrets
                .get(&secret_ref.name)
                .await
                .map_err(|source| ClusterError::Secret {
                    namespace: database_namespace.into(),
                    name: secret_ref.name.clone(),
                    source,
                })?;
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        let cache_key = (
            database_namespace.to_string(),
            secret_ref.name.clone(),
            key_name.clone(),
        );
        if let Some((v, c)) = self.lock().get(&cache_key) {
            if *v == version {
                return Ok(c.clone());
            }
        }
        let invalid = |reason: String| ClusterError::Invalid {
            namespace: database_namespace.into(),
            name: secret_ref.name.clone(),
            reason,
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key_name))
            .map(|b| b.0.clone())
            .ok_or_else(|| {
                invalid(format!(
                    "no key {key_name:?}; store the kubeconfig under it"
                ))
            })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| invalid(format!("key {key_name:?} is not UTF-8 text")))?;
        let kubeconfig = Kubeconfig::from_yaml(&text)
            .map_err(|e| invalid(format!("key {key_name:?} is not a kubeconfig: {e}")))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| invalid(format!("kubeconfig unusable: {e}")))?;
        let client =
            Client::try_from(config).map_err(|e| invalid(format!("cannot build a client: {e}")))?;
        self.lock().insert(cache_key, (version, client.clone()));
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, (String, Client)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
