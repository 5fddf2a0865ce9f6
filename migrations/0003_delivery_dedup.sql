-- Roost schema, version 3: LMTP duplicate suppression. Append-only.
--
-- LOCAL: which messages were delivered over LMTP to which user, keyed by a
-- hash of the message's Message-ID and body, so that an MTA retrying a
-- delivery it already made (a lost 250 reply, a re-queued message) stores the
-- message once. Not derived from the log, not replicated, not in digests.
CREATE TABLE delivery_dedup (
    user          TEXT    NOT NULL,
    key           BLOB    NOT NULL,   -- BLAKE3 of Message-ID and body
    delivered_ms  INTEGER NOT NULL,
    PRIMARY KEY (user, key)
) STRICT, WITHOUT ROWID;
