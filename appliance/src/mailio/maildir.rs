//! Maildir and Maildir++ import and export: owns the on-disk layout (folder
//! directories, `cur/new/tmp`, info suffixes in file names, modified UTF-7
//! folder names) and nothing about our own storage.
//!
//! Reading is in three steps so memory stays bounded by one folder's file
//! list plus one message: [`scan_folders`] finds folders, [`scan_messages`]
//! lists one folder's messages with flags and dates, [`read_message`] loads
//! one message. Problems (unreadable files, bad names) are collected and the
//! walk goes on.
//!
//! Layouts understood:
//! - the root's own `cur/`+`new/` is INBOX;
//! - Maildir++ (Courier, Dovecot default): `.A.B` under the root is folder
//!   `A/B`; each component is IMAP modified UTF-7 (RFC 3501 5.1.3);
//! - nested Maildirs (Dovecot `LAYOUT=fs`, mbsync `SubFolders Verbatim`):
//!   a directory holding `cur/` or `new/` is a folder, its name is its path
//!   below the root, components again modified UTF-7. A directory without
//!   them is searched for nested folders but is not itself a folder.
//!
//! A directory counts as a Maildir if it has `cur/` or `new/`; `tmp/` is not
//! required because backups and rsync excludes often drop it.
//!
//! [`MaildirWriter`] exports into a Maildir++ tree following the delivery
//! protocol: write to `tmp/`, fsync, link into `cur/` (never overwriting), then
//! fsync the directory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// Bounds of the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message [`read_message`] loads. 128 MiB: well above common
    /// mail size limits (Postfix default 10 MB, providers 25-50 MB), so real
    /// mail is never refused, while a stray huge file cannot exhaust memory.
    pub max_message_size: u64,
    /// Deepest nested-Maildir directory searched below the root. No RFC or
    /// Maildir spec sets one; real folder trees are a few levels deep, so 32
    /// never cuts real mail and stops runaway recursion through odd trees.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_size: 128 * 1024 * 1024, max_depth: 32 }
    }
}

/// How often the writer tries a fresh unique name before giving up; names
/// only collide if another writer uses the same pid and sequence number.
const MAX_NAME_ATTEMPTS: u32 = 100;

/// Files in folder directories that belong to other software, not mail.
const IGNORED_FILES: [&str; 3] = ["dovecot-uidlist", "maildirfolder", "subscriptions"];
/// Prefix of Dovecot's index files (`dovecot.index`, `.log`, `.cache`, ...).
const IGNORED_PREFIX: &str = "dovecot.index";
/// The info separator and version of Maildir file names (`unique:2,FLAGS`).
const INFO_MARKER: &[u8] = b":2,";

/// Special-use role of a folder (RFC 6154), guessed from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

/// One folder found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirFolder {
    /// IMAP name, `/` separated, decoded to UTF-8; `INBOX` for the root.
    pub name: String,
    /// The Maildir directory (holding `cur/` and/or `new/`).
    pub path: PathBuf,
    pub special_use: Option<SpecialUse>,
}

/// Flags from the `:2,` info suffix of a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaildirFlags {
    /// `S`: `\Seen`.
    pub seen: bool,
    /// `R`: `\Answered`.
    pub answered: bool,
    /// `F`: `\Flagged`.
    pub flagged: bool,
    /// `T`: `\Deleted` (trashed).
    pub deleted: bool,
    /// `D`: `\Draft`.
    pub draft: bool,
    /// `P` (passed): the `$Forwarded` keyword.
    pub forwarded: bool,
}

/// One message file found by [`scan_messages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirEntry {
    pub path: PathBuf,
    pub flags: MaildirFlags,
    /// Unix seconds: the file's mtime (Dovecot and Courier keep the received
    /// time there), else the timestamp that starts the file name.
    pub internal_date: Option<i64>,
    /// In `new/`: never seen by a client (`\Recent`).
    pub is_new: bool,
}

/// Something that could not be read or understood; the walk goes on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {reason}", path.display())]
pub struct MaildirProblem {
    pub path: PathBuf,
    pub reason: String,
}

/// Result of [`scan_folders`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderScan {
    /// Folders in a stable order: INBOX first, then by name.
    pub folders: Vec<MaildirFolder>,
    pub problems: Vec<MaildirProblem>,
}

/// Result of [`scan_messages`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageScan {
    /// Messages ordered by internal date, then file name.
    pub messages: Vec<MaildirEntry>,
    pub problems: Vec<MaildirProblem>,
}

/// Errors of the writer.
#[derive(Debug, Error)]
pub enum MaildirError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("folder name {name:?} cannot be stored in Maildir++: {reason}")]
    InvalidFolderName { name: String, reason: &'static str },
    #[error("no unique file name found in {}", dir.display())]
    NoUniqueName { dir: PathBuf },
}

