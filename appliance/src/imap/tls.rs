//! TLS for IMAP: rustls with the ring provider (never aws-lc, see DESIGN.md),
//! from PEM files or a self-signed certificate made with rcgen when the
//! configuration names none.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// A config from PEM certificate chain and key files.
pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificates {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading key {}", key.display()))?;
    config(certs, key)
}

/// File names of the certificate made when the configuration names none.
pub const SELF_SIGNED_CERT_FILE: &str = "imap-cert.pem";
/// Its key (mode 0600).
pub const SELF_SIGNED_KEY_FILE: &str = "imap-key.pem";

/// The configured certificate, or the data directory's self-signed one,
/// created on first use so clients see the same certificate across restarts.
pub fn load_or_create(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Arc<ServerConfig>> {
    if let (Some(cert), Some(key)) = (cert, key) {
        return from_pem_files(cert, key);
    }
    let cert = data_dir.join(SELF_SIGNED_CERT_FILE);
    let key = data_dir.join(SELF_SIGNED_KEY_FILE);
    if !cert.exists() || !key.exists() {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let names: Vec<String> = ["localhost".to_string(), host].into_iter().filter(|n| !n.is_empty()).collect();
        let (cert_pem, key_pem) = self_signed_pem(&names)?;
        write_private(&key, key_pem.as_bytes())?;
        std::fs::write(&cert, cert_pem).with_context(|| format!("writing {}", cert.display()))?;
        tracing::info!(cert = %cert.display(), "created a self-signed IMAP certificate");
    }
    from_pem_files(&cert, &key)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A self-signed certificate for `names`, with its key, as PEM (so `init` can
/// store it and later runs reuse it).
pub fn self_signed_pem(names: &[String]) -> anyhow::Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).context("generating a certificate")?;
    Ok((certified.cert.pem(), certified.key_pair.serialize_pem()))
}

/// A config from PEM strings.
pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parsing key PEM")?;
    config(certs, key)
}

fn config(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), None, None).unwrap();
        let first = std::fs::read(dir.path().join(SELF_SIGNED_CERT_FILE)).unwrap();
        load_or_create(dir.path(), None, None).unwrap();
        assert_eq!(std::fs::read(dir.path().join(SELF_SIGNED_CERT_FILE)).unwrap(), first);
    }

    #[test]
    fn self_signed_config_builds() {
        let (cert, key) = self_signed_pem(&["localhost".to_string()]).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        from_pem(&cert, &key).unwrap();
    }
}
