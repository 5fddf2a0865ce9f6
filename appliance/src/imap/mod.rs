//! The IMAP server (RFC 9051, RFC 3501 and the extensions phones use). Reading
//! order: `limits` (every bound), `framing` (bytes to messages), `extended`
//! (syntax imap-codec lacks), `conn` (the sans-IO state machine and its state
//! diagram), `cmd` (one module per command family), `selected` (the session's
//! view of a mailbox), `message` (ENVELOPE, BODYSTRUCTURE, sections), `wire`
//! (response syntax), `driver` (the only tokio loop), `tls`.
//!
//! [`serve`] takes a bound listener and a shutdown future, so the daemon and
//! the tests start it the same way (STYLE 18).

pub mod access;
#[cfg(test)]
mod client_commands;
pub mod cmd;
pub mod conn;
pub mod driver;
pub mod extended;
pub mod framing;
#[cfg(test)]
mod fuzz;
pub mod limits;
pub mod message;
pub mod names;
pub mod selected;
pub mod snapshot;
#[cfg(test)]
pub mod testing;
pub mod tls;
pub mod wire;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use roost_core::store::Store;
use roost_core::Effects;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use crate::imap::access::Access;
use crate::imap::limits::Limits;
use crate::imap::message::SummaryCache;
use crate::imap::snapshot::SnapshotCache;

/// What all IMAP connections share.
#[derive(Debug)]
pub struct ImapState {
    /// The device's store; `Store` is not `Sync`, so one lock, taken on
    /// blocking threads only.
    pub store: Arc<Mutex<Store>>,
    /// Committed changes, fanned out to every connection (the daemon's change
    /// feed, so LMTP deliveries reach IDLE too). A lagging receiver rescans
    /// its mailbox.
    pub changes: broadcast::Sender<Arc<Effects>>,
    /// Bounds.
    pub limits: Limits,
    /// Per-address and per-user counters.
    pub access: Access,
    /// ENVELOPE/BODYSTRUCTURE by blob.
    pub summaries: SummaryCache,
    /// Mailbox entries shared by the sessions that select a mailbox.
    pub snapshots: SnapshotCache,
    /// TLS configuration: enables STARTTLS on [`serve`] and is required by
    /// [`serve_tls`].
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connection tasks that panicked (metrics; tests assert zero).
    pub panics: AtomicUsize,
    /// The daemon, whose committer thread group-commits IMAP writes with
    /// every other write. None (tests, tools): each write commits alone.
    pub committer: Option<Arc<crate::serve::Daemon>>,
    /// The daemon's blob directory, so APPEND stores a blob without the lock.
    pub blobs: Option<Arc<roost_core::store::BlobStore>>,
    /// Read-only connections, so reads neither wait for a commit's fsync
    /// nor for each other. None (in-memory stores): reads take the lock.
    pub readers: Option<roost_core::store::StoreReaders>,
}

/// Most read-only connections the daemon's sessions share: reads are short
/// and CPU-bound, so more than two per core only adds page caches.
fn readers_max() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2).clamp(2, 8)
}

impl ImapState {
    /// Shared state around a store with its own change feed (tests, tools).
    pub fn new(store: Arc<Mutex<Store>>, limits: Limits, tls: Option<Arc<rustls::ServerConfig>>) -> ImapState {
        let (changes, _) = broadcast::channel(limits.change_queue_len);
        ImapState::with_changes(store, changes, limits, tls)
    }

