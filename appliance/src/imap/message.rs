//! What FETCH and SEARCH need from a message's bytes: ENVELOPE and
//! BODYSTRUCTURE (RFC 9051 7.5.2), body sections (RFC 9051 6.4.5) and
//! decoded text for SEARCH. MIME parsing is mail-parser's; the IMAP shapes are
//! ours. Pure functions of the raw message, so results can be cached by blob.

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mail_parser::{Addr, Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use roost_core::model::BlobHash;

use crate::imap::wire::{self, nstring, string};

/// ENVELOPE and BODYSTRUCTURE of a message, already encoded.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `(date subject from sender reply-to to cc bcc in-reply-to message-id)`.
    pub envelope: Vec<u8>,
    /// BODYSTRUCTURE with extension data.
    pub bodystructure: Vec<u8>,
    /// BODY (no extension data).
    pub body: Vec<u8>,
    /// Header fields for SEARCH, in message order: the field name and its
    /// value lowercased, decoded and as written (so a search matches either).
    pub search_headers: Vec<(String, String)>,
    /// The Date: field as seconds since the epoch (SEARCH SENTBEFORE etc.).
    pub sent_date: Option<i64>,
}

impl Summary {
    /// Whether a `name` field contains `needle` (lowercase). An empty needle
    /// matches every message that has the field (RFC 9051 6.4.4 HEADER).
    pub fn header_contains(&self, name: &str, needle: &str) -> bool {
        self.search_headers.iter().any(|(n, value)| n.eq_ignore_ascii_case(name) && value.contains(needle))
    }
}

/// Summaries by reader and blob, shared by all connections. A message's bytes
/// never change (content addressed), so entries never go stale. Eviction is
/// by two generations rather than exact recency: new summaries go into the
/// current one; when it is full it becomes the old one (the previous old one
/// is dropped), and a summary found in the old one moves back to the
/// current one. What was used within the last generation survives; the
/// cache never empties at once. The reader (the session key's fingerprint, `None` for a user
/// without a key) is part of the key so one user's session never gets a
/// summary computed from another user's plaintext (issue 8); the cache lives
/// in memory only.
#[derive(Debug, Clone, Default)]
pub struct SummaryCache {
    inner: Arc<Mutex<Generations>>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<SummaryKey, Arc<Summary>>,
    old: HashMap<SummaryKey, Arc<Summary>>,
}

impl Generations {
    fn get(&mut self, key: &SummaryKey) -> Option<Arc<Summary>> {
        if let Some(summary) = self.current.get(key) {
            return Some(summary.clone());
        }
        let summary = self.old.remove(key)?;
        self.insert(*key, summary.clone());
        Some(summary)
    }

    fn insert(&mut self, key: SummaryKey, summary: Arc<Summary>) {
        if self.current.len() >= SUMMARY_GENERATION_LEN {
            self.old = std::mem::take(&mut self.current);
        }
        self.current.insert(key, summary);
    }
}

type SummaryKey = (Option<[u8; 32]>, BlobHash);

/// Summaries kept at most, over both generations: ~1-2 KiB each, so a few MiB.
const SUMMARY_CACHE_LEN_MAX: usize = 4096;
const SUMMARY_GENERATION_LEN: usize = SUMMARY_CACHE_LEN_MAX / 2;

