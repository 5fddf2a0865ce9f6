//! Splits the client's byte stream into whole IMAP messages: command lines
//! with their literals (RFC 9051 4.3, RFC 7888 LITERAL+), and plain lines for
//! IDLE's `DONE` and AUTHENTICATE's continuation data. Sans-IO: bytes in,
//! frames out. It decides nothing about what a command means, only enforces the
//! size limits so that no client makes us buffer more than `Limits` allows.
//!
//! Grammar followed (RFC 9051 9):
//! ```text
//! message  = line *(literal line)
//! line     = *OCTET ["{" number ["+"] "}" | "~{" number ["+"] "}"] CRLF
//! literal  = number OCTETs
//! ```
//! A bare LF is accepted as a line end: several clients and scripts send it,
//! and accepting it cannot change the meaning of a correct CRLF stream.

use std::collections::VecDeque;

/// What the framer hands back.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message, line ends included, literals inline.
    Message(Vec<u8>),
    /// The client announced a synchronising literal within the limits: send
    /// `+` so it sends the bytes.
    LiteralAccepted,
    /// A synchronising literal over the limit: answer `tag NO [TOOBIG]`; the
    /// client does not send the bytes, and the command is over.
    LiteralRefused { head: Vec<u8> },
    /// A non-synchronising literal over the limit, or a line too long: the
    /// client will send the bytes regardless, so the only safe reply is
    /// `BYE` (RFC 7888 4) and closing the connection.
    Overflow { head: Vec<u8> },
}

/// Incremental message splitter. See the module doc.
#[derive(Debug)]
pub struct Framer {
    input: VecDeque<u8>,
    /// The message being assembled.
    message: Vec<u8>,
    /// Literal bytes still to copy into `message`.
    literal_remaining: usize,
    line_bytes_max: usize,
    literal_bytes_max: usize,
    command_bytes_max: usize,
    /// Set after an `Overflow`: the stream is no longer in sync, so nothing
    /// further is framed.
    broken: bool,
}

impl Framer {
    /// A framer with the given bounds.
    pub fn new(line_bytes_max: usize, literal_bytes_max: usize, command_bytes_max: usize) -> Framer {
        Framer {
            input: VecDeque::new(),
            message: Vec::new(),
            literal_remaining: 0,
            line_bytes_max,
            literal_bytes_max,
            command_bytes_max,
            broken: false,
        }
    }

    /// Adds received bytes. The buffer stays bounded because the driver runs
    /// the conn after every read, which takes out every complete frame: what
    /// remains is one partial command (at most `command_bytes_max`, else
    /// `Overflow`) plus one read.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if !self.broken {
            self.input.extend(bytes);
        }
    }

    /// Drops buffered input: after STARTTLS, bytes the client pipelined in
    /// plaintext must not be executed under TLS (CVE-2011-0411 class).
    pub fn discard_input(&mut self) {
        self.input.clear();
        self.message.clear();
        self.literal_remaining = 0;
    }

    /// Whether bytes are buffered that are not yet a whole frame.
    pub fn has_partial(&self) -> bool {
        !self.input.is_empty() || !self.message.is_empty()
    }

    /// The buffered input, when it is exactly one whole command line without
    /// a literal (one command per read, the usual case), so a caller can
    /// decide how to run it before it is framed.
    pub fn lone_line(&self) -> Option<Vec<u8>> {
        if self.broken || !self.message.is_empty() || self.literal_remaining > 0 {
            return None;
        }
        let lf = self.input.iter().position(|b| *b == b'\n')?;
        if lf + 1 != self.input.len() {
            return None;
        }
        let line: Vec<u8> = self.input.iter().copied().collect();
        let body = line.trim_ascii_end();
        (!body.ends_with(b"}")).then_some(line)
    }

    /// The next frame, if the buffered input completes one.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        if self.broken {
            return None;
        }
        loop {
            if self.literal_remaining > 0 {
                let n = self.literal_remaining.min(self.input.len());
                self.message.extend(self.input.drain(..n));
                self.literal_remaining -= n;
                if self.literal_remaining > 0 {
                    return None;
                }
            }
            let Some(lf) = self.input.iter().position(|b| *b == b'\n') else {
                if self.input.len() > self.line_bytes_max {
                    return Some(self.overflow());
                }
                return None;
            };
            if lf + 1 > self.line_bytes_max || self.message.len() + lf + 1 > self.command_bytes_max {
                return Some(self.overflow());
            }
            let line: Vec<u8> = self.input.drain(..=lf).collect();
            let body_end = if line.ends_with(b"\r\n") { line.len() - 2 } else { line.len() - 1 };
            let literal = literal_announced(&line[..body_end]);
            self.message.extend_from_slice(&line[..body_end]);
            self.message.extend_from_slice(b"\r\n");
            let Some(literal) = literal else {
                return Some(Frame::Message(std::mem::take(&mut self.message)));
            };
            let too_big =
                literal.len > self.literal_bytes_max || self.message.len() + literal.len > self.command_bytes_max;
            match (too_big, literal.sync) {
                (false, true) => {
                    // Even `{0}` waits for the continuation (RFC 9051 7.5).
                    self.literal_remaining = literal.len;
                    return Some(Frame::LiteralAccepted);
                }
                (false, false) => self.literal_remaining = literal.len,
                (true, true) => {
                    return Some(Frame::LiteralRefused { head: std::mem::take(&mut self.message) });
                }
                (true, false) => return Some(self.overflow()),
            }
        }
    }

    fn overflow(&mut self) -> Frame {
        self.broken = true;
        let mut head = std::mem::take(&mut self.message);
        head.extend(self.input.iter().take(64));
        self.input.clear();
        Frame::Overflow { head }
    }
}

