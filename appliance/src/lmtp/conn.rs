//! Sans-IO LMTP server connection: owns the protocol state of one LMTP
//! session (RFC 2033) and nothing else. It never touches sockets, clocks,
//! mailboxes or the user database.
//!
//! The driver (the code owning the socket) does four things in a loop:
//!
//! 1. feed whatever bytes it read to [`LmtpConn::handle_input`];
//! 2. write every chunk [`LmtpConn::poll_output`] returns (the `220` greeting
//!    is available right after [`LmtpConn::new`]);
//! 3. act on every [`LmtpEvent`] from [`LmtpConn::poll_event`] and answer it
//!    with [`LmtpConn::recipient_checked`] or [`LmtpConn::delivery_done`];
//! 4. stop when [`LmtpConn::is_closed`] is true and the output is drained.
//!
//! While an event is unanswered the connection does not look at further
//! input: pipelined commands (RFC 2920) stay buffered, so replies always come
//! out in command order. Timeouts (RFC 5321 4.5.3.2) are the driver's job.
//!
//! Extensions: PIPELINING (RFC 2920), 8BITMIME (RFC 6152),
//! ENHANCEDSTATUSCODES (RFC 2034, codes from RFC 3463) and SIZE (RFC 1870).
//! Command syntax follows RFC 5321, leniently where real clients differ
//! (a space after `FROM:`/`TO:` is accepted).
//!
//! Also here: [`parse_recipient`], which splits `user+detail@domain`.

use thiserror::Error;

/// Tunable bounds of one connection. Every number the state machine enforces
/// lives here or in a named constant below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line accepted, counting the CRLF. RFC 5321 4.5.3.1.4
    /// sets 512 and lets extensions add to it; SIZE= and BODY= add about 40,
    /// and long quoted local parts exist, so 1000 (the RFC 5321 4.5.3.1.6
    /// text line limit) leaves room without letting a line grow unbounded.
    pub max_command_line: usize,
    /// Largest message accepted, in octets after dot-unstuffing and with CRLF
    /// line endings (the count RFC 1870 defines). Advertised as `SIZE n`.
    /// 50 MiB: above the 10 MB Postfix default `message_size_limit`, so the
    /// MTA in front of us rejects first and we never bounce what it accepted.
    pub max_message_size: u64,
    /// Accepted recipients per transaction. RFC 5321 4.5.3.1.8 requires
    /// servers to take at least 100.
    pub max_recipients: usize,
    /// Unprocessed input kept while an event is pending. A pipelining client
    /// (RFC 2920) may send a whole batch ahead; 100 RCPTs of 1000 octets is
    /// 100 kB, so 256 KiB covers any honest batch. Beyond it the connection
    /// replies 421 and closes. [`LmtpConn::wants_input`] turns false earlier
    /// so a well-behaved driver applies back-pressure instead.
    pub max_buffered_input: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_command_line: 1000,
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_buffered_input: 256 * 1024,
        }
    }
}

/// A DATA line with no LF yet is appended to the message in pieces once this
/// many bytes are buffered, so one endless line cannot grow the input buffer
/// past this plus one read. Must be well above 2 so that the `.` terminator
/// line is never split (see `flush_partial_data_line`).
const DATA_FLUSH_THRESHOLD: usize = 8 * 1024;

/// Driver-supplied reply text (TempFail reasons and the like) is cut to this
/// many bytes so a reply line stays inside the 512-octet reply line limit of
/// RFC 5321 4.5.3.1.5 together with the code and an address.
const MAX_REPLY_TEXT: usize = 200;

/// What the driver must do before the connection goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpEvent {
    /// A `RCPT TO` arrived; answer with [`LmtpConn::recipient_checked`].
    /// `address` is the mailbox without angle brackets or source route; for
    /// `RCPT TO:<Postmaster>` it has no domain (RFC 5321 4.1.1.3).
    CheckRecipient { address: String },
    /// A message is complete; deliver it to every recipient and answer with
    /// [`LmtpConn::delivery_done`].
    Deliver(Delivery),
}

/// A complete message and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Reverse path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    /// Accepted recipients in RCPT order (duplicates kept: each got a 250 and
    /// each gets its own reply after DATA, RFC 2033 4.2).
    pub recipients: Vec<String>,
    /// Message bytes: dot-unstuffed, every line ending CRLF, without the
    /// terminating `.` line.
    pub data: Vec<u8>,
    /// The argument the client gave to LHLO, for a Received: header.
    pub client_name: String,
    /// BODY= from MAIL FROM (RFC 6152).
    pub body: BodyType,
    /// SIZE= from MAIL FROM, if the client declared one (RFC 1870).
    pub declared_size: Option<u64>,
}

/// BODY= parameter of MAIL FROM (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// Answer to [`LmtpEvent::CheckRecipient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientVerdict {
    /// `250 2.1.5`
    Accept,
    /// `550 5.1.1` for this recipient only.
    Unknown,
    /// `451 4.3.0 <text>`: the client retries later.
    TempFail(String),
}

/// Outcome of delivery for one accepted recipient, in RCPT order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    /// `250 2.0.0`
    Delivered,
    /// `451 4.3.0 <text>` (RFC 3463 "other or undefined mail system status").
    TempFail(String),
    /// `550 5.3.0 <text>`
    PermFail(String),
}

/// Misuse of the connection API by the driver (never caused by the peer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LmtpError {
    #[error("recipient_checked called but no recipient check is pending")]
    NoRecipientPending,
    #[error("delivery_done called but no delivery is pending")]
    NoDeliveryPending,
}

/// Where the connection is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Between `354` and the `.` line.
    Data,
    /// After QUIT or a fatal 421; input is ignored.
    Closed,
}

/// What the connection waits for from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    Nothing,
    Recipient(String),
    /// Recipients of the delivery, for the per-recipient replies.
    Delivery(Vec<String>),
}

/// One mail transaction, from MAIL FROM until the end of DATA or RSET.
#[derive(Debug, Default)]
struct Transaction {
    mail_from: String,
    declared_size: Option<u64>,
    body: BodyType,
    recipients: Vec<String>,
    data: Vec<u8>,
    /// Set once `data` passed `max_message_size`; the rest is discarded.
    oversized: bool,
}

