//! Device-to-device sync between real `roost serve` processes over loopback
//! QUIC (iroh, relays and discovery off): pairing through the CLI, changes on
//! one device reaching the other both ways, catch-up after a daemon was down,
//! relaying A -> B -> C, refusal of unpaired and removed devices, and a
//! device restored from a backup rejoining without reusing its event ids.
//!
//! Most changes are made by this test process writing to a device's store
//! directly (SQLite allows it while the daemon runs); the daemon's sender
//! notices them by its poll, the same path as `roost user add` while the daemon
//! runs. `imap_idle_on_one_daemon_sees_changes_made_over_imap_on_the_other`
//! goes through the daemons' IMAP servers with a real client instead.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use roost_core::model::{Flag, UserName};
use roost_core::store::{AppendMessage, FlagChange, SpooledBlob, Store, StoreMode};
use support::{roost, wait_for, Listen, Serve};

mod support;

struct Device {
    dir: PathBuf,
    daemon: Option<Serve>,
}

impl Device {
    fn new(root: &Path, name: &str) -> Device {
        let dir = root.join(name);
        support::init(&dir);
        let mut device = Device { dir, daemon: None };
        device.start();
        device
    }

    fn start(&mut self) {
        self.start_with_sync("127.0.0.1:0");
    }

    /// Starts the daemon with its sync endpoint on `sync_listen` (a fixed
    /// port lets two devices that both restarted find each other again).
    fn start_with_sync(&mut self, sync_listen: &str) {
        self.daemon = Some(Serve::start(&self.dir, None, Listen { sync: sync_listen, ..Listen::default() }));
    }

    fn stop(&mut self) {
        self.daemon = None;
    }

    fn store(&self) -> Store {
        let secret = roost::device::load_key(&self.dir).unwrap();
        Store::open(&self.dir, secret).unwrap()
    }

    /// The log of the daemon's current run (addresses are read from it).
    fn log(&self) -> String {
        self.daemon.as_ref().map(Serve::log).unwrap_or_default()
    }
}

fn pair(inviter: &Device, joiner: &Device) {
    let ticket = support::invite(&inviter.dir);
    let out = roost(&joiner.dir, &["pair", "join", &ticket]);
    assert!(out.status.success(), "join failed: {}", String::from_utf8_lossy(&out.stderr));
    // The same ticket a second time is refused by the inviter.
    let out = roost(&joiner.dir, &["pair", "join", &ticket]);
    assert!(!out.status.success());
}

fn alice() -> UserName {
    UserName::new("alice").unwrap()
}

fn append(device: &Device, subject: &str) {
    let raw = format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes();
    device
        .store()
        .write(roost::cli::now_ms(), |w| {
            let inbox = w.mailbox(&alice(), "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
        })
        .unwrap();
}

fn subjects(device: &Device) -> Vec<String> {
    let store = device.store();
    let Some(inbox) = store.mailbox_by_name(&alice(), "INBOX").unwrap() else { return Vec::new() };
    let mut out: Vec<String> = store
        .entries(inbox.id)
        .unwrap()
        .iter()
        .map(|e| {
            let raw = store.message(&e.blob).unwrap();
            String::from_utf8_lossy(&raw).lines().next().unwrap_or_default().to_string()
        })
        .collect();
    out.sort();
    out
}

fn digest(device: &Device) -> [u8; 32] {
    device.store().state_digest().unwrap().combined()
}

#[test]
fn two_daemons_pair_sync_both_ways_and_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");
    let mut b = Device::new(root.path(), "b");
    pair(&a, &b);
    // The joiner took a free slot, so the two never assign the same UID.
    assert_ne!(a.store().identity().slot(), b.store().identity().slot());

    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), "hash")).unwrap();
    append(&a, "from a");
    wait_for("b to get a's message", || subjects(&b) == ["Subject: from a"]);

    append(&b, "from b");
    wait_for("a to get b's message", || subjects(&a).len() == 2);

    // Flags and expunges travel too.
    {
        let store = b.store();
        let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
        let first = store.entries(inbox.id).unwrap()[0].entry_id;
        drop(store);
        b.store()
            .write(roost::cli::now_ms(), |w| {
                w.store_flags(
                    inbox.id,
                    &[first],
                    &roost_core::store::FlagChange {
                        mode: roost_core::store::StoreMode::Add,
                        flags: vec![Flag::seen()],
                    },
                )
            })
            .unwrap();
    }
    wait_for("a and b to converge after a flag change", || digest(&a) == digest(&b));

    // B goes down; both sides change; B comes back and they converge.
    b.stop();
    append(&a, "while b was down");
    append(&b, "b offline");
    b.start();
    wait_for("convergence after b's restart", || subjects(&a).len() == 4 && digest(&a) == digest(&b));
    for device in [&a, &b] {
        let report = device.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    let list = String::from_utf8(roost(&a.dir, &["pair", "list"]).stdout).unwrap();
    assert!(list.contains("slot 1"), "{list}");
    // `roost status` (another process) shows the peer connected and caught up.
    wait_for("status to show b connected and caught up", || {
        let status = String::from_utf8(roost(&a.dir, &["status"]).stdout).unwrap();
        status.contains(": connected; it lacks 0 events, we lack 0;")
    });
}

