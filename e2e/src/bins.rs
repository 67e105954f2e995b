//! Where the upstream binaries are, and which Kubernetes version they must report.
//!
//! Contract: `make k8s-bins` (scripts/k8s-bins.sh) links kube-apiserver,
//! kube-controller-manager, kube-scheduler, kube-proxy, kubectl, etcd, helm and kubeconform into
//! `target/k8s/bin/` of the workspace; `AADB_K8S_BIN_DIR` overrides that directory. The pinned
//! version is the one `e2e/k8s/kubernetes/go.mod` requires. A missing binary is an error that
//! says to run `make k8s-bins` — never a silent skip.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The wrapper module's go.mod: the single source of the pinned Kubernetes version.
const KUBERNETES_GO_MOD: &str = include_str!("../k8s/kubernetes/go.mod");

/// The binaries a local cluster and its tests run.
pub const REQUIRED: [&str; 8] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubectl",
    "helm",
    "kubeconform",
];

/// The Kubernetes version `make k8s-bins` builds, e.g. `v1.37.2`.
pub fn pinned_kubernetes_version() -> &'static str {
    KUBERNETES_GO_MOD
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            match (words.next(), words.next()) {
                (Some("k8s.io/kubernetes"), Some(v)) if v.starts_with('v') => Some(v),
                (Some("require"), Some("k8s.io/kubernetes")) => words.next(),
                _ => None,
            }
        })
        .next()
        .unwrap_or("unknown")
}

/// The workspace root (the directory of the root Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A fresh run directory `target/e2e-runs/<name>-<pid>` for one test process; directories of
/// test processes that are no longer alive are removed first.
pub fn run_dir(name: &str) -> PathBuf {
    let base = workspace_root().join("target/e2e-runs");
    if let Ok(rd) = std::fs::read_dir(&base) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let pid = n.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !crate::process::pid_alive(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    base.join(format!("{name}-{}", std::process::id()))
}

/// The directory holding the upstream binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds the binaries: `AADB_K8S_BIN_DIR`, else `<workspace>/target/k8s/bin`. Fails with a
    /// message naming `make k8s-bins` when any of [`REQUIRED`] is absent.
    pub fn locate() -> Result<Self> {
        let dir = std::env::var_os("AADB_K8S_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/k8s/bin"));
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|b| !dir.join(b).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingBinaries(format!(
                "Kubernetes binaries missing in {}: {} — run `make k8s-bins` (builds {} from the \
                 pinned upstream modules; or set AADB_K8S_BIN_DIR)",
                dir.display(),
                missing.join(", "),
                pinned_kubernetes_version()
            )));
        }
        Ok(Binaries { dir })
    }

    /// The path of one binary.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_version_comes_from_go_mod() {
        let v = pinned_kubernetes_version();
        assert!(v.starts_with("v1."), "{v}");
        assert_eq!(v.split('.').count(), 3, "{v}");
    }
}
