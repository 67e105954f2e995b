//! The Kubernetes objects of one participant, built from the plan. Pure.
//!
//! Contract: per shard, a StatefulSet (pods spread over the participant's zones with a
//! required zone affinity and a zone topology spread; one volume claim `data` per pod; the
//! shard-node listens on the pod address), a headless Service, a primary Service selecting the
//! pod labelled `aadb.dev/role=primary` (type LoadBalancer, NodePort or ClusterIP after the
//! participant's endpoint type) and a PodDisruptionBudget allowing one pod down; per
//! participant, with `spec.clusterApi`, a Service per shard-node pod (selecting it by its
//! `statefulset.kubernetes.io/pod-name` label, of the participant's endpoint type); per
//! participant, a region endpoint Service selecting its proxies (a Deployment of
//! `shard-node proxy` spread over the zones, with a PodDisruptionBudget allowing one down) or,
//! without proxies, shard 0's primary. Pods meet the
//! "restricted" Pod Security Standard (non-root user and group 65532, which also owns the
//! volumes, no capabilities, no privilege escalation, read-only root filesystem, the
//! runtime's seccomp profile) and get no service-account token (they never call the API).
//! Objects carry the
//! labels of [`crate::labels`] and, when they live in the database's own namespace and
//! cluster, an owner reference to it. Building never fails on a spec [`crate::validate`]
//! accepted.

use std::collections::BTreeMap;

use aadb_crd::{ActiveActiveDatabaseSpec, EndpointType, SHARD_NODE_METRICS_PORT, SHARD_NODE_PORT};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{json, Value};

use crate::labels;
use crate::plan::{ParticipantPlan, ShardPlan, Topology};
use crate::validate::parse_memory;

/// A failure to build an object (a bug or a spec that slipped past validation).
#[derive(Debug, thiserror::Error)]
#[error("cannot build {what}: {source}")]
pub struct ObjectsError {
    what: String,
    #[source]
    source: serde_json::Error,
}

#[cfg(test)]
impl ObjectsError {
    /// A failure to build `what`, for tests of code that reports these.
    pub(crate) fn for_test(what: &str) -> Self {
        let source = serde_json::from_str::<u8>("not json").expect_err("not json");
        ObjectsError {
            what: what.into(),
            source,
        }
    }
}

/// Where the shard-node keeps its data inside the container.
pub const DATA_DIR: &str = "/data";
/// Where the link certificates are mounted.
pub const TLS_DIR: &str = "/tls";
/// Where the users file (the Secret `<db>-acl`) is mounted.
pub const ACL_DIR: &str = "/acl";

/// The volume of the users file.
fn users_volume(database: &str) -> Value {
    json!({"name": "users", "secret": {"secretName": crate::plan::acl_secret(database)}})
}

/// `--aclfile` at the mounted users file.
fn aclfile_args() -> Vec<String> {
    vec![
        "--aclfile".into(),
        format!("{ACL_DIR}/{}", crate::plan::ACL_FILE_KEY),
    ]
}
/// Name of the shard-node container.
pub const CONTAINER: &str = "shard-node";
/// The label the StatefulSet controller puts on each pod: its name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// The unprivileged user and group the shard-node runs as (and owns its data volume).
pub const SHARD_NODE_UID: i64 = 65532;

/// Everything of one participant.
#[derive(Clone, Debug, Default)]
pub struct ParticipantObjects {
    /// One per shard.
    pub stateful_sets: Vec<StatefulSet>,
    /// Headless and primary Services per shard, then the region endpoint.
    pub services: Vec<Service>,
    /// One per shard, then the proxies' when there are proxies.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// The proxies, when the participant has any.
    pub deployments: Vec<Deployment>,
    /// With `spec.networkPolicy`: the shard-nodes' and the proxies'.
    pub network_policies: Vec<NetworkPolicy>,
}

fn typed<T: serde::de::DeserializeOwned>(what: String, v: Value) -> Result<T, ObjectsError> {
    serde_json::from_value(v).map_err(|source| ObjectsError { what, source })
}

fn shard_labels(topo: &Topology, p: &ParticipantPlan, s: &ShardPlan) -> BTreeMap<String, String> {
    let mut l = labels::database_labels(&topo.database, &topo.namespace);
    l.insert(labels::PARTICIPANT.into(), p.name.clone());
    l.insert(labels::SHARD.into(), s.index.to_string());
    l.insert(labels::COMPONENT.into(), "shard-node".into());
    l
}

