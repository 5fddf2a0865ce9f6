//! Property tests: whatever bytes a client sends, in any connection state,
//! the conn does not panic, and every complete command line gets exactly one
//! tagged reply or the connection ends with BYE (STYLE 19, 21).

use proptest::prelude::*;

use crate::imap::testing::Harness;

/// Fragments that reach deep into the parsers, mixed with arbitrary bytes.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "FETCH",
        "UID",
        "STORE",
        "SEARCH",
        "SELECT",
        "EXAMINE",
        "LIST",
        "STATUS",
        "APPEND",
        "COPY",
        "MOVE",
        "EXPUNGE",
        "IDLE",
        "DONE",
        "ENABLE",
        "QRESYNC",
        "CONDSTORE",
        "AUTHENTICATE",
        "PLAIN",
        "LOGIN",
        "NOOP",
        "1:*",
        "*",
        "0",
        "4294967295",
        "1,3:5",
        "(FLAGS)",
        "(CHANGEDSINCE 0)",
        "(CHANGEDSINCE 1 VANISHED)",
        "BODY[]",
        "BODY.PEEK[1.2.MIME]<0.10>",
        "BODY[HEADER.FIELDS (A B)]",
        "RETURN",
        "(MIN MAX)",
        "INBOX",
        "\"\"",
        "%",
        "(SPECIAL-USE)",
        "{3}",
        "{3+}",
        "~{2+}",
        "{99999999999+}",
        "\\Seen",
        "+FLAGS",
        "-FLAGS.SILENT",
        "(UNCHANGEDSINCE 0)",
        "(QRESYNC (1 2 1:9))",
        "CHARSET",
        "UTF-8",
        "\"Entw&APw-rfe\"",
        "&Jjo",
        " ",
        "(",
        ")",
        "\r\n",
        "\n",
        "\u{ff}",
    ]);
    prop_oneof![
        4 => words.prop_map(|w| w.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..40).prop_map(|parts| {
        let mut bytes = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if i % 6 == 0 {
                bytes.extend_from_slice(format!("\r\nt{i} ").as_bytes());
            } else {
                bytes.push(b' ');
            }
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(b"\r\n");
        bytes
    })
}

#[derive(Debug, Clone, Copy)]
enum Start {
    NotAuthenticated,
    Authenticated,
    Selected,
    Idling,
}

fn run(start: Start, bytes: &[u8]) {
    let mut h = match start {
        Start::NotAuthenticated => Harness::new(),
        _ => Harness::logged_in(),
    };
    h.append("INBOX", "Subject: a\r\n\r\nbody\r\n");
    h.append("INBOX", "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\none\r\n--x--\r\n");
    if matches!(start, Start::Selected | Start::Idling) {
        h.transact("s SELECT INBOX", "OK");
    }
    if matches!(start, Start::Idling) {
        h.send("i IDLE");
    }
    h.send_bytes(bytes);
    // Whatever happened, a fresh command gets an answer, unless the
    // connection was closed (BYE), waits in IDLE/AUTHENTICATE, or is inside
    // a literal the input announced (then NOOP is literal data).
    let waiting = h.partial_input() || h.in_flow();
    let out = h.send("zz NOOP");
    let excused = h.closed() || waiting;
    assert!(excused || out.contains("zz "), "no answer to NOOP:\n{out}");
}

/// Cases per state: a few for every `cargo test`; run
/// `ROOST_FUZZ_CASES=2000 cargo test --release -p roost fuzz` for a deep run.
fn cases() -> u32 {
    std::env::var("ROOST_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn not_authenticated(bytes in input()) { run(Start::NotAuthenticated, &bytes) }

    #[test]
    fn authenticated(bytes in input()) { run(Start::Authenticated, &bytes) }

    #[test]
    fn selected(bytes in input()) { run(Start::Selected, &bytes) }

    #[test]
    fn idling(bytes in input()) { run(Start::Idling, &bytes) }
}
