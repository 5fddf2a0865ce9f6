//! WAL checkpoints off the commit path. By default SQLite checkpoints inside
//! the commit that takes the WAL past 1000 pages: that commit (an IMAP STORE,
//! a delivery) then also copies the WAL into the database file and fsyncs
//! both, which is the slowest commit of every ~100 STOREs (docs/benchmarks.md,
//! "STORE and FETCH, one command"). The daemon turns that off and checkpoints
//! from its own thread through a second connection ([`Checkpointer`]), so an
//! acknowledged write waits for exactly one fsync: its WAL commit.

use rusqlite::OpenFlags;

use crate::store::{open_connection, Store, StoreError, StoreResult};

/// What one checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Frames in the WAL.
    pub wal_frames: i64,
    /// Of those, frames now copied into the database.
    pub checkpointed: i64,
}

impl CheckpointReport {
    /// Whether the whole WAL is in the database, so the next write starts
    /// the WAL over from its beginning instead of growing it.
    pub fn complete(&self) -> bool {
        self.checkpointed >= self.wal_frames
    }
}

/// A second connection to a store's database that only checkpoints its WAL.
#[derive(Debug)]
pub struct Checkpointer {
    conn: rusqlite::Connection,
}

impl Checkpointer {
    /// A PASSIVE checkpoint: copies the frames no reader still needs and
    /// never waits for, nor blocks, the store's writer. Frames committed
    /// while it runs are left for the next one.
    pub fn passive(&self) -> StoreResult<CheckpointReport> {
        passive(&self.conn)
    }
}

fn passive(conn: &rusqlite::Connection) -> StoreResult<CheckpointReport> {
    // Columns: busy, frames in the WAL, frames checkpointed (-1 when not in WAL mode).
    let (wal_frames, checkpointed) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
    Ok(CheckpointReport { wal_frames, checkpointed })
}

impl Store {
    /// Stops this connection's automatic checkpoints and returns a
    /// [`Checkpointer`] on its own connection to take them over. Whoever
    /// calls this must run the checkpointer (the daemon's checkpoint thread),
    /// or the WAL grows without bound. An in-memory store has no WAL to move.
    pub fn checkpoint_elsewhere(&self) -> StoreResult<Checkpointer> {
        let path = self.path.as_deref().ok_or_else(|| StoreError::Corrupt("an in-memory store has no WAL".into()))?;
        let conn = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Checkpointer { conn })
    }

    /// A RESTART checkpoint on the store's own connection, waiting at most
    /// `wait_ms` for readers of the WAL: it copies the whole WAL, then waits
    /// until no reader uses it, so the next write starts the WAL over from
    /// its beginning. Called with the store locked, which is what bounds the
    /// WAL under steady writes: SQLite starts it over only when a write
    /// begins with every frame copied, and a [`Checkpointer::passive`]
    /// running beside the writes always ends a commit or two behind them.
    /// Returns whether the WAL will start over (false: a reader outlasted
    /// the wait; nothing is lost, the WAL grows until the next try).
    pub fn checkpoint_restart(&self, wait_ms: u64) -> StoreResult<bool> {
        waiting_checkpoint(&self.conn, WaitingCheckpoint::Restart, wait_ms)
    }
}

/// The checkpoints that wait for the WAL's readers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WaitingCheckpoint {
    /// The next write starts the WAL over.
    Restart,
    /// And the WAL file is emptied now.
    Truncate,
}

/// Runs a `mode` checkpoint on `conn`, waiting at most `wait_ms` for the
/// WAL's readers; returns whether it completed (false: a reader outlasted
/// the wait, and the WAL stays as it was).
pub(crate) fn waiting_checkpoint(
    conn: &rusqlite::Connection,
    mode: WaitingCheckpoint,
    wait_ms: u64,
) -> StoreResult<bool> {
    let sql = match mode {
        WaitingCheckpoint::Restart => "PRAGMA wal_checkpoint(RESTART)",
        WaitingCheckpoint::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let busy: i64 =
        crate::store::with_busy_timeout_ms(conn, wait_ms, |conn| Ok(conn.query_row(sql, [], |r| r.get(0))?))?;
    Ok(busy == 0)
}
