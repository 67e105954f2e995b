//! Pods as processes: one worker per pod bound to one of the agent's nodes.
//!
//! Contract:
//! - the pod gets an address of its own (`status.podIP`): with pod networking in its own
//!   network namespace (processes run inside it), on the shared host a loopback address that
//!   replaces the wildcard `0.0.0.0` in its arguments and environment; its node's address is
//!   `hostIP`; it gets a working directory `<agent dir>/pods/<ns>_<name>_<uid>` and a log per
//!   container `<agent dir>/logs/<ns>_<name>_<container>.log` (appended across restarts);
//! - init containers run to completion in order, then every container starts as a process
//!   in its own process group, with the resolved command, args and environment (plus
//!   `HOSTNAME`, `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`; a container that
//!   mounts the service account files at their in-cluster path also gets `KUBECONFIG`, naming
//!   a kubeconfig with the same server, CA and token file, since clients read that path
//!   directly);
//! - exited containers restart by `restartPolicy` with a short exponential back-off (0.2 s
//!   doubling to 10 s, reset after 10 s of running), counting `restartCount`; a liveness or
//!   startup failure kills the container (SIGTERM, then SIGKILL after the grace period);
//! - status is patched as a kubelet does: phase, IPs, startTime, the conditions
//!   `PodReadyToStartContainers`, `Initialized`, `ContainersReady` and `Ready` (readiness
//!   gates honoured, other conditions kept) and the container statuses;
//! - deletion: on `deletionTimestamp`, SIGTERM every container's process group, wait up to
//!   the grace period, SIGKILL what is left, report terminated statuses, then delete the pod
//!   with grace period 0 and a UID precondition; a pod that disappears from the API is
//!   killed at once;
//! - while the node's heartbeats are stopped the worker writes nothing (status, deletion)
//!   but keeps its processes, like a kubelet cut off from the apiserver;
//! - a running pod's `secret` and `configMap` volumes are written again from the API every
//!   few seconds (each file replaced whole), so a changed Secret reaches its pods as a
//!   kubelet's sync brings it.

mod start;
mod status;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::nodes::now_rfc3339;

/// Where Kubernetes mounts a pod's service account token, CA and namespace.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
use super::probes::{self, ProbeContext, ProbeEvent};
use super::spec::{resolve_args, resolve_env, rewrite_path, Lookup, PodFacts};
use super::{lock, volumes, AbortOnDrop, PodEntry, Shared};
use crate::{Error, Result};

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(250);
const SETPRIV: &str = "/usr/bin/setpriv";

/// Sends `sig` to the process group led by `pid`.
pub(crate) fn signal_group(pid: u32, sig: Signal) -> Result<()> {
    let raw = i32::try_from(pid).map_err(|_| Error::Invalid(format!("pid {pid} out of range")))?;
    if raw <= 0 {
        return Err(Error::Invalid(format!("pid {pid} out of range")));
    }
    kill(Pid::from_raw(-raw), sig).map_err(|e| Error::io(format!("kill -{sig} -{pid}"), e.into()))
}

/// Watches every pod and hands those on our nodes to their workers, until aborted.
pub(crate) async fn dispatch_loop(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut seen_in_init: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => seen_in_init.clear(),
            Ok(watcher::Event::InitApply(p)) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    seen_in_init.insert(uid);
                }
                offer(&shared, p);
            }
            Ok(watcher::Event::Apply(p)) => offer(&shared, p),
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    gone(&shared, uid);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let stale: Vec<String> = lock(&shared.pods)
                    .keys()
                    .filter(|uid| !seen_in_init.contains(*uid))
                    .cloned()
                    .collect();
                for uid in stale {
                    gone(&shared, &uid);
                }
            }
            Err(e) => {
                tracing::debug!("pod watch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn gone(shared: &Shared, uid: &str) {
    if let Some(e) = lock(&shared.pods).get(uid) {
        let _ = e.tx.send(None);
    }
}

fn offer(shared: &Arc<Shared>, pod: Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    if shared.node(&node).is_none() {
        return;
    }
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if lock(&shared.finished).contains(&uid) {
        return;
    }
    let pod = Arc::new(pod);
    let mut pods = lock(&shared.pods);
    if let Some(e) = pods.get(&uid) {
        let _ = e.tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let pids = Arc::new(Mutex::new(HashMap::new()));
    let mut entry = PodEntry {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        tx,
        pids: pids.clone(),
        task: None,
    };
    let s = shared.clone();
    let uid2 = uid.clone();
    entry.task = Some(AbortOnDrop(tokio::spawn(async move {
        let mut w = match Worker::new(s.clone(), uid2.clone(), node, pod, rx, pids) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("pod {uid2}: {e}");
                return;
            }
        };
        w.run().await;
        w.cleanup();
        lock(&s.finished).insert(uid2.clone());
        // Dropping our own entry would abort this task; take it out and let it finish.
        let mine = lock(&s.pods).remove(&uid2);
        if let Some(mut m) = mine {
            if let Some(t) = m.task.take() {
                std::mem::forget(t);
            }
        }
    })));
    pods.insert(uid, entry);
}

