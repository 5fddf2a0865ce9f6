//! Events: the source of truth. Every change of mail state is one `Event`,
//! stored in the log and applied to the materialised tables in the same SQLite
//! transaction.
//!
//! Wire and storage format (frozen once stored, STYLE 4): the dependency vector and
//! the operation are JSON; the operation is wrapped in an envelope
//! `{"v": 1, "op": ...}` whose version says how to read it. The signature covers
//! the exact stored bytes, so an event is never re-encoded after it is signed.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::clock::Hlc;
use crate::log::version_vector::VersionVector;
use crate::model::{
    BlobHash, DeviceId, EntryId, EventId, Flag, ItemId, MailboxId, MailboxName, MessageKey, SpecialUse, Uid,
    UidValidity, UserName,
};

/// Version of the payload envelope written by this build.
pub const PAYLOAD_VERSION: u32 = 1;

/// A change of mail state. Variants are only ever added, never changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventOp {
    /// A user account is created (or re-created after removal).
    UserAdd {
        /// Login name.
        user: UserName,
        /// Argon2id PHC string.
        password_hash: String,
    },
    /// A user's password changes.
    UserPassword {
        /// Login name.
        user: UserName,
        /// Argon2id PHC string.
        password_hash: String,
    },
    /// A user's password and key record are set together (issue 8): at
    /// creation, on a password change (the identity re-wrapped) and on
    /// recovery. One last-writer-wins register with the password, so a
    /// password and the wrap it opens never come from different writes.
    UserKeys {
        /// Login name.
        user: UserName,
        /// Argon2id PHC string of the new password.
        password_hash: String,
        /// Public key and wrapped identity; its fields carry their own
        /// format tags (`kdf`), so it evolves without a new payload version.
        /// Boxed only to keep `EventOp` small (the JSON is the same).
        keys: Box<crate::crypto::UserKeys>,
        /// The user's other identities (the keyring: a user created on two
        /// devices before they synced has two), re-wrapped under the same
        /// password by a password change or folded in by a recovery. Absent
        /// in events from before the keyring (and when there are none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also: Vec<crate::crypto::UserKeys>,
    },
    /// A user and all their mailboxes are removed.
    UserRemove {
        /// Login name.
        user: UserName,
    },
    /// A mailbox is created. The id is derived from the name, so concurrent
    /// creates of one name on two devices are the same mailbox.
    MailboxCreate {
        /// Owner.
        user: UserName,
        /// Stable id.
        mailbox: MailboxId,
        /// Initial name.
        name: MailboxName,
        /// Fixed for the mailbox's life.
        uid_validity: UidValidity,
        /// SPECIAL-USE attribute, if any.
        special_use: Option<SpecialUse>,
    },
    /// A mailbox gets a new name (last writer wins by HLC).
    MailboxRename {
        /// Which mailbox.
        mailbox: MailboxId,
        /// New name.
        name: MailboxName,
    },
    /// A mailbox and the entries the deleting device had observed are removed.
    MailboxDelete {
        /// Which mailbox.
        mailbox: MailboxId,
    },
    /// A name is subscribed or unsubscribed (LSUB / LIST (SUBSCRIBED)).
    MailboxSubscribe {
        /// Owner.
        user: UserName,
        /// Name, which need not exist (RFC 9051 6.3.7).
        name: MailboxName,
        /// New state.
        subscribed: bool,
    },
    /// Messages are added to a mailbox (APPEND, delivery, import); each is a
    /// new item with a new entry.
    Append {
        /// Target mailbox.
        mailbox: MailboxId,
        /// One per message, in UID order.
        entries: Vec<NewEntry>,
    },
    /// Flags of items change. Removal removes the flag instances the writer
    /// had observed (its dependency vector); concurrent adds survive.
    Flags {
        /// Mailbox the change was made in (for the record; flags belong to items).
        mailbox: MailboxId,
        /// Items changed.
        items: Vec<ItemId>,
        /// Flags added.
        add: Vec<Flag>,
        /// Flags removed.
        remove: Vec<Flag>,
    },
    /// Entries are removed; each leaves a tombstone with its UID.
    Expunge {
        /// Mailbox of the entries.
        mailbox: MailboxId,
        /// Entries removed.
        entries: Vec<EntryId>,
    },
    /// Entries are copied into another mailbox.
    Copy {
        /// Where the originals are.
        source: MailboxId,
        /// Where the copies go.
        mailbox: MailboxId,
        /// One per copied entry: the original and the new entry.
        entries: Vec<CopiedEntry>,
    },
    /// Items move to another mailbox: each loses its entry in the source and
    /// gains one in the target by one event, so no device shows a message in
    /// both or neither. The item keeps its flags.
    Move {
        /// Where the entries are.
        source: MailboxId,
        /// Where they go.
        mailbox: MailboxId,
        /// One per moved entry.
        entries: Vec<MovedEntry>,
    },
    /// Messages delivered (LMTP, import): like `Append`, but each entry's id
    /// and item id derive from the message's key, so the same message
    /// delivered on two devices is one entry of one item everywhere (its UID
    /// is the higher of the two, as for a re-key). Added by issue 6.
    Deliver {
        /// Target mailbox.
        mailbox: MailboxId,
        /// One per message.
        entries: Vec<DeliveredEntry>,
    },
    /// An entry gets a new, higher UID because its UID arrived at a device below
    /// what that device had already shown (see DESIGN.md, UIDs).
    Rekey {
        /// Mailbox of the entry.
        mailbox: MailboxId,
        /// Which entry.
        entry: EntryId,
        /// The new UID.
        uid: Uid,
    },
}

