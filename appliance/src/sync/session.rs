//! One sync session with one peer over one QUIC connection. The dialler opens
//! the control stream; both send `Hello`; then three loops run until the
//! connection ends:
//! - send: the events the peer lacks (by the vector it last told us plus what
//!   we sent since), in causal order, then wait for the next local commit;
//! - receive: decode and verify each event's signature, fetch the blobs it
//!   names, apply what is next in causal order, and acknowledge;
//! - serve blobs: answer the peer's blob requests.
//!
//! Any malformed frame, bad signature or blob whose bytes do not match its hash
//! ends the session with a logged reason; nothing of it is stored.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use roost_core::log::{Event, VersionVector};
use roost_core::model::{BlobHash, DeviceId};
use roost_core::store::peers::PeerStats;

use crate::cli::now_ms;
use crate::serve::Daemon;
use crate::sync::frames::{read_frame, write_frame, FRAME_BYTES_MAX};
use crate::sync::messages::{BlobRequest, InlineBlob, Message, WireEvent, PROTOCOL_VERSION};

/// Events per frame: big enough to amortise a round of SQLite work, small
/// enough that a frame stays far below `FRAME_BYTES_MAX`.
const EVENTS_PER_FRAME: usize = 256;

/// Acks waiting for the sender; when full, the newest ack replaces nothing and
/// the receiver waits (a later ack supersedes an earlier one anyway).
const ACK_QUEUE: usize = 16;

/// How often the sender looks for new events even without a commit notice:
/// other processes (`roost user add` while the daemon runs) commit to the
/// same database without going through this daemon's change feed.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a session writes its statistics for `roost status`.
const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Blobs up to this size travel inside the events frame; 64 such blobs per
/// frame stay far below `FRAME_BYTES_MAX` even base64-encoded.
const INLINE_BLOB_BYTES_MAX: u64 = 64 * 1024;

/// Largest blob accepted from a peer (the LMTP size limit's order of magnitude).
const BLOB_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// Runs a session until the connection ends or the peer misbehaves.
pub async fn run(
    daemon: &Arc<Daemon>,
    conn: iroh::endpoint::Connection,
    peer: DeviceId,
    dialer: bool,
    my_addrs: Vec<std::net::SocketAddr>,
) -> Result<()> {
    let (mut send, mut recv) = if dialer {
        conn.open_bi().await.context("cannot open the control stream")?
    } else {
        conn.accept_bi().await.context("the peer opened no control stream")?
    };
    let my_vv = daemon.read(|s| s.version_vector()).await?;
    let addrs = my_addrs.iter().map(|a| a.to_string()).collect();
    write_frame(&mut send, &Message::Hello { version: PROTOCOL_VERSION, vv: my_vv, addrs }).await?;
    let peer_vv = match read_frame::<_, Message>(&mut recv).await? {
        Some((Message::Hello { version, vv, addrs }, _)) => {
            if version != PROTOCOL_VERSION {
                bail!("peer speaks sync protocol version {version}, this build speaks {PROTOCOL_VERSION}");
            }
            let valid: Vec<String> =
                addrs.into_iter().filter(|a| a.parse::<std::net::SocketAddr>().is_ok()).take(16).collect();
            if !valid.is_empty() {
                daemon.read(move |s| s.set_peer_addrs(peer, &valid)).await?;
            }
            vv
        }
        Some((other, _)) => bail!("expected Hello, got {other:?}"),
        None => bail!("peer closed the control stream before Hello"),
    };
    tracing::info!(peer = %peer.short(), events_peer_has = peer_vv.total(), "sync session started");
    let stats = Arc::new(std::sync::Mutex::new(PeerStats { acked: peer_vv.clone(), ..PeerStats::default() }));

    // Acks travel on the control stream too, queued to the sender.
    let (acks, ack_queue) = tokio::sync::mpsc::channel(ACK_QUEUE);
    let sender = send_loop(daemon.clone(), send, peer, peer_vv, ack_queue, stats.clone());
    let receiver = receive_loop(daemon.clone(), conn.clone(), recv, peer, acks, stats.clone());
    let blob_server = serve_blobs(daemon.clone(), conn.clone());
    let flusher = {
        let (daemon, stats) = (daemon.clone(), stats.clone());
        tokio::spawn(async move {
            // Runs until the session ends and aborts it.
            loop {
                record_stats(&daemon, peer, &stats).await;
                tokio::time::sleep(STATS_INTERVAL).await;
            }
        })
    };
    let res = tokio::select! {
        res = sender => res.context("sending"),
        res = receiver => res.context("receiving"),
        res = blob_server => res.context("serving blobs"),
    };
    flusher.abort();
    record_stats(daemon, peer, &stats).await;
    res
}

