//! Streaming mbox reader and writer: owns the mbox file format (From_
//! separator lines, `>From ` quoting, Status/X-Status flag headers) and
//! nothing about mailboxes or storage.
//!
//! [`MboxReader`] wraps any `BufRead` and yields one message at a time; only
//! the current message and one line are in memory. Messages come out with
//! CRLF line endings whatever the file used, because IMAP needs CRLF.
//! Problems (truncated or oversized messages) are `Err` items and reading goes
//! on after them; only "not an mbox file" and I/O errors end the iteration.
//!
//! Quoting ambiguity: mboxo writers quote only `From ` lines (`From ` ->
//! `>From `) and leave `>From ` as it was, so an mboxo file cannot tell a
//! quoted `From ` from a body line that really began with `>From `. mboxrd
//! writers quote every `^>*From ` line with one more `>`, which is
//! reversible. We always read with mboxrd semantics: one `>` is removed from
//! each line matching `^>+From `. For mboxrd files this is exact; for mboxo
//! files it is exact except that original `>From ` lines lose their `>` (the
//! choice every mboxrd-aware reader makes). [`write_mbox_message`] writes
//! mboxrd, so our own files round-trip exactly.
//!
//! Separators: a line starting `From ` is a separator when the previous line
//! is empty (the classic rule) or when it carries a parseable asctime date
//! (tolerates writers that omit the blank line). The blank line before a
//! separator (and at end of file) belongs to the format, not the message.
//! mboxcl/mboxcl2 files that leave body `From ` lines unquoted and rely on
//! Content-Length are not split by Content-Length.
//!
//! Status, X-Status headers are format metadata: the reader turns them into
//! [`Flags`] and removes them from `raw`; the writer adds them from [`Flags`].

use std::io::{self, BufRead, Write};

use thiserror::Error;

/// Bounds of the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message yielded, in bytes of `raw` (CRLF form). Larger ones
    /// are skipped with a problem. 128 MiB: well above common mail size
    /// limits (Postfix default 10 MB, most providers 25-50 MB), so no real
    /// archived message is refused, while a file without From_ separators
    /// cannot make us hold gigabytes.
    pub max_message_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_size: 128 * 1024 * 1024 }
    }
}

/// IMAP flags carried by Status (R, O) and X-Status (A, F, T, D) headers,
/// the convention of mutt, Pine, Dovecot and UW-IMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// `R` in Status: `\Seen`.
    pub seen: bool,
    /// `A` in X-Status: `\Answered`.
    pub answered: bool,
    /// `F` in X-Status: `\Flagged`.
    pub flagged: bool,
    /// `T` in X-Status: `\Draft`.
    pub draft: bool,
    /// `D` in X-Status: `\Deleted`.
    pub deleted: bool,
    /// No `O` in Status: the message was never seen by a mail client
    /// (`\Recent`). A message without a Status header is recent.
    pub recent: bool,
}

/// One message read from an mbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// The message: From_ line, trailing separator line, Status and X-Status
    /// headers removed; `>From ` unquoted; every line ending in CRLF.
    pub raw: Vec<u8>,
    /// The From_ line without its line ending (lossy UTF-8).
    pub from_line: String,
    /// Offset of the From_ line in the file.
    pub byte_offset: u64,
    /// 1-based line number of the From_ line.
    pub line_number: u64,
    /// Unix seconds from the From_ line's asctime date, read as UTC unless a
    /// numeric zone follows it; `None` when it does not parse.
    pub internal_date: Option<i64>,
    pub flags: Flags,
}

/// Something wrong in the file; reading continues after it unless the reason
/// says the file is not an mbox or could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line} (byte {byte_offset}): {reason}")]
pub struct MboxProblem {
    /// 1-based line number (of the message's From_ line for message problems).
    pub line: u64,
    pub byte_offset: u64,
    pub reason: String,
}

/// The From_ line that starts the next message.
#[derive(Debug)]
struct FromLine {
    text: Vec<u8>,
    offset: u64,
    line: u64,
    has_lf: bool,
}

/// One physical line as read.
struct Line {
    /// Content without LF or CRLF, cut at the size limit for over-long lines.
    content: Vec<u8>,
    /// Bytes the line occupied in the file, line ending included.
    disk_len: u64,
    has_lf: bool,
    /// Longer than `max_message_size`: the content was cut.
    overlong: bool,
}

