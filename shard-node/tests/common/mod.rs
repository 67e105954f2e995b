//! Harness shared by the shard-node integration tests.
//!
//! Contract:
//! - [`NodeBuilder`] starts the real `shard-node` binary (`server` role) on a free loopback
//!   port with a fresh data directory inside a temporary directory, and waits until it
//!   answers a RESP request (any reply, so `-NOAUTH` counts) or fails with the server log.
//! - [`ShardNode`] can be killed with SIGKILL ([`ShardNode::kill9`]), stopped with SIGTERM
//!   ([`ShardNode::terminate`]) and restarted on the same port and data directory.
//! - [`RedisServer`] starts Debian's `redis-server` with persistence off, as the reference
//!   implementation the tests compare byte-for-byte against.
//! - Every process writes stdout and stderr to a log file in its temporary directory. When a
//!   test panics, dropping the handle prints that log and keeps the temporary directory, so the
//!   data files of a failed run can be inspected; otherwise the process is killed and the
//!   directory removed.
//! - [`RawConn`] speaks raw bytes and reads exactly one RESP2/RESP3 frame at a time, for tests
//!   that assert the exact bytes on the wire.
//!
//! Nothing here sleeps to synchronise: waiting is polling with a deadline.
#![allow(dead_code)] // every test binary uses a different part of the harness

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly spawned server may take to answer its first request (recovery included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Read and write timeout of raw connections.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM-ed server may take to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Path of the shard-node binary cargo built for this test run.
pub fn shard_node_bin() -> &'static str {
    env!("CARGO_BIN_EXE_shard-node")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Polls `cond` every [`POLL_INTERVAL`] until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Whether an executable is on `PATH`.
pub fn have_command(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A Python virtual environment named `name` under the test target directory with
/// `requirements` (pinned `package==version` lines) installed from PyPI, made once and shared
/// by every test that asks for the same name (a lock file keeps two tests from building it at
/// once); returns its `python`.
pub fn python_env(name: &str, requirements: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join(name);
    let python = venv.join("bin").join("python");
    let ready = venv.join("ready");
    let lock = File::create(root.join(format!("{name}.lock"))).expect("create the venv lock");
    lock.lock().expect("lock the venv");
    if !ready.exists() {
        let _ = fs::remove_dir_all(&venv);
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv");
        assert!(
            made.success(),
            "python3 -m venv failed (Debian: apt install python3-venv)"
        );
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(requirements)
            .output()
            .expect("run pip");
        assert!(
            pip.status.success(),
            "pip install {requirements:?}: {}",
            String::from_utf8_lossy(&pip.stderr)
        );
        fs::write(&ready, b"").expect("mark the environment ready");
    }
    python
}

/// Panics with a message that says how to install a missing tool.
pub fn require_command(name: &str, package: &str) {
    assert!(
        have_command(name),
        "`{name}` is not installed; install the Debian package `{package}` (.ci/run does)"
    );
}

/// Builds the command line that runs `program args` with the open-files limit raised to `n`
/// (or to the hard limit if `n` is above it).
fn command_with_nofile(program: &str, nofile: Option<u64>) -> Command {
    match nofile {
        None => Command::new(program),
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "ulimit -n {n} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" \"$@\""
                ))
                .arg(program);
            c
        }
    }
}

