//! The admin HTTP API (JSON, axum) and the web UI it serves, inside the daemon.
//!
//! - `router.rs`: routes, token authentication, handlers. Handlers call
//!   `crate::ops` and `roost-core`, the same functions the CLI calls; they
//!   only convert between HTTP and those calls.
//! - `dto.rs`: the JSON types of the API, converted from core types by hand.
//! - `metrics.rs`: Prometheus text for `/metrics`.
//! - `lag.rs`: an in-memory history of each peer's lag for the dashboard plot.
//! - `client_setup.rs`: IMAP settings, Thunderbird autoconfig, Apple profile.
//! - `assets.rs`: the web UI (`appliance/web/`), embedded in the binary.
//!
//! Authentication: every `/api/*` and `/metrics` request carries
//! `Authorization: Bearer <token>`; the token is the 0600 file `admin.token`
//! in the data directory, made by `roost init` (or by the first daemon start
//! on an older data directory) and printed by `roost admin token`. It is
//! compared in constant time and never logged. A paired device may instead
//! sign the request with its device key (`device_auth.rs`). The UI's static
//! files need no token (they hold no data).
//!
//! The API listens on loopback by default (`[admin] listen`, or
//! `roost serve --listen-admin ADDR`). The bound address is written to
//! `admin-addr` in the data directory, for tests and local tools.

pub mod assets;
pub mod client_setup;
pub mod device_auth;
pub mod dto;
pub mod lag;
pub mod metrics;
pub mod router;

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{format_err, Context, Result};
use rand::RngCore;

use crate::serve::Daemon;
use crate::sync::SyncService;

/// File in the data directory that holds the admin token (hex, mode 0600).
pub const TOKEN_FILE: &str = "admin.token";
/// File in the data directory where the daemon writes the admin API's bound address.
pub const ADDR_FILE: &str = "admin-addr";

/// The admin token. Its `Debug` is redacted so it cannot reach a log line.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// The token text, for comparing and for `roost admin token`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Path of the token file in `data_dir`.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Creates a new token file (256 random bits, hex); fails if one exists.
pub fn create_token(data_dir: &Path) -> Result<AdminToken> {
    let path = token_path(data_dir);
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create admin token {}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write admin token {}", path.display()))?;
    Ok(AdminToken(token))
}

/// Reads the token file, refusing one that other users can read.
pub fn load_token(data_dir: &Path) -> Result<AdminToken> {
    let path = token_path(data_dir);
    let meta = std::fs::metadata(&path).with_context(|| format!("cannot read admin token {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format_err!(
            "admin token {} is readable by other users (mode {:o}): run chmod 600 on it",
            path.display(),
            mode & 0o777
        ));
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read admin token {}", path.display()))?;
    let token = text.trim();
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format_err!("admin token {} is not 64 hex digits", path.display()));
    }
    Ok(AdminToken(token.to_string()))
}

/// The token, created first if the data directory predates admin tokens.
pub fn ensure_token(data_dir: &Path) -> Result<AdminToken> {
    if token_path(data_dir).exists() {
        load_token(data_dir)
    } else {
        create_token(data_dir)
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The daemon (store, committer, config, data dir).
    pub daemon: Arc<Daemon>,
    /// The sync service, for live connection state and ticket addresses.
    /// `None` when sync is not running (tests of the API alone).
    pub sync: Option<Arc<SyncService>>,
    /// The token requests must present.
    pub token: AdminToken,
    /// Lag samples per peer, for the dashboard plot.
    pub lag: Arc<lag::LagHistory>,
    /// The config file the daemon read, which backups carry.
    pub config_file: Option<std::path::PathBuf>,
}

/// Binds the admin listeners, writes `admin-addr`, and serves until the
/// runtime ends. Returns the bound addresses. A listener that cannot bind is
/// an error: the caller decides whether the daemon runs without the API.
pub async fn start(
    daemon: Arc<Daemon>,
    sync: Option<Arc<SyncService>>,
    listen: &[SocketAddr],
    config_file: Option<std::path::PathBuf>,
) -> Result<Vec<SocketAddr>> {
    let addr_path = daemon.data_dir.join(ADDR_FILE);
    let _ = std::fs::remove_file(&addr_path);
    let token = ensure_token(&daemon.data_dir)?;
    let lag = Arc::new(lag::LagHistory::default());
    lag::spawn_sampler(daemon.clone(), sync.clone(), lag.clone());
    let state = AdminState { daemon: daemon.clone(), sync, token, lag, config_file };
    let mut bound = Vec::new();
    for addr in listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the admin API to {addr}"))?;
        let local = listener.local_addr()?;
        bound.push(local);
        let app = router::router(state.clone());
        tokio::spawn(async move {
            // Serves for the life of the daemon.
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
    }
    if let Some(first) = bound.first() {
        std::fs::write(&addr_path, format!("{first}\n"))
            .with_context(|| format!("cannot write {}", addr_path.display()))?;
        tracing::info!(addrs = ?bound, "admin API listening");
    }
    Ok(bound)
}