fn selector(topo: &Topology, p: &ParticipantPlan, s: &ShardPlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::DATABASE.to_string(), topo.database.clone()),
        (labels::PARTICIPANT.to_string(), p.name.clone()),
        (labels::SHARD.to_string(), s.index.to_string()),
    ])
}

fn metadata(
    name: &str,
    p: &ParticipantPlan,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Value {
    let mut m = json!({"name": name, "namespace": p.namespace, "labels": labels});
    if let Some(o) = owner {
        m["ownerReferences"] = json!([o]);
    }
    m
}

fn service_type(p: &ParticipantPlan) -> &'static str {
    match p.endpoint_type {
        EndpointType::LoadBalancer => "LoadBalancer",
        EndpointType::NodePort => "NodePort",
        EndpointType::Host => "ClusterIP",
    }
}

/// The NetworkPolicies of participant `p`: shard-node pods admit the database's own pods (its
/// proxies and other nodes), the operator's namespace and the peers' networks (everyone in
/// Cluster API mode, whose clients reach the nodes); proxies admit clients from anywhere; the
/// metrics port admits only the metrics namespace.
fn network_policies(
    topo: &Topology,
    spec: &ActiveActiveDatabaseSpec,
    np: &aadb_crd::NetworkPolicySpec,
    p: &ParticipantPlan,
    owner: Option<&OwnerReference>,
) -> Result<Vec<NetworkPolicy>, ObjectsError> {
    let mut labels = labels::database_labels(&topo.database, &topo.namespace);
    labels.insert(labels::PARTICIPANT.into(), p.name.clone());
    let of_db = BTreeMap::from([(labels::DATABASE.to_string(), topo.database.clone())]);
    let namespace_named = |ns: &str| json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
    let operator_ns = np
        .operator_namespace
        .clone()
        .unwrap_or_else(|| "aadb-system".into());
    let redis_port = json!([{"protocol": "TCP", "port": SHARD_NODE_PORT}]);
    let metrics_port = json!([{"protocol": "TCP", "port": SHARD_NODE_METRICS_PORT}]);
    let mut node_from = vec![
        json!({"podSelector": {"matchLabels": of_db}}),
        namespace_named(&operator_ns),
    ];
    node_from.extend(
        np.peer_cidrs
            .iter()
            .map(|c| json!({"ipBlock": {"cidr": c}})),
    );
    let mut node_rules = vec![if spec.cluster_api {
        json!({"ports": redis_port})
    } else {
        json!({"from": node_from, "ports": redis_port})
    }];
    let mut proxy_rules = vec![json!({"ports": redis_port})];
    if let Some(ns) = &np.metrics_namespace {
        let scrape = json!({"from": [namespace_named(ns)], "ports": metrics_port});
        node_rules.push(scrape.clone());
        proxy_rules.push(scrape);
    }
    let nodes_name = format!("{}-{}-nodes", topo.database, p.name);
    let proxies_name = format!("{}-{}-proxies", topo.database, p.name);
    let node_selector = BTreeMap::from([
        (labels::DATABASE.to_string(), topo.database.clone()),
        (labels::PARTICIPANT.to_string(), p.name.clone()),
        (labels::COMPONENT.to_string(), "shard-node".to_string()),
    ]);
    let mut out = vec![typed(
        format!("NetworkPolicy {nodes_name}"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": metadata(&nodes_name, p, &labels, owner),
               "spec": {"podSelector": {"matchLabels": node_selector},
                        "policyTypes": ["Ingress"], "ingress": node_rules}}),
    )?];
    if p.proxies > 0 {
        out.push(typed(
            format!("NetworkPolicy {proxies_name}"),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": metadata(&proxies_name, p, &labels, owner),
                   "spec": {"podSelector": {"matchLabels": proxy_selector(topo, p)},
                            "policyTypes": ["Ingress"], "ingress": proxy_rules}}),
        )?);
    }
    Ok(out)
}

/// The spec of a Service clients or other regions reach: `base` with the participant's type
/// and, for load balancers, the networks they admit.
fn exposed_spec(p: &ParticipantPlan, mut base: Value) -> Value {
    base["type"] = json!(service_type(p));
    if p.endpoint_type == EndpointType::LoadBalancer && !p.source_ranges.is_empty() {
        base["loadBalancerSourceRanges"] = json!(p.source_ranges);
    }
    base
}

