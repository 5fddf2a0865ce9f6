//! SQL primitives over the schema: one function per row operation, no policy.
//! `merge` decides what changes; this module only knows how it is stored.

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::Hlc;
use crate::log::event::Event;
use crate::log::version_vector::VersionVector;
use crate::model::{
    BlobHash, DeviceId, DeviceSlot, EntryId, EventId, Flag, ItemId, MailboxId, ModSeq, SpecialUse, Uid, UidValidity,
};
use crate::store::{StoreError, StoreResult};

/// `Connection::execute` through the statement cache: the merge rules run the
/// same few statements for every event.
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `Connection::query_row` through the statement cache.
fn query_row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: F,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn device_id(bytes: Vec<u8>) -> StoreResult<DeviceId> {
    DeviceId::from_slice(&bytes).ok_or_else(|| corrupt("device id is not 32 bytes"))
}

pub(crate) fn blob_hash(bytes: Vec<u8>) -> StoreResult<BlobHash> {
    BlobHash::from_slice(&bytes).ok_or_else(|| corrupt("blob hash is not 32 bytes"))
}

// --- device -----------------------------------------------------------------

pub(crate) fn insert_device(conn: &Connection, id: DeviceId, slot: DeviceSlot, now_ms: u64) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO device (id, device_id, slot, created_ms, last_hlc, last_modseq) VALUES (1, ?1, ?2, ?3, 0, 0)",
        params![id.as_bytes().as_slice(), slot.get(), now_ms as i64],
    )?;
    Ok(())
}

pub(crate) fn device(conn: &Connection) -> StoreResult<(DeviceId, DeviceSlot)> {
    let (id, slot): (Vec<u8>, u8) =
        query_row(conn, "SELECT device_id, slot FROM device WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((device_id(id)?, DeviceSlot::new(slot).ok_or_else(|| corrupt("device slot out of range"))?))
}

pub(crate) fn device_created_ms(conn: &Connection) -> StoreResult<u64> {
    Ok(query_row(conn, "SELECT created_ms FROM device WHERE id = 1", [], |r| r.get::<_, i64>(0))? as u64)
}

pub(crate) fn last_hlc(conn: &Connection) -> StoreResult<Hlc> {
    Ok(Hlc::from_raw(query_row(conn, "SELECT last_hlc FROM device WHERE id = 1", [], |r| r.get::<_, i64>(0))? as u64))
}

pub(crate) fn set_last_hlc(conn: &Connection, hlc: Hlc) -> StoreResult<()> {
    exec(conn, "UPDATE device SET last_hlc = ?1 WHERE id = 1", [hlc.raw() as i64])?;
    Ok(())
}

pub(crate) fn last_modseq(conn: &Connection) -> StoreResult<Option<ModSeq>> {
    let raw: i64 = query_row(conn, "SELECT last_modseq FROM device WHERE id = 1", [], |r| r.get(0))?;
    Ok(ModSeq::new(raw as u64))
}

pub(crate) fn set_last_modseq(conn: &Connection, modseq: ModSeq) -> StoreResult<()> {
    exec(conn, "UPDATE device SET last_modseq = ?1 WHERE id = 1", [modseq.get() as i64])?;
    Ok(())
}

// --- events -----------------------------------------------------------------

pub(crate) fn insert_event(conn: &Connection, event: &Event) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO events (origin, seq, hlc, deps, payload, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            event.id.origin.as_bytes().as_slice(),
            event.id.seq as i64,
            event.hlc.raw() as i64,
            event.deps_bytes,
            event.payload_bytes,
            event.signature.as_slice()
        ],
    )?;
    exec(
        conn,
        "INSERT INTO version_vector (origin, seq) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        params![event.id.origin.as_bytes().as_slice(), event.id.seq as i64],
    )?;
    Ok(())
}

pub(crate) fn version_vector(conn: &Connection) -> StoreResult<VersionVector> {
    let mut stmt = conn.prepare_cached("SELECT origin, seq FROM version_vector")?;
    let mut vv = VersionVector::new();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (origin, seq) = row?;
        vv.set(device_id(origin)?, seq as u64);
    }
    Ok(vv)
}

