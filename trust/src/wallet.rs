//! Linking the node to the farmer's wallet without the wallet's key: farm writes an EIP-4361
//! (Sign-In with Ethereum) message that names the node in its statement and resources, the
//! farmer signs it in their wallet (`personal_sign`, EIP-191), and farm recovers the signer
//! from the signature and checks it is the address the message names.
//!
//! Files: `<root>/identity/wallet-link.pending` (the message waiting for its signature) and
//! `<root>/identity/wallet.json` (`{address, message, signature}` once verified).

use std::path::{Path, PathBuf};

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

use crate::TrustError;

/// What the message says besides the node and the address.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    /// RFC 3986 authority of the service asking (the coordinator's host).
    pub domain: String,
    pub uri: String,
    pub chain_id: u64,
}

/// A verified link, as stored and as sent at registration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WalletLink {
    /// EIP-55 checksummed.
    pub address: String,
    pub message: String,
    pub signature: String,
}

fn pending_path(root: &Path) -> PathBuf {
    crate::identity::dir(root).join("wallet-link.pending")
}

fn linked_path(root: &Path) -> PathBuf {
    crate::identity::dir(root).join("wallet.json")
}

/// The EIP-4361 message binding `node_id` to `address`, issued at `issued_at` (RFC 3339).
pub fn message(
    req: &LinkRequest,
    node_id: &str,
    address: &str,
    nonce: &str,
    issued_at: &str,
) -> String {
    format!(
        "{domain} wants you to sign in with your Ethereum account:\n{address}\n\n\
         Link farm node {node_id} to this wallet: its earnings are paid here.\n\n\
         URI: {uri}\nVersion: 1\nChain ID: {chain}\nNonce: {nonce}\nIssued At: {issued_at}\n\
         Resources:\n- urn:farm:node:{node_id}",
        domain = req.domain,
        uri = req.uri,
        chain = req.chain_id,
    )
}

/// The address on the message's second line (EIP-4361's `address`).
pub fn address_in(message: &str) -> Result<String, TrustError> {
    let line = message.lines().nth(1).unwrap_or_default();
    checksum(line)
}

/// EIP-55 mixed-case form of a `0x` + 40 hex digits address.
pub fn checksum(address: &str) -> Result<String, TrustError> {
    let hexpart = address
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| TrustError::BadAddress(address.to_owned()))?
        .to_ascii_lowercase();
    let hash = Keccak256::digest(hexpart.as_bytes());
    let mixed: String = hexpart
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0xf;
            if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    Ok(format!("0x{mixed}"))
}

/// The address that made `signature` (65 bytes hex, `r || s || v`, v 27/28 or 0/1) over
/// `message` as EIP-191 `personal_sign` hashes it.
pub fn recover(message: &str, signature: &str) -> Result<String, TrustError> {
    let bytes = hex::decode(signature.trim().trim_start_matches("0x"))
        .map_err(|e| TrustError::BadSignature(e.to_string()))?;
    if bytes.len() != 65 {
        return Err(TrustError::BadSignature(format!("{} bytes", bytes.len())));
    }
    let v = match bytes[64] {
        27 | 28 => bytes[64] - 27,
        0 | 1 => bytes[64],
        other => return Err(TrustError::BadSignature(format!("v = {other}"))),
    };
    let sig = Signature::from_slice(&bytes[..64])
        .map_err(|e| TrustError::SignatureInvalid(e.to_string()))?;
    let id = RecoveryId::from_byte(v).ok_or(TrustError::Invalid("recovery id"))?;
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    prefixed.extend_from_slice(message.as_bytes());
    let digest = Keccak256::digest(&prefixed);
    let key = VerifyingKey::recover_from_prehash(&digest, &sig, id)
        .map_err(|e| TrustError::SignatureInvalid(e.to_string()))?;
    let point = key.to_encoded_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    checksum(&format!("0x{}", hex::encode(&hash[12..])))
}

/// Start a link: write the message for `address` as pending, and return it to be signed.
pub fn start(
    root: &Path,
    req: &LinkRequest,
    node_id: &str,
    address: &str,
) -> Result<String, TrustError> {
    let address = checksum(address)?;
    let nonce = hex::encode(crate::random_bytes::<8>());
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = message(req, node_id, &address, &nonce, &issued_at);
    let path = pending_path(root);
    std::fs::write(&path, &text).map_err(|source| TrustError::Io { path, source })?;
    Ok(text)
}

/// Finish a link: verify `signature` over the pending message, store and return the link.
pub fn finish(root: &Path, node_id: &str, signature: &str) -> Result<WalletLink, TrustError> {
    let path = pending_path(root);
    let message = std::fs::read_to_string(&path).map_err(|_| TrustError::NoPendingLink)?;
    if !message.contains(&format!("urn:farm:node:{node_id}")) {
        return Err(TrustError::Invalid(
            "the pending wallet link names another node: start it again",
        ));
    }
    let expected = address_in(&message)?;
    let signer = recover(&message, signature)?;
    if signer != expected {
        return Err(TrustError::WrongSigner { signer, expected });
    }
    let link = WalletLink {
        address: signer,
        message,
        signature: signature.trim().to_owned(),
    };
    let out = linked_path(root);
    let json = serde_json::to_vec_pretty(&link).map_err(|_| TrustError::Invalid("json"))?;
    std::fs::write(&out, json).map_err(|source| TrustError::Io { path: out, source })?;
    let _ = std::fs::remove_file(&path);
    Ok(link)
}

/// The linked wallet, if any.
pub fn linked(root: &Path) -> Option<WalletLink> {
    let text = std::fs::read(linked_path(root)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_checksums_match_the_eips_examples() {
        for addr in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        ] {
            assert_eq!(checksum(&addr.to_lowercase()).unwrap(), addr);
        }
        assert!(checksum("0x123").is_err());
    }

    #[test]
    fn a_malformed_signature_is_refused_with_its_reason() {
        assert!(matches!(
            recover("m", "0x12"),
            Err(TrustError::BadSignature(_))
        ));
        let zeros = format!("0x{}1b", "00".repeat(64));
        assert!(recover("m", &zeros).is_err());
    }
}