#[derive(Clone, Debug)]
enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        pid: u32,
        started_at: String,
        since: Instant,
    },
    Terminated(Terminated),
}

#[derive(Clone, Debug)]
struct Terminated {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    started_at: String,
    finished_at: String,
    container_id: String,
}

struct ContainerRt {
    spec: Container,
    init: bool,
    state: State,
    last: Option<Terminated>,
    restart_count: i32,
    started: bool,
    ready: bool,
    gen: u64,
    container_id: String,
    next_start: Option<Instant>,
    backoff: Duration,
    has_run: bool,
    prober: Option<AbortOnDrop>,
    waiter: Option<AbortOnDrop>,
}

enum Ev {
    Exited {
        idx: usize,
        gen: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
    Probe {
        idx: usize,
        gen: u64,
        ev: ProbeEvent,
    },
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    node: String,
    host_ip: Ipv4Addr,
    pod: Arc<Pod>,
    rx: watch::Receiver<Option<Arc<Pod>>>,
    pids: Arc<Mutex<HashMap<String, u32>>>,
    ip: Ipv4Addr,
    /// The pod's network namespace (none on the shared host).
    podnet: Option<crate::net::PodNet>,
    dir: PathBuf,
    start_time: String,
    containers: Vec<ContainerRt>,
    ev_tx: mpsc::Sender<Ev>,
    ev_rx: mpsc::Receiver<Ev>,
    last_patch: Option<Value>,
    last_ready_sent: Option<bool>,
    gone: bool,
    /// When the pod's Secret and ConfigMap volumes were last written again.
    volumes_refreshed: Instant,
}

/// How often a running pod's Secret and ConfigMap volumes are written again from the API.
const VOLUME_REFRESH: Duration = Duration::from_secs(3);

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

fn pod_ready_condition(pod: &Pod) -> Option<bool> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True")
}

