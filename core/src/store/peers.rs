//! Paired devices and pairing invitations: LOCAL tables (each device records
//! its own view of whom it trusts; nothing here replicates).

use rusqlite::{params, OptionalExtension};

use crate::log::version_vector::VersionVector;
use crate::model::{DeviceId, DeviceSlot};
use crate::store::{Store, StoreError, StoreResult};

/// A paired device as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's device id (its iroh endpoint id).
    pub device_id: DeviceId,
    /// Display name.
    pub name: String,
    /// Last known direct addresses (`ip:port`).
    pub addrs: Vec<String>,
    /// The peer's UID/MODSEQ slot.
    pub slot: DeviceSlot,
    /// When it was paired (ms since the epoch).
    pub paired_ms: u64,
    /// When it was removed, if it was: removed peers are refused.
    pub removed_ms: Option<u64>,
    /// Sync statistics.
    pub stats: PeerStats,
}

/// What the sync layer last recorded about a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Last frame received (ms since the epoch).
    pub last_seen_ms: Option<u64>,
    /// Events the peer confirmed having.
    pub acked: VersionVector,
    /// Bytes sent to it.
    pub bytes_sent: u64,
    /// Bytes received from it.
    pub bytes_received: u64,
    /// Last replication lag measured, in ms.
    pub lag_ms: Option<u64>,
}

/// Outcome of presenting a pairing secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteCheck {
    /// Valid: the invite is now used up.
    Accepted,
    /// No invite has this secret.
    Unknown,
    /// The invite expired.
    Expired,
    /// The invite was used already.
    AlreadyUsed,
}

fn secret_hash(secret: &[u8]) -> [u8; 32] {
    *blake3::hash(secret).as_bytes()
}

