//! Command line of `shard-node` (a contract: tests, the operator and benchmarks use it).
//!
//! Contract: every flag also reads an environment variable `SHARD_NODE_<FLAG>`; `--config FILE`
//! reads `name value` lines (the long flag names without dashes) that the command line and the
//! environment override. Invalid values end the process with a one-line error and exit code 2.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "shard-node",
    version,
    about = "Redis-compatible shard of an aadb active-active database",
    long_about = "shard-node serves one shard of an active-active database: a Redis-compatible \
server whose every write becomes a CRDT effect, applied locally, logged to disk and replicated."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Mode,
}

#[derive(Subcommand, Debug)]
pub enum Mode {
    /// Serve one shard: the RESP server with a CRDT keyspace and durable storage.
    Server(ServerArgs),
    /// Serve a region's endpoint: route every command to the shard that owns its keys.
    Proxy(ProxyArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AppendFsync {
    /// fsync the log before every reply that acknowledges a write.
    Always,
    /// fsync the log once per second.
    Everysec,
    /// leave flushing to the operating system.
    No,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum YesNo {
    Yes,
    No,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "SHARD_NODE_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// TCP port for clients (0 picks a free port; the chosen port is logged).
    #[arg(long, env = "SHARD_NODE_PORT", default_value_t = 6379)]
    pub port: u16,
    /// Directory for the effect log and snapshots.
    #[arg(long, env = "SHARD_NODE_DIR", default_value = "./data")]
    pub dir: PathBuf,
    /// Name of this participant (region) in the active-active database.
    #[arg(long, env = "SHARD_NODE_PARTICIPANT", default_value = "local")]
    pub participant: String,
    /// Index of the shard this node serves.
    #[arg(long, env = "SHARD_NODE_SHARD", default_value_t = 0)]
    pub shard: u32,
    /// The region's shards: which slots each owns and where its nodes are, as
    /// `RANGES=PRIMARY[|REPLICA...]` per shard in shard order, comma-separated (RANGES like
    /// `0-5460` or `0-99+200-300`). This node then serves only the slots of shard `--shard`
    /// and redirects the others (`MOVED`), as Redis Cluster does. Without it, every slot is
    /// served here. `AA.TOPOLOGY SET` replaces it at run time.
    #[arg(long, env = "SHARD_NODE_SHARD_MAP", value_name = "MAP")]
    pub shard_map: Option<String>,
    /// A file holding `VERSION SHARD-MAP` on one line, watched for changes: each newer version
    /// replaces the topology, as `AA.TOPOLOGY SET` does.
    #[arg(long, env = "SHARD_NODE_TOPOLOGY_FILE", value_name = "PATH")]
    pub topology_file: Option<PathBuf>,
    /// After a restart that recovered data, refuse client writes for this many milliseconds,
    /// or until `REPLICAOF` tells the node its role: a failover decided while the node was
    /// down would otherwise discard the writes it acknowledges meanwhile. 0: no hold.
    #[arg(long, env = "SHARD_NODE_RESTART_HOLD_MS", default_value_t = 0)]
    pub restart_hold_ms: u64,
    /// After a restart that recovered data, refuse client writes until `REPLICAOF` tells the
    /// node its role (`REPLICAOF NO ONE` on a primary confirms it), however long that takes:
    /// for a node whose roles an operator manages. `INFO replication` shows
    /// `aadb_write_hold:1` meanwhile.
    #[arg(long, env = "SHARD_NODE_RESTART_HOLD_UNTIL_TOLD")]
    pub restart_hold_until_told: bool,
    /// Start as a replica of this primary (HOST:PORT).
    #[arg(long, env = "SHARD_NODE_REPLICAOF", value_name = "HOST:PORT")]
    pub replicaof: Option<String>,
    /// The same shard in another participant (NAME=HOST:PORT); repeatable.
    #[arg(
        long = "peer",
        env = "SHARD_NODE_PEER",
        value_name = "NAME=HOST:PORT",
        value_delimiter = ','
    )]
    pub peers: Vec<String>,
    /// When the effect log is fsynced.
    #[arg(
        long,
        env = "SHARD_NODE_APPENDFSYNC",
        value_enum,
        default_value = "everysec"
    )]
    pub appendfsync: AppendFsync,
    /// Whether effects are written to disk at all.
    #[arg(long, env = "SHARD_NODE_APPENDONLY", value_enum, default_value = "yes")]
    pub appendonly: YesNo,
    /// Password clients must send with AUTH or HELLO.
    #[arg(long, env = "SHARD_NODE_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Users, and who may connect without a password.
    #[command(flatten)]
    pub users: UserArgs,
    /// Memory limit for data (bytes, or with kb/mb/gb); 0 means no limit. Writes past it fail
    /// with Redis's OOM error.
    #[arg(long, env = "SHARD_NODE_MAXMEMORY", default_value = "0", value_parser = parse_memory_arg)]
    pub maxmemory: u64,
    /// Maximum number of connected clients.
    #[arg(long, env = "SHARD_NODE_MAXCLIENTS", default_value_t = 10000)]
    pub maxclients: u64,
    /// Port for Prometheus metrics on the bind address (disabled when absent).
    #[arg(long, env = "SHARD_NODE_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// TLS: certificates, the TLS port and how connections are checked.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Read settings from a file of `name value` lines.
    #[arg(long, env = "SHARD_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "SHARD_NODE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Memory for the replication backlog (recent effects kept for replicas and peers to
    /// resume from); bytes, or with kb/mb/gb.
    #[arg(long, env = "SHARD_NODE_REPL_BACKLOG_SIZE", default_value = "16mb", value_parser = parse_memory_arg)]
    pub repl_backlog_size: u64,
    /// Threads serving connections. 1 (the default) runs every connection on one thread, like
    /// redis-server, which is fastest when clients are many and commands are small; more
    /// threads help with expensive commands and TLS.
    #[arg(long, env = "SHARD_NODE_IO_THREADS", default_value_t = 1)]
    pub io_threads: usize,
    /// Maximum size of one bulk argument in bytes.
    #[arg(long, env = "SHARD_NODE_PROTO_MAX_BULK_LEN", default_value_t = 512 * 1024 * 1024)]
    pub proto_max_bulk_len: u64,
    /// The most argument bytes one write, or the writes of one transaction, may carry; larger
    /// ones are refused before anything changes, since one write is one replicated effect.
    /// At most (and by default) 511mb.
    #[arg(long, env = "SHARD_NODE_MAX_EFFECT_BYTES", default_value = "511mb", value_parser = parse_memory_arg)]
    pub max_effect_bytes: u64,
    /// Milliseconds added to this node's wall clock (fault injection: regions whose clocks
    /// disagree, as real ones do). Not for production use.
    #[arg(
        long,
        env = "SHARD_NODE_CLOCK_SKEW_MS",
        default_value_t = 0,
        allow_negative_numbers = true,
        hide = true
    )]
    pub clock_skew_ms: i64,
}

