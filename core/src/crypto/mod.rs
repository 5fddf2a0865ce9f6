//! Mail at rest (issue 8): each user has an age X25519 identity. Messages are
//! sealed to its public key (no password needed to store mail); the identity
//! itself is stored only wrapped, once under a key derived from the user's
//! password (argon2id, parameters recorded beside it) and once under a random
//! recovery key the user keeps offline. A login unwraps it into a
//! [`SessionKey`] that lives in memory for that session only.
//!
//! The record ([`UserKeys`]) replicates to paired devices in `user_keys`
//! events, so the user can log in on any device. docs/security.md says what
//! this protects and what it does not.

mod age_shape;
mod filekeys;
mod opened;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

pub use crate::crypto::age_shape::{sealed_plain_len, AGE_HEADER_BYTES_MAX};
pub use crate::crypto::filekeys::WrappedFileKey;
use crate::crypto::filekeys::{FileKeyBytes, FileKeys, KnownFileKey, RecordingIdentity, RecordingRecipient};
pub use crate::crypto::opened::OpenedBudget;
use crate::crypto::opened::OpenedCache;

/// First bytes of every age file: how a sealed blob is told from a plaintext
/// blob written before encryption existed (RFC 5322 messages start with a
/// header field, which has a colon before any newline; this line has none).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Domain separation for the recovery-key wrapping key.
const RECOVERY_CONTEXT: &str = "roost 2026 recovery key wraps the user's age identity v1";

/// A key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The password or recovery key does not unwrap the identity. Callers
    /// answer exactly as for an unknown user.
    #[error("the password or recovery key does not match")]
    WrongSecret,
    /// A stored key record is malformed.
    #[error("key record of user {user} is malformed: {reason}")]
    BadRecord {
        /// Whose record.
        user: String,
        /// What is wrong.
        reason: String,
    },
    /// A recovery key was typed wrong (not 64 hex digits).
    #[error("a recovery key is 64 hexadecimal digits (dashes and spaces ignored)")]
    BadRecoveryKey,
    /// Sealing failed (age).
    #[error("cannot encrypt a message: {0}")]
    Seal(String),
    /// A sealed blob does not decrypt with this identity, or is damaged.
    #[error("cannot decrypt a message: {0}")]
    Open(String),
}

/// Argon2id parameters and salt, recorded beside what they wrapped so a later
/// build with other defaults still unwraps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kdf", rename_all = "snake_case")]
pub enum WrapKdf {
    /// A password through argon2id.
    Argon2id {
        /// Memory in KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
        /// Salt, hex.
        salt: String,
    },
    /// A 256-bit random recovery key through BLAKE3 key derivation (no
    /// stretching needed: it is not guessable).
    Recovery,
}

/// The identity, encrypted (XChaCha20-Poly1305) under a derived key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedIdentity {
    /// How the wrapping key is derived.
    #[serde(flatten)]
    pub kdf: WrapKdf,
    /// 24-byte nonce, hex.
    pub nonce: String,
    /// The identity's `AGE-SECRET-KEY-1...` string, encrypted, hex.
    pub ciphertext: String,
}

/// A user's key record, as replicated: everything a device needs to store
/// mail for the user and to let the user log in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKeys {
    /// The age recipient (`age1...`) messages are sealed to.
    pub public_key: String,
    /// The identity under the current password.
    pub by_password: WrappedIdentity,
    /// The identity under the recovery key; survives password changes.
    pub by_recovery: WrappedIdentity,
    /// Key of the per-user content hash (keyed BLAKE3) that dedups a user's
    /// blobs and identifies a delivered message across devices, hex. Not a
    /// secret from whoever holds the disk; it keeps one user's dedup from
    /// matching another's.
    pub content_hash_key: String,
}

/// The recovery key shown once at `roost user add`.
pub struct RecoveryKey(Zeroizing<[u8; 32]>);

impl fmt::Display for RecoveryKey {
    /// Eight dash-separated groups of eight hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = Zeroizing::new(hex::encode(*self.0));
        for (i, group) in hex.as_bytes().chunks(8).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey(..)")
    }
}