/// Iterator of messages in an mbox file. See the module docs.
#[derive(Debug)]
pub struct MboxReader<R> {
    inner: R,
    limits: Limits,
    /// Bytes consumed so far.
    offset: u64,
    /// Lines consumed so far.
    lines: u64,
    next_from: Option<FromLine>,
    started: bool,
    done: bool,
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limits(inner, Limits::default())
    }

    pub fn with_limits(inner: R, limits: Limits) -> Self {
        MboxReader { inner, limits, offset: 0, lines: 0, next_from: None, started: false, done: false }
    }

    /// Read one line, keeping at most `max_message_size` bytes of it; the
    /// rest of an over-long line is consumed and dropped.
    fn read_line(&mut self) -> io::Result<Option<Line>> {
        let cap = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
        let mut content = Vec::new();
        let mut disk_len: u64 = 0;
        let mut overlong = false;
        let mut has_lf = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            let room = cap.saturating_sub(content.len());
            if chunk.len() > room {
                overlong = true;
            }
            content.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = chunk.len();
            self.inner.consume(used);
            disk_len += used as u64;
            if found {
                has_lf = true;
                break;
            }
        }
        if disk_len == 0 {
            return Ok(None);
        }
        self.offset += disk_len;
        self.lines += 1;
        if has_lf && !overlong {
            content.pop();
            if content.last() == Some(&b'\r') {
                content.pop();
            }
        }
        Ok(Some(Line { content, disk_len, has_lf, overlong }))
    }

    fn io_problem(&mut self, e: &io::Error) -> MboxProblem {
        self.done = true;
        MboxProblem { line: self.lines + 1, byte_offset: self.offset, reason: format!("read error: {e}") }
    }

    /// Read line 1, which must be a From_ line.
    fn start(&mut self) -> Option<Result<(), MboxProblem>> {
        self.started = true;
        match self.read_line() {
            Err(e) => Some(Err(self.io_problem(&e))),
            Ok(None) => {
                // An empty file is an empty mbox.
                self.done = true;
                None
            }
            Ok(Some(line)) if line.content.starts_with(b"From ") => {
                self.next_from = Some(FromLine { text: line.content, offset: 0, line: 1, has_lf: line.has_lf });
                Some(Ok(()))
            }
            Ok(Some(_)) => {
                self.done = true;
                Some(Err(MboxProblem {
                    line: 1,
                    byte_offset: 0,
                    reason: "not an mbox file: line 1 does not start with \"From \"".into(),
                }))
            }
        }
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = Result<MboxMessage, MboxProblem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.started {
            match self.start()? {
                Ok(()) => {}
                Err(p) => return Some(Err(p)),
            }
        }
        let Some(from) = self.next_from.take() else {
            self.done = true;
            return None;
        };
        let mut msg = MessageBuilder::new(self.limits.max_message_size);
        let mut prev_blank = false;
        loop {
            let line = match self.read_line() {
                Err(e) => return Some(Err(self.io_problem(&e))),
                Ok(None) => {
                    self.done = true;
                    return Some(msg.finish(from, true));
                }
                Ok(Some(l)) => l,
            };
            if line.content.starts_with(b"From ") && (prev_blank || parse_from_line_date(&line.content).is_some()) {
                self.next_from = Some(FromLine {
                    text: line.content,
                    offset: self.offset - line.disk_len,
                    line: self.lines,
                    has_lf: line.has_lf,
                });
                return Some(msg.finish(from, false));
            }
            prev_blank = line.content.is_empty() && !line.overlong;
            msg.push_line(&line);
        }
    }
}

/// Accumulates one message's lines.
struct MessageBuilder {
    limit: u64,
    raw: Vec<u8>,
    flags: Flags,
    saw_old: bool,
    in_headers: bool,
    /// Inside a Status/X-Status header, so its continuation lines go too.
    skipping_header: bool,
    content_length: Option<u64>,
    /// Body bytes as stored in the file, and counted with CRLF line endings,
    /// for the Content-Length check: writers count either way (a header
    /// written for CRLF mail and stored with LF would otherwise look short).
    body_disk_bytes: u64,
    body_crlf_bytes: u64,
    oversized: bool,
    /// The last line pushed, for the separator and truncation rules.
    last_blank: bool,
    last_disk_len: u64,
    last_in_body: bool,
    last_has_lf: Option<bool>,
}

