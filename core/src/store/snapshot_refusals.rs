//! Log snapshots this device refused (LOCAL table `snapshot_refusals`): a
//! device whose log holds events a peer's snapshot lacks cannot install it
//! (`snapshot_transfer.rs`), and the peer would stream the same image again
//! on every reconnect. The refusal is kept per peer by the snapshot's
//! vector; while it still holds, the sync session's Hello names it and the
//! peer does not send it, and `roost status` shows why.

use rusqlite::{params, OptionalExtension};

use crate::log::version_vector::VersionVector;
use crate::model::DeviceId;
use crate::store::{snapshot_transfer, Store, StoreError, StoreResult};

/// A peer's snapshot this device refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRefusal {
    /// The refused snapshot's vector: it names the snapshot (a peer's
    /// snapshot changes only when it compacts further or installs another).
    pub vector: VersionVector,
    /// The refusal's error, for people.
    pub reason: String,
    /// When it was refused (ms since the epoch).
    pub refused_ms: u64,
}

impl Store {
    /// Records that this device refused `peer`'s snapshot covering `vector`
    /// (replacing an earlier refusal of that peer's).
    pub fn record_snapshot_refusal(
        &self,
        peer: DeviceId,
        vector: &VersionVector,
        reason: &str,
        now_ms: u64,
    ) -> StoreResult<()> {
        let vector = serde_json::to_string(vector)
            .map_err(|e| StoreError::Corrupt(format!("version vector does not encode: {e}")))?;
        self.conn.execute(
            "INSERT OR REPLACE INTO snapshot_refusals (peer, vector, reason, refused_ms) VALUES (?1, ?2, ?3, ?4)",
            params![peer.as_bytes().as_slice(), vector, reason, now_ms as i64],
        )?;
        Ok(())
    }

    /// This device's refusal of `peer`'s snapshot, if it still holds: this
    /// device still lacks events of that snapshot, and its log still holds
    /// events the snapshot lacks. Otherwise `None` (the row stays until the
    /// next refusal replaces it; it no longer means anything).
    pub fn snapshot_refusal(&self, peer: DeviceId) -> StoreResult<Option<SnapshotRefusal>> {
        let row: Option<(String, String, i64)> = self
            .conn
            .query_row(
                "SELECT vector, reason, refused_ms FROM snapshot_refusals WHERE peer = ?1",
                [peer.as_bytes().as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((vector, reason, refused_ms)) = row else { return Ok(None) };
        let vector: VersionVector = serde_json::from_str(&vector)
            .map_err(|e| StoreError::Corrupt(format!("snapshot_refusals: a vector does not decode: {e}")))?;
        let needed = !self.version_vector()?.dominates(&vector);
        let still_refused = snapshot_transfer::require_covered(&self.conn, &vector).is_err();
        Ok((needed && still_refused).then_some(SnapshotRefusal { vector, reason, refused_ms: refused_ms as u64 }))
    }
}
