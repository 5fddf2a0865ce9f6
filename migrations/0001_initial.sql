-- Roost schema, version 1. Append-only: never edit once merged; add a new file.
--
-- Hard state: `events` (the log) and `device` (who we are). Everything else is
-- materialised from the log by apply_event and can be rebuilt from it
-- (`roost verify`). Columns marked LOCAL are this device's own bookkeeping
-- (MODSEQs, UID watermarks) and are left out of state digests.

-- This device. Exactly one row.
CREATE TABLE device (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    device_id     BLOB    NOT NULL,   -- Ed25519 public key, 32 bytes
    slot          INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 15),
    created_ms    INTEGER NOT NULL,
    last_hlc      INTEGER NOT NULL,   -- last HLC issued or observed
    last_modseq   INTEGER NOT NULL    -- last MODSEQ issued (LOCAL)
) STRICT;

-- The event log. `applied_idx` is the local order of application, which is a
-- causal order; replay follows it.
CREATE TABLE events (
    applied_idx   INTEGER PRIMARY KEY,
    origin        BLOB    NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    hlc           INTEGER NOT NULL,
    deps          BLOB    NOT NULL,   -- JSON version vector, as signed
    payload       BLOB    NOT NULL,   -- JSON {"v":..,"op":..}, as signed
    signature     BLOB    NOT NULL,
    UNIQUE (origin, seq)
) STRICT;

-- Per origin, the highest seq in `events` (seqs are dense): the device's
-- version vector, kept with each insert so it is not recomputed per event.
CREATE TABLE version_vector (
    origin        BLOB    PRIMARY KEY,
    seq           INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Users. `hlc`/`origin` stamp the password register (last writer wins).
CREATE TABLE users (
    name          TEXT    PRIMARY KEY,
    password_hash TEXT    NOT NULL,
    hlc           INTEGER NOT NULL,
    origin        BLOB    NOT NULL
) STRICT, WITHOUT ROWID;

-- Mailboxes, including deleted ones (`deleted` = 1) so that a late event for a
-- deleted mailbox can still find it.
CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY,
    user          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    name_hlc      INTEGER NOT NULL,   -- LWW register stamp of `name`
    name_origin   BLOB    NOT NULL,   -- tie-break of the register
    uid_validity  INTEGER NOT NULL,
    special_use   TEXT,
    deleted       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX mailboxes_by_user_name ON mailboxes (user, name);

-- How often a name was vacated (deleted or renamed away): the generation used to
-- derive the id of the next mailbox created with that name.
CREATE TABLE name_generations (
    user          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    generation    INTEGER NOT NULL,
    PRIMARY KEY (user, name)
) STRICT, WITHOUT ROWID;

-- This device's UID watermark and HIGHESTMODSEQ per mailbox (LOCAL).
CREATE TABLE mailbox_local (
    mailbox_id      INTEGER PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid_max         INTEGER NOT NULL DEFAULT 0,  -- highest UID ever present here
    highest_modseq  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE subscriptions (
    user          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    hlc           INTEGER NOT NULL,   -- LWW register stamp
    origin        BLOB    NOT NULL,
    subscribed    INTEGER NOT NULL,
    PRIMARY KEY (user, name)
) STRICT, WITHOUT ROWID;

-- One row per stored message content, however many entries refer to it.
CREATE TABLE messages (
    blob          BLOB    PRIMARY KEY,  -- BLAKE3 of the raw message
    size          INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- An entry: one message placed in one mailbox under one UID. An item (the
-- message as the user knows it, with its flags) keeps its id when it moves;
-- the move removes one entry and adds another. COPY makes a new item.
CREATE TABLE mailbox_entries (
    entry_id      INTEGER PRIMARY KEY,
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes (id),
    uid           INTEGER NOT NULL,
    item_id       INTEGER NOT NULL,
    blob          BLOB    NOT NULL REFERENCES messages (blob),
    internal_date INTEGER NOT NULL,
    added_origin  BLOB    NOT NULL,   -- event that created the entry
    added_seq     INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,   -- LOCAL
    UNIQUE (mailbox_id, uid)
) STRICT;
CREATE INDEX mailbox_entries_by_item ON mailbox_entries (item_id);

-- Add-wins flag sets of items: a flag is set while at least one instance
-- remains. An instance is named by the event that added it; a removal deletes
-- the instances its event had observed. Kept while the item has no entry, so a
-- concurrent MOVE that re-places it finds its flags whatever the order.
CREATE TABLE item_flags (
    item_id       INTEGER NOT NULL,
    flag          TEXT    NOT NULL,
    tag_origin    BLOB    NOT NULL,
    tag_seq       INTEGER NOT NULL,
    PRIMARY KEY (item_id, flag, tag_origin)
) STRICT, WITHOUT ROWID;

-- UIDs that left a mailbox (expunge, move away, or re-key of their entry),
-- kept for QRESYNC VANISHED: a UID once used in a mailbox is never used again.
CREATE TABLE tombstones (
    mailbox_id    INTEGER NOT NULL,
    uid           INTEGER NOT NULL,
    entry_id      INTEGER NOT NULL,   -- the entry that had this UID
    modseq        INTEGER NOT NULL,   -- LOCAL
    PRIMARY KEY (mailbox_id, uid)
) STRICT;
CREATE INDEX tombstones_by_mailbox ON tombstones (mailbox_id, modseq);
