//! The real control plane behaves as production's: pinned version, CRD schema and CEL
//! validation, garbage collection, node heartbeats, kubectl and helm against it.

mod common;

use std::time::Duration;

use aadb_e2e::bins::pinned_kubernetes_version;
use aadb_e2e::cluster::node_is_ready;
use common::{apply_cluster, eventually, harness, namespace, run, tool};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

fn cluster() -> &'static common::Harness {
    harness("cp", |_| {})
}

#[test]
fn server_reports_the_pinned_version() {
    run(cluster(), |c| async move {
        let v = c.client().apiserver_version().await.expect("version");
        assert_eq!(
            v.git_version,
            pinned_kubernetes_version(),
            "stamped version"
        );
        assert_ne!(v.git_version, "v0.0.0");
        let minor = pinned_kubernetes_version()
            .split('.')
            .nth(1)
            .expect("minor")
            .to_string();
        assert_eq!(v.major, "1");
        assert_eq!(v.minor, minor);
    });
}

#[test]
fn nodes_are_ready_with_zone_labels_and_kubectl_sees_them() {
    run(cluster(), |c| async move {
        let nodes = Api::<Node>::all(c.client())
            .list(&Default::default())
            .await
            .expect("nodes");
        assert_eq!(nodes.items.len(), 3);
        let mut zones: Vec<String> = nodes
            .items
            .iter()
            .map(|n| {
                assert!(node_is_ready(n), "{:?} not ready", n.metadata.name);
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("topology.kubernetes.io/zone"))
                    .cloned()
                    .expect("zone label")
            })
            .collect();
        zones.sort();
        assert_eq!(zones, ["cp-a", "cp-b", "cp-c"]);
        let (ok, out, err) = tool(c, "kubectl", &["get", "nodes", "-o", "name"], &[]).await;
        assert!(ok, "kubectl failed: {err}");
        assert_eq!(out.lines().count(), 3, "{out}");
        let (ok, out, err) = tool(c, "kubectl", &["version", "-o", "json"], &[]).await;
        assert!(ok, "kubectl version failed: {err}");
        assert!(out.contains(pinned_kubernetes_version()), "{out}");
    });
}

#[test]
fn crd_structural_schema_and_cel_rule_refuse_invalid_objects() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "crd").await;
        let crd: CustomResourceDefinition = apply_cluster(c, json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.e2e.aadb.local"},
            "spec": {
                "group": "e2e.aadb.local",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["replicas"],
                                "properties": {
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                },
                                "x-kubernetes-validations": [{
                                    "rule": "!has(self.minReplicas) || self.minReplicas <= self.replicas",
                                    "message": "minReplicas must not exceed replicas",
                                }],
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        },
                    }},
                }],
            },
        })).await;
        let crds: Api<CustomResourceDefinition> = Api::all(c.client());
        let name = crd.metadata.name.clone().expect("name");
        eventually("CRD established", Duration::from_secs(30), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
        let gvk = GroupVersionKind::gvk("e2e.aadb.local", "v1", "Widget");
        let api: Api<DynamicObject> =
            Api::namespaced_with(c.client(), &ns, &ApiResource::from_gvk(&gvk));
        let widget = |name: &str, spec: serde_json::Value| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "e2e.aadb.local/v1", "kind": "Widget",
                "metadata": {"name": name}, "spec": spec,
            }))
            .expect("widget")
        };
        // Valid, with an unknown field that the structural schema prunes.
        let created = eventually(
            "the new resource is served",
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let w = widget(
                    "good",
                    json!({"replicas": 3, "minReplicas": 1, "unknownField": true}),
                );
                async move { api.create(&PostParams::default(), &w).await.ok() }
            },
        )
        .await;
        assert_eq!(created.data["spec"]["replicas"], 3);
        assert!(
            created.data["spec"].get("unknownField").is_none(),
            "pruned: {:?}",
            created.data
        );
        // The CEL rule refuses this one.
        let err = api
            .create(
                &PostParams::default(),
                &widget("bad-cel", json!({"replicas": 1, "minReplicas": 2})),
            )
            .await
            .expect_err("CEL rule must refuse minReplicas > replicas");
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 422, "{s:?}");
                assert!(
                    s.message.contains("minReplicas must not exceed replicas"),
                    "{}",
                    s.message
                );
            }
            e => panic!("unexpected error {e}"),
        }
        // The OpenAPI schema refuses these.
        for (name, spec) in [
            ("bad-type", json!({"replicas": "three"})),
            ("bad-min", json!({"replicas": -1})),
            ("missing", json!({"minReplicas": 1})),
        ] {
            let err = api
                .create(&PostParams::default(), &widget(name, spec))
                .await
                .expect_err(name);
            assert!(
                matches!(&err, kube::Error::Api(s) if s.code == 422),
                "{name}: {err}"
            );
        }
        // Updates are validated too.
        let mut good = api.get("good").await.expect("get good");
        good.data["spec"]["minReplicas"] = json!(9);
        let err = api
            .replace("good", &PostParams::default(), &good)
            .await
            .expect_err("update");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 422),
            "{err}"
        );
    });
}

