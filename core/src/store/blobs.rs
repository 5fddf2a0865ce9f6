//! Content-addressed blob store: one file per distinct message, named by the
//! BLAKE3 hash of its bytes, under `blobs/ab/cdef...`.
//!
//! A blob is durable before any event refers to it: written to `blobs/tmp/`,
//! fsynced, renamed into place, and the directory fsynced. A blob whose event
//! never committed is an orphan, never a dangling reference.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::crypto::Sealer;
use crate::model::BlobHash;
use crate::store::StoreError;

/// Where blobs live.
#[derive(Debug)]
pub enum BlobStore {
    /// A directory on disk.
    Dir(PathBuf),
    /// In memory, for the simulator and tests.
    Memory(Mutex<HashMap<BlobHash, Vec<u8>>>),
}

/// A message made durable before its event (see [`BlobStore::put_message`]).
#[derive(Debug, Clone, Copy)]
pub struct PrestoredMessage {
    /// The blob written.
    pub blob: BlobHash,
    /// The user's content hash when the blob is sealed.
    pub sealed_content: Option<[u8; 32]>,
}

/// A blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// File system error, with the path.
    #[error("blob store {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// No blob with this hash.
    #[error("blob {0:?} is missing")]
    Missing(BlobHash),
    /// The bytes on disk do not hash to the name.
    #[error("blob {0:?} is corrupt: its bytes hash to something else")]
    Corrupt(BlobHash),
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

impl BlobStore {
    /// A store in `dir`, created if missing.
    pub fn open_dir(dir: &Path) -> Result<BlobStore, BlobError> {
        fs::create_dir_all(dir.join("tmp")).map_err(io_err(dir))?;
        Ok(BlobStore::Dir(dir.to_path_buf()))
    }

    /// An in-memory store.
    pub fn memory() -> BlobStore {
        BlobStore::Memory(Mutex::new(HashMap::new()))
    }

    fn path_of(dir: &Path, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        dir.join(&hex[..2]).join(&hex[2..])
    }

    /// Stores `raw` durably and returns its hash. Storing the same bytes again
    /// writes nothing.
    pub fn put(&self, raw: &[u8]) -> Result<BlobHash, BlobError> {
        let hash = BlobHash::of(raw);
        match self {
            BlobStore::Memory(map) => {
                map.lock().unwrap_or_else(|e| e.into_inner()).entry(hash).or_insert_with(|| raw.to_vec());
            }
            BlobStore::Dir(dir) => {
                let path = Self::path_of(dir, &hash);
                if path.exists() {
                    return Ok(hash);
                }
                let parent = path.parent().unwrap_or(dir);
                fs::create_dir_all(parent).map_err(io_err(parent))?;
                let tmp = dir.join("tmp").join(format!(
                    "{}.{}.{}",
                    std::process::id(),
                    TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
                    &hash.to_hex()[..16]
                ));
                let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
                file.write_all(raw).map_err(io_err(&tmp))?;
                file.sync_all().map_err(io_err(&tmp))?;
                drop(file);
                fs::rename(&tmp, &path).map_err(io_err(&path))?;
                // The rename is durable only once the directory is synced.
                File::open(parent).and_then(|d| d.sync_all()).map_err(io_err(parent))?;
            }
        }
        Ok(hash)
    }

    /// Stores a message ahead of the transaction that will name it (LMTP,
    /// import: the fsync stays off the committer), sealed when `sealer` is
    /// given. The write then calls [`crate::store::Writer::adopt_prestored`]
    /// so its append uses this blob instead of storing the message again.
    pub fn put_message(&self, sealer: Option<&Sealer>, raw: &[u8]) -> Result<PrestoredMessage, StoreError> {
        match sealer {
            Some(sealer) => {
                let blob = self.put(&sealer.seal(raw)?)?;
                Ok(PrestoredMessage { blob, sealed_content: Some(sealer.content_hash(raw)) })
            }
            None => Ok(PrestoredMessage { blob: self.put(raw)?, sealed_content: None }),
        }
    }

    /// Whether the blob is present.
    pub fn contains(&self, hash: &BlobHash) -> bool {
        match self {
            BlobStore::Memory(map) => map.lock().unwrap_or_else(|e| e.into_inner()).contains_key(hash),
            BlobStore::Dir(dir) => Self::path_of(dir, hash).exists(),
        }
    }

    /// Reads a blob and checks its hash.
    pub fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobError> {
        let raw = match self {
            BlobStore::Memory(map) => {
                map.lock().unwrap_or_else(|e| e.into_inner()).get(hash).cloned().ok_or(BlobError::Missing(*hash))?
            }
            BlobStore::Dir(dir) => {
                let path = Self::path_of(dir, hash);
                match fs::read(&path) {
                    Ok(raw) => raw,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing(*hash)),
                    Err(source) => return Err(BlobError::Io { path, source }),
                }
            }
        };
        if BlobHash::of(&raw) != *hash {
            return Err(BlobError::Corrupt(*hash));
        }
        Ok(raw)
    }

    /// Total bytes and number of blobs stored.
    pub fn usage(&self) -> Result<(u64, u64), BlobError> {
        match self {
            BlobStore::Memory(map) => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok((map.values().map(|v| v.len() as u64).sum(), map.len() as u64))
            }
            BlobStore::Dir(dir) => {
                let (mut bytes, mut count) = (0, 0);
                for shard in fs::read_dir(dir).map_err(io_err(dir))? {
                    let shard = shard.map_err(io_err(dir))?;
                    if shard.file_name() == "tmp" || !shard.path().is_dir() {
                        continue;
                    }
                    let shard_path = shard.path();
                    for blob in fs::read_dir(&shard_path).map_err(io_err(&shard_path))? {
                        let blob = blob.map_err(io_err(&shard_path))?;
                        bytes += blob.metadata().map_err(io_err(&blob.path()))?.len();
                        count += 1;
                    }
                }
                Ok((bytes, count))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_idempotent_and_get_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_dir(dir.path()).unwrap();
        let h1 = store.put(b"hello").unwrap();
        let h2 = store.put(b"hello").unwrap();
        assert_eq!(h1, h2);
        assert_eq!(store.usage().unwrap(), (5, 1));
        assert_eq!(store.get(&h1).unwrap(), b"hello");
        // Corrupt the file: reading it must fail, not return wrong bytes.
        let path = BlobStore::path_of(dir.path(), &h1);
        fs::write(&path, b"hellO").unwrap();
        assert!(matches!(store.get(&h1), Err(BlobError::Corrupt(_))));
        let missing = BlobHash::of(b"nope");
        assert!(matches!(store.get(&missing), Err(BlobError::Missing(_))));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
