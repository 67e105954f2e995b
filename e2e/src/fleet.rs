//! Several local clusters side by side, and the `up`/`down` lifecycle behind the CLI.
//!
//! Contract:
//! - [`Fleet::start`] starts `n` clusters concurrently (names from [`cluster_names`], indexes
//!   0..n, so their loopback ranges differ), each in `DIR/<name>/`, and copies each admin
//!   kubeconfig to `DIR/<name>.kubeconfig`; it returns when every cluster is ready;
//! - `aadb-e2e up --dir DIR` runs the fleet in a detached `aadb-e2e serve` process whose pid is
//!   in `DIR/aadb-e2e.pid` and whose log is `DIR/aadb-e2e.log`; it writes `DIR/clusters.json`
//!   and then `DIR/ready` once every cluster is ready; `aadb-e2e down --dir DIR` sends it
//!   SIGTERM (it stops every pod and component) and, if it does not exit in time, SIGKILLs it
//!   and every pid it recorded in `DIR/pids`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterSpec, LocalCluster};
use crate::{Error, Result};

/// Cluster names, in order: `east`, `west`, `central`, `north`, `south`, then `region-6`, ….
pub fn cluster_names(n: usize) -> Vec<String> {
    const NAMES: [&str; 5] = ["east", "west", "central", "north", "south"];
    (0..n)
        .map(|i| {
            NAMES
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("region-{}", i + 1))
        })
        .collect()
}

/// What `DIR/clusters.json` says about one cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster (and region) name.
    pub name: String,
    /// Its admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its apiserver URL.
    pub server: String,
    /// Its run directory (logs, data).
    pub dir: PathBuf,
    /// Its zones.
    pub zones: Vec<String>,
}

/// Running clusters.
pub struct Fleet {
    clusters: Vec<LocalCluster>,
}

impl Fleet {
    /// Starts `count` clusters with `zones` zones each in `dir`.
    pub async fn start(count: usize, zones: usize, dir: &Path, keep_dirs: bool) -> Result<Self> {
        if count == 0 || count > 100 {
            return Err(Error::Invalid(format!(
                "cluster count {count} not in 1..=100"
            )));
        }
        if zones == 0 || zones > 26 {
            return Err(Error::Invalid(format!("zone count {zones} not in 1..=26")));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let starts = cluster_names(count)
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let mut spec =
                    ClusterSpec::new(&name, u8::try_from(i).unwrap_or(u8::MAX)).zones(zones);
                spec.keep_dir = keep_dirs;
                let d = dir.join(&name);
                async move { LocalCluster::start(spec, &d).await }
            });
        let results = futures::future::join_all(starts).await;
        let mut clusters = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(c) => clusters.push(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            for c in clusters {
                eprintln!("{}", c.log_report());
                c.stop().await;
            }
            return Err(e);
        }
        for c in &clusters {
            let to = dir.join(format!("{}.kubeconfig", c.name()));
            std::fs::copy(c.kubeconfig_path(), &to)
                .map_err(|e| Error::io(format!("copy kubeconfig to {}", to.display()), e))?;
        }
        Ok(Fleet { clusters })
    }

    /// The clusters.
    pub fn clusters(&self) -> &[LocalCluster] {
        &self.clusters
    }

    /// One cluster by name.
    pub fn cluster(&self, name: &str) -> Option<&LocalCluster> {
        self.clusters.iter().find(|c| c.name() == name)
    }

    /// What `clusters.json` holds.
    pub fn info(&self, dir: &Path) -> Vec<ClusterInfo> {
        self.clusters
            .iter()
            .map(|c| ClusterInfo {
                name: c.name().to_string(),
                kubeconfig: dir.join(format!("{}.kubeconfig", c.name())),
                server: c.server_url(),
                dir: c.dir().to_path_buf(),
                zones: c.spec().zones.clone(),
            })
            .collect()
    }

    /// Every control-plane pid, for `DIR/pids`.
    pub fn pids(&self) -> Vec<u32> {
        self.clusters
            .iter()
            .flat_map(|c| c.pids().into_iter().map(|(_, p)| p))
            .collect()
    }

    /// Stops every cluster.
    pub async fn stop(self) {
        let stops = self.clusters.into_iter().map(|c| c.stop());
        futures::future::join_all(stops).await;
    }
}

/// Files of a fleet directory.
pub struct FleetDir {
    dir: PathBuf,
}

impl FleetDir {
    /// The directory (made absolute).
    pub fn new(dir: &Path) -> Result<Self> {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("current directory", e))?
                .join(dir)
        };
        Ok(FleetDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `aadb-e2e.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("aadb-e2e.pid")
    }

    /// `aadb-e2e.log`.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("aadb-e2e.log")
    }

    /// `ready`.
    pub fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }

    /// `pids`.
    pub fn pids_file(&self) -> PathBuf {
        self.dir.join("pids")
    }

    /// `clusters.json`.
    pub fn clusters_file(&self) -> PathBuf {
        self.dir.join("clusters.json")
    }

    /// The serving process, if its pid file names a live process.
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        crate::process::pid_alive(pid).then_some(pid)
    }

    /// Recorded component pids.
    pub fn recorded_pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.pids_file())
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

/// How long `down` waits for a graceful stop.
pub const DOWN_GRACE: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_distinct() {
        let n = cluster_names(7);
        assert_eq!(&n[..3], ["east", "west", "central"]);
        assert_eq!(n[6], "region-7");
        let mut d = n.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 7);
    }
}