/// One LMTP server connection. See the module docs for the driver loop.
#[derive(Debug)]
pub struct LmtpConn {
    hostname: String,
    limits: Limits,
    phase: Phase,
    /// Input not yet consumed is `inbuf[inpos..]`; consumed bytes are dropped
    /// once per `handle_input` so many pipelined lines cost O(n), not O(n²).
    inbuf: Vec<u8>,
    inpos: usize,
    /// Inside an over-long command line: skip until its LF.
    discarding_line: bool,
    /// Inside a DATA line whose start was already flushed into the message.
    partial_data_line: bool,
    out: Vec<u8>,
    /// LHLO argument once LHLO succeeded; MAIL needs it (RFC 5321 4.1.4).
    lhlo: Option<String>,
    txn: Option<Transaction>,
    waiting: Waiting,
    /// The event not yet handed out by `poll_event`.
    event: Option<LmtpEvent>,
}

impl LmtpConn {
    /// A new connection; the `220` greeting is queued for `poll_output`.
    pub fn new(hostname: &str, limits: Limits) -> Self {
        let hostname = sanitize_text(hostname);
        let mut conn = LmtpConn {
            hostname,
            limits,
            phase: Phase::Command,
            inbuf: Vec::new(),
            inpos: 0,
            discarding_line: false,
            partial_data_line: false,
            out: Vec::new(),
            lhlo: None,
            txn: None,
            waiting: Waiting::Nothing,
            event: None,
        };
        let greeting = format!("220 {} LMTP server ready", conn.hostname);
        conn.reply(&greeting);
        conn
    }

