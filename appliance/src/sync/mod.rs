//! Device-to-device sync over QUIC (iroh). Each device has one endpoint whose
//! key is the device key; only paired devices are accepted (checked right
//! after the handshake). Two ALPNs:
//! - `roost/pair/1`: a joiner presents a one-time secret from a ticket.
//! - `roost/sync/1`: both sides send `Hello` with their version vector, then
//!   each streams the events the other lacks, in causal order, and pushes new
//!   events as they commit. Before applying events, the receiver fetches the
//!   blobs they name over separate streams and checks their hashes. A peer
//!   below the sender's log snapshot gets the snapshot first (`snapshot.rs`).
//!
//! Relays and discovery are off unless the config names relays: tests and
//! LANs use direct addresses only.

pub mod frames;
pub mod messages;
pub mod pairing;
pub mod session;
pub mod snapshot;
pub mod ticket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{format_err, Context, Result};
use iroh::endpoint::presets;
use iroh::{Endpoint, EndpointAddr, SecretKey, TransportAddr};

use roost_core::model::DeviceId;

use crate::serve::Daemon;

/// ALPN of the sync protocol.
pub const SYNC_ALPN: &[u8] = b"roost/sync/1";
/// ALPN of pairing.
pub const PAIR_ALPN: &[u8] = b"roost/pair/1";

/// File in the data directory where the daemon writes the addresses peers
/// should dial, so `roost pair invite` (another process) can put them in a
/// ticket.
pub const ADDRS_FILE: &str = "sync-addrs.json";

/// How often the dialer looks for peers to connect to.
const DIAL_INTERVAL: Duration = Duration::from_millis(500);
/// Reconnect backoff: first wait, and the cap (a device offline for a week is
/// retried every minute, not hammered).
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How long a new entry waits before IMAP shows it while a peer is
/// connected. The mechanism (core `Store::expose`) holds new UIDs so that a
/// peer's concurrent lower UIDs arrive first and need no re-key; but it also
/// adds the hold to every message's replication lag. Measured: a 100 ms hold
/// took the p50 lag at 40 ms one-way from 77 ms to 181 ms, while re-keys need
/// two appends to one mailbox on two devices within one round trip, which a
/// personal mailbox almost never sees. So the policy is off (0) until the
/// simulator's re-key rate says otherwise.
const EXPOSURE_HOLD: Duration = Duration::ZERO;
/// How often held entries are checked for exposure.
const EXPOSURE_TICK: Duration = Duration::from_millis(25);

/// Options of the sync service.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Addresses to bind the endpoint to.
    pub listen: Vec<SocketAddr>,
    /// Addresses peers should dial (tickets, Hello); empty: the bound ones.
    pub advertise: Vec<SocketAddr>,
}

/// A running sync service.
#[derive(Debug)]
pub struct SyncService {
    endpoint: Endpoint,
    advertise: Vec<SocketAddr>,
    daemon: Arc<Daemon>,
    /// Live sessions by peer; the tie-break keeps one per pair of devices.
    sessions: Mutex<HashMap<DeviceId, SessionSlot>>,
}

#[derive(Debug)]
struct SessionSlot {
    /// Which side dialled: both sides keep the connection dialled by the lower id.
    dialled_by: DeviceId,
    conn: iroh::endpoint::Connection,
    started: tokio::time::Instant,
}

/// Two connections between the same devices within this window are a
/// simultaneous dial, settled by the id tie-break. A later second connection
/// means the peer lost the first (it restarted, or the path died before QUIC's
/// idle timeout noticed), so the new one replaces it.
const SIMULTANEOUS_DIAL_WINDOW: Duration = Duration::from_secs(3);

/// Binds the endpoint and starts accepting and dialling. Runs until the
/// daemon's runtime ends.
pub async fn start(daemon: Arc<Daemon>, options: SyncOptions) -> Result<Arc<SyncService>> {
    let secret = crate::device::load_key(&daemon.data_dir)?;
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(SecretKey::from_bytes(&secret))
        .alpns(vec![SYNC_ALPN.to_vec(), PAIR_ALPN.to_vec()])
        .clear_ip_transports();
    for addr in &options.listen {
        builder = builder.bind_addr(*addr).map_err(|e| format_err!("sync listen address {addr}: {e}"))?;
    }
    let endpoint = builder.bind().await.map_err(|e| format_err!("cannot bind the sync endpoint: {e}"))?;
    let bound = endpoint.bound_sockets();
    let advertise = if options.advertise.is_empty() { bound.clone() } else { options.advertise.clone() };
    write_addrs_file(&daemon.data_dir, &advertise)?;
    tracing::info!(bound = ?bound, advertised = ?advertise, id = %endpoint.id(), "sync endpoint bound");
    let service = Arc::new(SyncService { endpoint, advertise, daemon, sessions: Mutex::new(HashMap::new()) });
    tokio::spawn(service.clone().accept_loop());
    tokio::spawn(service.clone().dial_loop());
    tokio::spawn(service.clone().exposure_loop());
    Ok(service)
}

impl SyncService {
    /// The addresses peers should dial.
    pub fn advertised_addrs(&self) -> Vec<SocketAddr> {
        self.advertise.clone()
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_bytes(*self.endpoint.id().as_bytes())
    }

    /// Peers with a live session.
    pub fn connected_peers(&self) -> Vec<DeviceId> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// Drives stability-gated exposure: while a peer is connected, a new
    /// entry waits `EXPOSURE_HOLD` before IMAP shows its UID, so a peer's
    /// concurrent entries with lower UIDs arrive first and need no re-key;
    /// with no peer connected nothing waits.
    async fn exposure_loop(self: Arc<Self>) {
        // Runs for the life of the endpoint.
        loop {
            tokio::time::sleep(EXPOSURE_TICK).await;
            let hold = if self.connected_peers().is_empty() { 0 } else { EXPOSURE_HOLD.as_millis() as u64 };
            if let Err(e) = self.daemon.expose(hold).await {
                tracing::warn!(error = %e, "exposing held entries failed");
            }
        }
    }