impl MessageBuilder {
    fn new(limit: u64) -> Self {
        MessageBuilder {
            limit,
            raw: Vec::new(),
            flags: Flags::default(),
            saw_old: false,
            in_headers: true,
            skipping_header: false,
            content_length: None,
            body_disk_bytes: 0,
            body_crlf_bytes: 0,
            oversized: false,
            last_blank: false,
            last_disk_len: 0,
            last_in_body: false,
            last_has_lf: None,
        }
    }

    fn push_line(&mut self, line: &Line) {
        let content = line.content.as_slice();
        self.last_blank = content.is_empty() && !line.overlong;
        self.last_disk_len = line.disk_len;
        self.last_has_lf = Some(line.has_lf);
        self.last_in_body = !self.in_headers;
        if line.overlong {
            self.oversized = true;
        }
        if self.in_headers {
            if content.is_empty() {
                self.in_headers = false;
                self.skipping_header = false;
                self.append(b"");
                return;
            }
            let continuation = content.first().is_some_and(|&b| b == b' ' || b == b'\t');
            if self.skipping_header && continuation {
                // A folded Status value still carries letters.
                self.apply_status(content);
                return;
            }
            self.skipping_header = false;
            if let Some(value) = header_value(content, "Status").or_else(|| header_value(content, "X-Status")) {
                self.apply_status(value);
                self.skipping_header = true;
                return;
            }
            if let Some(value) = header_value(content, "Content-Length") {
                self.content_length = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok());
            }
        } else {
            self.body_disk_bytes += line.disk_len;
            self.body_crlf_bytes += content.len() as u64 + 2;
        }
        self.append(unquote(content));
    }

    /// Letters of both headers are honoured in either header: writers differ
    /// in which letters they put where, and the letters do not collide.
    fn apply_status(&mut self, value: &[u8]) {
        for &b in value {
            match b {
                b'R' => self.flags.seen = true,
                b'O' => self.saw_old = true,
                b'A' => self.flags.answered = true,
                b'F' => self.flags.flagged = true,
                b'T' => self.flags.draft = true,
                b'D' => self.flags.deleted = true,
                _ => {}
            }
        }
    }

    fn append(&mut self, content: &[u8]) {
        if self.oversized {
            return;
        }
        let new_len = (self.raw.len() as u64).saturating_add(content.len() as u64 + 2);
        if new_len > self.limit {
            self.oversized = true;
            self.raw = Vec::new();
            return;
        }
        self.raw.extend_from_slice(content);
        self.raw.extend_from_slice(b"\r\n");
    }

    fn finish(mut self, from: FromLine, at_eof: bool) -> Result<MboxMessage, MboxProblem> {
        let problem = |reason: String| MboxProblem { line: from.line, byte_offset: from.offset, reason };
        if self.oversized {
            return Err(problem(format!("message larger than the {} byte limit, skipped", self.limit)));
        }
        // The blank line before the next From_ line (or at end of file) is
        // the separator, not message content.
        if self.last_blank {
            self.raw.truncate(self.raw.len().saturating_sub(2));
            if self.last_in_body {
                self.body_disk_bytes = self.body_disk_bytes.saturating_sub(self.last_disk_len);
                self.body_crlf_bytes = self.body_crlf_bytes.saturating_sub(2);
            }
        }
        if at_eof {
            // Every writer ends a message with a newline; a missing one means
            // the file was cut mid-line.
            let ends_with_lf = self.last_has_lf.unwrap_or(from.has_lf);
            if !ends_with_lf {
                return Err(problem("truncated message: file ends without a final newline".into()));
            }
            // Only the last message is checked: a mid-file mismatch is proven
            // not to be truncation by the From_ line after it, and stale
            // Content-Length headers are common.
            let body_len = self.body_disk_bytes.max(self.body_crlf_bytes);
            match self.content_length {
                Some(cl) if body_len < cl => {
                    return Err(problem(format!(
                        "truncated message: Content-Length is {cl} but only {body_len} body bytes remain"
                    )));
                }
                _ => {}
            }
        }
        self.flags.recent = !self.saw_old;
        Ok(MboxMessage {
            raw: self.raw,
            from_line: String::from_utf8_lossy(&from.text).into_owned(),
            byte_offset: from.offset,
            line_number: from.line,
            internal_date: parse_from_line_date(&from.text),
            flags: self.flags,
        })
    }
}

