//! SEARCH and UID SEARCH (RFC 9051 6.4.4) with CHARSET UTF-8, MODSEQ (RFC
//! 7162 3.1.5) and ESEARCH results (RFC 4731; always under IMAP4rev2).
//! Valid when selected. Text keys match case-insensitively against decoded
//! headers and bodies (RFC 9051 6.4.4: substring match).

use std::cell::OnceCell;
use std::sync::Arc;

use chrono::NaiveDate;
use imap_codec::imap_types::core::{AString, Charset};
use imap_codec::imap_types::search::SearchKey;
use roost_core::model::Flag;
use roost_core::store::EntryInfo;

use crate::imap::cmd::{CmdError, Done};
use crate::imap::conn::{Env, ImapConn};
use crate::imap::message::{self, Summary};
use crate::imap::selected::{set_contains, Selected};
use crate::imap::wire;

/// One message while it is being tested, with lazily loaded content.
struct Candidate<'a> {
    idx: usize,
    entry: &'a EntryInfo,
    raw: OnceCell<Vec<u8>>,
    text: OnceCell<(String, String)>,
    /// Parsed header fields, from the shared cache (no parse when cached).
    summary: OnceCell<Arc<Summary>>,
}

/// SEARCH / UID SEARCH.
pub fn search(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    tag: &str,
    charset: Option<&Charset<'_>>,
    criteria: &[SearchKey<'_>],
    by_uid: bool,
    search_return: Option<Vec<String>>,
) -> Result<Done, CmdError> {
    if let Some(charset) = charset {
        let name = charset.as_ref().to_ascii_uppercase();
        if name != "UTF-8" && name != "US-ASCII" {
            return Err(CmdError::No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset".into()));
        }
    }
    let uses_modseq = criteria.iter().any(mentions_modseq);
    if uses_modseq {
        conn.enabled.condstore = true;
    }
    let search_return = match search_return {
        Some(r) if r.iter().any(|o| o == "SAVE") => {
            return Err(CmdError::No("[CANNOT] not implemented yet: SEARCHRES (RETURN SAVE)".into()))
        }
        Some(r) if r.is_empty() => Some(vec!["ALL".to_string()]),
        Some(r) => Some(r),
        // RFC 9051 7.3.4: IMAP4rev2 answers SEARCH with ESEARCH.
        None if conn.enabled.rev2 => Some(vec!["ALL".to_string()]),
        None => None,
    };
    let selected = conn.selected.as_ref().ok_or_else(|| CmdError::Bad("No mailbox selected".into()))?;
    // Message numbers past the end are a BAD (RFC 9051 9), checked once here
    // so that matching a message is a range comparison, not a set expansion.
    for key in criteria {
        check_sequence_sets(selected, key)?;
    }
    let mut hits = Vec::new();
    let reads_content = criteria.iter().any(mentions_content);
    // The store is locked per message read only: keys answered from flags
    // or cached headers leave it to other sessions.
    for (idx, entry) in selected.messages.iter().enumerate() {
        if reads_content && idx % OPEN_AHEAD_LEN == 0 {
            open_ahead(env, selected, criteria, idx)?;
        }
        let candidate = Candidate { idx, entry, raw: OnceCell::new(), text: OnceCell::new(), summary: OnceCell::new() };
        let mut all = true;
        for key in criteria {
            if !matches(env, selected, &candidate, key)? {
                all = false;
                break;
            }
        }
        if all {
            hits.push(idx);
        }
    }
    let numbers: Vec<u32> =
        hits.iter().map(|i| if by_uid { selected.messages[*i].uid.get() } else { *i as u32 + 1 }).collect();
    let modseq_max = hits.iter().map(|i| selected.messages[*i].modseq.get()).max();
    let mut line = String::new();
    match search_return {
        None => {
            line.push_str("* SEARCH");
            for n in &numbers {
                line.push_str(&format!(" {n}"));
            }
            if let (true, Some(m)) = (uses_modseq, modseq_max) {
                line.push_str(&format!(" (MODSEQ {m})"));
            }
        }
        Some(options) => {
            line.push_str(&format!("* ESEARCH (TAG \"{tag}\")"));
            if by_uid {
                line.push_str(" UID");
            }
            for option in &options {
                match (option.as_str(), numbers.is_empty()) {
                    ("MIN", false) => line.push_str(&format!(" MIN {}", numbers.iter().min().unwrap_or(&0))),
                    ("MAX", false) => line.push_str(&format!(" MAX {}", numbers.iter().max().unwrap_or(&0))),
                    ("ALL", false) => line.push_str(&format!(" ALL {}", wire::number_set(&numbers))),
                    ("COUNT", _) => line.push_str(&format!(" COUNT {}", numbers.len())),
                    _ => {}
                }
            }
            if let (true, Some(m)) = (uses_modseq, modseq_max) {
                line.push_str(&format!(" MODSEQ {m}"));
            }
        }
    }
    line.push_str("\r\n");
    conn.raw(line.as_bytes());
    if by_uid {
        Ok(Done::ok("SEARCH completed"))
    } else {
        Ok(Done::ok_holding_expunges("SEARCH completed"))
    }
}

fn check_sequence_sets(selected: &Selected, key: &SearchKey<'_>) -> Result<(), CmdError> {
    match key {
        SearchKey::SequenceSet(set) => selected.resolve(set, false).map(|_| ()),
        SearchKey::And(keys) => keys.as_ref().iter().try_for_each(|k| check_sequence_sets(selected, k)),
        SearchKey::Not(k) => check_sequence_sets(selected, k),
        SearchKey::Or(a, b) => check_sequence_sets(selected, a).and_then(|()| check_sequence_sets(selected, b)),
        _ => Ok(()),
    }
}

/// Messages whose content SEARCH opens ahead together (in parallel, into
/// the session's cache; `Env::open_ahead`), as FETCH does.
const OPEN_AHEAD_LEN: usize = 64;

/// Opens ahead those of the `OPEN_AHEAD_LEN` messages from `first` whose
/// match the criteria cannot decide without their content.
fn open_ahead(env: &Env<'_>, selected: &Selected, criteria: &[SearchKey<'_>], first: usize) -> Result<(), CmdError> {
    let mut window = Vec::new();
    for (idx, entry) in selected.messages.iter().enumerate().skip(first).take(OPEN_AHEAD_LEN) {
        let candidate = Candidate { idx, entry, raw: OnceCell::new(), text: OnceCell::new(), summary: OnceCell::new() };
        let mut undecided = false;
        for key in criteria {
            match without_content(env, selected, &candidate, key)? {
                Some(true) => {}
                Some(false) => {
                    undecided = false;
                    break;
                }
                None => undecided = true,
            }
        }
        if undecided {
            window.push(entry.blob);
        }
    }
    env.open_ahead(&window);
    Ok(())
}

/// Whether a key reads a message's headers or body.
fn mentions_content(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Cc(_)
        | SearchKey::Bcc(_)
        | SearchKey::Subject(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(mentions_content),
        SearchKey::Not(k) => mentions_content(k),
        SearchKey::Or(a, b) => mentions_content(a) || mentions_content(b),
        _ => false,
    }
}

/// A key's result for a message when it does not need the content, else
/// None (three-valued: AND, OR and NOT decide what they can).
fn without_content(
    env: &Env<'_>,
    selected: &Selected,
    c: &Candidate<'_>,
    key: &SearchKey<'_>,
) -> Result<Option<bool>, CmdError> {
    Ok(match key {
        SearchKey::And(keys) => {
            let mut all = Some(true);
            for k in keys.as_ref() {
                match without_content(env, selected, c, k)? {
                    Some(false) => return Ok(Some(false)),
                    Some(true) => {}
                    None => all = None,
                }
            }
            all
        }
        SearchKey::Or(a, b) => match (without_content(env, selected, c, a)?, without_content(env, selected, c, b)?) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        SearchKey::Not(k) => without_content(env, selected, c, k)?.map(|m| !m),
        SearchKey::Body(_) | SearchKey::Text(_) => None,
        // Header keys read the shared summary cache when it holds the
        // message (`|| None`: never opens it): opening it ahead would decrypt
        // it for nothing.
        k if mentions_content(k) => match env.summaries.get(env.key.as_deref(), &c.entry.blob, || None) {
            Some(_) => Some(matches(env, selected, c, k)?),
            None => None,
        },
        k => Some(matches(env, selected, c, k)?),
    })
}

fn mentions_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(mentions_modseq),
        SearchKey::Not(k) => mentions_modseq(k),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        _ => false,
    }
}