/// A crash right after an ingest committed leaves its small blobs in the blob
/// spool (core/src/store/spool.rs): readable from there, and moved to the
/// blob store when the daemon starts again.
#[test]
fn blobs_a_crash_left_in_the_spool_are_moved_when_the_daemon_starts() {
    let root = tempfile::tempdir().unwrap();
    let mut b = Device::new(root.path(), "b");
    b.stop();
    // Another device's message, ingested the way the sync receiver does.
    let now = roost::cli::now_ms();
    let slot = roost_core::model::DeviceSlot::new(1).unwrap();
    let mut origin = Store::init(&root.path().join("origin"), [9; 32], slot, now).unwrap();
    origin.write(now, |w| w.add_user(&alice(), "hash")).unwrap();
    let raw = b"Subject: spooled\r\n\r\nbody\r\n".to_vec();
    origin
        .write(now, |w| {
            let inbox = w.mailbox(&alice(), "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
        })
        .unwrap();
    let events = origin.events_missing(&Default::default(), 100).unwrap();
    let hash = events.iter().flat_map(|e| e.op.blobs()).next().unwrap();
    let data = origin.message(&hash).unwrap();
    b.store().ingest_spooled(now, &events, &[SpooledBlob { hash, data }]).unwrap();
    assert!(!b.store().blobs().contains(&hash));
    assert_eq!(subjects(&b), ["Subject: spooled"], "a spooled blob reads from the spool");

    b.start();
    wait_for("the daemon to move the spooled blob", || b.store().spooled_blob(&hash).unwrap().is_none());
    assert!(b.store().blobs().contains(&hash));
    assert_eq!(subjects(&b), ["Subject: spooled"]);
    assert!(b.store().verify().unwrap().problems.is_empty());
}

#[test]
fn relay_through_a_middle_device_and_refusals() {
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");
    let b = Device::new(root.path(), "b");
    let c = Device::new(root.path(), "c");
    // A - B - C: A and C are not paired with each other.
    pair(&a, &b);
    pair(&b, &c);
    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), "hash")).unwrap();
    append(&a, "relayed");
    wait_for("c to get a's message through b", || subjects(&c) == ["Subject: relayed"]);
    assert!(a.store().peers().unwrap().iter().all(|p| p.device_id != c.store().identity().id()));

    // C learns A's address (as if it had been told) but A never paired C: refused.
    let a_addrs = roost::sync::read_addrs_file(&a.dir).unwrap();
    let a_id = a.store().identity().id();
    c.store()
        .add_peer(a_id, "a", roost_core::model::DeviceSlot::new(0).unwrap(), &[a_addrs[0].to_string()], 1)
        .unwrap();
    wait_for("a to refuse c", || a.log().contains("refused a sync connection from a device that is not paired"));

    // B removes C: C is refused from then on and gets nothing new.
    let c_id = c.store().identity().id().to_string();
    let out = roost(&b.dir, &["pair", "remove", &c_id[..12]]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refusals_before = b.log().matches("not paired").count();
    append(&a, "after removal");
    wait_for("b to get the new message", || subjects(&b).len() == 2);
    wait_for("b to refuse c", || b.log().matches("not paired").count() > refusals_before);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(subjects(&c), ["Subject: relayed"], "a removed peer must not get new events");
}

