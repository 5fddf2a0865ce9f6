//! SELECT and EXAMINE with CONDSTORE/QRESYNC parameters (RFC 9051 6.3.2-3,
//! RFC 7162 3.1.8, 3.2.5), CLOSE (RFC 9051 6.4.1) and UNSELECT (RFC 3691).
//! SELECT/EXAMINE are valid when authenticated or selected; CLOSE/UNSELECT
//! only when selected.

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use roost_core::model::Flag;
use roost_core::store::Store;

use crate::imap::cmd::{mailbox_name, user, wire_name, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
use crate::imap::selected::{flags_fetch, set_contains, Selected};
use crate::imap::wire;

/// The QRESYNC parameter, for the resync part of SELECT.
struct Qresync<'a> {
    uid_validity: u32,
    modseq: u64,
    known_uids: Option<&'a SequenceSet>,
}

/// SELECT (`read_only` false) or EXAMINE (true).
pub fn select(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    mailbox: &Mailbox<'_>,
    parameters: &[SelectParameter],
    read_only: bool,
) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let name = mailbox_name(conn, mailbox)?;
    let mut qresync = None;
    for parameter in parameters {
        match parameter {
            SelectParameter::CondStore => conn.enabled.condstore = true,
            SelectParameter::QResync { uid_validity, mod_sequence_value, known_uids, .. } => {
                // RFC 7162 3.2.5: QRESYNC without ENABLE QRESYNC is an error.
                if !conn.enabled.qresync {
                    return Err(CmdError::Bad("QRESYNC parameter without ENABLE QRESYNC".into()));
                }
                qresync = Some(Qresync {
                    uid_validity: uid_validity.get(),
                    modseq: mod_sequence_value.get(),
                    known_uids: known_uids.as_ref(),
                });
            }
        }
    }
    // RFC 9051 6.3.2: selecting deselects first, even if the new one fails.
    if conn.selected.take().is_some() && conn.enabled.qresync {
        conn.untagged("OK [CLOSED] Previous mailbox closed");
    }
    // The mailbox and its entries under one guard: the entries are exactly
    // those of the HIGHESTMODSEQ read, which versions the shared snapshot.
    let selected = {
        let store = env.read()?;
        let Some(info) = store.mailbox_by_name(&user, &name)? else {
            return Err(CmdError::No(format!("[NONEXISTENT] No mailbox {name}")));
        };
        Selected::open(&store, info, read_only, env.snapshots)?
    };
    let mut out = Vec::new();
    report(conn, &selected, &mut out);
    if let Some(q) = qresync {
        if q.uid_validity == selected.info.uid_validity.get() {
            resync(conn, &*env.read()?, &selected, &q, &mut out)?;
        }
    }
    conn.raw(&out);
    conn.selected = Some(selected);
    let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
    Ok(Done::ok(format!("[{mode}] {} completed", if read_only { "EXAMINE" } else { "SELECT" })))
}

