//! Password hashing (argon2id, PHC strings) and the password policy.

use std::cell::Cell;
use std::sync::Mutex;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
/// What argon2's `PasswordVerifier` does (same parameters from the PHC
/// string, constant-time comparison of the outputs), but with the process's
/// one argon2 memory ([`argon2_into`]).
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let computed = (|| -> Result<Output, argon2::password_hash::Error> {
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let argon2 = Argon2::new(algorithm, version, Params::try_from(&parsed)?);
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let output_len = argon2.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        Output::init_with(output_len, |out| Ok(argon2_into(&argon2, password.as_bytes(), salt, out)?))
    })();
    // `Output`'s equality is constant-time.
    computed.is_ok_and(|computed| computed == expected)
}

/// Memory for one argon2id run (19 MiB with the default parameters), kept
/// for the life of the process and used by one run at a time. Allocating it
/// per run left each thread's malloc arena holding its own 19 MiB after the
/// run (glibc raises its mmap threshold once such a block is freed, so the
/// next ones come from, and stay in, the arenas): with many IMAP sessions
/// logging in on different threads that was most of `roost serve`'s
/// resident memory (docs/benchmarks.md, IMAP memory).
static ARGON2_MEMORY: Mutex<Vec<Block>> = Mutex::new(Vec::new());

/// `argon2.hash_password_into`, in the process's one argon2 memory: runs
/// wait for each other (each is tens of ms), and the memory is wiped after
/// each so no password-derived state outlives its run.
pub(crate) fn argon2_into(argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    // Plain memory: usable after a panic in another run.
    let mut memory = ARGON2_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    let blocks = argon2.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let result = argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks]);
    memory[..blocks].fill(Block::default());
    let passes = u64::from(argon2.params().t_cost());
    ARGON2_WORK.with(|work| {
        let done = work.get();
        work.set(Argon2Work { runs: done.runs + 1, block_passes: done.block_passes + blocks as u64 * passes });
    });
    result
}

/// Argon2 work done by one thread: what makes logins cost alike, counted
/// exactly (a timing comparison only estimates it, and load blurs it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Argon2Work {
    /// Argon2 runs.
    pub runs: u64,
    /// Memory blocks filled, times passes over them, summed over the runs.
    pub block_passes: u64,
}

thread_local! {
    /// Per thread, so a caller measures its own calls while other threads hash.
    static ARGON2_WORK: Cell<Argon2Work> = const { Cell::new(Argon2Work { runs: 0, block_passes: 0 }) };
}

/// The argon2 work done on the calling thread so far (every password hash
/// check and key unwrap runs through [`argon2_into`]).
pub fn argon2_work_on_this_thread() -> Argon2Work {
    ARGON2_WORK.with(Cell::get)
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

    /// The verifier that runs in the shared argon2 memory agrees with
    /// argon2's own hashes whatever their parameters (the memory is reused
    /// across runs of different sizes).
    #[test]
    fn verify_with_shared_memory_agrees_with_argon2() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        for (algorithm, m_kib, t, p) in
            [(Algorithm::Argon2id, 19_456, 2, 1), (Algorithm::Argon2id, 1024, 3, 2), (Algorithm::Argon2i, 2048, 1, 1)]
        {
            let argon2 = Argon2::new(algorithm, Version::V0x13, Params::new(m_kib, t, p, None).unwrap());
            let phc = argon2.hash_password(b"correct horse", &salt).unwrap().to_string();
            assert!(verify_password(&phc, "correct horse"), "{phc}");
            assert!(!verify_password(&phc, "correct horsE"), "{phc}");
        }
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
