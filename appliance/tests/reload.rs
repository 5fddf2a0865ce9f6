//! SIGHUP re-reads the IMAP certificate: a real `roost serve`, its
//! certificate files replaced, SIGHUP, and a new TLS connection that only
//! trusts the new certificate gets through. A broken replacement keeps the
//! certificate in use, and the log says why.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

struct Daemon {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    log: PathBuf,
    imaps: u16,
    child: Child,
}

impl Daemon {
    fn start(cert_pem: &str, key_pem: &str) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (cert, key, log) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("serve.log"));
        fs::write(&cert, cert_pem).unwrap();
        fs::write(&key, key_pem).unwrap();
        let [imap, imaps, lmtp] = [free_port(), free_port(), free_port()];
        let sync = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("roost.toml");
        fs::write(
            &config,
            format!(
                "[imap]\nlisten = [\"127.0.0.1:{imap}\"]\nlisten_tls = [\"127.0.0.1:{imaps}\"]\n\
                 tls_cert = \"{}\"\ntls_key = \"{}\"\n[lmtp]\nlisten = [\"127.0.0.1:{lmtp}\"]\n\
                 [sync]\nlisten = [\"127.0.0.1:{sync}\"]\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let roost = |args: &[&str]| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
            cmd.arg("--data-dir").arg(dir.join("data")).arg("--config").arg(&config).args(args);
            cmd.env_remove("ROOST_CONFIG");
            cmd
        };
        assert!(roost(&["init"]).stdout(Stdio::null()).status().unwrap().success());
        let child = roost(&["serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", imaps)).is_err() {
            assert!(Instant::now() < deadline, "IMAP did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { _tmp: tmp, dir, cert, key, log, imaps, child }
    }

    /// Waits until the daemon's log has one more line containing `needle`
    /// than `seen` (bounded).
    fn wait_for_log_count(&self, needle: &str, seen: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.log_count(needle) > seen {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {needle:?} in the log within 20 s:\n{}", fs::read_to_string(&self.log).unwrap_or_default());
    }

    fn wait_for_log(&self, needle: &str) {
        self.wait_for_log_count(needle, 0)
    }

    fn log_count(&self, needle: &str) -> usize {
        fs::read_to_string(&self.log).unwrap_or_default().matches(needle).count()
    }

    fn sighup(&self) {
        let status = Command::new("kill").arg("-HUP").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// A TLS handshake with a client that trusts only `trusted_pem`, then the
    /// IMAP greeting; Err if the handshake fails.
    fn greet_trusting(&self, trusted_pem: &str) -> Result<String, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(trusted_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", self.imaps)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
        let mut greeting = String::new();
        reader.read_line(&mut greeting).map_err(|e| e.to_string())?;
        Ok(greeting)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn self_signed() -> (String, String) {
    roost::imap::tls::self_signed_pem(&["localhost".to_string()]).unwrap()
}

fn replace(path: &Path, contents: &str) {
    // Write then rename, as certbot's deploy hooks do.
    let tmp = path.with_extension("new");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_it_when_the_new_one_is_bad() {
    let (old_cert, old_key) = self_signed();
    let daemon = Daemon::start(&old_cert, &old_key);
    let greeting = daemon.greet_trusting(&old_cert).expect("the first certificate is served");
    assert!(greeting.starts_with("* OK"), "{greeting}");

    // A new pair: after SIGHUP, new connections get it.
    let (new_cert, new_key) = self_signed();
    replace(&daemon.key, &new_key);
    replace(&daemon.cert, &new_cert);
    assert!(daemon.greet_trusting(&old_cert).is_ok(), "no reload before SIGHUP");
    daemon.sighup();
    daemon.wait_for_log("reloaded the TLS certificate");
    let greeting = daemon.greet_trusting(&new_cert).expect("the new certificate is served after SIGHUP");
    assert!(greeting.starts_with("* OK"), "{greeting}");
    assert!(daemon.greet_trusting(&old_cert).is_err(), "the old certificate is still served");

    // A key that does not match the certificate: the reload is refused, the
    // log says why, and the working certificate stays.
    let (_, unrelated_key) = self_signed();
    replace(&daemon.key, &unrelated_key);
    daemon.sighup();
    daemon.wait_for_log("kept the old TLS certificate");
    assert!(fs::read_to_string(&daemon.log).unwrap().contains("does not match"), "the log says why");
    daemon.greet_trusting(&new_cert).expect("the last good certificate is still served");

    // A certificate file that is not PEM: the same.
    replace(&daemon.key, &new_key);
    replace(&daemon.cert, "not a certificate\n");
    let seen = daemon.log_count("kept the old TLS certificate");
    daemon.sighup();
    daemon.wait_for_log_count("kept the old TLS certificate", seen);
    daemon.greet_trusting(&new_cert).expect("the last good certificate is still served");
    assert!(daemon.dir.exists());
}
