//! The hub's key file (docs/pipelines.md, "Secrets"): 32 random bytes from
//! which every secret the hub must be able to use again is derived — hook
//! secrets (GitHub's HMAC needs the secret itself) and the channel signing
//! key. The database keeps only a random nonce per secret, and a hash or
//! public key to check against: a copy of the database alone reveals no
//! secret, and a new key file makes every derived secret invalid at once.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{HubError, Result};

/// The key file's secret.
#[derive(Clone)]
pub struct HubKey([u8; 32]);

impl std::fmt::Debug for HubKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubKey(..)")
    }
}

impl HubKey {
    /// Reads the key file, or creates it (mode 0600, 64 hex digits) when
    /// it does not exist. A key file others may read is refused.
    pub fn load_or_create(path: &Path) -> Result<HubKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)
                    .map_err(|e| HubError::internal(format!("{}: {e}", path.display())))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(HubError::internal(format!(
                        "the key file {} is readable by others (mode {:o}): run `chmod 600 {}`",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    )));
                }
                Self::parse(text.trim()).ok_or_else(|| {
                    HubError::internal(format!("{}: not a kiln key file (64 hex digits)", path.display()))
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(HubError::internal(format!(
                "cannot read the key file {}: {e}",
                path.display()
            ))),
        }
    }

    fn create(path: &Path) -> Result<HubKey> {
        let fail =
            |e: std::io::Error| HubError::internal(format!("cannot create the key file {}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let key = HubKey::random();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(fail)?;
        f.write_all(format!("{}\n", hex::encode(key.0)).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(fail)?;
        tracing::info!("created the hub's key file {}", path.display());
        Ok(key)
    }

    fn parse(text: &str) -> Option<HubKey> {
        let bytes = hex::decode(text).ok()?;
        Some(HubKey(bytes.try_into().ok()?))
    }

    /// A key that lives as long as the process (tests, throwaway hubs).
    pub fn random() -> HubKey {
        let mut k = [0u8; 32];
        rand::fill(&mut k);
        HubKey(k)
    }

    /// 32 bytes for `purpose` and `nonce`: HMAC-SHA256 keyed with the hub's
    /// key over the purpose, a zero byte and the nonce.
    pub fn derive(&self, purpose: &str, nonce: &str) -> [u8; 32] {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(nonce.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// A fresh nonce: 16 random bytes, hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/hub.key");
        let a = HubKey::load_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = HubKey::load_or_create(&path).expect("read");
        assert_eq!(a.derive("x", "n"), b.derive("x", "n"));
        assert_ne!(a.derive("x", "n"), a.derive("y", "n"));
        assert_ne!(a.derive("x", "n"), a.derive("x", "m"));
        assert_ne!(a.derive("x", "n"), HubKey::random().derive("x", "n"));
    }

    #[test]
    fn a_key_file_others_can_read_or_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.key");
        HubKey::load_or_create(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = HubKey::load_or_create(&path).expect_err("world-readable");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::write(&path, "not hex").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = HubKey::load_or_create(&path).expect_err("garbage");
        assert!(e.to_string().contains("not a kiln key file"), "{e}");
    }
}
