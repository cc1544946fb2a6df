//! Security material from files: the peers' TLS or shared secret, TLS on the client port,
//! and [`Security`], which holds what is loaded, reloads it (SIGHUP, or a file that changed)
//! and tells each certificate's expiry.
//!
//! A reload loads everything first and swaps only if all of it is good, so a half-written or
//! wrong file leaves the server on its old certificates (with a warning naming the problem).
//! Connections made after a swap use the new material; established ones keep their session.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use confluo_node::{Message, NodeId};
use confluo_transport::{
    CertificateRole, PeerAuth, PeerConfig, SecretTooShort, SharedSecret, TcpConfig, TcpTransport,
    TlsConfig,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthFailures;
use crate::config::{ClientTlsFiles, PeerSecurity, ServerConfig, TlsFiles};

/// How often the certificate files' modification times are looked at.
const POLL: Duration = Duration::from_secs(2);

/// Why security material could not be loaded. Nothing was started, or (on reload) the old
/// material stays in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The shared secret file could not be read.
    #[error("shared secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The shared secret is too short.
    #[error("shared secret file {path}: {source}")]
    SecretTooShort {
        /// The file.
        path: PathBuf,
        /// How short.
        source: SecretTooShort,
    },
    /// The peers' TLS files are wrong (the error names the file).
    #[error(transparent)]
    PeerTls(#[from] confluo_transport::TlsError),
    /// The peers' TLS does not fit the cluster (a name that is not a DNS name, a
    /// certificate that is not for this node's name…), or peers would be unauthenticated.
    #[error(transparent)]
    Peers(#[from] confluo_transport::ConfigError),
    /// The client port's TLS files are wrong.
    #[error(transparent)]
    ClientTls(#[from] ClientTlsError),
}

/// Why `[client_tls]` could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientTlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not the PEM it should be, or holds none of what it should.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. the key does not match).
    #[error("certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify anything.
    #[error("client CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateUse {
    /// The cluster CA, that peers' certificates chain to (`[tls] ca_file`).
    PeerCa,
    /// This node's certificate (or an intermediate) presented to peers (`[tls] cert_file`).
    Peer,
    /// The certificate presented to clients (`[client_tls] cert_file`).
    Client,
    /// The CA clients' certificates must chain to (`[client_tls] ca_file`).
    ClientCa,
}

impl CertificateUse {
    /// A short snake_case name, e.g. for a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            CertificateUse::PeerCa => "peer_ca",
            CertificateUse::Peer => "peer",
            CertificateUse::Client => "client",
            CertificateUse::ClientCa => "client_ca",
        }
    }
}

/// A certificate in use, for an expiry metric.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// What it is for.
    pub usage: CertificateUse,
    /// Its subject, e.g. `CN=dc1-leader`.
    pub subject: String,
    /// The end of its validity (`not_after`), Unix seconds.
    pub not_after: i64,
}

