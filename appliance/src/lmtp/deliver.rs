//! What an LMTP recipient and a delivery mean for the store: which user an
//! address names, which mailbox the message goes to, the trace headers, and
//! duplicate suppression. Owns no socket; `driver.rs` calls it for each
//! `LmtpEvent` the connection hands out.
//!
//! A delivery is acknowledged (the `Delivered` result, `250` on the wire) only
//! after its blob was fsynced and its event committed: `Daemon::write` returns
//! after the commit, and the blob is stored before the write starts.

use std::sync::Arc;

use roost_core::model::UserName;
use roost_core::store::{AppendMessage, BlobStore, StoreError, BLOB_DIR};

use crate::lmtp::conn::{parse_recipient, Delivery, RecipientResult, RecipientVerdict};
use crate::serve::Daemon;

/// Delivers to the store of one daemon.
#[derive(Debug)]
pub struct Deliverer {
    daemon: Arc<Daemon>,
    /// A second handle on the daemon's blob directory, so that blobs are
    /// written and fsynced outside the store lock and the commit path (the
    /// store's own `put` then finds them present and returns at once).
    blobs: Arc<BlobStore>,
    /// Our name in `Received:` headers.
    hostname: String,
    /// `[lmtp] subaddress_folders`.
    subaddress_folders: bool,
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The user.
    pub user: UserName,
    /// The sub-address (`tag` of `user+tag@domain`), if any.
    pub detail: Option<String>,
}

/// What became of one recipient's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Appended to a mailbox.
    New,
    /// The same message was delivered to this user before: nothing stored.
    Duplicate,
}

impl Deliverer {
    /// A deliverer for `daemon`, reading its `[lmtp]` configuration.
    pub fn new(daemon: Arc<Daemon>, hostname: String) -> Result<Deliverer, StoreError> {
        let blobs = Arc::new(BlobStore::open_dir(&daemon.data_dir.join(BLOB_DIR))?);
        let subaddress_folders = daemon.config.lmtp.subaddress_folders;
        Ok(Deliverer { daemon, blobs, hostname, subaddress_folders })
    }

    /// Our host name, as the greeting and `Received:` give it.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Finds the user an address names: the whole address if a user has that
    /// name (user names may contain `@`), else its local part without the
    /// sub-address. The domain is not checked: the MTA in front of us decides
    /// which domains are ours.
    pub async fn resolve(&self, address: &str) -> Result<Option<Target>, StoreError> {
        let candidates = candidates(address);
        if candidates.is_empty() {
            return Ok(None);
        }
        self.daemon
            .read(move |store| {
                for target in candidates {
                    if store.user_exists(&target.user)? {
                        return Ok(Some(target));
                    }
                }
                Ok(None)
            })
            .await
    }

    /// Answers `RCPT TO`: known users are accepted, others get `550 5.1.1`
    /// for that recipient only (RFC 2033 4.2).
    pub async fn check_recipient(&self, address: &str) -> RecipientVerdict {
        // Before the MTA sends the message: a retry it queues costs nothing
        // here, where a refusal after DATA leaves the stored blob behind.
        match self.daemon.read(|s| Ok(s.rejoin_state()?.is_some())).await {
            Ok(false) => {}
            Ok(true) => return RecipientVerdict::TempFail(REJOINING_REPLY.into()),
            Err(e) => {
                tracing::error!(error = %e, address, "LMTP: cannot read the store");
                return RecipientVerdict::TempFail("cannot look up the recipient now".into());
            }
        }
        match self.resolve(address).await {
            Ok(Some(_)) => RecipientVerdict::Accept,
            Ok(None) => RecipientVerdict::Unknown,
            Err(e) => {
                tracing::error!(error = %e, address, "LMTP: cannot look up recipient");
                RecipientVerdict::TempFail("cannot look up the recipient now".into())
            }
        }
    }

