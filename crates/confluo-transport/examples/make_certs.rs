//! Mints a cluster CA and one certificate per node, for mutual TLS between confluo nodes.
//!
//! ```text
//! cargo run -p confluo-transport --example make_certs -- OUT_DIR NAME...
//! cargo run -p confluo-transport --example make_certs -- examples/cluster/certs \
//!     node1.cluster.local node2.cluster.local node3.cluster.local
//! ```
//!
//! Writes `OUT_DIR/ca.pem` and `OUT_DIR/ca.key` (the CA; created only if `ca.key` does not
//! exist yet, so running it again renews node certificates under the same CA), and for each
//! NAME `OUT_DIR/NAME.pem` and `OUT_DIR/NAME.key`: an ECDSA P-256 certificate valid for that
//! name (a DNS name or an IP address) for `CONFLUO_CERT_DAYS` days (default 365), usable both
//! as a server and as a client certificate. Then it loads each node's files back with
//! `TlsConfig::from_pem_files`, as a node would, and prints each certificate's expiry.
//! Private keys are written with mode 0600.

use std::path::{Path, PathBuf};

use confluo_transport::TlsConfig;
use confluo_transport::testing::{TestCa, Validity};

const CA_NAME: &str = "confluo cluster CA";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        return Err("usage: make_certs OUT_DIR NAME...".into());
    };
    let names: Vec<String> = args.collect();
    if names.is_empty() {
        return Err("usage: make_certs OUT_DIR NAME... (at least one node name)".into());
    }
    let days: u32 = match std::env::var("CONFLUO_CERT_DAYS") {
        Ok(days) => days.parse()?,
        Err(_) => 365,
    };
    std::fs::create_dir_all(&out)?;
    let (ca_pem, ca_key) = (out.join("ca.pem"), out.join("ca.key"));
    let ca = if ca_key.exists() {
        println!("reusing the CA in {}", ca_key.display());
        TestCa::from_pem(
            CA_NAME,
            &std::fs::read_to_string(&ca_pem)?,
            &std::fs::read_to_string(&ca_key)?,
        )?
    } else {
        // The CA outlives the node certificates it signs, so they can be renewed under it.
        let ca = TestCa::with_validity(CA_NAME, Validity::days_from_now(days.saturating_mul(10)))?;
        std::fs::write(&ca_pem, ca.pem())?;
        write_private(&ca_key, &ca.key_pem())?;
        println!(
            "new CA: {} (keep {} offline)",
            ca_pem.display(),
            ca_key.display()
        );
        ca
    };
    for name in &names {
        let cert = ca.node_with_validity(name, Validity::days_from_now(days))?;
        let (pem, key) = (
            out.join(format!("{name}.pem")),
            out.join(format!("{name}.key")),
        );
        std::fs::write(&pem, &cert.cert_pem)?;
        write_private(&key, &cert.key_pem)?;
        let loaded = TlsConfig::from_pem_files(&ca_pem, &pem, &key)?;
        loaded.check_name(name)?;
        for info in loaded.certificates() {
            println!(
                "{}: {:?} {} expires at {} (Unix)",
                pem.display(),
                info.role,
                info.subject,
                info.not_after
            );
        }
    }
    Ok(())
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(pem.as_bytes())
}
