//! farm-trust's HTTP signatures against the PyPI `http-message-signatures` package: farm's
//! request signatures verify there, and answers signed there verify here. Needs the venv
//! `.ci/run` makes (`FARM_TEST_PYTHON` overrides); under CI=true its absence fails.

use std::process::Command;

use farm_trust::httpsig::{self, AnswerHeaders};
use farm_trust::Identity;

fn python() -> Option<String> {
    let python = std::env::var("FARM_TEST_PYTHON")
        .unwrap_or_else(|_| "/opt/farm-test-venv/bin/python".into());
    let ok = Command::new(&python)
        .args(["-c", "import http_message_signatures"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs {python} with http-message-signatures"
        );
        eprintln!("skipped: no {python} with http-message-signatures");
        return None;
    }
    Some(python)
}

fn run(python: &str, code: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(python)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

const VERIFY_REQUEST: &str = r#"
import base64, sys, types
import http_message_signatures as hms
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
method, url, digest, sig_input, sig, body, keyid, key = sys.argv[1:9]
raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
msg = types.SimpleNamespace(method=method, url=url, headers={
    "Content-Digest": digest, "Signature-Input": sig_input, "Signature": sig})
resolver = hms.MappingKeyResolver(public_keys={keyid: Ed25519PublicKey.from_public_bytes(raw)}, private_keys={})
verifier = hms.HTTPMessageVerifier(signature_algorithm=hms.algorithms.ED25519, key_resolver=resolver)
results = verifier.verify(msg, max_age=None, body=body.encode(),
    require_components=("@method", "@target-uri", "content-digest"))
print(results[0].parameters["nonce"])
"#;

#[test]
fn request_signatures_verify_with_http_message_signatures_and_a_changed_url_does_not() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (id, _) = Identity::init(dir.path()).unwrap();
    let key = id.public().ed25519_public_key;
    let body = r#"{"node_id":"x","running":[]}"#;
    let url = "https://coordinator.test/v1/heartbeat?x=1";
    let created = farm_trust::unix_now();
    let s = httpsig::sign_request(&id, "POST", url, body.as_bytes(), created, "n0nce123");
    let args = |url: &str, body: &str| {
        vec![
            "POST".to_owned(),
            url.to_owned(),
            s.content_digest.clone(),
            s.signature_input.clone(),
            s.signature.clone(),
            body.to_owned(),
            id.node_id(),
            key.clone(),
        ]
    };
    let ok: Vec<String> = args(url, body);
    let refs: Vec<&str> = ok.iter().map(String::as_str).collect();
    assert_eq!(run(&python, VERIFY_REQUEST, &refs).unwrap(), "n0nce123");
    let other = args("https://coordinator.test/v1/heartbeat?x=2", body);
    let refs: Vec<&str> = other.iter().map(String::as_str).collect();
    assert!(
        run(&python, VERIFY_REQUEST, &refs).is_err(),
        "another URL verified"
    );
    let changed = args(url, r#"{"node_id":"y","running":[]}"#);
    let refs: Vec<&str> = changed.iter().map(String::as_str).collect();
    assert!(
        run(&python, VERIFY_REQUEST, &refs).is_err(),
        "another body verified"
    );
}

const SIGN_ANSWER: &str = r#"
import base64, json, sys, types
import http_message_signatures as hms
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
seed = bytes(range(32))
priv = Ed25519PrivateKey.from_private_bytes(seed)
body = sys.argv[2].encode()
msg = types.SimpleNamespace(status_code=int(sys.argv[1]), headers={})
signer = hms.HTTPMessageSigner(signature_algorithm=hms.algorithms.ED25519,
    key_resolver=hms.MappingKeyResolver(public_keys={}, private_keys={"coordinator": priv}))
signer.sign(msg, key_id="coordinator", covered_component_ids=("@status", "content-digest"), body=body)
pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
print(json.dumps({"headers": dict(msg.headers), "public": pub.hex()}))
"#;

#[test]
fn answers_signed_by_http_message_signatures_verify_here_and_tampering_is_caught() {
    let Some(python) = python() else { return };
    let body = r#"{"result":"ok","leases":[]}"#;
    let out: serde_json::Value =
        serde_json::from_str(&run(&python, SIGN_ANSWER, &["200", body]).unwrap()).unwrap();
    let header = |name: &str| {
        out["headers"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str().unwrap().to_owned())
    };
    let (digest, input, sig) = (
        header("content-digest"),
        header("signature-input"),
        header("signature"),
    );
    assert!(
        digest.is_some() && input.is_some() && sig.is_some(),
        "{out}"
    );
    let headers = AnswerHeaders {
        content_digest: digest.as_deref(),
        signature_input: input.as_deref(),
        signature: sig.as_deref(),
    };
    let public: [u8; 32] = hex::decode(out["public"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let now = farm_trust::unix_now();
    httpsig::verify_answer(&public, 200, &headers, body.as_bytes(), now, 300).unwrap();
    assert!(httpsig::verify_answer(&public, 500, &headers, body.as_bytes(), now, 300).is_err());
    assert!(
        httpsig::verify_answer(&public, 200, &headers, b"{\"result\":\"no\"}", now, 300).is_err()
    );
    assert!(httpsig::verify_answer(&[9u8; 32], 200, &headers, body.as_bytes(), now, 300).is_err());
    assert!(
        httpsig::verify_answer(&public, 200, &headers, body.as_bytes(), now + 3600, 300).is_err()
    );
}
