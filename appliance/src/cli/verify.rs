//! `roost verify`: rebuilds the state from the event log alone and compares it
//! with the live state, table by table, and checks the store's invariants.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{open_store, Global};

/// Runs `roost verify`; exits 1 if anything differs.
pub fn run(global: &Global) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let store = open_store(&ctx.data_dir)?;
    let report = store.verify()?;
    outln!("replayed {} events", report.events);
    outln!("{}", report.live);
    if report.problems.is_empty() {
        outln!("ok: the state rebuilt from the log matches the live state");
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &report.problems {
            outln!("problem: {problem}");
        }
        outln!("FAILED: {} problem(s)", report.problems.len());
        Ok(ExitCode::FAILURE)
    }
}
