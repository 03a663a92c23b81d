//! HTTP Message Signatures (RFC 9421) with `alg="ed25519"`, and `Content-Digest` (RFC
//! 9530, `sha-256`). Requests cover `@method`, `@target-uri` and `content-digest`, with
//! `created`, `nonce` and `keyid` (the node id); answers cover `@status` and
//! `content-digest`, with `created` and `keyid`. Checked against the PyPI
//! `http-message-signatures` package in both directions (trust/tests/pypi.rs).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{Identity, TrustError};

/// The label farm gives its signatures (a verifier accepts any one label).
pub const LABEL: &str = "sig1";

/// `sha-256=:BASE64:` of `body`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// The headers that sign one request: (`Content-Digest`, `Signature-Input`, `Signature`).
pub struct SignedHeaders {
    pub content_digest: String,
    pub signature_input: String,
    pub signature: String,
}

fn quoted(components: &[&str]) -> String {
    components
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The signature base (RFC 9421 §2.5): one `"name": value` line per component, then
/// `"@signature-params": PARAMS`.
fn base(components: &[(&str, &str)], params: &str) -> String {
    let mut out = String::new();
    for (name, value) in components {
        out.push_str(&format!("\"{name}\": {value}\n"));
    }
    out.push_str(&format!("\"@signature-params\": {params}"));
    out
}

/// Sign a request to `target_uri` (the full URL as sent) with the node's key.
pub fn sign_request(
    identity: &Identity,
    method: &str,
    target_uri: &str,
    body: &[u8],
    created: u64,
    nonce: &str,
) -> SignedHeaders {
    let digest = content_digest(body);
    let names = ["@method", "@target-uri", "content-digest"];
    let params = format!(
        "({});created={created};nonce=\"{nonce}\";keyid=\"{}\";alg=\"ed25519\"",
        quoted(&names),
        identity.node_id()
    );
    let text = base(
        &[
            ("@method", method),
            ("@target-uri", target_uri),
            ("content-digest", &digest),
        ],
        &params,
    );
    let signature = STANDARD.encode(identity.sign(text.as_bytes()));
    SignedHeaders {
        content_digest: digest,
        signature_input: format!("{LABEL}={params}"),
        signature: format!("{LABEL}=:{signature}:"),
    }
}

/// Sign an answer (`@status`, `content-digest`) with a raw Ed25519 seed (the test
/// coordinator's key) under `keyid`.
pub fn sign_answer(
    seed: &[u8; 32],
    keyid: &str,
    status: u16,
    body: &[u8],
    created: u64,
) -> SignedHeaders {
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    let digest = content_digest(body);
    let params = format!(
        "({});created={created};keyid=\"{keyid}\";alg=\"ed25519\"",
        quoted(&["@status", "content-digest"])
    );
    let status = status.to_string();
    let text = base(
        &[("@status", &status), ("content-digest", &digest)],
        &params,
    );
    let signature = ed25519_dalek::Signer::sign(&key, text.as_bytes());
    SignedHeaders {
        content_digest: digest,
        signature_input: format!("{LABEL}={params}"),
        signature: format!("{LABEL}=:{}:", STANDARD.encode(signature.to_bytes())),
    }
}

/// The Ed25519 public key of a raw seed (for pinning a test coordinator's key).
pub fn public_key_of(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// One signature's parameters, parsed from a `Signature-Input` member.
struct Input {
    label: String,
    components: Vec<String>,
    params: String,
    created: Option<u64>,
    alg: Option<String>,
}

fn parse_input(header: &str) -> Result<Input, TrustError> {
    let bad = || TrustError::HttpSignature("Signature-Input is not label=(components);params");
    let (label, rest) = header.trim().split_once('=').ok_or_else(bad)?;
    let inner = rest.strip_prefix('(').ok_or_else(bad)?;
    let (list, tail) = inner.split_once(')').ok_or_else(bad)?;
    let components = list
        .split_whitespace()
        .map(|c| c.trim_matches('"').to_owned())
        .collect();
    let mut created = None;
    let mut alg = None;
    for param in tail.split(';').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("created", v)) => created = v.parse().ok(),
            Some(("alg", v)) => alg = Some(v.trim_matches('"').to_owned()),
            _ => {}
        }
    }
    Ok(Input {
        label: label.trim().to_owned(),
        components,
        params: rest.to_owned(),
        created,
        alg,
    })
}