/// A child process whose output goes to a log file; waits, kills and prints the log.
struct Proc {
    name: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log_path`. Returns the log offset at
    /// which this start's output begins.
    fn spawn(name: &'static str, mut cmd: Command, log_path: &Path) -> (Proc, u64) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("open process log");
        let _ = writeln!(log, "=== test harness: starting {cmd:?}");
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let out = log.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(log));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        (
            Proc {
                name,
                child: Some(child),
                log_path: log_path.to_path_buf(),
            },
            offset,
        )
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(status)` once the process has exited (and reaps it).
    fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(e) => panic!("waiting for {}: {e}", self.name),
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("child present");
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return status;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Ok(None) => {
                    self.kill9();
                    panic!(
                        "{} did not exit within {timeout:?} of SIGTERM (killed it)",
                        self.name
                    );
                }
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        }
    }

    fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    fn log_since(&self, offset: u64) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = io::Seek::seek(&mut f, io::SeekFrom::Start(offset));
            let _ = f.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    }

    /// Waits until the process answers on `port`. `Err` carries the reason if it exited first.
    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("{} exited during start-up: {status}", self.name));
            }
            if answers_resp(port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill9();
                return Err(format!(
                    "{} did not answer on port {port} within {READY_TIMEOUT:?}",
                    self.name
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn print_log_if_panicking(&self) {
        if std::thread::panicking() {
            const MAX: usize = 64 * 1024;
            let log = self.log();
            let tail = if log.len() > MAX {
                let mut cut = log.len() - MAX;
                while !log.is_char_boundary(cut) {
                    cut += 1;
                }
                &log[cut..]
            } else {
                &log[..]
            };
            eprintln!(
                "----- {} log ({}), last {} bytes -----\n{tail}\n----- end of {} log -----",
                self.name,
                self.log_path.display(),
                tail.len(),
                self.name
            );
        }
    }
}

/// Whether something on `port` answers a RESP `PING` with any simple string or error.
fn answers_resp(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    matches!(s.read(&mut first), Ok(1) if first[0] == b'+' || first[0] == b'-')
}

/// Keeps the temporary directory (and says where) if the test is panicking.
fn keep_tmp_if_panicking(tmp: &mut Option<tempfile::TempDir>, what: &str) {
    if std::thread::panicking() {
        if let Some(t) = tmp.take() {
            let path = t.keep();
            eprintln!("----- kept {what} directory {} -----", path.display());
        }
    }
}

/// Options of a shard-node process; [`NodeBuilder::start`] spawns it.
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    participant: String,
    shard: u32,
    appendfsync: Option<String>,
    requirepass: Option<String>,
    maxmemory: Option<u64>,
    maxclients: Option<u32>,
    open_files: Option<u64>,
    extra: Vec<String>,
    wrapper: Vec<String>,
    data_dir: Option<PathBuf>,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            participant: "test".to_owned(),
            shard: 0,
            appendfsync: None,
            requirepass: None,
            maxmemory: None,
            maxclients: None,
            open_files: None,
            extra: Vec::new(),
            wrapper: Vec::new(),
            data_dir: None,
        }
    }
}

