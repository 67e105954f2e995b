//! Operator benchmarks (a tier of `docs/development.md`; targets in `bench/RESULTS.md`), printed
//! rather than asserted:
//!
//! 1. apply-to-Ready time of a new database: 3 regions × 3 shards × 1 replica over three local
//!    clusters (target ≤ 60 s), and 1 region × 1 shard × 1 replica; each round in fresh
//!    namespaces, min/median/max over the rounds;
//! 2. failover time: `kill -9` of the primary of a 1 region × 1 shard × 1 replica database
//!    (default failover settings), measured from the kill to the first write that succeeds
//!    through the region endpoint afterwards; p50/p90/p99/max, how often the operator promoted
//!    the replica and how often the killed pod came back first; and the number of writes
//!    acknowledged with `WAIT 1 500` that were lost (read back at the end; must be 0);
//! 3. the operator's work on that Ready database over 5 s, without and with writes flowing:
//!    reconciles per second (its `/metrics`) and updates of the database object (a watch);
//! 4. rolls: `BENCH_ROLLS` changes of the cpu request of a 1 × 1 × 1 database, each rolled by
//!    the operator (replica replaced, primary role handed over, old primary replaced), under a
//!    writer that counts a write once the primary answers OK (no `WAIT`): time from apply to
//!    every pod on the new revision, the longest pause between two answered writes during a
//!    roll, and the answered writes lost (read back at the end; must be 0);
//! 5. throughput at the region endpoint (through two proxies) against the shard-node directly,
//!    in the same run (see `operator_bench/endpoint.rs`).
//!
//! The clusters are real local control planes (`aadb_e2e::LocalCluster`, loopback indexes
//! 12-14) whose node agents run shard-node pods as processes; the operator is the
//! `aadb-operator` binary run as a separate process with a kubeconfig, reaching the two other
//! clusters through kubeconfig Secrets. Output: one human-readable line per measurement, then
//! one `RESULT <name> <value> <unit>` line per metric.
//!
//! Environment: `BENCH_READY_ROUNDS` (3), `BENCH_FAILOVER_KILLS` (20), `BENCH_ROLLS` (10),
//! `BENCH_ENDPOINT_REQUESTS` (100000),
//! `BENCH_FAILOVER_SETTLE_SECS` (12: the least time between two kills, longer than the node
//! agent's 10 s restart back-off reset, the operator's flapping guard and its status refresh,
//! so that every kill starts from the same state), `BENCH_FAILOVER_DETECTION_MS` (unset: the
//! default failover settings; else `spec.failover.detectionTimeoutMillis`), `BENCH_OUT`
//! (`target/bench`; the run's logs stay in `<BENCH_OUT>/operator-run`), `AADB_OPERATOR_BIN` and
//! `AADB_SHARD_NODE_BIN` (default: the binaries next to this example's profile directory, e.g.
//! `target/release/`). Run by `bench/operator.sh`.
#![forbid(unsafe_code)]

#[path = "operator_bench/endpoint.rs"]
mod endpoint;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aadb_crd::ActiveActiveDatabase;
use aadb_e2e::{ClusterSpec, ImageTable, LocalCluster};
use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

/// Field manager of everything this benchmark applies.
const MANAGER: &str = "aadb-bench";
/// Loopback index of the first cluster (indexes 12-14 are reserved for the benchmarks).
const FIRST_INDEX: u8 = 12;
/// Name of every database the benchmark creates.
const DB: &str = "db";
/// How long one database may take to become Ready before the round counts as timed out.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a deleted database may take to disappear.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long writes may fail after a kill before the round counts as timed out.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the failover database may take to be steady again between kills.
const STEADY_TIMEOUT: Duration = Duration::from_secs(180);

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

/// A binary of this workspace: `$env`, else next to the profile directory this example was
/// built into (`target/<profile>/examples/operator_bench` → `target/<profile>/<name>`).
fn sibling_binary(env: &str, name: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().context("locating this executable")?;
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or_else(|| anyhow!("{} has no profile directory", exe.display()))?;
            profile_dir.join(name)
        }
    };
    if !path.is_file() {
        bail!(
            "{} is missing: build it (`cargo build --release -p {}`) or set {env}",
            path.display(),
            if name == "shard-node" {
                "shard-node"
            } else {
                "aadb-operator"
            }
        );
    }
    Ok(path)
}

/// The wall-clock time of day in UTC, `HH:MM:SS.mmmZ`, to find a moment in the logs.
fn utc_time_of_day() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = since_epoch.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// How the failover part runs.
#[derive(Clone, Copy)]
struct FailoverSettings {
    kills: u64,
    settle: Duration,
    detection_ms: Option<u64>,
}

