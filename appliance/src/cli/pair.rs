//! `roost pair invite|join|list|remove`. Both `invite` and `join` work while
//! the daemons run: `invite` records the one-time secret in the database,
//! where the running daemon checks it; `join` dials the inviter itself.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cli::{now_ms, open_store, status::human_bytes, Global};
use crate::ops::{self, TICKET_MINUTES_DEFAULT};
use crate::sync::ticket::qr_for_terminal;

/// `roost pair ...`
#[derive(Debug, Subcommand)]
pub enum PairCommand {
    /// Print a one-time pairing ticket (and its QR code); the ticket is the last line.
    Invite(InviteArgs),
    /// Pair this device with the one that printed TICKET.
    Join(JoinArgs),
    /// List paired devices.
    List,
    /// Stop trusting a paired device (by id or id prefix).
    Remove(RemoveArgs),
}

/// `pair invite` options.
#[derive(Debug, Args)]
pub struct InviteArgs {
    /// Minutes until the ticket expires.
    #[arg(long, default_value_t = TICKET_MINUTES_DEFAULT)]
    pub expires_minutes: u64,
    /// Do not print the QR code.
    #[arg(long)]
    pub no_qr: bool,
}

/// `pair join` arguments.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The ticket (the last line `roost pair invite` printed).
    pub ticket: String,
}

/// `pair remove` arguments.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Device id or a unique prefix of it.
    pub device: String,
}

/// Runs `roost pair ...`.
pub fn run(global: &Global, command: PairCommand) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let mut store = open_store(&ctx.data_dir)?;
    match command {
        PairCommand::Invite(args) => {
            let addrs = crate::sync::read_addrs_file(&ctx.data_dir)?;
            let ticket = ops::create_invite(&store, addrs, args.expires_minutes, now_ms())?.encode();
            if !args.no_qr {
                outln!("{}", qr_for_terminal(&ticket)?);
            }
            outln!(
                "Run on the other device: roost pair join <ticket below> (valid {} minutes, once)",
                args.expires_minutes
            );
            outln!("{ticket}");
        }
        PairCommand::Join(args) => {
            let my_addrs = crate::sync::read_addrs_file(&ctx.data_dir).unwrap_or_default();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (id, name) =
                runtime.block_on(ops::join(&mut store, &ctx.data_dir, &args.ticket, my_addrs, now_ms()))?;
            outln!("paired with {name} ({id})");
        }
        PairCommand::List => {
            for peer in store.peers()? {
                let state = match peer.removed_ms {
                    Some(_) => "removed".to_string(),
                    None => match peer.stats.last_seen_ms {
                        Some(ms) => format!("last seen {} s ago", now_ms().saturating_sub(ms) / 1000),
                        None => "never seen".to_string(),
                    },
                };
                outln!(
                    "{}\t{}\tslot {}\t{}\t{}\tsent {} received {}",
                    peer.device_id,
                    peer.name,
                    peer.slot.get(),
                    peer.addrs.join(","),
                    state,
                    human_bytes(peer.stats.bytes_sent),
                    human_bytes(peer.stats.bytes_received)
                );
            }
        }
        PairCommand::Remove(args) => {
            let device = ops::remove_peer(&store, &args.device, now_ms())?;
            outln!("removed {device}: it is refused from now on");
        }
    }
    Ok(ExitCode::SUCCESS)
}
