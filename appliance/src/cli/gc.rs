//! `roost gc`: removes the blobs (message files) of deleted mail that nothing
//! can need any more: no live entry of any user names them, and every paired
//! device has acknowledged the events naming them and the removal of their
//! last entry (docs/replication.md, "Blob garbage collection"). Safe while the
//! daemon runs: both decide under the database's write lock. `roost serve`
//! runs it every `[store] blob_gc_every`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{open_store, Global};

/// Runs `roost gc`.
pub fn run(global: &Global) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let mut store = open_store(&ctx.data_dir)?;
    let report = store.collect_garbage().context("cannot collect garbage blobs")?;
    outln!("removed {} blobs ({} bytes)", report.blobs, report.bytes);
    if 0 < report.kept_unstable {
        outln!(
            "kept {} blobs of deleted mail until every paired device has acknowledged the deletion \
             (see `roost pair list`)",
            report.kept_unstable
        );
    }
    Ok(ExitCode::SUCCESS)
}
