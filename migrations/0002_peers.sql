-- Paired devices and pairing invitations. LOCAL to this device: pairing is
-- between two devices, not replicated state (each side records the other).

CREATE TABLE peers (
    device_id     BLOB    PRIMARY KEY,   -- the peer's Ed25519 public key = iroh endpoint id
    name          TEXT    NOT NULL,      -- how `pair list` shows it
    addrs         TEXT    NOT NULL,      -- JSON list of "ip:port" last known
    slot          INTEGER NOT NULL,      -- the peer's UID/MODSEQ slot
    paired_ms     INTEGER NOT NULL,
    removed_ms    INTEGER,               -- set by `pair remove`; refused from then on
    -- What the sync layer last learnt, for `roost status` (another process).
    last_seen_ms  INTEGER,               -- last frame received
    acked         TEXT    NOT NULL DEFAULT '{}',  -- JSON version vector the peer confirmed
    bytes_sent    INTEGER NOT NULL DEFAULT 0,
    bytes_received INTEGER NOT NULL DEFAULT 0,
    lag_ms        INTEGER                -- last replication lag measured (commit there to apply here)
) STRICT, WITHOUT ROWID;

-- One-time pairing secrets `pair invite` printed. Only the hash is kept.
CREATE TABLE pair_invites (
    secret_hash   BLOB    PRIMARY KEY,
    expires_ms    INTEGER NOT NULL,
    used_ms       INTEGER
) STRICT, WITHOUT ROWID;
