//! Per-cluster mode, as a GitOps tool deploys it: the same `ActiveActiveDatabase` object is
//! applied in two clusters (east, west), each running its own operator with `--participant`.
//! Each operator creates objects only in its own cluster, reads the other region's Services
//! through the kubeconfig Secret the object names, and reports its own region in the status;
//! writes in either region reach the other; deleting the object in one cluster removes only
//! that cluster's objects.

mod common;

use std::time::{Duration, Instant};

use aadb_e2e::LocalCluster;
use aadb_operator::supervisor::link_connected;
use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;

const NS: &str = "gitops";

fn h() -> &'static Harness {
    harness("gitops", 2, 5)
}

/// The object every cluster gets: both participants name their kubeconfig Secret, so it is the
/// same everywhere.
fn database(clusters: &[LocalCluster]) -> serde_json::Value {
    let participants: Vec<serde_json::Value> = clusters
        .iter()
        .map(|c| {
            let n = c.name();
            serde_json::json!({
                "name": n,
                "zones": [format!("{n}-a"), format!("{n}-b"), format!("{n}-c")],
                "cluster": {"kubeconfigSecretRef": {"name": format!("{n}-kubeconfig")}}
            })
        })
        .collect();
    serde_json::json!({"metadata": {"name": "db"},
        "spec": {"shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
                 "participants": participants}})
}

/// `aadb.dev/participant` of every StatefulSet, Service, PodDisruptionBudget, claim and pod of
/// the database in `c` (an empty label for objects without one).
async fn participants_of_objects(c: &LocalCluster) -> Option<Vec<(String, String)>> {
    let lp = ListParams::default().labels("aadb.dev/database=db");
    let client = c.client();
    let mut out = Vec::new();
    fn tag<K: ResourceExt>(kind: &str, items: Vec<K>, out: &mut Vec<(String, String)>) {
        for o in items {
            let p = o
                .labels()
                .get("aadb.dev/participant")
                .cloned()
                .unwrap_or_default();
            out.push((format!("{kind}/{}", o.name_any()), p));
        }
    }
    tag(
        "statefulset",
        Api::<StatefulSet>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .ok()?
            .items,
        &mut out,
    );
    tag(
        "service",
        Api::<Service>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .ok()?
            .items,
        &mut out,
    );
    tag(
        "pdb",
        Api::<PodDisruptionBudget>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .ok()?
            .items,
        &mut out,
    );
    tag(
        "pvc",
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
            .list(&lp)
            .await
            .ok()?
            .items,
        &mut out,
    );
    tag(
        "pod",
        Api::<Pod>::namespaced(client, NS)
            .list(&lp)
            .await
            .ok()?
            .items,
        &mut out,
    );
    Some(out)
}

/// Asserts every object of the database in `c` belongs to `c`'s own participant, and that
/// there are some.
async fn assert_only_own_objects(c: &LocalCluster) {
    let objects = participants_of_objects(c).await.expect("list objects");
    let foreign: Vec<_> = objects.iter().filter(|(_, p)| p != c.name()).collect();
    assert!(
        foreign.is_empty(),
        "{}: objects of another participant: {foreign:?}",
        c.name()
    );
    // 1 StatefulSet, 3 Services (primary, headless, region), 2 PDBs (the shard's and the
    // proxies'), 2 claims, 4 pods (2 shard-nodes, 2 proxies).
    let count = |kind: &str| objects.iter().filter(|(o, _)| o.starts_with(kind)).count();
    assert_eq!(
        [
            count("statefulset/"),
            count("service/"),
            count("pdb/"),
            count("pvc/"),
            count("pod/")
        ],
        [1, 3, 2, 2, 4],
        "{}: {objects:?}",
        c.name()
    );
}

async fn read_eventually(addr: &str, key: &str, want: &str, what: &str) -> Duration {
    let started = Instant::now();
    eventually(what, Duration::from_secs(30), || async {
        let v: Option<String> = redis_cmd(addr, &["GET", key]).await?;
        (v.as_deref() == Some(want)).then_some(())
    })
    .await;
    started.elapsed()
}

