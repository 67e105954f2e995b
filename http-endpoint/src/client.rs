//! One HTTP/1.1 request over a fresh TCP connection (no TLS), for probes and tests.
//!
//! Contract: [`request`] returns the status code and the body, or an error; it never takes
//! longer than the timeout it is given.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes, lossily decoded.
    pub body: String,
}

/// Sends `method path` with extra headers and a body to `addr`, and reads the response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    tokio::time::timeout(timeout, exchange(addr, method, path, headers, body))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "http request timed out"))?
}

/// `GET path` with a timeout.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Response> {
    request(addr, "GET", path, &[], &[], timeout).await
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    };
    let failed = |e: hyper::Error| std::io::Error::other(e.to_string());
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let req = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| invalid(&e))?;
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender.send_request(req).await.map_err(failed)?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(failed)?
            .to_bytes();
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
    .await;
    driver.abort();
    result
}
