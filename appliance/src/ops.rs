//! Administrative operations shared by the CLI (`cli/*.rs`), the admin HTTP
//! API (`admin/`) and, through the API, the web UI and the desktop app. Each
//! function validates its input and calls `roost-core`; the front ends only
//! parse arguments and print or serialise results, so no rule lives in one
//! front end only.
//!
//! Errors are `OpError`, whose variant says whose fault it is (bad input, a
//! missing or existing thing, a remote device that refused or cannot be
//! reached, or an internal failure); the API maps them to HTTP statuses.

use std::net::SocketAddr;
use std::path::Path;

use rand::RngCore;

use roost_core::auth;
use roost_core::crypto::{self, RecoveryKey, UserKeys};
use roost_core::log::EventOp;
use roost_core::log::VersionVector;
use roost_core::model::{DeviceId, MailboxId, UserName};
use roost_core::store::{Store, StoreError};

use crate::sync::ticket::{PairTicket, SECRET_BYTES};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The input is malformed or breaks a policy (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// What the input names does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// What the input would create exists already (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// A well-formed request another device refused or that cannot be carried
    /// out now: an expired or used ticket, an unreachable device (HTTP 422).
    #[error("{0}")]
    Refused(String),
    /// Anything else: the store, the file system (HTTP 500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for OpError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UserExists(user) => OpError::Conflict(format!("user {user} already exists")),
            StoreError::NoSuchUser(user) => OpError::NotFound(format!("no user {user}")),
            StoreError::Rejoining => OpError::Refused(StoreError::Rejoining.to_string()),
            other => OpError::Internal(other.into()),
        }
    }
}

/// Result of an operation.
pub type OpResult<T> = Result<T, OpError>;

// --- users -------------------------------------------------------------------

/// Parses a login name.
pub fn parse_user_name(name: &str) -> OpResult<UserName> {
    UserName::new(name).map_err(|e| OpError::Invalid(format!("invalid user name {name:?}: {e}")))
}

/// Checks a new password against the policy and hashes it (argon2id).
pub fn hash_new_password(user: &UserName, password: &str) -> OpResult<String> {
    check_new_password(user, password)?;
    Ok(auth::hash_password(password, &mut rand::rngs::OsRng))
}

fn check_new_password(user: &UserName, password: &str) -> OpResult<()> {
    auth::check_password_strength(user.as_str(), password)
        .map_err(|e| OpError::Invalid(format!("password refused: {e}")))
}

/// A new user's password hash and age identity (wrapped under the password
/// and under a recovery key, returned to be shown once): what `user add`
/// writes, so mail delivered to the user is sealed from the start.
pub fn new_user_secrets(user: &UserName, password: &str) -> OpResult<(String, UserKeys, RecoveryKey)> {
    let hash = hash_new_password(user, password)?;
    let (keys, recovery) = UserKeys::generate(password, &mut rand::rngs::OsRng);
    Ok((hash, keys, recovery))
}

/// What a password change (or recovery) writes: the password hash, the
/// current identity record and the keyring's other identities, all wrapped
/// under the new password (one `user_keys` event).
pub struct NewSecrets {
    /// Argon2id PHC string of the new password.
    pub hash: String,
    /// The current identity (new mail is sealed to it).
    pub keys: UserKeys,
    /// The keyring's other identities the change re-wrapped.
    pub also: Vec<UserKeys>,
    /// A recovery key to show once (a user from before encryption got an identity).
    pub recovery: Option<RecoveryKey>,
    /// Identities of the keyring the old password did not open: they keep
    /// their old wraps and need their own password or recovery key.
    pub locked: Vec<String>,
}

/// Unwraps every identity of `user`'s keyring that `password` opens; the
/// current one must open, else the password is wrong.
pub fn unlock_keyring(
    user: &UserName,
    keys: &UserKeys,
    keyring: &[UserKeys],
    password: &str,
) -> OpResult<crypto::KeyringUnlock> {
    crypto::unlock_keyring(user.as_str(), keys, keyring, password).map_err(|e| match e {
        crypto::CryptoError::WrongSecret => OpError::Refused(format!("the current password of {user} is wrong")),
        other => OpError::Internal(anyhow::anyhow!("unwrapping the identity of {user}: {other}")),
    })
}

