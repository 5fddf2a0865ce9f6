//! FETCH and UID FETCH (RFC 9051 6.4.5) with CONDSTORE's MODSEQ and
//! CHANGEDSINCE (RFC 7162 3.1.4-5) and QRESYNC's VANISHED modifier (RFC 7162
//! 3.2.6), and BINARY / BINARY.PEEK / BINARY.SIZE (RFC 3516). Valid when
//! selected. ENVELOPE and BODYSTRUCTURE come from the shared summary cache;
//! body sections are cut from the raw message, BINARY sections decoded from
//! it (`message::binary_section`).

use std::borrow::Cow;
use std::io::Write as _;
use std::num::NonZeroU32;

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Part, Section};
use imap_codec::imap_types::sequence::SequenceSet;
use roost_core::model::{BlobHash, Flag};
use roost_core::store::{EntryInfo, FlagChange, StoreError, StoreMode};

use crate::imap::cmd::{CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
use crate::imap::message::{self, BinaryError, Fields, SectionText};
use crate::imap::selected::{flag_list, set_contains};
use crate::imap::wire;

/// Messages whose bodies are opened ahead together (in parallel, into the
/// session's cache; `Env::open_ahead`): few enough that the window stays
/// far inside the cache budget, so nothing opened ahead is evicted unread.
const OPEN_AHEAD_LEN: usize = 64;

/// FETCH / UID FETCH.
pub fn fetch(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    set: &SequenceSet,
    items: MacroOrMessageDataItemNames<'static>,
    by_uid: bool,
    modifiers: &[FetchModifier],
) -> Result<Done, CmdError> {
    let mut items = match items {
        MacroOrMessageDataItemNames::Macro(m) => m.expand().into_iter().map(|i| i.into_static()).collect(),
        MacroOrMessageDataItemNames::MessageDataItemNames(items) => items,
    };
    let mut changed_since = None;
    let mut vanished = false;
    for modifier in modifiers {
        match modifier {
            FetchModifier::ChangedSince(m) => changed_since = Some(m.get()),
            FetchModifier::Vanished => vanished = true,
        }
    }
    if vanished && (!by_uid || changed_since.is_none() || !conn.enabled.qresync) {
        // RFC 7162 3.2.6: VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC.
        return Err(CmdError::Bad("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC".into()));
    }
    if changed_since.is_some() || items.contains(&MessageDataItemName::ModSeq) {
        conn.enabled.condstore = true; // RFC 7162 3.1: a CONDSTORE command enables it.
    }
    if by_uid && !items.contains(&MessageDataItemName::Uid) {
        items.insert(0, MessageDataItemName::Uid); // RFC 9051 6.4.9: UID FETCH always returns UID.
    }
    if changed_since.is_some() && !items.contains(&MessageDataItemName::ModSeq) {
        items.push(MessageDataItemName::ModSeq); // RFC 7162 3.1.4.1.
    }
    let selected = conn.selected.as_ref().ok_or_else(|| CmdError::Bad("No mailbox selected".into()))?;
    let mut indices = selected.resolve(set, by_uid)?;
    if let Some(since) = changed_since {
        indices.retain(|i| selected.messages[*i].modseq.get() > since);
    }
    let mut out = Vec::new();
    if let (true, Some(since)) = (vanished, changed_since) {
        let uid_max = selected.info.uid_next.saturating_sub(1);
        let gone: Vec<u32> = env
            .read()?
            .vanished_since(selected.info.id, since)?
            .into_iter()
            .map(|(uid, _)| uid.get())
            .filter(|uid| set_contains(set, *uid, uid_max))
            .collect();
        if !gone.is_empty() {
            out.extend_from_slice(format!("* VANISHED (EARLIER) {}\r\n", wire::number_set(&gone)).as_bytes());
        }
    }
    mark_seen(conn, env, &items, &indices)?;
    let enabled_condstore = conn.enabled.condstore;
    let selected = conn.selected.as_ref().ok_or_else(|| CmdError::Bad("No mailbox selected".into()))?;
    let reads_bodies = items.iter().any(|item| {
        matches!(
            item,
            MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Header
                | MessageDataItemName::Rfc822Text
                | MessageDataItemName::BodyExt { .. }
                | MessageDataItemName::Binary { .. }
                | MessageDataItemName::BinarySize { .. }
        )
    });
    for (n, &idx) in indices.iter().enumerate() {
        if reads_bodies && n % OPEN_AHEAD_LEN == 0 {
            let window: Vec<BlobHash> =
                indices[n..].iter().take(OPEN_AHEAD_LEN).map(|i| selected.messages[*i].blob).collect();
            env.open_ahead(&window);
        }
        let message = &selected.messages[idx];
        let _ = write!(out, "* {} FETCH (", idx + 1);
        // Read once per message, and only if an item needs the bytes.
        let mut raw: Option<Vec<u8>> = None;
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                out.push(b' ');
            }
            item_value(env, message, item, &mut raw, &mut out)?;
        }
        let _ = enabled_condstore;
        out.extend_from_slice(b")\r\n");
    }
    conn.raw(&out);
    if by_uid {
        Ok(Done::ok("FETCH completed"))
    } else {
        Ok(Done::ok_holding_expunges("FETCH completed"))
    }
}

