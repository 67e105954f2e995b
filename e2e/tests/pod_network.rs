//! Pod networking of the local plane: every pod in its own network namespace, Services carried
//! by kube-proxy, EndpointSlices filled by the controller manager, packet-drop partitions, and
//! nothing left behind.
//!
//! These need the pod network (root or CAP_NET_ADMIN); in the shared-host mode each test says
//! so and checks only what that mode promises. `make test` in CI sets
//! `AADB_E2E_NETWORK=pods`, so there a missing capability fails instead.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use aadb_e2e::http;
use aadb_e2e::net::{Cut, NetworkMode};
use common::{apply_ns, eventually, harness, namespace, run};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

fn cluster() -> &'static common::Harness {
    harness("net", |_| {})
}

fn pod_network() -> bool {
    let on = aadb_e2e::net::mode() == NetworkMode::Pods;
    if !on {
        eprintln!("shared-host mode: this test needs pod networking and checks nothing more");
    }
    on
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

fn app(replicas: i32, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [common::app_container("registry.local/aadb-e2e-testapp:dev")],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    })
}

async fn ready_pods(pods: &Api<Pod>, app: &str, n: usize) -> Vec<Pod> {
    eventually(&format!("{n} ready {app} pods"), T, || async move {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .ok()?;
        let ready: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| aadb_e2e::pod_ready(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        (ready.len() == n).then_some(ready)
    })
    .await
}

/// What pod `from` gets when it GETs `target` (`ip:port/path`) itself.
async fn fetch_from(from: &Pod, target: &str) -> Option<(u16, String)> {
    let addr: SocketAddr = format!("{}:8080", pod_ip(from)).parse().ok()?;
    let r = http::get(addr, &format!("/fetch/{target}"), Duration::from_secs(5))
        .await
        .ok()?;
    Some((r.status, r.body))
}

#[test]
fn services_reach_pods_through_kube_proxy_and_endpoint_slices_list_pod_ips() {
    run(cluster(), |c| async move {
        if !pod_network() {
            return;
        }
        let ns = namespace(c, "svc").await;
        let _: Deployment = apply_ns(c, &ns, app(2, "echo")).await;
        let _: Deployment = apply_ns(c, &ns, app(1, "client")).await;
        let svc: Service = apply_ns(
            c,
            &ns,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "echo"},
                "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
            }),
        )
        .await;
        let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).expect("a cluster IP");
        let pods: Api<Pod> = Api::namespaced(c.client(), &ns);
        let echo = ready_pods(&pods, "echo", 2).await;
        let client = ready_pods(&pods, "client", 1).await.remove(0);

        // Every pod has its own address in the cluster's pod range, and the same port.
        let ranges = c.addressing().pod_ranges().expect("pod ranges");
        let mut ips = BTreeSet::new();
        for p in echo.iter().chain([&client]) {
            let ip: std::net::Ipv4Addr = pod_ip(p).parse().expect("pod IP");
            assert_eq!(
                &ip.octets()[..2],
                &ranges.gateway().octets()[..2],
                "{ip} is in the cluster's pod range"
            );
            ips.insert(ip);
        }
        assert_eq!(ips.len(), 3, "distinct pod IPs: {ips:?}");

        // The controller manager publishes the ready pods' addresses.
        let want: BTreeSet<String> = echo.iter().map(pod_ip).collect();
        let slices: Api<EndpointSlice> = Api::namespaced(c.client(), &ns);
        eventually("the EndpointSlice lists both pod IPs", T, || {
            let (slices, want) = (slices.clone(), want.clone());
            async move {
                let list = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=echo"))
                    .await
                    .ok()?;
                let got: BTreeSet<String> = list
                    .items
                    .iter()
                    .flat_map(|s| s.endpoints.iter().flatten())
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .flat_map(|e| e.addresses.iter().cloned())
                    .collect();
                (got == want).then_some(())
            }
        })
        .await;

        // A pod reaches the others through the ClusterIP Service, across both endpoints.
        let names: BTreeSet<String> = echo.iter().map(|p| p.name_any()).collect();
        let target = format!("{cluster_ip}:80/whoami");
        let seen = eventually(
            "the client reaches both echo pods via the ClusterIP",
            T,
            || {
                let (client, target, names) = (client.clone(), target.clone(), names.clone());
                async move {
                    let mut seen = BTreeSet::new();
                    for _ in 0..20 {
                        match fetch_from(&client, &target).await? {
                            (200, who) if names.contains(&who) => {
                                seen.insert(who);
                            }
                            _ => return None,
                        }
                    }
                    (seen == names).then_some(seen)
                }
            },
        )
        .await;
        eprintln!("through {cluster_ip}: {seen:?}");

        // Pods reach the apiserver as on a real cluster: through the `kubernetes` Service.
        let kube_slices: Api<EndpointSlice> = Api::namespaced(c.client(), "default");
        let api_endpoints: Vec<String> = kube_slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
            .await
            .expect("slices of the kubernetes Service")
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .flat_map(|e| e.addresses.iter().cloned())
            .collect();
        assert_eq!(
            api_endpoints,
            vec![aadb_e2e::net::HOST_IP.to_string()],
            "the apiserver publishes its own address"
        );

        // A pod cut from its peers by packet drops reaches none of them, then again once healed.
        let net = c.network().expect("pod network");
        let client_ip: std::net::Ipv4Addr = pod_ip(&client).parse().expect("ip");
        net.cut(Cut::Pod(client_ip)).expect("cut");
        let direct = format!("{}:8080/whoami", pod_ip(&echo[0]));
        let (status, why) = fetch_from(&client, &direct)
            .await
            .expect("the test reaches the client itself");
        assert_eq!(status, 502, "a cut pod reaches no other pod: {why}");
        net.heal(&Cut::Pod(client_ip)).expect("heal");
        let (status, who) = fetch_from(&client, &direct).await.expect("after healing");
        assert_eq!((status, who), (200, echo[0].name_any()));
    });
}

#[test]
fn a_crashed_harness_leaves_nothing_once_the_next_one_sweeps() {
    if !pod_network() {
        return;
    }
    // A process that is gone, and a namespace named after it as a crashed harness leaves it.
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = gone.id();
    gone.wait().expect("wait");
    let stale = format!("aadb-c97-{dead_pid}-1");
    let status = std::process::Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    assert_eq!(
        aadb_e2e::net::leftovers(Some(dead_pid)).namespaces,
        vec![stale.clone()]
    );
    aadb_e2e::net::sweep_stale().expect("sweep");
    assert!(
        aadb_e2e::net::leftovers(Some(dead_pid)).is_empty(),
        "the stale namespace is gone"
    );
}
