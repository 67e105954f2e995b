//! The `aadb-e2e up` / `down` contract: three clusters with three zones each come up
//! together in under three minutes (binaries cached), each reachable through
//! `DIR/<cluster>.kubeconfig`, and `down` stops every process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aadb_e2e::bins::pinned_kubernetes_version;
use aadb_e2e::cluster::node_is_ready;
use aadb_e2e::fleet::FleetDir;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

const EXE: &str = env!("CARGO_BIN_EXE_aadb-e2e");

/// Runs `down` when dropped, so a failed assertion leaves nothing running.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(EXE)
            .arg("down")
            .arg("--dir")
            .arg(&self.0)
            .status();
    }
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

#[test]
fn up_three_clusters_with_three_zones_then_down() {
    aadb_e2e::bins::Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = aadb_e2e::bins::workspace_root()
        .join(format!("target/e2e-runs/cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let guard = Down(dir.clone());
    let started = Instant::now();
    let out = Command::new(EXE)
        .args([
            "up",
            "--clusters",
            "3",
            "--zones",
            "3",
            "--timeout",
            "300",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .expect("run up");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "up --clusters 3 --zones 3 took {:.1}s\n{stdout}",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(180),
        "three clusters must be up in under 3 minutes, took {took:?}"
    );

    let fd = FleetDir::new(&dir).expect("dir");
    let serving = fd.running_pid().expect("serving process");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut servers = Vec::new();
    for name in ["east", "west", "central"] {
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        assert!(kubeconfig.is_file(), "{} missing", kubeconfig.display());
        rt.block_on(async {
            let c = client(&kubeconfig).await;
            let v = c.apiserver_version().await.expect("version");
            assert_eq!(v.git_version, pinned_kubernetes_version());
            let nodes = Api::<Node>::all(c)
                .list(&Default::default())
                .await
                .expect("nodes");
            assert_eq!(nodes.items.len(), 3, "{name}: one node per zone");
            for n in &nodes.items {
                assert!(node_is_ready(n));
                let labels = n.metadata.labels.clone().unwrap_or_default();
                assert_eq!(
                    labels
                        .get("topology.kubernetes.io/region")
                        .map(String::as_str),
                    Some(name)
                );
                assert!(labels
                    .get("topology.kubernetes.io/zone")
                    .is_some_and(|z| z.starts_with(name)));
            }
        });
        let kc = Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
        servers.push(
            kc.clusters[0]
                .cluster
                .as_ref()
                .and_then(|c| c.server.clone())
                .expect("server"),
        );
    }
    servers.sort();
    servers.dedup();
    assert_eq!(servers.len(), 3, "distinct apiservers");

    let pids = fd.recorded_pids();
    let pod_network = aadb_e2e::net::mode() == aadb_e2e::net::NetworkMode::Pods;
    let per_cluster = if pod_network { 5 } else { 4 };
    assert_eq!(
        pids.len(),
        3 * per_cluster,
        "etcd, apiserver, controller manager, scheduler (and kube-proxy with pod networking) per cluster"
    );
    if pod_network {
        let made = aadb_e2e::net::leftovers(Some(serving));
        assert_eq!(
            made.namespaces.len(),
            3,
            "a network namespace per cluster: {made:?}"
        );
    }
    let out = Command::new(EXE)
        .arg("down")
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run down");
    assert!(
        out.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !aadb_e2e::process::pid_alive(serving),
        "serving process stopped"
    );
    for p in pids {
        assert!(!aadb_e2e::process::pid_alive(p), "component {p} stopped");
    }
    // No namespace, link, route or rule is left (rules and routes live in the namespaces).
    let left = aadb_e2e::net::leftovers(None);
    assert!(left.is_empty(), "down left pod networking behind: {left:?}");
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
}
