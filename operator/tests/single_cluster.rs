//! The operator on one local cluster with three zones: provisioning, spread, status, failover,
//! scaling, invalid specs, deletion, restarts and leader election.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, DeleteParams, ListParams};

const NAME: &str = "single";

fn h() -> &'static Harness {
    harness(NAME, 1, 11)
}

fn operator(h: &Harness, tag: &str, extra: &[&str]) -> Operator {
    Operator::start(&h.dir, tag, h.clusters[0].kubeconfig_path(), extra)
}

fn zone_of_node(node: &str) -> String {
    // Nodes of the local clusters are named after their zone: `<cluster>-<zone letter>-<n>`.
    node.to_string()
}

#[test]
fn two_shards_with_replicas_become_ready_spread_over_zones() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let _op = operator(h, "spread", &["--watch-namespace", "spread"]);
        let ns = namespace(c, "spread").await;
        let started = Instant::now();
        apply_db(
            c,
            &ns,
            serde_json::json!({
                "metadata": {"name": "db"},
                "spec": {
                    "shards": 2, "replicasPerShard": 1, "image": "shard-node:dev",
                    "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
                }
            }),
        )
        .await
        .expect("apply database");
        let db = wait_ready(c, &ns, "db", Duration::from_secs(90)).await;
        eprintln!("apply to Ready: {:.1}s", started.elapsed().as_secs_f64());
        let st = db.status.expect("status");
        assert_eq!(st.ready_shards.as_deref(), Some("2/2"));
        assert_eq!(st.phase.as_deref(), Some("Ready"));
        let east = &st.participants[0];
        assert_eq!(east.shards.len(), 2);
        for s in &east.shards {
            let p = s.primary.as_ref().expect("primary listed");
            assert!(p.ready && p.offset.is_some() && p.zone.is_some(), "{p:?}");
            assert_eq!(s.replicas.len(), 1);
            let r = &s.replicas[0];
            assert!(r.ready && r.offset.is_some(), "{r:?}");
            assert_ne!(p.zone, r.zone, "primary and replica share a zone: {s:?}");
            assert!(s.endpoint.is_some());
        }
        // Pods of each shard are on distinct zones.
        let all_pods = pods(c, &ns, "db").await;
        assert_eq!(all_pods.len(), 4);
        for shard in ["0", "1"] {
            let nodes: BTreeSet<String> = all_pods
                .iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("aadb.dev/shard"))
                        .map(String::as_str)
                        == Some(shard)
                })
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .map(|n| zone_of_node(&n))
                .collect();
            assert_eq!(nodes.len(), 2, "shard {shard} pods share a node: {nodes:?}");
        }
        // Closed by default: without spec.auth the operator generated the password in the
        // Secret named after the database, and status says so.
        let secret_ref = st
            .password_secret_ref
            .clone()
            .expect("status names the password");
        assert_eq!(
            (secret_ref.name.as_str(), secret_ref.key.as_deref()),
            ("db", Some("password"))
        );
        let app = app_password(c, &ns, "db")
            .await
            .expect("generated password Secret");
        assert!(
            app.len() >= 32,
            "a short generated password: {} characters",
            app.len()
        );
        let endpoint = east.endpoint.clone().expect("region endpoint");
        assert!(
            anonymous_cmd::<String>(&endpoint, &["SET", "k", "v"])
                .await
                .is_none(),
            "a client without the password could write"
        );
        // A write through the region endpoint is replicated to the shard's replica.
        let authed = format!("default:{app}@{endpoint}");
        let _: String = redis_cmd(&authed, &["SET", "k", "v"])
            .await
            .expect("SET through the endpoint");
        let acked: i64 = redis_cmd(&authed, &["WAIT", "1", "2000"])
            .await
            .expect("WAIT");
        assert_eq!(acked, 1);
        // The application user cannot touch links or configuration, through the endpoint
        // or on a node; the internal user (the operator's) can.
        let node = s_primary_address(c, &ns).await;
        for target in [&endpoint, &node] {
            let authed = format!("default:{app}@{target}");
            for args in [
                &["AA.PEERS"][..],
                &["CONFIG", "SET", "maxmemory", "1"],
                &["REPLICAOF", "127.0.0.1", "1"],
            ] {
                let mut conn = redis_conn(&authed).await.expect("connect as default");
                let mut cmd = redis::cmd(args[0]);
                for a in &args[1..] {
                    cmd.arg(*a);
                }
                let err = cmd
                    .query_async::<redis::Value>(&mut conn)
                    .await
                    .expect_err("refused to the application user");
                assert_eq!(err.code(), Some("NOPERM"), "{target} {args:?}: {err}");
            }
        }
        let peers: Vec<redis::Value> = redis_cmd(&node, &["AA.PEERS"])
            .await
            .expect("AA.PEERS as the internal user");
        assert!(peers.is_empty());
        let sts: Api<StatefulSet> = Api::namespaced(c.client(), &ns);
        assert_eq!(
            sts.list(&ListParams::default())
                .await
                .expect("list")
                .items
                .len(),
            2
        );
        // Delete: everything goes and the finalizer is released.
        Api::<aadb_crd::ActiveActiveDatabase>::namespaced(c.client(), &ns)
            .delete("db", &DeleteParams::default())
            .await
            .expect("delete");
        eventually(
            "database and its objects gone",
            Duration::from_secs(60),
            || async {
                let gone = get_db(c, &ns, "db").await.is_none();
                let left = sts.list(&ListParams::default()).await.ok()?.items.len()
                    + pods(c, &ns, "db").await.len();
                (gone && left == 0).then_some(())
            },
        )
        .await;
    });
}

