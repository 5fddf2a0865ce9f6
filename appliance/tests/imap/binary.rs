//! BINARY (RFC 3516) with raw protocol lines: FETCH BINARY[section]<partial>,
//! BINARY.PEEK, BINARY.SIZE on a multipart message with a quoted-printable
//! part and a base64 attachment, `[UNKNOWN-CTE]`, and APPEND of a literal8.

use crate::harness::Server;

/// Part 1 is quoted-printable Latin-1 text, part 2 a base64 attachment whose
/// bytes hold a NUL (`%PDF\0\x01bin\r\nend`), part 3 an encoding nobody defines.
const MAIL: &str = "From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=E9 au lait, a soft=\r\n line break\r\n--b1\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERgABYmluDQplbmQ=\r\n--b1\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n--b1--\r\n";

async fn server_with_mail() -> (Server, crate::harness::Raw) {
    let server = Server::start().await;
    let mut raw = server.raw_login().await;
    raw.transact(&format!("a APPEND INBOX {{{}+}}\r\n{MAIL}", MAIL.len()), "OK [APPENDUID").await;
    raw.transact("b SELECT INBOX", "OK").await;
    (server, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_is_advertised() {
    let server = Server::start().await;
    let mut raw = server.raw_login().await;
    let lines = raw.transact("a CAPABILITY", "OK").await;
    assert!(lines[0].split(' ').any(|c| c == "BINARY"), "{lines:#?}");
    raw.transact("z LOGOUT", "OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_peek_decodes_quoted_printable_and_base64() {
    let (server, mut raw) = server_with_mail().await;
    // Quoted-printable undone (soft break joined, =E9 a raw Latin-1 byte,
    // which the lossy line reader shows as U+FFFD), sent as a plain literal.
    let lines = raw.transact("c FETCH 1 (BINARY.PEEK[1])", "OK").await;
    assert_eq!(lines[0], "* 1 FETCH (BINARY[1] {31}", "{lines:#?}");
    assert_eq!(lines[1], "caf\u{fffd} au lait, a soft line break)", "{lines:#?}");
    // Base64 undone; the bytes hold a NUL, so a literal8.
    let lines = raw.transact("d UID FETCH 1 (BINARY.PEEK[2])", "OK").await;
    assert_eq!(lines[0], "* 1 FETCH (UID 1 BINARY[2] ~{14}", "{lines:#?}");
    assert_eq!(lines[1], "%PDF\0\u{1}bin", "{lines:#?}");
    assert_eq!(lines[2], "end)", "{lines:#?}");
    // PEEK left \Seen alone.
    let lines = raw.transact("e FETCH 1 FLAGS", "OK").await;
    assert_eq!(lines[0], "* 1 FETCH (FLAGS ())", "{lines:#?}");
    raw.transact("z LOGOUT", "OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_size_partial_and_seen() {
    let (server, mut raw) = server_with_mail().await;
    let lines = raw.transact("c FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2])", "OK").await;
    assert_eq!(lines[0], "* 1 FETCH (BINARY.SIZE[1] 31 BINARY.SIZE[2] 14)", "{lines:#?}");
    // <origin.length> cuts the decoded bytes, not the encoded ones.
    let lines = raw.transact("d FETCH 1 (BINARY.PEEK[2]<4.5>)", "OK").await;
    assert_eq!(lines[0], "* 1 FETCH (BINARY[2]<4> ~{5}", "{lines:#?}");
    assert_eq!(lines[1], "\0\u{1}bin)", "{lines:#?}");
    let lines = raw.transact("e FETCH 1 (BINARY.PEEK[1]<0.4>)", "OK").await;
    assert_eq!(lines[0], "* 1 FETCH (BINARY[1]<0> {4}", "{lines:#?}");
    // A part that does not exist is empty, as for BODY[].
    let lines = raw.transact("f FETCH 1 (BINARY.SIZE[9])", "OK").await;
    assert_eq!(lines[0], "* 1 FETCH (BINARY.SIZE[9] 0)", "{lines:#?}");
    // BINARY without PEEK sets \Seen (RFC 3516 4.2), and says so.
    let lines = raw.transact("g FETCH 1 (BINARY[1]<0.4> FLAGS)", "OK").await;
    assert!(lines.iter().any(|l| l.contains("FLAGS (\\Seen)")), "{lines:#?}");
    raw.transact("z LOGOUT", "OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_encoding_is_refused_and_the_connection_goes_on() {
    let (server, mut raw) = server_with_mail().await;
    let lines = raw.transact("c FETCH 1 (BINARY.PEEK[3])", "NO [UNKNOWN-CTE]").await;
    assert_eq!(lines.len(), 1, "no partial FETCH response before the NO: {lines:#?}");
    raw.transact("d FETCH 1 (BINARY.SIZE[3])", "NO [UNKNOWN-CTE]").await;
    // The encoded bytes are still there through BODY[].
    let lines = raw.transact("e FETCH 1 (BODY.PEEK[3])", "OK").await;
    assert_eq!(lines[1], "begin 644 a)", "{lines:#?}");
    // Not a section BINARY takes (RFC 3516 has only part numbers).
    raw.transact("f FETCH 1 (BINARY.PEEK[1.HEADER])", "BAD").await;
    raw.transact("z LOGOUT", "OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_of_a_literal8_keeps_binary_bytes() {
    let server = Server::start().await;
    let mut raw = server.raw_login().await;
    let message = b"Subject: raw\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\r\nA\0B\x01C\r\n";
    let mut command = format!("a APPEND INBOX ~{{{}+}}\r\n", message.len()).into_bytes();
    command.extend_from_slice(message);
    command.extend_from_slice(b"\r\n");
    raw.write(&command).await;
    let lines = raw.until_tagged("a").await;
    assert!(lines.last().unwrap().starts_with("a OK [APPENDUID"), "{lines:#?}");
    raw.transact("b SELECT INBOX", "OK").await;
    let lines = raw.transact("c FETCH 1 (RFC822.SIZE BINARY.PEEK[1] BINARY.SIZE[1])", "OK").await;
    assert_eq!(lines[0], format!("* 1 FETCH (RFC822.SIZE {} BINARY[1] ~{{7}}", message.len()), "{lines:#?}");
    assert_eq!(lines[1], "A\0B\u{1}C", "{lines:#?}");
    assert_eq!(lines[2], " BINARY.SIZE[1] 7)", "{lines:#?}");
    // The whole message as stored, NUL and all.
    let lines = raw.transact("d FETCH 1 (BINARY.PEEK[])", "OK").await;
    assert_eq!(lines[0], format!("* 1 FETCH (BINARY[] ~{{{}}}", message.len()), "{lines:#?}");
    raw.transact("z LOGOUT", "OK").await;
    server.stop().await;
}
