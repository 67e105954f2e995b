//! A fault-injecting TCP proxy for replication and failover tests.
//!
//! [`FaultProxy`] listens on `127.0.0.1:0` (never any other interface) and forwards every accepted
//! connection to a target address. While it runs, tests can inject faults between the two ends:
//!
//! * [`FaultProxy::partition`]: a two-way partition. Every open proxied connection is cut (both
//!   sockets are closed with a TCP reset) and new connections are accepted and reset immediately,
//!   without ever reaching the target, until [`FaultProxy::heal`].
//! * [`FaultProxy::partition_one_way`]: bytes travelling in one [`Direction`] are silently
//!   discarded while the connections stay open. Bytes in flight inside the proxy when the cut
//!   starts are discarded too, and an end-of-stream in the cut direction is held back until the
//!   direction heals. Cutting both directions this way gives a silent black hole.
//! * [`FaultProxy::drop_probability`]: dropping arbitrary chunks would silently corrupt a TCP byte
//!   stream, which real networks never do. "Loss" is therefore modelled as connection resets:
//!   before each chunk is forwarded, with probability `p` the proxy forwards only a random prefix
//!   of that chunk (possibly empty) and then resets both sides of the connection. A peer thus
//!   sees its stream end at an arbitrary byte, as after a crash or a lost link.
//! * [`FaultProxy::delay`]: every chunk is held for the given duration, measured from the moment
//!   the proxy read it, before it is forwarded. Order is kept and chunks are delayed in parallel
//!   (throughput is bounded by the per-direction buffer, not by one delay per chunk). A changed
//!   delay applies to chunks already held.
//! * [`FaultProxy::heal`]: clears every fault. Held chunks are re-evaluated at once, cut
//!   directions carry bytes again, and new connections are forwarded normally. Connections closed
//!   by a partition or a reset stay closed.
//!
//! Buffers are bounded: each direction of a connection holds at most [`QUEUE_CHUNKS`] chunks of at
//! most [`CHUNK_SIZE`] bytes; beyond that the proxy stops reading and TCP back-pressure applies.
//! No input from either peer can make the proxy panic; I/O errors end the affected connection.
//!
//! [`BlockingFaultProxy`] wraps the same proxy in its own single-threaded tokio runtime on a
//! dedicated thread, for tests that are not async.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Largest chunk read from a socket in one go.
pub const CHUNK_SIZE: usize = 16 * 1024;
/// Chunks a single direction of a connection may hold (read but not yet forwarded).
pub const QUEUE_CHUNKS: usize = 16;
/// How long the proxy waits for the target to accept a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Direction of travel through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the connecting client to the target.
    ClientToServer,
    /// From the target back to the connecting client.
    ServerToClient,
}

/// The fault configuration every connection observes.
#[derive(Debug, Clone, Copy)]
struct Faults {
    target: SocketAddr,
    partitioned: bool,
    cut_client_to_server: bool,
    cut_server_to_client: bool,
    delay: Duration,
    reset_probability: f64,
}

impl Faults {
    fn healthy(target: SocketAddr) -> Self {
        Faults {
            target,
            partitioned: false,
            cut_client_to_server: false,
            cut_server_to_client: false,
            delay: Duration::ZERO,
            reset_probability: 0.0,
        }
    }

    fn is_cut(&self, dir: Direction) -> bool {
        match dir {
            Direction::ClientToServer => self.cut_client_to_server,
            Direction::ServerToClient => self.cut_server_to_client,
        }
    }
}

/// Counters shared between the handle and the proxy tasks.
#[derive(Debug, Default)]
struct Shared {
    open: AtomicUsize,
    dropped_bytes: AtomicU64,
    next_conn: AtomicU64,
}

/// Counts one open proxied connection for as long as it lives.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Small, fast pseudo-random generator (SplitMix64); fault decisions need no more.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p` (`p` already clamped to `[0, 1]`).
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits mapped onto [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// Uniform-ish value in `[0, n)`; `0` when `n == 0`.
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
}

