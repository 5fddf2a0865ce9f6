//! Identifiers of the data model. Each is a newtype with a checked constructor so
//! that a value that exists is valid (STYLE 25).

use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// Number of UID and MODSEQ slots: at most this many devices can be paired.
/// Four bits keep a MODSEQ below 2^60 (RFC 7162 allows 63 bits).
pub const DEVICE_SLOTS: u8 = 16;

/// A device: the 32-byte Ed25519 public key of its signing key. The same key is
/// the device's iroh endpoint id, so a peer is identified the same way by the
/// transport and by the signatures on its events.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceId(#[serde(with = "hex_bytes")] [u8; 32]);

impl DeviceId {
    /// Wraps raw public key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DeviceId(bytes)
    }
    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Parses a device id from a SQLite blob column.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(DeviceId)
    }
    /// Short form for logs and status output (first 8 bytes in hex).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.short())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A device's slot, `0..DEVICE_SLOTS`: the low bits of every UID it assigns and of
/// every MODSEQ it issues, so two devices never assign the same UID and a device
/// recognises MODSEQs it issued itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceSlot(u8);

impl DeviceSlot {
    /// Checked constructor.
    pub fn new(slot: u8) -> Option<Self> {
        (slot < DEVICE_SLOTS).then_some(DeviceSlot(slot))
    }
    /// The slot number.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// A mailbox's stable id. Derived from (user, name, generation) at creation so two
/// devices creating the same name concurrently create the same mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxId(i64);

impl MailboxId {
    /// Derives the id of mailbox `name` of `user`, in its `generation`-th life
    /// (how often that name was vacated by a delete or rename before).
    pub fn derive(user: &str, name_key: &str, generation: u32) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"roost mailbox id v1\0");
        h.update(user.as_bytes());
        h.update(b"\0");
        h.update(name_key.as_bytes());
        h.update(b"\0");
        h.update(&generation.to_le_bytes());
        let bytes = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes.as_bytes()[..8]);
        MailboxId(i64::from_le_bytes(first))
    }
    /// From a SQLite column.
    pub fn from_raw(raw: i64) -> Self {
        MailboxId(raw)
    }
    /// For a SQLite column.
    pub fn raw(self) -> i64 {
        self.0
    }
}

fn derive_i64(domain: &[u8], event: EventId, index: u32) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    h.update(event.origin.as_bytes());
    h.update(&event.seq.to_le_bytes());
    h.update(&index.to_le_bytes());
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    i64::from_le_bytes(first)
}

/// An entry: one message placed in one mailbox under one UID. Derived from the
/// event that placed it and its position in that event, so every device names
/// it alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryId(i64);

impl EntryId {
    /// The id of the `index`-th entry placed by event `event`.
    pub fn derive(event: EventId, index: u32) -> Self {
        EntryId(derive_i64(b"roost entry id v1\0", event, index))
    }
    /// From a SQLite column.
    pub fn from_raw(raw: i64) -> Self {
        EntryId(raw)
    }
    /// For a SQLite column.
    pub fn raw(self) -> i64 {
        self.0
    }
}

/// An item: a message as the user knows it. It owns the flags and keeps its id
/// when it moves between mailboxes (a MOVE replaces its entry); a COPY or an
/// APPEND makes a new item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemId(i64);

impl ItemId {
    /// The id of the `index`-th item created by event `event`.
    pub fn derive(event: EventId, index: u32) -> Self {
        ItemId(derive_i64(b"roost item id v1\0", event, index))
    }
    /// From a SQLite column.
    pub fn from_raw(raw: i64) -> Self {
        ItemId(raw)
    }
    /// For a SQLite column.
    pub fn raw(self) -> i64 {
        self.0
    }
}

/// What identifies a delivered message across devices: derived from the user,
/// the Message-ID and the message's bytes, so the same message delivered on two
/// devices (both MX hosts got it) has the same key everywhere and is stored
/// once: its entry and item ids derive from the key (see `EventOp::Deliver`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageKey(#[serde(with = "hex_bytes")] [u8; 32]);

impl MessageKey {
    /// Key of a message delivered to `user`. `message_id` is the Message-ID
    /// header (empty if absent: then only identical bytes match).
    pub fn derive(user: &str, message_id: &str, blob: BlobHash) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"roost message key v1\0");
        h.update(user.as_bytes());
        h.update(b"\0");
        h.update(message_id.as_bytes());
        h.update(b"\0");
        h.update(blob.as_bytes());
        MessageKey(*h.finalize().as_bytes())
    }
    /// The item a delivery of this message into `mailbox` creates.
    pub fn item(&self, mailbox: MailboxId) -> ItemId {
        ItemId(derive_key_i64(b"roost delivered item v1\0", self, mailbox))
    }
    /// The entry a delivery of this message into `mailbox` creates.
    pub fn entry(&self, mailbox: MailboxId) -> EntryId {
        EntryId(derive_key_i64(b"roost delivered entry v1\0", self, mailbox))
    }
}

impl fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageKey({})", &hex::encode(self.0)[..16])
    }
}

fn derive_key_i64(domain: &[u8], key: &MessageKey, mailbox: MailboxId) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    h.update(&key.0);
    h.update(&mailbox.raw().to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    i64::from_le_bytes(first)
}

/// The id of an event: its origin device and its sequence number there.
/// `seq` is dense per origin, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    /// Device that created the event.
    pub origin: DeviceId,
    /// Position in that device's log, 1-based, without gaps.
    pub seq: u64,
}

/// An IMAP UID: non-zero, 32 bits (RFC 9051 2.3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Uid(NonZeroU32);

