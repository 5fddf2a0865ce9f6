-- Roost schema, version 8: the keyring (issue 8). Append-only.
--
-- Every age identity a user ever had, keyed by public key: a user created on
-- two devices before they synced has two, and mail sealed to either must stay
-- readable. An add-wins set (a `user_keys` event adds its identity and those
-- it carries in `also`; only removing the user empties it); each entry's
-- wraps (`keys`, crypto::UserKeys as JSON) are a last-writer-wins register
-- stamped (hlc, origin), so a password change re-wraps an entry everywhere.
-- Replicated state: in the digest. `users.keys` stays the current identity,
-- the one new mail is sealed to. Filled from the event log by
-- `schema::rebuild_keyring` when a database is migrated to this version.
CREATE TABLE user_keyring (
    user        TEXT    NOT NULL,
    public_key  TEXT    NOT NULL,
    keys        TEXT    NOT NULL,
    hlc         INTEGER NOT NULL,
    origin      BLOB    NOT NULL,
    PRIMARY KEY (user, public_key)
) STRICT, WITHOUT ROWID;
