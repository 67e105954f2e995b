//! Connections from the proxy to shard-nodes.
//!
//! Contract:
//! - A [`Backend`] is a queue of requests for one shard, served by one task that keeps one
//!   pipelined connection to the node taking the shard's requests. Requests are written in
//!   the order they were queued and each reply goes back to its own requester.
//! - A *following* backend (the shared ones) reconnects after a failure and moves to the new
//!   primary when the routes change: it stops writing, lets the replies in flight arrive, then
//!   connects to the new node. Requests it has not written wait, in order, for the next
//!   connection, at most the backend timeout; then they get `CLUSTERDOWN`. A *dedicated*
//!   backend (a transaction's) never reconnects: after a failure every later request fails.
//! - A request written to a connection that then fails gets an error saying that its outcome
//!   is unknown; it is never written again.
//! - A request the node refuses (`MOVED`, `READONLY`: it was not run) is queued again ahead of
//!   everything after it, the connection stops writing and drains, the proxy finds where the
//!   shard is now ([`Core::follow_moved`], [`Core::refresh_shard`]) and the following
//!   connection sends it first; after [`MAX_REFUSALS`] the refusal is its reply. So a client's
//!   requests to a shard keep their order across a failover.
//! - On a shared connection, a request without a reply for three backend timeouts means the
//!   node is gone without closing the connection: it is treated as lost.
//! - Each connection first authenticates (when the proxy has a backend password), selects
//!   RESP3 when its clients speak it, and asks the node to accept commands whose keys span
//!   several slots of its shard (`AA.TOPOLOGY SHARDWIDE`); a refusal fails the queued requests with the node's
//!   reason. A node that sends bytes that are not RESP is disconnected, never trusted.
//! - The task ends when every handle is dropped and its queue is empty.

use super::reply::FrameScanner;
use super::Core;
use crate::transport::stream::Stream;
use crate::transport::tls::LinkTls;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// A reply frame, or an error sentence (without `-` and CRLF) to send in its place.
pub type Reply = Result<Bytes, String>;

struct Request {
    frame: Bytes,
    reply: oneshot::Sender<Reply>,
    queued: Instant,
    /// Times a node refused it (`MOVED`, `READONLY`) and it was sent again.
    refusals: u8,
}

/// Times one request is sent again after `MOVED`/`READONLY` before the refusal is its reply.
pub const MAX_REFUSALS: u8 = 3;

/// A handle on the request queue of one shard.
#[derive(Clone)]
pub struct Backend {
    queue: mpsc::UnboundedSender<Request>,
}

/// Time allowed to connect and authenticate.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes written in one batch.
const BATCH_BYTES: usize = 256 * 1024;

impl Backend {
    /// Starts the task serving shard `shard` (see the module contract for `follow`).
    pub fn spawn(core: Arc<Core>, shard: usize, resp3: bool, follow: bool) -> Backend {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(serve(core, shard, resp3, follow, requests));
        Backend { queue }
    }

    /// Queues `frame` (one encoded command); the receiver gets its reply.
    pub fn send(&self, frame: Bytes) -> oneshot::Receiver<Reply> {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            frame,
            reply,
            queued: Instant::now(),
            refusals: 0,
        };
        if let Err(mpsc::error::SendError(r)) = self.queue.send(request) {
            let _ = r.reply.send(Err(
                "ERR the proxy's connection to the shard is closed".into()
            ));
        }
        rx
    }

    /// True when the serving task has ended.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// Why a connection ended.
enum End {
    /// Every handle is gone and nothing is left to send.
    Idle,
    /// The routes moved the shard to another node.
    Moved,
    /// The node refused requests (`MOVED`, `READONLY`): they are back at the front of the
    /// queue, to be sent once the proxy has found where the shard is now.
    Refused(Refusal),
    /// The connection failed; the reason.
    Lost(String),
}

/// What a node's refusal says.
#[derive(Clone, Debug)]
enum Refusal {
    /// `MOVED <slot> <addr>`.
    Moved(u16, String),
    /// `READONLY …`: the node is a replica now.
    ReadOnly,
}

