//! APPEND (a new item with a new entry per message), DELIVER (the same, with
//! ids derived from the message so two devices' deliveries of one message meet
//! in one entry) and EXPUNGE (removes named entries, leaving a tombstone with
//! the UID for QRESYNC VANISHED).
//!
//! Placement is where replication meets UIDs: `place` is shared by APPEND,
//! DELIVER, COPY and MOVE. An entry that lands at or below the exposure
//! watermark of a remote event is noted for a re-key (`note_uid`).

use crate::log::event::{DeliveredEntry, NewEntry};
use crate::merge::Apply;
use crate::model::{BlobHash, EntryId, ItemId, MailboxId, Uid};
use crate::store::conflicts::{self, ConflictKind};
use crate::store::state::{self, EntryRow};
use crate::store::{StoreError, StoreResult};

pub(crate) fn append(a: &mut Apply<'_>, mailbox: MailboxId, entries: &[NewEntry]) -> StoreResult<()> {
    for (index, new) in entries.iter().enumerate() {
        let index = index as u32;
        let item = ItemId::derive(a.event.id, index);
        let entry = EntryId::derive(a.event.id, index);
        place(a, mailbox, entry, item, new.uid, new.blob, new.size, new.internal_date)?;
        for flag in &new.flags {
            state::flag_add(a.conn, item, flag, a.event.id)?;
        }
    }
    Ok(())
}

/// The same message delivered on two devices: both events name the same entry
/// and item (derived from the message key), so it is stored once. Its UID is
/// the higher of the two (like a re-key), its other fields come from the
/// earliest event, and a removal of the entry is final.
pub(crate) fn deliver(a: &mut Apply<'_>, mailbox: MailboxId, entries: &[DeliveredEntry]) -> StoreResult<()> {
    for delivered in entries {
        let item = delivered.key.item(mailbox);
        let entry = delivered.key.entry(mailbox);
        let new = &delivered.entry;
        place(a, mailbox, entry, item, new.uid, new.blob, new.size, new.internal_date)?;
        for flag in &new.flags {
            state::flag_add(a.conn, item, flag, a.event.id)?;
        }
    }
    Ok(())
}

/// Puts an entry into a mailbox. A mailbox deleted concurrently comes back:
/// the message added to it is not lost (add-wins: the placement is a liveness
/// instance of the mailbox, see `mailbox::delete`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn place(
    a: &mut Apply<'_>,
    mailbox: MailboxId,
    entry: EntryId,
    item: ItemId,
    uid: Uid,
    blob: BlobHash,
    size: u64,
    internal_date: i64,
) -> StoreResult<()> {
    let row = state::mailbox_get(a.conn, mailbox)?
        .ok_or_else(|| StoreError::Corrupt(format!("event {:?} adds to unknown mailbox {mailbox:?}", a.event.id)))?;
    // Every placement is an instance, whatever happens to the entry below, so
    // the instance set does not depend on the order duplicates arrive in.
    state::mailbox_instance_add(a.conn, mailbox, a.event.id)?;
    if row.deleted {
        state::mailbox_set_deleted(a.conn, mailbox, false)?;
        a.effects.users.insert(row.user.clone());
        let delete = conflicts::latest_delete_of(a.conn, mailbox)?;
        conflicts::record(
            a.conn,
            ConflictKind::DeleteVsArrival,
            a.now_ms,
            mailbox,
            a.event.id,
            delete,
            "mail arrived in a mailbox deleted concurrently: the mailbox is back with the new mail",
        )?;
    }
    state::message_put(a.conn, blob, size)?;
    if state::entry_removed(a.conn, entry)? {
        // A duplicate delivery of a message already expunged or moved away.
        return Ok(());
    }
    if let Some(existing) = state::entry_get(a.conn, entry)? {
        return merge_duplicate(a, mailbox, existing, uid, blob, internal_date);
    }
    if let Some(holder) = state::entry_with_uid(a.conn, mailbox, uid)? {
        // Slots make UIDs from different devices distinct, and a device never
        // reissues one; two devices that share a slot are handled before the
        // event is applied (`Writer::make_room` re-keys the holder), and
        // replay meets that re-key first. Anything else is corrupt.
        return Err(StoreError::Corrupt(format!(
            "uid {} in {mailbox:?} is held by {:?}, event {:?} wants it (two devices share a UID slot)",
            uid.get(),
            holder.entry_id,
            a.event.id
        )));
    }
    state::tombstone_clear(a.conn, mailbox, uid)?;
    let entry_row =
        EntryRow { entry_id: entry, mailbox_id: mailbox, uid, item_id: item, blob, internal_date, added: a.event.id };
    state::entry_insert(a.conn, &entry_row, a.modseq, a.now_ms)?;
    state::mailbox_touch(a.conn, mailbox, Some(uid), a.modseq)?;
    note_uid(a, mailbox, entry, uid)?;
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}

