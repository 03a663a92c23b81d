//! Checks of the fixtures themselves, independent of farm: the registry accepts what the
//! pusher sends, the token server's JWTs, the proxies' faults, and the expected trees
//! agree with an independent unpacker (umoci).

use std::process::Command;

use crate::support::http;
use crate::support::images::{self, Image, Pusher};
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::registry::{TestRegistry, PASSWORD, USER};
use crate::support::token_server::{basic, TokenServer};
use crate::support::tree::{assert_trees_eq, read_tree};
use crate::support::{have_file, registry_prereqs, require, sha256_digest};

#[test]
fn fixture_token_server_tokens_are_verified_by_the_registry() {
    if !(registry_prereqs() && require(have_file("/usr/bin/openssl"), "openssl")) {
        return;
    }
    let tokens = TokenServer::start(&[]);
    let registry = TestRegistry::start(tokens.registry_auth(), None);
    let image = Image::oci(vec![images::busybox_layer()]);
    Pusher::with_credentials(&registry.host(), USER, PASSWORD).push_image(
        "fixture/tok",
        Some("1"),
        &image,
    );

    let target = "/v2/fixture/tok/manifests/1";
    let accept = [("Accept", images::OCI_MANIFEST.to_string())];
    let denied = http::request("GET", &registry.host(), target, &accept, &[]).unwrap();
    assert_eq!(denied.status, 401);
    let challenge = images::parse_challenge(denied.header("www-authenticate").unwrap());
    assert_eq!(challenge.get("realm"), Some(&tokens.realm()));

    let token_url = format!(
        "{}?service={}&scope=repository%3Afixture%2Ftok%3Apull",
        tokens.realm(),
        challenge["service"]
    );
    let token_for = |auth: Option<String>| {
        let headers: Vec<(&str, String)> = auth.into_iter().map(|a| ("Authorization", a)).collect();
        let resp = http::request("GET", "", &token_url, &headers, &[]).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        body["token"].as_str().unwrap().to_string()
    };
    let mut headers = accept.to_vec();
    headers.push((
        "Authorization",
        format!("Bearer {}", token_for(Some(basic(USER, PASSWORD)))),
    ));
    let granted = http::request("GET", &registry.host(), target, &headers, &[]).unwrap();
    assert_eq!(
        granted.status,
        200,
        "the registry accepts the token: {}\n{}",
        granted.text(),
        registry.log()
    );
    assert_eq!(sha256_digest(&granted.body), image.manifest_digest);

    // An anonymous token carries no access to a private repo.
    let mut headers = accept.to_vec();
    headers.push(("Authorization", format!("Bearer {}", token_for(None))));
    let anonymous = http::request("GET", &registry.host(), target, &headers, &[]).unwrap();
    assert_eq!(anonymous.status, 401);
}

#[test]
fn fixture_proxy_cuts_then_serves_ranges_and_redirects() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(vec![images::busybox_layer()]);
    Pusher::new(&registry.host()).push_image("fixture/cut", Some("1"), &image);
    let layer = &image.layers[0];
    let path = format!("/v2/fixture/cut/blobs/{}", layer.digest);

    let proxy = Proxy::start(
        &registry.host(),
        ProxyOptions {
            cut_blob: Some((layer.digest.clone(), 1000)),
            ..Default::default()
        },
    );
    let cut = http::request("GET", &proxy.host(), &path, &[], &[]);
    assert!(cut.is_err(), "the first GET is cut short");
    let rest = http::request(
        "GET",
        &proxy.host(),
        &path,
        &[("Range", "bytes=1000-".into())],
        &[],
    )
    .unwrap();
    assert_eq!(rest.status, 206);
    assert_eq!(rest.body, layer.blob[1000..]);
    assert_eq!(proxy.blob_gets(&layer.digest).len(), 2);

    let proxy = Proxy::start(
        &registry.host(),
        ProxyOptions {
            redirect_blobs: Some(registry.storage()),
            ..Default::default()
        },
    );
    let redirect = http::request("GET", &proxy.host(), &path, &[], &[]).unwrap();
    assert_eq!(redirect.status, 307);
    let location = redirect.header("location").unwrap();
    assert!(location.starts_with("http://127.0.0.2:"), "{location}");
    let blob = http::request("GET", "", location, &[], &[]).unwrap();
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body, layer.blob);
}

#[test]
fn fixture_expected_tree_agrees_with_umoci() {
    if !(registry_prereqs()
        && require(have_file("/usr/bin/skopeo"), "skopeo (apt install skopeo)")
        && require(have_file("/usr/bin/umoci"), "umoci (apt install umoci)"))
    {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(images::standard_layers(false));
    Pusher::new(&registry.host()).push_image("fixture/tree", Some("1"), &image);
    let work = tempfile::Builder::new()
        .prefix("farm-e2e-umoci-")
        .tempdir()
        .unwrap();
    let layout = work.path().join("layout");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/fixture/tree:1", registry.host()))
        .arg(format!("oci:{}:1", layout.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = work.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_trees_eq(&read_tree(&bundle.join("rootfs")), &image.expected_tree());
}