/// The plaintext IMAP address the daemon's last start logged (it binds port 0).
fn imap_addr(device: &Device) -> SocketAddr {
    logged_addr(device, &["IMAP listening", "Plain"])
}

/// The address on the last log line that contains every one of `needles`.
fn logged_addr(device: &Device, needles: &[&str]) -> SocketAddr {
    let mut found = None;
    wait_for(&format!("the daemon to log {needles:?}"), || {
        found = device
            .log()
            .lines()
            .rev()
            .map(strip_ansi)
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")?.parse().ok()));
        found.is_some()
    });
    found.unwrap()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip up to and including the final letter of the escape sequence.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const PASSWORD: &str = "secret";

/// Two paired daemons `a` and `b`; alice (password `PASSWORD`), added on
/// `a`, has reached `b`.
fn paired_with_alice(root: &Path) -> (Device, Device) {
    let a = Device::new(root, "a");
    let b = Device::new(root, "b");
    pair(&a, &b);
    let hash = roost_core::auth::hash_password(PASSWORD, &mut rand::rngs::OsRng);
    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), &hash)).unwrap();
    wait_for("b to get the user", || b.store().user_exists(&alice()).unwrap());
    (a, b)
}

async fn imap_login(addr: SocketAddr) -> async_imap::Session<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut client = async_imap::Client::new(stream);
    client.read_response().await.unwrap().unwrap(); // greeting
    client.login("alice", PASSWORD).await.map_err(|(e, _)| e).unwrap()
}

/// Waits in IDLE until a pushed response's parsed form contains `needle`;
/// returns every response seen, for the failure message.
async fn idle_until(
    idle: &mut async_imap::extensions::idle::Handle<tokio::net::TcpStream>,
    needle: &str,
) -> Vec<String> {
    use async_imap::extensions::idle::IdleResponse;
    let mut seen = Vec::new();
    loop {
        let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(20));
        match wait.await.unwrap() {
            IdleResponse::NewData(data) => {
                let text = format!("{:?}", data.parsed());
                let done = text.contains(needle);
                seen.push(text);
                if done {
                    return seen;
                }
            }
            other => panic!("waiting for {needle} in IDLE: got {other:?} after {seen:?}"),
        }
    }
}

#[test]
fn imap_idle_on_one_daemon_sees_changes_made_over_imap_on_the_other() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = paired_with_alice(root.path());
    let (a_imap, b_imap) = (imap_addr(&a), imap_addr(&b));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut on_b = imap_login(b_imap).await;
        on_b.select("INBOX").await.unwrap();
        let mut idle_b = on_b.idle();
        idle_b.init().await.unwrap();

        // APPEND on A: B's IDLE client hears EXISTS.
        let mut on_a = imap_login(a_imap).await;
        let started = Instant::now();
        on_a.append("INBOX", None, None, "Subject: over sync\r\n\r\nhi\r\n").await.unwrap();
        idle_until(&mut idle_b, "Exists(1)").await;
        println!("APPEND on a to EXISTS in b's IDLE: {:?}", started.elapsed());

        // A flag set on A: FETCH with the flag on B.
        on_a.select("INBOX").await.unwrap();
        on_a.run_command_and_check_ok("STORE 1 +FLAGS (\\Flagged)").await.unwrap();
        let seen = idle_until(&mut idle_b, "Flagged").await;
        assert!(seen.last().unwrap().contains("Fetch"), "{seen:?}");

        // An expunge on A: EXPUNGE on B (this client did not enable QRESYNC).
        on_a.run_command_and_check_ok("STORE 1 +FLAGS (\\Deleted)").await.unwrap();
        on_a.run_command_and_check_ok("EXPUNGE").await.unwrap();
        idle_until(&mut idle_b, "Expunge(1)").await;
        let mut on_b = idle_b.done().await.unwrap();

        // The other way: A idles, B appends and flags.
        let mut idle_a = on_a.idle();
        idle_a.init().await.unwrap();
        on_b.append("INBOX", None, None, "Subject: from b\r\n\r\nhi\r\n").await.unwrap();
        idle_until(&mut idle_a, "Exists(1)").await;
        on_b.run_command_and_check_ok("STORE 1 +FLAGS (\\Seen)").await.unwrap();
        let seen = idle_until(&mut idle_a, "Seen").await;
        assert!(seen.last().unwrap().contains("Fetch"), "{seen:?}");
        let mut on_a = idle_a.done().await.unwrap();
        on_a.logout().await.unwrap();
        on_b.logout().await.unwrap();
    });
    wait_for("a and b to converge", || digest(&a) == digest(&b));
}

