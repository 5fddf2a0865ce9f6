//! LIST with LIST-EXTENDED (RFC 5258), SPECIAL-USE (RFC 6154) and LIST-STATUS
//! (RFC 5819) options, and LSUB (RFC 3501 6.3.9). Valid when authenticated or
//! selected. The options come from `extended`, since imap-codec does not
//! parse them.

use std::collections::BTreeMap;

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use roost_core::store::MailboxInfo;

use crate::imap::cmd::status::status_line;
use crate::imap::cmd::{mailbox_name, user, wire_name, CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
use crate::imap::extended::ListOptions;
use crate::imap::names;
use crate::imap::wire;

/// LIST or LSUB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// LIST.
    List,
    /// LSUB.
    Lsub,
}

/// One name to report, with what we know of it.
struct Row<'a> {
    info: Option<&'a MailboxInfo>,
    subscribed: bool,
    has_children: bool,
}

/// LIST / LSUB.
pub fn list(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    reference: &Mailbox<'_>,
    pattern: &ListMailbox<'_>,
    options: Option<ListOptions>,
    kind: Kind,
) -> Result<Done, CmdError> {
    let user = user(conn)?;
    let reference = match reference {
        Mailbox::Inbox => "INBOX".to_string(),
        other => mailbox_name(conn, other)?,
    };
    let pattern_raw = match pattern {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(s) => s.as_ref(),
    };
    let pattern = std::str::from_utf8(pattern_raw).map_err(|_| CmdError::Bad("Pattern is not UTF-8".into()))?;
    let decode = |pattern: &str| {
        if conn.enabled.utf8 || !pattern.is_ascii() {
            Ok(pattern.to_string())
        } else {
            names::decode_mutf7(pattern).ok_or_else(|| CmdError::Bad("Invalid modified UTF-7 in pattern".into()))
        }
    };
    let pattern = decode(pattern)?;
    let more_patterns = options.as_ref().map(|o| o.more_patterns.as_slice()).unwrap_or_default();
    let mut full_patterns = Vec::with_capacity(1 + more_patterns.len());
    for more in more_patterns {
        full_patterns.push(format!("{reference}{}", decode(more)?));
    }
    let command = if kind == Kind::List { "LIST" } else { "LSUB" };
    if pattern.is_empty() && full_patterns.is_empty() && kind == Kind::List {
        // RFC 9051 6.3.9: an empty pattern asks for the delimiter.
        conn.untagged("LIST (\\Noselect) \"/\" \"\"");
        return Ok(Done::ok("LIST completed"));
    }
    full_patterns.insert(0, format!("{reference}{pattern}"));
    let options = options.unwrap_or_default();
    let mailboxes = env.read()?.mailboxes(&user)?;
    let subscriptions = env.read()?.subscriptions(&user)?;
    let rows = rows(&mailboxes, &subscriptions);
    let mut out = Vec::new();
    for (name, row) in &rows {
        if !full_patterns.iter().any(|full| names::matches(full, name)) {
            continue;
        }
        let show = match kind {
            Kind::Lsub => row.subscribed,
            Kind::List if options.select_subscribed => row.subscribed,
            Kind::List if options.select_special_use => row.info.is_some_and(|i| i.special_use.is_some()),
            Kind::List => row.info.is_some(),
        };
        if !show {
            continue;
        }
        let mut attributes: Vec<&str> = Vec::new();
        match row.info {
            None if options.select_subscribed => attributes.push("\\NonExistent"),
            None => attributes.push("\\Noselect"),
            Some(_) => {}
        }
        attributes.push(if row.has_children { "\\HasChildren" } else { "\\HasNoChildren" });
        if kind == Kind::List && (row.subscribed && (options.select_subscribed || options.return_subscribed)) {
            attributes.push("\\Subscribed");
        }
        // RFC 6154 2: special-use attributes may always be returned; clients
        // that do not ask (older Thunderbird) still find Sent and Trash.
        if let Some(special_use) = row.info.and_then(|i| i.special_use) {
            attributes.push(special_use.attribute());
        }
        out.extend_from_slice(format!("* {command} ({}) \"/\" ", attributes.join(" ")).as_bytes());
        wire::string(&mut out, wire_name(conn, name).as_bytes());
        out.extend_from_slice(b"\r\n");
        if let (Some(items), Some(info)) = (&options.return_status, row.info) {
            out.extend(status_line(conn, &*env.read()?, env.snapshots, info, items)?);
        }
    }
    conn.raw(&out);
    Ok(Done::ok(format!("{command} completed")))
}

