//! The LOCAL file-key cache (`file_keys`, migration 0012): age file keys of
//! a user's sealed blobs, wrapped under a key only a logged-in session of
//! the user holds (`crypto/filekeys.rs`, docs/security.md). The store only
//! keeps the wrapped rows; it never sees a file key.

use rusqlite::{params, Connection};

use crate::crypto::{SessionKey, WrappedFileKey};
use crate::model::BlobHash;
use crate::store::{Store, StoreError, StoreResult};

impl Store {
    /// The rows of `user`'s file-key cache for those of `blobs` that have
    /// one. A malformed row is skipped (it only costs an X25519 unwrap; the
    /// open then replaces it).
    pub fn file_keys(&self, user: &str, blobs: &[&BlobHash]) -> StoreResult<Vec<(BlobHash, WrappedFileKey)>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT nonce, wrapped FROM file_keys WHERE user = ?1 AND blob = ?2")?;
        let mut rows = Vec::new();
        for blob in blobs {
            let mut found = stmt.query(params![user, blob.as_bytes().as_slice()])?;
            if let Some(row) = found.next()? {
                let (nonce, wrapped): (Vec<u8>, Vec<u8>) = (row.get(0)?, row.get(1)?);
                if let Ok(nonce) = <[u8; 24]>::try_from(nonce.as_slice()) {
                    rows.push((**blob, WrappedFileKey { nonce, ciphertext: wrapped }));
                }
            }
        }
        Ok(rows)
    }

    /// Reads `user`'s cached file keys of `blobs` into `key`, so opening
    /// them needs no X25519. Returns how many it can use.
    pub fn prime_file_keys(&self, user: &str, key: &SessionKey, blobs: &[&BlobHash]) -> StoreResult<usize> {
        let wanted: Vec<&BlobHash> = blobs.iter().copied().filter(|b| !key.knows_file_key(b)).collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        Ok(key.prime_file_keys(user, &self.file_keys(user, &wanted)?))
    }

    /// Writes the file keys `key` learned (sealing, or opening with the
    /// identity) to `user`'s cache, replacing older rows. Returns how many.
    ///
    /// One transaction at `synchronous=NORMAL`: the rows are a cache, so a
    /// crash may lose them (they are learned again) but no acknowledged
    /// state rides on this commit, and an extra fsync per command would cost
    /// more than it saves. WAL at NORMAL stays consistent across a crash.
    pub fn record_file_keys(&self, user: &str, key: &SessionKey) -> StoreResult<usize> {
        let rows = key.learned_file_keys(user);
        if rows.is_empty() {
            return Ok(0);
        }
        crate::store::without_own_fsync(&self.conn, |conn| put_file_keys(conn, user, &rows))
    }
}

fn put_file_keys(conn: &Connection, user: &str, rows: &[(BlobHash, WrappedFileKey)]) -> StoreResult<usize> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO file_keys (user, blob, nonce, wrapped) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, blob) DO UPDATE SET nonce = excluded.nonce, wrapped = excluded.wrapped",
        )?;
        for (blob, wrapped) in rows {
            stmt.execute(params![
                user,
                blob.as_bytes().as_slice(),
                wrapped.nonce.as_slice(),
                wrapped.ciphertext.as_slice()
            ])?;
        }
    }
    tx.commit().map_err(StoreError::from)?;
    Ok(rows.len())
}