/// A second placement of an existing entry (duplicate delivery).
fn merge_duplicate(
    a: &mut Apply<'_>,
    mailbox: MailboxId,
    existing: EntryRow,
    uid: Uid,
    blob: BlobHash,
    internal_date: i64,
) -> StoreResult<()> {
    if existing.mailbox_id != mailbox {
        return Err(StoreError::Corrupt(format!("event {:?} re-places an entry in another mailbox", a.event.id)));
    }
    // The set of adding events is kept as (smallest in the row, others aside).
    if a.event.id < existing.added {
        state::entry_add_extra(a.conn, existing.entry_id, existing.added)?;
        state::entry_set_origin_fields(a.conn, existing.entry_id, blob, internal_date, a.event.id)?;
    } else {
        state::entry_add_extra(a.conn, existing.entry_id, a.event.id)?;
    }
    let kept = existing.uid.max(uid);
    conflicts::record(
        a.conn,
        ConflictKind::DuplicateMerged,
        a.now_ms,
        mailbox,
        a.event.id,
        Some(existing.added),
        &format!("the same message delivered on two devices is stored once, at UID {}", kept.get()),
    )?;
    if existing.uid < uid {
        set_uid(a, mailbox, &existing, uid)?;
    }
    Ok(())
}

/// Moves an entry to a higher UID: the old UID becomes a tombstone (VANISHED).
pub(crate) fn set_uid(a: &mut Apply<'_>, mailbox: MailboxId, row: &EntryRow, uid: Uid) -> StoreResult<()> {
    assert!(row.uid < uid, "a UID change must go up: {} -> {}", row.uid.get(), uid.get());
    if let Some(holder) = state::entry_with_uid(a.conn, mailbox, uid)? {
        return Err(StoreError::Corrupt(format!(
            "uid {} in {mailbox:?} is held by {:?}, event {:?} moves {:?} there (two devices share a UID slot)",
            uid.get(),
            holder.entry_id,
            a.event.id,
            row.entry_id
        )));
    }
    state::tombstone_put(a.conn, mailbox, row.uid, row.entry_id, a.modseq)?;
    state::tombstone_clear(a.conn, mailbox, uid)?;
    state::entry_set_uid(a.conn, row.entry_id, uid, a.modseq, a.now_ms)?;
    state::mailbox_touch(a.conn, mailbox, Some(uid), a.modseq)?;
    note_uid(a, mailbox, row.entry_id, uid)?;
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}

/// A remote event put `entry` at `uid`: if IMAP may already have been shown a
/// UID at or above it here, a client would see a UID appear below ones it
/// knows, so the entry must get a fresh UID (a `Rekey` the writer emits).
fn note_uid(a: &mut Apply<'_>, mailbox: MailboxId, entry: EntryId, uid: Uid) -> StoreResult<()> {
    if a.local {
        return Ok(());
    }
    if uid.get() <= state::mailbox_exposed(a.conn, mailbox)? {
        a.effects.rekey_candidates.push((mailbox, entry));
    }
    Ok(())
}

pub(crate) fn expunge(a: &mut Apply<'_>, mailbox: MailboxId, entries: &[EntryId]) -> StoreResult<()> {
    for entry in entries {
        remove_entry(a, mailbox, *entry)?;
    }
    Ok(())
}

/// Removes an entry if it is still there (it may have gone by a concurrent
/// expunge or move) and leaves a tombstone for its UID.
pub(crate) fn remove_entry(a: &mut Apply<'_>, mailbox: MailboxId, entry: EntryId) -> StoreResult<()> {
    let Some(row) = state::entry_get(a.conn, entry)? else {
        return Ok(());
    };
    if row.mailbox_id != mailbox {
        return Err(StoreError::Corrupt(format!("event {:?} names entry {entry:?} in the wrong mailbox", a.event.id)));
    }
    state::entry_delete(a.conn, entry)?;
    state::tombstone_put(a.conn, mailbox, row.uid, entry, a.modseq)?;
    state::mailbox_touch(a.conn, mailbox, None, a.modseq)?;
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}