impl SummaryCache {
    /// The summary of `raw` (stored as `blob`, read by `reader`), computed once.
    pub fn get(
        &self,
        reader: Option<&roost_core::crypto::SessionKey>,
        blob: &BlobHash,
        raw: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Arc<Summary>> {
        let key = (reader.map(|k| k.id()), *blob);
        if let Some(summary) = self.lock().get(&key) {
            return Some(summary);
        }
        let summary = Arc::new(summarize(&raw()?));
        self.lock().insert(key, summary.clone());
        Some(summary)
    }

    /// Summaries held now (both generations).
    pub fn len(&self) -> usize {
        let generations = self.lock();
        generations.current.len() + generations.old.len()
    }

    /// Whether no summary is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // Plain data: usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// Computes ENVELOPE, BODYSTRUCTURE and BODY of `raw`.
pub fn summarize(raw: &[u8]) -> Summary {
    let Some(message) = parse(raw) else {
        // Not a parseable message: describe it as an empty-headed text body.
        let mut bodystructure = Vec::new();
        bodystructure.extend_from_slice(
            format!("(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" {} {})", raw.len(), lines(raw))
                .as_bytes(),
        );
        return Summary {
            envelope: b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_vec(),
            body: bodystructure.clone(),
            bodystructure,
            search_headers: Vec::new(),
            sent_date: None,
        };
    };
    let mut envelope_out = Vec::new();
    envelope(&message, &mut envelope_out);
    let mut bodystructure = Vec::new();
    structure(&message, 0, &mut bodystructure, Extension::Include);
    let mut body = Vec::new();
    structure(&message, 0, &mut body, Extension::Omit);
    let sent_date = message.date().map(|d| d.to_timestamp());
    Summary { envelope: envelope_out, bodystructure, body, search_headers: search_headers(&message), sent_date }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    Include,
    Omit,
}

fn unfold(value: &str) -> String {
    value.replace("\r\n", "").replace('\n', "").trim().to_string()
}

fn raw_header(message: &Message<'_>, name: &'static str) -> Option<String> {
    message.header_raw(name).map(unfold)
}

fn envelope(message: &Message<'_>, out: &mut Vec<u8>) {
    out.push(b'(');
    nstring(out, raw_header(message, "Date").as_deref().map(str::as_bytes));
    out.push(b' ');
    nstring(out, raw_header(message, "Subject").as_deref().map(str::as_bytes));
    let from = message.from();
    // RFC 9051 7.5.2: sender and reply-to default to from.
    for addresses in
        [from, message.sender().or(from), message.reply_to().or(from), message.to(), message.cc(), message.bcc()]
    {
        out.push(b' ');
        address_list(addresses, out);
    }
    out.push(b' ');
    nstring(out, raw_header(message, "In-Reply-To").as_deref().map(str::as_bytes));
    out.push(b' ');
    nstring(out, raw_header(message, "Message-ID").as_deref().map(str::as_bytes));
    out.push(b')');
}

fn address_list(addresses: Option<&Address<'_>>, out: &mut Vec<u8>) {
    let Some(addresses) = addresses else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut items = Vec::new();
    match addresses {
        Address::List(list) => {
            for addr in list {
                address(addr, &mut items);
            }
        }
        Address::Group(groups) => {
            for group in groups {
                // RFC 9051 7.5.2: a group is (NIL NIL name NIL) ... (NIL NIL NIL NIL).
                let named = group.name.is_some();
                if named {
                    items.extend_from_slice(b"(NIL NIL ");
                    nstring(&mut items, group.name.as_deref().map(str::as_bytes));
                    items.extend_from_slice(b" NIL)");
                }
                for addr in &group.addresses {
                    address(addr, &mut items);
                }
                if named {
                    items.extend_from_slice(b"(NIL NIL NIL NIL)");
                }
            }
        }
    }
    if items.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend(items);
        out.push(b')');
    }
}

fn address(addr: &Addr<'_>, out: &mut Vec<u8>) {
    let (mailbox, host) = match addr.address.as_deref() {
        Some(a) => match a.rsplit_once('@') {
            Some((m, h)) => (Some(m), Some(h)),
            None => (Some(a), None),
        },
        None => (None, None),
    };
    out.push(b'(');
    let name = addr.name.as_deref().map(encode_word);
    nstring(out, name.as_deref().map(str::as_bytes));
    out.extend_from_slice(b" NIL ");
    nstring(out, mailbox.map(str::as_bytes));
    out.push(b' ');
    nstring(out, host.map(str::as_bytes));
    out.push(b')');
}

/// mail-parser decodes display names; IMAP4rev1 clients expect them as in the
/// header, so non-ASCII names are re-encoded as an RFC 2047 encoded word.
fn encode_word(name: &str) -> String {
    if name.is_ascii() {
        name.to_string()
    } else {
        format!("=?utf-8?b?{}?=", STANDARD.encode(name.as_bytes()))
    }
}

fn lines(bytes: &[u8]) -> usize {
    let n = bytes.iter().filter(|b| **b == b'\n').count();
    if bytes.last().is_some_and(|b| *b != b'\n') {
        n + 1
    } else {
        n
    }
}

fn part_body<'a>(message: &'a Message<'_>, part: usize) -> &'a [u8] {
    let p = &message.parts[part];
    message.raw_message.get(p.offset_body as usize..p.offset_end as usize).unwrap_or_default()
}

fn structure(message: &Message<'_>, part_id: usize, out: &mut Vec<u8>, extension: Extension) {
    let Some(part) = message.parts.get(part_id) else {
        out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        return;
    };
    let content_type = part.content_type();
    out.push(b'(');
    if let PartType::Multipart(children) = &part.body {
        for child in children {
            structure(message, *child as usize, out, extension);
        }
        if children.is_empty() {
            // RFC 9051 9 body-type-mpart needs one part; describe an empty text.
            out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        }
        out.push(b' ');
        let subtype = content_type.and_then(|c| c.subtype()).unwrap_or("mixed");
        string(out, subtype.to_ascii_uppercase().as_bytes());
        if extension == Extension::Include {
            out.push(b' ');
            params(content_type, out);
            out.push(b' ');
            disposition(part, out);
            out.extend_from_slice(b" NIL NIL");
        }
        out.push(b')');
        return;
    }
    let nested = match &part.body {
        PartType::Message(nested) => Some(nested),
        _ => None,
    };
    let (ctype, subtype) = match (content_type, nested) {
        (Some(c), _) => (c.ctype().to_string(), c.subtype().unwrap_or("plain").to_string()),
        (None, Some(_)) => ("message".to_string(), "rfc822".to_string()),
        (None, None) => ("text".to_string(), "plain".to_string()),
    };
    string(out, ctype.to_ascii_uppercase().as_bytes());
    out.push(b' ');
    string(out, subtype.to_ascii_uppercase().as_bytes());
    out.push(b' ');
    if content_type.is_none() && ctype == "text" {
        out.extend_from_slice(b"(\"CHARSET\" \"US-ASCII\")");
    } else {
        params(content_type, out);
    }
    out.push(b' ');
    nstring(out, part.content_id().map(str::as_bytes));
    out.push(b' ');
    nstring(out, part.content_description().map(str::as_bytes));
    out.push(b' ');
    let encoding = part.content_transfer_encoding().unwrap_or("7BIT").to_ascii_uppercase();
    string(out, encoding.as_bytes());
    let body = part_body(message, part_id);
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    if let Some(nested) = nested {
        out.push(b' ');
        envelope(nested, out);
        out.push(b' ');
        structure(nested, 0, out, extension);
        out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
    } else if ctype.eq_ignore_ascii_case("text") {
        out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
    }
    if extension == Extension::Include {
        out.extend_from_slice(b" NIL ");
        disposition(part, out);
        out.extend_from_slice(b" NIL NIL");
    }
    out.push(b')');
}

fn params(content_type: Option<&mail_parser::ContentType<'_>>, out: &mut Vec<u8>) {
    let attributes = content_type.and_then(|c| c.attributes()).unwrap_or_default();
    if attributes.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    wire::list(out, attributes, |out, a| {
        string(out, a.name.to_ascii_uppercase().as_bytes());
        out.push(b' ');
        string(out, a.value.as_bytes());
    });
}

fn disposition(part: &mail_parser::MessagePart<'_>, out: &mut Vec<u8>) {
    match part.content_disposition() {
        Some(d) => {
            out.push(b'(');
            string(out, d.ctype().to_ascii_uppercase().as_bytes());
            out.push(b' ');
            params(Some(d), out);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Splits a message into header (with the blank line) and text.
pub fn split_header(raw: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < raw.len() {
        let line_end = raw[i..].iter().position(|b| *b == b'\n').map_or(raw.len(), |p| i + p + 1);
        let line = &raw[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return (&raw[..line_end], &raw[line_end..]);
        }
        i = line_end;
    }
    (raw, &[])
}

/// The header lines whose field name is (`Fields::Only`) or is not
/// (`Fields::Except`) among `names`, plus the blank line (RFC 9051 6.4.5).
pub fn header_fields(header: &[u8], names: &[String], fields: Fields) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(&name));
            keep = listed == (fields == Fields::Only);
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// HEADER.FIELDS or HEADER.FIELDS.NOT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// HEADER.FIELDS.
    Only,
    /// HEADER.FIELDS.NOT.
    Except,
}

/// What part of a (sub)message a section names (RFC 9051 6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// The whole (sub)message or part body.
    All,
    /// HEADER.
    Header,
    /// HEADER.FIELDS (.NOT).
    HeaderFields(Vec<String>, Fields),
    /// TEXT.
    Text,
    /// MIME header of a part.
    Mime,
}

/// The bytes of a section; `None` when the part does not exist (sent as an
/// empty string, like Dovecot, so clients do not abort the FETCH).
pub fn section<'r>(raw: &'r [u8], path: &[NonZeroU32], text: &SectionText) -> Option<Cow<'r, [u8]>> {
    if path.is_empty() {
        // The common case (BODY[], BODY[HEADER], BODY[TEXT]): no parse, no copy.
        return Some(of_message(raw, text));
    }
    let message = parse(raw)?;
    let (owner, part_id) = locate(&message, path)?;
    let part = &owner.parts[part_id];
    let bytes = &owner.raw_message;
    let owned = match text {
        SectionText::All => part_body(owner, part_id).to_vec(),
        SectionText::Mime => bytes.get(part.offset_header as usize..part.offset_body as usize)?.to_vec(),
        _ => match &part.body {
            PartType::Message(nested) => of_message(message_bytes(nested), text).into_owned(),
            _ => return None,
        },
    };
    Some(Cow::Owned(owned))
}

