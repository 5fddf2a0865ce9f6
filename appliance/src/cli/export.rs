//! `roost export --user U --format maildir|mbox DIR`: writes every mailbox of
//! a user out, with flags and INTERNALDATE, in a form `roost import` reads
//! back to the same mailboxes, messages and flags.
//!
//! Layouts: `maildir` is one Maildir++ tree (INBOX at the root, `.Sent`,
//! `.Lists.rust`, ...; flags in file names, INTERNALDATE as mtime). `mbox` is
//! one mboxrd file per mailbox, `DIR/<name>.mbox` with `/` in names as
//! directories (`Lists/rust.mbox`); flags in Status/X-Status, INTERNALDATE in
//! the From_ line. Keywords other than `$Forwarded` (Maildir) have no place in
//! either format: they are counted and reported, not silently dropped. A
//! message whose last line has no line end gains a CRLF in mbox (the format
//! cannot represent its absence), so it comes back as a different blob.
//!
//! DIR must be new or empty, so an export never mixes with older files.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use roost_core::crypto::SessionKey;
use roost_core::model::UserName;
use roost_core::store::Store;

use crate::cli::{open_store, Global};
use crate::mailio::{self, maildir, mbox};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Maildir++ tree.
    Maildir,
    /// One mboxrd file per mailbox.
    Mbox,
}

/// Arguments of `roost export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The user whose mailboxes are written.
    #[arg(long)]
    pub user: String,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output directory (created; must be empty if it exists).
    pub dir: PathBuf,
    /// Read the user's password (needed to decrypt their mail) from the
    /// first line of standard input instead of a terminal prompt.
    #[arg(long)]
    pub password_stdin: bool,
}

/// What an export did.
#[derive(Debug, Default)]
pub struct ExportSummary {
    /// Mailboxes written.
    pub mailboxes: u64,
    /// Messages written.
    pub messages: u64,
    /// Messages whose keywords the format cannot carry.
    pub keywords_lost: u64,
    /// Mailboxes that could not be written, with why.
    pub failed: Vec<String>,
}

/// Runs `roost export`.
pub fn run(global: &Global, args: ExportArgs) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let store = open_store(&ctx.data_dir)?;
    let user = UserName::new(&args.user).with_context(|| format!("invalid user name {:?}", args.user))?;
    if !store.user_exists(&user)? {
        bail!("no user {user}");
    }
    // Mail stored encrypted opens only with the user's identity.
    let key = match store.user_keys(&user)? {
        Some(keys) => {
            let password = crate::cli::user::Input::new(args.password_stdin)
                .secret(&format!("Password of {user}: "), "the user's password")?;
            Some(keys.unlock(user.as_str(), &password).map_err(|_| anyhow::format_err!("wrong password for {user}"))?)
        }
        None => None,
    };
    let summary = export(&store, &user, key.as_ref(), args.format, &args.dir)?;
    outln!("exported {} messages from {} mailboxes to {}", summary.messages, summary.mailboxes, args.dir.display());
    if summary.keywords_lost > 0 {
        outln!("{} messages had keywords the format cannot store; their other flags were kept", summary.keywords_lost);
    }
    for f in &summary.failed {
        eprintln!("roost export: {f}");
    }
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Exports `user`'s mailboxes into `dir`.
pub fn export(
    store: &Store,
    user: &UserName,
    key: Option<&SessionKey>,
    format: Format,
    dir: &Path,
) -> Result<ExportSummary> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!("{} is not empty: export into a new or empty directory", dir.display());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut summary = ExportSummary::default();
    let mut maildir_writer = match format {
        Format::Maildir => Some(maildir::MaildirWriter::new(dir, "roost").context("cannot create the Maildir")?),
        Format::Mbox => None,
    };
    for mailbox in store.mailboxes(user)? {
        let entries = store.entries(mailbox.id)?;
        let res = match &mut maildir_writer {
            Some(writer) => export_maildir(store, writer, &mailbox.name, &entries, key, &mut summary),
            None => export_mbox(store, dir, &mailbox.name, &entries, key, &mut summary),
        };
        match res {
            Ok(()) => summary.mailboxes += 1,
            Err(e) => summary.failed.push(format!("mailbox {} not exported: {e:#}", mailbox.name)),
        }
    }
    Ok(summary)
}

fn export_maildir(
    store: &Store,
    writer: &mut maildir::MaildirWriter,
    name: &str,
    entries: &[roost_core::store::EntryInfo],
    key: Option<&SessionKey>,
    summary: &mut ExportSummary,
) -> Result<()> {
    writer.create_folder(name)?;
    for e in entries {
        let raw = store.message_plain(&e.blob, key)?;
        let (flags, lost) = mailio::flags_to_maildir(&e.flags);
        summary.keywords_lost += u64::from(!lost.is_empty());
        writer.write_message(name, &raw, &flags, Some(e.internal_date))?;
        summary.messages += 1;
    }
    Ok(())
}

fn export_mbox(
    store: &Store,
    dir: &Path,
    name: &str,
    entries: &[roost_core::store::EntryInfo],
    key: Option<&SessionKey>,
    summary: &mut ExportSummary,
) -> Result<()> {
    let path = dir.join(format!("{name}.mbox"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for e in entries {
        let raw = store.message_plain(&e.blob, key)?;
        let (flags, lost) = mailio::flags_to_mbox(&e.flags);
        summary.keywords_lost += u64::from(!lost.is_empty());
        mbox::write_mbox_message(&mut out, &return_path(&raw), e.internal_date, &flags, &raw)
            .with_context(|| format!("cannot write {}", path.display()))?;
        summary.messages += 1;
    }
    let file =
        out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

/// The envelope sender for the From_ line: the Return-Path address, else
/// empty (the writer then uses MAILER-DAEMON).
fn return_path(raw: &[u8]) -> String {
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let value = String::from_utf8_lossy(&line[12..]);
            return value.trim().trim_start_matches('<').trim_end_matches('>').to_string();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_is_read_from_the_header_block_only() {
        assert_eq!(return_path(b"Return-Path: <a@b>\r\nFrom: c\r\n\r\n"), "a@b");
        assert_eq!(return_path(b"From: c\r\n\r\nReturn-Path: <x@y>\r\n"), "");
    }

    #[test]
    fn a_non_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"x").unwrap();
        let store = Store::in_memory([1; 32], roost_core::model::DeviceSlot::new(0).unwrap(), 1).unwrap();
        let user = UserName::new("a").unwrap();
        let err = export(&store, &user, None, Format::Mbox, dir.path()).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }
}