/// Modified UTF-7 decoding failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MUtf7Error {
    #[error("character {0:?} is not allowed in modified UTF-7")]
    BadChar(char),
    #[error("'&' shift without closing '-'")]
    Unterminated,
    #[error("invalid modified base64 in shifted sequence")]
    BadBase64,
    #[error("shifted sequence does not decode to UTF-16")]
    BadUtf16,
    #[error("printable ASCII must not be base64-encoded")]
    NotCanonical,
}

// ---- folders ----------------------------------------------------------------------

/// Find every folder under `root`. See the module docs for the layouts.
pub fn scan_folders(root: &Path, limits: &Limits) -> FolderScan {
    let mut scan = FolderScan::default();
    let mut found: Vec<MaildirFolder> = Vec::new();
    if !root.is_dir() {
        scan.problems.push(problem(root, "not a directory"));
        return scan;
    }
    if is_maildir(root) {
        found.push(folder("INBOX".into(), root.to_path_buf()));
    }
    walk(root, None, 0, limits, &mut found, &mut scan.problems);

    // Two layouts may name the same folder (`.A` and `A/`): keep the first.
    found.sort_by(|a, b| (a.name != "INBOX", &a.name, &a.path).cmp(&(b.name != "INBOX", &b.name, &b.path)));
    for f in found {
        if scan.folders.iter().any(|g| g.name == f.name) {
            scan.problems.push(problem(&f.path, &format!("duplicate folder name {:?}, skipped", f.name)));
        } else {
            scan.folders.push(f);
        }
    }
    scan
}

/// Look at the subdirectories of `dir`, which is `depth` levels below the
/// root. `prefix` is the folder name of `dir` for nested layouts (`None` at
/// the root, where `.A.B` means Maildir++).
fn walk(
    dir: &Path,
    prefix: Option<&str>,
    depth: usize,
    limits: &Limits,
    found: &mut Vec<MaildirFolder>,
    problems: &mut Vec<MaildirProblem>,
) {
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(problem(dir, &format!("cannot list directory: {e}")));
            return;
        }
    };
    for (name, path) in entries {
        let ftype = match fs::symlink_metadata(&path) {
            Ok(m) => m.file_type(),
            Err(e) => {
                problems.push(problem(&path, &format!("cannot stat: {e}")));
                continue;
            }
        };
        if ftype.is_symlink() {
            // Following links risks loops and importing the same mail twice.
            if path.is_dir() {
                problems.push(problem(&path, "symbolic link to a directory, not followed"));
            }
            continue;
        }
        if !ftype.is_dir() {
            // dovecot-uidlist, dovecot.index*, maildirfolder, subscriptions,
            // courierimap* and any other bookkeeping files.
            continue;
        }
        let name_bytes = name.as_encoded_bytes();
        if matches!(name_bytes, b"cur" | b"new" | b"tmp") {
            continue;
        }
        if depth + 1 > limits.max_depth {
            problems.push(problem(&path, "folder tree too deep, not searched"));
            continue;
        }
        let Some(name) = name.to_str() else {
            problems.push(problem(&path, "folder name is not valid UTF-8"));
            continue;
        };
        if prefix.is_none() && name.starts_with('.') {
            maildirpp_folder(&path, name, found, problems);
            continue;
        }
        let decoded = match decode_folder_component(name) {
            Ok(d) => d,
            Err(e) => {
                problems.push(problem(&path, &format!("invalid folder name: {e}")));
                continue;
            }
        };
        let full = match prefix {
            Some(p) => format!("{p}/{decoded}"),
            None => decoded,
        };
        if is_maildir(&path) {
            found.push(folder(full.clone(), path.clone()));
        }
        walk(&path, Some(&full), depth + 1, limits, found, problems);
    }
}

/// A `.A.B` directory at the root.
fn maildirpp_folder(path: &Path, dir_name: &str, found: &mut Vec<MaildirFolder>, problems: &mut Vec<MaildirProblem>) {
    let mut parts = Vec::new();
    for component in dir_name[1..].split('.') {
        if component.is_empty() {
            problems.push(problem(path, "invalid folder name: empty hierarchy component"));
            return;
        }
        match decode_folder_component(component) {
            Ok(d) => parts.push(d),
            Err(e) => {
                problems.push(problem(path, &format!("invalid folder name: {e}")));
                return;
            }
        }
    }
    if !is_maildir(path) {
        problems.push(problem(path, "not a Maildir (no cur/ or new/), skipped"));
        return;
    }
    found.push(folder(parts.join("/"), path.to_path_buf()));
}