fn main() -> Result<()> {
    let ready_rounds = env_number("BENCH_READY_ROUNDS", 3)?;
    let rolls = env_number("BENCH_ROLLS", 10)?;
    let failover = FailoverSettings {
        kills: env_number("BENCH_FAILOVER_KILLS", 20)?,
        settle: Duration::from_secs(env_number("BENCH_FAILOVER_SETTLE_SECS", 12)?),
        detection_ms: match std::env::var("BENCH_FAILOVER_DETECTION_MS") {
            Ok(_) => Some(env_number("BENCH_FAILOVER_DETECTION_MS", 1000)?),
            Err(_) => None,
        },
    };
    let operator_bin = sibling_binary("AADB_OPERATOR_BIN", "aadb-operator")?;
    let shard_node_bin = sibling_binary("AADB_SHARD_NODE_BIN", "shard-node")?;
    let out = std::env::var_os("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| aadb_e2e::bins::workspace_root().join("target/bench"));
    let dir = out.join("operator-run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "operator benchmark: operator {}, shard-node {}, logs in {}",
        operator_bin.display(),
        shard_node_bin.display(),
        dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let clusters = start_clusters(&dir, &shard_node_bin).await?;
        let result = run(
            &clusters,
            &dir,
            &operator_bin,
            ready_rounds,
            failover,
            rolls,
        )
        .await;
        if result.is_err() {
            for c in &clusters {
                eprintln!("{}", c.log_report());
            }
        }
        let names: Vec<String> = clusters.iter().map(|c| c.name().to_string()).collect();
        for c in clusters {
            c.stop().await;
        }
        if result.is_ok() {
            // Keep the logs, not the clusters' etcd data.
            for name in names {
                let _ = std::fs::remove_dir_all(dir.join(name).join("etcd"));
            }
        }
        result
    })
}

async fn run(
    clusters: &[LocalCluster],
    dir: &Path,
    operator_bin: &Path,
    ready_rounds: u64,
    failover: FailoverSettings,
    rolls: u64,
) -> Result<()> {
    let east = &clusters[0];
    let operator = Operator::start(operator_bin, dir, "bench", east.kubeconfig_path())?;
    let mut results = Vec::new();

    let three = ready_bench(clusters, 3, 3, ready_rounds).await?;
    results.extend(three.results("ready_3x3x1"));
    let one = ready_bench(&clusters[..1], 1, 1, ready_rounds).await?;
    results.extend(one.results("ready_1x1x1"));
    println!(
        "apply to Ready, 3 regions x 3 shards x 1 replica: {} (target <= 60 s)",
        three.summary()
    );
    println!(
        "apply to Ready, 1 region x 1 shard x 1 replica:   {}",
        one.summary()
    );

    let throughput = endpoint::endpoint_bench(east).await?;
    throughput.print();
    results.extend(throughput.results());

    let failover = failover_bench(east, operator.metrics, failover).await?;
    failover.print();
    results.extend(failover.results());

    if rolls > 0 {
        let rolled = roll_bench(east, rolls).await?;
        rolled.print();
        results.extend(rolled.results());
    }

    println!();
    for (name, value, unit) in results {
        println!("RESULT {name} {value} {unit}");
    }
    Ok(())
}

// ---------------------------------------------------------------- clusters and operator