#[test]
fn garbage_collector_removes_dependents_of_a_deleted_owner() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "gc").await;
        let cms: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
        let owner: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "owner"}, "data": {"a": "1"}}))
                .expect("cm");
        let owner = cms
            .create(&PostParams::default(), &owner)
            .await
            .expect("owner");
        let uid = owner.metadata.uid.clone().expect("uid");
        for i in 0..3 {
            let dep: ConfigMap = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("dependent-{i}"),
                    "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}],
                },
                "data": {"b": "2"},
            }))
            .expect("dependent");
            cms.create(&PostParams::default(), &dep)
                .await
                .expect("create dependent");
        }
        let unrelated: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "unrelated"}})).expect("cm");
        cms.create(&PostParams::default(), &unrelated)
            .await
            .expect("unrelated");
        cms.delete("owner", &DeleteParams::background())
            .await
            .expect("delete owner");
        eventually("dependents collected", Duration::from_secs(60), || {
            let cms = cms.clone();
            async move {
                let left = cms.list(&Default::default()).await.ok()?;
                let names: Vec<String> = left
                    .items
                    .iter()
                    .filter_map(|c| c.metadata.name.clone())
                    .collect();
                (!names.iter().any(|n| n.starts_with("dependent-"))).then_some(names)
            }
        })
        .await;
        assert!(
            cms.get_opt("unrelated").await.expect("get").is_some(),
            "unowned object survives"
        );
    });
}

#[test]
fn node_without_heartbeats_goes_not_ready_and_recovers() {
    run(cluster(), |c| async move {
        let agent = c.agent().expect("agent");
        let node = agent.nodes()[2].name.clone();
        let nodes: Api<Node> = Api::all(c.client());
        agent.stop_heartbeats(&node).expect("stop");
        let cond = eventually("node NotReady", Duration::from_secs(90), || {
            let nodes = nodes.clone();
            let node = node.clone();
            async move {
                let n = nodes.get(&node).await.ok()?;
                let ready = n
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (ready.status != "True").then_some(ready)
            }
        })
        .await;
        assert_eq!(cond.status, "Unknown", "{cond:?}");
        agent.resume_heartbeats(&node);
        eventually("node Ready again", Duration::from_secs(60), || {
            let nodes = nodes.clone();
            let node = node.clone();
            async move { nodes.get(&node).await.ok().filter(node_is_ready) }
        })
        .await;
    });
}

fn write_chart(dir: &std::path::Path, name: &str, kube_version: &str) {
    std::fs::create_dir_all(dir.join("templates")).expect("chart dir");
    std::fs::write(
        dir.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\nkubeVersion: \"{kube_version}\"\n"),
    )
    .expect("Chart.yaml");
    std::fs::write(
        dir.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-info\ndata:\n  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n",
    )
    .expect("template");
}

#[test]
fn helm_installs_a_chart_that_declares_a_kube_version() {
    run(cluster(), |c| async move {
        let ns = namespace(c, "helm").await;
        let home = c.dir().join("helm-home");
        let chart = home.join("demo");
        write_chart(&chart, "demo", ">=1.34.0-0");
        let old = home.join("old");
        write_chart(&old, "old", "<1.20.0");
        let env = [
            ("HELM_CACHE_HOME", home.join("cache")),
            ("HELM_CONFIG_HOME", home.join("config")),
            ("HELM_DATA_HOME", home.join("data")),
        ];
        let env: Vec<(&str, &std::path::Path)> =
            env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let chart_s = chart.display().to_string();
        let (ok, out, err) = tool(
            c,
            "helm",
            &[
                "install",
                "demo",
                &chart_s,
                "-n",
                &ns,
                "--wait",
                "--timeout",
                "60s",
            ],
            &env,
        )
        .await;
        assert!(ok, "helm install failed:\n{out}\n{err}");
        let cm = Api::<ConfigMap>::namespaced(c.client(), &ns)
            .get("demo-info")
            .await
            .expect("release object");
        let data = cm.data.expect("data");
        assert_eq!(data["kubeVersion"], pinned_kubernetes_version());
        let (ok, out, _) = tool(c, "helm", &["list", "-n", &ns, "-o", "json"], &env).await;
        assert!(ok && out.contains("\"deployed\""), "{out}");
        // A chart that does not accept this version is refused.
        let old_s = old.display().to_string();
        let (ok, _, err) = tool(c, "helm", &["install", "old", &old_s, "-n", &ns], &env).await;
        assert!(!ok, "a chart requiring <1.20 must be refused");
        assert!(
            err.contains("incompatible") || err.contains("kubeVersion"),
            "{err}"
        );
    });
}
