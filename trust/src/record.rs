//! Signed records (a job's usage and earnings): the record's JCS text (RFC 8785) signed
//! with the node's Ed25519 key. Anyone holding the record can check it with the public key
//! it names, and that the key is the node's (`keyid` is derived from it).

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{b64, jcs, Identity, TrustError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedRecord {
    pub record: serde_json::Value,
    pub signature: RecordSignature,
    /// The coordinator's acknowledgement: its Ed25519 signature of the JCS text of
    /// `{"record": ..., "signature": ...}` (this object without the countersignature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countersignature: Option<Countersignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Countersignature {
    /// `ed25519`.
    pub alg: String,
    /// base64url, the coordinator's raw 32-byte public key.
    pub public_key: String,
    /// base64url of the 64-byte signature.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSignature {
    /// `ed25519`.
    pub alg: String,
    /// The node id (derived from `public_key`).
    pub keyid: String,
    /// base64url, raw 32 bytes.
    pub public_key: String,
    /// base64url of the 64-byte signature of `jcs(record)`.
    pub value: String,
}

pub fn sign(identity: &Identity, record: serde_json::Value) -> SignedRecord {
    let public = identity.public();
    let text = jcs::canonicalize(&record);
    SignedRecord {
        signature: RecordSignature {
            alg: "ed25519".into(),
            keyid: public.node_id,
            public_key: public.ed25519_public_key,
            value: b64::url(&identity.sign(text.as_bytes())),
        },
        record,
        countersignature: None,
    }
}

/// What a countersignature signs: the JCS text of the record and the node's signature.
fn countersigned_text(signed: &SignedRecord) -> String {
    jcs::canonicalize(&serde_json::json!({
        "record": signed.record,
        "signature": signed.signature,
    }))
}

/// The coordinator's countersignature of a node's signed record (`seed`: its Ed25519 key).
pub fn countersign(seed: &[u8; 32], signed: &SignedRecord) -> Countersignature {
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    let sig = ed25519_dalek::Signer::sign(&key, countersigned_text(signed).as_bytes());
    Countersignature {
        alg: "ed25519".into(),
        public_key: b64::url(key.verifying_key().as_bytes()),
        value: b64::url(&sig.to_bytes()),
    }
}

/// The record's countersignature verifies with the key it names, and that key is
/// `pinned` when one is given. Ok(None) when the record has no countersignature.
pub fn verify_countersignature(
    signed: &SignedRecord,
    pinned: Option<&[u8; 32]>,
) -> Result<Option<[u8; 32]>, TrustError> {
    let bad = TrustError::HttpSignature;
    let Some(counter) = &signed.countersignature else {
        return Ok(None);
    };
    if counter.alg != "ed25519" {
        return Err(bad("the countersignature is not ed25519"));
    }
    let key: [u8; 32] = b64::decode_any(&counter.public_key, "public_key")?
        .try_into()
        .map_err(|_| bad("the countersignature's public key is not 32 bytes"))?;
    if pinned.is_some_and(|p| *p != key) {
        return Err(bad(
            "the record is countersigned by another key than the pinned coordinator key",
        ));
    }
    let sig = b64::decode_any(&counter.value, "countersignature")?;
    let sig = Signature::from_slice(&sig).map_err(|_| bad("the signature is not 64 bytes"))?;
    let verifying = VerifyingKey::from_bytes(&key).map_err(|_| bad("not an Ed25519 key"))?;
    verifying
        .verify(countersigned_text(signed).as_bytes(), &sig)
        .map_err(|_| {
            bad("the countersignature does not verify: the record or its signature changed")
        })?;
    Ok(Some(key))
}

/// The record's signature verifies with its key, and the key is its `keyid`'s.
pub fn verify(signed: &SignedRecord) -> Result<(), TrustError> {
    let bad = TrustError::HttpSignature;
    if signed.signature.alg != "ed25519" {
        return Err(bad("the record is not signed with ed25519"));
    }
    let key: [u8; 32] = b64::decode_any(&signed.signature.public_key, "public_key")?
        .try_into()
        .map_err(|_| bad("the record's public key is not 32 bytes"))?;
    if crate::identity::node_id_of(&key) != signed.signature.keyid {
        return Err(bad(
            "the record's keyid is not the node id of its public key",
        ));
    }
    let sig = b64::decode_any(&signed.signature.value, "signature")?;
    let sig = Signature::from_slice(&sig).map_err(|_| bad("the signature is not 64 bytes"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not an Ed25519 key"))?;
    key.verify(jcs::canonicalize(&signed.record).as_bytes(), &sig)
        .map_err(|_| bad("the record's signature does not verify: it was changed after signing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_record_verifies_and_any_change_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = Identity::init(dir.path()).unwrap();
        let signed = sign(
            &id,
            serde_json::json!({"credits": {"total": 1.25}, "lease_id": "l1"}),
        );
        verify(&signed).unwrap();
        let mut changed = signed.clone();
        changed.record["credits"]["total"] = serde_json::json!(1.26);
        assert!(verify(&changed).is_err());
        let mut other_key = signed.clone();
        other_key.signature.keyid = "fn-00".into();
        assert!(verify(&other_key).is_err());
    }

    #[test]
    fn a_countersignature_covers_record_and_signature_and_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = Identity::init(dir.path()).unwrap();
        let mut signed = sign(&id, serde_json::json!({"credits": {"total": 2.0}}));
        assert_eq!(verify_countersignature(&signed, None).unwrap(), None);
        let seed = [7u8; 32];
        let public = crate::httpsig::public_key_of(&seed);
        signed.countersignature = Some(countersign(&seed, &signed));
        assert_eq!(
            verify_countersignature(&signed, Some(&public)).unwrap(),
            Some(public)
        );
        assert!(verify_countersignature(&signed, Some(&[1u8; 32])).is_err());
        let mut changed = signed.clone();
        changed.record["credits"]["total"] = serde_json::json!(2.5);
        assert!(verify_countersignature(&changed, None).is_err());
        let mut resigned = signed.clone();
        resigned.signature.value = sign(&id, serde_json::json!({})).signature.value;
        assert!(verify_countersignature(&resigned, None).is_err());
    }

    #[test]
    fn a_record_verifies_after_a_trip_through_json_text_whatever_its_floats() {
        // The coordinator re-canonicalizes what it parsed from the wire: every f64 must
        // parse back to the same bits (serde_json's float_roundtrip), or a record of
        // usage figures fails to verify now and then.
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = Identity::init(dir.path()).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let figures: Vec<f64> = (0..2000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 53) as f64 * 3600.0
            })
            .collect();
        let signed = sign(&id, serde_json::json!({ "usage": figures }));
        let text = serde_json::to_string(&signed).unwrap();
        let parsed: SignedRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.record, signed.record);
        verify(&parsed).unwrap();
    }
}