/// The shard-node command line of a shard's pods (the container's `args`).
pub fn shard_node_args(
    spec: &ActiveActiveDatabaseSpec,
    p: &ParticipantPlan,
    s: &ShardPlan,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "server".into(),
        "--bind".into(),
        "0.0.0.0".into(),
        "--port".into(),
        plaintext_port(spec).to_string(),
        "--dir".into(),
        DATA_DIR.into(),
        "--participant".into(),
        p.name.clone(),
        "--shard".into(),
        s.index.to_string(),
        "--appendfsync".into(),
        spec.effective_appendfsync().as_flag().into(),
        "--metrics-port".into(),
        SHARD_NODE_METRICS_PORT.to_string(),
        "--log-format".into(),
        "json".into(),
    ];
    if let Some(bytes) = spec.maxmemory.as_deref().and_then(parse_memory) {
        args.extend(["--maxmemory".into(), bytes.to_string()]);
    }
    args.extend(tls_args(spec));
    args.extend(aclfile_args());
    let failover = spec.effective_failover();
    if failover.enabled {
        // A restarted node takes no writes until the supervisor tells it its role: it may
        // have been failed over while it was down.
        args.push("--restart-hold-until-told".into());
    }
    args
}

/// The plaintext port of a node or proxy: the RESP port, or with TLS (which serves the RESP
/// port) an unused one next to it.
fn plaintext_port(spec: &ActiveActiveDatabaseSpec) -> u16 {
    if spec.tls.is_some() {
        SHARD_NODE_PORT + 1
    } else {
        SHARD_NODE_PORT
    }
}

/// With TLS: TLS only on the RESP port, with the files of the TLS Secret; every client may
/// connect with the CA alone (and a password), links check that the other side's certificate
/// comes from the database's CA.
fn tls_args(spec: &ActiveActiveDatabaseSpec) -> Vec<String> {
    if spec.tls.is_none() {
        return Vec::new();
    }
    let mut args: Vec<String> = [
        "--tls-port",
        &SHARD_NODE_PORT.to_string(),
        "--tls-only",
        "yes",
        "--tls-auth-clients",
        "optional",
        "--tls-link-verify",
        "ca",
    ]
    .map(str::to_string)
    .to_vec();
    for (flag, file) in [
        ("--tls-cert", "tls.crt"),
        ("--tls-key", "tls.key"),
        ("--tls-ca", "ca.crt"),
    ] {
        args.extend([flag.into(), format!("{TLS_DIR}/{file}")]);
    }
    args
}

fn stateful_set(
    topo: &Topology,
    spec: &ActiveActiveDatabaseSpec,
    p: &ParticipantPlan,
    s: &ShardPlan,
    owner: Option<&OwnerReference>,
) -> Result<StatefulSet, ObjectsError> {
    let labels = shard_labels(topo, p, s);
    let select = selector(topo, p, s);
    let overrides = spec.pod_template.clone().unwrap_or_default();
    let mut pod_labels = overrides.labels.clone().unwrap_or_default();
    pod_labels.extend(labels.clone());
    let mut mounts = vec![
        json!({"name": "data", "mountPath": DATA_DIR}),
        json!({"name": "users", "mountPath": ACL_DIR, "readOnly": true}),
    ];
    let mut volumes = vec![users_volume(&topo.database)];
    if let Some(secret) = crate::plan::tls_secret(&topo.database, spec) {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(json!({"name": "tls", "secret": {"secretName": secret}}));
    }
    let mut container = json!({
        "name": CONTAINER,
        "image": spec.effective_image(),
        "imagePullPolicy": "IfNotPresent",
        "args": shard_node_args(spec, p, s),
        "env": container_env(&topo.database, spec),
        "ports": [
            {"name": "redis", "containerPort": SHARD_NODE_PORT},
            {"name": "metrics", "containerPort": SHARD_NODE_METRICS_PORT}
        ],
        "readinessProbe": tcp_probe(1, 2, 0),
        "livenessProbe": tcp_probe(5, 3, 5),
        "volumeMounts": mounts,
        "securityContext": restricted_container(),
    });
    let resources = spec
        .participants
        .iter()
        .find(|q| q.name == p.name)
        .and_then(|q| spec.resources_in(q))
        .or(spec.resources.as_ref());
    if let Some(r) = resources {
        container["resources"] = serde_json::to_value(r).map_err(|source| ObjectsError {
            what: format!("resources of {}", s.name),
            source,
        })?;
    }
    let mut pod_spec = json!({
        "containers": [container],
        "securityContext": restricted_pod(),
        "automountServiceAccountToken": false,
        "volumes": volumes,
        "terminationGracePeriodSeconds": overrides.termination_grace_period_seconds.unwrap_or(30),
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": labels::ZONE, "operator": "In", "values": p.zones}]}]}}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": labels::ZONE, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": select}},
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": select}}
        ],
    });
    if let Some(ns) = &overrides.node_selector {
        pod_spec["nodeSelector"] = json!(ns);
    }
    if let Some(t) = &overrides.tolerations {
        pod_spec["tolerations"] = json!(t);
    }
    if let Some(pc) = &overrides.priority_class_name {
        pod_spec["priorityClassName"] = json!(pc);
    }
    let persistence = spec.persistence.clone().unwrap_or_default();
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": persistence.size.map(|q| q.0).unwrap_or_else(|| "1Gi".into())}},
    });
    if let Some(class) = &persistence.storage_class_name {
        claim_spec["storageClassName"] = json!(class);
    }
    let when_deleted = match spec.effective_reclaim_policy() {
        aadb_crd::ReclaimPolicy::Delete => "Delete",
        aadb_crd::ReclaimPolicy::Retain => "Retain",
    };
    typed(
        format!("StatefulSet {}", s.name),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata(&s.name, p, &labels, owner),
            "spec": {
                "replicas": p.replicas + 1,
                "serviceName": s.headless_service,
                "podManagementPolicy": "Parallel",
                // The operator replaces outdated pods itself, handing a primary's role over
                // to a replica before its pod goes (see the supervisor).
                "updateStrategy": {"type": "OnDelete"},
                "selector": {"matchLabels": select},
                "template": {
                    "metadata": {"labels": pod_labels, "annotations": overrides.annotations.clone().unwrap_or_default()},
                    "spec": pod_spec,
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": labels}, "spec": claim_spec}],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": when_deleted, "whenScaled": "Retain"},
            }
        }),
    )
}

