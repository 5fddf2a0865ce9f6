//! The blob spool (LOCAL table `blob_spool`, migration 0008): small blobs from
//! a peer, committed in the transaction that applies the events naming them.
//!
//! Why: a blob in the blob store is durable only after three fsyncs in a row
//! (its file, the rename's directory, then the SQLite commit of its event),
//! which was most of the replication lag on an idle link. In the spool the
//! blob and its event share one commit, hence one fsync; the daemon moves the
//! blob to the blob store afterwards, off the path a user waits on.
//!
//! Crash safety, at each point:
//! - before the ingest commits: neither the events nor the spooled blobs are
//!   stored; the peer sends them again (our version vector did not move);
//! - after the commit, before the move: the rows are durable; every read
//!   ([`Store::message`], `verify`, backups, the sync sender) falls back to
//!   the spool, and the daemon's spool mover moves them at its next start;
//! - during the move: a row is deleted ([`Store::unspool`]) only once its blob
//!   is durable under its name (`BlobStore::put_all`: file fsync, rename,
//!   directory fsync), so a crash in between leaves the row, and moving it
//!   again is idempotent.
//!
//! Reads look in the blob store first, then in the spool; both under the
//! store lock, which `unspool` also needs, so a blob is never in neither.

use rusqlite::{params, OptionalExtension};

use crate::model::BlobHash;
use crate::store::{BlobError, Store, StoreError, StoreResult};

/// A blob as received from a peer, to be spooled with its events.
#[derive(Debug, Clone)]
pub struct SpooledBlob {
    /// What the bytes hash to (checked again by the store).
    pub hash: BlobHash,
    /// The bytes as stored at the origin (ciphertext when sealed).
    pub data: Vec<u8>,
}

/// Puts the blobs the blob store lacks into the spool, in the caller's
/// transaction. A blob whose bytes do not match its hash fails the call.
pub(crate) fn spool(
    store_blobs: &crate::store::BlobStore,
    conn: &rusqlite::Connection,
    blobs: &[SpooledBlob],
) -> StoreResult<()> {
    let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO blob_spool (hash, data) VALUES (?1, ?2)")?;
    for blob in blobs {
        if BlobHash::of(&blob.data) != blob.hash {
            return Err(StoreError::Blob(BlobError::Mismatch {
                expected: blob.hash,
                actual: BlobHash::of(&blob.data),
            }));
        }
        if !store_blobs.contains(&blob.hash) {
            insert.execute(params![blob.hash.as_bytes().as_slice(), blob.data])?;
        }
    }
    Ok(())
}

/// Whether `hash` is in the spool, in the caller's transaction.
pub(crate) fn is_spooled(conn: &rusqlite::Connection, hash: &BlobHash) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM blob_spool WHERE hash = ?1)")?
        .query_row([hash.as_bytes().as_slice()], |r| r.get(0))?)
}

impl Store {
    /// A spooled blob's bytes, if it is in the spool.
    pub fn spooled_blob(&self, hash: &BlobHash) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT data FROM blob_spool WHERE hash = ?1")?
            .query_row([hash.as_bytes().as_slice()], |r| r.get::<_, Vec<u8>>(0))
            .optional()?)
    }

    /// Up to `limit` spooled blobs, to move to the blob store.
    pub fn spooled_blobs(&self, limit: usize) -> StoreResult<Vec<SpooledBlob>> {
        let mut stmt = self.conn.prepare_cached("SELECT hash, data FROM blob_spool ORDER BY hash")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let hash: Vec<u8> = row.get(0)?;
            let hash: [u8; 32] =
                hash.try_into().map_err(|_| StoreError::Corrupt("a spooled blob's hash is not 32 bytes".into()))?;
            out.push(SpooledBlob { hash: BlobHash::from_bytes(hash), data: row.get(1)? });
        }
        Ok(out)
    }

    /// Forgets spooled blobs that the blob store now holds durably (the
    /// caller made them so with `BlobStore::put_all`). A hash whose file is
    /// absent keeps its row.
    /// The rows are zeroed as they go (`with_secure_delete`): the message
    /// must not outlive its blob file in the database's free space once it
    /// is deleted and collected.
    pub fn unspool(&mut self, hashes: &[BlobHash]) -> StoreResult<u64> {
        let blobs = &self.blobs;
        crate::store::with_secure_delete(&self.conn, |conn| {
            let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
            let mut removed = 0;
            {
                let mut delete = tx.prepare_cached("DELETE FROM blob_spool WHERE hash = ?1")?;
                for hash in hashes.iter().filter(|h| blobs.contains(h)) {
                    removed += delete.execute([hash.as_bytes().as_slice()])? as u64;
                }
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    /// The stored bytes of a blob, from the blob store or else the spool.
    pub(crate) fn blob_bytes(&self, hash: &BlobHash) -> StoreResult<Vec<u8>> {
        match self.blobs.get(hash) {
            Ok(raw) => Ok(raw),
            Err(BlobError::Missing(_)) => match self.spooled_blob(hash)? {
                Some(raw) if crate::store::BlobStore::accepts(hash, &raw) => Ok(raw),
                Some(_) => Err(BlobError::Corrupt(*hash).into()),
                None => Err(BlobError::Missing(*hash).into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a blob is stored (in the blob store or the spool).
    pub fn has_blob(&self, hash: &BlobHash) -> StoreResult<bool> {
        Ok(self.blobs.contains(hash) || self.spooled_blob(hash)?.is_some())
    }
}

/// Blobs one round of the daemon's spool mover takes.
pub const FLUSH_BATCH: usize = 256;
