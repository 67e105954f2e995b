//! `shard-node proxy`: a region's endpoint. Clients speak Redis to it as to one database; it
//! sends each command to the shard that owns the command's keys and returns the replies in
//! request order. Many proxies run side by side, all active; each holds nothing but the
//! topology.
//!
//! Contract:
//! - **Routing.** A command goes to the primary of the shard serving its keys' slots. Keys of
//!   one command on different shards get `CROSSSLOT`, except for the commands the proxy splits
//!   by shard and merges (`MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH`). Keyless commands that
//!   describe the whole database are fanned out to every shard and merged (`DBSIZE`, `KEYS`,
//!   `SCAN`, `FLUSHALL`, `FLUSHDB`, `RANDOMKEY`, `INFO`, `CONFIG SET`); `WAIT` goes to the shards
//!   this connection wrote to. Other keyless commands go to shard 0. A slot no shard serves
//!   gets `CLUSTERDOWN`. See [`client`].
//! - **Connections.** Client requests share a few pipelined connections per shard
//!   (`--backend-connections`); a client always uses the same one for a shard, so its
//!   requests to a shard stay in order. Transactions (`WATCH`/`MULTI`…`EXEC`) get a connection of
//!   their own, pinned to one shard; subscribers are joined to a connection of their own to
//!   the pub/sub shard (shard 0). See [`backend`].
//! - **Failures.** A request is never sent twice. One not yet written when its connection
//!   failed waits for the shard to become reachable again (at most `--backend-timeout-ms`); one
//!   written but unanswered gets an error saying its outcome is unknown. After a connection
//!   failure, or a `MOVED`/`READONLY` reply, the proxy asks the shard's nodes for their role
//!   and topology and follows a promotion by itself; a refused (`MOVED`/`READONLY`) request
//!   was not executed, so it is sent again to the new primary.
//! - **Topology.** From `--shard-map`, `AA.TOPOLOGY SET <version> <map>` (authenticated), and
//!   `--topology-file`; `AA.TOPOLOGY ANNOUNCE <host:port>` sets the address the Cluster API
//!   gives clients for this proxy (the region endpoint, pushed by the operator); a version not newer than the current one is refused and malformed
//!   maps are refused with the reason, keeping the old routes.

pub mod backend;
pub mod client;
pub mod merge;
pub mod metrics;
pub mod reply;
pub mod routes;

use crate::cluster::{ShardMap, TopologyError};
use crate::config::ProxyArgs;
use anyhow::Context;
use backend::Backend;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use routes::Routes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most shards a proxy routes to (its `SCAN` cursors carry the shard in 11 bits).
pub const MAX_SHARDS: usize = 1024;

/// How the proxy authenticates to the shard-nodes: `AUTH [user] password`. `Debug` hides the
/// password.
#[derive(Clone)]
pub struct BackendAuth {
    pub user: Option<Bytes>,
    pub password: Bytes,
}

impl BackendAuth {
    /// The `AUTH` command.
    pub fn command(&self) -> Vec<&[u8]> {
        match &self.user {
            Some(user) => vec![b"AUTH", user, &self.password],
            None => vec![b"AUTH", &self.password],
        }
    }
}

impl std::fmt::Debug for BackendAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendAuth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Settings fixed at start.
#[derive(Clone, Debug)]
pub struct Settings {
    pub backend_auth: Option<BackendAuth>,
    /// Refuse non-loopback clients while the `default` user needs no password.
    pub protected_mode: bool,
    pub announce: Option<String>,
    pub backend_connections: usize,
    pub backend_timeout: Duration,
    pub max_pending: usize,
    pub maxclients: usize,
}

/// State every connection of the proxy shares.
pub struct Core {
    routes: RwLock<Arc<Routes>>,
    /// Bumped at every routes change; backend connections watch it to follow promotions.
    changes: watch::Sender<u64>,
    pub settings: Settings,
    /// Users and their permissions, checked before a command is routed.
    pub acl: RwLock<crate::acl::Acl>,
    /// The file `ACL LOAD` reads (`--aclfile`).
    pub acl_file: Option<std::path::PathBuf>,
    pub metrics: metrics::Counters,
    shared: Mutex<HashMap<(usize, bool, usize), Backend>>,
    /// When each shard's nodes were last asked who the primary is.
    refreshed: Mutex<HashMap<usize, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
    next_client_id: AtomicU64,
    /// The address clients are told to use for this proxy (`--announce`, or
    /// `AA.TOPOLOGY ANNOUNCE`); without one, the address each client connected to.
    announce: RwLock<Option<String>>,
    pub connections: AtomicUsize,
    pub shutdown: watch::Sender<bool>,
    /// TLS settings (reloaded when their files change), if any.
    pub tls: Option<Arc<crate::transport::tls::ReloadableTls>>,
    /// The shard-nodes are reached over TLS.
    pub tls_backends: bool,
}

