//! Conflicts the merge resolved, as a LOCAL record for people (issue 9): the
//! merge rule that decides writes one row in the transaction that applies the
//! event (`record`), and the admin API lists them (`Store::conflicts`). The
//! rows never feed back into the merge; they only explain it.

use rusqlite::{params, Connection, OptionalExtension};

use crate::log::Event;
use crate::model::{DeviceId, EventId, MailboxId};
use crate::store::{Store, StoreError, StoreResult};

/// What kind of concurrent change the merge reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// A remote message landed at or below a UID IMAP may have shown here,
    /// so it got a new, higher UID (a `Rekey` event of this device).
    UidRekey,
    /// Two live mailboxes of one user ended up with one name (concurrent
    /// create and rename); one is shown with a suffix.
    NameClash,
    /// A mailbox was deleted on one device while mail was added to it on
    /// another: the mail and the mailbox stay.
    DeleteVsArrival,
    /// One message was moved to two mailboxes concurrently: it is in both.
    ConcurrentMove,
    /// One message delivered on two devices: stored once.
    DuplicateMerged,
    /// A user has an identity not wrapped under the current password (the
    /// user was created on two devices before they synced): it is kept in
    /// the keyring and the owner is told how to fold it in.
    KeyringSplit,
}

impl ConflictKind {
    /// Its stable name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::UidRekey => "uid_rekey",
            ConflictKind::NameClash => "name_clash",
            ConflictKind::DeleteVsArrival => "delete_vs_arrival",
            ConflictKind::ConcurrentMove => "concurrent_move",
            ConflictKind::DuplicateMerged => "duplicate_merged",
            ConflictKind::KeyringSplit => "keyring_split",
        }
    }

    fn parse(s: &str) -> Option<ConflictKind> {
        [
            ConflictKind::UidRekey,
            ConflictKind::NameClash,
            ConflictKind::DeleteVsArrival,
            ConflictKind::ConcurrentMove,
            ConflictKind::DuplicateMerged,
            ConflictKind::KeyringSplit,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One recorded conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRecord {
    /// Row id, increasing in recording order.
    pub id: i64,
    /// What kind.
    pub kind: ConflictKind,
    /// When this device resolved it (ms since the epoch).
    pub recorded_ms: u64,
    /// The mailbox it concerns.
    pub mailbox: MailboxId,
    /// The event whose application (or, for a re-key, whose emission) resolved it.
    pub event: EventId,
    /// The other side's event, when known.
    pub other: Option<EventId>,
    /// What the merge did, in words.
    pub resolution: String,
}

/// Records a conflict; the same conflict recorded twice (a replay) is one row.
pub(crate) fn record(
    conn: &Connection,
    kind: ConflictKind,
    now_ms: u64,
    mailbox: MailboxId,
    event: EventId,
    other: Option<EventId>,
    resolution: &str,
) -> StoreResult<()> {
    let (other_origin, other_seq): (Vec<u8>, i64) =
        other.map_or((Vec::new(), 0), |o| (o.origin.as_bytes().to_vec(), o.seq as i64));
    conn.prepare_cached(
        "INSERT OR IGNORE INTO conflicts
           (kind, recorded_ms, mailbox_id, event_origin, event_seq, other_origin, other_seq, resolution)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        kind.as_str(),
        now_ms as i64,
        mailbox.raw(),
        event.origin.as_bytes().as_slice(),
        event.seq as i64,
        other_origin,
        other_seq,
        resolution
    ])?;
    Ok(())
}

/// The event of `origin` stamped `hlc` (who last set a mailbox's name).
pub(crate) fn event_at(conn: &Connection, origin: DeviceId, hlc: crate::clock::Hlc) -> StoreResult<Option<EventId>> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM events WHERE origin = ?1 AND hlc = ?2")?
        .query_row(params![origin.as_bytes().as_slice(), hlc.raw() as i64], |r| r.get(0))
        .optional()?;
    Ok(seq.map(|seq| EventId { origin, seq: seq as u64 }))
}

fn device(bytes: Vec<u8>) -> StoreResult<DeviceId> {
    DeviceId::from_slice(&bytes)
        .ok_or_else(|| StoreError::Corrupt("conflict names a device id that is not 32 bytes".into()))
}

