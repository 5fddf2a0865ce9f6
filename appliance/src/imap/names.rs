//! Mailbox names on the wire: modified UTF-7 (RFC 3501 5.1.3) unless the
//! client enabled UTF8=ACCEPT or IMAP4rev2 (RFC 9051 5.1), and LIST wildcard
//! matching (RFC 9051 6.3.9: `*` matches across the `/` delimiter, `%` not).

/// Encodes a UTF-8 name as modified UTF-7 (the one implementation, shared
/// with the Maildir++ reader and writer).
pub fn encode_mutf7(name: &str) -> String {
    crate::mailio::maildir::encode_mutf7(name)
}

/// Decodes a modified UTF-7 name; `None` if it is not valid (canonical)
/// modified UTF-7.
pub fn decode_mutf7(name: &str) -> Option<String> {
    crate::mailio::maildir::decode_mutf7(name).ok()
}

/// Whether `name` matches the LIST pattern (reference already prepended).
/// INBOX is matched without regard to case (RFC 9051 5.1).
pub fn matches(pattern: &str, name: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    if name == "INBOX" {
        let upper: Vec<char> = pattern.chars().map(|c| c.to_ascii_uppercase()).collect();
        return wildcard(&upper, &n);
    }
    let p: Vec<char> = pattern.chars().collect();
    wildcard(&p, &n)
}

/// Dynamic programming over (pattern, name) positions: O(p * n) for any
/// pattern, so `*a*a*a...` cannot make us backtrack exponentially.
fn wildcard(p: &[char], n: &[char]) -> bool {
    // row[j]: pattern prefix matched so far can end at name position j.
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for c in p {
        let mut next = vec![false; n.len() + 1];
        match c {
            '*' => {
                let mut reachable = false;
                for j in 0..=n.len() {
                    reachable |= row[j];
                    next[j] = reachable;
                }
            }
            '%' => {
                let mut reachable = false;
                for j in 0..=n.len() {
                    if j > 0 && n[j - 1] == '/' {
                        reachable = false;
                    }
                    reachable |= row[j];
                    next[j] = reachable;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = row[j - 1] && n[j - 1] == *c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutf7_round_trips() {
        // RFC 3501 5.1.3 example plus the '&' escape.
        assert_eq!(encode_mutf7("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(), Some("~peter/mail/台北/日本語"));
        assert_eq!(encode_mutf7("A&B"), "A&-B");
        assert_eq!(decode_mutf7("A&-B").as_deref(), Some("A&B"));
        assert_eq!(decode_mutf7("Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(decode_mutf7("bad&Jjo"), None);
    }

    #[test]
    fn wildcards() {
        assert!(matches("*", "a/b"));
        assert!(matches("%", "a"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("In%", "INBOX"));
        assert!(!matches("Sent", "Sent/x"));
        assert!(matches("a%", "ab"));
        assert!(!matches("a%c", "a/c"));
        assert!(matches("*/c", "a/b/c"));
        // Many stars against a long name stay fast (no backtracking).
        let name = "a".repeat(500) + "b";
        assert!(!matches(&"*a".repeat(200), &(name.clone() + "x")));
        assert!(matches(&"*a".repeat(200), &name.replace('b', "a")));
    }
}