impl NodeBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// `--participant NAME` (default `test`).
    pub fn participant(mut self, name: &str) -> Self {
        self.participant = name.to_owned();
        self
    }

    /// `--shard N` (default 0).
    pub fn shard(mut self, n: u32) -> Self {
        self.shard = n;
        self
    }

    /// The `--participant` name this builder starts the node with.
    pub fn participant_name(&self) -> &str {
        &self.participant
    }

    /// `--appendfsync always|everysec|no`.
    pub fn appendfsync(mut self, mode: &str) -> Self {
        self.appendfsync = Some(mode.to_owned());
        self
    }

    /// `--requirepass SECRET`.
    pub fn requirepass(mut self, secret: &str) -> Self {
        self.requirepass = Some(secret.to_owned());
        self
    }

    /// `--maxmemory BYTES`.
    pub fn maxmemory(mut self, bytes: u64) -> Self {
        self.maxmemory = Some(bytes);
        self
    }

    /// `--maxclients N`.
    pub fn maxclients(mut self, n: u32) -> Self {
        self.maxclients = Some(n);
        self
    }

    /// Raises the server's open-files limit (`ulimit -n`) before it starts.
    pub fn open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Runs the server through this command (`nsenter -t PID -m --`, say), which must exec it.
    pub fn wrapper(mut self, command: &[&str]) -> Self {
        self.wrapper = command.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Keeps the data in `dir` (which must exist) instead of a fresh temporary directory.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Any further command-line argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra.push(a.into());
        self
    }

    /// Spawns the server in a fresh temporary directory and waits until it answers.
    pub fn start(self) -> ShardNode {
        let tmp = tempfile::Builder::new()
            .prefix("shard-node-test-")
            .tempdir()
            .expect("create temporary directory");
        let data_dir = match &self.data_dir {
            Some(dir) => dir.clone(),
            None => {
                let dir = tmp.path().join("data");
                fs::create_dir_all(&dir).expect("create data directory");
                dir
            }
        };
        let log_path = tmp.path().join("shard-node.log");
        let mut node = ShardNode {
            builder: self,
            port: 0,
            data_dir,
            log_path,
            proc: None,
            tmp: Some(tmp),
        };
        // A port picked by `free_port` can be taken by someone else before the server binds
        // it; pick another one when that happens.
        let mut last_err = String::new();
        for _attempt in 0..5 {
            node.port = free_port();
            match node.try_start() {
                Ok(()) => return node,
                Err((e, log)) if log.contains("in use") || log.contains("AddrInUse") => {
                    last_err = e;
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
        panic!("{last_err} (five attempts, the port was always taken)");
    }
}

/// A running (or stopped) shard-node process with its data directory and log.
pub struct ShardNode {
    builder: NodeBuilder,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    proc: Option<Proc>,
    tmp: Option<tempfile::TempDir>,
}

impl ShardNode {
    /// Starts a node with default options.
    pub fn start() -> ShardNode {
        NodeBuilder::new().start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://` URL for the `redis` crate, with the password if one is set.
    pub fn url(&self) -> String {
        redis_url(self.port, self.builder.requirepass.as_deref())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the node printed so far, over all its starts.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(|p| p.pid())
    }

    /// The extra command-line arguments given with [`NodeBuilder::arg`].
    pub fn extra_args(&self) -> &[String] {
        &self.builder.extra
    }

    /// Replaces the extra command-line arguments; they apply from the next (re)start, so a
    /// stopped node can come back with another role (e.g. `--replicaof` a new primary).
    pub fn set_extra_args(&mut self, extra: Vec<String>) {
        self.builder.extra = extra;
    }

    pub fn args(&self) -> Vec<String> {
        let b = &self.builder;
        let mut a: Vec<String> = vec![
            "server".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--dir".into(),
            self.data_dir.display().to_string(),
            "--participant".into(),
            b.participant.clone(),
            "--shard".into(),
            b.shard.to_string(),
        ];
        if let Some(m) = &b.appendfsync {
            a.extend(["--appendfsync".into(), m.clone()]);
        }
        if let Some(p) = &b.requirepass {
            a.extend(["--requirepass".into(), p.clone()]);
        }
        if let Some(m) = b.maxmemory {
            a.extend(["--maxmemory".into(), m.to_string()]);
        }
        if let Some(n) = b.maxclients {
            a.extend(["--maxclients".into(), n.to_string()]);
        }
        a.extend(b.extra.iter().cloned());
        a
    }

    fn try_start(&mut self) -> Result<(), (String, String)> {
        assert!(self.proc.is_none(), "shard-node is already running");
        let mut cmd = match self.builder.wrapper.split_first() {
            None => command_with_nofile(shard_node_bin(), self.builder.open_files),
            Some((program, rest)) => {
                let mut c = command_with_nofile(program, self.builder.open_files);
                c.args(rest).arg(shard_node_bin());
                c
            }
        };
        cmd.args(self.args());
        // The flags are the whole configuration: environment variables of the outer shell
        // must not leak into the server under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SHARD_NODE_") {
                cmd.env_remove(key);
            }
        }
        let (mut proc, offset) = Proc::spawn("shard-node", cmd, &self.log_path);
        let res = proc.wait_ready(self.port);
        let since = proc.log_since(offset);
        match res {
            Ok(()) => {
                self.proc = Some(proc);
                Ok(())
            }
            Err(e) => {
                // The handle is dropped here; the caller panics and `Drop` of `self` prints
                // the whole log.
                Err((e, since))
            }
        }
    }

    /// Starts the node again on the same port and data directory. It must be stopped.
    pub fn restart(&mut self) {
        if let Err((e, _)) = self.try_start() {
            panic!("restart: {e}");
        }
    }

    /// Whether the process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// Panics with the exit status if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            if let Some(status) = p.exited() {
                self.proc = None;
                panic!("shard-node exited unexpectedly: {status}");
            }
        } else {
            panic!("shard-node is not running");
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let mut p = self.proc.take().expect("shard-node is not running");
        p.kill9();
    }

    /// SIGTERM, then wait (at most [`STOP_TIMEOUT`]) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut p = self.proc.take().expect("shard-node is not running");
        p.terminate(STOP_TIMEOUT)
    }
}

impl Drop for ShardNode {
    fn drop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
        if std::thread::panicking() {
            let p = Proc {
                name: "shard-node",
                child: None,
                log_path: self.log_path.clone(),
            };
            p.print_log_if_panicking();
            eprintln!("----- shard-node command line: {:?} -----", self.args());
        }
        keep_tmp_if_panicking(&mut self.tmp, "shard-node");
    }
}

