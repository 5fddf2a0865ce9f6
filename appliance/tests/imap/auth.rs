//! LOGIN, AUTHENTICATE, STARTTLS and implicit TLS over real sockets.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::Server;

fn connector(server: &Server) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn read_until_tagged<S: tokio::io::AsyncRead + Unpin>(reader: &mut BufReader<S>, tag: &str) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        assert!(!line.is_empty(), "closed: {all}");
        all.push_str(&line);
        if line.starts_with(&format!("{tag} ")) {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_async_imap_and_wrong_password() {
    // A real client logs in; a wrong password gets NO and the connection stays usable.
    let server = Server::start().await;
    let mut session = server.session("alice").await;
    session.noop().await.unwrap();
    session.logout().await.unwrap();
    let mut raw = server.raw().await;
    raw.transact("a LOGIN alice wrong", "NO [AUTHENTICATIONFAILED]").await;
    raw.transact("b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", "OK").await;
    raw.transact("c LOGOUT", "OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls() {
    let server = Server::start().await;
    let tcp = TcpStream::connect(server.tls_addr).await.unwrap();
    let tls = connector(&server).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut reader = BufReader::new(tls);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.unwrap();
    assert!(greeting.contains("AUTH=PLAIN") && !greeting.contains("STARTTLS"), "{greeting}");
    reader.get_mut().write_all(b"a LOGIN alice secret\r\n").await.unwrap();
    assert!(read_until_tagged(&mut reader, "a").await.contains("a OK"));
    reader.get_mut().write_all(b"b LOGOUT\r\n").await.unwrap();
    read_until_tagged(&mut reader, "b").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_drops_pipelined_plaintext() {
    // Bytes pipelined after STARTTLS must not run after the handshake
    // (CVE-2011-0411): the injected LOGIN is dropped, so NOOP's reply is the
    // first thing read over TLS and we are still not logged in.
    let server = Server::start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut greeting = [0u8; 512];
    let n = tcp.read(&mut greeting).await.unwrap();
    assert!(String::from_utf8_lossy(&greeting[..n]).contains("STARTTLS"));
    tcp.write_all(b"s STARTTLS\r\nx LOGIN alice secret\r\n").await.unwrap();
    let mut reader = BufReader::new(tcp);
    let reply = read_until_tagged(&mut reader, "s").await;
    assert!(reply.starts_with("s OK"), "{reply}");
    let tcp = reader.into_inner();
    let tls = connector(&server).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let mut reader = BufReader::new(tls);
    reader.get_mut().write_all(b"n SELECT INBOX\r\n").await.unwrap();
    let reply = read_until_tagged(&mut reader, "n").await;
    assert!(reply.starts_with("n BAD"), "{reply}");
    reader.get_mut().write_all(b"a LOGIN alice secret\r\nb LOGOUT\r\n").await.unwrap();
    assert!(read_until_tagged(&mut reader, "a").await.contains("a OK"));
    read_until_tagged(&mut reader, "b").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_deflate() {
    // RFC 4978: after the OK, both directions are raw deflate with sync flushes.
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    let server = Server::start().await;
    let mut raw = server.raw_login().await;
    raw.transact("z COMPRESS DEFLATE", "OK").await;
    let mut tcp = raw.into_inner();
    let mut compress = Compress::new(Compression::default(), false);
    let mut wire = Vec::with_capacity(1024);
    compress.compress_vec(b"a SELECT INBOX\r\nb LOGOUT\r\n", &mut wire, FlushCompress::Sync).unwrap();
    tcp.write_all(&wire).await.unwrap();
    let mut received = Vec::new();
    tcp.read_to_end(&mut received).await.unwrap();
    let mut decompress = Decompress::new(false);
    let mut text = Vec::with_capacity(64 * 1024);
    decompress.decompress_vec(&received, &mut text, FlushDecompress::Sync).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("a OK [READ-WRITE]") && text.contains("b OK LOGOUT"), "{text}");
    server.stop().await;
}
