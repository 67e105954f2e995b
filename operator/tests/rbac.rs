//! The operator's ClusterRole grants exactly what the operator calls, no more and no less.
//!
//! [`CALLS`] lists every (API group, resource, verb) the operator uses, with where in the code;
//! the test compares it with the ClusterRole in `manifests/operator/operator.yaml` (the chart
//! rendered with its default values, kept in step by `make manifests`). A new API call needs
//! its line here and its rule in `charts/aadb-operator/templates/_helpers.tpl`; a rule that no
//! call needs is reported as one to remove. Needs no cluster.

use std::collections::BTreeSet;

/// (API group, resource, verb, where the operator calls it).
const CALLS: &[(&str, &str, &str, &str)] = &[
    // The databases.
    (
        "aadb.dev",
        "activeactivedatabases",
        "list",
        "controller::run (watcher)",
    ),
    (
        "aadb.dev",
        "activeactivedatabases",
        "watch",
        "controller::run (watcher)",
    ),
    (
        "aadb.dev",
        "activeactivedatabases",
        "patch",
        "finalizer; prune::prune_left_participants (annotation)",
    ),
    (
        "aadb.dev",
        "activeactivedatabases/status",
        "patch",
        "controller::write_status",
    ),
    (
        "aadb.dev",
        "activeactivedatabases/finalizers",
        "update",
        "owner references with blockOwnerDeletion",
    ),
    // StatefulSets.
    (
        "apps",
        "statefulsets",
        "list",
        "controller::run (owns); supervisor::tick; prune",
    ),
    ("apps", "statefulsets", "watch", "controller::run (owns)"),
    (
        "apps",
        "statefulsets",
        "get",
        "apply::foreign (metadata before apply)",
    ),
    (
        "apps",
        "statefulsets",
        "create",
        "apply::apply_owned (server-side apply of a new object)",
    ),
    (
        "apps",
        "statefulsets",
        "patch",
        "apply::apply_owned (server-side apply)",
    ),
    ("apps", "statefulsets", "delete", "prune::prune_departed"),
    (
        "apps",
        "statefulsets",
        "deletecollection",
        "prune::delete_all_in, prune::delete_participant",
    ),
    // Deployments (proxies).
    ("apps", "deployments", "list", "prune"),
    (
        "apps",
        "deployments",
        "get",
        "apply::foreign, apply::delete_owned",
    ),
    ("apps", "deployments", "create", "apply::apply_owned"),
    ("apps", "deployments", "patch", "apply::apply_owned"),
    (
        "apps",
        "deployments",
        "delete",
        "apply::delete_owned; prune::prune_departed",
    ),
    ("apps", "deployments", "deletecollection", "prune"),
    // Services.
    (
        "",
        "services",
        "list",
        "controller::run (owns); supervisor::tick; prune",
    ),
    ("", "services", "watch", "controller::run (owns)"),
    ("", "services", "get", "apply::foreign; supervisor::peers"),
    ("", "services", "create", "apply::apply_owned"),
    ("", "services", "patch", "apply::apply_owned"),
    ("", "services", "delete", "prune::prune_departed"),
    ("", "services", "deletecollection", "prune"),
    // PodDisruptionBudgets.
    (
        "policy",
        "poddisruptionbudgets",
        "list",
        "controller::run (owns); prune",
    ),
    (
        "policy",
        "poddisruptionbudgets",
        "watch",
        "controller::run (owns)",
    ),
    (
        "policy",
        "poddisruptionbudgets",
        "get",
        "apply::foreign, apply::delete_owned",
    ),
    (
        "policy",
        "poddisruptionbudgets",
        "create",
        "apply::apply_owned",
    ),
    (
        "policy",
        "poddisruptionbudgets",
        "patch",
        "apply::apply_owned",
    ),
    (
        "policy",
        "poddisruptionbudgets",
        "delete",
        "apply::delete_owned; prune::prune_departed",
    ),
    (
        "policy",
        "poddisruptionbudgets",
        "deletecollection",
        "prune",
    ),
    // Pods.
    (
        "",
        "pods",
        "list",
        "supervisor::tick; apply::primary_beyond",
    ),
    ("", "pods", "patch", "supervisor::execute::set_role"),
    ("", "pods", "delete", "supervisor::roll"),
    // Volume claims.
    ("", "persistentvolumeclaims", "list", "prune::delete_all_in"),
    ("", "persistentvolumeclaims", "deletecollection", "prune"),
    // Secrets: read by name only.
    (
        "",
        "secrets",
        "get",
        "dereference; clusters::client_for; credentials; certificates; users; apply::foreign",
    ),
    ("", "secrets", "create", "credentials::ensure_secret"),
    (
        "",
        "secrets",
        "patch",
        "apply::copy_password; credentials::copy_from_first; certificates::write; users::ensure",
    ),
    ("", "secrets", "deletecollection", "prune"),
    // NetworkPolicies (spec.networkPolicy).
    (
        "networking.k8s.io",
        "networkpolicies",
        "get",
        "apply::apply_owned",
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        "create",
        "apply::apply_owned (server-side apply of a new object)",
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        "patch",
        "apply::apply_owned",
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        "deletecollection",
        "apply::apply_participant (turned off); prune",
    ),
    // Events (kube-runtime's Recorder writes events.k8s.io/v1 only).
    (
        "events.k8s.io",
        "events",
        "create",
        "controller::publish; supervisor",
    ),
    (
        "events.k8s.io",
        "events",
        "patch",
        "controller::publish (event series)",
    ),
    // Leader election.
    (
        "coordination.k8s.io",
        "leases",
        "get",
        "leader::attempt, leader::release",
    ),
    ("coordination.k8s.io", "leases", "create", "leader::attempt"),
    (
        "coordination.k8s.io",
        "leases",
        "update",
        "leader::attempt, leader::release (replace)",
    ),
    // Cluster-wide.
    ("", "nodes", "list", "supervisor::tick; supervisor::peers"),
    ("", "namespaces", "get", "apply::ensure_namespace"),
    ("", "namespaces", "create", "apply::ensure_namespace"),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "get",
        "controller::check_crd_installed",
    ),
];

fn manifest() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/operator/operator.yaml");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (make manifests)", path.display()))
}

/// Every (group, resource, verb) the operator's ClusterRole grants.
fn granted() -> BTreeSet<(String, String, String)> {
    let text = manifest();
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("manifest documents parse"))
        .find(|v| v["kind"] == "ClusterRole")
        .expect("a ClusterRole in manifests/operator/operator.yaml");
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_sequence()
                .unwrap_or_else(|| panic!("rule without {key}: {rule:?}"))
                .iter()
                .map(|v| v.as_str().expect("a string").to_string())
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    assert_ne!(verb, "*", "wildcard verb in {rule:?}");
                    assert_ne!(resource, "*", "wildcard resource in {rule:?}");
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

use serde::Deserialize as _;

#[test]
fn the_cluster_role_grants_exactly_what_the_operator_calls() {
    let used: BTreeSet<(String, String, String)> = CALLS
        .iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    assert_eq!(used.len(), CALLS.len(), "a call is listed twice");
    let granted = granted();
    let missing: Vec<_> = used.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ClusterRole differs from the operator's calls:\n  not granted but called: {missing:?}\n  granted but never called: {extra:?}"
    );
}

#[test]
fn secrets_are_never_listed_or_watched() {
    let granted = granted();
    for verb in ["list", "watch"] {
        assert!(
            !granted.contains(&("".into(), "secrets".into(), verb.into())),
            "the ClusterRole lets the operator {verb} Secrets"
        );
    }
}