/// Debian's `redis-server`, persistence off, on a free loopback port: the reference.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    proc: Option<Proc>,
    tmp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts `redis-server` with `extra` configuration arguments (e.g. `["--maxclients",
    /// "100"]`) and, if `open_files` is set, a raised open-files limit.
    pub fn start_with(extra: &[&str], open_files: Option<u64>) -> RedisServer {
        require_command("redis-server", "redis-server");
        let tmp = tempfile::Builder::new()
            .prefix("redis-ref-")
            .tempdir()
            .expect("create temporary directory");
        let log_path = tmp.path().join("redis-server.log");
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_owned());
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = command_with_nofile("redis-server", open_files);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--logfile", ""])
                .arg("--dir")
                .arg(tmp.path())
                .args(extra);
            let (mut proc, offset) = Proc::spawn("redis-server", cmd, &log_path);
            match proc.wait_ready(port) {
                Ok(()) => {
                    return RedisServer {
                        port,
                        password,
                        proc: Some(proc),
                        tmp: Some(tmp),
                    }
                }
                Err(e) => {
                    let log = proc.log_since(offset);
                    if !log.contains("in use") {
                        panic!("{e}\n{}", proc.log());
                    }
                    last_err = e;
                }
            }
        }
        panic!("{last_err} (five attempts, the port was always taken)");
    }

    /// Starts `redis-server` with default limits.
    pub fn start() -> RedisServer {
        Self::start_with(&[], None)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        redis_url(self.port, self.password.as_deref())
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The reference's log only matters if the reference itself died.
        if let Some(p) = self.proc.as_mut() {
            if p.exited().is_some() {
                p.print_log_if_panicking();
                keep_tmp_if_panicking(&mut self.tmp, "redis-server");
            }
            p.kill9();
        }
    }
}

/// `redis://[:password@]127.0.0.1:port/`.
pub fn redis_url(port: u16, password: Option<&str>) -> String {
    match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    }
}

/// An async multiplexed connection of the `redis` crate (no response timeout).
pub async fn connect_async(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("valid redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Encodes a command as a RESP multibulk.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Position just after the next CRLF at or after `from`.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p + 2)
}

fn parse_len(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(line)))
}

/// Length of the complete RESP2/RESP3 frame that starts at `from`, `Ok(None)` if more bytes
/// are needed, `Err` if the bytes are not RESP.
fn frame_end(buf: &[u8], from: usize) -> Result<Option<usize>, String> {
    let Some(&kind) = buf.get(from) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, from) else {
        return Ok(None);
    };
    let header = &buf[from + 1..end - 2];
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(end)),
        b'$' | b'!' | b'=' => {
            let n = parse_len(header)?;
            if n < 0 {
                return Ok(Some(end));
            }
            let total = end + n as usize + 2;
            Ok((buf.len() >= total).then_some(total))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_len(header)?;
            if n < 0 {
                return Ok(Some(end));
            }
            let elems = if matches!(kind, b'%' | b'|') {
                2 * n
            } else {
                n
            };
            let mut pos = end;
            for _ in 0..elems {
                match frame_end(buf, pos)? {
                    Some(p) => pos = p,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute map is followed by the reply it describes.
                return frame_end(buf, pos);
            }
            Ok(Some(pos))
        }
        other => Err(format!(
            "not a RESP frame: first byte {:?} in {:?}",
            other as char,
            String::from_utf8_lossy(&buf[from..buf.len().min(from + 80)])
        )),
    }
}

/// Why [`RawConn::read_frame`] returned no frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed the connection (EOF or reset); carries the bytes of an incomplete frame.
    Closed(Vec<u8>),
    /// No complete frame within the read timeout; carries the bytes received so far.
    Timeout(Vec<u8>),
    /// The bytes are not RESP.
    Garbage(String),
    /// Any other I/O error.
    Io(String),
}

