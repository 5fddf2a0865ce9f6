//! IDLE (RFC 2177, RFC 9051 6.3.13). Valid when authenticated or selected.
//! The conn answers `+ idling`, pushes mailbox changes as they are
//! committed by any session of any user's connection, and ends on `DONE`.

use crate::imap::cmd::{CmdError, Done};
use crate::imap::conn::ImapConn;

/// IDLE.
pub fn idle(_conn: &mut ImapConn) -> Result<Done, CmdError> {
    Ok(Done::Idle)
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn idle_pushes_changes_from_another_session() {
        // Two connections on one store: an APPEND on the second shows up as
        // EXISTS on the idling first, and DONE ends the IDLE.
        let mut h = Harness::logged_in();
        h.transact("a SELECT INBOX", "OK");
        assert_eq!(h.send("b IDLE"), "+ idling\r\n");
        let mut other = h.second();
        other.transact("x APPEND INBOX {3+}\r\nabc", "OK");
        assert!(h.poll().contains("* 1 EXISTS\r\n"));
        h.transact_line("DONE", "b OK");
        h.transact("c NOOP", "OK");
    }

    #[test]
    fn anything_but_done_ends_idle_with_bad() {
        let mut h = Harness::logged_in();
        h.send("b IDLE");
        h.transact_line("c NOOP", "b BAD");
        h.transact("d NOOP", "OK");
    }
}
