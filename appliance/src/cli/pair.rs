//! `roost pair invite|join|list|remove`. Both `invite` and `join` work while
//! the daemons run: `invite` records the one-time secret in the database,
//! where the running daemon checks it; `join` dials the inviter itself.

use std::process::ExitCode;

use anyhow::{bail, format_err, Result};
use clap::{Args, Subcommand};
use rand::RngCore;

use roost_core::model::DeviceId;

use crate::cli::{now_ms, open_store, status::human_bytes, Global};
use crate::sync::ticket::{qr_for_terminal, PairTicket, SECRET_BYTES};

/// How long a ticket is valid by default.
const TICKET_MINUTES_DEFAULT: u64 = 30;

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
            let mut secret = [0u8; SECRET_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            let expires_ms = now_ms() + args.expires_minutes * 60_000;
            store.add_invite(&secret, expires_ms)?;
            let ticket =
                PairTicket { id: store.identity().id(), addrs, secret: hex::encode(secret), expires_ms }.encode();
            if !args.no_qr {
                println!("{}", qr_for_terminal(&ticket)?);
            }
            println!(
                "Run on the other device: roost pair join <ticket below> (valid {} minutes, once)",
                args.expires_minutes
            );
            println!("{ticket}");
        }
        PairCommand::Join(args) => {
            let ticket = PairTicket::decode(&args.ticket)?;
            let my_addrs = crate::sync::read_addrs_file(&ctx.data_dir).unwrap_or_default();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let name = runtime.block_on(crate::sync::pairing::join(&mut store, &ctx.data_dir, &ticket, my_addrs))?;
            println!("paired with {name} ({})", ticket.id);
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
                println!(
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
            let wanted = args.device.to_ascii_lowercase();
            let matches: Vec<DeviceId> = store
                .peers()?
                .into_iter()
                .filter(|p| p.removed_ms.is_none() && p.device_id.to_string().starts_with(&wanted))
                .map(|p| p.device_id)
                .collect();
            let device = match matches.as_slice() {
                [one] => *one,
                [] => bail!("no paired device matches {}", args.device),
                _ => return Err(format_err!("{} matches {} devices: give more of the id", args.device, matches.len())),
            };
            store.remove_peer(device, now_ms())?;
            println!("removed {device}: it is refused from now on");
        }
    }
    Ok(ExitCode::SUCCESS)
}