#[test]
fn the_same_object_in_every_cluster_makes_one_database() {
    let h = h();
    run(h, |h| async move {
        let east = &h.clusters[0];
        let west = &h.clusters[1];
        for c in &h.clusters {
            namespace(c, NS).await;
            for target in &h.clusters {
                let text = std::fs::read_to_string(target.kubeconfig_path()).expect("kubeconfig");
                secret(
                    c,
                    NS,
                    &format!("{}-kubeconfig", target.name()),
                    "kubeconfig",
                    &text,
                )
                .await;
            }
        }
        let mut operators: Vec<Operator> = h
            .clusters
            .iter()
            .map(|c| {
                Operator::start(
                    &h.dir,
                    &format!("gitops-{}", c.name()),
                    c.kubeconfig_path(),
                    &["--participant", c.name()],
                )
            })
            .collect();
        let started = Instant::now();
        for c in &h.clusters {
            apply_db(c, NS, database(&h.clusters))
                .await
                .expect("apply database");
        }
        let (ready_east, ready_west) = tokio::join!(
            wait_ready(east, NS, "db", Duration::from_secs(150)),
            wait_ready(west, NS, "db", Duration::from_secs(150)),
        );
        eprintln!(
            "both regions Ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );

        // Each status covers its own participant, whose shard is linked to the other region.
        let mut endpoints = Vec::new();
        for (c, db) in [(east, ready_east), (west, ready_west)] {
            let me = c.name();
            let other = if me == "east" { "west" } else { "east" };
            let st = db.status.expect("status");
            assert_eq!(st.phase.as_deref(), Some("Ready"));
            assert_eq!(st.ready_shards.as_deref(), Some("1/1"), "{me}: {st:?}");
            let names: Vec<&str> = st.participants.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, vec![me], "{me}: status participants");
            let p = &st.participants[0];
            let shard = &p.shards[0];
            assert!(
                shard.primary.as_ref().is_some_and(|n| n.ready) && shard.replicas.len() == 1,
                "{me}: {shard:?}"
            );
            assert!(
                shard
                    .peers
                    .iter()
                    .any(|l| l.participant == other && link_connected(&l.state)),
                "{me}: link to {other}: {:?}",
                shard.peers
            );
            endpoints.push(p.endpoint.clone().expect("region endpoint"));
        }
        let (east_addr, west_addr) = (endpoints[0].clone(), endpoints[1].clone());

        // Each operator created objects in its own cluster only.
        assert_only_own_objects(east).await;
        assert_only_own_objects(west).await;

        // Writes cross in both directions.
        let _: String = redis_cmd(&east_addr, &["SET", "from-east", "e1"])
            .await
            .expect("SET in east");
        let _: String = redis_cmd(&west_addr, &["SET", "from-west", "w1"])
            .await
            .expect("SET in west");
        let _: i64 = redis_cmd(&east_addr, &["INCRBY", "both", "2"])
            .await
            .expect("INCRBY in east");
        let _: i64 = redis_cmd(&west_addr, &["INCRBY", "both", "3"])
            .await
            .expect("INCRBY in west");
        let to_west = read_eventually(&west_addr, "from-east", "e1", "east's write in west").await;
        let to_east = read_eventually(&east_addr, "from-west", "w1", "west's write in east").await;
        for addr in [&east_addr, &west_addr] {
            read_eventually(addr, "both", "5", "the counter merged in both regions").await;
        }
        eprintln!(
            "east -> west visible after {:.2}s, west -> east after {:.2}s",
            to_west.as_secs_f64(),
            to_east.as_secs_f64()
        );

        // Deleting the object in west removes west's objects only, and keeps its claims (the
        // default reclaimPolicy, Retain).
        let deleted = Instant::now();
        Api::<aadb_crd::ActiveActiveDatabase>::namespaced(west.client(), NS)
            .delete("db", &DeleteParams::default())
            .await
            .expect("delete in west");
        let mut last = None;
        let gone = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                let object_gone = get_db(west, NS, "db").await.is_none();
                let left = participants_of_objects(west).await;
                let only_claims = left
                    .as_ref()
                    .is_some_and(|l| l.len() == 2 && l.iter().all(|(o, _)| o.starts_with("pvc/")));
                if object_gone && only_claims {
                    return;
                }
                last = Some((object_gone, left));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(
            gone.is_ok(),
            "west not cleaned up: (object gone, objects left) = {last:?}"
        );
        eprintln!(
            "west's object and objects gone in {:.1}s",
            deleted.elapsed().as_secs_f64()
        );
        assert!(get_db(east, NS, "db").await.is_some(), "east's object kept");
        assert_only_own_objects(east).await;
        let v: Option<String> = redis_cmd(&east_addr, &["GET", "from-west"]).await;
        assert_eq!(v.as_deref(), Some("w1"), "east keeps serving its copy");
        let _: String = redis_cmd(&east_addr, &["SET", "after", "x"])
            .await
            .expect("east accepts writes with west gone");
        eventually(
            "east reports its link to west down",
            Duration::from_secs(30),
            || async {
                let db = get_db(east, NS, "db").await?;
                let c = condition(&db, "ReplicationHealthy")?;
                (c.status == "False" && c.message.contains("west")).then_some(())
            },
        )
        .await;

        // And deleting it in east too leaves nothing of the database anywhere.
        Api::<aadb_crd::ActiveActiveDatabase>::namespaced(east.client(), NS)
            .delete("db", &DeleteParams::default())
            .await
            .expect("delete in east");
        eventually("east cleaned up", Duration::from_secs(90), || async {
            let object_gone = get_db(east, NS, "db").await.is_none();
            let left = participants_of_objects(east).await?;
            let only_claims = left.len() == 2 && left.iter().all(|(o, _)| o.starts_with("pvc/"));
            (object_gone && only_claims).then_some(())
        })
        .await;
        for c in [east, west] {
            Api::<PersistentVolumeClaim>::namespaced(c.client(), NS)
                .delete_collection(
                    &DeleteParams::default(),
                    &kube::api::ListParams::default().labels("aadb.dev/database=db"),
                )
                .await
                .expect("delete the kept claims");
        }
        operators.clear();
    });
}
