//! TLS for IMAP: rustls with the ring provider (never aws-lc, see DESIGN.md),
//! from PEM files or a self-signed certificate made with rcgen when the
//! configuration names none.
//!
//! The daemon's certificate sits behind a [`ReloadableCert`]: the
//! `ServerConfig` asks it for the certificate at every handshake, so SIGHUP
//! swaps the certificate for new connections without rebuilding the
//! listeners, and connections already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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

/// The certificate and key files the daemon serves: the configured ones, else
/// the data directory's self-signed pair. Doctor checks the same file.
pub fn cert_and_key_paths(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> (PathBuf, PathBuf) {
    match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf()),
        _ => (data_dir.join(SELF_SIGNED_CERT_FILE), data_dir.join(SELF_SIGNED_KEY_FILE)),
    }
}

/// The configured certificate, or the data directory's self-signed one,
/// created on first use so clients see the same certificate across restarts.
pub fn load_or_create(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Arc<ServerConfig>> {
    Ok(ReloadableCert::load_or_create(data_dir, cert, key)?.server_config())
}

/// A certificate and key read from PEM files, re-read on [`reload`]. A reload
/// that fails (unreadable file, bad PEM, key not matching the certificate)
/// keeps the certificate in use.
///
/// [`reload`]: ReloadableCert::reload
#[derive(Debug)]
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Reads `cert_path` and `key_path` now; fails if they are not a usable pair.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ReloadableCert>> {
        let current = certified_key_from_files(cert_path, key_path)?;
        Ok(Arc::new(ReloadableCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(current),
        }))
    }

    /// The configured pair, or the data directory's self-signed one (created
    /// on first use).
    pub fn load_or_create(
        data_dir: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> anyhow::Result<Arc<ReloadableCert>> {
        let (cert_path, key_path) = cert_and_key_paths(data_dir, cert, key);
        if cert.is_none() || key.is_none() {
            create_self_signed_if_missing(&cert_path, &key_path)?;
        }
        ReloadableCert::from_files(&cert_path, &key_path)
    }

    /// Re-reads the files. On success new handshakes use the new pair; on
    /// failure the old pair stays and the error says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = certified_key_from_files(&self.cert_path, &self.key_path)?;
        // A poisoned lock only means a reader panicked; the Arc inside is whole.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate file this reads.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// A server config whose every handshake uses the current pair.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let resolver: Arc<dyn ResolvesServerCert> = self.clone();
        let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        Arc::new(config)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Reads a chain and key and checks that they belong together (the check
/// `with_single_cert` does), so a reload never installs a pair that would
/// fail every handshake.
fn certified_key_from_files(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificates {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading key {}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("unsupported key in {}", key.display()))?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified
        .keys_match()
        .with_context(|| format!("the key {} does not match the certificate {}", key.display(), cert.display()))?;
    Ok(Arc::new(certified))
}

fn create_self_signed_if_missing(cert: &Path, key: &Path) -> anyhow::Result<()> {
    if !cert.exists() || !key.exists() {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let names: Vec<String> = ["localhost".to_string(), host].into_iter().filter(|n| !n.is_empty()).collect();
        let (cert_pem, key_pem) = self_signed_pem(&names)?;
        write_private(key, key_pem.as_bytes())?;
        std::fs::write(cert, cert_pem).with_context(|| format!("writing {}", cert.display()))?;
        tracing::info!(cert = %cert.display(), "created a self-signed IMAP certificate");
    }
    Ok(())
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