impl FromStr for RecoveryKey {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        let digits: Zeroizing<String> = Zeroizing::new(s.chars().filter(|c| !c.is_whitespace() && *c != '-').collect());
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits.as_bytes(), &mut *key).map_err(|_| CryptoError::BadRecoveryKey)?;
        Ok(RecoveryKey(key))
    }
}

/// The unwrapped identities of one user: lives in memory for one session,
/// zeroised on drop (age's identity holds an x25519 `StaticSecret`, which
/// zeroises itself). Usually one identity; more when the user was created on
/// two devices before they synced (the keyring, docs/security.md): a blob
/// opens with whichever identity it was sealed to.
/// It keeps the plaintexts the session opened (see [`SessionKey::keep_opened`])
/// and the age file keys it learned or read from the file-key cache
/// (`filekeys.rs`).
pub struct SessionKey {
    identities: Vec<age::x25519::Identity>,
    id: [u8; 32],
    opened: OpenedCache,
    file_keys: FileKeys,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    fn new(identities: Vec<age::x25519::Identity>) -> SessionKey {
        let mut publics: Vec<String> = identities.iter().map(|i| i.to_public().to_string()).collect();
        publics.sort();
        publics.dedup();
        let mut hasher = blake3::Hasher::new();
        for public in &publics {
            hasher.update(public.as_bytes());
            hasher.update(b"\n");
        }
        // The cache key follows the first (current) identity; without one
        // (never: a key has at least one identity) no row ever unwraps.
        let secret = identities.first().map(|i| i.to_string()).unwrap_or_else(|| String::new().into());
        SessionKey {
            identities,
            id: *hasher.finalize().as_bytes(),
            opened: OpenedCache::default(),
            file_keys: FileKeys::new(&secret),
        }
    }

    /// Decrypts a sealed blob with whichever of the identities it was sealed to.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let identities: Vec<&dyn age::Identity> = self.identities.iter().map(|i| i as &dyn age::Identity).collect();
        decrypt(sealed, &identities)
    }

    /// Decrypts the sealed blob `blob`: with its file key when this session
    /// has it (learned, or primed from the file-key cache), else with the
    /// identities, learning the file key for the cache. A known key that is
    /// wrong fails age's header MAC; the identities then decide, and the key
    /// they unwrap replaces it.
    pub fn open_blob(&self, blob: &crate::model::BlobHash, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if let Some(file_key) = self.file_keys.take(blob) {
            if let Ok(plain) = decrypt(sealed, &[&KnownFileKey(file_key)]) {
                return Ok(plain);
            }
        }
        let recording = RecordingIdentity { identities: &self.identities, file_key: Default::default() };
        let plain = decrypt(sealed, &[&recording])?;
        if let Some(file_key) = recording.file_key.into_inner().unwrap_or_else(|p| p.into_inner()) {
            self.file_keys.learn(blob, file_key);
        }
        Ok(plain)
    }

    /// Reads the rows of `user`'s file-key cache for blobs about to be
    /// opened (`store::file_keys`); rows that do not unwrap under this
    /// session's cache key are ignored. Returns how many did.
    pub fn prime_file_keys(&self, user: &str, rows: &[(crate::model::BlobHash, WrappedFileKey)]) -> usize {
        self.file_keys.prime(user, rows)
    }

    /// Whether this session holds the file key of `blob` in memory.
    pub fn knows_file_key(&self, blob: &crate::model::BlobHash) -> bool {
        self.file_keys.knows(blob)
    }

    /// Whether file keys were learned since the last
    /// [`SessionKey::learned_file_keys`].
    pub fn has_learned_file_keys(&self) -> bool {
        self.file_keys.has_learned()
    }

    /// The file keys learned since the last call, wrapped for `user`'s
    /// file-key cache (`Store::record_file_keys` writes them).
    pub fn learned_file_keys(&self, user: &str) -> Vec<(crate::model::BlobHash, WrappedFileKey)> {
        self.file_keys.take_learned(user)
    }

    /// Records the file key of a blob this session sealed.
    pub(crate) fn learn_file_key(&self, blob: &crate::model::BlobHash, file_key: FileKeyBytes) {
        self.file_keys.learn(blob, file_key);
    }

    /// A fingerprint of these identities (BLAKE3 of their public keys), to
    /// key in-memory caches per reader.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// The public key of the first identity (the one unwrapped first: the
    /// user's current one at login).
    pub fn public_key(&self) -> String {
        self.identities.first().map(|i| i.to_public().to_string()).unwrap_or_default()
    }

    /// Whether this session holds the identity of `public_key`.
    pub fn holds(&self, public_key: &str) -> bool {
        self.identities.iter().any(|i| i.to_public().to_string() == public_key)
    }

    /// This session with `other`'s identities added (a recovered identity
    /// folded into a session opened by the password).
    /// What the session already opened stays in its cache.
    pub fn with(self, other: SessionKey) -> SessionKey {
        let SessionKey { mut identities, opened, file_keys, .. } = self;
        for identity in other.identities {
            let public = identity.to_public().to_string();
            if !identities.iter().any(|i| i.to_public().to_string() == public) {
                identities.push(identity);
            }
        }
        // The first identity stays first, so the cache key is the same.
        SessionKey { opened, file_keys, ..SessionKey::new(identities) }
    }

    fn secret_of(&self, public_key: &str) -> Option<age::secrecy::SecretString> {
        self.identities.iter().find(|i| i.to_public().to_string() == public_key).map(|i| i.to_string())
    }

    /// From now on, keep the plaintext of each message this key opens
    /// through the store, within `budget`, until the key is dropped
    /// (`opened.rs`). Off by default.
    pub fn keep_opened(&mut self, budget: Arc<OpenedBudget>) {
        self.opened = OpenedCache::with_budget(budget);
    }

    /// Whether this key keeps what it opens and has not opened `blob` yet:
    /// opening it ahead of its read would save that read the decryption.
    pub fn wants_opened(&self, blob: &crate::model::BlobHash) -> bool {
        self.opened.wants(blob)
    }

    pub(crate) fn opened(&self) -> &OpenedCache {
        &self.opened
    }
}