/// Names on disk are modified UTF-7, but Dovecot with the `UTF-8` layout
/// option (and some hand-made trees) store plain UTF-8; a non-ASCII name
/// without `&` can only be that, so it is taken as is.
fn decode_folder_component(name: &str) -> Result<String, MUtf7Error> {
    if !name.is_ascii() && !name.contains('&') && !name.chars().any(char::is_control) {
        return Ok(name.to_string());
    }
    decode_mutf7(name)
}

fn folder(name: String, path: PathBuf) -> MaildirFolder {
    let special_use = special_use_for(&name);
    MaildirFolder { name, path, special_use }
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Directory entries sorted by name, for deterministic output.
fn sorted_entries(dir: &Path) -> io::Result<Vec<(std::ffi::OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}

fn problem(path: &Path, reason: &str) -> MaildirProblem {
    MaildirProblem { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Special-use role by name, case-insensitively, for top-level folders and
/// for folders directly under INBOX (Courier-style `INBOX.Sent`).
pub fn special_use_for(name: &str) -> Option<SpecialUse> {
    let lower = name.to_lowercase();
    let base = lower.strip_prefix("inbox/").unwrap_or(&lower);
    match base {
        "sent" | "sent items" | "sent messages" => Some(SpecialUse::Sent),
        "drafts" => Some(SpecialUse::Drafts),
        "trash" | "deleted items" | "deleted messages" => Some(SpecialUse::Trash),
        "junk" | "spam" => Some(SpecialUse::Junk),
        "archive" | "archives" => Some(SpecialUse::Archive),
        _ => None,
    }
}

// ---- messages -----------------------------------------------------------------------

/// List the messages of one folder (`new/` and `cur/`). Hidden files and
/// Dovecot/Courier bookkeeping files are skipped.
pub fn scan_messages(folder: &MaildirFolder) -> MessageScan {
    let mut scan = MessageScan::default();
    for (sub, is_new) in [("new", true), ("cur", false)] {
        let dir = folder.path.join(sub);
        let entries = match sorted_entries(&dir) {
            Ok(e) => e,
            // A Maildir needs only one of cur/ and new/.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                scan.problems.push(problem(&dir, &format!("cannot list directory: {e}")));
                continue;
            }
        };
        for (name, path) in entries {
            let bytes = name.as_encoded_bytes();
            if bytes.starts_with(b".") || is_ignored_file(bytes) {
                continue;
            }
            // Follows symlinks: a linked message file is still a message.
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    scan.problems.push(problem(&path, &format!("cannot stat: {e}")));
                    continue;
                }
            };
            if !meta.is_file() {
                continue;
            }
            let internal_date = meta.modified().ok().map(system_time_secs).or_else(|| leading_timestamp(bytes));
            scan.messages.push(MaildirEntry { flags: parse_info_flags(bytes), path, internal_date, is_new });
        }
    }
    scan.messages.sort_by(|a, b| (a.internal_date, &a.path).cmp(&(b.internal_date, &b.path)));
    scan
}

fn is_ignored_file(name: &[u8]) -> bool {
    IGNORED_FILES.iter().any(|f| name == f.as_bytes()) || name.starts_with(IGNORED_PREFIX.as_bytes())
}

/// Flags from `unique:2,FLAGS`. Lowercase letters are Dovecot keyword
/// indexes into `dovecot-keywords` and unknown letters are ignored.
pub fn parse_info_flags(file_name: &[u8]) -> MaildirFlags {
    let mut flags = MaildirFlags::default();
    let Some(pos) = file_name.windows(INFO_MARKER.len()).rposition(|w| w == INFO_MARKER) else {
        return flags;
    };
    for &b in &file_name[pos + INFO_MARKER.len()..] {
        match b {
            b'P' => flags.forwarded = true,
            b'R' => flags.answered = true,
            b'S' => flags.seen = true,
            b'T' => flags.deleted = true,
            b'D' => flags.draft = true,
            b'F' => flags.flagged = true,
            // Dovecot appends ",S=size" style fields before the info only,
            // so anything else here is a keyword or unknown flag.
            _ => {}
        }
    }
    flags
}

/// The info letters for `flags`, in the ASCII order the spec requires.
pub fn info_letters(flags: &MaildirFlags) -> String {
    [
        (flags.draft, 'D'),
        (flags.flagged, 'F'),
        (flags.forwarded, 'P'),
        (flags.answered, 'R'),
        (flags.seen, 'S'),
        (flags.deleted, 'T'),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, c)| *c)
    .collect()
}

