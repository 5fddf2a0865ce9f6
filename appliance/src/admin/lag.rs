//! Lag history for the dashboard's plot: every `SAMPLE_INTERVAL` the sampler
//! reads each peer's state (`ops::peer_views`) and keeps the last
//! `SAMPLES_MAX` samples per peer in memory. The history starts empty when
//! the daemon starts; it is not persisted (the store keeps only the latest
//! lag per peer).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roost_core::model::DeviceId;

use crate::cli::now_ms;
use crate::serve::Daemon;
use crate::sync::SyncService;

/// How often a sample is taken.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept per peer: six hours at one per `SAMPLE_INTERVAL` (the plot
/// shows "the last hours"); 4320 samples of 40 bytes per peer.
pub const SAMPLES_MAX: usize = 6 * 3600 / 5;
/// Peers tracked at most (16 UID slots bound the pairings, removed ones linger).
const PEERS_MAX: usize = 64;

/// One sample.
#[derive(Debug, Clone, Copy)]
pub struct LagSample {
    /// When.
    pub t_ms: u64,
    /// Lag then.
    pub lag_ms: Option<u64>,
    /// Events the peer lacked.
    pub events_they_lack: u64,
    /// Events this device lacked.
    pub events_we_lack: u64,
    /// Whether a session was up.
    pub connected: bool,
}

/// Samples per peer, oldest first.
#[derive(Debug, Default)]
pub struct LagHistory {
    peers: Mutex<BTreeMap<DeviceId, VecDeque<LagSample>>>,
}

impl LagHistory {
    /// Adds a sample for `peer`, dropping the oldest past `SAMPLES_MAX`.
    pub fn record(&self, peer: DeviceId, sample: LagSample) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if !peers.contains_key(&peer) && peers.len() >= PEERS_MAX {
            return;
        }
        let samples = peers.entry(peer).or_default();
        if samples.len() == SAMPLES_MAX {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// A copy of every peer's samples.
    pub fn snapshot(&self) -> BTreeMap<DeviceId, Vec<LagSample>> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.iter().map(|(id, samples)| (*id, samples.iter().copied().collect())).collect()
    }
}

/// Samples every `SAMPLE_INTERVAL`, for the life of the runtime.
pub fn spawn_sampler(daemon: Arc<Daemon>, sync: Option<Arc<SyncService>>, history: Arc<LagHistory>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        // Runs for the life of the daemon.
        loop {
            tick.tick().await;
            let live = sync.as_ref().map(|s| s.connected_peers());
            let now = now_ms();
            let Ok(Ok(views)) = daemon.read(move |s| Ok(crate::ops::peer_views(s, live.as_deref(), now))).await else {
                continue;
            };
            for view in views {
                history.record(
                    view.device_id,
                    LagSample {
                        t_ms: now,
                        lag_ms: view.lag_ms,
                        events_they_lack: view.events_they_lack,
                        events_we_lack: view.events_we_lack,
                        connected: view.connected,
                    },
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    // The history keeps the newest SAMPLES_MAX samples per peer, oldest first.
    #[test]
    fn keeps_the_newest_samples() {
        let history = LagHistory::default();
        let peer = DeviceId::from_bytes([1; 32]);
        for t_ms in 0..(SAMPLES_MAX as u64 + 10) {
            let sample =
                LagSample { t_ms, lag_ms: Some(t_ms), events_they_lack: 0, events_we_lack: 0, connected: true };
            history.record(peer, sample);
        }
        let samples = &history.snapshot()[&peer];
        assert_eq!(samples.len(), SAMPLES_MAX);
        assert_eq!(samples[0].t_ms, 10);
        assert_eq!(samples[SAMPLES_MAX - 1].t_ms, SAMPLES_MAX as u64 + 9);
    }
}