impl EventOp {
    /// The operation of a stored payload, read without the rest of the event
    /// (`store::seal_existing` looks for the mailbox that named a blob); None
    /// when it does not decode.
    pub(crate) fn from_payload(payload: &[u8]) -> Option<EventOp> {
        serde_json::from_slice::<PayloadEnvelope<EventOp>>(payload).ok().map(|e| e.op)
    }

    /// The mailbox an operation that names blobs puts them in.
    pub(crate) fn blob_mailbox(&self) -> Option<MailboxId> {
        match self {
            EventOp::Append { mailbox, .. }
            | EventOp::Copy { mailbox, .. }
            | EventOp::Move { mailbox, .. }
            | EventOp::Deliver { mailbox, .. } => Some(*mailbox),
            _ => None,
        }
    }

    /// The message blobs this operation refers to: a device must have them
    /// before it applies the event, so IMAP never shows a message it cannot read.
    pub fn blobs(&self) -> Vec<BlobHash> {
        self.blob_sizes().into_iter().map(|(blob, _)| blob).collect()
    }

    /// Each message blob this operation refers to with the message's size
    /// (RFC822.SIZE) it declares: what a blob sealed in place, which keeps
    /// its plaintext's name, must hold when a peer sends it.
    pub fn blob_sizes(&self) -> Vec<(BlobHash, u64)> {
        match self {
            EventOp::Append { entries, .. } => entries.iter().map(|e| (e.blob, e.size)).collect(),
            EventOp::Copy { entries, .. } => entries.iter().map(|e| (e.entry.blob, e.entry.size)).collect(),
            EventOp::Move { entries, .. } => entries.iter().map(|e| (e.blob, e.size)).collect(),
            EventOp::Deliver { entries, .. } => entries.iter().map(|e| (e.entry.blob, e.entry.size)).collect(),
            _ => Vec::new(),
        }
    }
}

/// A message as added to a mailbox. Carries everything needed to materialise the
/// entry, so a MOVE or COPY applies even where the source entry is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    /// UID assigned by the origin device from its slot.
    pub uid: Uid,
    /// The message's blob.
    pub blob: BlobHash,
    /// Size of the raw message in bytes (RFC822.SIZE).
    pub size: u64,
    /// INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
    /// Initial flags.
    pub flags: Vec<Flag>,
}

