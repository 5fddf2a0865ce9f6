//! Socket-level IMAP tests (STYLE 13c): the server runs in-process on
//! 127.0.0.1:0 with a temp store, driven by async-imap and by raw protocol
//! lines. One file per command family; `harness` starts and stops servers and
//! fails a test whose server leaked a connection or panicked.

mod harness;

mod auth;
mod bad_input;
mod binary;
mod clients;
mod condstore;
mod fetch;
mod group_commit;
mod idle;
mod resync;
mod timeouts;
mod uidplus;
