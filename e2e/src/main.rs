//! `aadb-e2e`: local Kubernetes clusters for people and scripts.
//!
//! - `aadb-e2e up --clusters N --zones Z --dir DIR` starts N clusters (Z zones each) in a
//!   background process and returns when all are ready, leaving `DIR/<cluster>.kubeconfig`;
//! - `aadb-e2e down --dir DIR` stops them and removes what they left of the pod network and
//!   their sized volumes;
//! - `aadb-e2e sweep` removes what stopped or crashed clusters left of the pod network, and
//!   their sized volumes;
//! - `aadb-e2e serve …` is what `up` runs in the background;
//! - `aadb-e2e testapp --listen ADDR --data DIR` is the small workload the tests run as pods.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aadb_e2e::fleet::{Fleet, FleetDir, DOWN_GRACE};
use aadb_e2e::process::{pid_alive, signal, tail};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;

#[derive(Parser)]
#[command(
    name = "aadb-e2e",
    about = "Local Kubernetes control planes for aadb end-to-end work"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start clusters in the background; return when every one is ready.
    Up {
        /// Number of clusters (regions).
        #[arg(long, default_value_t = 1)]
        clusters: usize,
        /// Zones (one node each) per cluster.
        #[arg(long, default_value_t = 3)]
        zones: usize,
        /// Directory for kubeconfigs, logs and data.
        #[arg(long)]
        dir: PathBuf,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Stop what `up` started in DIR.
    Down {
        /// The directory given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Remove what stopped or crashed clusters left of the pod network (network namespaces,
    /// with their links, routes and rules, and the fabric once no cluster uses it).
    Sweep,
    /// Run clusters in the foreground until SIGTERM or SIGINT (what `up` starts).
    Serve {
        #[arg(long, default_value_t = 1)]
        clusters: usize,
        #[arg(long, default_value_t = 3)]
        zones: usize,
        #[arg(long)]
        dir: PathBuf,
    },
    /// The end-to-end test workload: a small HTTP server.
    Testapp {
        /// Address to listen on (default: $POD_IP:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Up {
            clusters,
            zones,
            dir,
            timeout,
        } => up(clusters, zones, &dir, Duration::from_secs(timeout)),
        Cmd::Down { dir } => down(&dir),
        Cmd::Sweep => {
            aadb_e2e::disks::sweep_stale();
            aadb_e2e::net::sweep_stale()
                .context("remove what stopped clusters left of the pod network")?;
            let left = aadb_e2e::net::leftovers(None);
            if !left.namespaces.is_empty() {
                println!(
                    "network namespaces of running clusters: {}",
                    left.namespaces.join(" ")
                );
            }
            Ok(())
        }
        Cmd::Serve {
            clusters,
            zones,
            dir,
        } => runtime()?.block_on(serve(clusters, zones, dir)),
        Cmd::Testapp { listen, data } => {
            let listen = match listen {
                Some(l) => l,
                None => {
                    let ip =
                        std::env::var("POD_IP").context("--listen not given and POD_IP not set")?;
                    format!("{ip}:8080")
                        .parse()
                        .context("POD_IP is not an address")?
                }
            };
            runtime()?.block_on(aadb_e2e::testapp::run(listen, data))?;
            Ok(())
        }
    }
}

