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

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use roost_core::log::{Event, VersionVector};
use roost_core::model::{BlobHash, DeviceId};
use roost_core::store::peers::PeerStats;
use roost_core::store::{BlobStore, RejoinProgress, SnapshotOffer, SpooledBlob, StagedBlob, StoreError, BLOB_DIR};

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

/// Inline blobs of one frame up to this many bytes (base64-decoded) go into
/// the blob spool with their events (one commit makes both durable:
/// `core/src/store/spool.rs`); a larger frame is catch-up, whose blobs are
/// staged as files and fsynced in parallel, so bulk bytes are not written
/// twice (database, then file).
const SPOOL_FRAME_BYTES_MAX: usize = 1024 * 1024;

/// Largest blob accepted from a peer: the sync protocol's message size limit.
/// Above LMTP's 50 MiB so that anything a device accepted replicates; a
/// larger offer ends the session before a byte of it is stored.
pub const BLOB_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// Bytes of a large blob held in memory at once while it streams between the
/// QUIC stream and its file, on either side.
pub const BLOB_CHUNK_BYTES: usize = 256 * 1024;

/// Answer to a blob request for a blob the sender does not have (in place of
/// its length).
const BLOB_ABSENT: u64 = u64::MAX;

/// Answer for a blob the sender collected (`Store::blob_collected`): no live
/// entry there names it and the events that removed its entries follow in
/// the sender's log, so the receiver applies the events naming it without
/// it (docs/replication.md, "Blob garbage collection"). Above
/// `BLOB_BYTES_MAX`, so an older receiver ends the session on it, as it did
/// on `BLOB_ABSENT`.
const BLOB_GONE: u64 = u64::MAX - 1;

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
    let (my_vv, refusal) = daemon.read(move |s| Ok((s.version_vector()?, s.snapshot_refusal(peer)?))).await?;
    if let Some(refusal) = &refusal {
        tracing::warn!(
            peer = %peer.short(),
            reason = %refusal.reason,
            "this device refused the peer's log snapshot and still does; the peer is told not to send it again"
        );
    }
    let addrs = my_addrs.iter().map(|a| a.to_string()).collect();
    let refused_snapshot = refusal.map(|r| r.vector);
    write_frame(&mut send, &Message::Hello { version: PROTOCOL_VERSION, vv: my_vv, addrs, refused_snapshot }).await?;
    let (peer_vv, peer_refused) = match read_frame::<_, Message>(&mut recv).await? {
        Some((Message::Hello { version, vv, addrs, refused_snapshot }, _)) => {
            if version != PROTOCOL_VERSION {
                bail!("peer speaks sync protocol version {version}, this build speaks {PROTOCOL_VERSION}");
            }
            let valid: Vec<String> =
                addrs.into_iter().filter(|a| a.parse::<std::net::SocketAddr>().is_ok()).take(16).collect();
            if !valid.is_empty() {
                daemon.read(move |s| s.set_peer_addrs(peer, &valid)).await?;
            }
            (vv, refused_snapshot)
        }
        Some((other, _)) => bail!("expected Hello, got {other:?}"),
        None => bail!("peer closed the control stream before Hello"),
    };
    tracing::info!(peer = %peer.short(), events_peer_has = peer_vv.total(), "sync session started");
    learn_own_seq(daemon, peer, &peer_vv).await?;
    // Blob I/O goes around the store's lock: fsyncs and large files must not
    // stall IMAP. The same directory as the store's (as LMTP does).
    let blobs = Arc::new(BlobStore::open_dir(&daemon.data_dir.join(BLOB_DIR))?);
    let view = Arc::new(PeerView {
        stats: std::sync::Mutex::new(PeerStats { acked: peer_vv.clone(), ..PeerStats::default() }),
        has: std::sync::Mutex::new(peer_vv),
    });

    // Acks travel on the control stream too, queued to the sender.
    let (acks, ack_queue) = tokio::sync::mpsc::channel(ACK_QUEUE);
    let sender = send_loop(daemon.clone(), blobs.clone(), send, peer, ack_queue, view.clone(), peer_refused);
    let receiver = receive_loop(daemon.clone(), blobs.clone(), conn.clone(), recv, peer, acks, view.clone());
    let blob_server = serve_blobs(daemon.clone(), blobs, conn.clone());
    let flusher = {
        let (daemon, view) = (daemon.clone(), view.clone());
        tokio::spawn(async move {
            // Runs until the session ends and aborts it.
            loop {
                record_stats(&daemon, peer, &view.stats).await;
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
    record_stats(daemon, peer, &view.stats).await;
    res
}

/// What a session's loops share about its peer.
struct PeerView {
    /// Statistics for `roost status`.
    stats: std::sync::Mutex<PeerStats>,
    /// What the peer is known to have: its Hello, its acks, and every event it
    /// sent us. The sender skips these, so an event is not echoed back to the
    /// device it came from.
    has: std::sync::Mutex<VersionVector>,
}

/// A restored device learns from the peer's `Hello` how far the peer has
/// this device's own events; the peer then streams those it lacks (they are
/// above its vector), and the ingest that reaches them ends the rejoin.
async fn learn_own_seq(daemon: &Daemon, peer: DeviceId, peer_vv: &VersionVector) -> Result<()> {
    let peer_vv = peer_vv.clone();
    let progress = daemon.read(move |s| s.rejoin_learn(peer_vv.get(&s.identity().id()))).await?;
    match progress {
        RejoinProgress::NotRejoining => {}
        RejoinProgress::Waiting { have, target } => tracing::info!(
            peer = %peer.short(),
            own_events_here = have,
            own_events_at_peer = target,
            "restored device: taking back its own events from the peer before it accepts changes"
        ),
        RejoinProgress::Done => {
            tracing::info!(peer = %peer.short(), "restored device rejoined: the peer has no newer events of it")
        }
    }
    Ok(())
}

async fn record_stats(daemon: &Daemon, peer: DeviceId, stats: &std::sync::Mutex<PeerStats>) {
    let snapshot = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Best effort: statistics must not end a session.
    let _ = daemon.read(move |s| s.record_peer_stats(peer, &snapshot)).await;
}

/// What the sender reads next for its peer.
enum Outgoing {
    /// `roost pair remove` (another process) took effect.
    PeerRemoved,
    /// Events the peer lacks (none: wait for a change).
    Events(Vec<Event>),
    /// The peer lacks folded events: the snapshot goes first.
    Snapshot(SnapshotOffer, Vec<u8>),
    /// The peer lacks folded events and refused this snapshot (its Hello
    /// said so): nothing to send until this device's snapshot changes.
    SnapshotRefused,
}

async fn send_loop(
    daemon: Arc<Daemon>,
    blobs: Arc<BlobStore>,
    mut send: iroh::endpoint::SendStream,
    peer: DeviceId,
    mut acks: tokio::sync::mpsc::Receiver<Message>,
    view: Arc<PeerView>,
    peer_refused: Option<VersionVector>,
) -> Result<()> {
    let mut sent = VersionVector::new();
    let mut changes = daemon.subscribe();
    let mut refusal_logged = false;
    // Runs for the life of the session.
    loop {
        sent.merge(&view.has.lock().unwrap_or_else(|e| e.into_inner()));
        let have = sent.clone();
        let refused = peer_refused.clone();
        let outgoing = daemon
            .read(move |s| {
                if !s.is_active_peer(peer)? {
                    return Ok(Outgoing::PeerRemoved);
                }
                match s.events_missing(&have, EVENTS_PER_FRAME) {
                    Ok(batch) => Ok(Outgoing::Events(batch)),
                    // Compared by vector, so a refused image is not even read.
                    Err(StoreError::SnapshotNeeded { .. }) if refused == Some(s.snapshot_vector()?) => {
                        Ok(Outgoing::SnapshotRefused)
                    }
                    Err(StoreError::SnapshotNeeded { .. }) => Ok(match s.snapshot_offer()? {
                        Some((offer, image)) => Outgoing::Snapshot(offer, image),
                        None => Outgoing::Events(Vec::new()),
                    }),
                    Err(e) => Err(e),
                }
            })
            .await?;
        let batch = match outgoing {
            Outgoing::PeerRemoved => bail!("the peer was removed"),
            Outgoing::Events(batch) => batch,
            Outgoing::Snapshot(offer, image) => {
                tracing::info!(peer = %peer.short(), bytes = image.len(), "the peer lacks compacted events: sending the log snapshot");
                let vector = offer.vector.clone();
                let n = crate::sync::snapshot::send(&mut send, offer, &image).await?;
                view.stats.lock().unwrap_or_else(|e| e.into_inner()).bytes_sent += n;
                sent.merge(&vector);
                continue;
            }
            Outgoing::SnapshotRefused => {
                if !refusal_logged {
                    refusal_logged = true;
                    tracing::warn!(
                        peer = %peer.short(),
                        "the peer lacks compacted events and refused this device's log snapshot (it has history \
                         of its own, see its status): not sending it again until this device's snapshot changes"
                    );
                }
                Vec::new()
            }
        };
        if batch.is_empty() {
            // Waits for a reason to read again: a commit of events the peer
            // may lack, or a change we cannot tell (another process), or the
            // poll. Forwarding acks meanwhile.
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        // The events this peer just sent us, applied: nothing
                        // to read (the store lock is wanted by IDLE now).
                        Ok(change) if peer_has_all(&view.has, &sent, &change.events) => {}
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            lag_stage("feed", 0);
                            break;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                    _ = tokio::time::sleep(POLL_INTERVAL) => break,
                    ack = acks.recv() => match ack {
                        Some(ack) => {
                            let n = write_frame(&mut send, &ack).await?;
                            view.stats.lock().unwrap_or_else(|e| e.into_inner()).bytes_sent += n as u64;
                        }
                        None => return Ok(()),
                    },
                }
            }
            continue;
        }
        lag_stage("read", batch.len());
        note_events(&mut sent, &batch);
        let events = batch.iter().map(WireEvent::from_event).collect();
        let hashes: Vec<BlobHash> = batch.iter().flat_map(|e| e.op.blobs()).collect();
        let store = blobs.clone();
        let (mut inline, mut budget, unfiled) = tokio::task::spawn_blocking(move || {
            let (mut inline, mut unfiled) = (Vec::new(), Vec::new());
            let mut budget = FRAME_BYTES_MAX as u64 / 2;
            for hash in hashes {
                let Ok(mut reader) = store.open(&hash) else {
                    unfiled.push(hash);
                    continue;
                };
                // One too large is fetched over its own stream.
                let size = reader.len();
                if size <= INLINE_BLOB_BYTES_MAX && size * 2 < budget {
                    let mut raw = Vec::with_capacity(size as usize);
                    if std::io::Read::read_to_end(&mut reader, &mut raw).is_ok() {
                        budget -= size * 2;
                        inline.push(InlineBlob { hash, data: data_encoding::BASE64.encode(&raw) });
                    }
                }
            }
            (inline, budget, unfiled)
        })
        .await?;
        // Not in the blob store: still in the spool (received a moment ago),
        // or lacked here, which is the peer's to fetch elsewhere.
        for hash in unfiled {
            if let Some(raw) = daemon.spooled_blob(hash).await? {
                let size = raw.len() as u64;
                if size <= INLINE_BLOB_BYTES_MAX && size * 2 < budget {
                    budget -= size * 2;
                    inline.push(InlineBlob { hash, data: data_encoding::BASE64.encode(&raw) });
                }
            }
        }
        let n = write_frame(&mut send, &Message::Events { events, blobs: inline }).await?;
        lag_stage("sent", batch.len());
        view.stats.lock().unwrap_or_else(|e| e.into_inner()).bytes_sent += n as u64;
    }
}

/// Whether a change consists of events the peer has (known from it, or sent
/// to it); an empty list is an unknown change, not a known one.
fn peer_has_all(
    peer_has: &std::sync::Mutex<VersionVector>,
    sent: &VersionVector,
    events: &[roost_core::model::EventId],
) -> bool {
    let peer_has = peer_has.lock().unwrap_or_else(|e| e.into_inner());
    !events.is_empty() && events.iter().all(|id| peer_has.contains(*id) || sent.contains(*id))
}

/// Raises `vv` over the events of `batch`.
fn note_events(vv: &mut VersionVector, batch: &[Event]) {
    for event in batch {
        if vv.get(&event.id.origin) < event.id.seq {
            vv.set(event.id.origin, event.id.seq);
        }
    }
}

/// Logs a timestamp of one stage of the replication path (target
/// `roost::lag`, debug): wall-clock microseconds, which two daemons on one
/// machine share, so the sync bench lines up A's send with B's commit.
fn lag_stage(stage: &str, events: usize) {
    if tracing::enabled!(target: "roost::lag", tracing::Level::DEBUG) {
        let at_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        tracing::debug!(target: "roost::lag", "lag-stage {stage} {at_us} {events}");
    }
}

async fn receive_loop(
    daemon: Arc<Daemon>,
    blobs: Arc<BlobStore>,
    conn: iroh::endpoint::Connection,
    mut recv: iroh::endpoint::RecvStream,
    peer: DeviceId,
    acks: tokio::sync::mpsc::Sender<Message>,
    view: Arc<PeerView>,
) -> Result<()> {
    // Runs for the life of the session.
    loop {
        let Some((message, n)) = read_frame::<_, Message>(&mut recv).await? else {
            return Ok(());
        };
        {
            let mut stats = view.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.bytes_received += n as u64;
            stats.last_seen_ms = Some(now_ms());
        }
        match message {
            Message::Hello { .. } => bail!("a second Hello"),
            Message::SnapshotChunk { .. } => bail!("a snapshot chunk without its offer"),
            Message::Snapshot { offer } => {
                let (vv, read) = crate::sync::snapshot::receive(&daemon, &blobs, &conn, &mut recv, peer, offer).await?;
                view.stats.lock().unwrap_or_else(|e| e.into_inner()).bytes_received += read;
                let _ = acks.try_send(Message::Ack { vv });
            }
            Message::Ack { vv } => {
                view.has.lock().unwrap_or_else(|e| e.into_inner()).merge(&vv);
                // Only ever raised in a session: an ack read before the
                // peer's newest own events may arrive after them.
                view.stats.lock().unwrap_or_else(|e| e.into_inner()).acked.merge(&vv);
            }
            Message::Events { events, blobs: inline } => {
                lag_stage("received", events.len());
                let mut decoded = Vec::with_capacity(events.len());
                for wire in events {
                    decoded.push(wire.into_event().map_err(|e| format_err!("peer {} sent {e}", peer.short()))?);
                }
                let sizes: BlobSizes = decoded.iter().flat_map(|e| e.op.blob_sizes()).collect();
                let (spooled, mut staged) = take_inline_blobs(&blobs, inline, sizes.clone()).await?;
                note_events(&mut view.has.lock().unwrap_or_else(|e| e.into_inner()), &decoded);
                // The peer sends only what it committed, so it holds these:
                // without this its own new events would count as unacknowledged
                // (it does not ack what it sent) and never become stable.
                note_events(&mut view.stats.lock().unwrap_or_else(|e| e.into_inner()).acked, &decoded);
                let known: BTreeSet<BlobHash> =
                    staged.iter().map(|b| b.hash()).chain(spooled.iter().map(|b| b.hash)).collect();
                let fetched = fetch_missing_blobs(&blobs, &conn, &sizes, &known).await?;
                staged.extend(fetched.staged);
                if !fetched.gone.is_empty() {
                    tracing::info!(
                        peer = %peer.short(),
                        blobs = fetched.gone.len(),
                        "the peer collected blobs these events name: their entries were removed later in its log"
                    );
                }
                // Blobs staged as files become durable in one round of
                // overlapping fsyncs, before the events naming them commit;
                // spooled ones commit with the events.
                if !staged.is_empty() {
                    let store = blobs.clone();
                    tokio::task::spawn_blocking(move || store.commit(staged)).await??;
                }
                lag_stage("blobs-durable", decoded.len());
                let newest_ms = decoded.iter().map(|e| e.hlc.ms()).max();
                // The store holds events whose dependencies are missing and
                // applies them when they arrive (from this peer or another).
                let (report, vv) = daemon.ingest(decoded, spooled, fetched.gone).await?;
                lag_stage("committed", report.applied as usize);
                if 0 < report.pending {
                    tracing::debug!(pending = report.pending, "events wait for their dependencies");
                }
                if report.rejoined {
                    tracing::info!(peer = %peer.short(), "restored device rejoined: its own events are back");
                }
                if 0 < report.rekeys {
                    tracing::info!(rekeys = report.rekeys, peer = %peer.short(), "re-keyed late entries");
                }
                let now = now_ms();
                if let Some(created_ms) = newest_ms {
                    // Commit there to apply here; skewed clocks make this approximate.
                    view.stats.lock().unwrap_or_else(|e| e.into_inner()).lag_ms = Some(now.saturating_sub(created_ms));
                }
                // The sender may be blocked writing: never wait here for it.
                let _ = acks.try_send(Message::Ack { vv });
            }
        }
    }
}

/// The message size (RFC822.SIZE) events declare for each blob they name:
/// what a blob sealed in place must hold (`BlobStore::check_named`).
pub(crate) type BlobSizes = std::collections::HashMap<BlobHash, u64>;

/// Decodes and hash-checks the blobs that came inside an events frame. A
/// frame with up to `SPOOL_FRAME_BYTES_MAX` of them returns them to be
/// spooled with the events; a larger one writes them to temporary files
/// (durable only at `BlobStore::commit`).
async fn take_inline_blobs(
    blobs: &Arc<BlobStore>,
    inline: Vec<InlineBlob>,
    sizes: BlobSizes,
) -> Result<(Vec<SpooledBlob>, Vec<StagedBlob>)> {
    if inline.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let blobs = blobs.clone();
    tokio::task::spawn_blocking(move || {
        let mut decoded = Vec::with_capacity(inline.len());
        for blob in inline {
            let data = data_encoding::BASE64
                .decode(blob.data.as_bytes())
                .map_err(|e| format_err!("inline blob {} is not base64: {e}", blob.hash.to_hex()))?;
            // A blob sealed in place keeps its plaintext name (core's blobs.rs).
            BlobStore::check_named(&blob.hash, &data, sizes.get(&blob.hash).copied())
                .map_err(|e| refused_blob(&blob.hash, e))?;
            decoded.push(SpooledBlob { hash: blob.hash, data });
        }
        if decoded.iter().map(|b| b.data.len()).sum::<usize>() <= SPOOL_FRAME_BYTES_MAX {
            return Ok((decoded, Vec::new()));
        }
        let staged = decoded.iter().map(|b| blobs.stage_named(&b.hash, &b.data)).collect::<Result<Vec<_>, _>>()?;
        Ok((Vec::new(), staged))
    })
    .await?
}

/// A blob from the peer refused by `BlobStore::check_named`, as a sync error.
fn refused_blob(hash: &BlobHash, error: roost_core::store::BlobError) -> anyhow::Error {
    match error {
        roost_core::store::BlobError::Mismatch { .. } => {
            format_err!("blob {} from the peer does not match its hash", hash.to_hex())
        }
        other => format_err!("blob {} from the peer is refused: {other}", hash.to_hex()),
    }
}

/// Fetches the blobs the events name (`sizes`) that are neither stored nor
/// staged, over one request stream, each streamed to a temporary file.
async fn fetch_missing_blobs(
    blobs: &Arc<BlobStore>,
    conn: &iroh::endpoint::Connection,
    sizes: &BlobSizes,
    known: &BTreeSet<BlobHash>,
) -> Result<FetchedBlobs> {
    let wanted: BTreeSet<BlobHash> = sizes.keys().filter(|h| !known.contains(h)).copied().collect();
    if wanted.is_empty() {
        return Ok(FetchedBlobs::default()); // A live push: everything came inline.
    }
    fetch_blobs(blobs, conn, wanted, sizes).await
}

/// What a blob request brought.
#[derive(Debug, Default)]
pub(crate) struct FetchedBlobs {
    /// Received and hash-checked, durable at `BlobStore::commit`.
    pub(crate) staged: Vec<StagedBlob>,
    /// Collected by the peer (`BLOB_GONE`): no entry there names them, and
    /// the events that removed their entries follow in its log.
    pub(crate) gone: HashSet<BlobHash>,
}

/// Fetches the blobs of `wanted` that are not stored here, over one request
/// stream, each streamed to a temporary file (durable at `BlobStore::commit`)
/// and checked against the size `sizes` declares for it. A blob the peer
/// neither has nor collected ends the session: an event that names it cannot
/// be applied.
pub(crate) async fn fetch_blobs(
    blobs: &Arc<BlobStore>,
    conn: &iroh::endpoint::Connection,
    wanted: BTreeSet<BlobHash>,
    sizes: &BlobSizes,
) -> Result<FetchedBlobs> {
    let missing = {
        let blobs = blobs.clone();
        tokio::task::spawn_blocking(move || wanted.into_iter().filter(|h| !blobs.contains(h)).collect::<Vec<_>>())
            .await?
    };
    let mut fetched = FetchedBlobs::default();
    if missing.is_empty() {
        return Ok(fetched);
    }
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, &BlobRequest { hashes: missing.clone() }).await?;
    send.finish()?;
    for hash in missing {
        match recv.read_u64().await.context("blob stream ended")? {
            BLOB_ABSENT => bail!("peer does not have blob {}", hash.to_hex()),
            BLOB_GONE => {
                fetched.gone.insert(hash);
            }
            len => fetched.staged.push(receive_blob(&mut recv, blobs, hash, len, sizes.get(&hash).copied()).await?),
        }
    }
    Ok(fetched)
}

