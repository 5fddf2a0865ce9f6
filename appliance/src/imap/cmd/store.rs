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
    let (changed, effects) = env.write(move |w| w.store_flags(mailbox, &entries, &change))?;
    // Only the entries this write changed are read back (new flags and
    // MODSEQ); the rest of the view stays as it is.
    selected.refresh_entries(env.read()?.entries_by_id(mailbox, &changed)?);
    let mut out = Vec::new();
    if args.response == StoreResponse::Answer {
        for idx in &targets {
            out.extend(flags_fetch(idx + 1, &selected.messages[*idx], enabled, args.uid));
        }
    }
    conn.raw(&out);
    conn.committed(effects);
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
