//! APPEND (RFC 9051 6.3.12) with UIDPLUS's APPENDUID (RFC 4315 3) and
//! LITERAL+/BINARY literals. Valid when authenticated or selected. The
//! message is stored and committed before the tagged OK.

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use roost_core::store::AppendMessage;

use crate::imap::cmd::{mailbox_name, stored_flags, user, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};

/// APPEND.
pub fn append(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    mailbox: &Mailbox<'_>,
    flags: &[Flag<'_>],
    date: Option<&DateTime>,
    message: &LiteralOrLiteral8<'_>,
) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let name = mailbox_name(conn, mailbox)?;
    let flags = stored_flags(flags)?;
    let raw: &[u8] = match message {
        LiteralOrLiteral8::Literal(literal) => literal.as_ref(),
        LiteralOrLiteral8::Literal8(literal8) => literal8.data.as_ref(),
    };
    if raw.is_empty() {
        return Err(CmdError::No("Empty message".into()));
    }
    let internal_date = match date {
        Some(date) => date.as_ref().timestamp(),
        None => (env.now_ms / 1000) as i64,
    };
    // RFC 9051 6.3.12: a missing mailbox gets NO [TRYCREATE].
    let Some(info) = env.read()?.mailbox_by_name(&user, &name)? else {
        return Err(CmdError::No(format!("[TRYCREATE] No mailbox {name}")));
    };
    // The blob is written and fsynced before the write is queued and without
    // the store lock, so concurrent APPENDs sync their files in parallel and
    // share the commit (the write then finds the blob present).
    let prestored = env.put_blob(&user, raw)?;
    let raw = raw.to_vec();
    let mailbox = info.id;
    let owner = user.clone();
    let (uids, effects) = env.write(move |w| {
        if let Some(prestored) = &prestored {
            w.adopt_prestored(&owner, prestored)?;
        }
        w.append(mailbox, &[AppendMessage { raw: &raw, flags, internal_date }])
    })?;
    conn.committed(effects);
    let uid = uids.first().map(|u| u.get()).ok_or_else(|| CmdError::No("[SERVERBUG] No UID assigned".into()))?;
    Ok(Done::ok(format!("[APPENDUID {} {uid}] APPEND completed", info.uid_validity.get())))
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn append_returns_appenduid_and_announces_exists() {
        let mut h = Harness::logged_in();
        h.transact("a SELECT INBOX", "OK");
        let out = h.transact("b APPEND INBOX (\\Seen) {11+}\r\nSubject: x\r\n", "OK [APPENDUID ");
        assert!(out.contains("* 1 EXISTS"), "{out}");
        h.transact("c APPEND Nope {3+}\r\nabc", "NO [TRYCREATE]");
        h.transact("d APPEND INBOX (\\Recent) {3+}\r\nabc", "BAD");
    }

    #[test]
    fn sync_literal_gets_continuation() {
        let mut h = Harness::logged_in();
        assert_eq!(h.send("a APPEND INBOX {3}"), "+ Ready for literal data\r\n");
        h.transact_line("abc", "a OK [APPENDUID");
    }
}
