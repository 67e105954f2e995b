//! Harness of the operator's end-to-end tests: local clusters (real kube-apiserver, etcd,
//! controller manager, scheduler, and the node agent running shard-node pods as processes),
//! the CRD installed, and the `aadb-operator` binary run as a separate process with a
//! kubeconfig, exactly as in production.
//!
//! One set of clusters per test binary, started on first use on a runtime that lives as long as
//! the binary. A failing test prints the tail of every component's, pod's and operator's log.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aadb_crd::ActiveActiveDatabase;
use aadb_e2e::{ClusterSpec, LocalCluster};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub clusters: Vec<LocalCluster>,
    pub dir: PathBuf,
}

static HARNESS: OnceLock<Result<Harness, String>> = OnceLock::new();

pub fn workspace_root() -> PathBuf {
    aadb_e2e::bins::workspace_root()
}

/// The shard-node binary the pods run (built by `cargo test --workspace` / `cargo build`).
pub fn shard_node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AADB_SHARD_NODE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug/shard-node")
}

/// Starts (once) `count` clusters named `east`, `west`, `central` with three zones each, the
/// first at loopback index `first_index`, and installs the CRD in each.
pub fn harness(name: &str, count: usize, first_index: u8) -> &'static Harness {
    let h = HARNESS.get_or_init(|| {
        let bin = shard_node_bin();
        if !bin.exists() {
            return Err(format!(
                "{} is missing: run `cargo build -p shard-node` (make test builds it)",
                bin.display()
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let dir = aadb_e2e::bins::run_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("harness.log")).map_err(|e| e.to_string())?;
        let _ = tracing_subscriber_init(log);
        let started = Instant::now();
        let names = aadb_e2e::fleet::cluster_names(count);
        let clusters = rt.block_on(async {
            let starts = names.iter().enumerate().map(|(i, n)| {
                let mut spec = ClusterSpec::new(n, first_index + i as u8).zones(3);
                let mut images = aadb_e2e::ImageTable::with_defaults();
                images.insert("shard-node", bin.clone(), &[]);
                spec.images = images;
                spec.node_monitor_grace = Duration::from_secs(6);
                let d = dir.join(n);
                tokio::spawn(async move { LocalCluster::start(spec, &d).await })
            });
            let mut out = Vec::new();
            for r in futures::future::join_all(starts).await {
                match r {
                    Ok(Ok(c)) => out.push(c),
                    Ok(Err(e)) => return Err(format!("starting a local cluster failed: {e}")),
                    Err(e) => return Err(e.to_string()),
                }
            }
            for c in &out {
                install_crd(c).await;
            }
            Ok(out)
        })?;
        eprintln!(
            "{count} cluster(s) ready with the CRD in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(Harness { rt, clusters, dir })
    });
    match h {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    }
}

fn tracing_subscriber_init(_log: std::fs::File) -> Result<(), ()> {
    Ok(())
}

/// Runs one test body on the harness runtime; on failure prints every log.
pub fn run<F, Fut>(h: &'static Harness, body: F)
where
    F: FnOnce(&'static Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let fut = body(h);
    let res = h.rt.block_on(async move { tokio::spawn(fut).await });
    if let Err(e) = res {
        for c in &h.clusters {
            eprintln!("{}", c.log_report());
        }
        if let Ok(rd) = std::fs::read_dir(&h.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    eprintln!(
                        "==> {} <==\n{}",
                        p.display(),
                        aadb_e2e::process::tail(&p, 6000)
                    );
                }
            }
        }
        match e.try_into_panic() {
            Ok(p) => {
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

/// Installs the generated CRD and waits until it is Established.
pub async fn install_crd(c: &LocalCluster) {
    let path = workspace_root().join("manifests/crd/activeactivedatabases.yaml");
    let text = std::fs::read_to_string(&path).expect("generated CRD exists (make generate)");
    let body = text
        .split("\n---\n")
        .find(|d| d.contains("kind: CustomResourceDefinition"))
        .expect("CRD document");
    let crd: CustomResourceDefinition = serde_yaml::from_str(body).expect("CRD parses");
    let api: Api<CustomResourceDefinition> = Api::all(c.client());
    api.patch(
        "activeactivedatabases.aadb.dev",
        &PatchParams::apply("aadb-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    eventually("CRD established", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let crd = api.get("activeactivedatabases.aadb.dev").await.ok()?;
            let ok = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(())
        }
    })
    .await;
}

/// Creates a namespace.
pub async fn namespace(c: &LocalCluster, name: &str) -> String {
    let api: Api<Namespace> = Api::all(c.client());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
        .expect("namespace object");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
    name.to_string()
}

/// Stores `data` as Secret `name` in `ns`.
pub async fn secret(c: &LocalCluster, ns: &str, name: &str, key: &str, data: &str) {
    let api: Api<Secret> = Api::namespaced(c.client(), ns);
    let s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}, "stringData": {key: data}
    }))
    .expect("secret object");
    api.patch(
        name,
        &PatchParams::apply("aadb-tests").force(),
        &Patch::Apply(&s),
    )
    .await
    .expect("apply secret");
}

