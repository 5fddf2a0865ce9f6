//! What the tests that run real daemons share: the `roost` CLI on a data
//! dir, `roost serve` on loopback with its log captured, and waiting for a
//! condition with a deadline. Each test file keeps its own `Device` on top,
//! with what only it needs (admin token, IMAP client, ...).

// Each test crate includes this module and uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for a daemon to do something before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Runs `roost --data-dir DIR ARGS` with no stdin and no user config.
pub fn roost(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("XDG_CONFIG_HOME", dir.with_extension("no-config"))
        .stdin(Stdio::null())
        .output()
        .expect("roost runs")
}

/// Runs `cmd` with `stdin` written to its standard input and returns its
/// output. A command may exit without reading its input (it refused its
/// arguments first, as `user add` does for a taken name): the write then
/// meets a closed pipe, which is not the command's failure; the exit status
/// and stderr the caller asserts on say what happened.
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("roost runs");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    match pipe.write_all(stdin.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("cannot write roost's stdin: {e}"),
        _ => {}
    }
    // Closed before waiting: a command reading to the end of its input ends.
    drop(pipe);
    child.wait_with_output().expect("roost exits")
}

/// `roost init` on `dir`, which must succeed.
pub fn init(dir: &Path) {
    let out = roost(dir, &["init"]);
    assert!(out.status.success(), "roost init: {}", String::from_utf8_lossy(&out.stderr));
}

/// Polls `cond` every 50 ms until it holds; fails the test after [`WAIT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A one-time pairing ticket from `dir` (`roost pair invite`).
pub fn invite(dir: &Path) -> String {
    let out = roost(dir, &["pair", "invite", "--no-qr"]);
    assert!(out.status.success(), "pair invite: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8 ticket");
    stdout.lines().last().expect("a ticket line").to_string()
}

/// Pairs `joiner` with `inviter` through the CLI (`pair invite`, `pair join`).
pub fn pair(inviter: &Path, joiner: &Path) {
    let ticket = invite(inviter);
    let out = roost(joiner, &["pair", "join", &ticket]);
    assert!(out.status.success(), "pair join: {}", String::from_utf8_lossy(&out.stderr));
}

/// Where a daemon listens; every listener not named here is off or on a
/// free loopback port.
pub struct Listen<'a> {
    pub sync: &'a str,
    pub imap: &'a str,
    /// Whether the admin API listens (on a free port; `admin-addr` says which).
    pub admin: bool,
}

impl Default for Listen<'_> {
    fn default() -> Self {
        Listen { sync: "127.0.0.1:0", imap: "127.0.0.1:0", admin: false }
    }
}

/// A running `roost serve`, killed when dropped (SIGKILL: what it
/// acknowledged is committed), with its stderr log kept.
pub struct Serve {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `roost serve` on `dir` (with `config` as its config file if
    /// given) and waits until its sync endpoint is bound.
    pub fn start(dir: &Path, config: Option<&Path>, listen: Listen) -> Serve {
        // Written again by this start once it listens.
        let _ = std::fs::remove_file(dir.join("sync-addrs.json"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_roost"));
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        command
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen-sync", listen.sync, "--listen-imap", listen.imap])
            .args(["--listen-imaps", "127.0.0.1:0", "--listen-lmtp", "127.0.0.1:0"]);
        if listen.admin {
            command.args(["--listen-admin", "127.0.0.1:0"]);
        }
        let mut child = command
            .env("XDG_CONFIG_HOME", dir.with_extension("no-config"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("roost serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let serve = Serve { child, log };
        wait_for("the daemon to bind its sync endpoint", || dir.join("sync-addrs.json").exists());
        serve
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The daemon's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon and waits for it (again: nothing happens).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}
