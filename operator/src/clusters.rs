//! API clients for the participants' clusters.
//!
//! Contract: the local cluster's client is the one the operator started with; a participant
//! with `cluster.kubeconfigSecretRef` is reached with a client built from that Secret (in the
//! database's namespace of the local cluster, key `kubeconfig` unless given). Clients are
//! cached per Secret and rebuilt when the Secret's `resourceVersion` changes. A missing Secret,
//! key or unparsable kubeconfig is an error naming the Secret and what to fix.
//!
//! Kubeconfig Secrets are read only from the database's own namespace: the reference has no
//! namespace of its own. A kubeconfig that would make the operator run a program or read a
//! file of its own file system is refused before any of it is loaded ([`kubeconfig_hazards`],
//! [`ClusterError::Unsafe`]): `exec` and `auth-provider` users, `tokenFile`, and
//! `client-certificate`, `client-key` and `certificate-authority` given as paths rather than as
//! inline `*-data`. Every user and cluster of the file is checked, not only the current
//! context's.

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
    /// The kubeconfig asks the operator to run a program or read a local file.
    #[error("kubeconfig Secret {namespace}/{name} is refused: {}", .hazards.join("; "))]
    Unsafe {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// One sentence per offending field, naming it.
        hazards: Vec<String>,
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
        let hazards = kubeconfig_hazards(&kubeconfig);
        if !hazards.is_empty() {
            return Err(ClusterError::Unsafe {
                namespace: database_namespace.into(),
                name: secret_ref.name.clone(),
                hazards,
            });
        }
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

/// What in `kubeconfig` would make the operator run a program or read a file of its own file
/// system, one sentence per field (naming the user or cluster and the field); empty when the
/// kubeconfig carries everything inline. Pure.
pub fn kubeconfig_hazards(kubeconfig: &Kubeconfig) -> Vec<String> {
    const INLINE: &str = "put the credentials in the kubeconfig itself";
    let mut hazards = Vec::new();
    for user in &kubeconfig.auth_infos {
        let Some(auth) = &user.auth_info else {
            continue;
        };
        let name = &user.name;
        if auth.exec.is_some() {
            hazards.push(format!(
                "user {name:?} uses exec (a program the operator would run): use a token or an inline client certificate"
            ));
        }
        if auth.auth_provider.is_some() {
            hazards.push(format!(
                "user {name:?} uses auth-provider (a plugin the operator would run): use a token or an inline client certificate"
            ));
        }
        if auth.token_file.is_some() {
            hazards.push(format!(
                "user {name:?} uses tokenFile (a file the operator would read): use token instead"
            ));
        }
        if auth.client_certificate.is_some() {
            hazards.push(format!(
                "user {name:?} uses client-certificate (a file path): use client-certificate-data instead; {INLINE}"
            ));
        }
        if auth.client_key.is_some() {
            hazards.push(format!(
                "user {name:?} uses client-key (a file path): use client-key-data instead; {INLINE}"
            ));
        }
    }
    for cluster in &kubeconfig.clusters {
        let Some(c) = &cluster.cluster else {
            continue;
        };
        if c.certificate_authority.is_some() {
            hazards.push(format!(
                "cluster {:?} uses certificate-authority (a file path): use certificate-authority-data instead; {INLINE}",
                cluster.name
            ));
        }
    }
    hazards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hazards(yaml: &str) -> Vec<String> {
        kubeconfig_hazards(&Kubeconfig::from_yaml(yaml).expect("test kubeconfig parses"))
    }

    const INLINE: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: west
  cluster:
    server: https://127.11.0.1:6443
    certificate-authority-data: Zm9v
users:
- name: admin
  user:
    client-certificate-data: Zm9v
    client-key-data: Zm9v
- name: robot
  user:
    token: abc
contexts:
- name: west
  context: {cluster: west, user: admin}
current-context: west
"#;

    #[test]
    fn inline_credentials_pass() {
        assert_eq!(hazards(INLINE), Vec::<String>::new());
    }

    #[test]
    fn exec_is_refused_naming_the_user_and_field() {
        let found = hazards(
            r#"
clusters:
- name: west
  cluster: {server: "https://127.11.0.1:6443", certificate-authority-data: Zm9v}
users:
- name: cloud
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args: ["-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"]
contexts:
- name: west
  context: {cluster: west, user: cloud}
current-context: west
"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("\"cloud\"") && found[0].contains("exec"),
            "{found:?}"
        );
    }

    #[test]
    fn auth_provider_and_token_file_are_refused() {
        let found = hazards(
            r#"
users:
- name: gcp
  user:
    auth-provider:
      name: gcp
      config: {cmd-path: /usr/bin/gcloud}
- name: file
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
"#,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("auth-provider"), "{found:?}");
        assert!(
            found[1].contains("tokenFile") && found[1].contains("\"file\""),
            "{found:?}"
        );
    }

    #[test]
    fn file_paths_for_certificates_are_refused() {
        let found = hazards(
            r#"
clusters:
- name: west
  cluster: {server: "https://127.11.0.1:6443", certificate-authority: /etc/kubernetes/ca.crt}
users:
- name: admin
  user:
    client-certificate: /etc/kubernetes/admin.crt
    client-key: /etc/kubernetes/admin.key
"#,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().any(|h| h.contains("client-certificate (")));
        assert!(found.iter().any(|h| h.contains("client-key (")));
        assert!(found
            .iter()
            .any(|h| h.contains("certificate-authority (") && h.contains("\"west\"")));
    }

    #[test]
    fn users_outside_the_current_context_are_checked_too() {
        let yaml = INLINE.replace(
            "- name: robot\n  user:\n    token: abc\n",
            "- name: robot\n  user:\n    token: abc\n- name: unused\n  user:\n    exec: {command: /tmp/x, apiVersion: client.authentication.k8s.io/v1}\n",
        );
        let found = hazards(&yaml);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("\"unused\""), "{found:?}");
    }

    #[test]
    fn the_refusal_names_the_secret_and_the_field() {
        let err = ClusterError::Unsafe {
            namespace: "ns".into(),
            name: "west-kubeconfig".into(),
            hazards: hazards(
                "users:\n- name: u\n  user:\n    exec: {command: /nonexistent, apiVersion: client.authentication.k8s.io/v1}\n",
            ),
        };
        let text = err.to_string();
        assert!(
            text.starts_with(
                "kubeconfig Secret ns/west-kubeconfig is refused: user \"u\" uses exec"
            ),
            "{text}"
        );
    }
}