impl Uid {
    /// Checked constructor.
    pub fn new(uid: u32) -> Option<Self> {
        NonZeroU32::new(uid).map(Uid)
    }
    /// The number.
    pub fn get(self) -> u32 {
        self.0.get()
    }
    /// The slot of the device that assigned this UID.
    pub fn slot(self) -> DeviceSlot {
        DeviceSlot(((self.0.get() - 1) % u32::from(DEVICE_SLOTS)) as u8)
    }
    /// The smallest UID of `slot` strictly above `above` (0 for an empty mailbox),
    /// or `None` when the 32-bit space is exhausted.
    pub fn next_for_slot(above: u32, slot: DeviceSlot) -> Option<Uid> {
        let k = u64::from(DEVICE_SLOTS);
        let base = u64::from(above) / k * k + u64::from(slot.0) + 1;
        let uid = if base > u64::from(above) { base } else { base + k };
        u32::try_from(uid).ok().and_then(Uid::new)
    }
}

/// UIDVALIDITY of a mailbox: fixed at creation, never changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UidValidity(NonZeroU32);

impl UidValidity {
    /// Checked constructor.
    pub fn new(v: u32) -> Option<Self> {
        NonZeroU32::new(v).map(UidValidity)
    }
    /// Derives the UIDVALIDITY of a mailbox from its id and generation: the
    /// generation in the high byte makes a re-created mailbox of the same name
    /// get a greater value (RFC 3501 2.3.1.1 asks for greater), the id's bits in
    /// the rest make it the same on devices that created it concurrently.
    pub fn derive(id: MailboxId, generation: u32) -> Self {
        let low = (id.raw() as u64 as u32) & 0x00FF_FFFF;
        let high = (generation.min(0x7E) + 1) << 24;
        UidValidity(NonZeroU32::new(high | low).unwrap_or(NonZeroU32::MIN))
    }
    /// The number.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// A CONDSTORE mod-sequence (RFC 7162): local to a device, only grows there. The
/// low four bits are the slot of the device that issued it, so a device can tell a
/// MODSEQ it issued from one a client learned elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModSeq(u64);

impl ModSeq {
    /// The largest value we issue; RFC 7162 3.1 caps mod-sequences at 2^63 - 1.
    pub const MAX: u64 = (1 << 60) - 1;

    /// Checked constructor.
    pub fn new(v: u64) -> Option<Self> {
        (v > 0 && v <= Self::MAX).then_some(ModSeq(v))
    }
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
    /// The next MODSEQ this device issues: time-based (milliseconds in the high
    /// bits) so values from different devices are roughly comparable, always
    /// above `prev`, with `slot` in the low four bits.
    pub fn next(prev: Option<ModSeq>, now_ms: u64, slot: DeviceSlot) -> ModSeq {
        let by_clock = (now_ms.min(Self::MAX >> 16) << 16) | u64::from(slot.0);
        let after_prev = match prev {
            Some(p) => (((p.0 >> 4) + 1) << 4) | u64::from(slot.0),
            None => u64::from(slot.0) + 16,
        };
        let v = by_clock.max(after_prev);
        assert!(v <= Self::MAX, "modseq space exhausted: {v}");
        ModSeq(v)
    }
    /// Slot of the device that issued this MODSEQ.
    pub fn slot(self) -> DeviceSlot {
        DeviceSlot((self.0 & 0xF) as u8)
    }
}

/// BLAKE3 hash of a message's raw bytes: the blob's name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobHash(#[serde(with = "hex_bytes")] [u8; 32]);

impl BlobHash {
    /// Hash of `raw`.
    pub fn of(raw: &[u8]) -> Self {
        BlobHash(*blake3::hash(raw).as_bytes())
    }
    /// Wraps hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BlobHash(bytes)
    }
    /// From a SQLite blob column.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(BlobHash)
    }
    /// Hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lower-case hex, the blob's file name.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &self.to_hex()[..16])
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_of_a_slot_step_by_slot_count_and_stay_above() {
        let s0 = DeviceSlot::new(0).unwrap();
        let s3 = DeviceSlot::new(3).unwrap();
        assert_eq!(Uid::next_for_slot(0, s0).unwrap().get(), 1);
        assert_eq!(Uid::next_for_slot(1, s0).unwrap().get(), 17);
        assert_eq!(Uid::next_for_slot(0, s3).unwrap().get(), 4);
        assert_eq!(Uid::next_for_slot(4, s3).unwrap().get(), 20);
        assert_eq!(Uid::next_for_slot(5, s3).unwrap().get(), 20);
        for above in 0..100 {
            for slot in 0..DEVICE_SLOTS {
                let slot = DeviceSlot::new(slot).unwrap();
                let uid = Uid::next_for_slot(above, slot).unwrap();
                assert!(above < uid.get());
                assert!(uid.get() <= above + u32::from(DEVICE_SLOTS));
                assert_eq!(uid.slot(), slot);
            }
        }
        assert!(Uid::next_for_slot(u32::MAX - 1, s3).is_none());
    }

    #[test]
    fn modseq_grows_and_carries_slot() {
        let slot = DeviceSlot::new(5).unwrap();
        let a = ModSeq::next(None, 1_000, slot);
        let b = ModSeq::next(Some(a), 1_000, slot);
        let c = ModSeq::next(Some(b), 999, slot); // clock went back
        assert!(a < b);
        assert!(b < c);
        assert_eq!(c.slot(), slot);
        let d = ModSeq::next(Some(c), 5_000, slot);
        assert!(c < d);
        assert_eq!(d.get() >> 16, 5_000);
    }

    #[test]
    fn uidvalidity_of_a_later_generation_is_greater() {
        let id0 = MailboxId::derive("u", "foo", 0);
        let id1 = MailboxId::derive("u", "foo", 1);
        assert_ne!(id0, id1);
        assert!(UidValidity::derive(id0, 0) < UidValidity::derive(id1, 1));
    }
}
