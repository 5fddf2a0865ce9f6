//! The merge rules: how each event changes the materialised state. One file per
//! rule (DESIGN.md, "Merge rules"). `apply_event` is the only way state changes,
//! for local events and (later) for events from peers alike, and it runs inside
//! the transaction that stores the event.
//!
//! Every rule is written so that applying the same set of events in any causal
//! order gives the same state: removals name what their writer observed
//! (entry ids, or flag instances within the writer's dependency vector),
//! registers are last-writer-wins by `(hlc, origin)`, and additions win over
//! concurrent removals. Remote events and local ones go through the same code;
//! the only difference is that a remote entry landing at or below this device's
//! exposure watermark is noted in `Effects` for the writer to re-key (apply
//! itself never emits events, so replaying the log reproduces the state).

mod append;
mod flags;
pub(crate) mod invariants;
mod mailbox;
mod move_copy;
mod user;

use std::collections::BTreeSet;

use rusqlite::Connection;

use crate::clock::Hlc;
use crate::log::event::{Event, EventOp};
use crate::model::{DeviceSlot, EntryId, MailboxId, ModSeq};
use crate::store::{state, StoreResult};

/// What a committed write changed, for the daemon to notify IMAP sessions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Mailboxes whose entries, flags or UIDs changed.
    pub mailboxes: BTreeSet<MailboxId>,
    /// Users whose mailbox list or account changed.
    pub users: BTreeSet<String>,
    /// Events applied, in order.
    pub events: Vec<crate::model::EventId>,
    /// Entries a remote event gave a UID at or below what IMAP may have
    /// shown here: the writer re-keys them before the transaction commits.
    pub(crate) rekey_candidates: Vec<(MailboxId, EntryId)>,
}

impl Effects {
    /// Adds `other` to `self`.
    pub fn merge(&mut self, other: Effects) {
        self.mailboxes.extend(other.mailboxes);
        self.users.extend(other.users);
        self.events.extend(other.events);
        self.rekey_candidates.extend(other.rekey_candidates);
    }
}

/// What applying one event needs besides the event.
pub(crate) struct Apply<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) event: &'a Event,
    /// MODSEQ stamped on everything this event changes on this device.
    pub(crate) modseq: ModSeq,
    /// The caller's time (LOCAL bookkeeping: when an entry got its UID).
    pub(crate) now_ms: u64,
    /// Whether this device created the event. Only remote events can put an
    /// entry below the exposure watermark (local UIDs are allocated above it).
    pub(crate) local: bool,
    pub(crate) effects: &'a mut Effects,
}

/// Stores `event` and applies it to the materialised state. The caller owns the
/// transaction; on error it rolls back and nothing of the event remains.
pub(crate) fn apply_event(
    conn: &Connection,
    event: &Event,
    now_ms: u64,
    slot: DeviceSlot,
    effects: &mut Effects,
) -> StoreResult<()> {
    // Causal delivery: every dependency is applied, and the origin's log has no gap.
    let have = state::version_vector(conn)?;
    assert!(have.dominates(&event.deps), "event {:?} applied before its dependencies", event.id);
    let origin_seq = have.get(&event.id.origin);
    assert!(
        origin_seq + 1 == event.id.seq,
        "event {:?} breaks the dense seq of its origin (have {origin_seq})",
        event.id
    );

    state::insert_event(conn, event)?;
    let last = state::last_hlc(conn)?;
    state::set_last_hlc(conn, Hlc::observe(last, event.hlc, now_ms))?;
    let modseq = ModSeq::next(state::last_modseq(conn)?, now_ms, slot);
    state::set_last_modseq(conn, modseq)?;
    effects.events.push(event.id);

    let local = state::device(conn)?.0 == event.id.origin;
    let mut apply = Apply { conn, event, modseq, now_ms, local, effects };
    match &event.op {
        EventOp::UserAdd { user, password_hash } => user::add(&mut apply, user, password_hash),
        EventOp::UserPassword { user, password_hash } => user::password(&mut apply, user, password_hash),
        EventOp::UserKeys { user, password_hash, keys, also } => {
            user::keys(&mut apply, user, password_hash, keys, also)
        }
        EventOp::UserRemove { user } => user::remove(&mut apply, user),
        EventOp::MailboxCreate { user, mailbox, name, uid_validity, special_use } => {
            mailbox::create(&mut apply, user, *mailbox, name, *uid_validity, *special_use)
        }
        EventOp::MailboxRename { mailbox, name } => mailbox::rename(&mut apply, *mailbox, name),
        EventOp::MailboxDelete { mailbox } => mailbox::delete(&mut apply, *mailbox),
        EventOp::MailboxSubscribe { user, name, subscribed } => mailbox::subscribe(&mut apply, user, name, *subscribed),
        EventOp::Append { mailbox, entries } => append::append(&mut apply, *mailbox, entries),
        EventOp::Deliver { mailbox, entries } => append::deliver(&mut apply, *mailbox, entries),
        EventOp::Flags { mailbox: _, items, add, remove } => flags::change(&mut apply, items, add, remove),
        EventOp::Expunge { mailbox, entries } => append::expunge(&mut apply, *mailbox, entries),
        EventOp::Copy { source: _, mailbox, entries } => move_copy::copy(&mut apply, *mailbox, entries),
        EventOp::Move { source, mailbox, entries } => move_copy::move_entries(&mut apply, *source, *mailbox, entries),
        EventOp::Rekey { mailbox, entry, uid } => move_copy::rekey(&mut apply, *mailbox, *entry, *uid),
    }
}