/// The command line of `shard-node proxy`.
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, env = "SHARD_NODE_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// TCP port for clients (0 picks a free port; the chosen port is logged).
    #[arg(long, env = "SHARD_NODE_PORT", default_value_t = 6379)]
    pub port: u16,
    /// The region's shards, as for `shard-node server`: `RANGES=PRIMARY[|REPLICA...]` per
    /// shard, in shard order. Without it every keyed command is refused with `CLUSTERDOWN`
    /// until a topology arrives (`AA.TOPOLOGY SET` or `--topology-file`).
    #[arg(long, env = "SHARD_NODE_SHARD_MAP", value_name = "MAP")]
    pub shard_map: Option<String>,
    /// A file holding `VERSION SHARD-MAP` on one line, watched for changes.
    #[arg(long, env = "SHARD_NODE_TOPOLOGY_FILE", value_name = "PATH")]
    pub topology_file: Option<PathBuf>,
    /// Password clients must send with AUTH or HELLO; also used towards the shards unless
    /// `--backend-password` is given.
    #[arg(long, env = "SHARD_NODE_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Password the proxy sends to the shard-nodes.
    #[arg(long, env = "SHARD_NODE_BACKEND_PASSWORD", hide_env_values = true)]
    pub backend_password: Option<String>,
    /// Users, and who may connect without a password. With an internal user, the proxy also
    /// authenticates to the shard-nodes as that user.
    #[command(flatten)]
    pub users: UserArgs,
    /// Address clients are told to use for this proxy (`CLUSTER SLOTS`, `NODES`, `SHARDS`);
    /// by default, the address each client connected to.
    #[arg(long, env = "SHARD_NODE_ANNOUNCE", value_name = "HOST:PORT")]
    pub announce: Option<String>,
    /// Pipelined connections from this proxy to each shard that client requests share.
    #[arg(long, env = "SHARD_NODE_BACKEND_CONNECTIONS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub backend_connections: u16,
    /// How long a request may wait for its shard to become reachable before it is refused
    /// with `CLUSTERDOWN`, in milliseconds.
    #[arg(long, env = "SHARD_NODE_BACKEND_TIMEOUT_MS", default_value_t = 5000)]
    pub backend_timeout_ms: u64,
    /// TLS: certificates, the TLS port and how connections are checked (the proxy presents
    /// its certificate to clients and, with `--tls-backends yes`, to the shard-nodes).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Reach the shard-nodes over TLS (their addresses in the shard map are TLS ports).
    #[arg(
        long,
        env = "SHARD_NODE_TLS_BACKENDS",
        value_enum,
        default_value = "no"
    )]
    pub tls_backends: YesNo,
    /// Requests one client may have in flight; past it the proxy stops reading that client
    /// until replies are written.
    #[arg(long, env = "SHARD_NODE_MAX_PENDING", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending: u32,
    /// Maximum number of connected clients.
    #[arg(long, env = "SHARD_NODE_MAXCLIENTS", default_value_t = 10000)]
    pub maxclients: u64,
    /// Port for Prometheus metrics on the bind address (disabled when absent).
    #[arg(long, env = "SHARD_NODE_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Threads serving connections.
    #[arg(long, env = "SHARD_NODE_IO_THREADS", default_value_t = 1)]
    pub io_threads: usize,
    /// Read settings from a file of `name value` lines.
    #[arg(long, env = "SHARD_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "SHARD_NODE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// TLS of a server or proxy (see `crate::transport::tls`).
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Certificate (PEM) presented to clients and to the nodes this process links to.
    #[arg(long, env = "SHARD_NODE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the certificate (PEM).
    #[arg(long, env = "SHARD_NODE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that signs the certificates of clients and of the other nodes.
    #[arg(long, env = "SHARD_NODE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Port for TLS connections on the bind address (disabled when absent); point peers' and
    /// replicas' addresses at it. Needs `--tls-cert`, `--tls-key` and `--tls-ca`.
    #[arg(long, env = "SHARD_NODE_TLS_PORT")]
    pub tls_port: Option<u16>,
    /// Whether TLS clients must present a certificate signed by `--tls-ca` (`yes`: mutual TLS,
    /// as links use), or may connect without one and authenticate with a password.
    #[arg(
        long,
        env = "SHARD_NODE_TLS_AUTH_CLIENTS",
        value_enum,
        default_value = "yes"
    )]
    pub tls_auth_clients: crate::transport::tls::ClientAuth,
    /// What this process checks of the certificate of a node it connects to: signed by
    /// `--tls-ca` for the dialled host (`name`), or only signed by it (`ca`, for a private CA
    /// whose every certificate is one of the database's nodes).
    #[arg(
        long,
        env = "SHARD_NODE_TLS_LINK_VERIFY",
        value_enum,
        default_value = "name"
    )]
    pub tls_link_verify: crate::transport::tls::LinkVerify,
    /// Serve TLS only: no plaintext listener (`--port` is then unused). Needs `--tls-port`.
    #[arg(long, env = "SHARD_NODE_TLS_ONLY", value_enum, default_value = "no")]
    pub tls_only: YesNo,
}