pub(crate) fn max_seq(conn: &Connection, origin: DeviceId) -> StoreResult<u64> {
    let seq: Option<i64> =
        query_row(conn, "SELECT seq FROM version_vector WHERE origin = ?1", [origin.as_bytes().as_slice()], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Every event in the log up to `applied_idx` `upto`, in local application
/// order (events folded by compaction are no longer in the log).
pub(crate) fn for_each_event(
    conn: &Connection,
    upto: i64,
    mut f: impl FnMut(Event) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut stmt = conn.prepare(
        "SELECT origin, seq, hlc, deps, payload, signature FROM events WHERE applied_idx <= ?1 ORDER BY applied_idx",
    )?;
    let mut rows = stmt.query([upto])?;
    while let Some(row) = rows.next()? {
        let origin = device_id(row.get(0)?)?;
        let seq = row.get::<_, i64>(1)? as u64;
        let hlc = Hlc::from_raw(row.get::<_, i64>(2)? as u64);
        let signature: Vec<u8> = row.get(5)?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| corrupt("event signature is not 64 bytes"))?;
        let event = Event::decode_unverified(EventId { origin, seq }, hlc, row.get(3)?, row.get(4)?, signature)?;
        f(event)?;
    }
    Ok(())
}

// --- users ------------------------------------------------------------------

pub(crate) fn user_password_hash(conn: &Connection, user: &str) -> StoreResult<Option<String>> {
    Ok(query_row(conn, "SELECT password_hash FROM users WHERE name = ?1", [user], |r| r.get(0)).optional()?)
}

/// The stamp `(hlc, origin)` of the user's password register.
pub(crate) fn user_stamp(conn: &Connection, user: &str) -> StoreResult<Option<(Hlc, DeviceId)>> {
    let row: Option<(i64, Vec<u8>)> =
        query_row(conn, "SELECT hlc, origin FROM users WHERE name = ?1", [user], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
    row.map(|(hlc, origin)| Ok((Hlc::from_raw(hlc as u64), device_id(origin)?))).transpose()
}

pub(crate) fn user_put(
    conn: &Connection,
    user: &str,
    password_hash: &str,
    hlc: Hlc,
    origin: DeviceId,
) -> StoreResult<()> {
    exec(conn,
        "INSERT INTO users (name, password_hash, hlc, origin) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, hlc = excluded.hlc, origin = excluded.origin",
        params![user, password_hash, hlc.raw() as i64, origin.as_bytes().as_slice()],
    )?;
    Ok(())
}

pub(crate) fn user_names(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM users ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A user's key record; `None` for a user without one (created before
/// encryption, or with encryption off).
pub(crate) fn user_keys(conn: &Connection, user: &str) -> StoreResult<Option<crate::crypto::UserKeys>> {
    let json: Option<Option<String>> =
        query_row(conn, "SELECT keys FROM users WHERE name = ?1", [user], |r| r.get(0)).optional()?;
    json.flatten()
        .map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("key record of user {user} is not valid: {e}")))
        })
        .transpose()
}

pub(crate) fn user_keys_put(conn: &Connection, user: &str, keys: Option<&crate::crypto::UserKeys>) -> StoreResult<()> {
    let json = keys.map(|k| serde_json::to_string(k).expect("a key record serialises"));
    exec(conn, "UPDATE users SET keys = ?2 WHERE name = ?1", params![user, json])?;
    Ok(())
}

/// The sealed blob already holding this content for this user (LOCAL).
pub(crate) fn sealed_blob(conn: &Connection, user: &str, content_hash: &[u8; 32]) -> StoreResult<Option<BlobHash>> {
    let raw: Option<Vec<u8>> = query_row(
        conn,
        "SELECT blob FROM sealed_blobs WHERE user = ?1 AND content_hash = ?2",
        params![user, content_hash.as_slice()],
        |r| r.get(0),
    )
    .optional()?;
    raw.map(|b| BlobHash::from_slice(&b).ok_or_else(|| StoreError::Corrupt("sealed_blobs.blob is not 32 bytes".into())))
        .transpose()
}

pub(crate) fn sealed_blob_put(
    conn: &Connection,
    user: &str,
    content_hash: &[u8; 32],
    blob: BlobHash,
) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO sealed_blobs (user, content_hash, blob) VALUES (?1, ?2, ?3)
         ON CONFLICT (user, content_hash) DO UPDATE SET blob = excluded.blob",
        params![user, content_hash.as_slice(), blob.as_bytes().as_slice()],
    )?;
    Ok(())
}

pub(crate) fn user_delete(conn: &Connection, user: &str) -> StoreResult<()> {
    exec(conn, "DELETE FROM users WHERE name = ?1", [user])?;
    exec(conn, "DELETE FROM sealed_blobs WHERE user = ?1", [user])?;
    exec(conn, "DELETE FROM file_keys WHERE user = ?1", [user])?;
    exec(conn, "DELETE FROM subscriptions WHERE user = ?1", [user])?;
    exec(conn, "DELETE FROM user_keyring WHERE user = ?1", [user])?;
    Ok(())
}

/// Every identity in `user`'s keyring, with the stamp of its wraps, by public key.
pub(crate) fn keyring(conn: &Connection, user: &str) -> StoreResult<Vec<(crate::crypto::UserKeys, Hlc, DeviceId)>> {
    let mut stmt =
        conn.prepare_cached("SELECT keys, hlc, origin FROM user_keyring WHERE user = ?1 ORDER BY public_key")?;
    let rows: Vec<(String, i64, Vec<u8>)> =
        stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(json, hlc, origin)| {
            let keys = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("keyring entry of user {user} is not valid: {e}")))?;
            Ok((keys, Hlc::from_raw(hlc as u64), device_id(origin)?))
        })
        .collect()
}

/// Adds an identity to `user`'s keyring, or replaces its wraps when this
/// stamp is newer than the entry's (last writer wins per identity).
pub(crate) fn keyring_put(
    conn: &Connection,
    user: &str,
    keys: &crate::crypto::UserKeys,
    hlc: Hlc,
    origin: DeviceId,
) -> StoreResult<()> {
    let json = serde_json::to_string(keys).expect("a key record serialises");
    exec(conn,
        "INSERT INTO user_keyring (user, public_key, keys, hlc, origin) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user, public_key) DO UPDATE SET keys = excluded.keys, hlc = excluded.hlc, origin = excluded.origin
         WHERE excluded.hlc > user_keyring.hlc OR (excluded.hlc = user_keyring.hlc AND excluded.origin > user_keyring.origin)",
        params![user, keys.public_key, json, hlc.raw() as i64, origin.as_bytes().as_slice()],
    )?;
    Ok(())
}

