//! Mailbox names, special-use attributes and user names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Hierarchy delimiter of mailbox names, as LIST shows it.
pub const HIERARCHY_DELIMITER: char = '/';

/// Longest mailbox name in bytes. Dovecot's default is 255 per component; a
/// whole-name bound keeps rows small and matches common client limits.
pub const MAILBOX_NAME_BYTES_MAX: usize = 1024;

/// Longest user name in bytes (an email address fits: RFC 5321 4.5.3.1 allows
/// 64 + 1 + 255).
pub const USER_NAME_BYTES_MAX: usize = 320;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than the bound.
    #[error("name is longer than {0} bytes")]
    TooLong(usize),
    /// A character the name must not contain.
    #[error("name contains {0:?}, which is not allowed")]
    BadChar(char),
    /// Empty hierarchy level (`a//b`, leading or trailing `/`).
    #[error("name has an empty hierarchy level")]
    EmptyLevel,
}

/// A valid mailbox name in UTF-8 (IMAP's modified UTF-7 is converted at the
/// protocol edge). `INBOX` is matched without regard to case and always stored
/// as `INBOX` (RFC 9051 5.1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxName(String);

impl MailboxName {
    /// The user's inbox.
    pub fn inbox() -> MailboxName {
        MailboxName("INBOX".into())
    }

    /// Checked constructor.
    pub fn new(name: &str) -> Result<MailboxName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAILBOX_NAME_BYTES_MAX {
            return Err(NameError::TooLong(MAILBOX_NAME_BYTES_MAX));
        }
        if let Some(c) = name.chars().find(|c| c.is_control() || matches!(c, '*' | '%')) {
            return Err(NameError::BadChar(c));
        }
        if name.split(HIERARCHY_DELIMITER).any(str::is_empty) {
            return Err(NameError::EmptyLevel);
        }
        let mut levels = name.splitn(2, HIERARCHY_DELIMITER);
        let first = levels.next().unwrap_or_default();
        if first.eq_ignore_ascii_case("INBOX") {
            return Ok(match levels.next() {
                Some(rest) => MailboxName(format!("INBOX{HIERARCHY_DELIMITER}{rest}")),
                None => MailboxName::inbox(),
            });
        }
        Ok(MailboxName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is INBOX itself.
    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    /// The key two names are compared by when deciding whether they clash.
    pub fn key(&self) -> &str {
        &self.0
    }

    /// The parent names, nearest last (`a/b/c` gives `a`, `a/b`).
    pub fn ancestors(&self) -> Vec<MailboxName> {
        let mut out = Vec::new();
        for (i, c) in self.0.char_indices() {
            if c == HIERARCHY_DELIMITER {
                out.push(MailboxName(self.0[..i].to_string()));
            }
        }
        out
    }
}

impl fmt::Debug for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SPECIAL-USE attributes (RFC 6154).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    /// `\Sent`
    Sent,
    /// `\Drafts`
    Drafts,
    /// `\Trash`
    Trash,
    /// `\Junk`
    Junk,
    /// `\Archive`
    Archive,
    /// `\All`
    All,
    /// `\Flagged`
    Flagged,
}

impl SpecialUse {
    /// The attribute as IMAP writes it.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::All => "\\All",
            SpecialUse::Flagged => "\\Flagged",
        }
    }

    /// Parses an attribute (`\Sent`), case-insensitively.
    pub fn parse(attribute: &str) -> Option<SpecialUse> {
        let all = [
            SpecialUse::Sent,
            SpecialUse::Drafts,
            SpecialUse::Trash,
            SpecialUse::Junk,
            SpecialUse::Archive,
            SpecialUse::All,
            SpecialUse::Flagged,
        ];
        all.into_iter().find(|s| s.attribute().eq_ignore_ascii_case(attribute))
    }
}

/// The mailboxes every new user gets, with their special use.
pub const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 6] = [
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

/// A valid user (login) name: lower-case letters, digits and `._-+@`, as in an
/// email address's local part and domain. Stored lower-case so logins do not
/// depend on case.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserName(String);

impl UserName {
    /// Checked constructor; folds ASCII upper case to lower case.
    pub fn new(name: &str) -> Result<UserName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > USER_NAME_BYTES_MAX {
            return Err(NameError::TooLong(USER_NAME_BYTES_MAX));
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))) {
            return Err(NameError::BadChar(c));
        }
        Ok(UserName(name.to_ascii_lowercase()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_is_case_insensitive_and_canonical() {
        assert_eq!(MailboxName::new("inbox").unwrap(), MailboxName::inbox());
        assert_eq!(MailboxName::new("Inbox/Sub").unwrap().as_str(), "INBOX/Sub");
        assert_eq!(MailboxName::new("InboxX").unwrap().as_str(), "InboxX");
    }

    #[test]
    fn bad_mailbox_names_are_refused() {
        assert_eq!(MailboxName::new(""), Err(NameError::Empty));
        assert_eq!(MailboxName::new("a//b"), Err(NameError::EmptyLevel));
        assert_eq!(MailboxName::new("/a"), Err(NameError::EmptyLevel));
        assert_eq!(MailboxName::new("a*"), Err(NameError::BadChar('*')));
        assert_eq!(MailboxName::new("a\nb"), Err(NameError::BadChar('\n')));
        assert!(MailboxName::new("Ünïcødé/子").is_ok());
    }

    #[test]
    fn ancestors_nearest_last() {
        let name = MailboxName::new("a/b/c").unwrap();
        let names: Vec<_> = name.ancestors().iter().map(|n| n.as_str().to_string()).collect();
        assert_eq!(names, ["a", "a/b"]);
    }

    #[test]
    fn user_names() {
        assert_eq!(UserName::new("Alice@Example.org").unwrap().as_str(), "alice@example.org");
        assert_eq!(UserName::new("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(UserName::new(""), Err(NameError::Empty));
    }
}
