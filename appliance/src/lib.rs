//! The Roost appliance: the daemon (IMAP, LMTP, later sync and admin API) and
//! the command line around `roost-core`. The binary's `main.rs` only parses
//! arguments; everything it runs is here so integration tests can call it.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod device;
pub mod imap;
pub mod lmtp;
pub mod logging;
pub mod mailio;
pub mod netlab;
pub mod ops;
pub mod serve;
pub mod sync;
pub mod systemd;
pub mod wan;
