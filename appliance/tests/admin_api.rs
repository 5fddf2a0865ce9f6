//! The admin HTTP API of real `roost serve` processes on loopback: token
//! authentication, users, first-run setup, pairing two (and three) devices
//! through the API, peers, the event log, metrics and client setup, requests
//! signed by a paired device's key, and each kind of bad input answered with a 4xx and a JSON error that leaves nothing
//! half-done. A minimal HTTP/1.1 client over `TcpStream` keeps the test free
//! of an HTTP client dependency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{roost, wait_for, Listen, Serve};

mod support;

struct Device {
    dir: PathBuf,
    daemon: Serve,
    addr: String,
    token: String,
}

impl Device {
    fn new(root: &Path, name: &str) -> Device {
        Device::with_imap(root, name, "127.0.0.1:0")
    }

    /// A device whose IMAP listens on `imap` (a test that talks IMAP picks a port).
    fn with_imap(root: &Path, name: &str, imap: &str) -> Device {
        Device::start(root, name, imap, None)
    }

    /// A device whose daemon reads `config` (TOML) as its config file.
    fn with_config(root: &Path, name: &str, config: &str) -> Device {
        let file = root.join(format!("{name}.toml"));
        std::fs::write(&file, config).unwrap();
        Device::start(root, name, "127.0.0.1:0", Some(&file))
    }

    fn start(root: &Path, name: &str, imap: &str, config: Option<&Path>) -> Device {
        let dir = root.join(name);
        support::init(&dir);
        let daemon = Serve::start(&dir, config, Listen { imap, admin: true, ..Listen::default() });
        wait_for("the admin API to listen", || dir.join("admin-addr").exists());
        let addr = std::fs::read_to_string(dir.join("admin-addr")).unwrap().trim().to_string();
        let token = std::fs::read_to_string(dir.join("admin.token")).unwrap().trim().to_string();
        Device { dir, daemon, addr, token }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, _, text) = http(&self.addr, method, path, Some(&self.token), body.map(|b| b.to_string()));
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        (status, value)
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body);
        assert!((200..300).contains(&status), "{method} {path}: {status} {value}");
        value
    }

    /// Asserts a 4xx/5xx `status` with a JSON error containing `needle`.
    fn fails(&self, method: &str, path: &str, body: Option<Value>, status: u16, needle: &str) {
        let (got, value) = self.call(method, path, body);
        let error = value["error"].as_str().unwrap_or_else(|| panic!("{method} {path}: no error field: {value}"));
        assert_eq!(got, status, "{method} {path}: {value}");
        assert!(error.contains(needle), "{method} {path}: {error:?} lacks {needle:?}");
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.daemon.stop();
        // Secrets never reach the log.
        let log = self.daemon.log();
        assert!(!log.contains(&self.token), "the admin token was logged");
        assert!(!log.contains("panicked"), "a task panicked:\n{log}");
    }
}

/// One request on a fresh connection; returns status, headers and body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<String>) -> (u16, String, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    http_with(addr, method, path, &auth, body)
}

/// A GET signed by the device whose data dir is `signer` (its device key), at `time_ms`.
fn signed_get(addr: &str, path: &str, signed_path: &str, signer: &Path, time_ms: u64) -> (u16, String) {
    let secret = roost::device::load_key(signer).unwrap();
    let id = roost_core::model::DeviceId::from_bytes(*iroh::SecretKey::from_bytes(&secret).public().as_bytes());
    let signature = roost::admin::device_auth::sign(&secret, "GET", signed_path, time_ms);
    let headers = format!("X-Roost-Device: {id}\r\nX-Roost-Time: {time_ms}\r\nX-Roost-Signature: {signature}\r\n");
    let (status, _, body) = http_with(addr, "GET", path, &headers, None);
    (status, body)
}