/// The decimal seconds that start a Maildir unique name (`1700000000.M...`).
fn leading_timestamp(name: &[u8]) -> Option<i64> {
    let digits = name.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || name.get(digits) != Some(&b'.') {
        return None;
    }
    std::str::from_utf8(&name[..digits]).ok()?.parse().ok()
}

fn system_time_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Load one message, with every line ending turned into CRLF (Maildir files
/// normally use LF; IMAP needs CRLF).
pub fn read_message(path: &Path, limits: &Limits) -> Result<Vec<u8>, MaildirProblem> {
    let file = File::open(path).map_err(|e| problem(path, &format!("cannot open: {e}")))?;
    let mut raw = Vec::new();
    file.take(limits.max_message_size.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| problem(path, &format!("cannot read: {e}")))?;
    if raw.len() as u64 > limits.max_message_size {
        return Err(problem(path, &format!("message larger than the {} byte limit, skipped", limits.max_message_size)));
    }
    Ok(to_crlf(&raw))
}

/// Bare LF -> CRLF; existing CRLF untouched.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

// ---- modified UTF-7 (RFC 3501 5.1.3) ----------------------------------------------------

/// Modified base64 alphabet: RFC 2045 base64 with `,` instead of `/`.
const MB64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn mb64_value(b: u8) -> Option<u32> {
    MB64.iter().position(|&c| c == b).map(|v| v as u32)
}

/// Decode an IMAP modified UTF-7 mailbox name strictly: printable ASCII
/// except `&` stands for itself, `&-` is `&`, `&...-` is modified base64 of
/// UTF-16BE that must not encode printable ASCII and must have zero padding.
pub fn decode_mutf7(s: &str) -> Result<String, MUtf7Error> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '&' {
            if !(' '..='~').contains(&c) {
                return Err(MUtf7Error::BadChar(c));
            }
            out.push(c);
            continue;
        }
        let rest = &s[i + 1..];
        let end = rest.find('-').ok_or(MUtf7Error::Unterminated)?;
        let encoded = &rest.as_bytes()[..end];
        // Skip the shifted run and its '-' in the char iterator.
        for _ in 0..=end {
            chars.next();
        }
        if encoded.is_empty() {
            out.push('&');
            continue;
        }
        let mut bytes = Vec::with_capacity(encoded.len());
        let mut acc: u32 = 0;
        let mut nbits = 0u32;
        for &b in encoded {
            let v = mb64_value(b).ok_or(MUtf7Error::BadBase64)?;
            acc = (acc << 6) | v;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                bytes.push((acc >> nbits) as u8);
                acc &= (1 << nbits) - 1;
            }
        }
        // Canonical encoding leaves fewer than 6 zero bits.
        if nbits >= 6 || acc != 0 || bytes.len() % 2 != 0 {
            return Err(MUtf7Error::BadBase64);
        }
        let units = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
        for ch in char::decode_utf16(units) {
            let ch = ch.map_err(|_| MUtf7Error::BadUtf16)?;
            if (' '..='~').contains(&ch) {
                return Err(MUtf7Error::NotCanonical);
            }
            out.push(ch);
        }
    }
    Ok(out)
}

/// Encode a mailbox name as IMAP modified UTF-7.
pub fn encode_mutf7(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush_mb64(&mut out, &mut pending);
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
    flush_mb64(&mut out, &mut pending);
    out
}

fn flush_mb64(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut nbits = 0u32;
    for u in units.drain(..) {
        for byte in u.to_be_bytes() {
            acc = (acc << 8) | u32::from(byte);
            nbits += 8;
            while nbits >= 6 {
                nbits -= 6;
                out.push(char::from(MB64[((acc >> nbits) & 0x3f) as usize]));
            }
            acc &= (1 << nbits) - 1;
        }
    }
    if nbits > 0 {
        out.push(char::from(MB64[((acc << (6 - nbits)) & 0x3f) as usize]));
    }
    out.push('-');
}

// ---- writer ---------------------------------------------------------------------------

/// Sequence number shared by all writers in the process, so two writers on
/// the same tree never pick the same unique name.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Exports messages into a Maildir++ tree.
#[derive(Debug)]
pub struct MaildirWriter {
    root: PathBuf,
    /// Host part of unique names, with `/` and `:` escaped as the Maildir
    /// spec asks (`\057`, `\072`).
    host: String,
    /// Folder name -> Maildir directory, for folders already created.
    folders: HashMap<String, PathBuf>,
}

impl MaildirWriter {
    /// Create (if needed) the root Maildir, which is INBOX.
    pub fn new(root: impl Into<PathBuf>, hostname: &str) -> Result<Self, MaildirError> {
        let root = root.into();
        make_maildir(&root)?;
        let host: String = hostname
            .chars()
            .map(|c| match c {
                '/' => "\\057".to_string(),
                ':' => "\\072".to_string(),
                c if c.is_control() || c.is_whitespace() => "_".to_string(),
                c => c.to_string(),
            })
            .collect();
        let host = if host.is_empty() { "localhost".to_string() } else { host };
        Ok(MaildirWriter { root, host, folders: HashMap::new() })
    }

