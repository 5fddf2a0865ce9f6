//! Command syntax imap-codec 2.0.0-alpha.10 does not parse, handled before it
//! sees the bytes: we take our options out of the command line, hand the rest
//! to imap-codec, and pass the options along as [`Extras`].
//!
//! Grammar we accept (on the first line of a command, before any literal):
//! ```text
//! list   = tag SP "LIST" [SP "(" sel-opt *(SP sel-opt) ")"] SP ref SP pat
//!          [SP "RETURN" SP "(" [ret-opt *(SP ret-opt)] ")"]          ; RFC 5258, 5819
//! ret-opt = "SUBSCRIBED" / "CHILDREN" / "SPECIAL-USE" / "STATUS" SP "(" atoms ")"
//! search = tag SP ["UID" SP] "SEARCH" SP "RETURN" SP "(" [atoms] ")" SP keys  ; RFC 4731
//! fetch  = ... "(CHANGEDSINCE 0" ...   ; RFC 7162 says >= 1; clients send 0
//! ```

/// Options taken out of the command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extras {
    /// LIST-EXTENDED options, when given.
    pub list: Option<ListOptions>,
    /// ESEARCH return options (upper-case atoms), when `RETURN (...)` was given.
    pub search_return: Option<Vec<String>>,
}

/// LIST selection and return options (RFC 5258 3, RFC 6154 5.1, RFC 5819).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// Selection option SUBSCRIBED.
    pub select_subscribed: bool,
    /// Selection option SPECIAL-USE.
    pub select_special_use: bool,
    /// Return option SUBSCRIBED.
    pub return_subscribed: bool,
    /// Return option SPECIAL-USE.
    pub return_special_use: bool,
    /// Return option STATUS with its items (upper-case).
    pub return_status: Option<Vec<String>>,
    /// Patterns after the first of `LIST ref (pat1 pat2 ...)` (RFC 5258 3);
    /// the first stays on the line for imap-codec. Unquoted, not yet decoded.
    pub more_patterns: Vec<String>,
}

/// The tag of a message, if its first token is a valid tag.
pub fn tag_of(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| matches!(b, b' ' | b'\r' | b'\n')).unwrap_or(bytes.len());
    let tag = std::str::from_utf8(&bytes[..end]).ok()?;
    let valid = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+'));
    valid.then(|| tag.to_string())
}

/// A more helpful reason than "syntax error" for common mistakes.
pub fn diagnose(bytes: &[u8]) -> Option<&'static str> {
    if std::str::from_utf8(bytes).is_err() {
        return Some("Invalid UTF-8 in command");
    }
    let words: Vec<&[u8]> = bytes.split(|b| *b == b' ').collect();
    if words.len() < 2 || tag_of(bytes).is_none() {
        return Some("Missing tag or command");
    }
    None
}

/// Takes our options out of `bytes`; returns the bytes for imap-codec.
pub fn extract(bytes: &[u8]) -> Result<(Vec<u8>, Extras), &'static str> {
    let line_end = bytes.iter().position(|b| *b == b'\n').map_or(bytes.len(), |i| i + 1);
    let Ok(line) = std::str::from_utf8(&bytes[..line_end]) else {
        return Ok((bytes.to_vec(), Extras::default()));
    };
    let rest = &bytes[line_end..];
    let mut words = line.splitn(3, ' ');
    let (Some(tag), Some(first)) = (words.next(), words.next()) else {
        return Ok((bytes.to_vec(), Extras::default()));
    };
    let after = words.next().unwrap_or("");
    let mut extras = Extras::default();
    let new_line = match first.to_ascii_uppercase().as_str() {
        "LIST" => {
            let (args, options) = list_options(after)?;
            extras.list = options;
            format!("{tag} LIST {args}")
        }
        "SEARCH" => {
            let (args, ret) = search_return(after)?;
            extras.search_return = ret;
            format!("{tag} SEARCH {args}")
        }
        "UID" if strip_prefix_ci(after, "SEARCH ").is_some() => {
            let (args, ret) = search_return(strip_prefix_ci(after, "SEARCH ").unwrap_or_default())?;
            extras.search_return = ret;
            format!("{tag} UID SEARCH {args}")
        }
        "FETCH" | "UID" => changedsince_zero(line),
        _ => return Ok((bytes.to_vec(), extras)),
    };
    let mut out = new_line.into_bytes();
    out.extend_from_slice(rest);
    Ok((out, extras))
}

