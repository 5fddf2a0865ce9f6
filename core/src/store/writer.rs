//! Local changes: each `Writer` method checks the request against the current
//! state (errors a client should see: no such mailbox, name taken, ...), turns it
//! into one event, and applies it through `merge::apply_event`. All of it runs in
//! the transaction `Store::write` opened.

use rusqlite::Connection;

use crate::clock::Hlc;
use crate::log::event::{CopiedEntry, DeliveredEntry, Event, EventOp, MovedEntry, NewEntry};
use crate::merge::apply_event;
pub use crate::merge::Effects;
use crate::model::{
    BlobHash, DeviceSlot, EntryId, EventId, Flag, MailboxId, MailboxName, MessageKey, ModSeq, SpecialUse, Uid,
    UidValidity, UserName, DEFAULT_MAILBOXES,
};
use crate::store::blobs::{BlobStore, PrestoredMessage};
use crate::store::state::{self, EntryRow, MailboxRow};
use crate::store::{DeviceIdentity, StoreError, StoreResult};

/// How STORE changes flags (RFC 9051 6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
    /// `FLAGS`
    Replace,
}

/// A flag change to apply to entries.
#[derive(Debug, Clone)]
pub struct FlagChange {
    /// How.
    pub mode: StoreMode,
    /// Which flags.
    pub flags: Vec<Flag>,
}

/// Outcome of [`Writer::apply_remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteApply {
    /// Applied now.
    Applied,
    /// Already here.
    Duplicate,
    /// A dependency is missing; try again after it arrived.
    NotReady,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct AppendMessage<'a> {
    /// The raw RFC 5322 message.
    pub raw: &'a [u8],
    /// Initial flags.
    pub flags: Vec<Flag>,
    /// INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
}

/// Makes local changes inside one transaction. See the module doc.
#[derive(Debug)]
pub struct Writer<'t> {
    conn: &'t Connection,
    identity: &'t DeviceIdentity,
    blobs: &'t BlobStore,
    now_ms: u64,
    effects: Effects,
    rekeys: u64,
    encrypt: bool,
    /// This device's UID slot: the identity's, unless this transaction moved
    /// it because a peer turned out to use it too (`make_room`).
    slot: DeviceSlot,
    /// The store was restored and has not rejoined (`rejoin.rs`): no own
    /// events, and this device's own events from peers are accepted.
    rejoining: bool,
}

/// A message's blob as stored.
struct StoredMessage {
    blob: BlobHash,
}

fn name_of(name: &str) -> StoreResult<MailboxName> {
    MailboxName::new(name).map_err(|reason| StoreError::InvalidName { name: name.to_string(), reason })
}

impl<'t> Writer<'t> {
    pub(crate) fn new(
        conn: &'t Connection,
        identity: &'t DeviceIdentity,
        blobs: &'t BlobStore,
        now_ms: u64,
        encrypt: bool,
    ) -> StoreResult<Self> {
        let rejoining = crate::store::rejoin::is_rejoining(conn)?;
        Ok(Writer {
            conn,
            identity,
            blobs,
            now_ms,
            effects: Effects::default(),
            rekeys: 0,
            encrypt,
            slot: identity.slot(),
            rejoining,
        })
    }

    /// Stores a message of `user` durably (fsync + rename, before the event
    /// naming it commits): sealed to the user's public key when encryption is
    /// on and the user has a key record, else as it is. The same content
    /// stored again for the same user reuses its sealed blob.
    fn store_message(&self, user: &str, raw: &[u8]) -> StoreResult<StoredMessage> {
        if self.encrypt {
            if let Some(keys) = state::user_keys(self.conn, user)? {
                let sealer = keys.sealer(user)?;
                let content = sealer.content_hash(raw);
                if let Some(blob) = state::sealed_blob(self.conn, user, &content)? {
                    if self.blobs.contains(&blob) {
                        return Ok(StoredMessage { blob });
                    }
                }
                let blob = self.blobs.put(&sealer.seal(raw)?)?;
                state::sealed_blob_put(self.conn, user, &content, blob)?;
                return Ok(StoredMessage { blob });
            }
        }
        let blob = self.blobs.put(raw)?;
        Ok(StoredMessage { blob })
    }

