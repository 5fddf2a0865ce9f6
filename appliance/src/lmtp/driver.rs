//! The only tokio code of LMTP: accept loops for TCP and the unix socket, and
//! one loop per connection that moves bytes between the socket and
//! [`LmtpConn`] and hands its events to [`Deliverer`]. No protocol decision
//! lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::cli::now_ms;
use crate::config::Config;
use crate::lmtp::conn::{Limits, LmtpConn, LmtpEvent};
use crate::lmtp::deliver::Deliverer;
use crate::serve::Daemon;

/// How long a connection may stay silent while we wait for a command or for
/// DATA: RFC 5321 4.5.3.2.7 asks servers to wait at least 5 minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Bytes read from the socket at a time. 64 KiB keeps a 50 MB message at
/// under a thousand reads without holding much per connection.
const READ_CHUNK: usize = 64 * 1024;

/// Connections served at once over all listeners; further ones wait in the
/// listen backlog. Postfix opens at most `default_destination_concurrency_limit`
/// (20) connections to one LMTP destination, so 100 leaves room for several
/// MTAs while bounding tasks and buffers (each connection holds up to one
/// message of `max_message_bytes`).
const CONNECTIONS_MAX: usize = 100;

/// The running LMTP listeners. Dropping it stops accepting (connections in
/// progress finish) and removes the unix socket file.
#[derive(Debug)]
pub struct LmtpListeners {
    /// Bound TCP addresses (the real port when the config said port 0).
    pub tcp: Vec<SocketAddr>,
    /// The unix socket path, if one is configured.
    pub socket: Option<PathBuf>,
    /// Accept loops, aborted on drop.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LmtpListeners {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds `[lmtp] listen` and `[lmtp] socket` and starts accepting. Must be
/// called inside the tokio runtime. A relative socket path is inside the
/// data directory; a stale socket file there is replaced.
pub fn spawn_listeners(daemon: Arc<Daemon>, config: &Config) -> Result<LmtpListeners> {
    let deliverer =
        Arc::new(Deliverer::new(daemon.clone(), hostname()).context("cannot open the blob store for LMTP")?);
    let limits = Limits { max_message_size: config.lmtp.max_message_bytes, ..Limits::default() };
    let mut listeners = LmtpListeners { tcp: Vec::new(), socket: None, tasks: Vec::new() };
    // Shared by every listener: a permit per live connection.
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    for addr in &config.lmtp.listen {
        let std_listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen for LMTP on {addr}"))?;
        std_listener.set_nonblocking(true).with_context(|| format!("LMTP listener {addr}"))?;
        let listener = TcpListener::from_std(std_listener).with_context(|| format!("LMTP listener {addr}"))?;
        let local = listener.local_addr().with_context(|| format!("LMTP listener {addr}"))?;
        tracing::info!(addr = %local, "LMTP listening");
        listeners.tcp.push(local);
        let (deliverer, limits, permits) = (deliverer.clone(), limits.clone(), permits.clone());
        listeners.tasks.push(tokio::spawn(async move {
            // Runs until the listener is dropped: accept errors (out of file
            // descriptors) are logged and retried after a pause.
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        spawn_connection(stream, peer.to_string(), deliverer.clone(), limits.clone(), permit);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LMTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    if let Some(path) = &config.lmtp.socket {
        let path = if path.is_relative() { daemon.data_dir.join(path) } else { path.clone() };
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("cannot replace stale socket {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(&path).with_context(|| format!("cannot listen for LMTP on {}", path.display()))?;
        // Anyone on this machine may connect, as to the loopback TCP port:
        // the MTA's LMTP client runs as its own user (`postfix`). Restrict
        // access with the permissions of the directory holding the socket.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .with_context(|| format!("cannot set permissions of {}", path.display()))?;
        tracing::info!(socket = %path.display(), "LMTP listening");
        listeners.socket = Some(path.clone());
        let (deliverer, limits, permits) = (deliverer.clone(), limits.clone(), permits.clone());
        listeners.tasks.push(tokio::spawn(async move {
            // Runs until the listener is dropped, like the TCP loop.
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let peer = path.display().to_string();
                        spawn_connection(stream, peer, deliverer.clone(), limits.clone(), permit)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LMTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    Ok(listeners)
}

/// Runs one connection in its own task; a panic in it is logged and closes
/// that connection only. The permit is released when the connection ends.
fn spawn_connection<S>(stream: S, peer: String, deliverer: Arc<Deliverer>, limits: Limits, permit: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _permit = permit;
        let conn = tokio::spawn(serve_connection(stream, deliverer, limits));
        match conn.await {
            Ok(Ok(())) => tracing::debug!(peer, "LMTP connection closed"),
            Ok(Err(e)) => tracing::info!(peer, error = %e, "LMTP connection ended"),
            Err(e) => tracing::error!(peer, error = %e, "LMTP connection task panicked"),
        }
    });
}

/// The connection loop: write what the connection has to say, answer its
/// events, otherwise read more input. Ends when the connection closes, the
/// peer hangs up, or it stays silent for `IDLE_TIMEOUT`.
pub async fn serve_connection<S>(mut stream: S, deliverer: Arc<Deliverer>, limits: Limits) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = LmtpConn::new(deliverer.hostname(), limits);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        while let Some(out) = conn.poll_output() {
            stream.write_all(&out).await.context("write")?;
        }
        if conn.is_closed() {
            stream.flush().await.context("flush")?;
            return Ok(());
        }
        if let Some(event) = conn.poll_event() {
            match event {
                LmtpEvent::CheckRecipient { address } => {
                    let verdict = deliverer.check_recipient(&address).await;
                    conn.recipient_checked(verdict).context("LMTP state machine")?;
                }
                LmtpEvent::Deliver(delivery) => {
                    let results = deliverer.deliver(&delivery, now_ms()).await;
                    conn.delivery_done(results).context("LMTP state machine")?;
                }
            }
            continue;
        }
        stream.flush().await.context("flush")?;
        let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await {
            Ok(read) => read.context("read")?,
            Err(_) => anyhow::bail!("idle for {} s", IDLE_TIMEOUT.as_secs()),
        };
        if n == 0 {
            return Ok(());
        }
        conn.handle_input(&buf[..n]);
    }
}

/// This machine's name for the greeting and `Received:` headers.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