/// A body fetch without PEEK sets \Seen (RFC 9051 6.4.5); done as one write
/// before answering so the FLAGS we send include it.
fn mark_seen(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    items: &[MessageDataItemName<'_>],
    indices: &[usize],
) -> Result<(), CmdError> {
    let sets_seen = items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::BodyExt { peek: false, .. }
                | MessageDataItemName::Binary { peek: false, .. }
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Text
        )
    });
    let Some(selected) = conn.selected.as_mut() else { return Ok(()) };
    if !sets_seen || selected.read_only {
        return Ok(());
    }
    let unseen: Vec<_> = indices
        .iter()
        .map(|i| &selected.messages[*i])
        .filter(|m| !m.flags.contains(&Flag::seen()))
        .map(|m| m.entry_id)
        .collect();
    if unseen.is_empty() {
        return Ok(());
    }
    let mailbox = selected.info.id;
    let change = FlagChange { mode: StoreMode::Add, flags: vec![Flag::seen()] };
    let quiet: Vec<_> = indices.iter().map(|i| selected.messages[*i].uid).collect();
    let (_, effects) = match env.write(move |w| w.store_flags(mailbox, &unseen, &change)) {
        Ok(done) => done,
        // A restored device makes no changes until it rejoined: the body is
        // still served, without the implicit \Seen (docs/security.md).
        Err(StoreError::Rejoining) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    conn.caught_up_with_own_write(env, effects, &quiet)?;
    Ok(())
}

/// The message's bytes, read on first use and kept for its other items.
fn loaded<'r>(env: &Env<'_>, message: &EntryInfo, raw: &'r mut Option<Vec<u8>>) -> Result<&'r [u8], CmdError> {
    if raw.is_none() {
        *raw = Some(env.message(&message.blob)?);
    }
    Ok(raw.as_deref().unwrap_or_default())
}