#[test]
fn a_password_protected_database_is_wired_with_its_secret() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let _op = operator(h, "auth", &["--watch-namespace", "auth"]);
        let ns = namespace(c, "auth").await;
        secret(c, &ns, "db-password", "password", "s3cret-pw").await;
        apply_db(
            c,
            &ns,
            serde_json::json!({
                "metadata": {"name": "db"},
                "spec": {
                    "shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
                    "auth": {"passwordSecretRef": {"name": "db-password"}},
                    "maxmemory": "64mb",
                    "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
                }
            }),
        )
        .await
        .expect("apply database");
        // Ready means the operator probed, wired and saw the replica linked, all with the
        // password.
        let db = wait_ready(c, &ns, "db", Duration::from_secs(90)).await;
        let endpoint = db.status.expect("status").participants[0]
            .endpoint
            .clone()
            .expect("endpoint");
        let authed = format!("default:s3cret-pw@{endpoint}");
        // The Service routes to the primary once kube-proxy has its endpoint (about a second).
        let ok: String = eventually(
            "SET with the password through the endpoint",
            Duration::from_secs(30),
            || redis_cmd(&authed, &["SET", "k", "v"]),
        )
        .await;
        let refused = anonymous_cmd::<String>(&endpoint, &["SET", "k", "v"]).await;
        assert!(
            refused.is_none(),
            "a client without the password could write"
        );
        assert_eq!(ok, "OK");
        let acked: i64 = redis_cmd(&authed, &["WAIT", "1", "2000"])
            .await
            .expect("WAIT");
        assert_eq!(acked, 1, "the replica follows with the password");
        // A real job queue through the region endpoint: an RQ worker waiting with BLPOP runs
        // jobs enqueued by a producer, with results in streams and registries in sorted sets.
        let target = endpoint.clone();
        tokio::task::spawn_blocking(move || rq_round_trip(&target, "s3cret-pw"))
            .await
            .expect("RQ round trip");
        // CONFIG is the internal user's: the application's default user may not run it.
        let denied = redis_cmd::<Vec<String>>(&authed, &["CONFIG", "GET", "maxmemory"]).await;
        assert!(
            denied.is_none(),
            "the application user read the configuration"
        );
        let maxmemory: Vec<String> = redis_cmd(&endpoint, &["CONFIG", "GET", "maxmemory"])
            .await
            .expect("CONFIG GET");
        assert_eq!(
            maxmemory,
            vec!["maxmemory".to_string(), (64u64 << 20).to_string()]
        );
    });
}

