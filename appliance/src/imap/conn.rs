//! One IMAP connection's protocol state, free of I/O (STYLE 7).
//!
//! ```text
//!            greeting
//!               |
//!               v
//!   +--> NotAuthenticated --STARTTLS--> (driver switches to TLS, input dropped)
//!   |           |
//!   |     LOGIN / AUTHENTICATE (flow: Authenticate until the SASL data line)
//!   |           v
//!   |     Authenticated <------------------+
//!   |           |                          |
//!   |     SELECT / EXAMINE        CLOSE / UNSELECT / failed SELECT
//!   |           v                          |
//!   |       Selected ----------------------+
//!   |           |  IDLE (flow: Idle until DONE; changes pushed meanwhile)
//!   |           v
//!   +------ Logout (any state: LOGOUT, BYE on overflow or autologout)
//! ```
//!
//! Driving contract: the driver calls [`ImapConn::handle_input`] with bytes
//! read, [`ImapConn::handle_change`] with mailboxes other sessions changed, and
//! then [`ImapConn::run`] with the store (behind the daemon's lock, on a
//! blocking thread). After `run` it writes [`ImapConn::take_output`],
//! broadcasts [`ImapConn::take_effects`], waits out [`ImapConn::hold_ms`] (a
//! failed-login delay) and acts on [`ImapConn::transport`] (STARTTLS, close).
//! `now_ms` passed to `run` never goes back.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::IntoStatic;
use imap_codec::CommandCodec;
use roost_core::crypto::SessionKey;
use roost_core::model::{MailboxId, Uid, UserName};
use roost_core::store::{BlobStore, Effects, ReadView, Store, StoreError, StoreReaders, StoreResult, Writer};

use crate::imap::access::{Access, UserSlot};
use crate::imap::cmd::{self, CmdError, Done};
use crate::imap::extended;
use crate::imap::framing::{Frame, Framer};
use crate::imap::limits::Limits;
use crate::imap::message::SummaryCache;
use crate::imap::selected::{ExpungePolicy, Selected, SyncOutcome};
use crate::imap::snapshot::SnapshotCache;
use crate::serve::Daemon;

/// How the connection reached us; decides whether plaintext logins are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Cleartext; STARTTLS offered when `starttls` is set in [`ConnConfig`].
    Plain,
    /// Implicit TLS, or cleartext upgraded with STARTTLS.
    Tls,
}

/// What the driver must do after `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportAction {
    /// Keep reading and writing.
    Continue,
    /// Write the pending output in plaintext, then do the TLS handshake and
    /// call [`ImapConn::handle_tls_started`].
    StartTls,
    /// Write the pending output uncompressed, then deflate everything after
    /// in both directions and call [`ImapConn::handle_compression_started`].
    Compress,
    /// Write the pending output and close.
    Close,
}

/// Fixed facts about a connection.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Bounds.
    pub limits: Limits,
    /// Client address (rate limits, loopback exception).
    pub peer: IpAddr,
    /// How the connection started.
    pub transport: Transport,
    /// Whether STARTTLS can be offered (a TLS config exists).
    pub starttls: bool,
}

/// Extensions the client turned on (RFC 5161 ENABLE, RFC 7162 3.1/3.2).
#[derive(Debug, Clone, Copy, Default)]
pub struct Enabled {
    /// CONDSTORE: FETCH responses carry MODSEQ.
    pub condstore: bool,
    /// QRESYNC: VANISHED instead of EXPUNGE.
    pub qresync: bool,
    /// IMAP4rev2 semantics (RFC 9051).
    pub rev2: bool,
    /// UTF8=ACCEPT (or rev2): mailbox names are UTF-8 on the wire.
    pub utf8: bool,
}

