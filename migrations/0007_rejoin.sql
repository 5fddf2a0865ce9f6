-- Rejoining after a restore (issue 8). LOCAL to this device, outside the digest.
-- `roost restore` of a paired device writes the one row: the device's own log
-- may be behind what its peers hold of it (events it made after the backup),
-- so it makes no events of its own while the row exists (they would reuse
-- those sequence numbers), and it accepts its own signed events from peers.
-- The row goes when this device's own seq reaches the highest a peer reported
-- (`own_seq_target`, NULL until a peer's Hello), or when it has no active peer.
CREATE TABLE rejoin (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    restored_ms     INTEGER NOT NULL,
    own_seq_restored INTEGER NOT NULL,  -- this device's own seq in the backup
    own_seq_target  INTEGER             -- highest own seq a peer said it has
) STRICT;