/// One entry of a MOVE: the entry it replaces and the new entry's fields. The
/// new entry is placed even where `from` is already gone (a concurrent expunge
/// does not lose a moved message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedEntry {
    /// The entry in the source mailbox.
    pub from: EntryId,
    /// The item moved.
    pub item: ItemId,
    /// UID in the target mailbox.
    pub uid: Uid,
    /// The message's blob.
    pub blob: BlobHash,
    /// Size in bytes.
    pub size: u64,
    /// INTERNALDATE, kept across the move (RFC 6851 3.3).
    pub internal_date: i64,
}

/// One message of a `Deliver`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredEntry {
    /// Identifies the message across devices.
    pub key: MessageKey,
    /// The entry's fields.
    pub entry: NewEntry,
}

/// One entry of a COPY.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedEntry {
    /// The original entry.
    pub from: EntryId,
    /// The new entry in the target mailbox.
    pub entry: NewEntry,
}

#[derive(Serialize, Deserialize)]
struct PayloadEnvelope<T> {
    v: u32,
    op: T,
}

/// An event as stored and sent: header fields plus the exact signed bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `(origin, seq)`.
    pub id: EventId,
    /// Hybrid logical clock at creation.
    pub hlc: Hlc,
    /// The origin's version vector when it created the event: its causal
    /// dependencies, all of which are applied before it anywhere.
    pub deps: VersionVector,
    /// The operation.
    pub op: EventOp,
    /// Encoded `deps`, as signed.
    pub deps_bytes: Vec<u8>,
    /// Encoded operation envelope, as signed.
    pub payload_bytes: Vec<u8>,
    /// Ed25519 signature of the origin over `signed_bytes()`.
    pub signature: [u8; 64],
}

/// An event could not be decoded or verified.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not valid JSON of a known shape.
    #[error("event {origin}:{seq} payload: {source}")]
    Payload {
        /// Origin device (short form).
        origin: String,
        /// Sequence number.
        seq: u64,
        /// Parser error.
        source: serde_json::Error,
    },
    /// The payload was written by a newer version.
    #[error("event {origin}:{seq} has payload version {version}, this build reads up to {PAYLOAD_VERSION}")]
    NewerVersion {
        /// Origin device (short form).
        origin: String,
        /// Sequence number.
        seq: u64,
        /// Version found.
        version: u32,
    },
    /// The signature does not verify against the origin's key.
    #[error("event {origin}:{seq} has a bad signature")]
    BadSignature {
        /// Origin device (short form).
        origin: String,
        /// Sequence number.
        seq: u64,
    },
}

impl Event {
    /// Creates and signs a new event.
    pub fn sign(id: EventId, hlc: Hlc, deps: VersionVector, op: EventOp, key: &SigningKey) -> Event {
        assert_eq!(
            DeviceId::from_bytes(key.verifying_key().to_bytes()),
            id.origin,
            "event signed by a key other than its origin's"
        );
        assert!(0 < id.seq, "event seq starts at 1");
        // Serialising our own types to JSON cannot fail: no maps with non-string keys.
        let deps_bytes = serde_json::to_vec(&deps).expect("version vector serialises");
        let payload_bytes =
            serde_json::to_vec(&PayloadEnvelope { v: PAYLOAD_VERSION, op: &op }).expect("event op serialises");
        let signed = signed_bytes(id, hlc, &deps_bytes, &payload_bytes);
        let signature = key.sign(&signed).to_bytes();
        Event { id, hlc, deps, op, deps_bytes, payload_bytes, signature }
    }

    /// Decodes a stored or received event and verifies its signature against
    /// its origin's key.
    pub fn decode(
        id: EventId,
        hlc: Hlc,
        deps_bytes: Vec<u8>,
        payload_bytes: Vec<u8>,
        signature: [u8; 64],
    ) -> Result<Event, DecodeError> {
        let origin = id.origin.short();
        let key = VerifyingKey::from_bytes(id.origin.as_bytes())
            .map_err(|_| DecodeError::BadSignature { origin: origin.clone(), seq: id.seq })?;
        let signed = signed_bytes(id, hlc, &deps_bytes, &payload_bytes);
        key.verify(&signed, &Signature::from_bytes(&signature))
            .map_err(|_| DecodeError::BadSignature { origin: origin.clone(), seq: id.seq })?;
        Self::decode_unverified(id, hlc, deps_bytes, payload_bytes, signature)
    }

