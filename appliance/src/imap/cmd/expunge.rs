//! EXPUNGE and UID EXPUNGE (RFC 9051 6.4.3, RFC 4315 2.1). Valid when
//! selected and read-write. The expunged messages are announced by the
//! mailbox update before the tagged OK (EXPUNGE, or VANISHED under QRESYNC).

use imap_codec::imap_types::sequence::SequenceSet;
use roost_core::model::Flag;

use crate::imap::cmd::{CmdError, Done};
use crate::imap::conn::{Env, ImapConn};

/// EXPUNGE (`set` None) or UID EXPUNGE.
pub fn expunge(conn: &mut ImapConn, env: &mut Env<'_>, set: Option<&SequenceSet>) -> Result<Done, CmdError> {
    let selected = conn.selected.as_ref().ok_or_else(|| CmdError::Bad("No mailbox selected".into()))?;
    if selected.read_only {
        return Err(CmdError::No("[READ-ONLY] Mailbox is read-only".into()));
    }
    let candidates = match set {
        Some(set) => selected.resolve(set, true)?,
        None => (0..selected.messages.len()).collect(),
    };
    let entries: Vec<_> = candidates
        .iter()
        .map(|i| &selected.messages[*i])
        .filter(|m| m.flags.contains(&Flag::deleted()))
        .map(|m| m.entry_id)
        .collect();
    if !entries.is_empty() {
        let mailbox = selected.info.id;
        let ((), effects) = env.write(move |w| w.expunge(mailbox, &entries))?;
        conn.committed(effects);
    }
    Ok(Done::ok("EXPUNGE completed"))
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn expunge_only_deleted_and_uids_are_not_reused() {
        let mut h = Harness::logged_in();
        for i in 0..3 {
            h.append("INBOX", &format!("Subject: {i}\r\n\r\n.\r\n"));
        }
        h.transact("a SELECT INBOX", "OK");
        h.transact("b STORE 1,3 +FLAGS (\\Deleted)", "OK");
        let out = h.transact("c UID EXPUNGE 1", "OK");
        assert!(out.contains("* 1 EXPUNGE\r\n") && !out.contains("2 EXPUNGE"), "{out}");
        let out = h.transact("d EXPUNGE", "OK");
        assert!(out.contains("* 2 EXPUNGE\r\n"), "{out}");
        // A new message gets a UID above every UID ever used (UIDPLUS).
        let out = h.transact("e APPEND INBOX {3+}\r\nabc", "OK [APPENDUID");
        let uid: u32 = out.rsplit("APPENDUID ").next().unwrap().split([' ', ']']).nth(1).unwrap().parse().unwrap();
        assert!(uid > 33, "{out}");
        h.transact("f EXAMINE INBOX", "OK");
        h.transact("g EXPUNGE", "NO [READ-ONLY]");
    }
}
