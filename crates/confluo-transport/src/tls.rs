//! Mutual TLS between nodes: loading a node's certificates, building rustls configurations on
//! the ring provider, and checking a peer certificate's name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;

/// The ALPN protocol both sides require, so a TLS port of some other service is never taken
/// for a peer (and ours is never taken for something else).
pub const ALPN: &[u8] = b"confluo/2";

/// Which PEM item a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemItem {
    /// The cluster CA certificate(s).
    Ca,
    /// This node's certificate chain (leaf first).
    Certificate,
    /// This node's private key.
    Key,
}

impl std::fmt::Display for PemItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ca => "CA certificate",
            Self::Certificate => "node certificate",
            Self::Key => "private key",
        })
    }
}

/// Where a PEM item came from, for error messages: a file, or bytes given in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemSource {
    /// What the item is.
    pub item: PemItem,
    /// The file it was read from; `None` when it was passed in memory.
    pub file: Option<PathBuf>,
}

impl std::fmt::Display for PemSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{} in {}", self.item, file.display()),
            None => write!(f, "{} (in memory)", self.item),
        }
    }
}

/// Why TLS material could not be loaded. Nothing was changed: a transport keeps the
/// configuration it had (see [`crate::TcpTransport::reload_tls`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {source_of}: {error}")]
    Read {
        /// The item and the file.
        source_of: PemSource,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("invalid PEM in {source_of}: {error}")]
    Pem {
        /// The item and the file.
        source_of: PemSource,
        /// What is wrong with it.
        error: rustls::pki_types::pem::Error,
    },
    /// The PEM holds no item of the expected kind (e.g. a key file with no private key).
    #[error("no {} found in {source_of}", source_of.item)]
    Missing {
        /// The item and the file.
        source_of: PemSource,
    },
    /// A certificate could not be parsed as X.509.
    #[error("certificate {index} in {source_of} is not valid X.509: {reason}")]
    BadCertificate {
        /// The item and the file.
        source_of: PemSource,
        /// Position of the certificate in the file, from 0.
        index: usize,
        /// The parser's message.
        reason: String,
    },
    /// rustls refused the material: a CA that is not a usable trust anchor, a key that does not
    /// match the certificate, or an unsupported key type.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA certificates.
    #[error("cannot build the peer verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// This node's certificate is not valid for the name configured for this node.
    #[error("this node's certificate is not valid for its configured name {name:?}")]
    NotForOwnName {
        /// The configured name.
        name: String,
    },
}

/// Which certificate of a loaded configuration a [`CertificateInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateRole {
    /// This node's own (leaf) certificate.
    Node,
    /// An intermediate certificate sent along with the node's.
    Intermediate,
    /// A trusted CA certificate.
    Ca,
}

/// One loaded certificate, for an expiry metric.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// Its place in the configuration.
    pub role: CertificateRole,
    /// Its subject, e.g. `CN=node1.example`.
    pub subject: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity (`not_after`), Unix seconds.
    pub not_after: i64,
}

/// A node's TLS material, checked and ready: the cluster CA that peers' certificates must chain
/// to, and this node's certificate chain and private key, presented to peers in both
/// directions (as a server certificate when accepting, a client certificate when dialing).
///
/// Cheap to clone. Peers are required to present a certificate; session resumption is off, so
/// every connection checks the current certificates in full.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
    leaf: CertificateDer<'static>,
    certificates: Arc<[CertificateInfo]>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Loads PEM files: the CA certificate(s), this node's certificate chain (leaf first) and
    /// its private key (PKCS#8, PKCS#1 or SEC1). Errors name the file.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let read = |item, path: &Path| {
            let source_of = PemSource {
                item,
                file: Some(path.to_path_buf()),
            };
            match std::fs::read(path) {
                Ok(bytes) => Ok((bytes, source_of)),
                Err(error) => Err(TlsError::Read { source_of, error }),
            }
        };
        let ca = read(PemItem::Ca, ca.as_ref())?;
        let cert = read(PemItem::Certificate, cert.as_ref())?;
        let key = read(PemItem::Key, key.as_ref())?;
        Self::build(ca, cert, key)
    }

    /// The same from PEM bytes in memory.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let mem = |item| PemSource { item, file: None };
        Self::build(
            (ca.to_vec(), mem(PemItem::Ca)),
            (cert.to_vec(), mem(PemItem::Certificate)),
            (key.to_vec(), mem(PemItem::Key)),
        )
    }

    fn build(
        (ca, ca_src): (Vec<u8>, PemSource),
        (cert, cert_src): (Vec<u8>, PemSource),
        (key, key_src): (Vec<u8>, PemSource),
    ) -> Result<Self, TlsError> {
        let cas = certificates(&ca, &ca_src)?;
        let chain = certificates(&cert, &cert_src)?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|error| match error {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
                source_of: key_src.clone(),
            },
            error => TlsError::Pem {
                source_of: key_src.clone(),
                error,
            },
        })?;
        let mut infos = describe(&cas, &ca_src, |_| CertificateRole::Ca)?;
        infos.extend(describe(&chain, &cert_src, |i| match i {
            0 => CertificateRole::Node,
            _ => CertificateRole::Intermediate,
        })?);
        let leaf = chain.first().cloned().ok_or(TlsError::Missing {
            source_of: cert_src,
        })?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots.add(ca)?;
        }
        let roots = Arc::new(roots);
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()?;
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        // No resumption: a resumed session would skip checking the peer's current certificate.
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = Resumption::disabled();
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            leaf,
            certificates: infos.into(),
        })
    }

    /// Every loaded certificate with its validity, CA certificates first, then this node's
    /// chain (leaf first).
    pub fn certificates(&self) -> &[CertificateInfo] {
        &self.certificates
    }

    /// Checks that this node's own certificate is valid for `name`.
    pub fn check_name(&self, name: &str) -> Result<(), TlsError> {
        if certificate_is_for(&self.leaf, name) {
            Ok(())
        } else {
            Err(TlsError::NotForOwnName {
                name: name.to_string(),
            })
        }
    }
}

fn certificates(
    pem: &[u8],
    source_of: &PemSource,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            source_of: source_of.clone(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            source_of: source_of.clone(),
        });
    }
    Ok(certs)
}

fn describe(
    certs: &[CertificateDer<'static>],
    source_of: &PemSource,
    role: impl Fn(usize) -> CertificateRole,
) -> Result<Vec<CertificateInfo>, TlsError> {
    certs
        .iter()
        .enumerate()
        .map(|(index, der)| {
            let (_, cert) =
                x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate {
                    source_of: source_of.clone(),
                    index,
                    reason: e.to_string(),
                })?;
            let validity = cert.validity();
            Ok(CertificateInfo {
                role: role(index),
                subject: cert.subject().to_string(),
                not_before: validity.not_before.timestamp(),
                not_after: validity.not_after.timestamp(),
            })
        })
        .collect()
}

/// Whether `cert` (already verified to chain to the CA) carries `name` (a DNS name or an IP
/// address) in its subject alternative names.
pub(crate) fn certificate_is_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let (Ok(parsed), Ok(name)) = (
        ParsedCertificate::try_from(cert),
        ServerName::try_from(name),
    ) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

/// Whether `name` can be checked against a certificate at all (a DNS name or an IP address).
pub(crate) fn is_valid_name(name: &str) -> bool {
    ServerName::try_from(name).is_ok()
}

/// `name` as the `ServerName` a dialer expects, or `None` if it cannot be one.
pub(crate) fn server_name(name: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(name.to_string()).ok()
}