fn proxy_selector(topo: &Topology, p: &ParticipantPlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::DATABASE.to_string(), topo.database.clone()),
        (labels::PARTICIPANT.to_string(), p.name.clone()),
        (
            labels::COMPONENT.to_string(),
            labels::COMPONENT_PROXY.to_string(),
        ),
    ])
}

/// The environment of shard-node and proxy containers: the pod address, the application
/// password (the `default` user's) and the internal user's password, from their Secrets.
fn container_env(database: &str, spec: &ActiveActiveDatabaseSpec) -> Vec<Value> {
    let app = crate::plan::password_secret(database, spec);
    let internal = crate::plan::internal_secret(database);
    vec![
        json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
        json!({"name": "SHARD_NODE_REQUIREPASS", "valueFrom": {"secretKeyRef": {
            "name": app.name, "key": app.key}}}),
        json!({"name": "SHARD_NODE_INTERNAL_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": internal.name, "key": internal.key}}}),
        json!({"name": "SHARD_NODE_INTERNAL_USER", "value": crate::plan::INTERNAL_USER}),
    ]
}

/// A TCP probe of the RESP port.
fn tcp_probe(period: u32, failures: u32, delay: u32) -> Value {
    json!({"tcpSocket": {"port": SHARD_NODE_PORT}, "periodSeconds": period,
           "failureThreshold": failures, "timeoutSeconds": 1, "initialDelaySeconds": delay})
}

/// The "restricted" Pod Security Standard for a pod: a non-root user and group
/// ([`SHARD_NODE_UID`]) that also owns the volumes, and the runtime's seccomp profile.
fn restricted_pod() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": SHARD_NODE_UID,
        "runAsGroup": SHARD_NODE_UID,
        "fsGroup": SHARD_NODE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The "restricted" Pod Security Standard for a container: no privileges, no capabilities,
/// nothing written outside its volumes.
fn restricted_container() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
    })
}

/// The `shard-node proxy` command line of the participant's proxy pods.
pub fn proxy_args(spec: &ActiveActiveDatabaseSpec) -> Vec<String> {
    let mut args: Vec<String> = [
        "proxy",
        "--bind",
        "0.0.0.0",
        "--port",
        &plaintext_port(spec).to_string(),
        "--metrics-port",
        &SHARD_NODE_METRICS_PORT.to_string(),
        "--log-format",
        "json",
    ]
    .map(str::to_string)
    .to_vec();
    let tls = tls_args(spec);
    if !tls.is_empty() {
        args.extend(tls);
        args.extend(["--tls-backends".into(), "yes".into()]);
    }
    args.extend(aclfile_args());
    args
}

