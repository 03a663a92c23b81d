//! Sealed values (libsodium `crypto_box_seal`: an ephemeral X25519 key, XSalsa20-Poly1305,
//! the nonce from BLAKE2b of both public keys), sealed by a job owner to the node's
//! `x25519_public_key` and opened here in memory only.

use zeroize::Zeroizing;

use crate::{b64, Identity, TrustError};

/// Open one sealed value given in base64 (any alphabet); the plaintext is zeroed on drop.
pub fn open(identity: &Identity, sealed_base64: &str) -> Result<Zeroizing<Vec<u8>>, TrustError> {
    let sealed = b64::decode_any(sealed_base64, "the sealed value")?;
    identity
        .sealing_key()
        .unseal(&sealed)
        .map(Zeroizing::new)
        .map_err(|_| TrustError::Unseal)
}

/// Seal `plaintext` to a node's X25519 public key (base64url) — what a job owner does; farm
/// uses it in tests and in `farm identity seal`.
pub fn seal_to(public_key_base64: &str, plaintext: &[u8]) -> Result<String, TrustError> {
    let key = b64::decode_any(public_key_base64, "the x25519 public key")?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| TrustError::Invalid("an x25519 public key is 32 bytes"))?;
    let public = crypto_box::PublicKey::from(key);
    let sealed = public
        .seal(&mut rand_core::OsRng, plaintext)
        .map_err(|_| TrustError::Invalid("sealing failed"))?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sealed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_to_this_node_opens_and_a_flipped_byte_or_another_node_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = Identity::init(dir.path()).unwrap();
        let sealed = seal_to(&id.public().x25519_public_key, b"s3cret").unwrap();
        assert_eq!(open(&id, &sealed).unwrap().as_slice(), b"s3cret");
        let mut bytes = b64::decode_any(&sealed, "x").unwrap();
        bytes[40] ^= 1;
        let flipped = b64::url(&bytes);
        assert!(matches!(open(&id, &flipped), Err(TrustError::Unseal)));
        let other = tempfile::tempdir().unwrap();
        let (other, _) = Identity::init(other.path()).unwrap();
        assert!(matches!(open(&other, &sealed), Err(TrustError::Unseal)));
    }
}
