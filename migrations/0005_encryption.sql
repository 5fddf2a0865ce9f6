-- Roost schema, version 5: mail encrypted at rest (issue 8). Append-only.
--
-- A user's key record (crypto::UserKeys as JSON: age public key, identity
-- wrapped under the password and under the recovery key, content-hash key).
-- Set with the password by `user_keys` events, in the same last-writer-wins
-- register (the row's hlc, origin), so a password and its wrap never split.
-- NULL for a user created before encryption or with encryption off.
ALTER TABLE users ADD COLUMN keys TEXT;

-- LOCAL: which sealed blob holds a user's message with this content hash
-- (keyed BLAKE3, per-user key), so storing the same message again for the same
-- user reuses its ciphertext (age output is randomised). Not derived from the
-- log, not replicated, not in digests.
CREATE TABLE sealed_blobs (
    user          TEXT    NOT NULL,
    content_hash  BLOB    NOT NULL,
    blob          BLOB    NOT NULL,
    PRIMARY KEY (user, content_hash)
) STRICT, WITHOUT ROWID;
