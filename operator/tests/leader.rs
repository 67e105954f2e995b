//! Leader election against a real kube-apiserver (the local control plane of `aadb-e2e`):
//! candidates on one Lease never lead at the same time, a candidate that shuts down hands the
//! Lease over at once, one that dies without releasing is replaced after the lease duration,
//! and a leader that cannot renew (API server frozen with SIGSTOP) steps down before its Lease
//! expires.
//!
//! Needs the upstream binaries in `target/k8s/bin`; without them the test fails with the
//! message to run `make k8s-bins`.

use std::future::Future;
use std::time::{Duration, Instant};

use aadb_e2e::{ClusterSpec, LocalCluster};
use aadb_operator::leader::{self, LeaderConfig, Leadership};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Cluster index of this test binary (its loopback range); distinct from other tests'.
const CLUSTER_INDEX: u8 = 7;
const NAMESPACE: &str = "default";
const LEASE: &str = "aadb-operator-leader-test";
const LEASE_DURATION: Duration = Duration::from_secs(3);
const RENEW_EVERY: Duration = Duration::from_millis(500);

/// One election loop with its own identity and shutdown switch.
struct Candidate {
    identity: String,
    leadership: Leadership,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Candidate {
    fn start(client: &kube::Client, identity: &str) -> Candidate {
        let mut cfg = LeaderConfig::new(NAMESPACE, LEASE, identity);
        cfg.lease_duration = LEASE_DURATION;
        cfg.renew_every = RENEW_EVERY;
        let (stop, stopped) = oneshot::channel::<()>();
        let (leadership, task) = leader::spawn(client.clone(), cfg, async move {
            let _ = stopped.await;
        });
        Candidate {
            identity: identity.to_string(),
            leadership,
            stop: Some(stop),
            task,
        }
    }

    /// Signals shutdown and waits for the loop to return (after releasing the Lease).
    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("{}: election loop did not return", self.identity))
            .unwrap_or_else(|e| panic!("{}: election loop failed: {e}", self.identity));
        assert!(
            !self.leadership.is_leader(),
            "{} still leads after shutdown",
            self.identity
        );
    }
}

/// Records the largest set of candidates that led at the same moment.
struct OverlapWatch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<String>>,
}

impl OverlapWatch {
    fn start(candidates: &[&Candidate]) -> OverlapWatch {
        let mut watched: Vec<(String, watch::Receiver<bool>)> = candidates
            .iter()
            .map(|c| (c.identity.clone(), c.leadership.subscribe()))
            .collect();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut most: Vec<String> = Vec::new();
            loop {
                let leaders: Vec<String> = watched
                    .iter_mut()
                    .filter_map(|(id, rx)| (*rx.borrow_and_update()).then(|| id.clone()))
                    .collect();
                if leaders.len() > most.len() {
                    most = leaders;
                }
                if watched.is_empty() {
                    break;
                }
                let changes = futures::future::select_all(
                    watched.iter_mut().map(|(_, rx)| Box::pin(rx.changed())),
                );
                let closed = tokio::select! {
                    _ = &mut stopped => break,
                    (res, index, _) = changes => res.is_err().then_some(index),
                };
                if let Some(index) = closed {
                    watched.remove(index);
                }
            }
            most
        });
        OverlapWatch { stop, task }
    }

    /// Stops watching and asserts that never more than one candidate led.
    async fn assert_exclusive(self) {
        let _ = self.stop.send(());
        let most = self.task.await.expect("overlap watch did not panic");
        assert!(most.len() <= 1, "candidates led at the same time: {most:?}");
    }
}

/// A process of the local cluster stopped with SIGSTOP until this is dropped.
struct Frozen {
    pid: u32,
}

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        send_signal(pid, "STOP");
        Frozen { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Also runs while a failed assertion unwinds: report, never panic twice.
        if let Err(e) = try_send_signal(self.pid, "CONT") {
            eprintln!("{e}");
        }
    }
}