/// `s` without `prefix`, compared without regard to ASCII case. Never slices
/// inside a multi-byte character (client input is arbitrary UTF-8).
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// `(...)` at the start of `s`: the inside and the remainder after `)`.
fn parens(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('(')?;
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[..i], &s[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

fn list_options(args: &str) -> Result<(String, Option<ListOptions>), &'static str> {
    let mut options = ListOptions::default();
    let mut extended = false;
    let mut args = args.to_string();
    if args.starts_with('(') {
        let (inside, rest) = parens(&args).ok_or("Unbalanced LIST selection options")?;
        for option in inside.split_ascii_whitespace() {
            match option.to_ascii_uppercase().as_str() {
                "SUBSCRIBED" => options.select_subscribed = true,
                "SPECIAL-USE" => options.select_special_use = true,
                // RECURSIVEMATCH only changes which parents show with
                // SUBSCRIBED; REMOTE is moot without referrals (RFC 5258 3).
                "RECURSIVEMATCH" | "REMOTE" => {}
                _ => return Err("Unknown LIST selection option"),
            }
        }
        extended = true;
        args = rest.trim_start().to_string();
    }
    let upper = args.to_ascii_uppercase();
    if let Some(at) = upper.rfind(" RETURN (") {
        let trailer = args[at + 8..].trim_end_matches(['\r', '\n']).to_string();
        let (inside, rest) = parens(&trailer).ok_or("Unbalanced LIST return options")?;
        if !rest.trim().is_empty() {
            return Err("Unexpected text after LIST return options");
        }
        let mut items = inside.split_ascii_whitespace().peekable();
        while let Some(option) = items.next() {
            match option.to_ascii_uppercase().as_str() {
                "SUBSCRIBED" => options.return_subscribed = true,
                "SPECIAL-USE" => options.return_special_use = true,
                "CHILDREN" => {}
                "STATUS" => {
                    let status_start = inside.to_ascii_uppercase().find("STATUS").ok_or("Bad STATUS option")? + 6;
                    let (status_items, _) = parens(inside[status_start..].trim_start()).ok_or("Bad STATUS option")?;
                    let status: Vec<String> =
                        status_items.split_ascii_whitespace().map(|s| s.to_ascii_uppercase()).collect();
                    for _ in 0..status.len() {
                        items.next();
                    }
                    options.return_status = Some(status);
                }
                _ => return Err("Unknown LIST return option"),
            }
        }
        extended = true;
        args = format!("{}\r\n", &args[..at]);
    }
    if let Some((line, patterns)) = pattern_list(&args)? {
        args = line;
        options.more_patterns = patterns;
        extended = true;
    }
    Ok((args, extended.then_some(options)))
}

/// `ref (pat1 pat2 ...)` (RFC 5258 3): the line with only `pat1` and the
/// other patterns; None when the pattern is a single one.
fn pattern_list(args: &str) -> Result<Option<(String, Vec<String>)>, &'static str> {
    let reference_end = if let Some(quoted) = args.strip_prefix('"') {
        1 + quoted_end(quoted).ok_or("Unterminated LIST reference")?
    } else {
        args.find(' ').unwrap_or(args.len())
    };
    let (reference, rest) = args.split_at(reference_end);
    let Some(list) = rest.strip_prefix(' ').filter(|r| r.starts_with('(')) else { return Ok(None) };
    let (inside, after) = parens(list).ok_or("Unbalanced LIST pattern list")?;
    if !after.trim_end_matches(['\r', '\n']).is_empty() {
        return Err("Unexpected text after LIST patterns");
    }
    let mut patterns = Vec::new();
    let mut rest = inside.trim_start();
    while !rest.is_empty() {
        let (pattern, len) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted_end(quoted).ok_or("Unterminated LIST pattern")?;
            (unquote(&quoted[..end - 1]), end + 1)
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_string(), end)
        };
        if pattern.contains(['{', '(', ')']) {
            return Err("Unsupported LIST pattern in a pattern list");
        }
        patterns.push(pattern);
        rest = rest[len..].trim_start();
    }
    if patterns.is_empty() {
        return Err("Empty LIST pattern list");
    }
    let first = patterns.remove(0);
    let mut line = format!("{reference} \"");
    for c in first.chars() {
        if matches!(c, '"' | '\\') {
            line.push('\\');
        }
        line.push(c);
    }
    line.push_str("\"\r\n");
    Ok(Some((line, patterns)))
}

/// In the text after an opening quote: the index just past the closing quote.
fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

