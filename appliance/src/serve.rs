//! The daemon's shared state and its lifecycle: one `Daemon` owns the store;
//! protocol tasks (IMAP, LMTP) call it and subscribe to its change feed.
//!
//! The store is not `Sync`, so it sits behind one mutex and every call runs on a
//! blocking thread (`spawn_blocking`): SQLite work never stalls the async
//! executor. Writes are durable when `write` returns; only then may a protocol
//! acknowledge.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{format_err, Context, Result};
use fs2::FileExt;
use tokio::sync::broadcast;

use roost_core::log::VersionVector;
use roost_core::model::BlobHash;
use roost_core::store::{BlobStore, SpooledBlob, Store, StoreError, StoreResult, Writer, BLOB_DIR, FLUSH_BATCH};
use roost_core::Effects;

use crate::cli::now_ms;
use crate::config::Config;

/// Capacity of the change feed. A session that falls this far behind resyncs
/// its mailbox from the store instead of replaying changes (`RecvError::Lagged`).
const CHANGE_FEED_CAPACITY: usize = 1024;

/// File that a running daemon holds an exclusive lock on.
pub const LOCK_FILE: &str = "roost.lock";

/// Most jobs one group commit takes. Bounds how long one commit holds the
/// store (a few hundred small deliveries commit in tens of milliseconds).
const GROUP_COMMIT_JOBS_MAX: usize = 256;

/// How often the daemon checks whether another process committed to its
/// database (`roost user add`, an import, a test). Cheap: one pragma read.
const EXTERNAL_CHANGE_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// How long the spool mover lets ingests accumulate before it moves their
/// blobs (see `run_spool_mover`).
const SPOOL_MOVE_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long the checkpoint thread lets commits accumulate after a wake-up:
/// under steady writes, one checkpoint (two fsyncs, off the commit path, on
/// the same disk as the commits' fsyncs) per 250 ms rather than per commit.
const CHECKPOINT_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// The checkpoint thread checkpoints at least this often (a no-op without
/// new WAL frames), for writes that do not go through the committer.
const CHECKPOINT_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// WAL frames (4 KiB pages) above which the checkpoint thread finishes under
/// the store lock, between two writes, so that the next write starts the WAL
/// over (SQLite restarts it only for a write that begins with every frame
/// copied, which a checkpoint beside steady writes never leaves). 16 MiB,
/// about 400 STOREs of ~10 pages each; readers slow down as the WAL grows.
const WAL_FRAMES_RESTART: i64 = 4096;

/// How long the restart checkpoint, which holds the store lock, waits for
/// the WAL's readers (IMAP reads are short; a longer one is outwaited at
/// the next round instead of stalling every writer).
const WAL_RESTART_WAIT_MS: u64 = 20;

/// Write requests queued for the committer thread before `write` waits.
const WRITE_QUEUE_CAPACITY: usize = 1024;