/// Reads a shared secret: the file's bytes, without trailing whitespace (so that
/// `openssl rand -hex 32 > secret` works).
pub(crate) fn load_secret(path: &Path) -> Result<SharedSecret, SecurityError> {
    let bytes = std::fs::read(path).map_err(|source| SecurityError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?;
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    SharedSecret::new(&bytes[..end]).map_err(|source| SecurityError::SecretTooShort {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks `[tls]` as the transport will: the files load, this node's certificate carries its
/// name, and every node's name can be checked against a certificate. `names`: every node's
/// (id, name), this one first.
pub(crate) fn check_peer_tls(
    files: &TlsFiles,
    own_name: &str,
    names: &[(u64, String)],
) -> Result<(), SecurityError> {
    let tls = TlsConfig::from_pem_files(&files.ca_file, &files.cert_file, &files.key_file)?;
    let Some(((me, _), peers)) = names.split_first() else {
        return Ok(());
    };
    let mut config =
        TcpConfig::new(NodeId(*me), 0, ([127, 0, 0, 1], 0).into()).with_auth(PeerAuth::Tls(tls));
    config.name = Some(own_name.to_string());
    for (id, name) in peers {
        config = config.with_peer_config(PeerConfig::accept_only(NodeId(*id)).with_name(name));
    }
    config.check_security()?;
    Ok(())
}

/// The transport's refusal of unauthenticated peers on `addrs` (this node's first), if any
/// address is not loopback.
pub(crate) fn check_unauthenticated(
    addrs: &[SocketAddr],
) -> Result<(), confluo_transport::ConfigError> {
    let Some((&listen, peers)) = addrs.split_first() else {
        return Ok(());
    };
    let mut config = TcpConfig::new(NodeId(u64::MAX), 0, listen);
    for (i, &addr) in peers.iter().enumerate() {
        config = config.with_peer(NodeId(i as u64 + 1), addr);
    }
    config.check_security()
}

/// The transport's authentication for `config`, loaded from its files.
pub(crate) fn peer_auth(config: &ServerConfig) -> Result<PeerAuth, SecurityError> {
    Ok(match &config.peer_security {
        PeerSecurity::Tls(f) => PeerAuth::Tls(TlsConfig::from_pem_files(
            &f.ca_file,
            &f.cert_file,
            &f.key_file,
        )?),
        PeerSecurity::SharedSecret { file } => PeerAuth::SharedSecret(load_secret(file)?),
        PeerSecurity::None { .. } => PeerAuth::None,
    })
}

/// What peer TLS material holds, with the files it came from.
fn peer_certificates(files: &TlsFiles, tls: &TlsConfig) -> Vec<CertificateInfo> {
    tls.certificates()
        .iter()
        .map(|c| {
            let (path, usage) = match c.role {
                CertificateRole::Ca => (&files.ca_file, CertificateUse::PeerCa),
                _ => (&files.cert_file, CertificateUse::Peer),
            };
            CertificateInfo {
                path: path.clone(),
                usage,
                subject: c.subject.clone(),
                not_after: c.not_after,
            }
        })
        .collect()
}

/// TLS on the client port, loaded.
pub(crate) struct ClientTls {
    acceptor: TlsAcceptor,
    certificates: Vec<CertificateInfo>,
}

impl ClientTls {
    /// Loads `[client_tls]`: the certificate chain and key, and if given the CA that client
    /// certificates must chain to.
    pub(crate) fn load(files: &ClientTlsFiles) -> Result<ClientTls, ClientTlsError> {
        let chain = read_certificates(&files.cert_file)?;
        let mut certificates = describe(&files.cert_file, &chain, CertificateUse::Client)?;
        let key_pem = read(&files.key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ClientTlsError::Pem {
            path: files.key_file.clone(),
            reason: format!("no private key: {e}"),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match &files.ca_file {
            Some(ca_file) => {
                let cas = read_certificates(ca_file)?;
                certificates.extend(describe(ca_file, &cas, CertificateUse::ClientCa)?);
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    roots.add(ca)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key)?;
        Ok(ClientTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientTlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientTlsError::Pem {
            path: path.to_path_buf(),
            reason: "no certificate".into(),
        });
    }
    Ok(certs)
}

fn describe(
    path: &Path,
    certs: &[CertificateDer<'_>],
    usage: CertificateUse,
) -> Result<Vec<CertificateInfo>, ClientTlsError> {
    certs
        .iter()
        .map(|der| {
            let (_, cert) =
                x509_parser::parse_x509_certificate(der).map_err(|e| ClientTlsError::Pem {
                    path: path.to_path_buf(),
                    reason: format!("not a certificate: {e}"),
                })?;
            Ok(CertificateInfo {
                path: path.to_path_buf(),
                usage,
                subject: cert.subject().to_string(),
                not_after: cert.validity().not_after.timestamp(),
            })
        })
        .collect()
}

/// The server's security state: the TLS material in use (peers' and clients'), its
/// certificates' expiry, and failed client authentications. Shared by the server, its
/// sessions and whoever holds a handle ([`Server::security`](crate::Server::security)).
pub struct Security {
    peer: Option<(TlsFiles, Arc<TcpTransport<Message>>)>,
    client: Option<ClientTlsFiles>,
    acceptor: RwLock<Option<TlsAcceptor>>,
    certificates: RwLock<Vec<CertificateInfo>>,
    pub(crate) auth_failures: AuthFailures,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("certificates", &self.certificates())
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Loads the client TLS of `config`; `transport` is the node's, whose peer TLS (if
    /// any) this reloads.
    pub(crate) fn new(
        config: &ServerConfig,
        transport: Arc<TcpTransport<Message>>,
    ) -> Result<Security, SecurityError> {
        let peer = match &config.peer_security {
            PeerSecurity::Tls(files) => Some((files.clone(), transport)),
            _ => None,
        };
        let security = Security {
            peer,
            client: config.client_tls.clone(),
            acceptor: RwLock::new(None),
            certificates: RwLock::new(Vec::new()),
            auth_failures: AuthFailures::default(),
        };
        security.reload()?;
        Ok(security)
    }

    /// No TLS anywhere (the fuzz target's sessions).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn without_tls() -> Security {
        Security {
            peer: None,
            client: None,
            acceptor: RwLock::new(None),
            certificates: RwLock::new(Vec::new()),
            auth_failures: AuthFailures::default(),
        }
    }

    /// Loads every certificate file again; if all of it is good, connections made from now
    /// on use it. On error nothing changes.
    pub fn reload(&self) -> Result<(), SecurityError> {
        let mut certificates = Vec::new();
        let peer = match &self.peer {
            Some((files, transport)) => {
                let tls =
                    TlsConfig::from_pem_files(&files.ca_file, &files.cert_file, &files.key_file)?;
                certificates.extend(peer_certificates(files, &tls));
                Some((tls, transport))
            }
            None => None,
        };
        let client = self.client.as_ref().map(ClientTls::load).transpose()?;
        if let Some((tls, transport)) = peer {
            transport.reload_tls(tls)?;
        }
        if let Some(client) = client {
            certificates.extend(client.certificates);
            *self
                .acceptor
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(client.acceptor);
        }
        *self
            .certificates
            .write()
            .unwrap_or_else(PoisonError::into_inner) = certificates;
        Ok(())
    }

    /// Every certificate in use, each with its file and its `not_after` (Unix seconds).
    pub fn certificates(&self) -> Vec<CertificateInfo> {
        self.certificates
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Client authentications that failed since the start.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.count()
    }

    /// The client port's TLS acceptor, if it has TLS.
    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.acceptor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn files(&self) -> Vec<&Path> {
        let mut files = Vec::new();
        if let Some((f, _)) = &self.peer {
            files.extend([f.ca_file.as_path(), &f.cert_file, &f.key_file]);
        }
        if let Some(f) = &self.client {
            files.extend([f.cert_file.as_path(), &f.key_file]);
            files.extend(f.ca_file.as_deref());
        }
        files
    }

    /// Each file's modification time and length: what tells that it was rewritten.
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.files()
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }

    /// Reloads on SIGHUP and when a file changes, until dropped (the server aborts it).
    pub(crate) async fn watch(self: Arc<Self>) {
        if self.files().is_empty() {
            return;
        }
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = self.stamps();
        loop {
            let why = tokio::select! {
                () = next_signal(&mut hangup) => "SIGHUP",
                () = tokio::time::sleep(POLL) => {
                    if self.stamps() == seen {
                        continue;
                    }
                    "a certificate file changed"
                }
            };
            seen = self.stamps();
            match self.reload() {
                Ok(()) => {
                    let expiry: Vec<(String, i64)> = self
                        .certificates()
                        .into_iter()
                        .map(|c| (c.path.display().to_string(), c.not_after))
                        .collect();
                    tracing::info!(
                        why,
                        ?expiry,
                        "certificates reloaded: new connections use them"
                    );
                }
                Err(e) => {
                    tracing::warn!(why, error = %e, "certificates not reloaded: the old ones stay in use");
                }
            }
        }
    }
}

async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(s) = signal {
        if s.recv().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}
