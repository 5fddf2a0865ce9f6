//! `roost import --user U PATH`: copies mail from an mbox file, a directory of
//! mbox files, or a Maildir / Maildir++ tree into a user's mailboxes, keeping
//! INTERNALDATE and flags and mapping special folders (`Sent Items` -> the
//! user's `\Sent` mailbox) by name.
//!
//! Restartable: messages are committed in batches (one transaction and one
//! append event each), and a message already in its target mailbox with the
//! same blob hash and INTERNALDATE is skipped, so a re-run, or a run after
//! Ctrl-C or a kill, adds exactly what is missing. Blobs are written before
//! their batch commits; an interrupted batch leaves orphan blobs only, never
//! a partial message.
//!
//! Bad input (truncated mbox, a file that is not mail, an unreadable file, a
//! folder name that is not UTF-8) is reported with the file and position and
//! skipped; a summary at the end counts what was skipped and why.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use roost_core::model::{BlobHash, Flag, MailboxId, SpecialUse, UserName};
use roost_core::store::{AppendMessage, Store};

use crate::cli::{now_ms, open_store, Global};
use crate::mailio::{self, maildir, mbox};

/// Messages per transaction. A few hundred keeps the per-commit fsync cost
/// small per message while a kill loses at most one batch of work.
pub const DEFAULT_BATCH: usize = 500;

/// Threads writing blobs of one batch in parallel: blob writes are fsync-bound,
/// and overlapping them is what makes thousands of messages per second.
const BLOB_WRITERS: usize = 8;

/// Exit code when the import finished but skipped some items.
pub const EXIT_SKIPPED: u8 = 2;

/// Arguments of `roost import`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 when everything was imported, 2 when some items were skipped \
                        (listed with the reason), 1 on error.")]
pub struct ImportArgs {
    /// The user whose mailboxes receive the mail.
    #[arg(long)]
    pub user: String,
    /// Target mailbox when PATH is a single mbox file (default INBOX).
    #[arg(long, value_name = "NAME")]
    pub mailbox: Option<String>,
    /// Messages per transaction.
    #[arg(long, default_value_t = DEFAULT_BATCH, value_name = "N")]
    pub batch: usize,
    /// An mbox file, a directory of mbox files, or a Maildir / Maildir++ tree.
    pub path: PathBuf,
}

/// Where one mailbox's messages come from.
#[derive(Debug)]
enum SourceKind {
    Mbox(PathBuf),
    Maildir(maildir::MaildirFolder),
}

#[derive(Debug)]
struct Source {
    /// Folder name as found (`/`-separated).
    name: String,
    kind: SourceKind,
}

/// One message read, before storing.
struct Incoming {
    raw: Vec<u8>,
    flags: Vec<Flag>,
    internal_date: Option<i64>,
    /// INTERNALDATE when neither the source nor a Date: header gives one
    /// (the file's mtime): stable across runs, so re-runs still dedup.
    fallback_date: Option<i64>,
    /// File and position, for messages about it.
    position: String,
}

/// Something skipped, with where and why.
#[derive(Debug)]
struct Skipped {
    position: String,
    reason: String,
}

impl Skipped {
    /// The reason's category for the summary.
    fn category(&self) -> &'static str {
        let r = self.reason.to_ascii_lowercase();
        if r.contains("truncated") {
            "truncated message"
        } else if r.contains("not an mbox") {
            "not an mbox file"
        } else if r.contains("not a mail message") {
            "not a mail message"
        } else if r.contains("utf-8") || r.contains("utf-7") || r.contains("folder name") || r.contains("mailbox name")
        {
            "bad folder name"
        } else if r.contains("limit") || r.contains("larger") {
            "too large"
        } else if r.contains("cannot open") || r.contains("cannot read") || r.contains("permission") {
            "unreadable"
        } else {
            "other"
        }
    }
}

/// Counters and the progress display.
struct Progress {
    bar: ProgressBar,
    terminal: bool,
    started: Instant,
    imported: u64,
    present: u64,
    skipped: Vec<Skipped>,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = if terminal {
            let bar = ProgressBar::new(total_bytes);
            let style = ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, terminal, started: Instant::now(), imported: 0, present: 0, skipped: Vec::new() }
    }

    fn rate(&self) -> f64 {
        self.imported as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    fn skip(&mut self, position: String, reason: String) {
        let line = format!("roost import: skipped {position}: {reason}");
        self.bar.suspend(|| eprintln!("{line}"));
        self.skipped.push(Skipped { position, reason });
    }

    /// After each committed batch.
    fn committed(&mut self, mailbox: &str, bytes: u64) {
        self.bar.inc(bytes);
        let msg = format!("{} messages, {:.0}/s", self.imported, self.rate());
        if self.terminal {
            self.bar.set_message(msg);
        } else {
            // One line per committed batch: a log reader sees exactly what
            // is durable.
            eprintln!("roost import: {mailbox}: {msg} committed");
        }
    }
}

