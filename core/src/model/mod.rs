//! The data model's value types: ids, flags, names. Pure values, no storage.

pub mod flags;
pub mod ids;
pub mod mailbox;

pub use flags::Flag;
pub use ids::{
    BlobHash, DeviceId, DeviceSlot, EntryId, EventId, ItemId, MailboxId, MessageKey, ModSeq, Uid, UidValidity,
    DEVICE_SLOTS,
};
pub use mailbox::{MailboxName, NameError, SpecialUse, UserName, DEFAULT_MAILBOXES};

/// The Message-ID header of a raw message (without angle brackets), or empty
/// when it has none or it cannot be parsed. Only the header block is read.
pub fn message_id_of(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse_headers(raw)
        .and_then(|m| m.message_id().map(str::to_string))
        .unwrap_or_default()
}
