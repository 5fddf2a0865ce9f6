//! An LMTP `250` is a promise: `roost serve` (the real binary) is killed with
//! SIGKILL while a client keeps delivering, and every message it had
//! acknowledged must be in the store afterwards, which must still verify.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roost_core::model::UserName;

fn reply(io: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if io.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, all));
        }
        all.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            return Ok(all);
        }
    }
}

/// Delivers messages 0, 1, 2, ... one transaction each until the server
/// goes away; returns the numbers it acknowledged.
fn deliver_until_gone(port: u16) -> Vec<u32> {
    let mut acked = Vec::new();
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else { return acked };
    let mut io = BufReader::new(stream);
    let mut run = || -> std::io::Result<()> {
        reply(&mut io)?;
        io.get_mut().write_all(b"LHLO test\r\n")?;
        reply(&mut io)?;
        for i in 0u32.. {
            let msg = format!(
                "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nMessage-ID: <{i}@x>\r\nSubject: {i}\r\n\r\nbody {i}\r\n.\r\n"
            );
            io.get_mut().write_all(msg.as_bytes())?;
            for _ in 0..3 {
                reply(&mut io)?;
            }
            if reply(&mut io)?.starts_with("250") {
                acked.push(i);
            }
        }
        Ok(())
    };
    let _ = run();
    acked
}

#[test]
fn every_acknowledged_delivery_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut store = roost::cli::init::init_data_dir(&data).unwrap();
    store.write(1, |w| w.add_user(&UserName::new("alice").unwrap(), "not-a-hash")).unwrap();
    drop(store);
    let config = dir.path().join("roost.toml");
    std::fs::write(&config, "").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen-lmtp", &format!("127.0.0.1:{port}")])
        .args(["--listen-imap", "127.0.0.1:0", "--listen-imaps", "127.0.0.1:0", "--listen-sync", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "roost serve did not open the LMTP port");
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = std::thread::spawn(move || deliver_until_gone(port));
    // Let some deliveries through, then kill mid-stream.
    std::thread::sleep(Duration::from_millis(700));
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let acked = client.join().unwrap();
    assert!(!acked.is_empty(), "nothing was delivered before the kill");

    let store = roost::cli::open_store(&data).unwrap();
    let user = UserName::new("alice").unwrap();
    let inbox = store.mailbox_by_name(&user, "INBOX").unwrap().unwrap();
    let mut stored = Vec::new();
    for e in store.entries(inbox.id).unwrap() {
        let raw = String::from_utf8(store.message(&e.blob).unwrap()).unwrap();
        let subject = raw.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string();
        stored.push(subject.parse::<u32>().unwrap());
    }
    println!("{} acknowledged, {} stored", acked.len(), stored.len());
    for i in &acked {
        assert!(stored.contains(i), "message {i} was acknowledged but is not stored");
    }
    // At most the one in flight at the kill may be stored without its ack.
    assert!(stored.len() <= acked.len() + 1, "{} stored, {} acknowledged", stored.len(), acked.len());
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
