//! The Roost device on this machine: finding its admin API (the daemon writes
//! `admin-addr` into its data directory; the token is `admin.token` there) and
//! first-run setup of a new data directory (`roost init`'s library function).

use std::path::{Path, PathBuf};

use crate::book::Device;
use crate::DesktopError;

/// The data directory `roost` uses by default for this user.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "roost").map(|d| d.data_dir().to_path_buf())
}

/// The device whose data directory is `data_dir`, if its daemon runs.
pub fn find(data_dir: &Path) -> Result<Device, DesktopError> {
    let addr = std::fs::read_to_string(data_dir.join(roost::admin::ADDR_FILE)).map_err(|_| {
        DesktopError::Unreachable(format!("no running Roost daemon on {} (start `roost serve`)", data_dir.display()))
    })?;
    let token = roost::admin::load_token(data_dir).map_err(|e| DesktopError::Io(format!("{e:#}")))?;
    Ok(Device { name: "this computer".into(), address: addr.trim().to_string(), token: token.expose().to_string() })
}

/// Creates a data directory (device key, database, admin token), as
/// `roost init` does. The daemon is started separately (`roost serve`, or
/// the packaged systemd unit); the app then finds it with `find`.
pub fn init(data_dir: &Path) -> Result<(), DesktopError> {
    if data_dir.as_os_str().is_empty() || !data_dir.is_absolute() {
        return Err(DesktopError::Invalid(format!("{:?} is not an absolute path", data_dir.display())));
    }
    roost::cli::init::init_data_dir(data_dir).map_err(|e| DesktopError::Invalid(format!("{e:#}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // init makes a data directory with a token; a second init is refused; a
    // directory without a running daemon is reported as such.
    #[test]
    fn init_then_find() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("roost");
        init(&data).unwrap();
        assert!(data.join("admin.token").exists());
        assert!(matches!(init(&data), Err(DesktopError::Invalid(m)) if m.contains("already")));
        assert!(matches!(find(&data), Err(DesktopError::Unreachable(_))));
        std::fs::write(data.join("admin-addr"), "127.0.0.1:7080\n").unwrap();
        let device = find(&data).unwrap();
        assert_eq!(device.address, "127.0.0.1:7080");
        assert_eq!(device.token.len(), 64);
        assert!(matches!(init(Path::new("relative")), Err(DesktopError::Invalid(_))));
    }
}
