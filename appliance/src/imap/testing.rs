//! The sans-IO test harness (STYLE 14): an [`ImapConn`] on an in-memory
//! store, driven with protocol lines. Several harnesses can share one store
//! (`second`) and see each other's changes, as connections of one daemon do.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use roost_core::auth::hash_password;
use roost_core::model::{DeviceSlot, UserName};
use roost_core::store::{AppendMessage, Effects, Store};

use crate::imap::access::Access;
use crate::imap::conn::{ConnConfig, Env, ImapConn, Transport};
use crate::imap::limits::Limits;
use crate::imap::message::SummaryCache;
use crate::imap::snapshot::SnapshotCache;

struct Shared {
    store: std::sync::Mutex<Store>,
    access: Access,
    summaries: SummaryCache,
    snapshots: SnapshotCache,
    /// Every committed change, in order; each harness applies the ones it has
    /// not seen before running (the daemon's broadcast).
    changes: Vec<Arc<Effects>>,
    now_ms: u64,
}

/// See the module doc.
pub struct Harness {
    conn: ImapConn,
    shared: Rc<RefCell<Shared>>,
    changes_seen: usize,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

const T0_MS: u64 = 1_700_000_000_000;

impl Harness {
    /// A cleartext loopback connection; user `alice` with password `secret`.
    pub fn new() -> Harness {
        Harness::with_peer([127, 0, 0, 1].into())
    }

    /// A cleartext connection from a remote address (no plaintext login).
    pub fn remote() -> Harness {
        Harness::with_peer([192, 0, 2, 1].into())
    }

    /// A loopback connection already logged in as alice.
    pub fn logged_in() -> Harness {
        let mut h = Harness::new();
        h.login();
        h
    }

    fn with_peer(peer: IpAddr) -> Harness {
        let mut store = Store::in_memory([7; 32], DeviceSlot::new(0).unwrap(), T0_MS).unwrap();
        // Hashing is deliberately slow; one hash serves every harness.
        static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let hash = HASH.get_or_init(|| hash_password("secret", &mut rand::rngs::OsRng));
        let alice = UserName::new("alice").unwrap();
        store.write(T0_MS, |w| w.add_user(&alice, hash)).unwrap();
        let shared = Shared {
            store: std::sync::Mutex::new(store),
            access: Access::new(Limits::default()),
            summaries: SummaryCache::default(),
            snapshots: SnapshotCache::default(),
            changes: Vec::new(),
            now_ms: T0_MS,
        };
        Harness::on(Rc::new(RefCell::new(shared)), peer)
    }

    fn on(shared: Rc<RefCell<Shared>>, peer: IpAddr) -> Harness {
        let config = ConnConfig { limits: Limits::default(), peer, transport: Transport::Plain, starttls: false };
        let changes_seen = shared.borrow().changes.len();
        let mut h = Harness { conn: ImapConn::new(config), changes_seen, shared };
        let greeting = String::from_utf8(h.conn.take_output()).unwrap();
        assert!(greeting.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{greeting}");
        h
    }

    /// Another connection on the same store, logged in as alice.
    pub fn second(&self) -> Harness {
        let mut h = Harness::on(self.shared.clone(), [127, 0, 0, 1].into());
        h.login();
        h
    }

    /// Logs in as alice.
    pub fn login(&mut self) {
        self.transact("login LOGIN alice secret", "OK");
    }

    /// Sends `line` plus CRLF, runs the conn, returns everything it wrote.
    pub fn send(&mut self, line: &str) -> String {
        self.send_bytes(format!("{line}\r\n").as_bytes())
    }

    /// Sends raw bytes, runs the conn, returns everything it wrote (lossy UTF-8).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> String {
        self.conn.handle_input(bytes);
        self.poll()
    }

    /// Whether the driver would run `bytes` in place (`ImapConn::runs_quickly`),
    /// asked after other sessions' changes reached this one, as in the
    /// driver; then runs them.
    pub fn runs_quickly(&mut self, bytes: &[u8]) -> bool {
        for change in &self.shared.borrow().changes[self.changes_seen..] {
            self.conn.handle_commit(change);
        }
        self.conn.handle_input(bytes);
        let quick = self.conn.runs_quickly();
        self.poll();
        quick
    }

    /// Applies other sessions' changes and runs (what the driver does on a
    /// notification); returns the output.
    pub fn poll(&mut self) -> String {
        let mut shared = self.shared.borrow_mut();
        for change in &shared.changes[self.changes_seen..] {
            self.conn.handle_commit(change);
        }
        // The clock moves on between commands, as it does for real.
        shared.now_ms += 1000;
        let Shared { store, access, summaries, snapshots, now_ms, .. } = &mut *shared;
        let mut env = Env::new(store, *now_ms, access, summaries).with_snapshots(snapshots);
        self.conn.run(&mut env);
        self.changes_seen = shared.changes.len();
        // Its own commits come back to it at the next poll, as the daemon's
        // change feed sends every commit to every session.
        shared.changes.extend(self.conn.take_effects());
        String::from_utf8_lossy(&self.conn.take_output()).into_owned()
    }