impl Worker {
    fn new(
        shared: Arc<Shared>,
        uid: String,
        node: String,
        pod: Arc<Pod>,
        rx: watch::Receiver<Option<Arc<Pod>>>,
        pids: Arc<Mutex<HashMap<String, u32>>>,
    ) -> Result<Self> {
        let info = shared
            .node(&node)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("unknown node {node}")))?;
        // Keep the address a previous agent reported, if it is ours and free.
        let reported: Option<Ipv4Addr> = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let ip = {
            let mut pool = lock(&shared.ips);
            match reported {
                Some(ip) if ip.octets()[..3] == info.ip.octets()[..3] && pool.used.insert(ip) => ip,
                _ => pool
                    .allocate(&shared.config.addressing, info.index)
                    .ok_or_else(|| Error::Invalid(format!("no free pod address on {node}")))?,
            }
        };
        let podnet = match &shared.config.net {
            Some(net) => match net.add_pod(ip) {
                Ok(p) => Some(p),
                Err(e) => {
                    lock(&shared.ips).release(ip);
                    return Err(e);
                }
            },
            None => None,
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let dir = shared
            .config
            .dir
            .join("pods")
            .join(format!("{ns}_{name}_{uid}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let spec = pod.spec.clone().unwrap_or_default();
        let mk = |c: &Container, init: bool| ContainerRt {
            spec: c.clone(),
            init,
            state: State::Waiting {
                reason: if init {
                    "PodInitializing".into()
                } else {
                    "ContainerCreating".into()
                },
                message: String::new(),
            },
            last: None,
            restart_count: 0,
            started: false,
            ready: false,
            gen: 0,
            container_id: String::new(),
            next_start: Some(Instant::now()),
            backoff: BACKOFF_START,
            has_run: false,
            prober: None,
            waiter: None,
        };
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| mk(c, true))
            .chain(spec.containers.iter().map(|c| mk(c, false)))
            .collect();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(now_rfc3339);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        Ok(Worker {
            shared,
            uid,
            node,
            host_ip: info.ip,
            pod,
            rx,
            pids,
            ip,
            podnet,
            dir,
            start_time,
            containers,
            ev_tx,
            ev_rx,
            last_patch: None,
            last_ready_sent: None,
            gone: false,
            volumes_refreshed: Instant::now(),
        })
    }

    fn ns(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn paused(&self) -> bool {
        self.shared.is_paused(&self.node)
    }

    fn terminal_phase(&self) -> bool {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
    }

    async fn run(&mut self) {
        if self.terminal_phase() {
            // Nothing to run; finish the deletion handshake when asked to.
            loop {
                if self.gone {
                    return;
                }
                if self.pod.metadata.deletion_timestamp.is_some() && !self.paused() {
                    self.delete_from_api().await;
                    return;
                }
                self.wait_for_something().await;
            }
        }
        loop {
            if self.gone {
                self.kill_all_now().await;
                return;
            }
            if self.pod.metadata.deletion_timestamp.is_some() && !self.paused() {
                self.terminate().await;
                return;
            }
            self.start_due().await;
            if !self.paused() {
                self.patch_status(false).await;
            }
            if self.volumes_refreshed.elapsed() >= VOLUME_REFRESH {
                self.volumes_refreshed = Instant::now();
                let pod = self.pod.clone();
                if let Err(e) = volumes::refresh(&self.shared, &pod, &self.dir).await {
                    tracing::debug!(pod = %self.name(), error = %e, "volume refresh");
                }
            }
            self.wait_for_something().await;
        }
    }

    async fn wait_for_something(&mut self) {
        tokio::select! {
            ev = self.ev_rx.recv() => {
                if let Some(ev) = ev {
                    self.handle(ev);
                }
            }
            changed = self.rx.changed() => {
                match changed {
                    Ok(()) => match self.rx.borrow_and_update().clone() {
                        Some(p) => {
                            // Someone else changed Ready (e.g. the node lifecycle
                            // controller): make sure ours is written again.
                            if pod_ready_condition(&p) != self.last_ready_sent {
                                self.last_patch = None;
                            }
                            self.pod = p;
                        }
                        None => self.gone = true,
                    },
                    Err(_) => self.gone = true,
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Exited {
                idx,
                gen,
                code,
                signal,
            } => {
                let policy = restart_policy(&self.pod);
                let Some(c) = self.containers.get_mut(idx) else {
                    return;
                };
                if c.gen != gen {
                    return;
                }
                let (started_at, ran_for) = match &c.state {
                    State::Running {
                        started_at, since, ..
                    } => (started_at.clone(), since.elapsed()),
                    _ => (now_rfc3339(), Duration::ZERO),
                };
                lock(&self.pids).remove(&c.spec.name);
                let exit_code = code.unwrap_or_else(|| 128 + signal.unwrap_or(9));
                let t = Terminated {
                    exit_code,
                    signal,
                    reason: if exit_code == 0 {
                        "Completed".into()
                    } else {
                        "Error".into()
                    },
                    started_at,
                    finished_at: now_rfc3339(),
                    container_id: c.container_id.clone(),
                };
                c.prober = None;
                c.waiter = None;
                c.ready = false;
                c.started = false;
                if ran_for >= BACKOFF_RESET_AFTER {
                    c.backoff = BACKOFF_START;
                }
                let restart = if c.init {
                    exit_code != 0 && policy != "Never"
                } else {
                    match policy.as_str() {
                        "Never" => false,
                        "OnFailure" => exit_code != 0,
                        _ => true,
                    }
                };
                if restart {
                    c.last = Some(t);
                    c.state = State::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!("back-off {:?} restarting failed container", c.backoff),
                    };
                    c.next_start = Some(Instant::now() + c.backoff);
                    c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                } else {
                    c.state = State::Terminated(t);
                    c.next_start = None;
                }
            }
            Ev::Probe { idx, gen, ev } => {
                let grace = self.grace_seconds();
                let Some(c) = self.containers.get_mut(idx) else {
                    return;
                };
                if c.gen != gen {
                    return;
                }
                match ev {
                    ProbeEvent::Started => c.started = true,
                    ProbeEvent::Ready(r) => c.ready = r && c.started,
                    ProbeEvent::Unhealthy => {
                        if let State::Running { pid, .. } = c.state {
                            tracing::info!(container = %c.spec.name, "liveness failed; killing");
                            let _ = signal_group(pid, Signal::SIGTERM);
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_secs(grace)).await;
                                let _ = signal_group(pid, Signal::SIGKILL);
                            });
                        }
                    }
                }
            }
        }
    }

    fn grace_seconds(&self) -> u64 {
        let g = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        u64::try_from(g.max(0)).unwrap_or(0)
    }

    fn init_done(&self) -> bool {
        self.containers
            .iter()
            .filter(|c| c.init)
            .all(|c| matches!(&c.state, State::Terminated(t) if t.exit_code == 0))
    }

    async fn start_due(&mut self) {
        let now = Instant::now();
        // Init containers: the first one not done, if due.
        if let Some(idx) = self
            .containers
            .iter()
            .position(|c| c.init && !matches!(&c.state, State::Terminated(t) if t.exit_code == 0))
        {
            let c = &self.containers[idx];
            let running = matches!(c.state, State::Running { .. });
            if !running && c.next_start.is_some_and(|t| t <= now) {
                self.start(idx).await;
            }
            return;
        }
        for idx in 0..self.containers.len() {
            let c = &self.containers[idx];
            if c.init || matches!(c.state, State::Running { .. }) {
                continue;
            }
            if c.next_start.is_some_and(|t| t <= now) {
                self.start(idx).await;
            }
        }
    }

    fn running_pids(&self) -> Vec<u32> {
        self.containers
            .iter()
            .filter_map(|c| match c.state {
                State::Running { pid, .. } => Some(pid),
                _ => None,
            })
            .collect()
    }

    async fn kill_all_now(&mut self) {
        for pid in self.running_pids() {
            let _ = signal_group(pid, Signal::SIGKILL);
        }
        self.drain_exits(Duration::from_secs(5)).await;
    }

    /// Handles exit events until nothing runs or the deadline passes.
    async fn drain_exits(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        // No restarts from here on.
        for c in &mut self.containers {
            c.next_start = None;
        }
        while !self.running_pids().is_empty() {
            match tokio::time::timeout_at(deadline, self.ev_rx.recv()).await {
                Ok(Some(ev)) => {
                    self.handle(ev);
                    for c in &mut self.containers {
                        c.next_start = None;
                        if let State::Waiting { .. } = c.state {
                            if let Some(t) = c.last.clone() {
                                c.state = State::Terminated(t);
                            }
                        }
                    }
                }
                _ => break,
            }
        }
    }

    async fn terminate(&mut self) {
        let grace = Duration::from_secs(self.grace_seconds());
        for c in &mut self.containers {
            c.next_start = None;
            c.prober = None;
            c.ready = false;
        }
        for pid in self.running_pids() {
            let _ = signal_group(pid, Signal::SIGTERM);
        }
        self.drain_exits(grace).await;
        for pid in self.running_pids() {
            let _ = signal_group(pid, Signal::SIGKILL);
        }
        self.drain_exits(Duration::from_secs(5)).await;
        for c in &mut self.containers {
            if !matches!(c.state, State::Terminated(_)) {
                let t = c.last.clone().unwrap_or(Terminated {
                    exit_code: 0,
                    signal: None,
                    reason: "Completed".into(),
                    started_at: now_rfc3339(),
                    finished_at: now_rfc3339(),
                    container_id: c.container_id.clone(),
                });
                c.state = State::Terminated(t);
            }
        }
        self.patch_status(true).await;
        self.delete_from_api().await;
    }

    async fn delete_from_api(&mut self) {
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns());
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.name(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.name(), "delete: {e}"),
        }
    }

    fn cleanup(&mut self) {
        for pid in self.running_pids() {
            let _ = signal_group(pid, Signal::SIGKILL);
        }
        lock(&self.pids).clear();
        self.podnet = None;
        lock(&self.shared.ips).release(self.ip);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills a process group when dropped (a waiter task aborted with the agent).
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = signal_group(self.0, Signal::SIGKILL);
    }
}