fn http_with(addr: &str, method: &str, path: &str, headers: &str, body: Option<String>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

// Requests without the token, with a wrong one, or to unknown endpoints get
// 401/404 JSON errors; the UI's files need no token; a fresh device lists no
// conflicts; backups say plainly what config they need; `roost admin token` prints the
// token `init` made as a 0600 file.
#[test]
fn auth_and_unavailable_features() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");

    let (status, _, body) = http(&a.addr, "GET", "/api/status", None, None);
    assert_eq!(status, 401);
    assert!(body.contains("missing admin token"), "{body}");
    let wrong = "0".repeat(64);
    let (status, _, body) = http(&a.addr, "GET", "/api/users", Some(&wrong), None);
    assert_eq!(status, 401);
    assert!(body.contains("wrong admin token"), "{body}");
    let (status, _, _) = http(&a.addr, "GET", "/metrics", Some("short"), None);
    assert_eq!(status, 401);

    let (status, head, body) = http(&a.addr, "GET", "/", None, None);
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/html"), "{head}");
    assert!(body.contains("<title>Roost"), "{body}");
    let (status, head, _) = http(&a.addr, "GET", "/app.js", None, None);
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/javascript"), "{head}");

    a.fails("GET", "/api/nope", None, 404, "no such API endpoint");
    assert_eq!(a.ok("GET", "/api/conflicts", None), json!([]), "a fresh device has no conflicts");
    a.fails("GET", "/api/conflicts?limit=x", None, 400, "");
    let backups = a.ok("GET", "/api/backups", None);
    assert_eq!(backups["dir"], Value::Null, "{backups}");
    assert_eq!(backups["backups"], json!([]), "{backups}");
    a.fails("POST", "/api/backups", None, 409, "no backup recipient");
    let status = a.ok("GET", "/api/status", None);
    assert_eq!(status["needs_setup"], true);
    assert_eq!(status["data_dir"], a.dir.display().to_string());

    let out = roost(&a.dir, &["admin", "token"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), a.token);
    let mode = std::fs::metadata(a.dir.join("admin.token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

// First-run setup, then users through the API: every bad input is a 4xx JSON
// error and changes nothing; what the API did is what the CLI sees; the event
// log filters by user, mailbox, device and time; client setup files name the
// user and the configured ports.
#[test]
fn setup_users_events_and_client_setup() {
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");

    let tls_own = json!({"mode": "own", "cert_path": "/nonexistent/cert.pem", "key_path": "/nonexistent/key.pem"});
    a.fails(
        "POST",
        "/api/setup",
        Some(json!({"user": "alice", "password": "a long passphrase", "tls": tls_own})),
        400,
        "cannot read",
    );
    a.fails(
        "POST",
        "/api/setup",
        Some(json!({"user": "alice", "password": "x", "tls": {"mode": "self-signed"}})),
        400,
        "password refused",
    );
    a.fails("POST", "/api/setup", Some(json!({"user": "alice"})), 400, "malformed request body");
    assert_eq!(a.ok("GET", "/api/users", None), json!([]), "failed setups left nothing behind");
    let done = a.ok(
        "POST",
        "/api/setup",
        Some(json!({"user": "alice", "password": "a long passphrase", "tls": {"mode": "self-signed"}})),
    );
    assert_eq!(done["user"]["name"], "alice");
    a.fails(
        "POST",
        "/api/setup",
        Some(json!({"user": "bob", "password": "a long passphrase", "tls": {"mode": "self-signed"}})),
        409,
        "already set up",
    );

    a.fails(
        "POST",
        "/api/users",
        Some(json!({"name": "bad name", "password": "a long passphrase"})),
        400,
        "invalid user name",
    );
    a.fails("POST", "/api/users", Some(json!({"name": "bob", "password": "bob"})), 400, "password refused");
    a.fails(
        "POST",
        "/api/users",
        Some(json!({"name": "alice", "password": "another passphrase"})),
        409,
        "already exists",
    );
    a.fails("POST", "/api/users", Some(json!({"name": 5})), 400, "malformed request body");
    let (status, _, body) = http(&a.addr, "POST", "/api/users", Some(&a.token), Some("{not json".into()));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let bob = a.ok("POST", "/api/users", Some(json!({"name": "bob", "password": "bobs long passphrase"})));
    assert_eq!(bob["mailboxes"], 6, "{bob}");
    let out = roost(&a.dir, &["user", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("alice") && listed.contains("bob"), "{listed}");

    // Bob's mail is sealed to a new identity from the start: the answer that
    // created it is the only one that shows its recovery key.
    assert!(bob["recovery_key"].as_str().is_some_and(|k| k.len() > 20), "{bob}");
    assert!(!a.ok("GET", "/api/users", None).to_string().contains("recovery_key"), "recovery key shown again");
    // Changing the password re-wraps that identity: the current password is needed.
    a.fails(
        "PUT",
        "/api/users/bob/password",
        Some(json!({"password": "a new long passphrase"})),
        400,
        "current password",
    );
    a.fails(
        "PUT",
        "/api/users/bob/password",
        Some(json!({"password": "a new long passphrase", "current": "not bobs passphrase"})),
        422,
        "current password of bob is wrong",
    );
    let changed = a.ok(
        "PUT",
        "/api/users/bob/password",
        Some(json!({"password": "a new long passphrase", "current": "bobs long passphrase"})),
    );
    assert!(changed.get("recovery_key").is_none(), "a re-wrap keeps the recovery key: {changed}");
    a.fails(
        "PUT",
        "/api/users/carol/password",
        Some(json!({"password": "a new long passphrase"})),
        404,
        "no user carol",
    );
    a.fails("PUT", "/api/users/bob/password", Some(json!({"password": ""})), 400, "password refused");
    let mailboxes = a.ok("GET", "/api/users/bob/mailboxes", None);
    let names: Vec<&str> = mailboxes.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"INBOX") && names.contains(&"Sent"), "{names:?}");
    a.fails("GET", "/api/users/carol/mailboxes", None, 404, "no user carol");

    let events = a.ok("GET", "/api/events?user=bob", None);
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    // A password change of a user with an identity re-wraps it: one user-keys event.
    assert_eq!(kinds.first(), Some(&"user-keys"), "newest first: {kinds:?}");
    assert!(kinds.contains(&"user-add") && kinds.contains(&"mailbox-create"), "{kinds:?}");
    assert!(!events.to_string().contains("argon2"), "no password hash in the event log view");
    let inbox = a.ok("GET", "/api/events?user=alice&mailbox=INBOX", None);
    assert!(inbox.as_array().unwrap().iter().all(|e| e["mailbox"] == "INBOX" && e["user"] == "alice"), "{inbox}");
    assert!(!inbox.as_array().unwrap().is_empty());
    let device_id = a.ok("GET", "/api/status", None)["device_id"].as_str().unwrap().to_string();
    let mine = a.ok("GET", &format!("/api/events?device={}&limit=3", &device_id[..8]), None);
    assert_eq!(mine.as_array().unwrap().len(), 3);
    assert_eq!(a.ok("GET", "/api/events?since_ms=99999999999999", None), json!([]));
    a.fails("GET", "/api/events?since_ms=yesterday", None, 400, "malformed query");
    a.fails("GET", "/api/events?device=xyz", None, 400, "not a device id");

    let setup = a.ok("GET", "/api/client-setup?user=bob", None);
    assert_eq!(setup["host"], "127.0.0.1");
    assert!(setup["qr_svg"].as_str().unwrap().contains("<svg"));
    let (status, head, xml) = http(&a.addr, "GET", "/api/client-setup/autoconfig.xml?user=bob", Some(&a.token), None);
    assert_eq!(status, 200);
    assert!(head.contains("config-v1.1.xml") && xml.contains("<username>bob</username>"), "{head}\n{xml}");
    let (status, _, plist) =
        http(&a.addr, "GET", "/api/client-setup/roost.mobileconfig?user=bob", Some(&a.token), None);
    assert_eq!(status, 200);
    assert!(plist.contains("com.apple.mail.managed"), "{plist}");
    a.fails("GET", "/api/client-setup?user=carol", None, 404, "no user carol");
    a.fails("GET", "/api/client-setup", None, 400, "malformed query");

    a.ok("DELETE", "/api/users/bob", None);
    a.fails("DELETE", "/api/users/bob", None, 404, "no user bob");
    let storage = a.ok("GET", "/api/storage", None);
    assert_eq!(storage["users"], 1);
}

// Pairing through the API: A invites, B joins, both list each other as
// connected and metrics show the peer; reusing the ticket, a ticket for a
// paired device, a damaged, expired or own ticket and an unreachable device
// are 4xx errors that record no pairing; removal works once.
#[test]
fn pairing_through_the_api() {
    let root = tempfile::tempdir().unwrap();
    let a = Device::new(root.path(), "a");
    let b = Device::new(root.path(), "b");
    let c = Device::new(root.path(), "c");

    a.fails("POST", "/api/pair/invite", Some(json!({"expires_minutes": 0})), 400, "expiry must be");
    a.fails("POST", "/api/pair/invite", Some(json!({"minutes": 5})), 400, "malformed request body");
    let invite = a.ok("POST", "/api/pair/invite", None);
    let ticket = invite["ticket"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("ROOST1"), "{ticket}");
    assert!(invite["qr_svg"].as_str().unwrap().contains("<svg"));

    a.fails("POST", "/api/pair/join", Some(json!({"ticket": ticket})), 400, "made by this device");
    b.fails("POST", "/api/pair/join", Some(json!({"ticket": "hello"})), 400, "not a Roost pairing ticket");
    b.fails("POST", "/api/pair/join", Some(json!({"ticket": &ticket[..ticket.len() - 9]})), 400, "damaged");
    let mut expired = roost::sync::ticket::PairTicket::decode(&ticket).unwrap();
    expired.expires_ms = 1;
    b.fails("POST", "/api/pair/join", Some(json!({"ticket": expired.encode()})), 422, "expired");
    let mut unreachable = roost::sync::ticket::PairTicket::decode(&ticket).unwrap();
    unreachable.addrs = vec!["127.0.0.1:9".parse().unwrap()];
    unreachable.id =
        roost_core::model::DeviceId::from_bytes(*iroh::SecretKey::from_bytes(&[3; 32]).public().as_bytes());
    b.fails("POST", "/api/pair/join", Some(json!({"ticket": unreachable.encode()})), 422, "cannot");
    assert_eq!(b.ok("GET", "/api/peers", None), json!([]), "failed joins recorded nothing");

    let joined = b.ok("POST", "/api/pair/join", Some(json!({"ticket": ticket})));
    let a_id = a.ok("GET", "/api/status", None)["device_id"].as_str().unwrap().to_string();
    let b_id = b.ok("GET", "/api/status", None)["device_id"].as_str().unwrap().to_string();
    assert_eq!(joined["device_id"], a_id.as_str());
    b.fails("POST", "/api/pair/join", Some(json!({"ticket": ticket})), 409, "already paired");
    c.fails("POST", "/api/pair/join", Some(json!({"ticket": ticket})), 422, "already used");
    assert_eq!(c.ok("GET", "/api/peers", None), json!([]));

    wait_for("A and B to connect", || {
        let peers = a.ok("GET", "/api/peers", None);
        peers[0]["device_id"] == b_id.as_str() && peers[0]["connected"] == true
    });
    wait_for("B to see A connected", || b.ok("GET", "/api/peers", None)[0]["connected"] == true);
    let (status, head, metrics) = http(&a.addr, "GET", "/metrics", Some(&a.token), None);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(metrics.contains(&format!("roost_peer_connected{{peer=\"{b_id}\"")), "{metrics}");
    assert!(metrics.contains("roost_storage_bytes{kind=\"database\"}"), "{metrics}");
    let status = a.ok("GET", "/api/status", None);
    assert_eq!(status["peers"].as_array().unwrap().len(), 1);
    let lag = a.ok("GET", "/api/lag", None);
    assert_eq!(lag["interval_ms"], 5000);

    // A paired device may sign requests with its device key instead of the token.
    let now = roost::cli::now_ms();
    let (status, body) = signed_get(&a.addr, "/api/status", "/api/status", &b.dir, now);
    assert_eq!(status, 200, "{body}");
    let (status, body) = signed_get(&a.addr, "/api/users", "/api/status", &b.dir, now);
    assert_eq!((status, body.contains("bad signature")), (401, true), "{body}");
    let (status, body) = signed_get(&a.addr, "/api/status", "/api/status", &b.dir, now - 120_000);
    assert_eq!((status, body.contains("too far")), (401, true), "{body}");
    let (status, body) = signed_get(&a.addr, "/api/status", "/api/status", &c.dir, now);
    assert_eq!((status, body.contains("not a paired device")), (401, true), "{body}");

    a.fails("DELETE", "/api/peers/zz", None, 400, "not a device id");
    a.fails("DELETE", "/api/peers/", None, 404, "");
    let removed = a.ok("DELETE", &format!("/api/peers/{}", &b_id[..10]), None);
    assert_eq!(removed["device_id"], b_id.as_str());
    a.fails("DELETE", &format!("/api/peers/{}", &b_id[..10]), None, 404, "no paired device");
    let (status, _) = signed_get(&a.addr, "/api/status", "/api/status", &b.dir, roost::cli::now_ms());
    assert_eq!(status, 401, "a removed device's signature is refused");
    assert_eq!(a.ok("GET", "/api/peers", None), json!([]));
}

/// A loopback TCP port free a moment ago (the daemon binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Logs in to IMAP on `port` as `user` and runs `commands`, each expecting a tagged OK.
fn imap_commands(port: u16, user: &str, password: &str, commands: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "IMAP on port {port}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let login = format!("LOGIN {user} \"{password}\"");
    for (n, command) in std::iter::once(login.as_str()).chain(commands.iter().copied()).enumerate() {
        let tag = format!("t{n}");
        writer.write_all(format!("{tag} {command}\r\n").as_bytes()).unwrap();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "IMAP closed during {command}");
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                assert!(status.starts_with("OK"), "{command}: {line}");
                break;
            }
        }
    }
}

