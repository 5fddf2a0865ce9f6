//! The admin API's JSON types. Only these derive serde for the API; core and
//! `ops` types are converted by hand (`From` impls below), so a change in core
//! never silently changes what the API promises. Field names are snake_case,
//! times are ms since the Unix epoch, sizes are bytes.

use serde::{Deserialize, Serialize};

use crate::ops::{ConflictView, EventView, PeerView};

/// Every error body: `{"error": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDto {
    /// What went wrong, for people.
    pub error: String,
}

/// `GET /api/status`
#[derive(Debug, Serialize)]
pub struct StatusDto {
    /// This device's id (hex).
    pub device_id: String,
    /// This device's host name.
    pub device_name: String,
    /// Its UID slot.
    pub slot: u8,
    /// The data directory.
    pub data_dir: String,
    /// True while no user exists: the UI shows first-run setup.
    pub needs_setup: bool,
    /// Counts and sizes.
    pub storage: StorageDto,
    /// Paired devices.
    pub peers: Vec<PeerDto>,
}

/// `GET /api/storage`
#[derive(Debug, Serialize)]
pub struct StorageDto {
    /// Users.
    pub users: u64,
    /// Live mailboxes.
    pub mailboxes: u64,
    /// Entries in mailboxes.
    pub entries: u64,
    /// Stored messages.
    pub messages: u64,
    /// Events in the log.
    pub events: u64,
    /// Database size.
    pub db_bytes: u64,
    /// Message blob size.
    pub blob_bytes: u64,
}

impl From<roost_core::store::StoreStats> for StorageDto {
    fn from(s: roost_core::store::StoreStats) -> Self {
        StorageDto {
            users: s.users,
            mailboxes: s.mailboxes,
            entries: s.entries,
            messages: s.messages,
            events: s.events,
            db_bytes: s.db_bytes,
            blob_bytes: s.blob_bytes,
        }
    }
}

/// A paired device.
#[derive(Debug, Serialize)]
pub struct PeerDto {
    /// Its id (hex).
    pub device_id: String,
    /// Its host name.
    pub name: String,
    /// Where it is dialled.
    pub addrs: Vec<String>,
    /// Its UID slot.
    pub slot: u8,
    /// When it was paired.
    pub paired_ms: u64,
    /// Whether a sync session is up now.
    pub connected: bool,
    /// Last frame from it.
    pub last_seen_ms: Option<u64>,
    /// Events it has not acknowledged yet.
    pub events_they_lack: u64,
    /// Events it has that this device lacks.
    pub events_we_lack: u64,
    /// Last measured replication lag.
    pub lag_ms: Option<u64>,
    /// Bytes sent to it.
    pub bytes_sent: u64,
    /// Bytes received from it.
    pub bytes_received: u64,
    /// Why this device refused the peer's log snapshot, while it still does.
    pub snapshot_refused: Option<String>,
}

impl From<PeerView> for PeerDto {
    fn from(p: PeerView) -> Self {
        PeerDto {
            device_id: p.device_id.to_string(),
            name: p.name,
            addrs: p.addrs,
            slot: p.slot,
            paired_ms: p.paired_ms,
            connected: p.connected,
            last_seen_ms: p.last_seen_ms,
            events_they_lack: p.events_they_lack,
            events_we_lack: p.events_we_lack,
            lag_ms: p.lag_ms,
            bytes_sent: p.bytes_sent,
            bytes_received: p.bytes_received,
            snapshot_refused: p.snapshot_refused,
        }
    }
}

/// A user.
#[derive(Debug, Serialize)]
pub struct UserDto {
    /// Login name.
    pub name: String,
    /// Mailboxes.
    pub mailboxes: u64,
    /// Messages in them.
    pub messages: u64,
    /// The recovery key of a newly created identity: in the one response that
    /// created it (user added, or a pre-encryption user's first password
    /// change), never stored in clear and never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_key: Option<String>,
}

impl From<roost_core::store::UserInfo> for UserDto {
    fn from(u: roost_core::store::UserInfo) -> Self {
        UserDto { name: u.name, mailboxes: u.mailboxes, messages: u.messages, recovery_key: None }
    }
}

/// `POST /api/users`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserDto {
    /// Login name.
    pub name: String,
    /// Password (checked against the policy, stored as an argon2 hash).
    pub password: String,
}

/// `PUT /api/users/{name}/password`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordDto {
    /// The new password.
    pub password: String,
    /// The current password: needed when the user's mail is encrypted, since
    /// it unwraps the identity that is re-wrapped under the new one.
    #[serde(default)]
    pub current: Option<String>,
}

/// A mailbox of a user with its counts.
#[derive(Debug, Serialize)]
pub struct MailboxDto {
    /// Name.
    pub name: String,
    /// `\Sent`, `\Trash`, ... when it has a special use.
    pub special_use: Option<String>,
    /// Messages in it.
    pub messages: u64,
    /// Unseen messages in it.
    pub unseen: u64,
    /// Its UIDVALIDITY.
    pub uid_validity: u32,
    /// Its next UID.
    pub uid_next: u32,
}

/// `POST /api/pair/invite`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequestDto {
    /// Minutes until the ticket expires (default 30).
    pub expires_minutes: Option<u64>,
}

/// A new pairing ticket.
#[derive(Debug, Serialize)]
pub struct InviteDto {
    /// The ticket text to paste on the other device.
    pub ticket: String,
    /// When it expires.
    pub expires_ms: u64,
    /// The ticket as a QR code (SVG).
    pub qr_svg: String,
}

/// `POST /api/pair/join`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequestDto {
    /// The ticket the other device made.
    pub ticket: String,
}