#[test]
fn three_shards_behind_two_proxies_are_one_database() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let _op = operator(h, "sharded", &["--watch-namespace", "sharded"]);
        let ns = namespace(c, "sharded").await;
        let started = Instant::now();
        apply_db(
            c,
            &ns,
            serde_json::json!({
                "metadata": {"name": "db"},
                "spec": {
                    "shards": 3, "replicasPerShard": 1, "image": "shard-node:dev",
                    "proxy": {"replicas": 2},
                    "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
                }
            }),
        )
        .await
        .expect("apply database");
        wait_ready(c, &ns, "db", Duration::from_secs(120)).await;
        // Ready, proxies up and every proxy and node holding the region's topology.
        let db = eventually(
            "proxies ready with the topology",
            Duration::from_secs(60),
            || async {
                let db = get_db(c, &ns, "db").await?;
                let east = db.status.as_ref()?.participants.first()?.clone();
                (east.proxies.as_deref() == Some("2/2") && east.topology_version.is_some())
                    .then_some(db)
            },
        )
        .await;
        eprintln!(
            "apply to Ready with proxies: {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let east = db.status.expect("status").participants[0].clone();
        let slots: Vec<Option<String>> = east.shards.iter().map(|s| s.slots.clone()).collect();
        assert_eq!(
            slots,
            vec![
                Some("0-5460".to_string()),
                Some("5461-10921".to_string()),
                Some("10922-16383".to_string())
            ]
        );
        let endpoint = east.endpoint.clone().expect("region endpoint");
        let first_proxies: Vec<String> = proxy_pods(c, &ns, "db")
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert_eq!(first_proxies.len(), 2, "{first_proxies:?}");

        // Cluster-aware clients pointed at the region endpoint are told to stay there.
        let ranges = eventually(
            "the proxies announce the region endpoint",
            Duration::from_secs(30),
            || {
                let endpoint = endpoint.clone();
                async move {
                    let reply: Vec<Vec<redis::Value>> =
                        redis_cmd(&endpoint, &["CLUSTER", "SLOTS"]).await?;
                    let node = match reply.first()?.get(2)? {
                        redis::Value::Array(n) => n.clone(),
                        _ => return None,
                    };
                    let host = match node.first()? {
                        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        _ => return None,
                    };
                    let port = match node.get(1)? {
                        redis::Value::Int(p) => *p,
                        _ => return None,
                    };
                    (format!("{host}:{port}") == endpoint).then_some(reply.len())
                }
            },
        )
        .await;
        assert_eq!(ranges, 1, "one range, all slots, at the region endpoint");
        // The benchmark suite through the region endpoint, with no error.
        let (host, port) = endpoint.rsplit_once(':').expect("host:port");
        let app = app_password(c, &ns, "db")
            .await
            .expect("generated password");
        let out = tokio::process::Command::new("redis-benchmark")
            .args(["-a", &app])
            .args([
                "-h", host, "-p", port, "-q", "-n", "3000", "-c", "10", "-r", "10000",
            ])
            .args(["-t", "set,get,incr,lpush,sadd,hset,mset"])
            .output()
            .await
            .expect("run redis-benchmark");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "redis-benchmark through the proxies:\n{text}"
        );

        // Keys spread over the three shards, and the endpoint's DBSIZE is their sum.
        let mut sizes = Vec::new();
        for shard in 0..3 {
            let pod = primary_pod(c, &ns, "db", "east", shard)
                .await
                .expect("primary pod");
            let ip = pod.status.and_then(|s| s.pod_ip).expect("pod ip");
            let n: i64 = redis_cmd(&format!("{ip}:6379"), &["DBSIZE"])
                .await
                .expect("DBSIZE of a shard");
            sizes.push(n);
        }
        assert!(sizes.iter().all(|n| *n > 0), "keys per shard: {sizes:?}");
        let total: i64 = redis_cmd(&endpoint, &["DBSIZE"]).await.expect("DBSIZE");
        assert_eq!(
            total,
            sizes.iter().sum::<i64>(),
            "keys per shard: {sizes:?}"
        );

        // A proxy pod deleted: the endpoint keeps serving, a new proxy joins and gets the
        // topology.
        let version = east.topology_version.expect("version");
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(c.client(), &ns)
            .delete(&first_proxies[0], &DeleteParams::default())
            .await
            .expect("delete a proxy pod");
        for i in 0..20 {
            let key = format!("after-proxy-loss-{i}");
            eventually(
                "a write through the endpoint",
                Duration::from_secs(20),
                || {
                    let (endpoint, key) = (endpoint.clone(), key.clone());
                    async move {
                        redis_cmd::<String>(&endpoint, &["SET", &key, "v"])
                            .await
                            .filter(|r| r == "OK")
                    }
                },
            )
            .await;
        }
        eventually(
            "a new proxy with the topology",
            Duration::from_secs(60),
            || async {
                let db = get_db(c, &ns, "db").await?;
                let east = db.status.as_ref()?.participants.first()?.clone();
                let names: Vec<String> = proxy_pods(c, &ns, "db")
                    .await
                    .into_iter()
                    .filter_map(|p| p.metadata.name)
                    .filter(|n| n.starts_with("db-east-proxy") && !first_proxies.contains(n))
                    .collect();
                (east.proxies.as_deref() == Some("2/2")
                    && east.topology_version >= Some(version)
                    && !names.is_empty())
                .then_some(())
            },
        )
        .await;
    });
}