/// Writes one FETCH item. Appends to `out` with `write!`, which cannot fail
/// on a `Vec` (hence the ignored results).
fn item_value(
    env: &mut Env<'_>,
    message: &EntryInfo,
    item: &MessageDataItemName<'_>,
    raw: &mut Option<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Result<(), CmdError> {
    match item {
        MessageDataItemName::Uid => {
            let _ = write!(out, "UID {}", message.uid.get());
        }
        MessageDataItemName::Flags => {
            let _ = write!(out, "FLAGS ({})", flag_list(message));
        }
        MessageDataItemName::InternalDate => {
            let date = chrono::DateTime::from_timestamp(message.internal_date, 0).unwrap_or_default();
            let _ = write!(out, "INTERNALDATE \"{}\"", date.format("%d-%b-%Y %H:%M:%S +0000"));
        }
        MessageDataItemName::Rfc822Size => {
            let _ = write!(out, "RFC822.SIZE {}", message.size);
        }
        MessageDataItemName::ModSeq => {
            let _ = write!(out, "MODSEQ ({})", message.modseq.get());
        }
        MessageDataItemName::Envelope | MessageDataItemName::BodyStructure | MessageDataItemName::Body => {
            // A cached summary needs no read of the message at all.
            let summary = match raw.as_deref() {
                Some(bytes) => env.summaries.get(env.key.as_deref(), &message.blob, || Some(bytes.to_vec())),
                None => env.summaries.get(env.key.as_deref(), &message.blob, || env.message(&message.blob).ok()),
            }
            .ok_or_else(|| CmdError::No("[SERVERBUG] Message could not be read".into()))?;
            let (name, value) = match item {
                MessageDataItemName::Envelope => ("ENVELOPE ", &summary.envelope),
                MessageDataItemName::BodyStructure => ("BODYSTRUCTURE ", &summary.bodystructure),
                _ => ("BODY ", &summary.body),
            };
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(value);
        }
        MessageDataItemName::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            wire::literal(out, loaded(env, message, raw)?);
        }
        MessageDataItemName::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            wire::literal(out, message::split_header(loaded(env, message, raw)?).0);
        }
        MessageDataItemName::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            wire::literal(out, message::split_header(loaded(env, message, raw)?).1);
        }
        MessageDataItemName::BodyExt { section, partial, .. } => {
            let (path, text, spec) = section_parts(section.as_ref())?;
            let data = message::section(loaded(env, message, raw)?, &path, &text).unwrap_or_default();
            let _ = write!(out, "BODY[{spec}]");
            partial_literal(out, &data, *partial, wire::literal);
        }
        MessageDataItemName::Binary { section, partial, .. } => {
            let data = binary_data(env, message, raw, section)?;
            out.extend_from_slice(b"BINARY");
            binary_spec(out, section);
            partial_literal(out, &data, *partial, wire::binary_literal);
        }
        MessageDataItemName::BinarySize { section } => {
            let size = binary_data(env, message, raw, section)?.len();
            out.extend_from_slice(b"BINARY.SIZE");
            binary_spec(out, section);
            let _ = write!(out, " {size}");
        }
    }
    Ok(())
}

/// ` <data>`, or `<origin> <data[origin..origin+length]>` for a partial
/// fetch (RFC 9051 6.4.5; RFC 3516 4.2), written by `literal`.
fn partial_literal(
    out: &mut Vec<u8>,
    data: &[u8],
    partial: Option<(u32, NonZeroU32)>,
    literal: fn(&mut Vec<u8>, &[u8]),
) {
    match partial {
        Some((origin, length)) => {
            let start = (origin as usize).min(data.len());
            let end = start.saturating_add(length.get() as usize).min(data.len());
            let _ = write!(out, "<{origin}> ");
            literal(out, &data[start..end]);
        }
        None => {
            out.push(b' ');
            literal(out, data);
        }
    }
}

/// `[1.2]`: the section echoed in a BINARY response.
fn binary_spec(out: &mut Vec<u8>, section: &[NonZeroU32]) {
    out.push(b'[');
    for (i, n) in section.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let _ = write!(out, "{n}");
    }
    out.push(b']');
}

/// The decoded bytes of BINARY[section] (RFC 3516); a part that does not
/// exist is empty, as for BODY[].
fn binary_data<'r>(
    env: &Env<'_>,
    message: &EntryInfo,
    raw: &'r mut Option<Vec<u8>>,
    section: &[NonZeroU32],
) -> Result<Cow<'r, [u8]>, CmdError> {
    match message::binary_section(loaded(env, message, raw)?, section) {
        Ok(data) => Ok(data.unwrap_or_default()),
        Err(BinaryError::UnknownCte(cte)) => {
            Err(CmdError::No(format!("[UNKNOWN-CTE] Cannot decode Content-Transfer-Encoding {cte}")))
        }
        Err(BinaryError::Undecodable(cte)) => Err(CmdError::No(format!("[PARSE] The part is not valid {cte}"))),
    }
}

