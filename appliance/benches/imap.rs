//! `cargo bench -p roost --bench imap`: the same IMAP workload against
//! `roost serve` and a private Dovecot (bench/dovecot-ref.sh, Debian's
//! dovecot-imapd), one server after the other in one run, over plaintext
//! loopback with one raw-protocol client per connection (no client library,
//! so the client costs the same for both). Prints per command the median and
//! p99 latency and the Roost/Dovecot ratio of medians, then throughput with
//! 10 and 50 concurrent clients and each server's peak resident memory.
//!
//! Workload (counts from env, defaults in brackets):
//! - `IMAP_BENCH_N` [1000] consecutive APPEND (2-8 KB messages, LITERAL+),
//!   STORE +FLAGS, FETCH BODY.PEEK[HEADER], FETCH BODY.PEEK[], SEARCH SUBJECT,
//!   SEARCH BODY over the N-message INBOX, CREATE and DELETE of N folders.
//! - `IMAP_BENCH_BIG` [10000] messages APPENDed into "big" by 10 concurrent
//!   clients (throughput), then `IMAP_BENCH_SELECTS` [200] SELECTs of it and
//!   as many STATUS (MESSAGES UNSEEN UIDNEXT) of it.
//! - Mixed throughput on "big": 10 and 50 clients, each `IMAP_BENCH_MIX` [40]
//!   rounds of FETCH (FLAGS BODY.PEEK[HEADER]), FETCH BODY.PEEK[], STORE.
//!
//! - Then the whole workload again against a Dovecot with `mail_fsync =
//!   always` (`IMAP_BENCH_DOVECOT_FSYNC=0` skips it): Roost fsyncs a STORE
//!   before its OK, Dovecot's default does not, and this pass compares like
//!   with like.
//!
//! Needs root (Dovecot runs as its own user) and dovecot-imapd; it installs
//! it with `bench/dovecot-ref.sh install` when missing. Works in
//! `IMAP_BENCH_DIR` [/tmp/roost-imap-bench], wiped first.
//! Fast build for the bench (LTO off makes Roost slower, not faster):
//! `CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 cargo bench -p roost --bench imap`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1";

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One IMAP connection speaking raw protocol lines.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_tag: u64,
}

impl Client {
    fn connect(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut client = Client { reader: BufReader::new(stream.try_clone()?), writer: stream, next_tag: 0 };
        let greeting = client.read_response_line()?;
        ensure!(greeting.starts_with(b"* OK"), "greeting: {}", String::from_utf8_lossy(&greeting));
        client.command(format!("LOGIN {USER} {PASSWORD}").as_bytes())?;
        Ok(client)
    }

    /// One response line with its literals inlined.
    fn read_response_line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        // A line with literals is read piece by piece: up to each `{n}` and its n bytes.
        loop {
            let start = line.len();
            let n = self.reader.read_until(b'\n', &mut line)?;
            ensure!(n > 0, "server closed the connection");
            let piece = &line[start..];
            let Some(literal) = literal_len(piece) else { return Ok(line) };
            let before = line.len();
            line.resize(before + literal, 0);
            self.reader.read_exact(&mut line[before..])?;
        }
    }

    /// Sends `tag text` (text may hold LITERAL+ literals) and reads to the
    /// tagged reply, which must be OK. Returns the bytes received.
    fn command(&mut self, text: &[u8]) -> Result<usize> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        let mut out = Vec::with_capacity(text.len() + 16);
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        self.writer.write_all(&out)?;
        let mut received = 0;
        loop {
            let line = self.read_response_line()?;
            received += line.len();
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                let status = &line[tag.len() + 1..];
                ensure!(
                    status.starts_with(b"OK"),
                    "{}: {}",
                    String::from_utf8_lossy(&text[..text.len().min(60)]),
                    String::from_utf8_lossy(&line)
                );
                return Ok(received);
            }
        }
    }

    fn timed(&mut self, text: &[u8], into: &mut Vec<Duration>) -> Result<()> {
        let started = Instant::now();
        self.command(text)?;
        into.push(started.elapsed());
        Ok(())
    }
}

/// `{n}\r\n` or `{n+}\r\n` at the end of a line: n.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = line[open + 1..].strip_suffix(b"+").unwrap_or(&line[open + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A deterministic 2-8 KB text message; `i` appears in the subject and as
/// `tok{i}z` in the body so searches have one match each.
fn message(i: usize) -> Vec<u8> {
    let size = 2000 + (i * 7919) % 6000;
    let mut text = format!(
        "From: sender{}@example.org\r\nTo: bench@example.org\r\nSubject: bench message {i} about topic {}\r\n\
         Message-ID: <imap-bench-{i}@example.org>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello tok{i}z.\r\n",
        i % 17,
        i % 100
    );
    let line = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor\r\n";
    while text.len() < size {
        text.push_str(line);
    }
    text.into_bytes()
}