/// A refresh more recent than this is not repeated: the answer would be the same.
const REFRESH_INTERVAL: Duration = Duration::from_millis(50);

impl Core {
    pub fn new(
        settings: Settings,
        acl: crate::acl::Acl,
        acl_file: Option<std::path::PathBuf>,
        routes: Routes,
        tls: Option<Arc<crate::transport::tls::ReloadableTls>>,
        tls_backends: bool,
    ) -> Arc<Core> {
        let settings_announce = settings.announce.clone();
        let (changes, _) = watch::channel(0);
        let (shutdown, _) = watch::channel(false);
        let core = Arc::new(Core {
            routes: RwLock::new(Arc::new(routes)),
            changes,
            settings,
            acl: RwLock::new(acl),
            acl_file,
            metrics: metrics::Counters::default(),
            shared: Mutex::new(HashMap::new()),
            refreshed: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(1),
            announce: RwLock::new(settings_announce),
            connections: AtomicUsize::new(0),
            shutdown,
            tls,
            tls_backends,
        });
        core.metrics
            .topology_version
            .store(core.routes().version, Ordering::Relaxed);
        core
    }

    /// The routes in force.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().clone()
    }

    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Replaces the routes with what `change` makes of the current ones, atomically (a push
    /// and a discovered promotion cannot undo each other); `None` leaves them.
    fn update(&self, change: impl FnOnce(&Routes) -> Option<Routes>) -> bool {
        let mut guard = self.routes.write();
        let Some(next) = change(&guard) else {
            return false;
        };
        let version = next.version;
        *guard = Arc::new(next);
        drop(guard);
        self.metrics
            .topology_version
            .store(version, Ordering::Relaxed);
        self.changes.send_modify(|n| *n += 1);
        true
    }

    /// Installs a pushed map when its version is newer (see the module contract).
    pub fn install(&self, version: u64, map: ShardMap) -> Result<(), TopologyError> {
        if map.shards.len() > MAX_SHARDS {
            return Err(TopologyError::NoSuchShard {
                shard: MAX_SHARDS as u32,
                shards: map.shards.len(),
            });
        }
        let mut refused = None;
        self.update(|now| match now.replace(version, map) {
            Ok(next) => Some(next),
            Err(e) => {
                refused = Some(e);
                None
            }
        });
        if let Some(e) = refused {
            return Err(e);
        }
        tracing::info!(version, "topology installed");
        Ok(())
    }

    /// The address announced to clients, if one is set.
    pub fn announced(&self) -> Option<String> {
        self.announce.read().clone()
    }

    /// Sets the address announced to clients (`HOST:PORT`).
    pub fn set_announce(&self, addr: &str) -> Result<(), String> {
        crate::commands::replication::parse_peer_addr(addr)?;
        *self.announce.write() = Some(addr.to_string());
        Ok(())
    }

    /// The TLS settings towards the shard-nodes, when they are reached over TLS.
    pub fn backend_tls(&self) -> Option<crate::transport::tls::LinkTls> {
        self.tls
            .as_ref()
            .filter(|_| self.tls_backends)
            .map(|t| t.current())
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The shared pipelined connection to shard `shard` that client `client` uses.
    pub fn shared_backend(self: &Arc<Self>, shard: usize, resp3: bool, client: u64) -> Backend {
        let index = (client % self.settings.backend_connections as u64) as usize;
        let mut pool = self.shared.lock();
        let entry = pool
            .entry((shard, resp3, index))
            .or_insert_with(|| Backend::spawn(self.clone(), shard, resp3, true));
        if entry.is_closed() {
            *entry = Backend::spawn(self.clone(), shard, resp3, true);
        }
        entry.clone()
    }

    /// Asks shard `shard`'s nodes who its primary is now, and adopts a newer topology one of
    /// them holds; at most once per [`REFRESH_INTERVAL`], concurrent callers wait for the one
    /// refresh in progress.
    pub async fn refresh_shard(self: &Arc<Self>, shard: usize) {
        let lock = self
            .refreshed
            .lock()
            .entry(shard)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone();
        let mut last = lock.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        self.discover_primary(shard).await;
        *last = Some(Instant::now());
    }

    async fn discover_primary(&self, shard: usize) {
        let routes = self.routes();
        for addr in routes.candidates(shard) {
            let answers = backend::ask(
                &addr,
                self.settings.backend_auth.as_ref(),
                self.backend_tls(),
                &[&[b"AA.TOPOLOGY", b"GET"], &[b"ROLE"]],
            )
            .await;
            let Ok(answers) = answers else {
                continue;
            };
            if self.adopt_node_topology(&answers[0]) {
                return;
            }
            let is_primary = reply::elements(&answers[1])
                .and_then(|roles| roles.first().map(|r| reply::bulk(r) == Some(b"master")))
                .unwrap_or(false);
            if is_primary {
                let moved = self.update(|now| {
                    (now.version == routes.version && now.primary(shard) != Some(addr.as_str()))
                        .then(|| now.with_primary(shard, &addr))
                });
                if moved {
                    tracing::info!(shard, primary = %addr, "shard primary discovered");
                }
                return;
            }
        }
        tracing::warn!(shard, "no node of the shard answered as its primary");
    }

    /// Adopts the topology in a node's `AA.TOPOLOGY GET` answer when it is newer.
    fn adopt_node_topology(&self, answer: &Bytes) -> bool {
        let Some(parts) = reply::elements(answer) else {
            return false;
        };
        let (Some(version), Some(map)) = (
            parts.first().and_then(|v| reply::integer(v)),
            parts.get(1).and_then(|m| reply::bulk(m)),
        ) else {
            return false;
        };
        let Ok(map) = std::str::from_utf8(map)
            .map_err(|_| ())
            .and_then(|m| ShardMap::parse(m).map_err(|_| ()))
        else {
            return false;
        };
        if version <= 0 || version as u64 <= self.routes().version {
            return false;
        }
        let adopted = self.install(version as u64, map).is_ok();
        if adopted {
            tracing::info!(version, "topology learned from a shard-node");
        }
        adopted
    }

    /// After `-MOVED <slot> <addr>`: learns a newer topology from `addr`, or that `addr` is now
    /// the primary of the slot's shard.
    pub async fn follow_moved(self: &Arc<Self>, slot: u16, addr: &str) {
        let before = self.routes();
        if before
            .shard_of(slot)
            .is_some_and(|s| before.primary(s) == Some(addr))
        {
            // Already followed (by another connection): nothing to learn.
            return;
        }
        if let Ok(answers) = backend::ask(
            addr,
            self.settings.backend_auth.as_ref(),
            self.backend_tls(),
            &[&[b"AA.TOPOLOGY", b"GET"]],
        )
        .await
        {
            if self.adopt_node_topology(&answers[0]) {
                return;
            }
        }
        let routes = self.routes();
        if let Some(shard) = routes.shard_of(slot) {
            let followed = self.update(|now| {
                (now.version == routes.version
                    && now.shard_with_node(addr) == Some(shard)
                    && now.primary(shard) != Some(addr))
                .then(|| now.with_primary(shard, addr))
            });
            if followed {
                tracing::info!(shard, primary = %addr, "following a redirection");
            } else {
                self.refresh_shard(shard).await;
            }
        }
    }
}

/// Watches `path` for a newer `VERSION SHARD-MAP` and hands each new text to `apply`; every
/// refusal is logged once per file content.
pub async fn watch_topology_file<F>(
    path: std::path::PathBuf,
    mut shutdown: watch::Receiver<bool>,
    apply: F,
) where
    F: Fn(u64, ShardMap) -> Result<(), String> + Send + 'static,
{
    let mut last: Option<String> = None;
    let mut previous: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Ok(text) = tokio::fs::read_to_string(&path).await else {
            continue;
        };
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        // A file being rewritten in place can be read half-written: use a content only once
        // two reads in a row agree.
        if previous.as_deref() != Some(text.as_str()) {
            previous = Some(text);
            continue;
        }
        match routes::parse_topology_file(&text).and_then(|(v, map)| apply(v, map)) {
            Ok(()) => {}
            Err(e) if e.contains("is not newer") => {}
            Err(e) => tracing::warn!(path = %path.display(), "topology file refused: {e}"),
        }
        last = Some(text);
    }
}