/// The refusal in `frame`, if it is one.
fn refusal(frame: &[u8]) -> Option<Refusal> {
    if frame.first() != Some(&b'-') {
        return None;
    }
    let text = super::reply::error_text(frame)?;
    if let Some(rest) = text.strip_prefix(b"MOVED ") {
        let rest = std::str::from_utf8(rest).ok()?;
        let (slot, addr) = rest.split_once(' ')?;
        return Some(Refusal::Moved(slot.parse().ok()?, addr.trim().to_string()));
    }
    text.starts_with(b"READONLY ").then_some(Refusal::ReadOnly)
}

async fn serve(
    core: Arc<Core>,
    shard: usize,
    resp3: bool,
    follow: bool,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut waiting: VecDeque<Request> = VecDeque::new();
    let mut changes = core.subscribe_changes();
    let mut failures: u32 = 0;
    // A dedicated backend stays on the node it first connected to.
    let mut pinned: Option<String> = None;
    loop {
        if waiting.is_empty() {
            match requests.recv().await {
                Some(r) => waiting.push_back(r),
                None => return,
            }
        }
        let routes = core.routes();
        let addr = match (&pinned, routes.primary(shard)) {
            (Some(a), _) => a.clone(),
            (None, Some(a)) => a.to_string(),
            (None, None) => {
                fail_all(
                    &mut waiting,
                    &mut requests,
                    &format!("CLUSTERDOWN shard {shard} is not in the topology"),
                );
                continue;
            }
        };
        if !follow {
            pinned = Some(addr.clone());
        }
        changes.borrow_and_update();
        let reason = match connect(
            &addr,
            core.settings.backend_auth.as_ref(),
            core.backend_tls(),
            resp3,
        )
        .await
        {
            Ok(stream) => {
                failures = 0;
                match session(
                    &core,
                    shard,
                    &addr,
                    stream,
                    &mut waiting,
                    &mut requests,
                    &mut changes,
                    follow,
                )
                .await
                {
                    End::Idle => return,
                    End::Moved => continue,
                    End::Refused(why) => {
                        core.metrics.retries.fetch_add(1, Ordering::Relaxed);
                        match why {
                            Refusal::Moved(slot, to) => core.follow_moved(slot, &to).await,
                            Refusal::ReadOnly => core.refresh_shard(shard).await,
                        }
                        continue;
                    }
                    End::Lost(reason) => reason,
                }
            }
            Err(reason) => reason,
        };
        core.metrics.backend_error(shard);
        tracing::debug!(shard, %addr, "backend connection failed: {reason}");
        if !follow {
            fail_all(
                &mut waiting,
                &mut requests,
                &format!(
                    "ERR the transaction's connection to shard {shard} ({addr}) failed: {reason}"
                ),
            );
            return;
        }
        // Find out where the shard went, then retry after a growing pause (or as soon as the
        // routes change), refusing requests that have waited too long meanwhile.
        {
            let core = core.clone();
            tokio::spawn(async move { core.refresh_shard(shard).await });
        }
        let pause = Duration::from_millis((10u64 << failures.min(5)).min(250));
        failures += 1;
        let deadline = tokio::time::Instant::now() + pause;
        let mut closed = false;
        loop {
            tokio::select! {
                r = requests.recv(), if !closed => match r {
                    Some(r) => waiting.push_back(r),
                    None if waiting.is_empty() => return,
                    None => closed = true,
                },
                _ = changes.changed() => break,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let timeout = core.settings.backend_timeout;
        while waiting
            .front()
            .is_some_and(|r| r.queued.elapsed() >= timeout)
        {
            if let Some(r) = waiting.pop_front() {
                let _ = r.reply.send(Err(format!(
                    "CLUSTERDOWN shard {shard} is unreachable ({addr}: {reason})"
                )));
            }
        }
    }
}

fn fail_all(
    waiting: &mut VecDeque<Request>,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    error: &str,
) {
    while let Ok(r) = requests.try_recv() {
        waiting.push_back(r);
    }
    for r in waiting.drain(..) {
        let _ = r.reply.send(Err(error.to_string()));
    }
}

/// Connects to `addr` and prepares the connection (AUTH, HELLO 3).
async fn connect(
    addr: &str,
    auth: Option<&super::BackendAuth>,
    tls: Option<LinkTls>,
    resp3: bool,
) -> Result<Stream, String> {
    let mut handshake: Vec<&[&[u8]]> = Vec::new();
    let auth = auth.map(|a| a.command());
    if let Some(a) = &auth {
        handshake.push(a);
    }
    let hello: [&[u8]; 2] = [b"HELLO", b"3"];
    if resp3 {
        handshake.push(&hello);
    }
    // Commands the proxy sends may span the slots of one shard.
    let shard_wide: [&[u8]; 2] = [b"AA.TOPOLOGY", b"SHARDWIDE"];
    handshake.push(&shard_wide);
    open(addr, &handshake, tls).await
}

/// Connects to the node at `addr` (over TLS with `tls`) and sends `handshake`, every reply of
/// which must be a success; within `CONNECT_TIMEOUT`.
pub async fn open(
    addr: &str,
    handshake: &[&[&[u8]]],
    tls: Option<LinkTls>,
) -> Result<Stream, String> {
    let work = async {
        let socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = socket.set_nodelay(true);
        let mut stream = match tls {
            Some(tls) => tls.connect_stream(addr, socket).await?,
            None => Stream::Plain(socket),
        };
        if !handshake.is_empty() {
            let commands: Vec<Vec<&[u8]>> = handshake.iter().map(|c| c.to_vec()).collect();
            let answers = exchange(&mut stream, &commands).await?;
            for a in answers {
                if let Some(e) = super::reply::error_text(&a) {
                    return Err(format!(
                        "the node refused the proxy's handshake: {}",
                        String::from_utf8_lossy(e)
                    ));
                }
            }
        }
        Ok(stream)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| "no answer within 1 s".to_string())?
}

/// Sends `commands` and reads one reply to each.
async fn exchange<A: AsRef<[u8]>, S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    commands: &[Vec<A>],
) -> Result<Vec<Bytes>, String> {
    let mut out = BytesMut::new();
    for c in commands {
        crate::resp::write_command(&mut out, c);
    }
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut scanner = FrameScanner::default();
    let mut replies = Vec::with_capacity(commands.len());
    while replies.len() < commands.len() {
        match scanner.next_frame(&buf).map_err(|e| e.to_string())? {
            Some(n) => replies.push(buf.split_to(n).freeze()),
            None => {
                if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("the node closed the connection".into());
                }
            }
        }
    }
    Ok(replies)
}

