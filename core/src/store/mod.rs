//! The device's store: one SQLite database (the event log plus the state
//! materialised from it) and a blob directory. The only module that talks to
//! SQLite (`state` holds the SQL; `merge` decides what to change through it).
//!
//! Writes go through [`Store::write`]: a closure gets a [`Writer`] inside one
//! SQLite transaction, every change it makes is an event appended to the log and
//! applied by `merge::apply_event`, and the transaction commits (fsync, WAL with
//! `synchronous=FULL`) before `write` returns. Nothing is acknowledged earlier.

mod checkpoint;
mod compact;
pub(crate) mod conflicts;
mod digest;
mod file_keys;
mod gc;
mod ingest;
pub mod peers;
mod readers;
mod reads;
mod rejoin;
mod schema;
mod seal_existing;
pub mod snapshot;
mod snapshot_refusals;
mod snapshot_transfer;
mod spool;
pub(crate) mod state;
mod writer;

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OpenFlags};

pub use blobs::{BlobError, BlobReader, BlobStore, BlobWriter, PrestoredMessage, StagedBlob};
pub use checkpoint::{CheckpointReport, Checkpointer};
pub use compact::CompactReport;
pub use conflicts::{ConflictKind, ConflictRecord};
pub use digest::{StateDigest, TableDigest, VerifyReport};
pub use gc::GcReport;
pub use ingest::{IngestReport, PENDING_EVENTS_MAX};
pub use readers::{ReadView, StoreReaders};
pub use reads::{EntryInfo, LoginRecord, MailboxCounts, MailboxInfo, StoreStats, UserInfo};
pub use rejoin::{RejoinProgress, RejoinState};
pub use seal_existing::SealReport;
pub use snapshot_refusals::SnapshotRefusal;
pub use snapshot_transfer::{ReceivedSnapshot, SnapshotOffer, SNAPSHOT_BYTES_MAX};
pub use spool::{SpooledBlob, FLUSH_BATCH};
pub use writer::{AppendMessage, Effects, FlagChange, RemoteApply, StoreMode, Writer};

use crate::log::event::DecodeError;
use crate::model::{DeviceId, DeviceSlot, NameError};

pub mod blobs;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "roost.db";
/// Directory of blobs inside the data directory.
pub const BLOB_DIR: &str = "blobs";

/// How long a connection waits for another writer's lock before failing: long
/// enough to cover a large group commit (measured at well under a second).
const BUSY_TIMEOUT_MS: u64 = 10_000;

