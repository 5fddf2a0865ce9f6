//! Mailbox names on the wire: modified UTF-7 (RFC 3501 5.1.3) unless the
//! client enabled UTF8=ACCEPT or IMAP4rev2 (RFC 9051 5.1), and LIST wildcard
//! matching (RFC 9051 6.3.9: `*` matches across the `/` delimiter, `%` not).

use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

fn mutf7_engine() -> GeneralPurpose {
    // RFC 3501 5.1.3: "modified BASE64, with ',' used instead of '/'", no padding.
    let alphabet = match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,") {
        Ok(a) => a,
        Err(e) => unreachable!("constant alphabet is valid: {e}"),
    };
    GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::RequireNone),
    )
}

/// Encodes a UTF-8 name as modified UTF-7.
pub fn encode_mutf7(name: &str) -> String {
    let engine = mutf7_engine();
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a modified UTF-7 name; `None` if it is not valid modified UTF-7.
pub fn decode_mutf7(name: &str) -> Option<String> {
    let engine = mutf7_engine();
    let mut out = String::new();
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = engine.decode(encoded).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
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
