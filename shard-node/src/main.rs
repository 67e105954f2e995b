//! `shard-node`: the aadb data-plane binary. See `config.rs` for the command line.

use anyhow::Context;
use clap::Parser;
use shard_node::config::{AppendFsync, Cli, LogFormat, Mode, ProxyArgs, ServerArgs, YesNo};
use shard_node::crdt::{Actor, Keyspace};
use shard_node::net;
use shard_node::resp::Limits;
use shard_node::server::{self, background, persist, Shared, State};
use shard_node::store::{FsyncPolicy, Store};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let args = match shard_node::config::expand_config_file(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shard-node: {e}");
            std::process::exit(2);
        }
    };
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Mode::Server(server_args) => {
            init_logging(server_args.log_format);
            run_server(server_args)
        }
        Mode::Proxy(proxy_args) => {
            init_logging(proxy_args.log_format);
            run_proxy(proxy_args)
        }
    };
    if let Err(e) = result {
        eprintln!("shard-node: {e:#}");
        std::process::exit(1);
    }
}

fn runtime(io_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if io_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(io_threads);
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    runtime(args.io_threads)?.block_on(shard_node::proxy::run(args, wait_for_signal()))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHARD_NODE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    if let Some(r) = &args.replicaof {
        shard_node::commands::replication::parse_peer_addr(r)
            .map_err(|e| anyhow::anyhow!("--replicaof: {e}"))?;
    }
    for p in &args.peers {
        let (name, addr) = p
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--peer '{p}' is not NAME=HOST:PORT"))?;
        if name.is_empty() || name == args.participant {
            anyhow::bail!("--peer '{p}': the name must be another participant's name");
        }
        shard_node::commands::replication::parse_peer_addr(addr)
            .map_err(|e| anyhow::anyhow!("--peer: {e}"))?;
    }
    let tls = args.tls.load()?;
    runtime(args.io_threads)?.block_on(serve(args, tls))
}

