//! Secrets: random tokens from the operating system's CSPRNG, API-key and session-token formats,
//! SHA-256 digests for lookup, and argon2id password hashing off the async runtime.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OnceCell, Semaphore};

use crate::error::{Result, ServiceError};

/// Every AI Hub API key starts with this.
pub const API_KEY_PREFIX: &str = "sk-aihub-";
/// Random characters after the prefix (base62 of 24 bytes = 192 bits, zero-padded).
pub const API_KEY_RANDOM_CHARS: usize = 33;
/// Random characters shown in lists after [`API_KEY_PREFIX`]; the other 25 (≥ 148 bits) stay
/// secret.
pub const API_KEY_DISPLAY_CHARS: usize = 8;
/// Session tokens start with this, so they are recognizable in a leak scanner.
pub const SESSION_TOKEN_PREFIX: &str = "aihub-sess-";

/// argon2id cost: OWASP / ASVS 5.0 minimum (m = 19 MiB, t = 2, p = 1).
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `N` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| ServiceError::internal(std::io::Error::other(e.to_string())))?;
    Ok(buf)
}

/// Base62 of a big-endian number, left-padded with `0` to `width` characters.
#[must_use]
pub fn base62(bytes: &[u8], width: usize) -> String {
    let mut digits: Vec<u8> = Vec::with_capacity(width);
    let mut num: Vec<u8> = bytes.to_vec();
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for b in &mut num {
            let acc = (rem << 8) | u32::from(*b);
            *b = u8::try_from(acc / 62).unwrap_or(0);
            rem = acc % 62;
        }
        digits.push(BASE62.get(rem as usize).copied().unwrap_or(b'0'));
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Constant-time equality of two digests.
#[must_use]
pub fn digest_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A freshly minted API key: the secret (shown once), its display prefix and its hash.
pub struct MintedKey {
    pub secret: SecretString,
    pub prefix: String,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub fn mint_api_key() -> Result<MintedKey> {
    let random = base62(&random_bytes::<24>()?, API_KEY_RANDOM_CHARS);
    let secret = format!("{API_KEY_PREFIX}{random}");
    let prefix = secret
        .get(..API_KEY_PREFIX.len() + API_KEY_DISPLAY_CHARS)
        .unwrap_or(API_KEY_PREFIX)
        .to_owned();
    let hash = sha256(secret.as_bytes());
    Ok(MintedKey {
        secret: SecretString::from(secret),
        prefix,
        hash,
    })
}

/// Whether a presented string has the shape of an AI Hub key. Anything else is refused without a
/// lookup.
#[must_use]
pub fn looks_like_api_key(s: &str) -> bool {
    s.len() == API_KEY_PREFIX.len() + API_KEY_RANDOM_CHARS
        && s.starts_with(API_KEY_PREFIX)
        && s.bytes()
            .skip(API_KEY_PREFIX.len())
            .all(|b| b.is_ascii_alphanumeric())
}

/// A new session token (256 bits) and its hash.
pub fn mint_session_token() -> Result<(SecretString, [u8; 32])> {
    let token = format!(
        "{SESSION_TOKEN_PREFIX}{}",
        base62(&random_bytes::<32>()?, 43)
    );
    let hash = sha256(token.as_bytes());
    Ok((SecretString::from(token), hash))
}

/// argon2id hashing and verification on blocking threads, at most a few at a time so that a
/// burst of sign-ins cannot exhaust memory (each costs 19 MiB) or starve the async runtime.
pub struct PasswordHasher {
    permits: Semaphore,
    dummy: OnceCell<String>,
}

impl PasswordHasher {
    #[must_use]
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            permits: Semaphore::new(cores * 2),
            dummy: OnceCell::new(),
        }
    }

    fn argon2() -> Result<Argon2<'static>> {
        let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
            .map_err(|e| ServiceError::internal(std::io::Error::other(e.to_string())))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(self: &Arc<Self>, password: &SecretString) -> Result<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(ServiceError::internal)?;
        let password = password.clone();
        let salt = random_bytes::<16>()?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(&salt)
                .map_err(|e| ServiceError::internal(std::io::Error::other(e.to_string())))?;
            Self::argon2()?
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::internal(std::io::Error::other(e.to_string())))
        })
        .await
        .map_err(ServiceError::internal)?
    }

    /// Verifies `password` against a stored PHC string (its own parameters are used, so older
    /// hashes keep working). A malformed stored hash verifies as false.
    pub async fn verify(self: &Arc<Self>, password: &SecretString, phc: &str) -> Result<bool> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(ServiceError::internal)?;
        let password = password.clone();
        let phc = phc.to_owned();
        tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return false;
            };
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(ServiceError::internal)
    }

    /// Spends the same work as a real verification, for sign-ins to unknown accounts, so that
    /// timing does not reveal which e-mail addresses are registered.
    pub async fn verify_dummy(self: &Arc<Self>, password: &SecretString) -> Result<()> {
        let dummy = self
            .dummy
            .get_or_try_init(|| async {
                self.hash(&SecretString::from("dummy password for timing".to_owned()))
                    .await
            })
            .await?
            .clone();
        let _ = self.verify(password, &dummy).await?;
        Ok(())
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_is_fixed_width_and_exact() {
        assert_eq!(base62(&[0], 3), "000");
        assert_eq!(base62(&[61], 1), "z");
        assert_eq!(base62(&[62], 2), "10");
        assert_eq!(base62(&[1, 0], 2), "48"); // 256 = 4*62 + 8
        assert_eq!(
            base62(&[0xff; 24], 33).len(),
            33,
            "max 192-bit value fits 33 chars"
        );
    }

    #[test]
    fn api_keys_have_the_documented_shape() {
        let k = mint_api_key().unwrap();
        let s = k.secret.expose_secret();
        assert!(looks_like_api_key(s), "{s}");
        assert!(s.starts_with(&k.prefix));
        assert_eq!(k.prefix.len(), API_KEY_PREFIX.len() + API_KEY_DISPLAY_CHARS);
        assert_eq!(k.hash, sha256(s.as_bytes()));
        assert!(!format!("{k:?}").contains(s));
        let other = mint_api_key().unwrap();
        assert_ne!(other.secret.expose_secret(), s, "keys are random");
        assert!(!looks_like_api_key("sk-aihub-short"));
        assert!(!looks_like_api_key(&format!("sk-other-{}", "a".repeat(33))));
        assert!(!looks_like_api_key(&format!(
            "sk-aihub-{}!",
            "a".repeat(32)
        )));
    }

    #[test]
    fn session_tokens_are_random_and_hashed() {
        let (a, ha) = mint_session_token().unwrap();
        let (b, hb) = mint_session_token().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(ha, hb);
        assert!(a.expose_secret().starts_with(SESSION_TOKEN_PREFIX));
        assert_eq!(ha, sha256(a.expose_secret().as_bytes()));
        assert!(digest_eq(&ha, &ha));
        assert!(!digest_eq(&ha, &hb));
    }

    #[tokio::test]
    async fn argon2id_with_owasp_parameters() {
        let h = Arc::new(PasswordHasher::new());
        let pw = SecretString::from("correct horse battery staple".to_owned());
        let phc = h.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify(&pw, &phc).await.unwrap());
        let wrong = SecretString::from("Correct horse battery staple".to_owned());
        assert!(!h.verify(&wrong, &phc).await.unwrap(), "no case folding");
        assert!(!h.verify(&pw, "not a phc string").await.unwrap());
        h.verify_dummy(&pw).await.unwrap();
    }
}
