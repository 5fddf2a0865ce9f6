//! Device-to-device sync between real `roost serve` processes over loopback
//! QUIC (iroh, relays and discovery off): pairing through the CLI, changes on
//! one device reaching the other both ways, catch-up after a daemon was down,
//! relaying A -> B -> C, and refusal of unpaired and removed devices.
//!
//! Changes are made by this test process writing to a device's store directly
//! (SQLite allows it while the daemon runs); the daemon's sender notices them
//! by its poll, the same path as `roost user add` while the daemon runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roost_core::model::{Flag, UserName};
use roost_core::store::{AppendMessage, Store};

struct Device {
    dir: PathBuf,
    daemon: Option<Child>,
    log: Arc<Mutex<String>>,
}

fn roost(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("XDG_CONFIG_HOME", dir.with_extension("no-config"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl Device {
    fn new(root: &Path, name: &str) -> Device {
        let dir = root.join(name);
        let out = roost(&dir, &["init"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut device = Device { dir, daemon: None, log: Arc::new(Mutex::new(String::new())) };
        device.start();
        device
    }

    fn start(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("sync-addrs.json"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["serve", "--listen-sync", "127.0.0.1:0", "--listen-imap", "127.0.0.1:0"])
            .args(["--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0"])
            .env("XDG_CONFIG_HOME", self.dir.with_extension("no-config"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        self.daemon = Some(child);
        wait_for("the daemon to bind its sync endpoint", || self.dir.join("sync-addrs.json").exists());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn store(&self) -> Store {
        let secret = roost::device::load_key(&self.dir).unwrap();
        Store::open(&self.dir, secret).unwrap()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pair(inviter: &Device, joiner: &Device) {
    let out = roost(&inviter.dir, &["pair", "invite", "--no-qr"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ticket = stdout.lines().last().unwrap().to_string();
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
