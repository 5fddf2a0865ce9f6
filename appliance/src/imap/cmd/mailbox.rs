//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (RFC 9051 6.3.4-6.3.8).
//! Valid when authenticated or selected. Each change is one store write; the
//! tagged OK is sent only after it committed.

use imap_codec::imap_types::mailbox::Mailbox;

use crate::imap::cmd::{mailbox_name, user, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};

/// Whether SUBSCRIBE or UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// SUBSCRIBE.
    On,
    /// UNSUBSCRIBE.
    Off,
}

/// CREATE. A trailing delimiter only declares intent to hold children
/// (RFC 9051 6.3.4); we create the name without it.
pub fn create(conn: &mut ImapConn, env: &mut Env<'_>, mailbox: &Mailbox<'_>) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let name = mailbox_name(conn, mailbox)?;
    let name = name.trim_end_matches('/');
    if name.eq_ignore_ascii_case("INBOX") {
        return Err(CmdError::No("[ALREADYEXISTS] INBOX always exists".into()));
    }
    let name = name.to_owned();
    let (_, effects) = env.write(move |w| w.create_mailbox(&user, &name, None))?;
    conn.committed(effects);
    Ok(Done::ok("CREATE completed"))
}

/// DELETE.
pub fn delete(conn: &mut ImapConn, env: &mut Env<'_>, mailbox: &Mailbox<'_>) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let name = mailbox_name(conn, mailbox)?;
    // Deleting the selected mailbox deselects it first, so this session is
    // not told BYE for its own DELETE.
    let selected_here = conn.selected.as_ref().is_some_and(|s| s.info.name == name);
    let ((), effects) = env.write(move |w| w.delete_mailbox(&user, &name))?;
    if selected_here {
        conn.selected = None;
    }
    conn.committed(effects);
    Ok(Done::ok("DELETE completed"))
}

/// RENAME.
pub fn rename(conn: &mut ImapConn, env: &mut Env<'_>, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let from = mailbox_name(conn, from)?;
    let to = mailbox_name(conn, to)?;
    let ((), effects) = env.write(move |w| w.rename_mailbox(&user, &from, &to))?;
    conn.committed(effects);
    Ok(Done::ok("RENAME completed"))
}

/// SUBSCRIBE / UNSUBSCRIBE. Subscribing to a name that does not exist is
/// allowed (RFC 9051 6.3.7).
pub fn subscribe(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    mailbox: &Mailbox<'_>,
    subscription: Subscription,
) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let name = mailbox_name(conn, mailbox)?;
    let on = subscription == Subscription::On;
    let ((), effects) = env.write(move |w| w.subscribe(&user, &name, on))?;
    conn.committed(effects);
    Ok(Done::ok(if on { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }))
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn create_rename_delete() {
        let mut h = Harness::logged_in();
        h.transact("a CREATE Projects/", "OK");
        h.transact("b CREATE Projects", "NO [ALREADYEXISTS]");
        h.transact("c RENAME Projects Work", "OK");
        assert!(h.transact("d LIST \"\" Work", "OK").contains("\"Work\""));
        h.transact("s SELECT Work", "OK");
        h.transact("e DELETE Work", "OK");
        h.transact("t FETCH 1 FLAGS", "BAD"); // deselected by its own DELETE
        h.transact("f DELETE Work", "NO [NONEXISTENT]");
        h.transact("g DELETE INBOX", "NO");
        h.transact("h CREATE inbox", "NO [ALREADYEXISTS]");
    }

    #[test]
    fn mailbox_deleted_by_another_session_ends_this_one() {
        let mut h = Harness::logged_in();
        h.transact("a CREATE Gone", "OK");
        h.transact("b SELECT Gone", "OK");
        let mut other = h.second();
        other.transact("x DELETE Gone", "OK");
        let out = h.transact("c NOOP", "OK");
        assert!(out.contains("* BYE [NONEXISTENT]"), "{out}");
    }

    #[test]
    fn subscriptions_show_in_lsub() {
        let mut h = Harness::logged_in();
        h.transact("a CREATE Lists", "OK");
        h.transact("b SUBSCRIBE Lists", "OK");
        assert!(h.transact("c LSUB \"\" *", "OK").contains("\"Lists\""));
        h.transact("d UNSUBSCRIBE Lists", "OK");
        assert!(!h.transact("e LSUB \"\" *", "OK").contains("\"Lists\""));
    }

    #[test]
    fn utf7_names_are_stored_as_utf8() {
        let mut h = Harness::logged_in();
        h.transact("a CREATE Entw&APw-rfe", "OK");
        assert!(h.transact("b LIST \"\" Entw*", "OK").contains("Entw&APw-rfe"));
        h.transact("c CREATE Bad&Jjo", "BAD");
    }
}
