//! `cargo bench -p roost --bench crypt`: what encryption at rest costs (issue
//! 8). One run starts `roost serve` twice per round, with `encryption = false`
//! and `encryption = true` (same binary, same messages, fresh data dirs), and
//! times, over real sockets:
//! 1. LMTP delivery of N messages (4 concurrent senders, one transaction each);
//! 2. IMAP APPEND of the same N messages (one connection, one by one);
//! 3. FETCH 1:* BODY.PEEK[] of the delivered messages (3 times);
//! 4. SEARCH BODY of a word in 10 % of them (3 times; every body is read).
//!
//! A session keeps the messages it opened (docs/security.md), so only the
//! first FETCH decrypts. More figures show that cold cost on its own: the
//! first of the three FETCHes (delivered mail no session opened yet: one
//! X25519 per message), and one SEARCH BODY and one FETCH of every body in
//! a new session (whose file keys the first session left in the file-key
//! cache), each the least of `NEW_SESSIONS` sessions, since one short
//! figure on a shared machine is mostly noise.
//!
//! It prints each figure per mode and the ratio on/off. Rounds alternate the
//! order (off, on, then on, off) and figures are summed, so a drift of the
//! machine's speed during the run does not favour one mode.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages per phase.
const MESSAGES: usize = 400;
/// Repetitions of FETCH and SEARCH.
const READ_REPEATS: usize = 3;
/// New sessions the new-session figures take the least of.
const NEW_SESSIONS: usize = 3;
const PASSWORD: &str = "bench passphrase 1";

fn roost_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_roost"))
}

/// Deterministic messages of 2-64 KB of text; every tenth has `needleword`.
fn messages() -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"];
    (0..MESSAGES)
        .map(|i| {
            let size = 2_000 + (next() % 62_000) as usize;
            let mut body = String::with_capacity(size + 100);
            while body.len() < size {
                body.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
                body.push_str(if next() % 12 == 0 { "\r\n" } else { " " });
            }
            if i % 10 == 0 {
                body.push_str(" needleword");
            }
            format!(
                "From: sender{i}@example.net\r\nTo: alice@example.org\r\nSubject: bench message {i}\r\n\
                 Message-ID: <bench.{i}@example.net>\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
            )
        })
        .collect()
}

struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_ok(dir: &Path, config: &Path, args: &[&str], stdin: &str) {
    let mut child = Command::new(roost_bin())
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("roost runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin written");
    let out = child.wait_with_output().expect("roost exits");
    assert!(out.status.success(), "roost {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Server {
    fn start(encryption: bool) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir: PathBuf = tmp.path().join("data");
        let config = tmp.path().join("roost.toml");
        std::fs::write(&config, format!("encryption = {encryption}\n")).expect("config written");
        run_ok(&dir, &config, &["init"], "");
        run_ok(&dir, &config, &["user", "add", "alice", "--password-stdin"], &format!("{PASSWORD}\n"));
        let mut child = Command::new(roost_bin())
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen-sync", "127.0.0.1:0", "--listen-imap", "127.0.0.1:0"])
            .args(["--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("roost serve runs");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&(line + "\n"));
            }
        });
        let server = Server { child, log, _dir: tmp };
        let started = Instant::now();
        while server.addr("IMAP").is_none() || server.addr("LMTP").is_none() {
            assert!(started.elapsed() < Duration::from_secs(30), "roost serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn addr(&self, what: &str) -> Option<SocketAddr> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let line = log.lines().find(|l| l.contains(&format!("{what} listening")) && l.contains("addr="))?;
        let rest = &line[line.find("addr=")? + 5..];
        rest.split_whitespace().next()?.trim_matches(|c| c == '"' || c == ',').parse().ok()
    }
}

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout set");
        Client { reader: BufReader::new(stream) }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read");
        assert!(!line.is_empty(), "connection closed");
        line
    }

    /// Reads up to the tagged reply, skipping literals; returns the untagged
    /// lines (without literals) and the tagged line.
    fn until_tagged(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let line = self.line();
            if let Some(n) = line.trim_end().strip_suffix('}').and_then(|l| l.rsplit_once('{')).map(|(_, n)| n) {
                let mut literal = vec![0; n.parse().expect("literal length")];
                self.reader.read_exact(&mut literal).expect("literal");
                untagged.push(line);
                continue;
            }
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.starts_with(&format!("{tag} OK")), "{line}");
                return (untagged, line);
            }
            untagged.push(line);
        }
    }

    fn imap(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until_tagged(tag).0
    }
}

