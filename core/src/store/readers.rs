//! Read-only connections to a store's database, so readers run beside the
//! writer and beside each other. With one connection behind one lock, every
//! IMAP read (a FETCH, a session catching up on other sessions' changes, a
//! STATUS) waited for whichever commit held the lock, fsync included, and
//! for every other reader: ten clients mixing FETCH and STORE were
//! serialised on the disk (docs/benchmarks.md, "mixed FETCH/STORE"). In WAL
//! mode a reader sees the last commit that completed before its read began
//! and never waits for the writer.
//!
//! A [`ReadView`] is one read transaction: every statement run through it
//! sees the same committed state, as under the store's lock, so code that
//! reads several things "under one guard" keeps that guarantee.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use rusqlite::OpenFlags;

use crate::store::{open_connection, BlobStore, Store, StoreError, StoreResult};

/// A pool of read-only [`Store`]s on one database (see the module doc).
#[derive(Debug)]
pub struct StoreReaders {
    template: ReaderTemplate,
    pool: Mutex<Pool>,
    returned: Condvar,
    max: usize,
}

/// What a new reader is opened from: the writer's database, blobs and settings.
#[derive(Debug)]
struct ReaderTemplate {
    db_path: PathBuf,
    blob_dir: PathBuf,
    secret: [u8; 32],
    encryption: bool,
}

#[derive(Debug, Default)]
struct Pool {
    idle: Vec<Store>,
    open: usize,
}

impl Store {
    /// A pool of at most `max` read-only connections to this store's
    /// database (at least one), opened as readers ask for them. Reads
    /// through it see every commit that completed before they began.
    /// An in-memory store has no file a second connection could open.
    pub fn readers(&self, max: usize) -> StoreResult<StoreReaders> {
        let db_path =
            self.path.clone().ok_or_else(|| StoreError::Corrupt("an in-memory store has no readers".into()))?;
        Ok(StoreReaders {
            template: ReaderTemplate {
                db_path,
                blob_dir: match &self.blobs {
                    BlobStore::Dir(dir) => dir.clone(),
                    BlobStore::Memory(_) => {
                        return Err(StoreError::Corrupt("an in-memory blob store has no readers".into()))
                    }
                },
                secret: self.identity.key.to_bytes(),
                encryption: self.encryption,
            },
            pool: Mutex::new(Pool::default()),
            returned: Condvar::new(),
            max: max.max(1),
        })
    }
}

impl StoreReaders {
    /// A consistent read of the committed state: an idle reader, a new one
    /// while fewer than `max` are open, or the next one returned.
    pub fn view(&self) -> StoreResult<ReadView<'_>> {
        let mut store = self.take()?;
        // A deferred transaction: the snapshot is taken by its first read
        // (this device's slot, which `roost pair join` may have changed:
        // UIDNEXT is computed from it) and held until the view is dropped.
        let begun = store.conn.prepare_cached("BEGIN DEFERRED").and_then(|mut begin| begin.execute([]));
        if let Err(e) = begun.map_err(StoreError::from).and_then(|_| store.refresh_slot()) {
            let _ = store.conn.execute_batch("ROLLBACK");
            self.discard();
            return Err(e);
        }
        Ok(ReadView { store: Some(Box::new(store)), readers: self })
    }

    /// Read connections open now (idle or in a view).
    pub fn open_count(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A panic while holding this lock leaves the Vec and counter sound.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> StoreResult<Store> {
        let mut pool = self.lock();
        loop {
            if let Some(store) = pool.idle.pop() {
                return Ok(store);
            }
            if pool.open < self.max {
                pool.open += 1;
                drop(pool);
                return self.open_reader().inspect_err(|_| self.discard());
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn open_reader(&self) -> StoreResult<Store> {
        let t = &self.template;
        let conn = open_connection(&t.db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let blobs = BlobStore::Dir(t.blob_dir.clone());
        let mut store = Store::with_connection(conn, blobs, t.secret, Some(t.db_path.clone()))?;
        store.encryption = t.encryption;
        Ok(store)
    }

    /// Forgets a reader that is not coming back (it failed).
    fn discard(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }

    fn give_back(&self, store: Store) {
        self.lock().idle.push(store);
        self.returned.notify_one();
    }
}

/// One read transaction on a pooled reader; derefs to a read-only [`Store`]
/// (a write through it fails with SQLite's "readonly database" error).
#[derive(Debug)]
pub struct ReadView<'a> {
    store: Option<Box<Store>>,
    readers: &'a StoreReaders,
}

impl Deref for ReadView<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        // Only `drop` takes it out.
        self.store.as_deref().unwrap_or_else(|| unreachable!("a ReadView holds its store until dropped"))
    }
}

impl Drop for ReadView<'_> {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else { return };
        // Ends the read so the WAL can be checkpointed past it. A reader
        // that cannot end its transaction is closed, not reused; the next
        // view opens a fresh one.
        let ended = store.conn.prepare_cached("COMMIT").and_then(|mut commit| commit.execute([]));
        match ended {
            Ok(_) => self.readers.give_back(*store),
            Err(_) => self.readers.discard(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceSlot, UserName};

    fn store(dir: &std::path::Path) -> Store {
        Store::init(dir, [7; 32], DeviceSlot::new(1).expect("slot"), 1).expect("init")
    }

    /// A view reads one committed state however many statements it runs,
    /// sees a commit made before it began, and refuses to write.
    #[test]
    fn a_view_is_one_committed_state_and_read_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = store(dir.path());
        let readers = writer.readers(2).expect("readers");
        let alice = UserName::new("alice").expect("name");
        writer.write(2, |w| w.add_user(&alice, "x")).expect("add user");
        let view = readers.view().expect("view");
        assert_eq!(view.users().expect("users").len(), 1, "a commit before the view is seen");
        let bob = UserName::new("bob").expect("name");
        writer.write(3, |w| w.add_user(&bob, "x")).expect("a writer is not blocked by an open view");
        assert_eq!(view.users().expect("users").len(), 1, "the view keeps its snapshot");
        let refused = view.conn.execute("DELETE FROM users", []);
        assert!(refused.is_err(), "a reader cannot write");
        drop(view);
        assert_eq!(readers.view().expect("view").users().expect("users").len(), 2, "a new view sees the new commit");
        assert_eq!(readers.open_count(), 1, "the reader was reused");
    }

    /// With every reader in use, the next view waits for one to come back
    /// instead of opening more than `max`.
    #[test]
    fn views_beyond_the_limit_wait_for_a_returned_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = store(dir.path());
        let readers = writer.readers(1).expect("readers");
        let first = readers.view().expect("view");
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| readers.view().map(|v| v.users().map(|u| u.len())));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiting.is_finished(), "a second view waits while the only reader is in use");
            drop(first);
            let users = waiting.join().expect("join").expect("view").expect("users");
            assert_eq!(users, 0);
        });
        assert_eq!(readers.open_count(), 1);
    }
}