/// Peak resident memory (VmHWM) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_large_message_streams_between_daemons_without_being_held_in_memory() {
    const SIZE: usize = 40 * 1024 * 1024;
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");
    let b = Device::new(root.path(), "b");
    pair(&a, &b);
    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), "hash")).unwrap();
    append(&a, "small first");
    wait_for("b to get the first message", || subjects(&b).len() == 1);
    let (a_pid, b_pid) = (a.daemon.as_ref().unwrap().id(), b.daemon.as_ref().unwrap().id());
    let (a_before, b_before) = (peak_rss(a_pid), peak_rss(b_pid));

    let mut raw = b"Subject: large\r\n\r\n".to_vec();
    let line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n";
    while raw.len() < SIZE {
        raw.extend_from_slice(line);
    }
    let (hash, size) = (roost_core::model::BlobHash::of(&raw), raw.len());
    a.store()
        .write(roost::cli::now_ms(), |w| {
            let inbox = w.mailbox(&alice(), "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
        })
        .unwrap();
    drop(raw);
    wait_for("b to get the large message", || subjects(&b).len() == 2);
    assert_eq!(b.store().message(&hash).unwrap().len(), size);
    let (a_grew, b_grew) = (peak_rss(a_pid) - a_before, peak_rss(b_pid) - b_before);
    println!(
        "peak RSS growth while a 40 MiB message replicated: sender {} KiB, receiver {} KiB",
        a_grew / 1024,
        b_grew / 1024
    );
    // Whole in memory it would be 40 MiB at least (more with copies).
    assert!(b_grew < 16 << 20, "the receiver's peak RSS grew by {b_grew} bytes");
    assert!(a_grew < 16 << 20, "the sender's peak RSS grew by {a_grew} bytes");
    wait_for("a and b to converge", || digest(&a) == digest(&b));
}

/// A free UDP port on loopback, for a sync endpoint that keeps its address
/// across restarts.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every event of a device by id; a log holding one id twice fails here.
fn event_log(device: &Device) -> std::collections::BTreeMap<roost_core::model::EventId, roost_core::log::Event> {
    let events = device.store().events_missing(&roost_core::log::VersionVector::default(), 1_000_000).unwrap();
    let n = events.len();
    let by_id: std::collections::BTreeMap<_, _> = events.into_iter().map(|e| (e.id, e)).collect();
    assert_eq!(by_id.len(), n, "an event id appears twice in the log");
    by_id
}

/// One LMTP transaction to alice; returns the reply to RCPT TO.
fn lmtp_rcpt(addr: SocketAddr) -> String {
    use std::io::Write;
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut reply = || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line
    };
    assert!(reply().starts_with("220"));
    writer.write_all(b"LHLO test\r\n").unwrap();
    while reply().starts_with("250-") {}
    writer.write_all(b"MAIL FROM:<a@example.org>\r\n").unwrap();
    assert!(reply().starts_with("250"));
    writer.write_all(b"RCPT TO:<alice@example.org>\r\n").unwrap();
    let rcpt = reply();
    writer.write_all(b"QUIT\r\n").unwrap();
    rcpt
}

