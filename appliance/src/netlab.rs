//! A lab of Roost devices in network namespaces, for tests and benchmarks of
//! replication across "locations". Each device runs a real `roost serve` in
//! its own namespace, joined to the root namespace by a veth pair; devices
//! reach each other only through `WanEmulator`s in the root namespace, so
//! iroh's NAT traversal cannot find a path around the emulated link.
//!
//! Needs root and iproute2. Nothing here runs in production.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use roost_core::store::Store;

/// Port of the sync endpoint inside every namespace.
pub const SYNC_PORT: u16 = 7947;

/// Whether this process can make namespaces (root and `ip` present).
pub fn available() -> bool {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    root && has_ip
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A network namespace joined to the root namespace by a veth pair on
/// 10.201.`net`.0/30: the root side is .1, the namespace side .2.
#[derive(Debug)]
pub struct Netns {
    /// Namespace name.
    pub name: String,
    root_if: String,
    net: u8,
}

impl Netns {
    /// Creates the namespace and its link (`tag` keeps names unique per run).
    pub fn new(tag: &str, net: u8) -> Result<Netns> {
        let id = std::process::id() % 100_000;
        let name = format!("roost-{tag}-{id}");
        let root_if = format!("rw{tag}{id}");
        let ns_if = format!("rn{tag}{id}");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &root_if]).output();
        ip(&["netns", "add", &name])?;
        let ns = Netns { name: name.clone(), root_if: root_if.clone(), net };
        ip(&["link", "add", &root_if, "type", "veth", "peer", "name", &ns_if])?;
        ip(&["link", "set", &ns_if, "netns", &name])?;
        ip(&["addr", "add", &format!("10.201.{net}.1/30"), "dev", &root_if])?;
        ip(&["link", "set", &root_if, "up"])?;
        ip(&["netns", "exec", &name, "ip", "addr", "add", &format!("10.201.{net}.2/30"), "dev", &ns_if])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The root namespace's address on this link (where emulators listen for
    /// this namespace's traffic).
    pub fn root_ip(&self) -> String {
        format!("10.201.{}.1", self.net)
    }

    /// The namespace's own address on this link.
    pub fn inner_ip(&self) -> String {
        format!("10.201.{}.2", self.net)
    }

    /// The sync endpoint's address inside the namespace.
    pub fn sync_addr(&self) -> SocketAddr {
        SocketAddr::new(self.inner_ip().parse().expect("valid ip"), SYNC_PORT)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.root_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A device: a data directory and a `roost serve` in a namespace.
#[derive(Debug)]
pub struct NsDevice {
    /// Data directory.
    pub dir: PathBuf,
    /// Its namespace.
    pub ns: Netns,
    child: Option<Child>,
    /// The daemon's stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl NsDevice {
    /// Initialises a data directory for a device in `ns`.
    pub fn init(roost_bin: &Path, dir: PathBuf, ns: Netns) -> Result<NsDevice> {
        let device = NsDevice { dir, ns, child: None, log: Arc::default() };
        let out = device.roost(roost_bin, &["init"])?;
        if !out.status.success() {
            bail!("roost init: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(device)
    }

    /// Runs a `roost` command inside the namespace.
    pub fn roost(&self, roost_bin: &Path, args: &[&str]) -> Result<std::process::Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.name])
            .arg(roost_bin)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.with_extension("no-config"))
            .stdin(Stdio::null())
            .output()
            .context("cannot run roost in the namespace")
    }

    /// Starts `roost serve` with the sync endpoint in the namespace,
    /// advertising `advertise` (an emulator's address) to peers, and `extra`
    /// arguments; waits until it is bound.
    pub fn start(&mut self, roost_bin: &Path, advertise: SocketAddr, extra: &[&str]) -> Result<()> {
        let _ = std::fs::remove_file(self.dir.join(crate::sync::ADDRS_FILE));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name])
            .arg(roost_bin)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["serve", "--listen-sync", &self.ns.sync_addr().to_string()])
            .args(["--advertise-sync", &advertise.to_string()])
            .args(extra)
            .env("XDG_CONFIG_HOME", self.dir.with_extension("no-config"))
            // `roost::lag`: per-stage timestamps the sync bench reads (session.rs).
            .env("RUST_LOG", "info,roost::lag=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start roost serve in the namespace")?;
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&(line + "\n"));
                }
            });
        }
        self.child = Some(child);
        let started = Instant::now();
        while !self.dir.join(crate::sync::ADDRS_FILE).exists() {
            if Duration::from_secs(30) < started.elapsed() {
                bail!("roost serve did not start: {}", self.log.lock().unwrap_or_else(|e| e.into_inner()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the daemon.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Opens the device's store (the daemon may be running).
    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.dir, crate::device::load_key(&self.dir)?)?)
    }
}

impl Drop for NsDevice {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pairs `joiner` with `inviter` through the CLI, as a user would.
pub fn pair(roost_bin: &Path, inviter: &NsDevice, joiner: &NsDevice) -> Result<()> {
    let invite = inviter.roost(roost_bin, &["pair", "invite", "--no-qr"])?;
    if !invite.status.success() {
        bail!("pair invite: {}", String::from_utf8_lossy(&invite.stderr));
    }
    let stdout = String::from_utf8_lossy(&invite.stdout).into_owned();
    let ticket = stdout.lines().last().unwrap_or_default().to_string();
    let join = joiner.roost(roost_bin, &["pair", "join", &ticket])?;
    if !join.status.success() {
        bail!("pair join: {}", String::from_utf8_lossy(&join.stderr));
    }
    Ok(())
}