/// A logged-in user. Holds the user's connection slot while the session lives.
#[derive(Debug)]
pub struct Session {
    /// Who.
    pub user: UserName,
    _slot: UserSlot,
    /// The user's identity, unwrapped at login for this session only (None
    /// for a user without a key record); zeroised when the session drops.
    pub(crate) key: Option<Arc<SessionKey>>,
}

/// A multi-line exchange in progress.
#[derive(Debug)]
enum Flow {
    /// IDLE: waiting for `DONE`.
    Idle { tag: Tag<'static> },
    /// AUTHENTICATE PLAIN without initial response: waiting for the SASL line.
    Authenticate { tag: Tag<'static> },
}

/// A read of the store: see [`Env::read`].
pub enum StoreRead<'a> {
    /// A read-only connection in one read transaction.
    View(ReadView<'a>),
    /// The writer's connection, locked.
    Locked(MutexGuard<'a, Store>),
}

impl std::ops::Deref for StoreRead<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        match self {
            StoreRead::View(view) => view,
            StoreRead::Locked(store) => store,
        }
    }
}

/// Context a command runs in: the store and the clock, and shared limits.
#[derive(Debug)]
pub struct Env<'a> {
    /// The device's store. Locked per read ([`Env::store`]), not for the
    /// whole command: a write through the committer needs the lock itself.
    store: &'a Mutex<Store>,
    /// The daemon's group committer. Without one (sans-IO tests, tools) a
    /// write commits directly under the lock.
    committer: Option<&'a Daemon>,
    /// A handle on the store's blob directory usable without the lock.
    blobs: Option<&'a BlobStore>,
    /// Wall clock, ms since the epoch.
    pub now_ms: u64,
    /// Shared per-address and per-user bookkeeping.
    pub access: &'a Access,
    /// Shared ENVELOPE/BODYSTRUCTURE cache.
    pub summaries: &'a SummaryCache,
    /// Mailbox entries shared between sessions; None: each SELECT reads its own.
    pub snapshots: Option<&'a SnapshotCache>,
    /// Read-only connections beside the writer ([`Env::read`]); None: reads
    /// take the store lock.
    readers: Option<&'a StoreReaders>,
    /// The logged-in session's key, set by `ImapConn` before each command
    /// (drivers pass `None`).
    pub key: Option<Arc<SessionKey>>,
    /// Whose key it is (the file-key cache is per user).
    pub key_user: Option<UserName>,
}

impl Env<'_> {
    /// A message's plaintext, opened with the session's key (or taken from
    /// the key's cache of opened messages).
    pub(crate) fn message(&self, blob: &roost_core::model::BlobHash) -> Result<Vec<u8>, roost_core::store::StoreError> {
        if self.key.as_deref().is_some_and(|key| key.wants_opened(blob)) {
            self.prime_file_keys(&[blob]);
        }
        match self.blobs {
            // In the daemon, read and decrypt without the store lock: other
            // sessions and the committer go on meanwhile.
            Some(blobs) => match blobs.get_plain(blob, self.key.as_deref()) {
                // A peer's blob still in the spool (docs/sync.md) is read
                // through the store, which falls back to the spool.
                Err(roost_core::store::StoreError::Blob(roost_core::store::BlobError::Missing(_))) => {
                    self.read()?.message_plain(blob, self.key.as_deref())
                }
                other => other,
            },
            None => self.read()?.message_plain(blob, self.key.as_deref()),
        }
    }
}

/// Own commits a session remembers as caught up with (`ImapConn::caught_up`).
const CAUGHT_UP_MAX: usize = 8;

/// Most threads [`Env::open_ahead`] decrypts on.
const OPEN_AHEAD_THREADS_MAX: usize = 4;