/// The untagged responses every SELECT sends (RFC 9051 6.3.2, RFC 3501 6.3.1).
fn report(conn: &ImapConn, selected: &Selected, out: &mut Vec<u8>) {
    let system = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
    let mut keywords: Vec<&str> =
        selected.messages.iter().flat_map(|m| m.flags.iter()).filter(|f| !f.is_system()).map(Flag::as_str).collect();
    keywords.sort_unstable();
    keywords.dedup();
    let flags = [system].into_iter().chain(keywords.iter().copied()).collect::<Vec<_>>().join(" ");
    out.extend_from_slice(format!("* FLAGS ({flags})\r\n").as_bytes());
    let permanent = if selected.read_only { String::new() } else { format!("{flags} \\*") };
    out.extend_from_slice(format!("* OK [PERMANENTFLAGS ({permanent})] Flags allowed\r\n").as_bytes());
    out.extend_from_slice(format!("* {} EXISTS\r\n", selected.messages.len()).as_bytes());
    if !conn.enabled.rev2 {
        out.extend_from_slice(b"* 0 RECENT\r\n");
        if let Some(i) = selected.messages.iter().position(|m| !m.flags.contains(&Flag::seen())) {
            out.extend_from_slice(format!("* OK [UNSEEN {}] First unseen\r\n", i + 1).as_bytes());
        }
    }
    let info = &selected.info;
    out.extend_from_slice(format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", info.uid_validity.get()).as_bytes());
    out.extend_from_slice(format!("* OK [UIDNEXT {}] Predicted next UID\r\n", info.uid_next).as_bytes());
    // RFC 7162 3.1.2.1: sent on every SELECT by a CONDSTORE server.
    out.extend_from_slice(format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", selected.highest_modseq.max(1)).as_bytes());
    if conn.enabled.rev2 {
        // RFC 9051 6.3.2: the LIST response gives the mailbox's canonical name.
        out.extend_from_slice(b"* LIST () \"/\" ");
        wire::string(out, wire_name(conn, &info.name).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// RFC 7162 3.2.5.1: VANISHED (EARLIER) for UIDs expunged since the client's
/// MODSEQ, then FETCH for messages changed since it.
fn resync(
    conn: &ImapConn,
    store: &Store,
    selected: &Selected,
    q: &Qresync<'_>,
    out: &mut Vec<u8>,
) -> Result<(), CmdError> {
    let uid_max = selected.uid_max().unwrap_or(0).max(selected.info.uid_next.saturating_sub(1));
    let known = |uid: u32| q.known_uids.is_none_or(|set| set_contains(set, uid, uid_max));
    let vanished: Vec<u32> = store
        .vanished_since(selected.info.id, q.modseq)?
        .into_iter()
        .map(|(uid, _)| uid.get())
        .filter(|u| known(*u))
        .collect();
    if !vanished.is_empty() {
        out.extend_from_slice(format!("* VANISHED (EARLIER) {}\r\n", wire::number_set(&vanished)).as_bytes());
    }
    for (idx, message) in selected.messages.iter().enumerate() {
        if message.modseq.get() > q.modseq {
            out.extend_from_slice(&flags_fetch(idx + 1, message, conn.enabled, true));
        }
    }
    Ok(())
}

/// CLOSE: silently expunges `\Deleted` messages unless read-only, deselects.
pub fn close(conn: &mut ImapConn, env: &mut Env<'_>) -> Result<Done, CmdError> {
    let Some(selected) = conn.selected.take() else { return Err(CmdError::Bad("No mailbox selected".into())) };
    if !selected.read_only {
        let deleted: Vec<_> =
            selected.messages.iter().filter(|m| m.flags.contains(&Flag::deleted())).map(|m| m.entry_id).collect();
        if !deleted.is_empty() {
            let mailbox = selected.info.id;
            let ((), effects) = env.write(move |w| w.expunge(mailbox, &deleted))?;
            conn.committed(effects);
        }
    }
    Ok(Done::ok("CLOSE completed"))
}

/// UNSELECT: deselects without expunging.
pub fn unselect(conn: &mut ImapConn) -> Result<Done, CmdError> {
    conn.selected = None;
    Ok(Done::ok("UNSELECT completed"))
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn select_reports_mailbox() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\nbody\r\n");
        let out = h.transact("s1 SELECT INBOX", "OK [READ-WRITE]");
        assert!(out.contains("* 1 EXISTS\r\n"), "{out}");
        assert!(out.contains("[UIDVALIDITY "), "{out}");
        assert!(out.contains("[HIGHESTMODSEQ "), "{out}");
        h.transact("s2 EXAMINE INBOX", "OK [READ-ONLY]");
        h.transact("s3 SELECT Nope", "NO [NONEXISTENT]");
        // The failed SELECT deselected: FETCH is now in the wrong state.
        h.transact("s4 FETCH 1 FLAGS", "BAD");
    }

    #[test]
    fn close_expunges_deleted_silently() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        h.append("INBOX", "Subject: b\r\n\r\n2\r\n");
        h.transact("a SELECT INBOX", "OK");
        h.transact("b STORE 1 +FLAGS.SILENT (\\Deleted)", "OK");
        let out = h.transact("c CLOSE", "OK");
        assert!(!out.contains("EXPUNGE"), "{out}");
        assert!(h.transact("d SELECT INBOX", "OK").contains("* 1 EXISTS"));
        h.transact("e UNSELECT", "OK");
        h.transact("f UNSELECT", "BAD");
    }

    /// Sessions that select the same mailbox share one snapshot of its
    /// entries: each still sees the others' changes, and a session that
    /// selects later gets the snapshot brought up to date.
    #[test]
    fn sessions_sharing_a_snapshot_see_each_others_changes() {
        let mut a = Harness::logged_in();
        for i in 1..=3 {
            a.append("INBOX", &format!("Subject: {i}\r\n\r\nbody {i}\r\n"));
        }
        let mut b = a.second();
        a.transact("a1 SELECT INBOX", "OK");
        assert!(b.transact("b1 SELECT INBOX", "OK").contains("* 3 EXISTS\r\n"));
        a.transact("a2 STORE 1 +FLAGS.SILENT (\\Deleted)", "OK");
        assert!(a.transact("a3 EXPUNGE", "OK").contains("* 1 EXPUNGE\r\n"));
        let out = b.transact("b2 NOOP", "OK");
        assert!(out.contains("* 1 EXPUNGE\r\n"), "{out}");
        b.transact("b3 STORE 2 +FLAGS.SILENT (\\Flagged)", "OK");
        let out = a.transact("a4 NOOP", "OK");
        assert!(out.contains("* 2 FETCH (FLAGS (\\Flagged)"), "{out}");
        a.append("INBOX", "Subject: 4\r\n\r\nbody 4\r\n");
        assert!(b.transact("b4 NOOP", "OK").contains("* 3 EXISTS\r\n"));
        // A new session starts from the snapshot caught up with all of it.
        let mut c = a.second();
        assert!(c.transact("c1 SELECT INBOX", "OK").contains("* 3 EXISTS\r\n"));
        let out = c.transact("c2 FETCH 1:* (FLAGS)", "OK");
        assert!(out.contains("* 1 FETCH (FLAGS ())\r\n"), "{out}");
        assert!(out.contains("* 2 FETCH (FLAGS (\\Flagged))\r\n"), "{out}");
        assert!(out.contains("* 3 FETCH (FLAGS ())\r\n"), "{out}");
        // Every view, shared or copied, holds the same three UIDs.
        let views: Vec<Vec<u32>> = [&mut a, &mut b, &mut c]
            .into_iter()
            .map(|h| {
                // Updates follow a command's own output: bring each view up to date first.
                h.transact("n NOOP", "OK");
                uids(&h.transact("u UID FETCH 1:* (FLAGS)", "OK"))
            })
            .collect();
        assert_eq!(views[0].len(), 3, "{views:?}");
        assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
    }

    /// The UIDs of `* n FETCH (... UID u ...)` lines, in order.
    fn uids(out: &str) -> Vec<u32> {
        out.lines()
            .filter_map(|l| l.split("UID ").nth(1))
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect()
    }
}