/// The records after wrapping every identity `key` holds under `new_password`.
pub fn rewrapped_secrets(
    user: &UserName,
    keys: &UserKeys,
    keyring: &[UserKeys],
    unlocked: crypto::KeyringUnlock,
    new_password: &str,
) -> OpResult<NewSecrets> {
    let hash = hash_new_password(user, new_password)?;
    let (keys, also) = crypto::rewrap_keyring(keys, keyring, &unlocked.key, new_password, &mut rand::rngs::OsRng)
        .map_err(|e| OpError::Internal(anyhow::anyhow!("re-wrapping the identities of {user}: {e}")))?;
    Ok(NewSecrets { hash, keys, also, recovery: None, locked: unlocked.locked })
}

/// The hash and identity records after a password change. A user with an
/// identity must give the current password (it unwraps the identities of the
/// keyring it opens, which are re-wrapped under the new one); a user from
/// before encryption gets an identity now, and its recovery key is returned
/// to be shown once.
pub fn changed_password_secrets(
    user: &UserName,
    keys: Option<UserKeys>,
    keyring: &[UserKeys],
    current: Option<&str>,
    new_password: &str,
) -> OpResult<NewSecrets> {
    // A refused new password is said first, before the current one is checked.
    check_new_password(user, new_password)?;
    let Some(keys) = keys else {
        let hash = hash_new_password(user, new_password)?;
        let (keys, recovery) = UserKeys::generate(new_password, &mut rand::rngs::OsRng);
        return Ok(NewSecrets { hash, keys, also: vec![], recovery: Some(recovery), locked: vec![] });
    };
    let current = current.ok_or_else(|| {
        OpError::Invalid(format!(
            "the mail of {user} is encrypted with its password: give the current password too (`current`), \
             or reset it with the recovery key (`roost user recover`)"
        ))
    })?;
    let unlocked = unlock_keyring(user, &keys, keyring, current)?;
    rewrapped_secrets(user, &keys, keyring, unlocked, new_password)
}

// --- pairing -----------------------------------------------------------------

/// How long a ticket is valid by default.
pub const TICKET_MINUTES_DEFAULT: u64 = 30;
/// Longest ticket validity accepted (a week): a ticket is a bearer secret.
pub const TICKET_MINUTES_MAX: u64 = 7 * 24 * 60;

/// Records a one-time pairing secret and returns the ticket naming it. `addrs`
/// are where this device's sync endpoint is reached.
pub fn create_invite(store: &Store, addrs: Vec<SocketAddr>, expires_minutes: u64, now_ms: u64) -> OpResult<PairTicket> {
    if expires_minutes == 0 || expires_minutes > TICKET_MINUTES_MAX {
        return Err(OpError::Invalid(format!("expiry must be 1 to {TICKET_MINUTES_MAX} minutes")));
    }
    if addrs.is_empty() {
        return Err(OpError::Refused("this device's sync endpoint has no address: is `roost serve` running?".into()));
    }
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let expires_ms = now_ms + expires_minutes * 60_000;
    store.add_invite(&secret, expires_ms)?;
    Ok(PairTicket { id: store.identity().id(), addrs, secret: hex::encode(secret), expires_ms })
}

/// Decodes a pasted ticket and checks what can be checked locally: not made by
/// this device, not for a device already paired, not expired.
pub fn check_ticket(store: &Store, text: &str, now_ms: u64) -> OpResult<PairTicket> {
    let ticket = PairTicket::decode(text).map_err(|e| OpError::Invalid(format!("{e:#}")))?;
    if ticket.id == store.identity().id() {
        return Err(OpError::Invalid("this ticket was made by this device: paste it on the other device".into()));
    }
    if store.is_active_peer(ticket.id)? {
        return Err(OpError::Conflict(format!("this device is already paired with {}", ticket.id.short())));
    }
    if ticket.expires_ms < now_ms {
        return Err(OpError::Refused("the ticket has expired: make a new one on the other device".into()));
    }
    Ok(ticket)
}

/// Joins the device that made `ticket_text`: checks it, dials the inviter and
/// records the pairing. Returns the inviter's id and name. `my_addrs` are
/// where this device's daemon listens (sent to the inviter).
pub async fn join(
    store: &mut Store,
    data_dir: &Path,
    ticket_text: &str,
    my_addrs: Vec<SocketAddr>,
    now_ms: u64,
) -> OpResult<(DeviceId, String)> {
    let ticket = check_ticket(store, ticket_text, now_ms)?;
    // After the local checks, what fails is the other device refusing the
    // secret (expired, used, unknown) or not answering.
    let name = crate::sync::pairing::join(store, data_dir, &ticket, my_addrs)
        .await
        .map_err(|e| OpError::Refused(format!("{e:#}")))?;
    Ok((ticket.id, name))
}

