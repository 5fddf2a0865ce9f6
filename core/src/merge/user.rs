//! Users: the password is a last-writer-wins register; removal deletes the
//! account and marks its mailboxes deleted. Identities accumulate in the
//! user's keyring (an add-wins set by public key, emptied only by removal).

use crate::crypto::UserKeys;
use crate::merge::Apply;
use crate::model::{MailboxId, UserName};
use crate::store::conflicts::{self, ConflictKind};
use crate::store::{state, StoreResult};

pub(crate) fn add(a: &mut Apply<'_>, user: &UserName, password_hash: &str) -> StoreResult<()> {
    let stamp = (a.event.hlc, a.event.id.origin);
    if state::user_stamp(a.conn, user.as_str())?.is_some_and(|current| stamp <= current) {
        return Ok(());
    }
    set_password_if_newer(a, user, password_hash)?;
    // A (re-)created account starts without keys; its `user_keys` event follows.
    state::user_keys_put(a.conn, user.as_str(), None)
}

pub(crate) fn password(a: &mut Apply<'_>, user: &UserName, password_hash: &str) -> StoreResult<()> {
    // A password change for a user removed concurrently re-creates nothing:
    // the account is gone until someone adds it again.
    if state::user_stamp(a.conn, user.as_str())?.is_none() {
        return Ok(());
    }
    set_password_if_newer(a, user, password_hash)
}

pub(crate) fn keys(
    a: &mut Apply<'_>,
    user: &UserName,
    password_hash: &str,
    keys: &UserKeys,
    also: &[UserKeys],
) -> StoreResult<()> {
    // Like a password change: nothing for a user removed concurrently.
    let Some(current) = state::user_stamp(a.conn, user.as_str())? else {
        return Ok(());
    };
    // The keyring keeps every identity, whichever record wins below: mail
    // sealed to a losing identity (the user created on two devices before
    // they synced) stays readable.
    for entry in std::iter::once(keys).chain(also) {
        state::keyring_put(a.conn, user.as_str(), entry, a.event.hlc, a.event.id.origin)?;
    }
    let stamp = (a.event.hlc, a.event.id.origin);
    if stamp > current {
        state::user_put(a.conn, user.as_str(), password_hash, a.event.hlc, a.event.id.origin)?;
        state::user_keys_put(a.conn, user.as_str(), Some(keys))?;
    }
    a.effects.users.insert(user.as_str().to_string());
    note_split_keyring(a, user)
}

/// Records a conflict when some identity of the user's keyring is not wrapped
/// with the current record's password key (a password change or recovery
/// wraps the whole keyring under one salt): the current password may not open
/// it, so the owner is told which identity it is and how to fold it in.
fn note_split_keyring(a: &mut Apply<'_>, user: &UserName) -> StoreResult<()> {
    let Some(current) = state::user_keys(a.conn, user.as_str())? else {
        return Ok(());
    };
    let apart: Vec<(UserKeys, crate::clock::Hlc, crate::model::DeviceId)> = state::keyring(a.conn, user.as_str())?
        .into_iter()
        .filter(|(entry, _, _)| {
            entry.public_key != current.public_key && entry.by_password.kdf != current.by_password.kdf
        })
        .collect();
    let Some((_, hlc, origin)) = apart.first() else {
        return Ok(());
    };
    let other = conflicts::event_at(a.conn, *origin, *hlc)?;
    let inbox = state::mailbox_live_by_name(a.conn, user.as_str(), "INBOX")?
        .map_or_else(|| MailboxId::derive(user.as_str(), "INBOX", 0), |row| row.id);
    let names: Vec<&str> = apart.iter().map(|(entry, _, _)| entry.public_key.as_str()).collect();
    let resolution = format!(
        "{user} has more than one identity (created on two devices before they synced); new mail is sealed to {}, \
         and mail sealed to {} stays readable but its identity is wrapped under a password set elsewhere. \
         If {user}'s password opens it too, logins read that mail already and `roost user passwd {user}` joins it; \
         otherwise run `roost user recover {user}` with the recovery key printed when that identity was created",
        current.public_key,
        names.join(", ")
    );
    conflicts::record(a.conn, ConflictKind::KeyringSplit, a.now_ms, inbox, a.event.id, other, &resolution)
}

fn set_password_if_newer(a: &mut Apply<'_>, user: &UserName, password_hash: &str) -> StoreResult<()> {
    let stamp = (a.event.hlc, a.event.id.origin);
    if let Some(current) = state::user_stamp(a.conn, user.as_str())? {
        if stamp <= current {
            return Ok(());
        }
    }
    state::user_put(a.conn, user.as_str(), password_hash, a.event.hlc, a.event.id.origin)?;
    a.effects.users.insert(user.as_str().to_string());
    Ok(())
}

pub(crate) fn remove(a: &mut Apply<'_>, user: &UserName) -> StoreResult<()> {
    for mailbox in state::mailbox_ids_of_user_all(a.conn, user.as_str())? {
        crate::merge::mailbox::delete(a, mailbox)?;
    }
    state::user_delete(a.conn, user.as_str())?;
    a.effects.users.insert(user.as_str().to_string());
    Ok(())
}