impl Env<'_> {
    /// Opens, on up to every core, those of `blobs` the session's key has
    /// not opened yet, into its cache of opened messages, so a FETCH of many
    /// bodies pays each message's X25519 unwrap in parallel rather than one
    /// after the other. Errors are left to the read that follows, which
    /// reports them. Does nothing without a key, a cache or a blob handle.
    pub(crate) fn open_ahead(&self, blobs: &[roost_core::model::BlobHash]) {
        let (Some(store), Some(key)) = (self.blobs, self.key.as_deref()) else {
            return;
        };
        let wanted: Vec<&roost_core::model::BlobHash> = blobs.iter().filter(|b| key.wants_opened(b)).collect();
        self.prime_file_keys(&wanted);
        if wanted.len() < 2 {
            return;
        }
        // Asked once: the standard library reads the cgroup files on every
        // call, which cost more than the FETCH of a small message.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let threads = cores.min(OPEN_AHEAD_THREADS_MAX);
        if threads < 2 {
            return;
        }
        std::thread::scope(|scope| {
            for chunk in wanted.chunks(wanted.len().div_ceil(threads)) {
                scope.spawn(move || {
                    for blob in chunk {
                        let _ = store.get_plain(blob, Some(key));
                    }
                });
            }
        });
    }
}

impl Env<'_> {
    /// Reads the user's file-key cache rows of `blobs` into the session key
    /// (one store lock for all), so opening them needs no X25519. A failed
    /// read only costs that unwrap, so it is logged, not reported.
    fn prime_file_keys(&self, blobs: &[&roost_core::model::BlobHash]) {
        let (Some(key), Some(user)) = (self.key.as_deref(), self.key_user.as_ref()) else {
            return;
        };
        if blobs.iter().all(|b| key.knows_file_key(b)) {
            return;
        }
        if let Err(e) = self.read().and_then(|store| store.prime_file_keys(user.as_str(), key, blobs)) {
            tracing::warn!(error = %e, "reading the file-key cache failed; opening with the identity");
        }
    }

    /// Writes the file keys the session learned during a command to the
    /// user's file-key cache. A failure is logged: the keys are learned again.
    pub(crate) fn record_file_keys(&self) {
        let (Some(key), Some(user)) = (self.key.as_deref(), self.key_user.as_ref()) else {
            return;
        };
        if !key.has_learned_file_keys() {
            return;
        }
        if let Err(e) = self.store().record_file_keys(user.as_str(), key) {
            tracing::warn!(error = %e, "writing the file-key cache failed");
        }
    }
}

impl<'a> Env<'a> {
    /// An environment whose writes commit directly under the store lock.
    pub fn new(store: &'a Mutex<Store>, now_ms: u64, access: &'a Access, summaries: &'a SummaryCache) -> Env<'a> {
        Env {
            store,
            committer: None,
            blobs: None,
            now_ms,
            access,
            summaries,
            snapshots: None,
            readers: None,
            key: None,
            key_user: None,
        }
    }

    /// Writes go through the daemon's committer (group commit with every
    /// other session's and LMTP's writes).
    pub fn with_committer(mut self, daemon: Option<&'a Daemon>, blobs: Option<&'a BlobStore>) -> Env<'a> {
        self.committer = daemon;
        self.blobs = blobs;
        self
    }