fn search_return(args: &str) -> Result<(String, Option<Vec<String>>), &'static str> {
    let Some(options) = strip_prefix_ci(args, "RETURN ") else {
        return Ok((args.to_string(), None));
    };
    let (inside, rest) = parens(options.trim_start()).ok_or("Unbalanced SEARCH RETURN options")?;
    let options: Vec<String> = inside.split_ascii_whitespace().map(|s| s.to_ascii_uppercase()).collect();
    for option in &options {
        if !matches!(option.as_str(), "MIN" | "MAX" | "ALL" | "COUNT" | "SAVE") {
            return Err("Unknown SEARCH RETURN option");
        }
    }
    Ok((rest.trim_start().to_string(), Some(options)))
}

/// RFC 7162 3.1.4.1 requires CHANGEDSINCE >= 1, yet clients send 0 meaning
/// "everything". Our MODSEQs are clock-derived and far above 1, so 1 means
/// the same and imap-codec parses it.
fn changedsince_zero(line: &str) -> String {
    let upper = line.to_ascii_uppercase();
    match upper.find("CHANGEDSINCE 0") {
        Some(at) if !line[at + 14..].starts_with(|c: char| c.is_ascii_digit()) => {
            format!("{}CHANGEDSINCE 1{}", &line[..at], &line[at + 14..])
        }
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> (String, Extras) {
        let (b, e) = extract(s.as_bytes()).unwrap();
        (String::from_utf8(b).unwrap(), e)
    }

    #[test]
    fn list_extended_options_are_taken_out() {
        let (line, extras) = ex("a LIST (SPECIAL-USE) \"\" \"*\"\r\n");
        assert_eq!(line, "a LIST \"\" \"*\"\r\n");
        assert!(extras.list.unwrap().select_special_use);
        let (line, extras) = ex("a LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN) SUBSCRIBED)\r\n");
        assert_eq!(line, "a LIST \"\" \"*\"\r\n");
        let list = extras.list.unwrap();
        assert!(list.return_special_use && list.return_subscribed);
        assert_eq!(list.return_status.unwrap(), vec!["MESSAGES", "UNSEEN"]);
        let (line, extras) = ex("a LIST \"\" %\r\n");
        assert_eq!((line.as_str(), extras.list), ("a LIST \"\" %\r\n", None));
        assert!(extract(b"a LIST (BOGUS) \"\" *\r\n").is_err());
    }

    #[test]
    fn list_pattern_lists_are_taken_out() {
        let (line, extras) = ex("a LIST \"\" (\"INBOX\" Sent \"Dra\\\"fts\")\r\n");
        assert_eq!(line, "a LIST \"\" \"INBOX\"\r\n");
        assert_eq!(extras.list.unwrap().more_patterns, vec!["Sent", "Dra\"fts"]);
        let (line, extras) = ex("a LIST (SUBSCRIBED) \"a b\" (x y) RETURN (CHILDREN)\r\n");
        assert_eq!(line, "a LIST \"a b\" \"x\"\r\n");
        let list = extras.list.unwrap();
        assert!(list.select_subscribed);
        assert_eq!(list.more_patterns, vec!["y"]);
        assert!(extract(b"a LIST \"\" (x\r\n").is_err());
        assert!(extract(b"a LIST \"\" ()\r\n").is_err());
        assert!(extract(b"a LIST \"\" (\"x) y\r\n").is_err());
    }

    #[test]
    fn search_return_is_taken_out() {
        let (line, extras) = ex("a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n");
        assert_eq!(line, "a UID SEARCH UNSEEN\r\n");
        assert_eq!(extras.search_return.unwrap(), vec!["MIN", "COUNT"]);
        let (line, extras) = ex("a SEARCH RETURN () ALL\r\n");
        assert_eq!((line.as_str(), extras.search_return), ("a SEARCH ALL\r\n", Some(vec![])));
    }

    #[test]
    fn changedsince_zero_becomes_one() {
        assert_eq!(
            ex("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 0)\r\n").0,
            "a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)\r\n"
        );
        assert_eq!(ex("a FETCH 1 (FLAGS) (CHANGEDSINCE 05)\r\n").0, "a FETCH 1 (FLAGS) (CHANGEDSINCE 05)\r\n");
    }

    #[test]
    fn non_ascii_is_not_sliced_inside_a_character() {
        // Found by the conn fuzz test: byte-index slicing panicked here.
        assert!(extract("a UID ÿÿÿÿ\r\n".as_bytes()).is_ok());
        assert!(extract("a SEARCH ÿÿÿÿ\r\n".as_bytes()).is_ok());
        assert!(extract("a FETCH ÿ SEARCH\r\n".as_bytes()).is_ok());
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of(b"a1 NOOP").as_deref(), Some("a1"));
        assert_eq!(tag_of(b"* NOOP"), None);
        assert_eq!(tag_of(b"\xff NOOP"), None);
    }
}
