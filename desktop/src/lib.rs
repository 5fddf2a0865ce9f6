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
//! and drops it from the address bar. That page is the device's, not the
//! app's, so the app adds an "All devices" link back to the list to it
//! (`back_link_script`, run when such a page has loaded).

#![forbid(unsafe_code)]

pub mod book;
pub mod local;
pub mod probe;

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use tauri::webview::PageLoadEvent;
use tauri::{Manager, Url};

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
    /// The app's own page (the device list), noted when a device is opened
    /// from it: device pages link back to it. Its scheme differs by platform
    /// (`tauri://localhost` here), so it is noted rather than assumed.
    pub home: Mutex<Option<Url>>,
}

/// The id of the link back to the device list on a device's page.
pub const BACK_LINK_ID: &str = "roost-desktop-devices";

/// A script that adds an "All devices" link to `home` at the top of a page
/// that is not the app's own (a device's web UI), or `None` on the app's
/// own pages. Idempotent: the link is added once per page.
pub fn back_link_script(home: &Url, page: &Url) -> Option<String> {
    // Not `Url::origin`: `tauri://` origins are opaque and never equal.
    let site = |u: &Url| (u.scheme().to_string(), u.host_str().map(str::to_string), u.port_or_known_default());
    if site(page) == site(home) {
        return None;
    }
    // serde_json quotes the URL as a JavaScript string literal.
    let home = serde_json::to_string(home.as_str()).ok()?;
    let id = serde_json::to_string(BACK_LINK_ID).ok()?;
    Some(format!(
        "(() => {{ if (document.getElementById({id})) return; \
         const link = document.createElement('a'); link.id = {id}; link.href = {home}; \
         link.textContent = '\u{2190} All devices'; link.style.display = 'inline-block'; \
         link.style.margin = '0.5rem 1rem'; \
         (document.querySelector('header') || document.body).prepend(link); }})();"
    ))
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
    /// Notes the calling page as the app's home (see `DesktopState::home`).
    #[tauri::command]
    pub fn device_url<R: tauri::Runtime>(
        webview: tauri::Webview<R>,
        state: State<'_, DesktopState>,
        address: String,
    ) -> Result<String, DesktopError> {
        if let Ok(page) = webview.url() {
            *state.home.lock().unwrap_or_else(PoisonError::into_inner) = Some(page);
        }
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
    builder
        .manage(DesktopState { book: Book::at(&book_path), home: Mutex::new(None) })
        .on_page_load(add_back_link)
        .invoke_handler(tauri::generate_handler![
            commands::list_devices,
            commands::add_device,
            commands::remove_device,
            commands::add_local_device,
            commands::setup_local,
            commands::device_url,
        ])
}

/// On a device's page, once loaded: the link back to the device list.
fn add_back_link<R: tauri::Runtime>(webview: &tauri::Webview<R>, payload: &tauri::webview::PageLoadPayload<'_>) {
    if payload.event() != PageLoadEvent::Finished {
        return;
    }
    let home = webview.state::<DesktopState>().home.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(script) = home.and_then(|home| back_link_script(&home, payload.url())) {
        if let Err(e) = webview.eval(&script) {
            eprintln!("roost-desktop: cannot add the link back to the device list: {e}");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    // Device pages get the link back; the app's own pages do not.
    #[test]
    fn back_link_only_on_device_pages() {
        let home: Url = "tauri://localhost".parse().unwrap();
        let device: Url = "http://127.0.0.1:7080/#dashboard".parse().unwrap();
        let script = back_link_script(&home, &device).unwrap();
        assert!(script.contains(r#"link.href = "tauri://localhost""#), "{script}");
        assert!(script.contains(r#"getElementById("roost-desktop-devices")"#), "{script}");
        assert_eq!(back_link_script(&home, &"tauri://localhost/index.html".parse().unwrap()), None);
    }
}