// --- mailboxes --------------------------------------------------------------

/// A mailbox row.
#[derive(Debug, Clone)]
pub(crate) struct MailboxRow {
    pub(crate) id: MailboxId,
    pub(crate) user: String,
    pub(crate) name: String,
    pub(crate) name_hlc: Hlc,
    pub(crate) name_origin: DeviceId,
    pub(crate) uid_validity: UidValidity,
    pub(crate) special_use: Option<SpecialUse>,
    pub(crate) deleted: bool,
}

const MAILBOX_COLUMNS: &str = "id, user, name, name_hlc, name_origin, uid_validity, special_use, deleted";

type RawMailbox = (i64, String, String, i64, Vec<u8>, i64, Option<String>, bool);

fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawMailbox> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn mailbox_row(raw: RawMailbox) -> StoreResult<MailboxRow> {
    let (id, user, name, name_hlc, name_origin, uid_validity, special_use, deleted) = raw;
    Ok(MailboxRow {
        id: MailboxId::from_raw(id),
        user,
        name,
        name_hlc: Hlc::from_raw(name_hlc as u64),
        name_origin: device_id(name_origin)?,
        uid_validity: UidValidity::new(uid_validity as u32).ok_or_else(|| corrupt("uid_validity is 0"))?,
        special_use: match special_use {
            Some(s) => Some(SpecialUse::parse(&s).ok_or_else(|| corrupt(format!("unknown special use {s}")))?),
            None => None,
        },
        deleted,
    })
}

pub(crate) fn mailbox_get(conn: &Connection, id: MailboxId) -> StoreResult<Option<MailboxRow>> {
    let raw = query_row(
        conn,
        &format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?1"),
        [id.raw()],
        mailbox_from_row,
    )
    .optional()?;
    raw.map(mailbox_row).transpose()
}

pub(crate) fn mailboxes_of(conn: &Connection, user: &str) -> StoreResult<Vec<MailboxRow>> {
    let mut stmt = conn.prepare_cached(&live_mailboxes_sql())?;
    let rows = stmt.query_map([user], mailbox_from_row)?;
    rows.map(|r| mailbox_row(r?)).collect()
}

/// Every mailbox lookup (SELECT, STATUS, LIST) starts here. Deleted
/// mailboxes keep their rows, so this must be answered by the partial index
/// of live ones (migration 0013), never by walking the dead rows.
fn live_mailboxes_sql() -> String {
    format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE user = ?1 AND deleted = 0 ORDER BY name, id")
}

/// The live mailbox IMAP shows as `name` (see [`mailboxes_displayed`]).
pub(crate) fn mailbox_live_by_name(conn: &Connection, user: &str, name: &str) -> StoreResult<Option<MailboxRow>> {
    Ok(mailbox_displayed_as(conn, user, name)?.map(|(row, _)| row))
}

/// The live mailbox IMAP shows as `name`, with that shown name. Every
/// SELECT, STATUS and APPEND asks this, so the usual case is one indexed
/// row: a name without `~` that one live mailbox has is shown as itself
/// (only the second of two equal names gets a `~` suffix, and only a name
/// with `~` could be such a suffix). Two live mailboxes of that name, or a
/// name with `~`, are resolved over the whole displayed list.
pub(crate) fn mailbox_displayed_as(
    conn: &Connection,
    user: &str,
    name: &str,
) -> StoreResult<Option<(MailboxRow, String)>> {
    if !name.contains('~') {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE user = ?1 AND name = ?2 AND deleted = 0 LIMIT 2"
        ))?;
        let mut rows: Vec<MailboxRow> =
            stmt.query_map([user, name], mailbox_from_row)?.map(|r| mailbox_row(r?)).collect::<StoreResult<_>>()?;
        match rows.len() {
            0 => return Ok(None),
            1 => return Ok(rows.pop().map(|row| (row, name.to_string()))),
            _ => {}
        }
    }
    Ok(mailboxes_displayed(conn, user)?.into_iter().find(|(_, shown)| shown == name))
}

pub(crate) fn mailbox_insert(conn: &Connection, row: &MailboxRow) -> StoreResult<()> {
    exec(
        conn,
        &format!("INSERT INTO mailboxes ({MAILBOX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            row.id.raw(),
            row.user,
            row.name,
            row.name_hlc.raw() as i64,
            row.name_origin.as_bytes().as_slice(),
            row.uid_validity.get(),
            row.special_use.map(SpecialUse::attribute),
            row.deleted
        ],
    )?;
    exec(conn, "INSERT OR IGNORE INTO mailbox_local (mailbox_id) VALUES (?1)", [row.id.raw()])?;
    Ok(())
}

pub(crate) fn mailbox_set_name(
    conn: &Connection,
    id: MailboxId,
    name: &str,
    hlc: Hlc,
    origin: DeviceId,
) -> StoreResult<()> {
    exec(
        conn,
        "UPDATE mailboxes SET name = ?2, name_hlc = ?3, name_origin = ?4 WHERE id = ?1",
        params![id.raw(), name, hlc.raw() as i64, origin.as_bytes().as_slice()],
    )?;
    Ok(())
}

pub(crate) fn mailbox_set_deleted(conn: &Connection, id: MailboxId, deleted: bool) -> StoreResult<()> {
    exec(conn, "UPDATE mailboxes SET deleted = ?2 WHERE id = ?1", params![id.raw(), deleted])?;
    Ok(())
}

