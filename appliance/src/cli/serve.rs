//! `roost serve`: runs the daemon until SIGINT/SIGTERM. `--demo` sets up a
//! demo data directory with a demo user first, so one command gives a server a
//! mail client can connect to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use roost_core::auth;
use roost_core::model::UserName;

use crate::cli::{init, now_ms, open_store, Global};
use crate::serve::{lock_data_dir, shutdown_signal, Daemon};

/// The demo user's name and password (printed at start; loopback only).
pub const DEMO_USER: &str = "demo";
/// The demo user's password.
pub const DEMO_PASSWORD: &str = "demo-password";

/// Arguments of `roost serve`.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Create (if needed) and serve a demo data directory with user `demo`.
    #[arg(long)]
    pub demo: bool,
    /// IMAP (STARTTLS) listen address, replacing the config's (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen_imap: Vec<SocketAddr>,
    /// IMAP over implicit TLS listen address, replacing the config's (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen_imaps: Vec<SocketAddr>,
    /// LMTP listen address, replacing the config's (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen_lmtp: Vec<SocketAddr>,
    /// Sync (QUIC, UDP) listen address, replacing the config's (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen_sync: Vec<SocketAddr>,
    /// Address other devices reach this device's sync endpoint at, when it
    /// differs from the bound one (a port forward), replacing the config's.
    #[arg(long, value_name = "ADDR")]
    pub advertise_sync: Vec<SocketAddr>,
    /// Admin API and web UI listen address, replacing the config's (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen_admin: Vec<SocketAddr>,
}

/// Says what sealing the mail stored in clear did: one line per reason a
/// message stays in clear, with a count, not one per message.
fn log_seal_report(report: &roost_core::store::SealReport) {
    if report.sealed > 0 {
        tracing::info!(sealed = report.sealed, "sealed messages stored in clear before encryption was on");
    }
    let mut reasons: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, reason) in &report.left_in_clear {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    for (reason, messages) in reasons {
        tracing::warn!(messages, reason, "messages stay stored in clear");
    }
}

/// Runs `roost serve`.
pub fn run(global: &Global, args: ServeArgs) -> Result<ExitCode> {
    let mut global = global.clone();
    if args.demo && global.data_dir.is_none() {
        global.data_dir = Some(demo_dir()?);
    }
    let mut ctx = global.resolve()?;
    if args.demo {
        prepare_demo(&ctx.data_dir)?;
    }
    if !args.listen_imap.is_empty() {
        ctx.config.imap.listen = args.listen_imap.clone();
    }
    if !args.listen_imaps.is_empty() {
        ctx.config.imap.listen_tls = args.listen_imaps.clone();
    }
    if !args.listen_lmtp.is_empty() {
        ctx.config.lmtp.listen = args.listen_lmtp.clone();
    }
    if !args.advertise_sync.is_empty() {
        ctx.config.sync.advertise = args.advertise_sync.clone();
    }
    if !args.listen_sync.is_empty() {
        ctx.config.sync.listen = args.listen_sync.clone();
    } else if args.demo {
        ctx.config.sync.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    }
    if !args.listen_admin.is_empty() {
        ctx.config.admin.listen = args.listen_admin.clone();
    }
    let _lock = lock_data_dir(&ctx.data_dir)?;
    let mut store = open_store(&ctx.data_dir)?;
    store.set_encryption(ctx.config.encryption());
    // Before anything listens: mail stored in clear (encryption off before,
    // or an older version) is sealed in place; restartable (docs/security.md).
    let sealed = store.seal_existing().context("cannot seal the mail stored in clear")?;
    log_seal_report(&sealed);
    for user in store.users_without_keys()? {
        tracing::warn!(
            user,
            "user has no encryption key (created before encryption): their mail is stored in clear; \
             `roost user passwd` creates the key for new mail (docs/security.md)"
        );
    }
    report_rejoin(&store)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let daemon = Daemon::new(store, ctx.config.clone(), ctx.data_dir.clone());
        let _lmtp = crate::lmtp::spawn_listeners(daemon.clone(), &ctx.config)?;
        tracing::info!(data_dir = %ctx.data_dir.display(), "roost serving");
        daemon.spawn_external_change_watcher();
        let sync = crate::sync::start(
            daemon.clone(),
            crate::sync::SyncOptions {
                listen: ctx.config.sync.listen.clone(),
                advertise: ctx.config.sync.advertise.clone(),
            },
        )
        .await?;
        if !ctx.config.admin.listen.is_empty() {
            // Mail keeps flowing without the admin API: a port in use is logged, not fatal.
            if let Err(e) = crate::admin::start(
                daemon.clone(),
                Some(sync.clone()),
                &ctx.config.admin.listen,
                crate::config::config_path(global.config.as_deref()),
            )
            .await
            {
                tracing::error!(error = %format!("{e:#}"), "admin API not started");
            }
        }
        if args.demo {
            // A closed stdout must not stop a running daemon.
            if let Err(err) = print_demo_help(&daemon) {
                tracing::warn!(%err, "could not print the demo's connection help");
            }
        }
        let (stop_imap, stopped) = tokio::sync::watch::channel(false);
        let stopped_backup = stopped.clone();
        let stopped_compaction = stopped.clone();
        let stopped_blob_gc = stopped.clone();
        let imap = crate::imap::start_listeners(daemon.clone(), stopped).await?;
        // Scheduled backups ([backup] dir, every, keep); validated with the config.
        let backups = match ctx.config.backup.schedule()? {
            Some(schedule) => Some(tokio::spawn(crate::backup::run_schedule(
                ctx.data_dir.clone(),
                crate::config::config_path(global.config.as_deref()),
                schedule,
                stopped_backup,
            ))),
            None => None,
        };
        let compaction = ctx
            .config
            .sync
            .compact_every()?
            .map(|every| tokio::spawn(daemon.clone().run_compaction(every, stopped_compaction)));
        let blob_gc = ctx
            .config
            .store
            .blob_gc_every()?
            .map(|every| tokio::spawn(daemon.clone().run_blob_gc(every, stopped_blob_gc)));
        let cert = imap.cert.clone();
        let shutdown = shutdown_signal(move || match cert.reload() {
            Ok(()) => tracing::info!(cert = %cert.cert_path().display(), "SIGHUP: reloaded the TLS certificate"),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "SIGHUP: kept the old TLS certificate: the new one cannot be used"
            ),
        });
        // Every listener must be bound, and the signal handlers registered,
        // before this line (systemd Type=notify).
        crate::systemd::notify_ready();
        shutdown.await;
        crate::systemd::notify_stopping();
        tracing::info!("shutting down");
        let _ = stop_imap.send(true);
        imap.task.await.context("IMAP listeners panicked")??;
        if let Some(backups) = backups {
            backups.await.context("the backup schedule panicked")?;
        }
        if let Some(compaction) = compaction {
            compaction.await.context("the compaction schedule panicked")?;
        }
        if let Some(blob_gc) = blob_gc {
            blob_gc.await.context("the blob GC schedule panicked")?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn demo_dir() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "roost")
        .context("no home directory for the demo data: pass --data-dir")?;
    Ok(dirs.data_dir().join("demo"))
}