// A real conflict between two daemons, listed by both APIs: before they are
// paired, an IMAP client creates "Projects" on A and renames Archive to
// "Projects" on B. When they sync, both mailboxes stay (one shown with a
// suffix), and each device's /api/conflicts shows a name_clash with both
// devices' events and times. /metrics then shows the peer caught up with
// bytes moved both ways.
#[test]
fn name_clash_between_two_daemons_is_listed_and_metrics_show_the_sync() {
    let root = tempfile::tempdir().unwrap();
    let (imap_a, imap_b) = (free_port(), free_port());
    let a = Device::with_imap(root.path(), "a", &format!("127.0.0.1:{imap_a}"));
    let b = Device::with_imap(root.path(), "b", &format!("127.0.0.1:{imap_b}"));
    let password = "correct horse battery";
    for device in [&a, &b] {
        device.ok("POST", "/api/users", Some(json!({"name": "alice", "password": password})));
    }
    imap_commands(imap_a, "alice", password, &["CREATE Projects"]);
    imap_commands(imap_b, "alice", password, &["RENAME Archive Projects"]);
    for device in [&a, &b] {
        assert_eq!(device.ok("GET", "/api/conflicts", None), json!([]), "nothing concurrent yet");
    }

    let ticket = a.ok("POST", "/api/pair/invite", None)["ticket"].as_str().unwrap().to_string();
    b.ok("POST", "/api/pair/join", Some(json!({"ticket": ticket})));
    let a_id = a.ok("GET", "/api/status", None)["device_id"].as_str().unwrap().to_string();
    let b_id = b.ok("GET", "/api/status", None)["device_id"].as_str().unwrap().to_string();
    for (device, me, peer) in [(&a, &a_id, &b_id), (&b, &b_id, &a_id)] {
        wait_for("the name clash to be recorded", || {
            device.ok("GET", "/api/conflicts", None).as_array().unwrap().iter().any(|c| c["kind"] == "name_clash")
        });
        let conflicts = device.ok("GET", "/api/conflicts", None);
        let clash = conflicts.as_array().unwrap().iter().find(|c| c["kind"] == "name_clash").unwrap();
        let sides = clash["sides"].as_array().unwrap();
        assert_eq!(sides.len(), 2, "{clash}");
        let devices: Vec<&str> = sides.iter().map(|s| s["device"].as_str().unwrap()).collect();
        assert!(devices.contains(&me.as_str()) && devices.contains(&peer.as_str()), "{clash}");
        let kinds: Vec<&str> = sides.iter().map(|s| s["events"][0]["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"mailbox-create") && kinds.contains(&"mailbox-rename"), "{clash}");
        for side in sides {
            assert!(side["time_ms"].as_u64().unwrap() > 1_700_000_000_000, "{clash}");
        }
        assert!(clash["resolution"].as_str().unwrap().contains("Projects"), "{clash}");
    }

    // Metrics: connected, nothing behind either way once synced, bytes moved
    // both ways, a last-seen time; each value read from the exposition text.
    let metric = |text: &str, name: &str, extra: &str| -> Option<f64> {
        let prefix = format!("{name}{{peer=\"{b_id}\"");
        text.lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(extra))
            .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
    };
    // Byte counters are the session's statistics, recorded once a second.
    wait_for("A's metrics to show B caught up and bytes moved", || {
        let (_, _, text) = http(&a.addr, "GET", "/metrics", Some(&a.token), None);
        metric(&text, "roost_peer_connected", "") == Some(1.0)
            && metric(&text, "roost_peer_events_behind", "to_peer") == Some(0.0)
            && metric(&text, "roost_peer_events_behind", "from_peer") == Some(0.0)
            && metric(&text, "roost_peer_sent_bytes_total", "").is_some_and(|b| b > 0.0)
            && metric(&text, "roost_peer_received_bytes_total", "").is_some_and(|b| b > 0.0)
    });
    let (_, _, text) = http(&a.addr, "GET", "/metrics", Some(&a.token), None);
    assert!(metric(&text, "roost_peer_last_seen_timestamp_seconds", "").unwrap() > 1_700_000_000.0, "{text}");
    assert!(text.contains("# TYPE roost_peer_sent_bytes_total counter"), "{text}");
}

// With `[backup] recipient` and `dir` in the config, POST /api/backups writes
// a backup there through the same code as the schedule, GET lists it, and the
// standard `age` CLI... is tested in tests/backup.rs; here the file is checked
// to be an age file of the size the API reports, and `keep` prunes.
#[test]
fn backups_through_the_api() {
    let root = tempfile::tempdir().unwrap();
    let (_identity, recipient) = roost::backup::keygen(std::time::SystemTime::now());
    let dir = root.path().join("backups");
    let config = format!(
        "[backup]\nrecipient = \"{recipient}\"\ndir = {:?}\nevery = \"30d\"\nkeep = 2\n",
        dir.display().to_string()
    );
    let a = Device::with_config(root.path(), "a", &config);
    // With no backup yet, the schedule writes one at start: wait for it, so
    // the ones below are the newest.
    wait_for("the first scheduled backup", || roost::backup::newest_backup(&dir).is_ok_and(|b| b.is_some()));
    let mut written = Vec::new();
    for _ in 0..3 {
        let made = a.ok("POST", "/api/backups", None);
        let file = dir.join(made["file"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{made}");
        assert_eq!(made["bytes"], bytes.len() as u64, "{made}");
        written.push(made["file"].as_str().unwrap().to_string());
        // Scheduled names carry the time in milliseconds.
        std::thread::sleep(Duration::from_millis(5));
    }
    let listed = a.ok("GET", "/api/backups", None);
    let files: Vec<&str> = listed["backups"].as_array().unwrap().iter().map(|b| b["file"].as_str().unwrap()).collect();
    assert_eq!(files, vec![written[2].as_str(), written[1].as_str()], "newest first, keep = 2: {listed}");
    assert_eq!(listed["keep"], 2);
    assert_eq!(listed["every"], "30d");
    assert_eq!(listed["recipient"], recipient.to_string());
}