/// Whether this device has ever seen mailbox `id` (live or deleted).
pub(crate) fn mailbox_known(conn: &Connection, id: MailboxId) -> StoreResult<bool> {
    Ok(query_row(conn, "SELECT 1 FROM mailboxes WHERE id = ?1", [id.raw()], |_| Ok(())).optional()?.is_some())
}

pub(crate) fn mailbox_set_special_use(
    conn: &Connection,
    id: MailboxId,
    special_use: Option<SpecialUse>,
) -> StoreResult<()> {
    exec(
        conn,
        "UPDATE mailboxes SET special_use = ?2 WHERE id = ?1",
        params![id.raw(), special_use.map(SpecialUse::attribute)],
    )?;
    Ok(())
}

/// Every mailbox of `user`, live or deleted (a user removal deletes them all,
/// whatever this device knew of them).
pub(crate) fn mailbox_ids_of_user_all(conn: &Connection, user: &str) -> StoreResult<Vec<MailboxId>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM mailboxes WHERE user = ?1 ORDER BY id")?;
    let rows = stmt.query_map([user], |r| r.get::<_, i64>(0))?;
    rows.map(|r| Ok(MailboxId::from_raw(r?))).collect()
}

// --- mailbox liveness (add-wins set of instances) ---------------------------

/// Adds a liveness instance of `mailbox` named by `tag` (newest per origin).
pub(crate) fn mailbox_instance_add(conn: &Connection, mailbox: MailboxId, tag: EventId) -> StoreResult<()> {
    exec(
        conn,
        "INSERT INTO mailbox_instances (mailbox_id, tag_origin, tag_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (mailbox_id, tag_origin) DO UPDATE SET tag_seq = MAX(tag_seq, excluded.tag_seq)",
        params![mailbox.raw(), tag.origin.as_bytes().as_slice(), tag.seq as i64],
    )?;
    Ok(())
}

/// Removes the instances `observed` includes; returns how many remain.
pub(crate) fn mailbox_instances_remove_observed(
    conn: &Connection,
    mailbox: MailboxId,
    observed: &VersionVector,
) -> StoreResult<usize> {
    let mut stmt = conn.prepare_cached("SELECT tag_origin, tag_seq FROM mailbox_instances WHERE mailbox_id = ?1")?;
    let tags: Vec<(Vec<u8>, i64)> =
        stmt.query_map([mailbox.raw()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut remaining = tags.len();
    for (origin, seq) in tags {
        let tag = EventId { origin: device_id(origin.clone())?, seq: seq as u64 };
        if observed.contains(tag) {
            exec(
                conn,
                "DELETE FROM mailbox_instances WHERE mailbox_id = ?1 AND tag_origin = ?2",
                params![mailbox.raw(), origin],
            )?;
            remaining -= 1;
        }
    }
    Ok(remaining)
}

// --- exposure (LOCAL) -------------------------------------------------------

/// The highest UID of the mailbox IMAP may have shown on this device.
pub(crate) fn mailbox_exposed(conn: &Connection, id: MailboxId) -> StoreResult<u32> {
    let v: Option<i64> =
        query_row(conn, "SELECT uid_exposed FROM mailbox_local WHERE mailbox_id = ?1", [id.raw()], |r| r.get(0))
            .optional()?;
    Ok(v.unwrap_or(0) as u32)
}

/// Raises the exposure watermark to `uid`: the entries it uncovers get
/// `modseq` so that CONDSTORE clients fetching CHANGEDSINCE see them.
/// Returns whether anything changed.
pub(crate) fn raise_exposure(conn: &Connection, id: MailboxId, uid: u32, modseq: ModSeq) -> StoreResult<bool> {
    let exposed = mailbox_exposed(conn, id)?;
    if uid <= exposed {
        return Ok(false);
    }
    exec(
        conn,
        "UPDATE mailbox_entries SET modseq = ?4 WHERE mailbox_id = ?1 AND ?2 < uid AND uid <= ?3",
        params![id.raw(), exposed, uid, modseq.get() as i64],
    )?;
    exec(
        conn,
        "UPDATE mailbox_local SET uid_exposed = ?2, highest_modseq = MAX(highest_modseq, ?3) WHERE mailbox_id = ?1",
        params![id.raw(), uid, modseq.get() as i64],
    )?;
    Ok(true)
}

/// Rows of `mailbox_entries e` above their mailbox's exposure watermark,
/// joined from `mailbox_local l`. Runs every exposure tick (25 ms), so it
/// must not visit exposed entries: the CROSS JOIN makes SQLite walk the
/// mailboxes and seek each one's held UIDs, and `uid_max > uid_exposed`
/// (no entry is above `uid_max`: merge::invariants) skips mailboxes with
/// nothing held. Joined the other way round it read every entry of the
/// device (7 ms for 11,000 entries, under the store lock, 40 times a second).
pub(crate) const HELD_ENTRIES: &str = "mailbox_local l CROSS JOIN mailbox_entries e
     WHERE l.uid_max > l.uid_exposed AND e.mailbox_id = l.mailbox_id AND e.uid > l.uid_exposed";

/// Per mailbox with held entries, the highest UID whose hold is over at
/// `now_ms` (placed at least `hold_ms` ago).
pub(crate) fn exposable(conn: &Connection, now_ms: u64, hold_ms: u64) -> StoreResult<Vec<(MailboxId, u32)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT l.mailbox_id, MAX(e.uid) FROM {HELD_ENTRIES} AND e.placed_ms + ?2 <= ?1
         GROUP BY l.mailbox_id ORDER BY l.mailbox_id"
    ))?;
    let rows =
        stmt.query_map(params![now_ms as i64, hold_ms as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|r| {
        let (m, u) = r?;
        Ok((MailboxId::from_raw(m), u as u32))
    })
    .collect()
}

