//! Startup, liveness and readiness probes of one running container.
//!
//! Contract: the kubelet's semantics with its defaults (period 10 s, timeout 1 s, success
//! threshold 1, failure threshold 3, initial delay 0). Liveness and readiness start once the
//! startup probe (if any) succeeded. The prober reports *transitions* only: `Started`, then
//! `Ready(true|false)` whenever readiness flips (a container without a readiness probe is
//! ready once started), and `Unhealthy` once when liveness or startup fails past its
//! threshold (the pod worker then kills the container). `exec` runs the command with the
//! container's environment, working directory and image mapping; `tcpSocket` connects;
//! `httpGet` expects a status in 200..400; `grpc` is checked as a TCP connect; HTTPS is
//! unsupported and fails.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;

use super::images::ImageTable;
use super::spec::resolve_args;

/// What a probe of one container instance reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeEvent {
    Started,
    Ready(bool),
    Unhealthy,
}

/// Everything a probe needs to reach or run inside the container.
#[derive(Clone, Debug)]
pub(crate) struct ProbeContext {
    pub pod_ip: IpAddr,
    pub container: Container,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<(String, PathBuf)>,
    pub cwd: PathBuf,
    pub images: ImageTable,
    pub path_env: String,
    /// The pod's network namespace, where `exec` probes run (none on the shared host).
    pub netns: Option<String>,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

fn resolve_port(ctx: &ProbeContext, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(i) => u16::try_from(*i).ok(),
        IntOrString::String(name) => ctx
            .container
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

fn host(ctx: &ProbeContext, h: Option<&String>) -> IpAddr {
    h.and_then(|h| h.parse().ok()).unwrap_or(ctx.pod_ip)
}

/// Runs one probe once: Ok(true) on success.
pub(crate) async fn probe_once(ctx: &ProbeContext, p: &Probe) -> bool {
    let timeout = secs(p.timeout_seconds, 1).max(Duration::from_millis(100));
    if let Some(e) = &p.exec {
        let command = e.command.clone().unwrap_or_default();
        let image = ctx.container.image.clone().unwrap_or_default();
        let Ok((entry, rest)) = ctx.images.resolve(&image, &command, &ctx.path_env) else {
            return false;
        };
        let args: Vec<String> = entry
            .args
            .iter()
            .cloned()
            .chain(resolve_args(&rest, &[], &ctx.env, &ctx.mounts))
            .collect();
        let mut cmd = match &ctx.netns {
            Some(ns) => {
                let mut argv = crate::net::ClusterNet::exec_prefix(ns);
                let mut c = tokio::process::Command::new(argv.remove(0));
                c.args(argv).arg(&entry.program);
                c
            }
            None => tokio::process::Command::new(&entry.program),
        };
        cmd.args(&args)
            .env_clear()
            .envs(ctx.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&ctx.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let Ok(mut child) = cmd.spawn() else {
            return false;
        };
        return matches!(
            tokio::time::timeout(timeout, child.wait()).await,
            Ok(Ok(status)) if status.success()
        );
    }
    if let Some(t) = &p.tcp_socket {
        let Some(port) = resolve_port(ctx, &t.port) else {
            return false;
        };
        let addr = SocketAddr::new(host(ctx, t.host.as_ref()), port);
        return matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        );
    }
    if let Some(h) = &p.http_get {
        if h.scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            return false;
        }
        let Some(port) = resolve_port(ctx, &h.port) else {
            return false;
        };
        let addr = SocketAddr::new(host(ctx, h.host.as_ref()), port);
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        return match crate::http::request(addr, "GET", &path, &headers, &[], timeout).await {
            Ok(r) => (200..400).contains(&r.status),
            Err(_) => false,
        };
    }
    if let Some(g) = &p.grpc {
        let Ok(port) = u16::try_from(g.port) else {
            return false;
        };
        let addr = SocketAddr::new(ctx.pod_ip, port);
        return matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        );
    }
    false
}

/// Thresholded state of one probe.
struct Tracker {
    ok: Option<bool>,
    successes: i32,
    failures: i32,
    success_threshold: i32,
    failure_threshold: i32,
}

impl Tracker {
    fn new(p: &Probe) -> Self {
        Tracker {
            ok: None,
            successes: 0,
            failures: 0,
            success_threshold: p.success_threshold.unwrap_or(1).max(1),
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1),
        }
    }

    /// Feeds one result; returns the new state when it changed.
    fn feed(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.ok != Some(true) && self.successes >= self.success_threshold {
                self.ok = Some(true);
                return self.ok;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.ok != Some(false) && self.failures >= self.failure_threshold {
                self.ok = Some(false);
                return self.ok;
            }
        }
        None
    }
}

async fn send(tx: &mpsc::Sender<ProbeEvent>, ev: ProbeEvent) -> bool {
    tx.send(ev).await.is_ok()
}

/// Runs the container's probes until aborted or the receiver is gone.
pub(crate) async fn run(ctx: ProbeContext, tx: mpsc::Sender<ProbeEvent>) {
    let c = ctx.container.clone();
    if let Some(p) = &c.startup_probe {
        tokio::time::sleep(secs(p.initial_delay_seconds, 0)).await;
        let mut t = Tracker::new(p);
        t.success_threshold = 1;
        loop {
            match t.feed(probe_once(&ctx, p).await) {
                Some(true) => break,
                Some(false) => {
                    send(&tx, ProbeEvent::Unhealthy).await;
                    return;
                }
                None => {}
            }
            tokio::time::sleep(secs(p.period_seconds, 10)).await;
        }
    }
    if !send(&tx, ProbeEvent::Started).await {
        return;
    }
    let liveness = async {
        let Some(p) = &c.liveness_probe else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(secs(p.initial_delay_seconds, 0)).await;
        let mut t = Tracker::new(p);
        t.success_threshold = 1;
        loop {
            if t.feed(probe_once(&ctx, p).await) == Some(false) {
                send(&tx, ProbeEvent::Unhealthy).await;
                return std::future::pending::<()>().await;
            }
            tokio::time::sleep(secs(p.period_seconds, 10)).await;
        }
    };
    let readiness = async {
        let Some(p) = &c.readiness_probe else {
            send(&tx, ProbeEvent::Ready(true)).await;
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(secs(p.initial_delay_seconds, 0)).await;
        let mut t = Tracker::new(p);
        loop {
            if let Some(ok) = t.feed(probe_once(&ctx, p).await) {
                if !send(&tx, ProbeEvent::Ready(ok)).await {
                    return;
                }
            }
            tokio::time::sleep(secs(p.period_seconds, 10)).await;
        }
    };
    tokio::join!(liveness, readiness);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_report_transitions_once() {
        let p = Probe {
            success_threshold: Some(2),
            failure_threshold: Some(2),
            ..Default::default()
        };
        let mut t = Tracker::new(&p);
        assert_eq!(t.feed(true), None);
        assert_eq!(t.feed(true), Some(true));
        assert_eq!(t.feed(true), None);
        assert_eq!(t.feed(false), None);
        assert_eq!(t.feed(false), Some(false));
        assert_eq!(t.feed(false), None);
        assert_eq!(t.feed(true), None);
        assert_eq!(t.feed(true), Some(true));
    }
}
