//! `roost admin token`: prints the admin API token (creating it on a data
//! directory made before tokens existed). Whoever can read the data directory
//! can read the token file anyway; this only saves looking for it.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::cli::Global;

/// `roost admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print the token the admin API and web UI ask for.
    Token,
}

/// Runs `roost admin ...`.
pub fn run(global: &Global, command: AdminCommand) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    match command {
        AdminCommand::Token => {
            if !ctx.data_dir.join(roost_core::store::DB_FILE).exists() {
                bail!("{} is not a Roost data directory (run `roost init` first)", ctx.data_dir.display());
            }
            let token = crate::admin::ensure_token(&ctx.data_dir)?;
            outln!("{}", token.expose());
        }
    }
    Ok(ExitCode::SUCCESS)
}