/// Why a BINARY section (RFC 3516) cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// The part's Content-Transfer-Encoding is none RFC 2045 defines:
    /// `NO [UNKNOWN-CTE]` (RFC 3516 4.3).
    UnknownCte(String),
    /// The part says base64 or quoted-printable but its body is not.
    Undecodable(&'static str),
}

/// The bytes of BINARY[path] (RFC 3516 4.2): the part's body with its
/// Content-Transfer-Encoding undone (the charset is left alone). An empty
/// path is the whole message as stored; `Ok(None)` when the part does not
/// exist. A multipart has no encoding of its own: its body is sent as it is.
pub fn binary_section<'r>(raw: &'r [u8], path: &[NonZeroU32]) -> Result<Option<Cow<'r, [u8]>>, BinaryError> {
    if path.is_empty() {
        return Ok(Some(Cow::Borrowed(raw)));
    }
    let Some(message) = parse(raw) else { return Ok(None) };
    let Some((owner, part_id)) = locate(&message, path) else { return Ok(None) };
    let part = &owner.parts[part_id];
    let body = part_body(owner, part_id).to_vec();
    if matches!(part.body, PartType::Multipart(_)) {
        return Ok(Some(Cow::Owned(body)));
    }
    let encoding = part.content_transfer_encoding().map(|e| e.trim().to_ascii_lowercase());
    let decoded = match encoding.as_deref() {
        None | Some("7bit" | "8bit" | "binary") => body,
        Some("base64") => {
            mail_parser::decoders::base64::base64_decode(&body).ok_or(BinaryError::Undecodable("base64"))?
        }
        Some("quoted-printable") => mail_parser::decoders::quoted_printable::quoted_printable_decode(&body)
            .ok_or(BinaryError::Undecodable("quoted-printable"))?,
        Some(other) => return Err(BinaryError::UnknownCte(other.to_string())),
    };
    Ok(Some(Cow::Owned(decoded)))
}

