//! Snapshot transfer: how a device that lacks events a peer folded into its
//! log snapshot (a device paired after the peer compacted) catches up. The
//! peer offers its snapshot image with the vector it covers and a digest of
//! its replicated state ([`Store::snapshot_offer`]); this device checks the
//! image ([`ReceivedSnapshot::check`]) and installs it
//! ([`Store::install_snapshot`]) as its own log snapshot *and* materialised
//! state, after which the events above the vector stream as usual.
//!
//! What is whose (docs/replication.md, "Snapshot transfer"):
//! - replicated tables (the digest's) and the version vector come from the
//!   image as they are;
//! - the image's LOCAL rows that are a function of the folded prefix
//!   (tombstones, UID watermarks) come along, so `verify` (image + replay of
//!   the rest) agrees with the live state; this device's own tombstones and
//!   watermarks are folded in (union / maximum), since a UID it may have
//!   shown must stay used. The exposure watermark is this device's own (0
//!   for a mailbox it never had): what its IMAP clients saw, not the peer's;
//! - MODSEQs restart above both devices' last MODSEQ, so a client that
//!   cached one here sees every installed row as changed;
//! - the device row (id, slot, creation time), the log's own events, pending
//!   events, pairing, delivery dedup, sealed-blob index, conflict records,
//!   rejoin marker and blob spool stay this device's.
//!
//! Installing is allowed only when this device's log holds nothing the
//! snapshot does not cover ([`StoreError::SnapshotRefused`] otherwise): its
//! events would have to be replayed on top with re-keying of what its
//! clients saw, which is not implemented. A device with history of its own
//! catches up from events only, so it never needs this.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, MAIN_DB};
use serde::{Deserialize, Serialize};

use crate::log::version_vector::VersionVector;
use crate::model::{BlobHash, ModSeq};
use crate::store::{compact, digest, schema, state, Effects, Store, StoreError, StoreResult};

/// Largest snapshot image accepted (and offered): the image holds metadata
/// only (no message bodies), about 1 KiB per message, so this is millions of
/// messages; a larger announcement ends the transfer before a byte is read.
pub const SNAPSHOT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Tables the install takes from the image, parents before children. The
/// rest of roost.db is this device's own (see the module comment).
const INSTALLED_TABLES: &[&str] = &[
    "version_vector",
    "users",
    "user_keyring",
    "mailboxes",
    "mailbox_local",
    "mailbox_instances",
    "subscriptions",
    "messages",
    "mailbox_entries",
    "item_flags",
    "removed_entries",
    "entry_adds",
    "tombstones",
];

/// What a device says about the snapshot it sends, before the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOffer {
    /// Per origin, the events folded into the image (seqs 1 up to this).
    pub vector: VersionVector,
    /// Events folded, all compactions together (replay numbering goes on from it).
    pub events: u64,
    /// Size of the image in bytes.
    pub bytes: u64,
    /// BLAKE3 of the image bytes, hex.
    pub image_hash: String,
    /// Combined digest of the replicated state the image holds, hex.
    pub digest: String,
}