    /// Shared state around the daemon's store and change feed.
    pub fn with_changes(
        store: Arc<Mutex<Store>>,
        changes: broadcast::Sender<Arc<Effects>>,
        limits: Limits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> ImapState {
        limits.check();
        ImapState {
            store,
            changes,
            access: Access::new(limits.clone()),
            limits,
            summaries: SummaryCache::default(),
            snapshots: SnapshotCache::default(),
            tls,
            panics: AtomicUsize::new(0),
            committer: None,
            blobs: None,
            readers: None,
        }
    }

    /// Shared state around a daemon: its store and change feed, and its
    /// committer for writes (group commit) with the blob directory beside it.
    pub fn for_daemon(
        daemon: Arc<crate::serve::Daemon>,
        limits: Limits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<ImapState> {
        let (store, changes) = daemon.imap_parts();
        let readers = store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .readers(readers_max())
            .context("cannot open read connections to the store")?;
        let mut state = ImapState::with_changes(store, changes, limits, tls);
        state.readers = Some(readers);
        let blob_dir = daemon.data_dir.join(roost_core::store::BLOB_DIR);
        state.blobs = Some(Arc::new(
            roost_core::store::BlobStore::open_dir(&blob_dir)
                .with_context(|| format!("cannot open the blob store {}", blob_dir.display()))?,
        ));
        state.committer = Some(daemon);
        Ok(state)
    }

    /// Tells every session (and other daemon parts) about a committed write.
    pub fn notify(&self, effects: Arc<Effects>) {
        // No receivers is fine: nobody is connected.
        let _ = self.changes.send(effects);
    }
}

/// The running IMAP listeners.
#[derive(Debug)]
pub struct Listeners {
    /// Serves until `stop` turns true; ends when the connections have closed.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The certificate every new TLS handshake uses; SIGHUP reloads it.
    pub cert: Arc<tls::ReloadableCert>,
}

/// Binds the IMAP listeners of the daemon's configuration (so a port in use
/// fails start-up, not shutdown), then serves them in a task until `stop`
/// turns true; the task ends when their connections have closed.
pub async fn start_listeners(
    daemon: Arc<crate::serve::Daemon>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Listeners> {
    let imap = &daemon.config.imap;
    let cert =
        tls::ReloadableCert::load_or_create(&daemon.data_dir, imap.tls_cert.as_deref(), imap.tls_key.as_deref())?;
    let limits = Limits::from_config(imap)?;
    let state = Arc::new(ImapState::for_daemon(daemon.clone(), limits, Some(cert.server_config()))?);
    let mut bound = Vec::new();
    for (addrs, kind) in [(&imap.listen, ListenerKind::Plain), (&imap.listen_tls, ListenerKind::ImplicitTls)] {
        for addr in addrs {
            let listener =
                TcpListener::bind(addr).await.with_context(|| format!("cannot listen for IMAP on {addr}"))?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(*addr), ?kind, "IMAP listening");
            bound.push((listener, kind));
        }
    }
    let task = tokio::spawn(async move {
        let mut listeners = JoinSet::new();
        for (listener, kind) in bound {
            let mut stop = stop.clone();
            let shutdown = async move {
                // Either a stop or a dropped sender ends serving.
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            listeners.spawn(serve_kind(listener, state.clone(), kind, shutdown));
        }
        while let Some(res) = listeners.join_next().await {
            res.context("IMAP listener task failed")??;
        }
        Ok(())
    });
    Ok(Listeners { task, cert })
}

/// How connections on a listener start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Cleartext with STARTTLS when a TLS config exists (port 143).
    Plain,
    /// TLS from the first byte (port 993).
    ImplicitTls,
}

/// Serves cleartext IMAP (with STARTTLS when `state.tls` is set) until
/// `shutdown` completes; then tells clients BYE and waits for them.
pub async fn serve(listener: TcpListener, state: Arc<ImapState>, shutdown: impl Future) -> anyhow::Result<()> {
    serve_kind(listener, state, ListenerKind::Plain, shutdown).await
}

/// Serves IMAP over implicit TLS (port 993).
pub async fn serve_tls(listener: TcpListener, state: Arc<ImapState>, shutdown: impl Future) -> anyhow::Result<()> {
    if state.tls.is_none() {
        anyhow::bail!("implicit TLS listener without a TLS configuration");
    }
    serve_kind(listener, state, ListenerKind::ImplicitTls, shutdown).await
}

async fn serve_kind(
    listener: TcpListener,
    state: Arc<ImapState>,
    kind: ListenerKind,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    // Connections watch this to say BYE and close when the server stops.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut next_id: u64 = 0;
    // Runs until shutdown: accepting is the server's whole life.
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: log and keep serving the others.
                        tracing::warn!(error = %e, "IMAP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                next_id += 1;
                let id = next_id;
                let state = state.clone();
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    if let Err(e) = driver::run(socket, peer, state, kind, stop).await {
                        tracing::debug!(conn = id, error = %e, "IMAP connection ended with an error");
                    }
                    id
                });
            }
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                reap(&state, done);
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = connections.join_next().await {
        reap(&state, done);
    }
    Ok(())
}

fn reap(state: &ImapState, done: Result<u64, tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            // STYLE 26: a panic ends that connection only, and is counted.
            state.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "IMAP connection task panicked");
        }
    }
}
