//! APPEND (a new item with a new entry per message) and EXPUNGE (removes named
//! entries, leaving a tombstone with the UID for QRESYNC VANISHED).

use crate::log::event::NewEntry;
use crate::merge::Apply;
use crate::model::{EntryId, ItemId, MailboxId, Uid};
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

/// Puts an entry into a mailbox. A mailbox deleted concurrently comes back:
/// the message added to it is not lost (add-wins).
#[allow(clippy::too_many_arguments)]
pub(crate) fn place(
    a: &mut Apply<'_>,
    mailbox: MailboxId,
    entry: EntryId,
    item: ItemId,
    uid: Uid,
    blob: crate::model::BlobHash,
    size: u64,
    internal_date: i64,
) -> StoreResult<()> {
    let row = state::mailbox_get(a.conn, mailbox)?
        .ok_or_else(|| StoreError::Corrupt(format!("event {:?} adds to unknown mailbox {mailbox:?}", a.event.id)))?;
    if row.deleted {
        state::mailbox_set_deleted(a.conn, mailbox, false)?;
        a.effects.users.insert(row.user.clone());
    }
    if let Some(holder) = state::entry_with_uid(a.conn, mailbox, uid)? {
        // Slots make UIDs from different devices distinct, so this is a bug.
        return Err(StoreError::Corrupt(format!(
            "uid {} in {mailbox:?} is held by {:?}, event {:?} wants it",
            uid.get(),
            holder.entry_id,
            a.event.id
        )));
    }
    state::message_put(a.conn, blob, size)?;
    let entry_row =
        EntryRow { entry_id: entry, mailbox_id: mailbox, uid, item_id: item, blob, internal_date, added: a.event.id };
    state::entry_insert(a.conn, &entry_row, a.modseq)?;
    state::mailbox_touch(a.conn, mailbox, Some(uid), a.modseq)?;
    a.effects.mailboxes.insert(mailbox);
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