    /// SELECT shares one copy of a mailbox's entries with the other sessions
    /// of `snapshots` (`imap::snapshot`).
    pub fn with_snapshots(mut self, snapshots: &'a SnapshotCache) -> Env<'a> {
        self.snapshots = Some(snapshots);
        self
    }

    /// Reads go to the daemon's read-only connections (`with_readers`).
    pub fn with_readers(mut self, readers: Option<&'a StoreReaders>) -> Env<'a> {
        self.readers = readers;
        self
    }

    /// One consistent read of the committed state: a read-only connection
    /// when there are, so it waits neither for a commit nor for other
    /// readers; else the locked store. Keep it to one read-only block; it
    /// sees every commit that returned before it was taken.
    pub fn read(&self) -> StoreResult<StoreRead<'a>> {
        Ok(match self.readers {
            Some(readers) => StoreRead::View(readers.view()?),
            None => StoreRead::Locked(self.store()),
        })
    }

    /// The locked store, for what only the writer's connection may do (the
    /// file-key cache rows). Keep the guard to one statement: holding it
    /// across [`Env::write`] would deadlock the committer.
    pub fn store(&self) -> MutexGuard<'a, Store> {
        // A panic in another session cannot leave a transaction open (it
        // rolls back on drop), so a poisoned lock still guards a sound store.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a message blob durably before its write, outside the store
    /// lock when a blob directory handle is set (the daemon); else the write
    /// stores it.
    pub fn put_blob(&self, user: &UserName, raw: &[u8]) -> StoreResult<Option<roost_core::store::PrestoredMessage>> {
        match self.blobs {
            // Sealed to the user's key when encryption is on (docs/security.md).
            Some(blobs) => {
                let sealer = self.read()?.sealer(user)?;
                Ok(Some(blobs.put_message(sealer.as_ref(), raw, self.key.as_deref())?))
            }
            None => Ok(None),
        }
    }

    /// Runs `f` in a durable transaction; returns after the commit. Through
    /// the committer, the effects returned are the whole batch's and are
    /// already on the change feed ([`ImapConn::committed`] then only updates
    /// this session).
    pub fn write<T, F>(&self, f: F) -> StoreResult<(T, Arc<Effects>)>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer<'_>) -> StoreResult<T> + Send + 'static,
    {
        match self.committer {
            Some(daemon) => daemon.write_blocking(f),
            None => self.store().write(self.now_ms, f).map(|(value, effects)| (value, Arc::new(effects))),
        }
    }
}

/// The protocol state machine. See the module doc for the driving contract.
#[derive(Debug)]
pub struct ImapConn {
    pub(crate) config: ConnConfig,
    framer: Framer,
    out: Vec<u8>,
    pub(crate) transport: Transport,
    pub(crate) session: Option<Session>,
    pub(crate) selected: Option<Selected>,
    pub(crate) enabled: Enabled,
    /// COMPRESS=DEFLATE is active.
    pub(crate) compressed: bool,
    flow: Option<Flow>,
    effects: Vec<Arc<Effects>>,
    /// Commits of this session's own writes that its view has caught up
    /// with already (a read of the view began after them): their
    /// notifications from the change feed need no read. Few: each is taken
    /// when it arrives.
    caught_up: Vec<Arc<Effects>>,
    /// Commits of this session's own writes since its view was last read.
    own_unread: Vec<Arc<Effects>>,
    action: TransportAction,
    hold_ms: u64,
}

impl ImapConn {
    /// A new connection; the greeting is already in the output.
    pub fn new(config: ConnConfig) -> ImapConn {
        config.limits.check();
        let framer =
            Framer::new(config.limits.line_bytes_max, config.limits.literal_bytes_max, config.limits.command_bytes_max);
        let transport = config.transport;
        let mut conn = ImapConn {
            config,
            framer,
            out: Vec::new(),
            transport,
            session: None,
            selected: None,
            enabled: Enabled::default(),
            compressed: false,
            flow: None,
            effects: Vec::new(),
            caught_up: Vec::new(),
            own_unread: Vec::new(),
            action: TransportAction::Continue,
            hold_ms: 0,
        };
        let caps = conn.capabilities();
        conn.untagged(&format!("OK [CAPABILITY {caps}] Roost ready"));
        conn
    }

    /// Adds bytes read from the client.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        self.framer.handle_input(bytes);
    }

    /// Another session (or this one) committed changes to these mailboxes.
    pub fn handle_change(&mut self, mailboxes: &BTreeSet<MailboxId>) {
        if let Some(selected) = &mut self.selected {
            if mailboxes.contains(&selected.info.id) {
                selected.dirty = true;
            }
        }
    }