struct Literal {
    len: usize,
    sync: bool,
}

/// `{N}`, `{N+}`, `~{N}` or `~{N+}` at the end of a line (without CRLF).
fn literal_announced(line: &[u8]) -> Option<Literal> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let mut digits = &inner[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // A length past u64 or usize is over every limit; saturate so the caller refuses it.
    let len = std::str::from_utf8(digits).ok()?.parse::<u64>().unwrap_or(u64::MAX);
    Some(Literal { len: usize::try_from(len).unwrap_or(usize::MAX), sync })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer() -> Framer {
        Framer::new(100, 50, 200)
    }

    #[test]
    fn a_lone_line_is_one_whole_line_without_a_literal() {
        let lone = |input: &[u8]| {
            let mut f = framer();
            f.handle_input(input);
            f.lone_line()
        };
        assert_eq!(lone(b"a1 NOOP\r\n"), Some(b"a1 NOOP\r\n".to_vec()));
        assert_eq!(lone(b"a1 NOOP\r\na2 NOOP\r\n"), None);
        assert_eq!(lone(b"a1 NOO"), None);
        assert_eq!(lone(b"a1 APPEND x {3}\r\n"), None);
        assert_eq!(lone(b"a1 APPEND x {3+}\r\n"), None);
    }

    #[test]
    fn plain_lines_and_pipelining() {
        // Two pipelined commands in one read come out as two messages; a bare LF ends a line too.
        let mut f = framer();
        f.handle_input(b"a1 NOOP\r\na2 CAPA");
        assert_eq!(f.poll_frame(), Some(Frame::Message(b"a1 NOOP\r\n".to_vec())));
        assert_eq!(f.poll_frame(), None);
        f.handle_input(b"BILITY\n");
        assert_eq!(f.poll_frame(), Some(Frame::Message(b"a2 CAPABILITY\r\n".to_vec())));
    }

    #[test]
    fn sync_literal_asks_for_continuation() {
        let mut f = framer();
        f.handle_input(b"a APPEND INBOX {5}\r\n");
        assert_eq!(f.poll_frame(), Some(Frame::LiteralAccepted));
        f.handle_input(b"hel");
        assert_eq!(f.poll_frame(), None);
        f.handle_input(b"lo\r\n");
        assert_eq!(f.poll_frame(), Some(Frame::Message(b"a APPEND INBOX {5}\r\nhello\r\n".to_vec())));
    }

    #[test]
    fn non_sync_literal_needs_no_continuation() {
        let mut f = framer();
        f.handle_input(b"a LOGIN {1+}\r\nx {2+}\r\nyz\r\n");
        assert_eq!(f.poll_frame(), Some(Frame::Message(b"a LOGIN {1+}\r\nx {2+}\r\nyz\r\n".to_vec())));
    }

    #[test]
    fn oversized_literals() {
        // A synchronising literal over the limit is refused and the stream stays usable.
        let mut f = framer();
        f.handle_input(b"a APPEND INBOX {51}\r\nb NOOP\r\n");
        assert_eq!(f.poll_frame(), Some(Frame::LiteralRefused { head: b"a APPEND INBOX {51}\r\n".to_vec() }));
        assert_eq!(f.poll_frame(), Some(Frame::Message(b"b NOOP\r\n".to_vec())));
        // A non-synchronising one cannot be skipped safely: overflow, then nothing more.
        let mut f = framer();
        f.handle_input(b"a APPEND INBOX {99999999999999999999+}\r\nb NOOP\r\n");
        assert!(matches!(f.poll_frame(), Some(Frame::Overflow { .. })));
        assert_eq!(f.poll_frame(), None);
    }

    #[test]
    fn endless_line_overflows_without_line_end() {
        let mut f = framer();
        f.handle_input(&[b'x'; 101]);
        assert!(matches!(f.poll_frame(), Some(Frame::Overflow { .. })));
    }

    #[test]
    fn braces_that_are_not_literals() {
        assert!(literal_announced(b"a SEARCH SUBJECT {x}").is_none());
        assert!(literal_announced(b"a SEARCH SUBJECT {}").is_none());
        assert!(literal_announced(b"a X ~{3+}").is_some_and(|l| l.len == 3 && !l.sync));
    }
}
