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
//! Needs root and iproute2 (it says so and exits 0 otherwise).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(u32, Instant)>();
    let idler = tokio::spawn(async move {
        loop {
            let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(60));
            match wait.await {
                Ok(IdleResponse::NewData(data)) => {
                    if let Response::MailboxData(MailboxDatum::Exists(n)) = data.parsed() {
                        if seen_tx.send((*n, Instant::now())).is_err() {
                            return;
                        }
                    }
                }
                _ => return,
            }
        }
    });
    let mut on_a = imap_login(&pair.a).await?;
    let (mut lags, mut appends) = (Vec::new(), Vec::new());
    for i in 0..PROBES {
        let sent = Instant::now();
        on_a.append("INBOX", None, None, format!("Subject: probe {i}\r\n\r\nbody\r\n")).await?;
        let acknowledged = Instant::now();
        appends.push(acknowledged - sent);
        loop {
            let (n, at) = tokio::time::timeout(Duration::from_secs(60), seen.recv())
                .await
                .with_context(|| format!("probe {i} never reached b's IDLE"))?
                .context("b's IDLE client stopped")?;
            if n as usize == i + 1 {
                // B may hear it before A's OK reaches us: that counts as 0.
                lags.push(at.saturating_duration_since(acknowledged));
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
    Ok(())
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
    let root = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        for (tag, delay) in [0u64, 20, 80].into_iter().enumerate() {
            lag(root.path(), delay, tag as u8).await?;
        }
        catch_up(root.path(), 3).await
    })
}
