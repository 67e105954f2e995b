//! `aadb-operator`: reconciles `ActiveActiveDatabase` objects.
//!
//! Runs with a kubeconfig (`--kubeconfig`, `KUBECONFIG`, or the in-cluster service account),
//! checks that the CRD is installed (and says how to install it if not), optionally waits to
//! win a Lease (`--leader-election`), serves `/metrics`, `/healthz` and `/readyz`, and stops
//! gracefully on SIGTERM or SIGINT. Losing leadership stops the process with a non-zero exit so
//! that it restarts as a follower. `/readyz` is ready once the process has started, whether it
//! leads or stands by (a standby that is never Ready would stall every rollout of the
//! Deployment); `aadb_operator_leader` and the Lease say which one leads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aadb_operator::{clusters::ClusterClients, controller, http, leader};
use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::Reporter;
use prometheus_client::registry::Registry;

#[derive(Parser, Debug)]
#[command(
    name = "aadb-operator",
    version,
    about = "Kubernetes operator for active-active Redis-compatible databases"
)]
struct Args {
    /// Kubeconfig of the cluster the operator watches (default: KUBECONFIG or in-cluster).
    #[arg(long, env = "AADB_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Manage only this participant (per-cluster mode: apply the same object in every cluster,
    /// each operator owns its own region).
    #[arg(long, env = "AADB_PARTICIPANT")]
    participant: Option<String>,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "AADB_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "AADB_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// Take part in leader election on a Lease; only the leader reconciles.
    #[arg(long, env = "AADB_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "AADB_LEASE_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, env = "AADB_LEASE_NAME", default_value = "aadb-operator")]
    lease_name: String,
    /// Identity in the Lease and in Events (default: host name and pid).
    #[arg(long, env = "AADB_IDENTITY")]
    identity: Option<String>,
    /// Let participants live in namespaces other than their database's (default: refused with
    /// SpecValid=False).
    #[arg(long, env = "AADB_ALLOW_FOREIGN_NAMESPACES")]
    allow_foreign_namespaces: bool,
    /// Log format.
    #[arg(long, env = "AADB_LOG_FORMAT", value_parser = ["json", "text"], default_value = "text")]
    log_format: String,
}

async fn client(args: &Args) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {} is unusable", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a cluster")?,
    };
    kube::Client::try_from(config).context("cannot build the API client")
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube_client=warn,kube_runtime=warn".into());
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(filter)
            .init();
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "aadb-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let client = client(&args).await?;
    if let Err(message) = controller::check_crd_installed(client.clone()).await {
        anyhow::bail!(message);
    }

    let mut registry = Registry::default();
    let metrics = http::OperatorMetrics::new(&mut registry);
    let registry = Arc::new(registry);
    let health = http::HealthState::new();
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http_task = tokio::spawn(http::serve(
        listener,
        registry,
        health.clone(),
        stopped(stop_rx.clone()),
    ));
    tracing::info!(addr = %args.metrics_addr, %identity, participant = ?args.participant, "aadb-operator starting");
    health.set_ready();

    let (leadership, leader_task) = if args.leader_election {
        let (l, t) = leader::spawn(
            client.clone(),
            leader::LeaderConfig {
                namespace: args.lease_namespace.clone(),
                lease_name: args.lease_name.clone(),
                identity: identity.clone(),
                lease_duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(2),
            },
            stopped(stop_rx.clone()),
        );
        (l, Some(t))
    } else {
        (leader::always_leader(), None)
    };

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut lost_leadership = false;
    tokio::select! {
        _ = &mut shutdown => {
            let _ = stop_tx.send(true);
            if let Some(t) = leader_task { let _ = t.await; }
            let _ = http_task.await;
            return Ok(());
        }
        _ = leadership.wait_until_leader() => {}
    }
    metrics.leader.set(1);
    tracing::info!("leading; reconciling");

    let mut ctx = controller::Context::new(
        ClusterClients::new(client.clone()),
        args.participant.clone(),
        Reporter {
            controller: "aadb-operator".into(),
            instance: Some(identity.clone()),
        },
        controller::Metrics::new(metrics.clone()),
    );
    ctx.allow_foreign_namespaces = args.allow_foreign_namespaces;
    let ctx = Arc::new(ctx);
    let mut leader_rx = leadership.subscribe();
    let (ctl_stop_tx, ctl_stop_rx) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(controller::run(
        ctx,
        args.watch_namespace.clone(),
        stopped(ctl_stop_rx),
    ));
    tokio::select! {
        _ = &mut shutdown => {}
        _ = async { let _ = leader_rx.wait_for(|l| !*l).await; } => {
            tracing::error!("lost leadership; stopping");
            lost_leadership = true;
        }
    }
    health.set_not_ready("stopping");
    let _ = ctl_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    let _ = stop_tx.send(true);
    if let Some(t) = leader_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = http_task.await;
    if lost_leadership {
        anyhow::bail!("lost leadership");
    }
    Ok(())
}