impl Store {
    /// Records a pairing invitation (only the secret's hash is stored).
    pub fn add_invite(&self, secret: &[u8], expires_ms: u64) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO pair_invites (secret_hash, expires_ms) VALUES (?1, ?2)",
            params![secret_hash(secret).as_slice(), expires_ms as i64],
        )?;
        Ok(())
    }

    /// Checks a presented secret and, if valid, marks the invite used, in one
    /// transaction so one secret pairs at most one device.
    pub fn consume_invite(&self, secret: &[u8], now_ms: u64) -> StoreResult<InviteCheck> {
        let tx = self.conn.unchecked_transaction()?;
        let row: Option<(i64, Option<i64>)> = tx
            .query_row(
                "SELECT expires_ms, used_ms FROM pair_invites WHERE secret_hash = ?1",
                [secret_hash(secret).as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let check = match row {
            None => InviteCheck::Unknown,
            Some((_, Some(_))) => InviteCheck::AlreadyUsed,
            Some((expires, None)) if (expires as u64) < now_ms => InviteCheck::Expired,
            Some(_) => {
                tx.execute(
                    "UPDATE pair_invites SET used_ms = ?2 WHERE secret_hash = ?1",
                    params![secret_hash(secret).as_slice(), now_ms as i64],
                )?;
                InviteCheck::Accepted
            }
        };
        tx.commit()?;
        Ok(check)
    }

    /// Adds or re-adds a peer (a removed peer paired again is trusted again).
    pub fn add_peer(
        &self,
        device_id: DeviceId,
        name: &str,
        slot: DeviceSlot,
        addrs: &[String],
        now_ms: u64,
    ) -> StoreResult<()> {
        if device_id == self.identity.id() {
            return Err(StoreError::Corrupt("a device cannot pair with itself".into()));
        }
        let addrs = serde_json::to_string(addrs).expect("strings serialise");
        self.conn.execute(
            "INSERT INTO peers (device_id, name, addrs, slot, paired_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (device_id) DO UPDATE SET name = excluded.name, addrs = excluded.addrs,
                 slot = excluded.slot, paired_ms = excluded.paired_ms, removed_ms = NULL",
            params![device_id.as_bytes().as_slice(), name, addrs, slot.get(), now_ms as i64],
        )?;
        Ok(())
    }

    /// A slot no known device uses, for a device that joins: the lowest free.
    pub fn free_slot(&self) -> StoreResult<Option<DeviceSlot>> {
        let mut used = vec![self.identity.slot()];
        used.extend(self.peers()?.iter().filter(|p| p.removed_ms.is_none()).map(|p| p.slot));
        Ok((0..crate::model::DEVICE_SLOTS).filter_map(DeviceSlot::new).find(|s| !used.contains(s)))
    }

    /// Changes this device's slot (when it joins a group that assigned it
    /// one). UIDs and MODSEQs issued before keep the old slot's bits; what
    /// is issued from now on uses the new one.
    pub fn set_slot(&mut self, slot: DeviceSlot) -> StoreResult<()> {
        self.conn.execute("UPDATE device SET slot = ?1 WHERE id = 1", [slot.get()])?;
        self.identity = crate::store::DeviceIdentity::new(self.identity.key().to_bytes(), slot);
        Ok(())
    }

    /// Records sync statistics of a peer, without an fsync of its own
    /// ([`crate::store::without_own_fsync`]): a session records them once a
    /// second under the store lock, and an fsync each time held that lock
    /// for a disk flush and delayed live pushes (p99 lag). Nothing
    /// acknowledged depends on them: a lost `acked` only delays compaction.
    pub fn record_peer_stats(&self, device_id: DeviceId, stats: &PeerStats) -> StoreResult<()> {
        let acked = serde_json::to_string(&stats.acked).expect("version vector serialises");
        crate::store::without_own_fsync(&self.conn, |conn| {
            conn.execute(
                "UPDATE peers SET last_seen_ms = ?2, acked = ?3, bytes_sent = ?4, bytes_received = ?5, lag_ms = ?6
                 WHERE device_id = ?1",
                params![
                    device_id.as_bytes().as_slice(),
                    stats.last_seen_ms.map(|v| v as i64),
                    acked,
                    stats.bytes_sent as i64,
                    stats.bytes_received as i64,
                    stats.lag_ms.map(|v| v as i64)
                ],
            )?;
            Ok(())
        })
    }

    /// Updates a peer's last known addresses.
    pub fn set_peer_addrs(&self, device_id: DeviceId, addrs: &[String]) -> StoreResult<()> {
        let addrs = serde_json::to_string(addrs).expect("strings serialise");
        self.conn.execute(
            "UPDATE peers SET addrs = ?2 WHERE device_id = ?1",
            params![device_id.as_bytes().as_slice(), addrs],
        )?;
        Ok(())
    }

    /// Marks a peer removed; returns false if there was no such active peer.
    pub fn remove_peer(&self, device_id: DeviceId, now_ms: u64) -> StoreResult<bool> {
        let n = self.conn.execute(
            "UPDATE peers SET removed_ms = ?2 WHERE device_id = ?1 AND removed_ms IS NULL",
            params![device_id.as_bytes().as_slice(), now_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// All peers, removed ones included, by pairing time.
    pub fn peers(&self) -> StoreResult<Vec<Peer>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT device_id, name, addrs, slot, paired_ms, removed_ms,
                    last_seen_ms, acked, bytes_sent, bytes_received, lag_ms
             FROM peers ORDER BY paired_ms",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let corrupt = |what: &str| StoreError::Corrupt(format!("peer {what}"));
            let id: Vec<u8> = r.get(0)?;
            let addrs: String = r.get(2)?;
            let acked: String = r.get(7)?;
            out.push(Peer {
                device_id: DeviceId::from_slice(&id).ok_or_else(|| corrupt("id"))?,
                name: r.get(1)?,
                addrs: serde_json::from_str(&addrs).map_err(|_| corrupt("addrs"))?,
                slot: DeviceSlot::new(r.get(3)?).ok_or_else(|| corrupt("slot"))?,
                paired_ms: r.get::<_, i64>(4)? as u64,
                removed_ms: r.get::<_, Option<i64>>(5)?.map(|m| m as u64),
                stats: PeerStats {
                    last_seen_ms: r.get::<_, Option<i64>>(6)?.map(|m| m as u64),
                    acked: serde_json::from_str(&acked).map_err(|_| corrupt("acked"))?,
                    bytes_sent: r.get::<_, i64>(8)? as u64,
                    bytes_received: r.get::<_, i64>(9)? as u64,
                    lag_ms: r.get::<_, Option<i64>>(10)?.map(|m| m as u64),
                },
            });
        }
        Ok(out)
    }

    /// Whether `device_id` is an active (paired, not removed) peer.
    pub fn is_active_peer(&self, device_id: DeviceId) -> StoreResult<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM peers WHERE device_id = ?1 AND removed_ms IS NULL",
                [device_id.as_bytes().as_slice()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceSlot;

    #[test]
    fn invites_are_one_time_and_expire() {
        let store = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 0).unwrap();
        store.add_invite(b"secret-a", 1_000).unwrap();
        store.add_invite(b"secret-b", 1_000).unwrap();
        assert_eq!(store.consume_invite(b"nope", 10).unwrap(), InviteCheck::Unknown);
        assert_eq!(store.consume_invite(b"secret-a", 10).unwrap(), InviteCheck::Accepted);
        assert_eq!(store.consume_invite(b"secret-a", 11).unwrap(), InviteCheck::AlreadyUsed);
        assert_eq!(store.consume_invite(b"secret-b", 1_001).unwrap(), InviteCheck::Expired);
    }

    #[test]
    fn removed_peers_are_not_active_until_paired_again() {
        let store = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 0).unwrap();
        let peer = DeviceId::from_bytes([9; 32]);
        assert!(!store.is_active_peer(peer).unwrap());
        let slot = store.free_slot().unwrap().unwrap();
        assert_eq!(slot.get(), 1);
        store.add_peer(peer, "pi", slot, &["127.0.0.1:1".into()], 5).unwrap();
        assert_eq!(store.free_slot().unwrap().unwrap().get(), 2);
        assert!(store.is_active_peer(peer).unwrap());
        assert!(store.remove_peer(peer, 6).unwrap());
        assert!(!store.is_active_peer(peer).unwrap());
        assert!(!store.remove_peer(peer, 7).unwrap());
        assert_eq!(store.peers().unwrap()[0].removed_ms, Some(6));
        store.add_peer(peer, "pi", slot, &[], 8).unwrap();
        assert!(store.is_active_peer(peer).unwrap());
        let me = store.identity().id();
        assert!(store.add_peer(me, "me", slot, &[], 9).is_err());
        let mut stats = PeerStats { last_seen_ms: Some(10), bytes_sent: 5, ..PeerStats::default() };
        stats.acked.set(me, 3);
        store.record_peer_stats(peer, &stats).unwrap();
        assert_eq!(store.peers().unwrap()[0].stats, stats);
        // Statistics skip their own fsync; every later commit must not.
        let synchronous: i64 = store.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(synchronous, 2, "synchronous=FULL again after recording statistics");
    }
}