fn lmtp_deliver_all(addr: SocketAddr, messages: &[String]) {
    std::thread::scope(|scope| {
        for chunk in messages.chunks(messages.len().div_ceil(4)) {
            scope.spawn(move || {
                let mut c = Client::connect(addr);
                assert!(c.line().starts_with("220"));
                c.send(b"LHLO bench\r\n");
                while !c.line().starts_with("250 ") {}
                for raw in chunk {
                    c.send(b"MAIL FROM:<sender@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
                    for expect in ["250", "250", "354"] {
                        let reply = c.line();
                        assert!(reply.starts_with(expect), "{reply}");
                    }
                    // Dot-stuffing: no line of these messages starts with a dot.
                    c.send(raw.as_bytes());
                    c.send(b".\r\n");
                    let reply = c.line();
                    assert!(reply.starts_with("250"), "{reply}");
                }
            });
        }
    });
}

#[derive(Default, Clone, Copy)]
struct Figures {
    lmtp: Duration,
    append: Duration,
    fetch: Duration,
    search: Duration,
    fetch_first: Duration,
    search_new_session: Duration,
    fetch_new_session: Duration,
}

fn measure(encryption: bool, messages: &[String]) -> Figures {
    let server = Server::start(encryption);
    let mut figures = Figures::default();

    let started = Instant::now();
    lmtp_deliver_all(server.addr("LMTP").expect("lmtp addr"), messages);
    figures.lmtp = started.elapsed();

    let mut c = Client::connect(server.addr("IMAP").expect("imap addr"));
    assert!(c.line().starts_with("* OK"));
    c.imap("l", &format!("LOGIN alice \"{PASSWORD}\""));
    let started = Instant::now();
    for (i, raw) in messages.iter().enumerate() {
        let tag = format!("a{i}");
        c.send(format!("{tag} APPEND Archive {{{}+}}\r\n", raw.len()).as_bytes());
        c.send(raw.as_bytes());
        c.send(b"\r\n");
        c.until_tagged(&tag);
    }
    figures.append = started.elapsed();

    let exists = c.imap("s", "SELECT INBOX");
    assert!(exists.iter().any(|l| l.trim_end() == format!("* {} EXISTS", messages.len())), "{exists:?}");
    let started = Instant::now();
    for r in 0..READ_REPEATS {
        let fetched = c.imap(&format!("f{r}"), "FETCH 1:* BODY.PEEK[]");
        assert_eq!(fetched.iter().filter(|l| l.starts_with("* ") && l.contains(" FETCH ")).count(), messages.len());
        if r == 0 {
            figures.fetch_first = started.elapsed();
        }
    }
    figures.fetch = started.elapsed();

    let started = Instant::now();
    for r in 0..READ_REPEATS {
        search_needle(&mut c, &format!("q{r}"), messages.len());
    }
    figures.search = started.elapsed();

    figures.search_new_session = least_in_new_sessions(&server, |fresh| search_needle(fresh, "n0", messages.len()));
    figures.fetch_new_session = least_in_new_sessions(&server, |fresh| {
        let fetched = fresh.imap("n1", "FETCH 1:* BODY.PEEK[]");
        assert_eq!(fetched.iter().filter(|l| l.starts_with("* ") && l.contains(" FETCH ")).count(), messages.len());
    });
    figures
}

/// The least time `read` takes in a new session (logged in, INBOX
/// selected), over `NEW_SESSIONS` sessions one after the other.
fn least_in_new_sessions(server: &Server, mut read: impl FnMut(&mut Client)) -> Duration {
    (0..NEW_SESSIONS)
        .map(|_| {
            let mut fresh = Client::connect(server.addr("IMAP").expect("imap addr"));
            assert!(fresh.line().starts_with("* OK"));
            fresh.imap("l", &format!("LOGIN alice \"{PASSWORD}\""));
            fresh.imap("s", "SELECT INBOX");
            let started = Instant::now();
            read(&mut fresh);
            let took = started.elapsed();
            // Ends the session, so its opened messages leave the shared budget.
            fresh.send(b"z LOGOUT\r\n");
            fresh.until_tagged("z");
            drop(fresh);
            // The daemon drops the session once it sees the close.
            std::thread::sleep(Duration::from_millis(200));
            took
        })
        .min()
        .expect("NEW_SESSIONS > 0")
}

fn search_needle(c: &mut Client, tag: &str, n_messages: usize) {
    let hits = c.imap(tag, "SEARCH BODY needleword");
    let line = hits.iter().find(|l| l.starts_with("* SEARCH")).expect("a SEARCH line");
    assert_eq!(line.split_whitespace().count() - 2, n_messages / 10, "{line}");
}

fn main() {
    let messages = messages();
    let megabytes = messages.iter().map(|m| m.len()).sum::<usize>() as f64 / 1e6;
    println!(
        "{} messages, {megabytes:.1} MB; LMTP 4 senders, APPEND 1 connection, FETCH/SEARCH x{READ_REPEATS}",
        MESSAGES
    );
    let (mut off, mut on) = (Figures::default(), Figures::default());
    for round in [[false, true], [true, false]] {
        for encryption in round {
            let f = measure(encryption, &messages);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "encryption={encryption:<5}  lmtp {:>7.0} ms  append {:>7.0} ms  fetch {:>7.0} ms  search {:>7.0} ms  \
                 first fetch {:>7.0} ms  new-session search {:>7.0} ms  new-session fetch {:>7.0} ms",
                ms(f.lmtp),
                ms(f.append),
                ms(f.fetch),
                ms(f.search),
                ms(f.fetch_first),
                ms(f.search_new_session),
                ms(f.fetch_new_session)
            );
            let total = if encryption { &mut on } else { &mut off };
            total.lmtp += f.lmtp;
            total.append += f.append;
            total.fetch += f.fetch;
            total.search += f.search;
            total.fetch_first += f.fetch_first;
            total.search_new_session += f.search_new_session;
            total.fetch_new_session += f.fetch_new_session;
        }
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("ratio on/off (both rounds summed):");
    println!("  LMTP delivery  {:.3}", ratio(on.lmtp, off.lmtp));
    println!("  IMAP APPEND    {:.3}", ratio(on.append, off.append));
    println!("  FETCH BODY[]   {:.3}", ratio(on.fetch, off.fetch));
    println!("  SEARCH BODY    {:.3}", ratio(on.search, off.search));
    println!("cold (nothing opened yet in the session):");
    println!("  first FETCH BODY[]          {:.3}", ratio(on.fetch_first, off.fetch_first));
    println!("  SEARCH BODY, new session    {:.3}", ratio(on.search_new_session, off.search_new_session));
    println!("  FETCH BODY[], new session   {:.3}", ratio(on.fetch_new_session, off.fetch_new_session));
}
