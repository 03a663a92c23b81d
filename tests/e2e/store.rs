//! The store: rmi and prune, shared layers, concurrent pulls, killed pulls.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::images::{self, Compression, Image, Layer, LayerBuilder, Pusher};
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::registry::TestRegistry;
use crate::support::tree::assert_trees_eq;
use crate::support::{expected_shifted, hex_of, list_names, registry_prereqs, Farm};

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// No partial work anywhere: the ingest area is empty and every store folder holds only
/// final names.
#[track_caller]
fn assert_store_clean(farm: &Farm) {
    assert!(
        farm.ingest_entries().is_empty(),
        "ingest leftovers: {:?}",
        farm.ingest_entries()
    );
    for name in farm.blobs() {
        assert!(
            is_hex64(&name),
            "stray file in content/blobs/sha256: {name}"
        );
    }
    for name in farm.snapshots() {
        assert!(is_hex64(&name), "stray entry in snapshots: {name}");
    }
    for name in list_names(&farm.root().join("images")) {
        assert!(
            name.ends_with(".json") && !name.starts_with('.'),
            "stray entry in images: {name}"
        );
    }
    farm.assert_blobs_verify();
}

fn image_with_top(text: &str) -> Image {
    let top = LayerBuilder::new().file("top.txt", 0o644, 0, 0, text.as_bytes());
    Image::oci(vec![
        images::busybox_layer(),
        Layer::new(top, Compression::Gzip, false),
    ])
}

#[test]
fn rmi_and_prune_leave_no_blobs_or_snapshots() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(images::standard_layers(false));
    let mut pusher = Pusher::new(&registry.host());
    pusher.push_image("e2e/rmi", Some("1"), &image);
    pusher.push_image("e2e/rmi", Some("2"), &image);
    let farm = Farm::new();
    farm.run(&["pull", &format!("{}/e2e/rmi:1", registry.host())])
        .assert_ok();
    assert!(!farm.blobs().is_empty() && !farm.snapshots().is_empty());

    farm.run(&["rmi", &format!("{}/e2e/rmi:1", registry.host())])
        .assert_ok();
    assert!(farm.images().is_empty());
    farm.run(&["prune"]).assert_ok();
    assert!(
        farm.blobs().is_empty(),
        "blobs left after prune: {:?}",
        farm.blobs()
    );
    assert!(
        farm.snapshots().is_empty(),
        "snapshots left after prune: {:?}",
        farm.snapshots()
    );
    assert_store_clean(&farm);

    // By short id this time.
    farm.run(&["pull", &format!("{}/e2e/rmi:2", registry.host())])
        .assert_ok();
    farm.run(&["rmi", &hex_of(&image.config_digest)[..12]])
        .assert_ok();
    farm.run(&["prune"]).assert_ok();
    assert!(farm.images().is_empty() && farm.blobs().is_empty() && farm.snapshots().is_empty());

    let run = farm.run(&["rmi", "no-such-image:1"]);
    run.assert_farm_error();
}

#[test]
fn shared_base_layer_is_kept_until_both_images_are_removed() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let (a, b) = (image_with_top("a\n"), image_with_top("b\n"));
    let mut pusher = Pusher::new(&registry.host());
    pusher.push_image("e2e/a", Some("1"), &a);
    pusher.push_image("e2e/b", Some("1"), &b);
    let farm = Farm::new();
    farm.run(&["pull", &format!("{}/e2e/a:1", registry.host())])
        .assert_ok();
    farm.run(&["pull", &format!("{}/e2e/b:1", registry.host())])
        .assert_ok();
    let base = &a.layers[0];
    let base_chain = hex_of(&base.diff_id).to_string();

    farm.run(&["rmi", &format!("{}/e2e/a:1", registry.host())])
        .assert_ok();
    farm.run(&["prune"]).assert_ok();
    assert!(
        farm.blob_path(&base.digest).is_file(),
        "the shared base blob is kept"
    );
    assert!(
        farm.snapshots().contains(&base_chain),
        "the shared base snapshot is kept"
    );
    assert!(
        !farm.blob_path(&a.layers[1].digest).exists(),
        "a's own layer blob is gone"
    );
    assert!(
        !farm.blob_path(&a.config_digest).exists(),
        "a's config is gone"
    );
    assert_eq!(
        farm.snapshots().len(),
        2,
        "base + b's top: {:?}",
        farm.snapshots()
    );
    let record = farm.record("e2e/b:1");
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&b));

    farm.run(&["rmi", &format!("{}/e2e/b:1", registry.host())])
        .assert_ok();
    farm.run(&["prune"]).assert_ok();
    assert!(farm.blobs().is_empty() && farm.snapshots().is_empty());
    assert_store_clean(&farm);
}

#[test]
fn concurrent_pulls_of_the_same_image_both_succeed() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(images::standard_layers(false));
    Pusher::new(&registry.host()).push_image("e2e/concurrent", Some("1"), &image);
    let farm = Farm::new();
    let reference = format!("{}/e2e/concurrent:1", registry.host());
    let spawn = || {
        farm.command(&["pull", &reference])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn farm")
    };
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let run: crate::support::Run = child.wait_with_output().unwrap().into();
        run.assert_ok();
    }
    let record = farm.record("e2e/concurrent:1");
    assert_eq!(farm.images().len(), 1);
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&image));
    assert_store_clean(&farm);
}

#[test]
fn killed_pull_is_repaired_by_the_next_pull_and_prune() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(images::standard_layers(false));
    Pusher::new(&registry.host()).push_image("e2e/killed", Some("1"), &image);
    let proxy = Proxy::start(
        &registry.host(),
        ProxyOptions {
            throttle: Some((16 * 1024, Duration::from_millis(25))),
            ..Default::default()
        },
    );
    let farm = Farm::new();
    let reference = format!("{}/e2e/killed:1", proxy.host());
    let mut child = farm
        .command(&["pull", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.blob_bytes() < 128 * 1024 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the slow pull ended before it could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "the pull never started downloading"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(farm.images().is_empty(), "a killed pull records no image");

    farm.run(&["pull", &reference]).assert_ok();
    let record = farm.record("e2e/killed:1");
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&image));
    farm.run(&["prune"]).assert_ok();
    assert_store_clean(&farm);
    assert_eq!(farm.images().len(), 1, "prune keeps the pulled image");
    for layer in &image.layers {
        assert!(farm.blob_path(&layer.digest).is_file());
    }
}
