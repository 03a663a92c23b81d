//! Credentials: htpasswd registries, token auth, docker credential helpers.

use std::os::unix::fs::PermissionsExt;

use crate::support::images::{self, Image, Pusher};
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::registry::{TestRegistry, PASSWORD, USER};
use crate::support::token_server::{basic, TokenServer};
use crate::support::{have_file, registry_prereqs, require, write_script, Farm};

fn small_image() -> Image {
    Image::oci(vec![images::busybox_layer()])
}

#[track_caller]
fn assert_no_password(run: &crate::support::Run) {
    assert!(
        !run.all_output().contains(PASSWORD),
        "the password appears in farm's output: {run:#?}"
    );
}

#[test]
fn htpasswd_login_pull_logout() {
    if !(registry_prereqs()
        && require(
            have_file("/usr/bin/htpasswd"),
            "htpasswd (apt install apache2-utils)",
        ))
    {
        return;
    }
    let registry = TestRegistry::htpasswd();
    let image = small_image();
    Pusher::with_credentials(&registry.host(), USER, PASSWORD).push_image(
        "e2e/private",
        Some("1"),
        &image,
    );
    let farm = Farm::new();
    let reference = format!("{}/e2e/private:1", registry.host());

    let run = farm.run(&["pull", &reference]);
    run.assert_farm_error();
    assert!(
        run.stderr.contains("farm login"),
        "the error tells the user to run `farm login`: {run:#?}"
    );
    assert!(farm.images().is_empty());

    let run = farm.run_stdin(
        &["login", "-u", USER, "--password-stdin", &registry.host()],
        PASSWORD,
    );
    run.assert_ok();
    assert_no_password(&run);
    let auth_json = farm.root().join("auth.json");
    let mode = std::fs::metadata(&auth_json)
        .expect("auth.json after login")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "auth.json is private");

    let run = farm.run(&["pull", &reference]);
    run.assert_ok();
    assert_no_password(&run);
    assert_eq!(
        farm.record("e2e/private:1")["manifest_digest"],
        image.manifest_digest.as_str()
    );

    let run = farm.run(&["logout", &registry.host()]);
    run.assert_ok();
    farm.run(&["rmi", &reference]).assert_ok();
    farm.run(&["prune"]).assert_ok();
    farm.run(&["pull", &reference]).assert_farm_error();

    // Per-pull credentials, not stored.
    let run = farm.run_stdin(
        &["pull", "--username", USER, "--password-stdin", &reference],
        PASSWORD,
    );
    run.assert_ok();
    assert_no_password(&run);
    let stored = std::fs::read_to_string(&auth_json).unwrap_or_default();
    assert!(
        !stored.contains(&registry.host()),
        "a per-pull password is not stored: {stored}"
    );
}

#[test]
fn login_with_wrong_password_fails_and_stores_nothing() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::htpasswd();
    let farm = Farm::new();
    let run = farm.run_stdin(
        &["login", "-u", USER, "--password-stdin", &registry.host()],
        "wrong-password-xyz",
    );
    run.assert_farm_error();
    assert!(!run.all_output().contains("wrong-password-xyz"), "{run:#?}");
    let stored = std::fs::read_to_string(farm.root().join("auth.json")).unwrap_or_default();
    assert!(
        !stored.contains(&registry.host()),
        "failed login stored credentials: {stored}"
    );
}

#[test]
fn token_auth_sends_basic_only_to_the_token_server() {
    if !(registry_prereqs() && require(have_file("/usr/bin/openssl"), "openssl")) {
        return;
    }
    let tokens = TokenServer::start(&["e2e/public"]);
    let registry = TestRegistry::start(tokens.registry_auth(), None);
    let image = small_image();
    let mut pusher = Pusher::with_credentials(&registry.host(), USER, PASSWORD);
    pusher.push_image("e2e/secret", Some("1"), &image);
    pusher.push_image("e2e/public", Some("1"), &image);
    // Farm talks to the registry through a recording proxy.
    let proxy = Proxy::start(&registry.host(), ProxyOptions::default());
    tokens.clear();
    let farm = Farm::new();

    // Anonymous pull of a public repo works (an anonymous token).
    farm.run(&["pull", &format!("{}/e2e/public:1", proxy.host())])
        .assert_ok();

    // The private repo needs credentials.
    let secret = format!("{}/e2e/secret:1", proxy.host());
    let run = farm.run(&["pull", &secret]);
    run.assert_farm_error();
    assert!(
        run.stderr.contains("farm login"),
        "the error tells the user to run `farm login`: {run:#?}"
    );

    let run = farm.run_stdin(
        &["pull", "--username", USER, "--password-stdin", &secret],
        PASSWORD,
    );
    run.assert_ok();
    assert_no_password(&run);
    assert_eq!(
        farm.record("e2e/secret:1")["manifest_digest"],
        image.manifest_digest.as_str()
    );

    let expected_basic = basic(USER, PASSWORD);
    let token_requests = tokens.requests();
    assert!(
        token_requests
            .iter()
            .any(|r| r.authorization.as_deref() == Some(expected_basic.as_str())),
        "the token server saw the Basic credentials: {token_requests:#?}"
    );
    assert!(
        token_requests
            .iter()
            .any(|r| r.target.contains("e2e%2Fsecret") || r.target.contains("e2e/secret")),
        "a token was asked for the secret repo: {token_requests:#?}"
    );
    let registry_requests = proxy.requests();
    for request in &registry_requests {
        if let Some(auth) = request.header("authorization") {
            assert!(
                auth.starts_with("Bearer "),
                "the registry got a non-Bearer Authorization: {} {}",
                request.method,
                request.target
            );
            assert!(
                !auth.contains(&expected_basic),
                "the registry saw the Basic credentials"
            );
        }
    }
    assert!(
        registry_requests.iter().any(|r| r
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))),
        "farm used a Bearer token with the registry: {registry_requests:#?}"
    );
}

#[test]
fn docker_credential_helper_supplies_credentials() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::htpasswd();
    let image = small_image();
    Pusher::with_credentials(&registry.host(), USER, PASSWORD).push_image(
        "e2e/helper",
        Some("1"),
        &image,
    );

    let mut farm = Farm::new();
    let bin = farm.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = farm.dir.path().join("helper-calls");
    write_script(
        &bin.join("docker-credential-farmtest"),
        &format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {calls}\nif [ \"$1\" = get ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\nfi\n",
            calls = calls.display()
        ),
    );
    std::fs::write(
        farm.docker_config.join("config.json"),
        serde_json::json!({"credHelpers": {registry.host(): "farmtest"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    farm.extra_env.push(("PATH".into(), path));

    let run = farm.run(&["pull", &format!("{}/e2e/helper:1", registry.host())]);
    run.assert_ok();
    assert_no_password(&run);
    let calls = std::fs::read_to_string(&calls).expect("the helper was called");
    assert!(
        calls.contains("get") && calls.contains(&registry.host()),
        "helper calls: {calls}"
    );
    assert_eq!(
        farm.record("e2e/helper:1")["manifest_digest"],
        image.manifest_digest.as_str()
    );
}