/// What a device needs to seal mail for a user: no secret.
#[derive(Clone)]
pub struct Sealer {
    recipient: age::x25519::Recipient,
    content_hash_key: [u8; 32],
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer({})", self.recipient)
    }
}

impl Sealer {
    /// Encrypts a message to the user (age, X25519 recipient).
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        age::encrypt(&self.recipient, plaintext).map_err(|e| CryptoError::Seal(e.to_string()))
    }

    /// Encrypts a message to the user, keeping its file key for the
    /// session's file-key cache.
    pub(crate) fn seal_recording(&self, plaintext: &[u8]) -> Result<(Vec<u8>, Option<FileKeyBytes>), CryptoError> {
        let recording = RecordingRecipient { recipient: &self.recipient, file_key: Default::default() };
        let sealed = age::encrypt(&recording, plaintext).map_err(|e| CryptoError::Seal(e.to_string()))?;
        Ok((sealed, recording.file_key.into_inner().unwrap_or_else(|p| p.into_inner())))
    }

    /// Encrypts a message to several users at once (one age file, one
    /// stanza per recipient): a blob stored in clear before encryption and
    /// shared by several users' entries is sealed in place to all of them
    /// (`store::seal_existing`).
    pub fn seal_to_all(sealers: &[&Sealer], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use std::io::Write;
        let seal_err = |e: &dyn fmt::Display| CryptoError::Seal(e.to_string());
        let recipients = sealers.iter().map(|s| &s.recipient as &dyn age::Recipient);
        let encryptor = age::Encryptor::with_recipients(recipients).map_err(|e| seal_err(&e))?;
        let mut sealed = Vec::with_capacity(plaintext.len() + 200 * sealers.len() + 64);
        let mut writer = encryptor.wrap_output(&mut sealed).map_err(|e| seal_err(&e))?;
        writer.write_all(plaintext).map_err(|e| seal_err(&e))?;
        writer.finish().map_err(|e| seal_err(&e))?;
        Ok(sealed)
    }

    /// The per-user keyed hash of a message: equal for equal bytes of one
    /// user, unrelated across users.
    pub fn content_hash(&self, plaintext: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.content_hash_key, plaintext).as_bytes()
    }
}