    /// A commit from the change feed: marks the view behind unless it is a
    /// commit of this session's own write that the view has caught up with.
    pub fn handle_commit(&mut self, commit: &Arc<Effects>) {
        self.note_names(commit);
        if let Some(i) = self.caught_up.iter().position(|seen| Arc::ptr_eq(seen, commit)) {
            self.caught_up.swap_remove(i);
            return;
        }
        self.handle_change(&commit.mailboxes);
    }

    /// Change notifications were lost (the queue overflowed): rescan.
    pub fn handle_lagged(&mut self) {
        if let Some(selected) = &mut self.selected {
            selected.dirty = true;
            selected.names_changed = true;
        }
    }

    /// Marks the selected view's name unsure when `commit` changed this
    /// user's mailbox list (also for the session's own commits: the view's
    /// catch-up reads entries, not names).
    fn note_names(&mut self, commit: &Effects) {
        let user = self.session.as_ref().map(|s| s.user.as_str());
        if let (Some(selected), Some(user)) = (&mut self.selected, user) {
            if commit.users.contains(user) {
                selected.names_changed = true;
            }
        }
    }

    /// The server is shutting down.
    pub fn handle_shutdown(&mut self) {
        self.untagged("BYE [UNAVAILABLE] Server shutting down");
        self.action = TransportAction::Close;
    }

    /// The client stayed silent too long (autologout, RFC 9051 5.4).
    pub fn handle_timeout(&mut self) {
        self.untagged("BYE Autologout; idle for too long");
        self.action = TransportAction::Close;
    }

    /// TLS is up after STARTTLS.
    pub fn handle_tls_started(&mut self) {
        self.transport = Transport::Tls;
        self.action = TransportAction::Continue;
    }

    /// Deflate is running after COMPRESS.
    pub fn handle_compression_started(&mut self) {
        self.compressed = true;
        self.action = TransportAction::Continue;
    }

    /// Whether the connection is in IDLE (the driver then waits for changes).
    pub fn is_idling(&self) -> bool {
        matches!(self.flow, Some(Flow::Idle { .. }))
    }

    /// Whether bytes are buffered that do not make a whole command yet.
    pub fn partial_input(&self) -> bool {
        self.framer.has_partial()
    }

    /// Whether a multi-line exchange (IDLE, AUTHENTICATE) is in progress.
    pub fn in_flow(&self) -> bool {
        self.flow.is_some()
    }

    /// Whether a selected mailbox has changes to announce during IDLE.
    pub fn wants_run(&self) -> bool {
        self.is_idling() && self.selected.as_ref().is_some_and(|s| s.dirty)
    }

    /// Whether what is buffered is one command that is quick and bounded
    /// whatever the mailbox (no write, no message bytes, no catch-up to
    /// send), so the driver may run it on its async thread rather than hand
    /// the thread's other work away first. STATUS counts a mailbox once per
    /// version (`SnapshotCache`); every later STATUS of it is a lookup.
    pub fn runs_quickly(&self) -> bool {
        const QUICK: [&[u8]; 9] =
            [b"NOOP", b"CAPABILITY", b"STATUS", b"ID", b"ENABLE", b"NAMESPACE", b"CHECK", b"UNSELECT", b"LOGOUT"];
        if self.flow.is_some() || self.selected.as_ref().is_some_and(|s| s.dirty) {
            return false;
        }
        let Some(line) = self.framer.lone_line() else { return false };
        let Some(word) = line.split(|b| *b == b' ').nth(1) else { return false };
        let word = word.trim_ascii_end();
        QUICK.iter().any(|quick| word.eq_ignore_ascii_case(quick))
    }

    /// Bytes to write.
    #[must_use]
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Committed changes to tell other sessions about.
    #[must_use]
    pub fn take_effects(&mut self) -> Vec<Arc<Effects>> {
        std::mem::take(&mut self.effects)
    }

    /// Milliseconds to wait before writing the output (failed login delay).
    #[must_use]
    pub fn hold_ms(&mut self) -> u64 {
        std::mem::take(&mut self.hold_ms)
    }

