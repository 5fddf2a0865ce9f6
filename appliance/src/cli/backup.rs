//! `roost backup --to FILE`, `roost backup keygen --out FILE` and `roost
//! restore FILE --identity F`; the work is in `crate::backup`, which the
//! daemon's schedule (and the admin API) call too.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::backup;
use crate::cli::{now_ms, Global};
use crate::config;

/// Arguments of `roost backup`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// Write the backup to FILE (created; refused if it exists).
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,
    /// Encrypt to this age recipient instead of the config's `[backup] recipient`.
    #[arg(long, value_name = "AGE1...")]
    pub recipient: Option<String>,
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
}

/// `roost backup keygen`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Create a backup identity file (keep it off the device) and print its
    /// recipient for `[backup] recipient`.
    Keygen {
        /// The identity file to create (mode 0600; refused if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Arguments of `roost restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file (`roost backup --to`).
    pub file: PathBuf,
    /// The backup identity file (`roost backup keygen`, or `age-keygen`).
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    /// No paired device holds changes this device made after the backup:
    /// write at once instead of waiting to hear from a peer.
    #[arg(long)]
    pub standalone: bool,
}

/// Runs `roost backup`.
pub fn run(global: &Global, args: BackupArgs) -> Result<ExitCode> {
    if let Some(BackupCommand::Keygen { out }) = args.command {
        return keygen(&out);
    }
    let Some(to) = args.to else { bail!("say where to write the backup: roost backup --to FILE") };
    let ctx = global.resolve()?;
    let recipient = match args.recipient {
        Some(text) => backup::parse_recipient(&text)?,
        None => ctx.config.backup.recipient()?.context(
            "no backup recipient: set [backup] recipient = \"age1...\" in the config (see `roost backup keygen`) \
             or pass --recipient",
        )?,
    };
    if to.exists() {
        bail!("{} already exists; backups never overwrite a file", to.display());
    }
    let config_file = config::config_path(global.config.as_deref());
    let summary = backup::write_backup(&ctx.data_dir, config_file.as_deref(), &recipient, &to, now_ms())?;
    outln!(
        "backed up device {} ({} blobs) to {} ({} bytes, encrypted to {recipient})",
        summary.device,
        summary.blobs,
        to.display(),
        summary.bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn keygen(out: &PathBuf) -> Result<ExitCode> {
    let (text, recipient) = backup::keygen(SystemTime::now());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create identity file {}", out.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write identity file {}", out.display()))?;
    outln!("wrote backup identity {} (keep it off this device: it decrypts every backup)", out.display());
    outln!("put this in the config's [backup] section:");
    outln!("recipient = \"{recipient}\"");
    Ok(ExitCode::SUCCESS)
}

/// Runs `roost restore`.
pub fn run_restore(global: &Global, args: RestoreArgs) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let identities = backup::read_identities(&args.identity)?;
    let rejoin = if args.standalone { backup::Rejoin::Standalone } else { backup::Rejoin::WaitForPeer };
    let summary = backup::restore(&args.file, &identities, &ctx.data_dir, rejoin)?;
    outln!("restored device {} ({} blobs) into {}", summary.device, summary.blobs, ctx.data_dir.display());
    if let Some(config) = summary.config {
        outln!("the backed-up config is in {} (your config was not changed)", config.display());
    }
    if summary.rejoining {
        outln!(
            "this device was paired with {} device(s): it takes back the changes it made after this backup \
             from the first one it reaches, and refuses changes (IMAP NO [UNAVAILABLE], LMTP 451) until then",
            summary.paired_devices
        );
    } else if summary.paired_devices > 0 {
        eprintln!(
            "roost: WARNING: restored with --standalone although this device was paired with {} device(s): \
             if it made changes after this backup that reached them, new changes here clash with those",
            summary.paired_devices
        );
    }
    outln!("check it with `roost verify`");
    Ok(ExitCode::SUCCESS)
}
