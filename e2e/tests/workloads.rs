//! Workloads on the local cluster: pods are processes placed by the real scheduler, managed
//! by the real controllers, run and probed by the node agent.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use aadb_e2e::http;
use common::{apply_ns, eventually, harness, namespace, run};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

fn cluster() -> &'static common::Harness {
    harness("wl", |_| {})
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn pod_addr(p: &Pod) -> SocketAddr {
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("podIP");
    SocketAddr::new(ip.parse().expect("ip"), 8080)
}

fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map(|c| c.restart_count)
        .unwrap_or(-1)
}

fn app_container() -> serde_json::Value {
    common::app_container("registry.local/aadb-e2e-testapp:dev")
}

async fn wait_ready(pods: &Api<Pod>, name: &str, not_uid: Option<&str>) -> Pod {
    eventually(&format!("pod {name} Running and Ready"), T, || {
        let pods = pods.clone();
        let name = name.to_string();
        let not_uid = not_uid.map(|s| s.to_string());
        async move {
            let p = pods.get_opt(&name).await.ok()??;
            let fresh = not_uid.is_none_or(|u| p.metadata.uid.as_deref() != Some(u.as_str()));
            (fresh
                && running(&p)
                && aadb_e2e::pod_ready(&p)
                && p.metadata.deletion_timestamp.is_none())
            .then_some(p)
        }
    })
    .await
}

async fn get(addr: SocketAddr, path: &str) -> http::Response {
    http::get(addr, path, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

#[test]
fn statefulset_spreads_over_zones_and_a_recreated_pod_keeps_its_volume() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "sts").await;
        let _sts: StatefulSet = apply_ns(c, &ns, common::web_statefulset(app_container())).await;
        let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
        let nodes: Api<Node> = Api::all(c.client());
        let mut zones = BTreeSet::new();
        for i in 0..3 {
            let p = wait_ready(&pods, &format!("web-{i}"), None).await;
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .expect("bound");
            let n = nodes.get(&node).await.expect("node");
            zones.insert(
                n.labels()
                    .get("topology.kubernetes.io/zone")
                    .cloned()
                    .expect("zone"),
            );
            let r = get(pod_addr(&p), "/whoami").await;
            assert_eq!(
                r.body,
                format!("web-{i}"),
                "each pod is its own process on its own address"
            );
        }
        assert_eq!(
            zones.len(),
            3,
            "the scheduler spread the pods over zones: {zones:?}"
        );

        // Data written through pod web-1 lands in its claim's directory.
        let old = pods.get("web-1").await.expect("web-1");
        let old_uid = old.metadata.uid.clone().expect("uid");
        let r = http::request(
            pod_addr(&old),
            "PUT",
            "/data",
            &[],
            b"kept-across-recreation",
            Duration::from_secs(2),
        )
        .await
        .expect("PUT");
        assert_eq!(r.status, 200);
        let agent = c.agent().expect("agent");
        let pid = agent
            .container_pid(&ns, "web-1", None)
            .expect("pid of web-1");
        assert!(aadb_e2e::process::pid_alive(pid));

        pods.delete("web-1", &DeleteParams::default())
            .await
            .expect("delete web-1");
        eventually("the deleted pod's process is gone", T, || async move {
            (!aadb_e2e::process::pid_alive(pid)).then_some(())
        })
        .await;
        let new = wait_ready(&pods, "web-1", Some(&old_uid)).await;
        let r = get(pod_addr(&new), "/data").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "kept-across-recreation"),
            "volume data survives"
        );
        assert_ne!(agent.container_pid(&ns, "web-1", None), Some(pid));
    });
}

async fn bare_pod(c: &aadb_e2e::LocalCluster, ns: &str, name: &str) -> (Api<Pod>, Pod) {
    let pods: Api<Pod> = Api::namespaced(c.client(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 3,
            "containers": [app_container()],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let p = wait_ready(&pods, name, None).await;
    (pods, p)
}

#[test]
fn killing_the_process_raises_the_restart_count() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "restart").await;
        let (pods, p) = bare_pod(c, &ns, "crashy").await;
        assert_eq!(restart_count(&p), 0);
        let agent = c.agent().expect("agent");
        let killed = agent
            .kill_container(&ns, "crashy", Some("app"))
            .expect("kill");
        let p = eventually("restartCount 1 and Ready again", T, || {
            let pods = pods.clone();
            async move {
                let p = pods.get("crashy").await.ok()?;
                (restart_count(&p) == 1 && aadb_e2e::pod_ready(&p)).then_some(p)
            }
        })
        .await;
        let cs = &p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .expect("statuses")[0];
        let last = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("lastState.terminated");
        assert_eq!(last.exit_code, 137, "SIGKILL");
        assert_ne!(
            agent.container_pid(&ns, "crashy", Some("app")),
            Some(killed)
        );
        assert_eq!(get(pod_addr(&p), "/whoami").await.body, "crashy");
    });
}

