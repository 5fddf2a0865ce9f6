//! `cargo bench -p roost --bench sync`: replication between two real daemons
//! in network namespaces joined by the WAN emulator.
//! 1. Replication lag as a user sees it: an IMAP client APPENDs on device A,
//!    another idles on B's INBOX; lag is from A's tagged OK (the commit is
//!    durable) to B's `* n EXISTS`, at 0, 20 and 80 ms one-way delay
//!    (p50/p99 over 40 probes). Both clients talk implicit TLS to the
//!    devices' addresses inside their namespaces.
//! 2. Catch-up of 10,000 messages of mixed sizes to a fresh device over a
//!    20 ms, 100 Mbit/s link: messages/s and MB/s against the link's rate.
//!
//! Needs root and iproute2 (it says so and exits 0 otherwise). `-- lag` or
//! `-- catch-up` runs one part. The lag part also prints where the time goes,
//! from the daemons' `roost::lag` stage timestamps (p50 per step).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use roost::netlab::{self, Netns, NsDevice};
use roost::wan::{LinkParams, WanEmulator};
use roost_core::model::UserName;
use roost_core::store::{AppendMessage, Store};

fn roost_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_roost"))
}

const LOCAL: [&str; 6] =
    ["--listen-imap", "127.0.0.1:0", "--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0"];

/// Port of IMAP over TLS on each device's namespace address (the lag probe's clients).
const IMAPS_PORT: u16 = 9993;
const PASSWORD: &str = "bench-password";

fn alice() -> UserName {
    UserName::new("alice").expect("valid name")
}

struct Pair {
    a: NsDevice,
    b: NsDevice,
    _to_a: WanEmulator,
    _to_b: WanEmulator,
}

async fn lab(root: &Path, link: LinkParams, tag: u8, populate: impl FnOnce(&NsDevice) -> Result<()>) -> Result<Pair> {
    let ns_a = Netns::new(&format!("a{tag}"), 2 * tag + 1)?;
    let ns_b = Netns::new(&format!("b{tag}"), 2 * tag + 2)?;
    let to_a = WanEmulator::start(format!("{}:0", ns_b.root_ip()).parse()?, ns_a.sync_addr(), link, 1).await?;
    let to_b = WanEmulator::start(format!("{}:0", ns_a.root_ip()).parse()?, ns_b.sync_addr(), link, 2).await?;
    let mut a = NsDevice::init(roost_bin(), root.join(format!("a{tag}")), ns_a)?;
    let mut b = NsDevice::init(roost_bin(), root.join(format!("b{tag}")), ns_b)?;
    let hash = roost_core::auth::hash_password(PASSWORD, &mut rand::rngs::OsRng);
    a.store()?.write(roost::cli::now_ms(), |w| w.add_user(&alice(), &hash))?;
    populate(&a)?;
    for (device, advertise) in [(&mut a, to_a.addr()), (&mut b, to_b.addr())] {
        let imaps = format!("{}:{IMAPS_PORT}", device.ns.inner_ip());
        let mut args: Vec<&str> = LOCAL.to_vec();
        args[3] = &imaps;
        device.start(roost_bin(), advertise, &args)?;
    }
    Ok(Pair { a, b, _to_a: to_a, _to_b: to_b })
}

fn inbox_len(store: &Store) -> Result<usize> {
    Ok(match store.mailbox_by_name(&alice(), "INBOX")? {
        Some(inbox) => store.entries(inbox.id)?.len(),
        None => 0,
    })
}

type Imap = async_imap::Session<TlsStream<TcpStream>>;

/// An IMAP session over TLS to the device's namespace address, trusting the
/// self-signed certificate the daemon made in its data directory.
async fn imap_login(device: &NsDevice) -> Result<Imap> {
    let pem = std::fs::read(device.dir.join(roost::imap::tls::SELF_SIGNED_CERT_FILE))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect((device.ns.inner_ip().as_str(), IMAPS_PORT)).await?;
    tcp.set_nodelay(true)?;
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, tcp).await?;
    let mut client = async_imap::Client::new(tls);
    client.read_response().await?.context("no greeting")?;
    client.login("alice", PASSWORD).await.map_err(|(e, _)| e).context("login")
}

