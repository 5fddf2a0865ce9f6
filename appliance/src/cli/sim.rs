//! `roost sim`: the deterministic replication simulation of roost-core, run
//! over many seeds (a soak). Needs no data directory. Exits 1 on the first
//! failing seed and prints the one-line command that replays it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use roost_core::sim::{run as run_seed, SimConfig, SimReport};

/// Options of `roost sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of seeds to run (from --first).
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Run only this seed (replay) and print its report.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Devices per run, 2 to 5 (default: chosen by each seed).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=5))]
    pub devices: Option<u64>,
    /// Random steps per run.
    #[arg(long, default_value_t = 150)]
    pub steps: usize,
    /// Longest advance of the virtual clock per step, in ms (default 400 in
    /// the stress profile, 20000 in the field one; larger means less
    /// concurrency between devices).
    #[arg(long)]
    pub step_ms: Option<u64>,
    /// `stress` (default: far busier and more faulty than any user, finds
    /// bugs) or `field` (devices mostly connected, an operation every ~10 s:
    /// the re-key rate users would see).
    #[arg(long, default_value = "stress", value_parser = ["stress", "field"])]
    pub profile: String,
    /// After each run, a fresh device catches up from a log snapshot and
    /// must converge (off by default: seeds keep their earlier behaviour).
    #[arg(long)]
    pub late_joiner: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn config(args: &SimArgs, seed: u64) -> SimConfig {
    let mut config = if args.profile == "field" { SimConfig::field(seed) } else { SimConfig::for_seed(seed) };
    if let Some(devices) = args.devices {
        config.devices = devices as usize;
    }
    config.steps = args.steps;
    config.late_joiner = args.late_joiner;
    if let Some(step_ms) = args.step_ms {
        config.step_ms_max = step_ms;
    }
    config
}

fn replay_line(args: &SimArgs, report: &SimReport) -> String {
    format!(
        "roost sim --seed {} --devices {} --steps {} --profile {}   (or: ROOST_SIM_SEED={} cargo test -p roost-core --test sim, default devices/steps, stress profile)",
        report.seed, report.devices, args.steps, args.profile, report.seed
    )
}

/// Runs `roost sim`.
pub fn run(args: SimArgs) -> Result<ExitCode> {
    if let Some(seed) = args.seed {
        let report = run_seed(&config(&args, seed));
        outln!("{report:#?}");
        return Ok(if report.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let next = AtomicU64::new(args.first);
    let end = args.first.saturating_add(args.seeds);
    let failed = AtomicBool::new(false);
    let (done, rekeys, placed) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    let first_failure: std::sync::Mutex<Option<SimReport>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if end <= seed {
                    return;
                }
                let report = run_seed(&config(&args, seed));
                if !report.violations.is_empty() {
                    failed.store(true, Ordering::Relaxed);
                    let mut slot = first_failure.lock().unwrap_or_else(|e| e.into_inner());
                    if slot.as_ref().is_none_or(|r| report.seed < r.seed) {
                        *slot = Some(report);
                    }
                    return;
                }
                rekeys.fetch_add(report.rekeys, Ordering::Relaxed);
                placed.fetch_add(report.entries_placed, Ordering::Relaxed);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 10_000 == 0 {
                    eprintln!("{n} seeds clean ({:.0} s)", started.elapsed().as_secs_f64());
                }
            });
        }
    });
    let (done, rekeys, placed) = (done.into_inner(), rekeys.into_inner(), placed.into_inner());
    let rate = if placed == 0 { 0.0 } else { rekeys as f64 / placed as f64 * 100.0 };
    outln!(
        "{done} seeds clean in {:.0} s; {rekeys} re-keys for {placed} entries placed ({rate:.2}%)",
        started.elapsed().as_secs_f64()
    );
    match first_failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(report) => {
            outln!("FAILED seed {}: {}", report.seed, report.violations.join("; "));
            outln!("replay: {}", replay_line(&args, &report));
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}