/// Stops trusting the paired device whose id starts with `prefix`.
pub fn remove_peer(store: &Store, prefix: &str, now_ms: u64) -> OpResult<DeviceId> {
    let wanted = prefix.trim().to_ascii_lowercase();
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(OpError::Invalid(format!("{prefix:?} is not a device id (hex)")));
    }
    let matches: Vec<DeviceId> = store
        .peers()?
        .into_iter()
        .filter(|p| p.removed_ms.is_none() && p.device_id.to_string().starts_with(&wanted))
        .map(|p| p.device_id)
        .collect();
    match matches.as_slice() {
        [one] => {
            store.remove_peer(*one, now_ms)?;
            Ok(*one)
        }
        [] => Err(OpError::NotFound(format!("no paired device matches {prefix}"))),
        _ => Err(OpError::Invalid(format!("{prefix} matches {} devices: give more of the id", matches.len()))),
    }
}

// --- status --------------------------------------------------------------------

/// A session refreshes `last_seen_ms` every second while frames flow, so a peer
/// seen within this window counts as connected when the caller cannot ask the
/// sync service (the CLI, another process).
pub const CONNECTED_WINDOW_MS: u64 = 5_000;

/// A paired device as the status screens show it.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// Its id.
    pub device_id: DeviceId,
    /// Its host name.
    pub name: String,
    /// Where it is dialled.
    pub addrs: Vec<String>,
    /// Its UID slot.
    pub slot: u8,
    /// When it was paired.
    pub paired_ms: u64,
    /// Whether a sync session is up.
    pub connected: bool,
    /// Last frame from it.
    pub last_seen_ms: Option<u64>,
    /// Events this device has that the peer has not acknowledged.
    pub events_they_lack: u64,
    /// Events the peer acknowledged having that this device lacks.
    pub events_we_lack: u64,
    /// Last measured replication lag.
    pub lag_ms: Option<u64>,
    /// Bytes sent to it.
    pub bytes_sent: u64,
    /// Bytes received from it.
    pub bytes_received: u64,
    /// Why this device refused the peer's log snapshot, while it still
    /// refuses it (it then waits for a newer snapshot from the peer).
    pub snapshot_refused: Option<String>,
}

/// The active (not removed) peers. `live` is the sync service's list of
/// connected peers when the caller runs inside the daemon; without it a peer
/// seen in the last `CONNECTED_WINDOW_MS` counts as connected.
pub fn peer_views(store: &Store, live: Option<&[DeviceId]>, now_ms: u64) -> OpResult<Vec<PeerView>> {
    let my_vv = store.version_vector()?;
    let peers = store.peers()?.into_iter().filter(|p| p.removed_ms.is_none());
    peers
        .map(|peer| -> OpResult<PeerView> {
            let snapshot_refused = store.snapshot_refusal(peer.device_id)?.map(|r| r.reason);
            let connected = match live {
                Some(live) => live.contains(&peer.device_id),
                None => peer.stats.last_seen_ms.is_some_and(|ms| now_ms.saturating_sub(ms) < CONNECTED_WINDOW_MS),
            };
            Ok(PeerView {
                device_id: peer.device_id,
                name: peer.name,
                addrs: peer.addrs,
                slot: peer.slot.get(),
                paired_ms: peer.paired_ms,
                connected,
                last_seen_ms: peer.stats.last_seen_ms,
                events_they_lack: lacking(&my_vv, &peer.stats.acked),
                events_we_lack: lacking(&peer.stats.acked, &my_vv),
                lag_ms: peer.stats.lag_ms,
                bytes_sent: peer.stats.bytes_sent,
                bytes_received: peer.stats.bytes_received,
                snapshot_refused,
            })
        })
        .collect()
}

/// Events in `have` beyond what `other` covers.
fn lacking(have: &VersionVector, other: &VersionVector) -> u64 {
    have.iter().map(|(origin, seq)| seq.saturating_sub(other.get(origin))).sum()
}

// --- event log -------------------------------------------------------------------

