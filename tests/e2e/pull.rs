//! Anonymous pulls: records, unpacked trees, no-op re-pulls, multi-arch, zstd, -q.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::support::images::{
    self, host_arch, other_arch, Compression, Image, Layer, LayerBuilder, Pusher,
};
use crate::support::proxy::{Proxy, ProxyOptions};
use crate::support::registry::TestRegistry;
use crate::support::tree::assert_trees_eq;
use crate::support::{assert_record_matches, expected_shifted, registry_prereqs, Farm};

#[test]
fn anonymous_pull_of_multi_layer_busybox_image() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(images::standard_layers(false));
    Pusher::new(&registry.host()).push_image("e2e/busybox", Some("1.0"), &image);
    let proxy = Proxy::start(&registry.host(), ProxyOptions::default());
    let farm = Farm::new();
    let reference = format!("{}/e2e/busybox:1.0", proxy.host());

    farm.run(&["pull", &reference]).assert_ok();

    let record = farm.record("e2e/busybox:1.0");
    assert_record_matches(&record, &image, None);
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&image));
    farm.assert_blobs_verify();
    for layer in &image.layers {
        assert!(
            farm.blob_path(&layer.digest).is_file(),
            "layer blob {} in the store",
            layer.digest
        );
    }
    assert!(
        farm.blob_path(&image.config_digest).is_file(),
        "config blob in the store"
    );

    // Per-layer snapshot format: the hardlink is a hardlink; the whiteout a 0:0 char device.
    let layers = record["layers"].as_array().unwrap();
    let second = farm.snapshot_fs(layers[1]["chain_id"].as_str().unwrap());
    let passwd = std::fs::metadata(second.join("etc/passwd")).unwrap();
    let link = std::fs::metadata(second.join("etc/passwd.link")).unwrap();
    assert_eq!(
        passwd.ino(),
        link.ino(),
        "etc/passwd.link is a hardlink of etc/passwd"
    );
    let third = farm.snapshot_fs(layers[2]["chain_id"].as_str().unwrap());
    let whiteout = std::fs::symlink_metadata(third.join("tmp/gone.txt")).unwrap();
    assert!(
        whiteout.file_type().is_char_device(),
        "whiteout is a char device"
    );
    assert_eq!(whiteout.rdev(), 0, "whiteout is device 0:0");
    assert!(
        !third.join("tmp/.wh.gone.txt").exists(),
        "no .wh. file left in the snapshot"
    );
    assert!(
        !third.join("opt/old/.wh..wh..opq").exists(),
        "no opaque marker file left in the snapshot"
    );

    // Pulling again re-downloads nothing.
    proxy.clear();
    farm.run(&["pull", &reference]).assert_ok();
    assert!(
        proxy.all_blob_gets().is_empty(),
        "second pull fetched blobs: {:#?}",
        proxy.all_blob_gets()
    );
    assert_eq!(farm.images().len(), 1, "still one image");
}

#[test]
fn docker_schema2_pull_by_digest_and_quiet_output() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::docker(images::standard_layers(true));
    Pusher::new(&registry.host()).push_image("e2e/docker", Some("latest"), &image);
    let farm = Farm::new();

    let run = farm.run(&[
        "pull",
        "-q",
        &format!("{}/e2e/docker:latest", registry.host()),
    ]);
    run.assert_ok();
    assert_eq!(
        run.stdout.trim(),
        format!("{}/e2e/docker:latest", registry.host()),
        "-q prints only the image name, as docker pull -q does"
    );

    let by_digest = format!("{}/e2e/docker@{}", registry.host(), image.manifest_digest);
    farm.run(&["pull", &by_digest]).assert_ok();
    let images = farm.images();
    assert!(!images.is_empty());
    for record in &images {
        assert_record_matches(record, &image, None);
    }
    assert_trees_eq(&farm.merged_tree(&images[0]), &expected_shifted(&image));
}

fn arch_image(arch: &str) -> Image {
    let layer = LayerBuilder::new().file("arch.txt", 0o644, 0, 0, arch.as_bytes());
    Image::build(
        vec![
            images::busybox_layer(),
            Layer::new(layer, Compression::Gzip, false),
        ],
        "linux",
        arch,
        false,
    )
}

#[test]
fn multi_arch_index_selects_host_platform_or_the_requested_one() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let host = arch_image(host_arch());
    let other = arch_image(other_arch());
    let index_digest =
        Pusher::new(&registry.host()).push_index("e2e/multi", "1", &[&host, &other], false);
    let reference = format!("{}/e2e/multi:1", registry.host());

    let farm = Farm::new();
    farm.run(&["pull", &reference]).assert_ok();
    let record = farm.record("e2e/multi:1");
    assert_record_matches(&record, &host, Some(&index_digest));
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&host));

    let farm = Farm::new();
    farm.run(&[
        "pull",
        "--platform",
        &format!("linux/{}", other_arch()),
        &reference,
    ])
    .assert_ok();
    let record = farm.record("e2e/multi:1");
    assert_record_matches(&record, &other, Some(&index_digest));
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&other));

    let farm = Farm::new();
    let run = farm.run(&["pull", "--platform", "linux/s390x", &reference]);
    run.assert_farm_error();
    for arch in [host_arch(), other_arch()] {
        assert!(
            run.stderr.contains(&format!("linux/{arch}")),
            "the error lists the available platforms: {run:#?}"
        );
    }
    assert!(farm.images().is_empty());
}

#[test]
fn docker_manifest_list_selects_requested_platform() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let build = |arch: &str| {
        let layer = LayerBuilder::new().file("arch.txt", 0o644, 0, 0, arch.as_bytes());
        Image::build(
            vec![Layer::new(layer, Compression::Gzip, true)],
            "linux",
            arch,
            true,
        )
    };
    let (host, other) = (build(host_arch()), build(other_arch()));
    let index_digest =
        Pusher::new(&registry.host()).push_index("e2e/list", "1", &[&host, &other], true);
    let farm = Farm::new();
    let reference = format!("{}/e2e/list:1", registry.host());
    farm.run(&[
        "pull",
        "--platform",
        &format!("linux/{}", other_arch()),
        &reference,
    ])
    .assert_ok();
    assert_record_matches(&farm.record("e2e/list:1"), &other, Some(&index_digest));
}

#[test]
fn zstd_layer_image_pulls_and_unpacks() {
    if !registry_prereqs() {
        return;
    }
    let registry = TestRegistry::anonymous();
    let top = LayerBuilder::new()
        .dir("etc", 0o755, 0, 0)
        .file("etc/zstd.txt", 0o640, 7, 8, b"compressed with zstd\n")
        .symlink("etc/z", "zstd.txt");
    let base = Layer::new(images::busybox_builder(), Compression::Zstd, false);
    let image = Image::oci(vec![base, Layer::new(top, Compression::Zstd, false)]);
    Pusher::new(&registry.host()).push_image("e2e/zstd", Some("1"), &image);
    let farm = Farm::new();
    farm.run(&["pull", &format!("{}/e2e/zstd:1", registry.host())])
        .assert_ok();
    let record = farm.record("e2e/zstd:1");
    assert_record_matches(&record, &image, None);
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&image));
}
