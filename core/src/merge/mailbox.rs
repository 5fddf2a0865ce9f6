//! Mailbox rules: CREATE (ids derived from the name, so concurrent creates of
//! one name meet in one mailbox), RENAME (last-writer-wins name register),
//! DELETE (removes the entries its writer observed; a mailbox that still has
//! entries added concurrently stays, add-wins) and SUBSCRIBE (a
//! last-writer-wins register per name).

use crate::merge::Apply;
use crate::model::{MailboxId, MailboxName, SpecialUse, UidValidity, UserName};
use crate::store::state::{self, MailboxRow};
use crate::store::StoreResult;

pub(crate) fn create(
    a: &mut Apply<'_>,
    user: &UserName,
    mailbox: MailboxId,
    name: &MailboxName,
    uid_validity: UidValidity,
    special_use: Option<SpecialUse>,
) -> StoreResult<()> {
    a.effects.users.insert(user.as_str().to_string());
    match state::mailbox_get(a.conn, mailbox)? {
        // The same mailbox created concurrently elsewhere, or re-created after a
        // concurrent delete: one mailbox, alive.
        Some(existing) => {
            assert_eq!(existing.uid_validity, uid_validity, "UIDVALIDITY of {mailbox:?} would change");
            if existing.deleted {
                state::mailbox_set_deleted(a.conn, mailbox, false)?;
            }
        }
        None => {
            let row = MailboxRow {
                id: mailbox,
                user: user.as_str().to_string(),
                name: name.as_str().to_string(),
                name_hlc: a.event.hlc,
                name_origin: a.event.id.origin,
                uid_validity,
                special_use,
                deleted: false,
            };
            state::mailbox_insert(a.conn, &row)?;
        }
    }
    Ok(())
}

pub(crate) fn rename(a: &mut Apply<'_>, mailbox: MailboxId, name: &MailboxName) -> StoreResult<()> {
    let Some(row) = state::mailbox_get(a.conn, mailbox)? else {
        return Ok(());
    };
    if (a.event.hlc, a.event.id.origin) <= (row.name_hlc, row.name_origin) {
        return Ok(()); // An older rename: the register keeps the newer name.
    }
    state::name_generation_bump(a.conn, &row.user, &row.name)?;
    state::mailbox_set_name(a.conn, mailbox, name.as_str(), a.event.hlc, a.event.id.origin)?;
    a.effects.users.insert(row.user);
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}

pub(crate) fn delete(a: &mut Apply<'_>, mailbox: MailboxId) -> StoreResult<()> {
    let Some(row) = state::mailbox_get(a.conn, mailbox)? else {
        return Ok(());
    };
    let mut survivors = 0;
    for entry in state::entries_of(a.conn, mailbox)? {
        if a.event.deps.contains(entry.added) || entry.added == a.event.id {
            state::entry_delete(a.conn, entry.entry_id)?;
            state::tombstone_put(a.conn, mailbox, entry.uid, entry.entry_id, a.modseq)?;
        } else {
            // Added concurrently with the delete: it wins and keeps the mailbox.
            survivors += 1;
        }
    }
    if survivors == 0 && !row.deleted {
        state::mailbox_set_deleted(a.conn, mailbox, true)?;
        state::name_generation_bump(a.conn, &row.user, &row.name)?;
    }
    state::mailbox_touch(a.conn, mailbox, None, a.modseq)?;
    a.effects.users.insert(row.user);
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}

pub(crate) fn subscribe(a: &mut Apply<'_>, user: &UserName, name: &MailboxName, subscribed: bool) -> StoreResult<()> {
    let stamp = (a.event.hlc, a.event.id.origin);
    if let Some((hlc, origin, _)) = state::subscription(a.conn, user.as_str(), name.as_str())? {
        if stamp <= (hlc, origin) {
            return Ok(());
        }
    }
    state::subscription_put(a.conn, user.as_str(), name.as_str(), a.event.hlc, a.event.id.origin, subscribed)?;
    a.effects.users.insert(user.as_str().to_string());
    Ok(())
}
