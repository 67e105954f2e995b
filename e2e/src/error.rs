//! The error type of the end-to-end support library.
//!
//! Contract: every fallible operation of this crate returns [`Error`]; a missing binary says
//! which command builds it.

use std::path::PathBuf;

/// Errors of the local control plane, the node agent and the helpers around them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary the control plane needs is not where the build puts it.
    #[error("{0}")]
    MissingBinaries(String),
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A Kubernetes API request failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be turned into a client configuration.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// Generating a certificate or key failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// JSON (de)serialization failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Something did not happen before its deadline.
    #[error("timed out after {waited:?}: {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        waited: std::time::Duration,
    },
    /// A component process exited while it was expected to run.
    #[error("{name} exited ({status}); log: {log}; its last lines:\n{tail}")]
    ComponentExited {
        /// The component.
        name: String,
        /// Its exit status.
        status: String,
        /// Where its log is.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A request that the caller got wrong, or a state the caller did not expect.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
