//! COPY (new items with the copied flags), MOVE (the item leaves its source
//! entry and gets a new one in the target, in one event) and REKEY (an entry
//! gets a higher UID; the highest re-key wins).
//!
//! Concurrent moves of one item to two mailboxes: each move removes the source
//! entry and places its own, so the item ends up in both targets, on every
//! device, whatever the order: nothing is lost, and the duplicate is visible.
//! A move concurrent with an expunge of its source still places the message.

use crate::log::event::{CopiedEntry, MovedEntry};
use crate::merge::append::{place, remove_entry, set_uid};
use crate::merge::Apply;
use crate::model::{EntryId, ItemId, MailboxId, Uid};
use crate::store::conflicts::{self, ConflictKind};
use crate::store::{state, StoreResult};

pub(crate) fn copy(a: &mut Apply<'_>, mailbox: MailboxId, entries: &[CopiedEntry]) -> StoreResult<()> {
    for (index, copied) in entries.iter().enumerate() {
        let index = index as u32;
        let item = ItemId::derive(a.event.id, index);
        let entry = EntryId::derive(a.event.id, index);
        let new = &copied.entry;
        place(a, mailbox, entry, item, new.uid, new.blob, new.size, new.internal_date)?;
        for flag in &new.flags {
            state::flag_add(a.conn, item, flag, a.event.id)?;
        }
    }
    Ok(())
}

pub(crate) fn move_entries(
    a: &mut Apply<'_>,
    source: MailboxId,
    mailbox: MailboxId,
    entries: &[MovedEntry],
) -> StoreResult<()> {
    for (index, moved) in entries.iter().enumerate() {
        remove_entry(a, source, moved.from)?;
        let entry = EntryId::derive(a.event.id, index as u32);
        place(a, mailbox, entry, moved.item, moved.uid, moved.blob, moved.size, moved.internal_date)?;
        for (elsewhere, placed_by) in conflicts::other_entries_of_item(a.conn, moved.item, entry)? {
            conflicts::record(
                a.conn,
                ConflictKind::ConcurrentMove,
                a.now_ms,
                mailbox,
                a.event.id,
                Some(placed_by),
                &format!("moved to two mailboxes at once: kept in both (the other is mailbox {})", elsewhere.raw()),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn rekey(a: &mut Apply<'_>, mailbox: MailboxId, entry: EntryId, uid: Uid) -> StoreResult<()> {
    let Some(row) = state::entry_get(a.conn, entry)? else {
        return Ok(()); // Expunged or moved meanwhile: nothing to re-key.
    };
    if row.mailbox_id != mailbox || uid <= row.uid {
        return Ok(()); // A higher re-key (or duplicate delivery) already won.
    }
    set_uid(a, mailbox, &row, uid)
}