// Issue 8, rejoin: A and B are paired; A is backed up; A then changes things
// over IMAP (APPEND, STORE) that reach B; A is wiped and restored from the
// backup. Started without B, the restored A serves reads but refuses changes
// (IMAP NO [UNAVAILABLE], LMTP 451, a store write from another process), also
// after a restart (the mark is durable). With B back it takes its own events
// from B: both logs are then the same events, no id twice; a new APPEND on A
// continues A's seq, replicates to B, and both digests match.
#[test]
fn a_restored_device_takes_its_own_events_back_before_it_writes_again() {
    let root = tempfile::tempdir().unwrap();
    let (a_sync, b_sync) = (format!("127.0.0.1:{}", free_udp_port()), format!("127.0.0.1:{}", free_udp_port()));
    let mut a = Device::new(root.path(), "a");
    let mut b = Device::new(root.path(), "b");
    for (device, sync) in [(&mut a, &a_sync), (&mut b, &b_sync)] {
        device.stop();
        device.start_with_sync(sync);
    }
    pair(&a, &b);
    let hash = roost_core::auth::hash_password(PASSWORD, &mut rand::rngs::OsRng);
    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), &hash)).unwrap();
    append(&a, "before the backup");
    wait_for("b to get a's first message", || subjects(&b).len() == 1);

    let identity = root.path().join("backup-identity.txt");
    let out = roost(&a.dir, &["backup", "keygen", "--out", identity.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keygen = String::from_utf8(out.stdout).unwrap();
    let recipient = keygen.lines().find_map(|l| l.strip_prefix("recipient = ")).unwrap().trim_matches('"');
    let backup = root.path().join("a.age");
    let out = roost(&a.dir, &["backup", "--to", backup.to_str().unwrap(), "--recipient", recipient]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // After the backup: changes on A over IMAP, which reach B.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut on_a = imap_login(imap_addr(&a)).await;
        on_a.append("INBOX", None, None, "Subject: after the backup 1\r\n\r\nhi\r\n").await.unwrap();
        on_a.append("INBOX", None, None, "Subject: after the backup 2\r\n\r\nhi\r\n").await.unwrap();
        on_a.select("INBOX").await.unwrap();
        on_a.run_command_and_check_ok("STORE 1:2 +FLAGS (\\Flagged)").await.unwrap();
        on_a.logout().await.unwrap();
    });
    wait_for("b to converge with a", || subjects(&b).len() == 3 && digest(&a) == digest(&b));
    let a_id = a.store().identity().id();
    let a_seq = a.store().version_vector().unwrap().get(&a_id);
    let log_before = event_log(&a);

    // A is lost and restored from the backup while B is down.
    a.stop();
    b.stop();
    std::fs::remove_dir_all(&a.dir).unwrap();
    let out = roost(&a.dir, &["restore", backup.to_str().unwrap(), "--identity", identity.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("refuses changes (IMAP NO [UNAVAILABLE], LMTP 451) until then"), "{said}");
    assert!(a.store().version_vector().unwrap().get(&a_id) < a_seq, "the backup predates A's last events");
    // `--standalone` (the owner says no peer holds newer changes) skips the wait, with a warning.
    let elsewhere = root.path().join("a-standalone");
    let args = ["restore", backup.to_str().unwrap(), "--identity", identity.to_str().unwrap(), "--standalone"];
    let out = roost(&elsewhere, &args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING: restored with --standalone"), "{out:?}");
    let secret = roost::device::load_key(&elsewhere).unwrap();
    assert_eq!(Store::open(&elsewhere, secret).unwrap().rejoin_state().unwrap(), None);

    for _restart in 0..2 {
        a.start_with_sync(&a_sync);
        wait_for("a to log that it waits", || a.log().contains("restored from a backup: changes are refused"));
        runtime.block_on(async {
            let mut on_a = imap_login(imap_addr(&a)).await;
            on_a.select("INBOX").await.unwrap();
            // Reads work (a body fetch just does not set \Seen) ...
            on_a.run_command_and_check_ok("FETCH 1 BODY[]").await.unwrap();
            // ... changes are refused with the documented temporary code.
            let err = on_a.append("INBOX", None, None, "Subject: too early\r\n\r\nhi\r\n").await.unwrap_err();
            assert!(format!("{err:?}").contains("[UNAVAILABLE] This device was restored from a backup"), "{err:?}");
            let err = on_a.run_command_and_check_ok("STORE 1 +FLAGS (\\Seen)").await.unwrap_err();
            assert!(format!("{err:?}").contains("UNAVAILABLE"), "{err:?}");
            on_a.logout().await.unwrap();
        });
        let reply = lmtp_rcpt(logged_addr(&a, &["LMTP listening"]));
        assert!(reply.starts_with("451 4.3.0 restored device catching up"), "{reply}");
        let err = a.store().write(roost::cli::now_ms(), |w| w.subscribe(&alice(), "Later", true)).unwrap_err();
        assert!(matches!(err, roost_core::store::StoreError::Rejoining), "{err}");
        assert_eq!(subjects(&a), ["Subject: before the backup"]);
        let status = String::from_utf8(roost(&a.dir, &["status"]).stdout).unwrap();
        assert!(status.contains("rejoining       restored from a backup"), "{status}");
        a.stop();
    }

    // B comes back: A takes its own events back and rejoins.
    a.start_with_sync(&a_sync);
    b.start_with_sync(&b_sync);
    wait_for("a to rejoin", || a.store().rejoin_state().unwrap().is_none());
    assert!(a.log().contains("restored device rejoined"), "{}", a.log());
    assert_eq!(a.store().version_vector().unwrap().get(&a_id), a_seq);
    wait_for("a and b to converge after the rejoin", || digest(&a) == digest(&b));
    let log_after = event_log(&a);
    assert_eq!(log_after, event_log(&b), "a and b hold the same events");
    for (id, event) in &log_before {
        assert_eq!(log_after.get(id), Some(event), "event {id:?} came back unchanged");
    }

    // A writes again, continuing its own seq; B gets it.
    runtime.block_on(async {
        let mut on_a = imap_login(imap_addr(&a)).await;
        on_a.append("INBOX", None, None, "Subject: after the rejoin\r\n\r\nhi\r\n").await.unwrap();
        on_a.logout().await.unwrap();
    });
    assert_eq!(a.store().version_vector().unwrap().get(&a_id), a_seq + 1);
    wait_for("b to get the message a made after its rejoin", || subjects(&b).len() == 4);
    wait_for("a and b to converge at the end", || digest(&a) == digest(&b));
    assert_eq!(event_log(&a), event_log(&b));
    for device in [&a, &b] {
        let report = device.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}

#[test]
fn compaction_while_a_peer_is_down_keeps_everything_it_brings_back() {
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");
    let mut b = Device::new(root.path(), "b");
    pair(&a, &b);
    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), "hash")).unwrap();
    append(&a, "first");
    wait_for("b to get a's message", || subjects(&b) == ["Subject: first"]);
    append(&b, "from b");
    wait_for("a and b to converge", || subjects(&a).len() == 2 && digest(&a) == digest(&b));
    // What b acknowledged is what a may fold: wait until a recorded all of it.
    wait_for_acks_of_everything(&a);
    b.stop();
    append(&a, "while b was down");
    // `roost compact` while a's daemon runs (another process, like `verify`).
    let out = roost(&a.dir, &["compact"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1 events left in the log") && !text.contains("folded 0 "), "{text}");
    append(&b, "b offline");
    b.start();
    wait_for("convergence after b's restart", || subjects(&a).len() == 4 && digest(&a) == digest(&b));
    for device in [&a, &b] {
        let report = device.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    assert!(a.store().verify().unwrap().folded > 0);
    assert!(subjects(&a).contains(&"Subject: b offline".to_string()));
}

/// Waits until `device` recorded that some peer acknowledged everything it has.
fn wait_for_acks_of_everything(device: &Device) {
    wait_for("the peer's acknowledgement of everything", || {
        let store = device.store();
        let mine = store.version_vector().unwrap();
        store.peers().unwrap().iter().any(|p| p.stats.acked == mine)
    });
}

#[test]
fn a_device_paired_after_compaction_gets_everything_through_the_snapshot() {
    use futures::TryStreamExt;
    let root = tempfile::tempdir().unwrap();
    let (a, b) = paired_with_alice(root.path());
    append(&a, "first");
    wait_for("b to get a's message", || subjects(&b) == ["Subject: first"]);
    append(&b, "second");
    // A mailbox with mail in it, deleted later; a flag on the first message.
    b.store()
        .write(roost::cli::now_ms(), |w| {
            let old = w.create_mailbox(&alice(), "Old", None)?;
            w.append(old, &[AppendMessage { raw: b"Subject: old\r\n\r\nold\r\n", flags: vec![], internal_date: 1 }])
        })
        .unwrap();
    wait_for("a and b to converge", || subjects(&a).len() == 2 && digest(&a) == digest(&b));
    let first = a.store().mailbox_by_name(&alice(), "INBOX").unwrap().unwrap();
    let first_entry = a.store().entries(first.id).unwrap()[0].entry_id;
    a.store()
        .write(roost::cli::now_ms(), |w| {
            let change = FlagChange { mode: StoreMode::Add, flags: vec![Flag::flagged()] };
            w.store_flags(first.id, &[first_entry], &change)?;
            w.delete_mailbox(&alice(), "Old")
        })
        .unwrap();
    wait_for("a and b to converge again", || digest(&a) == digest(&b));
    wait_for_acks_of_everything(&a);
    wait_for_acks_of_everything(&b);
    for device in [&a, &b] {
        let out = roost(&device.dir, &["compact"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("0 events left in the log"), "{text}");
    }
    append(&a, "after the compaction");
    wait_for("b to get it", || subjects(&b).len() == 3);

    // A fresh third device, paired with A only, a long time later.
    let c = Device::new(root.path(), "c");
    pair(&a, &c);
    wait_for("c to install a's snapshot and catch up", || subjects(&c).len() == 3 && digest(&c) == digest(&a));
    assert!(c.log().contains("installed the peer's log snapshot"), "{}", c.log());
    assert!(c.store().snapshot_vector().unwrap().total() > 0);
    let report = c.store().verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let names: Vec<String> = c.store().mailboxes(&alice()).unwrap().into_iter().map(|m| m.name).collect();
    assert!(names.contains(&"INBOX".to_string()) && !names.contains(&"Old".to_string()), "{names:?}");

    // Bodies and flags over IMAP on C.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut session = imap_login(imap_addr(&c)).await;
        session.select("INBOX").await.unwrap();
        let fetches: Vec<_> =
            session.uid_fetch("1:*", "(FLAGS BODY.PEEK[])").await.unwrap().try_collect().await.unwrap();
        let mut bodies: Vec<String> =
            fetches.iter().map(|f| String::from_utf8_lossy(f.body().unwrap()).into_owned()).collect();
        bodies.sort();
        assert_eq!(
            bodies,
            [
                "Subject: after the compaction\r\n\r\nbody\r\n",
                "Subject: first\r\n\r\nbody\r\n",
                "Subject: second\r\n\r\nbody\r\n"
            ]
        );
        let flagged = fetches.iter().filter(|f| f.flags().any(|flag| flag == async_imap::types::Flag::Flagged)).count();
        assert_eq!(flagged, 1);
        drop(fetches);
        session.logout().await.unwrap();
    });

    // C's own writes reach A and, through A, B.
    append(&c, "from c");
    wait_for("everyone to converge on c's message", || {
        subjects(&b).len() == 4 && digest(&a) == digest(&c) && digest(&b) == digest(&c)
    });
    for device in [&a, &b, &c] {
        let report = device.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    // A device with history of its own refuses the snapshot, says what to
    // do, and keeps its state; A keeps serving.
    let d = Device::new(root.path(), "d");
    d.store().write(roost::cli::now_ms(), |w| w.add_user(&UserName::new("bob").unwrap(), "hash")).unwrap();
    let before = digest(&d);
    pair(&a, &d);
    wait_for("d to refuse a's snapshot", || d.log().contains("cannot install the peer's snapshot"));
    assert!(d.log().contains("roost init"), "{}", d.log());
    assert_eq!(digest(&d), before);
    assert!(d.store().snapshot_vector().unwrap().total() == 0);
    append(&a, "after d");
    wait_for("c to still get a's mail", || subjects(&c).len() == 5);
}

/// Whether any file below `dir` holds `needle`.
fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&path).unwrap_or_default().windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

fn gc(device: &Device) -> String {
    let out = roost(&device.dir, &["gc"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Blob GC between real daemons (docs/replication.md, "Blob garbage
/// collection"): A expunges a message while B is offline; `roost gc` on A
/// keeps its blob until B is back and has acknowledged the expunge, then
/// both remove it and its bytes are nowhere in their data dirs (database and
/// WAL included). A device paired afterwards gets the log whose append names the
/// collected blob: A answers "gone", and it converges instead of stalling.
#[test]
fn an_expunge_made_while_a_peer_was_offline_is_collected_on_both_after_it_caught_up() {
    let root = tempfile::tempdir().unwrap();
    let (a, mut b) = paired_with_alice(root.path());
    let marker = "gc-marker-5b1e";
    append(&a, marker);
    append(&a, "kept");
    wait_for("b to get both", || subjects(&b).len() == 2 && digest(&a) == digest(&b));
    wait_for_acks_of_everything(&a);
    b.stop();
    {
        let store = a.store();
        let inbox = store.mailbox_by_name(&alice(), "INBOX").unwrap().unwrap().id;
        let entry = store
            .entries(inbox)
            .unwrap()
            .into_iter()
            .find(|e| String::from_utf8_lossy(&store.message(&e.blob).unwrap()).contains(marker));
        let entry = entry.expect("the marked message").entry_id;
        drop(store);
        a.store().write(roost::cli::now_ms(), |w| w.expunge(inbox, &[entry])).unwrap();
    }
    let text = gc(&a);
    assert!(text.contains("removed 0 blobs") && text.contains("kept 1 blobs"), "{text}");
    assert!(dir_contains(&a.dir.join(roost_core::store::BLOB_DIR), marker.as_bytes()));

    b.start();
    wait_for("b to catch up on the expunge", || subjects(&b) == ["Subject: kept"] && digest(&a) == digest(&b));
    wait_for_acks_of_everything(&a);
    assert!(gc(&a).contains("removed 1 blobs"));
    assert!(gc(&b).contains("removed 1 blobs"));
    for device in [&a, &b] {
        assert!(!dir_contains(&device.dir.join(roost_core::store::BLOB_DIR), marker.as_bytes()));
        let report = device.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    assert!(!dir_contains(&a.dir, marker.as_bytes()), "the marker is still in a's data dir");
    // B got it over sync, in the blob spool: zeroed when unspooled, and the
    // WAL emptied by the GC.
    assert!(!dir_contains(&b.dir, marker.as_bytes()), "the marker is still in b's data dir");

    // A fresh device paired with A now: the append it replays names a blob
    // A collected.
    let c = Device::new(root.path(), "c");
    pair(&a, &c);
    wait_for("c to catch up from a's log", || subjects(&c) == ["Subject: kept"] && digest(&c) == digest(&a));
    assert!(c.log().contains("the peer collected blobs these events name"), "{}", c.log());
    let report = c.store().verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(gc(&c).contains("removed 0 blobs"));
}

/// The snapshot bytes `device`'s daemon logged sending in this run (one
/// line per snapshot sent, with the image's size).
fn snapshot_bytes_sent(device: &Device) -> Vec<u64> {
    device
        .log()
        .lines()
        .map(strip_ansi)
        .filter(|line| line.contains("sending the log snapshot"))
        .map(|line| {
            let field = line.split_whitespace().find_map(|w| w.strip_prefix("bytes=")).expect("bytes= in the line");
            field.parse().expect("a byte count")
        })
        .collect()
}

#[test]
fn a_refused_snapshot_is_not_streamed_again_on_reconnect() {
    // A compacted device A and a device D with history of its own: D refuses
    // A's snapshot once, remembers it, and says so in every later Hello, so
    // A streams the image once across D's two restarts and its own redials
    // (it used to stream it on every reconnect); D's status keeps the reason.
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");
    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), "hash")).unwrap();
    append(&a, "first");
    let out = roost(&a.dir, &["compact"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut d = Device::new(root.path(), "d");
    d.store().write(roost::cli::now_ms(), |w| w.add_user(&UserName::new("bob").unwrap(), "hash")).unwrap();
    let before = digest(&d);
    pair(&a, &d);
    wait_for("d to refuse a's snapshot", || d.log().contains("cannot install the peer's snapshot"));
    let sent = snapshot_bytes_sent(&a);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(0 < sent[0]);
    for _ in 0..2 {
        d.stop();
        d.start();
        wait_for("a session with d again", || d.log().contains("sync session started"));
        // Time for A's sender to answer the Hello, and for redials after a
        // session that ended (200 ms, doubling).
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(snapshot_bytes_sent(&a), sent, "a streamed its snapshot again");
    assert!(d.log().contains("still does; the peer is told not to send it again"), "{}", d.log());
    assert!(a.log().contains("refused this device's log snapshot"), "{}", a.log());
    assert_eq!(digest(&d), before);
    let status = roost(&d.dir, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("refused its log snapshot: cannot install the peer's snapshot"), "{status}");
    // D's own events still reach A while A has nothing it may send D.
    let bob = UserName::new("bob").unwrap();
    wait_for("a to get d's user", || a.store().user_exists(&bob).unwrap());
}