/// A write request: runs in the committer's transaction, returns whether to
/// keep its changes and a completion called with the commit's outcome.
type WriteJob = Box<dyn FnOnce(&mut Writer<'_>) -> (bool, Completion) + Send>;
/// The completion gets the whole batch's effects (a superset of its own).
type Completion = Box<dyn FnOnce(Result<&Arc<Effects>, String>) + Send>;

/// The committer job for a write `f`: it runs `f` in the batch, and once the
/// batch committed (or failed) hands `reply` the value with the batch's
/// effects; a failing `f` is rolled back alone and replied to at once.
fn write_job<T, F>(f: F, reply: impl FnOnce(StoreResult<(T, Arc<Effects>)>) + Send + 'static) -> WriteJob
where
    T: Send + 'static,
    F: FnOnce(&mut Writer<'_>) -> StoreResult<T> + Send + 'static,
{
    Box::new(move |w| match f(w) {
        Ok(value) => {
            let done: Completion = Box::new(move |commit| {
                reply(match commit {
                    Ok(effects) => Ok((value, effects.clone())),
                    Err(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
                })
            });
            (true, done)
        }
        Err(e) => {
            let done: Completion = Box::new(move |_| reply(Err(e)));
            (false, done)
        }
    })
}

/// What protocol tasks share.
#[derive(Debug)]
pub struct Daemon {
    store: Arc<Mutex<Store>>,
    /// Queue of the committer thread, which group-commits concurrent writes.
    writes: std::sync::mpsc::SyncSender<WriteJob>,
    /// What a commit made outside the committer reports to.
    sink: CommitSink,
    /// Every committed write's effects, for IDLE and NOOP updates of other sessions.
    changes: broadcast::Sender<Arc<Effects>>,
    /// The configuration the daemon started with.
    pub config: Config,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Group commits made and writes they carried (tests check that
    /// concurrent writers share commits).
    pub commit_counts: Arc<CommitCounts>,
    /// Wakes the spool mover thread (`run_spool_mover`).
    spool_wake: std::sync::mpsc::SyncSender<()>,
}

/// Counters of the committer thread.
#[derive(Debug, Default)]
pub struct CommitCounts {
    /// Transactions committed.
    pub batches: std::sync::atomic::AtomicU64,
    /// Writes in them.
    pub writes: std::sync::atomic::AtomicU64,
}

impl Daemon {
    /// Wraps an open store and starts its committer thread, which runs until
    /// the last `Daemon` handle is dropped.
    pub fn new(store: Store, config: Config, data_dir: PathBuf) -> Arc<Daemon> {
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        let (writes, queue) = std::sync::mpsc::sync_channel(WRITE_QUEUE_CAPACITY);
        let store = Arc::new(Mutex::new(store));
        let committer_store = store.clone();
        let commit_counts = Arc::new(CommitCounts::default());
        let sink = CommitSink {
            changes: changes.clone(),
            counts: commit_counts.clone(),
            checkpoint_wake: start_checkpoint_thread(&store),
        };
        let committer_sink = sink.clone();
        std::thread::Builder::new()
            .name("roost-committer".into())
            .spawn(move || run_committer(committer_store, queue, committer_sink))
            .expect("cannot start the committer thread");
        let (spool_wake, spool_wakes) = std::sync::mpsc::sync_channel(1);
        // The first round moves whatever a crash left in the spool.
        let _ = spool_wake.try_send(());
        let (mover_store, blob_dir) = (store.clone(), data_dir.join(BLOB_DIR));
        std::thread::Builder::new()
            .name("roost-spool".into())
            .spawn(move || run_spool_mover(mover_store, &blob_dir, spool_wakes))
            .expect("cannot start the spool mover thread");
        Arc::new(Daemon { store, writes, sink, changes, config, data_dir, commit_counts, spool_wake })
    }

    /// Runs `f` in a durable transaction (group-committed with concurrent
    /// writes; a failing `f` rolls back alone). Returns only after the commit,
    /// then subscribers hear what changed.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let job = write_job(f, move |result| {
            let _ = reply.send(result.map(|(value, _)| value));
        });
        let writes = self.writes.clone();
        // The queue is bounded: when it is full, wait on a blocking thread.
        tokio::task::spawn_blocking(move || writes.send(job))
            .await
            .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
            .map_err(|_| StoreError::Corrupt("the committer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Corrupt("the committer dropped a write".into()))?
    }

    /// [`Daemon::write`] for a caller on a blocking thread (an IMAP session,
    /// whose state machine is synchronous): commits `f` on this thread when
    /// the store is free, else queues it for the committer, and waits for
    /// the commit. Must not be called with the store lock held (the
    /// committer needs it). Returns the batch's effects, which the committer
    /// has already published on the change feed.
    pub fn write_blocking<T, F>(&self, f: F) -> StoreResult<(T, Arc<Effects>)>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel::<StoreResult<(T, Arc<Effects>)>>(1);
        let job = write_job(f, move |result| {
            let _ = reply.send(result);
        });
        let free = match self.store.try_lock() {
            Ok(store) => Some(store),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match free {
            // Nobody holds the store (no commit or read running): commit on
            // this thread, sparing two thread hand-offs (to the committer and
            // back). Writers arriving meanwhile queue for the committer and
            // share its next commit, so group commit is kept.
            Some(store) => commit_jobs(store, vec![job], &self.sink),
            None => self.writes.send(job).map_err(|_| StoreError::Corrupt("the committer has stopped".into()))?,
        }
        answer.recv().map_err(|_| StoreError::Corrupt("the committer dropped a write".into()))?
    }

    /// Runs a read on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&store)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    /// Ingests events from a peer (held until their dependencies are here,
    /// re-keyed where needed) in one transaction, with the small blobs they
    /// name in the blob spool (`Store::ingest_spooled`), then tells
    /// subscribers what changed and wakes the spool mover. Returns the
    /// version vector after it (the ack), read under the same lock.
    /// Serialised with the committer by the store's lock.
    pub async fn ingest(
        &self,
        events: Vec<roost_core::log::Event>,
        spooled: Vec<SpooledBlob>,
        gone: std::collections::HashSet<BlobHash>,
    ) -> StoreResult<(roost_core::store::IngestReport, VersionVector)> {
        let store = self.store.clone();
        let any_spooled = !spooled.is_empty();
        let (report, effects, vv) = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            let (report, effects) = store.ingest_from_peer(now_ms(), &events, &spooled, &gone)?;
            Ok::<_, StoreError>((report, effects, store.version_vector()?))
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
        if !effects.events.is_empty() || !effects.mailboxes.is_empty() {
            let _ = self.changes.send(Arc::new(effects));
        }
        if any_spooled {
            // Full means a wake-up is pending already, which moves these too.
            let _ = self.spool_wake.try_send(());
        }
        Ok((report, vv))
    }

    /// Installs a peer's checked log snapshot (`Store::install_snapshot`:
    /// one transaction; the caller stored its blobs first) and tells
    /// subscribers every mailbox changed. Returns the version vector after it
    /// (the ack).
    pub async fn install_snapshot(&self, snapshot: roost_core::store::ReceivedSnapshot) -> StoreResult<VersionVector> {
        let store = self.store.clone();
        let (effects, vv) = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            let effects = store.install_snapshot(snapshot, now_ms())?;
            Ok::<_, StoreError>((effects, store.version_vector()?))
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
        let _ = self.changes.send(Arc::new(effects));
        Ok(vv)
    }

    /// A blob's stored bytes from the blob spool, for the sync sender: a blob
    /// just received from one peer may not be in the blob store yet when the
    /// next peer asks for it.
    pub async fn spooled_blob(&self, hash: BlobHash) -> StoreResult<Option<Vec<u8>>> {
        self.read(move |s| s.spooled_blob(&hash)).await
    }

    /// Whether this device collected `blob` (`Store::blob_collected`), for
    /// the sync sender's answer to a peer asking for it.
    pub async fn blob_collected(&self, blob: BlobHash) -> StoreResult<bool> {
        self.read(move |s| s.blob_collected(&blob)).await
    }

    /// Removes the blobs nothing can need any more (`Store::collect_garbage`)
    /// under the store's lock, so no write in this process interleaves.
    pub async fn collect_garbage(&self) -> StoreResult<roost_core::store::GcReport> {
        self.with_store(|store| store.collect_garbage()).await
    }

    /// `[store] blob_gc_every`: collects garbage blobs this often until
    /// `stop`, logging what each run freed.
    pub async fn run_blob_gc(self: Arc<Self>, every: std::time::Duration, stop: tokio::sync::watch::Receiver<bool>) {
        periodically(every, stop, || async {
            match self.collect_garbage().await {
                Ok(report) => tracing::info!(
                    blobs = report.blobs,
                    bytes = report.bytes,
                    kept_until_acknowledged = report.kept_unstable,
                    "blob garbage collection"
                ),
                Err(e) => tracing::error!(error = %e, "blob garbage collection failed; retrying next period"),
            }
        })
        .await
    }

    /// Runs `f` on the store on a blocking thread, holding its lock (a
    /// maintenance job: compaction, blob GC).
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    /// Folds the event log's causally stable prefix into the log snapshot
    /// (`Store::compact`), unless no paired device is active (it would fold
    /// everything, and a device paired later could not catch up): `None`.
    pub async fn compact(&self) -> StoreResult<Option<roost_core::store::CompactReport>> {
        self.with_store(|store| {
            if !store.peers()?.iter().any(|p| p.removed_ms.is_none()) {
                return Ok(None);
            }
            store.compact(now_ms()).map(Some)
        })
        .await
    }

    /// `[sync] compact_every`: compacts the log this often until `stop`.
    pub async fn run_compaction(self: Arc<Self>, every: std::time::Duration, stop: tokio::sync::watch::Receiver<bool>) {
        periodically(every, stop, || async {
            match self.compact().await {
                Ok(Some(report)) => tracing::info!(
                    folded = report.folded,
                    snapshot_events = report.folded_total,
                    remaining = report.remaining,
                    "event log compacted"
                ),
                Ok(None) => tracing::debug!("no paired device: event log not compacted"),
                Err(e) => tracing::error!(error = %e, "event log compaction failed; retrying next period"),
            }
        })
        .await
    }

    /// Shows IMAP the entries held at least `hold_ms` (stability-gated
    /// exposure), and makes every later write hold new entries that long.
    pub async fn expose(&self, hold_ms: u64) -> StoreResult<()> {
        let store = self.store.clone();
        let effects = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            store.set_exposure_hold_ms(hold_ms);
            store.expose(now_ms(), hold_ms)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
        if !effects.mailboxes.is_empty() {
            let _ = self.changes.send(Arc::new(effects));
        }
        Ok(())
    }

    /// A receiver of every later committed change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Effects>> {
        self.changes.subscribe()
    }

    /// Watches for commits by other processes and announces them on the
    /// change feed as an `Effects` with no events (listeners re-read what
    /// they follow). Runs until the runtime ends.
    pub fn spawn_external_change_watcher(self: &Arc<Self>) {
        let daemon = self.clone();
        tokio::spawn(async move {
            let mut last = daemon.read(|s| s.data_version()).await.ok();
            // Runs for the life of the daemon.
            loop {
                tokio::time::sleep(EXTERNAL_CHANGE_POLL).await;
                let now = daemon.read(|s| s.data_version()).await.ok();
                if now != last {
                    last = now;
                    let _ = daemon.changes.send(Arc::new(Effects::default()));
                }
            }
        });
    }

    /// The store and change feed, for the IMAP sessions: their state machine
    /// is synchronous (sans-IO) and runs on a blocking thread, reading under
    /// the store lock and writing through [`Daemon::write_blocking`].
    pub fn imap_parts(&self) -> (Arc<Mutex<Store>>, broadcast::Sender<Arc<Effects>>) {
        (self.store.clone(), self.changes.clone())
    }
}

/// The committer loop: takes the first queued write, then whatever else is
/// queued (up to `GROUP_COMMIT_JOBS_MAX`), commits them in one transaction and
/// completes them. Ends when every sender is gone.
fn run_committer(store: Arc<Mutex<Store>>, queue: std::sync::mpsc::Receiver<WriteJob>, sink: CommitSink) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_COMMIT_JOBS_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit_jobs(store.lock().unwrap_or_else(|e| e.into_inner()), jobs, &sink);
    }
}

/// Where a commit's outcome goes: counters, the change feed, the checkpoint
/// thread. Shared by the committer and `Daemon::write_blocking`'s direct path.
#[derive(Debug, Clone)]
struct CommitSink {
    changes: broadcast::Sender<Arc<Effects>>,
    counts: Arc<CommitCounts>,
    checkpoint_wake: Option<std::sync::mpsc::SyncSender<()>>,
}

/// Commits `jobs` in one transaction on the locked store, releases the lock,
/// then completes them and publishes the effects.
fn commit_jobs(mut store: std::sync::MutexGuard<'_, Store>, jobs: Vec<WriteJob>, sink: &CommitSink) {
    let batch: Vec<roost_core::store::BatchJob<'_, Completion>> =
        jobs.into_iter().map(|job| Box::new(job) as roost_core::store::BatchJob<'_, Completion>).collect();
    // A panic is a broken invariant inside one batch: its transaction rolls
    // back, its callers get errors, and the committer keeps serving.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.write_batch(now_ms(), batch)));
    drop(store);
    let res = res.unwrap_or_else(|_| Err(roost_core::store::StoreError::Corrupt("a write panicked".into())));
    match res {
        Ok((completions, effects)) => {
            sink.counts.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sink.counts.writes.fetch_add(completions.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let effects = Arc::new(effects);
            for done in completions {
                done(Ok(&effects));
            }
            if let Some(wake) = &sink.checkpoint_wake {
                // Full means a checkpoint is pending already, which covers this commit.
                let _ = wake.try_send(());
            }
            if !effects.events.is_empty() {
                // No receivers is fine: nobody is connected.
                let _ = sink.changes.send(effects);
            }
        }
        Err(e) => {
            // The jobs' completions were dropped with the failed batch, so
            // their callers see "dropped a write": nothing was acknowledged.
            tracing::error!(error = %e, "group commit failed");
        }
    }
}

/// Takes WAL checkpoints off the commit path (`Store::checkpoint_elsewhere`)
/// and starts the thread that runs them; returns its wake-up handle for the
/// committer. Without one (the checkpoint connection does not open), SQLite
/// keeps checkpointing inside commits, as before, and that is logged.
fn start_checkpoint_thread(store: &Arc<Mutex<Store>>) -> Option<std::sync::mpsc::SyncSender<()>> {
    let checkpointer = match store.lock().unwrap_or_else(|e| e.into_inner()).checkpoint_elsewhere() {
        Ok(checkpointer) => checkpointer,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoints stay in the commit path");
            return None;
        }
    };
    let (wake, wakes) = std::sync::mpsc::sync_channel(1);
    let store = store.clone();
    std::thread::Builder::new()
        .name("roost-checkpoint".into())
        .spawn(move || run_checkpointer(&store, &checkpointer, &wakes))
        .expect("cannot start the checkpoint thread");
    Some(wake)
}

/// The checkpoint thread: after each wake-up (a commit) and a short delay,
/// a PASSIVE checkpoint on its own connection, which neither waits for nor
/// blocks commits. When the WAL is large, it finishes under the store lock
/// (the few frames committed meanwhile) and waits briefly for the WAL's
/// readers, so the next write starts the WAL over. Runs
/// at least every `CHECKPOINT_PERIOD`; ends when the committer is gone.
fn run_checkpointer(
    store: &Mutex<Store>,
    checkpointer: &roost_core::store::Checkpointer,
    wakes: &std::sync::mpsc::Receiver<()>,
) {
    loop {
        match wakes.recv_timeout(CHECKPOINT_PERIOD) {
            Ok(()) => std::thread::sleep(CHECKPOINT_DELAY),
            // Writes that bypass the committer (peer ingests, exposure,
            // compaction, the spool mover) are checkpointed within a period.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let res = checkpointer.passive().and_then(|report| {
            // "Complete" is of the frames there were when it began: under
            // steady writes, more came meanwhile, and SQLite starts the WAL
            // over only for a write that begins with none left to copy.
            if report.wal_frames < WAL_FRAMES_RESTART {
                return Ok(());
            }
            let restarts = store.lock().unwrap_or_else(|e| e.into_inner()).checkpoint_restart(WAL_RESTART_WAIT_MS)?;
            if !restarts {
                tracing::debug!(wal_frames = report.wal_frames, "a WAL reader outlasted the restart; next round");
            }
            Ok(())
        });
        if let Err(e) = res {
            // The next commit wakes it again; the WAL keeps everything meanwhile.
            tracing::error!(error = %e, "WAL checkpoint failed; retrying after the next commit");
        }
    }
}

/// The spool mover: on each wake-up, moves the blobs spooled by ingests
/// (`core/src/store/spool.rs`) to the blob store. The fsyncs run outside the
/// store lock; only reading the rows and deleting them take it. Ends when the
/// daemon is dropped.
fn run_spool_mover(store: Arc<Mutex<Store>>, blob_dir: &Path, wakes: std::sync::mpsc::Receiver<()>) {
    let blobs = match BlobStore::open_dir(blob_dir) {
        Ok(blobs) => blobs,
        Err(e) => {
            tracing::error!(error = %e, "the spool mover cannot open the blob store; spooled blobs stay in the database");
            return;
        }
    };
    let lock = || store.lock().unwrap_or_else(|e| e.into_inner());
    while wakes.recv().is_ok() {
        // Off the path anyone waits on: a burst of pushes moves in one round
        // (one directory fsync and one commit for all, not one per push).
        std::thread::sleep(SPOOL_MOVE_DELAY);
        // Bounded: each round removes what it moved, and a round that removes
        // nothing ends the loop (logged) until the next wake-up.
        loop {
            // The lock is taken twice, never held across the fsyncs (a guard
            // living through the whole expression would deadlock the second).
            let batch = lock().spooled_blobs(FLUSH_BATCH);
            let res = batch.and_then(|batch| {
                if batch.is_empty() {
                    return Ok(0);
                }
                let raws: Vec<&[u8]> = batch.iter().map(|b| b.data.as_slice()).collect();
                blobs.put_all(&raws)?;
                let hashes: Vec<BlobHash> = batch.iter().map(|b| b.hash).collect();
                lock().unspool(&hashes)
            });
            match res {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "moving spooled blobs to the blob store failed; they stay spooled");
                    break;
                }
            }
        }
    }
}