fn send_signal(pid: u32, signal: &str) {
    if let Err(e) = try_send_signal(pid, signal) {
        panic!("{e}");
    }
}

fn try_send_signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("kill -{signal} {pid}: {other:?}")),
    }
}

/// Polls `check` until it returns Some, or panics after `timeout` naming `what`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The only leader among `candidates`, if exactly one leads.
fn sole_leader<'a>(candidates: &[&'a Candidate]) -> Option<&'a Candidate> {
    let mut leaders = candidates.iter().filter(|c| c.leadership.is_leader());
    match (leaders.next(), leaders.next()) {
        (Some(only), None) => Some(*only),
        _ => None,
    }
}

/// `(holder, leaseDurationSeconds, leaseTransitions, renewTime in µs)` of the Lease.
async fn lease_state(api: &Api<Lease>) -> (String, i32, i32, i64) {
    let lease = api.get(LEASE).await.expect("read the Lease");
    let spec = lease.spec.expect("Lease has a spec");
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_duration_seconds.unwrap_or_default(),
        spec.lease_transitions.unwrap_or_default(),
        spec.renew_time
            .map(|t| t.0.as_microsecond())
            .unwrap_or_default(),
    )
}

fn run_dir() -> std::path::PathBuf {
    aadb_e2e::bins::workspace_root()
        .join("target/e2e-runs")
        .join(format!("operator-leader-{}", std::process::id()))
}

