//! Blob garbage collection: removes the blob files (and spool rows, sealed-blob
//! index rows, file-key cache rows) of messages nothing can need any more
//! (docs/replication.md, "Blob garbage collection").
//!
//! A blob goes only when, under the store's write lock:
//! - no live entry of any user names it (content addressing shares a blob
//!   between a COPY, a second delivery of the same bytes, ...);
//! - no event held in `pending_events` names it (it applies later);
//! - every event of the log naming it is causally stable: acknowledged by
//!   every active paired device (the notion compaction folds by), so no
//!   paired device can still ask for it to apply that event;
//! - every active paired device has acknowledged the removal of its last
//!   entry: the vector this device had when a run first found it without an
//!   entry (`blob_orphans`, dropped when an entry names it again) is within
//!   the stable vector;
//! - no live entry of the log snapshot image names it (a device paired later
//!   installs that image and fetches its entries' blobs).
//!
//! Only blobs the replicated state knows (`messages` rows) are candidates: a
//! file no event ever named is a write in progress (LMTP, import) or a crash
//! leftover, which is not ours to judge.
//!
//! Races: content addressing lets a writer find a blob "already there" and
//! name it in its event. Writers that decide so inside their write
//! transaction (`Writer::store_message`, `append_stored`) hold the same
//! SQLite write lock GC holds while it unlinks; a blob stored outside it (a
//! peer's, made durable before `ingest`) is checked again under the lock when
//! its event applies (`ingest.rs`), and a missing one fails the ingest, which
//! the sync session retries by fetching it again. Files are unlinked while the
//! transaction that found them unreferenced is still open, so no writer can
//! name one between the decision and the unlink; a crash before the commit
//! leaves index rows pointing at absent files, which every reader treats as
//! "not stored" (nothing live names them), and a resurrected file (a crash
//! before the directory fsync) is collected again by the next run.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use crate::log::event::EventOp;
use crate::log::version_vector::VersionVector;
use crate::model::BlobHash;
use crate::store::{compact, spool, state, Store, StoreError, StoreResult};

/// Blobs unlinked per transaction: bounds how long one run holds the write
/// lock (IMAP and LMTP writes wait meanwhile); later batches follow at once.
const BLOBS_PER_TRANSACTION: usize = 512;

/// How long the WAL truncation after a run waits for other connections'
/// readers before it gives up (the next run tries again).
const WAL_TRUNCATE_WAIT_MS: u64 = 200;

/// What one [`Store::collect_garbage`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed (files and spool rows).
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs no live entry names that were kept because an event naming them
    /// is not yet acknowledged by every paired device (or is pending, or the
    /// log snapshot still shows them).
    pub kept_unstable: u64,
    /// Whether the WAL was emptied after removing (it may hold pages of
    /// deleted spool rows); false when nothing was removed or a reader held
    /// it.
    pub wal_truncated: bool,
}

impl Store {
    /// Removes every blob nothing can need any more (module doc), with its
    /// spool, sealed-blob index and file-key cache rows. Stability is
    /// [`Store::stable_vector`]: what this device and every active paired
    /// device have.
    pub fn collect_garbage(&mut self) -> StoreResult<GcReport> {
        let stable = self.stable_vector()?;
        self.collect_garbage_within(&stable)
    }

    /// [`Store::collect_garbage`] with the caller's stable vector (tests, the
    /// simulator): the caller vouches every device this one syncs with has it.
    pub fn collect_garbage_within(&mut self, stable: &VersionVector) -> StoreResult<GcReport> {
        let mut report = GcReport::default();
        let (blobs, identity) = (&self.blobs, &self.identity);
        crate::store::with_secure_delete(&self.conn, |conn| {
            // The plan comes from one pass over every candidate; each batch
            // is decided again under the lock of the transaction that
            // removes it (a write between two batches may name a blob again).
            let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
            let (plan, kept) = garbage(&tx, blobs, stable, identity)?;
            tx.commit()?;
            report.kept_unstable = kept;
            for batch in plan.chunks(BLOBS_PER_TRANSACTION) {
                collect_batch(conn, blobs, stable, identity, batch, &mut report)?;
            }
            Ok(())
        })?;
        if 0 < report.blobs {
            // The WAL may still hold pages of deleted spool rows: empty it.
            // Best effort: it waits for readers of other connections, which
            // the store's lock holders must not do for long.
            report.wal_truncated = crate::store::checkpoint::waiting_checkpoint(
                &self.conn,
                crate::store::checkpoint::WaitingCheckpoint::Truncate,
                WAL_TRUNCATE_WAIT_MS,
            )?;
        }
        Ok(report)
    }