/// Check an answer: a signature by `public_key` over `@status` and a `content-digest`
/// that matches `body`, made within `max_skew` seconds of `now`.
pub fn verify_answer(
    public_key: &[u8; 32],
    status: u16,
    headers: &AnswerHeaders<'_>,
    body: &[u8],
    now: u64,
    max_skew: u64,
) -> Result<(), TrustError> {
    let missing = TrustError::HttpSignature(
        "the answer is not signed (no Signature, Signature-Input or Content-Digest)",
    );
    let (Some(input), Some(signature), Some(digest)) = (
        headers.signature_input,
        headers.signature,
        headers.content_digest,
    ) else {
        return Err(missing);
    };
    let input = parse_input(input)?;
    if input.alg.as_deref().is_some_and(|a| a != "ed25519") {
        return Err(TrustError::HttpSignature(
            "the answer's signature is not ed25519",
        ));
    }
    for needed in ["@status", "content-digest"] {
        if !input.components.iter().any(|c| c == needed) {
            return Err(TrustError::HttpSignature(
                "the answer's signature does not cover @status and content-digest",
            ));
        }
    }
    if digest.trim() != content_digest(body) {
        return Err(TrustError::HttpSignature(
            "the answer's Content-Digest does not match its body",
        ));
    }
    let created = input.created.ok_or(TrustError::HttpSignature(
        "the answer's signature has no created time",
    ))?;
    if created.abs_diff(now) > max_skew {
        return Err(TrustError::HttpSignature(
            "the answer's signature is older (or newer) than the allowed clock skew",
        ));
    }
    let status = status.to_string();
    let mut lines = Vec::new();
    for name in &input.components {
        let value = match name.as_str() {
            "@status" => status.as_str(),
            "content-digest" => digest.trim(),
            _ => {
                return Err(TrustError::HttpSignature(
                    "the answer's signature covers a component farm does not check",
                ))
            }
        };
        lines.push((name.as_str(), value));
    }
    let text = base(&lines, &input.params);
    let value = signature
        .trim()
        .strip_prefix(&format!("{}=:", input.label))
        .and_then(|v| v.strip_suffix(':'))
        .ok_or(TrustError::HttpSignature(
            "the Signature header has no member for the Signature-Input's label",
        ))?;
    let bytes = STANDARD
        .decode(value)
        .map_err(|_| TrustError::HttpSignature("the Signature is not base64"))?;
    let sig = Signature::from_slice(&bytes)
        .map_err(|_| TrustError::HttpSignature("the Signature is not 64 bytes"))?;
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| {
        TrustError::HttpSignature("the pinned coordinator key is not an Ed25519 key")
    })?;
    key.verify(text.as_bytes(), &sig).map_err(|_| {
        TrustError::HttpSignature(
            "the answer's signature does not verify with the pinned coordinator key",
        )
    })
}

/// The signature headers of an answer, as received.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnswerHeaders<'a> {
    pub content_digest: Option<&'a str>,
    pub signature_input: Option<&'a str>,
    pub signature: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_signed_here_verifies_and_a_changed_status_body_or_old_one_does_not() {
        let seed = [7u8; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let body = br#"{"result":"ok"}"#;
        let signed = sign_answer(&seed, "coordinator", 200, body, 1_000);
        let headers = AnswerHeaders {
            content_digest: Some(&signed.content_digest),
            signature_input: Some(&signed.signature_input),
            signature: Some(&signed.signature),
        };
        assert!(verify_answer(&public, 200, &headers, body, 1_010, 300).is_ok());
        assert!(verify_answer(&public, 409, &headers, body, 1_010, 300).is_err());
        assert!(verify_answer(&public, 200, &headers, b"{}", 1_010, 300).is_err());
        assert!(verify_answer(&public, 200, &headers, body, 2_000, 300).is_err());
        assert!(verify_answer(&public, 200, &AnswerHeaders::default(), body, 1_000, 300).is_err());
        // RFC 9530's own example: {"hello": "world"}
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}"),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
    }
}
