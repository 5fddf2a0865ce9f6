//! `roost status`: the device, users, mailboxes, messages and storage.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{open_store, Global};

/// Runs `roost status`.
pub fn run(global: &Global) -> Result<ExitCode> {
    let ctx = global.resolve()?;
    let store = open_store(&ctx.data_dir)?;
    let stats = store.stats()?;
    let identity = store.identity();
    outln!("data directory  {}", ctx.data_dir.display());
    outln!("device          {} (slot {})", identity.id(), identity.slot().get());
    if let Some(rejoin) = store.rejoin_state()? {
        let target = rejoin.own_seq_target.map_or("no peer heard yet".to_string(), |seq| format!("a peer has {seq}"));
        outln!(
            "rejoining       restored from a backup; changes refused until its own events are back \
             (has {} of its own, {target})",
            store.version_vector()?.get(&identity.id())
        );
    }
    let now = crate::cli::now_ms();
    let peers = crate::ops::peer_views(&store, None, now)?;
    if peers.is_empty() {
        outln!("peers           none paired");
    }
    for peer in &peers {
        let seen = match peer.last_seen_ms {
            _ if peer.connected => "connected".to_string(),
            Some(ms) => format!("last seen {} s ago", now.saturating_sub(ms) / 1000),
            None => "never connected".to_string(),
        };
        let (they_lack, we_lack) = (peer.events_they_lack, peer.events_we_lack);
        outln!(
            "peer            {} {} ({}): {seen}; it lacks {they_lack} events, we lack {we_lack}; lag {}; sent {}, received {}",
            peer.name,
            peer.device_id.short(),
            peer.addrs.join(", "),
            peer.lag_ms.map_or("unknown".to_string(), |ms| format!("{ms} ms")),
            human_bytes(peer.bytes_sent),
            human_bytes(peer.bytes_received),
        );
        if let Some(reason) = &peer.snapshot_refused {
            outln!("                refused its log snapshot: {reason}");
        }
    }
    outln!("users           {}", stats.users);
    outln!("mailboxes       {}", stats.mailboxes);
    outln!("messages        {} in mailboxes, {} stored", stats.entries, stats.messages);
    outln!("events          {}", stats.events);
    outln!("storage         {} database, {} message blobs", human_bytes(stats.db_bytes), human_bytes(stats.blob_bytes));
    for user in store.users()? {
        outln!("  user {:<24} {:>4} mailboxes {:>8} messages", user.name, user.mailboxes, user.messages);
    }
    Ok(ExitCode::SUCCESS)
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
