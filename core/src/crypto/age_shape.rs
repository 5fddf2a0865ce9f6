//! The shape of an age file, checked without a key: a blob sealed in place
//! keeps its plaintext's name (docs/security.md), so a peer's bytes for it
//! cannot be hash-checked at receipt; what can be checked is that they are an
//! age v1 file (header lines ending in the MAC line, then a STREAM payload of
//! a length age produces) and how much plaintext they hold. That the
//! plaintext hashes to the name is checked when the blob is opened.

/// Most header bytes a check reads: a header holds one stanza (about 200
/// bytes for X25519) per recipient, so this allows hundreds of users on one
/// blob; a longer header is refused.
pub const AGE_HEADER_BYTES_MAX: usize = 64 * 1024;

/// age's STREAM: a 16-byte nonce, then chunks of up to 64 KiB of plaintext,
/// each followed by a 16-byte Poly1305 tag (age spec, "Payload").
const NONCE_BYTES: u64 = 16;
const TAG_BYTES: u64 = 16;
const CHUNK_PLAIN_BYTES: u64 = 64 * 1024;

/// Longest body line of a stanza: 64 columns of base64 (age spec, "Header").
const STANZA_BODY_COLUMNS: usize = 64;

/// Base64 (standard, unpadded) characters of a header MAC: 32 bytes.
const MAC_COLUMNS: usize = 43;

/// The plaintext length of an age file of `total` bytes whose first bytes are
/// `head` (its whole header at least, or all of it when shorter than
/// [`AGE_HEADER_BYTES_MAX`]); why not, when it cannot be an age v1 file.
pub fn sealed_plain_len(head: &[u8], total: u64) -> Result<u64, String> {
    let header = header_len(head)?;
    let payload = total.checked_sub(header as u64).ok_or("it is shorter than its own age header")?;
    payload_plain_len(payload)
}

/// Bytes of the header, up to and including its MAC line's newline.
fn header_len(head: &[u8]) -> Result<usize, String> {
    let Some(mut rest) = head.strip_prefix(crate::crypto::AGE_MAGIC) else {
        return Err("it does not start with the age v1 header line".into());
    };
    let mut offset = crate::crypto::AGE_MAGIC.len();
    let mut stanzas = 0usize;
    // Each round consumes one line of `head`, so this ends.
    loop {
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            return Err(format!("its age header does not end within {} bytes", head.len()));
        };
        let line = &rest[..end];
        offset += end + 1;
        rest = &rest[end + 1..];
        if let Some(mac) = line.strip_prefix(b"--- ") {
            if mac.len() != MAC_COLUMNS || !mac.iter().all(|b| is_base64(*b)) {
                return Err("its age header's MAC line is malformed".into());
            }
            if stanzas == 0 {
                return Err("its age header has no recipient stanza".into());
            }
            return Ok(offset);
        }
        if line.starts_with(b"-> ") {
            stanzas += 1;
        } else if stanzas == 0 || STANZA_BODY_COLUMNS < line.len() || !line.iter().all(|b| is_base64(*b)) {
            return Err("a line of its age header is neither a stanza nor base64".into());
        }
    }
}

/// The plaintext length of a STREAM payload of `payload` bytes: full chunks,
/// then a last one that is shorter (or full, or, for an empty plaintext, the
/// only chunk and empty).
fn payload_plain_len(payload: u64) -> Result<u64, String> {
    let sealed_chunk = CHUNK_PLAIN_BYTES + TAG_BYTES;
    let Some(chunks_bytes) = payload.checked_sub(NONCE_BYTES).filter(|b| TAG_BYTES <= *b) else {
        return Err(format!("its age payload of {payload} bytes is shorter than a nonce and one tag"));
    };
    let (full, last) = (chunks_bytes / sealed_chunk, chunks_bytes % sealed_chunk);
    match last {
        0 => Ok(full * CHUNK_PLAIN_BYTES),
        last if last < TAG_BYTES => Err(format!("its age payload of {payload} bytes ends inside a chunk's tag")),
        last => Ok(full * CHUNK_PLAIN_BYTES + last - TAG_BYTES),
    }
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Sealer, UserKeys};

    /// Against the age crate itself: around every chunk boundary, with one
    /// and with two recipients.
    #[test]
    fn the_plaintext_length_of_files_age_wrote() {
        let (alice, _) = UserKeys::generate("alice's passphrase", &mut rand::rngs::OsRng);
        let (bob, _) = UserKeys::generate("bob's passphrase", &mut rand::rngs::OsRng);
        let (alice, bob) = (alice.sealer("alice").unwrap(), bob.sealer("bob").unwrap());
        let chunk = CHUNK_PLAIN_BYTES as usize;
        for len in [0, 1, 18, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 5] {
            let plain = vec![b'x'; len];
            for sealed in [alice.seal(&plain).unwrap(), Sealer::seal_to_all(&[&alice, &bob], &plain).unwrap()] {
                assert_eq!(sealed_plain_len(&sealed, sealed.len() as u64), Ok(len as u64), "{len} bytes");
                let head = &sealed[..sealed.len().min(AGE_HEADER_BYTES_MAX)];
                assert_eq!(sealed_plain_len(head, sealed.len() as u64), Ok(len as u64), "{len} bytes");
            }
        }
    }

    #[test]
    fn what_age_cannot_have_written_is_refused() {
        let (alice, _) = UserKeys::generate("alice's passphrase", &mut rand::rngs::OsRng);
        let sealed = alice.sealer("alice").unwrap().seal(b"").unwrap();
        let len = sealed.len() as u64;
        let refused = |head: &[u8], total: u64| sealed_plain_len(head, total).unwrap_err();
        assert!(refused(b"Subject: x\r\n\r\nhi\r\n", 18).contains("header line"));
        let header = header_len(&sealed).unwrap();
        assert!(refused(&sealed, len - 1).contains("shorter"), "cut inside the only tag");
        let one_chunk_and_a_bit = (header as u64) + NONCE_BYTES + CHUNK_PLAIN_BYTES + TAG_BYTES + 5;
        assert!(refused(&sealed, one_chunk_and_a_bit).contains("inside a chunk's tag"));
        assert!(refused(&sealed, header as u64 - 1).contains("shorter than its own age header"));
        assert!(refused(&sealed[..header - 1], len).contains("does not end"));
        let mut bad_mac = sealed.clone();
        bad_mac[header - 2] = b'!';
        assert!(refused(&bad_mac, len).contains("MAC"));
        let mut no_stanza = crate::crypto::AGE_MAGIC.to_vec();
        no_stanza.extend_from_slice(&sealed[header - MAC_COLUMNS - 5..]);
        let total = no_stanza.len() as u64;
        assert!(refused(&no_stanza, total).contains("no recipient stanza"));
        let mut junk_line = crate::crypto::AGE_MAGIC.to_vec();
        junk_line.extend_from_slice(b"not a stanza\n");
        junk_line.extend_from_slice(&sealed[crate::crypto::AGE_MAGIC.len()..]);
        let total = junk_line.len() as u64;
        assert!(refused(&junk_line, total).contains("neither a stanza nor base64"));
    }
}
