//! STATUS (RFC 9051 6.3.11) with SIZE (RFC 8438) and HIGHESTMODSEQ (RFC 7162
//! 3.1.2.2). Valid when authenticated or selected. Also builds the STATUS
//! responses of LIST-STATUS (RFC 5819).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use roost_core::model::Flag;
use roost_core::store::{MailboxInfo, Store};

use crate::imap::cmd::{mailbox_name, user, wire_name, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
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
    let Some(info) = env.store().mailbox_by_name(&user, &name)? else {
        return Err(CmdError::No(format!("[NONEXISTENT] No mailbox {name}")));
    };
    let names: Vec<String> = items.iter().map(|i| item_name(i).to_string()).collect();
    let line = status_line(conn, &env.store(), &info, &names)?;
    conn.raw(&line);
    Ok(Done::ok("STATUS completed"))
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
/// a BAD (RFC 9051 6.3.11 grammar).
pub fn status_line(conn: &ImapConn, store: &Store, info: &MailboxInfo, items: &[String]) -> Result<Vec<u8>, CmdError> {
    let entries = store.entries(info.id)?;
    let mut values = Vec::new();
    for item in items {
        let value: u64 = match item.as_str() {
            "MESSAGES" => entries.len() as u64,
            "RECENT" => 0,
            "UIDNEXT" => info.uid_next.into(),
            "UIDVALIDITY" => info.uid_validity.get().into(),
            "UNSEEN" => entries.iter().filter(|e| !e.flags.contains(&Flag::seen())).count() as u64,
            "DELETED" => entries.iter().filter(|e| e.flags.contains(&Flag::deleted())).count() as u64,
            "SIZE" => entries.iter().map(|e| e.size).sum(),
            "DELETED-STORAGE" => entries.iter().filter(|e| e.flags.contains(&Flag::deleted())).map(|e| e.size).sum(),
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
    use crate::imap::testing::Harness;

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
}
