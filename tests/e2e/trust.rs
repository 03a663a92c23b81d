//! Node identity, tokens, sealed secrets and wallet links, each checked by independent
//! code from PyPI (PyJWT, PyNaCl, eth-account in the venv `.ci/run` makes), never only by
//! farm's own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::support::images::{self, Image, Pusher};
use crate::support::registry::{TestRegistry, PASSWORD, USER};
use crate::support::{have_file, registry_prereqs, require, Farm, Run};

/// The venv `.ci/run` creates (FARM_TEST_PYTHON overrides).
fn python() -> String {
    std::env::var("FARM_TEST_PYTHON").unwrap_or_else(|_| "/opt/farm-test-venv/bin/python".into())
}

fn python_prereqs() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import jwt, nacl, eth_account, cryptography"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        ok,
        "a Python venv with PyJWT, PyNaCl, eth-account (see .ci/run)",
    )
}

/// Run Python `code` with `args`; its stdout, or its failure.
fn py(code: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn identity(farm: &Farm) -> serde_json::Value {
    let run = farm.run(&["init", "--json"]);
    run.assert_ok();
    serde_json::from_str(&run.stdout).unwrap()
}

const VERIFY_JWT: &str = r#"
import base64, json, sys, jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
raw = base64.urlsafe_b64decode(sys.argv[2] + "=" * (-len(sys.argv[2]) % 4))
key = Ed25519PublicKey.from_public_bytes(raw)
claims = jwt.decode(sys.argv[1], key=key, algorithms=["EdDSA"], audience=sys.argv[3])
print(json.dumps(claims))
"#;

#[test]
fn identity_token_verifies_with_pyjwt_and_a_readable_key_is_refused() {
    if !python_prereqs() {
        return;
    }
    let farm = Farm::new();
    let id = identity(&farm);
    let node_id = id["node_id"].as_str().unwrap();
    let public = id["ed25519_public_key"].as_str().unwrap();
    assert_eq!(
        identity(&farm)["node_id"],
        node_id,
        "init twice keeps the identity"
    );
    let run = farm.run(&[
        "identity",
        "token",
        "--audience",
        "coordinator.test",
        "--ttl",
        "10m",
    ]);
    run.assert_ok();
    let token = run.stdout.trim();
    let claims: serde_json::Value =
        serde_json::from_str(&py(VERIFY_JWT, &[token, public, "coordinator.test"]).unwrap())
            .unwrap();
    assert_eq!(claims["iss"], node_id);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    // Another audience, or one changed character of the signature, fails in PyJWT.
    assert!(py(VERIFY_JWT, &[token, public, "someone.else"]).is_err());
    let mut forged = token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert!(py(VERIFY_JWT, &[&forged, public, "coordinator.test"]).is_err());

    let key = farm.root().join("identity/ed25519.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = farm.run(&["identity", "show"]);
    run.assert_farm_error();
    assert!(run.stderr.contains("chmod 600"), "{run:#?}");
}

const SEAL: &str = r#"
import base64, sys
from nacl.public import PublicKey, SealedBox
raw = base64.urlsafe_b64decode(sys.argv[1] + "=" * (-len(sys.argv[1]) % 4))
print(base64.b64encode(SealedBox(PublicKey(raw)).encrypt(sys.argv[2].encode())).decode())
"#;

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-rlaF", needle])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn values_sealed_with_pynacl_reach_the_job_and_no_plaintext_is_left() {
    if !(python_prereqs()
        && registry_prereqs()
        && require(have_file("/usr/bin/htpasswd"), "htpasswd")
        && crate::support::containers::run_prereqs())
    {
        return;
    }
    let farm = Farm::new();
    let key = identity(&farm)["x25519_public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = "pl41n-t0ken-that-must-never-be-stored";
    let sealed_env = py(SEAL, &[&key, secret]).unwrap();
    let sealed_auth = py(SEAL, &[&key, &format!("{USER}:{PASSWORD}")]).unwrap();

    let registry = TestRegistry::htpasswd();
    let image = Image::oci(vec![images::busybox_layer()]);
    Pusher::with_credentials(&registry.host(), USER, PASSWORD).push_image(
        "e2e/sealed",
        Some("1"),
        &image,
    );
    let reference = format!("{}/e2e/sealed:1", registry.host());
    let mut outputs: Vec<Run> = Vec::new();
    let run = farm.run(&["pull", "--sealed-auth", &sealed_auth, &reference]);
    run.assert_ok();
    outputs.push(run);
    // The job proves it got the value by its hash, and never prints it.
    let run = farm.run(&[
        "run",
        "--name",
        "sealed",
        "--secret-env",
        &format!("TOKEN={sealed_env}"),
        &reference,
        "sh",
        "-c",
        "printf %s \"$TOKEN\" | sha256sum",
    ]);
    run.assert_ok();
    assert!(
        run.stdout.starts_with(&hex::encode(Sha256::digest(secret))),
        "{run:#?}"
    );
    outputs.push(run);
    let inspect = farm.run(&["inspect", "sealed"]);
    inspect.assert_ok();
    assert!(
        inspect.stdout.contains("TOKEN=<sealed>"),
        "{}",
        inspect.stdout
    );
    outputs.push(inspect);
    outputs.push(farm.run(&["ps", "-a"]));
    outputs.push(farm.run(&["logs", "sealed"]));
    for needle in [secret, PASSWORD] {
        assert_eq!(
            files_holding(&farm.root(), needle),
            Vec::<String>::new(),
            "plaintext on disk"
        );
        for out in &outputs {
            assert!(
                !out.all_output().contains(needle),
                "plaintext in output: {out:#?}"
            );
        }
    }
    // Sealed to another node: refused with what to do.
    let other = Farm::new();
    let theirs = identity(&other)["x25519_public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = py(SEAL, &[&theirs, secret]).unwrap();
    let run = farm.run(&[
        "run",
        "--rm",
        "--secret-env",
        &format!("TOKEN={wrong}"),
        &reference,
        "true",
    ]);
    run.assert_farm_error();
    assert!(run.stderr.contains("sealed to another node"), "{run:#?}");
}

const SIGN: &str = r#"
import sys
from eth_account import Account
from eth_account.messages import encode_defunct
acct = Account.from_key(sys.argv[1])
if sys.argv[2] == "address":
    print(acct.address)
else:
    print(acct.sign_message(encode_defunct(text=sys.stdin.read())).signature.hex())
"#;

fn eth(key: &str, what: &str, stdin: &str) -> String {
    let mut child = Command::new(python())
        .args(["-c", SIGN, key, what])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if what == "sign" && !text.starts_with("0x") {
        return format!("0x{text}");
    }
    text
}

#[test]
fn a_wallet_link_signed_with_eth_account_verifies_and_another_key_is_refused() {
    if !python_prereqs() {
        return;
    }
    let farm = Farm::new();
    let node_id = identity(&farm)["node_id"].as_str().unwrap().to_owned();
    let wallet_key = format!("0x{}", "4c".repeat(32));
    let other_key = format!("0x{}", "7e".repeat(32));
    let address = eth(&wallet_key, "address", "");
    let run = farm.run(&[
        "identity",
        "link-wallet",
        "--address",
        &address.to_lowercase(),
    ]);
    run.assert_ok();
    let message = run.stdout.trim_end_matches('\n').to_owned();
    assert!(
        message.contains(&address),
        "the message names the checksummed address: {message}"
    );
    assert!(message.contains(&format!("urn:farm:node:{node_id}")));
    assert!(message.contains("wants you to sign in with your Ethereum account:"));

    let wrong = eth(&other_key, "sign", &message);
    let run = farm.run(&["identity", "link-wallet", "--signature", &wrong]);
    run.assert_farm_error();
    assert!(run.stderr.contains("signed by"), "{run:#?}");

    let good = eth(&wallet_key, "sign", &message);
    let run = farm.run(&["identity", "link-wallet", "--signature", &good]);
    run.assert_ok();
    let show = farm.run(&["identity", "show", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["wallet"], address.as_str());
}

const VERIFY_RECORDED: &str = r#"
import base64, json, sys, types
import http_message_signatures as hms
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
requests, node_id, key = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
resolver = hms.MappingKeyResolver(public_keys={node_id: Ed25519PublicKey.from_public_bytes(raw)}, private_keys={})
verifier = hms.HTTPMessageVerifier(signature_algorithm=hms.algorithms.ED25519, key_resolver=resolver)
nonces = set()
for r in requests:
    msg = types.SimpleNamespace(method=r["method"], url=r["url"], headers=dict(r["headers"]))
    result = verifier.verify(msg, max_age=None, body=r["body"].encode(),
        require_components=("@method", "@target-uri", "content-digest"))[0]
    nonces.add(result.parameters["nonce"])
assert len(nonces) == len(requests), "a nonce was used twice"
print(len(requests))
"#;

/// A worker whose config pins `pinned` as the coordinator's key, against a test
/// coordinator that signs its answers with `seed`.
fn signed_worker(
    farm: &crate::support::containers::RunFarm,
    seed: [u8; 32],
    pinned: [u8; 32],
    extra: &[&str],
) -> (
    farm_scheduler_client::testcoord::Coordinator,
    crate::support::containers::Spawned,
) {
    use farm_scheduler_client::testcoord::{Coordinator, Settings};
    let settings = Settings {
        signing_seed: Some(seed),
        ..Settings::default()
    };
    let coordinator = Coordinator::with_settings("127.0.0.1:0", settings).unwrap();
    let config = farm.dir.path().join("worker.conf");
    let key = farm_trust::b64::url(&pinned);
    std::fs::write(
        &config,
        format!(
            "coordinator = {}\ncoordinator_key = {key}\n",
            coordinator.url()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let mut args = vec!["worker", "run", "--config", &config];
    args.extend_from_slice(extra);
    let worker = farm.spawn(&args);
    (coordinator, worker)
}

#[test]
fn every_worker_request_is_signed_and_answers_must_carry_the_pinned_key() {
    use farm_scheduler_client::protocol::JobSpec;
    if !python_prereqs() {
        return;
    }
    let Some(farm) = crate::support::containers::RunFarm::new() else {
        return;
    };
    let seed = [3u8; 32];
    let (coordinator, worker) =
        signed_worker(&farm, seed, farm_trust::httpsig::public_key_of(&seed), &[]);
    let job = JobSpec {
        image: farm.probe(),
        command: vec!["true".into()],
        ..Default::default()
    };
    let lease = coordinator.submit(job);
    let limit = std::time::Duration::from_secs(60);
    let done = coordinator.wait_for(limit, |s| s.final_report(&lease).cloned());
    assert!(
        done.is_some(),
        "no final report: {}",
        std::fs::read_to_string(&worker.stderr).unwrap_or_default()
    );
    let state = coordinator.state();
    let show = farm.run(&["identity", "show", "--json"]);
    show.assert_ok();
    let id: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(
        state.registrations[0].node_id,
        id["node_id"].as_str().unwrap(),
        "the node id is the identity's"
    );
    let dump = farm.dir.path().join("requests.json");
    std::fs::write(&dump, serde_json::to_vec(&state.requests).unwrap()).unwrap();
    let node_id = id["node_id"].as_str().unwrap();
    let key = id["ed25519_public_key"].as_str().unwrap();
    let checked: usize = py(VERIFY_RECORDED, &[&dump.to_string_lossy(), node_id, key])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        checked >= 3 && checked == state.requests.len(),
        "{checked} of {}",
        state.requests.len()
    );
    drop(worker);

    // Pinned to another key: every answer is refused, no lease is taken, the worker says why.
    let Some(other) = crate::support::containers::RunFarm::new() else {
        return;
    };
    let (coordinator, worker) = signed_worker(&other, seed, [9u8; 32], &[]);
    let lease = coordinator.submit(JobSpec {
        image: other.probe(),
        command: vec!["true".into()],
        ..Default::default()
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let state = coordinator.state();
    assert!(
        state.leases[&lease].node_id.is_none() && state.reports_of(&lease).is_empty(),
        "a worker that refuses the coordinator's answers took its job: {:#?}",
        state.reports
    );
    let status = other.run(&["worker", "status", "--json"]);
    assert!(status.stdout.contains("answer refused"), "{status:#?}");
    drop(worker);
}

const POLICY: &str = r#"
[policy]
max_cpus = 2
max_time_limit = "2h"
refused_registries = ["evil.example"]

[prices]
cpu_hour = 1.5
memory_gb_hour = 0.5
"#;

#[test]
fn policy_check_and_quote_answer_locally_and_the_worker_refuses_with_the_code() {
    use farm_scheduler_client::protocol::{JobSpec, JobState, ReasonCode};
    let Some(farm) = crate::support::containers::RunFarm::new() else {
        return;
    };
    std::fs::write(farm.root().join("config.toml"), POLICY).unwrap();
    let job = |cpus: f64| {
        serde_json::json!({"image": farm.probe(), "command": ["true"], "cpus": cpus,
            "memory_bytes": 1_000_000_000u64, "time_limit_ms": 3_600_000u64,
            "offer": {"cpu_hour": 2.0, "memory_gb_hour": 0.5}})
    };
    let path = farm.dir.path().join("job.json");
    std::fs::write(&path, job(4.0).to_string()).unwrap();
    let file = path.to_string_lossy().into_owned();
    let run = farm.run(&["policy", "check", &file, "--json"]);
    assert_eq!(run.code, 1, "{run:#?}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (
            answer["code"].as_str(),
            answer["limit"].as_str(),
            answer["asked"].as_str()
        ),
        (Some("cpus_over_limit"), Some("2"), Some("4")),
        "{answer}"
    );
    std::fs::write(&path, job(2.0).to_string()).unwrap();
    farm.run(&["policy", "check", &file]).assert_ok();
    let quote = farm.run(&["quote", &file, "--json"]);
    quote.assert_ok();
    let q: serde_json::Value = serde_json::from_str(&quote.stdout).unwrap();
    assert!(
        (q["total"].as_f64().unwrap() - (2.0 * 1.5 + 1.0 * 0.5)).abs() < 1e-9,
        "{q}"
    );

    // The worker: the same refusal, with its code, reaches the coordinator; prices too.
    use farm_scheduler_client::testcoord::{Coordinator, Settings};
    let coordinator = Coordinator::with_settings("127.0.0.1:0", Settings::default()).unwrap();
    let config = farm.dir.path().join("worker.conf");
    std::fs::write(&config, format!("coordinator = {}\n", coordinator.url())).unwrap();
    let worker = farm.spawn(&["worker", "run", "--config", &config.to_string_lossy()]);
    let big: JobSpec = serde_json::from_value(job(4.0)).unwrap();
    let lease = coordinator.submit(big);
    let report = coordinator.wait_for(std::time::Duration::from_secs(60), |s| {
        s.final_report(&lease).cloned()
    });
    let report = report.unwrap_or_else(|| {
        panic!(
            "{}",
            std::fs::read_to_string(&worker.stderr).unwrap_or_default()
        )
    });
    assert_eq!(report.state, JobState::Failed);
    let exit = report.exit.unwrap();
    assert_eq!(exit.reason_code, ReasonCode::Refused);
    assert_eq!(exit.refusal.unwrap().code, "cpus_over_limit");
    assert_eq!(coordinator.state().registrations[0].prices.cpu_hour, 1.5);
    drop(worker);
}

const VERIFY_EARNINGS: &str = r#"
import base64, json, sys, rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
d = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
coordinator = sys.argv[2] if len(sys.argv) > 2 else None
for signed in json.load(open(sys.argv[1])):
    key = Ed25519PublicKey.from_public_bytes(d(signed["signature"]["public_key"]))
    key.verify(d(signed["signature"]["value"]), rfc8785.dumps(signed["record"]))
    if coordinator:
        counter = signed["countersignature"]
        assert counter["public_key"] == coordinator, "countersigned by another key"
        acked = {"record": signed["record"], "signature": signed["signature"]}
        Ed25519PublicKey.from_public_bytes(d(coordinator)).verify(
            d(counter["value"]), rfc8785.dumps(acked))
    print(signed["record"]["credits"]["total"])
"#;

/// One scrape of a Prometheus text endpoint: metric name to value.
fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: farm\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn earnings_records_are_signed_countersigned_and_exposed_as_metrics() {
    if !python_prereqs() {
        return;
    }
    let Some(farm) = crate::support::containers::RunFarm::new() else {
        return;
    };
    std::fs::write(
        farm.root().join("config.toml"),
        "[prices]\ncpu_hour = 3600.0\nmemory_gb_hour = 36000.0\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let seed = [5u8; 32];
    let coordinator_key = farm_trust::b64::url(&farm_trust::httpsig::public_key_of(&seed));
    let (coordinator, worker) = signed_worker(
        &farm,
        seed,
        farm_trust::httpsig::public_key_of(&seed),
        &["--metrics", &metrics],
    );
    // It pays the farmer's floors (an offer below them is refused).
    let job = farm_scheduler_client::protocol::JobSpec {
        image: farm.probe(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done".into(),
        ],
        offer: Some(farm_scheduler_client::protocol::Prices {
            cpu_hour: 3600.0,
            memory_gb_hour: 36000.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let lease = coordinator.submit(job);
    let done = coordinator.wait_for(std::time::Duration::from_secs(60), |s| {
        s.final_report(&lease).cloned()
    });
    let stderr = || std::fs::read_to_string(&worker.stderr).unwrap_or_default();
    let done = done.unwrap_or_else(|| panic!("{}", stderr()));
    assert!(
        done.earnings.is_some(),
        "the final report carries no earnings record"
    );
    // The countersignature arrives with the acknowledgement; the outbox then empties.
    let countersigned = crate::support::containers::wait_for(
        "the countersigned earnings record",
        std::time::Duration::from_secs(30),
        || {
            let out = farm.run(&["earnings", "--json"]);
            out.stdout
                .contains("countersignature")
                .then_some(out.stdout)
        },
        stderr,
    );
    let seen = scrape(&metrics);
    drop(worker);

    let records: serde_json::Value = serde_json::from_str(&countersigned).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    let total = records[0]["record"]["credits"]["total"].as_f64().unwrap();
    assert!(
        total > 0.0,
        "a job with usage and prices earned nothing: {records}"
    );
    assert_eq!(records[0]["record"]["lease_id"], lease.as_str());
    assert_eq!(seen["farm_jobs_finished_total"], 1.0, "{seen:?}");
    assert_eq!(seen["farm_jobs_running"], 0.0, "{seen:?}");
    assert!(
        (seen["farm_credits_earned_total"] - total).abs() < 1e-9,
        "{seen:?} vs {total}"
    );
    assert!(seen["farm_cpu_seconds_total"] > 0.0, "{seen:?}");
    let file = farm.dir.path().join("earnings.json");
    std::fs::write(&file, &countersigned).unwrap();
    let path = file.to_string_lossy().into_owned();
    let ok = farm.run(&[
        "earnings",
        "verify",
        &path,
        "--coordinator-key",
        &coordinator_key,
    ]);
    ok.assert_ok();
    assert!(
        ok.stdout
            .contains(&format!("countersigned by {coordinator_key}")),
        "{}",
        ok.stdout
    );
    let python_total: f64 = py(VERIFY_EARNINGS, &[&path, &coordinator_key])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(python_total, total);
    let table = farm.run(&["earnings"]);
    table.assert_ok();
    assert!(
        table.stdout.contains(&lease) && table.stdout.contains("total"),
        "{}",
        table.stdout
    );
    // Another coordinator key: refused.
    let other = farm_trust::b64::url(&[3u8; 32]);
    let run = farm.run(&["earnings", "verify", &path, "--coordinator-key", &other]);
    assert_eq!(run.code, 1, "{run:#?}");

    // One changed byte of the record: both farm and the independent check refuse it.
    let text = countersigned.replacen("\"lease_id\": \"", "\"lease_id\": \"X", 1);
    assert_ne!(text, countersigned);
    std::fs::write(&file, text).unwrap();
    let run = farm.run(&["earnings", "verify", &path]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("FAILED"));
    assert!(py(VERIFY_EARNINGS, &[&path]).is_err());
}

#[test]
fn a_coordinator_job_with_sealed_env_and_registry_credentials_leaves_no_plaintext() {
    use farm_scheduler_client::protocol::{JobSpec, JobState, LogStream};
    use farm_scheduler_client::testcoord::{Coordinator, Settings};
    if !(python_prereqs()
        && registry_prereqs()
        && require(have_file("/usr/bin/htpasswd"), "htpasswd"))
    {
        return;
    }
    let Some(farm) = crate::support::containers::RunFarm::new() else {
        return;
    };
    let key = identity(&farm)["x25519_public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = "j0b-s3cret-that-only-the-container-sees";
    let registry = TestRegistry::htpasswd();
    let image = Image::oci(vec![images::busybox_layer()]);
    Pusher::with_credentials(&registry.host(), USER, PASSWORD).push_image(
        "e2e/job",
        Some("1"),
        &image,
    );
    let coordinator = Coordinator::with_settings("127.0.0.1:0", Settings::default()).unwrap();
    let config = farm.dir.path().join("worker.conf");
    std::fs::write(&config, format!("coordinator = {}\n", coordinator.url())).unwrap();
    let worker = farm.spawn(&["worker", "run", "--config", &config.to_string_lossy()]);
    let job = JobSpec {
        image: format!("{}/e2e/job:1", registry.host()),
        command: vec![
            "sh".into(),
            "-c".into(),
            "printf %s \"$TOKEN\" | sha256sum".into(),
        ],
        sealed_env: [("TOKEN".to_owned(), py(SEAL, &[&key, secret]).unwrap())].into(),
        sealed_registry_auth: Some(py(SEAL, &[&key, &format!("{USER}:{PASSWORD}")]).unwrap()),
        ..Default::default()
    };
    let lease = coordinator.submit(job);
    let done = coordinator.wait_for(std::time::Duration::from_secs(60), |s| {
        s.final_report(&lease).cloned()
    });
    let done = done.unwrap_or_else(|| {
        panic!(
            "{}",
            std::fs::read_to_string(&worker.stderr).unwrap_or_default()
        )
    });
    assert_eq!(done.state, JobState::Exited, "{done:#?}");
    let state = coordinator.state();
    let stdout = String::from_utf8_lossy(&state.log_bytes(&lease, LogStream::Stdout)).into_owned();
    assert!(
        stdout.starts_with(&hex::encode(Sha256::digest(secret))),
        "{stdout}"
    );
    let stderr = std::fs::read_to_string(&worker.stderr).unwrap();
    drop(worker);
    let everything = serde_json::to_string(&state).unwrap();
    for needle in [secret, PASSWORD] {
        assert_eq!(
            files_holding(&farm.root(), needle),
            Vec::<String>::new(),
            "plaintext on disk"
        );
        assert!(
            !everything.contains(needle),
            "plaintext reached the coordinator"
        );
        assert!(!stderr.contains(needle));
    }
}