async fn lag(root: &Path, delay_ms: u64, tag: u8) -> Result<()> {
    use async_imap::extensions::idle::IdleResponse;
    use async_imap::imap_proto::{MailboxDatum, Response};
    const PROBES: usize = 40;
    let link = LinkParams { delay: Duration::from_millis(delay_ms), ..LinkParams::ideal() };
    let pair = lab(root, link, tag, |_| Ok(())).await?;
    netlab::pair(roost_bin(), &pair.a, &pair.b)?;
    let b_store = pair.b.store()?;
    let started = Instant::now();
    while !b_store.user_exists(&alice())? {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "b never got the user");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // B's client idles and timestamps every EXISTS as it arrives.
    let mut on_b = imap_login(&pair.b).await?;
    on_b.select("INBOX").await?;
    let mut idle = on_b.idle();
    idle.init().await?;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(u32, Instant, SystemTime)>();
    let idler = tokio::spawn(async move {
        loop {
            let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(60));
            match wait.await {
                Ok(IdleResponse::NewData(data)) => {
                    if let Response::MailboxData(MailboxDatum::Exists(n)) = data.parsed() {
                        if seen_tx.send((*n, Instant::now(), SystemTime::now())).is_err() {
                            return;
                        }
                    }
                }
                _ => return,
            }
        }
    });
    let mut on_a = imap_login(&pair.a).await?;
    let (mut lags, mut appends, mut windows) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PROBES {
        let (sent, sent_wall) = (Instant::now(), SystemTime::now());
        on_a.append("INBOX", None, None, format!("Subject: probe {i}\r\n\r\nbody\r\n")).await?;
        let (acknowledged, acknowledged_wall) = (Instant::now(), SystemTime::now());
        appends.push(acknowledged - sent);
        loop {
            let (n, at, at_wall) = tokio::time::timeout(Duration::from_secs(60), seen.recv())
                .await
                .with_context(|| format!("probe {i} never reached b's IDLE"))?
                .context("b's IDLE client stopped")?;
            if n as usize == i + 1 {
                // B may hear it before A's OK reaches us: that counts as 0.
                lags.push(at.saturating_duration_since(acknowledged));
                windows.push(ProbeWindow {
                    start: micros(sent_wall),
                    ok: micros(acknowledged_wall),
                    exists: micros(at_wall),
                });
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    idler.abort();
    let _ = on_a.logout().await;
    lags.sort();
    appends.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "lag  one-way {delay_ms:>3} ms: p50 {:>6.1} ms  p99 {:>6.1} ms  (target p50 <= {} ms; APPEND round trip on a p50 {:.1} ms)",
        ms(lags[PROBES / 2]),
        ms(lags[PROBES * 99 / 100]),
        delay_ms + 5,
        ms(appends[PROBES / 2]),
    );
    let a_log = pair.a.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let b_log = pair.b.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    print_stages(&windows, &parse_stages(&a_log), &parse_stages(&b_log));
    Ok(())
}

/// One probe's wall-clock times in microseconds: APPEND sent, its OK, B's EXISTS.
struct ProbeWindow {
    start: i64,
    ok: i64,
    exists: i64,
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The `lag-stage NAME AT_US EVENTS` lines a daemon logged (target
/// `roost::lag`, appliance/src/sync/session.rs).
fn parse_stages(log: &str) -> Vec<(String, i64, u64)> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("lag-stage ")? + "lag-stage ".len()..];
            let mut fields = rest.split_whitespace();
            let (stage, at, events) = (fields.next()?, fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
            Some((stage.to_string(), at, events))
        })
        .collect()
}

