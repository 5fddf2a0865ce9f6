-- Roost schema, version 12: the file-key cache (issue 8, cold reads of
-- sealed mail). Append-only.
--
-- LOCAL: the age file key of a user's sealed blob, wrapped (XChaCha20-Poly1305,
-- associated data: user and blob) under a cache key derived from the user's
-- identity, which is never on disk. Lets a session open the blob without an
-- X25519 unwrap (core/src/crypto/filekeys.rs). A cache: a missing or
-- unusable row costs only that unwrap. Not replicated and not in the state
-- digest; a row goes when the last entry of its message is removed, and with
-- its user.
CREATE TABLE file_keys (
    user     TEXT    NOT NULL,
    blob     BLOB    NOT NULL,
    nonce    BLOB    NOT NULL,
    wrapped  BLOB    NOT NULL,
    PRIMARY KEY (user, blob)
) STRICT, WITHOUT ROWID;

-- Which entries name a blob: the row above goes with the user's last one
-- (and any other lookup by blob stops scanning every entry).
CREATE INDEX mailbox_entries_by_blob ON mailbox_entries (blob);