/// Most events one browse reads from the log. A personal appliance's log is
/// far smaller for years; past this, the oldest are not browsed.
pub const EVENTS_SCAN_MAX: usize = 200_000;
/// Most events one browse returns.
pub const EVENTS_RETURN_MAX: usize = 1_000;

/// Which events to list; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Origin device id prefix (hex).
    pub device: Option<String>,
    /// User the event concerns.
    pub user: Option<String>,
    /// Mailbox name the event concerns (its name when the event was made).
    pub mailbox: Option<String>,
    /// Events at or after (HLC milliseconds).
    pub since_ms: Option<u64>,
    /// Events before.
    pub until_ms: Option<u64>,
    /// At most this many (newest first); capped at `EVENTS_RETURN_MAX`.
    pub limit: Option<usize>,
}

/// One event of the log, described for people.
#[derive(Debug, Clone)]
pub struct EventView {
    /// Origin device.
    pub origin: DeviceId,
    /// Sequence number at the origin.
    pub seq: u64,
    /// HLC time, ms since the epoch.
    pub time_ms: u64,
    /// Operation name, e.g. `append`.
    pub kind: &'static str,
    /// The user it concerns, when known.
    pub user: Option<String>,
    /// The mailbox it concerns, when known.
    pub mailbox: Option<String>,
    /// A one-line description (never a password hash).
    pub summary: String,
}

/// Lists events matching `filter`, newest first.
pub fn browse_events(store: &Store, filter: &EventFilter) -> OpResult<Vec<EventView>> {
    if let Some(device) = &filter.device {
        if device.is_empty() || !device.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(OpError::Invalid(format!("device filter {device:?} is not a device id (hex)")));
        }
    }
    let limit = filter.limit.unwrap_or(200).clamp(1, EVENTS_RETURN_MAX);
    // The events still in the log: those compaction folded are gone.
    let events = store.events_missing(&store.snapshot_vector()?, EVENTS_SCAN_MAX)?;
    // Mailbox ids to (user, name), learnt from the log as it is read in causal order.
    let mut mailboxes: std::collections::HashMap<MailboxId, (String, String)> = Default::default();
    let mut views = Vec::new();
    for event in events {
        let view = describe(&event.op, &mut mailboxes);
        let view = EventView {
            origin: event.id.origin,
            seq: event.id.seq,
            time_ms: event.hlc.ms(),
            kind: view.0,
            user: view.1,
            mailbox: view.2,
            summary: view.3,
        };
        if matches(&view, filter) {
            views.push(view);
        }
    }
    views.reverse();
    views.truncate(limit);
    Ok(views)
}

fn matches(view: &EventView, filter: &EventFilter) -> bool {
    let device_ok = filter.device.as_ref().is_none_or(|d| view.origin.to_string().starts_with(&d.to_ascii_lowercase()));
    let user_ok = filter.user.as_ref().is_none_or(|u| view.user.as_deref() == Some(u.as_str()));
    let mailbox_ok = filter.mailbox.as_ref().is_none_or(|m| view.mailbox.as_deref() == Some(m.as_str()));
    let since_ok = filter.since_ms.is_none_or(|t| t <= view.time_ms);
    let until_ok = filter.until_ms.is_none_or(|t| view.time_ms < t);
    device_ok && user_ok && mailbox_ok && since_ok && until_ok
}

