//! The only tokio loop of an IMAP connection (STYLE 2): read bytes, feed the
//! [`ImapConn`], run it on a blocking thread with the store, write what it
//! hands back, and wait for the next read, change notification, timeout or
//! shutdown. No protocol decision lives here.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::imap::conn::{ConnConfig, Env, ImapConn, Transport, TransportAction};
use crate::imap::{ImapState, ListenerKind};

/// Read buffer size: one TLS record.
const READ_BYTES: usize = 16 * 1024;

/// The socket, before or after TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// COMPRESS=DEFLATE (RFC 4978): raw deflate (no zlib header) each way; each
/// batch of output ends with a sync flush so the client can decode it at once.
struct Deflate {
    compress: Compress,
    decompress: Decompress,
}

impl Deflate {
    fn new() -> Deflate {
        Deflate { compress: Compress::new(Compression::default(), false), decompress: Decompress::new(false) }
    }

    fn deflate(&mut self, mut input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 256);
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(4096);
            }
            let before = self.compress.total_in();
            self.compress.compress_vec(input, &mut out, FlushCompress::Sync).map_err(std::io::Error::other)?;
            input = &input[(self.compress.total_in() - before) as usize..];
            // The flush is complete when input is used up and output had room left.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn inflate(&mut self, mut input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(input.len() * 2 + 4096);
            }
            let (before_in, before_out) = (self.decompress.total_in(), out.len());
            self.decompress
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let consumed = (self.decompress.total_in() - before_in) as usize;
            input = &input[consumed..];
            let stalled = consumed == 0 && out.len() == before_out;
            if (input.is_empty() && out.len() < out.capacity()) || stalled {
                return Ok(out);
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Serves one connection until it closes.
pub async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    state: Arc<ImapState>,
    kind: ListenerKind,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _ = socket.set_nodelay(true);
    let mut stream = match (kind, &state.tls) {
        (ListenerKind::ImplicitTls, Some(tls)) => {
            Stream::Tls(Box::new(TlsAcceptor::from(tls.clone()).accept(socket).await.context("TLS handshake")?))
        }
        _ => Stream::Plain(socket),
    };
    let Some(_address_slot) = state.access.open_connection(peer.ip()) else {
        stream.write_all(b"* BYE [LIMIT] Too many connections from your address\r\n").await?;
        return Ok(());
    };
    let config = ConnConfig {
        limits: state.limits.clone(),
        peer: peer.ip(),
        transport: if matches!(stream, Stream::Tls(_)) { Transport::Tls } else { Transport::Plain },
        starttls: state.tls.is_some(),
    };
    let mut conn = ImapConn::new(config);
    let mut changes = state.changes.subscribe();
    let mut buf = vec![0u8; READ_BYTES];
    let mut deflate: Option<Deflate> = None;
    // Autologout counts from the client's last bytes, not from our last
    // push: a session that only receives notifications still times out.
    let mut last_input = tokio::time::Instant::now();
    // Runs until the client leaves, the conn asks to close, or shutdown.
    loop {
        let hold_ms = conn.hold_ms();
        if hold_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(hold_ms)).await;
        }
        let mut out = conn.take_output();
        if let (Some(d), false) = (&mut deflate, out.is_empty()) {
            out = d.deflate(&out)?;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
        }
        match conn.transport() {
            TransportAction::Continue => {}
            TransportAction::Close => break,
            TransportAction::Compress => {
                deflate = Some(Deflate::new());
                conn.handle_compression_started();
                continue;
            }
            TransportAction::StartTls => {
                let (Stream::Plain(socket), Some(tls)) = (stream, &state.tls) else {
                    anyhow::bail!("STARTTLS on a TLS stream");
                };
                let tls_stream = TlsAcceptor::from(tls.clone()).accept(socket).await.context("STARTTLS handshake")?;
                stream = Stream::Tls(Box::new(tls_stream));
                conn.handle_tls_started();
                continue;
            }
        }
        let timeout = if conn.is_idling() { state.limits.idle_max } else { state.limits.autologout };
        let deadline = last_input + timeout;
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    break;
                }
                last_input = tokio::time::Instant::now();
                match &mut deflate {
                    Some(d) => conn.handle_input(&d.inflate(&buf[..n])?),
                    None => conn.handle_input(&buf[..n]),
                }
                conn = run_conn(conn, &state).await?;
            }
            change = changes.recv() => {
                match change {
                    // An empty Effects is the daemon saying "another process
                    // committed; re-read" (Daemon::spawn_external_change_watcher).
                    Ok(change) if change.events.is_empty() && change.mailboxes.is_empty() => conn.handle_lagged(),
                    Ok(change) => conn.handle_commit(&change),
                    Err(broadcast::error::RecvError::Lagged(_)) => conn.handle_lagged(),
                    Err(broadcast::error::RecvError::Closed) => conn.handle_shutdown(),
                }
                if conn.wants_run() {
                    conn = run_conn(conn, &state).await?;
                }
            }
            _ = tokio::time::sleep_until(deadline) => conn.handle_timeout(),
            _ = stop.changed() => conn.handle_shutdown(),
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}

/// Runs the conn with the store, off the async workers' duty; publishes its
/// effects. On a multi-threaded runtime the command runs right here and the
/// worker hands its other tasks to another thread meanwhile
/// (`block_in_place`): a command then costs no thread hand-off, where
/// `spawn_blocking` cost two (to a pool thread and back), the larger part of
/// a NOOP's or a STATUS's time on the server. A current-thread runtime
/// (tests) cannot do that and uses the blocking pool. A command the conn
/// says is quick (`ImapConn::runs_quickly`: NOOP, STATUS, ...; reads of a
/// few microseconds) runs as it is, without even handing the worker's other
/// tasks away.
async fn run_conn(mut conn: ImapConn, state: &Arc<ImapState>) -> anyhow::Result<ImapConn> {
    fn run(conn: &mut ImapConn, shared: &ImapState) {
        // A panic while holding the lock drops the open SQLite transaction,
        // which rolls back, so the store is consistent: keep serving (Env::store).
        let mut env = Env::new(&shared.store, now_ms(), &shared.access, &shared.summaries)
            .with_committer(shared.committer.as_deref(), shared.blobs.as_deref())
            .with_snapshots(&shared.snapshots)
            .with_readers(shared.readers.as_ref());
        conn.run(&mut env);
    }
    if conn.runs_quickly() {
        run(&mut conn, state);
    } else if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| run(&mut conn, state));
    } else {
        let shared = state.clone();
        conn = tokio::task::spawn_blocking(move || {
            run(&mut conn, &shared);
            conn
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic())
            } else {
                anyhow::format_err!("{e}")
            }
        })?;
    }
    // The committer has published its writes' effects already.
    let effects = conn.take_effects();
    if state.committer.is_none() {
        for effects in effects {
            state.notify(effects);
        }
    }
    Ok(conn)
}