/// Runs `roost import`.
pub fn run(global: &Global, args: ImportArgs) -> Result<ExitCode> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let ctx = global.resolve()?;
    let mut store = open_store(&ctx.data_dir)?;
    let user = UserName::new(&args.user).with_context(|| format!("invalid user name {:?}", args.user))?;
    if !store.user_exists(&user)? {
        bail!("no user {user} (add it with `roost user add {user}`)");
    }
    let summary = import(&mut store, &user, &args)?;
    println!("{summary}");
    Ok(if summary.skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_SKIPPED) })
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Messages stored.
    pub imported: u64,
    /// Messages already in their mailbox (earlier run), not stored again.
    pub already_present: u64,
    /// Mailboxes written to.
    pub mailboxes: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// Skipped items by category, with counts.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} messages into {} mailboxes in {:.1} s ({:.0} messages/s); {} already present",
            self.imported,
            self.mailboxes,
            self.seconds,
            self.imported as f64 / self.seconds.max(0.001),
            self.already_present
        )?;
        let total: u64 = self.skipped.values().sum();
        if total > 0 {
            write!(f, "\nskipped {total} items:")?;
            for (category, n) in &self.skipped {
                write!(f, "\n  {n} {category}")?;
            }
        }
        Ok(())
    }
}

/// Imports `args.path` into `user`'s mailboxes.
pub fn import(store: &mut Store, user: &UserName, args: &ImportArgs) -> Result<Summary> {
    let mut skipped = Vec::new();
    let sources = discover(&args.path, args.mailbox.as_deref(), &mut skipped)?;
    let total_bytes = sources.iter().map(source_bytes).sum();
    let mut progress = Progress::new(total_bytes);
    for s in skipped {
        progress.skip(s.position, s.reason);
    }
    let mut mailboxes = 0;
    for source in &sources {
        let Some((mailbox, name)) = target_mailbox(store, user, &source.name, &mut progress, &source.kind)? else {
            continue;
        };
        mailboxes += 1;
        import_source(store, mailbox, &name, source, args.batch, &mut progress)?;
    }
    progress.bar.finish_and_clear();
    let mut summary = Summary {
        imported: progress.imported,
        already_present: progress.present,
        mailboxes,
        seconds: progress.started.elapsed().as_secs_f64(),
        skipped: BTreeMap::new(),
    };
    for s in &progress.skipped {
        *summary.skipped.entry(s.category()).or_default() += 1;
    }
    Ok(summary)
}

/// The sources under `path`: one mbox file, a Maildir tree, or a directory
/// of mbox files (named by their path below it, `.mbox` dropped).
fn discover(path: &Path, mailbox: Option<&str>, skipped: &mut Vec<Skipped>) -> Result<Vec<Source>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        let name = mailbox.unwrap_or("INBOX").to_string();
        return Ok(vec![Source { name, kind: SourceKind::Mbox(path.to_path_buf()) }]);
    }
    if mailbox.is_some() {
        bail!("--mailbox applies to a single mbox file; {} is a directory", path.display());
    }
    let scan = maildir::scan_folders(path, &maildir::Limits::default());
    if !scan.folders.is_empty() {
        for p in scan.problems {
            skipped.push(Skipped { position: p.path.display().to_string(), reason: p.reason });
        }
        return Ok(scan
            .folders
            .into_iter()
            .map(|f| Source { name: f.name.clone(), kind: SourceKind::Maildir(f) })
            .collect());
    }
    let mut files = Vec::new();
    walk_mbox_dir(path, path, &mut files, skipped);
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files.into_iter().map(|(name, p)| Source { name, kind: SourceKind::Mbox(p) }).collect())
}

/// Depth bound of an mbox directory walk (symlink loops).
const MBOX_DIR_DEPTH_MAX: usize = 32;

