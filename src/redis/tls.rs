//! TLS for the admin connection: rustls (ring provider, the one kube already compiles) through
//! tokio-rustls.
//!
//! [`TlsOptions`] is built once from PEM bytes (the `ca.crt`, `tls.crt` and `tls.key` of a
//! cert-manager or hand-made Secret) into a shared `rustls::ClientConfig`; every
//! [`crate::redis::Client::connect`] then only runs the handshake, inside the connect timeout.
//!
//! # Which name the server certificate must carry
//!
//! The chain is always verified against the CAs in `ca.crt` (and nothing else: no system
//! roots). The name checked against the certificate's subjectAltNames is:
//!
//! * the DNS name given with [`TlsOptions::with_server_name`], when one is set. Members are
//!   dialled by pod IP, which is not known when a certificate is issued, so certificates for a
//!   headless Service (e.g. from cert-manager) normally carry DNS names such as
//!   `<cluster>-members.<ns>.svc` and `*.<cluster>-members.<ns>.svc`. The caller passes one
//!   concrete name that every member's certificate carries (a wildcard SAN matches a concrete
//!   name below it; a wildcard cannot be the expected name itself);
//! * otherwise the IP address dialled, which the certificate must list as an IP SAN.
//!
//! Chain-only verification (any certificate the CA signed, whatever its names) is deliberately
//! not offered: a CA that also signs client certificates would then let any client holding one
//! impersonate a member and receive the admin password with `AUTH`.
//!
//! A client certificate is presented when one is given (for `tls-auth-clients yes`). In TLS 1.3
//! the server judges it after the client has finished its handshake, so a refused certificate
//! shows up at the first exchange (the `AUTH` inside `connect` when a password is set) as a
//! closed connection or a `received fatal alert` I/O error, not as a handshake error.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::redis::error::RedisError;

