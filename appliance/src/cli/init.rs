//! `roost init`: creates the data directory, the device key and the database.
//! Either all of it is created or none of it (a failed init removes what it made).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use roost_core::model::DeviceSlot;
use roost_core::store::{Store, DB_FILE};

use crate::cli::{now_ms, Global};
use crate::device;

/// Arguments of `roost init`.
#[derive(Debug, Args, Default)]
pub struct InitArgs {}

/// Runs `roost init`.
pub fn run(global: &Global, _args: InitArgs) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let dir = &ctx.data_dir;
    init_data_dir(dir)?;
    outln!("initialised Roost data directory {}", dir.display());
    outln!("admin token: run `roost admin token` (the web UI and the admin API ask for it)");
    Ok(ExitCode::SUCCESS)
}

/// Creates a data directory with key and database; refuses one already in use.
pub fn init_data_dir(dir: &std::path::Path) -> Result<Store> {
    if dir.join(DB_FILE).exists() || device::key_path(dir).exists() {
        bail!("{} is already a Roost data directory", dir.display());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let res = (|| {
        let secret = device::create_key(dir)?;
        crate::admin::create_token(dir)?;
        let slot = DeviceSlot::new(0).expect("slot 0 is valid");
        Store::init(dir, secret, slot, now_ms())
            .with_context(|| format!("cannot create the store in {}", dir.display()))
    })();
    if res.is_err() {
        // Leave nothing half-written behind.
        let tls = [crate::imap::tls::SELF_SIGNED_CERT_FILE, crate::imap::tls::SELF_SIGNED_KEY_FILE];
        for name in
            [DB_FILE, "roost.db-wal", "roost.db-shm", device::KEY_FILE, crate::admin::TOKEN_FILE].into_iter().chain(tls)
        {
            let _ = fs::remove_file(dir.join(name));
        }
    }
    res
}