async fn record_stats(daemon: &Daemon, peer: DeviceId, stats: &std::sync::Mutex<PeerStats>) {
    let snapshot = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Best effort: statistics must not end a session.
    let _ = daemon.read(move |s| s.record_peer_stats(peer, &snapshot)).await;
}

async fn send_loop(
    daemon: Arc<Daemon>,
    mut send: iroh::endpoint::SendStream,
    peer: DeviceId,
    peer_vv: VersionVector,
    mut acks: tokio::sync::mpsc::Receiver<Message>,
    stats: Arc<std::sync::Mutex<PeerStats>>,
) -> Result<()> {
    let mut sent = peer_vv;
    let mut changes = daemon.subscribe();
    // Runs for the life of the session.
    loop {
        let have = sent.clone();
        let (active, batch) = daemon
            .read(move |s| {
                // `roost pair remove` (another process) takes effect before the next send.
                let active = s.is_active_peer(peer)?;
                Ok((active, if active { s.events_missing(&have, EVENTS_PER_FRAME)? } else { Vec::new() }))
            })
            .await?;
        if !active {
            bail!("the peer was removed");
        }
        if batch.is_empty() {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = tokio::time::sleep(POLL_INTERVAL) => continue,
                ack = acks.recv() => match ack {
                    Some(ack) => {
                        let n = write_frame(&mut send, &ack).await?;
                        stats.lock().unwrap_or_else(|e| e.into_inner()).bytes_sent += n as u64;
                        continue;
                    }
                    None => return Ok(()),
                },
            }
        }
        for event in &batch {
            if sent.get(&event.id.origin) < event.id.seq {
                sent.set(event.id.origin, event.id.seq);
            }
        }
        let events = batch.iter().map(WireEvent::from_event).collect();
        let hashes: Vec<BlobHash> = batch.iter().flat_map(|e| e.op.blobs()).collect();
        let blobs = daemon
            .read(move |s| {
                let mut inline = Vec::new();
                let mut budget = FRAME_BYTES_MAX as u64 / 2;
                for hash in hashes {
                    let Ok(raw) = s.message(&hash) else { continue };
                    let size = raw.len() as u64;
                    if size <= INLINE_BLOB_BYTES_MAX && size * 2 < budget {
                        budget -= size * 2;
                        inline.push(InlineBlob { hash, data: data_encoding::BASE64.encode(&raw) });
                    }
                }
                Ok(inline)
            })
            .await?;
        let n = write_frame(&mut send, &Message::Events { events, blobs }).await?;
        stats.lock().unwrap_or_else(|e| e.into_inner()).bytes_sent += n as u64;
    }
}