/// The bytes of a (possibly encapsulated) message. mail-parser gives an
/// encapsulated message the outer message's `raw_message` with offsets into
/// it, so its own bytes are its root part's range.
fn message_bytes<'a>(message: &'a Message<'_>) -> &'a [u8] {
    match message.parts.first() {
        Some(root) => {
            message.raw_message.get(root.offset_header as usize..root.offset_end as usize).unwrap_or_default()
        }
        None => &message.raw_message,
    }
}

fn of_message<'r>(raw: &'r [u8], text: &SectionText) -> Cow<'r, [u8]> {
    let (header, body) = split_header(raw);
    match text {
        SectionText::All | SectionText::Mime => Cow::Borrowed(raw),
        SectionText::Header => Cow::Borrowed(header),
        SectionText::Text => Cow::Borrowed(body),
        SectionText::HeaderFields(names, fields) => Cow::Owned(header_fields(header, names, *fields)),
    }
}

/// Finds part `path` (RFC 9051 6.4.5 numbering): children of multiparts are
/// numbered from 1; a non-multipart (sub)message's body is part 1; a
/// message/rfc822 part's numbers continue inside the encapsulated message.
fn locate<'m, 'x>(message: &'m Message<'x>, path: &[NonZeroU32]) -> Option<(&'m Message<'x>, usize)> {
    let mut owner = message;
    let mut part_id = 0usize;
    for (i, n) in path.iter().enumerate() {
        if i > 0 {
            if let PartType::Message(nested) = &owner.parts.get(part_id)?.body {
                owner = nested;
                part_id = 0;
            }
        }
        match &owner.parts.get(part_id)?.body {
            PartType::Multipart(children) => part_id = *children.get(n.get() as usize - 1)? as usize,
            _ if n.get() == 1 => {}
            _ => return None,
        }
    }
    Some((owner, part_id))
}