/// Streams one blob of `len` bytes from `recv` into a temporary file while
/// hashing it, holding at most `BLOB_CHUNK_BYTES` in memory, and checks it
/// against `hash` (and, sealed in place, `plain_size`: `BlobStore::check_named`).
/// A blob above `BLOB_BYTES_MAX` is refused before reading.
pub async fn receive_blob<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
    blobs: &Arc<BlobStore>,
    hash: BlobHash,
    len: u64,
    plain_size: Option<u64>,
) -> Result<StagedBlob> {
    if BLOB_BYTES_MAX < len {
        bail!("peer offered a blob of {len} bytes, above the {BLOB_BYTES_MAX}-byte limit");
    }
    let store = blobs.clone();
    let mut writer = tokio::task::spawn_blocking(move || store.writer()).await??;
    let mut chunk = vec![0u8; BLOB_CHUNK_BYTES.min(len as usize)];
    let mut remaining = len;
    while 0 < remaining {
        let n = remaining.min(chunk.len() as u64) as usize;
        recv.read_exact(&mut chunk[..n]).await.context("blob stream ended mid-blob")?;
        remaining -= n as u64;
        (writer, chunk) = tokio::task::spawn_blocking(move || {
            writer.write(&chunk[..n])?;
            Ok::<_, roost_core::store::BlobError>((writer, chunk))
        })
        .await??;
    }
    let staged = tokio::task::spawn_blocking(move || writer.finish_declared(&hash, plain_size)).await?;
    staged.map_err(|e| refused_blob(&hash, e))
}