/// Why a proxied connection ended.
#[derive(Debug)]
enum End {
    /// Both directions reached end-of-stream and were shut down cleanly.
    Finished,
    /// A two-way partition started, or the proxy shut down.
    CutOff,
    /// A reset injected by [`FaultProxy::drop_probability`].
    InjectedReset,
    /// A socket error on either side.
    Io(io::Error),
}

/// A chunk read from one side, waiting to be written to the other.
struct Chunk {
    read_at: Instant,
    data: Bytes,
}

/// A fault-injecting TCP proxy; see the [module documentation](self) for the fault model.
///
/// Dropping the handle (or calling [`FaultProxy::shutdown`]) stops accepting and closes every
/// proxied connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and starts forwarding connections to `target`.
    ///
    /// Must run inside a tokio runtime; otherwise an error is returned.
    pub async fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("fault proxy needs a tokio runtime: {e}")))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (faults, rx) = watch::channel(Faults::healthy(target));
        let shared = Arc::new(Shared::default());
        let task = handle.spawn(accept_loop(listener, rx, Arc::clone(&shared)));
        tracing::debug!(%addr, %target, "fault proxy started");
        Ok(FaultProxy {
            addr,
            faults,
            shared,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes where new connections are forwarded; open connections keep their target.
    pub fn set_target(&self, target: SocketAddr) {
        self.faults.send_modify(|f| f.target = target);
    }

    /// Two-way partition: cuts every open connection and resets new ones until [`heal`](Self::heal).
    pub fn partition(&self) {
        self.faults.send_modify(|f| f.partitioned = true);
    }

    /// Silently discards bytes travelling in `dir`; connections stay open. Calls accumulate, so
    /// cutting both directions gives a silent black hole.
    pub fn partition_one_way(&self, dir: Direction) {
        self.faults.send_modify(|f| match dir {
            Direction::ClientToServer => f.cut_client_to_server = true,
            Direction::ServerToClient => f.cut_server_to_client = true,
        });
    }

    /// Before each forwarded chunk, with probability `p` the connection is reset after a random
    /// prefix of that chunk. `p` is clamped to `[0, 1]`; NaN counts as `0`.
    pub fn drop_probability(&self, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.faults.send_modify(|f| f.reset_probability = p);
    }

    /// Holds every chunk for `d` before forwarding it (order kept). Applies to chunks already held.
    pub fn delay(&self, d: Duration) {
        self.faults.send_modify(|f| f.delay = d);
    }

    /// Clears every fault, for new connections and for those still open. The target is kept.
    pub fn heal(&self) {
        self.faults.send_modify(|f| *f = Faults::healthy(f.target));
    }

    /// Proxied connections currently open (connected to both the client and the target).
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Total bytes discarded so far by [`partition_one_way`](Self::partition_one_way).
    pub fn dropped_bytes(&self) -> u64 {
        self.shared.dropped_bytes.load(Ordering::SeqCst)
    }

    /// Stops the proxy: the listener closes and every proxied connection is reset. The sockets are
    /// released by the runtime shortly after this returns.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping `faults` also wakes every connection, which then closes; aborting the accept
        // task drops the listener and, through its `JoinSet`, any connection task left.
        self.task.abort();
    }
}

