//! The daemon's shared state and its lifecycle: one `Daemon` owns the store;
//! protocol tasks (IMAP, LMTP) call it and subscribe to its change feed.
//!
//! The store is not `Sync`, so it sits behind one mutex and every call runs on a
//! blocking thread (`spawn_blocking`): SQLite work never stalls the async
//! executor. Writes are durable when `write` returns; only then may a protocol
//! acknowledge.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{format_err, Context, Result};
use fs2::FileExt;
use tokio::sync::broadcast;

use roost_core::store::{Store, StoreError, StoreResult, Writer};
use roost_core::Effects;

use crate::cli::now_ms;
use crate::config::Config;

/// Capacity of the change feed. A session that falls this far behind resyncs
/// its mailbox from the store instead of replaying changes (`RecvError::Lagged`).
const CHANGE_FEED_CAPACITY: usize = 1024;

/// File that a running daemon holds an exclusive lock on.
pub const LOCK_FILE: &str = "roost.lock";

/// What protocol tasks share.
#[derive(Debug)]
pub struct Daemon {
    store: Arc<Mutex<Store>>,
    /// Every committed write's effects, for IDLE and NOOP updates of other sessions.
    changes: broadcast::Sender<Arc<Effects>>,
    /// The configuration the daemon started with.
    pub config: Config,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl Daemon {
    /// Wraps an open store.
    pub fn new(store: Store, config: Config, data_dir: PathBuf) -> Arc<Daemon> {
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        Arc::new(Daemon { store: Arc::new(Mutex::new(store)), changes, config, data_dir })
    }

    /// Runs `f` in one durable transaction on a blocking thread, then tells
    /// subscribers what changed.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer<'_>) -> StoreResult<T> + Send + 'static,
    {
        let store = self.store.clone();
        let (value, effects) = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            store.write(now_ms(), f)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
        if !effects.events.is_empty() {
            // No receivers is fine: nobody is connected.
            let _ = self.changes.send(Arc::new(effects));
        }
        Ok(value)
    }

    /// Runs a read on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&store)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    /// A receiver of every later committed change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Effects>> {
        self.changes.subscribe()
    }
}

/// Holds the data directory's daemon lock until dropped.
#[derive(Debug)]
pub struct DaemonLock {
    _file: std::fs::File,
}

/// Takes the exclusive daemon lock of a data directory, or says who has it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DaemonLock> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    file.try_lock_exclusive().map_err(|_| {
        format_err!("another `roost serve` is already running on {} (it holds {})", data_dir.display(), path.display())
    })?;
    Ok(DaemonLock { _file: file })
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