#[test]
fn a_failing_readiness_probe_takes_the_pod_out_of_ready() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "readiness").await;
        let (pods, p) = bare_pod(c, &ns, "flaky").await;
        let addr = pod_addr(&p);
        let r = http::request(addr, "POST", "/ready/off", &[], b"", Duration::from_secs(2))
            .await
            .expect("off");
        assert_eq!(r.status, 200);
        let p = eventually("Ready=False", T, || {
            let pods = pods.clone();
            async move {
                pods.get("flaky")
                    .await
                    .ok()
                    .filter(|p| !aadb_e2e::pod_ready(p))
            }
        })
        .await;
        assert!(running(&p), "still running, only not ready");
        assert_eq!(restart_count(&p), 0, "readiness failures do not restart");
        http::request(addr, "POST", "/ready/on", &[], b"", Duration::from_secs(2))
            .await
            .expect("on");
        wait_ready(&pods, "flaky", None).await;
    });
}

#[test]
fn load_balancer_forwards_to_ready_pods_and_stops_when_partitioned() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "lb").await;
        let _d: Deployment = apply_ns(
            c,
            &ns,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "front"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "front"}},
                    "template": {
                        "metadata": {"labels": {"app": "front"}},
                        "spec": {
                            "terminationGracePeriodSeconds": 3,
                            "containers": [app_container()],
                            "volumes": [{"name": "data", "emptyDir": {}}],
                        },
                    },
                },
            }),
        )
        .await;
        let _s: Service = apply_ns(
            c,
            &ns,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "front"},
                "spec": {"type": "LoadBalancer", "selector": {"app": "front"},
                         "ports": [{"name": "http", "port": 18080, "targetPort": "http"}]},
            }),
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
        let ready_pods = eventually("2 ready pods", T, || {
            let pods = pods.clone();
            async move {
                let l = pods
                    .list(&ListParams::default().labels("app=front"))
                    .await
                    .ok()?;
                let ready: Vec<Pod> = l
                    .items
                    .into_iter()
                    .filter(|p| aadb_e2e::pod_ready(p) && running(p))
                    .collect();
                (ready.len() == 2).then_some(ready)
            }
        })
        .await;
        let svcs: Api<Service> = Api::namespaced(c.client(), &ns);
        let ip: String = eventually("LoadBalancer ingress", T, || {
            let svcs = svcs.clone();
            async move {
                let s = svcs.get("front").await.ok()?;
                s.status?.load_balancer?.ingress?.first()?.ip.clone()
            }
        })
        .await;
        let lb: SocketAddr = format!("{ip}:18080").parse().expect("lb addr");
        let a = c.addressing();
        assert!(
            (2..=254).any(|m| std::net::IpAddr::V4(a.load_balancer_ip(m)) == lb.ip()),
            "{lb} is in the cluster's LoadBalancer range"
        );
        let names: BTreeSet<String> = ready_pods.iter().map(|p| p.name_any()).collect();
        eventually("the LB answers from a pod", T, || {
            let names = names.clone();
            async move {
                let r = http::get(lb, "/whoami", Duration::from_secs(2))
                    .await
                    .ok()?;
                names.contains(&r.body).then_some(())
            }
        })
        .await;

        // Only ready endpoints get traffic.
        let (off, on) = (&ready_pods[0], &ready_pods[1]);
        http::request(
            pod_addr(off),
            "POST",
            "/ready/off",
            &[],
            b"",
            Duration::from_secs(2),
        )
        .await
        .expect("off");
        let on_name = on.name_any();
        eventually("endpoints drop the unready pod", T, || {
            let on_name = on_name.clone();
            async move {
                for _ in 0..6 {
                    let r = http::get(lb, "/whoami", Duration::from_secs(2))
                        .await
                        .ok()?;
                    if r.body != on_name {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await;

        // Partition: nothing gets through; heal: traffic flows again.
        let agent = c.agent().expect("agent");
        agent.cut_load_balancer(&ns, "front");
        for _ in 0..3 {
            let r = http::get(lb, "/whoami", Duration::from_secs(2)).await;
            assert!(r.is_err(), "a cut load balancer forwards nothing: {r:?}");
        }
        agent.heal_load_balancer(&ns, "front");
        let r = get(lb, "/whoami").await;
        assert_eq!(r.body, on_name);

        // Deleting the Deployment collects its ReplicaSet and pods, whose processes stop.
        let pids: Vec<u32> = ready_pods
            .iter()
            .filter_map(|p| agent.container_pid(&ns, &p.name_any(), None))
            .collect();
        assert_eq!(pids.len(), 2);
        Api::<Deployment>::namespaced(c.client(), &ns)
            .delete("front", &DeleteParams::background())
            .await
            .expect("delete");
        eventually("pods collected and processes gone", T, || {
            let pods = pods.clone();
            let pids = pids.clone();
            async move {
                let l = pods
                    .list(&ListParams::default().labels("app=front"))
                    .await
                    .ok()?;
                (l.items.is_empty() && pids.iter().all(|p| !aadb_e2e::process::pid_alive(*p)))
                    .then_some(())
            }
        })
        .await;
    });
}

#[test]
fn init_containers_env_references_exec_probes_and_terminal_phases() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "features").await;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.client(), &ns);
        let cm = serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"greeting": "hello", "file.txt": "from-configmap"}})).expect("cm");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("configmap");
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.client(), &ns);
        let s = serde_json::from_value(
            json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}),
        )
        .expect("secret");
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("secret");
        let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
        // An init container prepares /work; the main container checks everything it was
        // given and writes a report; an exec readiness probe looks for the report.
        let script = "test \"$GREETING\" = hello && test \"$PASSWORD\" = s3cret && test \"$ME\" = checker \
                      && test \"$NODE_IP\" = \"$(cat /work/host-ip)\" && test -f /config/file.txt \
                      && grep -q from-configmap /config/file.txt && cp /work/host-ip /work/report && exec sleep 300";
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "checker"},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "initContainers": [{
                    "name": "prepare", "image": "debian:bookworm",
                    "command": ["sh", "-c", "echo -n \"$HOST_IP\" > /work/host-ip"],
                    "env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                }],
                "containers": [{
                    "name": "main", "image": "debian:bookworm",
                    "command": ["sh", "-c", script],
                    "env": [
                        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    ],
                    "readinessProbe": {"exec": {"command": ["test", "-f", "/work/report"]}, "periodSeconds": 1},
                    "volumeMounts": [
                        {"name": "work", "mountPath": "/work"},
                        {"name": "config", "mountPath": "/config"},
                    ],
                }],
                "volumes": [
                    {"name": "work", "emptyDir": {}},
                    {"name": "config", "configMap": {"name": "settings"}},
                ],
            },
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create");
        let p = wait_ready(&pods, "checker", None).await;
        let st = p.status.expect("status");
        let init = &st.init_container_statuses.expect("init statuses")[0];
        let done = init
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("init terminated");
        assert_eq!(done.exit_code, 0);
        let node_ips: Vec<String> = (0..3)
            .map(|n| c.addressing().node_ip(n).to_string())
            .collect();
        assert!(
            st.host_ip.as_ref().is_some_and(|h| node_ips.contains(h)),
            "hostIP {:?} is a node's address {node_ips:?}",
            st.host_ip
        );

        // restartPolicy Never: success ends in Succeeded, failure in Failed, no restarts.
        for (name, code, phase) in [("ok", 0, "Succeeded"), ("fails", 3, "Failed")] {
            let pod = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", format!("exit {code}")]}],
                },
            }))
            .expect("pod");
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create");
            let p = eventually(&format!("{name} {phase}"), T, || {
                let pods = pods.clone();
                async move {
                    let p = pods.get(name).await.ok()?;
                    (p.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(p)
                }
            })
            .await;
            let cs = &p
                .status
                .and_then(|s| s.container_statuses)
                .expect("statuses")[0];
            assert_eq!(cs.restart_count, 0);
            assert_eq!(
                cs.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code),
                Some(code)
            );
        }
        // Deleting a finished pod completes at once.
        pods.delete("ok", &DeleteParams::default())
            .await
            .expect("delete");
        eventually("finished pod deleted", T, || {
            let pods = pods.clone();
            async move { pods.get_opt("ok").await.ok()?.is_none().then_some(()) }
        })
        .await;
    });
}
