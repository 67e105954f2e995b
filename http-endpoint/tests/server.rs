//! The server's contract over real sockets: routing to the handler, hyper's refusals of bad
//! requests, the limits, and shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use aadb_http::{client, serve, Limits, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Echoes what it saw: `METHOD path?query body`.
async fn echo(req: Request) -> Response {
    let query = req.query.map(|q| format!("?{q}")).unwrap_or_default();
    let body = String::from_utf8_lossy(&req.body);
    Response::text(200, format!("{} {}{query} {body}", req.method, req.path))
        .with_header("X-Seen", "yes")
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, limits, echo, async move {
        let _ = stopped.await;
    }));
    Server { addr, stop, task }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("no panic");
    }
}

/// Sends `request` raw, half-closes, and reads until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn status(resp: &str) -> &str {
    resp.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn the_handler_sees_method_path_query_and_body() {
    let srv = start(Limits::default()).await;
    let r = client::request(
        srv.addr,
        "PUT",
        "/data?x=1",
        &[],
        b"hello",
        Duration::from_secs(5),
    )
    .await
    .expect("request");
    assert_eq!((r.status, r.body.as_str()), (200, "PUT /data?x=1 hello"));
    let resp = raw(
        srv.addr,
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "200", "{resp}");
    assert!(resp.contains("x-seen: yes\r\n"), "{resp}");
    assert!(resp.contains("content-type: text/plain"), "{resp}");
    srv.stop().await;
}

#[tokio::test]
async fn head_gets_the_headers_without_the_body() {
    let srv = start(Limits::default()).await;
    let resp = raw(srv.addr, b"HEAD /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&resp), "200", "{resp}");
    assert!(resp.contains("content-length: 8\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\n"), "no body expected: {resp:?}");
    srv.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_keeps_serving() {
    let srv = start(Limits::default()).await;
    for garbage in [
        &b"\x00\xff\xfe garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /x HTTP/2.0\r\n\r\n",
        b"GET /x HTTP/1.1 extra\r\n\r\n",
    ] {
        let resp = raw(srv.addr, garbage).await;
        assert!(
            matches!(status(&resp), "400" | "505"),
            "{garbage:?} -> {resp}"
        );
    }
    // Closed without a request, or in the middle of one: closed without an answer.
    assert_eq!(raw(srv.addr, b"").await, "");
    let r = client::get(srv.addr, "/still", Duration::from_secs(5))
        .await
        .expect("served");
    assert_eq!(r.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn oversized_heads_and_bodies_are_refused() {
    let limits = Limits {
        max_body_bytes: 1000,
        ..Limits::default()
    };
    let srv = start(limits).await;
    let mut req = b"GET /x HTTP/1.1\r\n".to_vec();
    while req.len() <= 64 * 1024 {
        req.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    req.extend_from_slice(b"\r\n");
    let resp = raw(srv.addr, &req).await;
    assert_eq!(status(&resp), "431", "{resp}");
    let r = client::request(
        srv.addr,
        "PUT",
        "/x",
        &[],
        &[b'a'; 2000],
        Duration::from_secs(5),
    )
    .await
    .expect("answered");
    assert_eq!(r.status, 413, "{r:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_slow_client_is_dropped_without_holding_up_the_others() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = start(limits).await;
    let mut slow = TcpStream::connect(srv.addr).await.expect("connect");
    slow.write_all(b"GET /hea").await.expect("write");
    let r = client::get(srv.addr, "/other", Duration::from_secs(5))
        .await
        .expect("served meanwhile");
    assert_eq!(r.status, 200);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut out))
        .await
        .expect("the server gives up on the slow client")
        .ok();
    srv.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_get_503_while_the_others_are_served() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let srv = start(limits).await;
    let addr = srv.addr;
    // Two clients that connect and send nothing hold both slots (until the header timeout).
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let r = client::get(addr, "/x", Duration::from_secs(5))
        .await
        .expect("answered");
    assert_eq!((r.status, r.body.as_str()), (503, "too many connections\n"));
    drop(silent);
    // Their slots come back once the server sees them close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = client::get(addr, "/x", Duration::from_secs(5))
            .await
            .expect("answered");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slots never came back"
        );
        tokio::task::yield_now().await;
    }
    srv.stop().await;
}