/// Starts east, west and central (three zones each) and installs the CRD in each.
async fn start_clusters(dir: &Path, shard_node_bin: &Path) -> Result<Vec<LocalCluster>> {
    let started = Instant::now();
    let names = aadb_e2e::fleet::cluster_names(3);
    let starts = names.iter().enumerate().map(|(i, name)| {
        let mut spec = ClusterSpec::new(name, FIRST_INDEX + i as u8).zones(3);
        let mut images = ImageTable::with_defaults();
        images.insert("shard-node", shard_node_bin, &[]);
        spec.images = images;
        spec.node_monitor_grace = Duration::from_secs(6);
        spec.keep_dir = true;
        let d = dir.join(name);
        tokio::spawn(async move { LocalCluster::start(spec, &d).await })
    });
    let mut clusters = Vec::new();
    let mut failure = None;
    for r in futures::future::join_all(starts).await {
        match r {
            Ok(Ok(c)) => clusters.push(c),
            Ok(Err(e)) => failure = Some(anyhow!("starting a local cluster failed: {e}")),
            Err(e) => failure = Some(anyhow!("starting a local cluster panicked: {e}")),
        }
    }
    if let Some(e) = failure {
        for c in clusters {
            c.stop().await;
        }
        return Err(e);
    }
    for c in &clusters {
        install_crd(c).await?;
    }
    println!(
        "3 clusters ready with the CRD in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(clusters)
}

/// Applies the generated CRD and waits until it is Established.
async fn install_crd(c: &LocalCluster) -> Result<()> {
    let path = aadb_e2e::bins::workspace_root().join("manifests/crd/activeactivedatabases.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (make generate)", path.display()))?;
    let body = text
        .split("\n---\n")
        .find(|d| d.contains("kind: CustomResourceDefinition"))
        .ok_or_else(|| anyhow!("{} holds no CustomResourceDefinition", path.display()))?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(body).context("parsing the CRD")?;
    let api: Api<CustomResourceDefinition> = Api::all(c.client());
    api.patch(
        "activeactivedatabases.aadb.dev",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the CRD")?;
    poll("CRD established", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let crd = api.get("activeactivedatabases.aadb.dev").await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await
}

/// The `aadb-operator` process; killed on drop.
struct Operator {
    child: Child,
    metrics: SocketAddr,
}

impl Operator {
    fn start(bin: &Path, dir: &Path, identity: &str, kubeconfig: &Path) -> Result<Operator> {
        let port = aadb_e2e::process::free_port(std::net::Ipv4Addr::LOCALHOST)?;
        let log = dir.join(format!("operator-{identity}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--identity")
            .arg(identity)
            .env(
                "RUST_LOG",
                "info,aadb_operator=debug,kube_client=warn,kube_runtime=warn",
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Operator {
            child,
            metrics: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- API helpers

/// Polls `check` every 100 ms until it returns Some; an error naming `what` after `timeout`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_namespace(c: &LocalCluster, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(c.client());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name} in {}", c.name())),
    }
}

async fn delete_namespace(c: &LocalCluster, name: &str) {
    let api: Api<Namespace> = Api::all(c.client());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// Stores the kubeconfig of `remote` as Secret `<remote>-kubeconfig` in `ns` of `home`.
async fn kubeconfig_secret(home: &LocalCluster, ns: &str, remote: &LocalCluster) -> Result<()> {
    let text = std::fs::read_to_string(remote.kubeconfig_path())
        .with_context(|| format!("reading {}", remote.kubeconfig_path().display()))?;
    let name = format!("{}-kubeconfig", remote.name());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "stringData": {"kubeconfig": text}
    }))?;
    Api::<Secret>::namespaced(home.client(), ns)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .with_context(|| format!("applying Secret {ns}/{name}"))?;
    Ok(())
}

fn databases(c: &LocalCluster, ns: &str) -> Api<ActiveActiveDatabase> {
    Api::namespaced(c.client(), ns)
}

async fn apply_database(c: &LocalCluster, ns: &str, spec: serde_json::Value) -> Result<()> {
    let db = json!({
        "apiVersion": "aadb.dev/v1alpha1", "kind": "ActiveActiveDatabase",
        "metadata": {"name": DB}, "spec": spec,
    });
    databases(c, ns)
        .patch(DB, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&db))
        .await
        .with_context(|| format!("applying {ns}/{DB}"))?;
    Ok(())
}

async fn get_database(c: &LocalCluster, ns: &str) -> Option<ActiveActiveDatabase> {
    databases(c, ns).get_opt(DB).await.ok().flatten()
}

/// Ready=True for the current generation.
fn is_ready(db: &ActiveActiveDatabase) -> bool {
    db.status.as_ref().is_some_and(|st| {
        st.observed_generation == db.metadata.generation
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Deletes the database and waits until its finalizer has removed it everywhere.
async fn delete_database(c: &LocalCluster, ns: &str) -> Result<()> {
    let _ = databases(c, ns).delete(DB, &DeleteParams::default()).await;
    poll(
        &format!("{ns}/{DB} deleted"),
        DELETE_TIMEOUT,
        || async move {
            match databases(c, ns).get_opt(DB).await {
                Ok(None) => Some(()),
                _ => None,
            }
        },
    )
    .await
}

/// The database's shard-node pods (its proxies aside).
async fn database_pods(c: &LocalCluster, ns: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(c.client(), ns)
        .list(&ListParams::default().labels(&format!(
            "aadb.dev/database={DB},app.kubernetes.io/component!=proxy"
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn is_primary(p: &Pod) -> bool {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("aadb.dev/role"))
        .is_some_and(|r| r == "primary")
}

fn pod_serving(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .as_ref()
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

/// Applies the database `spec` in `ns`, waits until it is Ready, and returns its region
/// endpoint Service in `c` and that Service's `default:<password>@host:port`.
async fn ready_endpoint(
    c: &LocalCluster,
    ns: &str,
    what: &str,
    spec: serde_json::Value,
) -> Result<(String, String)> {
    apply_database(c, ns, spec).await?;
    poll(&format!("{what} Ready"), READY_TIMEOUT, || async {
        get_database(c, ns).await.filter(is_ready)
    })
    .await?;
    let service = format!("{DB}-{}", c.name());
    let addr = poll(
        &format!("LoadBalancer ingress of {service}"),
        Duration::from_secs(60),
        || load_balancer(c, ns, &service),
    )
    .await?;
    Ok((service, addr))
}

/// `default:<password>@host:port` of a LoadBalancer Service's ingress, with the database's
/// generated application password.
async fn load_balancer(c: &LocalCluster, ns: &str, service: &str) -> Option<String> {
    let svc = Api::<Service>::namespaced(c.client(), ns)
        .get_opt(service)
        .await
        .ok()??;
    let port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.port)
        .unwrap_or(i32::from(aadb_crd::SHARD_NODE_PORT));
    let ip = svc.status?.load_balancer?.ingress?.into_iter().next()?.ip?;
    // Databases are closed by default: clients use the password the operator generated.
    let password = Api::<Secret>::namespaced(c.client(), ns)
        .get_opt(DB)
        .await
        .ok()??
        .data?
        .get("password")
        .and_then(|v| String::from_utf8(v.0.clone()).ok())?;
    Some(format!("default:{password}@{ip}:{port}"))
}

fn zones(cluster: &str) -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .map(|z| format!("{cluster}-{z}"))
        .collect()
}

// ---------------------------------------------------------------- statistics

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Nearest-rank quantile of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn secs(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.3}")
    }
}

type Metric = (String, String, &'static str);

// ---------------------------------------------------------------- apply to Ready

struct ReadyRuns {
    seconds: Vec<f64>,
    timed_out: u64,
}

impl ReadyRuns {
    fn summary(&self) -> String {
        let s = sorted(self.seconds.clone());
        format!(
            "min {} s, median {} s, max {} s over {} round(s){}",
            secs(s.first().copied().unwrap_or(f64::NAN)),
            secs(median(&s)),
            secs(s.last().copied().unwrap_or(f64::NAN)),
            s.len(),
            if self.timed_out > 0 {
                format!(", {} timed out after {READY_TIMEOUT:?}", self.timed_out)
            } else {
                String::new()
            }
        )
    }

    fn results(&self, prefix: &str) -> Vec<Metric> {
        let s = sorted(self.seconds.clone());
        vec![
            (
                format!("{prefix}_min"),
                secs(s.first().copied().unwrap_or(f64::NAN)),
                "s",
            ),
            (format!("{prefix}_median"), secs(median(&s)), "s"),
            (
                format!("{prefix}_max"),
                secs(s.last().copied().unwrap_or(f64::NAN)),
                "s",
            ),
            (
                format!("{prefix}_timeouts"),
                self.timed_out.to_string(),
                "count",
            ),
        ]
    }
}

/// `rounds` times: a fresh namespace in every cluster, a database with one participant per
/// cluster (the first local, the others through kubeconfig Secrets), apply → Ready, delete.
async fn ready_bench(
    clusters: &[LocalCluster],
    shards: u32,
    regions: usize,
    rounds: u64,
) -> Result<ReadyRuns> {
    let home = &clusters[0];
    let used = &clusters[..regions];
    let shape = format!("{regions}x{shards}x1");
    let mut runs = ReadyRuns {
        seconds: Vec::new(),
        timed_out: 0,
    };
    for round in 1..=rounds {
        let ns = format!("ready-{shape}-{round}");
        for c in used {
            create_namespace(c, &ns).await?;
        }
        for c in &used[1..] {
            kubeconfig_secret(home, &ns, c).await?;
        }
        let participants: Vec<serde_json::Value> = used
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    json!({"name": c.name(), "zones": zones(c.name())})
                } else {
                    json!({"name": c.name(), "zones": zones(c.name()),
                        "cluster": {"kubeconfigSecretRef": {"name": format!("{}-kubeconfig", c.name())}}})
                }
            })
            .collect();
        let started = Instant::now();
        apply_database(
            home,
            &ns,
            json!({"shards": shards, "replicasPerShard": 1, "image": "shard-node:dev",
                   "participants": participants}),
        )
        .await?;
        let ready = poll(&format!("{ns}/{DB} Ready"), READY_TIMEOUT, || async {
            get_database(home, &ns).await.filter(is_ready)
        })
        .await;
        let took = started.elapsed().as_secs_f64();
        match ready {
            Ok(db) => {
                let shards_ready = db
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_shards.clone())
                    .unwrap_or_default();
                println!(
                    "  ready {shape} round {round}/{rounds}: {took:.3} s (readyShards {shards_ready})"
                );
                runs.seconds.push(took);
            }
            Err(e) => {
                println!("  ready {shape} round {round}/{rounds}: TIMED OUT ({e})");
                runs.timed_out += 1;
            }
        }
        let deleted = Instant::now();
        match delete_database(home, &ns).await {
            Ok(()) => println!(
                "  ready {shape} round {round}/{rounds}: deleted in {:.1} s",
                deleted.elapsed().as_secs_f64()
            ),
            Err(e) => println!("  ready {shape} round {round}/{rounds}: delete failed: {e}"),
        }
        for c in used {
            delete_namespace(c, &ns).await;
        }
    }
    Ok(runs)
}

// ---------------------------------------------------------------- failover

/// Successful writes of the availability writer: (sent, answered).
#[derive(Default)]
struct ProbeLog {
    successes: Mutex<Vec<(Instant, Instant)>>,
    failures: AtomicU64,
}

impl ProbeLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, Instant)>> {
        self.successes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer time of the first write sent at or after `t`.
    fn first_success_sent_after(&self, t: Instant) -> Option<Instant> {
        let log = self.lock();
        let i = log.partition_point(|(sent, _)| *sent < t);
        log.get(i).map(|(_, done)| *done)
    }

    fn succeeding_since(&self, t: Instant) -> bool {
        self.lock().last().is_some_and(|(sent, _)| *sent >= t)
    }
}

/// Writes acknowledged by a replica (`WAIT 1 500` ≥ 1): (number, when).
#[derive(Default)]
struct AckLog {
    acked: Mutex<Vec<(u64, Instant)>>,
    unacked: AtomicU64,
    failures: AtomicU64,
}

impl AckLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Instant)>> {
        self.acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn acked_since(&self, t: Instant) -> bool {
        self.lock().last().is_some_and(|(_, at)| *at >= t)
    }
}

