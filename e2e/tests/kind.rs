//! Scenarios for kind clusters (`make kind-e2e`, which sets `E2E_TARGET=kind` and
//! `E2E_KUBECONFIG_DIR`). They need a container engine, so they are built only with the
//! `kind` feature; `e2e/kind/run.sh` runs them with `--features kind`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

mod common;

fn regions() -> Vec<(String, PathBuf)> {
    assert_eq!(
        std::env::var("E2E_TARGET").as_deref(),
        Ok("kind"),
        "these scenarios run against kind clusters: use `make kind-e2e`"
    );
    let dir = PathBuf::from(std::env::var("E2E_KUBECONFIG_DIR").expect("E2E_KUBECONFIG_DIR"));
    std::env::var("E2E_REGIONS")
        .unwrap_or_else(|_| "east west central".into())
        .split_whitespace()
        .map(|r| (r.to_string(), dir.join(format!("{r}.kubeconfig"))))
        .collect()
}

async fn client(path: &PathBuf) -> kube::Client {
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

#[tokio::test]
async fn every_region_has_three_zones() {
    for (region, kubeconfig) in regions() {
        let nodes = Api::<Node>::all(client(&kubeconfig).await)
            .list(&Default::default())
            .await
            .expect("nodes");
        let zones: BTreeSet<String> = nodes
            .items
            .iter()
            .filter_map(|n| {
                n.metadata
                    .labels
                    .as_ref()?
                    .get("topology.kubernetes.io/zone")
                    .cloned()
            })
            .collect();
        assert_eq!(zones.len(), 3, "{region}: {zones:?}");
    }
}

#[tokio::test]
async fn statefulset_spreads_over_zones_in_every_region() {
    let tag = std::env::var("E2E_IMAGE_TAG").unwrap_or_else(|_| "e2e".into());
    for (region, kubeconfig) in regions() {
        let c = client(&kubeconfig).await;
        let ns = "aadb-e2e-sts";
        Api::<Namespace>::all(c.clone())
            .patch(
                ns,
                &PatchParams::apply("aadb-e2e-tests"),
                &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})),
            )
            .await
            .expect("namespace");
        let sts = common::web_statefulset(common::app_container(&format!(
            "aadb/aadb-e2e-testapp:{tag}"
        )));
        Api::<StatefulSet>::namespaced(c.clone(), ns)
            .patch(
                "web",
                &PatchParams::apply("aadb-e2e-tests").force(),
                &Patch::Apply(sts),
            )
            .await
            .expect("statefulset");
        let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
        let nodes: Api<Node> = Api::all(c.clone());
        let started = Instant::now();
        loop {
            let list = pods.list(&Default::default()).await.expect("pods");
            let ready: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .collect();
            if ready.len() == 3 {
                let mut zones = BTreeSet::new();
                for p in ready {
                    let n = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .expect("node");
                    let node = nodes.get(&n).await.expect("node");
                    zones.insert(
                        node.metadata
                            .labels
                            .unwrap_or_default()
                            .get("topology.kubernetes.io/zone")
                            .cloned(),
                    );
                }
                assert_eq!(zones.len(), 3, "{region}: {zones:?}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{region}: 3 ready pods"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
