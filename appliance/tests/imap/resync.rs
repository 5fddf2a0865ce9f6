//! Incremental resync of a selected mailbox: sessions catch up from the
//! MODSEQ they last read (changed entries and tombstones only). Three
//! sessions make bursts of changes (APPEND, STORE, UID STORE, FETCH that sets
//! \Seen, EXPUNGE) while the others wait, and each client keeps its own copy
//! of the mailbox from nothing but the untagged responses it gets, as a real
//! client does. After every burst each copy must equal what a fresh session
//! reads; at the end a QRESYNC client that left midway catches up in one
//! SELECT.

use std::collections::BTreeMap;

use crate::harness::{fill_inbox, Raw, Server};

/// A client's copy of the selected mailbox: (UID once known, flags) by
/// message number.
#[derive(Debug, Default)]
struct View {
    messages: Vec<(Option<u32>, String)>,
}

/// `1:3,7` as numbers.
fn parse_set(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                out.extend(a.min(b)..=a.max(b));
            }
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

/// The UID and the sorted flags of a `* n FETCH (...)` line.
fn fetch_items(line: &str) -> (Option<u32>, Option<String>) {
    let uid = line.find("UID ").map(|i| {
        let rest = &line[i + 4..];
        rest[..rest.find([' ', ')']).unwrap()].parse().unwrap()
    });
    let flags = line.find("FLAGS (").map(|i| {
        let rest = &line[i + 7..];
        let mut flags: Vec<&str> = rest[..rest.find(')').unwrap()].split_whitespace().collect();
        flags.sort_unstable();
        flags.join(" ")
    });
    (uid, flags)
}

impl View {
    /// Applies the untagged responses of one command.
    fn apply(&mut self, lines: &[String]) {
        for line in lines {
            let words: Vec<&str> = line.splitn(3, ' ').collect();
            if words[0] != "*" || words.len() < 3 {
                continue;
            }
            if let Some(set) = line.strip_prefix("* VANISHED (EARLIER) ").or_else(|| line.strip_prefix("* VANISHED ")) {
                let gone = parse_set(set);
                self.messages.retain(|(uid, _)| !uid.is_some_and(|u| gone.contains(&u)));
                continue;
            }
            let Ok(n) = words[1].parse::<usize>() else { continue };
            if words[2] == "EXISTS" {
                assert!(n >= self.messages.len(), "EXISTS went down without EXPUNGE: {line}");
                self.messages.resize(n, (None, String::new()));
            } else if words[2] == "EXPUNGE" {
                self.messages.remove(n - 1);
            } else if words[2].starts_with("FETCH (") {
                let (uid, flags) = fetch_items(line);
                let message = &mut self.messages[n - 1];
                if let Some(uid) = uid {
                    assert!(message.0.is_none_or(|known| known == uid), "message {n} changed UID: {line}");
                    message.0 = Some(uid);
                }
                if let Some(flags) = flags {
                    message.1 = flags;
                }
            }
        }
    }

    /// UID and flags, once every UID is known.
    fn known(&self) -> Vec<(u32, String)> {
        self.messages.iter().map(|(uid, flags)| (uid.expect("UID still unknown"), flags.clone())).collect()
    }
}

/// A session with its own copy of INBOX.
struct Client {
    name: &'static str,
    raw: Raw,
    view: View,
    tag: u32,
}

impl Client {
    async fn open(server: &Server, name: &'static str, enable: Option<&str>, select: &str) -> Client {
        let mut raw = server.raw_login().await;
        if let Some(extension) = enable {
            raw.transact(&format!("e ENABLE {extension}"), "OK").await;
        }
        let mut client = Client { name, raw, view: View::default(), tag: 0 };
        client.run(select, "OK").await;
        client
    }

    /// Runs one command, applies what it reported, then learns the UIDs of
    /// new messages (as clients do after EXISTS).
    async fn run(&mut self, command: &str, expect: &str) -> Vec<String> {
        self.tag += 1;
        let lines = self.raw.transact(&format!("{}{} {command}", self.name, self.tag), expect).await;
        self.view.apply(&lines);
        for _ in 0..5 {
            let Some(first) = self.view.messages.iter().position(|(uid, _)| uid.is_none()) else { break };
            self.tag += 1;
            let more =
                self.raw.transact(&format!("{}{} FETCH {}:* (UID FLAGS)", self.name, self.tag, first + 1), "OK").await;
            self.view.apply(&more);
        }
        lines
    }
}

/// What a fresh session sees: (UID, flags) in message order.
async fn truth(server: &Server) -> Vec<(u32, String)> {
    let mut raw = server.raw_login().await;
    raw.transact("s SELECT INBOX", "OK").await;
    let lines = raw.transact("f UID FETCH 1:* (FLAGS)", "OK").await;
    raw.transact("z LOGOUT", "OK").await;
    lines
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| {
            let (uid, flags) = fetch_items(l);
            (uid.unwrap(), flags.unwrap())
        })
        .collect()
}

/// Deterministic choices (xorshift), so a failure replays.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

const FLAGS: [&str; 4] = ["\\Seen", "\\Flagged", "\\Deleted", "$Label"];

