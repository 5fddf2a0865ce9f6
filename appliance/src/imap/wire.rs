//! Writing response syntax that imap-types cannot express or that we build
//! piecewise (FETCH items, ENVELOPE, BODYSTRUCTURE, extended LIST, ESEARCH).
//! Every string goes through `string`/`nstring`, which choose quoted or
//! literal form, so no caller can emit a malformed string (RFC 9051 4.3).

use std::io::Write as _;

/// Longest string we send quoted; longer ones go as literals so clients need
/// no special line-length handling.
const QUOTED_BYTES_MAX: usize = 256;

/// Writes `s` as an IMAP string: quoted when it is short printable ASCII or
/// UTF-8 text without CR/LF, a literal otherwise.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= QUOTED_BYTES_MAX
        && std::str::from_utf8(s).is_ok()
        && s.iter().all(|b| !matches!(b, b'\r' | b'\n' | 0) && (*b >= 0x20 || *b == b'\t'))
        && s.is_ascii();
    if quotable {
        out.push(b'"');
        for b in s {
            if matches!(b, b'"' | b'\\') {
                out.push(b'\\');
            }
            out.push(*b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Writes `s` as a literal. NUL is not allowed in a literal (RFC 9051 9,
/// CHAR8); it is sent as 0x80 the way Dovecot does, keeping the size.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(out, "{{{}}}\r\n", s.len());
    if s.contains(&0) {
        out.extend(s.iter().map(|b| if *b == 0 { 0x80 } else { *b }));
    } else {
        // The usual case: one copy, not a byte-by-byte map.
        out.extend_from_slice(s);
    }
}

/// Writes decoded BINARY data (RFC 3516 4.3): as a `~{n}` literal8 when it
/// holds NUL (which a plain literal cannot carry), else as a plain literal,
/// which every client parser reads.
pub fn binary_literal(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        let _ = write!(out, "~{{{}}}\r\n", s.len());
        out.extend_from_slice(s);
    } else {
        literal(out, s);
    }
}

/// `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Writes a parenthesised list of already-encoded items separated by spaces.
pub fn list<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'(');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        item(out, x);
    }
    out.push(b')');
}

/// Formats a set of numbers (sorted or not) as an IMAP sequence set with
/// ranges: `1:3,7,9:10`. Empty input gives an empty string.
pub fn number_set(numbers: &[u32]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\c");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        let mut out = Vec::new();
        string(&mut out, b"two\r\nlines");
        assert_eq!(out, b"{10}\r\ntwo\r\nlines");
        let mut out = Vec::new();
        string(&mut out, "Grüße".as_bytes());
        assert_eq!(out, b"{7}\r\nGr\xc3\xbc\xc3\x9fe");
        let mut out = Vec::new();
        literal(&mut out, b"a\0b");
        assert_eq!(out, b"{3}\r\na\x80b");
    }

    #[test]
    fn number_sets_use_ranges() {
        assert_eq!(number_set(&[9, 1, 2, 3, 7, 10]), "1:3,7,9:10");
        assert_eq!(number_set(&[]), "");
        assert_eq!(number_set(&[5]), "5");
    }
}
