//! The devices the app remembers: name, admin API address and token, in one
//! JSON file (mode 0600: it holds tokens) in the app's config directory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DesktopError;

/// A remembered device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// What the user calls it (its host name by default).
    pub name: String,
    /// `host:port` of its admin API.
    pub address: String,
    /// Its admin token.
    pub token: String,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("name", &self.name).field("address", &self.address).finish_non_exhaustive()
    }
}

/// The file of remembered devices.
#[derive(Debug, Clone)]
pub struct Book {
    path: PathBuf,
}

impl Book {
    /// The book stored at `path` (created on first save).
    pub fn at(path: &Path) -> Book {
        Book { path: path.to_path_buf() }
    }

    /// Every remembered device, in the order added.
    pub fn load(&self) -> Result<Vec<Device>, DesktopError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| DesktopError::Io(format!("{} is damaged: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DesktopError::Io(format!("cannot read {}: {e}", self.path.display()))),
        }
    }

    /// Adds a device, or replaces the one at the same address.
    pub fn add(&self, device: Device) -> Result<Vec<Device>, DesktopError> {
        let mut devices = self.load()?;
        match devices.iter_mut().find(|d| d.address == device.address) {
            Some(known) => *known = device,
            None => devices.push(device),
        }
        self.save(&devices)?;
        Ok(devices)
    }

    /// Forgets the device at `address`.
    pub fn remove(&self, address: &str) -> Result<Vec<Device>, DesktopError> {
        let mut devices = self.load()?;
        let before = devices.len();
        devices.retain(|d| d.address != address);
        if devices.len() == before {
            return Err(DesktopError::Invalid(format!("no remembered device at {address}")));
        }
        self.save(&devices)?;
        Ok(devices)
    }

    fn save(&self, devices: &[Device]) -> Result<(), DesktopError> {
        let io = |e: std::io::Error| DesktopError::Io(format!("cannot write {}: {e}", self.path.display()));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(devices).map_err(|e| DesktopError::Io(e.to_string()))?;
        // Write a new file and rename it over the old one: never half a book.
        let tmp = self.path.with_extension("json.tmp");
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).and_then(|_| file.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(address: &str, token: &str) -> Device {
        Device { name: "pi".into(), address: address.into(), token: token.into() }
    }

    // Adding, replacing by address and removing persist; the file is 0600.
    #[test]
    fn remembers_devices() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let book = Book::at(&dir.path().join("sub/devices.json"));
        assert_eq!(book.load().unwrap(), vec![]);
        book.add(device("127.0.0.1:7080", "a")).unwrap();
        book.add(device("10.0.0.2:7080", "b")).unwrap();
        book.add(device("127.0.0.1:7080", "c")).unwrap();
        let again = Book::at(&dir.path().join("sub/devices.json")).load().unwrap();
        assert_eq!(again, vec![device("127.0.0.1:7080", "c"), device("10.0.0.2:7080", "b")]);
        let mode = std::fs::metadata(dir.path().join("sub/devices.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(book.remove("10.0.0.2:7080").unwrap().len(), 1);
        assert!(matches!(book.remove("10.0.0.2:7080"), Err(DesktopError::Invalid(_))));
        assert!(!format!("{:?}", device("x", "secret-token")).contains("secret-token"));
    }
}