impl TlsArgs {
    /// Loads the TLS settings (`None` without certificates) and checks that `--tls-port` and
    /// `--tls-only` have what they need; a sentence on error.
    pub fn load(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<crate::transport::tls::ReloadableTls>>> {
        let tls = crate::transport::tls::TlsOptions::from_args(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
            self.tls_auth_clients,
            self.tls_link_verify,
        )?
        .map(crate::transport::tls::ReloadableTls::load)
        .transpose()?;
        if self.tls_port.is_some() && tls.is_none() {
            anyhow::bail!("--tls-port needs --tls-cert, --tls-key and --tls-ca");
        }
        if self.tls_only == YesNo::Yes && self.tls_port.is_none() {
            anyhow::bail!("--tls-only yes needs --tls-port");
        }
        Ok(tls)
    }

    /// The plaintext listener (none with `--tls-only yes`) and the TLS listener (with
    /// `--tls-port`), bound on `bind`.
    pub async fn listeners(
        &self,
        bind: &str,
        port: u16,
    ) -> anyhow::Result<(
        Option<tokio::net::TcpListener>,
        Option<tokio::net::TcpListener>,
    )> {
        use anyhow::Context as _;
        let plain = if self.tls_only == YesNo::Yes {
            None
        } else {
            Some(
                tokio::net::TcpListener::bind((bind, port))
                    .await
                    .with_context(|| format!("cannot listen on {bind}:{port}"))?,
            )
        };
        let tls = match self.tls_port {
            Some(p) => Some(
                tokio::net::TcpListener::bind((bind, p))
                    .await
                    .with_context(|| format!("cannot listen for TLS on {bind}:{p}"))?,
            ),
            None => None,
        };
        Ok((plain, tls))
    }
}

/// Users of a server or proxy (see `crate::acl`).
#[derive(Args, Debug, Clone)]
pub struct UserArgs {
    /// Password of the internal user, which replicas, peers, proxies and the operator use.
    /// With it, the `default` user becomes the application's user: every command but the
    /// administrative ones (`-@admin`: replication, peers, topology, `CONFIG`, `SHUTDOWN`…).
    #[arg(long, env = "SHARD_NODE_INTERNAL_PASSWORD", hide_env_values = true)]
    pub internal_password: Option<String>,
    /// Name of the internal user.
    #[arg(
        long,
        env = "SHARD_NODE_INTERNAL_USER",
        default_value = "aadb-internal"
    )]
    pub internal_user: String,
    /// A file of users, one `user NAME rules…` line each (the format of `ACL LIST`), read at
    /// start and by `ACL LOAD`.
    #[arg(long, env = "SHARD_NODE_ACLFILE", value_name = "PATH")]
    pub aclfile: Option<PathBuf>,
    /// While the `default` user has no password, refuse clients that do not connect over
    /// loopback, as Redis's protected mode does.
    #[arg(
        long,
        env = "SHARD_NODE_PROTECTED_MODE",
        value_enum,
        default_value = "yes"
    )]
    pub protected_mode: YesNo,
}