    /// Sends a tagged command; asserts its tagged reply starts with
    /// `<tag> <expect>`; returns all output.
    pub fn transact(&mut self, command: &str, expect: &str) -> String {
        let tag = command.split(' ').next().unwrap().to_string();
        let out = self.send(command);
        let prefix = format!("{tag} {expect}");
        assert!(out.lines().any(|l| l.starts_with(&prefix)), "{command:?}: expected {prefix:?}, got:\n{out}");
        out
    }

    /// Sends an untagged line (IDLE's DONE, SASL data, literal data); asserts
    /// a line of the output starts with `expect`.
    pub fn transact_line(&mut self, line: &str, expect: &str) -> String {
        let out = self.send(line);
        assert!(out.lines().any(|l| l.starts_with(expect)), "{line:?}: expected {expect:?}, got:\n{out}");
        out
    }

    /// Whether the conn asked the driver to start deflate.
    pub fn compressing(&self) -> bool {
        self.conn.transport() == crate::imap::conn::TransportAction::Compress
    }

    /// Whether input is buffered that is not a whole command yet.
    pub fn partial_input(&self) -> bool {
        self.conn.partial_input()
    }

    /// Whether the conn asked the driver to close.
    pub fn closed(&self) -> bool {
        self.conn.transport() == crate::imap::conn::TransportAction::Close
    }

    /// Whether the conn waits in IDLE or for SASL data (a NOOP line then is
    /// data, not a command).
    pub fn in_flow(&self) -> bool {
        self.conn.in_flow()
    }

    /// Appends a message to alice's `mailbox` directly through the store.
    pub fn append(&mut self, mailbox: &str, raw: &str) {
        let mut shared = self.shared.borrow_mut();
        let alice = UserName::new("alice").unwrap();
        let now_ms = shared.now_ms;
        let (_, effects) = shared
            .store
            .get_mut()
            .unwrap()
            .write(now_ms, |w| {
                let id = w.mailbox(&alice, mailbox)?;
                w.append(
                    id,
                    &[AppendMessage { raw: raw.as_bytes(), flags: vec![], internal_date: (now_ms / 1000) as i64 }],
                )
            })
            .unwrap();
        shared.changes.push(Arc::new(effects));
    }

    /// A second device of alice's holding everything this store has (its
    /// own key and UID slot): what it writes reaches this store through
    /// [`Harness::ingest_from`], as replication would bring it.
    pub fn peer(&self) -> Store {
        let mut peer = Store::in_memory([9; 32], DeviceSlot::new(1).unwrap(), T0_MS).unwrap();
        let shared = self.shared.borrow();
        hand_over(&shared.store.lock().unwrap(), &mut peer, shared.now_ms);
        peer
    }

    /// Takes the events of `peer` this store lacks (replication) and
    /// announces the change to every session.
    pub fn ingest_from(&mut self, peer: &Store) {
        let mut shared = self.shared.borrow_mut();
        let now_ms = shared.now_ms;
        let effects = hand_over(peer, shared.store.get_mut().unwrap(), now_ms);
        shared.changes.push(Arc::new(effects));
    }

    /// Marks the store as restored from a backup and not yet rejoined with
    /// its peers (`roost restore` of a paired device): changes are refused.
    pub fn mark_restored(&mut self) {
        let mut shared = self.shared.borrow_mut();
        let now_ms = shared.now_ms;
        shared.store.get_mut().unwrap().mark_restored(now_ms).unwrap();
    }

    /// `Store::mailbox_counts` of alice's `mailbox`.
    pub fn mailbox_counts(&self, mailbox: &str) -> roost_core::store::MailboxCounts {
        let shared = self.shared.borrow();
        let store = shared.store.lock().unwrap();
        let info = store.mailbox_by_name(&UserName::new("alice").unwrap(), mailbox).unwrap().unwrap();
        store.mailbox_counts(info.id).unwrap()
    }

    /// HIGHESTMODSEQ of alice's `mailbox`.
    pub fn highest_modseq(&self, mailbox: &str) -> u64 {
        let shared = self.shared.borrow();
        let alice = UserName::new("alice").unwrap();
        let info = shared.store.lock().unwrap().mailbox_by_name(&alice, mailbox).unwrap().unwrap();
        info.highest_modseq
    }
}

/// Hands `to` the events of `from` it lacks, blobs first (what a sync
/// session does); returns what changed in `to`.
fn hand_over(from: &Store, to: &mut Store, now_ms: u64) -> Effects {
    let events = from.events_missing(&to.version_vector().unwrap(), usize::MAX).unwrap();
    for event in &events {
        for blob in event.op.blobs() {
            to.blobs().put_named(&blob, &from.message(&blob).unwrap()).unwrap();
        }
    }
    to.ingest(now_ms, &events).unwrap().1
}