async fn serve(
    args: ServerArgs,
    tls: Option<Arc<shard_node::transport::tls::ReloadableTls>>,
) -> anyhow::Result<()> {
    server::set_clock_skew_ms(args.clock_skew_ms);
    let now = server::now_ms();
    // Without other participants or a primary, removed state can be dropped at once.
    let single = args.peers.is_empty() && args.replicaof.is_none();
    let first_epoch = shard_node::crdt::clock::epoch_of(1, 0);
    let mut ks = Keyspace::new(
        Actor::new(args.participant.clone(), args.shard, first_epoch),
        single,
    );
    let policy = match args.appendfsync {
        AppendFsync::Always => FsyncPolicy::Always,
        AppendFsync::Everysec => FsyncPolicy::EverySec,
        AppendFsync::No => FsyncPolicy::No,
    };
    let mut recovered_data = false;
    let store = if args.appendonly == YesNo::Yes {
        let (store, recovered) = Store::open(&args.dir, policy)
            .with_context(|| format!("cannot open the data directory {}", args.dir.display()))?;
        let replayed = persist::recover(&mut ks, recovered);
        // Effects made just before a crash may have reached peers without reaching this disk
        // (appendfsync everysec/no): never reuse their sequence numbers. A restarted node
        // writes as a new epoch of its shard.
        // A restart keeps the generation (it is not a promotion) with a fresh incarnation.
        let lineage = ks.actor_id().lineage();
        if ks.clock().iter().any(|(a, _)| a.lineage() == lineage) {
            let generation = shard_node::crdt::clock::generation_of(ks.actor().epoch);
            let epoch = ks.fresh_epoch(generation);
            ks.set_epoch(epoch);
        }
        tracing::info!(keys = ks.len(), effects = replayed, dir = %args.dir.display(), "state recovered");
        recovered_data = replayed > 0 || !ks.is_empty();
        Some(store)
    } else {
        None
    };
    let sync_thread = match (&store, policy) {
        (Some(s), FsyncPolicy::EverySec) => Some(
            s.sync_handle()
                .spawn_periodic(Duration::from_secs(1))
                .context("cannot start the fsync thread")?,
        ),
        _ => None,
    };
    let (listener, tls_listener) = args.tls.listeners(&args.bind, args.port).await?;
    // The address the node is known by: its plaintext port, or its TLS port when TLS only.
    let local = match (&listener, &tls_listener) {
        (Some(l), _) | (None, Some(l)) => l.local_addr()?,
        (None, None) => anyhow::bail!("no listener"),
    };
    let mut db = shard_node::commands::Db::new(ks);
    db.settings.requirepass = args.requirepass.clone().map(bytes::Bytes::from);
    db.acl = args
        .users
        .build(args.requirepass.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    db.acl_file = args.users.aclfile.clone();
    db.settings.protected_mode = args.users.protected_mode == YesNo::Yes;
    db.settings.link_credentials = args
        .users
        .internal_credentials()
        .map(|(u, p)| (bytes::Bytes::from(u), bytes::Bytes::from(p)));
    db.settings.maxmemory = args.maxmemory;
    db.settings.maxclients = args.maxclients;
    db.settings.appendfsync = format!("{:?}", args.appendfsync).to_ascii_lowercase();
    db.settings.appendonly = args.appendonly == YesNo::Yes;
    db.settings.bind = args.bind.clone();
    db.settings.port = local.port();
    db.settings.dir = args.dir.display().to_string();
    db.settings.proto_max_bulk_len = args.proto_max_bulk_len;
    if args.max_effect_bytes > shard_node::commands::MAX_EFFECT_BYTES {
        anyhow::bail!(
            "--max-effect-bytes {} is above {}, the most a replicated write can carry",
            args.max_effect_bytes,
            shard_node::commands::MAX_EFFECT_BYTES
        );
    }
    db.settings.max_effect_bytes = args.max_effect_bytes;
    db.started_ms = now;
    db.tcp_port = local.port();
    db.run_id = format!("{:040x}", rand::random::<u128>());
    db.participant = args.participant.clone();
    if let Some(map) = &args.shard_map {
        shard_node::commands::cluster::install_topology(&mut db, 0, map, args.shard)
            .map_err(|e| anyhow::anyhow!("--shard-map is not usable: {e}"))?;
    }
    db.repl = shard_node::repl::ReplState::new(db.ks.clock().clone());
    db.repl.backlog.set_limit(args.repl_backlog_size as usize);
    db.repl.links_use_tls = tls.is_some();
    if recovered_data && args.replicaof.is_none() {
        if args.restart_hold_until_told {
            db.repl.write_hold_until_ms = u64::MAX;
            tracing::info!(
                "restarted with data: client writes wait until the node is told its role"
            );
        } else if args.restart_hold_ms > 0 {
            db.repl.write_hold_until_ms = now + args.restart_hold_ms;
            tracing::info!(
                hold_ms = args.restart_hold_ms,
                "restarted with data: client writes wait for the node's role"
            );
        }
    }
    if let Some(r) = &args.replicaof {
        if let Ok((host, port)) = shard_node::commands::replication::parse_peer_addr(r) {
            shard_node::commands::replication::follow(&mut db, host, port);
        }
    }
    for p in &args.peers {
        if let Some((name, addr)) = p.split_once('=') {
            shard_node::commands::replication::set_peer(
                &mut db,
                name.to_string(),
                addr.to_string(),
            );
        }
    }
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let (offsets, _) = tokio::sync::watch::channel(0u64);
    let (acks, _) = tokio::sync::watch::channel(0u64);
    let (pauses, _) = tokio::sync::watch::channel(0u64);
    let (blocked_wake, _) = tokio::sync::watch::channel(0u64);
    let shared = Arc::new(Shared {
        state: parking_lot::Mutex::new(State { db, store }),
        next_client_id: AtomicU64::new(1),
        connections: AtomicUsize::new(0),
        limits: Limits {
            max_bulk_len: args.proto_max_bulk_len as usize,
            ..Limits::default()
        },
        shutdown,
        offsets,
        acks,
        pauses,
        blocked_wake,
        snapshot_lock: parking_lot::Mutex::new(()),
        compaction_requested: Default::default(),
        tls,
    });
    {
        let mut state = shared.state.lock();
        let links = std::mem::take(&mut state.db.requests.links);
        shard_node::links::start_links(&shared, &state, links);
    }
    if let Some(path) = args.topology_file.clone() {
        let target = shared.clone();
        let shard = args.shard;
        tokio::spawn(shard_node::proxy::watch_topology_file(
            path,
            shared.shutdown.subscribe(),
            move |version, map| {
                let text = map.to_text();
                let mut state = target.state.lock();
                shard_node::commands::cluster::install_topology(
                    &mut state.db,
                    version,
                    &text,
                    shard,
                )?;
                tracing::info!(version, map = %text, "topology installed from the topology file");
                Ok(())
            },
        ));
    }
    if let Some(tls) = &shared.tls {
        tokio::spawn(tls.clone().watch(shared.shutdown.subscribe()));
    }
    if let Some(path) = args.users.aclfile.clone() {
        let target = shared.clone();
        tokio::spawn(shard_node::acl::watch_file(
            path,
            shared.shutdown.subscribe(),
            move |text| target.state.lock().db.acl.load_file_text(text),
        ));
    }
    tokio::spawn(background::expiry_sweeper(shared.clone()));
    tokio::spawn(background::memory_sampler(shared.clone()));
    tokio::spawn(persist::compactor(shared.clone()));
    if let Some(port) = args.metrics_port {
        let metrics = tokio::net::TcpListener::bind((args.bind.as_str(), port))
            .await
            .with_context(|| format!("cannot listen for metrics on {}:{port}", args.bind))?;
        tracing::info!(addr = %metrics.local_addr()?, "metrics endpoint ready");
        tokio::spawn(shard_node::metrics::serve(metrics, shared.clone()));
    }
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; shutting down");
            let _ = shared.shutdown.send(true);
        });
    }
    if let Some(l) = &tls_listener {
        tracing::info!(addr = %l.local_addr()?, "TLS listener ready");
    }
    tracing::info!(addr = %local, participant = %args.participant, shard = args.shard, "ready to accept connections");
    net::serve(listener, tls_listener, shared).await?;
    drop(sync_thread);
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