/// Every name to consider: live mailboxes, subscribed names and the missing
/// parents of both (shown with \Noselect so `%` listings stay navigable).
fn rows<'a>(mailboxes: &'a [MailboxInfo], subscriptions: &[String]) -> BTreeMap<String, Row<'a>> {
    let mut rows: BTreeMap<String, Row<'a>> = BTreeMap::new();
    for info in mailboxes {
        rows.insert(info.name.clone(), Row { info: Some(info), subscribed: false, has_children: false });
    }
    for name in subscriptions {
        rows.entry(name.clone()).or_insert(Row { info: None, subscribed: false, has_children: false }).subscribed =
            true;
    }
    let names: Vec<String> = rows.keys().cloned().collect();
    for name in names {
        let mut parent = name.as_str();
        while let Some(at) = parent.rfind('/') {
            parent = &parent[..at];
            rows.entry(parent.to_string())
                .or_insert(Row { info: None, subscribed: false, has_children: false })
                .has_children = true;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn list_shows_special_use_and_children() {
        let mut h = Harness::logged_in();
        h.transact("a CREATE Work/Reports", "OK");
        let out = h.transact("b LIST \"\" *", "OK");
        assert!(out.contains("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"), "{out}");
        // CREATE makes missing parents (RFC 9051 6.3.4), so Work is a real mailbox.
        assert!(out.contains("* LIST (\\HasChildren) \"/\" \"Work\"\r\n"), "{out}");
        let out = h.transact("c LIST \"\" %", "OK");
        assert!(!out.contains("Work/Reports"), "{out}");
        let out = h.transact("d LIST \"\" \"\"", "OK");
        assert!(out.contains("* LIST (\\Noselect) \"/\" \"\""), "{out}");
    }

    #[test]
    fn list_extended_and_status() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: x\r\n\r\n.\r\n");
        let out = h.transact("a LIST (SPECIAL-USE) \"\" *", "OK");
        assert!(out.contains("\\Trash") && !out.contains("INBOX"), "{out}");
        h.transact("s SUBSCRIBE INBOX", "OK");
        let out = h.transact("b LIST \"\" INBOX RETURN (SUBSCRIBED STATUS (MESSAGES))", "OK");
        assert!(out.contains("* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\""), "{out}");
        assert!(out.contains("* STATUS \"INBOX\" (MESSAGES 1)"), "{out}");
        h.transact("c LIST (NOPE) \"\" *", "BAD");
    }

    #[test]
    fn list_with_several_patterns() {
        let mut h = Harness::logged_in();
        h.transact("a CREATE Work/Reports", "OK");
        let out = h.transact("b LIST \"\" (INBOX \"Work/*\" Sent)", "OK");
        assert!(out.contains("\"INBOX\"\r\n"), "{out}");
        assert!(out.contains("\"Work/Reports\"\r\n"), "{out}");
        assert!(out.contains("\"Sent\"\r\n"), "{out}");
        assert!(!out.contains("\"Trash\"") && !out.contains("\"Work\"\r\n"), "{out}");
        // A mailbox matching two patterns is listed once.
        let out = h.transact("c LIST \"\" (INBOX IN*)", "OK");
        assert_eq!(out.matches("\"INBOX\"").count(), 1, "{out}");
        h.transact("d LIST \"\" (INBOX", "BAD");
    }
}
