//! LOGIN, AUTHENTICATE PLAIN (with SASL-IR) and STARTTLS: RFC 9051 6.2, RFC
//! 4959, RFC 4616. Valid in the not-authenticated state only.
//!
//! Plaintext passwords are refused on cleartext connections except from
//! loopback (RFC 9051 6.2.3, LOGINDISABLED). Failed logins are delayed and
//! counted per client address (`Access`).

use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use imap_codec::imap_types::auth::AuthMechanism;

use crate::imap::cmd::{CmdError, Done};
use crate::imap::conn::{Env, ImapConn, Transport};

/// One argon2id run at a time: each takes ~19 MiB for its duration, so 50
/// clients logging in at once cost one run's memory, not 50 (and a login
/// flood cannot exhaust memory). The store lock is not held meanwhile.
static ARGON2_TURN: Mutex<()> = Mutex::new(());

/// STARTTLS (RFC 9051 6.2.1).
pub fn starttls(conn: &mut ImapConn) -> Result<Done, CmdError> {
    if conn.transport == Transport::Tls || !conn.config.starttls {
        return Err(CmdError::Bad("STARTTLS not available".into()));
    }
    Ok(Done::StartTls)
}

/// LOGIN (RFC 9051 6.2.3).
pub fn login(conn: &mut ImapConn, env: &mut Env<'_>, user: &[u8], password: &[u8]) -> Result<Done, CmdError> {
    if !conn.plaintext_login_allowed() {
        return Err(CmdError::No("[PRIVACYREQUIRED] Use TLS (port 993 or STARTTLS) to log in".into()));
    }
    check(conn, env, user, password)
}

/// AUTHENTICATE (RFC 9051 6.2.2); only PLAIN.
pub fn authenticate(
    conn: &mut ImapConn,
    env: &mut Env<'_>,
    mechanism: &AuthMechanism<'_>,
    initial_response: Option<&[u8]>,
) -> Result<Done, CmdError> {
    if *mechanism != AuthMechanism::Plain {
        return Err(CmdError::No("[CANNOT] Unsupported authentication mechanism".into()));
    }
    if !conn.plaintext_login_allowed() {
        return Err(CmdError::No("[PRIVACYREQUIRED] Use TLS (port 993 or STARTTLS) to log in".into()));
    }
    match initial_response {
        Some(response) => plain(conn, env, response),
        None => Ok(Done::SaslContinue),
    }
}

/// The client's line after `+ ` in AUTHENTICATE: base64, or `*` to cancel.
pub fn sasl_line(conn: &mut ImapConn, env: &mut Env<'_>, line: &[u8]) -> Result<Done, CmdError> {
    if line == b"*" {
        return Err(CmdError::Bad("AUTHENTICATE cancelled".into()));
    }
    let response = STANDARD.decode(line).map_err(|_| CmdError::Bad("Invalid base64 in SASL response".into()))?;
    plain(conn, env, &response)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn plain(conn: &mut ImapConn, env: &mut Env<'_>, response: &[u8]) -> Result<Done, CmdError> {
    let mut parts = response.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CmdError::Bad("Malformed PLAIN response".into()));
    };
    if !authzid.is_empty() && authzid != authcid {
        return Err(CmdError::No("[AUTHORIZATIONFAILED] Cannot act as another user".into()));
    }
    check(conn, env, authcid, password)
}

fn check(conn: &mut ImapConn, env: &mut Env<'_>, user: &[u8], password: &[u8]) -> Result<Done, CmdError> {
    let peer = conn.config.peer;
    if env.access.login_blocked(peer, env.now_ms) {
        return Err(CmdError::LoginFailed("[UNAVAILABLE] Too many failed logins; try again later".into()));
    }
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password)) else {
        env.access.login_failed(peer, env.now_ms);
        return Err(CmdError::LoginFailed("[AUTHENTICATIONFAILED] Invalid credentials".into()));
    };
    // Read under the lock, then argon2id (tens of ms) without it: other
    // sessions and the committer keep using the store meanwhile.
    let record = env.read()?.login_record(user)?;
    let checked = {
        let _turn = ARGON2_TURN.lock().unwrap_or_else(|p| p.into_inner());
        record.check(password)?
    };
    let Some((user, key)) = checked else {
        env.access.login_failed(peer, env.now_ms);
        return Err(CmdError::LoginFailed("[AUTHENTICATIONFAILED] Invalid credentials".into()));
    };
    let Some(slot) = env.access.open_session(user.as_str()) else {
        return Err(CmdError::No("[LIMIT] Too many connections for this user".into()));
    };
    let key = key.map(|mut key| {
        key.keep_opened(env.access.opened_budget());
        key
    });
    conn.log_in(user, slot, key);
    Ok(Done::ok(format!("[CAPABILITY {}] Logged in", conn.capabilities())))
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn login_and_failures() {
        // A wrong password is NO [AUTHENTICATIONFAILED]; the right one logs in; LOGIN twice is BAD.
        let mut h = Harness::new();
        h.transact("a1 LOGIN alice wrong", "NO [AUTHENTICATIONFAILED]");
        h.transact("a2 LOGIN alice secret", "OK [CAPABILITY");
        h.transact("a3 LOGIN alice secret", "BAD");
    }

    #[test]
    fn authenticate_plain_with_and_without_initial_response() {
        let mut h = Harness::new();
        // "\0alice\0secret"
        h.transact("b1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", "OK [CAPABILITY");
        let mut h = Harness::new();
        let out = h.send("b1 AUTHENTICATE PLAIN");
        assert_eq!(out, "+ \r\n");
        h.transact_line("AGFsaWNlAHNlY3JldA==", "b1 OK");
        let mut h = Harness::new();
        h.send("b1 AUTHENTICATE PLAIN");
        h.transact_line("*", "b1 BAD");
        h.transact("b2 NOOP", "OK");
    }

    #[test]
    fn cleartext_login_refused_off_loopback() {
        let mut h = Harness::remote();
        let caps = h.transact("c1 CAPABILITY", "OK");
        assert!(caps.contains("LOGINDISABLED") && !caps.contains("AUTH=PLAIN"), "{caps}");
        h.transact("c2 LOGIN alice secret", "NO [PRIVACYREQUIRED]");
    }

    #[test]
    fn repeated_failures_block_the_address() {
        let mut h = Harness::new();
        for i in 0..5 {
            h.transact(&format!("f{i} LOGIN alice nope"), "NO [AUTHENTICATIONFAILED]");
        }
        h.transact("f9 LOGIN alice secret", "NO [UNAVAILABLE]");
    }
}