// --- removed entries and extra adds -----------------------------------------

pub(crate) fn entry_removed(conn: &Connection, id: EntryId) -> StoreResult<bool> {
    Ok(query_row(conn, "SELECT 1 FROM removed_entries WHERE entry_id = ?1", [id.raw()], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn entry_adds_extra(conn: &Connection, id: EntryId) -> StoreResult<Vec<EventId>> {
    let mut stmt = conn.prepare_cached("SELECT tag_origin, tag_seq FROM entry_adds WHERE entry_id = ?1")?;
    let rows: Vec<(Vec<u8>, i64)> =
        stmt.query_map([id.raw()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    rows.into_iter().map(|(o, s)| Ok(EventId { origin: device_id(o)?, seq: s as u64 })).collect()
}

pub(crate) fn entry_add_extra(conn: &Connection, id: EntryId, tag: EventId) -> StoreResult<()> {
    exec(
        conn,
        "INSERT OR IGNORE INTO entry_adds (entry_id, tag_origin, tag_seq) VALUES (?1, ?2, ?3)",
        params![id.raw(), tag.origin.as_bytes().as_slice(), tag.seq as i64],
    )?;
    Ok(())
}

/// The fields of a duplicate-delivered entry taken from its earliest adding event.
pub(crate) fn entry_set_origin_fields(
    conn: &Connection,
    id: EntryId,
    blob: BlobHash,
    internal_date: i64,
    added: EventId,
) -> StoreResult<()> {
    exec(conn,
        "UPDATE mailbox_entries SET blob = ?2, internal_date = ?3, added_origin = ?4, added_seq = ?5 WHERE entry_id = ?1",
        params![id.raw(), blob.as_bytes().as_slice(), internal_date, added.origin.as_bytes().as_slice(), added.seq as i64],
    )?;
    Ok(())
}

/// `(uid_max, highest_modseq)` of a mailbox on this device.
pub(crate) fn mailbox_local(conn: &Connection, id: MailboxId) -> StoreResult<(u32, u64)> {
    let row: Option<(i64, i64)> =
        query_row(conn, "SELECT uid_max, highest_modseq FROM mailbox_local WHERE mailbox_id = ?1", [id.raw()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (uid_max, modseq) = row.unwrap_or((0, 0));
    Ok((uid_max as u32, modseq as u64))
}

/// Records a change in the mailbox: raises the UID watermark to `uid` (if
/// given) and HIGHESTMODSEQ to `modseq`.
pub(crate) fn mailbox_touch(conn: &Connection, id: MailboxId, uid: Option<Uid>, modseq: ModSeq) -> StoreResult<()> {
    exec(
        conn,
        "UPDATE mailbox_local SET uid_max = MAX(uid_max, ?2), highest_modseq = MAX(highest_modseq, ?3)
         WHERE mailbox_id = ?1",
        params![id.raw(), uid.map_or(0, Uid::get), modseq.get() as i64],
    )?;
    Ok(())
}

// --- subscriptions ----------------------------------------------------------

pub(crate) fn subscription(conn: &Connection, user: &str, name: &str) -> StoreResult<Option<(Hlc, DeviceId, bool)>> {
    let row: Option<(i64, Vec<u8>, bool)> = query_row(
        conn,
        "SELECT hlc, origin, subscribed FROM subscriptions WHERE user = ?1 AND name = ?2",
        [user, name],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?;
    row.map(|(hlc, origin, subscribed)| Ok((Hlc::from_raw(hlc as u64), device_id(origin)?, subscribed))).transpose()
}

pub(crate) fn subscription_put(
    conn: &Connection,
    user: &str,
    name: &str,
    hlc: Hlc,
    origin: DeviceId,
    subscribed: bool,
) -> StoreResult<()> {
    exec(conn,
        "INSERT INTO subscriptions (user, name, hlc, origin, subscribed) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user, name) DO UPDATE SET hlc = excluded.hlc, origin = excluded.origin, subscribed = excluded.subscribed",
        params![user, name, hlc.raw() as i64, origin.as_bytes().as_slice(), subscribed],
    )?;
    Ok(())
}

pub(crate) fn subscribed_names(conn: &Connection, user: &str) -> StoreResult<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT name FROM subscriptions WHERE user = ?1 AND subscribed = 1 ORDER BY name")?;
    let rows = stmt.query_map([user], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// --- messages and entries ---------------------------------------------------

/// Every blob a live entry names: what must be stored (`verify`, a snapshot
/// install). A `messages` row no entry names may have lost its blob to
/// garbage collection (`gc.rs`).
pub(crate) fn live_entry_blobs(conn: &Connection) -> StoreResult<Vec<BlobHash>> {
    let mut stmt = conn.prepare("SELECT DISTINCT blob FROM mailbox_entries ORDER BY blob")?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    rows.map(|r| blob_hash(r?)).collect()
}

/// Each stored message's blob with its size.
pub(crate) fn message_sizes(conn: &Connection) -> StoreResult<std::collections::HashMap<BlobHash, u64>> {
    let mut stmt = conn.prepare("SELECT blob, size FROM messages")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|row| {
        let (blob, size) = row?;
        Ok((blob_hash(blob)?, size as u64))
    })
    .collect()
}

pub(crate) fn message_put(conn: &Connection, blob: BlobHash, size: u64) -> StoreResult<()> {
    exec(
        conn,
        "INSERT OR IGNORE INTO messages (blob, size) VALUES (?1, ?2)",
        params![blob.as_bytes().as_slice(), size as i64],
    )?;
    Ok(())
}

/// A mailbox entry row: an item placed in a mailbox under a UID.
#[derive(Debug, Clone)]
pub(crate) struct EntryRow {
    pub(crate) entry_id: EntryId,
    pub(crate) mailbox_id: MailboxId,
    pub(crate) uid: Uid,
    pub(crate) item_id: ItemId,
    pub(crate) blob: BlobHash,
    pub(crate) internal_date: i64,
    pub(crate) added: EventId,
}

const ENTRY_COLUMNS: &str = "entry_id, mailbox_id, uid, item_id, blob, internal_date, added_origin, added_seq";

type RawEntry = (i64, i64, i64, i64, Vec<u8>, i64, Vec<u8>, i64);

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn entry_row(raw: RawEntry) -> StoreResult<EntryRow> {
    let (entry_id, mailbox, uid, item, blob, internal_date, origin, seq) = raw;
    Ok(EntryRow {
        entry_id: EntryId::from_raw(entry_id),
        mailbox_id: MailboxId::from_raw(mailbox),
        uid: Uid::new(uid as u32).ok_or_else(|| corrupt("entry uid is 0"))?,
        item_id: ItemId::from_raw(item),
        blob: blob_hash(blob)?,
        internal_date,
        added: EventId { origin: device_id(origin)?, seq: seq as u64 },
    })
}

pub(crate) fn entry_get(conn: &Connection, id: EntryId) -> StoreResult<Option<EntryRow>> {
    let raw = query_row(
        conn,
        &format!("SELECT {ENTRY_COLUMNS} FROM mailbox_entries WHERE entry_id = ?1"),
        [id.raw()],
        entry_from_row,
    )
    .optional()?;
    raw.map(entry_row).transpose()
}

pub(crate) fn entry_insert(conn: &Connection, row: &EntryRow, modseq: ModSeq, now_ms: u64) -> StoreResult<()> {
    // The blob is named again: when it loses its entries anew, blob GC waits
    // for the peers to acknowledge that removal (`gc.rs`, `blob_orphans`).
    exec(conn, "DELETE FROM blob_orphans WHERE blob = ?1", [row.blob.as_bytes().as_slice()])?;
    exec(conn,
        &format!(
            "INSERT INTO mailbox_entries ({ENTRY_COLUMNS}, modseq, placed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        params![
            row.entry_id.raw(),
            row.mailbox_id.raw(),
            row.uid.get(),
            row.item_id.raw(),
            row.blob.as_bytes().as_slice(),
            row.internal_date,
            row.added.origin.as_bytes().as_slice(),
            row.added.seq as i64,
            modseq.get() as i64,
            now_ms as i64
        ],
    )?;
    Ok(())
}

/// Removes an entry for good: a later placement of the same entry id (a
/// duplicate delivery) does not bring it back.
pub(crate) fn entry_delete(conn: &Connection, id: EntryId) -> StoreResult<()> {
    // The message's file-key cache row goes with the user's last entry
    // naming its blob (a copy or a move keeps it).
    exec(
        conn,
        "DELETE FROM file_keys WHERE (user, blob) IN (
             SELECT m.user, e.blob FROM mailbox_entries e JOIN mailboxes m ON m.id = e.mailbox_id
             WHERE e.entry_id = ?1
               AND NOT EXISTS (SELECT 1 FROM mailbox_entries o JOIN mailboxes om ON om.id = o.mailbox_id
                               WHERE o.blob = e.blob AND o.entry_id != e.entry_id AND om.user = m.user))",
        [id.raw()],
    )?;
    exec(conn, "DELETE FROM mailbox_entries WHERE entry_id = ?1", [id.raw()])?;
    exec(conn, "DELETE FROM entry_adds WHERE entry_id = ?1", [id.raw()])?;
    exec(conn, "INSERT OR IGNORE INTO removed_entries (entry_id) VALUES (?1)", [id.raw()])?;
    Ok(())
}

pub(crate) fn entry_set_uid(conn: &Connection, id: EntryId, uid: Uid, modseq: ModSeq, now_ms: u64) -> StoreResult<()> {
    exec(
        conn,
        "UPDATE mailbox_entries SET uid = ?2, modseq = ?3, placed_ms = ?4 WHERE entry_id = ?1",
        params![id.raw(), uid.get(), modseq.get() as i64, now_ms as i64],
    )?;
    Ok(())
}

/// Stamps every entry of `item` with `modseq`; returns their mailboxes.
pub(crate) fn item_touch(conn: &Connection, item: ItemId, modseq: ModSeq) -> StoreResult<Vec<MailboxId>> {
    exec(conn, "UPDATE mailbox_entries SET modseq = ?2 WHERE item_id = ?1", params![item.raw(), modseq.get() as i64])?;
    let mut stmt = conn.prepare_cached("SELECT DISTINCT mailbox_id FROM mailbox_entries WHERE item_id = ?1")?;
    let rows = stmt.query_map([item.raw()], |r| r.get::<_, i64>(0))?;
    rows.map(|r| Ok(MailboxId::from_raw(r?))).collect()
}

/// The live entry holding `uid` in the mailbox, if any.
pub(crate) fn entry_with_uid(conn: &Connection, mailbox: MailboxId, uid: Uid) -> StoreResult<Option<EntryRow>> {
    let raw = query_row(
        conn,
        &format!("SELECT {ENTRY_COLUMNS} FROM mailbox_entries WHERE mailbox_id = ?1 AND uid = ?2"),
        params![mailbox.raw(), uid.get()],
        entry_from_row,
    )
    .optional()?;
    raw.map(entry_row).transpose()
}

pub(crate) fn entries_of(conn: &Connection, mailbox: MailboxId) -> StoreResult<Vec<EntryRow>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM mailbox_entries WHERE mailbox_id = ?1 ORDER BY uid"))?;
    let rows = stmt.query_map([mailbox.raw()], entry_from_row)?;
    rows.map(|r| entry_row(r?)).collect()
}

// --- flags ------------------------------------------------------------------

pub(crate) fn flags_of(conn: &Connection, item: ItemId) -> StoreResult<Vec<Flag>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT flag FROM item_flags WHERE item_id = ?1 ORDER BY flag")?;
    let rows = stmt.query_map([item.raw()], |r| r.get::<_, String>(0))?;
    rows.map(|r| {
        let text = r?;
        Flag::parse(&text).ok_or_else(|| corrupt(format!("stored flag {text:?} is invalid")))
    })
    .collect()
}

/// Adds an instance of `flag` tagged with the adding event; returns whether the
/// flag was unset before. A newer instance from the same origin replaces an
/// older one: it dominates it causally.
pub(crate) fn flag_add(conn: &Connection, item: ItemId, flag: &Flag, tag: EventId) -> StoreResult<bool> {
    let was_set = query_row(
        conn,
        "SELECT 1 FROM item_flags WHERE item_id = ?1 AND flag = ?2 LIMIT 1",
        params![item.raw(), flag.as_str()],
        |_| Ok(()),
    )
    .optional()?
    .is_some();
    exec(
        conn,
        "INSERT INTO item_flags (item_id, flag, tag_origin, tag_seq) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (item_id, flag, tag_origin) DO UPDATE SET tag_seq = MAX(tag_seq, excluded.tag_seq)",
        params![item.raw(), flag.as_str(), tag.origin.as_bytes().as_slice(), tag.seq as i64],
    )?;
    Ok(!was_set)
}

/// Removes the instances of `flag` that `observed` includes; returns whether
/// the flag was set before and is unset now.
pub(crate) fn flag_remove_observed(
    conn: &Connection,
    item: ItemId,
    flag: &Flag,
    observed: &VersionVector,
) -> StoreResult<bool> {
    let mut stmt =
        conn.prepare_cached("SELECT tag_origin, tag_seq FROM item_flags WHERE item_id = ?1 AND flag = ?2")?;
    let tags: Vec<(Vec<u8>, i64)> = stmt
        .query_map(params![item.raw(), flag.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if tags.is_empty() {
        return Ok(false);
    }
    let mut remaining = tags.len();
    for (origin, seq) in tags {
        let tag = EventId { origin: device_id(origin.clone())?, seq: seq as u64 };
        if observed.contains(tag) {
            exec(
                conn,
                "DELETE FROM item_flags WHERE item_id = ?1 AND flag = ?2 AND tag_origin = ?3",
                params![item.raw(), flag.as_str(), origin],
            )?;
            remaining -= 1;
        }
    }
    Ok(remaining == 0)
}

// --- tombstones -------------------------------------------------------------

/// Forgets the tombstone of `uid` in `mailbox` because an entry takes the UID
/// (only after two devices issued it: a shared slot). Whoever could have seen
/// the old entry there saw a UID at or below the exposure watermark, which
/// makes the newcomer a re-key candidate: it leaves again, with a tombstone.
pub(crate) fn tombstone_clear(conn: &Connection, mailbox: MailboxId, uid: Uid) -> StoreResult<()> {
    exec(conn, "DELETE FROM tombstones WHERE mailbox_id = ?1 AND uid = ?2", params![mailbox.raw(), uid.get()])?;
    Ok(())
}

/// Slots other devices are known to use: active peers' and those of every
/// UID placed or vacated here (a device that shares this device's slot moves
/// to one outside these).
pub(crate) fn slots_in_use(conn: &Connection) -> StoreResult<Vec<DeviceSlot>> {
    let mut stmt = conn.prepare_cached(
        "SELECT slot FROM peers WHERE removed_ms IS NULL
         UNION SELECT (uid - 1) % 16 FROM mailbox_entries
         UNION SELECT (uid - 1) % 16 FROM tombstones",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    let mut slots = Vec::new();
    for row in rows {
        let raw = row?;
        let slot = u8::try_from(raw).ok().and_then(DeviceSlot::new).ok_or_else(|| corrupt("a slot out of range"))?;
        slots.push(slot);
    }
    Ok(slots)
}

pub(crate) fn set_device_slot(conn: &Connection, slot: DeviceSlot) -> StoreResult<()> {
    exec(conn, "UPDATE device SET slot = ?1 WHERE id = 1", [slot.get()])?;
    Ok(())
}

pub(crate) fn tombstone_put(
    conn: &Connection,
    mailbox: MailboxId,
    uid: Uid,
    entry: EntryId,
    modseq: ModSeq,
) -> StoreResult<()> {
    exec(
        conn,
        "INSERT OR IGNORE INTO tombstones (mailbox_id, uid, entry_id, modseq) VALUES (?1, ?2, ?3, ?4)",
        params![mailbox.raw(), uid.get(), entry.raw(), modseq.get() as i64],
    )?;
    Ok(())
}

// --- pending remote events (LOCAL) --------------------------------------------

pub(crate) fn pending_put(conn: &Connection, event: &Event, now_ms: u64) -> StoreResult<bool> {
    let n = exec(
        conn,
        "INSERT OR IGNORE INTO pending_events (origin, seq, hlc, deps, payload, signature, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            event.id.origin.as_bytes().as_slice(),
            event.id.seq as i64,
            event.hlc.raw() as i64,
            event.deps_bytes,
            event.payload_bytes,
            event.signature.as_slice(),
            now_ms as i64
        ],
    )?;
    Ok(n == 1)
}

pub(crate) fn pending_count(conn: &Connection) -> StoreResult<u64> {
    Ok(query_row(conn, "SELECT COUNT(*) FROM pending_events", [], |r| r.get::<_, i64>(0))? as u64)
}

/// The pending event `id`, if held (verified when it was stored).
pub(crate) fn pending_get(conn: &Connection, id: EventId) -> StoreResult<Option<Event>> {
    type PendingRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>);
    let row: Option<PendingRow> = query_row(
        conn,
        "SELECT hlc, deps, payload, signature FROM pending_events WHERE origin = ?1 AND seq = ?2",
        params![id.origin.as_bytes().as_slice(), id.seq as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .optional()?;
    let Some((hlc, deps, payload, signature)) = row else {
        return Ok(None);
    };
    let signature: [u8; 64] = signature.try_into().map_err(|_| corrupt("pending signature is not 64 bytes"))?;
    Ok(Some(Event::decode_unverified(id, Hlc::from_raw(hlc as u64), deps, payload, signature)?))
}

pub(crate) fn pending_delete(conn: &Connection, id: EventId) -> StoreResult<()> {
    exec(
        conn,
        "DELETE FROM pending_events WHERE origin = ?1 AND seq = ?2",
        params![id.origin.as_bytes().as_slice(), id.seq as i64],
    )?;
    Ok(())
}

/// Origins with pending events.
pub(crate) fn pending_origins(conn: &Connection) -> StoreResult<Vec<DeviceId>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT origin FROM pending_events ORDER BY origin")?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    rows.map(|r| device_id(r?)).collect()
}

/// Drops pending events already applied (a duplicate that arrived while the
/// original was pending and was then applied).
pub(crate) fn pending_prune(conn: &Connection, have: &VersionVector) -> StoreResult<()> {
    for (origin, seq) in have.iter() {
        exec(
            conn,
            "DELETE FROM pending_events WHERE origin = ?1 AND seq <= ?2",
            params![origin.as_bytes().as_slice(), *seq as i64],
        )?;
    }
    Ok(())
}

// --- displayed names ----------------------------------------------------------

/// The live mailboxes of `user` with the names IMAP shows: a name held by
/// several live mailboxes (a rename and a create that met after a partition)
/// stays with the mailbox that got it first (lowest register stamp); the others
/// show it with a visible suffix of their id, so nothing is silently hidden.
/// Deterministic from the replicated state, so every device shows the same.
pub(crate) fn mailboxes_displayed(conn: &Connection, user: &str) -> StoreResult<Vec<(MailboxRow, String)>> {
    let mut rows = mailboxes_of(conn, user)?;
    rows.sort_by(|a, b| {
        (a.name.as_str(), a.name_hlc, a.name_origin, a.id).cmp(&(b.name.as_str(), b.name_hlc, b.name_origin, b.id))
    });
    let mut out: Vec<(MailboxRow, String)> = Vec::with_capacity(rows.len());
    for row in rows {
        let clash = out.last().is_some_and(|(prev, _)| prev.name == row.name);
        let shown =
            if clash { format!("{}~{:06x}", row.name, (row.id.raw() as u64) & 0xFF_FFFF) } else { row.name.clone() };
        out.push((row, shown));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's live mailboxes come from the partial index: its cost does
    /// not grow with the mailboxes the user ever deleted.
    #[test]
    fn live_mailboxes_are_read_from_the_partial_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", live_mailboxes_sql()))
            .unwrap()
            .query_map(["alice"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("mailboxes_live_by_user_name")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "sorted by the index, not after: {plan:?}");
    }

    /// The exposure tick's query walks the mailboxes and seeks held UIDs:
    /// it never scans the entries (it ran 40 times a second over all of them).
    #[test]
    fn held_entries_are_sought_not_scanned() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT l.mailbox_id, MAX(e.uid) FROM {HELD_ENTRIES} GROUP BY l.mailbox_id"
            ))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|step| step == "SCAN l"), "{plan:?}");
        assert!(plan.iter().any(|step| step.starts_with("SEARCH e USING") && step.contains("uid>?")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.starts_with("SCAN e")), "{plan:?}");
    }
}
