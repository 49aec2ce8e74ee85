//! Encryption of the full params of a task at rest.
//!
//! The shown params have their secrets masked; the full params (needed to run
//! a waiting task after a restart) are sealed with XChaCha20-Poly1305 under a
//! random key kept in `<data>/secret.key` (mode 0600, created on first start).
//! The task id is the associated data, so a sealed blob cannot be moved to
//! another task.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Name of the key file in the data folder.
pub const KEY_FILE: &str = "secret.key";
/// Length of the key file, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Seals and opens task secrets with one key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box from raw key bytes.
    pub fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Load the key file at `path`, or create it (0600, random) if it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let mut key = Vec::with_capacity(KEY_LEN);
                f.read_to_end(&mut key)
                    .with_context(|| format!("reading {}", path.display()))?;
                let key: [u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "{}: expected {KEY_LEN} bytes, found {}",
                        path.display(),
                        key.len()
                    )
                })?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = f.metadata()?.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "secret key file is readable by others");
                    }
                }
                Ok(Self::from_key(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                let mut opts = OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                match opts.open(path) {
                    Ok(mut f) => {
                        f.write_all(&key)?;
                        f.sync_all()?;
                        if let Some(dir) = path.parent() {
                            if let Ok(d) = std::fs::File::open(dir) {
                                let _ = d.sync_all();
                            }
                        }
                        tracing::info!(path = %path.display(), "created secret key file");
                        Ok(Self::from_key(&key))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
                }
            }
            Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }

    /// Encrypt `plain` for task `id`: nonce followed by ciphertext and tag.
    pub fn seal(&self, id: i64, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.seal_bound(&id.to_le_bytes(), plain)
            .map_err(|_| anyhow::anyhow!("sealing params of task {id}"))
    }

    /// Decrypt what [`SecretBox::seal`] produced for task `id`.
    pub fn open(&self, id: i64, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed params of task {id} are truncated");
        }
        self.open_bound(&id.to_le_bytes(), sealed)
            .map_err(|_| anyhow::anyhow!("params of task {id} do not decrypt (wrong secret.key?)"))
    }

    /// Encrypt `plain` bound to `aad` (what the value belongs to, so that
    /// it opens nowhere else): nonce followed by ciphertext and tag.
    pub fn seal_bound(&self, aad: &[u8], plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt what [`SecretBox::seal_bound`] produced for the same `aad`.
    pub fn open_bound(&self, aad: &[u8], sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed value is truncated");
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| anyhow::anyhow!("sealed value does not decrypt (wrong secret.key?)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = SecretBox::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let sealed = a.seal(7, b"{\"password\":\"x\"}").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        // Same key file, new box: opens.
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open(7, &sealed).unwrap(), b"{\"password\":\"x\"}");
        // Bound to the task id.
        assert!(b.open(8, &sealed).is_err());
        // Another key does not open it.
        let other = SecretBox::from_key(&[1u8; KEY_LEN]);
        assert!(other.open(7, &sealed).is_err());
    }
}
