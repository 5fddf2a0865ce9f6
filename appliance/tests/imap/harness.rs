//! Starting a server for one test, and clients to talk to it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roost::imap::limits::Limits;
use roost::imap::{serve, serve_tls, tls, ImapState};
use roost::serve::Daemon;
use roost_core::auth::hash_password;
use roost_core::model::{DeviceSlot, UserName};
use roost_core::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Password of the test users `alice` and `bob`.
pub const PASSWORD: &str = "secret";

/// A running server with a fresh data directory.
pub struct Server {
    /// Cleartext (STARTTLS) address.
    pub addr: SocketAddr,
    /// Implicit TLS address.
    pub tls_addr: SocketAddr,
    /// Shared state (to inspect counters).
    pub state: Arc<ImapState>,
    /// The daemon whose committer thread commits the sessions' writes.
    pub daemon: Arc<Daemon>,
    /// The server's self-signed certificate (for TLS clients to trust).
    pub cert_pem: String,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

impl Server {
    /// A server with default limits.
    pub async fn start() -> Server {
        Server::start_with(Limits::default()).await
    }

    /// A server with the given limits.
    pub async fn start_with(limits: Limits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::init(dir.path(), [3; 32], DeviceSlot::new(0).unwrap(), now_ms()).unwrap();
        let hash = hash_password(PASSWORD, &mut rand::rngs::OsRng);
        for user in ["alice", "bob"] {
            let user = UserName::new(user).unwrap();
            store.write(now_ms(), |w| w.add_user(&user, &hash)).unwrap();
        }
        let (cert, key) = tls::self_signed_pem(&["localhost".to_string()]).unwrap();
        let tls_config = tls::from_pem(&cert, &key).unwrap();
        let cert = cert.clone();
        // The production path: writes go through the daemon's committer.
        let config = roost::config::Config::parse("").unwrap();
        let daemon = Daemon::new(store, config, dir.path().to_path_buf());
        let state = Arc::new(ImapState::for_daemon(daemon.clone(), limits, Some(tls_config)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls_addr = tls_listener.local_addr().unwrap();
        let (stop_plain, rx_plain) = oneshot::channel::<()>();
        let (stop_tls, rx_tls) = oneshot::channel::<()>();
        let tasks = vec![
            tokio::spawn(serve(listener, state.clone(), async move {
                let _ = rx_plain.await;
            })),
            tokio::spawn(serve_tls(tls_listener, state.clone(), async move {
                let _ = rx_tls.await;
            })),
        ];
        Server { addr, tls_addr, state, daemon, cert_pem: cert, stop: vec![stop_plain, stop_tls], tasks, _dir: dir }
    }

    /// An async-imap session logged in as `user`.
    pub async fn session(&self, user: &str) -> async_imap::Session<TcpStream> {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let mut client = async_imap::Client::new(stream);
        client.read_response().await.unwrap().unwrap(); // greeting
        client.login(user, PASSWORD).await.map_err(|(e, _)| e).unwrap()
    }

    /// A raw line client (greeting already read).
    pub async fn raw(&self) -> Raw {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let mut raw = Raw { stream: BufReader::new(stream) };
        let greeting = raw.line().await;
        assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
        raw
    }

    /// A raw client logged in as alice.
    pub async fn raw_login(&self) -> Raw {
        let mut raw = self.raw().await;
        raw.transact("l LOGIN alice secret", "OK").await;
        raw
    }

    /// Stops the server; asserts no connection task panicked and every
    /// connection and session slot was released (STYLE 17).
    pub async fn stop(mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
        }
        assert_eq!(self.state.panics.load(Ordering::Relaxed), 0, "a connection task panicked");
        assert_eq!(self.state.access.open_counts(), (0, 0), "connection or session slots leaked");
    }
}

/// A client speaking raw protocol lines.
pub struct Raw {
    stream: BufReader<TcpStream>,
}

impl Raw {
    /// The socket, for tests that change the transport (COMPRESS).
    pub fn into_inner(self) -> TcpStream {
        self.stream.into_inner()
    }

    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// Writes a line plus CRLF.
    pub async fn send(&mut self, line: &str) {
        self.write(format!("{line}\r\n").as_bytes()).await;
    }

    /// Reads one line (without CRLF); empty at end of stream. Times out after
    /// 10 s so a missing reply fails the test instead of hanging it.
    pub async fn line(&mut self) -> String {
        self.line_with_end().await.trim_end_matches(['\r', '\n']).to_string()
    }

    /// Reads one line with its line end, so a blank line ("\r\n") differs
    /// from the end of the stream ("").
    async fn line_with_end(&mut self) -> String {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_until(b'\n', &mut buf))
            .await
            .expect("server did not answer within 10 s")
            .unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Reads lines until one starts with `tag `; returns all of them.
    pub async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line_with_end().await;
            if line.is_empty() {
                panic!("connection closed while waiting for {tag}: {lines:?}");
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Sends a tagged command and asserts its tagged reply starts with
    /// `<tag> <expect>`; returns all lines.
    pub async fn transact(&mut self, command: &str, expect: &str) -> Vec<String> {
        let tag = command.split(' ').next().unwrap().to_string();
        self.send(command).await;
        let lines = self.until_tagged(&tag).await;
        let last = lines.last().unwrap();
        assert!(last.starts_with(&format!("{tag} {expect}")), "{command:?}: expected {expect:?}, got {lines:#?}");
        lines
    }
}

/// Appends `n` small messages to alice's INBOX through IMAP.
pub async fn fill_inbox(server: &Server, n: usize) {
    let mut raw = server.raw_login().await;
    for i in 0..n {
        let body = format!("Subject: message {i}\r\nFrom: x@example.org\r\n\r\nbody {i}\r\n");
        raw.transact(&format!("a{i} APPEND INBOX {{{}+}}\r\n{body}", body.len()), "OK [APPENDUID").await;
    }
    raw.transact("z LOGOUT", "OK").await;
}