    async fn accept_loop(self: Arc<Self>) {
        // Runs for the life of the endpoint.
        while let Some(incoming) = self.endpoint.accept().await {
            let service = self.clone();
            tokio::spawn(async move {
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(error = %e, "incoming sync connection failed");
                        return;
                    }
                };
                let peer = DeviceId::from_bytes(*conn.remote_id().as_bytes());
                if conn.alpn() == PAIR_ALPN {
                    if let Err(e) = pairing::serve_pairing(&service.daemon, conn).await {
                        tracing::warn!(peer = %peer.short(), error = %format!("{e:#}"), "pairing failed");
                    }
                    return;
                }
                let paired = service.daemon.read(move |s| s.is_active_peer(peer)).await.unwrap_or(false);
                if !paired {
                    tracing::warn!(peer = %peer, "refused a sync connection from a device that is not paired");
                    conn.close(1u32.into(), b"not paired");
                    return;
                }
                service.run(conn, peer, peer).await;
            });
        }
    }

    async fn dial_loop(self: Arc<Self>) {
        let me = self.device_id();
        let mut backoff: HashMap<DeviceId, (Duration, tokio::time::Instant)> = HashMap::new();
        // Runs for the life of the endpoint.
        loop {
            tokio::time::sleep(DIAL_INTERVAL).await;
            let Ok(peers) = self.daemon.read(|s| s.peers()).await else { continue };
            // A peer removed (by `roost pair remove`, another process) loses its session now.
            for peer in peers.iter().filter(|p| p.removed_ms.is_some()) {
                if let Some(slot) = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer.device_id) {
                    tracing::info!(peer = %peer.device_id.short(), "closing the session of a removed device");
                    slot.conn.close(1u32.into(), b"not paired");
                }
            }
            for peer in peers.into_iter().filter(|p| p.removed_ms.is_none()) {
                let connected = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&peer.device_id);
                let now = tokio::time::Instant::now();
                let due = backoff.get(&peer.device_id).is_none_or(|(_, at)| *at <= now);
                if connected || !due {
                    continue;
                }
                let addrs: Vec<SocketAddr> = peer.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                if addrs.is_empty() {
                    continue;
                }
                let Ok(key) = iroh::PublicKey::from_bytes(peer.device_id.as_bytes()) else { continue };
                let target = EndpointAddr { id: key, addrs: addrs.into_iter().map(TransportAddr::Ip).collect() };
                let next = backoff.get(&peer.device_id).map_or(BACKOFF_MIN, |(d, _)| (*d * 2).min(BACKOFF_MAX));
                backoff.insert(peer.device_id, (next, now + next));
                let service = self.clone();
                let peer_id = peer.device_id;
                tokio::spawn(async move {
                    match service.endpoint.connect(target, SYNC_ALPN).await {
                        Ok(conn) => service.run(conn, peer_id, me).await,
                        Err(e) => tracing::debug!(peer = %peer_id.short(), error = %e, "dial failed"),
                    }
                });
            }
            // A peer that is connected again starts from the first backoff step next time.
            let live: Vec<DeviceId> = self.connected_peers();
            backoff.retain(|peer, _| !live.contains(peer));
        }
    }

    /// Registers a session (keeping one per peer) and runs it to its end.
    async fn run(self: &Arc<Self>, conn: iroh::endpoint::Connection, peer: DeviceId, dialled_by: DeviceId) {
        let me = self.device_id();
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(existing) = sessions.get(&peer) {
                let alive = existing.conn.close_reason().is_none();
                let simultaneous = existing.started.elapsed() < SIMULTANEOUS_DIAL_WINDOW;
                // In a simultaneous dial both sides keep the connection dialled by the lower id.
                let keep_new = !alive || !simultaneous || dialled_by == me.min(peer);
                if !keep_new {
                    conn.close(2u32.into(), b"duplicate connection");
                    return;
                }
                existing.conn.close(2u32.into(), b"duplicate connection");
            }
            sessions.insert(peer, SessionSlot { dialled_by, conn: conn.clone(), started: tokio::time::Instant::now() });
        }
        let dialer = dialled_by == me;
        let res = session::run(&self.daemon, conn.clone(), peer, dialer, self.advertised_addrs()).await;
        if let Err(e) = &res {
            tracing::info!(peer = %peer.short(), error = %format!("{e:#}"), "sync session ended");
            conn.close(3u32.into(), format!("{e:#}").as_bytes());
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.get(&peer).is_some_and(|s| s.conn.stable_id() == conn.stable_id() && s.dialled_by == dialled_by) {
            sessions.remove(&peer);
        }
    }
}

fn write_addrs_file(data_dir: &Path, addrs: &[SocketAddr]) -> Result<()> {
    let path = data_dir.join(ADDRS_FILE);
    let text = serde_json::to_string(&addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>())?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The sync addresses a running daemon wrote, for tickets.
pub fn read_addrs_file(data_dir: &Path) -> Result<Vec<SocketAddr>> {
    let path: PathBuf = data_dir.join(ADDRS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {} (is `roost serve` running on this data directory?)", path.display())
    })?;
    let addrs: Vec<String> = serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))?;
    addrs.iter().map(|a| a.parse().map_err(|e| format_err!("{}: bad address {a}: {e}", path.display()))).collect()
}
