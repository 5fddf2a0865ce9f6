//! The event log's types: events and version vectors.

pub mod event;
pub mod version_vector;

pub use event::{DecodeError, Event, EventOp};
pub use version_vector::VersionVector;