/// The value of header `name` if `line` is that header (case-insensitive).
fn header_value<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let head = line.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name.as_bytes()) {
        return None;
    }
    line.get(name.len()..)?.strip_prefix(b":")
}

/// mboxrd: `>>From ` -> `>From `, `>From ` -> `From `.
fn unquote(line: &[u8]) -> &[u8] {
    let gts = line.iter().take_while(|&&b| b == b'>').count();
    if gts > 0 && line[gts..].starts_with(b"From ") {
        &line[1..]
    } else {
        line
    }
}

/// Does the line need a `>` in mboxrd (`^>*From `)?
fn needs_quote(line: &[u8]) -> bool {
    let gts = line.iter().take_while(|&&b| b == b'>').count();
    line[gts..].starts_with(b"From ")
}

// ---- writer -------------------------------------------------------------------

/// Append one message to an mbox stream, in mboxrd form with LF line endings
/// (the Unix mbox convention). `raw` may use CRLF or LF; any Status/X-Status
/// headers in it are replaced by ones built from `flags`. `from_addr` is the
/// envelope sender (empty becomes `MAILER-DAEMON`, whitespace becomes `_` so
/// the From_ line stays parseable). `internal_date` is Unix seconds, written
/// as a UTC asctime date clamped to years 1970-9999.
///
/// Round trip: reading the result gives back `raw` byte for byte when `raw`
/// has CRLF line endings, ends with CRLF (or is empty) and has no Status or
/// X-Status header; and gives back `flags` and `internal_date` (if in range).
/// Wrap `w` in a `BufWriter`: this writes line by line.
pub fn write_mbox_message<W: Write>(
    w: &mut W,
    from_addr: &str,
    internal_date: i64,
    flags: &Flags,
    raw: &[u8],
) -> io::Result<()> {
    let sender: String = if from_addr.is_empty() {
        "MAILER-DAEMON".into()
    } else {
        from_addr.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect()
    };
    writeln!(w, "From {sender} {}", format_asctime(internal_date))?;

    let mut in_headers = true;
    let mut skipping_header = false;
    for line in split_lines(raw) {
        if in_headers {
            if line.is_empty() {
                write_status_headers(w, flags)?;
                in_headers = false;
            } else {
                let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
                if skipping_header && continuation {
                    continue;
                }
                skipping_header = header_value(line, "Status").is_some() || header_value(line, "X-Status").is_some();
                if skipping_header {
                    continue;
                }
            }
        }
        if needs_quote(line) {
            w.write_all(b">")?;
        }
        w.write_all(line)?;
        w.write_all(b"\n")?;
    }
    if in_headers {
        write_status_headers(w, flags)?;
    }
    // Separator blank line.
    w.write_all(b"\n")
}

fn write_status_headers<W: Write>(w: &mut W, flags: &Flags) -> io::Result<()> {
    let mut status = String::new();
    if flags.seen {
        status.push('R');
    }
    if !flags.recent {
        status.push('O');
    }
    let mut xstatus = String::new();
    for (on, c) in [(flags.answered, 'A'), (flags.flagged, 'F'), (flags.draft, 'T'), (flags.deleted, 'D')] {
        if on {
            xstatus.push(c);
        }
    }
    if !status.is_empty() {
        writeln!(w, "Status: {status}")?;
    }
    if !xstatus.is_empty() {
        writeln!(w, "X-Status: {xstatus}")?;
    }
    Ok(())
}

/// Lines of `raw` without their LF/CRLF; a last line without LF counts.
fn split_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    let empty = raw.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty).map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

// ---- dates ------------------------------------------------------------------------

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// 9999-12-31 23:59:59 UTC: asctime has four-digit years.
const MAX_ASCTIME_SECS: i64 = 253_402_300_799;
/// How many tokens after the time may hold the year and zone
/// (`12:00:00 PST 1998`, `12:00:00 1998 +0100`).
const DATE_TAIL_TOKENS: usize = 3;

