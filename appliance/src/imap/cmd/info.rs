//! Commands valid in several states that only report or set session options:
//! CAPABILITY (RFC 9051 6.1.1), ID (RFC 2971), ENABLE (RFC 5161, RFC 9051
//! 6.3.1), NAMESPACE (RFC 2342), COMPRESS (RFC 4978). NOOP and CHECK need no module: their work is
//! the mailbox update every command end sends.

use imap_codec::imap_types::extensions::enable::CapabilityEnable;

use crate::imap::cmd::{CmdError, Done};
use crate::imap::conn::ImapConn;

/// CAPABILITY.
pub fn capability(conn: &mut ImapConn) -> Result<Done, CmdError> {
    let caps = conn.capabilities();
    conn.untagged(&format!("CAPABILITY {caps}"));
    Ok(Done::ok("CAPABILITY completed"))
}

/// ID: we say who we are, and ignore what the client says (RFC 2971 3.3).
pub fn id(conn: &mut ImapConn) -> Result<Done, CmdError> {
    conn.untagged(&format!("ID (\"name\" \"Roost\" \"version\" \"{}\")", env!("CARGO_PKG_VERSION")));
    Ok(Done::ok("ID completed"))
}

/// ENABLE: CONDSTORE, QRESYNC, IMAP4rev2, UTF8=ACCEPT (RFC 5161 3.1).
pub fn enable(conn: &mut ImapConn, capabilities: &[CapabilityEnable<'_>]) -> Result<Done, CmdError> {
    let mut enabled = Vec::new();
    for capability in capabilities {
        let name = capability.to_string().to_ascii_uppercase();
        let known = match name.as_str() {
            "CONDSTORE" => {
                conn.enabled.condstore = true;
                true
            }
            // RFC 7162 3.2.3: enabling QRESYNC implies CONDSTORE.
            "QRESYNC" => {
                conn.enabled.qresync = true;
                conn.enabled.condstore = true;
                true
            }
            "IMAP4REV2" => {
                conn.enabled.rev2 = true;
                conn.enabled.utf8 = true;
                true
            }
            "UTF8=ACCEPT" => {
                conn.enabled.utf8 = true;
                true
            }
            _ => false,
        };
        if known {
            enabled.push(capability.to_string());
        }
    }
    // RFC 5161 3.2: the ENABLED response lists only what was newly enabled;
    // listing it again is harmless and clients accept it.
    conn.untagged(format!("ENABLED {}", enabled.join(" ")).trim_end());
    Ok(Done::ok("ENABLE completed"))
}

/// COMPRESS DEFLATE (RFC 4978); DEFLATE is the only algorithm imap-codec
/// parses, so anything else never gets here.
pub fn compress(conn: &mut ImapConn) -> Result<Done, CmdError> {
    if conn.compressed {
        return Err(CmdError::No("[COMPRESSIONACTIVE] Already compressing".into()));
    }
    Ok(Done::Compress)
}

/// NAMESPACE: one personal namespace, no prefix, `/` delimiter.
pub fn namespace(conn: &mut ImapConn) -> Result<Done, CmdError> {
    conn.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
    Ok(Done::ok("NAMESPACE completed"))
}

#[cfg(test)]
mod tests {
    use crate::imap::testing::Harness;

    #[test]
    fn capability_changes_with_login() {
        let mut h = Harness::new();
        assert!(h.transact("a CAPABILITY", "OK").contains("AUTH=PLAIN"));
        h.login();
        let caps = h.transact("b CAPABILITY", "OK");
        assert!(caps.contains("QRESYNC") && !caps.contains("AUTH=PLAIN"), "{caps}");
    }

    #[test]
    fn compress_switches_transport() {
        let mut h = Harness::new();
        h.transact("a COMPRESS DEFLATE", "BAD"); // not before login
        h.login();
        h.transact("b COMPRESS DEFLATE", "OK");
        assert!(h.compressing());
    }

    #[test]
    fn enable_id_namespace() {
        let mut h = Harness::new();
        h.transact("a ENABLE QRESYNC", "BAD");
        h.login();
        assert!(h.transact("b ENABLE QRESYNC X-UNKNOWN", "OK").contains("* ENABLED QRESYNC\r\n"));
        assert!(h.transact("c ID NIL", "OK").contains("* ID (\"name\" \"Roost\""));
        assert!(h.transact("d NAMESPACE", "OK").contains("* NAMESPACE ((\"\" \"/\")) NIL NIL"));
    }
}
