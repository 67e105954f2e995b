//! A small HTTP server that stands for a workload in end-to-end tests
//! (`aadb-e2e testapp --listen ADDR --data DIR`, image `aadb-e2e-testapp`).
//!
//! Contract (on `aadb-http`'s server, so bad requests and limits are handled as it says):
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

use aadb_http::{Request, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const MAX_REQUEST: usize = 1 << 20;

/// Serves until the process is stopped.
pub async fn run(listen: SocketAddr, data: PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(&data)?;
    let listener = TcpListener::bind(listen).await?;
    eprintln!("testapp listening on {listen}, data in {}", data.display());
    let ready = Arc::new(AtomicBool::new(true));
    let limits = aadb_http::Limits {
        max_body_bytes: MAX_REQUEST,
        ..aadb_http::Limits::default()
    };
    let handler = move |req: Request| {
        let (ready, data) = (ready.clone(), data.clone());
        async move {
            answer(req, &ready, &data)
                .await
                .unwrap_or_else(|e| Response::text(500, format!("{e}\n")))
        }
    };
    aadb_http::serve(listener, limits, handler, std::future::pending()).await;
    Ok(())
}

async fn answer(
    req: Request,
    ready: &AtomicBool,
    data: &std::path::Path,
) -> std::io::Result<Response> {
    let value = data.join("value");
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response::text(status, body)
    }
    Ok(match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/healthz") => text(200, "ok"),
        ("GET", "/ready") if ready.load(Ordering::SeqCst) => text(200, "ready"),
        ("GET", "/ready") => text(503, "not ready"),
        ("POST", "/ready/off") => {
            ready.store(false, Ordering::SeqCst);
            text(200, "ok")
        }
        ("POST", "/ready/on") => {
            ready.store(true, Ordering::SeqCst);
            text(200, "ok")
        }
        ("GET", "/whoami") => text(200, std::env::var("HOSTNAME").unwrap_or_default()),
        ("GET", "/pid") => text(200, std::process::id().to_string()),
        ("GET", p) if p.starts_with("/fetch/") => {
            let (status, body) = fetch(&p["/fetch/".len()..]).await;
            text(status, body)
        }
        ("PUT", "/data") => {
            let tmp = data.join("value.tmp");
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(&req.body).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &value).await?;
            text(200, "stored")
        }
        ("GET", "/data") => match tokio::fs::read(&value).await {
            Ok(v) => text(200, String::from_utf8_lossy(&v)),
            Err(_) => text(404, "no data"),
        },
        _ => text(404, "not found"),
    })
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
