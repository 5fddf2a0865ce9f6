//! State digests and `verify`: the materialised state, table by table, hashed
//! over a canonical row order and leaving out LOCAL columns (MODSEQs, UID
//! watermarks). Two devices that applied the same events have equal digests;
//! a rebuild from the log alone has the digest of the live state.

use std::fmt;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::store::{Store, StoreResult};

/// The canonical query of each materialised table: replicated columns only,
/// in a total order.
const DIGEST_QUERIES: &[(&str, &str)] = &[
    ("users", "SELECT name, password_hash, keys, hlc, origin FROM users ORDER BY name"),
    ("user_keyring", "SELECT user, public_key, keys, hlc, origin FROM user_keyring ORDER BY user, public_key"),
    (
        "mailboxes",
        "SELECT id, user, name, name_hlc, name_origin, uid_validity, special_use, deleted FROM mailboxes ORDER BY id",
    ),
    (
        "mailbox_instances",
        "SELECT mailbox_id, tag_origin, tag_seq FROM mailbox_instances ORDER BY mailbox_id, tag_origin",
    ),
    ("subscriptions", "SELECT user, name, hlc, origin, subscribed FROM subscriptions ORDER BY user, name"),
    ("messages", "SELECT blob, size FROM messages ORDER BY blob"),
    (
        "mailbox_entries",
        "SELECT entry_id, mailbox_id, uid, item_id, blob, internal_date, added_origin, added_seq
         FROM mailbox_entries ORDER BY entry_id",
    ),
    ("item_flags", "SELECT item_id, flag, tag_origin, tag_seq FROM item_flags ORDER BY item_id, flag, tag_origin"),
    ("removed_entries", "SELECT entry_id FROM removed_entries ORDER BY entry_id"),
    ("entry_adds", "SELECT entry_id, tag_origin, tag_seq FROM entry_adds ORDER BY entry_id, tag_origin, tag_seq"),
];

/// LOCAL tables that are still a function of this device's log (replayed in
/// its order): compared by `verify`, not across devices. Tombstones are UIDs
/// that left a mailbox *here*; a device that never saw an entry at an
/// intermediate UID (a re-key overtaken by a higher one) has no tombstone for it.
const LOCAL_DIGEST_QUERIES: &[(&str, &str)] =
    &[("tombstones", "SELECT mailbox_id, uid, entry_id FROM tombstones ORDER BY mailbox_id, uid")];

/// Digest of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    /// Table name.
    pub table: &'static str,
    /// Number of rows.
    pub rows: u64,
    /// BLAKE3 over the canonical rows.
    pub hash: [u8; 32],
}

/// Digest of the whole materialised state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDigest {
    /// One per table, in a fixed order.
    pub tables: Vec<TableDigest>,
}

impl StateDigest {
    /// Tables whose digests differ, with both row counts.
    pub fn differences(&self, other: &StateDigest) -> Vec<String> {
        self.tables
            .iter()
            .zip(&other.tables)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("{}: {} rows vs {} rows, contents differ", a.table, a.rows, b.rows))
            .collect()
    }

    /// One hash over all tables.
    pub fn combined(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for t in &self.tables {
            h.update(&t.hash);
        }
        *h.finalize().as_bytes()
    }
}

impl fmt::Display for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            writeln!(f, "{:<18} {:>8} rows  {}", t.table, t.rows, &hex::encode(t.hash)[..16])?;
        }
        write!(f, "{:<18} {:>8}       {}", "all", "", &hex::encode(self.combined())[..16])
    }
}

pub(crate) fn digest(conn: &Connection) -> StoreResult<StateDigest> {
    digest_of(conn, DIGEST_QUERIES)
}

fn digest_of(conn: &Connection, queries: &[(&'static str, &str)]) -> StoreResult<StateDigest> {
    let mut tables = Vec::with_capacity(queries.len());
    for (table, sql) in queries {
        let mut stmt = conn.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([])?;
        let mut h = blake3::Hasher::new();
        let mut n = 0u64;
        while let Some(row) = rows.next()? {
            n += 1;
            for i in 0..columns {
                match row.get_ref(i)? {
                    ValueRef::Null => {
                        h.update(&[0]);
                    }
                    ValueRef::Integer(v) => {
                        h.update(&[1]);
                        h.update(&v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        h.update(&[2]);
                        h.update(&v.to_le_bytes());
                    }
                    ValueRef::Text(v) => {
                        h.update(&[3]);
                        h.update(&(v.len() as u64).to_le_bytes());
                        h.update(v);
                    }
                    ValueRef::Blob(v) => {
                        h.update(&[4]);
                        h.update(&(v.len() as u64).to_le_bytes());
                        h.update(v);
                    }
                }
            }
        }
        tables.push(TableDigest { table, rows: n, hash: *h.finalize().as_bytes() });
    }
    Ok(StateDigest { tables })
}

/// Outcome of [`Store::verify`].
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Digest of the live state.
    pub live: StateDigest,
    /// Digest of the state rebuilt from the log.
    pub rebuilt: StateDigest,
    /// Events replayed from the log.
    pub events: u64,
    /// Events the replay started from, folded into the log snapshot by
    /// compaction (0 if the log was never compacted).
    pub folded: u64,
    /// Problems found: differing tables and broken invariants. Empty when the
    /// store is sound.
    pub problems: Vec<String>,
}

impl Store {
    /// Digest of the materialised state.
    pub fn state_digest(&self) -> StoreResult<StateDigest> {
        digest(&self.conn)
    }

    /// Whole-state invariants (`merge::invariants`): one line per broken one.
    /// Cheaper than [`Store::verify`]; the simulator runs it after every step.
    pub fn check_invariants(&self) -> StoreResult<Vec<String>> {
        crate::merge::invariants::check(&self.conn)
    }

    /// Rebuilds the materialised state from the event log (on top of the log
    /// snapshot, if compaction folded a prefix) into a scratch database, compares digests table by table, and checks invariants.
    pub fn verify(&self) -> StoreResult<VerifyReport> {
        let read = self.conn.unchecked_transaction()?; // One consistent snapshot.
        let live = digest(&read)?;
        let live_local = digest_of(&read, LOCAL_DIGEST_QUERIES)?;
        let mut problems = crate::merge::invariants::check(&read)?;
        // The log snapshot (compaction) is where the replay starts, if any.
        let base = crate::store::compact::snapshot_base(&read, self.identity.id(), self.identity.slot())?;
        let folded = base.folded;
        let mut scratch = base.conn;
        let tx = scratch.transaction()?;
        let mut counter = folded;
        let events = crate::store::compact::replay_events(&read, &tx, None, &mut counter, self.identity.slot())?;
        let rebuilt = digest(&tx)?;
        let rebuilt_local = digest_of(&tx, LOCAL_DIGEST_QUERIES)?;
        for blob in crate::store::state::live_entry_blobs(&read)? {
            if !self.has_blob(&blob)? {
                problems.push(format!("message blob {} is missing from the blob store", blob.to_hex()));
            }
        }
        tx.rollback()?;
        read.finish()?;
        problems.extend(live.differences(&rebuilt));
        problems.extend(live_local.differences(&rebuilt_local));
        Ok(VerifyReport { live, rebuilt, events, folded, problems })
    }
}