    /// Decodes an event read back from this device's own log, whose signature
    /// was verified when it was stored.
    pub fn decode_unverified(
        id: EventId,
        hlc: Hlc,
        deps_bytes: Vec<u8>,
        payload_bytes: Vec<u8>,
        signature: [u8; 64],
    ) -> Result<Event, DecodeError> {
        let origin = id.origin.short();
        let deps: VersionVector = serde_json::from_slice(&deps_bytes).map_err(|source| DecodeError::Payload {
            origin: origin.clone(),
            seq: id.seq,
            source,
        })?;
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version = serde_json::from_slice(&payload_bytes).map_err(|source| DecodeError::Payload {
            origin: origin.clone(),
            seq: id.seq,
            source,
        })?;
        if version.v > PAYLOAD_VERSION {
            return Err(DecodeError::NewerVersion { origin, seq: id.seq, version: version.v });
        }
        let envelope: PayloadEnvelope<EventOp> = serde_json::from_slice(&payload_bytes)
            .map_err(|source| DecodeError::Payload { origin: origin.clone(), seq: id.seq, source })?;
        Ok(Event { id, hlc, deps, op: envelope.op, deps_bytes, payload_bytes, signature })
    }
}

fn signed_bytes(id: EventId, hlc: Hlc, deps: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + deps.len() + payload.len());
    out.extend_from_slice(b"roost event v1\0");
    out.extend_from_slice(id.origin.as_bytes());
    out.extend_from_slice(&id.seq.to_le_bytes());
    out.extend_from_slice(&hlc.raw().to_le_bytes());
    out.extend_from_slice(&(deps.len() as u64).to_le_bytes());
    out.extend_from_slice(deps);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn sample() -> (Event, SigningKey) {
        let key = key(7);
        let origin = DeviceId::from_bytes(key.verifying_key().to_bytes());
        let op = EventOp::MailboxSubscribe {
            user: UserName::new("alice").unwrap(),
            name: MailboxName::new("Lists/rust").unwrap(),
            subscribed: true,
        };
        let mut deps = VersionVector::new();
        deps.set(origin, 4);
        (Event::sign(EventId { origin, seq: 5 }, Hlc::from_raw(99 << 16), deps, op, &key), key)
    }

    #[test]
    fn decode_of_signed_is_identity() {
        let (event, _) = sample();
        let back =
            Event::decode(event.id, event.hlc, event.deps_bytes.clone(), event.payload_bytes.clone(), event.signature)
                .unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn known_answer_payload() {
        // The stored form is frozen: this exact JSON must keep decoding.
        let (event, _) = sample();
        assert_eq!(
            String::from_utf8(event.payload_bytes).unwrap(),
            r#"{"v":1,"op":{"type":"mailbox_subscribe","user":"alice","name":"Lists/rust","subscribed":true}}"#
        );
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let (event, _) = sample();
        let mut payload = event.payload_bytes.clone();
        let pos = payload.iter().position(|b| *b == b't').unwrap();
        payload[pos] = b'T';
        let err = Event::decode(event.id, event.hlc, event.deps_bytes.clone(), payload, event.signature).unwrap_err();
        assert!(matches!(err, DecodeError::BadSignature { .. }));
        // Claiming another origin fails too.
        let other = DeviceId::from_bytes(key(8).verifying_key().to_bytes());
        let id = EventId { origin: other, seq: 5 };
        let err = Event::decode(id, event.hlc, event.deps_bytes, event.payload_bytes, event.signature).unwrap_err();
        assert!(matches!(err, DecodeError::BadSignature { .. }));
    }

    #[test]
    fn newer_payload_version_is_refused_with_a_reason() {
        let (event, _) = sample();
        let payload = br#"{"v":2,"op":{"type":"future"}}"#.to_vec();
        let err =
            Event::decode_unverified(event.id, event.hlc, event.deps_bytes, payload, event.signature).unwrap_err();
        assert!(err.to_string().contains("payload version 2"), "{err}");
    }
}