/// Resolves when a two-way partition is in force or the proxy handle is gone.
async fn until_cut_off(mut rx: watch::Receiver<Faults>) {
    loop {
        if rx.borrow_and_update().partitioned {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Closes `stream` with a TCP reset instead of an orderly FIN once it is dropped.
fn reset_on_drop(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn accept_loop(listener: TcpListener, mut rx: watch::Receiver<Faults>, shared: Arc<Shared>) {
    let seeds = RandomState::new();
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (client, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "fault proxy accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if rx.borrow().partitioned {
            tracing::debug!(%peer, "fault proxy partitioned: resetting new connection");
            reset_on_drop(&client);
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let seed = seeds.hash_one(id);
        conns.spawn(serve(client, rx.clone(), Arc::clone(&shared), seed));
    }
    tracing::debug!("fault proxy stopped");
}

async fn serve(
    mut client: TcpStream,
    faults: watch::Receiver<Faults>,
    shared: Arc<Shared>,
    seed: u64,
) {
    let target = faults.borrow().target;
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target));
    let mut server = tokio::select! {
        r = connect => match r {
            Ok(Ok(server)) => server,
            Ok(Err(e)) => {
                tracing::debug!(%target, error = %e, "fault proxy could not reach target");
                reset_on_drop(&client);
                return;
            }
            Err(_) => {
                tracing::debug!(%target, "fault proxy timed out reaching target");
                reset_on_drop(&client);
                return;
            }
        },
        () = until_cut_off(faults.clone()) => {
            reset_on_drop(&client);
            return;
        }
    };
    let _open = OpenGuard::new(&shared);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let end = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let (c2s_tx, c2s_rx) = mpsc::channel(QUEUE_CHUNKS);
        let (s2c_tx, s2c_rx) = mpsc::channel(QUEUE_CHUNKS);
        let dir = Direction::ClientToServer;
        let c2s_in = pump_in(client_read, c2s_tx, faults.clone(), dir, &shared);
        let c2s_out = pump_out(
            server_write,
            c2s_rx,
            faults.clone(),
            dir,
            &shared,
            Rng(seed),
        );
        let dir = Direction::ServerToClient;
        let s2c_in = pump_in(server_read, s2c_tx, faults.clone(), dir, &shared);
        let s2c_out = pump_out(
            client_write,
            s2c_rx,
            faults.clone(),
            dir,
            &shared,
            Rng(!seed),
        );
        tokio::select! {
            r = async { tokio::try_join!(c2s_in, c2s_out, s2c_in, s2c_out) } => match r {
                Ok(_) => End::Finished,
                Err(end) => end,
            },
            () = until_cut_off(faults.clone()) => End::CutOff,
        }
    };
    match end {
        End::Finished => {}
        End::Io(ref e) => {
            tracing::debug!(%target, error = %e, "fault proxy connection failed");
            reset_on_drop(&client);
            reset_on_drop(&server);
        }
        End::CutOff | End::InjectedReset => {
            tracing::debug!(%target, reason = ?end, "fault proxy cutting connection");
            reset_on_drop(&client);
            reset_on_drop(&server);
        }
    }
}

/// Reads chunks from one side and queues them for the other, discarding them while `dir` is cut.
async fn pump_in(
    mut from: ReadHalf<'_>,
    queue: mpsc::Sender<Chunk>,
    faults: watch::Receiver<Faults>,
    dir: Direction,
    shared: &Shared,
) -> Result<(), End> {
    loop {
        let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
        let n = from.read_buf(&mut buf).await.map_err(End::Io)?;
        if n == 0 {
            // End-of-stream: dropping `queue` tells the writer to finish.
            return Ok(());
        }
        if faults.borrow().is_cut(dir) {
            shared.dropped_bytes.fetch_add(n as u64, Ordering::SeqCst);
            continue;
        }
        let chunk = Chunk {
            read_at: Instant::now(),
            data: buf.freeze(),
        };
        if queue.send(chunk).await.is_err() {
            // The writer is gone, which only happens when the connection is ending anyway.
            return Err(End::CutOff);
        }
    }
}

/// Writes queued chunks to one side, applying delay, one-way cuts and injected resets.
async fn pump_out(
    mut to: WriteHalf<'_>,
    mut queue: mpsc::Receiver<Chunk>,
    mut faults: watch::Receiver<Faults>,
    dir: Direction,
    shared: &Shared,
    mut rng: Rng,
) -> Result<(), End> {
    while let Some(chunk) = queue.recv().await {
        hold(&chunk, &mut faults).await?;
        let now = *faults.borrow();
        if now.is_cut(dir) {
            shared
                .dropped_bytes
                .fetch_add(chunk.data.len() as u64, Ordering::SeqCst);
            continue;
        }
        if rng.chance(now.reset_probability) {
            let prefix = rng.below(chunk.data.len());
            to.write_all(&chunk.data[..prefix]).await.map_err(End::Io)?;
            return Err(End::InjectedReset);
        }
        to.write_all(&chunk.data).await.map_err(End::Io)?;
    }
    // The source reached end-of-stream. A cut direction loses the FIN as well, so hold it back
    // until the direction heals.
    loop {
        if !faults.borrow_and_update().is_cut(dir) {
            break;
        }
        if faults.changed().await.is_err() {
            return Err(End::CutOff);
        }
    }
    to.shutdown().await.map_err(End::Io)
}

/// Waits until `chunk` has been held for the current delay, re-checking when faults change.
async fn hold(chunk: &Chunk, faults: &mut watch::Receiver<Faults>) -> Result<(), End> {
    loop {
        let delay = faults.borrow_and_update().delay;
        match chunk.read_at.checked_add(delay) {
            Some(due) if Instant::now() >= due => return Ok(()),
            Some(due) => {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => return Ok(()),
                    changed = faults.changed() => changed.map_err(|_| End::CutOff)?,
                }
            }
            // A delay too large to represent: hold until the delay changes.
            None => faults.changed().await.map_err(|_| End::CutOff)?,
        }
    }
}