/// Decoded header and body text for SEARCH TEXT/BODY, lower-cased.
pub fn search_text(raw: &[u8]) -> (String, String) {
    let Some(message) = parse(raw) else {
        let text = String::from_utf8_lossy(raw).to_lowercase();
        return (text.clone(), text);
    };
    let mut header = String::new();
    for h in message.headers() {
        header.push_str(h.name.as_str());
        header.push_str(": ");
        header.push_str(&header_value_text(&h.value));
        header.push('\n');
    }
    let mut body = String::new();
    collect_body_text(&message, &mut body);
    (header.to_lowercase(), body.to_lowercase())
}

/// Decoded text parts, including those of encapsulated messages (their
/// headers count as body text of the outer message).
fn collect_body_text(message: &Message<'_>, body: &mut String) {
    for part in &message.parts {
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => {
                body.push_str(t);
                body.push('\n');
            }
            PartType::Message(nested) => {
                for h in nested.headers() {
                    body.push_str(&header_value_text(&h.value));
                    body.push('\n');
                }
                collect_body_text(nested, body);
            }
            _ => {}
        }
    }
}

/// One header's decoded value as text (addresses as `name <address>`).
pub fn header_value_text(value: &HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(list) => list.join(" "),
        HeaderValue::Address(Address::List(list)) => list.iter().map(addr_text).collect::<Vec<_>>().join(", "),
        HeaderValue::Address(Address::Group(groups)) => {
            groups.iter().flat_map(|g| g.addresses.iter()).map(addr_text).collect::<Vec<_>>().join(", ")
        }
        HeaderValue::DateTime(d) => d.to_rfc822(),
        HeaderValue::ContentType(c) => format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()),
        HeaderValue::Received(_) | HeaderValue::Empty => String::new(),
    }
}

fn addr_text(addr: &Addr<'_>) -> String {
    format!("{} <{}>", addr.name.as_deref().unwrap_or_default(), addr.address.as_deref().unwrap_or_default())
}

