//! Paired devices and pairing invitations: LOCAL tables (each device records
//! its own view of whom it trusts; nothing here replicates).

use rusqlite::{params, OptionalExtension};

use crate::model::DeviceId;
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
    /// When it was paired (ms since the epoch).
    pub paired_ms: u64,
    /// When it was removed, if it was: removed peers are refused.
    pub removed_ms: Option<u64>,
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
    pub fn add_invite(&mut self, secret: &[u8], expires_ms: u64) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO pair_invites (secret_hash, expires_ms) VALUES (?1, ?2)",
            params![secret_hash(secret).as_slice(), expires_ms as i64],
        )?;
        Ok(())
    }

    /// Checks a presented secret and, if valid, marks the invite used, in one
    /// transaction so one secret pairs at most one device.
    pub fn consume_invite(&mut self, secret: &[u8], now_ms: u64) -> StoreResult<InviteCheck> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
    pub fn add_peer(&mut self, device_id: DeviceId, name: &str, addrs: &[String], now_ms: u64) -> StoreResult<()> {
        if device_id == self.identity.id() {
            return Err(StoreError::Corrupt("a device cannot pair with itself".into()));
        }
        let addrs = serde_json::to_string(addrs).expect("strings serialise");
        self.conn.execute(
            "INSERT INTO peers (device_id, name, addrs, paired_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id) DO UPDATE SET name = excluded.name, addrs = excluded.addrs,
                 paired_ms = excluded.paired_ms, removed_ms = NULL",
            params![device_id.as_bytes().as_slice(), name, addrs, now_ms as i64],
        )?;
        Ok(())
    }

    /// Updates a peer's last known addresses.
    pub fn set_peer_addrs(&mut self, device_id: DeviceId, addrs: &[String]) -> StoreResult<()> {
        let addrs = serde_json::to_string(addrs).expect("strings serialise");
        self.conn.execute(
            "UPDATE peers SET addrs = ?2 WHERE device_id = ?1",
            params![device_id.as_bytes().as_slice(), addrs],
        )?;
        Ok(())
    }

    /// Marks a peer removed; returns false if there was no such active peer.
    pub fn remove_peer(&mut self, device_id: DeviceId, now_ms: u64) -> StoreResult<bool> {
        let n = self.conn.execute(
            "UPDATE peers SET removed_ms = ?2 WHERE device_id = ?1 AND removed_ms IS NULL",
            params![device_id.as_bytes().as_slice(), now_ms as i64],
        )?;
        Ok(n == 1)
    }

    /// All peers, removed ones included, by pairing time.
    pub fn peers(&self) -> StoreResult<Vec<Peer>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device_id, name, addrs, paired_ms, removed_ms FROM peers ORDER BY paired_ms")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        rows.map(|r| {
            let (id, name, addrs, paired_ms, removed_ms) = r?;
            Ok(Peer {
                device_id: DeviceId::from_slice(&id).ok_or_else(|| StoreError::Corrupt("peer id".into()))?,
                name,
                addrs: serde_json::from_str(&addrs).map_err(|e| StoreError::Corrupt(format!("peer addrs: {e}")))?,
                paired_ms: paired_ms as u64,
                removed_ms: removed_ms.map(|m| m as u64),
            })
        })
        .collect()
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
        let mut store = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 0).unwrap();
        store.add_invite(b"secret-a", 1_000).unwrap();
        store.add_invite(b"secret-b", 1_000).unwrap();
        assert_eq!(store.consume_invite(b"nope", 10).unwrap(), InviteCheck::Unknown);
        assert_eq!(store.consume_invite(b"secret-a", 10).unwrap(), InviteCheck::Accepted);
        assert_eq!(store.consume_invite(b"secret-a", 11).unwrap(), InviteCheck::AlreadyUsed);
        assert_eq!(store.consume_invite(b"secret-b", 1_001).unwrap(), InviteCheck::Expired);
    }

    #[test]
    fn removed_peers_are_not_active_until_paired_again() {
        let mut store = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), 0).unwrap();
        let peer = DeviceId::from_bytes([9; 32]);
        assert!(!store.is_active_peer(peer).unwrap());
        store.add_peer(peer, "pi", &["127.0.0.1:1".into()], 5).unwrap();
        assert!(store.is_active_peer(peer).unwrap());
        assert!(store.remove_peer(peer, 6).unwrap());
        assert!(!store.is_active_peer(peer).unwrap());
        assert!(!store.remove_peer(peer, 7).unwrap());
        assert_eq!(store.peers().unwrap()[0].removed_ms, Some(6));
        store.add_peer(peer, "pi", &[], 8).unwrap();
        assert!(store.is_active_peer(peer).unwrap());
        let me = store.identity().id();
        assert!(store.add_peer(me, "me", &[], 9).is_err());
    }
}
