//! Passwords (argon2id), API tokens (random, stored as sha256), and what
//! the failed-login limit counts: its settings, the keys an attempt is
//! counted against, and how long a refused client waits. The counting
//! itself is the database's (`db::logins`), so that it is atomic and shared
//! by every hub on one database.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

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

/// The failed-login limit: at most `max` attempts per user name and per
/// client address within `window` (docs/hub.md, "Users, tokens,
/// permissions"). The counts live in the database (`db::logins`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimit {
    pub max: u32,
    pub window: Duration,
}

impl LoginLimit {
    pub fn new(max: u32, window: Duration) -> LoginLimit {
        LoginLimit { max, window }
    }

    /// The window in whole seconds, at least one.
    pub fn window_secs(&self) -> i64 {
        i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX).max(1)
    }
}

/// What one login attempt is counted against: the user name typed and,
/// when the server knows it, the client's address. Each is kept only as a
/// sha256, so the name typed, which may well be a password typed in the
/// wrong field, is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginKeys {
    pub user: String,
    pub addr: Option<String>,
}

impl LoginKeys {
    pub fn new(user: &str, addr: Option<IpAddr>) -> LoginKeys {
        LoginKeys {
            user: login_key("user", user),
            addr: addr.map(|a| login_key("addr", &counted_address(a))),
        }
    }

    /// Every key, the user's first.
    pub fn all(&self) -> Vec<String> {
        std::iter::once(self.user.clone()).chain(self.addr.clone()).collect()
    }
}

fn login_key(kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"kiln login ");
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    hex::encode(h.finalize())
}

/// The address an attempt counts against: an IPv4 address as it is (also
/// when it comes mapped into IPv6), an IPv6 address by its /64 network,
/// which a single client usually holds whole.
pub fn counted_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// Seconds until a key whose counted attempts happened at `times` (any
/// order, seconds since the epoch) admits one more at `now`, or `None`
/// when it admits one now. An attempt counts while
/// `now < time + window`.
pub fn retry_after(times: &[i64], now: i64, limit: LoginLimit) -> Option<u64> {
    let window = limit.window_secs();
    let mut live: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| now < t.saturating_add(window))
        .collect();
    let max = usize::try_from(limit.max).unwrap_or(usize::MAX);
    if live.len() < max {
        return None;
    }
    // The newest `max` attempts must shrink to `max - 1`: the oldest of
    // them has to leave the window.
    live.sort_unstable_by(|a, b| b.cmp(a));
    let oldest = live.get(max.saturating_sub(1)).copied().unwrap_or(now);
    Some(
        u64::try_from(oldest.saturating_add(window).saturating_sub(now))
            .unwrap_or(1)
            .max(1),
    )
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
    fn login_keys_never_hold_the_name_typed() {
        let secret = "Tr0ub4dor&3-correct-horse";
        let k = LoginKeys::new(secret, Some("192.0.2.7".parse().expect("ip")));
        for key in k.all() {
            assert_eq!(key.len(), 64);
            assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(!key.contains(secret) && !key.contains("192.0.2.7"));
        }
        assert_eq!(k, LoginKeys::new(secret, Some("192.0.2.7".parse().expect("ip"))));
        // A user name never counts as an address, nor the other way round.
        let name_like_addr = LoginKeys::new("192.0.2.7", None);
        assert_ne!(Some(name_like_addr.user), k.addr);
        assert_eq!(LoginKeys::new("a", None).all().len(), 1);
        assert_ne!(LoginKeys::new("a", None).user, LoginKeys::new("A", None).user);
    }

    #[test]
    fn addresses_count_per_ipv4_and_per_ipv6_network() {
        let a = |s: &str| counted_address(s.parse().expect("ip"));
        assert_eq!(a("192.0.2.7"), "192.0.2.7");
        assert_eq!(a("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(a("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(a("2001:db8:1:2:ffff:1:2:3"), a("2001:db8:1:2::9"));
        assert_ne!(a("2001:db8:1:3::1"), a("2001:db8:1:2::1"));
        assert_eq!(a("::1"), "::/64");
    }

    #[test]
    fn retry_after_waits_for_the_oldest_counted_attempt() {
        let limit = LoginLimit::new(3, Duration::from_secs(60));
        assert_eq!(retry_after(&[], 1000, limit), None);
        assert_eq!(retry_after(&[990, 995], 1000, limit), None);
        // Full: the oldest of the three leaves at 990 + 60.
        assert_eq!(retry_after(&[995, 990, 998], 1000, limit), Some(50));
        // Attempts that left the window do not count.
        assert_eq!(retry_after(&[900, 939, 995, 998], 1000, limit), None);
        assert_eq!(retry_after(&[941, 995, 998], 1000, limit), Some(1));
        // More than max (the limit was lowered): wait until max - 1 remain.
        assert_eq!(retry_after(&[950, 960, 970, 980], 1000, limit), Some(20));
        // All at once in the same second.
        assert_eq!(retry_after(&[1000, 1000, 1000], 1000, limit), Some(60));
        assert_eq!(retry_after(&[1000], 1000, LoginLimit::new(0, Duration::ZERO)), Some(1));
        assert_eq!(LoginLimit::new(1, Duration::from_millis(10)).window_secs(), 1);
    }
}