    /// What the driver must do with the transport.
    pub fn transport(&self) -> TransportAction {
        self.action
    }

    /// Runs every complete command buffered, and pushes changes while idling.
    pub fn run(&mut self, env: &mut Env<'_>) {
        if self.is_idling() {
            self.sync_selected(env, ExpungePolicy::Announce);
        }
        while self.action == TransportAction::Continue {
            let Some(frame) = self.framer.poll_frame() else { break };
            match frame {
                Frame::LiteralAccepted => self.out.extend_from_slice(b"+ Ready for literal data\r\n"),
                Frame::LiteralRefused { head } => {
                    let tag = extended::tag_of(&head);
                    self.tagged(tag.as_deref(), "NO [TOOBIG] Literal too large");
                }
                Frame::Overflow { .. } => {
                    self.untagged("BYE [TOOBIG] Command or literal too large");
                    self.action = TransportAction::Close;
                }
                Frame::Message(bytes) => self.handle_message(env, bytes),
            }
        }
    }

    fn handle_message(&mut self, env: &mut Env<'_>, bytes: Vec<u8>) {
        env.key = self.session.as_ref().and_then(|s| s.key.clone());
        env.key_user = self.session.as_ref().map(|s| s.user.clone());
        self.handle_flow(env, bytes);
        env.record_file_keys();
    }

    fn handle_flow(&mut self, env: &mut Env<'_>, bytes: Vec<u8>) {
        match self.flow.take() {
            Some(Flow::Idle { tag }) => {
                // RFC 2177: the only thing a client may send while idling is DONE.
                if bytes.trim_ascii().eq_ignore_ascii_case(b"DONE") {
                    self.sync_selected(env, ExpungePolicy::Announce);
                    self.tagged(Some(tag.as_ref()), "OK IDLE terminated");
                } else {
                    self.tagged(Some(tag.as_ref()), "BAD Expected DONE; IDLE terminated");
                }
            }
            Some(Flow::Authenticate { tag }) => {
                let res = cmd::auth::sasl_line(self, env, bytes.trim_ascii());
                self.finish(env, tag.as_ref(), res);
            }
            None => self.handle_command(env, &bytes),
        }
    }

    fn handle_command(&mut self, env: &mut Env<'_>, bytes: &[u8]) {
        let (command, extras) = match decode(bytes) {
            Ok(decoded) => decoded,
            Err(reason) => {
                let tag = extended::tag_of(bytes);
                self.tagged(tag.as_deref(), &format!("BAD {reason}"));
                return;
            }
        };
        let tag = command.tag.as_ref().to_string();
        let res = cmd::execute(self, env, command, extras);
        self.finish(env, &tag, res);
    }

