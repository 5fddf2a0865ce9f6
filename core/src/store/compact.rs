//! Log compaction: the causally stable prefix of this device's application
//! order is folded into a snapshot (the replay of exactly that prefix), and
//! its events are deleted. `verify` then replays the remaining events on top
//! of the snapshot, which gives the same state as a full replay because
//! replay follows the application order and the snapshot is that replay
//! stopped at the cut (LOCAL rows such as tombstones included).
//!
//! The snapshot is an SQLite database image stored in `log_snapshot` inside
//! roost.db, written in the one transaction that deletes the folded events:
//! a crash leaves the old snapshot with every event or the new one with the
//! rest, never a gap, and backups (`VACUUM INTO`) carry it with its log.
//!
//! Merging never needs a folded event (removals compare dependency vectors
//! with event ids kept in the state rows), so a device back after a long
//! absence still merges everything it brings. What folding does take away:
//! a peer below the snapshot vector cannot be sent the events it lacks
//! ([`StoreError::SnapshotNeeded`]); only a newly paired device can be
//! there, since stable means every paired device has acknowledged them, and
//! it catches up from the snapshot itself (`snapshot_transfer.rs`).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, MAIN_DB};

use crate::log::version_vector::VersionVector;
use crate::merge::{apply_event, Effects};
use crate::model::{DeviceId, DeviceSlot};
use crate::store::{schema, state, Store, StoreError, StoreResult};

/// What one [`Store::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Events folded by this call.
    pub folded: u64,
    /// Events folded into the snapshot by every compaction so far.
    pub folded_total: u64,
    /// Events still in the log.
    pub remaining: u64,
    /// Size of the snapshot image in bytes.
    pub snapshot_bytes: u64,
    /// The folded events: per origin, seqs 1 up to this.
    pub vector: VersionVector,
}

impl Store {
    /// Folds the causally stable prefix ([`Store::stable_vector`]: what this
    /// device and every active paired device have) into the log snapshot.
    /// A device paired later than this call catches up by installing the
    /// snapshot ([`Store::snapshot_offer`]): `events_missing` refuses it.
    pub fn compact(&mut self, now_ms: u64) -> StoreResult<CompactReport> {
        let stable = self.stable_vector()?;
        self.compact_within(now_ms, &stable)
    }

    /// Folds the longest prefix of the application order whose events are
    /// all within `stable` (and here). The caller vouches that every device
    /// this one will ever sync with has `stable`; [`Store::compact`] uses the
    /// peers' acknowledgements. One transaction: replays the prefix on top of
    /// the previous snapshot, stores the new image and deletes the folded
    /// events, then commits (fsync) or leaves everything as it was.
    pub fn compact_within(&mut self, now_ms: u64, stable: &VersionVector) -> StoreResult<CompactReport> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let stable = VersionVector::meet([stable, &state::version_vector(&tx)?]);
        let Some(cut) = stable_cut(&tx, &stable)? else {
            let (folded_total, snapshot_bytes) = snapshot_size(&tx)?;
            return Ok(CompactReport {
                folded: 0,
                folded_total,
                remaining: event_count(&tx)?,
                snapshot_bytes,
                vector: snapshot_vector(&tx)?,
            });
        };
        let base = snapshot_base(&tx, self.identity.id(), self.identity.slot())?;
        let mut report = CompactReport::default();
        let mut scratch = base.conn;
        let mut counter = base.folded;
        let replay = scratch.transaction()?;
        report.folded = replay_events(&tx, &replay, Some(cut), &mut counter, self.identity.slot())?;
        replay.commit()?;
        // The image keeps the replayed state, not the events (they are what is dropped).
        scratch.execute("DELETE FROM events", [])?;
        scratch.execute_batch("VACUUM")?;
        let vector = state::version_vector(&scratch)?;
        let image = scratch.serialize(MAIN_DB)?;
        store_snapshot(&tx, counter, &image, &vector, now_ms)?;
        let deleted = tx.execute("DELETE FROM events WHERE applied_idx <= ?1", [cut])? as u64;
        if deleted != report.folded {
            return Err(StoreError::Corrupt(format!(
                "compaction replayed {} events but would delete {deleted}",
                report.folded
            )));
        }
        report.folded_total = counter;
        report.remaining = event_count(&tx)?;
        report.snapshot_bytes = image.len() as u64;
        report.vector = vector;
        tx.commit()?;
        Ok(report)
    }

    /// Per origin, the highest seq folded into the log snapshot (empty when
    /// nothing was ever compacted).
    pub fn snapshot_vector(&self) -> StoreResult<VersionVector> {
        snapshot_vector(&self.conn)
    }
}

/// A scratch database holding the replay of the folded prefix (the snapshot,
/// brought to the current schema) or, before any compaction, an empty one
/// with this device's row; and how many events it holds.
pub(crate) struct ReplayBase {
    pub(crate) conn: Connection,
    pub(crate) folded: u64,
}