    /// Feed bytes read from the peer. Never fails: protocol errors become
    /// replies. Input after QUIT is ignored.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        self.process();
    }

    /// Bytes to write to the peer, all queued replies in one chunk (RFC 2920
    /// 3.2 asks servers to batch pipelined replies), or `None`.
    pub fn poll_output(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// The next event the driver must answer. Each event is returned once; the
    /// connection stays paused until it is answered.
    pub fn poll_event(&mut self) -> Option<LmtpEvent> {
        self.event.take()
    }

    /// Answer to [`LmtpEvent::CheckRecipient`].
    pub fn recipient_checked(&mut self, verdict: RecipientVerdict) -> Result<(), LmtpError> {
        // Check the kind before taking it, so a wrong call changes nothing.
        if !matches!(self.waiting, Waiting::Recipient(_)) {
            return Err(LmtpError::NoRecipientPending);
        }
        let Waiting::Recipient(address) = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return Err(LmtpError::NoRecipientPending);
        };
        self.event = None;
        match verdict {
            RecipientVerdict::Accept => {
                if let Some(txn) = self.txn.as_mut() {
                    txn.recipients.push(address);
                }
                self.reply("250 2.1.5 Recipient OK");
            }
            RecipientVerdict::Unknown => {
                self.reply(&format!("550 5.1.1 <{}> No such user here", sanitize_text(&address)));
            }
            RecipientVerdict::TempFail(text) => {
                self.reply(&format!("451 4.3.0 {}", sanitize_text(&text)));
            }
        }
        self.process();
        Ok(())
    }

    /// Answer to [`LmtpEvent::Deliver`]: one result per recipient of the
    /// delivery, in order. Missing results become temporary failures (so
    /// nothing is lost silently); extra results are ignored.
    pub fn delivery_done(&mut self, results: Vec<RecipientResult>) -> Result<(), LmtpError> {
        if !matches!(self.waiting, Waiting::Delivery(_)) {
            return Err(LmtpError::NoDeliveryPending);
        }
        let Waiting::Delivery(recipients) = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return Err(LmtpError::NoDeliveryPending);
        };
        self.event = None;
        for (i, rcpt) in recipients.iter().enumerate() {
            let rcpt = sanitize_text(rcpt);
            let line = match results.get(i) {
                Some(RecipientResult::Delivered) => format!("250 2.0.0 <{rcpt}> Delivered"),
                Some(RecipientResult::TempFail(t)) => {
                    format!("451 4.3.0 <{rcpt}> {}", sanitize_text(t))
                }
                Some(RecipientResult::PermFail(t)) => {
                    format!("550 5.3.0 <{rcpt}> {}", sanitize_text(t))
                }
                None => format!("451 4.3.0 <{rcpt}> Internal error: no delivery result"),
            };
            self.reply(&line);
        }
        self.process();
        Ok(())
    }

    /// True after QUIT (or a fatal 421). Drain `poll_output` before closing
    /// the socket: the `221` is still queued.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Back-pressure hint: false when the driver should stop reading for now
    /// (closed, or pipelined input piling up behind a pending event).
    pub fn wants_input(&self) -> bool {
        self.phase != Phase::Closed && self.inbuf.len() - self.inpos < self.limits.max_buffered_input
    }

    // ---- input processing -------------------------------------------------

    /// Consume buffered input until it runs out, an event is pending, or the
    /// connection closes.
    fn process(&mut self) {
        while self.phase != Phase::Closed && self.waiting == Waiting::Nothing {
            let avail = &self.inbuf[self.inpos..];
            let lf = avail.iter().position(|&b| b == b'\n');
            match (self.phase, lf) {
                (Phase::Command, Some(i)) => {
                    let line = avail[..i].to_vec();
                    self.inpos += i + 1;
                    if self.discarding_line {
                        // Tail of a line already answered with "too long".
                        self.discarding_line = false;
                    } else if i + 1 > self.limits.max_command_line {
                        self.reply("500 5.5.2 Line too long");
                    } else {
                        self.handle_command(strip_cr(&line));
                    }
                }
                (Phase::Command, None) => {
                    // Answer an over-long line as soon as it is known to be
                    // too long (its LF would make it longer still), then drop
                    // what we have; this gives the same replies however the
                    // input is chunked.
                    if self.discarding_line {
                        self.inpos = self.inbuf.len();
                    } else if !avail.is_empty() && avail.len() >= self.limits.max_command_line {
                        self.reply("500 5.5.2 Line too long");
                        self.discarding_line = true;
                        self.inpos = self.inbuf.len();
                    }
                    break;
                }
                (Phase::Data, Some(i)) => {
                    let start = self.inpos;
                    self.inpos += i + 1;
                    self.data_line(start, start + i);
                }
                (Phase::Data, None) => {
                    self.flush_partial_data_line();
                    break;
                }
                (Phase::Closed, _) => break,
            }
        }
        self.inbuf.drain(..self.inpos);
        self.inpos = 0;
        if self.phase != Phase::Closed && self.inbuf.len() > self.limits.max_buffered_input {
            // Only reachable while an event is pending: otherwise at most one
            // partial line is buffered.
            self.reply("421 4.7.0 Too much pipelined input, closing connection");
            self.close();
        }
    }

    /// One complete DATA line, `inbuf[start..end]` without its LF.
    fn data_line(&mut self, start: usize, end: usize) {
        let line = strip_cr(&self.inbuf[start..end]);
        let partial = std::mem::replace(&mut self.partial_data_line, false);
        if !partial && line == b"." {
            self.end_of_data();
            return;
        }
        // RFC 5321 4.5.2: a leading dot was doubled by the client.
        let line = if !partial && line.first() == Some(&b'.') { &line[1..] } else { line };
        if let Some(txn) = self.txn.as_mut() {
            append_data(txn, self.limits.max_message_size, line);
            append_data(txn, self.limits.max_message_size, b"\r\n");
        }
    }

    /// Move the start of a long DATA line into the message so the input
    /// buffer stays bounded. A trailing CR stays buffered because it may be
    /// the first half of the CRLF. The flushed piece is far longer than the
    /// `.` terminator, so the terminator is never mistaken for a piece.
    fn flush_partial_data_line(&mut self) {
        let avail = &self.inbuf[self.inpos..];
        if avail.len() < DATA_FLUSH_THRESHOLD {
            return;
        }
        let take = if avail.last() == Some(&b'\r') { avail.len() - 1 } else { avail.len() };
        let piece = &avail[..take];
        let piece = if !self.partial_data_line && piece.first() == Some(&b'.') { &piece[1..] } else { piece };
        if let Some(txn) = self.txn.as_mut() {
            append_data(txn, self.limits.max_message_size, piece);
        }
        self.partial_data_line = true;
        self.inpos += take;
    }

    /// The `.` line arrived: reply per recipient if oversized, else hand the
    /// message to the driver.
    fn end_of_data(&mut self) {
        self.phase = Phase::Command;
        let Some(txn) = self.txn.take() else {
            return;
        };
        if txn.oversized {
            // RFC 2033 4.2: one reply per accepted recipient, even for errors.
            for rcpt in &txn.recipients {
                self.reply(&format!(
                    "552 5.3.4 <{}> Message size exceeds fixed maximum message size",
                    sanitize_text(rcpt)
                ));
            }
            return;
        }
        let recipients = txn.recipients.clone();
        self.event = Some(LmtpEvent::Deliver(Delivery {
            mail_from: txn.mail_from,
            recipients: txn.recipients,
            data: txn.data,
            client_name: self.lhlo.clone().unwrap_or_default(),
            body: txn.body,
            declared_size: txn.declared_size,
        }));
        self.waiting = Waiting::Delivery(recipients);
    }

    // ---- commands -----------------------------------------------------------

    fn handle_command(&mut self, line: &[u8]) {
        // Without SMTPUTF8 commands are ASCII; we still take UTF-8 addresses
        // but refuse bytes that are not even UTF-8.
        let Ok(line) = std::str::from_utf8(line) else {
            self.reply("500 5.5.2 Syntax error, invalid characters in command");
            return;
        };
        let (verb, args) = match line.split_once(' ') {
            Some((v, a)) => (v, a),
            None => (line, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "LHLO" => self.cmd_lhlo(args),
            "MAIL" => self.cmd_mail(args),
            "RCPT" => self.cmd_rcpt(args),
            "DATA" => self.cmd_data(args),
            "RSET" => self.cmd_rset(args),
            "NOOP" => self.reply("250 2.0.0 OK"),
            "QUIT" => self.cmd_quit(args),
            "VRFY" => self.cmd_vrfy(args),
            // RFC 2033 4.1: LMTP uses LHLO; SMTP greetings are a common
            // misconfiguration worth a clear message.
            "HELO" | "EHLO" => self.reply("500 5.5.2 This is LMTP, use LHLO"),
            _ => self.reply("500 5.5.2 Syntax error, command unrecognized"),
        }
    }

    fn cmd_lhlo(&mut self, args: &str) {
        let name = args.trim();
        if name.is_empty() || name.contains(char::is_whitespace) || has_control(name) {
            self.reply("501 5.5.4 Syntax: LHLO hostname");
            return;
        }
        // RFC 5321 4.1.4: a greeting resets any transaction.
        self.txn = None;
        self.lhlo = Some(name.to_string());
        let text = format!(
            "250-{}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE {}",
            self.hostname, self.limits.max_message_size
        );
        self.reply(&text);
    }

    fn cmd_mail(&mut self, args: &str) {
        if self.lhlo.is_none() {
            self.reply("503 5.5.1 Send LHLO first");
            return;
        }
        if self.txn.is_some() {
            self.reply("503 5.5.1 Nested MAIL command");
            return;
        }
        let Some(rest) = strip_prefix_ci(args, "FROM:") else {
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
            return;
        };
        let Some((address, params)) = parse_path(rest) else {
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>");
            return;
        };
        if !address.is_empty() && !valid_mailbox(&address) {
            self.reply("501 5.1.7 Bad sender address syntax");
            return;
        }
        let mut txn = Transaction { mail_from: address, ..Transaction::default() };
        for param in params.split_whitespace() {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (param, None),
            };
            match (key.to_ascii_uppercase().as_str(), value) {
                ("SIZE", Some(v)) if is_digits(v) => match v.parse::<u64>() {
                    Ok(n) => txn.declared_size = Some(n),
                    // More digits than u64 holds: certainly too big.
                    Err(_) => txn.declared_size = Some(u64::MAX),
                },
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {
                    txn.body = BodyType::SevenBit;
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                    txn.body = BodyType::EightBitMime;
                }
                ("SIZE" | "BODY", _) => {
                    self.reply("501 5.5.4 Invalid parameter value");
                    return;
                }
                _ => {
                    // RFC 5321 4.1.1.11: unknown MAIL parameter.
                    self.reply("555 5.5.4 Unsupported parameter");
                    return;
                }
            }
        }
        if txn.declared_size.is_some_and(|n| n > self.limits.max_message_size) {
            // RFC 1870 6.1: refuse early when the declared size is too big.
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
            return;
        }
        self.txn = Some(txn);
        self.reply("250 2.1.0 Sender OK");
    }

    fn cmd_rcpt(&mut self, args: &str) {
        let Some(txn) = self.txn.as_ref() else {
            self.reply("503 5.5.1 Need MAIL command first");
            return;
        };
        let accepted = txn.recipients.len();
        let Some(rest) = strip_prefix_ci(args, "TO:") else {
            self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
            return;
        };
        let Some((address, params)) = parse_path(rest) else {
            self.reply("501 5.5.4 Syntax: RCPT TO:<address>");
            return;
        };
        // RFC 5321 4.1.1.3: <Postmaster> without a domain must be accepted.
        if !(valid_mailbox(&address) || address.eq_ignore_ascii_case("postmaster")) {
            self.reply("501 5.1.3 Bad recipient address syntax");
            return;
        }
        if !params.trim().is_empty() {
            // No RCPT parameters are advertised (no DSN).
            self.reply("555 5.5.4 Unsupported parameter");
            return;
        }
        if accepted >= self.limits.max_recipients {
            self.reply("452 4.5.3 Too many recipients");
            return;
        }
        self.event = Some(LmtpEvent::CheckRecipient { address: address.clone() });
        self.waiting = Waiting::Recipient(address);
    }

    fn cmd_data(&mut self, args: &str) {
        let Some(txn) = self.txn.as_ref() else {
            self.reply("503 5.5.1 Need MAIL command first");
            return;
        };
        if !args.trim().is_empty() {
            self.reply("501 5.5.4 Syntax: DATA");
            return;
        }
        if txn.recipients.is_empty() {
            // RFC 2033 4.2: "If there were no successful RCPT commands in the
            // mail transaction, the DATA command MUST fail with a 503 reply
            // code." (RFC 5321 3.3 would also allow 554; LMTP says 503.)
            self.reply("503 5.5.1 No valid recipients");
            return;
        }
        self.phase = Phase::Data;
        self.partial_data_line = false;
        self.reply("354 Start mail input; end with <CRLF>.<CRLF>");
    }

    fn cmd_rset(&mut self, args: &str) {
        if !args.trim().is_empty() {
            self.reply("501 5.5.4 Syntax: RSET");
            return;
        }
        self.txn = None;
        self.reply("250 2.0.0 OK");
    }

    fn cmd_quit(&mut self, args: &str) {
        if !args.trim().is_empty() {
            self.reply("501 5.5.4 Syntax: QUIT");
            return;
        }
        let text = format!("221 2.0.0 {} closing connection", self.hostname);
        self.reply(&text);
        self.close();
    }

    fn cmd_vrfy(&mut self, args: &str) {
        if args.trim().is_empty() {
            self.reply("501 5.5.4 Syntax: VRFY address");
            return;
        }
        // RFC 5321 3.5.3: 252 when we neither verify nor refuse.
        self.reply("252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery");
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.inbuf.clear();
        self.inpos = 0;
        self.txn = None;
    }

    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Append message bytes, switching to discard mode past the size limit.
