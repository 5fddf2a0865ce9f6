//! Message flags: the system flags of RFC 9051 2.3.2 and keywords.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest keyword we store; Dovecot and Cyrus use similar bounds and no client
/// sends longer ones.
pub const KEYWORD_BYTES_MAX: usize = 128;

/// The system flags in their canonical spelling (RFC 9051 2.3.2, less `\Recent`).
const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// A stored flag. `\Recent` is session state (RFC 3501 2.3.2) and never stored.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Flag(Cow<'static, str>);

impl Flag {
    /// `\Seen`.
    pub fn seen() -> Flag {
        Flag(Cow::Borrowed("\\Seen"))
    }
    /// `\Deleted`.
    pub fn deleted() -> Flag {
        Flag(Cow::Borrowed("\\Deleted"))
    }
    /// `\Flagged`.
    pub fn flagged() -> Flag {
        Flag(Cow::Borrowed("\\Flagged"))
    }
    /// `\Answered`.
    pub fn answered() -> Flag {
        Flag(Cow::Borrowed("\\Answered"))
    }
    /// `\Draft`.
    pub fn draft() -> Flag {
        Flag(Cow::Borrowed("\\Draft"))
    }

    /// Parses a flag as a client wrote it. System flags are matched without
    /// regard to case and stored in their canonical spelling; keywords are atoms
    /// kept as written. `\Recent` and unknown `\` flags are refused.
    pub fn parse(text: &str) -> Option<Flag> {
        if let Some(name) = text.strip_prefix('\\') {
            // System flags are shared constants: no allocation per flag read.
            return SYSTEM_FLAGS.iter().find(|f| f[1..].eq_ignore_ascii_case(name)).map(|f| Flag(Cow::Borrowed(f)));
        }
        let atom_ok = !text.is_empty()
            && text.len() <= KEYWORD_BYTES_MAX
            && text
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']'));
        atom_ok.then(|| Flag(Cow::Owned(text.into())))
    }

    /// Parses the space-separated flags the store keeps (`item_flags` joined
    /// with spaces); the error is the first flag that does not parse.
    pub fn parse_stored_list(text: &str) -> Result<Vec<Flag>, String> {
        text.split(' ').filter(|f| !f.is_empty()).map(|f| Flag::parse(f).ok_or_else(|| f.to_string())).collect()
    }

    /// The flag's text as IMAP shows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the system flags.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('\\')
    }
}

impl fmt::Debug for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_flags_are_canonical_and_recent_is_refused() {
        assert_eq!(Flag::parse("\\SEEN"), Some(Flag::seen()));
        assert_eq!(Flag::parse("\\recent"), None);
        assert_eq!(Flag::parse("\\Foo"), None);
        assert_eq!(Flag::parse("$Forwarded").unwrap().as_str(), "$Forwarded");
        assert_eq!(Flag::parse("has space"), None);
        assert_eq!(Flag::parse(""), None);
    }
}