/// Where a probe's lag goes: per step of the path, the p50 over probes of the
/// time from the previous step (A's commit noticed by its sender, events read,
/// frame written, B's frame read, blobs durable, events committed, EXISTS at
/// the client), each step taken as the first such line in the probe's window.
fn print_stages(windows: &[ProbeWindow], a: &[(String, i64, u64)], b: &[(String, i64, u64)]) {
    const STEPS: [(&str, bool); 6] = [
        ("feed", true),
        ("read", true),
        ("sent", true),
        ("received", false),
        ("blobs-durable", false),
        ("committed", false),
    ];
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len() + 1];
    let mut ok_after_feed = Vec::new();
    for w in windows {
        let at: Option<Vec<i64>> = STEPS
            .iter()
            .map(|(name, on_a)| {
                let log = if *on_a { a } else { b };
                log.iter()
                    .find(|(stage, at, events)| {
                        stage == name && (*events > 0 || *name == "feed") && w.start <= *at && *at <= w.exists
                    })
                    .map(|(_, at, _)| *at)
            })
            .collect();
        let Some(mut at) = at else { continue };
        at.push(w.exists);
        for (i, pair) in at.windows(2).enumerate() {
            steps[i + 1].push((pair[1] - pair[0]) as f64 / 1000.0);
        }
        ok_after_feed.push((w.ok - at[0]) as f64 / 1000.0);
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let names = [
        "a: sender woken",
        "a: events read",
        "a: frame written",
        "b: frame read",
        "b: blobs durable",
        "b: committed",
        "b: IDLE client got EXISTS",
    ];
    let mut line = format!("     stages over {} probes, p50 ms from the previous step:", ok_after_feed.len());
    for (i, name) in names.iter().enumerate().skip(1) {
        line.push_str(&format!(" {name} +{:.1};", p50(&mut steps[i])));
    }
    println!("{line} (a's OK reached the client {:.1} ms after its sender woke)", p50(&mut ok_after_feed));
}

fn message(i: usize) -> Vec<u8> {
    // 70% about 4 KB, 25% about 40 KB, 5% about 400 KB: a mailbox with attachments.
    let size = match i % 20 {
        0 => 400_000,
        1..=5 => 40_000,
        _ => 4_000,
    };
    let mut raw = format!("Subject: message {i}\r\nMessage-ID: <{i}@bench>\r\n\r\n").into_bytes();
    let line = format!("{i:>10} lorem ipsum dolor sit amet consectetur adipiscing elit\r\n");
    while raw.len() < size {
        raw.extend_from_slice(line.as_bytes());
    }
    raw
}

async fn catch_up(root: &Path, tag: u8) -> Result<()> {
    const MESSAGES: usize = 10_000;
    const RATE: u64 = 12_500_000; // 100 Mbit/s
    let link = LinkParams { delay: Duration::from_millis(20), rate_bytes_per_s: Some(RATE), ..LinkParams::ideal() };
    let mut total_bytes = 0u64;
    let pair = lab(root, link, tag, |a| {
        let mut store = a.store()?;
        for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(500) {
            let raws: Vec<Vec<u8>> = chunk.iter().map(|i| message(*i)).collect();
            total_bytes += raws.iter().map(|r| r.len() as u64).sum::<u64>();
            store.write(roost::cli::now_ms(), |w| {
                let inbox = w.mailbox(&alice(), "INBOX")?;
                let batch: Vec<AppendMessage<'_>> =
                    raws.iter().map(|raw| AppendMessage { raw, flags: vec![], internal_date: 1 }).collect();
                w.append(inbox, &batch)
            })?;
        }
        Ok(())
    })
    .await?;
    let started = Instant::now();
    netlab::pair(roost_bin(), &pair.a, &pair.b)?;
    let b_store = pair.b.store()?;
    while inbox_len(&b_store)? < MESSAGES {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "catch-up did not finish in 15 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let mb_s = total_bytes as f64 / secs / 1e6;
    println!(
        "catch-up of {MESSAGES} messages ({:.0} MB) over 20 ms / 100 Mbit/s: {secs:.1} s, {:.0} messages/s, {mb_s:.1} MB/s = {:.0}% of the link",
        total_bytes as f64 / 1e6,
        MESSAGES as f64 / secs,
        100.0 * mb_s * 1e6 / RATE as f64
    );
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test --benches` asks for a list.
    }
    if !netlab::available() {
        println!("sync bench: needs root and iproute2 for network namespaces; skipped");
        return Ok(());
    }
    // `cargo bench -p roost --bench sync -- lag` (or `catch-up`) runs one part.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let root = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        if runs("lag") {
            for (tag, delay) in [0u64, 20, 80].into_iter().enumerate() {
                lag(root.path(), delay, tag as u8).await?;
            }
        }
        if runs("catch-up") {
            catch_up(root.path(), 3).await?;
        }
        Ok(())
    })
}