fn walk_mbox_dir(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>, skipped: &mut Vec<Skipped>) {
    if dir.strip_prefix(root).map_or(0, |p| p.components().count()) > MBOX_DIR_DEPTH_MAX {
        skipped.push(Skipped { position: dir.display().to_string(), reason: "directory nested too deep".into() });
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            skipped.push(Skipped { position: dir.display().to_string(), reason: format!("cannot read: {e}") });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        if path.is_dir() {
            walk_mbox_dir(root, &path, out, skipped);
            continue;
        }
        let Some(rel) = path.strip_prefix(root).ok().and_then(|p| p.to_str()) else {
            skipped.push(Skipped { position: path.display().to_string(), reason: "folder name is not UTF-8".into() });
            continue;
        };
        let name = rel.strip_suffix(".mbox").unwrap_or(rel).to_string();
        out.push((name, path));
    }
}

fn source_bytes(source: &Source) -> u64 {
    match &source.kind {
        SourceKind::Mbox(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        // Counted as messages are scanned; a small constant keeps the bar moving.
        SourceKind::Maildir(_) => 0,
    }
}

/// The mailbox a folder goes to (created if missing). Special folders go to
/// the user's mailbox with that role whatever its name; INBOX is matched
/// without regard to case.
fn target_mailbox(
    store: &mut Store,
    user: &UserName,
    folder: &str,
    progress: &mut Progress,
    kind: &SourceKind,
) -> Result<Option<(MailboxId, String)>> {
    let position = match kind {
        SourceKind::Mbox(p) => p.display().to_string(),
        SourceKind::Maildir(f) => f.path.display().to_string(),
    };
    let special = mailio::special_use_for(folder);
    let mailboxes = store.mailboxes(user)?;
    let existing_special = special.and_then(|su| mailboxes.iter().find(|m| m.special_use == Some(su)));
    let name = if folder.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else if let Some(m) = existing_special {
        m.name.clone()
    } else {
        folder.to_string()
    };
    if let Some(m) = mailboxes.iter().find(|m| m.name == name) {
        return Ok(Some((m.id, name)));
    }
    let special: Option<SpecialUse> = if existing_special.is_none() { special } else { None };
    match store.write(now_ms(), |w| w.create_mailbox(user, &name, special)) {
        Ok((id, _)) => Ok(Some((id, name))),
        Err(roost_core::store::StoreError::InvalidName { name, reason }) => {
            progress.skip(position, format!("mailbox name {name:?} refused: {reason}"));
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create mailbox {name}")),
    }
}

/// A batch waiting to be committed.
struct Pending {
    raw: Vec<u8>,
    flags: Vec<Flag>,
    internal_date: i64,
    hash: BlobHash,
}

fn import_source(
    store: &mut Store,
    mailbox: MailboxId,
    name: &str,
    source: &Source,
    batch_size: usize,
    progress: &mut Progress,
) -> Result<()> {
    let mut present: HashSet<(BlobHash, i64)> =
        store.entries(mailbox)?.into_iter().map(|e| (e.blob, e.internal_date)).collect();
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_size);
    let mut batch_bytes = 0u64;
    let mut handle = |item: Result<Incoming, Skipped>, store: &mut Store, progress: &mut Progress| -> Result<()> {
        let msg = match item {
            Ok(m) => m,
            Err(s) => {
                progress.skip(s.position, s.reason);
                return Ok(());
            }
        };
        if let Err(reason) = check_is_mail(&msg.raw) {
            progress.skip(msg.position, reason);
            return Ok(());
        }
        let internal_date = msg.internal_date.or_else(|| date_header(&msg.raw)).or(msg.fallback_date).unwrap_or(0);
        let hash = BlobHash::of(&msg.raw);
        batch_bytes += msg.raw.len() as u64;
        // Also dedups within this run, so an interrupted run and a whole run
        // leave the same result.
        if !present.insert((hash, internal_date)) {
            progress.present += 1;
            return Ok(());
        }
        batch.push(Pending { raw: msg.raw, flags: msg.flags, internal_date, hash });
        if batch.len() >= batch_size {
            commit(store, mailbox, name, &mut batch, batch_bytes, progress)?;
            batch_bytes = 0;
        }
        Ok(())
    };
    match &source.kind {
        SourceKind::Mbox(path) => {
            let meta = std::fs::metadata(path);
            if meta.as_ref().is_ok_and(|m| m.len() == 0) {
                return Ok(()); // An empty mailbox exported as an empty file.
            }
            let mtime = meta.ok().and_then(|m| m.modified().ok()).map(unix_secs);
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    progress.skip(path.display().to_string(), format!("cannot open: {e}"));
                    return Ok(());
                }
            };
            for item in mbox::MboxReader::new(BufReader::with_capacity(256 * 1024, file)) {
                let item = match item {
                    Ok(m) => Ok(Incoming {
                        position: format!("{} line {} (byte {})", path.display(), m.line_number, m.byte_offset),
                        flags: mailio::flags_from_mbox(&m.flags),
                        internal_date: m.internal_date,
                        fallback_date: mtime,
                        raw: m.raw,
                    }),
                    Err(p) => {
                        Err(Skipped { position: format!("{} line {}", path.display(), p.line), reason: p.reason })
                    }
                };
                handle(item, store, progress)?;
            }
        }
        SourceKind::Maildir(folder) => {
            let scan = maildir::scan_messages(folder);
            for p in scan.problems {
                progress.skip(p.path.display().to_string(), p.reason);
            }
            progress.bar.inc_length(scan.messages.iter().map(|m| file_len(&m.path)).sum());
            let limits = maildir::Limits::default();
            for entry in scan.messages {
                let item = match maildir::read_message(&entry.path, &limits) {
                    Ok(raw) => Ok(Incoming {
                        raw,
                        flags: mailio::flags_from_maildir(&entry.flags),
                        internal_date: entry.internal_date,
                        fallback_date: None,
                        position: entry.path.display().to_string(),
                    }),
                    Err(p) => Err(Skipped { position: p.path.display().to_string(), reason: p.reason }),
                };
                handle(item, store, progress)?;
            }
        }
    }
    commit(store, mailbox, name, &mut batch, batch_bytes, progress)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Stores the batch's blobs (in parallel, each fsynced), then appends them