/// Why PEM material could not be turned into [`TlsOptions`]. Messages name the file a
/// Kubernetes TLS Secret would hold it in and never include key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `ca.crt` is not valid PEM.
    #[error("ca.crt is not valid PEM: {0}")]
    CaPem(#[source] pem::Error),
    /// `ca.crt` holds no `CERTIFICATE` section.
    #[error("ca.crt holds no certificate")]
    NoCaCertificate,
    /// A certificate in `ca.crt` cannot be used as a trust anchor.
    #[error("certificate {index} in ca.crt is not a usable CA certificate: {source}")]
    BadCaCertificate {
        /// Its position in the file, from 0.
        index: usize,
        /// What rustls rejected.
        #[source]
        source: rustls::Error,
    },
    /// `tls.crt` (the client certificate chain) is not valid PEM.
    #[error("client tls.crt is not valid PEM: {0}")]
    ClientCertPem(#[source] pem::Error),
    /// `tls.crt` holds no `CERTIFICATE` section.
    #[error("client tls.crt holds no certificate")]
    NoClientCertificate,
    /// `tls.key` is not valid PEM.
    #[error("client tls.key is not valid PEM: {0}")]
    ClientKeyPem(#[source] pem::Error),
    /// `tls.key` holds no private key section.
    #[error("client tls.key holds no private key (PKCS#8, PKCS#1 or SEC1 PEM)")]
    NoClientKey,
    /// The key is of an unsupported type or does not belong to the certificate.
    #[error("client certificate and key cannot be used together: {0}")]
    ClientKey(#[source] rustls::Error),
    /// The expected server name is not a valid DNS name.
    #[error("{name:?} is not a valid DNS name to verify member certificates against")]
    ServerName {
        /// What was given.
        name: String,
    },
    /// rustls refused the configuration (protocol versions of the provider).
    #[error("TLS client configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// TLS settings for admin connections, prepared once and shared (`Arc`) by every connection.
///
/// Two options are equal when they trust the same CA certificates, present the same client
/// certificate chain and expect the same server name. The private key is not compared:
/// construction checks that it matches the chain's certificate, so the same chain means a key
/// for the same public key.
#[derive(Clone)]
pub struct TlsOptions {
    config: Arc<ClientConfig>,
    /// The DNS name member certificates must carry; `None`: the dialled IP address.
    server_name: Option<ServerName<'static>>,
    ca_certs: Vec<CertificateDer<'static>>,
    client_chain: Option<Vec<CertificateDer<'static>>>,
}

impl TlsOptions {
    /// Builds the client configuration from `ca_pem` (one or more CA certificates, all trusted)
    /// and, for servers that want client certificates, `client_cert_pem` = (certificate chain,
    /// private key). The server name defaults to the dialled IP (see the module docs).
    pub fn from_pem(
        ca_pem: &[u8],
        client_cert_pem: Option<(&[u8], &[u8])>,
    ) -> Result<Self, TlsError> {
        let ca_certs = read_certs(ca_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoCaCertificate,
            e => TlsError::CaPem(e),
        })?;
        let mut roots = RootCertStore::empty();
        for (index, cert) in ca_certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|source| TlsError::BadCaCertificate { index, source })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots);
        let (config, client_chain) = match client_cert_pem {
            None => (builder.with_no_client_auth(), None),
            Some((chain_pem, key_pem)) => {
                let chain = read_certs(chain_pem).map_err(|e| match e {
                    pem::Error::NoItemsFound => TlsError::NoClientCertificate,
                    e => TlsError::ClientCertPem(e),
                })?;
                let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
                    pem::Error::NoItemsFound => TlsError::NoClientKey,
                    e => TlsError::ClientKeyPem(e),
                })?;
                let config = builder
                    .with_client_auth_cert(chain.clone(), key)
                    .map_err(TlsError::ClientKey)?;
                (config, Some(chain))
            }
        };
        Ok(Self {
            config: Arc::new(config),
            server_name: None,
            ca_certs,
            client_chain,
        })
    }

    /// Verifies member certificates against the DNS name `name` instead of the dialled IP.
    /// `name` must be a concrete DNS name (no wildcard); an IP address string is accepted too
    /// and then checked as an IP SAN.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, TlsError> {
        let parsed = ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName {
            name: name.to_owned(),
        })?;
        self.server_name = Some(parsed);
        Ok(self)
    }

    /// The name verified for a connection to `addr`.
    pub fn server_name_for(&self, addr: SocketAddr) -> ServerName<'static> {
        match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::IpAddress(addr.ip().into()),
        }
    }

    /// Whether a client certificate is presented.
    pub fn presents_client_cert(&self) -> bool {
        self.client_chain.is_some()
    }

    /// The first certificate of the chain presented as client certificate (the members' own
    /// `tls.crt` for the operator), when one is presented.
    pub fn client_leaf(&self) -> Option<&CertificateDer<'static>> {
        self.client_chain.as_ref()?.first()
    }

    /// The end-entity certificate `addr` presents: a TLS handshake (verified as every admin
    /// connection is) and nothing else, all within `limit`; the connection is then closed with
    /// a close_notify. This is what the member serves now, whatever its mounted files hold.
    ///
    /// # Errors
    /// [`RedisError::ConnectTimeout`] past `limit`, [`RedisError::Connect`] for a refused
    /// connection or a failed handshake, [`RedisError::Closed`] when the peer sent no
    /// certificate.
    pub async fn peer_certificate(
        &self,
        addr: SocketAddr,
        limit: std::time::Duration,
    ) -> Result<CertificateDer<'static>, RedisError> {
        let exchange = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| RedisError::Connect { addr, source })?;
            let Stream::Tls(mut tls) = self.handshake(addr, tcp).await? else {
                return Err(RedisError::Closed { addr });
            };
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.clone().into_owned());
            // Politely: a bare close would be logged by the member as a failed connection.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            leaf.ok_or(RedisError::Closed { addr })
        };
        match tokio::time::timeout(limit, exchange).await {
            Err(_) => Err(RedisError::ConnectTimeout { addr, after: limit }),
            Ok(result) => result,
        }
    }

    /// Runs the TLS handshake on a connected socket. The caller bounds it in time.
    pub(crate) async fn handshake(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
    ) -> Result<Stream, RedisError> {
        let connector = TlsConnector::from(Arc::clone(&self.config));
        match connector.connect(self.server_name_for(addr), tcp).await {
            Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
            Err(err) => Err(RedisError::Connect {
                addr,
                source: io::Error::new(err.kind(), TlsHandshakeError(err)),
            }),
        }
    }
}