/// Decrypts an age file with the first of `identities` that matches it.
fn decrypt(sealed: &[u8], identities: &[&dyn age::Identity]) -> Result<Vec<u8>, CryptoError> {
    use std::io::Read;
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(|e| CryptoError::Open(e.to_string()))?;
    let mut reader = decryptor.decrypt(identities.iter().copied()).map_err(|e| CryptoError::Open(e.to_string()))?;
    let mut plain = Vec::with_capacity(sealed.len());
    reader.read_to_end(&mut plain).map_err(|e| CryptoError::Open(e.to_string()))?;
    Ok(plain)
}

/// Whether stored bytes are an age file rather than a plaintext message.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC)
}

/// Argon2id parameters for new wraps: the argon2 crate's defaults, RFC 9106's
/// second recommendation (19 MiB, 2 passes, 1 lane), as `auth.rs` uses.
fn default_argon2() -> (u32, u32, u32) {
    (Params::DEFAULT_M_COST, Params::DEFAULT_T_COST, Params::DEFAULT_P_COST)
}

fn derive_password_key(password: &str, m_kib: u32, t: u32, p: u32, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = Params::new(m_kib, t, p, Some(32)).map_err(|e| format!("argon2 parameters: {e}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    crate::auth::argon2_into(&argon2, password.as_bytes(), salt, &mut *key).map_err(|e| format!("argon2: {e}"))?;
    Ok(key)
}

fn recovery_wrap_key(recovery: &RecoveryKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(RECOVERY_CONTEXT, &*recovery.0))
}

fn wrap(kdf: WrapKdf, key: &[u8; 32], secret: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> WrappedIdentity {
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key.into());
    // Encryption with a valid key and nonce fails only for inputs over 256 GiB.
    let ciphertext = cipher.encrypt(XNonce::from_slice(&nonce), secret).expect("an identity string encrypts");
    WrappedIdentity { kdf, nonce: hex::encode(nonce), ciphertext: hex::encode(ciphertext) }
}

fn unwrap_with(user: &str, wrapped: &WrappedIdentity, key: &[u8; 32]) -> Result<SessionKey, CryptoError> {
    let bad = |reason: &str| CryptoError::BadRecord { user: user.to_string(), reason: reason.to_string() };
    let nonce = hex::decode(&wrapped.nonce).map_err(|_| bad("nonce is not hex"))?;
    if nonce.len() != 24 {
        return Err(bad("nonce is not 24 bytes"));
    }
    let ciphertext = hex::decode(&wrapped.ciphertext).map_err(|_| bad("ciphertext is not hex"))?;
    let cipher = XChaCha20Poly1305::new(key.into());
    let secret = Zeroizing::new(
        cipher.decrypt(XNonce::from_slice(&nonce), ciphertext.as_slice()).map_err(|_| CryptoError::WrongSecret)?,
    );
    let text = std::str::from_utf8(&secret).map_err(|_| bad("identity is not text"))?;
    let identity = age::x25519::Identity::from_str(text).map_err(|_| bad("identity is not an age X25519 key"))?;
    Ok(SessionKey::new(vec![identity]))
}

/// A new password wrapping key: fresh salt, default parameters. One key
/// wraps every identity of a keyring, so a login derives it once.
fn new_password_key(password: &str, rng: &mut (impl RngCore + CryptoRng)) -> (WrapKdf, Zeroizing<[u8; 32]>) {
    let (m_kib, t, p) = default_argon2();
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let key = derive_password_key(password, m_kib, t, p, &salt)
        .expect("argon2id with the default parameters derives a key from any password");
    (WrapKdf::Argon2id { m_kib, t, p, salt: hex::encode(salt) }, key)
}

fn wrap_password(password: &str, secret: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> WrappedIdentity {
    let (kdf, key) = new_password_key(password, rng);
    wrap(kdf, &key, secret, rng)
}

/// The key a password wrap was made with, derived from `password`.
fn password_key_for(user: &str, wrapped: &WrappedIdentity, password: &str) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let WrapKdf::Argon2id { m_kib, t, p, salt } = &wrapped.kdf else {
        return Err(CryptoError::BadRecord { user: user.into(), reason: "password wrap without argon2id".into() });
    };
    let salt = hex::decode(salt)
        .map_err(|_| CryptoError::BadRecord { user: user.into(), reason: "salt is not hex".into() })?;
    derive_password_key(password, *m_kib, *t, *p, &salt)
        .map_err(|reason| CryptoError::BadRecord { user: user.into(), reason })
}

/// What a keyring login opened.
#[derive(Debug)]
pub struct KeyringUnlock {
    /// Every identity the password unwrapped, the current one first.
    pub key: SessionKey,
    /// Public keys of the keyring's identities the password did not unwrap
    /// (wrapped under another password: they need it, or their recovery key).
    pub locked: Vec<String>,
}

/// Unwraps `current` (the user's LWW record) with `password`, then every other
/// identity of the keyring the same password unwraps. The password is
/// checked by `current` alone (one argon2id run, as for any login); further
/// runs happen only after it succeeded, one per distinct salt (a password
/// change wraps the whole keyring under one salt, so usually none).
pub fn unlock_keyring(
    user: &str,
    current: &UserKeys,
    keyring: &[UserKeys],
    password: &str,
) -> Result<KeyringUnlock, CryptoError> {
    let first_key = password_key_for(user, &current.by_password, password)?;
    let mut key = unwrap_with(user, &current.by_password, &first_key)?;
    let mut derived: Vec<(WrapKdf, Zeroizing<[u8; 32]>)> = vec![(current.by_password.kdf.clone(), first_key)];
    let mut locked = Vec::new();
    // The password is right (the current identity opened): a damaged other
    // entry only stays closed, like one under another password.
    for other in keyring.iter().filter(|k| k.public_key != current.public_key) {
        let wrap_key = match derived.iter().find(|(kdf, _)| *kdf == other.by_password.kdf) {
            Some((_, wrap_key)) => wrap_key.clone(),
            None => match password_key_for(user, &other.by_password, password) {
                Ok(wrap_key) => {
                    derived.push((other.by_password.kdf.clone(), wrap_key.clone()));
                    wrap_key
                }
                Err(_) => {
                    locked.push(other.public_key.clone());
                    continue;
                }
            },
        };
        match unwrap_with(user, &other.by_password, &wrap_key) {
            Ok(opened) if opened.holds(&other.public_key) => key = key.with(opened),
            _ => locked.push(other.public_key.clone()),
        }
    }
    Ok(KeyringUnlock { key, locked })
}

/// Every identity of `keyring` that `key` holds, wrapped under `new_password`
/// with one fresh salt: the current record (`current`, which `key` must hold)
/// and the others, for one `user_keys` event. Identities `key` does not hold
/// keep their old wraps (they are not in the result).
pub fn rewrap_keyring(
    current: &UserKeys,
    keyring: &[UserKeys],
    key: &SessionKey,
    new_password: &str,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(UserKeys, Vec<UserKeys>), CryptoError> {
    let (kdf, wrap_key) = new_password_key(new_password, rng);
    let mut rewrap_one = |keys: &UserKeys| -> Option<UserKeys> {
        let secret = key.secret_of(&keys.public_key)?;
        Some(UserKeys {
            by_password: wrap(kdf.clone(), &wrap_key, secret.expose_secret().as_bytes(), rng),
            ..keys.clone()
        })
    };
    let main = rewrap_one(current).ok_or(CryptoError::WrongSecret)?;
    let also = keyring.iter().filter(|k| k.public_key != current.public_key).filter_map(&mut rewrap_one).collect();
    Ok((main, also))
}

impl UserKeys {
    /// A new identity for a user, wrapped under `password` and under a new
    /// recovery key, which is returned to be shown once.
    pub fn generate(password: &str, rng: &mut (impl RngCore + CryptoRng)) -> (UserKeys, RecoveryKey) {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let mut recovery = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *recovery);
        let recovery = RecoveryKey(recovery);
        let mut content_hash_key = [0u8; 32];
        rng.fill_bytes(&mut content_hash_key);
        let keys = UserKeys {
            public_key: identity.to_public().to_string(),
            by_password: wrap_password(password, secret.expose_secret().as_bytes(), rng),
            by_recovery: wrap(WrapKdf::Recovery, &recovery_wrap_key(&recovery), secret.expose_secret().as_bytes(), rng),
            content_hash_key: hex::encode(content_hash_key),
        };
        content_hash_key.zeroize();
        (keys, recovery)
    }

    /// Unwraps the identity with the user's password.
    pub fn unlock(&self, user: &str, password: &str) -> Result<SessionKey, CryptoError> {
        let key = password_key_for(user, &self.by_password, password)?;
        unwrap_with(user, &self.by_password, &key)
    }

    /// Unwraps the identity with the recovery key.
    pub fn recover(&self, user: &str, recovery: &RecoveryKey) -> Result<SessionKey, CryptoError> {
        unwrap_with(user, &self.by_recovery, &recovery_wrap_key(recovery))
    }

    /// The same record with the identity wrapped under a new password: the
    /// old password no longer unwraps it; the recovery wrap stays.
    pub fn rewrap(
        &self,
        key: &SessionKey,
        new_password: &str,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<UserKeys, CryptoError> {
        let secret = key.secret_of(&self.public_key).ok_or(CryptoError::WrongSecret)?;
        Ok(UserKeys {
            by_password: wrap_password(new_password, secret.expose_secret().as_bytes(), rng),
            ..self.clone()
        })
    }

    /// What sealing needs, checked.
    pub fn sealer(&self, user: &str) -> Result<Sealer, CryptoError> {
        let bad = |reason: &str| CryptoError::BadRecord { user: user.to_string(), reason: reason.to_string() };
        let recipient = age::x25519::Recipient::from_str(&self.public_key).map_err(|_| bad("bad public key"))?;
        let mut content_hash_key = [0u8; 32];
        hex::decode_to_slice(&self.content_hash_key, &mut content_hash_key).map_err(|_| bad("bad content hash key"))?;
        Ok(Sealer { recipient, content_hash_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_wraps() {
        let mut rng = rand::rngs::OsRng;
        let (keys, recovery) = UserKeys::generate("correct horse", &mut rng);
        let sealer = keys.sealer("alice").unwrap();
        let sealed = sealer.seal(b"Subject: secret\r\n\r\nbody").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(b"Subject: secret\r\n\r\nbody"));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));

        let session = keys.unlock("alice", "correct horse").unwrap();
        assert_eq!(session.open(&sealed).unwrap(), b"Subject: secret\r\n\r\nbody");
        assert!(matches!(keys.unlock("alice", "wrong horse"), Err(CryptoError::WrongSecret)));

        // The recovery key round-trips through its printed form.
        let printed = recovery.to_string();
        assert_eq!(printed.len(), 64 + 7);
        let parsed: RecoveryKey = printed.parse().unwrap();
        let recovered = keys.recover("alice", &parsed).unwrap();
        assert_eq!(recovered.open(&sealed).unwrap(), b"Subject: secret\r\n\r\nbody");
        assert!("12-34".parse::<RecoveryKey>().is_err());

        // A password change: the new password works, the old one does not,
        // the recovery key still does, and old mail still opens.
        let rewrapped = keys.rewrap(&recovered, "battery staple", &mut rng).unwrap();
        assert!(matches!(rewrapped.unlock("alice", "correct horse"), Err(CryptoError::WrongSecret)));
        let after = rewrapped.unlock("alice", "battery staple").unwrap();
        assert_eq!(after.open(&sealed).unwrap(), b"Subject: secret\r\n\r\nbody");
        assert!(rewrapped.recover("alice", &parsed).is_ok());
        assert_eq!(rewrapped.public_key, keys.public_key);
    }

    #[test]
    fn a_keyring_login_opens_what_the_password_opens_and_a_change_joins_it() {
        let mut rng = rand::rngs::OsRng;
        let (current, _) = UserKeys::generate("shared passphrase", &mut rng);
        let (same, _) = UserKeys::generate("shared passphrase", &mut rng);
        let (other, _) = UserKeys::generate("another passphrase", &mut rng);
        let mut damaged = UserKeys::generate("shared passphrase", &mut rng).0;
        damaged.by_password.ciphertext = "zz".into();
        let keyring = [current.clone(), same.clone(), other.clone(), damaged.clone()];
        let sealed: Vec<Vec<u8>> = keyring.iter().map(|k| k.sealer("u").unwrap().seal(b"m").unwrap()).collect();

        assert!(matches!(unlock_keyring("u", &current, &keyring, "another passphrase"), Err(CryptoError::WrongSecret)));
        let unlocked = unlock_keyring("u", &current, &keyring, "shared passphrase").unwrap();
        assert_eq!(unlocked.locked, vec![other.public_key.clone(), damaged.public_key.clone()]);
        assert_eq!(unlocked.key.public_key(), current.public_key);
        assert!(unlocked.key.open(&sealed[0]).is_ok() && unlocked.key.open(&sealed[1]).is_ok());
        assert!(unlocked.key.open(&sealed[2]).is_err());

        // A change re-wraps what the session holds, under one salt.
        let (main, also) = rewrap_keyring(&current, &keyring, &unlocked.key, "new passphrase", &mut rng).unwrap();
        assert_eq!(also.len(), 1);
        assert_eq!(also[0].public_key, same.public_key);
        assert_eq!(also[0].by_password.kdf, main.by_password.kdf);
        let after = unlock_keyring("u", &main, &[main.clone(), also[0].clone(), other], "new passphrase").unwrap();
        assert!(after.key.open(&sealed[1]).is_ok());
        assert_ne!(after.key.id(), unlock_keyring("u", &main, &[], "new passphrase").unwrap().key.id());
    }

    #[test]
    fn a_known_file_key_opens_and_a_wrong_one_falls_back_to_the_identity() {
        let mut rng = rand::rngs::OsRng;
        let (keys, _) = UserKeys::generate("file keys", &mut rng);
        let sealer = keys.sealer("alice").unwrap();
        let session = keys.unlock("alice", "file keys").unwrap();
        let (sealed, file_key) = sealer.seal_recording(b"Subject: cached\r\n\r\nbody").unwrap();
        let blob = crate::model::BlobHash::of(&sealed);
        // A wrong key (stale, or a row that unwrapped to garbage) is refused
        // by the header MAC: the identity opens it and its key is learned.
        session.learn_file_key(&blob, Zeroizing::new([0; 16]));
        assert_eq!(session.open_blob(&blob, &sealed).unwrap(), b"Subject: cached\r\n\r\nbody");
        let rows = session.learned_file_keys("alice");
        assert_eq!(rows.len(), 1);
        // The learned key is the sealer's: a new session given the row opens
        // without its identity (a key whose identity cannot open it).
        let other = UserKeys::generate("other", &mut rng).0.unlock("u", "other").unwrap();
        assert!(other.open(&sealed).is_err());
        assert_eq!(session.prime_file_keys("alice", &rows), 1);
        assert!(!session.has_learned_file_keys());
        assert_eq!(session.open_blob(&blob, &sealed).unwrap(), b"Subject: cached\r\n\r\nbody");
        assert!(!session.has_learned_file_keys(), "opened with the cached key");
        session.learn_file_key(&blob, file_key.unwrap());
        assert_eq!(session.learned_file_keys("alice")[0].0, blob);
        // Another blob's name: the header MAC still decides.
        assert!(other.open_blob(&blob, &sealed).is_err());
    }

    #[test]
    fn content_hash_is_per_user() {
        let mut rng = rand::rngs::OsRng;
        let (a, _) = UserKeys::generate("password a", &mut rng);
        let (b, _) = UserKeys::generate("password b", &mut rng);
        let (sa, sb) = (a.sealer("a").unwrap(), b.sealer("b").unwrap());
        assert_eq!(sa.content_hash(b"m"), sa.content_hash(b"m"));
        assert_ne!(sa.content_hash(b"m"), sb.content_hash(b"m"));
        // Another user's identity does not open a's mail.
        let sealed = sa.seal(b"m").unwrap();
        assert!(b.unlock("b", "password b").unwrap().open(&sealed).is_err());
    }
}
