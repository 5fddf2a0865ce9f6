-- Roost schema, version 14: refused log snapshots. Append-only.
--
-- LOCAL: a paired device's log snapshot this device refused to install
-- (its log holds events the snapshot lacks: docs/replication.md, "Snapshot
-- transfer"), by the snapshot's version vector (JSON). While the refusal
-- still holds, this device's Hello names it so the peer does not stream the
-- same image again on every reconnect, and `roost status` shows the reason.
-- A newer snapshot from the peer (another vector) is offered and judged
-- anew; a row is replaced by the peer's next refusal.
CREATE TABLE snapshot_refusals (
    peer        BLOB    PRIMARY KEY,
    vector      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    refused_ms  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