/// [`FaultProxy`] for tests that are not async: the proxy runs on its own single-threaded tokio
/// runtime on a dedicated thread, and every method is a plain synchronous call.
///
/// Dropping it (or calling [`BlockingFaultProxy::shutdown`]) stops the runtime and waits for its
/// thread, so the listener and every proxied connection are closed when that returns.
#[derive(Debug)]
pub struct BlockingFaultProxy {
    proxy: FaultProxy,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlockingFaultProxy {
    /// Starts a runtime thread and a [`FaultProxy`] on it forwarding to `target`.
    pub fn start(target: SocketAddr) -> io::Result<BlockingFaultProxy> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<FaultProxy>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = FaultProxy::start(target).await;
                    let ok = started.is_ok();
                    if ready_tx.send(started).is_ok() && ok {
                        // Run the proxy's tasks until asked to stop (or the handle is dropped).
                        let _ = stop_rx.await;
                    }
                });
                // Dropping the runtime here cancels the accept loop and every connection.
            })?;
        let started = ready_rx
            .recv()
            .map_err(|_| io::Error::other("fault proxy runtime thread exited during start"));
        match started {
            Ok(Ok(proxy)) => Ok(BlockingFaultProxy {
                proxy,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) | Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// See [`FaultProxy::addr`].
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// See [`FaultProxy::set_target`].
    pub fn set_target(&self, target: SocketAddr) {
        self.proxy.set_target(target);
    }

    /// See [`FaultProxy::partition`].
    pub fn partition(&self) {
        self.proxy.partition();
    }

    /// See [`FaultProxy::partition_one_way`].
    pub fn partition_one_way(&self, dir: Direction) {
        self.proxy.partition_one_way(dir);
    }

    /// See [`FaultProxy::drop_probability`].
    pub fn drop_probability(&self, p: f64) {
        self.proxy.drop_probability(p);
    }

    /// See [`FaultProxy::delay`].
    pub fn delay(&self, d: Duration) {
        self.proxy.delay(d);
    }

    /// See [`FaultProxy::heal`].
    pub fn heal(&self) {
        self.proxy.heal();
    }

    /// See [`FaultProxy::connections`].
    pub fn connections(&self) -> usize {
        self.proxy.connections()
    }

    /// See [`FaultProxy::dropped_bytes`].
    pub fn dropped_bytes(&self) -> u64 {
        self.proxy.dropped_bytes()
    }

    /// Stops the proxy and waits until its runtime thread has exited, so the listener and every
    /// proxied connection are closed when this returns.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for BlockingFaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the runtime thread has already been reported; nothing to add here.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::io::{Read, Write};
    use std::time::Instant as StdInstant;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// Echo server; returns its address and a counter of accepted connections.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = sock.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, accepted)
    }

    /// Server that greets every connection with `tag`, then echoes.
    async fn tagged_server(tag: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if sock.write_all(tag).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = sock.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn within<F: Future>(what: &str, fut: F) -> F::Output {
        match tokio::time::timeout(DEADLINE, fut).await {
            Ok(v) => v,
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        within("data", stream.read_exact(&mut buf)).await.unwrap();
        buf
    }

    async fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
        stream.write_all(msg).await.unwrap();
        assert_eq!(read_n(stream, msg.len()).await, msg);
    }

    /// Reads until the peer closes (EOF or reset); returns the bytes received before that.
    async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        within("the connection to close", async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        got
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        within(what, async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn forwards_both_ways_and_counts_connections() {
        let (target, accepted) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        assert!(proxy.addr().ip().is_loopback());
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut a, b"hello").await;
        round_trip(&mut b, b"world").await;
        // Larger than one chunk and the queue together, to exercise back-pressure.
        let big: Vec<u8> = (0..(CHUNK_SIZE * QUEUE_CHUNKS * 3))
            .map(|i| (i % 251) as u8)
            .collect();
        let (mut r, mut w) = a.split();
        let (_, echoed) = tokio::join!(async { w.write_all(&big).await.unwrap() }, async {
            let mut buf = vec![0u8; big.len()];
            within("big echo", r.read_exact(&mut buf)).await.unwrap();
            buf
        });
        assert_eq!(echoed, big);
        assert_eq!(proxy.connections(), 2);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop(a);
        wait_for("one connection", || proxy.connections() == 1).await;
        drop(b);
        wait_for("no connections", || proxy.connections() == 0).await;
    }

    #[tokio::test]
    async fn half_close_is_forwarded() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"last words").await.unwrap();
        c.shutdown().await.unwrap();
        // The echo server sees our FIN, finishes echoing and closes; so does the proxy.
        assert_eq!(read_until_closed(&mut c).await, b"last words");
        wait_for("no connections", || proxy.connections() == 0).await;
    }

    #[tokio::test]
    async fn two_way_partition_cuts_and_refuses_until_heal() {
        let (target, accepted) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut c, b"before").await;
        assert_eq!(proxy.connections(), 1);

        proxy.partition();
        assert!(read_until_closed(&mut c).await.is_empty());
        wait_for("no connections", || proxy.connections() == 0).await;

        // New connections are closed at once and never reach the target.
        for _ in 0..3 {
            if let Ok(mut refused) = TcpStream::connect(proxy.addr()).await {
                let _ = refused.write_all(b"anyone?").await;
                assert!(read_until_closed(&mut refused).await.is_empty());
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(proxy.connections(), 0);

        proxy.heal();
        let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut d, b"after").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(proxy.connections(), 1);
    }

    /// Proxy in front of a bare listener so the test holds both ends of one connection.
    async fn connected_pair() -> (FaultProxy, TcpStream, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let proxy = FaultProxy::start(listener.local_addr().unwrap())
            .await
            .unwrap();
        let client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (server, _) = within("accept", listener.accept()).await.unwrap();
        wait_for("the proxied connection", || proxy.connections() == 1).await;
        (proxy, client, server)
    }

    #[tokio::test]
    async fn one_way_client_to_server_drops_only_that_direction() {
        let (proxy, mut client, mut server) = connected_pair().await;
        proxy.partition_one_way(Direction::ClientToServer);

        client.write_all(b"lost").await.unwrap();
        wait_for("bytes to be dropped", || proxy.dropped_bytes() >= 4).await;
        // The other direction still flows, and the connection stays open.
        server.write_all(b"pong").await.unwrap();
        assert_eq!(read_n(&mut client, 4).await, b"pong");
        assert_eq!(proxy.connections(), 1);
        assert_eq!(proxy.dropped_bytes(), 4);

        proxy.heal();
        client.write_all(b"kept").await.unwrap();
        // Exactly the bytes sent after the heal arrive: the dropped ones never do.
        assert_eq!(read_n(&mut server, 4).await, b"kept");
        server.write_all(b"ack").await.unwrap();
        assert_eq!(read_n(&mut client, 3).await, b"ack");
        assert_eq!(proxy.connections(), 1);
    }

    #[tokio::test]
    async fn one_way_server_to_client_drops_only_that_direction() {
        let (proxy, mut client, mut server) = connected_pair().await;
        proxy.partition_one_way(Direction::ServerToClient);

        server.write_all(b"lost").await.unwrap();
        wait_for("bytes to be dropped", || proxy.dropped_bytes() >= 4).await;
        client.write_all(b"ping").await.unwrap();
        assert_eq!(read_n(&mut server, 4).await, b"ping");
        assert_eq!(proxy.connections(), 1);

        proxy.heal();
        server.write_all(b"kept").await.unwrap();
        assert_eq!(read_n(&mut client, 4).await, b"kept");
        assert_eq!(proxy.dropped_bytes(), 4);
    }

    #[tokio::test]
    async fn one_way_cut_holds_back_end_of_stream_until_heal() {
        let (proxy, mut client, mut server) = connected_pair().await;
        proxy.partition_one_way(Direction::ServerToClient);
        server.write_all(b"lost").await.unwrap();
        wait_for("bytes to be dropped", || proxy.dropped_bytes() >= 4).await;
        server.shutdown().await.unwrap();
        // Client-to-server still works while the FIN is held back.
        client.write_all(b"still").await.unwrap();
        assert_eq!(read_n(&mut server, 5).await, b"still");
        let mut probe = [0u8; 1];
        let pending = client.try_read(&mut probe);
        assert!(
            matches!(&pending, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "client saw {pending:?} while the direction was cut"
        );

        proxy.heal();
        assert!(read_until_closed(&mut client).await.is_empty());
    }

    #[tokio::test]
    async fn delay_holds_every_chunk_and_keeps_order() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut c, b"warm").await;

        let d = Duration::from_millis(200);
        proxy.delay(d);
        let started = StdInstant::now();
        round_trip(&mut c, b"slow").await;
        let elapsed = started.elapsed();
        // Held once on the way in and once on the way back.
        assert!(elapsed >= 2 * d, "round trip took only {elapsed:?}");
        assert!(elapsed < 2 * d + DEADLINE, "round trip took {elapsed:?}");

        // Many separate writes come back complete and in order.
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let msg = [b'<', i, b'>'];
            c.write_all(&msg).await.unwrap();
            expected.extend_from_slice(&msg);
        }
        assert_eq!(read_n(&mut c, expected.len()).await, expected);
        assert_eq!(proxy.connections(), 1);
    }

    #[tokio::test]
    async fn heal_releases_held_chunks() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.delay(Duration::from_secs(3600));
        c.write_all(b"held").await.unwrap();
        proxy.heal();
        // Would take two hours with the delay still in force.
        assert_eq!(read_n(&mut c, 4).await, b"held");

        // A delay too large for the clock does not panic and is released by heal too.
        proxy.delay(Duration::MAX);
        c.write_all(b"again").await.unwrap();
        proxy.heal();
        assert_eq!(read_n(&mut c, 5).await, b"again");
    }

    #[tokio::test]
    async fn drop_probability_resets_connections() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.drop_probability(1.0);
        for _ in 0..5 {
            let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
            let msg = [7u8; 64];
            let _ = c.write_all(&msg).await;
            // Reset at a random point before the first chunk completes: never the whole echo.
            let got = read_until_closed(&mut c).await;
            assert!(got.len() < msg.len(), "got {} bytes", got.len());
            assert!(got.iter().all(|&b| b == 7));
        }
        wait_for("no connections", || proxy.connections() == 0).await;

        // Out-of-range values are clamped rather than rejected.
        proxy.drop_probability(f64::NAN);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut c, b"nan means never").await;
        proxy.drop_probability(-3.0);
        round_trip(&mut c, b"negative too").await;

        proxy.drop_probability(1.0);
        proxy.heal();
        round_trip(&mut c, b"healed").await;
    }

    #[tokio::test]
    async fn set_target_redirects_new_connections_only() {
        let a = tagged_server(b"A").await;
        let b = tagged_server(b"B").await;
        let proxy = FaultProxy::start(a).await.unwrap();
        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_n(&mut first, 1).await, b"A");

        proxy.set_target(b);
        let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_n(&mut second, 1).await, b"B");
        round_trip(&mut first, b"still on A").await;

        // heal keeps the current target.
        proxy.heal();
        let mut third = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_n(&mut third, 1).await, b"B");
    }

    #[tokio::test]
    async fn unreachable_target_closes_the_client() {
        // Bind and drop to get a port that is (almost certainly) closed.
        let closed = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            l.local_addr().unwrap()
        };
        let proxy = FaultProxy::start(closed).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(read_until_closed(&mut c).await.is_empty());
        assert_eq!(proxy.connections(), 0);
    }

    #[tokio::test]
    async fn shutdown_closes_open_connections() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let addr = proxy.addr();
        let mut c = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut c, b"up").await;
        proxy.shutdown();
        assert!(read_until_closed(&mut c).await.is_empty());
        // The listener is gone: connecting is refused, or a connection still queued is closed.
        if let Ok(mut late) = TcpStream::connect(addr).await {
            assert!(read_until_closed(&mut late).await.is_empty());
        }
    }

    /// Blocking echo server on a plain thread.
    fn std_echo_server() -> SocketAddr {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(mut sock) = sock else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match sock.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if sock.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn std_connect(addr: SocketAddr) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    }

    fn std_round_trip(s: &mut std::net::TcpStream, msg: &[u8]) {
        s.write_all(msg).unwrap();
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, msg);
    }

    /// True if the peer closed (EOF or reset) before the read timeout.
    fn std_closed(s: &mut std::net::TcpStream) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }

    fn std_wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = StdInstant::now() + DEADLINE;
        while !cond() {
            assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn blocking_wrapper_works_without_a_runtime() {
        let target = std_echo_server();
        let proxy = BlockingFaultProxy::start(target).unwrap();
        let addr = proxy.addr();
        assert!(addr.ip().is_loopback());
        let mut c = std_connect(addr);
        std_round_trip(&mut c, b"sync hello");
        assert_eq!(proxy.connections(), 1);

        proxy.partition();
        assert!(std_closed(&mut c));
        std_wait_for("no connections", || proxy.connections() == 0);

        proxy.heal();
        let mut d = std_connect(addr);
        std_round_trip(&mut d, b"healed");

        proxy.partition_one_way(Direction::ClientToServer);
        d.write_all(b"gone").unwrap();
        std_wait_for("bytes to be dropped", || proxy.dropped_bytes() >= 4);
        proxy.heal();
        std_round_trip(&mut d, b"back");

        let d_delay = Duration::from_millis(100);
        proxy.delay(d_delay);
        let started = StdInstant::now();
        std_round_trip(&mut d, b"slow");
        assert!(started.elapsed() >= 2 * d_delay);
        proxy.heal();

        proxy.drop_probability(1.0);
        let mut e = std_connect(addr);
        let _ = e.write_all(&[1u8; 32]);
        assert!(std_closed(&mut e));
        proxy.heal();

        proxy.set_target(target);
        assert_eq!(proxy.connections(), 1);
        proxy.shutdown();
        // The runtime thread has exited: the connection and the listener are closed.
        assert!(std_closed(&mut d));
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[tokio::test]
    async fn blocking_wrapper_can_be_dropped_inside_a_runtime() {
        let (target, _) = echo_server().await;
        let proxy = BlockingFaultProxy::start(target).unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut c, b"mixed").await;
        drop(proxy);
        assert!(read_until_closed(&mut c).await.is_empty());
    }

    #[test]
    fn rng_edges() {
        let mut rng = Rng(42);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
        assert_eq!(rng.below(0), 0);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
        }
        let hits = (0..10_000).filter(|_| rng.chance(0.5)).count();
        assert!((4_000..6_000).contains(&hits), "{hits} hits");
    }
}
