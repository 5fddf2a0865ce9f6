//! `roost compact`: folds the causally stable prefix of the event log (what
//! this device and every active paired device have) into the log snapshot
//! and drops those events. State, `verify` and sync with paired devices are
//! unchanged; a fresh device paired later installs the log snapshot over
//! sync (docs/replication.md, "Snapshot transfer"), so an unpaired device
//! compacts too (everything is then folded).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::{now_ms, open_store, Global};

/// Arguments of `roost compact`.
#[derive(Debug, Args, Default)]
pub struct CompactArgs {
    /// Accepted for scripts written when an unpaired device had to opt in;
    /// a device paired later now catches up from the snapshot.
    #[arg(long, hide = true)]
    pub unpaired: bool,
}

/// Runs `roost compact`.
pub fn run(global: &Global, _args: CompactArgs) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let mut store = open_store(&ctx.data_dir)?;
    let paired = store.peers()?.iter().filter(|p| p.removed_ms.is_none()).count();
    let report = store.compact(now_ms()).context("cannot compact the event log")?;
    outln!(
        "folded {} events (the snapshot holds {}, {} bytes); {} events left in the log",
        report.folded,
        report.folded_total,
        report.snapshot_bytes,
        report.remaining
    );
    if report.folded == 0 && paired > 0 {
        outln!("nothing new is acknowledged by every paired device (see `roost pair list`)");
    }
    if paired == 0 && report.folded > 0 {
        // What a snapshot cannot do yet (StoreError::SnapshotRefused).
        outln!(
            "no paired device: every event was folded; a fresh device paired later installs the snapshot, \
             a device with mail of its own cannot (export its mail and re-initialise it first)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
