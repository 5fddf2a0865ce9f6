//! Mailbox rules.
//!
//! - CREATE: ids derive from the name, so concurrent creates of one name meet
//!   in one mailbox. A create adds a liveness instance (below).
//! - RENAME: the name is a last-writer-wins register by `(hlc, origin)`; a
//!   create takes part in it with its own stamp. Two live mailboxes holding one
//!   name are shown apart by `state::mailboxes_displayed` (visible suffix).
//! - DELETE: liveness is an add-wins set of instances, one per create and per
//!   placement of an entry (newest per origin). A delete removes the instances
//!   and the entries its event observed; whatever it did not observe (an entry
//!   appended concurrently elsewhere) survives and keeps the mailbox.
//! - SUBSCRIBE: a last-writer-wins register per name.

use crate::merge::Apply;
use crate::model::{MailboxId, MailboxName, SpecialUse, UidValidity, UserName};
use crate::store::conflicts::{self, ConflictKind};
use crate::store::state::{self, MailboxRow};
use crate::store::{StoreError, StoreResult};

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
            if existing.uid_validity != uid_validity || existing.user != user.as_str() {
                // Ids derive from (user, name, generation): a peer bug or forgery.
                return Err(StoreError::Corrupt(format!(
                    "event {:?} re-creates {mailbox:?} with another owner or UIDVALIDITY",
                    a.event.id
                )));
            }
            if existing.deleted {
                state::mailbox_set_deleted(a.conn, mailbox, false)?;
            }
            if (existing.name_hlc, existing.name_origin) < (a.event.hlc, a.event.id.origin) {
                state::mailbox_set_name(a.conn, mailbox, name.as_str(), a.event.hlc, a.event.id.origin)?;
                state::mailbox_set_special_use(a.conn, mailbox, special_use)?;
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
    note_name_clash(a, user.as_str(), mailbox)?;
    state::mailbox_instance_add(a.conn, mailbox, a.event.id)?;
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}

pub(crate) fn rename(a: &mut Apply<'_>, mailbox: MailboxId, name: &MailboxName) -> StoreResult<()> {
    let Some(row) = state::mailbox_get(a.conn, mailbox)? else {
        return Ok(());
    };
    if (a.event.hlc, a.event.id.origin) <= (row.name_hlc, row.name_origin) {
        return Ok(()); // An older rename: the register keeps the newer name.
    }
    state::mailbox_set_name(a.conn, mailbox, name.as_str(), a.event.hlc, a.event.id.origin)?;
    note_name_clash(a, &row.user, mailbox)?;
    a.effects.users.insert(row.user);
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}

pub(crate) fn delete(a: &mut Apply<'_>, mailbox: MailboxId) -> StoreResult<()> {
    let Some(row) = state::mailbox_get(a.conn, mailbox)? else {
        return Ok(());
    };
    for entry in state::entries_of(a.conn, mailbox)? {
        if observed_entry(a, &entry)? {
            state::entry_delete(a.conn, entry.entry_id)?;
            state::tombstone_put(a.conn, mailbox, entry.uid, entry.entry_id, a.modseq)?;
        } else {
            // Added concurrently with the delete: it wins, and its
            // placement's instance keeps the mailbox.
            conflicts::record(
                a.conn,
                ConflictKind::DeleteVsArrival,
                a.now_ms,
                mailbox,
                a.event.id,
                Some(entry.added),
                "the delete removed the messages it had seen; mail added concurrently stays, and so does the mailbox",
            )?;
        }
    }
    let remaining = state::mailbox_instances_remove_observed(a.conn, mailbox, &a.event.deps)?;
    if remaining == 0 && !row.deleted {
        state::mailbox_set_deleted(a.conn, mailbox, true)?;
    }
    if remaining == 0 {
        let left = state::entries_of(a.conn, mailbox)?;
        assert!(left.is_empty(), "{mailbox:?} deleted with {} entries left", left.len());
    }
    state::mailbox_touch(a.conn, mailbox, None, a.modseq)?;
    a.effects.users.insert(row.user);
    a.effects.mailboxes.insert(mailbox);
    Ok(())
}

/// Records a clash when another live mailbox of `user` now has the name
/// `mailbox` has (concurrent create and rename; `state::mailboxes_displayed`
/// shows one of them with a suffix).
fn note_name_clash(a: &Apply<'_>, user: &str, mailbox: MailboxId) -> StoreResult<()> {
    let Some(this) = state::mailbox_get(a.conn, mailbox)? else {
        return Ok(());
    };
    if this.deleted {
        return Ok(());
    }
    for other in state::mailboxes_of(a.conn, user)? {
        if other.id != mailbox && other.name == this.name {
            let other_event = conflicts::event_at(a.conn, other.name_origin, other.name_hlc)?;
            conflicts::record(
                a.conn,
                ConflictKind::NameClash,
                a.now_ms,
                mailbox,
                a.event.id,
                other_event,
                &format!("both mailboxes named {:?} are kept; the later-named one is shown with a ~suffix", this.name),
            )?;
        }
    }
    Ok(())
}

/// Whether the deleting event had observed any event that placed the entry.
fn observed_entry(a: &Apply<'_>, entry: &state::EntryRow) -> StoreResult<bool> {
    if a.event.deps.contains(entry.added) {
        return Ok(true);
    }
    Ok(state::entry_adds_extra(a.conn, entry.entry_id)?.into_iter().any(|tag| a.event.deps.contains(tag)))
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
