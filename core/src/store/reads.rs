//! Read queries: what IMAP, the CLI and status need. Reads never change state.

use rusqlite::types::ValueRef;
use rusqlite::{params, OptionalExtension};

use crate::auth;
use crate::crypto::{self, CryptoError, Sealer, SessionKey, UserKeys};
use crate::log::version_vector::VersionVector;
use crate::model::{
    BlobHash, EntryId, Flag, ItemId, MailboxId, MailboxName, ModSeq, SpecialUse, Uid, UidValidity, UserName,
};
use crate::store::state::{self, MailboxRow};
use crate::store::{BlobError, BlobStore, Store, StoreError, StoreResult};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Number of live mailboxes.
    pub mailboxes: u64,
    /// Number of messages over all mailboxes.
    pub messages: u64,
}

/// A mailbox as IMAP sees it on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Stable id.
    pub id: MailboxId,
    /// Name.
    pub name: String,
    /// UIDVALIDITY.
    pub uid_validity: UidValidity,
    /// SPECIAL-USE attribute.
    pub special_use: Option<SpecialUse>,
    /// The UID this device would assign next (UIDNEXT).
    pub uid_next: u32,
    /// HIGHESTMODSEQ on this device (0 while nothing happened in it).
    pub highest_modseq: u64,
}

/// An entry with what IMAP needs of it without reading the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Entry id.
    pub entry_id: EntryId,
    /// Item id (owner of the flags).
    pub item_id: ItemId,
    /// UID.
    pub uid: Uid,
    /// Flags, sorted.
    pub flags: Vec<Flag>,
    /// MODSEQ of the last change on this device.
    pub modseq: ModSeq,
    /// INTERNALDATE, seconds since the epoch.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// The message's blob.
    pub blob: BlobHash,
}

/// What IMAP STATUS counts in a mailbox, over the entries IMAP may show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    /// Entries.
    pub messages: u64,
    /// Entries without `\Seen`.
    pub unseen: u64,
    /// Entries with `\Deleted`.
    pub deleted: u64,
    /// Sum of RFC822.SIZE.
    pub size: u64,
    /// Sum of RFC822.SIZE of the entries with `\Deleted`.
    pub deleted_size: u64,
}

/// Counts for `roost status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// Users.
    pub users: u64,
    /// Live mailboxes.
    pub mailboxes: u64,
    /// Entries (messages in mailboxes).
    pub entries: u64,
    /// Distinct stored messages.
    pub messages: u64,
    /// Events in the log.
    pub events: u64,
    /// Bytes of message blobs.
    pub blob_bytes: u64,
    /// Bytes of the database file (and its WAL).
    pub db_bytes: u64,
}

/// A user's login secret as [`Store::login_record`] read it.
pub struct LoginRecord(LoginSecret);

enum LoginSecret {
    /// A key record: the password is checked by unwrapping the identity.
    /// After the current identity unwrapped, every other identity of the
    /// keyring that the same password unwraps joins the session.
    Keys(UserName, Box<UserKeys>, Vec<UserKeys>),
    /// A password hash (a user without a key record).
    Hash(UserName, String),
    /// No such user (or an invalid name): checked against the dummy hash.
    Unknown,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginRecord(..)") // Holds a password hash: never printed.
    }
}