async fn receive_loop(
    daemon: Arc<Daemon>,
    conn: iroh::endpoint::Connection,
    mut recv: iroh::endpoint::RecvStream,
    peer: DeviceId,
    acks: tokio::sync::mpsc::Sender<Message>,
    stats: Arc<std::sync::Mutex<PeerStats>>,
) -> Result<()> {
    // Runs for the life of the session.
    loop {
        let Some((message, n)) = read_frame::<_, Message>(&mut recv).await? else {
            return Ok(());
        };
        {
            let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.bytes_received += n as u64;
            stats.last_seen_ms = Some(now_ms());
        }
        match message {
            Message::Hello { .. } => bail!("a second Hello"),
            Message::Ack { vv } => {
                stats.lock().unwrap_or_else(|e| e.into_inner()).acked = vv;
            }
            Message::Events { events, blobs } => {
                store_inline_blobs(&daemon, blobs).await?;
                let mut decoded = Vec::with_capacity(events.len());
                for wire in events {
                    decoded.push(wire.into_event().map_err(|e| format_err!("peer {} sent {e}", peer.short()))?);
                }
                fetch_missing_blobs(&daemon, &conn, &decoded).await?;
                let newest_ms = decoded.iter().map(|e| e.hlc.ms()).max();
                // The store holds events whose dependencies are missing and
                // applies them when they arrive (from this peer or another).
                let report = daemon.ingest(decoded).await?;
                if 0 < report.pending {
                    tracing::debug!(pending = report.pending, "events wait for their dependencies");
                }
                if 0 < report.rekeys {
                    tracing::info!(rekeys = report.rekeys, peer = %peer.short(), "re-keyed late entries");
                }
                let now = now_ms();
                if let Some(created_ms) = newest_ms {
                    // Commit there to apply here; skewed clocks make this approximate.
                    stats.lock().unwrap_or_else(|e| e.into_inner()).lag_ms = Some(now.saturating_sub(created_ms));
                }
                let vv = daemon.read(|s| s.version_vector()).await?;
                // The sender may be blocked writing: never wait here for it.
                let _ = acks.try_send(Message::Ack { vv });
            }
        }
    }
}

async fn store_inline_blobs(daemon: &Daemon, blobs: Vec<InlineBlob>) -> Result<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    let mut checked = Vec::with_capacity(blobs.len());
    for blob in blobs {
        let raw = data_encoding::BASE64
            .decode(blob.data.as_bytes())
            .map_err(|e| format_err!("inline blob {} is not base64: {e}", blob.hash.to_hex()))?;
        if BlobHash::of(&raw) != blob.hash {
            bail!("blob {} from the peer does not match its hash", blob.hash.to_hex());
        }
        checked.push(raw);
    }
    daemon
        .read(move |s| {
            for raw in &checked {
                s.blobs().put(raw)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

async fn fetch_missing_blobs(daemon: &Daemon, conn: &iroh::endpoint::Connection, events: &[Event]) -> Result<()> {
    let wanted: BTreeSet<BlobHash> = events.iter().flat_map(|e| e.op.blobs()).collect();
    let wanted: Vec<BlobHash> = wanted.into_iter().collect();
    let missing = {
        let wanted = wanted.clone();
        daemon.read(move |s| Ok(wanted.into_iter().filter(|h| !s.blobs().contains(h)).collect::<Vec<_>>())).await?
    };
    if missing.is_empty() {
        return Ok(());
    }
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, &BlobRequest { hashes: missing.clone() }).await?;
    send.finish()?;
    for hash in missing {
        let len = recv.read_u64().await.context("blob stream ended")?;
        if len == u64::MAX {
            bail!("peer does not have blob {}", hash.to_hex());
        }
        if BLOB_BYTES_MAX < len {
            bail!("peer offered a blob of {len} bytes, above the {BLOB_BYTES_MAX}-byte limit");
        }
        let mut raw = vec![0u8; len as usize];
        recv.read_exact(&mut raw).await.context("blob stream ended mid-blob")?;
        if BlobHash::of(&raw) != hash {
            bail!("blob {} from the peer does not match its hash", hash.to_hex());
        }
        daemon.read(move |s| s.blobs().put(&raw).map_err(Into::into)).await?;
    }
    Ok(())
}

async fn serve_blobs(daemon: Arc<Daemon>, conn: iroh::endpoint::Connection) -> Result<()> {
    // Runs for the life of the session; each request is its own stream.
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(_) => return Ok(()), // Connection closed.
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let res: Result<()> = async {
                let Some((request, _)) = read_frame::<_, BlobRequest>(&mut recv).await? else { return Ok(()) };
                for hash in request.hashes {
                    match daemon.read(move |s| s.message(&hash)).await {
                        Ok(raw) => {
                            send.write_u64(raw.len() as u64).await?;
                            send.write_all(&raw).await?;
                        }
                        Err(_) => send.write_u64(u64::MAX).await?,
                    }
                }
                send.finish()?;
                Ok(())
            }
            .await;
            if let Err(e) = res {
                tracing::debug!(error = %format!("{e:#}"), "blob request failed");
            }
        });
    }
}
