//! The device's secret key file: 32 random bytes, hex-encoded, mode 0600. The
//! key signs this device's events and is its iroh endpoint key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{format_err, Context, Result};
use rand::RngCore;

/// File name of the key inside the data directory.
pub const KEY_FILE: &str = "device.key";

/// Path of the key file in `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Creates a new key file; fails if one exists.
pub fn create_key(data_dir: &Path) -> Result<[u8; 32]> {
    let path = key_path(data_dir);
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create device key {}", path.display()))?;
    file.write_all(format!("{}\n", hex::encode(secret)).as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write device key {}", path.display()))?;
    Ok(secret)
}

/// Reads the key file, refusing one that others can read.
pub fn load_key(data_dir: &Path) -> Result<[u8; 32]> {
    let path = key_path(data_dir);
    let meta = fs::metadata(&path).with_context(|| format!("cannot read device key {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format_err!(
            "device key {} is readable by other users (mode {:o}): run chmod 600 on it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read device key {}", path.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret)
        .map_err(|e| format_err!("device key {} is not 64 hex digits: {e}", path.display()))?;
    Ok(secret)
}
