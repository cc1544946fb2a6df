//! Certificates for tests and examples, minted in memory with rcgen (feature `testing`).
//!
//! ```
//! use confluo_transport::testing::TestCa;
//!
//! let ca = TestCa::new("confluo test CA").unwrap();
//! let node1 = ca.node("node1.cluster.test").unwrap();
//! let tls = ca.tls_config(&node1).unwrap();
//! assert_eq!(tls.certificates().len(), 2); // the CA, then node 1's certificate
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::tls::{TlsConfig, TlsError};

pub use rcgen::Error as CertError;

/// A certificate authority for one test cluster.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A node's certificate and private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct NodeCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Validity of a minted certificate: `(year, month, day)` bounds, UTC midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First valid day.
    pub not_before: (i32, u8, u8),
    /// Last valid moment (midnight starting that day).
    pub not_after: (i32, u8, u8),
}

impl Validity {
    /// From 2020-01-01 to 2100-01-01: valid for any test run.
    pub const LONG: Self = Self {
        not_before: (2020, 1, 1),
        not_after: (2100, 1, 1),
    };
    /// From 2020-01-01 to 2021-01-01: expired.
    pub const EXPIRED: Self = Self {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
    };

    /// From yesterday (so a clock slightly behind still accepts it) for `days` days.
    pub fn days_from_now(days: u32) -> Self {
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400) as i64;
        Self {
            not_before: civil(today - 1),
            not_after: civil(today + i64::from(days)),
        }
    }
}

/// The (year, month, day) of a day counted from 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

fn apply(params: &mut CertificateParams, validity: Validity, common_name: &str) {
    let (y, m, d) = validity.not_before;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = validity.not_after;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
}

impl TestCa {
    /// A new self-signed CA (ECDSA P-256) named `common_name`, valid [`Validity::LONG`].
    pub fn new(common_name: &str) -> Result<Self, CertError> {
        Self::with_validity(common_name, Validity::LONG)
    }

    /// A new self-signed CA valid for `validity`.
    pub fn with_validity(common_name: &str, validity: Validity) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        apply(&mut params, validity, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// Takes up an existing CA again from its certificate and private key (PEM), e.g. to
    /// issue a renewed node certificate. `common_name` must be the CA's own.
    pub fn from_pem(common_name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        apply(&mut params, Validity::LONG, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem: cert_pem.to_string(),
        })
    }

    /// The CA certificate (PEM), what every node trusts.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA's private key (PKCS#8 PEM): keep it offline, it signs node certificates.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A node certificate for `name` (a DNS name or an IP address), valid [`Validity::LONG`],
    /// usable as a server and as a client certificate.
    pub fn node(&self, name: &str) -> Result<NodeCert, CertError> {
        self.node_with_validity(name, Validity::LONG)
    }

    /// A node certificate for `name` valid for `validity`.
    pub fn node_with_validity(
        &self,
        name: &str,
        validity: Validity,
    ) -> Result<NodeCert, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        apply(&mut params, validity, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The TLS configuration of a node holding `cert` and trusting this CA.
    pub fn tls_config(&self, cert: &NodeCert) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_pem(
            self.pem.as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::civil;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
        assert_eq!(civil(47_482), (2100, 1, 1));
    }
}