/// Unix seconds of the asctime date in a From_ line
/// (`From sender Www Mmm dd hh:mm[:ss] [zone] yyyy [zone]`). The sender may
/// contain anything, so the date is found by its shape: month, day, time.
/// Without a numeric zone the time is taken as UTC.
pub fn parse_from_line_date(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line.strip_prefix(b"From ")?).ok()?;
    let tokens: Vec<&str> = text.split_whitespace().collect();
    for i in 0..tokens.len() {
        let Some(month) = MONTHS.iter().position(|m| *m == tokens[i]) else {
            continue;
        };
        let (Some(day), Some(time)) = (tokens.get(i + 1), tokens.get(i + 2)) else {
            continue;
        };
        let Some(day) = parse_num(day, 1, 2) else {
            continue;
        };
        let Some((h, m, s)) = parse_time(time) else {
            continue;
        };
        let mut year = None;
        let mut zone_secs = 0i64;
        for tok in tokens.iter().skip(i + 3).take(DATE_TAIL_TOKENS) {
            let as_year = if year.is_none() { parse_num(tok, 4, 4) } else { None };
            if let Some(y) = as_year {
                year = Some(y);
            } else if let Some(z) = parse_zone(tok) {
                zone_secs = z;
            }
        }
        let year = year?;
        let month = month as u32 + 1;
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        return Some(days * 86_400 + h * 3600 + m * 60 + s - zone_secs);
    }
    None
}

/// A decimal of `min..=max` digits.
fn parse_num(s: &str, min: usize, max: usize) -> Option<i64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_time(s: &str) -> Option<(i64, i64, i64)> {
    let mut parts = s.split(':');
    let h = parse_num(parts.next()?, 1, 2)?;
    let m = parse_num(parts.next()?, 2, 2)?;
    let sec = match parts.next() {
        Some(p) => parse_num(p, 2, 2)?,
        None => 0,
    };
    // 60 allows a leap second.
    (parts.next().is_none() && h < 24 && m < 60 && sec <= 60).then_some((h, m, sec))
}

/// `+hhmm` / `-hhmm` -> seconds east of UTC.
fn parse_zone(s: &str) -> Option<i64> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let n = parse_num(s.get(1..)?, 4, 4)?;
    let (h, m) = (n / 100, n % 100);
    (h < 24 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, usize, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as usize, d)
}

