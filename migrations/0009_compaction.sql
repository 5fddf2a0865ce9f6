-- Log compaction (issue 6): the causally stable prefix of the application
-- order, folded into a snapshot. At most one row: the replay of every folded
-- event (an SQLite database image, `sqlite3_serialize` of the replayed
-- schema with its events table emptied), replaced in the same transaction
-- that deletes the folded events, so a crash leaves either the old snapshot
-- and all events or the new one and the rest. Kept inside roost.db so
-- backups (VACUUM INTO) and restores carry it with the log it belongs to.
CREATE TABLE log_snapshot (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    events          INTEGER NOT NULL,   -- events folded, all compactions together
    image           BLOB    NOT NULL,   -- SQLite database: replay of the folded prefix
    taken_ms        INTEGER NOT NULL
) STRICT;

-- Per origin, the highest seq folded into the snapshot (seqs 1..seq of each
-- origin are in it): the log is dense above this vector, and a peer below it
-- needs a snapshot transfer, not events.
CREATE TABLE log_snapshot_vector (
    origin        BLOB    PRIMARY KEY,
    seq           INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