/// The part path, what of it, and the section spec echoed in the response.
fn section_parts(section: Option<&Section<'_>>) -> Result<(Vec<NonZeroU32>, SectionText, String), CmdError> {
    let path_of = |part: Option<&Part>| part.map(|p| p.0.as_ref().to_vec()).unwrap_or_default();
    let prefix = |path: &[NonZeroU32]| path.iter().map(|n| n.to_string()).map(|s| s + ".").collect::<String>();
    let names = |fields: &[AString<'_>]| -> Result<Vec<String>, CmdError> {
        fields
            .iter()
            .map(|f| {
                std::str::from_utf8(f.as_ref())
                    .map(str::to_string)
                    .map_err(|_| CmdError::Bad("Header field name is not UTF-8".into()))
            })
            .collect()
    };
    Ok(match section {
        None => (Vec::new(), SectionText::All, String::new()),
        Some(Section::Part(part)) => {
            let path = path_of(Some(part));
            let spec = prefix(&path);
            (path, SectionText::All, spec.trim_end_matches('.').to_string())
        }
        Some(Section::Header(part)) => {
            let path = path_of(part.as_ref());
            let spec = format!("{}HEADER", prefix(&path));
            (path, SectionText::Header, spec)
        }
        Some(Section::Text(part)) => {
            let path = path_of(part.as_ref());
            let spec = format!("{}TEXT", prefix(&path));
            (path, SectionText::Text, spec)
        }
        Some(Section::Mime(part)) => {
            let path = path_of(Some(part));
            let spec = format!("{}MIME", prefix(&path));
            (path, SectionText::Mime, spec)
        }
        Some(Section::HeaderFields(part, fields)) | Some(Section::HeaderFieldsNot(part, fields)) => {
            let path = path_of(part.as_ref());
            let list = names(fields.as_ref())?;
            let (kind, word) = match section {
                Some(Section::HeaderFieldsNot(..)) => (Fields::Except, "HEADER.FIELDS.NOT"),
                _ => (Fields::Only, "HEADER.FIELDS"),
            };
            let mut quoted = Vec::new();
            wire::list(&mut quoted, &list, |out, name| wire::string(out, name.to_ascii_uppercase().as_bytes()));
            let spec = format!("{}{word} {}", prefix(&path), String::from_utf8_lossy(&quoted));
            (path, SectionText::HeaderFields(list, kind), spec)
        }
    })
}