fn append_data(txn: &mut Transaction, limit: u64, bytes: &[u8]) {
    if txn.oversized {
        return;
    }
    let new_len = (txn.data.len() as u64).saturating_add(bytes.len() as u64);
    if new_len > limit {
        txn.oversized = true;
        // Free the memory now; the rest of DATA is only counted out.
        txn.data = Vec::new();
        return;
    }
    txn.data.extend_from_slice(bytes);
}

/// Drop one trailing CR (the CR of CRLF); a bare LF line has none.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Parse `<path>` (after `FROM:` or `TO:`), returning the mailbox without
/// brackets and source route, and the text after `>`. Leading spaces are
/// tolerated although RFC 5321 has none, because common clients send them.
fn parse_path(s: &str) -> Option<(String, &str)> {
    let inner = s.trim_start_matches(' ').strip_prefix('<')?;
    let bytes = inner.as_bytes();
    let mut i = 0;
    let mut in_quote = false;
    let close = loop {
        match bytes.get(i)? {
            b'\\' if in_quote => i += 2,
            b'"' => {
                in_quote = !in_quote;
                i += 1;
            }
            b'>' if !in_quote => break i,
            _ => i += 1,
        }
    };
    let mailbox = inner.get(..close)?;
    let rest = inner.get(close + 1..)?;
    // Parameters must be separated from the path by a space.
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    // RFC 5321 4.1.2 / appendix C: a source route "@a,@b:" is ignored.
    let mailbox = if mailbox.starts_with('@') { mailbox.split_once(':')?.1 } else { mailbox };
    Some((mailbox.to_string(), rest))
}

/// Loose RFC 5321 Mailbox check: local@domain, both non-empty, no spaces or
/// controls outside a quoted local part, a plausible domain or literal.
fn valid_mailbox(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || domain.is_empty() || has_control(addr) {
        return false;
    }
    let local_ok = if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        true
    } else {
        !local.contains(|c: char| c.is_whitespace() || "<>()[]\\,;:@\"".contains(c))
    };
    let domain_ok = if domain.starts_with('[') && domain.ends_with(']') {
        !domain.contains(char::is_whitespace)
    } else {
        domain.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    };
    local_ok && domain_ok
}

/// Make text safe inside one reply line: no CR/LF or other controls (which
/// would let driver text forge extra replies), bounded length.
fn sanitize_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_REPLY_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

// ---- sub-addressing ---------------------------------------------------------

/// Separator between user and detail (`user+detail@domain`), as in Postfix
/// `recipient_delimiter` and Dovecot's default.
pub const DETAIL_SEPARATOR: char = '+';

/// A recipient split for sub-addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Local part without the detail, quotes removed, case kept (local parts
    /// are case-sensitive by RFC 5321 2.4; folding is the caller's policy).
    pub local: String,
    /// Text after the first `+`, if any (may be empty for `user+@d`).
    pub detail: Option<String>,
    /// Domain, ASCII-lowercased. Empty for the bare `Postmaster` recipient.
    pub domain: String,
}

/// Why [`parse_recipient`] refused an address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("address has no '@': {0:?}")]
    NoAt(String),
    #[error("address has an empty local part or domain: {0:?}")]
    Empty(String),
}

