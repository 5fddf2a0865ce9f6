//! `roost compact`: folds the causally stable prefix of the event log (what
//! this device and every active paired device have) into the log snapshot
//! and drops those events. State, `verify` and sync with paired devices are
//! unchanged; a device paired later would need a snapshot transfer, which is
//! not implemented, so an unpaired device is refused unless `--unpaired`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::{now_ms, open_store, Global};

/// Arguments of `roost compact`.
#[derive(Debug, Args, Default)]
pub struct CompactArgs {
    /// Compact even with no paired device: every event is then folded, and a
    /// device paired later cannot catch up (no snapshot transfer yet).
    #[arg(long)]
    pub unpaired: bool,
}

/// Runs `roost compact`.
pub fn run(global: &Global, args: CompactArgs) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let mut store = open_store(&ctx.data_dir)?;
    let paired = store.peers()?.iter().filter(|p| p.removed_ms.is_none()).count();
    if paired == 0 && !args.unpaired {
        anyhow::bail!(
            "no paired device: compacting would fold every event, and a device paired later could not catch up \
             (snapshot transfer is not implemented); pass --unpaired to compact anyway"
        );
    }
    let report = store.compact(now_ms()).context("cannot compact the event log")?;
    println!(
        "folded {} events (the snapshot holds {}, {} bytes); {} events left in the log",
        report.folded, report.folded_total, report.snapshot_bytes, report.remaining
    );
    if report.folded == 0 && paired > 0 {
        println!("nothing new is acknowledged by every paired device (see `roost pair list`)");
    }
    Ok(ExitCode::SUCCESS)
}
