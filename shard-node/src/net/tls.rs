//! TLS with mutual authentication for replication links.
//!
//! Contract:
//! - [`LinkTls::load`] reads the node's certificate chain, private key and the CA (all PEM).
//!   The three files go together; any of them missing or unreadable is an error naming it.
//! - The server side ([`LinkTls::acceptor`]) requires every client to present a certificate
//!   signed by the CA; a handshake that fails (no certificate, another CA, expired) is refused
//!   and [`LinkTls::accept`] returns the reason for the log.
//! - The client side ([`LinkTls::connect`]) presents the node's certificate and accepts only a
//!   server whose certificate the CA signed for the host part of the address it dialled (a
//!   DNS name, or an IP address matched against the certificate's IP SANs).
//! - Only the `ring` provider is used; the process-wide default provider is not touched.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert, --tls-key and --tls-ca go together; missing: {0}")]
    Incomplete(String),
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{what} {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// Client and server configurations for replication links.
#[derive(Clone)]
pub struct LinkTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkTls")
    }
}

impl LinkTls {
    /// Loads the settings when any of the three paths is given; `Ok(None)` when none is.
    pub fn from_args(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<Option<LinkTls>, TlsError> {
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => LinkTls::load(cert, key, ca).map(Some),
            _ => {
                let missing: Vec<&str> = [
                    (cert.is_none(), "--tls-cert"),
                    (key.is_none(), "--tls-key"),
                    (ca.is_none(), "--tls-ca"),
                ]
                .iter()
                .filter(|(m, _)| *m)
                .map(|(_, n)| *n)
                .collect();
                Err(TlsError::Incomplete(missing.join(", ")))
            }
        }
    }

    /// Builds both sides from the node's certificate chain, key and the CA (PEM files).
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<LinkTls, TlsError> {
        let chain = read_certs("certificate", cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
            what: "private key",
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for c in read_certs("CA", ca)? {
            roots
                .add(c)
                .map_err(|e| TlsError::Config(format!("CA {}: {e}", ca.display())))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config_err = |e: rustls::Error| TlsError::Config(e.to_string());

        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_err)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config_err)?;
        Ok(LinkTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// Runs the server side of the handshake; `Err` says why the client was refused.
    pub async fn accept(&self, socket: TcpStream) -> Result<server::TlsStream<TcpStream>, String> {
        self.acceptor.accept(socket).await.map_err(describe)
    }

    /// Runs the client side of the handshake against `addr` (`host:port`).
    pub async fn connect(
        &self,
        addr: &str,
        socket: TcpStream,
    ) -> Result<client::TlsStream<TcpStream>, String> {
        let name = server_name(addr)?;
        self.connector.connect(name, socket).await.map_err(describe)
    }
}

/// The name a server's certificate must carry: the host part of `host:port` (`[v6]:port`
/// included).
fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))
}

fn describe(e: std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => format!("TLS handshake failed: {inner}"),
        None => format!("TLS handshake failed: {e}"),
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.display().to_string(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_addresses() {
        assert_eq!(
            server_name("127.0.0.1:7000").ok(),
            Some(ServerName::IpAddress(
                std::net::IpAddr::from([127, 0, 0, 1]).into()
            ))
        );
        assert_eq!(
            server_name("[::1]:7000").ok(),
            Some(ServerName::IpAddress(
                std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]).into()
            ))
        );
        assert_eq!(
            server_name("node-a.example:7000").ok(),
            Some(ServerName::try_from("node-a.example".to_string()).unwrap())
        );
        assert!(server_name("bad name:7000").is_err());
    }

    #[test]
    fn partial_settings_are_refused() {
        let err = LinkTls::from_args(Some(Path::new("c.pem")), None, Some(Path::new("ca.pem")))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--tls-cert, --tls-key and --tls-ca go together; missing: --tls-key"
        );
        assert!(LinkTls::from_args(None, None, None).unwrap().is_none());
    }
}
