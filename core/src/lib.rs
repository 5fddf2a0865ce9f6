//! Roost core: the data model, the event log, the merge rules and the SQLite
//! store of one device. No sockets, no async runtime, no clock: callers pass
//! `now_ms` and random number generators in (STYLE 1).
//!
//! Reading order:
//! - [`model`]: ids, UIDs, MODSEQs, flags, names.
//! - [`clock`]: the hybrid logical clock that stamps events.
//! - [`log`]: events and version vectors, the replicated source of truth.
//! - `merge`: how each event changes the materialised state (one file per rule).
//! - [`store`]: the SQLite database and blob directory; [`store::Store::write`]
//!   is the only way to change state.
//! - [`auth`]: password hashing and policy.
//! - [`sim`]: the deterministic multi-device simulation (replication tests and
//!   `roost sim`).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![deny(missing_debug_implementations)]

pub mod auth;
pub mod clock;
pub mod crypto;
pub mod log;
mod merge;
pub mod model;
pub mod sim;
pub mod store;

pub use merge::Effects;
