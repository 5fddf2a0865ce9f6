//! Read queries: what IMAP, the CLI and status need. Reads never change state.

use rusqlite::{params, OptionalExtension};

use crate::auth;
use crate::crypto::{self, CryptoError, Sealer, SessionKey, UserKeys};
use crate::log::version_vector::VersionVector;
use crate::model::{
    BlobHash, EntryId, Flag, ItemId, MailboxId, MailboxName, ModSeq, SpecialUse, Uid, UidValidity, UserName,
};
use crate::store::state::{self, MailboxRow};
use crate::store::{Store, StoreError, StoreResult};

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

    /// Checks a login and unwraps the user's identity for the session. Every
    /// outcome costs one argon2id run with the same parameters: a user with
    /// a key record is checked by unwrapping alone (the wrap is authenticated
    /// encryption under the password-derived key), a user without one by the
    /// password hash, an unknown user by the dummy hash. So a wrong password
    /// and an unknown user answer alike and in the same time.
    pub fn login(&self, user: &str, password: &str) -> StoreResult<Option<(UserName, Option<SessionKey>)>> {
        let Ok(name) = UserName::new(user) else {
            auth::verify_password(auth::dummy_hash(), password);
            return Ok(None);
        };
        if let Some(keys) = state::user_keys(&self.conn, name.as_str())? {
            return match keys.unlock(name.as_str(), password) {
                Ok(key) => Ok(Some((name, Some(key)))),
                Err(CryptoError::WrongSecret) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        match state::user_password_hash(&self.conn, name.as_str())? {
            Some(hash) if auth::verify_password(&hash, password) => Ok(Some((name, None))),
            Some(_) => Ok(None),
            None => {
                auth::verify_password(auth::dummy_hash(), password);
                Ok(None)
            }
        }
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
        state::mailboxes_displayed(&self.conn, user.as_str())?
            .into_iter()
            .find(|(_, shown)| shown == name.as_str())
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

    /// The mailbox's entries IMAP may show, in UID order, with flags. Entries
    /// above the exposure watermark (held, see [`Store::expose`]) are left out.
    pub fn entries(&self, mailbox: MailboxId) -> StoreResult<Vec<EntryInfo>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.entry_id, e.item_id, e.uid, e.modseq, e.internal_date, m.size, e.blob,
                    (SELECT group_concat(flag, ' ') FROM (SELECT DISTINCT flag FROM item_flags f WHERE f.item_id = e.item_id ORDER BY flag))
             FROM mailbox_entries e JOIN messages m ON m.blob = e.blob
             JOIN mailbox_local l ON l.mailbox_id = e.mailbox_id
             WHERE e.mailbox_id = ?1 AND e.uid <= l.uid_exposed ORDER BY e.uid",
        )?;
        let rows = stmt.query_map([mailbox.raw()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        rows.map(|r| {
            let (entry_id, item_id, uid, modseq, internal_date, size, blob, flags) = r?;
            let flags = flags
                .unwrap_or_default()
                .split(' ')
                .filter(|f| !f.is_empty())
                .map(|f| Flag::parse(f).ok_or_else(|| StoreError::Corrupt(format!("stored flag {f:?} is invalid"))))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(EntryInfo {
                entry_id: EntryId::from_raw(entry_id),
                item_id: ItemId::from_raw(item_id),
                uid: Uid::new(uid as u32).ok_or_else(|| StoreError::Corrupt("entry uid is 0".into()))?,
                flags,
                modseq: ModSeq::new(modseq as u64).ok_or_else(|| StoreError::Corrupt("entry modseq is 0".into()))?,
                internal_date,
                size: size as u64,
                blob: BlobHash::from_slice(&blob).ok_or_else(|| StoreError::Corrupt("blob hash".into()))?,
            })
        })
        .collect()
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
        let stored = self.blob_bytes(blob)?;
        if !crypto::is_sealed(&stored) {
            return Ok(stored);
        }
        match key {
            Some(key) => Ok(key.open(&stored)?),
            None => Err(StoreError::Sealed(*blob)),
        }
    }

    /// This device's version vector.
    pub fn version_vector(&self) -> StoreResult<VersionVector> {
        state::version_vector(&self.conn)
    }

    /// Events a device with version vector `have` lacks, in a causal order
    /// (this device's application order), at most `limit` of them.
    pub fn events_missing(&self, have: &VersionVector, limit: usize) -> StoreResult<Vec<crate::log::Event>> {
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