/// Initialises the demo data dir and user if they do not exist yet.
fn prepare_demo(dir: &std::path::Path) -> Result<()> {
    if !dir.join(roost_core::store::DB_FILE).exists() {
        init::init_data_dir(dir)?;
    }
    let mut store = open_store(dir)?;
    let user = UserName::new(DEMO_USER).expect("demo user name is valid");
    if !store.user_exists(&user)? {
        let hash = auth::hash_password(DEMO_PASSWORD, &mut rand::rngs::OsRng);
        let (keys, _recovery) = roost_core::crypto::UserKeys::generate(DEMO_PASSWORD, &mut rand::rngs::OsRng);
        store.write(now_ms(), |w| {
            w.add_user(&user, &hash)?;
            w.set_user_keys(&user, &hash, &keys)
        })?;
    }
    Ok(())
}

fn print_demo_help(daemon: &Daemon) -> std::io::Result<()> {
    outln!("Roost demo is running (data in {}).", daemon.data_dir.display());
    outln!("  user {DEMO_USER}, password {DEMO_PASSWORD}");
    for addr in &daemon.config.imap.listen {
        outln!("  IMAP (STARTTLS) on {addr}");
    }
    for addr in &daemon.config.imap.listen_tls {
        outln!("  IMAP over TLS  on {addr}");
    }
    for addr in &daemon.config.lmtp.listen {
        outln!("  LMTP           on {addr}");
    }
    outln!("Stop it with Ctrl-C.");
    Ok(())
}

/// A device restored from a backup (`roost restore`) makes no changes until a
/// peer has sent back what it made after the backup (docs/security.md); with
/// no active peer left there is nobody to wait for.
fn report_rejoin(store: &roost_core::store::Store) -> Result<()> {
    if store.end_rejoin_if_unpaired()? {
        tracing::warn!("restored device with no paired device left: it accepts changes again");
    } else if let Some(rejoin) = store.rejoin_state()? {
        tracing::warn!(
            own_events_here = rejoin.own_seq_restored,
            "restored from a backup: changes are refused (IMAP NO [UNAVAILABLE], LMTP 451) until a paired \
             device has sent back the changes this device made after the backup"
        );
    }
    Ok(())
}
