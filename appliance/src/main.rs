//! `roost`: the daemon and its command line. This file only parses arguments
//! and dispatches; each subcommand lives in `cli/<name>.rs`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use roost::cli;
use roost::config::LogFormat;

/// Roost: a personal mail appliance. Serves IMAP and LMTP from a replicated,
/// event-sourced store.
#[derive(Debug, Parser)]
#[command(name = "roost", version, about, propagate_version = true)]
struct Args {
    /// Data directory (default: the config's `data_dir`, else ~/.local/share/roost).
    #[arg(long, global = true, value_name = "DIR", env = "ROOST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (default: ~/.config/roost/roost.toml if it exists).
    #[arg(long, global = true, value_name = "FILE", env = "ROOST_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data directory, the device key, the database and a TLS certificate.
    Init(cli::init::InitArgs),
    /// Run the daemon: IMAP and LMTP.
    Serve(cli::serve::ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(cli::user::UserCommand),
    /// Pair this device with others, list and remove pairings.
    #[command(subcommand)]
    Pair(cli::pair::PairCommand),
    /// Show the device, its users, mailboxes, messages and storage.
    Status,
    /// Rebuild the state from the event log into a scratch database and compare.
    Verify,
    /// Fold the event log's prefix every paired device has into a snapshot.
    Compact(cli::compact::CompactArgs),
    /// Remove the blobs of deleted mail that every paired device has acknowledged.
    Gc,
    /// Import mail from an mbox file, a directory of mbox files, or a Maildir tree.
    Import(cli::import::ImportArgs),
    /// Export a user's mailboxes as a Maildir++ tree or mbox files.
    Export(cli::export::ExportArgs),
    /// Run the deterministic replication simulation over many seeds (a soak).
    Sim(cli::sim::SimArgs),
    /// Check this device: config, data dir, certificate, listeners, disk, clock, peers, backups.
    Doctor(cli::doctor::DoctorArgs),
    /// Write an age-encrypted backup of this device (`--to FILE`), or create a backup identity (`keygen`).
    Backup(cli::backup::BackupArgs),
    /// Restore a backup into an empty data directory.
    Restore(cli::backup::RestoreArgs),
    /// Print shell completions (bash, zsh or fish) to stdout.
    Completions(cli::completions::CompletionsArgs),
    /// Print the man page (roff) to stdout.
    Man,
    /// The admin API: print its token.
    #[command(subcommand)]
    Admin(cli::admin::AdminCommand),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let global = cli::Global { data_dir: args.data_dir, config: args.config, log_format: args.log_format };
    let res = match args.command {
        Command::Init(a) => cli::init::run(&global, a),
        Command::Serve(a) => cli::serve::run(&global, a),
        Command::User(c) => cli::user::run(&global, c),
        Command::Pair(c) => cli::pair::run(&global, c),
        Command::Status => cli::status::run(&global),
        Command::Verify => cli::verify::run(&global),
        Command::Compact(a) => cli::compact::run(&global, a),
        Command::Gc => cli::gc::run(&global),
        Command::Import(a) => cli::import::run(&global, a),
        Command::Export(a) => cli::export::run(&global, a),
        Command::Sim(a) => cli::sim::run(a),
        Command::Doctor(a) => cli::doctor::run(&global, a),
        Command::Backup(a) => cli::backup::run(&global, a),
        Command::Restore(a) => cli::backup::run_restore(&global, a),
        Command::Completions(a) => cli::completions::run_completions(Args::command(), a),
        Command::Man => cli::completions::run_man(Args::command()),
        Command::Admin(c) => cli::admin::run(&global, c),
    };
    match res {
        Ok(code) => code,
        // The reader of our output went away (`roost status | head -1`): stop
        // quietly with the status a shell gives a process killed by SIGPIPE.
        Err(err) if is_broken_pipe(&err) => ExitCode::from(141),
        Err(err) => {
            eprintln!("roost: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