impl UserArgs {
    /// The users: `default` (with `requirepass`), the internal user, then the ACL file's.
    pub fn build(&self, requirepass: Option<&str>) -> Result<crate::acl::Acl, String> {
        let mut acl = crate::acl::Acl::new(requirepass.map(str::as_bytes));
        if let Some(password) = &self.internal_password {
            if password.is_empty() {
                return Err("--internal-password must not be empty".into());
            }
            acl = acl.with_internal_user(&self.internal_user, password.as_bytes());
        }
        if let Some(path) = &self.aclfile {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --aclfile {}: {e}", path.display()))?;
            acl.load_file_text(&text)
                .map_err(|e| format!("--aclfile {}: {e}", path.display()))?;
        }
        Ok(acl)
    }

    /// The credentials this process uses towards other nodes: the internal user's if there
    /// is one.
    pub fn internal_credentials(&self) -> Option<(String, String)> {
        self.internal_password
            .as_ref()
            .map(|p| (self.internal_user.clone(), p.clone()))
    }
}

fn parse_memory_arg(text: &str) -> Result<u64, String> {
    crate::commands::config::parse_memory(text.as_bytes()).ok_or_else(|| {
        format!("'{text}' is not a memory size (bytes, or a number with kb, mb or gb)")
    })
}

/// Expands `--config FILE` into command-line arguments placed before the real ones, so the
/// command line wins. Returns a sentence on error.
pub fn expand_config_file(args: Vec<String>) -> Result<Vec<String>, String> {
    let mut path = None;
    for (i, a) in args.iter().enumerate() {
        if a == "--config" {
            path = args.get(i + 1).cloned();
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_string());
        }
    }
    if path.is_none() {
        path = std::env::var("SHARD_NODE_CONFIG").ok();
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read config file {path}: {e}"))?;
    let mut from_file = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{path}:{}: expected 'name value', got '{line}'", n + 1))?;
        from_file.push(format!("--{}", name.trim()));
        from_file.push(value.trim().trim_matches('"').to_string());
    }
    // The subcommand must stay first: insert the file's flags right after it.
    let mut out = Vec::with_capacity(args.len() + from_file.len());
    let mut inserted = false;
    for a in args {
        out.push(a.clone());
        if !inserted && (a == "server" || a == "proxy") {
            out.append(&mut from_file);
            inserted = true;
        }
    }
    Ok(out)
}
