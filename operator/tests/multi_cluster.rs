//! The operator across three local clusters (east, west, central): one operator in east
//! reaching west and central through kubeconfig Secrets; a database of two shards behind two
//! proxies per region; conflicting writes in every region converge, keys written through
//! every region's proxies reach every region; a region cut off at its LoadBalancers leaves the others serving, shows in the
//! status, and converges after healing. A database with `spec.tls` runs every connection
//! over TLS with the certificates the operator issues, and a renewed certificate is served
//! without restarting a pod.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn h() -> &'static Harness {
    harness("multi", 3, 8)
}

/// Stores west's and central's kubeconfigs in east, where the operator runs, as the Secrets
/// [`participants`] names.
async fn remote_kubeconfigs(h: &Harness, ns: &str) {
    for c in &h.clusters[1..] {
        let text = std::fs::read_to_string(c.kubeconfig_path()).expect("kubeconfig");
        secret(
            &h.clusters[0],
            ns,
            &format!("{}-kubeconfig", c.name()),
            "kubeconfig",
            &text,
        )
        .await;
    }
}

/// One participant per cluster: east is local to the operator, west and central are reached
/// through their kubeconfig Secrets.
fn participants(h: &Harness) -> Vec<serde_json::Value> {
    h.clusters
        .iter()
        .map(|c| {
            let n = c.name();
            let zones: Vec<String> = ["a", "b", "c"].iter().map(|z| format!("{n}-{z}")).collect();
            if n == "east" {
                serde_json::json!({"name": n, "zones": zones})
            } else {
                serde_json::json!({"name": n, "zones": zones,
                    "cluster": {"kubeconfigSecretRef": {"name": format!("{n}-kubeconfig")}}})
            }
        })
        .collect()
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
        remote_kubeconfigs(h, ns).await;
        secret(east, ns, "geo-password", "password", "geo-pw").await;
        let _op = Operator::start(
            &h.dir,
            "geo",
            east.kubeconfig_path(),
            &["--watch-namespace", ns],
        );
        let started = Instant::now();
        let participants = participants(h);
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

        // Partition west from the other regions (packets between them are dropped).
        let west = &h.clusters[1];
        let agent = west.agent().expect("agent");
        agent.cut_all_load_balancers();
        for (region, addr) in eps.iter().filter(|(r, _)| r != "west") {
            let _: i64 = redis_cmd(addr, &["INCR", "visits"])
                .await
                .unwrap_or_else(|| panic!("{region} serves during the partition"));
        }
        // West keeps serving its local clients (the test's host is one; on the shared host
        // the cut stops west's load balancers for everyone), without the others' writes.
        let west_local = west.network().is_some();
        if west_local {
            let (_, west_addr) = eps.iter().find(|(r, _)| r == "west").expect("west");
            let local: i64 = redis_cmd(west_addr, &["INCR", "visits"])
                .await
                .expect("west serves locally during the partition");
            assert_eq!(local, 7, "west saw only its own increment while cut off");
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
        let expected = if west_local { 9 } else { 8 };
        let (visits, _, _) = converged(eps.clone(), expected, 3).await;
        assert_eq!(visits, expected);
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
        let claims_of = |c: &'static aadb_e2e::LocalCluster| async move {
            let mut uids: Vec<String> = kube::api::Api::<
                k8s_openapi::api::core::v1::PersistentVolumeClaim,
            >::namespaced(c.client(), ns)
            .list(&kube::api::ListParams::default().labels("aadb.dev/database=db"))
            .await
            .map(|l| l.items.into_iter().filter_map(|p| p.metadata.uid).collect())
            .unwrap_or_default();
            uids.sort();
            uids
        };
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
        // With the default reclaimPolicy (Retain) central's volume claims stay.
        let kept = claims_of(central).await;
        assert_eq!(kept.len(), 4, "central's claims are kept: {kept:?}");

        // Central comes back: its pods start on the same claims, with the data they held.
        apply_db(
            east,
            ns,
            serde_json::json!({"metadata": {"name": "db"},
                "spec": {"shards": 2, "replicasPerShard": 1, "image": "shard-node:dev",
                         "auth": {"passwordSecretRef": {"name": "geo-password"}},
                         "participants": participants}}),
        )
        .await
        .expect("apply with central again");
        wait_ready(east, ns, "db", Duration::from_secs(120)).await;
        assert_eq!(
            claims_of(central).await,
            kept,
            "central came back on the claims it had, not new ones"
        );
        let eps = endpoints(h, ns).await;
        let (visits, _, _) = converged(eps.clone(), expected, 3).await;
        assert_eq!(visits, expected);

        // Delete with reclaimPolicy Delete: every object in every cluster goes, claims too,
        // then the object itself.
        apply_db(
            east,
            ns,
            serde_json::json!({"metadata": {"name": "db"},
                "spec": {"shards": 2, "replicasPerShard": 1, "image": "shard-node:dev",
                         "auth": {"passwordSecretRef": {"name": "geo-password"}},
                         "persistence": {"reclaimPolicy": "Delete"},
                         "participants": participants}}),
        )
        .await
        .expect("apply reclaimPolicy Delete");
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

/// `redis-cli --tls` with the database's CA at `addr`, authenticated with `auth` (`user`,
/// `password`); its output.
async fn tls_cli(ca: &std::path::Path, addr: &str, auth: (&str, &str), args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut all: Vec<String> = vec!["--tls".into(), "--cacert".into(), ca.display().to_string()];
    all.extend(
        [
            "-h",
            host,
            "-p",
            port,
            "--no-auth-warning",
            "--user",
            auth.0,
            "--pass",
            auth.1,
        ]
        .map(String::from),
    );
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::process::Command::new("redis-cli")
        .args(&all)
        .output()
        .await
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The serial number of the certificate served at `addr`, read with `openssl s_client`.
async fn served_serial(ca: &std::path::Path, addr: &str) -> Option<String> {
    let script = format!(
        "openssl s_client -connect {addr} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        ca.display()
    );
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.starts_with("serial=").then_some(text)
}

#[test]
fn three_regions_over_tls_with_certificates_the_operator_issues_and_renews() {
    let h = h();
    run(h, |h| async move {
        let east = &h.clusters[0];
        let ns = "geotls";
        for c in &h.clusters {
            namespace(c, ns).await;
        }
        remote_kubeconfigs(h, ns).await;
        let _op = Operator::start(
            &h.dir,
            "geotls",
            east.kubeconfig_path(),
            &["--watch-namespace", ns],
        );
        let participants = participants(h);
        apply_db(
            east,
            ns,
            serde_json::json!({"metadata": {"name": "db"},
                "spec": {"shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
                         "proxy": {"replicas": 1}, "tls": {},
                         "participants": participants}}),
        )
        .await
        .expect("apply database");
        // Ready means the operator reached every node and proxy over TLS and saw the links up.
        let db = wait_ready(east, ns, "db", Duration::from_secs(150)).await;
        let st = db.status.expect("status");
        for p in &st.participants {
            assert_eq!(p.shards[0].peers.len(), 2, "{p:?}");
        }
        let secrets =
            kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(east.client(), ns);
        let tls = secrets.get("db-tls").await.expect("the issued TLS Secret");
        let ca_pem = tls
            .data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .expect("ca.crt")
            .0
            .clone();
        let ca = h.dir.join("geotls-ca.crt");
        std::fs::write(&ca, &ca_pem).expect("write the CA");
        let app = app_password(east, ns, "db")
            .await
            .expect("application password");
        let internal = internal_password(east, ns, "db")
            .await
            .expect("internal password");

        // Clients reach every region endpoint with redis-cli --tls and the CA; plaintext gets
        // nowhere; writes in every region converge.
        let mut addrs = Vec::new();
        for c in &h.clusters {
            let name = c.name().to_string();
            let addr = eventually(
                &format!("{name} endpoint"),
                Duration::from_secs(60),
                || async { lb_address(c, ns, &format!("db-{name}")).await },
            )
            .await;
            let out = tls_cli(&ca, &addr, ("default", &app), &["INCRBY", "visits", "2"]).await;
            assert!(out.trim().parse::<i64>().is_ok(), "{name}: {out}");
            assert!(
                anonymous_cmd::<String>(&addr, &["PING"]).await.is_none(),
                "{name}: plaintext answered"
            );
            addrs.push(addr);
        }
        let ca_ref = &ca;
        let app_ref = &app;
        let addrs_ref = &addrs;
        eventually(
            "regions converge over TLS",
            Duration::from_secs(30),
            || async move {
                for addr in addrs_ref {
                    let v = tls_cli(ca_ref, addr, ("default", app_ref), &["GET", "visits"]).await;
                    if v.trim() != "6" {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;

        // Every link between the regions runs over TLS.
        let pod = primary_pod(east, ns, "db", "east", 0)
            .await
            .expect("primary");
        let node = format!(
            "{}:6379",
            pod.status.and_then(|s| s.pod_ip).expect("pod IP")
        );
        let peers = tls_cli(&ca, &node, ("aadb-internal", &internal), &["AA.PEERS"]).await;
        assert_eq!(peers.matches("tls").count(), 2, "{peers}");
        assert!(!peers.contains("tcp"), "{peers}");

        // A renewed certificate (the operator issues a new one when the Secret loses its
        // expiry) is served by the running node without a restart.
        let before = served_serial(&ca, &node).await.expect("served certificate");
        let restarts = |p: &k8s_openapi::api::core::v1::Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|c| c[0].restart_count)
        };
        let pod_before = primary_pod(east, ns, "db", "east", 0)
            .await
            .expect("primary");
        let patch = serde_json::json!({"metadata": {"annotations": {"aadb.dev/not-after": "0"}}});
        secrets
            .patch(
                "db-tls",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("expire the certificate's record");
        let ca_ref = &ca;
        let node_ref = &node;
        let before_ref = &before;
        let after = eventually(
            "the node serves the renewed certificate",
            Duration::from_secs(60),
            || async move {
                served_serial(ca_ref, node_ref)
                    .await
                    .filter(|s| s != before_ref)
            },
        )
        .await;
        assert_ne!(after, before);
        let pod_after = primary_pod(east, ns, "db", "east", 0)
            .await
            .expect("primary");
        assert_eq!(
            pod_after.metadata.uid, pod_before.metadata.uid,
            "the pod was replaced"
        );
        assert_eq!(
            restarts(&pod_after),
            restarts(&pod_before),
            "the node restarted"
        );
        // The renewed certificate was copied into the other regions too.
        let west = &h.clusters[1];
        let west_tls =
            kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(west.client(), ns);
        let east_cert = secrets
            .get("db-tls")
            .await
            .expect("east")
            .data
            .and_then(|d| d.get("tls.crt").cloned());
        let east_cert_ref = &east_cert;
        let west_tls_ref = &west_tls;
        eventually(
            "west has the renewed certificate",
            Duration::from_secs(30),
            || async move {
                let w = west_tls_ref
                    .get("db-tls")
                    .await
                    .ok()?
                    .data
                    .and_then(|d| d.get("tls.crt").cloned());
                (w == *east_cert_ref).then_some(())
            },
        )
        .await;
    });
}
