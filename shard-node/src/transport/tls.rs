//! TLS for clients and replication links.
//!
//! Contract:
//! - [`TlsOptions`] name the node's certificate chain, private key and the CA (all PEM; the
//!   three go together, any of them missing or unreadable is an error naming it), whether TLS
//!   clients must present a certificate (`--tls-auth-clients`), and how the other side of a
//!   link is checked (`--tls-link-verify`).
//! - The server side requires (or, with `optional`, accepts) a client certificate signed by
//!   the CA; a handshake that fails (a certificate of another CA, expired) is refused and
//!   [`LinkTls::accept`] returns the reason for the log.
//! - The client side ([`LinkTls::connect`]) presents the node's certificate and accepts a
//!   server whose certificate the CA signed: for the host part of the address it dialled (a
//!   DNS name, or an IP address matched against the IP SANs), or, with `ca`, any name — for a
//!   private CA of one database, whose every certificate belongs to one of its nodes.
//! - [`ReloadableTls`] re-reads the three files every [`RELOAD_INTERVAL`]; new contents that
//!   load replace the settings for new connections (established ones keep theirs), contents
//!   that do not load are logged and the previous settings stay.
//! - Only the `ring` provider is used; the process-wide default provider is not touched.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// How often [`ReloadableTls`] looks at the certificate files.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

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

/// Whether TLS clients must present a certificate signed by the CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// Every TLS client presents a certificate (mutual TLS), as replication links do.
    Yes,
    /// A client may present one (then it must be valid) or none (it authenticates with a
    /// password, like any client).
    Optional,
}

/// What a link's client checks of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkVerify {
    /// Signed by the CA, for the host that was dialled.
    Name,
    /// Signed by the CA, whatever name it carries (a private CA of one database).
    Ca,
}

/// Where the TLS settings come from.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub client_auth: ClientAuth,
    pub verify: LinkVerify,
}

impl TlsOptions {
    /// The options when any of the three paths is given; `Ok(None)` when none is.
    pub fn from_args(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
        client_auth: ClientAuth,
        verify: LinkVerify,
    ) -> Result<Option<TlsOptions>, TlsError> {
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsOptions {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                ca: ca.to_path_buf(),
                client_auth,
                verify,
            })),
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

    /// The three files' contents, to notice a change.
    fn contents(&self) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        for p in [&self.cert, &self.key, &self.ca] {
            all.extend(std::fs::read(p).ok()?);
            all.push(0);
        }
        Some(all)
    }
}

/// TLS settings that follow their files.
pub struct ReloadableTls {
    options: TlsOptions,
    current: parking_lot::RwLock<(LinkTls, Vec<u8>)>,
}

impl std::fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableTls")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ReloadableTls {
    /// Loads the settings once (an error if they do not load).
    pub fn load(options: TlsOptions) -> Result<Arc<ReloadableTls>, TlsError> {
        let contents = options.contents().unwrap_or_default();
        let tls = LinkTls::load(&options)?;
        Ok(Arc::new(ReloadableTls {
            options,
            current: parking_lot::RwLock::new((tls, contents)),
        }))
    }

    /// The settings in force.
    pub fn current(&self) -> LinkTls {
        self.current.read().0.clone()
    }

    /// Reloads when the files changed; `Ok(true)` when new settings are in force.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let Some(contents) = self.options.contents() else {
            return Ok(false);
        };
        if self.current.read().1 == contents {
            return Ok(false);
        }
        let tls = LinkTls::load(&self.options)?;
        *self.current.write() = (tls, contents);
        Ok(true)
    }

    /// Looks at the files every [`RELOAD_INTERVAL`] until `shutdown` turns true.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last_error = String::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            match self.reload_if_changed() {
                Ok(true) => {
                    last_error.clear();
                    tracing::info!(cert = %self.options.cert.display(), "TLS certificates reloaded");
                }
                Ok(false) => {}
                Err(e) => {
                    let text = e.to_string();
                    if text != last_error {
                        tracing::warn!(error = %text, "new TLS files do not load; keeping the previous ones");
                        last_error = text;
                    }
                }
            }
        }
    }
}

/// Client and server configurations.
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

/// Accepts a server certificate the CA signed, whatever name it was issued for.
#[derive(Debug)]
struct AnyNameVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl LinkTls {
    /// Builds both sides from the options' files.
    pub fn load(options: &TlsOptions) -> Result<LinkTls, TlsError> {
        let (cert, key, ca) = (&options.cert, &options.key, &options.ca);
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

        let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        );
        if options.client_auth == ClientAuth::Optional {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_err)?;
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_err)?;
        let client = match options.verify {
            LinkVerify::Name => client.with_root_certificates(roots),
            LinkVerify::Ca => {
                let inner =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                client
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyNameVerifier(inner)))
            }
        }
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

    /// The server side of the handshake, as a [`super::stream::Stream`].
    pub async fn accept_stream(&self, socket: TcpStream) -> Result<super::stream::Stream, String> {
        let s = self.accept(socket).await?;
        Ok(super::stream::Stream::Tls(Box::new(
            tokio_rustls::TlsStream::Server(s),
        )))
    }

    /// The client side of the handshake against `addr`, as a [`super::stream::Stream`].
    pub async fn connect_stream(
        &self,
        addr: &str,
        socket: TcpStream,
    ) -> Result<super::stream::Stream, String> {
        let s = self.connect(addr, socket).await?;
        Ok(super::stream::Stream::Tls(Box::new(
            tokio_rustls::TlsStream::Client(s),
        )))
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
        let (auth, verify) = (ClientAuth::Yes, LinkVerify::Name);
        let err = TlsOptions::from_args(
            Some(Path::new("c.pem")),
            None,
            Some(Path::new("ca.pem")),
            auth,
            verify,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--tls-cert, --tls-key and --tls-ca go together; missing: --tls-key"
        );
        assert!(TlsOptions::from_args(None, None, None, auth, verify)
            .unwrap()
            .is_none());
    }
}
