//! Users: the password is a last-writer-wins register; removal deletes the
//! account and marks its mailboxes deleted.

use crate::merge::Apply;
use crate::model::UserName;
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
    keys: &crate::crypto::UserKeys,
) -> StoreResult<()> {
    // Like a password change: nothing for a user removed concurrently.
    let Some(current) = state::user_stamp(a.conn, user.as_str())? else {
        return Ok(());
    };
    let stamp = (a.event.hlc, a.event.id.origin);
    if stamp <= current {
        return Ok(());
    }
    state::user_put(a.conn, user.as_str(), password_hash, a.event.hlc, a.event.id.origin)?;
    state::user_keys_put(a.conn, user.as_str(), Some(keys))?;
    a.effects.users.insert(user.as_str().to_string());
    Ok(())
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