    /// Delivers one message to each accepted recipient, in RCPT order; each
    /// gets its own result (RFC 2033 4.2).
    pub async fn deliver(&self, delivery: &Delivery, now_ms: u64) -> Vec<RecipientResult> {
        let key = dedup_key(&delivery.data);
        let mut results = Vec::with_capacity(delivery.recipients.len());
        for rcpt in &delivery.recipients {
            let result = match self.deliver_one(delivery, rcpt, key, now_ms).await {
                Ok(Stored::New) => RecipientResult::Delivered,
                Ok(Stored::Duplicate) => {
                    tracing::info!(rcpt, "LMTP: duplicate delivery, stored once");
                    RecipientResult::Delivered
                }
                Err(DeliverError::Gone) => RecipientResult::PermFail("no such user any more".into()),
                Err(DeliverError::Store(StoreError::Rejoining)) => {
                    // Temporary: the MTA queues it and retries after the rejoin.
                    tracing::warn!(rcpt, "LMTP: deferred, this restored device has not rejoined its peers yet");
                    RecipientResult::TempFail(REJOINING_REPLY.into())
                }
                Err(DeliverError::Store(e)) => {
                    tracing::error!(error = %e, rcpt, "LMTP: delivery failed");
                    RecipientResult::TempFail("cannot store the message now".into())
                }
            };
            results.push(result);
        }
        results
    }

    async fn deliver_one(
        &self,
        delivery: &Delivery,
        rcpt: &str,
        key: Option<[u8; 32]>,
        now_ms: u64,
    ) -> Result<Stored, DeliverError> {
        let Some(target) = self.resolve(rcpt).await? else {
            return Err(DeliverError::Gone);
        };
        let now_secs = (now_ms / 1000) as i64;
        let mut raw = trace_headers(rcpt, &delivery.client_name, &self.hostname, now_secs);
        let trace_len = raw.len();
        raw.extend_from_slice(&delivery.data);
        let raw = Arc::new(raw);
        // Blob first, durable, outside the commit: an event never names a
        // blob that is not on disk, and a crash here leaves only an orphan.
        // Sealed to the user's key when encryption is on (docs/security.md).
        let sealer_user = target.user.clone();
        let sealer = self.daemon.read(move |s| s.sealer(&sealer_user)).await?;
        let blobs = self.blobs.clone();
        let blob_raw = raw.clone();
        let prestored = tokio::task::spawn_blocking(move || blobs.put_message(sealer.as_ref(), &blob_raw, None))
            .await
            .map_err(|e| StoreError::Corrupt(format!("blob task failed: {e}")))??;
        let folder = if self.subaddress_folders { target.detail.clone().filter(|d| !d.is_empty()) } else { None };
        let user = target.user;
        let stored = self
            .daemon
            .write(move |w| {
                if let Some(key) = key {
                    if !w.record_delivery(&user, &key)? {
                        return Ok(Stored::Duplicate);
                    }
                }
                w.adopt_prestored(&user, &prestored)?;
                // A tag naming no mailbox (or no valid name) goes to INBOX.
                let mailbox = match folder.as_deref().map(|f| w.mailbox(&user, f)) {
                    Some(Ok(mailbox)) => mailbox,
                    _ => w.mailbox(&user, "INBOX")?,
                };
                // A Deliver event, keyed by the message as the MTA sent it (not
                // our trace header): the same message delivered to another
                // device of this user too becomes one entry once they sync.
                let message = AppendMessage { raw: &raw, flags: Vec::new(), internal_date: now_secs };
                w.deliver_keyed(&user, mailbox, &[(&message, &raw[trace_len..])])?;
                Ok(Stored::New)
            })
            .await;
        match stored {
            Err(StoreError::NoSuchUser(_)) => Err(DeliverError::Gone),
            other => Ok(other?),
        }
    }
}

/// The temporary refusal while a restored device catches up with its peers
/// (docs/security.md, "Backups and restore"): the MTA queues and retries.
const REJOINING_REPLY: &str = "restored device catching up with its peers, try again later";

#[derive(Debug)]
enum DeliverError {
    /// The user was removed between RCPT and the end of DATA.
    Gone,
    Store(StoreError),
}

impl From<StoreError> for DeliverError {
    fn from(e: StoreError) -> Self {
        DeliverError::Store(e)
    }
}

/// The users an address may name, in the order tried: the whole address
/// (without sub-address), then the local part alone.
pub fn candidates(address: &str) -> Vec<Target> {
    let Ok(rcpt) = parse_recipient(address) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |name: String| {
        if let Ok(user) = UserName::new(&name) {
            if !out.iter().any(|t: &Target| t.user == user) {
                out.push(Target { user, detail: rcpt.detail.clone() });
            }
        }
    };
    if !rcpt.domain.is_empty() {
        push(format!("{}@{}", rcpt.local, rcpt.domain));
    }
    push(rcpt.local.clone());
    out
}

