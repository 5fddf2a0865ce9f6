//! STATUS (RFC 9051 6.3.11) with SIZE (RFC 8438) and HIGHESTMODSEQ (RFC 7162
//! 3.1.2.2). Valid when authenticated or selected. Also builds the STATUS
//! responses of LIST-STATUS (RFC 5819).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use roost_core::store::{MailboxCounts, MailboxInfo, Store};

use crate::imap::cmd::{mailbox_name, user, wire_name, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
use crate::imap::snapshot::SnapshotCache;
use crate::imap::wire;

/// STATUS.
pub fn status(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    mailbox: &Mailbox<'_>,
    items: &[StatusDataItemName],
) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let name = mailbox_name(conn, mailbox)?;
    let names: Vec<String> = items.iter().map(|i| item_name(i).to_string()).collect();
    if let Some(line) = status_of_selected(conn, env.snapshots, &name, &names)? {
        conn.raw(&line);
        return Ok(Done::ok("STATUS completed"));
    }
    let line = {
        let store = env.read()?;
        let Some(info) = store.mailbox_by_name(&user, &name)? else {
            return Err(CmdError::No(format!("[NONEXISTENT] No mailbox {name}")));
        };
        status_line(conn, &store, env.snapshots, &info, &names)?
    };
    conn.raw(&line);
    Ok(Done::ok("STATUS completed"))
}

/// STATUS of the selected mailbox from the session's view, without a store
/// read, when the view has every change the session has heard of (as a
/// NOOP would report them) and its counts are kept with the shared
/// snapshot; else None. RFC 9051 6.3.11 points clients at the view for the
/// selected mailbox; what STATUS says here agrees with what it was told.
fn status_of_selected(
    conn: &ImapConn,
    snapshots: Option<&SnapshotCache>,
    name: &str,
    items: &[String],
) -> Result<Option<Vec<u8>>, CmdError> {
    let (Some(selected), Some(snapshots)) = (conn.selected.as_ref(), snapshots) else { return Ok(None) };
    let Some(modseq) = selected.current_as(name) else { return Ok(None) };
    let Some(counts) = snapshots.counted(selected.info.id, &selected.messages) else { return Ok(None) };
    let info = MailboxInfo { highest_modseq: modseq, ..selected.info.clone() };
    format_status(conn, &info, counts, items).map(Some)
}

fn item_name(item: &StatusDataItemName) -> &'static str {
    match item {
        StatusDataItemName::Messages => "MESSAGES",
        StatusDataItemName::Recent => "RECENT",
        StatusDataItemName::UidNext => "UIDNEXT",
        StatusDataItemName::UidValidity => "UIDVALIDITY",
        StatusDataItemName::Unseen => "UNSEEN",
        StatusDataItemName::Deleted => "DELETED",
        StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
        StatusDataItemName::Size => "SIZE",
        StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
    }
}

/// `* STATUS name (ITEM n ...)` for upper-case item names; unknown names are
/// a BAD (RFC 9051 6.3.11 grammar). Counts come from the sessions' shared snapshot of the mailbox when there
/// is a snapshot cache (a pass over entries in memory, after reading only
/// what changed since the snapshot), else from one SQLite aggregate.
pub fn status_line(
    conn: &ImapConn,
    store: &Store,
    snapshots: Option<&SnapshotCache>,
    info: &MailboxInfo,
    items: &[String],
) -> Result<Vec<u8>, CmdError> {
    // Counted only when an item needs it (UIDNEXT alone is free).
    let counted = ["MESSAGES", "UNSEEN", "DELETED", "SIZE", "DELETED-STORAGE"];
    let counts = match snapshots {
        _ if !items.iter().any(|i| counted.contains(&i.as_str())) => MailboxCounts::default(),
        Some(snapshots) => snapshots.counts(store, info.id, info.highest_modseq)?,
        None => store.mailbox_counts(info.id)?,
    };
    format_status(conn, info, counts, items)
}

