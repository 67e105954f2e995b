//! The operator installed the way users install it: `helm install` of `charts/aadb-operator`
//! into a local cluster. It runs as the chart's Deployment (two replicas, leader election on a
//! Lease) with the chart's ServiceAccount and RBAC only — the node agent runs the
//! `aadb-operator` image as the local binary and hands it the service account's token — and
//! takes a database from apply to Ready, serves writes through the region endpoint, and
//! releases its finalizer on delete; `helm uninstall` removes it. Once with the default
//! cluster-wide RBAC, once with Roles in the one namespace it watches.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aadb_crd::ActiveActiveDatabase;
use common::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};

fn h() -> &'static Harness {
    harness("incluster", 1, 15)
}

/// Runs helm against `kubeconfig` with its state under `dir`; panics with its output on failure.
fn helm(dir: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let bins = aadb_e2e::bins::Binaries::locate().expect("Kubernetes binaries (make k8s-bins)");
    let home = dir.join("helm");
    let out = Command::new(bins.path("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm {args:?} failed: {text}");
    text
}

/// One `helm install` of the chart as `release` in `release_ns` with `sets`, then a database
/// in `db_ns`: Ready, written to, deleted; then `helm uninstall`. `deployment` is the name the
/// chart gives the operator's Deployment.
async fn install_and_serve(
    h: &Harness,
    release: &str,
    deployment: &str,
    release_ns: &str,
    db_ns: &str,
    sets: &[&str],
) {
    let c = &h.clusters[0];
    // With namespaced RBAC the watched namespace must exist before the install (its Role).
    let ns = namespace(c, db_ns).await;
    let chart = workspace_root().join("charts/aadb-operator");
    let chart = chart.to_str().expect("chart path");
    let mut args = vec![
        "install",
        release,
        chart,
        "--namespace",
        release_ns,
        "--create-namespace",
        "--skip-crds",
        "--set",
        "image.repository=aadb-operator",
        "--set",
        "image.tag=dev",
        "--set",
        "logFormat=text",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    eprintln!("{}", helm(&h.dir, c.kubeconfig_path(), &args));

    let deployments: Api<Deployment> = Api::namespaced(c.client(), release_ns);
    eventually(
        "both operator pods Ready",
        Duration::from_secs(90),
        || async {
            let d = deployments.get_opt(deployment).await.ok()??;
            let st = d.status?;
            (st.ready_replicas == Some(2)).then_some(())
        },
    )
    .await;
    let pods: Vec<String> = Api::<Pod>::namespaced(c.client(), release_ns)
        .list(&ListParams::default())
        .await
        .expect("list operator pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let leases: Api<Lease> = Api::namespaced(c.client(), release_ns);
    let leader = eventually("a leader on the Lease", Duration::from_secs(60), || async {
        let list = leases.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .filter_map(|l| l.spec?.holder_identity)
            .find(|holder| pods.contains(holder))
    })
    .await;
    eprintln!("{release}: operator pods {pods:?}, leader {leader}");

    apply_db(
        c,
        &ns,
        serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {
                "shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
                "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
            }
        }),
    )
    .await
    .expect("apply database");
    let db = wait_ready(c, &ns, "db", Duration::from_secs(120)).await;
    let status = db.status.expect("status");
    assert_eq!(status.ready_shards.as_deref(), Some("1/1"), "{status:?}");

    let addr = eventually("region endpoint", Duration::from_secs(30), || async {
        lb_address(c, &ns, "db-east").await
    })
    .await;
    // kube-proxy programs the new address within about a second.
    let mut conn = eventually(
        "a connection through the region endpoint",
        Duration::from_secs(30),
        || redis_conn(&addr),
    )
    .await;
    let _: () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut conn)
        .await
        .expect("WAIT");
    assert_eq!(replicas, 1, "the replica acknowledges the write");
    let value: Option<String> = redis::cmd("GET")
        .arg("greeting")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(value.as_deref(), Some("hello"));

    // Deleting the database: the in-cluster operator removes what it made and releases the
    // finalizer.
    let dbs: Api<ActiveActiveDatabase> = Api::namespaced(c.client(), &ns);
    dbs.delete("db", &DeleteParams::default())
        .await
        .expect("delete database");
    let statefulsets: Api<StatefulSet> = Api::namespaced(c.client(), &ns);
    eventually(
        "the database and its StatefulSets gone",
        Duration::from_secs(60),
        || async {
            let gone = dbs.get_opt("db").await.ok()?.is_none();
            let left = statefulsets
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .len();
            (gone && left == 0).then_some(())
        },
    )
    .await;

    helm(
        &h.dir,
        c.kubeconfig_path(),
        &["uninstall", release, "--namespace", release_ns, "--wait"],
    );
    let left = deployments
        .get_opt(deployment)
        .await
        .expect("read Deployment");
    assert!(left.is_none(), "the Deployment outlived helm uninstall");
}

#[test]
fn helm_installed_operator_runs_databases_with_the_charts_rbac() {
    let h = h();
    run(h, |h| async move {
        // Defaults: a ClusterRole, every namespace watched.
        install_and_serve(h, "aadb", "aadb-operator", "aadb-system", "app", &[]).await;
        // Namespaced RBAC: Roles in the one watched namespace and for the Lease.
        install_and_serve(
            h,
            "team-aadb-operator",
            "team-aadb-operator",
            "team-system",
            "team-app",
            &["rbac.clusterScoped=false", "watchNamespace=team-app"],
        )
        .await;
    });
}