    /// Whether `blob` was collected here (or never stored: a peer told us it
    /// was gone): the state knows it, no live entry names it, and it is
    /// stored neither as a file nor in the spool. The sync sender answers
    /// "gone" for such a blob instead of "not here" (docs/sync.md).
    pub fn blob_collected(&self, blob: &BlobHash) -> StoreResult<bool> {
        if self.has_blob(blob)? {
            return Ok(false);
        }
        let key = blob.as_bytes().as_slice();
        let known: bool =
            self.conn.query_row("SELECT EXISTS (SELECT 1 FROM messages WHERE blob = ?1)", [key], |r| r.get(0))?;
        let live: bool =
            self.conn
                .query_row("SELECT EXISTS (SELECT 1 FROM mailbox_entries WHERE blob = ?1)", [key], |r| r.get(0))?;
        Ok(known && !live)
    }
}

/// One transaction: decides again for each blob of `batch` whether it may
/// go, removes those (rows, then files, while the write lock is held),
/// commits.
fn collect_batch(
    conn: &Connection,
    blobs: &crate::store::BlobStore,
    stable: &VersionVector,
    identity: &crate::store::DeviceIdentity,
    batch: &[BlobHash],
    report: &mut GcReport,
) -> StoreResult<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let needed = still_needed(&tx, stable, identity)?;
    let now = state::version_vector(&tx)?;
    let mut removed = Vec::with_capacity(batch.len());
    for blob in batch {
        if verdict(&tx, blobs, stable, &needed, &now, blob)? != Verdict::Garbage {
            continue;
        }
        let key = blob.as_bytes().as_slice();
        let spooled: Option<i64> =
            tx.query_row("SELECT length(data) FROM blob_spool WHERE hash = ?1", [key], |r| r.get(0)).optional()?;
        tx.execute("DELETE FROM blob_spool WHERE hash = ?1", [key])?;
        tx.execute("DELETE FROM sealed_blobs WHERE blob = ?1", [key])?;
        tx.execute("DELETE FROM file_keys WHERE blob = ?1", [key])?;
        tx.execute("DELETE FROM blob_orphans WHERE blob = ?1", [key])?;
        // Still under the write lock: nothing can name it before the commit.
        let bytes = blobs.remove(blob)?;
        report.blobs += 1;
        report.bytes += bytes.or(spooled.map(|n| n as u64)).unwrap_or(0);
        removed.push(*blob);
    }
    blobs.sync_removals(&removed)?;
    tx.commit()?;
    Ok(())
}

/// What may happen to a blob the state knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A live entry names it, or it is not stored (collected before, or a
    /// peer said it was gone): nothing to do.
    Nothing,
    /// No live entry names it, but a peer may still ask for it.
    Kept,
    /// It may go.
    Garbage,
}

/// Decides for one blob, in the caller's transaction; records when it was
/// first found without a live entry (`orphan_seen`).
fn verdict(
    conn: &Connection,
    blobs: &crate::store::BlobStore,
    stable: &VersionVector,
    needed: &HashSet<BlobHash>,
    now: &VersionVector,
    blob: &BlobHash,
) -> StoreResult<Verdict> {
    let live: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM mailbox_entries WHERE blob = ?1)")?
        .query_row([blob.as_bytes().as_slice()], |r| r.get(0))?;
    if live || !(blobs.contains(blob) || spool::is_spooled(conn, blob)?) {
        return Ok(Verdict::Nothing);
    }
    let seen = orphan_seen(conn, blob, now)?;
    if needed.contains(blob) || !stable.dominates(&seen) {
        return Ok(Verdict::Kept);
    }
    Ok(Verdict::Garbage)
}