/// `* STATUS name (ITEM n ...)` from `counts` and `info`.
fn format_status(
    conn: &ImapConn,
    info: &MailboxInfo,
    counts: MailboxCounts,
    items: &[String],
) -> Result<Vec<u8>, CmdError> {
    let mut values = Vec::new();
    for item in items {
        let value: u64 = match item.as_str() {
            "MESSAGES" => counts.messages,
            "RECENT" => 0,
            "UIDNEXT" => info.uid_next.into(),
            "UIDVALIDITY" => info.uid_validity.get().into(),
            "UNSEEN" => counts.unseen,
            "DELETED" => counts.deleted,
            "SIZE" => counts.size,
            "DELETED-STORAGE" => counts.deleted_size,
            "HIGHESTMODSEQ" => info.highest_modseq.max(1),
            _ => return Err(CmdError::Bad(format!("Unknown STATUS item {item}"))),
        };
        values.push(format!("{item} {value}"));
    }
    let mut out = b"* STATUS ".to_vec();
    wire::string(&mut out, wire_name(conn, &info.name).as_bytes());
    out.extend_from_slice(format!(" ({})\r\n", values.join(" ")).as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use roost_core::model::{Flag, UserName};
    use roost_core::store::{AppendMessage, FlagChange, StoreMode};

    use crate::imap::testing::Harness;

    /// Later than the harness clock's start: the peer's writes are newer.
    const T1_MS: u64 = 1_800_000_000_000;

    #[test]
    fn status_counts() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        h.append("INBOX", "Subject: b\r\n\r\n22\r\n");
        let out = h.transact("a STATUS INBOX (MESSAGES UNSEEN SIZE)", "OK");
        assert!(out.contains("* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 2 SIZE 35)"), "{out}");
        h.transact("b STATUS Nope (MESSAGES)", "NO [NONEXISTENT]");
        h.transact("c STATUS INBOX (BOGUS)", "BAD");
    }

    /// The counts follow flag changes, expunges and changes replicated from
    /// another device (counted in SQLite, not from a session's view).
    #[test]
    fn status_counts_follow_changes() {
        let mut h = Harness::logged_in();
        for body in ["1", "22", "333"] {
            h.append("INBOX", &format!("Subject: s\r\n\r\n{body}\r\n"));
        }
        let items = "(MESSAGES UNSEEN DELETED SIZE DELETED-STORAGE)";
        let status = |h: &mut Harness, tag: &str| h.transact(&format!("{tag} STATUS INBOX {items}"), "OK");
        assert!(status(&mut h, "a").contains("(MESSAGES 3 UNSEEN 3 DELETED 0 SIZE 54 DELETED-STORAGE 0)"));
        let mut other = h.second();
        other.transact("o1 SELECT INBOX", "OK");
        other.transact("o2 STORE 1:2 +FLAGS.SILENT (\\Seen)", "OK");
        other.transact("o3 STORE 3 +FLAGS.SILENT (\\Deleted)", "OK");
        let out = status(&mut h, "b");
        assert!(out.contains("(MESSAGES 3 UNSEEN 1 DELETED 1 SIZE 54 DELETED-STORAGE 19)"), "{out}");
        // Unchanged since: the counts kept with the snapshot.
        assert_eq!(status(&mut h, "b2").replace("b2 ", "b "), out);
        // The SQLite aggregate (STATUS without a snapshot cache) agrees.
        let sql = h.mailbox_counts("INBOX");
        assert_eq!((sql.messages, sql.unseen, sql.deleted, sql.size, sql.deleted_size), (3, 1, 1, 54, 19));
        other.transact("o4 EXPUNGE", "OK");
        let out = status(&mut h, "c");
        assert!(out.contains("(MESSAGES 2 UNSEEN 0 DELETED 0 SIZE 35 DELETED-STORAGE 0)"), "{out}");
        // Another device appends one message and clears \Seen on another.
        let mut peer = h.peer();
        let inbox = peer.mailbox_by_name(&UserName::new("alice").unwrap(), "INBOX").unwrap().unwrap().id;
        let first = peer.entries(inbox).unwrap()[0].entry_id;
        peer.write(T1_MS, |w| {
            let raw = b"Subject: s\r\n\r\n4444\r\n";
            w.append(inbox, &[AppendMessage { raw, flags: vec![], internal_date: 0 }])?;
            let unseen = FlagChange { mode: StoreMode::Remove, flags: vec![Flag::seen()] };
            w.store_flags(inbox, &[first], &unseen).map(|_| ())
        })
        .unwrap();
        h.ingest_from(&peer);
        let out = status(&mut h, "d");
        assert!(out.contains("(MESSAGES 3 UNSEEN 2 DELETED 0 SIZE 55 DELETED-STORAGE 0)"), "{out}");
        let sql = h.mailbox_counts("INBOX");
        assert_eq!((sql.messages, sql.unseen, sql.deleted, sql.size, sql.deleted_size), (3, 2, 0, 55, 0));
        // The selected session reads the same through its own view (once
        // told of the changes: updates follow a command's own output).
        other.transact("o5 NOOP", "OK");
        let out = other.transact("o6 SEARCH UNSEEN", "OK");
        assert_eq!(out.lines().find(|l| l.starts_with("* SEARCH")).map(|l| l.split(' ').count()), Some(4), "{out}");
    }

    /// STATUS of the selected mailbox, answered from the session's view
    /// while it has every change the session heard of: the same counts as
    /// the store's, other sessions' changes once told, and a rename or
    /// delete of the mailbox under it is not answered from the view.
    #[test]
    fn status_of_the_selected_mailbox_agrees_with_the_store() {
        let mut h = Harness::logged_in();
        for body in ["1", "22", "333"] {
            h.append("INBOX", &format!("Subject: s\r\n\r\n{body}\r\n"));
        }
        h.transact("c CREATE Work", "OK");
        h.append("Work", "Subject: w\r\n\r\n1\r\n");
        let items = "(MESSAGES UNSEEN DELETED SIZE UIDNEXT HIGHESTMODSEQ)";
        let line = |out: String| out.lines().find(|l| l.starts_with("* STATUS")).unwrap_or_default().to_string();
        let before = line(h.transact(&format!("a STATUS INBOX {items}"), "OK"));
        h.transact("b SELECT INBOX", "OK");
        // The first counts the snapshot, the second answers from the view.
        assert_eq!(line(h.transact(&format!("d STATUS INBOX {items}"), "OK")), before);
        assert_eq!(line(h.transact(&format!("e STATUS INBOX {items}"), "OK")), before);
        let mut other = h.second();
        other.transact("o1 SELECT INBOX", "OK");
        other.transact("o2 STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)", "OK");
        let after = line(h.transact(&format!("f STATUS INBOX {items}"), "OK"));
        assert_ne!(after, before);
        assert!(after.contains("MESSAGES 3 UNSEEN 2 DELETED 1 SIZE 54"), "{after}");
        assert_eq!(line(h.transact(&format!("g STATUS INBOX {items}"), "OK")), after);
        // Work is selected; another session renames it, then takes its name.
        h.transact("h SELECT Work", "OK");
        h.transact("i STATUS Work (MESSAGES)", "OK");
        h.transact("j STATUS Work (MESSAGES)", "OK");
        other.transact("o3 RENAME Work Play", "OK");
        other.transact("o4 CREATE Work", "OK");
        let out = h.transact("k STATUS Work (MESSAGES)", "OK");
        assert!(out.contains("* STATUS \"Work\" (MESSAGES 0)"), "{out}");
        // Caught up since, the view is still the renamed mailbox's.
        let out = h.transact("l STATUS Work (MESSAGES)", "OK");
        assert!(out.contains("* STATUS \"Work\" (MESSAGES 0)"), "{out}");
    }
}
