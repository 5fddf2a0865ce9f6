//! Every bound the IMAP server puts on a client, in one place (STYLE 10).

use std::time::Duration;

/// Bounds on what one client, one address or one user may make the server do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest command line (the text between literals), in bytes. RFC 7162
    /// 4 asks servers to accept at least 8192 octets; UID sets of phones that
    /// resync a large mailbox are the longest lines we expect.
    pub line_bytes_max: usize,
    /// Largest literal. 50 MiB: Dovecot's and Gmail's message size limits are
    /// around 25-35 MiB, and base64 grows a 35 MiB attachment by a third.
    pub literal_bytes_max: usize,
    /// Largest whole command (lines and literals): one maximal literal plus
    /// line text around it. Keeps a client from holding more memory than that.
    pub command_bytes_max: usize,
    /// Time a connection may stay silent outside IDLE before autologout:
    /// RFC 9051 5.4 says at least 30 minutes.
    pub autologout: Duration,
    /// Time an IDLE may last before we end it with BYE; RFC 2177 asks clients
    /// to re-issue IDLE at least every 29 minutes, so 30 minutes catches only
    /// dead ones.
    pub idle_max: Duration,
    /// Delay before answering a failed login: slows guessing over one
    /// connection without bothering a user who mistyped (Dovecot waits ~2 s).
    pub login_failure_delay: Duration,
    /// Failed logins per client address within `login_failure_window` before
    /// further attempts from it are refused outright (fail2ban's default is 5).
    pub login_failures_max: u32,
    /// Window for `login_failures_max`; fail2ban's default findtime is 10 minutes.
    pub login_failure_window: Duration,
    /// Simultaneous connections per client address. Phones open 2-5, Thunderbird
    /// up to 5 per account (its default cache), a household behind NAT several.
    pub connections_per_address_max: usize,
    /// Simultaneous connections per user: Dovecot's mail_max_userip_connections
    /// default is 10; we allow a few devices' worth more.
    pub connections_per_user_max: usize,
    /// Change notifications buffered per connection before it falls back to a
    /// full mailbox rescan (it then misses nothing, only does more work).
    pub change_queue_len: usize,
    /// Plaintext of opened sealed messages all sessions together keep in
    /// memory (core's `crypto::OpenedBudget`), so reading a message again
    /// skips decrypting it: 32 MiB holds ~1,000 typical messages and is
    /// small next to the 512 MiB of the smallest Raspberry Pi we run on.
    pub opened_cache_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let limits = Limits {
            line_bytes_max: 64 * 1024,
            literal_bytes_max: 50 * 1024 * 1024,
            command_bytes_max: 50 * 1024 * 1024 + COMMAND_TEXT_BYTES,
            autologout: Duration::from_secs(30 * 60),
            idle_max: Duration::from_secs(30 * 60),
            login_failure_delay: Duration::from_secs(2),
            login_failures_max: 5,
            login_failure_window: Duration::from_secs(10 * 60),
            connections_per_address_max: 20,
            connections_per_user_max: 20,
            change_queue_len: 256,
            opened_cache_bytes_max: 32 * 1024 * 1024,
        };
        limits.check();
        limits
    }
}

/// Smallest `max_line_bytes` accepted from the config: RFC 7162 4 asks for
/// at least 8192 octets.
const LINE_BYTES_MIN: usize = 8192;

/// Room for command text around the largest literal (see `command_bytes_max`).
const COMMAND_TEXT_BYTES: usize = 128 * 1024;

impl Limits {
    /// The defaults with the config file's `[imap]` overrides; an error names
    /// the key whose value is out of range.
    pub fn from_config(config: &crate::config::ImapConfig) -> anyhow::Result<Limits> {
        let mut limits = Limits::default();
        if let Some(n) = config.max_connections_per_address {
            anyhow::ensure!(n > 0, "[imap] max_connections_per_address must be above 0");
            limits.connections_per_address_max = n;
        }
        if let Some(n) = config.max_connections_per_user {
            anyhow::ensure!(n > 0, "[imap] max_connections_per_user must be above 0");
            limits.connections_per_user_max = n;
        }
        if let Some(n) = config.max_line_bytes {
            anyhow::ensure!(
                (LINE_BYTES_MIN..COMMAND_TEXT_BYTES).contains(&n),
                "[imap] max_line_bytes must be at least {LINE_BYTES_MIN} (RFC 7162) and below {COMMAND_TEXT_BYTES}"
            );
            limits.line_bytes_max = n;
        }
        if let Some(n) = config.max_literal_bytes {
            anyhow::ensure!(n > 0, "[imap] max_literal_bytes must be above 0");
            limits.literal_bytes_max = n;
            limits.command_bytes_max = n.saturating_add(COMMAND_TEXT_BYTES);
        }
        if let Some(mib) = config.opened_cache_mib {
            anyhow::ensure!(mib <= 64 * 1024, "[imap] opened_cache_mib must be at most 65536");
            limits.opened_cache_bytes_max = mib * 1024 * 1024;
        }
        if let Some(ms) = config.login_failure_delay_ms {
            anyhow::ensure!(ms <= 60_000, "[imap] login_failure_delay_ms must be at most 60000");
            limits.login_failure_delay = Duration::from_millis(ms);
        }
        limits.check();
        Ok(limits)
    }

    /// Asserts the relations between the bounds the framing relies on.
    pub fn check(&self) {
        assert!(self.line_bytes_max < self.command_bytes_max, "line max {} >= command max", self.line_bytes_max);
        assert!(
            self.literal_bytes_max < self.command_bytes_max,
            "literal max {} >= command max",
            self.literal_bytes_max
        );
        assert!(0 < self.change_queue_len);
    }
}