/// Runs the proxy until `stop` completes.
pub async fn run(
    args: ProxyArgs,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let routes = match &args.shard_map {
        Some(text) => {
            let map = ShardMap::parse(text).map_err(|e| anyhow::anyhow!("--shard-map: {e}"))?;
            if map.shards.len() > MAX_SHARDS {
                anyhow::bail!("--shard-map: a proxy routes to at most {MAX_SHARDS} shards");
            }
            Routes::new(0, map).map_err(|e| anyhow::anyhow!("--shard-map: {e}"))?
        }
        None => Routes::new(0, ShardMap { shards: Vec::new() })?,
    };
    if let Some(a) = &args.announce {
        crate::commands::replication::parse_peer_addr(a)
            .map_err(|e| anyhow::anyhow!("--announce: {e}"))?;
    }
    let acl = args
        .users
        .build(args.requirepass.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let backend_auth = match args.users.internal_credentials() {
        Some((user, password)) => Some(BackendAuth {
            user: Some(Bytes::from(user)),
            password: Bytes::from(password),
        }),
        None => args
            .backend_password
            .clone()
            .or(args.requirepass.clone())
            .map(|p| BackendAuth {
                user: None,
                password: Bytes::from(p),
            }),
    };
    let settings = Settings {
        backend_auth,
        protected_mode: args.users.protected_mode == crate::config::YesNo::Yes,
        announce: args.announce.clone(),
        backend_connections: usize::from(args.backend_connections),
        backend_timeout: Duration::from_millis(args.backend_timeout_ms),
        max_pending: args.max_pending as usize,
        maxclients: args.maxclients as usize,
    };
    let tls = args.tls.load()?;
    let yes = |v: crate::config::YesNo| v == crate::config::YesNo::Yes;
    if tls.is_none() && yes(args.tls_backends) {
        anyhow::bail!("--tls-backends needs --tls-cert, --tls-key and --tls-ca");
    }
    let core = Core::new(
        settings,
        acl,
        args.users.aclfile.clone(),
        routes,
        tls,
        yes(args.tls_backends),
    );
    let (listener, tls_listener) = args.tls.listeners(&args.bind, args.port).await?;
    if let Some(tls) = &core.tls {
        tokio::spawn(tls.clone().watch(core.shutdown.subscribe()));
    }
    if let Some(path) = args.users.aclfile.clone() {
        let target = core.clone();
        tokio::spawn(crate::acl::watch_file(
            path,
            core.shutdown.subscribe(),
            move |text| target.acl.write().load_file_text(text),
        ));
    }
    if let Some(port) = args.metrics_port {
        let metrics = tokio::net::TcpListener::bind((args.bind.as_str(), port))
            .await
            .with_context(|| format!("cannot listen for metrics on {}:{port}", args.bind))?;
        tracing::info!(addr = %metrics.local_addr()?, "metrics endpoint ready");
        let core = core.clone();
        tokio::spawn(crate::metrics::serve_http(
            metrics,
            core.shutdown.subscribe(),
            move || metrics::render(&core),
        ));
    }
    if let Some(path) = args.topology_file.clone() {
        let target = core.clone();
        tokio::spawn(watch_topology_file(
            path,
            core.shutdown.subscribe(),
            move |version, map| target.install(version, map).map_err(|e| e.to_string()),
        ));
    }
    {
        let core = core.clone();
        tokio::spawn(async move {
            stop.await;
            tracing::info!("signal received; shutting down");
            let _ = core.shutdown.send(true);
        });
    }
    for (l, what) in [(&listener, "plaintext"), (&tls_listener, "TLS")] {
        if let Some(l) = l {
            tracing::info!(addr = %l.local_addr()?, shards = core.routes().shards(), "proxy ready to accept {what} connections");
        }
    }
    let mut shutdown = core.shutdown.subscribe();
    loop {
        let (socket, peer, tls) = tokio::select! {
            accepted = crate::net::accept_optional(listener.as_ref()) => match accepted {
                Ok((s, p)) => (s, p, false),
                Err(e) => {
                    // Out of file descriptors, say: pause instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            accepted = crate::net::accept_optional(tls_listener.as_ref()) => match accepted {
                Ok((s, p)) => (s, p, true),
                Err(e) => {
                    tracing::warn!("TLS accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let _ = socket.set_nodelay(true);
        let core = core.clone();
        tokio::spawn(async move {
            let stream = if tls {
                let Some(settings) = core.tls.as_ref().map(|t| t.current()) else {
                    return;
                };
                match tokio::time::timeout(Duration::from_secs(10), settings.accept_stream(socket))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(reason)) => {
                        tracing::warn!(%peer, %reason, "TLS client refused");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "TLS client refused: handshake timed out");
                        return;
                    }
                }
            } else {
                crate::transport::stream::Stream::Plain(socket)
            };
            client::serve(core, stream, peer).await;
        });
    }
}
