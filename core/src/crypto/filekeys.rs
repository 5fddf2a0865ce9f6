//! The per-user cache of age file keys (issue 8: cold reads of sealed mail).
//!
//! Opening an age file costs one X25519 unwrap of its 16-byte file key
//! (~170 us here), then the symmetric work. A session that seals a message
//! (APPEND) or opens one with the identity learns that file key; it is
//! recorded, wrapped with XChaCha20-Poly1305 under the user's *cache key*, in
//! the LOCAL table `file_keys` (migration 0012). A later session of the user
//! unwraps it symmetrically (~1 us) instead of running X25519.
//!
//! The cache key is derived (HKDF-SHA256) from the user's current identity
//! secret, so it exists only where the identity does: in the memory of a
//! logged-in session, zeroised with it. A wrapped row binds the user and the
//! blob name (associated data), so a row copied to another user or blob does
//! not unwrap. A row that unwraps to a wrong file key is refused by age's
//! header MAC: the open falls back to the identity and the row is replaced
//! (docs/security.md).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use age::secrecy::{ExposeSecret, SecretString};
use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::model::BlobHash;

/// HKDF salt of the cache key (domain separation).
const CACHE_KEY_SALT: &[u8] = b"roost 2026 file-key cache key v1";
/// Prefix of the associated data of a wrapped file key.
const WRAP_CONTEXT: &[u8] = b"roost file key v1\0";
/// Learned keys kept for a flush at most: a session whose keys are never
/// flushed (a tool reading through a store without a user) does not grow.
const LEARNED_MAX: usize = 65_536;

/// A file key in memory.
pub(crate) type FileKeyBytes = Zeroizing<[u8; FILE_KEY_BYTES]>;

/// A message's age file key wrapped under its user's cache key: a row of
/// `file_keys`. Not secret (authenticated encryption under a key that is
/// never on disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedFileKey {
    /// 24 random bytes.
    pub nonce: [u8; 24],
    /// The 16-byte file key encrypted, with its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// One session's file keys: the cache key, the keys read from `file_keys`
/// for blobs about to be opened, and the keys learned since the last flush.
pub(crate) struct FileKeys {
    cache_key: Zeroizing<[u8; 32]>,
    inner: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// Unwrapped rows, used (and dropped) by the next open of their blob.
    primed: HashMap<BlobHash, FileKeyBytes>,
    /// Learned by sealing or by an X25519 open, not yet in `file_keys`.
    learned: HashMap<BlobHash, FileKeyBytes>,
}

impl FileKeys {
    /// The file keys of a session whose current identity is `secret`.
    pub(crate) fn new(secret: &SecretString) -> FileKeys {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(CACHE_KEY_SALT), secret.expose_secret().as_bytes());
        let mut cache_key = Zeroizing::new([0u8; 32]);
        hkdf.expand(b"file keys", &mut *cache_key).expect("32 bytes is a valid HKDF-SHA256 output length");
        FileKeys { cache_key, inner: Mutex::default() }
    }

    fn aad(user: &str, blob: &BlobHash) -> Vec<u8> {
        let mut aad = Vec::with_capacity(WRAP_CONTEXT.len() + user.len() + 33);
        aad.extend_from_slice(WRAP_CONTEXT);
        aad.extend_from_slice(user.as_bytes());
        aad.push(0);
        aad.extend_from_slice(blob.as_bytes());
        aad
    }

    fn wrap(&self, user: &str, blob: &BlobHash, file_key: &[u8; FILE_KEY_BYTES]) -> WrappedFileKey {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&*self.cache_key).into());
        let aad = Self::aad(user, blob);
        // Encryption with a valid key and nonce fails only for inputs over 256 GiB.
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: file_key, aad: &aad })
            .expect("a file key encrypts");
        WrappedFileKey { nonce, ciphertext }
    }

    /// The file key in `wrapped`, if it is a row of this user and blob made
    /// under this cache key.
    fn unwrap(&self, user: &str, blob: &BlobHash, wrapped: &WrappedFileKey) -> Option<FileKeyBytes> {
        let cipher = XChaCha20Poly1305::new((&*self.cache_key).into());
        let aad = Self::aad(user, blob);
        let plain = Zeroizing::new(
            cipher.decrypt(XNonce::from_slice(&wrapped.nonce), Payload { msg: &wrapped.ciphertext, aad: &aad }).ok()?,
        );
        let mut file_key = Zeroizing::new([0u8; FILE_KEY_BYTES]);
        file_key.copy_from_slice(plain.get(..FILE_KEY_BYTES).filter(|_| plain.len() == FILE_KEY_BYTES)?);
        Some(file_key)
    }

    /// Takes the rows of `user` read for blobs about to be opened; a row
    /// that does not unwrap (tampered, another user's, an older identity's)
    /// is skipped: that blob is opened with the identity and its row
    /// replaced. Returns how many rows unwrapped.
    pub(crate) fn prime(&self, user: &str, rows: &[(BlobHash, WrappedFileKey)]) -> usize {
        let mut known = self.lock();
        let mut unwrapped = 0;
        for (blob, wrapped) in rows {
            if let Some(file_key) = self.unwrap(user, blob, wrapped) {
                known.primed.insert(*blob, file_key);
                unwrapped += 1;
            }
        }
        unwrapped
    }

    /// Whether a primed or learned key of `blob` is in memory.
    pub(crate) fn knows(&self, blob: &BlobHash) -> bool {
        let known = self.lock();
        known.primed.contains_key(blob) || known.learned.contains_key(blob)
    }

    /// The key of `blob` for one open, if primed or learned.
    pub(crate) fn take(&self, blob: &BlobHash) -> Option<FileKeyBytes> {
        let mut known = self.lock();
        match known.primed.remove(blob) {
            Some(file_key) => Some(file_key),
            None => known.learned.get(blob).cloned(),
        }
    }

    /// Records the file key of `blob`, to be written by the next flush.
    pub(crate) fn learn(&self, blob: &BlobHash, file_key: FileKeyBytes) {
        let mut known = self.lock();
        known.primed.remove(blob);
        if known.learned.len() < LEARNED_MAX || known.learned.contains_key(blob) {
            known.learned.insert(*blob, file_key);
        }
    }

    pub(crate) fn has_learned(&self) -> bool {
        !self.lock().learned.is_empty()
    }

    /// The keys learned since the last call, wrapped for `user`'s rows.
    /// They stay primed for this session's next open of their blobs (within
    /// the same bound): a message just appended is often fetched next, and
    /// reading back the row just written cost a store read per message.
    pub(crate) fn take_learned(&self, user: &str) -> Vec<(BlobHash, WrappedFileKey)> {
        let mut known = self.lock();
        let learned = std::mem::take(&mut known.learned);
        let rows = learned.iter().map(|(blob, file_key)| (*blob, self.wrap(user, blob, file_key))).collect();
        for (blob, file_key) in learned {
            if known.primed.len() >= LEARNED_MAX {
                break;
            }
            known.primed.insert(blob, file_key);
        }
        rows
    }

    fn lock(&self) -> MutexGuard<'_, Known> {
        // Plain data: usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An age identity that answers any header with one known file key: age