fn needle(s: &AString<'_>) -> Result<String, CmdError> {
    std::str::from_utf8(s.as_ref())
        .map(str::to_lowercase)
        .map_err(|_| CmdError::No("[BADCHARSET (UTF-8 US-ASCII)] Search text is not UTF-8".into()))
}

fn day(secs: i64) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.date_naive())
}

fn matches(env: &Env<'_>, selected: &Selected, c: &Candidate<'_>, key: &SearchKey<'_>) -> Result<bool, CmdError> {
    let flag = |f: Flag| c.entry.flags.contains(&f);
    let raw = || -> Result<&Vec<u8>, CmdError> {
        if c.raw.get().is_none() {
            let _ = c.raw.set(env.message(&c.entry.blob)?);
        }
        c.raw.get().ok_or_else(|| CmdError::No("[SERVERBUG] Message unreadable".into()))
    };
    let text = || -> Result<&(String, String), CmdError> {
        if c.text.get().is_none() {
            let _ = c.text.set(message::search_text(raw()?));
        }
        c.text.get().ok_or_else(|| CmdError::No("[SERVERBUG] Message unreadable".into()))
    };
    let summary = || -> Result<&Arc<Summary>, CmdError> {
        if c.summary.get().is_none() {
            let summary = env.summaries.get(env.key.as_deref(), &c.entry.blob, || raw().ok().cloned());
            let _ = c.summary.set(summary.ok_or_else(|| CmdError::No("[SERVERBUG] Message unreadable".into()))?);
        }
        c.summary.get().ok_or_else(|| CmdError::No("[SERVERBUG] Message unreadable".into()))
    };
    let header_has =
        |name: &str, s: &AString<'_>| -> Result<bool, CmdError> { Ok(summary()?.header_contains(name, &needle(s)?)) };
    let internal = day(c.entry.internal_date);
    let sent = || -> Result<Option<NaiveDate>, CmdError> { Ok(summary()?.sent_date.and_then(day)) };
    Ok(match key {
        SearchKey::And(keys) => {
            for k in keys.as_ref() {
                if !matches(env, selected, c, k)? {
                    return Ok(false);
                }
            }
            true
        }
        SearchKey::SequenceSet(set) => set_contains(set, c.idx as u32 + 1, selected.messages.len() as u32),
        SearchKey::Uid(set) => set_contains(set, c.entry.uid.get(), selected.uid_max().unwrap_or(0)),
        SearchKey::All => true,
        SearchKey::Answered => flag(Flag::answered()),
        SearchKey::Unanswered => !flag(Flag::answered()),
        SearchKey::Deleted => flag(Flag::deleted()),
        SearchKey::Undeleted => !flag(Flag::deleted()),
        SearchKey::Draft => flag(Flag::draft()),
        SearchKey::Undraft => !flag(Flag::draft()),
        SearchKey::Flagged => flag(Flag::flagged()),
        SearchKey::Unflagged => !flag(Flag::flagged()),
        SearchKey::Seen => flag(Flag::seen()),
        SearchKey::Unseen => !flag(Flag::seen()),
        // \Recent is not kept (RFC 9051 removed it): nothing is recent or new.
        SearchKey::Recent | SearchKey::New => false,
        SearchKey::Old => true,
        SearchKey::Keyword(k) => c.entry.flags.iter().any(|f| f.as_str().eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Unkeyword(k) => !c.entry.flags.iter().any(|f| f.as_str().eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Larger(n) => c.entry.size > u64::from(*n),
        SearchKey::Smaller(n) => c.entry.size < u64::from(*n),
        SearchKey::Before(d) => internal.is_some_and(|i| i < *d.as_ref()),
        SearchKey::On(d) => internal.is_some_and(|i| i == *d.as_ref()),
        SearchKey::Since(d) => internal.is_some_and(|i| i >= *d.as_ref()),
        SearchKey::SentBefore(d) => sent()?.is_some_and(|s| s < *d.as_ref()),
        SearchKey::SentOn(d) => sent()?.is_some_and(|s| s == *d.as_ref()),
        SearchKey::SentSince(d) => sent()?.is_some_and(|s| s >= *d.as_ref()),
        SearchKey::From(s) => header_has("From", s)?,
        SearchKey::To(s) => header_has("To", s)?,
        SearchKey::Cc(s) => header_has("Cc", s)?,
        SearchKey::Bcc(s) => header_has("Bcc", s)?,
        SearchKey::Subject(s) => header_has("Subject", s)?,
        SearchKey::Header(name, s) => {
            let name = std::str::from_utf8(name.as_ref()).map_err(|_| CmdError::Bad("Header name not UTF-8".into()))?;
            // RFC 9051 6.4.4: an empty string matches every message with the field.
            header_has(name, s)?
        }
        SearchKey::Body(s) => text()?.1.contains(&needle(s)?),
        SearchKey::Text(s) => {
            let n = needle(s)?;
            let (h, b) = text()?;
            h.contains(&n) || b.contains(&n)
        }
        SearchKey::Not(k) => !matches(env, selected, c, k)?,
        SearchKey::Or(a, b) => matches(env, selected, c, a)? || matches(env, selected, c, b)?,
        SearchKey::ModSequence { modseq, .. } => c.entry.modseq.get() >= *modseq,
    })
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    fn setup() -> Harness {
        let mut h = Harness::logged_in();
        h.append("INBOX", "From: Ann <ann@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Mon, 2 Jan 2023 10:00:00 +0000\r\n\r\nbody one\r\n");
        h.append("INBOX", "From: bob@example.org\r\nSubject: invoice\r\n\r\nPlease pay\r\n");
        h.transact("s SELECT INBOX", "OK");
        h.transact("t STORE 2 +FLAGS (\\Flagged)", "OK");
        h
    }

    #[test]
    fn search_keys() {
        let mut h = setup();
        assert!(h.transact("a SEARCH FROM ann", "OK").contains("* SEARCH 1\r\n"));
        assert!(h.transact("b SEARCH CHARSET UTF-8 SUBJECT \"grüße\"", "OK").contains("* SEARCH 1\r\n"));
        assert!(h.transact("c SEARCH BODY PAY", "OK").contains("* SEARCH 2\r\n"));
        assert!(h.transact("d SEARCH OR FLAGGED TEXT \"body one\"", "OK").contains("* SEARCH 1 2\r\n"));
        assert!(h.transact("e UID SEARCH NOT FLAGGED", "OK").contains("* SEARCH 1\r\n"));
        assert!(h.transact("f SEARCH SENTBEFORE 3-Jan-2023", "OK").contains("* SEARCH 1\r\n"));
        assert!(h.transact("g SEARCH 2:* UNSEEN", "OK").contains("* SEARCH 2\r\n"));
        assert!(h.transact("h SEARCH HEADER Subject invoice", "OK").contains("* SEARCH 2\r\n"));
        h.transact("i SEARCH CHARSET KOI8-R ALL", "NO [BADCHARSET");
        h.transact("j SEARCH 9 ALL", "BAD");
        h.transact("k SEARCH BOGUS", "BAD");
    }

    #[test]
    fn esearch_and_modseq() {
        let mut h = setup();
        let out = h.transact("a UID SEARCH RETURN (MIN MAX COUNT ALL) ALL", "OK");
        assert!(out.contains("* ESEARCH (TAG \"a\") UID MIN 1 MAX 17 COUNT 2 ALL 1,17\r\n"), "{out}");
        let out = h.transact("b SEARCH RETURN () FLAGGED", "OK");
        assert!(out.contains("* ESEARCH (TAG \"b\") ALL 2\r\n"), "{out}");
        let out = h.transact("c SEARCH MODSEQ 1", "OK");
        assert!(out.contains("* SEARCH 1 2 (MODSEQ "), "{out}");
    }
}
