//! The operator across three local clusters (east, west, central): one operator in east
//! reaching west and central through kubeconfig Secrets; a database of two shards behind two
//! proxies per region; conflicting writes in every region converge, keys written through
//! every region's proxies reach every region; a region cut off at its LoadBalancers leaves the others serving, shows in the
//! status, and converges after healing.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn h() -> &'static Harness {
    harness("multi", 3, 8)
}

async fn endpoints(h: &Harness, ns: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in &h.clusters {
        let name = c.name().to_string();
        let addr = eventually(
            &format!("{name} endpoint"),
            Duration::from_secs(60),
            || async { lb_address(c, ns, &format!("db-{name}")).await },
        )
        .await;
        // The database has a password (copied by the operator into west and central).
        out.push((name, format!("default:geo-pw@{addr}")));
    }
    out
}

#[test]
fn three_regions_converge_and_survive_a_partition() {
    let h = h();
    run(h, |h| async move {
        let east = &h.clusters[0];
        let ns = "geo";
        for c in &h.clusters {
            namespace(c, ns).await;
        }
        for c in &h.clusters[1..] {
            let text = std::fs::read_to_string(c.kubeconfig_path()).expect("kubeconfig");
            secret(
                east,
                ns,
                &format!("{}-kubeconfig", c.name()),
                "kubeconfig",
                &text,
            )
            .await;
        }
        secret(east, ns, "geo-password", "password", "geo-pw").await;
        let _op = Operator::start(&h.dir, "geo", east.kubeconfig_path(), &[]);
        let started = Instant::now();
        let participants: Vec<serde_json::Value> = h
            .clusters
            .iter()
            .map(|c| {
                let n = c.name();
                let zones: Vec<String> =
                    ["a", "b", "c"].iter().map(|z| format!("{n}-{z}")).collect();
                if n == "east" {
                    serde_json::json!({"name": n, "zones": zones})
                } else {
                    serde_json::json!({"name": n, "zones": zones,
                        "cluster": {"kubeconfigSecretRef": {"name": format!("{n}-kubeconfig")}}})
                }
            })
            .collect();
        apply_db(
            east,
            ns,
            serde_json::json!({"metadata": {"name": "db"},
                "spec": {"shards": 2, "replicasPerShard": 1, "image": "shard-node:dev",
                         "auth": {"passwordSecretRef": {"name": "geo-password"}},
                         "participants": participants}}),
        )
        .await
        .expect("apply database");
        let db = wait_ready(east, ns, "db", Duration::from_secs(120)).await;
        eprintln!("3 regions Ready in {:.1}s", started.elapsed().as_secs_f64());
        let st = db.status.expect("status");
        assert_eq!(st.participants.len(), 3);
        for p in &st.participants {
            let links = &p.shards[0].peers;
            assert_eq!(links.len(), 2, "{p:?}");
        }

        // Concurrent conflicting writes in every region.
        let eps = endpoints(h, ns).await;
        for (i, (region, addr)) in eps.iter().enumerate() {
            let _: i64 = redis_cmd(addr, &["INCRBY", "visits", &(i as i64 + 1).to_string()])
                .await
                .expect("INCRBY");
            let _: i64 = redis_cmd(addr, &["SADD", "members", region])
                .await
                .expect("SADD");
            let _: String = redis_cmd(addr, &["SET", "owner", region])
                .await
                .expect("SET");
        }
        let converged = |eps: Vec<(String, String)>, expect_visits: i64, expect_members: usize| async move {
            eventually("regions converge", Duration::from_secs(30), || {
                let eps = eps.clone();
                async move {
                    let mut seen = Vec::new();
                    for (_, addr) in &eps {
                        let v: i64 = redis_cmd(addr, &["GET", "visits"])
                            .await
                            .and_then(|s: String| s.parse().ok())?;
                        let mut m: Vec<String> = redis_cmd(addr, &["SMEMBERS", "members"]).await?;
                        m.sort();
                        let o: String = redis_cmd(addr, &["GET", "owner"]).await?;
                        seen.push((v, m, o));
                    }
                    let first = seen[0].clone();
                    (first.0 == expect_visits
                        && first.1.len() == expect_members
                        && seen.iter().all(|s| *s == first))
                    .then_some(first)
                }
            })
            .await
        };
        let (_, members, owner) = converged(eps.clone(), 6, 3).await;
        assert_eq!(members, vec!["central", "east", "west"]);
        assert!(
            eps.iter().any(|(r, _)| *r == owner),
            "LWW winner is one of the writers"
        );
        // Keys written through every region's proxies spread over both shards and reach every
        // region.
        for (region, addr) in &eps {
            for k in 0..30 {
                let _: String = redis_cmd(addr, &["SET", &format!("{region}:{k}"), "v"])
                    .await
                    .unwrap_or_else(|| panic!("SET through {region}"));
            }
        }
        eventually(
            "every region holds every key",
            Duration::from_secs(30),
            || {
                let eps = eps.clone();
                async move {
                    for (_, addr) in &eps {
                        let n: i64 = redis_cmd(addr, &["DBSIZE"]).await?;
                        if n != 3 + 90 {
                            return None;
                        }
                    }
                    Some(())
                }
            },
        )
        .await;
        let st = get_db(east, ns, "db")
            .await
            .and_then(|d| d.status)
            .expect("status");
        for p in &st.participants {
            assert_eq!(p.shards.len(), 2, "{p:?}");
            assert!(p.topology_version.is_some(), "{p:?}");
            assert_eq!(p.proxies.as_deref(), Some("2/2"), "{p:?}");
        }

        // Partition west: its LoadBalancers stop answering.
        let west = &h.clusters[1];
        let agent = west.agent().expect("agent");
        agent.cut_all_load_balancers();
        for (region, addr) in eps.iter().filter(|(r, _)| r != "west") {
            let _: i64 = redis_cmd(addr, &["INCR", "visits"])
                .await
                .unwrap_or_else(|| panic!("{region} serves during the partition"));
        }
        eventually(
            "status shows the link to west down",
            Duration::from_secs(30),
            || async {
                let db = get_db(east, ns, "db").await?;
                let c = condition(&db, "ReplicationHealthy")?;
                (c.status == "False" && c.message.contains("west")).then_some(())
            },
        )
        .await;
        agent.heal_all_load_balancers();
        let (visits, _, _) = converged(eps.clone(), 8, 3).await;
        assert_eq!(visits, 8);
        wait_ready(east, ns, "db", Duration::from_secs(60)).await;

        // Central leaves the database: its objects go from its cluster, the others unlink it.
        apply_db(
            east,
            ns,
            serde_json::json!({"metadata": {"name": "db"},
                "spec": {"shards": 2, "replicasPerShard": 1, "image": "shard-node:dev",
                         "auth": {"passwordSecretRef": {"name": "geo-password"}},
                         "participants": participants[..2]}}),
        )
        .await
        .expect("apply without central");
        let central = &h.clusters[2];
        eventually(
            "central's objects deleted and the others unlinked",
            Duration::from_secs(60),
            || async {
                let sts = kube::api::Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
                    central.client(),
                    ns,
                )
                .list(&kube::api::ListParams::default().labels("aadb.dev/database=db"))
                .await
                .ok()?;
                let db = get_db(east, ns, "db").await?;
                let st = db.status.as_ref()?;
                let unlinked = st.participants.len() == 2
                    && st
                        .participants
                        .iter()
                        .all(|p| p.shards.first().is_some_and(|s| s.peers.len() == 1));
                (sts.items.is_empty()
                    && pods(central, ns, "db").await.is_empty()
                    && proxy_pods(central, ns, "db").await.is_empty()
                    && unlinked)
                    .then_some(())
            },
        )
        .await;
        wait_ready(east, ns, "db", Duration::from_secs(60)).await;

        // Delete: every object in every cluster goes, then the object itself.
        kube::api::Api::<aadb_crd::ActiveActiveDatabase>::namespaced(east.client(), ns)
            .delete("db", &kube::api::DeleteParams::default())
            .await
            .expect("delete database");
        eventually("every cluster emptied and the finalizer released", Duration::from_secs(90), || async {
            if get_db(east, ns, "db").await.is_some() {
                return None;
            }
            for c in &h.clusters {
                let sts = kube::api::Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(c.client(), ns)
                    .list(&kube::api::ListParams::default().labels("aadb.dev/database=db"))
                    .await
                    .ok()?;
                let svc = kube::api::Api::<k8s_openapi::api::core::v1::Service>::namespaced(c.client(), ns)
                    .list(&kube::api::ListParams::default().labels("aadb.dev/database=db"))
                    .await
                    .ok()?;
                let pvc = kube::api::Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(c.client(), ns)
                    .list(&kube::api::ListParams::default().labels("aadb.dev/database=db"))
                    .await
                    .ok()?;
                let copies = kube::api::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.client(), ns)
                    .list(&kube::api::ListParams::default().labels("aadb.dev/database=db"))
                    .await
                    .ok()?;
                if !(sts.items.is_empty() && svc.items.is_empty() && pvc.items.is_empty() && copies.items.is_empty() && pods(c, ns, "db").await.is_empty() && proxy_pods(c, ns, "db").await.is_empty()) {
                    return None;
                }
            }
            Some(())
        })
        .await;
        let original =
            kube::api::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(east.client(), ns)
                .get_opt("geo-password")
                .await
                .expect("read the password Secret");
        assert!(original.is_some(), "the user's own Secret is kept");
    });
}