    /// Writes the tagged reply of a command, after pending mailbox updates.
    fn finish(&mut self, env: &mut Env<'_>, tag: &str, res: Result<Done, CmdError>) {
        match res {
            Ok(Done::Idle) => {
                self.flow = Some(Flow::Idle { tag: tag_static(tag) });
                self.sync_selected(env, ExpungePolicy::Announce);
                self.out.extend_from_slice(b"+ idling\r\n");
            }
            Ok(Done::SaslContinue) => {
                self.flow = Some(Flow::Authenticate { tag: tag_static(tag) });
                self.out.extend_from_slice(b"+ \r\n");
            }
            Ok(Done::Ok { text, policy }) => {
                self.sync_selected(env, policy);
                self.tagged(Some(tag), &format!("OK {text}"));
            }
            Ok(Done::Logout) => {
                self.untagged("BYE Roost logging out");
                self.tagged(Some(tag), "OK LOGOUT completed");
                self.action = TransportAction::Close;
            }
            Ok(Done::Compress) => {
                self.tagged(Some(tag), "OK DEFLATE active");
                // RFC 4978 3: the client sends nothing more until it has our
                // OK, so anything buffered is a protocol violation: drop it.
                self.framer.discard_input();
                self.action = TransportAction::Compress;
            }
            Ok(Done::StartTls) => {
                self.tagged(Some(tag), "OK Begin TLS negotiation now");
                // Bytes pipelined after STARTTLS were sent in plaintext: drop them.
                self.framer.discard_input();
                self.action = TransportAction::StartTls;
            }
            Err(CmdError::Bad(text)) => self.tagged(Some(tag), &format!("BAD {text}")),
            Err(CmdError::No(text)) => {
                self.sync_selected(env, ExpungePolicy::Hold);
                self.tagged(Some(tag), &format!("NO {text}"));
            }
            Err(CmdError::LoginFailed(text)) => {
                self.hold_ms = self.config.limits.login_failure_delay.as_millis() as u64;
                self.tagged(Some(tag), &format!("NO {text}"));
            }
            Err(CmdError::Store(e)) => {
                tracing::error!(error = %e, "IMAP command failed in the store");
                self.tagged(Some(tag), "NO [SERVERBUG] Internal error; the change was not made");
            }
        }
    }

    fn sync_selected(&mut self, env: &mut Env<'_>, policy: ExpungePolicy) {
        if let Err(e) = self.catch_up(env, policy, &[]) {
            tracing::error!(error = %e, "reading the selected mailbox failed");
        }
    }

    /// Brings the selected view up to the store when it may be behind (one
    /// read), reporting the changes but the flags of `quiet`.
    fn catch_up(&mut self, env: &mut Env<'_>, policy: ExpungePolicy, quiet: &[Uid]) -> Result<(), StoreError> {
        let enabled = self.enabled;
        let Some(selected) = &mut self.selected else { return Ok(()) };
        if !selected.dirty {
            return Ok(());
        }
        let outcome = selected.sync(&*env.read()?, enabled, policy, &mut self.out, quiet)?;
        match outcome {
            SyncOutcome::Current => self.view_read(),
            SyncOutcome::MailboxGone => {
                self.selected = None;
                self.action = TransportAction::Close;
            }
        }
        Ok(())
    }