use imap_codec::imap_types::IntoStatic;

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    const MAIL: &str = "From: a@example.org\r\nSubject: hi\r\nX-Y: z\r\n\r\nhello\r\n";

    // A restored device that has not rejoined its peers (docs/security.md,
    // "Backups and restore"): a body FETCH answers without the implicit
    // \Seen, and changes get the temporary NO [UNAVAILABLE].
    #[test]
    fn a_rejoining_device_serves_bodies_and_refuses_changes() {
        let mut h = Harness::logged_in();
        h.append("INBOX", MAIL);
        h.mark_restored();
        h.transact("a SELECT INBOX", "OK");
        let out = h.transact("b FETCH 1 (BODY[TEXT] FLAGS)", "OK");
        assert!(out.contains("BODY[TEXT] {7}\r\nhello\r\n"), "{out}");
        assert!(!out.contains("\\Seen"), "{out}");
        h.transact("c STORE 1 +FLAGS (\\Flagged)", "NO [UNAVAILABLE] This device was restored from a backup");
        h.transact("d CREATE Later", "NO [UNAVAILABLE]");
        h.transact("e FETCH 1 FLAGS", "OK");
    }

    #[test]
    fn fetch_basic_items() {
        let mut h = Harness::logged_in();
        h.append("INBOX", MAIL);
        h.transact("a SELECT INBOX", "OK");
        let out = h.transact("b FETCH 1 (FLAGS RFC822.SIZE INTERNALDATE UID)", "OK");
        assert!(out.contains("* 1 FETCH (FLAGS () RFC822.SIZE 51 INTERNALDATE \""), "{out}");
        let out = h.transact("c UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK");
        assert!(
            out.contains("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (\"SUBJECT\")] {15}\r\nSubject: hi\r\n\r\n)"),
            "{out}"
        );
        let out = h.transact("d FETCH 1 (BODY.PEEK[TEXT]<1.3>)", "OK");
        assert!(out.contains("BODY[TEXT]<1> {3}\r\nell)"), "{out}");
        let out = h.transact("e FETCH 1 ENVELOPE", "OK");
        assert!(out.contains("ENVELOPE (NIL \"hi\" ((NIL NIL \"a\" \"example.org\"))"), "{out}");
        let out = h.transact("f FETCH 1 BODYSTRUCTURE", "OK");
        assert!(
            out.contains(
                "BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 7 1 NIL NIL NIL NIL)"
            ),
            "{out}"
        );
    }

    #[test]
    fn body_fetch_sets_seen_unless_peek() {
        let mut h = Harness::logged_in();
        h.append("INBOX", MAIL);
        h.transact("a SELECT INBOX", "OK");
        let out = h.transact("b FETCH 1 BODY.PEEK[]", "OK");
        assert!(!out.contains("Seen"), "{out}");
        let out = h.transact("c FETCH 1 (BODY[] FLAGS)", "OK");
        assert!(out.contains("FLAGS (\\Seen)"), "{out}");
    }

    #[test]
    fn bad_sequence_sets_and_state() {
        let mut h = Harness::logged_in();
        h.transact("a FETCH 1 FLAGS", "BAD");
        h.append("INBOX", MAIL);
        h.transact("b SELECT INBOX", "OK");
        h.transact("c FETCH 5 FLAGS", "BAD");
        h.transact("d FETCH 0 FLAGS", "BAD");
        h.transact("e FETCH x FLAGS", "BAD");
        // A UID set naming no message is not an error.
        assert!(!h.transact("f UID FETCH 999 FLAGS", "OK").contains("FETCH ("));
    }

    fn changedsince(qresync: bool) {
        // CONDSTORE/QRESYNC resync: CHANGEDSINCE 0 returns everything with
        // MODSEQ, and VANISHED (EARLIER) reports an expunge the client missed.
        let mut h = Harness::logged_in();
        h.append("INBOX", MAIL);
        h.append("INBOX", MAIL);
        if qresync {
            h.transact("e ENABLE QRESYNC", "OK");
        }
        h.transact("a SELECT INBOX", "OK");
        let out = h.transact("b UID FETCH 1:* (FLAGS) (CHANGEDSINCE 0)", "OK");
        assert!(out.contains("* 1 FETCH (UID 1 FLAGS () MODSEQ (") && out.contains("* 2 FETCH"), "{out}");
        let modseq: u64 = h.highest_modseq("INBOX");
        let mut other = h.second();
        other.transact("x SELECT INBOX", "OK");
        other.transact("y STORE 1 +FLAGS.SILENT (\\Deleted)", "OK");
        other.transact("z EXPUNGE", "OK");
        if qresync {
            let out = h.transact("c UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "OK");
            assert!(out.contains("* VANISHED (EARLIER) 1\r\n"), "{out}");
            assert!(out.contains("* VANISHED 1\r\n"), "{out}");
        } else {
            h.transact("c UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD");
            let out = h.transact("d UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)", "OK");
            assert!(out.contains("* 1 EXPUNGE\r\n"), "{out}");
        }
        assert!(modseq > 1);
    }

    #[test]
    fn changedsince_condstore() {
        changedsince(false);
    }

    #[test]
    fn changedsince_qresync() {
        changedsince(true);
    }
}
