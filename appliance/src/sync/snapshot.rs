//! Snapshot transfer over a sync session: a peer below this device's log
//! snapshot (paired after a compaction) cannot be sent the folded events, so
//! the sender streams the snapshot on the control stream, a `Snapshot` frame
//! with the offer (vector, size, image hash, state digest) and then
//! `SnapshotChunk` frames of at most `SNAPSHOT_CHUNK_BYTES`, and goes on
//! with the events above the snapshot. The receiver reads exactly the
//! offered bytes (never more than `SNAPSHOT_BYTES_MAX`), checks the image
//! (core's `ReceivedSnapshot::check`), fetches and makes durable every blob
//! it refers to, and installs it in one transaction; only then does it ack.
//! Anything wrong ends the session with a logged reason and nothing
//! installed (core's `snapshot_transfer.rs` has the rules).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{bail, format_err, Context, Result};

use roost_core::log::VersionVector;
use roost_core::model::{BlobHash, DeviceId};
use roost_core::store::{BlobStore, ReceivedSnapshot, SnapshotOffer, SNAPSHOT_BYTES_MAX};

use crate::cli::now_ms;
use crate::serve::Daemon;
use crate::sync::frames::{read_frame, write_frame};
use crate::sync::messages::Message;
use crate::sync::session::{fetch_blobs, BlobSizes};

/// Image bytes per chunk frame: base64 makes them 1.4 MiB, far below
/// `FRAME_BYTES_MAX`.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Blobs asked for in one request while catching up from a snapshot, then
/// made durable together: bounds the request frame and the staged files.
const SNAPSHOT_BLOBS_PER_REQUEST: usize = 1024;

/// Sends the offer and the image in chunks; returns the bytes written.
pub async fn send<W: tokio::io::AsyncWrite + Unpin>(send: &mut W, offer: SnapshotOffer, image: &[u8]) -> Result<u64> {
    let mut written = write_frame(send, &Message::Snapshot { offer }).await? as u64;
    for chunk in image.chunks(SNAPSHOT_CHUNK_BYTES) {
        let data = data_encoding::BASE64.encode(chunk);
        written += write_frame(send, &Message::SnapshotChunk { data }).await? as u64;
    }
    Ok(written)
}

/// Reads the chunks of an offered image: exactly `offer.bytes`, in
/// non-empty chunks, with no other frame in between. Returns the image and
/// the bytes read off the stream.
pub async fn read_image<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
    offer: &SnapshotOffer,
) -> Result<(Vec<u8>, u64)> {
    if SNAPSHOT_BYTES_MAX < offer.bytes {
        bail!("peer offered a snapshot of {} bytes, above the {SNAPSHOT_BYTES_MAX}-byte limit", offer.bytes);
    }
    let mut image = Vec::with_capacity(offer.bytes as usize);
    let mut read = 0u64;
    // Each round adds at least one byte (empty chunks are refused), so this
    // ends after at most `offer.bytes` rounds.
    while (image.len() as u64) < offer.bytes {
        let (data, n) = match read_frame::<_, Message>(recv).await? {
            Some((Message::SnapshotChunk { data }, n)) => (data, n),
            Some((other, _)) => bail!("expected a snapshot chunk, got {}", kind(&other)),
            None => bail!("the stream ended after {} of {} snapshot bytes", image.len(), offer.bytes),
        };
        read += n as u64;
        let chunk = data_encoding::BASE64
            .decode(data.as_bytes())
            .map_err(|e| format_err!("a snapshot chunk is not base64: {e}"))?;
        if chunk.is_empty() || offer.bytes < (image.len() + chunk.len()) as u64 {
            bail!(
                "a snapshot chunk of {} bytes does not fit the offered {} (have {})",
                chunk.len(),
                offer.bytes,
                image.len()
            );
        }
        image.extend_from_slice(&chunk);
    }
    Ok((image, read))
}

/// Receives an offered snapshot and installs it (or skips it when this
/// device has everything in it already); returns the version vector to ack
/// and the bytes read.
pub async fn receive<R: tokio::io::AsyncRead + Unpin>(
    daemon: &Arc<Daemon>,
    blobs: &Arc<BlobStore>,
    conn: &iroh::endpoint::Connection,
    recv: &mut R,
    peer: DeviceId,
    offer: SnapshotOffer,
) -> Result<(VersionVector, u64)> {
    let vector = offer.vector.clone();
    let (mine, installable) = daemon.read(move |s| Ok((s.version_vector()?, s.snapshot_installable(&vector)))).await?;
    let needed = !mine.dominates(&offer.vector);
    if let (true, Err(refusal)) = (needed, installable) {
        // Refused before the image is read, and remembered: the next
        // session's Hello tells the peer not to send it again. The error
        // says what to do.
        let (vector, reason) = (offer.vector.clone(), refusal.to_string());
        daemon.read(move |s| s.record_snapshot_refusal(peer, &vector, &reason, now_ms())).await?;
        return Err(refusal).with_context(|| format!("peer {} sent its log snapshot", peer.short()));
    }
    let (image, read) = read_image(recv, &offer).await?;
    if !needed {
        tracing::info!(peer = %peer.short(), "the peer's log snapshot holds nothing new here; skipped");
        return Ok((mine, read));
    }
    tracing::info!(peer = %peer.short(), bytes = image.len(), events = offer.events, "received the peer's log snapshot");
    let checked = tokio::task::spawn_blocking(move || ReceivedSnapshot::check(offer, &image))
        .await?
        .with_context(|| format!("log snapshot from peer {}", peer.short()))?;
    let sizes = checked.blob_sizes()?;
    let fetched = fetch_durably(blobs, conn, &sizes).await?;
    let (folded, vector) = (checked.offer().events, checked.offer().vector.clone());
    let vv = daemon.install_snapshot(checked).await.context("installing the peer's log snapshot")?;
    tracing::info!(
        peer = %peer.short(),
        events_folded = folded,
        events_in_snapshot = vector.total(),
        blobs_fetched = fetched,
        "installed the peer's log snapshot; catching up on the events above it"
    );
    Ok((vv, read))
}

