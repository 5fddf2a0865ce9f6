//! Two devices in two network namespaces that can reach each other only
//! through the project's WAN emulator (40 ms one way, 5 ms jitter, 1% loss):
//! they pair, converge, survive a partition, and the replication lag is
//! measured and printed (not asserted: timings are for benchmarks).
//!
//! Namespaces matter: on one loopback, iroh's NAT traversal finds the direct
//! path and bypasses any forwarder. Needs root and iproute2; without them the
//! test says SKIP, unless `ROOST_REQUIRE_NETNS` is set (CI sets it).

use std::path::Path;
use std::time::{Duration, Instant};

use roost::netlab::{self, Netns, NsDevice};
use roost::wan::{LinkParams, WanEmulator};
use roost_core::model::UserName;
use roost_core::store::{AppendMessage, Store};

fn roost_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_roost"))
}

fn can_run() -> bool {
    if netlab::available() {
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
    let mut store = Store::open(dir, roost::device::load_key(dir).unwrap()).unwrap();
    let raw = format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes();
    store
        .write(roost::cli::now_ms(), |w| {
            let inbox = w.mailbox(&alice(), "INBOX")?;
            w.append(inbox, &[AppendMessage { raw: &raw, flags: vec![], internal_date: 1 }])
        })
        .unwrap();
}

fn inbox_len(device: &NsDevice) -> usize {
    let store = device.store().unwrap();
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
    let link = LinkParams {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(5),
        loss: 0.01,
        rate_bytes_per_s: None,
    };
    let ns_a = Netns::new("a", 1).unwrap();
    let ns_b = Netns::new("b", 2).unwrap();
    // B reaches A only through `to_a` (on B's veth); A reaches B through `to_b`.
    let to_a =
        WanEmulator::start(format!("{}:0", ns_b.root_ip()).parse().unwrap(), ns_a.sync_addr(), link, 1).await.unwrap();
    let to_b =
        WanEmulator::start(format!("{}:0", ns_a.root_ip()).parse().unwrap(), ns_b.sync_addr(), link, 2).await.unwrap();
    let mut a = NsDevice::init(roost_bin(), root.path().join("a"), ns_a).unwrap();
    let mut b = NsDevice::init(roost_bin(), root.path().join("b"), ns_b).unwrap();
    let local = ["--listen-imap", "127.0.0.1:0", "--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0"];
    a.start(roost_bin(), to_a.addr(), &local).unwrap();
    b.start(roost_bin(), to_b.addr(), &local).unwrap();
    netlab::pair(roost_bin(), &a, &b).unwrap();

    a.store().unwrap().write(roost::cli::now_ms(), |w| w.add_user(&alice(), "hash")).unwrap();
    wait_for("b to get the user", Duration::from_secs(60), || b.store().unwrap().user_exists(&alice()).unwrap()).await;

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
    let converged = || {
        inbox_len(&a) == 30 && a.store().unwrap().state_digest().unwrap() == b.store().unwrap().state_digest().unwrap()
    };
    let started = Instant::now();
    while !converged() && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !converged() {
        let (sa, sb) = (a.store().unwrap(), b.store().unwrap());
        panic!(
            "no convergence after the partition: a has {} in INBOX, b {}; a events {:?} b events {:?}; differing: {:?}\nlog a: {}\nlog b: {}",
            inbox_len(&a),
            inbox_len(&b),
            sa.version_vector().unwrap(),
            sb.version_vector().unwrap(),
            sa.state_digest().unwrap().differences(&sb.state_digest().unwrap()),
            a.log.lock().unwrap().lines().filter(|l| l.contains("sync") || l.contains("WARN") || l.contains("rekey")).take(30).collect::<Vec<_>>().join("\n"),
            b.log.lock().unwrap().lines().filter(|l| l.contains("sync") || l.contains("WARN") || l.contains("rekey")).take(30).collect::<Vec<_>>().join("\n"),
        );
    }
    let healed = started.elapsed();
    println!("converged {healed:?} after the partition healed");
    // The connection runs through whichever emulator its dialler used; the
    // partition and the 1% loss must have dropped datagrams on it.
    let dropped = |wan: &WanEmulator| wan.counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(0 < dropped(&to_a) + dropped(&to_b));
    for device in [&a, &b] {
        let report = device.store().unwrap().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