    pub(crate) fn conn(&self) -> &'t Connection {
        self.conn
    }

    pub(crate) fn blobs(&self) -> &'t BlobStore {
        self.blobs
    }

    pub(crate) fn finish(self) -> StoreResult<Effects> {
        assert!(self.effects.rekey_candidates.is_empty(), "a write ends with entries left to re-key");
        Ok(self.effects)
    }

    /// Creates, signs and applies one local event.
    fn emit(&mut self, op: EventOp) -> StoreResult<EventId> {
        if self.rejoining {
            // Peers may hold own events above our seq: the next seq may be taken.
            return Err(StoreError::Rejoining);
        }
        let origin = self.identity.id();
        let seq = state::max_seq(self.conn, origin)? + 1;
        let deps = state::version_vector(self.conn)?;
        let hlc = Hlc::tick(state::last_hlc(self.conn)?, self.now_ms);
        let id = EventId { origin, seq };
        let event = Event::sign(id, hlc, deps, op, self.identity.key());
        apply_event(self.conn, &event, self.now_ms, self.slot, &mut self.effects)?;
        Ok(id)
    }

    /// Applies an event from another device if it is next in causal order.
    /// Duplicates are skipped; an event whose dependencies are missing is
    /// reported `NotReady` (the caller keeps it and retries, or uses
    /// [`crate::store::Store::ingest`], which holds it in the store). Entries
    /// the event puts at or below what IMAP may have shown here are re-keyed in
    /// the same transaction (one `Rekey` event each).
    pub fn apply_remote(&mut self, event: &Event) -> StoreResult<RemoteApply> {
        let have = state::version_vector(self.conn)?;
        if have.contains(event.id) {
            return Ok(RemoteApply::Duplicate);
        }
        if have.get(&event.id.origin) + 1 != event.id.seq || !have.dominates(&event.deps) {
            return Ok(RemoteApply::NotReady);
        }
        if event.id.origin == self.identity.id() && !self.rejoining {
            // This device's own event it does not have, outside a rejoin: it
            // was restored from an old copy without `roost restore` and may
            // already have reissued seqs. Refused, never merged.
            return Err(StoreError::Corrupt(format!(
                "a peer sent event {:?} of this device, which this device does not have (restored from an old copy?)",
                event.id
            )));
        }
        self.make_room(event)?;
        if let Err(err) = apply_event(self.conn, event, self.now_ms, self.slot, &mut self.effects) {
            // The caller rolls the event back (a batch job's savepoint): so are its candidates.
            self.effects.rekey_candidates.clear();
            return Err(err);
        }
        self.rekey_candidates(event.id)?;
        Ok(RemoteApply::Applied)
    }

    /// Emits a `Rekey` for each entry a remote event left at or below the
    /// exposure watermark. Replay never gets here: it applies the `Rekey`
    /// events from the log instead.
    fn rekey_candidates(&mut self, cause: EventId) -> StoreResult<()> {
        let candidates = std::mem::take(&mut self.effects.rekey_candidates);
        if self.rejoining {
            // A re-key is an own event, which a rejoining device cannot make.
            // The entry keeps its UID; where this device re-keyed it before
            // the restore, its own `Rekey` comes back from the peer.
            return Ok(());
        }
        for (mailbox, entry) in candidates {
            let Some(row) = state::entry_get(self.conn, entry)? else {
                continue;
            };
            let exposed = state::mailbox_exposed(self.conn, mailbox)?;
            if row.mailbox_id != mailbox || exposed < row.uid.get() {
                continue; // Moved on, or already re-keyed above the watermark.
            }
            let uid = self.rekey_entry(&row, 0, cause, "at or below UIDs IMAP clients here may have seen")?;
            assert!(exposed < uid.get(), "re-key to {} not above exposed {exposed}", uid.get());
        }
        // A local Rekey never lands below the watermark, so nothing new is noted.
        assert!(self.effects.rekey_candidates.is_empty(), "a local re-key asked for another");
        Ok(())
    }

    /// Emits a `Rekey` of `row` to this device's next UID in its mailbox
    /// above both its watermark and `above`, and notes it in the conflict log.
    fn rekey_entry(&mut self, row: &EntryRow, above: u32, cause: EventId, why: &str) -> StoreResult<Uid> {
        let mailbox = row.mailbox_id;
        let (uid_max, _) = state::mailbox_local(self.conn, mailbox)?;
        let uid = Uid::next_for_slot(uid_max.max(above), self.slot)
            .ok_or_else(|| StoreError::UidSpaceExhausted(format!("{mailbox:?}")))?;
        let rekey = self.emit(EventOp::Rekey { mailbox, entry: row.entry_id, uid })?;
        self.rekeys += 1;
        crate::store::conflicts::record(
            self.conn,
            crate::store::ConflictKind::UidRekey,
            self.now_ms,
            mailbox,
            rekey,
            Some(cause),
            &format!("was at UID {}, {why}; given UID {}", row.uid.get(), uid.get()),
        )?;
        Ok(uid)
    }

    /// Before a peer's event is applied: if it uses this device's UID slot
    /// (two devices share one: a cloned or restored device, or a pairing
    /// race), the device with the greater id moves to a free slot, so the
    /// two stop issuing the same UIDs; and every UID the event wants that
    /// another entry holds here is freed by re-keying that holder (to this
    /// device's slot, after any move). The `Rekey`s precede the event in this
    /// log, so replay meets no clash; they replicate, highest wins, so all
    /// devices converge. Re-keying the newcomer instead does not converge
    /// while both devices keep issuing the same slot (docs/replication.md).
    fn make_room(&mut self, event: &Event) -> StoreResult<()> {
        if self.rejoining || event.id.origin == self.identity.id() {
            // Own events (a rejoin) carry this device's own UIDs; and a
            // rejoining device makes no events, so it cannot re-key.
            return Ok(());
        }
        let wanted = wanted_uids(self.conn, event)?;
        let shares_slot = wanted.iter().any(|(_, uid, _)| uid.slot() == self.slot);
        if shares_slot && event.id.origin < self.identity.id() {
            self.move_slot()?;
        }
        for (mailbox, uid, entry) in &wanted {
            let Some(holder) = state::entry_with_uid(self.conn, *mailbox, *uid)? else {
                continue;
            };
            if holder.entry_id == *entry {
                continue;
            }
            let above = wanted.iter().filter(|w| w.0 == *mailbox).map(|w| w.1.get()).max().unwrap_or(0);
            self.rekey_entry(&holder, above, event.id, "a UID a peer sharing this UID slot assigned too")?;
        }
        Ok(())
    }

    /// Moves this device to the lowest slot that neither an active peer nor
    /// any entry another device placed here uses (committed with the
    /// transaction; `Store` re-reads it before its next write).
    fn move_slot(&mut self) -> StoreResult<()> {
        let used = state::slots_in_use(self.conn)?;
        let free = (0..crate::model::DEVICE_SLOTS)
            .filter_map(DeviceSlot::new)
            .find(|s| *s != self.slot && !used.contains(s))
            .ok_or_else(|| StoreError::Corrupt("every UID slot is in use: no slot to move to".into()))?;
        state::set_device_slot(self.conn, free)?;
        self.slot = free;
        Ok(())
    }

    /// Re-keys emitted by this writer so far.
    pub fn rekeys(&self) -> u64 {
        self.rekeys
    }

    /// Shows IMAP every entry of `mailbox` up to `uid` (a UID just handed to
    /// a client, e.g. APPENDUID): the exposure watermark rises and the entries
    /// it uncovers get a new MODSEQ.
    fn expose_through(&mut self, mailbox: MailboxId, uid: Uid) -> StoreResult<()> {
        if uid.get() <= state::mailbox_exposed(self.conn, mailbox)? {
            return Ok(());
        }
        let modseq = ModSeq::next(state::last_modseq(self.conn)?, self.now_ms, self.slot);
        state::set_last_modseq(self.conn, modseq)?;
        state::raise_exposure(self.conn, mailbox, uid.get(), modseq)?;
        self.effects.mailboxes.insert(mailbox);
        Ok(())
    }

    // --- users -----------------------------------------------------------------

    /// Adds a user with the default mailboxes (INBOX, Sent, Drafts, Trash, Junk,
    /// Archive), all subscribed.
    pub fn add_user(&mut self, user: &UserName, password_hash: &str) -> StoreResult<()> {
        if state::user_password_hash(self.conn, user.as_str())?.is_some() {
            return Err(StoreError::UserExists(user.to_string()));
        }
        self.emit(EventOp::UserAdd { user: user.clone(), password_hash: password_hash.to_string() })?;
        for (name, special_use) in DEFAULT_MAILBOXES {
            self.create_mailbox(user, name, special_use)?;
            self.subscribe(user, name, true)?;
        }
        Ok(())
    }

    /// Sets a user's password hash.
    pub fn set_password(&mut self, user: &UserName, password_hash: &str) -> StoreResult<()> {
        self.require_user(user)?;
        self.emit(EventOp::UserPassword { user: user.clone(), password_hash: password_hash.to_string() })?;
        Ok(())
    }

    /// Sets a user's password together with their key record (creation,
    /// password change, recovery): one event, one register.
    pub fn set_user_keys(
        &mut self,
        user: &UserName,
        password_hash: &str,
        keys: &crate::crypto::UserKeys,
    ) -> StoreResult<()> {
        self.set_user_keyring(user, password_hash, keys, &[])
    }

    /// Like [`Writer::set_user_keys`], with the user's other identities
    /// (`also`) re-wrapped too: a password change or recovery that keeps the
    /// whole keyring under one password. Each is added to the keyring.
    pub fn set_user_keyring(
        &mut self,
        user: &UserName,
        password_hash: &str,
        keys: &crate::crypto::UserKeys,
        also: &[crate::crypto::UserKeys],
    ) -> StoreResult<()> {
        self.require_user(user)?;
        self.emit(EventOp::UserKeys {
            user: user.clone(),
            password_hash: password_hash.to_string(),
            keys: Box::new(keys.clone()),
            also: also.to_vec(),
        })?;
        Ok(())
    }

    /// Records that `blob` (already durable) holds `user`'s message with this
    /// content hash, so the next append of that message uses it instead of
    /// sealing again: how `roost import` seals on parallel threads.
    pub fn adopt_sealed_blob(&mut self, user: &UserName, content_hash: &[u8; 32], blob: BlobHash) -> StoreResult<()> {
        if !self.blobs.contains(&blob) {
            return Err(StoreError::Blob(crate::store::BlobError::Missing(blob)));
        }
        state::sealed_blob_put(self.conn, user.as_str(), content_hash, blob)
    }

    /// Lets the next append of the message `prestored` was made from use its
    /// blob (a no-op for a plaintext blob: content addressing finds it).
    pub fn adopt_prestored(&mut self, user: &UserName, prestored: &PrestoredMessage) -> StoreResult<()> {
        match prestored.sealed_content {
            Some(content) => self.adopt_sealed_blob(user, &content, prestored.blob),
            None => Ok(()),
        }
    }

    /// Removes a user and their mail.
    pub fn remove_user(&mut self, user: &UserName) -> StoreResult<()> {
        self.require_user(user)?;
        self.emit(EventOp::UserRemove { user: user.clone() })?;
        Ok(())
    }

    fn require_user(&self, user: &UserName) -> StoreResult<()> {
        match state::user_password_hash(self.conn, user.as_str())? {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchUser(user.to_string())),
        }
    }

    // --- mailboxes -------------------------------------------------------------

    /// The live mailbox `name` of `user`.
    pub fn mailbox(&self, user: &UserName, name: &str) -> StoreResult<MailboxId> {
        let name = name_of(name)?;
        state::mailbox_live_by_name(self.conn, user.as_str(), name.as_str())?
            .map(|row| row.id)
            .ok_or_else(|| StoreError::NoSuchMailbox(name.to_string()))
    }

    /// Creates mailbox `name` and any missing parents (RFC 9051 6.3.4).
    pub fn create_mailbox(
        &mut self,
        user: &UserName,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<MailboxId> {
        self.require_user(user)?;
        let name = name_of(name)?;
        if state::mailbox_live_by_name(self.conn, user.as_str(), name.as_str())?.is_some() {
            return Err(StoreError::MailboxExists(name.to_string()));
        }
        for parent in name.ancestors() {
            if state::mailbox_live_by_name(self.conn, user.as_str(), parent.as_str())?.is_none() {
                self.emit_create(user, &parent, None)?;
            }
        }
        self.emit_create(user, &name, special_use)
    }

    fn emit_create(
        &mut self,
        user: &UserName,
        name: &MailboxName,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<MailboxId> {
        // The first generation of the name this device has never seen a
        // mailbox of: devices that saw the same history pick the same id (and
        // concurrent creates meet), and a re-created name gets a new id and a
        // greater UIDVALIDITY. Devices with different histories may pick
        // different ids: two mailboxes, one name, shown apart (never merged
        // into a mailbox whose UIDs a client cached under another UIDVALIDITY).
        let mut generation = 0u32;
        while state::mailbox_known(self.conn, MailboxId::derive(user.as_str(), name.key(), generation))? {
            generation += 1;
        }
        let mailbox = MailboxId::derive(user.as_str(), name.key(), generation);
        let uid_validity = UidValidity::derive(mailbox, generation);
        self.emit(EventOp::MailboxCreate {
            user: user.clone(),
            mailbox,
            name: name.clone(),
            uid_validity,
            special_use,
        })?;
        Ok(mailbox)
    }

    /// Renames mailbox `from` and its children to `to`. Renaming INBOX moves
    /// its messages to a new mailbox and leaves INBOX empty (RFC 9051 6.3.6).
    pub fn rename_mailbox(&mut self, user: &UserName, from: &str, to: &str) -> StoreResult<()> {
        let from = name_of(from)?;
        let to = name_of(to)?;
        let source = self.mailbox(user, from.as_str())?;
        if state::mailbox_live_by_name(self.conn, user.as_str(), to.as_str())?.is_some() {
            return Err(StoreError::MailboxExists(to.to_string()));
        }
        if to.as_str().starts_with(&format!("{}/", from.as_str())) {
            return Err(StoreError::InvalidName { name: to.to_string(), reason: crate::model::NameError::EmptyLevel });
        }
        if from.is_inbox() {
            let target = self.create_mailbox(user, to.as_str(), None)?;
            let entries: Vec<EntryId> = state::entries_of(self.conn, source)?.iter().map(|e| e.entry_id).collect();
            if !entries.is_empty() {
                self.move_entries(source, &entries, target)?;
            }
            return Ok(());
        }
        for parent in to.ancestors() {
            if state::mailbox_live_by_name(self.conn, user.as_str(), parent.as_str())?.is_none() {
                self.emit_create(user, &parent, None)?;
            }
        }
        let prefix = format!("{}/", from.as_str());
        let children: Vec<MailboxRow> = state::mailboxes_of(self.conn, user.as_str())?
            .into_iter()
            .filter(|m| m.name.starts_with(&prefix))
            .collect();
        self.emit(EventOp::MailboxRename { mailbox: source, name: to.clone() })?;
        for child in children {
            let new_name = name_of(&format!("{}/{}", to.as_str(), &child.name[prefix.len()..]))?;
            self.emit(EventOp::MailboxRename { mailbox: child.id, name: new_name })?;
        }
        Ok(())
    }

    /// Deletes mailbox `name` and its messages. Children stay (RFC 9051 6.3.5).
    pub fn delete_mailbox(&mut self, user: &UserName, name: &str) -> StoreResult<()> {
        let name = name_of(name)?;
        if name.is_inbox() {
            return Err(StoreError::InboxProtected("deleted"));
        }
        let mailbox = self.mailbox(user, name.as_str())?;
        self.emit(EventOp::MailboxDelete { mailbox })?;
        Ok(())
    }

    /// Subscribes or unsubscribes a name (which need not exist).
    pub fn subscribe(&mut self, user: &UserName, name: &str, subscribed: bool) -> StoreResult<()> {
        self.require_user(user)?;
        let name = name_of(name)?;
        self.emit(EventOp::MailboxSubscribe { user: user.clone(), name, subscribed })?;
        Ok(())
    }

    // --- delivery dedup (LOCAL) -------------------------------------------------

    /// Records that the message with dedup `key` was delivered to `user`;
    /// returns `false` if it already was (then the caller stores nothing).
    /// Runs in the delivery's transaction, so two concurrent deliveries of one
    /// message cannot both see "new". Local bookkeeping: no event.
    pub fn record_delivery(&mut self, user: &UserName, key: &[u8; 32]) -> StoreResult<bool> {
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO delivery_dedup (user, key, delivered_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![user.as_str(), &key[..], self.now_ms as i64],
        )?;
        Ok(inserted == 1)
    }

    // --- messages --------------------------------------------------------------

    fn live_mailbox(&self, mailbox: MailboxId) -> StoreResult<MailboxRow> {
        match state::mailbox_get(self.conn, mailbox)? {
            Some(row) if !row.deleted => Ok(row),
            _ => Err(StoreError::NoSuchMailbox(format!("{mailbox:?}"))),
        }
    }

    /// The next `n` UIDs this device assigns in `mailbox`.
    fn assign_uids(&self, mailbox: &MailboxRow, n: usize) -> StoreResult<Vec<Uid>> {
        let (mut above, _) = state::mailbox_local(self.conn, mailbox.id)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let uid = Uid::next_for_slot(above, self.slot)
                .ok_or_else(|| StoreError::UidSpaceExhausted(mailbox.name.clone()))?;
            assert!(above < uid.get(), "uid {} not above watermark {above}", uid.get());
            above = uid.get();
            out.push(uid);
        }
        Ok(out)
    }

    /// Stores messages (blobs first, fsynced) and appends them to `mailbox` in
    /// one event; returns their UIDs.
    pub fn append(&mut self, mailbox: MailboxId, messages: &[AppendMessage<'_>]) -> StoreResult<Vec<Uid>> {
        let row = self.live_mailbox(mailbox)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let uids = self.assign_uids(&row, messages.len())?;
        let mut entries = Vec::with_capacity(messages.len());
        for (message, uid) in messages.iter().zip(&uids) {
            let blob = self.store_message(&row.user, message.raw)?.blob;
            entries.push(NewEntry {
                uid: *uid,
                blob,
                size: message.raw.len() as u64,
                internal_date: message.internal_date,
                flags: message.flags.clone(),
            });
        }
        self.emit(EventOp::Append { mailbox, entries })?;
        if let Some(last) = uids.last() {
            self.expose_through(mailbox, *last)?;
        }
        Ok(uids)
    }

    /// Delivers messages (LMTP, import) to `mailbox` of `user` in one event.
    /// Unlike [`Writer::append`], the new UIDs are not shown to IMAP at once:
    /// they wait for [`crate::store::Store::expose`] (stability-gated exposure),
    /// so that peers' concurrent entries with lower UIDs can still arrive
    /// without a re-key. The same message delivered on another device too
    /// (same Message-ID and bytes) becomes one entry.
    pub fn deliver(
        &mut self,
        user: &UserName,
        mailbox: MailboxId,
        messages: &[AppendMessage<'_>],
    ) -> StoreResult<Vec<Uid>> {
        let keyed: Vec<(&AppendMessage<'_>, &[u8])> = messages.iter().map(|m| (m, m.raw)).collect();
        self.deliver_keyed(user, mailbox, &keyed)
    }

    /// [`Writer::deliver`] where each message's key (cross-device dedup) comes
    /// from `content`, the message as the MTA handed it over, rather than from
    /// the stored bytes: LMTP prepends a `Received:` line naming this host and
    /// time, so two devices store different bytes of one message and must
    /// still meet in one entry (its stored bytes then come from the smaller
    /// delivering event, on every device).
    pub fn deliver_keyed(
        &mut self,
        user: &UserName,
        mailbox: MailboxId,
        messages: &[(&AppendMessage<'_>, &[u8])],
    ) -> StoreResult<Vec<Uid>> {
        let row = self.live_mailbox(mailbox)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let uids = self.assign_uids(&row, messages.len())?;
        let mut entries = Vec::with_capacity(messages.len());
        for ((message, content), uid) in messages.iter().zip(&uids) {
            let blob = self.store_message(&row.user, message.raw)?.blob;
            let message_id = crate::model::message_id_of(content);
            entries.push(DeliveredEntry {
                key: MessageKey::derive(user.as_str(), &message_id, BlobHash::of(content)),
                entry: NewEntry {
                    uid: *uid,
                    blob,
                    size: message.raw.len() as u64,
                    internal_date: message.internal_date,
                    flags: message.flags.clone(),
                },
            });
        }
        self.emit(EventOp::Deliver { mailbox, entries })?;
        Ok(uids)
    }

    /// Appends a message whose blob is already stored (import of a blob this
    /// device has, tests).
    pub fn append_stored(
        &mut self,
        mailbox: MailboxId,
        blob: BlobHash,
        size: u64,
        internal_date: i64,
        flags: Vec<Flag>,
    ) -> StoreResult<Uid> {
        // Under the write lock: blob GC cannot remove it before the commit.
        if !self.blobs.contains(&blob) && !crate::store::spool::is_spooled(self.conn, &blob)? {
            return Err(StoreError::Blob(crate::store::BlobError::Missing(blob)));
        }
        let row = self.live_mailbox(mailbox)?;
        let uid = self.assign_uids(&row, 1)?[0];
        self.emit(EventOp::Append { mailbox, entries: vec![NewEntry { uid, blob, size, internal_date, flags }] })?;
        self.expose_through(mailbox, uid)?;
        Ok(uid)
    }

    fn entries_in(&self, mailbox: MailboxId, entries: &[EntryId]) -> StoreResult<Vec<EntryRow>> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            match state::entry_get(self.conn, *entry)? {
                Some(row) if row.mailbox_id == mailbox => out.push(row),
                // Expunged meanwhile by another session: nothing to do for it.
                _ => {}
            }
        }
        Ok(out)
    }

    /// Changes flags of entries; returns the entries whose flags changed.
    pub fn store_flags(
        &mut self,
        mailbox: MailboxId,
        entries: &[EntryId],
        change: &FlagChange,
    ) -> StoreResult<Vec<EntryId>> {
        let rows = self.entries_in(mailbox, entries)?;
        let mut items = Vec::new();
        let mut changed = Vec::new();
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for row in &rows {
            let current = state::flags_of(self.conn, row.item_id)?;
            let (row_add, row_remove): (Vec<&Flag>, Vec<&Flag>) = match change.mode {
                StoreMode::Add => (change.flags.iter().filter(|f| !current.contains(f)).collect(), Vec::new()),
                StoreMode::Remove => (Vec::new(), change.flags.iter().filter(|f| current.contains(f)).collect()),
                StoreMode::Replace => (
                    change.flags.iter().filter(|f| !current.contains(f)).collect(),
                    current.iter().filter(|f| !change.flags.contains(f)).collect(),
                ),
            };
            if row_add.is_empty() && row_remove.is_empty() {
                continue; // No change: no event, no new MODSEQ (RFC 7162 3.1.3).
            }
            for f in row_add {
                if !add.contains(f) {
                    add.push(f.clone());
                }
            }
            for f in row_remove {
                if !remove.contains(f) {
                    remove.push(f.clone());
                }
            }
            items.push(row.item_id);
            changed.push(row.entry_id);
        }
        if items.is_empty() {
            return Ok(changed);
        }
        if change.mode == StoreMode::Replace {
            // One event serves all entries: add the whole set, remove the rest.
            add = change.flags.clone();
        }
        self.emit(EventOp::Flags { mailbox, items, add, remove })?;
        Ok(changed)
    }

    /// Expunges entries.
    pub fn expunge(&mut self, mailbox: MailboxId, entries: &[EntryId]) -> StoreResult<()> {
        let rows = self.entries_in(mailbox, entries)?;
        if rows.is_empty() {
            return Ok(());
        }
        self.emit(EventOp::Expunge { mailbox, entries: rows.iter().map(|r| r.entry_id).collect() })?;
        Ok(())
    }

    /// Copies entries to `target`; returns `(source uid, new uid)` pairs.
    pub fn copy(&mut self, source: MailboxId, entries: &[EntryId], target: MailboxId) -> StoreResult<Vec<(Uid, Uid)>> {
        let target_row = self.live_mailbox(target)?;
        let rows = self.entries_in(source, entries)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let uids = self.assign_uids(&target_row, rows.len())?;
        let mut copied = Vec::with_capacity(rows.len());
        for (row, uid) in rows.iter().zip(&uids) {
            let size = self.message_size(row.blob)?;
            copied.push(CopiedEntry {
                from: row.entry_id,
                entry: NewEntry {
                    uid: *uid,
                    blob: row.blob,
                    size,
                    internal_date: row.internal_date,
                    flags: state::flags_of(self.conn, row.item_id)?,
                },
            });
        }
        self.emit(EventOp::Copy { source, mailbox: target, entries: copied })?;
        if let Some(last) = uids.last() {
            self.expose_through(target, *last)?;
        }
        Ok(rows.iter().map(|r| r.uid).zip(uids).collect())
    }

    /// Moves entries to `target`; returns `(source uid, new uid)` pairs.
    pub fn move_entries(
        &mut self,
        source: MailboxId,
        entries: &[EntryId],
        target: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>> {
        let target_row = self.live_mailbox(target)?;
        let rows = self.entries_in(source, entries)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let uids = self.assign_uids(&target_row, rows.len())?;
        let mut moved = Vec::with_capacity(rows.len());
        for (row, uid) in rows.iter().zip(&uids) {
            moved.push(MovedEntry {
                from: row.entry_id,
                item: row.item_id,
                uid: *uid,
                blob: row.blob,
                size: self.message_size(row.blob)?,
                internal_date: row.internal_date,
            });
        }
        self.emit(EventOp::Move { source, mailbox: target, entries: moved })?;
        if let Some(last) = uids.last() {
            self.expose_through(target, *last)?;
        }
        Ok(rows.iter().map(|r| r.uid).zip(uids).collect())
    }

    fn message_size(&self, blob: BlobHash) -> StoreResult<u64> {
        let size: i64 =
            self.conn
                .query_row("SELECT size FROM messages WHERE blob = ?1", [blob.as_bytes().as_slice()], |r| r.get(0))?;
        Ok(size as u64)
    }
}

/// The UIDs a remote event will give entries, as (mailbox, UID, entry), leaving
/// out placements and re-keys that apply will skip (an entry removed for
/// good, a re-key of an entry gone or already higher).
fn wanted_uids(conn: &Connection, event: &Event) -> StoreResult<Vec<(MailboxId, Uid, EntryId)>> {
    let mut wanted = Vec::new();
    let derived = |index: usize| EntryId::derive(event.id, index as u32);
    match &event.op {
        EventOp::Append { mailbox, entries } => {
            wanted.extend(entries.iter().enumerate().map(|(i, e)| (*mailbox, e.uid, derived(i))));
        }
        EventOp::Deliver { mailbox, entries } => {
            wanted.extend(entries.iter().map(|e| (*mailbox, e.entry.uid, e.key.entry(*mailbox))));
        }
        EventOp::Copy { mailbox, entries, .. } => {
            wanted.extend(entries.iter().enumerate().map(|(i, e)| (*mailbox, e.entry.uid, derived(i))));
        }
        EventOp::Move { mailbox, entries, .. } => {
            wanted.extend(entries.iter().enumerate().map(|(i, e)| (*mailbox, e.uid, derived(i))));
        }
        EventOp::Rekey { mailbox, entry, uid } => match state::entry_get(conn, *entry)? {
            Some(row) if row.mailbox_id == *mailbox && row.uid < *uid => wanted.push((*mailbox, *uid, *entry)),
            _ => {}
        },
        _ => {}
    }
    let mut kept = Vec::with_capacity(wanted.len());
    for w in wanted {
        if !state::entry_removed(conn, w.2)? {
            kept.push(w);
        }
    }
    Ok(kept)
}