/// A raw TCP connection that reads whole RESP frames.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `127.0.0.1:port` with [`IO_TIMEOUT`] for reads and writes.
    pub fn connect(port: u16) -> RawConn {
        Self::try_connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
    }

    /// Wraps an already connected stream (for example one accepted by a test's own listener,
    /// to play the other end of a protocol), with [`IO_TIMEOUT`] for reads and writes.
    pub fn from_stream(stream: TcpStream) -> io::Result<RawConn> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn try_connect(port: u16) -> io::Result<RawConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&mut self, t: Duration) {
        self.stream
            .set_read_timeout(Some(t))
            .expect("set read timeout");
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the sending half (the server reads EOF after the bytes already sent).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads exactly one frame.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, ReadEnd> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match frame_end(&self.buf, 0) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => {}
                Err(e) => return Err(ReadEnd::Garbage(e)),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadEnd::Closed(std::mem::take(&mut self.buf))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Err(ReadEnd::Timeout(self.buf.clone())),
                Err(e) if is_reset(&e) => {
                    return Err(ReadEnd::Closed(std::mem::take(&mut self.buf)))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadEnd::Io(e.to_string())),
            }
        }
    }

    /// Sends a command and returns its reply frame; panics on any failure.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode(args))
            .unwrap_or_else(|e| panic!("send {}: {e}", show_args(args)));
        self.read_frame()
            .unwrap_or_else(|e| panic!("reply to {}: {e:?}", show_args(args)))
    }

    /// Like [`RawConn::cmd`] with string arguments.
    pub fn cmd_str(&mut self, args: &[&str]) -> Vec<u8> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd(&a)
    }

    /// Reads until the peer closes the connection; returns the bytes read, or `Err` with the
    /// bytes read so far if it is still open when the read timeout expires.
    pub fn read_to_close(&mut self) -> Result<Vec<u8>, Vec<u8>> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Err(self.buf.clone()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(std::mem::take(&mut self.buf)),
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

fn show_args(args: &[&[u8]]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Printable form of wire bytes for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// PING on a fresh connection; returns the round-trip time or why it failed.
pub fn try_ping(port: u16) -> Result<Duration, String> {
    let started = Instant::now();
    let mut c = RawConn::try_connect(port).map_err(|e| format!("connect: {e}"))?;
    c.send(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| format!("send: {e}"))?;
    match c.read_frame() {
        Ok(f) if f == b"+PONG\r\n" => Ok(started.elapsed()),
        Ok(f) => Err(format!("PING answered {}", show(&f))),
        Err(e) => Err(format!("PING: {e:?}")),
    }
}

/// A fresh client gets `+PONG`.
pub fn assert_pong(port: u16) {
    if let Err(e) = try_ping(port) {
        panic!("fresh client on port {port}: {e}");
    }
}

/// Value of `field` in the `INFO` reply `info` (a bulk string frame or its text).
pub fn info_field(info: &[u8], field: &str) -> Option<String> {
    let text = String::from_utf8_lossy(info);
    text.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

/// A small deterministic pseudo-random generator (xorshift64*), so failures reproduce.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A running `shard-node proxy` with its log; killed on drop.
pub struct ProxyProcess {
    port: u16,
    log_path: PathBuf,
    proc: Option<Proc>,
    _tmp: tempfile::TempDir,
    args: Vec<String>,
}

impl ProxyProcess {
    /// Starts `shard-node proxy` on a free port with `--shard-map map` and `extra` flags, and
    /// waits until it answers PING.
    pub fn start(map: &str, extra: &[&str]) -> ProxyProcess {
        let tmp = tempfile::Builder::new()
            .prefix("shard-node-proxy-test-")
            .tempdir()
            .expect("create temporary directory");
        let log_path = tmp.path().join("proxy.log");
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut args: Vec<String> = vec![
                "proxy".into(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--shard-map".into(),
                map.into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut cmd = Command::new(shard_node_bin());
            cmd.args(&args);
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("SHARD_NODE_") && key != "SHARD_NODE_LOG" {
                    cmd.env_remove(key);
                }
            }
            let (mut proc, offset) = Proc::spawn("shard-node proxy", cmd, &log_path);
            match proc.wait_ready(port) {
                Ok(()) => {
                    return ProxyProcess {
                        port,
                        log_path,
                        proc: Some(proc),
                        _tmp: tmp,
                        args,
                    }
                }
                Err(e) => {
                    let log = proc.log_since(offset);
                    if !(log.contains("in use") || log.contains("AddrInUse")) {
                        panic!("{e}\n{log}");
                    }
                    last = e;
                }
            }
        }
        panic!("{last} (five attempts, the port was always taken)");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(|p| p.pid())
    }

    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- shard-node proxy {:?} -----\n{}",
                self.args,
                self.log()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_end_handles_resp2_and_resp3() {
        assert_eq!(frame_end(b"+OK\r\n", 0), Ok(Some(5)));
        assert_eq!(frame_end(b"+OK\r", 0), Ok(None));
        assert_eq!(frame_end(b"$3\r\nabc\r\n+X", 0), Ok(Some(9)));
        assert_eq!(frame_end(b"$3\r\nab", 0), Ok(None));
        assert_eq!(frame_end(b"$-1\r\n", 0), Ok(Some(5)));
        assert_eq!(frame_end(b"*2\r\n:1\r\n$1\r\na\r\n", 0), Ok(Some(15)));
        assert_eq!(frame_end(b"*2\r\n:1\r\n", 0), Ok(None));
        assert_eq!(frame_end(b"%1\r\n+a\r\n:1\r\n", 0), Ok(Some(12)));
        assert_eq!(frame_end(b"|1\r\n+a\r\n:1\r\n+OK\r\n", 0), Ok(Some(17)));
        assert_eq!(frame_end(b",1.5\r\n_\r\n", 0), Ok(Some(6)));
        assert!(frame_end(b"hello\r\n", 0).is_err());
    }
}