#[tokio::test]
async fn lease_election_is_exclusive_hands_over_and_steps_down_without_renewals() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "aadb_operator=debug".into()),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
    let mut spec = ClusterSpec::new("opleader", CLUSTER_INDEX);
    // Leases need no nodes or pods.
    spec.agent = false;
    let cluster = LocalCluster::start(spec, &run_dir())
        .await
        .unwrap_or_else(|e| panic!("starting the local cluster failed: {e}"));
    let client = cluster.client();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);

    // Two candidates racing for a Lease that does not exist yet: exactly one leads.
    let alpha = Candidate::start(&client, "alpha");
    let beta = Candidate::start(&client, "beta");
    let overlap = OverlapWatch::start(&[&alpha, &beta]);
    let first = eventually(
        "one leader among alpha and beta",
        Duration::from_secs(20),
        || std::future::ready(sole_leader(&[&alpha, &beta]).map(|c| c.identity.clone())),
    )
    .await;
    let (holder, duration_s, transitions, renewed) = lease_state(&leases).await;
    assert_eq!(holder, first);
    assert_eq!(duration_s, 3);
    // The leader keeps renewing while the other keeps following.
    let renewed_later = eventually(
        "the leader renews the Lease",
        Duration::from_secs(5),
        || {
            let leases = leases.clone();
            async move {
                let (_, _, _, r) = lease_state(&leases).await;
                (r > renewed).then_some(r)
            }
        },
    )
    .await;
    assert!(renewed_later > renewed);
    assert_eq!(
        sole_leader(&[&alpha, &beta]).map(|c| c.identity.clone()),
        Some(first.clone()),
        "leadership stays with {first} while it renews"
    );
    assert_eq!(lease_state(&leases).await.0, first);

    // The leader shuts down: it releases the Lease and the other takes over at its next
    // attempt, well before the lease duration.
    let (leaving, staying) = if alpha.identity == first {
        (alpha, beta)
    } else {
        (beta, alpha)
    };
    leaving.shut_down().await;
    let released_at = Instant::now();
    assert_ne!(
        lease_state(&leases).await.0,
        first,
        "the Lease no longer names {first} after its shutdown"
    );
    tokio::time::timeout(
        Duration::from_secs(2),
        staying.leadership.wait_until_leader(),
    )
    .await
    .unwrap_or_else(|_| panic!("{} did not lead within 2s of the release", staying.identity));
    let handover = released_at.elapsed();
    assert!(
        handover < LEASE_DURATION,
        "handover took {handover:?}, as long as an expiry"
    );
    let (holder, _, transitions_after_release, _) = lease_state(&leases).await;
    assert_eq!(holder, staying.identity);
    assert_eq!(
        transitions_after_release,
        transitions + 1,
        "leaseTransitions"
    );
    overlap.assert_exclusive().await;

    // The leader dies without releasing: a new candidate waits out the lease duration.
    let gamma = Candidate::start(&client, "gamma");
    let overlap = OverlapWatch::start(&[&gamma]);
    let dead = staying.identity.clone();
    staying.task.abort();
    let died_at = Instant::now();
    let aborted = staying.task.await;
    assert!(
        aborted.as_ref().is_err_and(|e| e.is_cancelled()),
        "{aborted:?}"
    );
    assert_eq!(
        lease_state(&leases).await.0,
        dead,
        "nothing released the Lease"
    );
    assert!(
        !gamma.leadership.is_leader(),
        "gamma must not lead while {dead}'s Lease is valid"
    );
    tokio::time::timeout(
        LEASE_DURATION + Duration::from_secs(5),
        gamma.leadership.wait_until_leader(),
    )
    .await
    .unwrap_or_else(|_| panic!("gamma did not take over the expired Lease of {dead}"));
    let takeover = died_at.elapsed();
    // The dead leader renewed at most one interval (plus a request) before it died.
    assert!(
        takeover >= LEASE_DURATION - RENEW_EVERY - Duration::from_millis(300),
        "gamma took over after {takeover:?}, before the Lease expired"
    );
    let (holder, _, transitions_after_expiry, _) = lease_state(&leases).await;
    assert_eq!(holder, "gamma");
    assert_eq!(
        transitions_after_expiry,
        transitions + 2,
        "leaseTransitions"
    );
    overlap.assert_exclusive().await;

    // The API server stops answering: the leader cannot renew and steps down before its
    // Lease could expire for anyone else; once the server answers again it leads again.
    let apiserver = cluster
        .pids()
        .into_iter()
        .find(|(name, _)| name == "kube-apiserver")
        .map(|(_, pid)| pid)
        .expect("kube-apiserver pid");
    let frozen = Frozen::freeze(apiserver);
    let frozen_at = Instant::now();
    eventually(
        "gamma steps down without renewals",
        LEASE_DURATION + Duration::from_secs(5),
        || std::future::ready((!gamma.leadership.is_leader()).then_some(())),
    )
    .await;
    let stepped_down = frozen_at.elapsed();
    assert!(
        stepped_down < LEASE_DURATION,
        "gamma led for {stepped_down:?} without renewing, past the lease duration"
    );
    assert!(
        stepped_down >= LEASE_DURATION - 2 * RENEW_EVERY - Duration::from_millis(300),
        "gamma stepped down after {stepped_down:?}, before renewals were overdue"
    );
    drop(frozen);
    tokio::time::timeout(
        Duration::from_secs(30),
        gamma.leadership.wait_until_leader(),
    )
    .await
    .expect("gamma leads again once the API server answers");
    assert_eq!(lease_state(&leases).await.0, "gamma");

    // A leader that shuts down last leaves the Lease without a holder.
    gamma.shut_down().await;
    let (holder, duration_s, _, _) = lease_state(&leases).await;
    assert_eq!(holder, "", "released Lease has no holder");
    assert_eq!(duration_s, 1);

    // This cluster has no CRD: the operator refuses to start and says how to install it.
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_aadb-operator"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .expect("join")
    .expect("run aadb-operator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "operator started without its CRD");
    assert!(
        stderr.contains("CRD is not installed")
            && stderr.contains("kubectl apply -f manifests/crd/activeactivedatabases.yaml"),
        "{stderr}"
    );

    cluster.stop().await;
}
