-- Replication (issue 6): what merging events from several devices needs.
-- Append-only once merged. Replicated tables are digested; LOCAL ones are not.

-- Mailbox liveness is an add-wins set: a create or a placement of an entry adds
-- an instance named by its event (one row per origin, the newest seq: a newer
-- instance from one origin causally dominates the older); a delete removes the
-- instances its event had observed. A mailbox is live while an instance remains.
CREATE TABLE mailbox_instances (
    mailbox_id    INTEGER NOT NULL,
    tag_origin    BLOB    NOT NULL,
    tag_seq       INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, tag_origin)
) STRICT, WITHOUT ROWID;

-- Entries that were removed (expunge, move away, mailbox delete). Removal of an
-- entry id is final: a duplicate delivery of the same message (same entry id,
-- derived from the message) that arrives later does not bring it back.
CREATE TABLE removed_entries (
    entry_id      INTEGER PRIMARY KEY
) STRICT;

-- Extra adding events of an entry placed by more than one event (the same
-- message delivered on two devices). `mailbox_entries.added_*` holds the
-- smallest; a mailbox delete removes the entry if it observed any of them.
CREATE TABLE entry_adds (
    entry_id      INTEGER NOT NULL,
    tag_origin    BLOB    NOT NULL,
    tag_seq       INTEGER NOT NULL,
    PRIMARY KEY (entry_id, tag_origin, tag_seq)
) STRICT, WITHOUT ROWID;

-- LOCAL: the highest UID of the mailbox IMAP clients may have been shown on
-- this device. Entries above it are held back (stability-gated exposure); a
-- remote entry arriving at or below it is re-keyed.
ALTER TABLE mailbox_local ADD COLUMN uid_exposed INTEGER NOT NULL DEFAULT 0;

-- LOCAL: when the entry got its current UID on this device, for the hold.
ALTER TABLE mailbox_entries ADD COLUMN placed_ms INTEGER NOT NULL DEFAULT 0;

-- LOCAL: events from peers whose causal dependencies have not arrived yet.
-- Verified on receipt; applied (and deleted from here) once they are ready.
CREATE TABLE pending_events (
    origin        BLOB    NOT NULL,
    seq           INTEGER NOT NULL,
    hlc           INTEGER NOT NULL,
    deps          BLOB    NOT NULL,
    payload       BLOB    NOT NULL,
    signature     BLOB    NOT NULL,
    received_ms   INTEGER NOT NULL,
    PRIMARY KEY (origin, seq)
) STRICT, WITHOUT ROWID;

-- The name generation scheme of 0001 is replaced: a new mailbox's id is derived
-- from the first generation whose id this device has never seen, so nothing
-- order-dependent is materialised (concurrent renames and deletes bumped it in
-- an order-dependent way).
DROP TABLE name_generations;
