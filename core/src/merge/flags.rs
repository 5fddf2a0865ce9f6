//! STORE: each flag of each item is its own add-wins set. An add creates an
//! instance tagged with the event; a remove deletes the instances within the
//! event's dependency vector, so a concurrent add elsewhere survives.
//! (Dovecot's dsync copies whole flag sets and loses one side.)

use crate::merge::Apply;
use crate::model::{Flag, ItemId};
use crate::store::{state, StoreResult};

pub(crate) fn change(a: &mut Apply<'_>, items: &[ItemId], add: &[Flag], remove: &[Flag]) -> StoreResult<()> {
    for item in items {
        let mut changed = false;
        for flag in remove {
            changed |= state::flag_remove_observed(a.conn, *item, flag, &a.event.deps)?;
        }
        for flag in add {
            changed |= state::flag_add(a.conn, *item, flag, a.event.id)?;
        }
        if changed {
            for mailbox in state::item_touch(a.conn, *item, a.modseq)? {
                state::mailbox_touch(a.conn, mailbox, None, a.modseq)?;
                a.effects.mailboxes.insert(mailbox);
            }
        }
    }
    Ok(())
}
