-- Roost schema, version 14: blob garbage collection. Append-only.
--
-- LOCAL: blobs that blob GC (core/src/store/gc.rs) found no live entry
-- naming, with this device's version vector (JSON) when it first found so.
-- The vector holds the event that removed the last entry, so the blob goes
-- only once every paired device has acknowledged it (and every event naming
-- the blob). A row goes with its blob, or when an entry names the blob again.
-- Not replicated, not in the state digest.
CREATE TABLE blob_orphans (
    blob         BLOB  PRIMARY KEY,
    seen_vector  TEXT  NOT NULL
) STRICT, WITHOUT ROWID;

-- Blob GC deletes a collected blob's rows by blob: without these, each
-- delete scans the whole table (both are keyed by user first).
CREATE INDEX sealed_blobs_by_blob ON sealed_blobs (blob);
CREATE INDEX file_keys_by_blob ON file_keys (blob);
