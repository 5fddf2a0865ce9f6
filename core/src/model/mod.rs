//! The data model's value types: ids, flags, names. Pure values, no storage.

pub mod flags;
pub mod ids;
pub mod mailbox;

pub use flags::Flag;
pub use ids::{
    BlobHash, DeviceId, DeviceSlot, EntryId, EventId, ItemId, MailboxId, ModSeq, Uid, UidValidity, DEVICE_SLOTS,
};
pub use mailbox::{MailboxName, NameError, SpecialUse, UserName, DEFAULT_MAILBOXES};