/// in one transaction.
fn commit(
    store: &mut Store,
    mailbox: MailboxId,
    name: &str,
    batch: &mut Vec<Pending>,
    bytes: u64,
    progress: &mut Progress,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let blobs = store.blobs();
    let chunk = batch.len().div_ceil(BLOB_WRITERS);
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for p in part {
                        let stored = blobs.put(&p.raw)?;
                        assert!(stored == p.hash, "blob store hashed {stored:?}, expected {:?}", p.hash);
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow::format_err!("a blob writer panicked"))??;
        }
        Ok(())
    })?;
    let messages: Vec<AppendMessage<'_>> = batch
        .iter()
        .map(|p| AppendMessage { raw: &p.raw, flags: p.flags.clone(), internal_date: p.internal_date })
        .collect();
    store
        .write(now_ms(), |w| w.append(mailbox, &messages))
        .with_context(|| format!("cannot store {} messages in {name}", messages.len()))?;
    progress.imported += batch.len() as u64;
    batch.clear();
    progress.committed(name, bytes);
    Ok(())
}

/// A message must start with a header block: at least one `Name: value`
/// field before the first empty line. Catches files that are not mail
/// (binaries, notes) without judging MIME structure: broken MIME is stored
/// as it is, since the raw bytes are what IMAP serves.
fn check_is_mail(raw: &[u8]) -> Result<(), String> {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let field_ok = match first.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(i) => first[..i].iter().all(|&b| (33..=126).contains(&b)),
    };
    if field_ok && !raw.contains(&0) {
        Ok(())
    } else {
        Err("not a mail message: it does not start with a header field".into())
    }
}

/// INTERNALDATE from the Date: header, for messages whose source has none.
fn date_header(raw: &[u8]) -> Option<i64> {
    let parsed = mail_parser::MessageParser::default().parse_headers(raw)?;
    parsed.date().map(|d| d.to_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_is_recognised_by_its_first_header_field() {
        assert!(check_is_mail(b"From: a@b\r\n\r\nx").is_ok());
        assert!(check_is_mail(b"Return-Path: <a@b>\n").is_ok());
        assert!(check_is_mail(b"\x7fELF\x02\x01\x01\0").is_err());
        assert!(check_is_mail(b"just some notes: here\r\n").is_err());
        assert!(check_is_mail(b"").is_err());
    }

    #[test]
    fn date_header_is_the_fallback_internaldate() {
        assert_eq!(date_header(b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n"), Some(1_700_000_000));
        assert_eq!(date_header(b"Subject: none\r\n\r\n"), None);
    }
}