/// The stored blobs (files or spool rows) that may go, and how many blobs no
/// live entry names were kept for stability, pending events or the snapshot.
fn garbage(
    conn: &Connection,
    blobs: &crate::store::BlobStore,
    stable: &VersionVector,
    identity: &crate::store::DeviceIdentity,
) -> StoreResult<(Vec<BlobHash>, u64)> {
    let unreferenced = unreferenced_by_entries(conn)?;
    if unreferenced.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let needed = still_needed(conn, stable, identity)?;
    let now = state::version_vector(conn)?;
    let mut garbage = Vec::new();
    let mut kept = 0;
    for blob in unreferenced {
        match verdict(conn, blobs, stable, &needed, &now, &blob)? {
            Verdict::Nothing => {}
            Verdict::Kept => kept += 1,
            Verdict::Garbage => garbage.push(blob),
        }
    }
    Ok((garbage, kept))
}

/// The version vector this device had when GC first found `blob` with no
/// live entry (`blob_orphans`, recorded now with `now` if it was not).
fn orphan_seen(conn: &Connection, blob: &BlobHash, now: &VersionVector) -> StoreResult<VersionVector> {
    let key = blob.as_bytes().as_slice();
    let seen: Option<String> = conn
        .prepare_cached("SELECT seen_vector FROM blob_orphans WHERE blob = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    match seen {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("blob_orphans: a vector does not decode: {e}"))),
        None => {
            let json = serde_json::to_string(now)
                .map_err(|e| StoreError::Corrupt(format!("a version vector does not encode: {e}")))?;
            conn.prepare_cached("INSERT INTO blob_orphans (blob, seen_vector) VALUES (?1, ?2)")?
                .execute(params![key, json])?;
            Ok(now.clone())
        }
    }
}

/// Blobs the replicated state knows that no live entry names. Forgets the
/// orphan records of blobs an entry names again (a MOVE concurrent with the
/// expunge re-placed it): when they lose it again, a newer vector counts.
fn unreferenced_by_entries(conn: &Connection) -> StoreResult<Vec<BlobHash>> {
    conn.execute("DELETE FROM blob_orphans WHERE blob IN (SELECT blob FROM mailbox_entries)", [])?;
    let mut stmt = conn.prepare_cached(
        "SELECT m.blob FROM messages m WHERE NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.blob = m.blob)",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    rows.map(|r| state::blob_hash(r?)).collect()
}

/// Blobs that events above the stable vector or pending events name, and that
/// live entries of the log snapshot image name.
fn still_needed(
    conn: &Connection,
    stable: &VersionVector,
    identity: &crate::store::DeviceIdentity,
) -> StoreResult<HashSet<BlobHash>> {
    let mut needed = HashSet::new();
    let mut add_payload = |payload: &[u8]| -> StoreResult<()> {
        let op = EventOp::from_payload(payload)
            .ok_or_else(|| StoreError::Corrupt("a stored event's payload does not decode".into()))?;
        needed.extend(op.blobs());
        Ok(())
    };
    let mut unstable = conn.prepare_cached("SELECT payload FROM events WHERE origin = ?1 AND seq > ?2")?;
    for (origin, _) in state::version_vector(conn)?.iter() {
        let mut rows = unstable.query(params![origin.as_bytes().as_slice(), stable.get(origin) as i64])?;
        while let Some(row) = rows.next()? {
            add_payload(&row.get::<_, Vec<u8>>(0)?)?;
        }
    }
    let mut pending = conn.prepare_cached("SELECT payload FROM pending_events")?;
    let mut rows = pending.query([])?;
    while let Some(row) = rows.next()? {
        add_payload(&row.get::<_, Vec<u8>>(0)?)?;
    }
    let has_snapshot: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM log_snapshot)", [], |r| r.get(0))?;
    if has_snapshot {
        let image = compact::snapshot_base(conn, identity.id(), identity.slot())?;
        needed.extend(state::live_entry_blobs(&image.conn)?);
    }
    Ok(needed)
}
