//! Consistent copies of the database for backups: `VACUUM INTO` reads in one
//! transaction, so the copy holds exactly the events and state of one commit,
//! however many writers run meanwhile (WAL lets them go on).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{Store, StoreError, StoreResult};
use crate::model::BlobHash;

impl Store {
    /// Writes a consistent copy of the database to `dest` (which must not
    /// exist) and returns the blobs that copy refers to, so a backup carries
    /// exactly those. Blobs are fsynced before the event naming them commits
    /// and never deleted, so each one is on disk when this returns.
    pub fn snapshot_into(&self, dest: &Path) -> StoreResult<Vec<BlobHash>> {
        let dest_str = dest
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("snapshot path {} is not UTF-8", dest.display())))?;
        self.conn.execute("VACUUM INTO ?1", [dest_str])?;
        referenced_blobs(dest)
    }
}

/// The blobs a database file (a snapshot or a restored copy) refers to.
pub fn referenced_blobs(db: &Path) -> StoreResult<Vec<BlobHash>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT blob FROM messages ORDER BY blob")?;
    let rows = stmt.query_map([], |row| row.get::<_, Vec<u8>>(0))?;
    let mut hashes = Vec::new();
    for row in rows {
        let bytes = row?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("a blob hash of {} bytes in messages", bytes.len())))?;
        hashes.push(BlobHash::from_bytes(bytes));
    }
    Ok(hashes)
}