/// The proxies of `p`: a Deployment spread over its zones, and a PodDisruptionBudget that
/// keeps all but one running.
fn proxies(
    topo: &Topology,
    spec: &ActiveActiveDatabaseSpec,
    p: &ParticipantPlan,
    owner: Option<&OwnerReference>,
) -> Result<(Deployment, PodDisruptionBudget), ObjectsError> {
    let select = proxy_selector(topo, p);
    let mut labels = labels::database_labels(&topo.database, &topo.namespace);
    labels.extend(select.clone());
    let mut container = json!({
        "name": "proxy",
        "image": spec.effective_image(),
        "imagePullPolicy": "IfNotPresent",
        "args": proxy_args(spec),
        "env": container_env(&topo.database, spec),
        "ports": [
            {"name": "redis", "containerPort": SHARD_NODE_PORT},
            {"name": "metrics", "containerPort": SHARD_NODE_METRICS_PORT}
        ],
        "readinessProbe": tcp_probe(1, 2, 0),
        "livenessProbe": tcp_probe(5, 3, 0),
        "securityContext": restricted_container(),
    });
    if let Some(r) = spec.proxy.as_ref().and_then(|x| x.resources.as_ref()) {
        container["resources"] = serde_json::to_value(r).map_err(|source| ObjectsError {
            what: format!("resources of {}", p.proxy_name),
            source,
        })?;
    }
    let mut volumes = vec![users_volume(&topo.database)];
    let mut mounts = vec![json!({"name": "users", "mountPath": ACL_DIR, "readOnly": true})];
    if let Some(secret) = crate::plan::tls_secret(&topo.database, spec) {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(json!({"name": "tls", "secret": {"secretName": secret}}));
    }
    container["volumeMounts"] = json!(mounts);
    let deployment = typed(
        format!("Deployment {}", p.proxy_name),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(&p.proxy_name, p, &labels, owner),
            "spec": {
                "replicas": p.proxies,
                "selector": {"matchLabels": select},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "volumes": volumes,
                        "securityContext": restricted_pod(),
                        "automountServiceAccountToken": false,
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": labels::ZONE, "operator": "In", "values": p.zones}]}]}}},
                        "topologySpreadConstraints": [
                            {"maxSkew": 1, "topologyKey": labels::ZONE, "whenUnsatisfiable": "ScheduleAnyway",
                             "labelSelector": {"matchLabels": select}}
                        ],
                    },
                },
            }
        }),
    )?;
    let budget = typed(
        format!("PodDisruptionBudget {}", p.proxy_name),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "metadata": metadata(&p.proxy_name, p, &labels, owner),
               "spec": {"maxUnavailable": 1, "selector": {"matchLabels": select}}}),
    )?;
    Ok((deployment, budget))
}