/// Split `user+detail@domain`. The split is at the last `@` (quoted local
/// parts may contain `@`) and at the first `+` of the unquoted local part; a
/// leading `+` is not a separator (`+foo@d` has local `+foo`). Bare
/// `Postmaster` (RFC 5321 4.1.1.3) gives an empty domain.
pub fn parse_recipient(addr: &str) -> Result<Recipient, AddressError> {
    if addr.eq_ignore_ascii_case("postmaster") {
        return Ok(Recipient { local: addr.to_string(), detail: None, domain: String::new() });
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err(AddressError::NoAt(addr.to_string()));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(AddressError::Empty(addr.to_string()));
    }
    let local = unquote_local(local);
    let (local, detail) = match local.find(DETAIL_SEPARATOR) {
        Some(i) if i > 0 => (local[..i].to_string(), Some(local[i + DETAIL_SEPARATOR.len_utf8()..].to_string())),
        _ => (local, None),
    };
    Ok(Recipient { local, detail, domain: domain.to_ascii_lowercase() })
}

/// `"a\"b"` -> `a"b`; unquoted input is returned as is.
fn unquote_local(local: &str) -> String {
    let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
        return local.to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test driver: answers events with fixed policies and records what it
    /// saw. Unknown users are those whose local part starts with "nobody".
    #[derive(Default)]
    struct Driver {
        out: Vec<u8>,
        deliveries: Vec<Delivery>,
        checked: Vec<String>,
        /// Result for each delivered recipient, by address.
        results: Vec<(String, RecipientResult)>,
    }

    impl Driver {
        fn pump(&mut self, conn: &mut LmtpConn) {
            loop {
                while let Some(o) = conn.poll_output() {
                    self.out.extend_from_slice(&o);
                }
                let Some(ev) = conn.poll_event() else { break };
                match ev {
                    LmtpEvent::CheckRecipient { address } => {
                        self.checked.push(address.clone());
                        let v = if address.starts_with("nobody") {
                            RecipientVerdict::Unknown
                        } else if address.starts_with("busy") {
                            RecipientVerdict::TempFail("mailbox locked\r\n250 forged".into())
                        } else {
                            RecipientVerdict::Accept
                        };
                        conn.recipient_checked(v).expect("pending recipient");
                    }
                    LmtpEvent::Deliver(d) => {
                        let res = d
                            .recipients
                            .iter()
                            .map(|r| {
                                self.results
                                    .iter()
                                    .find(|(a, _)| a == r)
                                    .map(|(_, res)| res.clone())
                                    .unwrap_or(RecipientResult::Delivered)
                            })
                            .collect();
                        self.deliveries.push(d);
                        conn.delivery_done(res).expect("pending delivery");
                    }
                }
            }
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.out).into_owned()
        }
    }

    fn limits() -> Limits {
        Limits { max_message_size: 1000, max_recipients: 3, ..Limits::default() }
    }

    /// Run `input` in the given chunks; returns the driver.
    fn run_chunks(chunks: &[&[u8]], limits: Limits) -> Driver {
        let mut conn = LmtpConn::new("mx.test", limits);
        let mut d = Driver::default();
        d.pump(&mut conn);
        for c in chunks {
            conn.handle_input(c);
            d.pump(&mut conn);
        }
        d
    }

    fn run(input: &str) -> Driver {
        run_chunks(&[input.as_bytes()], limits())
    }

    /// Reply lines after the greeting.
    fn replies(d: &Driver) -> Vec<String> {
        d.text().split("\r\n").skip(1).filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    const START: &str = "LHLO client.test\r\nMAIL FROM:<a@b.test>\r\n";

    #[test]
    fn greeting_is_first_output() {
        let mut conn = LmtpConn::new("mx.test", Limits::default());
        assert_eq!(conn.poll_output().as_deref(), Some(&b"220 mx.test LMTP server ready\r\n"[..]));
        assert_eq!(conn.poll_output(), None);
        assert_eq!(conn.poll_event(), None);
    }

    #[test]
    fn lhlo_lists_extensions() {
        let d = run("LHLO client.test\r\n");
        assert_eq!(
            replies(&d),
            ["250-mx.test", "250-PIPELINING", "250-8BITMIME", "250-ENHANCEDSTATUSCODES", "250 SIZE 1000"]
        );
    }

    #[test]
    fn lhlo_needs_argument() {
        let d = run("LHLO\r\nLHLO a b\r\n");
        assert_eq!(replies(&d), ["501 5.5.4 Syntax: LHLO hostname", "501 5.5.4 Syntax: LHLO hostname"]);
    }

    #[test]
    fn helo_and_ehlo_are_refused() {
        let d = run("HELO x\r\nEHLO x\r\n");
        assert_eq!(replies(&d), ["500 5.5.2 This is LMTP, use LHLO", "500 5.5.2 This is LMTP, use LHLO"]);
    }

    #[test]
    fn unknown_and_empty_commands() {
        let d = run("FOO bar\r\n\r\n");
        assert_eq!(
            replies(&d),
            ["500 5.5.2 Syntax error, command unrecognized", "500 5.5.2 Syntax error, command unrecognized"]
        );
    }

    #[test]
    fn non_utf8_command_is_a_syntax_error() {
        let d = run_chunks(&[b"NOOP \xff\xfe\r\n"], limits());
        assert_eq!(replies(&d), ["500 5.5.2 Syntax error, invalid characters in command"]);
    }

    #[test]
    fn mail_before_lhlo_is_out_of_sequence() {
        let d = run("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
        assert_eq!(
            replies(&d),
            ["503 5.5.1 Send LHLO first", "503 5.5.1 Need MAIL command first", "503 5.5.1 Need MAIL command first"]
        );
    }

    #[test]
    fn mail_variants() {
        let d = run("LHLO c\r\n\
             mail from:<>\r\n\
             RSET\r\n\
             MAIL FROM: <a@b.test> SIZE=10 BODY=8BITMIME\r\n\
             MAIL FROM:<a@b.test>\r\n\
             RSET\r\n\
             MAIL FROM:a@b.test\r\n\
             MAIL FROM:<a b@c>\r\n\
             MAIL FROM:<a@b.test> SIZE=abc\r\n\
             MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n\
             MAIL FROM:<a@b.test> RET=FULL\r\n\
             MAIL FROM:<a@b.test> SIZE=1001\r\n\
             MAIL FROM:<a@b.test> SIZE=99999999999999999999999\r\n\
             MAIL FROM:<a@b.test>junk\r\n\
             MAIL TO:<a@b.test>\r\n\
             MAIL FROM:<@relay.test,@r2.test:a@b.test> BODY=7bit\r\n");
        let r = replies(&d);
        assert_eq!(
            &r[5..],
            [
                "250 2.1.0 Sender OK",
                "250 2.0.0 OK",
                "250 2.1.0 Sender OK",
                "503 5.5.1 Nested MAIL command",
                "250 2.0.0 OK",
                "501 5.5.4 Syntax: MAIL FROM:<address>",
                "501 5.1.7 Bad sender address syntax",
                "501 5.5.4 Invalid parameter value",
                "501 5.5.4 Invalid parameter value",
                "555 5.5.4 Unsupported parameter",
                "552 5.3.4 Message size exceeds fixed maximum message size",
                "552 5.3.4 Message size exceeds fixed maximum message size",
                "501 5.5.4 Syntax: MAIL FROM:<address>",
                "501 5.5.4 Syntax: MAIL FROM:<address>",
                "250 2.1.0 Sender OK",
            ]
        );
    }

    #[test]
    fn rcpt_variants() {
        let d = run(&format!(
            "{START}RCPT TO:<u@d.test>\r\n\
             RCPT TO:<nobody@d.test>\r\n\
             RCPT TO:<busy@d.test>\r\n\
             RCPT TO:<Postmaster>\r\n\
             RCPT TO:<\"odd > name\"@d.test>\r\n\
             RCPT TO:<x@d.test> NOTIFY=NEVER\r\n\
             RCPT TO:<>\r\n\
             RCPT FROM:<x@d.test>\r\n\
             RCPT TO:<x@d.test\r\n"
        ));
        let r = replies(&d);
        assert_eq!(
            &r[6..],
            [
                "250 2.1.5 Recipient OK",
                "550 5.1.1 <nobody@d.test> No such user here",
                // CR/LF in driver text must not forge a second reply.
                "451 4.3.0 mailbox locked  250 forged",
                "250 2.1.5 Recipient OK",
                "250 2.1.5 Recipient OK",
                "555 5.5.4 Unsupported parameter",
                "501 5.1.3 Bad recipient address syntax",
                "501 5.5.4 Syntax: RCPT TO:<address>",
                "501 5.5.4 Syntax: RCPT TO:<address>",
            ]
        );
        assert_eq!(d.checked, ["u@d.test", "nobody@d.test", "busy@d.test", "Postmaster", "\"odd > name\"@d.test"]);
    }

    #[test]
    fn too_many_recipients() {
        let d = run(&format!(
            "{START}RCPT TO:<a@d>\r\nRCPT TO:<b@d>\r\nRCPT TO:<nobody@d>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@d>\r\n"
        ));
        let r = replies(&d);
        assert_eq!(
            &r[6..],
            [
                "250 2.1.5 Recipient OK",
                "250 2.1.5 Recipient OK",
                "550 5.1.1 <nobody@d> No such user here",
                "250 2.1.5 Recipient OK",
                "452 4.5.3 Too many recipients",
            ]
        );
        // The refused one never reached the driver.
        assert_eq!(d.checked.len(), 4);
    }

    #[test]
    fn data_without_valid_recipients() {
        let d = run(&format!("{START}DATA\r\nRCPT TO:<nobody@d>\r\nDATA\r\nDATA x\r\n"));
        let r = replies(&d);
        assert_eq!(
            &r[6..],
            [
                "503 5.5.1 No valid recipients",
                "550 5.1.1 <nobody@d> No such user here",
                "503 5.5.1 No valid recipients",
                "501 5.5.4 Syntax: DATA",
            ]
        );
    }

    #[test]
    fn full_delivery_with_per_recipient_replies() {
        let mut conn = LmtpConn::new("mx.test", limits());
        let mut d = Driver {
            results: vec![
                ("b@d".into(), RecipientResult::TempFail("over quota".into())),
                ("c@d".into(), RecipientResult::PermFail("mailbox gone".into())),
            ],
            ..Driver::default()
        };
        d.pump(&mut conn);
        conn.handle_input(
            format!("{START}RCPT TO:<a@d>\r\nRCPT TO:<nobody@d>\r\nRCPT TO:<b@d>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
                .as_bytes(),
        );
        d.pump(&mut conn);
        conn.handle_input(b"Subject: hi\r\n\r\nbody\r\n.\r\n");
        d.pump(&mut conn);
        let r = replies(&d);
        assert_eq!(
            &r[6..],
            [
                "250 2.1.5 Recipient OK",
                "550 5.1.1 <nobody@d> No such user here",
                "250 2.1.5 Recipient OK",
                "250 2.1.5 Recipient OK",
                "354 Start mail input; end with <CRLF>.<CRLF>",
                "250 2.0.0 <a@d> Delivered",
                "451 4.3.0 <b@d> over quota",
                "550 5.3.0 <c@d> mailbox gone",
            ]
        );
        assert_eq!(d.deliveries.len(), 1);
        let del = &d.deliveries[0];
        assert_eq!(del.mail_from, "a@b.test");
        assert_eq!(del.recipients, ["a@d", "b@d", "c@d"]);
        assert_eq!(del.data, b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(del.client_name, "client.test");
        assert_eq!(del.body, BodyType::SevenBit);
        assert_eq!(del.declared_size, None);
        // The transaction ended: RCPT now needs MAIL again.
        conn.handle_input(b"RCPT TO:<a@d>\r\n");
        d.pump(&mut conn);
        assert!(d.text().ends_with("503 5.5.1 Need MAIL command first\r\n"));
    }

    #[test]
    fn dot_stuffing_and_terminator() {
        let d = run(&format!("{START}RCPT TO:<a@d>\r\nDATA\r\n..leading\r\n.\tnot end\r\n...\r\n. \r\nx.\r\n.\r\n"));
        assert_eq!(d.deliveries[0].data, b".leading\r\n\tnot end\r\n..\r\n \r\nx.\r\n");
    }

    #[test]
    fn bare_lf_is_accepted_and_normalised() {
        let d = run_chunks(&[b"LHLO c\nMAIL FROM:<a@b>\nRCPT TO:<a@d>\nDATA\nl1\nl2\r\n..l3\n.\nQUIT\n"], limits());
        assert_eq!(d.deliveries[0].data, b"l1\r\nl2\r\n.l3\r\n");
        assert!(d.text().ends_with("221 2.0.0 mx.test closing connection\r\n"));
    }

    #[test]
    fn empty_message() {
        let d = run(&format!("{START}RCPT TO:<a@d>\r\nDATA\r\n.\r\n"));
        assert_eq!(d.deliveries[0].data, b"");
    }

    #[test]
    fn size_limit_discards_and_replies_per_recipient() {
        let big = "x".repeat(600);
        let d = run(&format!("{START}RCPT TO:<a@d>\r\nRCPT TO:<b@d>\r\nDATA\r\n{big}\r\n{big}\r\n.\r\nNOOP\r\n"));
        assert!(d.deliveries.is_empty());
        let r = replies(&d);
        assert_eq!(
            &r[9..],
            [
                "552 5.3.4 <a@d> Message size exceeds fixed maximum message size",
                "552 5.3.4 <b@d> Message size exceeds fixed maximum message size",
                "250 2.0.0 OK",
            ]
        );
    }

    #[test]
    fn message_exactly_at_limit_is_accepted() {
        // 998 bytes + CRLF = 1000 = limit.
        let line = "y".repeat(998);
        let d = run(&format!("{START}RCPT TO:<a@d>\r\nDATA\r\n{line}\r\n.\r\n"));
        assert_eq!(d.deliveries[0].data.len(), 1000);
    }

    #[test]
    fn long_data_line_is_flushed_in_pieces() {
        // A 20 kB line with no LF yet must not stay in the input buffer.
        let lim = Limits { max_message_size: 1_000_000, ..Limits::default() };
        let mut conn = LmtpConn::new("mx.test", lim);
        let mut d = Driver::default();
        conn.handle_input(format!("{START}RCPT TO:<a@d>\r\nDATA\r\n").as_bytes());
        d.pump(&mut conn);
        let mut line = vec![b'.'];
        line.extend(std::iter::repeat_n(b'z', 20_000));
        line.push(b'\r');
        conn.handle_input(&line);
        assert!(conn.inbuf.len() < DATA_FLUSH_THRESHOLD);
        conn.handle_input(b"\n.\r\n");
        d.pump(&mut conn);
        let mut want = vec![b'z'; 20_000];
        want.extend_from_slice(b"\r\n");
        assert_eq!(d.deliveries[0].data, want);
    }

    #[test]
    fn command_line_too_long() {
        let long = format!("NOOP {}\r\n", "a".repeat(1000));
        // Whole line at once, and split so the limit is hit before the LF.
        let whole = run_chunks(&[long.as_bytes(), b"NOOP\r\n"], limits());
        let (a, b) = long.as_bytes().split_at(1001);
        let split = run_chunks(&[a, b, b"NOOP\r\n"], limits());
        for d in [whole, split] {
            assert_eq!(replies(&d), ["500 5.5.2 Line too long", "250 2.0.0 OK"]);
        }
    }

    #[test]
    fn command_line_at_limit_is_fine() {
        // 1000 octets including CRLF.
        let line = format!("NOOP {}\r\n", "a".repeat(1000 - 7));
        assert_eq!(line.len(), 1000);
        let d = run(&line);
        assert_eq!(replies(&d), ["250 2.0.0 OK"]);
    }

    #[test]
    fn rset_noop_vrfy_quit() {
        let d = run(&format!(
            "{START}RSET\r\nRCPT TO:<a@d>\r\nRSET x\r\nNOOP hello\r\nVRFY\r\nVRFY joe\r\nQUIT now\r\nQUIT\r\nNOOP\r\n"
        ));
        let r = replies(&d);
        assert_eq!(
            &r[6..],
            [
                "250 2.0.0 OK",
                "503 5.5.1 Need MAIL command first",
                "501 5.5.4 Syntax: RSET",
                "250 2.0.0 OK",
                "501 5.5.4 Syntax: VRFY address",
                "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery",
                "501 5.5.4 Syntax: QUIT",
                "221 2.0.0 mx.test closing connection",
            ]
        );
    }

    #[test]
    fn quit_closes_and_ignores_further_input() {
        let mut conn = LmtpConn::new("mx.test", limits());
        conn.handle_input(b"QUIT\r\nNOOP\r\n");
        assert!(conn.is_closed());
        assert!(!conn.wants_input());
        let out = conn.poll_output().unwrap_or_default();
        assert!(out.ends_with(b"221 2.0.0 mx.test closing connection\r\n"));
        conn.handle_input(b"NOOP\r\n");
        assert_eq!(conn.poll_output(), None);
    }

    #[test]
    fn lhlo_resets_transaction() {
        let d = run(&format!("{START}LHLO again\r\nRCPT TO:<a@d>\r\n"));
        assert!(d.text().ends_with("503 5.5.1 Need MAIL command first\r\n"));
    }

    #[test]
    fn pending_event_blocks_pipelined_input() {
        let mut conn = LmtpConn::new("mx.test", limits());
        let _ = conn.poll_output();
        conn.handle_input(
            format!("{START}RCPT TO:<a@d>\r\nRCPT TO:<b@d>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\n").as_bytes(),
        );
        let out = String::from_utf8(conn.poll_output().unwrap_or_default()).unwrap_or_default();
        assert!(out.ends_with("250 2.1.0 Sender OK\r\n"));
        assert_eq!(conn.poll_event(), Some(LmtpEvent::CheckRecipient { address: "a@d".into() }));
        // Handed out once; nothing more until answered.
        assert_eq!(conn.poll_event(), None);
        assert_eq!(conn.poll_output(), None);
        conn.handle_input(b"NOOP\r\n");
        assert_eq!(conn.poll_output(), None);
        // Wrong answer type is a driver error, not a state change.
        assert_eq!(conn.delivery_done(vec![]), Err(LmtpError::NoDeliveryPending));
        conn.recipient_checked(RecipientVerdict::Accept).expect("pending");
        assert_eq!(conn.poll_output().as_deref(), Some(&b"250 2.1.5 Recipient OK\r\n"[..]));
        assert_eq!(conn.poll_event(), Some(LmtpEvent::CheckRecipient { address: "b@d".into() }));
        conn.recipient_checked(RecipientVerdict::Accept).expect("pending");
        let Some(LmtpEvent::Deliver(del)) = conn.poll_event() else {
            panic!("expected delivery");
        };
        assert_eq!(del.data, b"hello\r\n");
        assert_eq!(conn.recipient_checked(RecipientVerdict::Accept), Err(LmtpError::NoRecipientPending));
        // Too few results: the missing one becomes a temporary failure.
        conn.delivery_done(vec![RecipientResult::Delivered]).expect("pending");
        let out = String::from_utf8(conn.poll_output().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            out,
            "250 2.1.5 Recipient OK\r\n354 Start mail input; end with <CRLF>.<CRLF>\r\n\
             250 2.0.0 <a@d> Delivered\r\n\
             451 4.3.0 <b@d> Internal error: no delivery result\r\n\
             250 2.0.0 OK\r\n250 2.0.0 OK\r\n"
        );
    }

    #[test]
    fn too_much_input_while_pending_closes() {
        let lim = Limits { max_buffered_input: 100, ..limits() };
        let mut conn = LmtpConn::new("mx.test", lim);
        conn.handle_input(format!("{START}RCPT TO:<a@d>\r\n").as_bytes());
        assert!(conn.wants_input());
        conn.handle_input(&b"NOOP\r\n".repeat(10));
        assert!(conn.wants_input());
        // Exactly at the limit: back-pressure, not yet closed.
        conn.handle_input(&b"NOOP ".repeat(8));
        assert!(!conn.wants_input());
        assert!(!conn.is_closed());
        conn.handle_input(b"x");
        assert!(conn.is_closed());
        let out = String::from_utf8(conn.poll_output().unwrap_or_default()).unwrap_or_default();
        assert!(out.ends_with("421 4.7.0 Too much pipelined input, closing connection\r\n"));
    }

    /// A session exercising most paths, for the chunking tests.
    fn full_session() -> Vec<u8> {
        let mut s = String::new();
        s.push_str("LHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME\r\n");
        s.push_str("RCPT TO:<u+tag@d.test>\r\nRCPT TO:<nobody@d.test>\r\nRCPT TO:<v@d.test>\r\n");
        s.push_str("DATA\r\nSubject: t\r\n\r\n..dot\r\nbare lf\nx\r\n.\r\n");
        s.push_str("MAIL FROM:<>\r\nRCPT TO:<w@d.test>\r\nDATA\r\n");
        s.push_str(&"q".repeat(1200));
        s.push_str("\r\n.\r\n");
        s.push_str("FOO\r\nVRFY x\r\nRSET\r\nNOOP\r\nQUIT\r\n");
        s.into_bytes()
    }

    #[test]
    fn every_split_point_gives_identical_output() {
        let input = full_session();
        let reference = run_chunks(&[&input], limits());
        assert!(reference.text().contains("552 5.3.4 <w@d.test>"));
        assert!(reference.text().ends_with("221 2.0.0 mx.test closing connection\r\n"));
        assert_eq!(reference.deliveries.len(), 1);
        assert_eq!(reference.deliveries[0].data, b"Subject: t\r\n\r\n.dot\r\nbare lf\r\nx\r\n");
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let d = run_chunks(&[a, b], limits());
            assert_eq!(d.out, reference.out, "split at {i}");
            assert_eq!(d.deliveries, reference.deliveries, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let d = run_chunks(&bytes, limits());
        assert_eq!(d.out, reference.out, "byte at a time");
        assert_eq!(d.deliveries, reference.deliveries);
    }

    #[test]
    fn parse_recipient_variants() {
        let r = |a: &str| parse_recipient(a);
        assert_eq!(
            r("user+tag@Example.COM"),
            Ok(Recipient { local: "user".into(), detail: Some("tag".into()), domain: "example.com".into() })
        );
        assert_eq!(r("user@d").map(|x| (x.local, x.detail)), Ok(("user".into(), None)));
        assert_eq!(r("user+a+b@d").map(|x| x.detail), Ok(Some("a+b".into())));
        assert_eq!(r("user+@d").map(|x| x.detail), Ok(Some(String::new())));
        assert_eq!(r("+x@d").map(|x| (x.local, x.detail)), Ok(("+x".into(), None)));
        assert_eq!(r("\"a@b+c\"@d").map(|x| (x.local, x.detail)), Ok(("a@b".into(), Some("c".into()))));
        assert_eq!(r("Postmaster").map(|x| x.domain), Ok(String::new()));
        assert!(matches!(r("nodomain"), Err(AddressError::NoAt(_))));
        assert!(matches!(r("@d"), Err(AddressError::Empty(_))));
        assert!(matches!(r("u@"), Err(AddressError::Empty(_))));
    }

    #[test]
    fn degenerate_limits_do_not_panic() {
        let zero = Limits { max_command_line: 0, max_message_size: 0, max_recipients: 0, max_buffered_input: 0 };
        let d = run_chunks(&[b"", b"LHLO x\r\n", b"", b"NOOP\r\n"], zero);
        assert_eq!(replies(&d), ["500 5.5.2 Line too long", "500 5.5.2 Line too long"]);
        let lim = Limits { max_recipients: 0, max_message_size: 0, ..Limits::default() };
        let d = run_chunks(&[format!("{START}RCPT TO:<a@d>\r\nDATA\r\n").as_bytes()], lim);
        assert!(d.text().ends_with("452 4.5.3 Too many recipients\r\n503 5.5.1 No valid recipients\r\n"));
    }

    #[test]
    fn garbage_input_never_panics() {
        // Cheap deterministic fuzz: pseudo-random bytes biased towards
        // protocol characters, in random chunks.
        let alphabet = b"LHMAIRCPTDQUOFVY:<>@. \r\n+=SIZE8BT\"\\\xff";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let len = (next() % 400) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let mut conn = LmtpConn::new("mx", limits());
            let mut d = Driver::default();
            conn.handle_input(START.as_bytes());
            for chunk in bytes.chunks(1 + (next() % 17) as usize) {
                conn.handle_input(chunk);
                d.pump(&mut conn);
            }
        }
    }
}