/// checks it against the header MAC, so a wrong key fails the open (and
/// the caller falls back to the real identity) instead of giving bytes.
pub(crate) struct KnownFileKey(pub(crate) FileKeyBytes);

impl age::Identity for KnownFileKey {
    fn unwrap_stanza(&self, _stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        Some(Ok(FileKey::new(Box::new(*self.0))))
    }

    fn unwrap_stanzas(&self, _stanzas: &[Stanza]) -> Option<Result<FileKey, age::DecryptError>> {
        Some(Ok(FileKey::new(Box::new(*self.0))))
    }
}

/// The session's identities, keeping a copy of the file key they unwrap.
pub(crate) struct RecordingIdentity<'a> {
    pub(crate) identities: &'a [age::x25519::Identity],
    pub(crate) file_key: Mutex<Option<FileKeyBytes>>,
}

impl age::Identity for RecordingIdentity<'_> {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        self.unwrap_stanzas(std::slice::from_ref(stanza))
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, age::DecryptError>> {
        let result = self.identities.iter().find_map(|identity| age::Identity::unwrap_stanzas(identity, stanzas))?;
        if let Ok(file_key) = &result {
            *self.file_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(Zeroizing::new(*file_key.expose_secret()));
        }
        Some(result)
    }
}

/// A recipient keeping a copy of the file key it wraps (sealing by a
/// session that holds the identity).
pub(crate) struct RecordingRecipient<'a> {
    pub(crate) recipient: &'a age::x25519::Recipient,
    pub(crate) file_key: Mutex<Option<FileKeyBytes>>,
}

impl age::Recipient for RecordingRecipient<'_> {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, std::collections::HashSet<String>), age::EncryptError> {
        *self.file_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(Zeroizing::new(*file_key.expose_secret()));
        self.recipient.wrap_file_key(file_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_unwraps_only_for_its_user_and_blob_under_its_cache_key() {
        let identity = age::x25519::Identity::generate();
        let keys = FileKeys::new(&identity.to_string());
        let (blob, other_blob) = (BlobHash::of(b"a"), BlobHash::of(b"b"));
        keys.learn(&blob, Zeroizing::new([7; FILE_KEY_BYTES]));
        let rows = keys.take_learned("alice");
        assert_eq!(rows.len(), 1);
        assert!(keys.take_learned("alice").is_empty());
        // Kept for this session's next open of the blob, once.
        assert!(keys.knows(&blob));
        assert_eq!(keys.take(&blob).as_deref(), Some(&[7; FILE_KEY_BYTES]));
        assert!(!keys.knows(&blob));
        let (_, wrapped) = &rows[0];
        assert_eq!(keys.unwrap("alice", &blob, wrapped).as_deref(), Some(&[7; FILE_KEY_BYTES]));
        assert_eq!(keys.unwrap("bob", &blob, wrapped), None);
        assert_eq!(keys.unwrap("alice", &other_blob, wrapped), None);
        let other = FileKeys::new(&age::x25519::Identity::generate().to_string());
        assert_eq!(other.unwrap("alice", &blob, wrapped), None);
        let mut tampered = wrapped.clone();
        tampered.ciphertext[3] ^= 1;
        assert_eq!(keys.prime("alice", &[(blob, tampered)]), 0);
        assert!(!keys.knows(&blob));
        assert_eq!(keys.prime("alice", &[(blob, wrapped.clone())]), 1);
        assert_eq!(keys.take(&blob).as_deref(), Some(&[7; FILE_KEY_BYTES]));
        assert_eq!(keys.take(&blob), None);
    }
}
