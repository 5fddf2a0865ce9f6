//! Password hashing (argon2id, PHC strings) and the password policy.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::{CryptoRng, RngCore};

/// Shortest password accepted. NIST SP 800-63B 5.1.1.2 asks for at least 8.
pub const PASSWORD_CHARS_MIN: usize = 8;

/// Longest password accepted; bounds the hashing work an attacker can ask for.
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Empty.
    #[error("the password is empty")]
    Empty,
    /// Fewer characters than the minimum.
    #[error("the password is shorter than {PASSWORD_CHARS_MIN} characters")]
    TooShort,
    /// Longer than the maximum.
    #[error("the password is longer than {PASSWORD_BYTES_MAX} bytes")]
    TooLong,
    /// One character repeated, or the user name itself.
    #[error("the password is too easy to guess (a repeated character or the user name)")]
    Guessable,
}

/// Checks a new password against the policy.
pub fn check_password_strength(user: &str, password: &str) -> Result<(), WeakPassword> {
    if password.is_empty() {
        return Err(WeakPassword::Empty);
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(WeakPassword::TooLong);
    }
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(WeakPassword::TooShort);
    }
    let mut chars = password.chars();
    let first = chars.next();
    let all_same = chars.all(|c| Some(c) == first);
    let local_part = user.split('@').next().unwrap_or(user);
    if all_same || password.eq_ignore_ascii_case(user) || password.eq_ignore_ascii_case(local_part) {
        return Err(WeakPassword::Guessable);
    }
    Ok(())
}

/// Hashes a password with argon2id and the crate's recommended parameters
/// (RFC 9106 second recommendation: 19 MiB, 2 passes), as a PHC string that
/// records the parameters beside the hash.
pub fn hash_password(password: &str, rng: &mut (impl RngCore + CryptoRng)) -> String {
    let mut salt_bytes = [0u8; 16];
    rng.fill_bytes(&mut salt_bytes);
    // A 16-byte salt is always valid base64 of the right length.
    let salt = SaltString::encode_b64(&salt_bytes).expect("16-byte salt encodes");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password up to PASSWORD_BYTES_MAX")
        .to_string()
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the user does not exist,
/// so a login for an unknown user costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$6dQ0YNvuH3Ih1lqD2w0m4c6d3m0I3A3Gv8bC9p5u2kE"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let mut rng = rand::rngs::OsRng;
        let phc = hash_password("correct horse", &mut rng);
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(!verify_password(dummy_hash(), "correct horse"));
    }

    #[test]
    fn policy() {
        assert_eq!(check_password_strength("bob", ""), Err(WeakPassword::Empty));
        assert_eq!(check_password_strength("bob", "short"), Err(WeakPassword::TooShort));
        assert_eq!(check_password_strength("bob", "aaaaaaaaaa"), Err(WeakPassword::Guessable));
        assert_eq!(check_password_strength("bobbybobby@x.org", "BobbyBobby"), Err(WeakPassword::Guessable));
        assert_eq!(check_password_strength("bob", "a fine passphrase"), Ok(()));
    }
}