const SETSID: &str = "/usr/bin/setsid";

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn up(clusters: usize, zones: usize, dir: &std::path::Path, timeout: Duration) -> Result<()> {
    let fd = FleetDir::new(dir)?;
    std::fs::create_dir_all(fd.path())
        .with_context(|| format!("create {}", fd.path().display()))?;
    if let Some(pid) = fd.running_pid() {
        bail!(
            "clusters are already up in {} (pid {pid}); run `aadb-e2e down --dir {}` first",
            fd.path().display(),
            fd.path().display()
        );
    }
    for f in [fd.ready_file(), fd.pid_file(), fd.pids_file()] {
        let _ = std::fs::remove_file(f);
    }
    let log = std::fs::File::create(fd.log_file())?;
    let exe = std::env::current_exe()?;
    // Its own session (util-linux `setsid`, which execs in place), so that closing the
    // terminal that ran `up` does not stop the clusters.
    let mut cmd = if std::path::Path::new(SETSID).is_file() {
        let mut c = Command::new(SETSID);
        c.arg(exe);
        c
    } else {
        let mut c = Command::new(exe);
        c.process_group(0);
        c
    };
    let mut child = cmd
        .arg("serve")
        .arg(format!("--clusters={clusters}"))
        .arg(format!("--zones={zones}"))
        .arg("--dir")
        .arg(fd.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start the serving process")?;
    std::fs::write(fd.pid_file(), child.id().to_string())?;
    let started = Instant::now();
    loop {
        if fd.ready_file().is_file() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            eprintln!("{}", tail(&fd.log_file(), 20_000));
            bail!(
                "the serving process exited ({status}) before the clusters were ready; log: {}",
                fd.log_file().display()
            );
        }
        if started.elapsed() > timeout {
            let _ = signal(child.id(), Signal::SIGTERM);
            eprintln!("{}", tail(&fd.log_file(), 20_000));
            bail!(
                "clusters not ready after {timeout:?}; log: {}",
                fd.log_file().display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let info = std::fs::read_to_string(fd.clusters_file()).unwrap_or_default();
    let clusters: Vec<aadb_e2e::fleet::ClusterInfo> =
        serde_json::from_str(&info).unwrap_or_default();
    println!(
        "{} cluster(s) ready in {:.1}s (pid {}):",
        clusters.len(),
        started.elapsed().as_secs_f64(),
        child.id()
    );
    for c in clusters {
        println!(
            "  {:<10} {}  kubeconfig {}  zones {}",
            c.name,
            c.server,
            c.kubeconfig.display(),
            c.zones.join(",")
        );
    }
    println!("stop with: aadb-e2e down --dir {}", fd.path().display());
    Ok(())
}

fn down(dir: &std::path::Path) -> Result<()> {
    stop(dir)?;
    // Whatever a serving process that crashed left of the pod network and volumes goes too.
    aadb_e2e::disks::sweep_stale();
    aadb_e2e::net::sweep_stale().context("remove what stopped clusters left of the pod network")
}

fn stop(dir: &std::path::Path) -> Result<()> {
    let fd = FleetDir::new(dir)?;
    let Some(pid) = fd.running_pid() else {
        // Nothing serving; make sure no recorded component survived a crash.
        for p in fd.recorded_pids() {
            if pid_alive(p) {
                let _ = signal(p, Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(fd.ready_file());
        println!("nothing running in {}", fd.path().display());
        return Ok(());
    };
    signal(pid, Signal::SIGTERM)?;
    let started = Instant::now();
    while pid_alive(pid) && started.elapsed() < DOWN_GRACE {
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_alive(pid) {
        eprintln!("pid {pid} did not stop in {DOWN_GRACE:?}; killing it and its components");
        let _ = signal(pid, Signal::SIGKILL);
        for p in fd.recorded_pids() {
            let _ = signal(p, Signal::SIGKILL);
        }
    }
    for f in [fd.ready_file(), fd.pid_file()] {
        let _ = std::fs::remove_file(f);
    }
    println!(
        "stopped the clusters in {} in {:.1}s",
        fd.path().display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn serve(clusters: usize, zones: usize, dir: PathBuf) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .try_init();
    let fd = FleetDir::new(&dir)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let fleet = tokio::select! {
        f = Fleet::start(clusters, zones, fd.path(), true) => f?,
        _ = term.recv() => bail!("stopped before the clusters were ready"),
        _ = tokio::signal::ctrl_c() => bail!("interrupted before the clusters were ready"),
    };
    let pids: Vec<String> = fleet.pids().iter().map(|p| p.to_string()).collect();
    std::fs::write(fd.pids_file(), pids.join("\n"))?;
    std::fs::write(
        fd.clusters_file(),
        serde_json::to_vec_pretty(&fleet.info(fd.path()))?,
    )?;
    std::fs::write(fd.ready_file(), "ready\n")?;
    eprintln!("ready: {} cluster(s) in {}", clusters, fd.path().display());
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("stopping");
    let _ = std::fs::remove_file(fd.ready_file());
    fleet.stop().await;
    eprintln!("stopped");
    Ok(())
}