    /// Directory for folder `name` (`/`-separated IMAP name; `INBOX` in any
    /// case is the root), created with `cur/new/tmp` and the Maildir++
    /// `maildirfolder` marker. Names with `.` (the Maildir++ separator) or
    /// empty components cannot be stored.
    pub fn create_folder(&mut self, name: &str) -> Result<PathBuf, MaildirError> {
        if let Some(p) = self.folders.get(name) {
            return Ok(p.clone());
        }
        let path = if name.eq_ignore_ascii_case("INBOX") {
            self.root.clone()
        } else {
            let mut dir = String::new();
            for component in name.split('/') {
                let invalid = |reason| MaildirError::InvalidFolderName { name: name.to_string(), reason };
                if component.is_empty() {
                    return Err(invalid("empty hierarchy component"));
                }
                if component.contains('.') {
                    return Err(invalid("contains '.', the Maildir++ hierarchy separator"));
                }
                if component.chars().any(char::is_control) {
                    return Err(invalid("contains control characters"));
                }
                dir.push('.');
                dir.push_str(&encode_mutf7(component));
            }
            let path = self.root.join(dir);
            make_maildir(&path)?;
            let marker = path.join("maildirfolder");
            File::create(&marker).map_err(|source| MaildirError::Io { path: marker, source })?;
            path
        };
        self.folders.insert(name.to_string(), path.clone());
        Ok(path)
    }

    /// Store one message in `cur/` of `folder` as
    /// `<time>.<pid>_<seq>.<host>:2,<FLAGS>`, where time is `internal_date`
    /// (or now), pid is this process and seq a process-wide counter. The
    /// file's mtime is set to `internal_date` so readers recover it. Bytes
    /// are written as given (no line-ending conversion). Returns the path.
    pub fn write_message(
        &mut self,
        folder: &str,
        raw: &[u8],
        flags: &MaildirFlags,
        internal_date: Option<i64>,
    ) -> Result<PathBuf, MaildirError> {
        let dir = self.create_folder(folder)?;
        let secs = internal_date.unwrap_or_else(|| system_time_secs(SystemTime::now()));
        let info = info_letters(flags);
        for _ in 0..MAX_NAME_ATTEMPTS {
            let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            let unique = format!("{secs}.{}_{seq}.{}", std::process::id(), self.host);
            let tmp = dir.join("tmp").join(&unique);
            let dest = dir.join("cur").join(format!("{unique}:2,{info}"));
            let mut file = match File::options().write(true).create_new(true).open(&tmp) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(MaildirError::Io { path: tmp, source }),
            };
            let written = write_and_sync(&mut file, raw, internal_date);
            drop(file);
            if let Err(source) = written {
                let _ = fs::remove_file(&tmp);
                return Err(MaildirError::Io { path: tmp, source });
            }
            match publish(&tmp, &dest) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(source) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(MaildirError::Io { path: dest, source });
                }
            }
            let cur = dir.join("cur");
            File::open(&cur).and_then(|d| d.sync_all()).map_err(|source| MaildirError::Io { path: cur, source })?;
            return Ok(dest);
        }
        Err(MaildirError::NoUniqueName { dir })
    }
}

fn make_maildir(dir: &Path) -> Result<(), MaildirError> {
    for sub in ["cur", "new", "tmp"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|source| MaildirError::Io { path: p, source })?;
    }
    Ok(())
}

fn write_and_sync(file: &mut File, raw: &[u8], internal_date: Option<i64>) -> io::Result<()> {
    file.write_all(raw)?;
    if let Some(secs) = internal_date {
        let mtime = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
        };
        if let Some(t) = mtime {
            file.set_modified(t)?;
        }
    }
    file.sync_all()
}