/// Builds every object of participant `p`; `owner` is set when they live next to the database.
pub fn participant_objects(
    topo: &Topology,
    spec: &ActiveActiveDatabaseSpec,
    p: &ParticipantPlan,
    owner: Option<&OwnerReference>,
) -> Result<ParticipantObjects, ObjectsError> {
    let mut out = ParticipantObjects::default();
    let redis_port =
        json!([{"name": "redis", "port": SHARD_NODE_PORT, "targetPort": SHARD_NODE_PORT}]);
    for s in &p.shards {
        let labels = shard_labels(topo, p, s);
        let select = selector(topo, p, s);
        let mut primary = select.clone();
        primary.insert(labels::ROLE.into(), labels::ROLE_PRIMARY.into());
        out.stateful_sets
            .push(stateful_set(topo, spec, p, s, owner)?);
        out.services.push(typed(
            format!("Service {}", s.headless_service),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": metadata(&s.headless_service, p, &labels, owner),
                   "spec": {"clusterIP": "None", "selector": select, "ports": redis_port,
                            "publishNotReadyAddresses": true}}),
        )?);
        out.services.push(typed(
            format!("Service {}", s.name),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": metadata(&s.name, p, &labels, owner),
                   "spec": exposed_spec(p, json!({"selector": primary, "ports": redis_port}))}),
        )?);
        if topo.cluster_api {
            // One Service per pod: the address the node announces to cluster-aware clients.
            for pod in &s.pods {
                out.services.push(typed(
                    format!("Service {pod}"),
                    json!({"apiVersion": "v1", "kind": "Service",
                           "metadata": metadata(pod, p, &labels, owner),
                           "spec": exposed_spec(p, json!({"ports": redis_port,
                                    "selector": BTreeMap::from([(POD_NAME_LABEL, pod)])}))}),
                )?);
            }
        }
        out.disruption_budgets.push(typed(
            format!("PodDisruptionBudget {}", s.name),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": metadata(&s.name, p, &labels, owner),
                   "spec": {"maxUnavailable": 1, "selector": {"matchLabels": select}}}),
        )?);
    }
    let mut region_labels = labels::database_labels(&topo.database, &topo.namespace);
    region_labels.insert(labels::PARTICIPANT.into(), p.name.clone());
    let region_selector = if p.proxies > 0 {
        let (deployment, budget) = proxies(topo, spec, p, owner)?;
        out.deployments.push(deployment);
        out.disruption_budgets.push(budget);
        proxy_selector(topo, p)
    } else {
        BTreeMap::from([
            (labels::DATABASE.to_string(), topo.database.clone()),
            (labels::PARTICIPANT.to_string(), p.name.clone()),
            (labels::SHARD.to_string(), "0".to_string()),
            (labels::ROLE.to_string(), labels::ROLE_PRIMARY.to_string()),
        ])
    };
    if let Some(np) = &spec.network_policy {
        out.network_policies = network_policies(topo, spec, np, p, owner)?;
    }
    out.services.push(typed(
        format!("Service {}", p.region_service),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": metadata(&p.region_service, p, &region_labels, owner),
               "spec": exposed_spec(p, json!({"selector": region_selector, "ports": redis_port}))}),
    )?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;

    fn spec(json: Value) -> ActiveActiveDatabaseSpec {
        serde_json::from_value(json).expect("test spec parses")
    }

    #[test]
    fn builds_every_object_with_labels_spread_and_selectors() {
        // Without proxies: the region endpoint selects shard 0's primary.
        let s = spec(json!({
            "shards": 2, "replicasPerShard": 1, "maxmemory": "1mb", "proxy": {"replicas": 0},
            "auth": {"passwordSecretRef": {"name": "pw"}},
            "tls": {"secretName": "links"},
            "participants": [{"name": "east", "zones": ["east-a", "east-b", "east-c"]}]
        }));
        let topo = plan("db", "ns", &s, None);
        let p = &topo.participants[0];
        let objs = participant_objects(&topo, &s, p, None).expect("objects build");
        assert_eq!(objs.stateful_sets.len(), 2);
        assert_eq!(objs.services.len(), 5);
        assert_eq!(objs.disruption_budgets.len(), 2);
        let sts = &objs.stateful_sets[1];
        let v = serde_json::to_value(sts).expect("serializes");
        assert_eq!(v["metadata"]["name"], "db-east-1");
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"][labels::SHARD],
            "1"
        );
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(
            pod["topologySpreadConstraints"][0]["topologyKey"],
            labels::ZONE
        );
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["east-a", "east-b", "east-c"])
        );
        let args: Vec<String> =
            serde_json::from_value(pod["containers"][0]["args"].clone()).expect("args");
        let joined = args.join(" ");
        for needle in [
            "--participant east",
            "--shard 1",
            "--maxmemory 1048576",
            "--tls-ca /tls/ca.crt",
            "--appendfsync always",
        ] {
            assert!(joined.contains(needle), "{needle} not in {joined}");
        }
        assert_eq!(
            pod["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["key"],
            "password"
        );
        let primary = serde_json::to_value(&objs.services[1]).expect("svc");
        assert_eq!(primary["metadata"]["name"], "db-east-0");
        assert_eq!(primary["spec"]["type"], "LoadBalancer");
        assert_eq!(primary["spec"]["selector"][labels::ROLE], "primary");
        let region = serde_json::to_value(objs.services.last().expect("region")).expect("svc");
        assert_eq!(region["metadata"]["name"], "db-east");
        assert_eq!(region["spec"]["selector"][labels::SHARD], "0");
    }

    #[test]
    fn proxies_are_a_spread_deployment_that_the_region_endpoint_selects() {
        let s = spec(json!({
            "shards": 3, "image": "img:1",
            "auth": {"passwordSecretRef": {"name": "pw"}},
            "proxy": {"replicas": 2, "resources": {"limits": {"cpu": "1"}}},
            "participants": [{"name": "east", "zones": ["east-a", "east-b"]}]
        }));
        let topo = plan("db", "ns", &s, None);
        let objs = participant_objects(&topo, &s, &topo.participants[0], None).expect("objects");
        assert_eq!(objs.deployments.len(), 1);
        assert_eq!(objs.disruption_budgets.len(), 4);
        let d = serde_json::to_value(&objs.deployments[0]).expect("deployment");
        assert_eq!(d["metadata"]["name"], "db-east-proxy");
        assert_eq!(d["spec"]["replicas"], 2);
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(c["args"][0], "proxy");
        assert_eq!(c["image"], "img:1");
        assert_eq!(c["resources"]["limits"]["cpu"], "1");
        assert_eq!(c["env"][1]["name"], "SHARD_NODE_REQUIREPASS");
        assert_eq!(c["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["east-a", "east-b"])
        );
        let labels_of_pods = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels_of_pods[labels::COMPONENT], "proxy");
        assert!(labels_of_pods.get(labels::SHARD).is_none());
        let region = serde_json::to_value(objs.services.last().expect("region")).expect("svc");
        assert_eq!(region["metadata"]["name"], "db-east");
        assert_eq!(region["spec"]["selector"][labels::COMPONENT], "proxy");
        assert!(region["spec"]["selector"].get(labels::SHARD).is_none());
        let budget =
            serde_json::to_value(objs.disruption_budgets.last().expect("pdb")).expect("pdb");
        assert_eq!(budget["metadata"]["name"], "db-east-proxy");
        assert_eq!(
            budget["spec"]["selector"]["matchLabels"][labels::COMPONENT],
            "proxy"
        );
    }

    #[test]
    fn cluster_api_mode_gives_every_pod_a_service() {
        let s = spec(json!({
            "shards": 2, "replicasPerShard": 1, "clusterApi": true,
            "participants": [{"name": "east", "zones": ["east-a"], "endpoint": {"type": "NodePort"}}]
        }));
        let topo = plan("db", "ns", &s, None);
        let objs = participant_objects(&topo, &s, &topo.participants[0], None).expect("objects");
        let per_pod: Vec<Value> = objs
            .services
            .iter()
            .map(|svc| serde_json::to_value(svc).expect("svc"))
            .filter(|v| v["spec"]["selector"].get(POD_NAME_LABEL).is_some())
            .collect();
        let names: Vec<&str> = per_pod
            .iter()
            .filter_map(|v| v["metadata"]["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["db-east-0-0", "db-east-0-1", "db-east-1-0", "db-east-1-1"]
        );
        for v in &per_pod {
            assert_eq!(v["spec"]["type"], "NodePort");
            assert_eq!(v["spec"]["selector"][POD_NAME_LABEL], v["metadata"]["name"]);
        }
    }

    #[test]
    fn pods_read_both_passwords_and_load_balancers_admit_only_the_given_networks() {
        let s = spec(
            json!({"proxy": {"replicas": 1}, "participants": [{"name": "east", "zones": ["a"],
            "endpoint": {"loadBalancerSourceRanges": ["10.1.0.0/16"]}}]}),
        );
        let topo = plan("db", "ns", &s, None);
        let objs = participant_objects(&topo, &s, &topo.participants[0], None).expect("objects");
        let node = serde_json::to_value(&objs.stateful_sets[0]).expect("sts");
        let proxy = serde_json::to_value(&objs.deployments[0]).expect("deployment");
        for v in [node, proxy] {
            let env = &v["spec"]["template"]["spec"]["containers"][0]["env"];
            let from = |name: &str| {
                env.as_array()
                    .expect("env")
                    .iter()
                    .find(|e| e["name"] == name)
                    .map(|e| e["valueFrom"]["secretKeyRef"].clone())
                    .unwrap_or_default()
            };
            // No spec.auth: the generated Secret named after the database.
            assert_eq!(
                from("SHARD_NODE_REQUIREPASS"),
                json!({"name": "db", "key": "password"})
            );
            assert_eq!(
                from("SHARD_NODE_INTERNAL_PASSWORD"),
                json!({"name": "db-internal", "key": "password"})
            );
        }
        let exposed: Vec<Value> = objs
            .services
            .iter()
            .map(|svc| serde_json::to_value(svc).expect("svc"))
            .filter(|v| v["spec"]["type"] == "LoadBalancer")
            .collect();
        assert_eq!(exposed.len(), 2, "the shard's Service and the region's");
        for v in exposed {
            assert_eq!(
                v["spec"]["loadBalancerSourceRanges"],
                json!(["10.1.0.0/16"])
            );
        }
    }

    #[test]
    fn network_policies_admit_the_database_the_operator_peers_and_the_scrapers() {
        let s = spec(
            json!({"networkPolicy": {"peerCidrs": ["10.9.0.0/16"], "metricsNamespace": "monitoring"},
            "participants": [{"name": "east", "zones": ["a"]}]}),
        );
        let topo = plan("db", "ns", &s, None);
        let objs = participant_objects(&topo, &s, &topo.participants[0], None).expect("objects");
        assert_eq!(objs.network_policies.len(), 2);
        let nodes = serde_json::to_value(&objs.network_policies[0]).expect("policy");
        assert_eq!(nodes["metadata"]["name"], "db-east-nodes");
        assert_eq!(
            nodes["spec"]["podSelector"]["matchLabels"][labels::COMPONENT],
            "shard-node"
        );
        let from = &nodes["spec"]["ingress"][0]["from"];
        assert_eq!(
            from[0]["podSelector"]["matchLabels"][labels::DATABASE],
            "db"
        );
        assert_eq!(
            from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "aadb-system"
        );
        assert_eq!(from[2]["ipBlock"]["cidr"], "10.9.0.0/16");
        assert_eq!(
            nodes["spec"]["ingress"][0]["ports"][0]["port"],
            SHARD_NODE_PORT
        );
        let scrape = &nodes["spec"]["ingress"][1];
        assert_eq!(scrape["ports"][0]["port"], SHARD_NODE_METRICS_PORT);
        assert_eq!(
            scrape["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "monitoring"
        );
        let proxies = serde_json::to_value(&objs.network_policies[1]).expect("policy");
        assert!(
            proxies["spec"]["ingress"][0]["from"].is_null(),
            "clients from anywhere"
        );
        // Without the field, none; in Cluster API mode clients reach the nodes too.
        let plain = spec(json!({"participants": [{"name": "east", "zones": ["a"]}]}));
        let topo = plan("db", "ns", &plain, None);
        assert!(
            participant_objects(&topo, &plain, &topo.participants[0], None)
                .expect("objects")
                .network_policies
                .is_empty()
        );
        let api = spec(json!({"clusterApi": true, "networkPolicy": {},
            "participants": [{"name": "east", "zones": ["a"]}]}));
        let topo = plan("db", "ns", &api, None);
        let objs = participant_objects(&topo, &api, &topo.participants[0], None).expect("objects");
        let nodes = serde_json::to_value(&objs.network_policies[0]).expect("policy");
        assert!(nodes["spec"]["ingress"][0]["from"].is_null());
    }

    /// What the "restricted" Pod Security Standard requires of a pod and its containers.
    #[test]
    fn pods_meet_the_restricted_pod_security_standard() {
        let s = spec(json!({"participants": [{"name": "east", "zones": ["a"]}]}));
        let topo = plan("db", "ns", &s, None);
        let objs = participant_objects(&topo, &s, &topo.participants[0], None).expect("objects");
        assert!(!objs.deployments.is_empty(), "proxies by default");
        let templates = [
            serde_json::to_value(&objs.stateful_sets[0]).expect("serializes"),
            serde_json::to_value(&objs.deployments[0]).expect("serializes"),
        ];
        for v in &templates {
            let pod = &v["spec"]["template"]["spec"];
            let what = &v["kind"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            for id in ["runAsUser", "runAsGroup", "fsGroup"] {
                assert_eq!(pod["securityContext"][id], 65532, "{what} {id}");
            }
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            for c in pod["containers"].as_array().expect("containers") {
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert!(sc["capabilities"]["add"].is_null(), "{what}");
                assert_eq!(sc["runAsNonRoot"], true, "{what}");
                assert!(sc["privileged"].is_null(), "{what}");
                assert!(c["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .all(|p| p["hostPort"].is_null()));
            }
            for volume in pod["volumes"].as_array().into_iter().flatten() {
                assert!(volume["hostPath"].is_null(), "{volume}");
            }
            assert!(
                pod["hostNetwork"].is_null() && pod["hostPID"].is_null(),
                "{what}"
            );
        }
    }

    #[test]
    fn owner_reference_only_when_given_and_endpoint_type_maps() {
        let s = spec(
            json!({"participants": [{"name": "east", "zones": ["a"], "endpoint": {"type": "NodePort"}}]}),
        );
        let topo = plan("db", "ns", &s, None);
        let owner = OwnerReference {
            api_version: "aadb.dev/v1alpha1".into(),
            kind: "ActiveActiveDatabase".into(),
            name: "db".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let with =
            participant_objects(&topo, &s, &topo.participants[0], Some(&owner)).expect("build");
        assert_eq!(
            with.stateful_sets[0]
                .metadata
                .owner_references
                .as_ref()
                .map(Vec::len),
            Some(1)
        );
        let without = participant_objects(&topo, &s, &topo.participants[0], None).expect("build");
        assert!(without.stateful_sets[0].metadata.owner_references.is_none());
        let svc = serde_json::to_value(&with.services[1]).expect("svc");
        assert_eq!(svc["spec"]["type"], "NodePort");
    }
}