fn append_command(mailbox: &str, raw: &[u8]) -> Vec<u8> {
    let mut text = format!("APPEND {mailbox} {{{}+}}\r\n", raw.len()).into_bytes();
    text.extend_from_slice(raw);
    text
}

/// Latencies per command name, in workload order.
#[derive(Default)]
struct Results {
    latencies: Vec<(&'static str, Vec<Duration>)>,
    throughput: Vec<(String, f64)>,
    peak_rss_kib: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs `clients` connections in parallel, each doing `work`; returns
/// operations per second over the whole run.
fn parallel(
    addr: SocketAddr,
    clients: usize,
    work: impl Fn(usize, &mut Client) -> Result<usize> + Sync,
) -> Result<f64> {
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(Client::connect(addr)?);
    }
    let started = Instant::now();
    let ops = std::thread::scope(|scope| -> Result<usize> {
        let handles: Vec<_> = connections
            .into_iter()
            .enumerate()
            .map(|(n, mut client)| {
                let work = &work;
                scope.spawn(move || work(n, &mut client))
            })
            .collect();
        let mut ops = 0;
        for handle in handles {
            ops += handle.join().map_err(|_| anyhow::format_err!("client thread panicked"))??;
        }
        Ok(ops)
    })?;
    Ok(ops as f64 / started.elapsed().as_secs_f64())
}

/// Resident memory of a set of processes, sampled every 50 ms until dropped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pids: impl Fn() -> Vec<u32> + Send + 'static) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (stop2, peak2) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            // Bounded by the owner: it sets `stop` before joining.
            while !stop2.load(Ordering::Relaxed) {
                let total: u64 = pids().into_iter().filter_map(rss_kib).sum();
                peak2.fetch_max(total, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }

    fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every live process whose session id is `sid` (Dovecot's master setsid()s).
fn session_pids(sid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // Fields after the ")" closing the command name: state ppid pgrp session.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split_whitespace().nth(3)?.parse::<u32>().ok()
                })
                .is_some_and(|s| s == sid)
        })
        .collect()
}

/// Prints a phase's result at once, so a long run shows progress and an
/// interrupted one keeps what it measured, with the server's resident memory
/// at the end of the phase (which phase makes the peak).
fn progress(label: &str, latencies: &[Duration], rss_kib: u64) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    eprintln!(
        "  {label}: n={} p50={:.3} ms p99={:.3} ms, rss {:.0} MiB",
        sorted.len(),
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.99)),
        rss_kib as f64 / 1024.0
    );
}