pub(crate) fn snapshot_base(log: &Connection, device: DeviceId, slot: DeviceSlot) -> StoreResult<ReplayBase> {
    let stored: Option<(i64, Vec<u8>)> = log
        .query_row("SELECT events, image FROM log_snapshot WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (conn, folded) = match stored {
        Some((folded, image)) => {
            let mut conn = Connection::open_in_memory()?;
            conn.deserialize_read_exact(MAIN_DB, &image[..], image.len(), false)?;
            // An image taken by an older build: the same migrations as roost.db.
            schema::migrate(&mut conn, Path::new("log snapshot"))?;
            (conn, folded as u64)
        }
        None => {
            let conn = schema::migrated_in_memory()?;
            state::insert_device(&conn, device, slot, 0)?;
            (conn, 0)
        }
    };
    conn.set_prepared_statement_cache_capacity(crate::store::PREPARED_STATEMENTS_MAX);
    Ok(ReplayBase { conn, folded })
}

/// Replays the events of `log` in application order, up to `applied_idx`
/// `upto` (all with `None`), into `scratch`. `counter` numbers the events
/// across compactions: replay stamps it as the time, so the LOCAL rows it
/// writes are those of one replay of the whole log.
pub(crate) fn replay_events(
    log: &Connection,
    scratch: &Connection,
    upto: Option<i64>,
    counter: &mut u64,
    slot: DeviceSlot,
) -> StoreResult<u64> {
    let mut replayed = 0u64;
    let mut effects = Effects::default();
    state::for_each_event(log, upto.unwrap_or(i64::MAX), |event| {
        *counter += 1;
        replayed += 1;
        apply_event(scratch, &event, *counter, slot, &mut effects)?;
        effects.events.clear();
        Ok(())
    })?;
    Ok(replayed)
}

/// The last `applied_idx` of the longest prefix of the application order
/// whose events are all within `stable`; `None` when that prefix is empty.
fn stable_cut(conn: &Connection, stable: &VersionVector) -> StoreResult<Option<i64>> {
    let mut first_unstable: Option<i64> = None;
    let mut stmt = conn.prepare_cached("SELECT MIN(applied_idx) FROM events WHERE origin = ?1 AND seq > ?2")?;
    for (origin, _) in state::version_vector(conn)?.iter() {
        let idx: Option<i64> =
            stmt.query_row(params![origin.as_bytes().as_slice(), stable.get(origin) as i64], |r| r.get(0))?;
        if let Some(idx) = idx {
            first_unstable = Some(first_unstable.map_or(idx, |f| f.min(idx)));
        }
    }
    let cut: Option<i64> = match first_unstable {
        Some(idx) => {
            conn.query_row("SELECT MAX(applied_idx) FROM events WHERE applied_idx < ?1", [idx], |r| r.get(0))?
        }
        None => conn.query_row("SELECT MAX(applied_idx) FROM events", [], |r| r.get(0))?,
    };
    Ok(cut)
}

/// Replaces the log snapshot: the image, how many events it folds, and its
/// vector (in the caller's transaction).
pub(crate) fn store_snapshot(
    conn: &Connection,
    folded: u64,
    image: &[u8],
    vector: &VersionVector,
    now_ms: u64,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO log_snapshot (id, events, image, taken_ms) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET events = excluded.events, image = excluded.image,
                                        taken_ms = excluded.taken_ms",
        params![folded as i64, image, now_ms as i64],
    )?;
    set_snapshot_vector(conn, vector)
}

/// Replaces the log snapshot's vector.
pub(crate) fn set_snapshot_vector(conn: &Connection, vector: &VersionVector) -> StoreResult<()> {
    conn.execute("DELETE FROM log_snapshot_vector", [])?;
    for (origin, seq) in vector.iter() {
        conn.execute(
            "INSERT INTO log_snapshot_vector (origin, seq) VALUES (?1, ?2)",
            params![origin.as_bytes().as_slice(), *seq as i64],
        )?;
    }
    Ok(())
}

pub(crate) fn snapshot_vector(conn: &Connection) -> StoreResult<VersionVector> {
    let mut stmt = conn.prepare_cached("SELECT origin, seq FROM log_snapshot_vector")?;
    let mut rows = stmt.query([])?;
    let mut vector = VersionVector::new();
    while let Some(row) = rows.next()? {
        let origin: Vec<u8> = row.get(0)?;
        let origin = DeviceId::from_slice(&origin)
            .ok_or_else(|| StoreError::Corrupt("log snapshot vector: a device id is not 32 bytes".into()))?;
        vector.set(origin, row.get::<_, i64>(1)? as u64);
    }
    Ok(vector)
}

/// Refuses to stream to a peer that lacks folded events: they are gone from
/// the log, so it would never converge; it needs the snapshot.
pub(crate) fn require_above_snapshot(conn: &Connection, have: &VersionVector) -> StoreResult<()> {
    for (origin, folded) in snapshot_vector(conn)?.iter() {
        if have.get(origin) < *folded {
            return Err(StoreError::SnapshotNeeded { origin: origin.short(), folded: *folded, have: have.get(origin) });
        }
    }
    Ok(())
}

fn event_count(conn: &Connection) -> StoreResult<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
}

/// Events folded so far and the snapshot's size in bytes (0, 0 before any).
fn snapshot_size(conn: &Connection) -> StoreResult<(u64, u64)> {
    let row: Option<(i64, i64)> = conn
        .query_row("SELECT events, length(image) FROM log_snapshot WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (events, bytes) = row.unwrap_or((0, 0));
    Ok((events as u64, bytes as u64))
}
