//! End to end with a real MTA: a private Postfix instance (its own config
//! dir, queue and loopback port) accepts an SMTP message and relays it to
//! Roost over LMTP; the message then appears in the store.
//!
//! Needs `/usr/sbin/postfix` (Debian package `postfix`) and root (Postfix's
//! master runs as root and drops to the `postfix` user). Without them the
//! test prints a SKIP line and passes, unless `ROOST_REQUIRE_POSTFIX` is set
//! (CI sets it), in which case it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use roost::config::Config;
use roost::lmtp::spawn_listeners;
use roost::serve::Daemon;
use roost_core::model::UserName;

const POSTFIX: &str = "/usr/sbin/postfix";

/// How long Postfix may take to hand the message on (it takes well under a
/// second; the margin is for a loaded CI machine).
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// Why this machine cannot run the test, if it cannot.
fn missing_requirement() -> Option<String> {
    if !Path::new(POSTFIX).exists() {
        return Some(format!("{POSTFIX} not found (apt-get install postfix)"));
    }
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not root: a private Postfix instance needs root to start".into());
    }
    None
}

/// Stops the private Postfix instance when the test ends, pass or fail.
struct Postfix {
    config_dir: PathBuf,
}

impl Postfix {
    fn maillog(&self) -> String {
        std::fs::read_to_string(self.config_dir.join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX).arg("-c").arg(&self.config_dir).arg("stop").output();
    }
}

/// A self-contained Postfix configuration: SMTP on `smtp_port`, everything
/// for `example.test` delivered over LMTP to `lmtp_port`, no chroot, logs to
/// `DIR/maillog`. The same lines, minus the test scaffolding, are in
/// docs/postfix.md.
fn write_postfix_config(dir: &Path, smtp_port: u16, lmtp_port: u16) {
    let d = dir.display();
    let main_cf = format!(
        "compatibility_level = 3.6\n\
         queue_directory = {d}/queue\n\
         data_directory = {d}/data\n\
         mail_owner = postfix\n\
         setgid_group = postdrop\n\
         myhostname = mta.roost-test.invalid\n\
         mydomain = roost-test.invalid\n\
         myorigin = $myhostname\n\
         mydestination = example.test\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         mynetworks = 127.0.0.0/8\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
         local_recipient_maps =\n\
         local_transport = lmtp:inet:127.0.0.1:{lmtp_port}\n\
         alias_maps =\n\
         alias_database =\n\
         biff = no\n\
         maillog_file_prefixes = {d}\n\
         maillog_file = {d}/maillog\n"
    );
    let master_cf = format!(
        "127.0.0.1:{smtp_port} inet n - n - - smtpd\n\
         pickup    unix  n - n 60 1 pickup\n\
         cleanup   unix  n - n - 0 cleanup\n\
         qmgr      unix  n - n 300 1 qmgr\n\
         rewrite   unix  - - n - - trivial-rewrite\n\
         bounce    unix  - - n - 0 bounce\n\
         defer     unix  - - n - 0 bounce\n\
         trace     unix  - - n - 0 bounce\n\
         verify    unix  - - n - 1 verify\n\
         flush     unix  n - n 1000? 0 flush\n\
         proxymap  unix  - - n - - proxymap\n\
         smtp      unix  - - n - - smtp\n\
         relay     unix  - - n - - smtp\n\
         showq     unix  n - n - - showq\n\
         error     unix  - - n - - error\n\
         retry     unix  - - n - - error\n\
         discard   unix  - - n - - discard\n\
         lmtp      unix  - - n - - lmtp\n\
         anvil     unix  - - n - 1 anvil\n\
         scache    unix  - - n - 1 scache\n\
         postlog   unix-dgram n - n - 1 postlogd\n"
    );
    std::fs::write(dir.join("main.cf"), main_cf).unwrap();
    std::fs::write(dir.join("master.cf"), master_cf).unwrap();
    std::fs::create_dir_all(dir.join("queue")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    // Postfix's own processes run as `postfix` and must reach these.
    let run = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["chmod", "755", &d.to_string()]);
    run(&["chown", "postfix", &format!("{d}/data")]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn reply(io: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(io.read_line(&mut line).await.unwrap() > 0, "SMTP server closed after {all:?}");
        all.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_relays_smtp_to_roost_over_lmtp() {
    if let Some(why) = missing_requirement() {
        if std::env::var_os("ROOST_REQUIRE_POSTFIX").is_some() {
            panic!("ROOST_REQUIRE_POSTFIX is set but {why}");
        }
        println!("SKIP postfix_relays_smtp_to_roost_over_lmtp: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("roost");
    let mut store = roost::cli::init::init_data_dir(&data).unwrap();
    let alice = UserName::new("alice").unwrap();
    store.write(1, |w| w.add_user(&alice, "not-a-hash")).unwrap();
    let mut config = Config::default();
    config.lmtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let daemon = Daemon::new(store, config.clone(), data);
    let listeners = spawn_listeners(daemon.clone(), &config).unwrap();

    let pf_dir = dir.path().join("postfix");
    std::fs::create_dir_all(&pf_dir).unwrap();
    let smtp_port = free_port();
    write_postfix_config(&pf_dir, smtp_port, listeners.tcp[0].port());
    let postfix = Postfix { config_dir: pf_dir.clone() };
    let out = Command::new(POSTFIX).arg("-c").arg(&pf_dir).arg("start").output().unwrap();
    assert!(out.status.success(), "postfix start failed:\n{}", postfix.maillog());

    // Postfix's master opens the SMTP port a moment after `start` returns.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", smtp_port)).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("Postfix SMTP port {smtp_port} not open: {e}\n{}", postfix.maillog()),
        }
    };
    let mut io = BufReader::new(stream);
    assert!(reply(&mut io).await.starts_with("220"));
    for (line, code) in [
        ("EHLO client.test", "250"),
        ("MAIL FROM:<sender@example.test>", "250"),
        ("RCPT TO:<alice@example.test>", "250"),
        ("DATA", "354"),
        (
            "From: sender@example.test\r\nTo: alice@example.test\r\nMessage-ID: <e2e@example.test>\r\n\
             Subject: through postfix\r\n\r\nhello via SMTP and LMTP\r\n.",
            "250",
        ),
        ("QUIT", "221"),
    ] {
        io.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        let r = reply(&mut io).await;
        assert!(r.starts_with(code), "{line:?} -> {r}");
    }

    let deadline = Instant::now() + DELIVERY_WAIT;
    let raw = loop {
        let user = alice.clone();
        let found = daemon
            .read(move |store| {
                let inbox = store.mailbox_by_name(&user, "INBOX")?.expect("INBOX exists");
                match store.entries(inbox.id)?.first() {
                    Some(e) => Ok(Some(store.message(&e.blob)?)),
                    None => Ok(None),
                }
            })
            .await
            .unwrap();
        if let Some(raw) = found {
            break String::from_utf8(raw).unwrap();
        }
        assert!(Instant::now() < deadline, "not delivered within {DELIVERY_WAIT:?}:\n{}", postfix.maillog());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(raw.starts_with("Delivered-To: alice@example.test\r\nReceived: from mta.roost-test.invalid"), "{raw}");
    assert!(raw.contains("by mta.roost-test.invalid (Postfix)"), "Postfix's own Received: is kept: {raw}");
    assert!(raw.ends_with("\r\n\r\nhello via SMTP and LMTP\r\n"), "{raw}");
    assert!(postfix.maillog().contains("status=sent (250 2.0.0"), "{}", postfix.maillog());
    drop(postfix);
}
