//! LMTP delivery (RFC 2033): `conn` is the sans-IO protocol state machine,
//! `deliver` decides what a recipient and a message mean for the store, and
//! `driver` is the one tokio loop that moves bytes between them.

pub mod conn;
pub mod deliver;
pub mod driver;

pub use driver::{spawn_listeners, LmtpListeners};
