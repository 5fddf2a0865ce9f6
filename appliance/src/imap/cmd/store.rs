//! STORE and UID STORE (RFC 9051 6.4.6) with CONDSTORE's UNCHANGEDSINCE and
//! MODIFIED (RFC 7162 3.1.3). Valid when selected and read-write.

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use roost_core::store::{FlagChange, StoreMode};

use crate::imap::cmd::{stored_flags, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
use crate::imap::selected::flags_fetch;
use crate::imap::wire;

/// The parsed arguments.
#[derive(Debug)]
pub struct StoreArgs<'a> {
    /// Which messages.
    pub set: &'a SequenceSet,
    /// FLAGS, +FLAGS or -FLAGS.
    pub kind: StoreType,
    /// Whether `.SILENT`.
    pub response: StoreResponse,
    /// The flags.
    pub flags: &'a [Flag<'a>],
    /// UID STORE.
    pub uid: bool,
    /// UNCHANGEDSINCE.
    pub modifiers: &'a [StoreModifier],
}

/// STORE / UID STORE.
pub fn store(conn: &mut ImapConn, env: &mut Env<'_>, args: StoreArgs<'_>) -> Result<Done, CmdError> {
    let flags = stored_flags(args.flags)?;
    let unchanged_since = args.modifiers.iter().map(|StoreModifier::UnchangedSince(m)| *m).next();
    if unchanged_since.is_some() {
        conn.enabled.condstore = true; // RFC 7162 3.1: a CONDSTORE command enables it.
    }
    let enabled = conn.enabled;
    let selected = conn.selected.as_mut().ok_or_else(|| CmdError::Bad("No mailbox selected".into()))?;
    if selected.read_only {
        return Err(CmdError::No("[READ-ONLY] Mailbox is read-only".into()));
    }
    let indices = selected.resolve(args.set, args.uid)?;
    let mut modified = Vec::new();
    let mut targets = Vec::new();
    for idx in &indices {
        let message = &selected.messages[*idx];
        match unchanged_since {
            Some(limit) if message.modseq.get() > limit => {
                modified.push(if args.uid { message.uid.get() } else { *idx as u32 + 1 })
            }
            _ => targets.push(*idx),
        }
    }
    let mode = match args.kind {
        StoreType::Add => StoreMode::Add,
        StoreType::Remove => StoreMode::Remove,
        StoreType::Replace => StoreMode::Replace,
    };
    let entries: Vec<_> = targets.iter().map(|i| selected.messages[*i].entry_id).collect();
    let mailbox = selected.info.id;
    let change = FlagChange { mode, flags };
    let quiet: Vec<_> = targets.iter().map(|i| selected.messages[*i].uid).collect();
    let (_, effects) = env.write(move |w| w.store_flags(mailbox, &entries, &change))?;
    // One read for the new flags and MODSEQs and whatever else changed.
    conn.caught_up_with_own_write(env, effects, &quiet)?;
    let Some(selected) = conn.selected.as_ref() else {
        return Ok(Done::ok("STORE completed")); // The mailbox is gone: BYE is on its way.
    };
    let mut out = Vec::new();
    if args.response == StoreResponse::Answer {
        for idx in &targets {
            out.extend(flags_fetch(idx + 1, &selected.messages[*idx], enabled, args.uid));
        }
    }
    conn.raw(&out);
    let text = if modified.is_empty() {
        "STORE completed".to_string()
    } else {
        format!("[MODIFIED {}] Conditional STORE failed for some messages", wire::number_set(&modified))
    };
    if args.uid {
        Ok(Done::ok(text))
    } else {
        Ok(Done::ok_holding_expunges(text))
    }
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn store_modes_and_silent() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        h.transact("a SELECT INBOX", "OK");
        let out = h.transact("b STORE 1 +FLAGS (\\Seen $Work)", "OK");
        assert!(out.contains("* 1 FETCH (FLAGS ($Work \\Seen))"), "{out}");
        let out = h.transact("c UID STORE 1 -FLAGS (\\Seen)", "OK");
        assert!(out.contains("* 1 FETCH (FLAGS ($Work) UID 1)"), "{out}");
        let out = h.transact("d STORE 1 FLAGS.SILENT (\\Flagged)", "OK");
        assert!(!out.contains("FETCH"), "{out}");
        h.transact("e STORE 2 +FLAGS (\\Seen)", "BAD");
        h.transact("f STORE 1 +FLAGS (\\Recent)", "BAD");
    }

    #[test]
    fn others_changes_come_with_the_store_and_its_own_once() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        h.append("INBOX", "Subject: b\r\n\r\n2\r\n");
        h.transact("a SELECT INBOX", "OK");
        let mut other = h.second();
        other.transact("a SELECT INBOX", "OK");
        other.transact("b STORE 2 +FLAGS (\\Flagged)", "OK");
        let out = h.transact("b STORE 1 +FLAGS (\\Seen)", "OK");
        assert_eq!(out.matches("* 1 FETCH").count(), 1, "{out}");
        assert!(out.contains("* 1 FETCH (FLAGS (\\Seen))"), "{out}");
        assert!(out.contains("* 2 FETCH (FLAGS (\\Flagged) UID "), "{out}");
        let out = h.transact("c STORE 1 +FLAGS.SILENT (\\Answered)", "OK");
        assert!(!out.contains("FETCH"), "{out}");
    }

    #[test]
    fn after_its_own_store_a_session_has_nothing_to_read() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        h.transact("a SELECT INBOX", "OK");
        h.transact("b STORE 1 +FLAGS (\\Seen)", "OK");
        // Its commit comes back from the feed: the view has it already.
        assert!(h.runs_quickly(b"c NOOP\r\n"));
        // Likewise any own write the view was read after (an APPEND to it,
        // caught up at the end of the command).
        h.transact("c2 APPEND INBOX {1+}\r\ny", "OK");
        assert!(h.runs_quickly(b"c3 NOOP\r\n"));
        h.transact("c4 EXPUNGE", "OK");
        assert!(h.runs_quickly(b"c5 NOOP\r\n"));
        // Another session's commit does need a read.
        h.second().transact("a APPEND INBOX {1+}\r\nx", "OK");
        assert!(!h.runs_quickly(b"d NOOP\r\n"));
    }

    #[test]
    fn unchangedsince_reports_modified() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        h.transact("a SELECT INBOX (CONDSTORE)", "OK");
        let out = h.transact("b STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)", "OK [MODIFIED 1]");
        assert!(!out.contains("FETCH"), "{out}");
        let out = h.transact("c STORE 1 (UNCHANGEDSINCE 18446744073709551615) +FLAGS (\\Seen)", "OK");
        assert!(out.contains("MODSEQ ("), "{out}");
    }
}