fn run_workload(addr: SocketAddr, pids: impl Fn() -> Vec<u32> + Send + Clone + 'static) -> Result<Results> {
    let n = env_count("IMAP_BENCH_N", 1000);
    let big = env_count("IMAP_BENCH_BIG", 10_000);
    let selects = env_count("IMAP_BENCH_SELECTS", 200);
    let mix = env_count("IMAP_BENCH_MIX", 40);
    let mut results = Results::default();
    let sampler = RssSampler::start(pids.clone());
    let rss_now = || pids().into_iter().filter_map(rss_kib).sum::<u64>();
    let mut client = Client::connect(addr)?;

    let mut lat = Vec::new();
    for i in 0..n {
        client.timed(&append_command("INBOX", &message(i)), &mut lat)?;
    }
    progress("APPEND", &lat, rss_now());
    results.latencies.push(("APPEND", lat));

    client.command(b"SELECT INBOX")?;
    let mut lat = Vec::new();
    for i in 1..=n {
        client.timed(format!("STORE {i} +FLAGS (\\Flagged)").as_bytes(), &mut lat)?;
    }
    progress("STORE", &lat, rss_now());
    results.latencies.push(("STORE", lat));

    let mut lat = Vec::new();
    for i in 1..=n {
        client.timed(format!("FETCH {i} BODY.PEEK[HEADER]").as_bytes(), &mut lat)?;
    }
    progress("FETCH header", &lat, rss_now());
    results.latencies.push(("FETCH header", lat));
    let mut lat = Vec::new();
    for i in 1..=n {
        client.timed(format!("FETCH {i} BODY.PEEK[]").as_bytes(), &mut lat)?;
    }
    progress("FETCH body", &lat, rss_now());
    results.latencies.push(("FETCH body", lat));

    let mut lat = Vec::new();
    for i in 0..n {
        client.timed(format!("SEARCH SUBJECT \"message {i} about\"").as_bytes(), &mut lat)?;
    }
    progress("SEARCH subject", &lat, rss_now());
    results.latencies.push(("SEARCH subject", lat));
    let mut lat = Vec::new();
    for i in 0..n {
        client.timed(format!("SEARCH BODY \"tok{i}z\"").as_bytes(), &mut lat)?;
    }
    progress("SEARCH body", &lat, rss_now());
    results.latencies.push(("SEARCH body", lat));
    client.command(b"CLOSE")?;

    let mut lat = Vec::new();
    for i in 0..n {
        client.timed(format!("CREATE folder{i}").as_bytes(), &mut lat)?;
    }
    progress("CREATE", &lat, rss_now());
    results.latencies.push(("CREATE", lat));
    let mut lat = Vec::new();
    for i in 0..n {
        client.timed(format!("DELETE folder{i}").as_bytes(), &mut lat)?;
    }
    progress("DELETE", &lat, rss_now());
    results.latencies.push(("DELETE", lat));

    // Fill "big" with 10 concurrent appenders.
    client.command(b"CREATE big")?;
    let clients = 10;
    let appends = parallel(addr, clients, |c, conn| {
        let mut done = 0;
        for i in (c..big).step_by(clients) {
            conn.command(&append_command("big", &message(i)))?;
            done += 1;
        }
        Ok(done)
    })?;
    eprintln!("  APPEND, {clients} clients: {appends:.0} msg/s, rss {:.0} MiB", rss_now() as f64 / 1024.0);
    results.throughput.push((format!("APPEND, {clients} clients (msg/s)"), appends));

    let mut lat = Vec::new();
    for _ in 0..selects {
        client.timed(b"SELECT big", &mut lat)?;
    }
    progress("SELECT 10k", &lat, rss_now());
    results.latencies.push(("SELECT 10k", lat));
    // UNSEEN makes the server look at every message's flags.
    let mut lat = Vec::new();
    for _ in 0..selects {
        client.timed(b"STATUS big (MESSAGES UNSEEN UIDNEXT)", &mut lat)?;
    }
    progress("STATUS 10k", &lat, rss_now());
    results.latencies.push(("STATUS 10k", lat));

    for clients in [10, 50] {
        let ops = parallel(addr, clients, |c, conn| {
            conn.command(b"SELECT big")?;
            let mut done = 1;
            for round in 0..mix {
                let seq = 1 + (c * 7919 + round * 104_729) % big;
                conn.command(format!("FETCH {seq} (FLAGS BODY.PEEK[HEADER])").as_bytes())?;
                conn.command(format!("FETCH {seq} BODY.PEEK[]").as_bytes())?;
                conn.command(format!("STORE {seq} +FLAGS (\\Seen)").as_bytes())?;
                done += 3;
            }
            conn.command(b"LOGOUT").ok();
            Ok(done)
        })?;
        eprintln!("  mixed FETCH/STORE, {clients} clients: {ops:.0} cmd/s, rss {:.0} MiB", rss_now() as f64 / 1024.0);
        results.throughput.push((format!("mixed FETCH/STORE, {clients} clients (cmd/s)"), ops));
    }
    results.peak_rss_kib = sampler.peak_kib();
    Ok(results)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(addr: SocketAddr) -> Result<()> {
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{addr} did not open")
}

struct RoostServer {
    child: Child,
}

impl Drop for RoostServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn roost(work: &Path, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
    cmd.arg("--config").arg(work.join("roost.toml")).arg("--data-dir").arg(work.join("roost")).args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.stdout(Stdio::null()).spawn()?;
    if let Some(input) = stdin {
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    let status = child.wait()?;
    ensure!(status.success(), "roost {args:?} failed: {status}");
    Ok(())
}

fn start_roost(work: &Path) -> Result<(RoostServer, SocketAddr)> {
    // 50 benchmark clients from one address and user need more than the defaults.
    std::fs::write(
        work.join("roost.toml"),
        "[imap]\nmax_connections_per_address = 100\nmax_connections_per_user = 100\n",
    )?;
    roost(work, &["init"], None)?;
    roost(work, &["user", "add", USER, "--password-stdin"], Some(&format!("{PASSWORD}\n")))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log = std::fs::File::create(work.join("roost-serve.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("--config")
        .arg(work.join("roost.toml"))
        .arg("--data-dir")
        .arg(work.join("roost"))
        .args(["serve", "--listen-imap", &addr.to_string()])
        .args(["--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0", "--listen-sync", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let server = RoostServer { child };
    wait_port(addr)?;
    Ok((server, addr))
}

fn dovecot_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/dovecot-ref.sh")
}

struct DovecotServer {
    dir: PathBuf,
}

impl Drop for DovecotServer {
    fn drop(&mut self) {
        let _ = Command::new(dovecot_script()).arg("stop").arg(&self.dir).stderr(Stdio::null()).status();
    }
}

/// Dovecot with `mail_fsync` = `fsync_mode` (`optimized`, its default, or
/// `always`), in `work/<name>`.
fn start_dovecot(work: &Path, name: &str, fsync_mode: &str) -> Result<(DovecotServer, SocketAddr, u32)> {
    if Command::new("dovecot").arg("--version").stdout(Stdio::null()).status().is_err() {
        let status = Command::new(dovecot_script()).arg("install").status()?;
        ensure!(status.success(), "bench/dovecot-ref.sh install failed");
    }
    let dir = work.join(name);
    let (imap, lmtp) = (free_port()?, free_port()?);
    let out = Command::new(dovecot_script())
        .env("DOVECOT_REF_MAIL_FSYNC", fsync_mode)
        .arg("start")
        .arg(&dir)
        .args([imap.to_string(), lmtp.to_string(), USER.to_string(), PASSWORD.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "bench/dovecot-ref.sh start failed");
    let master: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().context("master pid")?;
    Ok((DovecotServer { dir }, SocketAddr::from(([127, 0, 0, 1], imap)), master))
}

fn main() -> Result<()> {
    // `cargo bench` passes --bench; nothing else to parse.
    if !nix_is_root() {
        println!("SKIPPED imap bench: needs root (Dovecot runs as its own user)");
        return Ok(());
    }
    let work = PathBuf::from(std::env::var("IMAP_BENCH_DIR").unwrap_or_else(|_| "/tmp/roost-imap-bench".into()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut mode = std::fs::metadata(&work)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&work, mode)?;

    let mut all: BTreeMap<&str, Results> = BTreeMap::new();
    {
        let (server, addr) = start_roost(&work)?;
        let pid = server.child.id();
        eprintln!("roost serve (pid {pid}) on {addr}");
        all.insert("roost", run_workload(addr, move || vec![pid])?);
    }
    {
        let (_server, addr, master) = start_dovecot(&work, "dovecot", "optimized")?;
        eprintln!("dovecot (master {master}) on {addr}");
        all.insert("dovecot", run_workload(addr, move || session_pids(master))?);
    }
    report(&all["roost"], &all["dovecot"]);
    // Dovecot's default does not fsync its index log, so an acknowledged
    // flag change can be lost on power loss; Roost fsyncs before every OK.
    // The same workload against a Dovecot that fsyncs every write compares
    // like with like (STORE above all).
    if std::env::var("IMAP_BENCH_DOVECOT_FSYNC").map(|v| v != "0").unwrap_or(true) {
        let (_server, addr, master) = start_dovecot(&work, "dovecot-fsync", "always")?;
        eprintln!("dovecot with mail_fsync=always (master {master}) on {addr}");
        let durable = run_workload(addr, move || session_pids(master))?;
        println!("\nagainst Dovecot with mail_fsync=always (flag changes on disk before OK, as in Roost):");
        report(&all["roost"], &durable);
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // The uid of /proc/self is ours.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(roost: &Results, dovecot: &Results) {
    println!(
        "\n{:<16} {:>9} {:>9} {:>11} {:>11} {:>13}",
        "command", "n", "Roost p50", "Roost p99", "Dovecot p50", "Dovecot p99"
    );
    println!("{:<16} {:>9} {:>9} {:>11} {:>11} {:>13} {:>7}", "", "", "ms", "ms", "ms", "ms", "ratio");
    let sorted = |lat: &Vec<Duration>| {
        let mut l = lat.clone();
        l.sort();
        l
    };
    let dovecot_by_name: BTreeMap<_, _> = dovecot.latencies.iter().map(|(k, v)| (*k, sorted(v))).collect();
    for (name, lat) in &roost.latencies {
        let r = sorted(lat);
        let Some(d) = dovecot_by_name.get(name) else { continue };
        let ratio = ms(percentile(&r, 0.5)) / ms(percentile(d, 0.5)).max(1e-9);
        println!(
            "{:<16} {:>9} {:>9.3} {:>11.3} {:>11.3} {:>13.3} {:>7.2}",
            name,
            r.len(),
            ms(percentile(&r, 0.5)),
            ms(percentile(&r, 0.99)),
            ms(percentile(d, 0.5)),
            ms(percentile(d, 0.99)),
            ratio
        );
    }
    println!("\n{:<40} {:>10} {:>10} {:>7}", "throughput", "Roost", "Dovecot", "ratio");
    for ((name, r), (_, d)) in roost.throughput.iter().zip(&dovecot.throughput) {
        println!("{:<40} {:>10.0} {:>10.0} {:>7.2}", name, r, d, r / d.max(1e-9));
    }
    println!(
        "\npeak resident memory: Roost {:.1} MiB (one process), Dovecot {:.1} MiB (all its processes)",
        roost.peak_rss_kib as f64 / 1024.0,
        dovecot.peak_rss_kib as f64 / 1024.0
    );
}
