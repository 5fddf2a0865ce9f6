//! Consistent copies of the database for backups: `VACUUM INTO` reads in one
//! transaction, so the copy holds exactly the events and state of one commit,
//! however many writers run meanwhile (WAL lets them go on).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{Store, StoreError, StoreResult};
use crate::model::BlobHash;

impl Store {
    /// Writes a consistent copy of the database to `dest` (which must not
    /// exist) and returns the blobs that copy's live entries name, so a
    /// backup carries exactly those. Blobs are fsynced before the event
    /// naming them commits; blob GC removes only blobs no live entry names,
    /// so each one is on disk when this returns unless its entries were
    /// removed and collected since (the backup then fails on it and is
    /// taken again).
    pub fn snapshot_into(&self, dest: &Path) -> StoreResult<Vec<BlobHash>> {
        let dest_str = dest
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("snapshot path {} is not UTF-8", dest.display())))?;
        self.conn.execute("VACUUM INTO ?1", [dest_str])?;
        referenced_blobs(dest)
    }
}

/// The blobs the live entries of a database file (a snapshot or a restored
/// copy) name: what it needs. Messages no entry names any more may have lost
/// their blobs to garbage collection (`gc.rs`) and are not carried.
pub fn referenced_blobs(db: &Path) -> StoreResult<Vec<BlobHash>> {
    blobs_of(db, "SELECT DISTINCT blob FROM mailbox_entries ORDER BY blob")
}

/// Every blob a database file's `messages` names, with or without a live
/// entry: what a backup made before blob GC carried (restore accepts its
/// count).
pub fn known_blobs(db: &Path) -> StoreResult<Vec<BlobHash>> {
    blobs_of(db, "SELECT blob FROM messages ORDER BY blob")
}

fn blobs_of(db: &Path, query: &str) -> StoreResult<Vec<BlobHash>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare(query)?;
    let rows = stmt.query_map([], |row| row.get::<_, Vec<u8>>(0))?;
    rows.map(|row| super::state::blob_hash(row?)).collect()
}