/// Prepared statements cached per connection: comfortably above the number of
/// distinct queries in `state`, `reads`, `digest` and `merge::invariants`
/// (about 150). The cache is LRU: a capacity below the working set turns
/// every use into a miss, which re-parsed SQL for a quarter of the
/// simulator's time.
pub(crate) const PREPARED_STATEMENTS_MAX: usize = 512;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Applying schema migrations failed.
    #[error("database migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The database was written by a newer Roost.
    #[error("database {path} has schema version {found}, this build knows up to {supported}: upgrade roost")]
    NewerSchema {
        /// Database file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Highest version known.
        supported: i64,
    },
    /// There is no database where one was expected.
    #[error("no Roost database at {0} (run `roost init` first)")]
    NotInitialised(PathBuf),
    /// `init` on a directory that already has a database.
    #[error("a Roost database already exists at {0}")]
    AlreadyInitialised(PathBuf),
    /// The device key does not belong to this database.
    #[error("device key {key} does not match the database's device {db}")]
    WrongDevice {
        /// Device of the key.
        key: String,
        /// Device recorded in the database.
        db: String,
    },
    /// Blob store failure.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// An event in the log could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A name was refused.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        reason: NameError,
    },
    /// The user exists already.
    #[error("user {0} already exists")]
    UserExists(String),
    /// No such user.
    #[error("no user {0}")]
    NoSuchUser(String),
    /// No such mailbox.
    #[error("no mailbox {0}")]
    NoSuchMailbox(String),
    /// The mailbox name is taken.
    #[error("mailbox {0} already exists")]
    MailboxExists(String),
    /// An operation IMAP forbids on INBOX.
    #[error("INBOX cannot be {0}")]
    InboxProtected(&'static str),
    /// The UID space of a mailbox is used up (2^32 UIDs).
    #[error("mailbox {0} has used up its UID space")]
    UidSpaceExhausted(String),
    /// Too many events wait for dependencies that never arrive.
    #[error("more than {0} events from peers wait for their dependencies")]
    TooManyPending(u64),
    /// A peer lacks events this device folded into its log snapshot: it can
    /// only catch up by a snapshot transfer (`snapshot_transfer.rs`).
    #[error(
        "the peer lacks events this device has compacted (origin {origin}: folded up to seq {folded}, the peer \
         has {have}); it needs the log snapshot"
    )]
    SnapshotNeeded {
        /// Short id of the origin.
        origin: String,
        /// Highest seq of that origin folded here.
        folded: u64,
        /// What the peer has of it.
        have: u64,
    },
    /// A snapshot from a peer is damaged or does not match what was offered;
    /// nothing of it was installed.
    #[error("snapshot from the peer refused, nothing installed: {0}")]
    Snapshot(String),
    /// This device's log holds events a peer's snapshot does not cover, so
    /// installing the snapshot would drop them.
    #[error(
        "cannot install the peer's snapshot: this device has events the snapshot does not hold ({beyond}). \
         Installing is for a device with no history of its own: export its mail (`roost export`), move its \
         data directory away, `roost init` and pair again, then import the mail; or compact the peer only \
         after this device has synced with it"
    )]
    SnapshotRefused {
        /// Per origin, how far this device's log goes beyond the snapshot.
        beyond: String,
    },
    /// An event to apply names a blob that is not stored here: blob garbage
    /// collection removed it after it was received (no entry named it then).
    /// Nothing of the batch was applied; the sync session fetches it again.
    #[error(
        "event {event} names blob {blob}, which is not stored here (collected since it was received); fetch it again"
    )]
    EventBlobMissing {
        /// The event, `origin:seq`.
        event: String,
        /// The blob, hex.
        blob: String,
    },
    /// The operation is not implemented yet.
    #[error("not implemented: {0}")]
    Unsupported(&'static str),
    /// A key operation failed (wrong secret, malformed record, damaged blob).
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// A message is sealed and the caller has no unlocked key for it.
    #[error("message {0:?} is encrypted and no key is unlocked to read it")]
    Sealed(crate::model::BlobHash),
    /// A stored row breaks an invariant.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// The device was restored from a backup and has not yet learnt from a
    /// paired device which changes it made after the backup (`rejoin.rs`).
    #[error(
        "this device was restored from a backup and makes no changes until a paired device has sent it \
         the changes it made after the backup (start the daemon with a peer reachable; `roost pair remove` \
         every peer if none is left)"
    )]
    Rejoining,
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Who this device is: its signing key, id and UID slot.
#[derive(Debug)]
pub struct DeviceIdentity {
    key: SigningKey,
    id: DeviceId,
    slot: DeviceSlot,
}

impl DeviceIdentity {
    /// Identity from a 32-byte Ed25519 secret key and a slot.
    pub fn new(secret: [u8; 32], slot: DeviceSlot) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let id = DeviceId::from_bytes(key.verifying_key().to_bytes());
        DeviceIdentity { key, id, slot }
    }
    /// The device id (public key).
    pub fn id(&self) -> DeviceId {
        self.id
    }
    /// The UID/MODSEQ slot.
    pub fn slot(&self) -> DeviceSlot {
        self.slot
    }
    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }
}

/// A device's store. Not `Sync`: the daemon owns it behind one lock and runs
/// its calls on blocking threads.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    blobs: BlobStore,
    identity: DeviceIdentity,
    path: Option<PathBuf>,
    /// How long a newly placed UID is held back from IMAP (LOCAL policy; the
    /// sync layer sets about one round trip while peers are reachable, 0
    /// otherwise). Every write ends by exposing what has been held long enough.
    exposure_hold_ms: u64,
    /// Whether new messages of users with a key record are sealed (config
    /// `encryption`, default on; off only to measure its cost). Reading opens
    /// sealed blobs either way.
    encryption: bool,
}