/// Sends one stored blob (length, then bytes) read from its file in chunks.
pub async fn send_blob<W: tokio::io::AsyncWrite + Unpin>(
    send: &mut W,
    blobs: &Arc<BlobStore>,
    hash: BlobHash,
) -> Result<()> {
    let store = blobs.clone();
    let Ok(mut reader) = tokio::task::spawn_blocking(move || store.open(&hash)).await? else {
        send.write_u64(BLOB_ABSENT).await?;
        return Ok(());
    };
    let len = reader.len();
    send.write_u64(len).await?;
    let mut chunk = vec![0u8; BLOB_CHUNK_BYTES.min(len as usize)];
    let mut remaining = len;
    while 0 < remaining {
        let n = remaining.min(chunk.len() as u64) as usize;
        (reader, chunk) = tokio::task::spawn_blocking(move || {
            std::io::Read::read_exact(&mut reader, &mut chunk[..n])?;
            Ok::<_, std::io::Error>((reader, chunk))
        })
        .await?
        .with_context(|| format!("cannot read blob {}", hash.to_hex()))?;
        send.write_all(&chunk[..n]).await?;
        remaining -= n as u64;
    }
    Ok(())
}

async fn serve_blobs(daemon: Arc<Daemon>, blobs: Arc<BlobStore>, conn: iroh::endpoint::Connection) -> Result<()> {
    // Runs for the life of the session; each request is its own stream.
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(_) => return Ok(()), // Connection closed.
        };
        let (daemon, blobs) = (daemon.clone(), blobs.clone());
        tokio::spawn(async move {
            let res: Result<()> = async {
                let Some((request, _)) = read_frame::<_, BlobRequest>(&mut recv).await? else { return Ok(()) };
                for hash in request.hashes {
                    // A blob received a moment ago may still be in the spool.
                    let spooled = match blobs.contains(&hash) {
                        true => None,
                        false => daemon.spooled_blob(hash).await?,
                    };
                    match spooled {
                        Some(raw) => {
                            send.write_u64(raw.len() as u64).await?;
                            send.write_all(&raw).await?;
                        }
                        // Collected here: the peer applies without it.
                        None if !blobs.contains(&hash) && daemon.blob_collected(hash).await? => {
                            send.write_u64(BLOB_GONE).await?
                        }
                        None => send_blob(&mut send, &blobs, hash).await?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A 40 MiB blob goes through a pipe that holds one chunk at a time: the
    /// receiver stores it without ever having it whole (its buffer is
    /// `BLOB_CHUNK_BYTES`; the daemon-level figure is in tests/sync.rs).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_blob_streams_through_a_bounded_pipe_to_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let sender_store = Arc::new(BlobStore::open_dir(&dir.path().join("a")).unwrap());
        let receiver_store = Arc::new(BlobStore::open_dir(&dir.path().join("b")).unwrap());
        let raw: Vec<u8> = (0..40 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let hash = sender_store.put(&raw).unwrap();
        drop(raw);
        let (mut near, mut far) = tokio::io::duplex(BLOB_CHUNK_BYTES);
        let sending = {
            let store = sender_store.clone();
            tokio::spawn(async move {
                send_blob(&mut near, &store, hash).await.unwrap();
                near.shutdown().await.unwrap();
            })
        };
        let len = far.read_u64().await.unwrap();
        assert_eq!(len, 40 * 1024 * 1024);
        let staged = receive_blob(&mut far, &receiver_store, hash, len, None).await.unwrap();
        sending.await.unwrap();
        assert!(!receiver_store.contains(&hash), "visible before its commit");
        receiver_store.commit(vec![staged]).unwrap();
        assert_eq!(receiver_store.get(&hash).unwrap(), sender_store.get(&hash).unwrap());
        // A blob the sender lacks is announced as such, not sent.
        let mut out = Vec::new();
        send_blob(&mut out, &sender_store, BlobHash::of(b"absent")).await.unwrap();
        assert_eq!(out, BLOB_ABSENT.to_be_bytes());
    }

    #[tokio::test]
    async fn an_oversized_or_mismatched_blob_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open_dir(dir.path()).unwrap());
        let hash = BlobHash::of(b"announced");
        let mut endless = tokio::io::repeat(b'x');
        let err = receive_blob(&mut endless, &store, hash, BLOB_BYTES_MAX + 1, None).await.unwrap_err();
        assert!(format!("{err:#}").contains("above the"), "{err:#}");
        let mut lie: &[u8] = b"something else";
        let err = receive_blob(&mut lie, &store, hash, 14, None).await.unwrap_err();
        assert!(format!("{err:#}").contains("does not match its hash"), "{err:#}");
        let mut short: &[u8] = b"cut";
        assert!(receive_blob(&mut short, &store, hash, 9, None).await.is_err());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.usage().unwrap(), (0, 0));
    }
}
