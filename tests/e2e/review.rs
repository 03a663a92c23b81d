//! Regressions found in the review of the registry client, auth and pull pipeline.

use crate::support::images::{self, host_arch, other_arch, Image, Pusher};
use crate::support::registry::TestRegistry;
use crate::support::{registry_prereqs, Farm};

/// A single-platform image (no index) for another architecture was pulled silently, even
/// with an explicit `--platform` for the host. Now: an error naming both platforms when
/// `--platform` was given, a warning otherwise (docker's behaviour).
#[test]
fn single_platform_image_of_another_arch_is_checked_against_platform() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::build(images::standard_layers(false), "linux", other_arch(), false);
    Pusher::new(&registry.host()).push_image("e2e/foreign", Some("1"), &image);
    let reference = format!("{}/e2e/foreign:1", registry.host());

    let farm = Farm::new();
    let wanted = format!("linux/{}", host_arch());
    let run = farm.run(&["pull", "--platform", &wanted, &reference]);
    run.assert_farm_error();
    assert!(
        run.stderr
            .contains(&format!("is for platform linux/{}", other_arch()))
            && run.stderr.contains(&format!("not the requested {wanted}")),
        "{run:#?}"
    );
    assert!(farm.images().is_empty(), "nothing recorded: {run:#?}");

    let run = farm.run(&["pull", &reference]);
    run.assert_ok();
    assert!(
        run.stderr.contains("warning:")
            && run
                .stderr
                .contains(&format!("is for platform linux/{}", other_arch())),
        "{run:#?}"
    );
    assert_eq!(farm.images().len(), 1);

    // The platform it declares is accepted when asked for.
    let farm = Farm::new();
    farm.run(&[
        "pull",
        "--platform",
        &format!("linux/{}", other_arch()),
        &reference,
    ])
    .assert_ok();
}

/// The token flow through `farm login` (not only per-pull credentials): login checks the
/// password with the token server, a pull uses the stored credentials, and neither the
/// password nor any Bearer token the registry was handed shows in farm's output or in the
/// credential store (which holds only `auths`, 0600). Logout forgets them.
#[test]
fn token_login_pull_logout_leaks_neither_password_nor_token() {
    use std::os::unix::fs::PermissionsExt;

    use crate::support::proxy::{Proxy, ProxyOptions};
    use crate::support::registry::{PASSWORD, USER};
    use crate::support::token_server::TokenServer;
    use crate::support::{have_file, require};

    if !(registry_prereqs() && require(have_file("/usr/bin/openssl"), "openssl")) {
        return;
    }
    let tokens = TokenServer::start(&[]);
    let registry = TestRegistry::start(tokens.registry_auth(), None);
    let image = Image::oci(vec![images::busybox_layer()]);
    Pusher::with_credentials(&registry.host(), USER, PASSWORD).push_image(
        "e2e/private",
        Some("1"),
        &image,
    );
    let proxy = Proxy::start(&registry.host(), ProxyOptions::default());
    let farm = Farm::new();
    let reference = format!("{}/e2e/private:1", proxy.host());

    let wrong = farm.run_stdin(
        &["login", "-u", USER, "--password-stdin", &proxy.host()],
        "not-the-password-123",
    );
    wrong.assert_farm_error();
    assert!(!wrong.all_output().contains("not-the-password-123"));

    let login = farm.run_stdin(
        &["login", "-u", USER, "--password-stdin", &proxy.host()],
        PASSWORD,
    );
    login.assert_ok();
    let pull = farm.run(&["pull", &reference]);
    pull.assert_ok();

    let auth_json = farm.root().join("auth.json");
    let stored = std::fs::read_to_string(&auth_json).expect("auth.json after login");
    assert_eq!(
        std::fs::metadata(&auth_json).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bearer_tokens: Vec<String> = proxy
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization"))
        .filter_map(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .collect();
    assert!(!bearer_tokens.is_empty(), "the pull used a token");
    for run in [&login, &pull] {
        let output = run.all_output();
        assert!(!output.contains(PASSWORD), "password in output: {run:#?}");
        for token in &bearer_tokens {
            assert!(
                !output.contains(token.as_str()),
                "token in output: {run:#?}"
            );
        }
    }
    for token in &bearer_tokens {
        assert!(
            !stored.contains(token.as_str()),
            "a token was stored: {stored}"
        );
    }
    // Nothing else under farm's root holds the password or a token.
    for entry in crate::support::walk_names(&farm.root()) {
        let path = farm.root().join(&entry);
        let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if path == auth_json || !is_file {
            continue;
        }
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&data);
        assert!(!text.contains(PASSWORD), "password in {}", path.display());
        for token in &bearer_tokens {
            assert!(
                !text.contains(token.as_str()),
                "token in {}",
                path.display()
            );
        }
    }

    farm.run(&["logout", &proxy.host()]).assert_ok();
    let stored = std::fs::read_to_string(&auth_json).unwrap_or_default();
    assert!(!stored.contains(&proxy.host()), "logout forgets: {stored}");
}