impl LoginRecord {
    /// Checks `password` and unwraps the user's identity for the session.
    /// Every outcome costs one argon2id run with the same parameters: a user
    /// with a key record is checked by unwrapping alone (the wrap is
    /// authenticated encryption under the password-derived key), a user
    /// without one by the password hash, an unknown user by the dummy hash.
    /// So a wrong password and an unknown user answer alike and in the same time.
    pub fn check(self, password: &str) -> StoreResult<Option<(UserName, Option<SessionKey>)>> {
        match self.0 {
            LoginSecret::Keys(name, keys, keyring) => {
                match crypto::unlock_keyring(name.as_str(), &keys, &keyring, password) {
                    Ok(unlocked) => Ok(Some((name, Some(unlocked.key)))),
                    Err(CryptoError::WrongSecret) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            LoginSecret::Hash(name, hash) => Ok(auth::verify_password(&hash, password).then_some((name, None))),
            LoginSecret::Unknown => {
                auth::verify_password(auth::dummy_hash(), password);
                Ok(None)
            }
        }
    }
}

impl Store {
    /// Users, sorted by name.
    pub fn users(&self) -> StoreResult<Vec<UserInfo>> {
        let mut out = Vec::new();
        for name in state::user_names(&self.conn)? {
            let (mailboxes, messages): (i64, i64) = self.conn.query_row(
                "SELECT COUNT(DISTINCT m.id), COUNT(e.entry_id) FROM mailboxes m
                 LEFT JOIN mailbox_entries e ON e.mailbox_id = m.id
                 WHERE m.user = ?1 AND m.deleted = 0",
                [&name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            out.push(UserInfo { name, mailboxes: mailboxes as u64, messages: messages as u64 });
        }
        Ok(out)
    }

    /// Whether the user exists.
    pub fn user_exists(&self, user: &UserName) -> StoreResult<bool> {
        Ok(state::user_password_hash(&self.conn, user.as_str())?.is_some())
    }

    /// Checks a login. An unknown user costs one hash verification too, so
    /// timing does not tell which users exist.
    pub fn check_login(&self, user: &str, password: &str) -> StoreResult<Option<UserName>> {
        Ok(self.login(user, password)?.map(|(name, _)| name))
    }

    /// Checks a login and unwraps the user's identity for the session
    /// (see [`LoginRecord::check`]).
    pub fn login(&self, user: &str, password: &str) -> StoreResult<Option<(UserName, Option<SessionKey>)>> {
        self.login_record(user)?.check(password)
    }

    /// What a login of `user` is checked against, read now; the argon2id run
    /// ([`LoginRecord::check`]) needs no store, so a server can do it without
    /// holding the store's lock.
    pub fn login_record(&self, user: &str) -> StoreResult<LoginRecord> {
        let Ok(name) = UserName::new(user) else { return Ok(LoginRecord(LoginSecret::Unknown)) };
        if let Some(keys) = state::user_keys(&self.conn, name.as_str())? {
            let keyring = self.user_keyring(&name)?;
            return Ok(LoginRecord(LoginSecret::Keys(name, Box::new(keys), keyring)));
        }
        Ok(LoginRecord(match state::user_password_hash(&self.conn, name.as_str())? {
            Some(hash) => LoginSecret::Hash(name, hash),
            None => LoginSecret::Unknown,
        }))
    }

    /// What new messages of `user` are sealed with: `None` when encryption
    /// is off or the user has no key record (they are then stored as they are).
    pub fn sealer(&self, user: &UserName) -> StoreResult<Option<Sealer>> {
        if !self.encryption() {
            return Ok(None);
        }
        match state::user_keys(&self.conn, user.as_str())? {
            Some(keys) => Ok(Some(keys.sealer(user.as_str())?)),
            None => Ok(None),
        }
    }

    /// The content hash (as a `BlobHash`) of each of `user`'s sealed blobs
    /// stored on this device, by blob: how `roost import` recognises a
    /// message it already stored when the bytes on disk are ciphertext.
    pub fn sealed_contents(&self, user: &UserName) -> StoreResult<std::collections::HashMap<BlobHash, BlobHash>> {
        let mut stmt = self.conn.prepare_cached("SELECT content_hash, blob FROM sealed_blobs WHERE user = ?1")?;
        let rows = stmt.query_map([user.as_str()], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (content, blob) = row?;
            let (Some(content), Some(blob)) = (BlobHash::from_slice(&content), BlobHash::from_slice(&blob)) else {
                return Err(StoreError::Corrupt("sealed_blobs row with a hash that is not 32 bytes".into()));
            };
            out.insert(blob, content);
        }
        Ok(out)
    }

    /// Users without a key record (created before encryption): their mail
    /// is stored in clear until `roost user passwd` creates their key.
    pub fn users_without_keys(&self) -> StoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT name FROM users WHERE keys IS NULL ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A user's key record, if they have one.
    pub fn user_keys(&self, user: &UserName) -> StoreResult<Option<UserKeys>> {
        state::user_keys(&self.conn, user.as_str())
    }

    /// Every identity in the user's keyring (the current one included), by
    /// public key: what a login tries to unwrap and a password change re-wraps.
    pub fn user_keyring(&self, user: &UserName) -> StoreResult<Vec<UserKeys>> {
        Ok(state::keyring(&self.conn, user.as_str())?.into_iter().map(|(keys, _, _)| keys).collect())
    }

    fn mailbox_info(&self, row: MailboxRow, shown: String) -> StoreResult<MailboxInfo> {
        let (uid_max, highest_modseq) = state::mailbox_local(&self.conn, row.id)?;
        let uid_next = Uid::next_for_slot(uid_max, self.identity.slot()).map_or(u32::MAX, Uid::get);
        Ok(MailboxInfo {
            id: row.id,
            name: shown,
            uid_validity: row.uid_validity,
            special_use: row.special_use,
            uid_next,
            highest_modseq,
        })
    }

    /// The user's live mailboxes, sorted by the name IMAP shows (a name two
    /// mailboxes hold after a merge is shown with a suffix on one of them).
    pub fn mailboxes(&self, user: &UserName) -> StoreResult<Vec<MailboxInfo>> {
        state::mailboxes_displayed(&self.conn, user.as_str())?
            .into_iter()
            .map(|(row, shown)| self.mailbox_info(row, shown))
            .collect()
    }

    /// The user's live mailbox named `name`.
    pub fn mailbox_by_name(&self, user: &UserName, name: &str) -> StoreResult<Option<MailboxInfo>> {
        let name =
            MailboxName::new(name).map_err(|reason| StoreError::InvalidName { name: name.to_string(), reason })?;
        state::mailbox_displayed_as(&self.conn, user.as_str(), name.as_str())?
            .map(|(row, shown)| self.mailbox_info(row, shown))
            .transpose()
    }

    /// A mailbox by id, live or not.
    pub fn mailbox_by_id(&self, id: MailboxId) -> StoreResult<Option<MailboxInfo>> {
        match state::mailbox_get(&self.conn, id)? {
            Some(row) if !row.deleted => {
                let shown = state::mailboxes_displayed(&self.conn, &row.user)?
                    .into_iter()
                    .find(|(r, _)| r.id == id)
                    .map_or_else(|| row.name.clone(), |(_, shown)| shown);
                Ok(Some(self.mailbox_info(row, shown)?))
            }
            _ => Ok(None),
        }
    }

    /// Names the user is subscribed to.
    pub fn subscriptions(&self, user: &UserName) -> StoreResult<Vec<String>> {
        state::subscribed_names(&self.conn, user.as_str())
    }

    /// STATUS counts of the entries [`Store::entries`] would return, added
    /// up in SQLite (flag tests are primary-key lookups) rather than by
    /// materialising every entry and its flags.
    pub fn mailbox_counts(&self, mailbox: MailboxId) -> StoreResult<MailboxCounts> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(seen), 0), COALESCE(SUM(deleted), 0),
                    COALESCE(SUM(size * deleted), 0)
             FROM (SELECT m.size AS size,
                          EXISTS (SELECT 1 FROM item_flags f WHERE f.item_id = e.item_id AND f.flag = ?2) AS seen,
                          EXISTS (SELECT 1 FROM item_flags f WHERE f.item_id = e.item_id AND f.flag = ?3) AS deleted
                   FROM mailbox_entries e JOIN messages m ON m.blob = e.blob
                   JOIN mailbox_local l ON l.mailbox_id = e.mailbox_id
                   WHERE e.mailbox_id = ?1 AND e.uid <= l.uid_exposed)",
        )?;
        let (seen_flag, deleted_flag) = (Flag::seen(), Flag::deleted());
        let params = params![mailbox.raw(), seen_flag.as_str(), deleted_flag.as_str()];
        let (messages, size, seen, deleted, deleted_size) = stmt.query_row(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        // SQLite integers are i64; counts and sizes are never negative.
        let n = |v: i64| v.max(0) as u64;
        Ok(MailboxCounts {
            messages: n(messages),
            unseen: n(messages - seen),
            deleted: n(deleted),
            size: n(size),
            deleted_size: n(deleted_size),
        })
    }

    /// The mailbox's entries IMAP may show, in UID order, with flags. Entries
    /// above the exposure watermark (held, see [`Store::expose`]) are left out.
    pub fn entries(&self, mailbox: MailboxId) -> StoreResult<Vec<EntryInfo>> {
        // Two scans in UID order, entries then their flags, merged here: a
        // large mailbox costs less this way than with a flag subquery per row.
        let mut stmt = self.conn.prepare_cached(entry_select!("NULL", "", "ORDER BY e.uid"))?;
        let rows = stmt.query_map([mailbox.raw()], entry_from_row)?;
        let mut entries = rows.map(|r| r?).collect::<StoreResult<Vec<EntryInfo>>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.uid, f.flag FROM mailbox_entries e JOIN mailbox_local l ON l.mailbox_id = e.mailbox_id
             JOIN item_flags f ON f.item_id = e.item_id
             WHERE e.mailbox_id = ?1 AND e.uid <= l.uid_exposed ORDER BY e.uid, f.flag",
        )?;
        let mut rows = stmt.query([mailbox.raw()])?;
        let mut next = 0;
        while let Some(row) = rows.next()? {
            let uid: i64 = row.get(0)?;
            // Both scans are in UID order; a UID the first did not see (a
            // commit by another process in between) is skipped.
            while entries.get(next).is_some_and(|e| i64::from(e.uid.get()) < uid) {
                next += 1;
            }
            let Some(entry) = entries.get_mut(next).filter(|e| i64::from(e.uid.get()) == uid) else { continue };
            let ValueRef::Text(text) = row.get_ref(1)? else {
                return Err(StoreError::Corrupt("stored flag is not text".into()));
            };
            let flag = std::str::from_utf8(text).ok().and_then(Flag::parse).ok_or_else(|| {
                StoreError::Corrupt(format!("stored flag {:?} is invalid", String::from_utf8_lossy(text)))
            })?;
            // One row per instance of a flag (add-wins set): keep one.
            if entry.flags.last() != Some(&flag) {
                entry.flags.push(flag);
            }
        }
        // Sessions keep these for as long as the mailbox is selected, one
        // copy each: no spare capacity (a push leaves room for four flags).
        entries.iter_mut().for_each(|e| e.flags.shrink_to_fit());
        Ok(entries)
    }

    /// The entries IMAP may show whose MODSEQ is above `since` (changed
    /// flags, new or newly exposed entries), in UID order: what a session
    /// that was current at `since` needs to catch up, without reading the
    /// rest of the mailbox. Removed entries are in [`Store::vanished_since`].
    pub fn entries_changed_since(&self, mailbox: MailboxId, since: u64) -> StoreResult<Vec<EntryInfo>> {
        let mut stmt = self.conn.prepare_cached(entry_select!(
            "INDEXED BY mailbox_entries_by_modseq",
            "AND e.modseq > ?2 ORDER BY e.uid"
        ))?;
        let rows = stmt.query_map(params![mailbox.raw(), since as i64], entry_from_row)?;
        rows.map(|r| r?).collect()
    }

    /// `(uid_next, highest_modseq)` of a live mailbox, `None` once it is
    /// deleted: the cheap part of [`Store::mailbox_by_id`] a session polls.
    pub fn mailbox_progress(&self, id: MailboxId) -> StoreResult<Option<(u32, u64)>> {
        match state::mailbox_get(&self.conn, id)? {
            Some(row) if !row.deleted => {
                let (uid_max, highest_modseq) = state::mailbox_local(&self.conn, row.id)?;
                let uid_next = Uid::next_for_slot(uid_max, self.identity.slot()).map_or(u32::MAX, Uid::get);
                Ok(Some((uid_next, highest_modseq)))
            }
            _ => Ok(None),
        }
    }

    /// Blobs of every entry of the mailbox, held ones included (what a
    /// mailbox delete here would observe).
    pub fn entry_blobs_all(&self, mailbox: MailboxId) -> StoreResult<Vec<BlobHash>> {
        Ok(state::entries_of(&self.conn, mailbox)?.into_iter().map(|e| e.blob).collect())
    }

    /// UIDs removed from the mailbox with a MODSEQ above `since` (QRESYNC
    /// VANISHED), in UID order, with their MODSEQs.
    pub fn vanished_since(&self, mailbox: MailboxId, since: u64) -> StoreResult<Vec<(Uid, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT uid, modseq FROM tombstones WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid")?;
        let rows =
            stmt.query_map(params![mailbox.raw(), since as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (uid, modseq) = r?;
            Ok((Uid::new(uid as u32).ok_or_else(|| StoreError::Corrupt("tombstone uid is 0".into()))?, modseq as u64))
        })
        .collect()
    }

    /// A message's blob as stored (ciphertext when sealed): what peers
    /// replicate.
    pub fn message(&self, blob: &BlobHash) -> StoreResult<Vec<u8>> {
        self.blob_bytes(blob)
    }

    /// A message's plaintext: a sealed blob is opened with `key` (the
    /// session's unlocked identity); a plaintext blob (encryption off, or
    /// stored before it existed) is returned as it is.
    pub fn message_plain(&self, blob: &BlobHash, key: Option<&SessionKey>) -> StoreResult<Vec<u8>> {
        match self.blobs.get_plain(blob, key) {
            // Not in the blob store yet: a peer's blob still in the spool.
            Err(StoreError::Blob(BlobError::Missing(_))) => BlobStore::open_stored(blob, self.blob_bytes(blob)?, key),
            other => other,
        }
    }

    /// This device's version vector.
    pub fn version_vector(&self) -> StoreResult<VersionVector> {
        state::version_vector(&self.conn)
    }

    /// Events a device with version vector `have` lacks, in a causal order
    /// (this device's application order), at most `limit` of them.
    /// A peer below the log snapshot (it lacks folded events) gets
    /// [`crate::store::StoreError::SnapshotNeeded`].
    pub fn events_missing(&self, have: &VersionVector, limit: usize) -> StoreResult<Vec<crate::log::Event>> {
        crate::store::compact::require_above_snapshot(&self.conn, have)?;
        let mine = state::version_vector(&self.conn)?;
        let mut rows: Vec<(i64, crate::log::Event)> = Vec::new();
        // No `LIMIT ?`: SQLite (with STAT4, as bundled) re-prepares a statement
        // whenever a parameter its plan read is re-bound, which a bound LIMIT
        // is. The rows come in index order, so stopping after `limit` is as cheap.
        let mut stmt = self.conn.prepare_cached(
            "SELECT applied_idx, seq, hlc, deps, payload, signature FROM events
             WHERE origin = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        for (origin, seq) in mine.iter() {
            let from = have.get(origin);
            if from >= *seq {
                continue;
            }
            let mut q = stmt.query(params![origin.as_bytes().as_slice(), from as i64])?;
            let mut taken = 0;
            while taken < limit {
                let Some(r) = q.next()? else { break };
                taken += 1;
                let signature: Vec<u8> = r.get(5)?;
                let signature: [u8; 64] =
                    signature.try_into().map_err(|_| StoreError::Corrupt("event signature is not 64 bytes".into()))?;
                let id = crate::model::EventId { origin: *origin, seq: r.get::<_, i64>(1)? as u64 };
                let hlc = crate::clock::Hlc::from_raw(r.get::<_, i64>(2)? as u64);
                let event = crate::log::Event::decode_unverified(id, hlc, r.get(3)?, r.get(4)?, signature)?;
                rows.push((r.get(0)?, event));
            }
        }
        rows.sort_by_key(|(idx, _)| *idx);
        rows.truncate(limit);
        Ok(rows.into_iter().map(|(_, e)| e).collect())
    }

    /// SQLite's `data_version`: changes when another connection (another
    /// process, such as the CLI while the daemon runs) commits.
    pub fn data_version(&self) -> StoreResult<i64> {
        Ok(self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// When the store was created (ms since the epoch).
    pub fn created_ms(&self) -> StoreResult<u64> {
        state::device_created_ms(&self.conn)
    }

    /// Counts for `roost status`.
    pub fn stats(&self) -> StoreResult<StoreStats> {
        let count =
            |sql: &str| -> StoreResult<u64> { Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        let (blob_bytes, _) = self.blobs.usage()?;
        let db_bytes = match &self.path {
            Some(path) => {
                let wal = path.with_extension("db-wal");
                std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
                    + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
            }
            None => 0,
        };
        Ok(StoreStats {
            users: count("SELECT COUNT(*) FROM users")?,
            mailboxes: count("SELECT COUNT(*) FROM mailboxes WHERE deleted = 0")?,
            entries: count("SELECT COUNT(*) FROM mailbox_entries")?,
            messages: count("SELECT COUNT(*) FROM messages")?,
            events: count("SELECT COUNT(*) FROM events")?,
            blob_bytes,
            db_bytes,
        })
    }

    /// The entry holding `uid` in `mailbox`, if IMAP may show it.
    pub fn entry_by_uid(&self, mailbox: MailboxId, uid: Uid) -> StoreResult<Option<EntryId>> {
        Ok(self
            .conn
            .query_row(
                "SELECT e.entry_id FROM mailbox_entries e JOIN mailbox_local l ON l.mailbox_id = e.mailbox_id
                 WHERE e.mailbox_id = ?1 AND e.uid = ?2 AND e.uid <= l.uid_exposed",
                params![mailbox.raw(), uid.get()],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(EntryId::from_raw))
    }
}

/// The query for entries IMAP may show (below the exposure watermark), in
/// the columns [`entry_from_row`] decodes, with `$index` (an `INDEXED BY`
/// clause or nothing) and `$rest` (conditions and order) appended. The flags
/// column is a per-row subquery unless `$flags` replaces it (`NULL`: no flags).
macro_rules! entry_select {
    ($index:literal, $rest:literal) => {
        entry_select!(
            "(SELECT group_concat(flag, ' ') FROM (SELECT DISTINCT flag FROM item_flags f WHERE f.item_id = e.item_id ORDER BY flag))",
            $index,
            $rest
        )
    };
    ($flags:literal, $index:literal, $rest:literal) => {
        concat!(
            "SELECT e.entry_id, e.item_id, e.uid, e.modseq, e.internal_date, m.size, e.blob, ",
            $flags,
            " FROM mailbox_entries e ",
            $index,
            " JOIN messages m ON m.blob = e.blob
             JOIN mailbox_local l ON l.mailbox_id = e.mailbox_id
             WHERE e.mailbox_id = ?1 AND e.uid <= l.uid_exposed ",
            $rest
        )
    };
}
use entry_select;

/// One row of [`entry_select`]. Borrows the blob and flag text instead of
/// copying them: a SELECT of a large mailbox decodes every row.
fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<EntryInfo>> {
    let (entry_id, item_id, uid, modseq, internal_date, size) = (
        r.get::<_, i64>(0)?,
        r.get::<_, i64>(1)?,
        r.get::<_, i64>(2)?,
        r.get::<_, i64>(3)?,
        r.get::<_, i64>(4)?,
        r.get::<_, i64>(5)?,
    );
    let blob = match r.get_ref(6)? {
        ValueRef::Blob(bytes) => BlobHash::from_slice(bytes),
        _ => None,
    };
    let flags = match r.get_ref(7)? {
        ValueRef::Null => Ok(Vec::new()),
        ValueRef::Text(text) => std::str::from_utf8(text)
            .map_err(|_| String::from_utf8_lossy(text).into_owned())
            .and_then(Flag::parse_stored_list),
        other => Err(format!("{other:?}")),
    };
    Ok((|| {
        Ok(EntryInfo {
            entry_id: EntryId::from_raw(entry_id),
            item_id: ItemId::from_raw(item_id),
            uid: Uid::new(uid as u32).ok_or_else(|| StoreError::Corrupt("entry uid is 0".into()))?,
            flags: flags.map_err(|f| StoreError::Corrupt(format!("stored flag {f:?} is invalid")))?,
            modseq: ModSeq::new(modseq as u64).ok_or_else(|| StoreError::Corrupt("entry modseq is 0".into()))?,
            internal_date,
            size: size as u64,
            blob: blob.ok_or_else(|| StoreError::Corrupt("blob hash".into()))?,
        })
    })())
}
