//! Node registration, Lease heartbeats and node status.
//!
//! Contract: each node is created (or its labels and status refreshed) at start; its Lease in
//! `kube-node-lease` is renewed every heartbeat interval and its status (Ready=True and the
//! pressure conditions, with fresh heartbeat times) re-posted at least every 10 s — unless the
//! node's heartbeats are stopped, in which case nothing about it is written. On resume the
//! status is posted at once, so the node turns Ready again without waiting for a period.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::{lock, NodeInfo, Shared};
use crate::Result;

const STATUS_PERIOD: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;

pub(crate) fn now_rfc3339() -> String {
    Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_else(|_| Timestamp::now())
        .to_string()
}

fn labels(shared: &Shared, n: &NodeInfo) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", n.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", std::env::consts::ARCH),
        ("topology.kubernetes.io/zone", n.zone.as_str()),
        (
            "topology.kubernetes.io/region",
            shared.config.cluster.as_str(),
        ),
        ("node.kubernetes.io/instance-type", "aadb-e2e-process"),
    ]
    .iter()
    .map(|(k, v)| {
        let v = if *v == "x86_64" {
            "amd64"
        } else if *v == "aarch64" {
            "arm64"
        } else {
            v
        };
        (k.to_string(), v.to_string())
    })
    .collect()
}

fn status(shared: &Shared, n: &NodeInfo) -> Value {
    let now = now_rfc3339();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let resources =
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "aadb-e2e node agent is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": n.ip.to_string()},
            {"type": "Hostname", "address": n.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": format!("aadb-e2e-{}", n.name),
            "systemUUID": format!("aadb-e2e-{}", n.name),
            "bootID": format!("aadb-e2e-{}-{}", n.name, std::process::id()),
            "kernelVersion": "loopback",
            "osImage": "aadb-e2e process node",
            "containerRuntimeVersion": "aadb-e2e://0.1.0",
            "kubeletVersion": shared.config.kubernetes_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": labels(shared, n).get("kubernetes.io/arch").cloned().unwrap_or_default(),
        },
    })
}

/// Creates the Node (or refreshes an existing one) and posts Ready status.
pub(crate) async fn register(shared: &Arc<Shared>, n: &NodeInfo) -> Result<()> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": n.name, "labels": labels(shared, n)},
        "spec": {},
        "status": status(shared, n),
    }))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            api.patch(
                &n.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": labels(shared, n)}})),
            )
            .await?;
        }
        Err(e) => return Err(e.into()),
    }
    post_status(shared, n).await
}

async fn post_status(shared: &Shared, n: &NodeInfo) -> Result<()> {
    let api: Api<Node> = Api::all(shared.client.clone());
    api.patch_status(
        &n.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status(shared, n)})),
    )
    .await?;
    Ok(())
}

async fn renew_lease(shared: &Shared, n: &NodeInfo, node_uid: Option<String>) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let now = MicroTime(Timestamp::now());
    match api.get_opt(&n.name).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(n.name.clone());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            api.replace(&n.name, &PostParams::default(), &lease).await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(n.name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    owner_references: node_uid.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: n.name.clone(),
                            uid,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(n.name.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Renews leases and re-posts node status until aborted.
pub(crate) async fn heartbeat_loop(shared: Arc<Shared>) {
    let nodes_api: Api<Node> = Api::all(shared.client.clone());
    let mut last_status: Vec<Option<Instant>> = vec![None; shared.nodes.len()];
    let mut was_paused: HashSet<String> = HashSet::new();
    loop {
        let paused = lock(&shared.paused).clone();
        for (i, n) in shared.nodes.iter().enumerate() {
            if paused.contains(&n.name) {
                continue;
            }
            let uid = match nodes_api.get_opt(&n.name).await {
                Ok(Some(node)) => node.metadata.uid,
                Ok(None) => {
                    // Deleted by someone: register again, as a kubelet would.
                    if let Err(e) = register(&shared, n).await {
                        tracing::warn!(node = %n.name, "re-register: {e}");
                    }
                    last_status[i] = Some(Instant::now());
                    continue;
                }
                Err(e) => {
                    tracing::warn!(node = %n.name, "get node: {e}");
                    continue;
                }
            };
            if let Err(e) = renew_lease(&shared, n, uid).await {
                tracing::warn!(node = %n.name, "renew lease: {e}");
            }
            let due = was_paused.contains(&n.name)
                || last_status[i].is_none_or(|t| t.elapsed() >= STATUS_PERIOD);
            if due {
                match post_status(&shared, n).await {
                    Ok(()) => last_status[i] = Some(Instant::now()),
                    Err(e) => tracing::warn!(node = %n.name, "post status: {e}"),
                }
            }
        }
        was_paused = paused;
        tokio::time::sleep(shared.config.heartbeat_interval).await;
    }
}