impl Store {
    /// Creates a new store in `dir` (which may exist but must hold no database).
    pub fn init(dir: &Path, secret: [u8; 32], slot: DeviceSlot, now_ms: u64) -> StoreResult<Store> {
        let db_path = dir.join(DB_FILE);
        if db_path.exists() {
            return Err(StoreError::AlreadyInitialised(db_path));
        }
        let blobs = BlobStore::open_dir(&dir.join(BLOB_DIR))?;
        let mut conn = open_connection(&db_path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        schema::migrate(&mut conn, &db_path)?;
        let identity = DeviceIdentity::new(secret, slot);
        state::insert_device(&conn, identity.id, slot, now_ms)?;
        Ok(Store { conn, blobs, identity, path: Some(db_path), exposure_hold_ms: 0, encryption: true })
    }

    /// Opens the store in `dir`, applying pending migrations.
    pub fn open(dir: &Path, secret: [u8; 32]) -> StoreResult<Store> {
        let db_path = dir.join(DB_FILE);
        if !db_path.exists() {
            return Err(StoreError::NotInitialised(db_path));
        }
        let mut conn = open_connection(&db_path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        schema::migrate(&mut conn, &db_path)?;
        let blobs = BlobStore::open_dir(&dir.join(BLOB_DIR))?;
        Self::with_connection(conn, blobs, secret, Some(db_path))
    }

    /// A store in memory (simulator, tests).
    pub fn in_memory(secret: [u8; 32], slot: DeviceSlot, now_ms: u64) -> StoreResult<Store> {
        let conn = schema::migrated_in_memory()?;
        configure(&conn)?;
        let identity = DeviceIdentity::new(secret, slot);
        state::insert_device(&conn, identity.id, slot, now_ms)?;
        Ok(Store { conn, blobs: BlobStore::memory(), identity, path: None, exposure_hold_ms: 0, encryption: true })
    }

    fn with_connection(
        conn: Connection,
        blobs: BlobStore,
        secret: [u8; 32],
        path: Option<PathBuf>,
    ) -> StoreResult<Store> {
        let (db_id, slot) = state::device(&conn)?;
        let identity = DeviceIdentity::new(secret, slot);
        if identity.id != db_id {
            return Err(StoreError::WrongDevice { key: identity.id.short(), db: db_id.short() });
        }
        Ok(Store { conn, blobs, identity, path, exposure_hold_ms: 0, encryption: true })
    }

    /// Re-reads this device's slot: `roost pair join` (another process) may
    /// have changed it while the daemon runs.
    fn refresh_slot(&mut self) -> StoreResult<()> {
        refresh_slot_in(&self.conn, &mut self.identity)
    }

    /// This device.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// Turns sealing of new messages on or off (config `encryption`).
    pub fn set_encryption(&mut self, on: bool) {
        self.encryption = on;
    }

    /// Whether new messages are sealed.
    pub fn encryption(&self) -> bool {
        self.encryption
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Database file, if on disk.
    pub fn db_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` in one transaction; every change it makes is an event. Commits
    /// (durably) before returning; on error nothing is written.
    pub fn write<T>(
        &mut self,
        now_ms: u64,
        f: impl FnOnce(&mut Writer<'_>) -> StoreResult<T>,
    ) -> StoreResult<(T, Effects)> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Read in the write's own transaction: a read before it would be
        // a transaction (and WAL read lock) of its own on every write.
        refresh_slot_in(&tx, &mut self.identity)?;
        let mut writer = Writer::new(&tx, &self.identity, &self.blobs, now_ms, self.encryption)?;
        let value = f(&mut writer)?;
        let mut effects = writer.finish()?;
        effects.merge(ingest::expose_held(&tx, now_ms, self.exposure_hold_ms, self.identity.slot())?);
        // Applying a peer's event may have moved this device to another slot.
        refresh_slot_in(&tx, &mut self.identity)?;
        tx.commit()?;
        Ok((value, effects))
    }
}

/// One job of a [`Store::write_batch`]: makes its changes through the writer
/// and says whether they are to be kept (`true`) or rolled back (`false`),
/// with a value the caller gets back after the commit.
pub type BatchJob<'a, R> = Box<dyn FnOnce(&mut Writer<'_>) -> (bool, R) + 'a>;

impl Store {
    /// Group commit: runs several independent jobs in one transaction, each in
    /// its own savepoint (a failing job rolls back alone), and commits once.
    /// One fsync then covers every job, which is how concurrent deliveries
    /// reach throughput without acknowledging anything before it is durable.
    /// If the commit fails, every job failed.
    pub fn write_batch<R>(&mut self, now_ms: u64, jobs: Vec<BatchJob<'_, R>>) -> StoreResult<(Vec<R>, Effects)> {
        let mut tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        refresh_slot_in(&tx, &mut self.identity)?;
        let mut effects = Effects::default();
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let sp = tx.savepoint()?;
            let mut writer = Writer::new(&sp, &self.identity, &self.blobs, now_ms, self.encryption)?;
            let (keep, value) = job(&mut writer);
            let job_effects = writer.finish()?;
            if keep {
                sp.commit()?;
                effects.merge(job_effects);
            } else {
                sp.finish()?; // Dropping an uncommitted savepoint rolls it back.
            }
            results.push(value);
        }
        effects.merge(ingest::expose_held(&tx, now_ms, self.exposure_hold_ms, self.identity.slot())?);
        tx.commit()?;
        Ok((results, effects))
    }
}

/// Re-reads this device's slot into `identity` (see [`Store::refresh_slot`]).
fn refresh_slot_in(conn: &Connection, identity: &mut DeviceIdentity) -> StoreResult<()> {
    let (_, slot) = state::device(conn)?;
    if slot != identity.slot {
        *identity = DeviceIdentity::new(identity.key.to_bytes(), slot);
    }
    Ok(())
}

/// Opens a connection with every pragma spelled out (STYLE 27).
fn open_connection(path: &Path, flags: OpenFlags) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    configure(&conn)?;
    Ok(conn)
}

/// Runs `f` with `conn`'s commits not fsynced (`synchronous=NORMAL`), for
/// writes that acknowledge nothing (sync statistics, the file-key cache):
/// their WAL frames reach the disk with the next commit that fsyncs, and a
/// torn tail is discarded by the WAL checksums, never half-applied. FULL is
/// restored whatever `f` returned, so every other commit still fsyncs.
pub(crate) fn without_own_fsync<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    with_pragma(conn, "synchronous", ("NORMAL", "FULL"), f)
}

/// Runs `f` with SQLite overwriting what it deletes with zeros
/// (`secure_delete`), for rows holding message bytes (the blob spool): a
/// deleted message must not stay readable in the database's free space
/// (docs/security.md, "Deleted mail"). Off otherwise: it costs writes.
pub(crate) fn with_secure_delete<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    with_pragma(conn, "secure_delete", ("ON", "OFF"), f)
}

/// Runs `f` with a busy timeout of `wait_ms` instead of `BUSY_TIMEOUT_MS`.
pub(crate) fn with_busy_timeout_ms<T>(
    conn: &Connection,
    wait_ms: u64,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let (wait, usual) = (wait_ms.to_string(), BUSY_TIMEOUT_MS.to_string());
    with_pragma(conn, "busy_timeout", (&wait, &usual), f)
}

/// Runs `f` with `pragma` set to `values.0`, then sets it to `values.1`
/// whatever `f` returned.
fn with_pragma<T>(
    conn: &Connection,
    pragma: &str,
    values: (&str, &str),
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.pragma_update(None, pragma, values.0)?;
    let out = f(conn);
    conn.pragma_update(None, pragma, values.1)?;
    out
}

fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    // Room for every statement the merge rules, reads and invariant checks
    // prepare (the default 16 thrashes and re-parses SQL on each event).
    conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS_MAX);
    // WAL: readers do not block the writer. synchronous=FULL: a commit is on
    // disk when it returns, which is what acknowledging a message requires.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows stay in free space unless a write zeroes them: only the
    // blob spool's deletes do (`with_secure_delete`).
    conn.pragma_update(None, "secure_delete", "OFF")?;
    Ok(())
}