/// Sends `commands` to the node at `addr` on a connection of its own (authenticated with
/// `password`) and returns the replies; for the proxy's own questions (role, topology).
pub async fn ask(
    addr: &str,
    auth: Option<&super::BackendAuth>,
    tls: Option<LinkTls>,
    commands: &[&[&[u8]]],
) -> Result<Vec<Bytes>, String> {
    let commands: Vec<Vec<&[u8]>> = commands.iter().map(|c| c.to_vec()).collect();
    let work = async {
        let mut stream = connect(addr, auth, tls, false).await?;
        exchange(&mut stream, &commands).await
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| "no answer within 1 s".to_string())?
}

#[allow(clippy::too_many_arguments)]
async fn session(
    core: &Core,
    shard: usize,
    addr: &str,
    stream: Stream,
    waiting: &mut VecDeque<Request>,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    follow: bool,
) -> End {
    let (mut rd, mut wr) = stream.split();
    let in_flight: parking_lot::Mutex<VecDeque<Request>> = parking_lot::Mutex::new(VecDeque::new());
    // Requests the node refused, in order, and what it said.
    let refused: parking_lot::Mutex<(Vec<Request>, Option<Refusal>)> =
        parking_lot::Mutex::new((Vec::new(), None));
    let draining = AtomicBool::new(false);
    let mut writer = Box::pin(async {
        let mut buf = BytesMut::new();
        loop {
            if draining.load(Ordering::Relaxed) {
                return End::Moved;
            }
            if waiting.is_empty() {
                tokio::select! {
                    r = requests.recv() => match r {
                        Some(r) => waiting.push_back(r),
                        None => return End::Idle,
                    },
                    _ = changes.changed(), if follow => {
                        if core.routes().primary(shard) != Some(addr) {
                            return End::Moved;
                        }
                        continue;
                    }
                }
            }
            while let Ok(r) = requests.try_recv() {
                waiting.push_back(r);
            }
            buf.clear();
            {
                let mut flight = in_flight.lock();
                while buf.len() < BATCH_BYTES {
                    let Some(r) = waiting.pop_front() else { break };
                    // Sent even when its client is gone, as a server runs a command whose
                    // client disconnected after sending it.
                    buf.extend_from_slice(&r.frame);
                    flight.push_back(r);
                }
            }
            if buf.is_empty() {
                continue;
            }
            core.metrics
                .bytes_to_shards
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            if let Err(e) = wr.write_all(&buf).await {
                return End::Lost(e.to_string());
            }
        }
    });
    let timeout = core.settings.backend_timeout;
    let reader = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut scanner = FrameScanner::default();
        loop {
            if draining.load(Ordering::Relaxed) && in_flight.lock().is_empty() {
                return None;
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            // A shared connection whose oldest request has no reply within the timeout is
            // taken as lost (a node that vanished without closing its connections).
            let oldest = in_flight.lock().front().map(|r| r.queued);
            let deadline = match oldest {
                Some(at) if follow => {
                    tokio::time::Instant::from_std(at + timeout.max(Duration::from_secs(1)) * 3)
                }
                _ => tokio::time::Instant::now() + Duration::from_secs(3600),
            };
            let read = tokio::select! {
                r = rd.read_buf(&mut buf) => r,
                _ = tokio::time::sleep_until(deadline) => {
                    return Some("no reply in time from the node".to_string());
                }
            };
            match read {
                Ok(0) => return Some("the node closed the connection".to_string()),
                Ok(_) => {}
                Err(e) => return Some(e.to_string()),
            }
            loop {
                match scanner.next_frame(&buf) {
                    Ok(Some(n)) => {
                        let frame = buf.split_to(n).freeze();
                        let Some(mut request) = in_flight.lock().pop_front() else {
                            return Some("the node sent a reply nobody asked for".to_string());
                        };
                        let refused_now = if follow && request.refusals < MAX_REFUSALS {
                            refusal(&frame)
                        } else {
                            None
                        };
                        match refused_now {
                            Some(why) => {
                                // Not run: sent again, in order, once the shard is found.
                                request.refusals += 1;
                                let mut r = refused.lock();
                                r.0.push(request);
                                r.1.get_or_insert(why);
                                draining.store(true, Ordering::Relaxed);
                            }
                            None => {
                                let _ = request.reply.send(Ok(frame));
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Some(e.to_string()),
                }
            }
        }
    };
    tokio::pin!(reader);
    let end = tokio::select! {
        end = &mut writer => end,
        lost = &mut reader => match lost {
            Some(reason) => End::Lost(reason),
            // Drained after a refusal.
            None => End::Moved,
        },
    };
    let end = match end {
        End::Lost(reason) => End::Lost(reason),
        other => {
            // Stop writing; let the replies in flight arrive.
            draining.store(true, Ordering::Relaxed);
            if in_flight.lock().is_empty() {
                other
            } else {
                let drained = if follow {
                    tokio::time::timeout(timeout, &mut reader).await
                } else {
                    // A transaction's or a WAIT's replies may take long; they come or the
                    // connection fails.
                    Ok((&mut reader).await)
                };
                match drained {
                    Ok(None) => other,
                    Ok(Some(reason)) => End::Lost(reason),
                    Err(_) => End::Lost("replies did not arrive in time".into()),
                }
            }
        }
    };
    drop(writer);
    // Refused requests were not run: back to the front of the queue, in order.
    let (again, why) = std::mem::take(&mut *refused.lock());
    for r in again.into_iter().rev() {
        waiting.push_front(r);
    }
    if let End::Lost(reason) = &end {
        let lost = std::mem::take(&mut *in_flight.lock());
        if !lost.is_empty() {
            core.metrics
                .unknown_outcomes
                .fetch_add(lost.len() as u64, Ordering::Relaxed);
        }
        for r in lost {
            let _ = r.reply.send(Err(format!(
                "ERR the connection to shard {shard} ({addr}) failed before the reply ({reason}); the command may or may not have been applied"
            )));
        }
    }
    match (end, why) {
        (End::Lost(reason), _) => End::Lost(reason),
        (_, Some(why)) => End::Refused(why),
        (end, None) => end,
    }
}