/// One random command of `client` that its copy says is valid.
fn command(client: &Client, dice: &mut Dice, appended: &mut usize) -> String {
    let count = client.view.messages.len();
    let op = if count == 0 { 0 } else { dice.roll(9) };
    let seq = 1 + if count > 0 { dice.roll(count) } else { 0 };
    let flag = FLAGS[dice.roll(FLAGS.len())];
    match op {
        0 | 1 => {
            *appended += 1;
            let body = format!("Subject: resync {appended}\r\nFrom: r@example.org\r\n\r\nbody {appended}\r\n");
            format!("APPEND INBOX {{{}+}}\r\n{body}", body.len())
        }
        2 => format!("STORE {seq} +FLAGS ({flag})"),
        3 => format!("STORE {seq} -FLAGS ({flag})"),
        4 => {
            let uid = client.view.messages[seq - 1].0.expect("UID known");
            format!("UID STORE {uid} FLAGS ({flag} $Other)")
        }
        // Expunges stay held during FETCH by number (RFC 9051 7.5.1).
        5 => format!("FETCH {seq} (FLAGS)"),
        // A body FETCH without PEEK sets \Seen through the session's own write.
        6 => format!("FETCH {seq} (FLAGS BODY[TEXT])"),
        7 => "EXPUNGE".to_string(),
        _ => "NOOP".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resync_incrementally_through_bursts_of_changes() {
    let server = Server::start().await;
    fill_inbox(&server, 12).await;
    let mut clients = vec![
        Client::open(&server, "a", None, "SELECT INBOX").await,
        Client::open(&server, "b", Some("QRESYNC"), "SELECT INBOX").await,
        Client::open(&server, "c", None, "SELECT INBOX (CONDSTORE)").await,
    ];
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut appended = 0;
    let mut phone: Option<(u64, u64, BTreeMap<u32, String>)> = None;
    for burst in 0..24 {
        let who = dice.roll(clients.len());
        for _ in 0..1 + dice.roll(10) {
            let client = &mut clients[who];
            let command = command(client, &mut dice, &mut appended);
            client.run(&command, "OK").await;
        }
        if burst % 3 == 2 {
            // Everyone catches up (NOOP announces held expunges too) and
            // must then hold exactly what the store holds.
            let truth = truth(&server).await;
            for client in &mut clients {
                client.run("NOOP", "OK").await;
                assert_eq!(client.view.known(), truth, "session {} after burst {burst}", client.name);
            }
        }
        if burst == 10 {
            phone = Some(phone_snapshot(&server).await);
        }
    }
    // The phone reconnects with what it had: VANISHED (EARLIER) and FETCH
    // of what changed since its MODSEQ bring it to the store's state.
    let (uid_validity, modseq, mut known) = phone.unwrap();
    let mut raw = server.raw_login().await;
    raw.transact("e ENABLE QRESYNC", "OK").await;
    let lines = raw.transact(&format!("s SELECT INBOX (QRESYNC ({uid_validity} {modseq}))"), "OK").await;
    let mut changed = 0;
    for line in &lines {
        if let Some(set) = line.strip_prefix("* VANISHED (EARLIER) ") {
            for uid in parse_set(set) {
                known.remove(&uid);
            }
        } else if line.contains(" FETCH (") {
            let (uid, flags) = fetch_items(line);
            known.insert(uid.unwrap(), flags.unwrap());
            changed += 1;
        }
    }
    let truth = truth(&server).await;
    assert_eq!(known.into_iter().collect::<Vec<_>>(), truth, "QRESYNC client after {lines:#?}");
    assert!(0 < changed && changed <= truth.len(), "resync reported {changed} of {} messages", truth.len());
    let exists = lines.iter().find_map(|l| l.strip_suffix(" EXISTS")?.strip_prefix("* ")?.parse::<usize>().ok());
    assert_eq!(exists, Some(truth.len()));
    raw.transact("z LOGOUT", "OK").await;
    for client in &mut clients {
        client.run("LOGOUT", "OK").await;
    }
    server.stop().await;
}

/// A QRESYNC client's state before it goes offline: UIDVALIDITY,
/// HIGHESTMODSEQ and every UID's flags.
async fn phone_snapshot(server: &Server) -> (u64, u64, BTreeMap<u32, String>) {
    let mut raw = server.raw_login().await;
    raw.transact("e ENABLE QRESYNC", "OK").await;
    let lines = raw.transact("s SELECT INBOX", "OK").await;
    let value = |key: &str| -> u64 {
        let line = lines.iter().find(|l| l.contains(key)).unwrap();
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split([']', ' ']).next().unwrap().parse().unwrap()
    };
    let (uid_validity, modseq) = (value("UIDVALIDITY "), value("HIGHESTMODSEQ "));
    let fetched = raw.transact("f UID FETCH 1:* (FLAGS)", "OK").await;
    raw.transact("z LOGOUT", "OK").await;
    let known = fetched
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| {
            let (uid, flags) = fetch_items(l);
            (uid.unwrap(), flags.unwrap())
        })
        .collect();
    (uid_validity, modseq, known)
}
