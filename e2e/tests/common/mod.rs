//! Shared harness of the end-to-end tests: one local cluster per test binary, started on
//! first use on a runtime that lives as long as the binary, so the tests of a file share the
//! cluster's start-up cost and use namespaces of their own.
//!
//! A test that fails prints the tail of every component's and pod's log. Missing upstream
//! binaries fail every test with the message to run `make k8s-bins`.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aadb_e2e::{ClusterSpec, LocalCluster};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub cluster: LocalCluster,
}

static HARNESS: OnceLock<Result<Harness, String>> = OnceLock::new();

/// The directory runs of this test binary use; stale ones of dead processes are removed.
pub fn run_dir(name: &str) -> PathBuf {
    aadb_e2e::bins::run_dir(name)
}

/// The image table of the tests: the testapp is this workspace's `aadb-e2e testapp`.
pub fn images() -> aadb_e2e::ImageTable {
    let mut t = aadb_e2e::ImageTable::with_defaults();
    t.insert(
        "aadb-e2e-testapp",
        env!("CARGO_BIN_EXE_aadb-e2e"),
        &["testapp"],
    );
    t
}

/// Starts (once) and returns this binary's cluster.
pub fn harness(name: &str, customize: fn(&mut ClusterSpec)) -> &'static Harness {
    let h = HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut spec = ClusterSpec::new(name, 0);
        spec.images = images();
        customize(&mut spec);
        let dir = run_dir(name);
        // The agent's own log goes next to the pod logs, so failure reports include it.
        let agent_logs = dir.join("agent/logs");
        std::fs::create_dir_all(&agent_logs).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(agent_logs.join("agent.log")).map_err(|e| e.to_string())?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    "info,kube_client=off,kube_runtime=warn,aadb_e2e=debug".into()
                }),
            )
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(log))
            .try_init();
        let started = Instant::now();
        // Start on a runtime worker: the processes' parent-death signal follows that thread,
        // which lives as long as the runtime (the whole test binary).
        let cluster = rt
            .block_on(async move {
                tokio::spawn(async move { LocalCluster::start(spec, &dir).await }).await
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("starting the local cluster failed: {e}"))?;
        eprintln!(
            "cluster {name} ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(Harness { rt, cluster })
    });
    match h {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    }
}

/// Runs one test body on the harness runtime; on failure prints the cluster's logs.
pub fn run<F, Fut>(h: &'static Harness, body: F)
where
    F: FnOnce(&'static LocalCluster) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let fut = body(&h.cluster);
    let res = h.rt.block_on(async move { tokio::spawn(fut).await });
    if let Err(e) = res {
        eprintln!("{}", h.cluster.log_report());
        match e.try_into_panic() {
            Ok(p) => {
                // Re-panic here with the message: the task's own report went to the runtime
                // thread's output, which belongs to another test.
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "test body panicked".to_string());
                panic!("{msg}");
            }
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// Creates a namespace for one test.
pub async fn namespace(c: &LocalCluster, name: &str) -> String {
    let api: Api<Namespace> = Api::all(c.client());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .expect("namespace object");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
    name.to_string()
}

/// Polls `check` until it returns Some, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Server-side applies a namespaced object given as JSON with the admin client.
pub async fn apply_ns<K>(c: &LocalCluster, ns: &str, obj: serde_json::Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let name = obj["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    let api: Api<K> = Api::namespaced(c.client(), ns);
    api.patch(
        &name,
        &kube::api::PatchParams::apply("aadb-e2e-tests").force(),
        &kube::api::Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// Server-side applies a cluster-scoped object given as JSON with the admin client.
pub async fn apply_cluster<K>(c: &LocalCluster, obj: serde_json::Value) -> K
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let name = obj["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    let api: Api<K> = Api::all(c.client());
    api.patch(
        &name,
        &kube::api::PatchParams::apply("aadb-e2e-tests").force(),
        &kube::api::Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// Runs an upstream binary from `target/k8s/bin` with this cluster's admin kubeconfig and
/// returns (success, stdout, stderr).
pub async fn tool(
    c: &LocalCluster,
    name: &str,
    args: &[&str],
    env: &[(&str, &std::path::Path)],
) -> (bool, String, String) {
    let bins = aadb_e2e::bins::Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let out = tokio::process::Command::new(bins.path(name))
        .args(args)
        .env("KUBECONFIG", c.kubeconfig_path())
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The testapp container: listens on every address of its pod, keeps data under /data,
/// probed over HTTP.
pub fn app_container(image: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "app",
        "image": image,
        "args": ["--listen", "0.0.0.0:8080", "--data", "/data"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2, "failureThreshold": 3},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    })
}

/// StatefulSet `web`: three replicas of `container` spread over zones, one claim each.
pub fn web_statefulset(container: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web", "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "web"}},
                    }],
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    })
}
