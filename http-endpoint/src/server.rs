//! [`serve`]: the accept loop, the connection cap and the per-connection hyper state machine.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The bounds a server keeps to, whatever its clients do.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are answered `503` and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a response may take to be written to the client.
    pub write_timeout: Duration,
    /// The largest request head (request line and headers); hyper's minimum is 8 KiB.
    pub max_head_bytes: usize,
    /// The largest request body read.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_head_bytes: 8 * 1024,
            max_body_bytes: 1 << 20,
        }
    }
}

/// One request, read whole.
#[derive(Debug)]
pub struct Request {
    pub method: http::Method,
    /// The path of the target, without its query.
    pub path: String,
    /// The query of the target (after `?`), if any.
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// One response: a status, a content type, extra headers and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Response {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// A response of the given content type.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_hyper(self) -> hyper::Response<Full<Bytes>> {
        let mut builder = hyper::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, self.content_type);
        for (name, value) in &self.headers {
            builder = builder.header(*name, value.as_str());
        }
        builder.body(Full::new(self.body)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "http: the handler built an invalid response");
            let mut failed = hyper::Response::new(Full::new(Bytes::from_static(
                b"the response could not be built\n",
            )));
            *failed.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            failed
        })
    }
}

/// Serves `handler` on `listener` within `limits` until `shutdown` resolves (see the crate's
/// contract).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "http: accept failed");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    serve_connection(stream, limits, true, move |req| {
                        let handler = Arc::clone(&handler);
                        async move { answer(req, limits.max_body_bytes, &*handler).await }
                    })
                    .await;
                    drop(slot);
                });
            }
            Err(_) => {
                tracing::debug!("http: connection limit reached, answering 503");
                tokio::spawn(serve_connection(stream, limits, false, |_req| async {
                    Response::text(503, "too many connections\n").into_hyper()
                }));
            }
        }
    }
}

/// Runs one connection through hyper's HTTP/1 state machine with `service`.
async fn serve_connection<S, R>(stream: TcpStream, limits: Limits, keep_alive: bool, service: S)
where
    S: Fn(hyper::Request<Incoming>) -> R + Send + 'static,
    R: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let response = service(req);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8 * 1024))
        .keep_alive(keep_alive)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(stream, limits.write_timeout)),
            service,
        );
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "http: connection ended with an error");
    }
}

/// Reads the body (up to `max_body` bytes), runs the handler, and turns its answer into
/// hyper's response.
async fn answer<H, F>(
    req: hyper::Request<Incoming>,
    max_body: usize,
    handler: &H,
) -> hyper::Response<Full<Bytes>>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Response::text(413, "request body too large\n").into_hyper();
        }
        Err(_) => return Response::text(400, "the request body could not be read\n").into_hyper(),
    };
    let request = Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    handler(request).await.into_hyper()
}

/// A stream whose writes fail once one has been pending longer than a deadline, so a client
/// that stops reading cannot hold its connection (and its slot) for ever.
struct WriteDeadline {
    stream: TcpStream,
    limit: Duration,
    pending_since: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        WriteDeadline {
            stream,
            limit,
            pending_since: None,
        }
    }

    fn poll_deadline(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let limit = self.limit;
        let deadline = self
            .pending_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read its response in time",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.stream).poll_write(cx, buf) {
            std::task::Poll::Pending => match self.poll_deadline(cx) {
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                _ => std::task::Poll::Pending,
            },
            ready => {
                self.pending_since = None;
                ready
            }
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
