//! Faults and hostile input: tampered blobs, cut connections, redirects, escaping layers.

use crate::support::images::{self, Compression, Entry, Image, Layer, LayerBuilder, Pusher};
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::registry::{TestRegistry, PASSWORD, USER};
use crate::support::tree::assert_trees_eq;
use crate::support::{expected_shifted, hex_of, registry_prereqs, walk_names, Farm};

#[test]
fn tampered_blob_on_registry_disk_fails_and_stores_nothing() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(images::standard_layers(false));
    Pusher::new(&registry.host()).push_image("e2e/tampered", Some("1"), &image);
    // Flip bytes in the base layer (same length, so only the digest can tell).
    let bad = &image.layers[0].digest;
    let data_path = registry.blob_data_path(bad);
    let mut data = std::fs::read(&data_path).unwrap();
    let middle = data.len() / 2;
    for byte in &mut data[middle..middle + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(&data_path, &data).unwrap();

    let farm = Farm::new();
    let run = farm.run(&["pull", &format!("{}/e2e/tampered:1", registry.host())]);
    run.assert_farm_error();
    assert!(
        run.stderr.contains(hex_of(bad)) || run.stderr.contains(&bad[..19]),
        "the error names the bad blob: {run:#?}"
    );
    assert!(
        !farm.blob_path(bad).exists(),
        "the tampered blob is not in the store"
    );
    assert!(!farm.blobs().contains(hex_of(bad)));
    farm.assert_blobs_verify();
    assert!(farm.images().is_empty(), "no image record");
    assert!(
        farm.snapshots().is_empty(),
        "no snapshot: {:?}",
        farm.snapshots()
    );
}

#[test]
fn connection_cut_mid_blob_resumes_with_range() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(vec![images::busybox_layer()]);
    Pusher::new(&registry.host()).push_image("e2e/cut", Some("1"), &image);
    let layer = &image.layers[0];
    let cut_at = (layer.blob.len() / 2) as u64;
    let proxy = Proxy::start(
        &registry.host(),
        ProxyOptions {
            cut_blob: Some((layer.digest.clone(), cut_at)),
            ..Default::default()
        },
    );
    let farm = Farm::new();

    farm.run(&["pull", &format!("{}/e2e/cut:1", proxy.host())])
        .assert_ok();

    let gets = proxy.blob_gets(&layer.digest);
    assert!(
        gets.len() >= 2,
        "the layer was fetched again after the cut: {gets:#?}"
    );
    let retry = &gets[1];
    assert_eq!(
        retry.header("range"),
        Some(format!("bytes={cut_at}-").as_str()),
        "the retry resumes where the cut was: {gets:#?}"
    );
    for later in &gets[1..] {
        assert!(
            later.header("range").is_some(),
            "no re-download from byte 0 after the cut: {gets:#?}"
        );
    }
    assert!(farm.blob_path(&layer.digest).is_file());
    farm.assert_blobs_verify();
    let record = farm.record("e2e/cut:1");
    assert_eq!(record["manifest_digest"], image.manifest_digest.as_str());
    // The unpack that followed the cut download gives the same tree as an uncut pull.
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&image));
}

#[test]
fn blob_redirect_to_other_host_gets_no_authorization() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::htpasswd();
    let image = Image::oci(vec![images::busybox_layer()]);
    Pusher::with_credentials(&registry.host(), USER, PASSWORD).push_image(
        "e2e/redirect",
        Some("1"),
        &image,
    );
    let proxy = Proxy::start(
        &registry.host(),
        ProxyOptions {
            redirect_blobs: Some(registry.storage()),
            ..Default::default()
        },
    );
    let farm = Farm::new();

    let run = farm.run_stdin(
        &[
            "pull",
            "--username",
            USER,
            "--password-stdin",
            &format!("{}/e2e/redirect:1", proxy.host()),
        ],
        PASSWORD,
    );
    run.assert_ok();
    let blob_server = proxy.blob_server.as_ref().unwrap();
    let served = blob_server.requests();
    assert!(!served.is_empty(), "blobs came from the redirect target");
    for request in &served {
        assert!(
            request.header("authorization").is_none(),
            "credentials leaked to {}: {request:#?}",
            blob_server.host()
        );
    }
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.header("authorization").is_some()),
        "the registry itself got credentials"
    );
    farm.assert_blobs_verify();
    assert_eq!(
        farm.record("e2e/redirect:1")["manifest_digest"],
        image.manifest_digest.as_str()
    );
}

/// Push busybox + `hostile` as `name:1` and pull it.
fn hostile_pull(name: &str, hostile: LayerBuilder) -> (Farm, crate::support::Run) {
    let registry = TestRegistry::anonymous();
    let image = Image::oci(vec![
        images::busybox_layer(),
        Layer::new(hostile, Compression::Gzip, false),
    ]);
    Pusher::new(&registry.host()).push_image(name, Some("1"), &image);
    let farm = Farm::new();
    let run = farm.run(&["pull", &format!("{}/{name}:1", registry.host())]);
    (farm, run)
}

#[test]
fn layer_with_dotdot_entry_is_refused() {
    if !registry_prereqs() {
        return;
    }
    let hostile = LayerBuilder::new()
        .file("ok.txt", 0o644, 0, 0, b"ok")
        .raw(Entry::RawFile {
            name: b"../../../../../../../../tmp/farm-e2e-dotdot-escape".to_vec(),
            data: b"pwned".to_vec(),
        });
    let marker = std::path::Path::new("/tmp/farm-e2e-dotdot-escape");
    let _ = std::fs::remove_file(marker);
    let (farm, run) = hostile_pull("e2e/dotdot", hostile);
    run.assert_farm_error();
    assert!(
        !marker.exists(),
        "a ../ entry escaped to {}",
        marker.display()
    );
    let outside_root: Vec<_> = walk_names(farm.dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("escape"))
        .collect();
    assert!(
        outside_root.is_empty(),
        "escape files in the test dir: {outside_root:?}"
    );
    assert!(
        farm.images().is_empty(),
        "no image record for a hostile image"
    );
}

#[test]
fn layer_with_symlink_escape_writes_nothing_outside() {
    if !registry_prereqs() {
        return;
    }
    let target = tempfile::Builder::new()
        .prefix("farm-e2e-symlink-target-")
        .tempdir()
        .unwrap();
    let hostile = LayerBuilder::new()
        .raw(Entry::RawSymlink {
            name: b"evil".to_vec(),
            target: target.path().to_string_lossy().as_bytes().to_vec(),
        })
        .raw(Entry::RawFile {
            name: b"evil/pwned".to_vec(),
            data: b"pwned".to_vec(),
        })
        .raw(Entry::RawSymlink {
            name: b"up".to_vec(),
            target: b"../../../../../../../../../../tmp".to_vec(),
        })
        .raw(Entry::RawFile {
            name: b"up/farm-e2e-symlink-escape".to_vec(),
            data: b"pwned".to_vec(),
        });
    let marker = std::path::Path::new("/tmp/farm-e2e-symlink-escape");
    let _ = std::fs::remove_file(marker);
    let (farm, run) = hostile_pull("e2e/symlink", hostile);
    // Refusing the layer (125) or resolving the links inside the snapshot are both safe;
    // writing through them is not.
    assert!(run.code == 0 || run.code == 125, "{run:#?}");
    assert!(
        !target.path().join("pwned").exists(),
        "a symlink escape wrote into {}",
        target.path().display()
    );
    assert!(
        !marker.exists(),
        "a relative symlink escape wrote {}",
        marker.display()
    );
    if run.code == 125 {
        assert!(farm.images().is_empty());
    }
}