/// Holds the data directory's daemon lock until dropped.
#[derive(Debug)]
pub struct DaemonLock {
    _file: std::fs::File,
}

/// Takes the exclusive daemon lock of a data directory, or says who has it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DaemonLock> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    file.try_lock_exclusive().map_err(|_| {
        format_err!("another `roost serve` is already running on {} (it holds {})", data_dir.display(), path.display())
    })?;
    Ok(DaemonLock { _file: file })
}

/// Waits for SIGINT or SIGTERM. SIGHUP (`systemctl reload roost`) does not
/// stop the daemon (its default action would kill it): it runs `reload`, the
/// daemon's re-read of what can change under it (the TLS certificate).
pub fn shutdown_signal(reload: impl Fn() + Send + 'static) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers are registered here, when called, not at the first poll: the
    // caller calls this before READY=1, so a `systemctl stop` right after
    // start is a clean shutdown, not death by SIGTERM's default action.
    let streams = (signal(SignalKind::terminate()), signal(SignalKind::hangup()), signal(SignalKind::interrupt()));
    async move {
        let (mut term, mut hup, mut int) = match streams {
            (Ok(term), Ok(hup), Ok(int)) => (term, hup, int),
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = int.recv() => return,
                _ = term.recv() => return,
                _ = hup.recv() => {
                    crate::systemd::notify_reloading();
                    reload();
                    crate::systemd::notify_ready();
                }
            }
        }
    }
}

/// Runs `job` every `every` until `stop` turns true (a job already running
/// finishes first): the daemon's maintenance schedules.
async fn periodically<F, Fut>(every: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Runs until the daemon stops.
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        job().await;
    }
}
