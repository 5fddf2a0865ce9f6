//! Readiness and reload notifications to systemd (`Type=notify` in
//! `packaging/systemd/roost.service`), sent as datagrams on `$NOTIFY_SOCKET`
//! (sd_notify(3)). Without that variable (not started by systemd) every call
//! does nothing, so the daemon behaves the same by hand, in tests and under
//! other supervisors.
//!
//! Must not: send READY=1 before the store is open and every listener is
//! bound; that is what makes `systemctl start roost` an honest health signal.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Tells systemd the daemon is serving (store open, listeners bound).
pub fn notify_ready() {
    notify_logged("READY=1\nSTATUS=serving");
}

/// Tells systemd a reload (SIGHUP) has started; `notify_ready` ends it.
pub fn notify_reloading() {
    notify_logged("RELOADING=1");
}

/// Tells systemd the daemon is shutting down, so a slow final commit is not
/// mistaken for a hang.
pub fn notify_stopping() {
    notify_logged("STOPPING=1");
}

/// A failed notification is logged, never fatal: systemd then times the start
/// out, which is the honest outcome for a daemon it cannot hear.
fn notify_logged(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

/// Sends `state` to `$NOTIFY_SOCKET` if set. A path starting with `@` is an
/// abstract socket (systemd's own convention).
pub fn notify(state: &str) -> io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Checks the datagram format systemd parses, on a socket of our own; the
    // env var is process-wide, so this is the only test that sets it.
    #[test]
    fn ready_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_ready();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
    }
}