    /// Writes `* <text>`.
    pub(crate) fn untagged(&mut self, text: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Writes already-formatted bytes (a response built with `wire`).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn tagged(&mut self, tag: Option<&str>, text: &str) {
        self.out.extend_from_slice(tag.unwrap_or("*").as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Records committed changes: this session's view and other sessions.
    pub(crate) fn committed(&mut self, effects: Arc<Effects>) {
        self.handle_change(&effects.mailboxes);
        self.note_names(&effects);
        // A commit that changed nothing is not published: nothing comes
        // back; nor does a notification matter with no mailbox selected.
        if !effects.events.is_empty() && self.selected.is_some() {
            // Bounded: one forgotten costs a read, not a missed change.
            if self.own_unread.len() >= CAUGHT_UP_MAX {
                self.own_unread.remove(0);
            }
            self.own_unread.push(effects.clone());
        }
        self.effects.push(effects);
    }

    /// The view was just read from the store, after this session's own
    /// commits so far: when they come back on the change feed, the view has
    /// them already.
    fn view_read(&mut self) {
        for commit in std::mem::take(&mut self.own_unread) {
            // Bounded: a notification lost to a lagging feed leaves its entry behind.
            if self.caught_up.len() >= CAUGHT_UP_MAX {
                self.caught_up.remove(0);
            }
            self.caught_up.push(commit);
        }
    }

    /// [`ImapConn::committed`] for a flag write to the selected mailbox,
    /// whose command reports the new flags of `quiet` itself: one read
    /// brings the view up to the store (the write and whatever committed
    /// before it) at once and reports the other changes; expunges wait, so
    /// the command's message numbers stay valid.
    pub(crate) fn caught_up_with_own_write(
        &mut self,
        env: &mut Env<'_>,
        effects: Arc<Effects>,
        quiet: &[Uid],
    ) -> Result<(), StoreError> {
        self.committed(effects);
        self.catch_up(env, ExpungePolicy::Hold, quiet)
    }

    /// Whether a plaintext password may be accepted here.
    pub(crate) fn plaintext_login_allowed(&self) -> bool {
        self.transport == Transport::Tls || self.config.peer.is_loopback()
    }

    pub(crate) fn log_in(&mut self, user: UserName, slot: UserSlot, key: Option<SessionKey>) {
        self.session = Some(Session { user, _slot: slot, key: key.map(Arc::new) });
    }

    /// The CAPABILITY list for the current state (RFC 9051 7.2.2).
    pub(crate) fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2"];
        if self.session.is_none() {
            if self.transport == Transport::Plain && self.config.starttls {
                caps.push("STARTTLS");
            }
            if self.plaintext_login_allowed() {
                caps.extend(["AUTH=PLAIN", "SASL-IR"]);
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps.extend([
            "LITERAL+",
            "ENABLE",
            "ID",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "CONDSTORE",
            "QRESYNC",
            "STATUS=SIZE",
            "UTF8=ACCEPT",
            "BINARY",
        ]);
        if !self.compressed {
            caps.push("COMPRESS=DEFLATE");
        }
        caps.join(" ")
    }
}

fn tag_static(tag: &str) -> Tag<'static> {
    // The tag came from a parsed command, so it is valid.
    Tag::try_from(tag.to_string()).unwrap_or_else(|_| Tag::unvalidated("x".to_string()))
}

/// Decodes a command, with our own handling of what imap-codec cannot parse
/// (`extended`): LIST-EXTENDED options, SEARCH RETURN, CHANGEDSINCE 0.
fn decode(bytes: &[u8]) -> Result<(Command<'static>, extended::Extras), &'static str> {
    let (bytes, extras) = extended::extract(bytes)?;
    match CommandCodec::default().decode(&bytes) {
        Ok((b"", command)) => Ok((command.into_static(), extras)),
        Ok(_) => Err("Trailing bytes after command"),
        Err(_) => {
            if let Some(reason) = extended::diagnose(&bytes) {
                return Err(reason);
            }
            Err("Syntax error or unknown command")
        }
    }
}

/// The driver moves the conn to a blocking thread for each `run`.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<ImapConn>();
};

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    /// Only a lone command of the quick kind runs on the async thread: not
    /// a pipelined pair, not one with a literal, not a body FETCH or a
    /// login, and not while another session's change is still to be sent.
    #[test]
    fn only_a_lone_quick_command_runs_in_place() {
        let mut h = Harness::logged_in();
        h.append("INBOX", "Subject: a\r\n\r\n1\r\n");
        assert!(h.runs_quickly(b"a NOOP\r\n"));
        assert!(h.runs_quickly(b"b status INBOX (MESSAGES UNSEEN)\r\n"));
        assert!(!h.runs_quickly(b"c NOOP\r\nd NOOP\r\n"));
        assert!(!h.runs_quickly(b"e STATUS {5+}\r\nINBOX (MESSAGES)\r\n"));
        assert!(!h.runs_quickly(b"f LOGIN alice secret\r\n"));
        h.transact("g SELECT INBOX", "OK");
        assert!(!h.runs_quickly(b"h FETCH 1 BODY.PEEK[]\r\n"));
        assert!(h.runs_quickly(b"i NOOP\r\n"));
        let mut other = h.second();
        other.transact("j SELECT INBOX", "OK");
        other.transact("k STORE 1 +FLAGS (\\Flagged)", "OK");
        assert!(!h.runs_quickly(b"l NOOP\r\n"), "the NOOP that announces the change is not in place");
        assert!(h.runs_quickly(b"m NOOP\r\n"));
    }
}
