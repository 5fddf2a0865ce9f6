//! COPY and MOVE, plain and UID (RFC 9051 6.4.7-6.4.8, RFC 6851), with
//! COPYUID (RFC 4315 3). Valid when selected. MOVE is one store event, so no
//! device ever shows a moved message in both mailboxes or in neither.

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::imap::cmd::{mailbox_name, user, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
use crate::imap::wire;

/// COPY or MOVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// COPY.
    Copy,
    /// MOVE.
    Move,
}

/// COPY / MOVE / UID COPY / UID MOVE.
pub fn copy_move(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    set: &SequenceSet,
    mailbox: &Mailbox<'_>,
    by_uid: bool,
    kind: Kind,
) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let name = mailbox_name(conn, mailbox)?;
    let selected = conn.selected.as_ref().ok_or_else(|| CmdError::Bad("No mailbox selected".into()))?;
    if kind == Kind::Move && selected.read_only {
        return Err(CmdError::No("[READ-ONLY] Mailbox is read-only".into()));
    }
    let indices = selected.resolve(set, by_uid)?;
    let Some(target) = env.read()?.mailbox_by_name(&user, &name)? else {
        return Err(CmdError::No(format!("[TRYCREATE] No mailbox {name}")));
    };
    let source = selected.info.id;
    let entries: Vec<_> = indices.iter().map(|i| selected.messages[*i].entry_id).collect();
    let verb = if kind == Kind::Copy { "COPY" } else { "MOVE" };
    if entries.is_empty() {
        return Ok(Done::ok(format!("{verb} completed; no messages")));
    }
    let target_id = target.id;
    let (pairs, effects) = env.write(move |w| match kind {
        Kind::Copy => w.copy(source, &entries, target_id),
        Kind::Move => w.move_entries(source, &entries, target_id),
    })?;
    conn.committed(effects);
    let old: Vec<u32> = pairs.iter().map(|(from, _)| from.get()).collect();
    let new: Vec<u32> = pairs.iter().map(|(_, to)| to.get()).collect();
    // RFC 4315 3: the two sets list UIDs in corresponding order, so they are
    // written as lists, not as sorted ranges that could pair them differently.
    let code = format!("COPYUID {} {} {}", target.uid_validity.get(), ordered_set(&old), ordered_set(&new));
    match kind {
        Kind::Copy => Ok(Done::ok(format!("[{code}] COPY completed"))),
        Kind::Move => {
            // RFC 6851 4.3: COPYUID goes in an untagged OK before the expunges.
            conn.untagged(&format!("OK [{code}] Moved"));
            Ok(Done::ok("MOVE completed"))
        }
    }
}

/// A sequence set that keeps the given order (ranges only where ascending).
fn ordered_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    if sorted == uids {
        return wire::number_set(uids);
    }
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn copy_and_move_report_copyuid() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        h.append("INBOX", "Subject: b\r\n\r\n2\r\n");
        h.transact("a SELECT INBOX", "OK");
        h.transact("b COPY 1:2 Archive", "OK [COPYUID ");
        h.transact("c COPY 1 Nope", "NO [TRYCREATE]");
        let out = h.transact("d UID MOVE 1:* Trash", "OK");
        assert!(out.contains("* OK [COPYUID "), "{out}");
        assert!(out.contains("* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n"), "{out}");
        assert!(h.transact("e STATUS Trash (MESSAGES)", "OK").contains("MESSAGES 2"));
        h.transact("f COPY 5 Trash", "BAD");
    }
}
