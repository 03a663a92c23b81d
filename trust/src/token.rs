//! `farm identity token`: a compact JWS (RFC 7515) with `alg: EdDSA` (RFC 8037), so that any
//! JWT library checks it with the node's Ed25519 public key.

use serde_json::json;

use crate::{b64, Identity};

/// Claims `iss` (the node id), `aud`, `iat`, `exp` (`iat + ttl_seconds`) and a random
/// `jti`; the header names the node id as `kid`.
pub fn issue(identity: &Identity, audience: &str, ttl_seconds: u64, now: u64) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": identity.node_id()});
    let claims = json!({
        "iss": identity.node_id(),
        "aud": audience,
        "iat": now,
        "exp": now.saturating_add(ttl_seconds),
        "jti": hex::encode(crate::random_bytes::<16>()),
    });
    let signing_input = format!(
        "{}.{}",
        b64::url(header.to_string().as_bytes()),
        b64::url(claims.to_string().as_bytes())
    );
    let signature = identity.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64::url(&signature))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    use super::*;

    #[test]
    fn the_token_verifies_with_the_public_key_and_a_changed_claim_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = Identity::init(dir.path()).unwrap();
        let token = issue(&id, "coordinator", 600, 1_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let public = crate::b64::decode_any(&id.public().ed25519_public_key, "key").unwrap();
        let key = VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
        let sig = crate::b64::decode_any(parts[2], "sig").unwrap();
        let sig = Signature::from_bytes(&sig.try_into().unwrap());
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(key.verify(input.as_bytes(), &sig).is_ok());
        let claims = crate::b64::decode_any(parts[1], "claims").unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["exp"], 1_600);
        let forged = format!("{}.{}", parts[0], b64::url(br#"{"aud":"x"}"#));
        assert!(key.verify(forged.as_bytes(), &sig).is_err());
    }
}
