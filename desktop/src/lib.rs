//! Roost desktop app (Tauri 2). It remembers Roost devices (admin API address
//! and token), checks them, finds the device on this machine, runs first-run
//! setup of a local data directory, and shows a device's own web UI (served
//! by its daemon, the same UI a browser shows) in its window.
//!
//! - `book.rs`: the remembered devices (a 0600 JSON file).
//! - `probe.rs`: `GET /api/status` with a token, to check a device.
//! - `local.rs`: the device on this machine; `roost init` for a new one.
//! - `commands`: the Tauri commands, thin wrappers over the three above.
//!
//! The window starts on `ui/index.html` (the device list); opening a device
//! navigates to `http://<address>/#token=<token>`, whose UI stores the token
//! and drops it from the address bar.

#![forbid(unsafe_code)]

pub mod book;
pub mod local;
pub mod probe;

use std::path::PathBuf;

use serde::Serialize;

use crate::book::{Book, Device};

/// What went wrong, as the UI shows it.
#[derive(Debug, thiserror::Error)]
pub enum DesktopError {
    /// Malformed input (an address, a path, a token).
    #[error("{0}")]
    Invalid(String),
    /// The device refused the token.
    #[error("{0}")]
    WrongToken(String),
    /// The device does not answer, or is not a Roost admin API.
    #[error("{0}")]
    Unreachable(String),
    /// Reading or writing the app's files.
    #[error("{0}")]
    Io(String),
}

// Commands return errors to JavaScript as their message.
impl Serialize for DesktopError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What commands share.
#[derive(Debug)]
pub struct DesktopState {
    /// Remembered devices.
    pub book: Book,
}

/// A remembered device without its token (the token stays on the Rust side
/// until a device is opened).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceView {
    /// Name.
    pub name: String,
    /// Admin API address.
    pub address: String,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        DeviceView { name: d.name.clone(), address: d.address.clone() }
    }
}

/// The Tauri commands.
pub mod commands {
    use std::path::PathBuf;

    use tauri::State;

    use super::*;

    /// Remembered devices.
    #[tauri::command]
    pub fn list_devices(state: State<'_, DesktopState>) -> Result<Vec<DeviceView>, DesktopError> {
        Ok(state.book.load()?.iter().map(DeviceView::from).collect())
    }

    /// Checks a device with its token and remembers it.
    #[tauri::command(async)]
    pub fn add_device(
        state: State<'_, DesktopState>,
        address: String,
        token: String,
    ) -> Result<DeviceView, DesktopError> {
        let (address, token) = (address.trim().to_string(), token.trim().to_string());
        let probed = probe::status(&address, &token)?;
        let device = Device { name: probed.device_name, address, token };
        state.book.add(device.clone())?;
        Ok(DeviceView::from(&device))
    }

    /// Forgets a device.
    #[tauri::command]
    pub fn remove_device(state: State<'_, DesktopState>, address: String) -> Result<Vec<DeviceView>, DesktopError> {
        Ok(state.book.remove(&address)?.iter().map(DeviceView::from).collect())
    }

    /// Finds the running device on this machine (default data directory, or
    /// `data_dir`), checks it and remembers it.
    #[tauri::command(async)]
    pub fn add_local_device(
        state: State<'_, DesktopState>,
        data_dir: Option<String>,
    ) -> Result<DeviceView, DesktopError> {
        let dir = match data_dir.filter(|d| !d.trim().is_empty()) {
            Some(dir) => PathBuf::from(dir.trim()),
            None => local::default_data_dir().ok_or_else(|| DesktopError::Invalid("no home directory".into()))?,
        };
        let found = local::find(&dir)?;
        let probed = probe::status(&found.address, &found.token)?;
        let device = Device { name: probed.device_name, ..found };
        state.book.add(device.clone())?;
        Ok(DeviceView::from(&device))
    }

    /// First-run setup of a data directory on this machine (`roost init`).
    #[tauri::command(async)]
    pub fn setup_local(data_dir: String) -> Result<String, DesktopError> {
        let dir = PathBuf::from(data_dir.trim());
        local::init(&dir)?;
        Ok(format!("Created {}. Start the daemon with: roost --data-dir {} serve", dir.display(), dir.display()))
    }

    /// The address to open a remembered device's web UI at (with its token).
    #[tauri::command]
    pub fn device_url(state: State<'_, DesktopState>, address: String) -> Result<String, DesktopError> {
        let devices = state.book.load()?;
        let device = devices
            .iter()
            .find(|d| d.address == address)
            .ok_or_else(|| DesktopError::Invalid(format!("no remembered device at {address}")))?;
        Ok(format!("http://{}/#token={}", device.address, device.token))
    }
}

/// Registers state and commands on a builder (the app and the IPC tests).
pub fn setup<R: tauri::Runtime>(builder: tauri::Builder<R>, book_path: PathBuf) -> tauri::Builder<R> {
    builder.manage(DesktopState { book: Book::at(&book_path) }).invoke_handler(tauri::generate_handler![
        commands::list_devices,
        commands::add_device,
        commands::remove_device,
        commands::add_local_device,
        commands::setup_local,
        commands::device_url,
    ])
}

/// Where the app keeps its device book.
pub fn book_path() -> PathBuf {
    directories::ProjectDirs::from("org", "roost", "roost-desktop")
        .map(|d| d.config_dir().join("devices.json"))
        .unwrap_or_else(|| PathBuf::from("roost-desktop-devices.json"))
}

/// Runs the app.
pub fn run() -> Result<(), tauri::Error> {
    let book = std::env::var_os("ROOST_DESKTOP_BOOK").map(PathBuf::from).unwrap_or_else(book_path);
    setup(tauri::Builder::default(), book).run(tauri::generate_context!())
}
