//! A small HTTP server that stands for a workload in end-to-end tests
//! (`aadb-e2e testapp --listen ADDR --data DIR`, image `aadb-e2e-testapp`).
//!
//! Contract, one request per connection:
//! - `GET /healthz` → 200; `GET /ready` → 200, or 503 after `POST /ready/off` (until
//!   `POST /ready/on`);
//! - `GET /whoami` → the `HOSTNAME` variable (the pod name); `GET /pid` → its process id;
//! - `GET /fetch/<ip>:<port>/<path>` → what this pod gets from `http://<ip>:<port>/<path>`
//!   (502 and the error when that fails);
//! - `PUT /data` stores the body in `<DIR>/value` (synced); `GET /data` returns it, or 404;
//! - anything else → 404. Requests larger than 1 MiB are refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: usize = 1 << 20;

/// Serves until the process is stopped.
pub async fn run(listen: SocketAddr, data: PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(&data)?;
    let listener = TcpListener::bind(listen).await?;
    eprintln!("testapp listening on {listen}, data in {}", data.display());
    let ready = Arc::new(AtomicBool::new(true));
    loop {
        let (conn, _) = listener.accept().await?;
        let (ready, data) = (ready.clone(), data.clone());
        tokio::spawn(async move {
            let _ = serve(conn, ready, data).await;
        });
    }
}

async fn serve(mut conn: TcpStream, ready: Arc<AtomicBool>, data: PathBuf) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_REQUEST {
            return respond(&mut conn, 413, "too large").await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return respond(&mut conn, 413, "too large").await;
    }
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let value = data.join("value");
    match (method.as_str(), path.as_str()) {
        ("GET", "/healthz") => respond(&mut conn, 200, "ok").await,
        ("GET", "/ready") if ready.load(Ordering::SeqCst) => respond(&mut conn, 200, "ready").await,
        ("GET", "/ready") => respond(&mut conn, 503, "not ready").await,
        ("POST", "/ready/off") => {
            ready.store(false, Ordering::SeqCst);
            respond(&mut conn, 200, "ok").await
        }
        ("POST", "/ready/on") => {
            ready.store(true, Ordering::SeqCst);
            respond(&mut conn, 200, "ok").await
        }
        ("GET", "/whoami") => {
            let me = std::env::var("HOSTNAME").unwrap_or_default();
            respond(&mut conn, 200, &me).await
        }
        ("GET", "/pid") => respond(&mut conn, 200, &std::process::id().to_string()).await,
        ("GET", p) if p.starts_with("/fetch/") => {
            let (status, text) = fetch(&p["/fetch/".len()..]).await;
            respond(&mut conn, status, &text).await
        }
        ("PUT", "/data") => {
            let tmp = data.join("value.tmp");
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(&body).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &value).await?;
            respond(&mut conn, 200, "stored").await
        }
        ("GET", "/data") => match tokio::fs::read(&value).await {
            Ok(v) => respond(&mut conn, 200, &String::from_utf8_lossy(&v)).await,
            Err(_) => respond(&mut conn, 404, "no data").await,
        },
        _ => respond(&mut conn, 404, "not found").await,
    }
}

/// `GET /fetch/<ip>:<port>/<path>`: this pod's own GET of `http://<ip>:<port>/<path>` (so
/// a test sees what a pod reaches from its network), answered with the body fetched, or 502
/// and the error.
async fn fetch(target: &str) -> (u16, String) {
    let (addr, path) = match target.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (target, "/".to_string()),
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return (400, format!("{addr:?} is not an address"));
    };
    match crate::http::get(addr, &path, std::time::Duration::from_secs(3)).await {
        Ok(r) if r.status == 200 => (200, r.body),
        Ok(r) => (502, format!("{addr} answered {}", r.status)),
        Err(e) => (502, format!("{addr}: {e}")),
    }
}

async fn respond(conn: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(msg.as_bytes()).await?;
    conn.shutdown().await
}