/// `host:port` of shard 0's primary pod in participant `east` of database `db`.
async fn s_primary_address(c: &aadb_e2e::LocalCluster, ns: &str) -> String {
    let pod = primary_pod(c, ns, "db", "east", 0)
        .await
        .expect("primary of shard 0");
    let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
    format!("{ip}:6379")
}

/// The application password `redis_cli_cluster` sends.
static CLI_PASSWORD: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// `redis-cli -c` (follows redirections) at `addr`, as the application's `default` user with
/// [`CLI_PASSWORD`]; its output.
async fn redis_cli_cluster(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let password = CLI_PASSWORD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut all = vec![
        "-c".to_string(),
        "-h".into(),
        host.into(),
        "-p".into(),
        port.into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .env("REDISCLI_AUTH", password)
            .args(&all)
            .output()
    })
    .await
    .expect("join")
    .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn cluster_api_mode_lets_cluster_clients_reach_every_shard_and_follow_a_failover() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let _op = operator(h, "clusterapi", &["--watch-namespace", "clusterapi"]);
        let ns = namespace(c, "clusterapi").await;
        apply_db(
            c,
            &ns,
            serde_json::json!({
                "metadata": {"name": "db"},
                "spec": {
                    "shards": 2, "replicasPerShard": 2, "image": "shard-node:dev",
                    "clusterApi": true,
                    "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
                }
            }),
        )
        .await
        .expect("apply database");
        wait_ready(c, &ns, "db", Duration::from_secs(120)).await;
        // Clients use the password the operator generated.
        let app = app_password(c, &ns, "db")
            .await
            .expect("generated password");
        *CLI_PASSWORD.lock().unwrap() = app.clone();
        // Every pod's own Service address, by pod name.
        let service_of = |pod: String| {
            let ns = ns.clone();
            async move { lb_address(c, &ns, &pod).await }
        };
        let primary_of = |shard: u32| {
            let ns = ns.clone();
            async move {
                primary_pod(c, &ns, "db", "east", shard)
                    .await
                    .and_then(|p| p.metadata.name)
            }
        };
        // The nodes announce their Services: CLUSTER SLOTS at shard 0's primary names both
        // shards' primaries at those addresses.
        let p0 = primary_of(0).await.expect("primary of shard 0");
        let p1 = primary_of(1).await.expect("primary of shard 1");
        let (a0, a1) = (
            service_of(p0.clone())
                .await
                .expect("address of shard 0's primary"),
            service_of(p1.clone())
                .await
                .expect("address of shard 1's primary"),
        );
        eventually(
            "the nodes announce their Services",
            Duration::from_secs(30),
            || {
                let (a0, a1) = (a0.clone(), a1.clone());
                async move {
                    let host = |a: &str| {
                        a.rsplit_once(':')
                            .map(|x| x.0.to_string())
                            .unwrap_or_default()
                    };
                    // Through each node's own Service (each answers once kube-proxy has it).
                    for via in [&a0, &a1] {
                        let slots = redis_cli_cluster(via, &["CLUSTER", "SLOTS"]).await;
                        if !(slots.contains(&host(&a0)) && slots.contains(&host(&a1))) {
                            return None;
                        }
                    }
                    Some(())
                }
            },
        )
        .await;
        // A cluster client writes keys of both shards through either node.
        for i in 0..20 {
            let key = format!("k{i}");
            let out = redis_cli_cluster(&a0, &["SET", &key, &i.to_string()]).await;
            assert_eq!(out, "OK", "SET {key}");
        }
        let n0: i64 = redis_cmd(&a0, &["DBSIZE"]).await.expect("DBSIZE 0");
        let n1: i64 = redis_cmd(&a1, &["DBSIZE"]).await.expect("DBSIZE 1");
        assert!(n0 > 0 && n1 > 0 && n0 + n1 == 20, "{n0} + {n1}");
        // The redis crate's cluster client, given one node, finds the rest by itself.
        let seed = format!("redis://default:{app}@{a0}/");
        let read_back = tokio::task::spawn_blocking(move || -> redis::RedisResult<Vec<i64>> {
            let client = redis::cluster::ClusterClient::new(vec![seed])?;
            let mut con = client.get_connection()?;
            for i in 0..100 {
                redis::cmd("SET")
                    .arg(format!("c{i}"))
                    .arg(i)
                    .query::<()>(&mut con)?;
            }
            (0..100)
                .map(|i| {
                    redis::cmd("GET")
                        .arg(format!("c{i}"))
                        .query::<i64>(&mut con)
                })
                .collect()
        })
        .await
        .expect("join")
        .expect("the cluster client reads and writes");
        assert_eq!(read_back, (0..100).collect::<Vec<i64>>());
        let m0: i64 = redis_cmd(&a0, &["DBSIZE"]).await.expect("DBSIZE 0");
        let m1: i64 = redis_cmd(&a1, &["DBSIZE"]).await.expect("DBSIZE 1");
        assert!(
            m0 > n0 && m1 > n1,
            "the cluster client wrote to both shards: {m0}, {m1}"
        );
        // Each replica knows itself: its own Service's line is the one `CLUSTER NODES` marks
        // `myself` (both replicas listen on the same port, so the port alone cannot tell).
        let replicas: Vec<String> = pods(c, &ns, "db")
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .filter(|n| n.starts_with("db-east-0-") && *n != p0)
            .collect();
        assert_eq!(replicas.len(), 2, "two replicas of shard 0: {replicas:?}");
        for replica in &replicas {
            let address = service_of(replica.clone())
                .await
                .expect("the replica's Service");
            eventually(
                &format!("{replica} marks itself in CLUSTER NODES"),
                Duration::from_secs(30),
                || {
                    let address = address.clone();
                    async move {
                        let nodes = redis_cli_cluster(&address, &["CLUSTER", "NODES"]).await;
                        let mine: Vec<&str> =
                            nodes.lines().filter(|l| l.contains("myself")).collect();
                        (mine.len() == 1
                            && mine[0].contains(&format!(" {address}@"))
                            && mine[0].contains("myself,slave"))
                        .then_some(())
                    }
                },
            )
            .await;
        }
        // Reads from a replica after READONLY (its own Service, as announced).
        let replica = replicas[0].clone();
        let replica_address = service_of(replica).await.expect("the replica's Service");
        let key = (0..20)
            .map(|i| format!("k{i}"))
            .find(|k| {
                // A key of shard 0 (slots 0-8191).
                let slot = {
                    let tagged = k.as_bytes();
                    let mut crc: u16 = 0;
                    for b in tagged {
                        crc ^= u16::from(*b) << 8;
                        for _ in 0..8 {
                            crc = if crc & 0x8000 != 0 {
                                (crc << 1) ^ 0x1021
                            } else {
                                crc << 1
                            };
                        }
                    }
                    crc % 16384
                };
                slot < 8192
            })
            .expect("a key of shard 0");
        let read = eventually("a read from the replica", Duration::from_secs(30), || {
            let (addr, key) = (replica_address.clone(), key.clone());
            async move {
                let mut conn = redis_conn(&addr).await?;
                let _: String = redis::cmd("READONLY").query_async(&mut conn).await.ok()?;
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .ok()?
            }
        })
        .await;
        assert_eq!(read, key.trim_start_matches('k'));
        // The proxies still serve ordinary clients at the region endpoint.
        let endpoint = lb_address(c, &ns, "db-east")
            .await
            .expect("region endpoint");
        let v: String = redis_cmd(&endpoint, &["GET", "k7"]).await.expect("GET k7");
        assert_eq!(v, "7");
        // The shard of "foo" loses its primary; the cluster client follows the new one.
        let out = redis_cli_cluster(&a0, &["SET", "foo", "before"]).await;
        assert_eq!(out, "OK");
        let slot: i64 = redis_cmd(&a0, &["CLUSTER", "KEYSLOT", "foo"])
            .await
            .expect("slot");
        let shard = u32::from(slot >= 8192);
        let old = primary_of(shard).await.expect("primary");
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(c.client(), &ns)
            .delete(&old, &DeleteParams::default())
            .await
            .expect("delete the primary pod");
        let new = eventually("a new primary", Duration::from_secs(60), || async {
            primary_of(shard).await.filter(|p| *p != old)
        })
        .await;
        let new_address = service_of(new.clone())
            .await
            .expect("the new primary's Service");
        let other = if shard == 0 { a1.clone() } else { a0.clone() };
        // The other shard's node learns the new map first: until then a redirection would
        // name the deleted pod's Service, which has no route and stalls the client for long.
        eventually(
            "the other shard announces the new primary",
            Duration::from_secs(60),
            || {
                let (other, new_address) = (other.clone(), new_address.clone());
                async move {
                    let nodes = redis_cli_cluster(&other, &["CLUSTER", "NODES"]).await;
                    nodes
                        .lines()
                        .any(|l| {
                            l.contains(&format!(" {new_address}@"))
                                && l.split(' ').nth(2).is_some_and(|f| f.contains("master"))
                        })
                        .then_some(())
                }
            },
        )
        .await;
        eventually(
            "the cluster client writes to the new primary",
            Duration::from_secs(60),
            || {
                let other = other.clone();
                async move {
                    let out = redis_cli_cluster(&other, &["SET", "foo", "after"]).await;
                    (out == "OK").then_some(())
                }
            },
        )
        .await;
        let v = redis_cli_cluster(&other, &["GET", "foo"]).await;
        assert_eq!(v, "after");
    });
}