/// Every header field with its value for SEARCH (FROM, HEADER ...): decoded
/// text and the raw value, lower-cased, so encoded words match either way.
fn search_headers(message: &Message<'_>) -> Vec<(String, String)> {
    message
        .headers()
        .iter()
        .map(|h| {
            let mut value = header_value_text(&h.value);
            value.push('\n');
            if let Some(v) = message.raw_message.get(h.offset_start as usize..h.offset_end as usize) {
                value.push_str(&String::from_utf8_lossy(v));
            }
            (h.name.as_str().to_string(), value.to_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NESTED: &str = "From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: a@example.org, \"B\" <b@example.org>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <1@x>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
hello\r\nworld\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: c@example.org\r\n\r\ninner body\r\n\
--b1--\r\n";

    /// A summary used within the last generation survives however many new
    /// ones come in; the cache stays within its bound and never empties.
    #[test]
    fn summary_cache_keeps_what_is_used_and_stays_bounded() {
        let cache = SummaryCache::default();
        let raw = || Some(b"Subject: s\r\n\r\nbody\r\n".to_vec());
        let hot = BlobHash::of(b"hot");
        cache.get(None, &hot, raw);
        for i in 0..3 * SUMMARY_CACHE_LEN_MAX {
            cache.get(None, &BlobHash::of(&i.to_le_bytes()), raw);
            if i % 500 == 0 {
                // `|| None`: a miss would have nothing to compute from.
                assert!(cache.get(None, &hot, || None).is_some(), "hot summary evicted after {i} others");
            }
            assert!(cache.len() <= SUMMARY_CACHE_LEN_MAX);
        }
        assert!(cache.len() > SUMMARY_CACHE_LEN_MAX / 2, "{}", cache.len());
    }

    fn path(p: &[u32]) -> Vec<NonZeroU32> {
        p.iter().map(|n| NonZeroU32::new(*n).unwrap()).collect()
    }

    #[test]
    fn envelope_keeps_encoded_words_and_splits_addresses() {
        let s = summarize(NESTED.as_bytes());
        let env = String::from_utf8(s.envelope).unwrap();
        assert!(
            env.starts_with(
                "(NIL \"=?utf-8?q?Gr=C3=BC=C3=9Fe?=\" ((\"=?utf-8?b?SsO8cmdlbg==?=\" NIL \"j\" \"example.org\"))"
            ),
            "{env}"
        );
        assert!(env.contains("((NIL NIL \"a\" \"example.org\")(\"B\" NIL \"b\" \"example.org\"))"), "{env}");
        assert!(env.ends_with("NIL \"<1@x>\")"), "{env}");
    }

    #[test]
    fn bodystructure_of_nested_multipart() {
        let s = summarize(NESTED.as_bytes());
        let bs = String::from_utf8(s.bodystructure).unwrap();
        assert!(bs.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 2 NIL NIL NIL NIL)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" "), "{bs}");
        assert!(bs.contains("\"inner\""), "{bs}");
        assert!(bs.ends_with(" \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)"), "{bs}");
        let body = String::from_utf8(s.body).unwrap();
        assert!(body.ends_with(" \"MIXED\")"), "{body}");
    }

    #[test]
    fn sections_by_part_number() {
        let raw = NESTED.as_bytes();
        assert_eq!(section(raw, &path(&[1]), &SectionText::All).unwrap().as_ref(), b"hello\r\nworld");
        // The CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1).
        assert_eq!(section(raw, &path(&[2, 1]), &SectionText::All).unwrap().as_ref(), b"inner body");
        assert_eq!(
            section(raw, &path(&[2]), &SectionText::Header).unwrap().as_ref(),
            b"Subject: inner\r\nFrom: c@example.org\r\n\r\n"
        );
        assert!(section(raw, &path(&[1]), &SectionText::Mime).unwrap().starts_with(b"Content-Type: text/plain"));
        assert_eq!(section(raw, &path(&[3]), &SectionText::All), None);
        let simple = b"Subject: s\r\n\r\nbody";
        assert_eq!(section(simple, &path(&[1]), &SectionText::All).unwrap().as_ref(), b"body");
    }

    // BINARY (RFC 3516): base64 and quoted-printable undone, the charset
    // left alone, an unknown encoding refused, a multipart sent as it is.
    #[test]
    fn binary_sections_decode_the_transfer_encoding() {
        let raw = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=E9 soft=\r\nbreak\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
        let binary = |p: &[u32]| binary_section(raw, &path(p)).map(|s| s.map(Cow::into_owned));
        assert_eq!(binary(&[1]), Ok(Some(b"caf\xe9 softbreak".to_vec())));
        assert_eq!(binary(&[2]), Ok(Some(vec![0, 1, 2, 255])));
        assert_eq!(binary(&[3]), Err(BinaryError::UnknownCte("x-uuencode".into())));
        assert_eq!(binary(&[4]), Ok(None));
        assert_eq!(binary(&[]).unwrap().unwrap(), raw.to_vec());
        let bad = b"Content-Transfer-Encoding: base64\r\n\r\n!!!\r\n";
        assert_eq!(binary_section(bad, &path(&[1])), Err(BinaryError::Undecodable("base64")));
    }

    #[test]
    fn header_fields_filter() {
        let (header, text) = split_header(b"A: 1\r\nB: 2\r\n  cont\r\nC: 3\r\n\r\nbody");
        assert_eq!(text, b"body");
        assert_eq!(header_fields(header, &["b".into()], Fields::Only), b"B: 2\r\n  cont\r\n\r\n");
        assert_eq!(header_fields(header, &["B".into()], Fields::Except), b"A: 1\r\nC: 3\r\n\r\n");
    }

    #[test]
    fn search_text_is_decoded() {
        let (header, body) = search_text(NESTED.as_bytes());
        assert!(header.contains("grüße"), "{header}");
        assert!(header.contains("jürgen"), "{header}");
        assert!(body.contains("hello") && body.contains("inner body"), "{body}");
    }
}