/// `Www Mmm dd hh:mm:ss yyyy` in UTC, day space-padded as asctime does.
fn format_asctime(secs: i64) -> String {
    let secs = secs.clamp(0, MAX_ASCTIME_SECS);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let wd = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let mon = MONTHS[m.clamp(1, 12) - 1];
    format!("{wd} {mon} {d:>2} {:02}:{:02}:{:02} {y}", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_all(data: &[u8]) -> Vec<Result<MboxMessage, MboxProblem>> {
        MboxReader::new(Cursor::new(data.to_vec())).collect()
    }

    fn ok(items: &[Result<MboxMessage, MboxProblem>], i: usize) -> &MboxMessage {
        match &items[i] {
            Ok(m) => m,
            Err(p) => panic!("item {i} is a problem: {p}"),
        }
    }

    const TWO: &str = "From alice@example.com Thu Jan  1 00:00:00 1970\n\
Subject: one\n\
Status: RO\n\
X-Status: AF\n\
\n\
hello\n\
>From the start\n\
>>From twice\n\
>Fromage\n\
\n\
From bob@example.com Sat Jan  3 01:05:34 1996\n\
Subject: two\n\
\n\
bye\n\
\n";

    #[test]
    fn reads_two_messages_with_offsets_flags_dates() {
        let items = read_all(TWO.as_bytes());
        assert_eq!(items.len(), 2);
        let a = ok(&items, 0);
        assert_eq!(a.raw, b"Subject: one\r\n\r\nhello\r\nFrom the start\r\n>From twice\r\n>Fromage\r\n");
        assert_eq!(a.from_line, "From alice@example.com Thu Jan  1 00:00:00 1970");
        assert_eq!(a.byte_offset, 0);
        assert_eq!(a.line_number, 1);
        assert_eq!(a.internal_date, Some(0));
        assert_eq!(a.flags, Flags { seen: true, answered: true, flagged: true, recent: false, ..Flags::default() });
        let b = ok(&items, 1);
        assert_eq!(b.raw, b"Subject: two\r\n\r\nbye\r\n");
        assert_eq!(b.line_number, 11);
        assert_eq!(b.byte_offset, TWO.find("From bob").unwrap_or(0) as u64);
        assert_eq!(b.internal_date, Some(820_631_134));
        // No Status header: new mail.
        assert_eq!(b.flags, Flags { recent: true, ..Flags::default() });
    }

    #[test]
    fn crlf_file_gives_same_messages() {
        let crlf = TWO.replace('\n', "\r\n");
        let lf_items = read_all(TWO.as_bytes());
        let crlf_items = read_all(crlf.as_bytes());
        assert_eq!(lf_items.len(), crlf_items.len());
        for (a, b) in lf_items.iter().zip(&crlf_items) {
            let (Ok(a), Ok(b)) = (a, b) else { panic!("unexpected problem") };
            assert_eq!(a.raw, b.raw);
            assert_eq!(a.flags, b.flags);
            assert_eq!(a.internal_date, b.internal_date);
        }
    }

    #[test]
    fn empty_file_is_empty_mbox() {
        assert!(read_all(b"").is_empty());
    }

    #[test]
    fn not_an_mbox_file() {
        let items = read_all(b"Subject: hi\n\nbody\nFrom a Thu Jan  1 00:00:00 1970\n\n");
        assert_eq!(items.len(), 1);
        let Err(p) = &items[0] else { panic!("expected a problem") };
        assert_eq!(p.line, 1);
        assert_eq!(p.byte_offset, 0);
        assert!(p.reason.contains("not an mbox file"));
    }

    #[test]
    fn truncated_last_message_without_newline() {
        let data = format!("{TWO}From c Thu Jan  1 00:00:00 1970\nSubject: cut\n\nhalf a li");
        let items = read_all(data.as_bytes());
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        let Err(p) = &items[2] else { panic!("expected a problem") };
        assert_eq!(p.byte_offset, TWO.len() as u64);
        assert_eq!(p.line, 16);
        assert!(p.reason.contains("truncated"), "{}", p.reason);
    }

    #[test]
    fn truncated_last_message_by_content_length() {
        let data = "From c Thu Jan  1 00:00:00 1970\nContent-Length: 100\n\nshort\n";
        let items = read_all(data.as_bytes());
        let Err(p) = &items[0] else { panic!("expected a problem") };
        assert!(p.reason.contains("Content-Length is 100"), "{}", p.reason);
    }

    #[test]
    fn matching_content_length_is_fine() {
        // 6 body bytes ("short\n"), then the separator line.
        let data = "From c Thu Jan  1 00:00:00 1970\nContent-Length: 6\n\nshort\n\n";
        let items = read_all(data.as_bytes());
        assert_eq!(ok(&items, 0).raw, b"Content-Length: 6\r\n\r\nshort\r\n".to_vec());
    }

    #[test]
    fn content_length_counted_with_crlf_is_not_truncation() {
        // Header counts "hello\r\n" (7) but the file stores "hello\n" (6).
        let mut file = Vec::new();
        let raw = b"Content-Length: 7\r\n\r\nhello\r\n";
        write_mbox_message(&mut file, "a@b", 0, &Flags::default(), raw).expect("write to vec");
        let items = read_all(&file);
        assert_eq!(ok(&items, 0).raw, raw.to_vec());
    }

    #[test]
    fn from_line_only_at_eof_without_newline_is_truncated() {
        let items = read_all(b"From x Thu Jan  1 00:00:00 1970");
        assert!(matches!(&items[0], Err(p) if p.reason.contains("truncated")));
    }

    #[test]
    fn separator_without_blank_line_needs_a_date() {
        // Unquoted "From " lines not after a blank line stay in the body
        // unless they look like a real From_ line.
        let data = "From a Thu Jan  1 00:00:00 1970\nX: 1\n\nbody\nFrom here on, text\n\
From b Fri Jan  2 00:00:00 1970\nX: 2\n\n";
        let items = read_all(data.as_bytes());
        assert_eq!(items.len(), 2);
        assert_eq!(ok(&items, 0).raw, b"X: 1\r\n\r\nbody\r\nFrom here on, text\r\n");
        assert_eq!(ok(&items, 1).raw, b"X: 2\r\n");
        assert_eq!(ok(&items, 1).internal_date, Some(86_400));
    }

    #[test]
    fn blank_line_then_from_always_separates() {
        // The classic rule: an unquoted "From " after a blank line starts a
        // message even without a date (what mboxcl files get wrong).
        let data = "From a Thu Jan  1 00:00:00 1970\nX: 1\n\nFrom here on\nY: 2\n\n";
        let items = read_all(data.as_bytes());
        assert_eq!(items.len(), 2);
        assert_eq!(ok(&items, 0).raw, b"X: 1\r\n");
        assert_eq!(ok(&items, 1).from_line, "From here on");
        assert_eq!(ok(&items, 1).internal_date, None);
    }

    #[test]
    fn mboxo_ambiguity_resolved_as_mboxrd() {
        // In mboxo, ">From x" may be an original ">From x" or a quoted
        // "From x"; we always remove one '>'.
        let data = "From a Thu Jan  1 00:00:00 1970\n\n>From x\n>>From y\n";
        let items = read_all(data.as_bytes());
        assert_eq!(ok(&items, 0).raw, b"\r\nFrom x\r\n>From y\r\n");
    }

    #[test]
    fn oversized_message_is_skipped_and_reading_continues() {
        let big = "x".repeat(500);
        let data =
            format!("From a Thu Jan  1 00:00:00 1970\nX: 1\n\n{big}\n\nFrom b Thu Jan  1 00:00:00 1970\nX: 2\n\n");
        let reader = MboxReader::with_limits(Cursor::new(data.into_bytes()), Limits { max_message_size: 100 });
        let items: Vec<_> = reader.collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0], Err(p) if p.reason.contains("larger") && p.line == 1));
        assert_eq!(ok(&items, 1).raw, b"X: 2\r\n");
    }

    #[test]
    fn folded_status_header_is_removed() {
        let data = "From a Thu Jan  1 00:00:00 1970\nA: 1\nstatus: R\n O\nB: 2\n\nbody\n\n";
        let items = read_all(data.as_bytes());
        let m = ok(&items, 0);
        assert_eq!(m.raw, b"A: 1\r\nB: 2\r\n\r\nbody\r\n");
        assert!(m.flags.seen && !m.flags.recent);
    }

    #[test]
    fn status_in_body_is_not_a_flag() {
        let data = "From a Thu Jan  1 00:00:00 1970\nA: 1\n\nStatus: RO\n\n";
        let items = read_all(data.as_bytes());
        let m = ok(&items, 0);
        assert_eq!(m.raw, b"A: 1\r\n\r\nStatus: RO\r\n");
        assert!(!m.flags.seen);
    }

    #[test]
    fn io_error_is_reported_and_ends_iteration() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let items: Vec<_> = MboxReader::new(io::BufReader::new(Failing)).collect();
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], Err(p) if p.reason.contains("disk on fire")));
    }

    #[test]
    fn date_parsing_variants() {
        let d = |s: &str| parse_from_line_date(s.as_bytes());
        assert_eq!(d("From a Thu Jan  1 00:00:00 1970"), Some(0));
        assert_eq!(d("From a Thu Jan 1 00:00 1970"), Some(0));
        assert_eq!(d("From a Thu Jan  1 01:00:00 1970 +0100"), Some(0));
        assert_eq!(d("From a Thu Jan  1 00:00:00 PST 1970"), Some(0));
        assert_eq!(d("From a b c Sat Feb 29 12:00:00 2020 remote from x"), Some(1_582_977_600));
        assert_eq!(d("From  Thu Jan  1 00:00:00 1970"), Some(0));
        assert_eq!(d("From a Thu Feb 30 00:00:00 1970"), None);
        assert_eq!(d("From a Thu Jan  1 25:00:00 1970"), None);
        assert_eq!(d("From a Thu Jan  1 00:00:00"), None);
        assert_eq!(d("From a"), None);
        assert_eq!(d("Subject: x"), None);
        assert_eq!(d("From \u{fffd} Jan 99999999999999999999 0:00 1970"), None);
    }

    #[test]
    fn asctime_format() {
        assert_eq!(format_asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(format_asctime(1_582_977_600), "Sat Feb 29 12:00:00 2020");
        assert_eq!(format_asctime(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(format_asctime(-5), "Thu Jan  1 00:00:00 1970");
        assert_eq!(format_asctime(i64::MAX), "Fri Dec 31 23:59:59 9999");
        for t in [0, 59, 86_399, 951_782_400, 1_234_567_890, MAX_ASCTIME_SECS] {
            let line = format!("From x {}", format_asctime(t));
            assert_eq!(parse_from_line_date(line.as_bytes()), Some(t), "{line}");
        }
    }

    #[test]
    fn writer_output_shape() {
        let mut out = Vec::new();
        let flags = Flags { seen: true, deleted: true, draft: true, ..Flags::default() };
        let raw = b"Subject: x\r\nStatus: N\r\nX-Status: Z\r\n  folded\r\n\r\nFrom me\r\n>From you\r\n";
        write_mbox_message(&mut out, "a b@c", 0, &flags, raw).expect("write to vec");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "From a_b@c Thu Jan  1 00:00:00 1970\nSubject: x\nStatus: RO\nX-Status: TD\n\n\
>From me\n>>From you\n\n"
        );
        let mut out = Vec::new();
        write_mbox_message(&mut out, "", 0, &Flags::default(), b"").expect("write to vec");
        assert_eq!(String::from_utf8_lossy(&out), "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nStatus: O\n\n");
    }

    #[test]
    fn round_trip_preserves_bytes_flags_and_dates() {
        let all_flags = [
            Flags::default(),
            Flags { recent: true, ..Flags::default() },
            Flags { seen: true, answered: true, flagged: true, draft: true, deleted: true, recent: false },
            Flags { seen: true, recent: true, ..Flags::default() },
        ];
        let raws: [&[u8]; 8] = [
            b"Subject: a\r\n\r\nbody\r\n",
            b"Subject: b\r\n\r\nFrom x\r\n>From y\r\n>>From z\r\n\r\n\r\nFrom \r\n",
            b"",
            b"Subject: headers only\r\n",
            b"Subject: empty body\r\n\r\n",
            b"\r\nno headers\r\n",
            b"From: first header\r\nX: \xff\xfe binary\r\n\r\n.\r\n\r\n",
            b"Subject: c\r\n\r\nends with blank lines\r\n\r\n\r\n",
        ];
        let mut file = Vec::new();
        let mut expected = Vec::new();
        for (i, raw) in raws.iter().enumerate() {
            let flags = all_flags[i % all_flags.len()];
            let date = 1_000_000_000 + i as i64 * 3_601;
            write_mbox_message(&mut file, "sender@example.com", date, &flags, raw).expect("write to vec");
            expected.push((raw.to_vec(), flags, date));
        }
        let items = read_all(&file);
        assert_eq!(items.len(), expected.len());
        for (i, (raw, flags, date)) in expected.iter().enumerate() {
            let m = ok(&items, i);
            assert_eq!(&m.raw, raw, "message {i}");
            assert_eq!(&m.flags, flags, "message {i}");
            assert_eq!(m.internal_date, Some(*date), "message {i}");
        }
    }

    #[test]
    fn streams_without_holding_the_file() {
        // 2000 messages through a small BufReader: only one message at a time.
        let mut file = Vec::new();
        for i in 0..2000 {
            let raw = format!("Subject: {i}\r\n\r\nline\r\n");
            write_mbox_message(&mut file, "a@b", i, &Flags::default(), raw.as_bytes()).expect("write to vec");
        }
        let reader = MboxReader::new(io::BufReader::with_capacity(64, Cursor::new(file)));
        let mut n = 0;
        for item in reader {
            let m = item.expect("valid message");
            assert_eq!(m.raw, format!("Subject: {n}\r\n\r\nline\r\n").into_bytes());
            n += 1;
        }
        assert_eq!(n, 2000);
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet = b"From >\n\r:Status XRAOFTD0123 JanThu\xff";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let len = (next() % 300) as usize;
            let mut data: Vec<u8> = b"From ".to_vec();
            data.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
            let reader = MboxReader::with_limits(
                io::BufReader::with_capacity(7, Cursor::new(data)),
                Limits { max_message_size: 50 },
            );
            for item in reader {
                let _ = item;
            }
        }
    }
}