/// Whether `password` opens the `default` user at `addr` (a fresh connection).
async fn accepts(addr: &str, password: &str) -> bool {
    accepts_as(addr, "default", password).await
}

async fn accepts_as(addr: &str, user: &str, password: &str) -> bool {
    redis_cmd::<String>(&format!("{user}:{password}@{addr}"), &["PING"])
        .await
        .is_some()
}

#[test]
fn application_and_user_passwords_rotate_without_an_authentication_error() {
    let h = h();
    run(h, |h| async move {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let c = &h.clusters[0];
        let _op = operator(h, "rotation", &["--watch-namespace", "rotation"]);
        let ns = namespace(c, "rotation").await;
        secret(c, &ns, "reader-pw", "password", "reader-secret").await;
        apply_db(
            c,
            &ns,
            serde_json::json!({
                "metadata": {"name": "db"},
                "spec": {
                    "shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
                    "passwordRotationGraceSeconds": 10,
                    "networkPolicy": {"metricsNamespace": "monitoring"},
                    "users": [{"name": "reader", "passwordSecretRef": {"name": "reader-pw"},
                               "rules": ["~app:*", "+@read", "+@connection"]}],
                    "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
                }
            }),
        )
        .await
        .expect("apply database");
        let db = wait_ready(c, &ns, "db", Duration::from_secs(90)).await;
        let endpoint = db.status.expect("status").participants[0]
            .endpoint
            .clone()
            .expect("endpoint");
        let old = app_password(c, &ns, "db")
            .await
            .expect("generated password");

        // A client writing all along with the password it is given, on fresh connections.
        let current = Arc::new(Mutex::new(old.clone()));
        let running = Arc::new(AtomicBool::new(true));
        let (writes, auth_errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let writer = tokio::spawn({
            let (current, running) = (current.clone(), running.clone());
            let (writes, auth_errors) = (writes.clone(), auth_errors.clone());
            let endpoint = endpoint.clone();
            async move {
                while running.load(Ordering::Relaxed) {
                    let password = current.lock().unwrap().clone();
                    let url = format!("redis://default:{password}@{endpoint}/");
                    let Ok(client) = redis::Client::open(url) else {
                        continue;
                    };
                    match client.get_multiplexed_async_connection().await {
                        Ok(mut conn) => {
                            let done: redis::RedisResult<i64> = redis::cmd("INCR")
                                .arg("writes")
                                .query_async(&mut conn)
                                .await;
                            match done {
                                Ok(_) => {
                                    writes.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) if matches!(e.code(), Some("WRONGPASS" | "NOAUTH")) => {
                                    auth_errors.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {}
                            }
                        }
                        Err(e)
                            if e.kind() == redis::ErrorKind::AuthenticationFailed
                                || matches!(e.code(), Some("WRONGPASS" | "NOAUTH")) =>
                        {
                            auth_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });

        // The password changes in its Secret, and so does the reader's.
        let new = "rotated-application-password";
        secret(c, &ns, "db", "password", new).await;
        let (reader_old, reader_new) = ("reader-secret", "reader-rotated");
        secret(c, &ns, "reader-pw", "password", reader_new).await;
        // Both are accepted everywhere: the status says so, and every proxy and node takes the
        // new one; then the client moves to it.
        eventually(
            "the status reports the rotation",
            Duration::from_secs(30),
            || async { get_db(c, &ns, "db").await?.status?.password_rotation },
        )
        .await;
        let mut targets: Vec<String> = proxy_pods(c, &ns, "db")
            .await
            .into_iter()
            .chain(pods(c, &ns, "db").await)
            .filter_map(|p| p.status?.pod_ip)
            .map(|ip| format!("{ip}:6379"))
            .collect();
        targets.push(endpoint.clone());
        for t in &targets {
            let t = t.clone();
            eventually(
                &format!("{t} accepts the new password"),
                Duration::from_secs(30),
                || {
                    let t = t.clone();
                    async move { accepts(&t, new).await.then_some(()) }
                },
            )
            .await;
            assert!(
                accepts(t.as_str(), &old).await,
                "{t} refused the previous password during the grace period"
            );
            eventually(
                &format!("{t} accepts the reader's new password"),
                Duration::from_secs(30),
                || {
                    let t = t.clone();
                    async move { accepts_as(&t, "reader", reader_new).await.then_some(()) }
                },
            )
            .await;
            assert!(
                accepts_as(t.as_str(), "reader", reader_old).await,
                "{t} refused the reader's previous password during the grace period"
            );
        }
        *current.lock().unwrap() = new.to_string();
        // After the grace period the previous one is refused everywhere, the new one still works.
        eventually("the rotation ends", Duration::from_secs(60), || async {
            let st = get_db(c, &ns, "db").await?.status?;
            st.password_rotation.is_none().then_some(())
        })
        .await;
        for t in &targets {
            let (t, old) = (t.clone(), old.clone());
            eventually(
                &format!("{t} refuses the previous password"),
                Duration::from_secs(30),
                || {
                    let (t, old) = (t.clone(), old.clone());
                    async move { (!accepts(&t, &old).await).then_some(()) }
                },
            )
            .await;
            assert!(accepts(&t, new).await);
            eventually(
                &format!("{t} refuses the reader's previous password"),
                Duration::from_secs(30),
                || {
                    let t = t.clone();
                    async move { (!accepts_as(&t, "reader", reader_old).await).then_some(()) }
                },
            )
            .await;
            assert!(accepts_as(&t, "reader", reader_new).await);
        }
        running.store(false, Ordering::Relaxed);
        writer.await.expect("writer");
        let (w, a) = (
            writes.load(Ordering::Relaxed),
            auth_errors.load(Ordering::Relaxed),
        );
        eprintln!("rotation: {w} writes, {a} authentication errors");
        assert!(w > 20, "the client wrote only {w} times");
        assert_eq!(a, 0, "the client saw authentication errors");
        let st = get_db(c, &ns, "db")
            .await
            .and_then(|d| d.status)
            .expect("status");
        assert_eq!(st.failovers, 0, "the rotation caused failovers");
        assert_eq!(st.phase.as_deref(), Some("Ready"));
    });
}