/// Fetches the blobs of `sizes` (the image's messages) this device lacks, in
/// bounded rounds, each made durable before the next; returns how many were
/// fetched. A crash between rounds leaves blobs nothing refers to yet, which
/// is harmless.
async fn fetch_durably(blobs: &Arc<BlobStore>, conn: &iroh::endpoint::Connection, sizes: &BlobSizes) -> Result<u64> {
    let mut wanted: Vec<BlobHash> = sizes.keys().copied().collect();
    wanted.sort();
    let mut fetched = 0u64;
    for round in wanted.chunks(SNAPSHOT_BLOBS_PER_REQUEST) {
        let round: BTreeSet<BlobHash> = round.iter().copied().collect();
        let round = fetch_blobs(blobs, conn, round, sizes).await?;
        if let Some(gone) = round.gone.iter().next() {
            // The sender keeps every blob its image's entries name (gc.rs).
            bail!("the peer's snapshot names blob {}, which the peer collected", gone.to_hex());
        }
        let staged = round.staged;
        fetched += staged.len() as u64;
        if !staged.is_empty() {
            let store = blobs.clone();
            tokio::task::spawn_blocking(move || store.commit(staged)).await??;
        }
    }
    Ok(fetched)
}

/// A message's type, for errors (its contents may be large).
fn kind(message: &Message) -> &'static str {
    match message {
        Message::Hello { .. } => "hello",
        Message::Events { .. } => "events",
        Message::Ack { .. } => "ack",
        Message::Snapshot { .. } => "snapshot",
        Message::SnapshotChunk { .. } => "snapshot chunk",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::frames::FrameError;

    fn offer_for(image: &[u8]) -> SnapshotOffer {
        SnapshotOffer {
            vector: VersionVector::new(),
            events: 1,
            bytes: image.len() as u64,
            image_hash: blake3::hash(image).to_hex().to_string(),
            digest: String::new(),
        }
    }

    async fn framed(offer: &SnapshotOffer, image: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        send(&mut buf, offer.clone(), image).await.unwrap();
        buf
    }

    /// Skips the leading `Snapshot` frame, as the receive loop has read it.
    fn after_offer(buf: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        &buf[4 + len..]
    }

    #[tokio::test]
    async fn an_image_of_several_chunks_arrives_whole() {
        let image: Vec<u8> = (0..(2 * SNAPSHOT_CHUNK_BYTES + 17)).map(|i| (i % 251) as u8).collect();
        let offer = offer_for(&image);
        let buf = framed(&offer, &image).await;
        let mut r = after_offer(&buf);
        let (back, read) = read_image(&mut r, &offer).await.unwrap();
        assert_eq!(back, image);
        assert_eq!(read as usize, after_offer(&buf).len());
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn truncated_oversized_and_foreign_frames_are_refused() {
        let image = vec![7u8; SNAPSHOT_CHUNK_BYTES + 10];
        let offer = offer_for(&image);
        let buf = framed(&offer, &image).await;
        let stream = after_offer(&buf);

        // Cut mid-frame, and cut at a frame boundary.
        let mut cut = &stream[..stream.len() - 5];
        let err = read_image(&mut cut, &offer).await.unwrap_err();
        assert!(err.downcast_ref::<FrameError>().is_some(), "{err:#}");
        let first_len = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
        let mut one_chunk = &stream[..4 + first_len];
        let err = read_image(&mut one_chunk, &offer).await.unwrap_err();
        assert!(format!("{err:#}").contains("stream ended"), "{err:#}");

        // More bytes than offered.
        let mut short_offer = offer.clone();
        short_offer.bytes = 100;
        let mut r = stream;
        let err = read_image(&mut r, &short_offer).await.unwrap_err();
        assert!(format!("{err:#}").contains("does not fit"), "{err:#}");

        // Above the limit: refused before reading anything.
        let mut huge = offer.clone();
        huge.bytes = SNAPSHOT_BYTES_MAX + 1;
        let mut r = stream;
        let err = read_image(&mut r, &huge).await.unwrap_err();
        assert!(format!("{err:#}").contains("limit"), "{err:#}");
        assert_eq!(r.len(), stream.len());

        // Another message where a chunk belongs, and a chunk that is not base64.
        let mut other = Vec::new();
        write_frame(&mut other, &Message::Ack { vv: VersionVector::new() }).await.unwrap();
        let err = read_image(&mut other.as_slice(), &offer).await.unwrap_err();
        assert!(format!("{err:#}").contains("expected a snapshot chunk"), "{err:#}");
        let mut garbage = Vec::new();
        write_frame(&mut garbage, &Message::SnapshotChunk { data: "not base64!".into() }).await.unwrap();
        let err = read_image(&mut garbage.as_slice(), &offer).await.unwrap_err();
        assert!(format!("{err:#}").contains("not base64"), "{err:#}");
        let mut empty = Vec::new();
        write_frame(&mut empty, &Message::SnapshotChunk { data: String::new() }).await.unwrap();
        let err = read_image(&mut empty.as_slice(), &offer).await.unwrap_err();
        assert!(format!("{err:#}").contains("does not fit"), "{err:#}");
    }
}
