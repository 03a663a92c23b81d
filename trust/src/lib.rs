//! farm-trust: what lets others check this node's word, and lets job owners hand it secrets.
//!
//! - [`identity`]: the node's Ed25519 signing key and X25519 sealing key under the farm root
//!   (`<root>/identity/`, 0600, owned by the user farm runs as; a key file others can read
//!   is refused), and the `node_id` derived from the signing key.
//! - [`token`]: compact JWS (RFC 7515, `alg: EdDSA` as RFC 8037) that any JWT library
//!   verifies with the node's public key.
//! - [`seal`]: libsodium sealed boxes (`crypto_box_seal`) opened in memory only; the
//!   plaintext lives in a [`zeroize::Zeroizing`] buffer and is never written anywhere.
//! - [`wallet`]: an EIP-4361 (Sign-In with Ethereum) message that binds the node to the
//!   farmer's wallet, and the EIP-191 `personal_sign` recovery that checks it without the
//!   wallet's key ever reaching farm.
//!
//! Every format here is fixed by a standard and tested against independent code from PyPI
//! (tests/e2e/trust.rs: PyJWT, PyNaCl, eth-account), not only against this crate.

pub mod b64;
pub mod httpsig;
pub mod identity;
pub mod jcs;
pub mod record;
pub mod seal;
pub mod token;
pub mod wallet;

use std::path::PathBuf;

pub use identity::Identity;

/// Everything that can go wrong here, each with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("no node identity under {root}: run `farm init` first")]
    NoIdentity { root: PathBuf },
    #[error(
        "{path} can be read by others (mode {mode:o}): a node key must be private; run `chmod 600 {path}` and check who read it (or remove it and `farm init` a new identity)"
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error(
        "{path} belongs to uid {owner}, not to uid {me} that farm runs as: a node key must be owned by farm's user (`chown {me} {path}`)"
    )]
    KeyOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} is not a node key (it must hold exactly 32 bytes): restore it from a backup or remove the identity folder and run `farm init`")]
    BadKey { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not valid base64: {what}")]
    Base64 { what: String },
    #[error("the sealed value could not be opened with this node's key: it was sealed to another node, or it is damaged (seal it to the x25519_public_key of `farm identity show`)")]
    Unseal,
    #[error("the wallet signature is not 65 bytes of hex (0x…): {0}")]
    BadSignature(String),
    #[error("the wallet signature does not verify: {0}")]
    SignatureInvalid(String),
    #[error("the message was signed by {signer}, not by {expected}: sign it with the wallet named in the message")]
    WrongSigner { signer: String, expected: String },
    #[error("not an Ethereum address (0x and 40 hex digits): {0}")]
    BadAddress(String),
    #[error("no wallet link was started: run `farm identity link-wallet --address 0x…` first")]
    NoPendingLink,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0}")]
    HttpSignature(&'static str),
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `n` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand_core::RngCore;
    let mut out = [0u8; N];
    rand_core::OsRng.fill_bytes(&mut out);
    out
}