/// `Delivered-To:` and `Received:` for one recipient (RFC 5321 4.4; the
/// `with LMTP` protocol name is RFC 3848's). Prepended to the message.
pub fn trace_headers(rcpt: &str, client_name: &str, hostname: &str, now_secs: i64) -> Vec<u8> {
    // Header values must stay one line: anything odd in the peer-supplied
    // names becomes `_`.
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_graphic() && c != '<' && c != '>' { c } else { '_' }).take(255).collect()
    };
    format!(
        "Delivered-To: {rcpt}\r\nReceived: from {client} by {host} (Roost) with LMTP\r\n\tfor <{rcpt}>; {date}\r\n",
        rcpt = clean(rcpt),
        client = clean(client_name),
        host = clean(hostname),
        date = rfc5322_date(now_secs),
    )
    .into_bytes()
}

/// The dedup key of a message: BLAKE3 over its Message-ID and its body (the
/// bytes after the header block). Headers are left out because every relay
/// adds its own `Received:`; a message without a Message-ID has no key and is
/// never suppressed.
pub fn dedup_key(data: &[u8]) -> Option<[u8; 32]> {
    let (headers, body) = match find_subslice(data, b"\r\n\r\n") {
        Some(i) => (&data[..i + 2], &data[i + 4..]),
        None => (data, &b""[..]),
    };
    let message_id = header_value(headers, "message-id")?;
    let message_id = message_id.trim();
    if message_id.is_empty() {
        return None;
    }
    let mut h = blake3::Hasher::new();
    h.update(b"roost-lmtp-dedup-v1\0");
    h.update(message_id.as_bytes());
    h.update(b"\0");
    h.update(blake3::hash(body).as_bytes());
    Some(*h.finalize().as_bytes())
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unfolded value of the first header `name` (lower case), if any.
fn header_value(headers: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((field, value)) = line.split_once(':') else { continue };
        if !field.trim_end().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.to_string();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) {
                value.push_str(next);
                lines.next();
            } else {
                break;
            }
        }
        return Some(value);
    }
    None
}

/// RFC 5322 3.3 date in UTC, e.g. `Tue, 14 Nov 2023 22:13:20 +0000`.
pub fn rfc5322_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31): Howard Hinnant's
/// `civil_from_days`, exact over the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322() {
        // Known answers, including a leap day and the epoch.
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn candidates_try_the_whole_address_then_the_local_part() {
        // `user+tag@domain` names user `user@domain` or `user`, with the tag kept.
        let c = candidates("Alice+lists@Example.ORG");
        let names: Vec<&str> = c.iter().map(|t| t.user.as_str()).collect();
        assert_eq!(names, ["alice@example.org", "alice"]);
        assert_eq!(c[0].detail.as_deref(), Some("lists"));
        assert_eq!(candidates("postmaster").len(), 1);
        assert!(candidates("no-at-sign").is_empty());
        // A local part with characters no user name has names nobody.
        assert!(candidates("\"a b\"@example.org").is_empty());
    }

    #[test]
    fn dedup_key_uses_message_id_and_body_not_other_headers() {
        // Relays add Received: lines; the key must not change with them.
        let a = b"Received: by one\r\nMessage-ID: <1@x>\r\n\r\nhello\r\n";
        let b = b"Received: by two\r\nMessage-Id:\r\n <1@x>\r\n\r\nhello\r\n";
        let c = b"Message-ID: <1@x>\r\n\r\nhello again\r\n";
        let d = b"Subject: no id\r\n\r\nhello\r\n";
        assert_eq!(dedup_key(a), dedup_key(b));
        assert!(dedup_key(a).is_some());
        assert_ne!(dedup_key(a), dedup_key(c));
        assert_eq!(dedup_key(d), None);
    }

    #[test]
    fn trace_headers_stay_on_their_lines() {
        // Peer-supplied text with CR/LF cannot inject a header.
        let h = trace_headers("a@b", "evil\r\nX-Injected: 1", "roost.local", 0);
        let text = String::from_utf8(h).unwrap();
        assert!(text.starts_with("Delivered-To: a@b\r\nReceived: from evil__X-Injected:_1 by roost.local"));
        assert!(text.ends_with("; Thu, 1 Jan 1970 00:00:00 +0000\r\n"));
        assert_eq!(text.matches("\r\n").count(), 3);
    }
}