impl Store {
    /// This device's log snapshot with what the receiver checks it against;
    /// `None` when nothing was ever compacted.
    pub fn snapshot_offer(&self) -> StoreResult<Option<(SnapshotOffer, Vec<u8>)>> {
        let stored: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row("SELECT events, image FROM log_snapshot WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((events, image)) = stored else { return Ok(None) };
        if image.len() as u64 > SNAPSHOT_BYTES_MAX {
            return Err(StoreError::Snapshot(format!(
                "the log snapshot is {} bytes, above the {SNAPSHOT_BYTES_MAX}-byte transfer limit",
                image.len()
            )));
        }
        let conn = open_image(&image)?;
        let offer = SnapshotOffer {
            vector: compact::snapshot_vector(&self.conn)?,
            events: events as u64,
            bytes: image.len() as u64,
            image_hash: blake3::hash(&image).to_hex().to_string(),
            digest: hex::encode(digest::digest(&conn)?.combined()),
        };
        Ok(Some((offer, image)))
    }

    /// Whether this device may install a snapshot covering `vector`: its log
    /// must hold nothing the snapshot lacks. Asked before a transfer, so a
    /// device that would refuse does not receive the image first.
    pub fn snapshot_installable(&self, vector: &VersionVector) -> StoreResult<()> {
        require_covered(&self.conn, vector)
    }

    /// Installs a checked snapshot as this device's log snapshot and
    /// materialised state, in one transaction (commit + fsync; a crash
    /// leaves the old state). The caller has made every blob
    /// [`ReceivedSnapshot::blobs`] names durable first. Events of the log
    /// the snapshot covers are dropped (folded into it), as are covered
    /// pending events.
    pub fn install_snapshot(&mut self, received: ReceivedSnapshot, now_ms: u64) -> StoreResult<Effects> {
        self.refresh_slot()?;
        let ReceivedSnapshot { offer, conn: image } = received;
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Under the write lock, which blob GC takes to remove a blob.
        for blob in state::live_entry_blobs(&image)? {
            if !self.blobs.contains(&blob) && !crate::store::spool::is_spooled(&tx, &blob)? {
                return Err(StoreError::Snapshot(format!(
                    "blob {} the snapshot refers to is not stored here yet",
                    blob.to_hex()
                )));
            }
        }
        // Under the write lock: nothing can have arrived since the check.
        require_covered(&tx, &offer.vector)?;
        fold_in_own_local_rows(&tx, &image, now_ms, self.identity.slot())?;
        // The image becomes this device's: its device row is ours.
        image.execute(
            "UPDATE device SET device_id = ?1, slot = ?2, created_ms = ?3,
                               last_hlc = MAX(last_hlc, ?4), last_modseq = ?5",
            params![
                self.identity.id().as_bytes().as_slice(),
                self.identity.slot().get(),
                tx.query_row("SELECT created_ms FROM device WHERE id = 1", [], |r| r.get::<_, i64>(0))?,
                tx.query_row("SELECT last_hlc FROM device WHERE id = 1", [], |r| r.get::<_, i64>(0))?,
                tx.query_row("SELECT last_modseq FROM device WHERE id = 1", [], |r| r.get::<_, i64>(0))?
                    .max(image.query_row("SELECT last_modseq FROM device", [], |r| r.get::<_, i64>(0))?),
            ],
        )?;
        let image_bytes = image.serialize(MAIN_DB)?;

        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        for table in INSTALLED_TABLES.iter().rev() {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
        for table in INSTALLED_TABLES {
            copy_table(&image, &tx, table)?;
        }
        let (last_hlc, last_modseq): (i64, i64) =
            image.query_row("SELECT last_hlc, last_modseq FROM device", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        tx.execute("UPDATE device SET last_hlc = ?1, last_modseq = ?2 WHERE id = 1", params![last_hlc, last_modseq])?;
        tx.execute("DELETE FROM events", [])?;
        for (origin, seq) in offer.vector.iter() {
            tx.execute(
                "DELETE FROM pending_events WHERE origin = ?1 AND seq <= ?2",
                params![origin.as_bytes().as_slice(), *seq as i64],
            )?;
        }
        compact::store_snapshot(&tx, offer.events, &image_bytes, &offer.vector, now_ms)?;
        let installed = hex::encode(digest::digest(&tx)?.combined());
        if installed != offer.digest {
            return Err(StoreError::Snapshot(format!(
                "the installed state's digest {installed} is not the offered {}",
                offer.digest
            )));
        }
        let problems = crate::merge::invariants::check(&tx)?;
        if !problems.is_empty() {
            return Err(StoreError::Snapshot(format!("installing it would break invariants: {}", problems.join("; "))));
        }
        // A device restored from an older backup may get its own folded
        // events back this way: the rejoin ends as an ingest would end it.
        crate::store::rejoin::finish_if_caught_up(&tx, self.identity.id())?;
        let mut effects = Effects::default();
        effects.mailboxes.extend(state_mailboxes(&tx)?);
        effects.users.extend(state_users(&tx)?);
        tx.commit()?;
        Ok(effects)
    }
}

/// Refuses a snapshot that does not cover every event of this device's log.
pub(crate) fn require_covered(conn: &Connection, vector: &VersionVector) -> StoreResult<()> {
    let beyond: Vec<String> = state::version_vector(conn)?
        .iter()
        .filter(|(origin, seq)| **seq > vector.get(origin))
        .map(|(origin, seq)| format!("{} up to seq {seq}, the snapshot has {}", origin.short(), vector.get(origin)))
        .collect();
    if beyond.is_empty() {
        return Ok(());
    }
    Err(StoreError::SnapshotRefused { beyond: beyond.join("; ") })
}

/// A snapshot image received from a peer and checked: hash, schema, that it
/// holds no events, that its version vector is the one offered, the digest
/// of its replicated state, and the state invariants.
#[derive(Debug)]
pub struct ReceivedSnapshot {
    offer: SnapshotOffer,
    conn: Connection,
}

impl ReceivedSnapshot {
    /// Checks `image` against `offer`; nothing is written anywhere.
    pub fn check(offer: SnapshotOffer, image: &[u8]) -> StoreResult<ReceivedSnapshot> {
        let bad = |what: String| Err(StoreError::Snapshot(what));
        if image.len() as u64 != offer.bytes {
            return bad(format!("the image is {} bytes, the offer said {}", image.len(), offer.bytes));
        }
        if blake3::hash(image).to_hex().as_str() != offer.image_hash {
            return bad("the image does not match its hash (damaged in transit)".into());
        }
        let conn = open_image(image)?;
        let events: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        let pending: i64 = conn.query_row("SELECT COUNT(*) FROM pending_events", [], |r| r.get(0))?;
        if events != 0 || pending != 0 {
            return bad(format!("the image holds {events} events and {pending} pending ones; a snapshot holds none"));
        }
        let vector = state::version_vector(&conn)?;
        if vector != offer.vector {
            return bad("the image's version vector is not the one offered".into());
        }
        let digest = hex::encode(digest::digest(&conn)?.combined());
        if digest != offer.digest {
            return bad(format!("the image's state digest {digest} is not the offered {}", offer.digest));
        }
        // The invariants hold of the image as this device's snapshot: the
        // log is empty above its vector.
        compact::set_snapshot_vector(&conn, &vector)?;
        let problems = crate::merge::invariants::check(&conn)?;
        if !problems.is_empty() {
            return bad(format!("the image breaks state invariants: {}", problems.join("; ")));
        }
        Ok(ReceivedSnapshot { offer, conn })
    }

    /// The offer it was checked against.
    pub fn offer(&self) -> &SnapshotOffer {
        &self.offer
    }

    /// Every blob a live entry of the installed state names: fetch and store
    /// these before [`Store::install_snapshot`]. (A message no entry names
    /// any more may have lost its blob to the sender's garbage collection,
    /// which keeps those of the image's live entries.)
    pub fn blobs(&self) -> StoreResult<Vec<BlobHash>> {
        state::live_entry_blobs(&self.conn)
    }

    /// The size (RFC822.SIZE) the image records for each message blob: what
    /// a blob sealed in place must hold when fetched
    /// (`BlobStore::check_named`).
    pub fn blob_sizes(&self) -> StoreResult<std::collections::HashMap<BlobHash, u64>> {
        state::message_sizes(&self.conn)
    }
}

/// An image as an in-memory database at this build's schema (a newer one is
/// refused by the migration).
fn open_image(image: &[u8]) -> StoreResult<Connection> {
    let mut conn = Connection::open_in_memory()?;
    conn.deserialize_read_exact(MAIN_DB, image, image.len(), false)
        .map_err(|e| StoreError::Snapshot(format!("the image is not an SQLite database: {e}")))?;
    let integrity: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| StoreError::Snapshot(format!("the image is not a readable SQLite database: {e}")))?;
    if integrity != "ok" {
        return Err(StoreError::Snapshot(format!("the image fails SQLite's check: {integrity}")));
    }
    schema::migrate(&mut conn, Path::new("snapshot image"))?;
    conn.set_prepared_statement_cache_capacity(crate::store::PREPARED_STATEMENTS_MAX);
    Ok(conn)
}

/// Makes the image's LOCAL rows this device's: its own tombstones (a UID it
/// may have shown stays used), the higher UID watermark, its own exposure
/// watermark, entries placed now (held from IMAP like any new arrival), and
/// one new MODSEQ above both devices' for every installed row, so a client
/// holding a MODSEQ from here sees all of it as changed.
fn fold_in_own_local_rows(
    own: &Connection,
    image: &Connection,
    now_ms: u64,
    slot: crate::model::DeviceSlot,
) -> StoreResult<()> {
    image.execute("UPDATE mailbox_local SET uid_exposed = 0", [])?;
    {
        let mut stmt = own.prepare("SELECT mailbox_id, uid_max, uid_exposed FROM mailbox_local")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (mailbox, uid_max, uid_exposed) = row?;
            image.execute(
                "UPDATE mailbox_local SET uid_max = MAX(uid_max, ?2), uid_exposed = MIN(?3, MAX(uid_max, ?2))
                 WHERE mailbox_id = ?1",
                params![mailbox, uid_max, uid_exposed],
            )?;
        }
        let mut stmt = own.prepare("SELECT mailbox_id, uid, entry_id FROM tombstones")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (mailbox, uid, entry) = row?;
            image.execute(
                "INSERT OR IGNORE INTO tombstones (mailbox_id, uid, entry_id, modseq)
                 SELECT ?1, ?2, ?3, 0 WHERE EXISTS (SELECT 1 FROM mailboxes WHERE id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM mailbox_entries WHERE mailbox_id = ?1 AND uid = ?2)",
                params![mailbox, uid, entry],
            )?;
        }
    }
    let last = |conn: &Connection| -> StoreResult<u64> {
        Ok(conn.query_row("SELECT last_modseq FROM device", [], |r| r.get::<_, i64>(0))? as u64)
    };
    let modseq = ModSeq::next(ModSeq::new(last(own)?.max(last(image)?)), now_ms, slot).get() as i64;
    // Held like entries that just arrived (stability-gated exposure): shown
    // at once, they would make every event above the snapshot that lands
    // below them a re-key on every device.
    image.execute("UPDATE mailbox_entries SET modseq = ?1, placed_ms = ?2", params![modseq, now_ms as i64])?;
    image.execute("UPDATE tombstones SET modseq = ?1", [modseq])?;
    image.execute("UPDATE mailbox_local SET highest_modseq = ?1", [modseq])?;
    image.execute("UPDATE device SET last_modseq = ?1", [modseq])?;
    Ok(())
}

/// Copies every row of `table` from `from` to `to` (same schema), by the
/// column names of `to`.
fn copy_table(from: &Connection, to: &Connection, table: &str) -> StoreResult<()> {
    let columns: Vec<String> = {
        let mut stmt = to.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        names.collect::<Result<_, _>>()?
    };
    let list = columns.join(", ");
    let marks = vec!["?"; columns.len()].join(", ");
    let mut insert = to.prepare(&format!("INSERT INTO {table} ({list}) VALUES ({marks})"))?;
    let mut select = from.prepare(&format!("SELECT {list} FROM {table}"))?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let values = (0..columns.len()).map(|i| row.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>()?;
        insert.execute(params_from_iter(values))?;
    }
    Ok(())
}

fn state_mailboxes(conn: &Connection) -> StoreResult<Vec<crate::model::MailboxId>> {
    let mut stmt = conn.prepare("SELECT id FROM mailboxes")?;
    let ids = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    ids.map(|id| Ok(crate::model::MailboxId::from_raw(id?))).collect()
}

fn state_users(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM users")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(names.collect::<Result<_, _>>()?)
}