type Described = (&'static str, Option<String>, Option<String>, String);

fn describe(op: &EventOp, mailboxes: &mut std::collections::HashMap<MailboxId, (String, String)>) -> Described {
    let named = |mailboxes: &std::collections::HashMap<MailboxId, (String, String)>, id: &MailboxId| {
        mailboxes.get(id).cloned().map_or((None, None), |(u, n)| (Some(u), Some(n)))
    };
    match op {
        EventOp::UserAdd { user, .. } => ("user-add", Some(user.to_string()), None, format!("added user {user}")),
        EventOp::UserPassword { user, .. } => {
            ("user-password", Some(user.to_string()), None, format!("changed the password of {user}"))
        }
        EventOp::UserKeys { user, .. } => {
            ("user-keys", Some(user.to_string()), None, format!("set the password and key of {user}"))
        }
        EventOp::UserRemove { user } => ("user-remove", Some(user.to_string()), None, format!("removed user {user}")),
        EventOp::MailboxCreate { user, mailbox, name, .. } => {
            mailboxes.insert(*mailbox, (user.to_string(), name.to_string()));
            ("mailbox-create", Some(user.to_string()), Some(name.to_string()), format!("created mailbox {name}"))
        }
        EventOp::MailboxRename { mailbox, name } => {
            let (user, old) = named(mailboxes, mailbox);
            if let Some(user) = &user {
                mailboxes.insert(*mailbox, (user.clone(), name.to_string()));
            }
            let summary = format!("renamed {} to {name}", old.as_deref().unwrap_or("a mailbox"));
            ("mailbox-rename", user, old, summary)
        }
        EventOp::MailboxDelete { mailbox } => {
            let (user, name) = named(mailboxes, mailbox);
            let summary = format!("deleted mailbox {}", name.as_deref().unwrap_or("?"));
            ("mailbox-delete", user, name, summary)
        }
        EventOp::MailboxSubscribe { user, name, subscribed } => {
            let verb = if *subscribed { "subscribed to" } else { "unsubscribed from" };
            ("subscribe", Some(user.to_string()), Some(name.to_string()), format!("{verb} {name}"))
        }
        EventOp::Append { mailbox, entries } => {
            let (user, name) = named(mailboxes, mailbox);
            ("append", user, name, format!("appended {} message(s)", entries.len()))
        }
        EventOp::Deliver { mailbox, entries } => {
            let (user, name) = named(mailboxes, mailbox);
            ("deliver", user, name, format!("delivered {} message(s)", entries.len()))
        }
        EventOp::Flags { mailbox, items, add, remove } => {
            let (user, name) = named(mailboxes, mailbox);
            let list = |flags: &[roost_core::model::Flag]| flags.iter().map(|f| f.to_string()).collect::<Vec<_>>();
            let summary = format!("flags on {} message(s): +{:?} -{:?}", items.len(), list(add), list(remove));
            ("flags", user, name, summary)
        }
        EventOp::Expunge { mailbox, entries } => {
            let (user, name) = named(mailboxes, mailbox);
            ("expunge", user, name, format!("expunged {} message(s)", entries.len()))
        }
        EventOp::Copy { source, mailbox, entries } => {
            let (user, name) = named(mailboxes, mailbox);
            let from = named(mailboxes, source).1.unwrap_or_else(|| "?".into());
            ("copy", user, name, format!("copied {} message(s) from {from}", entries.len()))
        }
        EventOp::Move { source, mailbox, entries } => {
            let (user, name) = named(mailboxes, mailbox);
            let from = named(mailboxes, source).1.unwrap_or_else(|| "?".into());
            ("move", user, name, format!("moved {} message(s) from {from}", entries.len()))
        }
        EventOp::Rekey { mailbox, uid, .. } => {
            let (user, name) = named(mailboxes, mailbox);
            ("rekey", user, name, format!("re-keyed a message to UID {}", uid.get()))
        }
    }
}

// --- conflicts -------------------------------------------------------------------

/// Most conflicts one listing returns (newest first).
pub const CONFLICTS_RETURN_MAX: usize = 500;

/// One side of a conflict: a device and what it did.
#[derive(Debug, Clone)]
pub struct ConflictSide {
    /// The device.
    pub device: DeviceId,
    /// Its name: a peer's host name, "this device", or none if unknown.
    pub device_name: Option<String>,
    /// When it did it (HLC ms).
    pub time_ms: u64,
    /// Its event(s) in the conflict.
    pub events: Vec<EventView>,
}

/// A conflict the merge resolved, described for people.
#[derive(Debug, Clone)]
pub struct ConflictView {
    /// Increasing record number.
    pub id: i64,
    /// `uid_rekey`, `name_clash`, `delete_vs_arrival`, `concurrent_move` or `duplicate_merged`.
    pub kind: &'static str,
    /// When this device resolved it.
    pub time_ms: u64,
    /// The mailbox's current name, if it is still live.
    pub mailbox: Option<String>,
    /// The resolving event's side first, then the other side when known.
    pub sides: Vec<ConflictSide>,
    /// What the merge did.
    pub resolution: String,
}

/// The recorded conflicts, newest first, at most `limit` (capped at
/// `CONFLICTS_RETURN_MAX`), each with both sides' events from the log.
pub fn conflict_views(store: &Store, limit: usize) -> OpResult<Vec<ConflictView>> {
    let limit = limit.clamp(1, CONFLICTS_RETURN_MAX);
    let me = store.identity().id();
    let names: std::collections::HashMap<DeviceId, String> =
        store.peers()?.into_iter().map(|p| (p.device_id, p.name)).collect();
    let mut views = Vec::new();
    for record in store.conflicts(limit)? {
        let mailbox = store.mailbox_by_id(record.mailbox)?.map(|m| m.name);
        let mut sides = Vec::new();
        for id in std::iter::once(record.event).chain(record.other) {
            let Some(event) = store.event(id)? else {
                continue; // Not here (cannot happen for an applied event; shown without it).
            };
            let mut known = std::collections::HashMap::new();
            let (kind, user, event_mailbox, summary) = describe(&event.op, &mut known);
            let view = EventView {
                origin: id.origin,
                seq: id.seq,
                time_ms: event.hlc.ms(),
                kind,
                user,
                mailbox: event_mailbox.or_else(|| mailbox.clone()),
                summary,
            };
            let device_name =
                if id.origin == me { Some("this device".to_string()) } else { names.get(&id.origin).cloned() };
            sides.push(ConflictSide { device: id.origin, device_name, time_ms: view.time_ms, events: vec![view] });
        }
        views.push(ConflictView {
            id: record.id,
            kind: record.kind.as_str(),
            time_ms: record.recorded_ms,
            mailbox,
            sides,
            resolution: record.resolution,
        });
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_core::model::DeviceSlot;
    use roost_core::store::AppendMessage;

    // Two stores exchange events: one message delivered on both and a
    // concurrent rename onto a created name give two conflicts, each listed
    // with the events of both devices.
    #[test]
    fn conflicts_list_both_sides() {
        let now = 1_700_000_000_000;
        let mut a = Store::in_memory([1; 32], DeviceSlot::new(0).unwrap(), now).unwrap();
        let mut b = Store::in_memory([2; 32], DeviceSlot::new(1).unwrap(), now).unwrap();
        let alice = UserName::new("alice").unwrap();
        a.write(now + 1, |w| w.add_user(&alice, "$argon2id$test")).unwrap();
        let exchange = |from: &Store, to: &mut Store, at: u64| {
            let events = from.events_missing(&to.version_vector().unwrap(), usize::MAX).unwrap();
            for event in &events {
                for blob in event.op.blobs() {
                    to.blobs().put(&from.message(&blob).unwrap()).unwrap();
                }
            }
            to.ingest(at, &events).unwrap();
        };
        exchange(&a, &mut b, now + 2);
        let raw = b"Message-ID: <twice@test>\r\nSubject: twice\r\n\r\nbody\r\n";
        for (store, at) in [(&mut a, now + 3), (&mut b, now + 4)] {
            let inbox = store.mailbox_by_name(&alice, "INBOX").unwrap().unwrap().id;
            let message = AppendMessage { raw, flags: vec![], internal_date: 1_600_000_000 };
            store.write(at, |w| w.deliver(&alice, inbox, &[message])).unwrap();
        }
        a.write(now + 5, |w| w.create_mailbox(&alice, "Projects", None)).unwrap();
        b.write(now + 6, |w| w.rename_mailbox(&alice, "Archive", "Projects")).unwrap();
        exchange(&b, &mut a, now + 7);

        let views = conflict_views(&a, 100).unwrap();
        let kinds: Vec<&str> = views.iter().map(|v| v.kind).collect();
        assert_eq!(kinds, vec!["name_clash", "duplicate_merged"], "{views:?}");
        let b_id = b.identity().id();
        for view in &views {
            assert_eq!(view.sides.len(), 2, "{view:?}");
            let devices: Vec<DeviceId> = view.sides.iter().map(|s| s.device).collect();
            assert!(devices.contains(&a.identity().id()) && devices.contains(&b_id), "{view:?}");
            assert!(view.sides.iter().any(|s| s.device_name.as_deref() == Some("this device")));
            assert!(!view.resolution.is_empty());
        }
        let clash = &views[0];
        let summaries: Vec<&str> = clash.sides.iter().map(|s| s.events[0].summary.as_str()).collect();
        assert!(summaries.iter().any(|s| s.contains("renamed") && s.contains("Projects")), "{summaries:?}");
        assert!(summaries.iter().any(|s| s.contains("created mailbox Projects")), "{summaries:?}");
        let duplicate = &views[1];
        assert_eq!(duplicate.mailbox.as_deref(), Some("INBOX"));
        assert!(duplicate.sides.iter().all(|s| s.events[0].kind == "deliver"), "{duplicate:?}");
    }
}
