//! The node's keys: `<root>/identity/ed25519.key` (the 32-byte Ed25519 seed that signs
//! everything the node says) and `<root>/identity/x25519.key` (the 32-byte X25519 secret
//! that opens what job owners seal to the node). Both raw, mode 0600, in a 0700 folder.
//!
//! Invariants: a key is written once, to a temporary name opened with O_EXCL and mode
//! 0600, fsynced, then renamed into place (a crash leaves the old state or the new, never a
//! short key); a key file that group or others can read, or that another user owns, is
//! refused rather than used; `node_id` is derived from the Ed25519 public key alone, so the
//! same key is the same node across restarts and reinstalls of the binary.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{b64, TrustError};

const SIGNING_FILE: &str = "ed25519.key";
const SEALING_FILE: &str = "x25519.key";

/// The node's two key pairs, loaded.
pub struct Identity {
    signing: SigningKey,
    sealing: crypto_box::SecretKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({}, keys not shown)", self.node_id())
    }
}

/// What others may know of a node: `farm identity show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicIdentity {
    pub node_id: String,
    /// base64url, no padding, the raw 32 bytes.
    pub ed25519_public_key: String,
    /// base64url, no padding, the raw 32 bytes.
    pub x25519_public_key: String,
}

/// `<root>/identity`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("identity")
}

/// `fn-` and the first 16 bytes of sha256(Ed25519 public key), in hex.
pub fn node_id_of(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    format!("fn-{}", hex::encode(&digest[..16]))
}

impl Identity {
    /// Load the identity under `root`, or create it; `true` when it was created now.
    pub fn init(root: &Path) -> Result<(Identity, bool), TrustError> {
        let dir = dir(root);
        if dir.join(SIGNING_FILE).exists() || dir.join(SEALING_FILE).exists() {
            return Ok((Identity::load(root)?, false));
        }
        std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| io(&dir, source))?;
        let signing: Zeroizing<[u8; 32]> = Zeroizing::new(crate::random_bytes());
        let sealing: Zeroizing<[u8; 32]> = Zeroizing::new(crate::random_bytes());
        // The sealing key first: an identity is complete once its signing key exists.
        write_key(&dir.join(SEALING_FILE), &sealing)?;
        write_key(&dir.join(SIGNING_FILE), &signing)?;
        Ok((Identity::load(root)?, true))
    }

    /// Load the identity under `root`; refuses key files others can read.
    pub fn load(root: &Path) -> Result<Identity, TrustError> {
        let dir = dir(root);
        if !dir.join(SIGNING_FILE).exists() {
            return Err(TrustError::NoIdentity {
                root: root.to_owned(),
            });
        }
        let signing = read_key(&dir.join(SIGNING_FILE))?;
        let sealing = read_key(&dir.join(SEALING_FILE))?;
        Ok(Identity {
            signing: SigningKey::from_bytes(&signing),
            sealing: crypto_box::SecretKey::from(*sealing),
        })
    }

    pub fn node_id(&self) -> String {
        node_id_of(self.signing.verifying_key().as_bytes())
    }

    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            node_id: self.node_id(),
            ed25519_public_key: b64::url(self.signing.verifying_key().as_bytes()),
            x25519_public_key: b64::url(self.sealing.public_key().as_bytes()),
        }
    }

    /// An Ed25519 signature of `message` (RFC 8032, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    pub(crate) fn sealing_key(&self) -> &crypto_box::SecretKey {
        &self.sealing
    }
}

fn io(path: &Path, source: std::io::Error) -> TrustError {
    TrustError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_key(path: &Path, key: &[u8; 32]) -> Result<(), TrustError> {
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| io(&tmp, source))?;
    file.write_all(key).map_err(|source| io(&tmp, source))?;
    file.sync_all().map_err(|source| io(&tmp, source))?;
    std::fs::rename(&tmp, path).map_err(|source| io(path, source))?;
    if let Some(parent) = path.parent() {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn read_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, TrustError> {
    let meta = std::fs::metadata(path).map_err(|source| io(path, source))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TrustError::KeyExposed {
            path: path.to_owned(),
            mode,
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(TrustError::KeyOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| io(path, source))?);
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| TrustError::BadKey {
            path: path.to_owned(),
        })?;
    Ok(Zeroizing::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_private_keys_once_and_the_node_id_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = Identity::init(dir.path()).unwrap();
        assert!(created);
        let (again, created) = Identity::init(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.public(), again.public());
        assert!(first.node_id().starts_with("fn-") && first.node_id().len() == 35);
        for name in [SIGNING_FILE, SEALING_FILE] {
            let meta = std::fs::metadata(super::dir(dir.path()).join(name)).unwrap();
            assert_eq!(meta.mode() & 0o777, 0o600);
            assert_eq!(meta.len(), 32);
        }
    }

    #[test]
    fn a_key_others_can_read_or_a_short_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::init(dir.path()).unwrap();
        let key = super::dir(dir.path()).join(SIGNING_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Identity::load(dir.path()).err().unwrap();
        assert!(
            matches!(err, TrustError::KeyExposed { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&key, [1u8; 31]).unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(TrustError::BadKey { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Identity::load(empty.path()),
            Err(TrustError::NoIdentity { .. })
        ));
    }
}