/// Move `tmp` to `dest` without ever replacing an existing file: a hard
/// link fails if `dest` exists (the classic Maildir delivery step). On file
/// systems without hard links, fall back to rename after checking. Returns
/// false if `dest` was taken (the caller picks another name).
fn publish(tmp: &Path, dest: &Path) -> io::Result<bool> {
    match fs::hard_link(tmp, dest) {
        Ok(()) => {
            fs::remove_file(tmp)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(tmp)?;
            Ok(false)
        }
        Err(_) => {
            if dest.exists() {
                fs::remove_file(tmp)?;
                return Ok(false);
            }
            fs::rename(tmp, dest)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkmaildir(p: &Path) {
        for s in ["cur", "new", "tmp"] {
            fs::create_dir_all(p.join(s)).expect("create fixture dir");
        }
    }

    fn touch(p: &Path, content: &[u8]) {
        fs::write(p, content).expect("write fixture file");
    }

    fn names(scan: &FolderScan) -> Vec<&str> {
        scan.folders.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn mutf7_round_trip_and_rfc_examples() {
        // RFC 3501 5.1.3 example.
        assert_eq!(decode_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-"), Ok("~peter/mail/台北/日本語".into()));
        assert_eq!(encode_mutf7("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode_mutf7("Tom &- Jerry"), Ok("Tom & Jerry".into()));
        assert_eq!(encode_mutf7("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(encode_mutf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(decode_mutf7("Entw&APw-rfe"), Ok("Entwürfe".into()));
        for s in ["", "a", "ü", "üü", "üüü", "a😀b", "&&", "日本語&x", "\u{7f}", "é-&-"] {
            assert_eq!(decode_mutf7(&encode_mutf7(s)), Ok(s.to_string()), "{s:?}");
        }
    }

    #[test]
    fn mutf7_rejects_invalid() {
        assert_eq!(decode_mutf7("a&Jjo"), Err(MUtf7Error::Unterminated));
        assert_eq!(decode_mutf7("&Jj!-"), Err(MUtf7Error::BadBase64));
        // "/" is standard base64, not modified base64.
        assert_eq!(decode_mutf7("&U/BTFw-"), Err(MUtf7Error::BadBase64));
        // Non-zero padding bits.
        assert_eq!(decode_mutf7("&APx-"), Err(MUtf7Error::BadBase64));
        // Odd byte count.
        assert_eq!(decode_mutf7("&AP-"), Err(MUtf7Error::BadBase64));
        // Encoded "a" is not canonical.
        assert_eq!(decode_mutf7("&AGE-"), Err(MUtf7Error::NotCanonical));
        // Lone high surrogate.
        assert_eq!(decode_mutf7("&2D0-"), Err(MUtf7Error::BadUtf16));
        assert_eq!(decode_mutf7("tab\there"), Err(MUtf7Error::BadChar('\t')));
        assert_eq!(decode_mutf7("é"), Err(MUtf7Error::BadChar('é')));
    }

    #[test]
    fn flag_parsing_and_letters() {
        let f = parse_info_flags(b"1700000000.M1P2.host,S=123:2,DFPRST");
        assert_eq!(
            f,
            MaildirFlags { seen: true, answered: true, flagged: true, deleted: true, draft: true, forwarded: true }
        );
        assert_eq!(info_letters(&f), "DFPRST");
        assert_eq!(parse_info_flags(b"123.abc.host"), MaildirFlags::default());
        assert_eq!(parse_info_flags(b"123.abc.host:2,Sab"), MaildirFlags { seen: true, ..MaildirFlags::default() });
        assert_eq!(parse_info_flags(b"123.abc.host:1,S"), MaildirFlags::default());
        assert_eq!(leading_timestamp(b"1700000000.M1.h:2,S"), Some(1_700_000_000));
        assert_eq!(leading_timestamp(b"abc.def"), None);
        assert_eq!(leading_timestamp(b"99999999999999999999999.x"), None);
    }

    #[test]
    fn special_use_names() {
        for (n, s) in [
            ("Sent", Some(SpecialUse::Sent)),
            ("sent items", Some(SpecialUse::Sent)),
            ("Sent Messages", Some(SpecialUse::Sent)),
            ("INBOX/Sent", Some(SpecialUse::Sent)),
            ("DRAFTS", Some(SpecialUse::Drafts)),
            ("Trash", Some(SpecialUse::Trash)),
            ("Deleted Items", Some(SpecialUse::Trash)),
            ("Deleted Messages", Some(SpecialUse::Trash)),
            ("Junk", Some(SpecialUse::Junk)),
            ("spam", Some(SpecialUse::Junk)),
            ("Archive", Some(SpecialUse::Archive)),
            ("Archives", Some(SpecialUse::Archive)),
            ("Work/Sent", None),
            ("INBOX", None),
            ("Sentinel", None),
        ] {
            assert_eq!(special_use_for(n), s, "{n}");
        }
    }

    #[test]
    fn scans_maildirpp_and_nested_trees() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        mkmaildir(root);
        for f in ["dovecot-uidlist", "dovecot.index", "dovecot.index.log", "subscriptions"] {
            touch(&root.join(f), b"x");
        }
        mkmaildir(&root.join(".Sent"));
        touch(&root.join(".Sent/maildirfolder"), b"");
        mkmaildir(&root.join(".Work.Projects"));
        mkmaildir(&root.join(".Entw&APw-rfe"));
        mkmaildir(&root.join(".Bad&Jj!-name"));
        mkmaildir(&root.join(".a..b"));
        fs::create_dir_all(root.join(".notmail")).expect("mkdir");
        // Nested layout: Lists is only a container, Lists/rust a folder.
        mkmaildir(&root.join("Lists/rust"));
        mkmaildir(&root.join("Archive"));
        mkmaildir(&root.join("Archive/2020"));
        mkmaildir(&root.join("Sp&AOk-cial"));
        mkmaildir(&root.join("Ünicode"));
        let scan = scan_folders(root, &Limits::default());
        assert_eq!(
            names(&scan),
            [
                "INBOX",
                "Archive",
                "Archive/2020",
                "Entwürfe",
                "Lists/rust",
                "Sent",
                "Spécial",
                "Work/Projects",
                "Ünicode"
            ]
        );
        let sent = &scan.folders[5];
        assert_eq!(sent.special_use, Some(SpecialUse::Sent));
        assert_eq!(sent.path, root.join(".Sent"));
        assert_eq!(scan.folders[1].special_use, Some(SpecialUse::Archive));
        let bad: Vec<String> = scan
            .problems
            .iter()
            .map(|p| p.path.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect();
        assert_eq!(bad, [".Bad&Jj!-name", ".a..b", ".notmail"]);
        assert!(scan.problems[0].to_string().contains("invalid folder name"));
    }

    #[test]
    fn duplicate_folder_names_are_reported() {
        let t = tempfile::tempdir().expect("tempdir");
        mkmaildir(&t.path().join(".Work"));
        mkmaildir(&t.path().join("Work"));
        let scan = scan_folders(t.path(), &Limits::default());
        assert_eq!(names(&scan), ["Work"]);
        assert_eq!(scan.problems.len(), 1);
        assert!(scan.problems[0].reason.contains("duplicate"));
    }

    #[test]
    fn depth_limit_stops_recursion() {
        let t = tempfile::tempdir().expect("tempdir");
        mkmaildir(&t.path().join("a/b/c/d"));
        let limits = Limits { max_depth: 2, ..Limits::default() };
        let scan = scan_folders(t.path(), &limits);
        assert!(names(&scan).is_empty());
        assert!(scan.problems[0].reason.contains("too deep"));
    }

    #[test]
    fn missing_root_is_a_problem() {
        let t = tempfile::tempdir().expect("tempdir");
        let scan = scan_folders(&t.path().join("nope"), &Limits::default());
        assert!(scan.folders.is_empty());
        assert_eq!(scan.problems.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_folder_name_is_a_problem() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join(OsStr::from_bytes(b".bad\xff"));
        mkmaildir(&dir);
        mkmaildir(&t.path().join(".Good"));
        let scan = scan_folders(t.path(), &Limits::default());
        assert_eq!(names(&scan), ["Good"]);
        assert_eq!(scan.problems[0].path, dir);
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_folder_is_not_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        mkmaildir(&t.path().join(".Real"));
        std::os::unix::fs::symlink(t.path().join(".Real"), t.path().join(".Link")).expect("symlink");
        let scan = scan_folders(t.path(), &Limits::default());
        assert_eq!(names(&scan), ["Real"]);
        assert!(scan.problems[0].reason.contains("symbolic link"));
    }

    #[test]
    fn scans_messages_with_flags_and_dates() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        mkmaildir(root);
        touch(&root.join("new/1500000000.M1P1.host"), b"a\n");
        touch(&root.join("cur/1400000000.M2P1.host:2,RS"), b"b\n");
        touch(&root.join("cur/.hidden"), b"x");
        touch(&root.join("cur/dovecot-uidlist"), b"x");
        fs::create_dir_all(root.join("cur/subdir")).expect("mkdir");
        let f = File::options().write(true).open(root.join("cur/1400000000.M2P1.host:2,RS")).expect("open");
        f.set_modified(UNIX_EPOCH + Duration::from_secs(1_234_567_890)).expect("set mtime");
        drop(f);
        let scan = scan_folders(root, &Limits::default());
        let msgs = scan_messages(&scan.folders[0]);
        assert!(msgs.problems.is_empty());
        assert_eq!(msgs.messages.len(), 2);
        let old = &msgs.messages[0];
        assert_eq!(old.internal_date, Some(1_234_567_890));
        assert!(old.flags.seen && old.flags.answered && !old.is_new);
        let new = &msgs.messages[1];
        assert!(new.is_new);
        assert_eq!(new.flags, MaildirFlags::default());
        assert_eq!(read_message(&old.path, &Limits::default()).expect("read"), b"b\r\n");
    }

    #[cfg(unix)]
    #[test]
    fn broken_message_link_is_a_problem_and_scan_continues() {
        let t = tempfile::tempdir().expect("tempdir");
        mkmaildir(t.path());
        std::os::unix::fs::symlink(t.path().join("gone"), t.path().join("cur/1.x:2,S")).expect("symlink");
        touch(&t.path().join("cur/2.y:2,S"), b"ok\n");
        let folder = folder("INBOX".into(), t.path().to_path_buf());
        let scan = scan_messages(&folder);
        assert_eq!(scan.messages.len(), 1);
        assert_eq!(scan.problems.len(), 1);
        assert_eq!(scan.problems[0].path, t.path().join("cur/1.x:2,S"));
    }

    #[test]
    fn read_message_limits_and_errors() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("m");
        touch(&p, b"l1\nl2\r\nl3");
        assert_eq!(read_message(&p, &Limits::default()).expect("read"), b"l1\r\nl2\r\nl3");
        let small = Limits { max_message_size: 5, ..Limits::default() };
        assert!(read_message(&p, &small).is_err_and(|e| e.reason.contains("larger")));
        let missing = t.path().join("missing");
        assert!(read_message(&missing, &Limits::default()).is_err_and(|e| e.path == missing));
    }

    #[test]
    fn writer_round_trip() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("export");
        let mut w = MaildirWriter::new(&root, "host/with:odd chars").expect("writer");
        let all =
            MaildirFlags { seen: true, answered: true, flagged: true, deleted: true, draft: true, forwarded: true };
        let cases: Vec<(&str, &[u8], MaildirFlags, i64)> = vec![
            ("INBOX", b"Subject: 1\r\n\r\nhi\r\n", MaildirFlags::default(), 1_000_000_000),
            ("INBOX", b"Subject: 2\r\n\r\nyo\r\n", all, 1_000_000_001),
            (
                "Sent",
                b"Subject: 3\r\n\r\n\xff binary\r\n",
                MaildirFlags { seen: true, ..MaildirFlags::default() },
                1_100_000_000,
            ),
            ("Work/Entwürfe", b"", MaildirFlags { draft: true, ..MaildirFlags::default() }, 5),
            ("Tom & Jerry", b"Subject: 5\r\n", MaildirFlags::default(), -86_400),
        ];
        for (folder, raw, flags, date) in &cases {
            let p = w.write_message(folder, raw, flags, Some(*date)).expect("write");
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            assert!(name.contains("host\\057with\\072odd_chars:2,"), "{name}");
        }
        assert!(fs::read_dir(root.join("tmp")).expect("tmp").next().is_none());
        assert!(root.join(".Work.Entw&APw-rfe/maildirfolder").is_file());
        assert!(root.join(".Tom &- Jerry/cur").is_dir());

        let scan = scan_folders(&root, &Limits::default());
        assert!(scan.problems.is_empty(), "{:?}", scan.problems);
        assert_eq!(names(&scan), ["INBOX", "Sent", "Tom & Jerry", "Work/Entwürfe"]);
        assert_eq!(scan.folders[1].special_use, Some(SpecialUse::Sent));
        let mut got = Vec::new();
        for f in &scan.folders {
            let msgs = scan_messages(f);
            assert!(msgs.problems.is_empty());
            for m in msgs.messages {
                let raw = read_message(&m.path, &Limits::default()).expect("read");
                got.push((f.name.clone(), raw, m.flags, m.internal_date));
            }
        }
        let mut want: Vec<_> = cases.iter().map(|(f, r, fl, d)| (f.to_string(), r.to_vec(), *fl, Some(*d))).collect();
        want.sort_by(|a, b| (&a.0, a.3).cmp(&(&b.0, b.3)));
        got.sort_by(|a, b| (&a.0, a.3).cmp(&(&b.0, b.3)));
        assert_eq!(got, want);
    }

    #[test]
    fn writer_rejects_unstorable_names() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut w = MaildirWriter::new(t.path(), "h").expect("writer");
        for bad in ["a.b", "a//b", "", "x/\n"] {
            assert!(matches!(w.create_folder(bad), Err(MaildirError::InvalidFolderName { .. })), "{bad:?}");
        }
        assert_eq!(w.create_folder("inbox").expect("inbox"), t.path());
    }

    #[test]
    fn writer_never_overwrites() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut w = MaildirWriter::new(t.path(), "h").expect("writer");
        let mut paths = Vec::new();
        for i in 0..50u8 {
            paths.push(w.write_message("INBOX", &[i], &MaildirFlags::default(), Some(7)).expect("write"));
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 50);
    }
}