/// Polls `check` every 100 ms until it returns Some, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `aadb-operator` process; killed on drop.
pub struct Operator {
    pub child: Child,
    pub log: PathBuf,
    pub metrics: std::net::SocketAddr,
}

impl Operator {
    /// Starts the operator against `kubeconfig` with extra arguments.
    pub fn start(dir: &Path, tag: &str, kubeconfig: &Path, extra: &[&str]) -> Operator {
        let port = aadb_e2e::process::free_port(std::net::Ipv4Addr::LOCALHOST).expect("free port");
        let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.join(format!("operator-{tag}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("operator log");
        let err = out.try_clone().expect("log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_aadb-operator"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            .arg("--identity")
            .arg(tag)
            .args(extra)
            .env(
                "RUST_LOG",
                "info,aadb_operator=debug,kube_client=warn,kube_runtime=warn",
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start aadb-operator");
        Operator {
            child,
            log,
            metrics,
        }
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GET `path` on its HTTP endpoint.
    pub async fn http(&self, path: &str) -> Option<(u16, String)> {
        let r = aadb_e2e::http::get(self.metrics, path, Duration::from_secs(2))
            .await
            .ok()?;
        Some((r.status, r.body))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The database object, if it exists.
/// The database, if it exists. Once the operator has generated its internal password, the
/// password is remembered for [`redis_conn`] (once per object).
pub async fn get_db(c: &LocalCluster, ns: &str, name: &str) -> Option<ActiveActiveDatabase> {
    let db = Api::<ActiveActiveDatabase>::namespaced(c.client(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let uid = db.metadata.uid.clone().unwrap_or_default();
    let has_status = db
        .status
        .as_ref()
        .is_some_and(|s| s.password_secret_ref.is_some());
    let seen = SEEN_DATABASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&uid);
    if has_status && !seen && internal_password(c, ns, name).await.is_some() {
        remember_internal_password(c, ns, name).await;
        SEEN_DATABASES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(uid);
    }
    Some(db)
}

/// Database objects (by UID) whose internal password is remembered.
static SEEN_DATABASES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Applies a database given as JSON.
pub async fn apply_db(
    c: &LocalCluster,
    ns: &str,
    db: serde_json::Value,
) -> Result<(), kube::Error> {
    let name = db["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api: Api<ActiveActiveDatabase> = Api::namespaced(c.client(), ns);
    let mut db = db;
    db["apiVersion"] = "aadb.dev/v1alpha1".into();
    db["kind"] = "ActiveActiveDatabase".into();
    api.patch(
        &name,
        &PatchParams::apply("aadb-tests").force(),
        &Patch::Apply(&db),
    )
    .await
    .map(|_| ())
}

/// Waits until the database's Ready condition is True; returns it.
pub async fn wait_ready(
    c: &LocalCluster,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> ActiveActiveDatabase {
    let db = eventually(&format!("{ns}/{name} Ready"), timeout, || async {
        let db = get_db(c, ns, name).await?;
        let st = db.status.as_ref()?;
        let ready = st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && st.observed_generation == db.metadata.generation).then_some(db)
    })
    .await;
    remember_internal_password(c, ns, name).await;
    db
}

/// The condition `kind` of the database, if set.
pub fn condition<'a>(
    db: &'a ActiveActiveDatabase,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    db.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
}

/// Shard-node pods of the database in `ns` (its proxies aside).
pub async fn pods(c: &LocalCluster, ns: &str, db: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(c.client(), ns)
        .list(&ListParams::default().labels(&format!(
            "aadb.dev/database={db},app.kubernetes.io/component!=proxy"
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Proxy pods of the database in `ns`.
pub async fn proxy_pods(c: &LocalCluster, ns: &str, db: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(c.client(), ns)
        .list(&ListParams::default().labels(&format!(
            "aadb.dev/database={db},app.kubernetes.io/component=proxy"
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The pod labelled primary of a shard.
pub async fn primary_pod(
    c: &LocalCluster,
    ns: &str,
    db: &str,
    participant: &str,
    shard: u32,
) -> Option<Pod> {
    Api::<Pod>::namespaced(c.client(), ns)
        .list(&ListParams::default().labels(&format!(
            "aadb.dev/database={db},aadb.dev/participant={participant},aadb.dev/shard={shard},aadb.dev/role=primary"
        )))
        .await
        .ok()?
        .items
        .into_iter()
        .next()
}

/// `host:port` of a LoadBalancer Service's ingress.
pub async fn lb_address(c: &LocalCluster, ns: &str, service: &str) -> Option<String> {
    let svc = Api::<k8s_openapi::api::core::v1::Service>::namespaced(c.client(), ns)
        .get_opt(service)
        .await
        .ok()??;
    let ip = svc.status?.load_balancer?.ingress?.into_iter().next()?.ip?;
    Some(format!("{ip}:6379"))
}

/// Internal passwords of the databases this test process has seen Ready, newest first.
static INTERNAL_PASSWORDS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The internal user's password of database `db` (its Secret `<db>-internal`).
pub async fn internal_password(c: &LocalCluster, ns: &str, db: &str) -> Option<String> {
    secret_value(c, ns, &format!("{db}-internal"), "password").await
}

/// The application password of database `db` (its generated Secret `<db>`).
pub async fn app_password(c: &LocalCluster, ns: &str, db: &str) -> Option<String> {
    secret_value(c, ns, db, "password").await
}

async fn secret_value(c: &LocalCluster, ns: &str, name: &str, key: &str) -> Option<String> {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.client(), ns)
        .get_opt(name)
        .await
        .ok()??;
    String::from_utf8(secret.data?.get(key)?.0.clone()).ok()
}

/// Remembers database `db`'s internal password for [`redis_conn`].
pub async fn remember_internal_password(c: &LocalCluster, ns: &str, db: &str) {
    if let Some(p) = internal_password(c, ns, db).await {
        let mut known = INTERNAL_PASSWORDS.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|k| *k != p);
        known.insert(0, p);
    }
}

async fn dial(url: String) -> Option<redis::aio::MultiplexedConnection> {
    dial_result(url).await.ok()
}

/// A connection, or why there is none.
async fn dial_result(url: String) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
            Err(format!("refused: {e}"))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 2 s".into()),
    }
}

/// A connection to `addr` with the `redis` crate, or None. An `addr` of the form
/// `user:password@host:port` authenticates as that user; a bare `host:port` authenticates as
/// the internal user of a database seen Ready (every command allowed), trying each known
/// password.
pub async fn redis_conn(addr: &str) -> Option<redis::aio::MultiplexedConnection> {
    // A Service's data path follows its endpoints shortly after the pods turn Ready (kube-proxy
    // reprograms the node): a refused or unanswered connection is tried again for a while.
    // Without credentials in `addr`, a connection counts once it may run commands: a proxy
    // that has not yet learnt the internal user takes the connection but not the password.
    let deadline = Instant::now() + Duration::from_secs(10);
    if addr.contains('@') {
        // Explicit credentials: a refusal of the password is final, anything else (no route
        // yet, a connection closed during the handshake) is tried again.
        loop {
            match dial_result(format!("redis://{addr}/")).await {
                Ok(conn) => return Some(conn),
                Err(e) if e.starts_with("refused") || Instant::now() > deadline => {
                    note(&format!("no connection to {addr}: {e}"));
                    return None;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    loop {
        if let Some(mut conn) = connect_once(addr).await {
            let usable = redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok();
            if usable || Instant::now() > deadline {
                return Some(conn);
            }
        } else if Instant::now() > deadline {
            note(&format!("no connection to {addr}"));
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_once(addr: &str) -> Option<redis::aio::MultiplexedConnection> {
    let known = INTERNAL_PASSWORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for password in known {
        if let Some(conn) = dial(format!("redis://aadb-internal:{password}@{addr}/")).await {
            return Some(conn);
        }
    }
    dial(format!("redis://{addr}/")).await
}

/// Writes a line to the process's stderr directly (test bodies run on runtime threads whose
/// `eprintln!` output lands in whichever test started the runtime).
pub fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs one command on `addr` without authenticating.
pub async fn anonymous_cmd<T: redis::FromRedisValue>(addr: &str, args: &[&str]) -> Option<T> {
    query(dial(format!("redis://{addr}/")).await?, args).await
}

/// Runs one command on `addr` with a fresh connection.
pub async fn redis_cmd<T: redis::FromRedisValue>(addr: &str, args: &[&str]) -> Option<T> {
    query(redis_conn(addr).await?, args).await
}

async fn query<T: redis::FromRedisValue>(
    mut conn: redis::aio::MultiplexedConnection,
    args: &[&str],
) -> Option<T> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match tokio::time::timeout(Duration::from_secs(2), cmd.query_async::<T>(&mut conn)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            note(&format!("{args:?}: {e}"));
            None
        }
        Err(_) => {
            note(&format!("{args:?}: no answer in 2 s"));
            None
        }
    }
}

/// Runs the RQ job-queue round trip (`shard-node/tests/clients/rq_roundtrip.py`: a worker
/// waiting with BLPOP, 20 jobs and a failing one) against `endpoint` (`host:port`), in a Python
/// environment with RQ made once under the test target directory; panics with the script's
/// output unless every job ran.
pub fn rq_round_trip(endpoint: &str, password: &str) {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join("rq-3.0.0");
    let python = venv.join("bin").join("python");
    let lock = std::fs::File::create(root.join("rq-3.0.0.lock")).expect("create the venv lock");
    lock.lock().expect("lock the venv");
    if !venv.join("ready").exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv");
        assert!(
            made.success(),
            "python3 -m venv failed (Debian: apt install python3-venv)"
        );
        let pip = std::process::Command::new(&python)
            .args(["-m", "pip", "install", "-q", "rq==3.0.0", "redis==8.2.0"])
            .output()
            .expect("run pip");
        assert!(pip.status.success(), "pip install rq: {pip:?}");
        std::fs::write(venv.join("ready"), b"").expect("mark the environment ready");
    }
    drop(lock);
    let script = workspace_root().join("shard-node/tests/clients/rq_roundtrip.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(endpoint)
        .arg(password)
        .output()
        .expect("run the RQ round trip");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "RQ round trip through {endpoint}:\n{text}"
    );
    assert_eq!(text.trim(), "ok 20", "{text}");
}