/// All certificates in `pem_bytes`, in order; other sections (keys) are skipped.
fn read_certs(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(pem::Error::NoItemsFound);
    }
    Ok(certs)
}

impl PartialEq for TlsOptions {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name
            && self.ca_certs == other.ca_certs
            && self.client_chain == other.client_chain
    }
}

impl Eq for TlsOptions {}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts and the name only: nothing of the key, and no DER dumps in logs.
        f.debug_struct("TlsOptions")
            .field("ca_certs", &self.ca_certs.len())
            .field("client_cert", &self.client_chain.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// A failed TLS handshake, kept as the source of [`RedisError::Connect`] so the message says
/// that TLS (a certificate, a name, a plaintext peer) is what failed.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {0}")]
pub struct TlsHandshakeError(#[source] pub io::Error);

/// Whether `err` is a failed TLS handshake (as opposed to a refused or timed-out TCP connect).
pub fn is_handshake_failure(err: &RedisError) -> bool {
    match err {
        RedisError::Connect { source, .. } => source
            .get_ref()
            .is_some_and(|inner| inner.is::<TlsHandshakeError>()),
        _ => false,
    }
}

/// The byte stream under the RESP codec: plain TCP or TLS over TCP, so framing has one code
/// path.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(ca: &[u8]) -> TlsError {
        match TlsOptions::from_pem(ca, None) {
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(ca)),
            Err(e) => e,
        }
    }

    #[test]
    fn ca_without_a_certificate_is_refused() {
        assert!(matches!(err(b""), TlsError::NoCaCertificate));
        assert!(matches!(
            err(b"not PEM at all\n"),
            TlsError::NoCaCertificate
        ));
        // Only a key: other sections are skipped, so there is still no certificate.
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(err(key_only), TlsError::NoCaCertificate));
        assert_eq!(err(b"").to_string(), "ca.crt holds no certificate");
    }

    #[test]
    fn broken_pem_and_garbage_der_are_refused() {
        let unterminated = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(matches!(err(unterminated), TlsError::CaPem(_)));
        let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(err(bad_base64), TlsError::CaPem(_)));
        // Valid PEM around bytes that are no X.509 certificate ("hello").
        let not_x509 = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        match err(not_x509) {
            TlsError::BadCaCertificate { index: 0, .. } => {}
            other => panic!("unexpected {other}"),
        }
    }

    /// Options trusting nothing, to test the name policy without certificates.
    fn trusting_nothing() -> TlsOptions {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        TlsOptions {
            config: Arc::new(config),
            server_name: None,
            ca_certs: Vec::new(),
            client_chain: None,
        }
    }

    #[test]
    fn server_name_is_the_dialled_ip_unless_a_dns_name_is_given() {
        let addr: SocketAddr = "10.1.2.3:6379".parse().expect("addr");
        let by_ip = trusting_nothing();
        assert_eq!(
            by_ip.server_name_for(addr),
            ServerName::IpAddress(addr.ip().into())
        );
        let named = by_ip
            .clone()
            .with_server_name("redis-members.ns.svc")
            .expect("valid name");
        assert_eq!(
            named.server_name_for(addr),
            ServerName::try_from("redis-members.ns.svc").expect("name")
        );
        assert_ne!(by_ip, named);
        for bad in ["", "*.members.ns.svc", "has space.svc", "a..b"] {
            match trusting_nothing().with_server_name(bad) {
                Err(TlsError::ServerName { name }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
