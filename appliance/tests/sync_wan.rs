//! Two devices in two network namespaces that can reach each other only
//! through the project's WAN emulator (40 ms one way, 5 ms jitter, 1% loss):
//! they pair, converge, survive a partition, and the replication lag is
//! measured and printed (not asserted: timings are for benchmarks).
//!
//! Namespaces matter: on one loopback, iroh's NAT traversal finds the direct
//! path and bypasses any forwarder. Needs root and iproute2; without them the
//! test says SKIP, unless `ROOST_REQUIRE_NETNS` is set (CI sets it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roost::wan::{LinkParams, WanEmulator};
use roost_core::model::UserName;
use roost_core::store::{AppendMessage, Store};

const SYNC_PORT: u16 = 7947;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A network namespace joined to the root namespace by a veth pair on
/// 10.201.`net`.0/30: the root side is .1, the namespace side .2.
struct Netns {
    name: String,
    root_if: String,
    net: u8,
}

impl Netns {
    fn new(tag: &str, net: u8) -> Netns {
        let id = std::process::id() % 100_000;
        let name = format!("roost-{tag}-{id}");
        let root_if = format!("rw{tag}{id}");
        let ns_if = format!("rn{tag}{id}");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &root_if]).output();
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &root_if, "type", "veth", "peer", "name", &ns_if]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("10.201.{net}.1/30"), "dev", &root_if]);
        ip(&["link", "set", &root_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "addr", "add", &format!("10.201.{net}.2/30"), "dev", &ns_if]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Netns { name, root_if, net }
    }

    fn root_ip(&self) -> String {
        format!("10.201.{}.1", self.net)
    }

    fn inner_addr(&self) -> SocketAddr {
        format!("10.201.{}.2:{SYNC_PORT}", self.net).parse().unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.root_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

struct Device {
    dir: PathBuf,
    ns: Netns,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Device {
    fn roost(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.name, env!("CARGO_BIN_EXE_roost"), "--data-dir"])
            .arg(&self.dir)
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.with_extension("no-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn start(&mut self, advertise: SocketAddr) {
        let _ = std::fs::remove_file(self.dir.join("sync-addrs.json"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, env!("CARGO_BIN_EXE_roost"), "--data-dir"])
            .arg(&self.dir)
            .args(["serve", "--listen-sync", &self.ns.inner_addr().to_string()])
            .args(["--advertise-sync", &advertise.to_string()])
            .args(["--listen-imap", "127.0.0.1:0", "--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0"])
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
        self.child = Some(child);
        let started = Instant::now();
        while !self.dir.join("sync-addrs.json").exists() {
            assert!(started.elapsed() < Duration::from_secs(30), "daemon did not start: {}", self.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.dir, roost::device::load_key(&self.dir).unwrap()).unwrap()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn can_run() -> bool {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    if root && has_ip {
        return true;
    }
    assert!(std::env::var_os("ROOST_REQUIRE_NETNS").is_none(), "network namespaces need root and iproute2");
    println!("SKIP sync_wan: needs root and iproute2 for network namespaces");
    false
}

fn alice() -> UserName {
    UserName::new("alice").unwrap()
}

fn append(dir: &Path, subject: &str) {
    let store_key = roost::device::load_key(dir).unwrap();
    let mut store = Store::open(dir, store_key).unwrap();
    let raw = format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes();
    store
        .write(roost::cli::now_ms(), |w| {
            let inbox = w.mailbox(&alice(), "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
        })
        .unwrap();
}

fn inbox_len(device: &Device) -> usize {
    let store = device.store();
    match store.mailbox_by_name(&alice(), "INBOX").unwrap() {
        Some(inbox) => store.entries(inbox.id).unwrap().len(),
        None => 0,
    }
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_locations_over_an_emulated_wan_converge_and_survive_a_partition() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let link = LinkParams { delay: Duration::from_millis(40), jitter: Duration::from_millis(5), loss: 0.01 };
    let ns_a = Netns::new("a", 1);
    let ns_b = Netns::new("b", 2);
    // B reaches A only through `to_a` (on B's veth); A reaches B through `to_b`.
    let to_a =
        WanEmulator::start(format!("{}:0", ns_b.root_ip()).parse().unwrap(), ns_a.inner_addr(), link, 1).await.unwrap();
    let to_b =
        WanEmulator::start(format!("{}:0", ns_a.root_ip()).parse().unwrap(), ns_b.inner_addr(), link, 2).await.unwrap();

    let mut a = Device { dir: root.path().join("a"), ns: ns_a, child: None, log: Default::default() };
    let mut b = Device { dir: root.path().join("b"), ns: ns_b, child: None, log: Default::default() };
    for device in [&a, &b] {
        assert!(device.roost(&["init"]).status.success());
    }
    a.start(to_a.addr());
    b.start(to_b.addr());

    let invite = a.roost(&["pair", "invite", "--no-qr"]);
    assert!(invite.status.success(), "{}", String::from_utf8_lossy(&invite.stderr));
    let ticket = String::from_utf8(invite.stdout).unwrap().lines().last().unwrap().to_string();
    let join = b.roost(&["pair", "join", &ticket]);
    assert!(join.status.success(), "join: {}", String::from_utf8_lossy(&join.stderr));

    a.store().write(roost::cli::now_ms(), |w| w.add_user(&alice(), "hash")).unwrap();
    wait_for("b to get the user", Duration::from_secs(60), || b.store().user_exists(&alice()).unwrap()).await;

    // Replication lag: commit on A, visible in B's store.
    let mut lags = Vec::new();
    for i in 0..20 {
        append(&a.dir, &format!("lag probe {i}"));
        lags.push(wait_for("a probe to reach b", Duration::from_secs(60), || inbox_len(&b) == i + 1).await);
    }
    lags.sort();
    println!(
        "replication lag over 40 ms one-way, 5 ms jitter, 1% loss: p50 {:?}, p99 {:?} (includes the 25 ms change poll)",
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );

    // Partition: both sides keep working; after the cut heals they converge.
    to_a.set_partitioned(true);
    to_b.set_partitioned(true);
    for i in 0..5 {
        append(&a.dir, &format!("a during partition {i}"));
        append(&b.dir, &format!("b during partition {i}"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(inbox_len(&a), 25, "a has its own 5 only");
    to_a.set_partitioned(false);
    to_b.set_partitioned(false);
    let healed = wait_for("convergence after the partition", Duration::from_secs(120), || {
        inbox_len(&a) == 30 && a.store().state_digest().unwrap() == b.store().state_digest().unwrap()
    })
    .await;
    println!("converged {healed:?} after the partition healed");
    // The connection runs through whichever emulator its dialler used; the
    // partition and the 1% loss must have dropped datagrams on it.
    let dropped = |wan: &WanEmulator| wan.counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(0 < dropped(&to_a) + dropped(&to_b));
    for device in [&a, &b] {
        let report = device.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