async fn connect(addr: &str, timeout: Duration) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .ok()?
        .ok()
}

async fn query<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Option<T> {
    tokio::time::timeout(timeout, cmd.query_async::<T>(conn))
        .await
        .ok()?
        .ok()
}

/// `SET k n` every 5 ms through `addr` with 250 ms timeouts, reconnecting after any failure.
async fn availability_writer(addr: String, log: Arc<ProbeLog>, stop: Arc<AtomicBool>) {
    let timeout = Duration::from_millis(250);
    let mut conn = None;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        if conn.is_none() {
            conn = connect(&addr, timeout).await;
        }
        let ok = match conn.as_mut() {
            Some(c) => {
                n += 1;
                let mut cmd = redis::cmd("SET");
                cmd.arg("k").arg(n);
                query::<()>(c, &cmd, timeout).await.is_some()
            }
            None => false,
        };
        if ok {
            log.lock().push((sent, Instant::now()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        } else {
            conn = None;
            log.failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `SET bench:acked:<n> <n>` then `WAIT 1 500` every 20 ms through `addr`; records the writes
/// at least one replica acknowledged.
async fn acknowledged_writer(addr: String, log: Arc<AckLog>, stop: Arc<AtomicBool>) {
    let timeout = Duration::from_millis(500);
    let mut conn = None;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = connect(&addr, timeout).await;
        }
        let acked = match conn.as_mut() {
            Some(c) => {
                n += 1;
                let mut set = redis::cmd("SET");
                set.arg(format!("bench:acked:{n}")).arg(n);
                let mut wait = redis::cmd("WAIT");
                wait.arg(1).arg(500);
                match query::<()>(c, &set, timeout).await {
                    Some(()) => query::<i64>(c, &wait, Duration::from_millis(1500)).await,
                    None => None,
                }
            }
            None => None,
        };
        match acked {
            Some(replicas) if replicas >= 1 => log.lock().push((n, Instant::now())),
            Some(_) => {
                log.unacked.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                conn = None;
                log.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Kill {
    /// Seconds from the kill to the first successful write; None when it timed out.
    recovery: Option<f64>,
    promoted: bool,
}

struct FailoverRuns {
    kills: Vec<Kill>,
    acked: usize,
    lost: Vec<u64>,
    unacked: u64,
    failovers_in_status: u64,
    /// The operator's work on the steady database: (situation, measurement).
    churn: Vec<(&'static str, Churn)>,
}

impl FailoverRuns {
    fn times(&self) -> Vec<f64> {
        sorted(self.kills.iter().filter_map(|k| k.recovery).collect())
    }

    fn print(&self) {
        for (situation, c) in &self.churn {
            println!(
                "operator work on the Ready failover database, {situation}, over {:?}: {:.1} reconciles/s (mean {:.1} ms each), {:.1} database object updates/s",
                c.window,
                c.reconciles_per_second(),
                c.mean_reconcile_ms(),
                c.updates_per_second()
            );
        }
        let t = self.times();
        let promoted = self.kills.iter().filter(|k| k.promoted).count();
        let timed_out = self.kills.iter().filter(|k| k.recovery.is_none()).count();
        println!(
            "failover, kill -9 of the primary to the first write through the region endpoint, {} kills:",
            self.kills.len()
        );
        println!(
            "  p50 {} s, p90 {} s, p99 {} s, max {} s (targets p50 <= 1 s, p99 <= 3 s); {} timed out after {RECOVERY_TIMEOUT:?}",
            secs(quantile(&t, 0.5)),
            secs(quantile(&t, 0.9)),
            secs(quantile(&t, 0.99)),
            secs(t.last().copied().unwrap_or(f64::NAN)),
            timed_out
        );
        println!(
            "  operator promoted the replica first: {promoted}; killed pod came back first: {}; failovers counted in status: {}",
            self.kills.len() - promoted - timed_out,
            self.failovers_in_status
        );
        println!(
            "  writes acknowledged with WAIT 1 500: {}, lost: {} (target 0){}; writes WAIT did not see replicated: {}",
            self.acked,
            self.lost.len(),
            if self.lost.is_empty() {
                String::new()
            } else {
                format!(
                    ", e.g. bench:acked:{:?}",
                    &self.lost[..self.lost.len().min(10)]
                )
            },
            self.unacked
        );
    }

    fn results(&self) -> Vec<Metric> {
        let t = self.times();
        let promoted = self.kills.iter().filter(|k| k.promoted).count();
        let timed_out = self.kills.iter().filter(|k| k.recovery.is_none()).count();
        vec![
            ("failover_p50".into(), secs(quantile(&t, 0.5)), "s"),
            ("failover_p90".into(), secs(quantile(&t, 0.9)), "s"),
            ("failover_p99".into(), secs(quantile(&t, 0.99)), "s"),
            (
                "failover_max".into(),
                secs(t.last().copied().unwrap_or(f64::NAN)),
                "s",
            ),
            (
                "failover_kills".into(),
                self.kills.len().to_string(),
                "count",
            ),
            ("failover_timeouts".into(), timed_out.to_string(), "count"),
            ("failover_promoted".into(), promoted.to_string(), "count"),
            (
                "failover_restarted_first".into(),
                (self.kills.len() - promoted - timed_out).to_string(),
                "count",
            ),
            ("acked_writes".into(), self.acked.to_string(), "count"),
            (
                "acked_writes_lost".into(),
                self.lost.len().to_string(),
                "count",
            ),
        ]
        .into_iter()
        .chain(self.churn.iter().flat_map(|(situation, c)| {
            let key = situation.replace(' ', "_");
            [
                (
                    format!("steady_{key}_reconciles"),
                    format!("{:.2}", c.reconciles_per_second()),
                    "1/s",
                ),
                (
                    format!("steady_{key}_db_updates"),
                    format!("{:.2}", c.updates_per_second()),
                    "1/s",
                ),
            ]
        }))
        .collect()
    }
}

/// How long the operator's work on a steady database is observed.
const CHURN_WINDOW: Duration = Duration::from_secs(5);

/// What the operator did for one database during a window: reconciles started, their total
/// duration, and updates of the database object (status writes included).
struct Churn {
    window: Duration,
    reconciles: f64,
    reconcile_seconds: f64,
    updates: u64,
}

impl Churn {
    fn reconciles_per_second(&self) -> f64 {
        self.reconciles / self.window.as_secs_f64()
    }

    fn mean_reconcile_ms(&self) -> f64 {
        if self.reconciles > 0.0 {
            self.reconcile_seconds * 1000.0 / self.reconciles
        } else {
            f64::NAN
        }
    }

    fn updates_per_second(&self) -> f64 {
        self.updates as f64 / self.window.as_secs_f64()
    }
}

/// The sum over all label sets of the metric `name` on the operator's `/metrics`.
async fn metric_sum(addr: SocketAddr, name: &str) -> Result<f64> {
    let r = aadb_e2e::http::get(addr, "/metrics", Duration::from_secs(2))
        .await
        .with_context(|| format!("GET http://{addr}/metrics"))?;
    Ok(r.body
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Counts the operator's reconciles (from its metrics) and the updates of the database object
/// (from a watch) during `window`.
async fn measure_churn(
    c: &LocalCluster,
    ns: &str,
    metrics: SocketAddr,
    window: Duration,
) -> Result<Churn> {
    let api = databases(c, ns);
    let version = api
        .get(DB)
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let reconciles = metric_sum(metrics, "aadb_operator_reconciles_total").await?;
    let seconds = metric_sum(metrics, "aadb_operator_reconcile_seconds_sum").await?;
    let events = api
        .watch(
            &WatchParams::default().fields(&format!("metadata.name={DB}")),
            &version,
        )
        .await?;
    let mut events = Box::pin(events);
    let deadline = tokio::time::Instant::now() + window;
    let mut updates = 0;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.next()).await {
        if matches!(ev, Ok(WatchEvent::Modified(_))) {
            updates += 1;
        }
    }
    Ok(Churn {
        window,
        reconciles: metric_sum(metrics, "aadb_operator_reconciles_total").await? - reconciles,
        reconcile_seconds: metric_sum(metrics, "aadb_operator_reconcile_seconds_sum").await?
            - seconds,
        updates,
    })
}

/// Waits until the failover database is steady: Ready, both pods serving, one labelled
/// primary with a running process, writes succeeding and a replica acknowledging writes made
/// after `since`. Returns the primary pod's name.
async fn steady(
    c: &LocalCluster,
    ns: &str,
    probes: &ProbeLog,
    acks: &AckLog,
    since: Instant,
) -> Result<String> {
    let agent = c.agent()?;
    poll("failover database steady", STEADY_TIMEOUT, || async {
        get_database(c, ns).await.filter(is_ready)?;
        let pods = database_pods(c, ns).await;
        if pods.len() != 2 || !pods.iter().all(pod_serving) {
            return None;
        }
        let mut primaries = pods.iter().filter(|p| is_primary(p));
        let primary = pod_name(primaries.next()?);
        if primaries.next().is_some() {
            return None;
        }
        agent.container_pid(ns, &primary, None)?;
        (probes.succeeding_since(Instant::now() - Duration::from_millis(500))
            && acks.acked_since(since))
        .then_some(primary)
    })
    .await
}

async fn failovers_in_status(c: &LocalCluster, ns: &str) -> u64 {
    get_database(c, ns)
        .await
        .and_then(|db| db.status)
        .map(|s| s.failovers)
        .unwrap_or(0)
}

async fn failover_bench(
    c: &LocalCluster,
    metrics: SocketAddr,
    settings: FailoverSettings,
) -> Result<FailoverRuns> {
    let FailoverSettings { kills, settle, .. } = settings;
    let ns = "failover-bench";
    let region = c.name().to_string();
    create_namespace(c, ns).await?;
    let mut spec = json!({"shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
                          "participants": [{"name": region, "zones": zones(&region)}]});
    if let Some(ms) = settings.detection_ms {
        spec["failover"] = json!({"detectionTimeoutMillis": ms});
    }
    let detection = match settings.detection_ms {
        Some(ms) => format!("detectionTimeoutMillis {ms}"),
        None => "default failover settings".to_string(),
    };
    let (service, addr) = ready_endpoint(c, ns, "failover database", spec).await?;
    println!(
        "failover database Ready ({detection}); region endpoint {service} at {}; at least {settle:?} between kills",
        addr.rsplit('@').next().unwrap_or_default()
    );
    let failovers_before = failovers_in_status(c, ns).await;
    poll("both pods serving", STEADY_TIMEOUT, || async {
        let pods = database_pods(c, ns).await;
        (pods.len() == 2 && pods.iter().all(pod_serving)).then_some(())
    })
    .await?;
    let mut churn = vec![(
        "no writes",
        measure_churn(c, ns, metrics, CHURN_WINDOW).await?,
    )];

    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(ProbeLog::default());
    let acks = Arc::new(AckLog::default());
    let writers = [
        tokio::spawn(availability_writer(
            addr.clone(),
            probes.clone(),
            stop.clone(),
        )),
        tokio::spawn(acknowledged_writer(
            addr.clone(),
            acks.clone(),
            stop.clone(),
        )),
    ];
    let agent = c.agent()?;
    let mut last_kill: Option<Instant> = None;
    let mut runs = Vec::new();
    let mut since = Instant::now();
    let mut outcome = Ok(());
    match steady(c, ns, &probes, &acks, since).await {
        Ok(_) => churn.push((
            "writes flowing",
            measure_churn(c, ns, metrics, CHURN_WINDOW).await?,
        )),
        Err(e) => outcome = Err(e.context("before the first kill")),
    }
    for round in 1..=kills {
        if outcome.is_err() {
            break;
        }
        // Every kill starts from the same state: the node agent has reset the restart
        // back-off (after 10 s of running), the operator's flapping guard has expired and its
        // status is fresh.
        if let Some(wait) = last_kill.and_then(|t| settle.checked_sub(t.elapsed())) {
            tokio::time::sleep(wait).await;
            since = Instant::now();
        }
        let primary = match steady(c, ns, &probes, &acks, since).await {
            Ok(p) => p,
            Err(e) => {
                outcome = Err(e.context(format!("before kill {round}")));
                break;
            }
        };
        let wall = utc_time_of_day();
        let killed_at = Instant::now();
        let pid = match agent.kill_container(ns, &primary, None) {
            Ok(pid) => pid,
            Err(e) => {
                outcome = Err(anyhow!("kill {round}: {e}"));
                break;
            }
        };
        last_kill = Some(killed_at);
        let recovered = poll("a write after the kill", RECOVERY_TIMEOUT, || async {
            probes.first_success_sent_after(killed_at)
        })
        .await;
        let kill = match recovered {
            Ok(at) => {
                let took = at.duration_since(killed_at).as_secs_f64();
                let now_primary = database_pods(c, ns)
                    .await
                    .iter()
                    .find(|p| is_primary(p))
                    .map(pod_name);
                let promoted = now_primary.as_ref().is_some_and(|p| *p != primary);
                println!(
                    "  kill {round}/{kills} at {wall}: {primary} (pid {pid}) -> first write after {took:.3} s; primary now {} ({})",
                    now_primary.as_deref().unwrap_or("unlabelled"),
                    if promoted { "replica promoted" } else { "killed pod came back" }
                );
                Kill {
                    recovery: Some(took),
                    promoted,
                }
            }
            Err(_) => {
                println!(
                    "  kill {round}/{kills} at {wall}: {primary} (pid {pid}) -> no successful write within {RECOVERY_TIMEOUT:?}"
                );
                Kill {
                    recovery: None,
                    promoted: false,
                }
            }
        };
        runs.push(kill);
        since = Instant::now();
    }
    if outcome.is_ok() {
        if let Err(e) = steady(c, ns, &probes, &acks, since).await {
            outcome = Err(e.context("after the last kill"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let failovers = failovers_in_status(c, ns)
        .await
        .saturating_sub(failovers_before);
    let acked: Vec<u64> = acks.lock().iter().map(|(n, _)| *n).collect();
    let lost = read_back_lost(&addr, &acked).await?;
    let result = FailoverRuns {
        kills: runs,
        acked: acked.len(),
        lost,
        unacked: acks.unacked.load(Ordering::Relaxed),
        failovers_in_status: failovers,
        churn,
    };
    println!(
        "  writer failures: availability {}, acknowledged {}",
        probes.failures.load(Ordering::Relaxed),
        acks.failures.load(Ordering::Relaxed)
    );
    if let Err(e) = outcome {
        result.print();
        return Err(e);
    }
    Ok(result)
}

/// Reads every acknowledged key back through `addr`; returns the numbers whose value is
/// missing or different.
async fn read_back_lost(addr: &str, acked: &[u64]) -> Result<Vec<u64>> {
    let mut lost = Vec::new();
    for chunk in acked.chunks(500) {
        let mut cmd = redis::cmd("MGET");
        for n in chunk {
            cmd.arg(format!("bench:acked:{n}"));
        }
        let values: Vec<Option<String>> = poll(
            "reading acknowledged writes back",
            Duration::from_secs(30),
            || {
                let cmd = cmd.clone();
                async move {
                    let mut conn = connect(addr, Duration::from_secs(2)).await?;
                    query(&mut conn, &cmd, Duration::from_secs(5)).await
                }
            },
        )
        .await?;
        for (n, v) in chunk.iter().zip(values) {
            if v.as_deref() != Some(n.to_string().as_str()) {
                lost.push(*n);
            }
        }
    }
    Ok(lost)
}

// ---------------------------------------------------------------- rolls

/// What the roll benchmark measured.
struct RollRuns {
    /// Per roll: seconds from apply to every pod on the new revision and Ready, and the
    /// longest pause between two writes answered OK inside that window.
    rolls: Vec<(f64, f64)>,
    answered: usize,
    lost: usize,
    failures: u64,
}

impl RollRuns {
    fn print(&self) {
        let took = sorted(self.rolls.iter().map(|r| r.0).collect());
        let paused = sorted(self.rolls.iter().map(|r| r.1).collect());
        println!(
            "rolls (cpu change, 1 region x 1 shard x 1 replica, {} rolls): apply to rolled median {} max {}; longest write pause median {} max {}; {} writes answered OK, {} lost, {} failed attempts",
            self.rolls.len(),
            secs(median(&took)),
            secs(took.last().copied().unwrap_or(f64::NAN)),
            secs(median(&paused)),
            secs(paused.last().copied().unwrap_or(f64::NAN)),
            self.answered,
            self.lost,
            self.failures
        );
    }

    fn results(&self) -> Vec<Metric> {
        let took = sorted(self.rolls.iter().map(|r| r.0).collect());
        let paused = sorted(self.rolls.iter().map(|r| r.1).collect());
        vec![
            ("roll_median".into(), secs(median(&took)), "s"),
            ("roll_write_pause_median".into(), secs(median(&paused)), "s"),
            (
                "roll_write_pause_max".into(),
                secs(paused.last().copied().unwrap_or(f64::NAN)),
                "s",
            ),
            ("roll_writes_lost".into(), self.lost.to_string(), "writes"),
        ]
    }
}

/// `SET bench:acked:<n> <n>` back to back through `addr`; records each write the primary
/// answered OK, with the time of the answer.
async fn answered_writer(addr: String, log: Arc<AckLog>, stop: Arc<AtomicBool>) {
    let timeout = Duration::from_millis(500);
    let mut conn = None;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = connect(&addr, timeout).await;
        }
        let answered = match conn.as_mut() {
            Some(c) => {
                n += 1;
                let mut set = redis::cmd("SET");
                set.arg(format!("bench:acked:{n}")).arg(n);
                query::<()>(c, &set, timeout).await.is_some()
            }
            None => false,
        };
        if answered {
            log.lock().push((n, Instant::now()));
        } else {
            conn = None;
            log.failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn cpu_request(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()?
        .containers
        .first()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("cpu")
        .map(|q| q.0.clone())
}

/// Longest time between two consecutive answers inside `[from, to]` (counting its edges).
fn longest_pause(answers: &[Instant], from: Instant, to: Instant) -> f64 {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for t in answers.iter().filter(|t| **t >= from && **t <= to) {
        longest = longest.max(t.duration_since(last));
        last = *t;
    }
    longest.max(to.duration_since(last)).as_secs_f64()
}

async fn roll_bench(c: &LocalCluster, rolls: u64) -> Result<RollRuns> {
    let ns = "roll-bench";
    let region = c.name().to_string();
    create_namespace(c, ns).await?;
    let spec = |cpu: &str| {
        json!({"shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
               "resources": {"requests": {"cpu": cpu}},
               "participants": [{"name": region, "zones": zones(&region)}]})
    };
    apply_database(c, ns, spec("10m")).await?;
    poll("roll database Ready", READY_TIMEOUT, || async {
        get_database(c, ns).await.filter(is_ready)
    })
    .await?;
    let service = format!("{DB}-{region}");
    let addr = poll(
        &format!("LoadBalancer ingress of {service}"),
        Duration::from_secs(60),
        || load_balancer(c, ns, &service),
    )
    .await?;
    let log = Arc::new(AckLog::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(answered_writer(addr.clone(), log.clone(), stop.clone()));
    let mut windows = Vec::new();
    for i in 1..=rolls {
        let cpu = format!("{}m", 10 + i);
        let from = Instant::now();
        apply_database(c, ns, spec(&cpu)).await?;
        poll(
            &format!("roll {i} to cpu {cpu}"),
            STEADY_TIMEOUT,
            || async {
                let pods = database_pods(c, ns).await;
                let rolled = pods.len() == 2
                    && pods
                        .iter()
                        .all(|p| pod_serving(p) && cpu_request(p).as_deref() == Some(cpu.as_str()));
                let ready = get_database(c, ns).await.filter(is_ready).is_some();
                (rolled && ready).then_some(())
            },
        )
        .await?;
        windows.push((from, Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.context("writer task")?;
    let answered: Vec<(u64, Instant)> = log.lock().clone();
    let times: Vec<Instant> = answered.iter().map(|(_, t)| *t).collect();
    let numbers: Vec<u64> = answered.iter().map(|(n, _)| *n).collect();
    let lost = read_back_lost(&addr, &numbers).await?;
    delete_database(c, ns).await?;
    Ok(RollRuns {
        rolls: windows
            .iter()
            .map(|(from, to)| {
                (
                    to.duration_since(*from).as_secs_f64(),
                    longest_pause(&times, *from, *to),
                )
            })
            .collect(),
        answered: numbers.len(),
        lost: lost.len(),
        failures: log.failures.load(Ordering::Relaxed),
    })
}
