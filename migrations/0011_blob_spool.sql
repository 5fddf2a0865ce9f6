-- LOCAL: small message blobs received from a peer, committed in the same
-- transaction as the events naming them, so a live push is durable after one
-- fsync (the commit) rather than three (blob file, its directory, the commit).
-- The daemon moves each to the blob store (file fsync, rename, directory
-- fsync) and only then deletes its row; until then reads come from here.
-- Not replicated and not in the state digest.
CREATE TABLE blob_spool (
    hash  BLOB PRIMARY KEY,
    data  BLOB NOT NULL
) STRICT;
