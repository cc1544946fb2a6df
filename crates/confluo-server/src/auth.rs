//! Client authentication: passwords stored as salted PBKDF2-HMAC-SHA256 hashes (never in
//! clear), users that may read or also write, and the checks a session runs.
//!
//! A stored password reads `pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX`; `confluo
//! hash-password` prints one. Verification is `ring::pbkdf2::verify`, which compares in
//! constant time.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use confluo_transport::RateLimitedWarn;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// Iterations `confluo hash-password` uses. Every AUTH costs one derivation (0.16 s of CPU in
/// an unoptimized debug build on the shared development machine; a release build costs
/// less, not measured yet), so this is a trade: enough
/// that a stolen config file does not give passwords away cheaply, few enough that AUTH from
/// unauthenticated clients cannot eat the server's CPU (each AUTH runs on the blocking pool).
pub const DEFAULT_ITERATIONS: u32 = 100_000;

const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
const PREFIX: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// A password as the config stores it. `Debug` does not show the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({PREFIX}, {} iterations)", self.iterations)
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}${}${}${}",
            self.iterations,
            hex(&self.salt),
            hex(&self.hash)
        )
    }
}

/// Why a stored password could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// Not `pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX`.
    #[error(
        "not a password hash: expected pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX (make one with `confluo hash-password`)"
    )]
    Format,
    /// Iterations of zero or not a number.
    #[error("the iteration count must be a positive integer")]
    Iterations,
    /// A salt shorter than 8 bytes, or a hash that is not 32 bytes.
    #[error("the salt must be at least 8 bytes and the hash 32 bytes")]
    Length,
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &[u8], iterations: NonZeroU32) -> PasswordHash {
        let mut salt = vec![0; SALT_LEN];
        // The system's random source failing is not something to continue past silently,
        // and there is no caller that could do better: a zero salt would be a weak hash.
        SystemRandom::new()
            .fill(&mut salt)
            .expect("the operating system's random number generator failed");
        let mut hash = vec![0; HASH_LEN];
        pbkdf2::derive(ALGORITHM, iterations, &salt, password, &mut hash);
        PasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    /// Reads a stored hash.
    pub fn parse(text: &str) -> Result<PasswordHash, HashError> {
        let mut parts = text.split('$');
        let (Some(PREFIX), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(HashError::Format);
        };
        let iterations = iterations
            .parse::<NonZeroU32>()
            .map_err(|_| HashError::Iterations)?;
        let (salt, hash) = (
            unhex(salt).ok_or(HashError::Format)?,
            unhex(hash).ok_or(HashError::Format)?,
        );
        if salt.len() < 8 || hash.len() != HASH_LEN {
            return Err(HashError::Length);
        }
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` is this one (constant time in the comparison).
    pub fn verify(&self, password: &[u8]) -> bool {
        pbkdf2::verify(ALGORITHM, self.iterations, &self.salt, password, &self.hash).is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Every command but those that write (Redis ACL: `-@write`).
    ReadOnly,
    /// Every command.
    ReadWrite,
}

/// A client user of the config's `[[auth.users]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The name given to `AUTH name password`.
    pub name: String,
    /// Its password.
    pub password: PasswordHash,
    /// What it may do.
    pub access: Access,
}

/// The users of the config's `[auth]`: who may connect. Empty: no authentication, every
/// client is the `default` user with read-write access, as in a Redis without `requirepass`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientAuth {
    /// The users; `requirepass` is the user `default`, read-write.
    pub users: Vec<User>,
}

/// The user every client is before AUTH, and the one `AUTH password` names.
pub(crate) const DEFAULT_USER: &str = "default";

impl ClientAuth {
    /// Whether clients must authenticate.
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// The user named `name`, if it exists.
    pub(crate) fn user(&self, name: &[u8]) -> Option<&User> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }
}

/// Failed authentications: counted, and logged at a bounded rate (a client can fail at will).
#[derive(Debug)]
pub(crate) struct AuthFailures {
    count: AtomicU64,
    warn: RateLimitedWarn,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures {
            count: AtomicU64::new(0),
            warn: RateLimitedWarn::new(2, Duration::from_secs(1)),
        }
    }
}

impl AuthFailures {
    pub(crate) fn record(&self, user: &str, addr: Option<std::net::SocketAddr>) {
        let total = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        self.warn.log(|suppressed| {
            tracing::warn!(
                user,
                client = ?addr,
                total,
                suppressed,
                "client authentication failed"
            );
        });
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iterations(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn a_hash_round_trips_through_its_text_and_verifies_only_its_password() {
        let h = PasswordHash::new(b"s3cret", iterations(1000));
        let text = h.to_string();
        assert!(text.starts_with("pbkdf2-sha256$1000$"), "{text}");
        assert!(!text.contains("s3cret"));
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify(b"s3cret"));
        assert!(!parsed.verify(b"s3cres"));
        assert!(!parsed.verify(b""));
        assert_ne!(
            PasswordHash::new(b"s3cret", iterations(1000)).to_string(),
            text,
            "salted: the same password hashes differently"
        );
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let good = PasswordHash::new(b"x", iterations(1)).to_string();
        assert_eq!(PasswordHash::parse("s3cret"), Err(HashError::Format));
        assert_eq!(
            PasswordHash::parse(&good.replace("pbkdf2-sha256", "md5")),
            Err(HashError::Format)
        );
        assert_eq!(
            PasswordHash::parse(&good.replacen("$1$", "$0$", 1)),
            Err(HashError::Iterations)
        );
        assert_eq!(
            PasswordHash::parse("pbkdf2-sha256$1$00$00"),
            Err(HashError::Length)
        );
        assert_eq!(
            PasswordHash::parse("pbkdf2-sha256$1$zz$00"),
            Err(HashError::Format)
        );
        assert_eq!(
            PasswordHash::parse(&format!("{good}$x")),
            Err(HashError::Format)
        );
    }
}