impl Store {
    /// Recorded conflicts, newest first, at most `limit`.
    pub fn conflicts(&self, limit: usize) -> StoreResult<Vec<ConflictRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, recorded_ms, mailbox_id, event_origin, event_seq, other_origin, other_seq, resolution
             FROM conflicts ORDER BY id DESC LIMIT ?1",
        )?;
        type Row = (i64, String, i64, i64, Vec<u8>, i64, Vec<u8>, i64, String);
        let rows: Vec<Row> = stmt
            .query_map([limit.min(i64::MAX as usize) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, kind, recorded_ms, mailbox, origin, seq, other_origin, other_seq, resolution)| {
                let kind = ConflictKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown conflict kind {kind:?}")))?;
                let other = if other_seq == 0 {
                    None
                } else {
                    Some(EventId { origin: device(other_origin)?, seq: other_seq as u64 })
                };
                Ok(ConflictRecord {
                    id,
                    kind,
                    recorded_ms: recorded_ms as u64,
                    mailbox: MailboxId::from_raw(mailbox),
                    event: EventId { origin: device(origin)?, seq: seq as u64 },
                    other,
                    resolution,
                })
            })
            .collect()
    }

    /// One event of the log, if this device has it.
    pub fn event(&self, id: EventId) -> StoreResult<Option<Event>> {
        type Row = (i64, Vec<u8>, Vec<u8>, Vec<u8>);
        let row: Option<Row> = self
            .conn
            .prepare_cached("SELECT hlc, deps, payload, signature FROM events WHERE origin = ?1 AND seq = ?2")?
            .query_row(params![id.origin.as_bytes().as_slice(), id.seq as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((hlc, deps, payload, signature)) = row else {
            return Ok(None);
        };
        let signature: [u8; 64] =
            signature.try_into().map_err(|_| StoreError::Corrupt("event signature is not 64 bytes".into()))?;
        let hlc = crate::clock::Hlc::from_raw(hlc as u64);
        Ok(Some(Event::decode_unverified(id, hlc, deps, payload, signature)?))
    }
}

/// Live entries of `item` other than `except` and where they are: `(mailbox,
/// event that placed it)`. More than one live entry of an item only comes
/// from concurrent moves (a copy makes new items).
pub(crate) fn other_entries_of_item(
    conn: &Connection,
    item: crate::model::ItemId,
    except: crate::model::EntryId,
) -> StoreResult<Vec<(MailboxId, EventId)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT mailbox_id, added_origin, added_seq FROM mailbox_entries WHERE item_id = ?1 AND entry_id != ?2",
    )?;
    let rows: Vec<(i64, Vec<u8>, i64)> = stmt
        .query_map(params![item.raw(), except.raw()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(mailbox, origin, seq)| {
            Ok((MailboxId::from_raw(mailbox), EventId { origin: device(origin)?, seq: seq as u64 }))
        })
        .collect()
}

/// Most events looked at to find the delete a concurrent arrival undid.
const DELETE_SCAN_MAX: i64 = 10_000;

/// The latest applied `MailboxDelete` of `mailbox`, looked up when mail
/// arrives in a deleted mailbox (rare, so a bounded scan of the log's tail).
pub(crate) fn latest_delete_of(conn: &Connection, mailbox: MailboxId) -> StoreResult<Option<EventId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT origin, seq, payload FROM events WHERE payload LIKE '%mailbox_delete%'
         ORDER BY applied_idx DESC LIMIT ?1",
    )?;
    let rows: Vec<(Vec<u8>, i64, Vec<u8>)> =
        stmt.query_map([DELETE_SCAN_MAX], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    for (origin, seq, payload) in rows {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        let op: Result<crate::log::event::EventOp, _> = serde_json::from_value(value["op"].clone());
        if let Ok(crate::log::event::EventOp::MailboxDelete { mailbox: deleted }) = op {
            if deleted == mailbox {
                return Ok(Some(EventId { origin: device(origin)?, seq: seq as u64 }));
            }
        }
    }
    Ok(None)
}