/// A pairing made or removed.
#[derive(Debug, Serialize)]
pub struct PairedDto {
    /// The other device's id.
    pub device_id: String,
    /// Its name, when known.
    pub name: Option<String>,
}

/// One lag sample of a peer.
#[derive(Debug, Serialize)]
pub struct LagSampleDto {
    /// When.
    pub t_ms: u64,
    /// Lag then, if measured.
    pub lag_ms: Option<u64>,
    /// Events it lacked.
    pub events_they_lack: u64,
    /// Events we lacked.
    pub events_we_lack: u64,
    /// Connected then.
    pub connected: bool,
}

/// `GET /api/lag`: samples per peer, oldest first.
#[derive(Debug, Serialize)]
pub struct LagHistoryDto {
    /// Sampling interval.
    pub interval_ms: u64,
    /// Per peer id.
    pub peers: std::collections::BTreeMap<String, Vec<LagSampleDto>>,
}

/// `GET /api/events` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQueryDto {
    /// Origin device id prefix.
    pub device: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Mailbox name.
    pub mailbox: Option<String>,
    /// From (inclusive), ms.
    pub since_ms: Option<u64>,
    /// Until (exclusive), ms.
    pub until_ms: Option<u64>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// One event.
#[derive(Debug, Serialize)]
pub struct EventDto {
    /// Origin device id.
    pub origin: String,
    /// Sequence number at the origin.
    pub seq: u64,
    /// HLC time.
    pub time_ms: u64,
    /// Operation, e.g. `append`.
    pub kind: String,
    /// User concerned.
    pub user: Option<String>,
    /// Mailbox concerned.
    pub mailbox: Option<String>,
    /// One line for people.
    pub summary: String,
}

/// Query of `GET /api/conflicts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictQueryDto {
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// One side of a conflict.
#[derive(Debug, Serialize)]
pub struct ConflictSideDto {
    /// Device id.
    pub device: String,
    /// Its name, when known.
    pub device_name: Option<String>,
    /// When it acted (HLC ms).
    pub time_ms: u64,
    /// Its events.
    pub events: Vec<EventDto>,
}

/// A conflict the merge resolved.
#[derive(Debug, Serialize)]
pub struct ConflictDto {
    /// Record number.
    pub id: i64,
    /// Kind, e.g. `uid_rekey`.
    pub kind: String,
    /// When this device resolved it.
    pub time_ms: u64,
    /// The mailbox's current name.
    pub mailbox: Option<String>,
    /// The resolving side first.
    pub sides: Vec<ConflictSideDto>,
    /// What the merge did.
    pub resolution: String,
}

impl From<ConflictView> for ConflictDto {
    fn from(c: ConflictView) -> Self {
        ConflictDto {
            id: c.id,
            kind: c.kind.to_string(),
            time_ms: c.time_ms,
            mailbox: c.mailbox,
            sides: c
                .sides
                .into_iter()
                .map(|s| ConflictSideDto {
                    device: s.device.to_string(),
                    device_name: s.device_name,
                    time_ms: s.time_ms,
                    events: s.events.into_iter().map(EventDto::from).collect(),
                })
                .collect(),
            resolution: c.resolution,
        }
    }
}

impl From<EventView> for EventDto {
    fn from(e: EventView) -> Self {
        EventDto {
            origin: e.origin.to_string(),
            seq: e.seq,
            time_ms: e.time_ms,
            kind: e.kind.to_string(),
            user: e.user,
            mailbox: e.mailbox,
            summary: e.summary,
        }
    }
}

/// `POST /api/setup`: the first-run setup.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupDto {
    /// First user's login name.
    pub user: String,
    /// Their password.
    pub password: String,
    /// TLS certificate choice.
    pub tls: TlsChoiceDto,
}

/// Which certificate IMAP uses.
#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TlsChoiceDto {
    /// The self-signed certificate of the device.
    SelfSigned,
    /// The user's own PEM certificate chain and key, by path on the device.
    Own {
        /// Certificate chain path.
        cert_path: String,
        /// Private key path.
        key_path: String,
    },
}

/// What setup did.
#[derive(Debug, Serialize)]
pub struct SetupDoneDto {
    /// The user created.
    pub user: UserDto,
    /// Configuration lines to add to `roost.toml` for the TLS choice (empty
    /// for the self-signed certificate).
    pub config_snippet: String,
}

/// `GET /api/client-setup`
#[derive(Debug, Serialize)]
pub struct ClientSetupDto {
    /// Login name.
    pub user: String,
    /// Host name clients connect to.
    pub host: String,
    /// IMAP over TLS port, if configured.
    pub imaps_port: Option<u16>,
    /// IMAP with STARTTLS port, if configured.
    pub imap_port: Option<u16>,
    /// The settings as a QR code (SVG).
    pub qr_svg: String,
}

/// `?user=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQueryDto {
    /// Login name.
    pub user: String,
}

/// `GET /api/backups`: the `[backup]` settings and the backups in `dir`.
#[derive(Debug, Serialize)]
pub struct BackupsDto {
    /// `[backup] dir`, if set.
    pub dir: Option<std::path::PathBuf>,
    /// `[backup] every`, if set (scheduled by `roost serve`).
    pub every: Option<String>,
    /// How many are kept.
    pub keep: usize,
    /// The age recipient backups are encrypted to, if set.
    pub recipient: Option<String>,
    /// Newest first.
    pub backups: Vec<BackupFileDto>,
}

/// One backup file.
#[derive(Debug, Serialize)]
pub struct BackupFileDto {
    /// File name in `dir`.
    pub file: String,
    /// Size of the encrypted file.
    pub bytes: u64,
    /// When it was written (ms since the epoch).
    pub written_ms: u64,
}
