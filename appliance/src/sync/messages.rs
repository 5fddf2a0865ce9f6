//! The sync protocol's messages (ALPN `roost/sync/1`), and pairing's
//! (`roost/pair/1`). Versioned by the ALPN and by `Hello::version`; fields are
//! only ever added.

use serde::{Deserialize, Serialize};

use roost_core::clock::Hlc;
use roost_core::log::VersionVector;
use roost_core::log::{DecodeError, Event};
use roost_core::model::{BlobHash, DeviceId, EventId};
use roost_core::store::SnapshotOffer;

/// Version of the sync protocol this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First frame both ways: who I am and what I have.
    Hello {
        /// `PROTOCOL_VERSION` of the sender.
        version: u32,
        /// The sender's version vector.
        vv: VersionVector,
        /// Where the sender's endpoint listens now (it may have moved since pairing).
        #[serde(default)]
        addrs: Vec<String>,
        /// The vector of the receiver's log snapshot the sender refused to
        /// install (its log has events the snapshot lacks) and still
        /// refuses: the receiver does not stream that snapshot again. An
        /// older peer omits it (and gets the snapshot, refused as before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused_snapshot: Option<VersionVector>,
    },
    /// Events the receiver lacks, in a causal order.
    Events {
        /// The events, as signed.
        events: Vec<WireEvent>,
        /// Small blobs the events name, sent along so the receiver need not
        /// ask (one network trip instead of three); larger ones it fetches.
        #[serde(default)]
        blobs: Vec<InlineBlob>,
    },
    /// What the sender now has (after applying events).
    Ack {
        /// The sender's version vector.
        vv: VersionVector,
    },
    /// The receiver lacks events the sender folded into its log snapshot:
    /// the snapshot follows in `SnapshotChunk` frames (`snapshot.rs`), then
    /// the events above it.
    Snapshot {
        /// What the image covers and how to check it.
        offer: SnapshotOffer,
    },
    /// Part of a snapshot image, in order.
    SnapshotChunk {
        /// The bytes, base64.
        data: String,
    },
}

/// An event as it travels: header fields and the exact signed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// Origin device.
    pub origin: DeviceId,
    /// Sequence number at the origin.
    pub seq: u64,
    /// HLC, packed.
    pub hlc: u64,
    /// Dependencies as signed (JSON text).
    pub deps: String,
    /// Operation envelope as signed (JSON text).
    pub payload: String,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl WireEvent {
    /// From a stored event.
    pub fn from_event(event: &Event) -> WireEvent {
        WireEvent {
            origin: event.id.origin,
            seq: event.id.seq,
            hlc: event.hlc.raw(),
            // Our own encoder writes JSON, which is UTF-8.
            deps: String::from_utf8_lossy(&event.deps_bytes).into_owned(),
            payload: String::from_utf8_lossy(&event.payload_bytes).into_owned(),
            signature: hex::encode(event.signature),
        }
    }

    /// Decodes and verifies the origin's signature: a paired peer cannot
    /// forge events of another origin.
    pub fn into_event(self) -> Result<Event, DecodeError> {
        let id = EventId { origin: self.origin, seq: self.seq };
        let mut signature = [0u8; 64];
        if hex::decode_to_slice(self.signature.as_bytes(), &mut signature).is_err() {
            return Err(DecodeError::BadSignature { origin: self.origin.short(), seq: self.seq });
        }
        Event::decode(id, Hlc::from_raw(self.hlc), self.deps.into_bytes(), self.payload.into_bytes(), signature)
    }
}

/// A blob sent inside an `Events` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineBlob {
    /// Its hash, which the receiver checks.
    pub hash: BlobHash,
    /// The bytes, base64.
    pub data: String,
}

/// First line of a blob request stream: the hashes wanted. The answer is, per
/// hash in order, an 8-byte big-endian length (`u64::MAX` = not here,
/// `u64::MAX - 1` = collected here: see `session::BLOB_GONE`) then the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// Blobs wanted.
    pub hashes: Vec<BlobHash>,
}

/// Pairing request (joiner to inviter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRequest {
    /// The ticket's one-time secret, hex.
    pub secret: String,
    /// The joiner's display name.
    pub name: String,
    /// Addresses the joiner's daemon can be reached at.
    pub addrs: Vec<String>,
}

/// Pairing answer (inviter to joiner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PairResponse {
    /// Paired: the joiner records the inviter and takes the assigned slot.
    Accepted {
        /// The inviter's display name.
        name: String,
        /// The inviter's slot.
        slot: u8,
        /// The slot the joiner must use from now on.
        your_slot: u8,
    },
    /// Refused, with why.
    Refused {
        /// Reason shown to the user.
        reason: String,
    },
}
