//! Passwords (argon2id), API tokens (random, stored as sha256), and the
//! failed-login limiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use sha2::{Digest, Sha256};

use crate::error::{HubError, Result};

const TOKEN_PREFIX: &str = "kiln_";

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

pub fn hash_password(password: &str) -> Result<String> {
    if password.len() < 8 {
        return Err(HubError::bad_request("a password needs at least 8 characters"));
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HubError::internal(format!("salt: {e}")))?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| HubError::internal(format!("hashing a password: {e}")))?
        .to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A new API token: 32 random bytes, hex, with a recognisable prefix.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    format!("{TOKEN_PREFIX}{}", hex::encode(b))
}

/// What the database keeps of a token. Tokens carry 256 random bits, so a
/// plain sha256 is enough (and lets a lookup use an index).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Failed logins per user name and per client address: after `max`
/// failures within `window`, further attempts are refused until the oldest
/// failure leaves the window.
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max: usize, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err` with the seconds to wait when `keys` are over the limit.
    pub fn check(&self, keys: &[String]) -> std::result::Result<(), u64> {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = 0;
        for k in keys {
            if let Some(v) = f.get_mut(k) {
                v.retain(|t| now.duration_since(*t) < self.window);
                if v.len() >= self.max
                    && let Some(oldest) = v.first()
                {
                    wait = wait.max((self.window - now.duration_since(*oldest)).as_secs() + 1);
                }
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    pub fn failed(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 100_000 {
            f.clear();
        }
        for k in keys {
            f.entry(k.clone()).or_default().push(Instant::now());
        }
    }

    pub fn succeeded(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            f.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_tokens_hash() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(hash_password("short").is_err());
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("kiln_") && a.len() == 69);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn limiter_refuses_after_max_failures() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let k = vec!["user:alice".to_string()];
        for _ in 0..3 {
            assert!(l.check(&k).is_ok());
            l.failed(&k);
        }
        let wait = l.check(&k).expect_err("limited");
        assert!(wait > 0 && wait <= 61);
        assert!(l.check(&["user:bob".to_string()]).is_ok());
        l.succeeded(&k);
        assert!(l.check(&k).is_ok());
    }
}
