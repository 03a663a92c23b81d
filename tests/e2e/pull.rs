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

/// A layer of `count` files of `size` bytes each under `big/`, from a fixed-seed xorshift
/// (incompressible, so its gzip blob is as big as its tar and takes a while to dribble).
fn incompressible_layer(count: usize, size: usize) -> LayerBuilder {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut layer = LayerBuilder::new().dir("big", 0o755, 0, 0);
    for n in 0..count {
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data.truncate(size);
        layer = layer.file(&format!("big/f{n:02}"), 0o644, 0, 0, &data);
    }
    layer
}

/// `snapshots/tmp-*` folders whose `fs/big` holds at least one file: a streaming unpack of
/// the big layer that has written part of it.
fn partial_big_unpacks(farm: &Farm) -> Vec<std::path::PathBuf> {
    farm.snapshots()
        .into_iter()
        .filter(|name| name.starts_with("tmp-"))
        .map(|name| farm.root().join("snapshots").join(name))
        .filter(|dir| {
            std::fs::read_dir(dir.join("fs/big")).is_ok_and(|mut entries| entries.next().is_some())
        })
        .collect()
}

#[test]
fn kill_9_during_streaming_unpack_leaves_nothing_a_later_pull_or_run_uses() {
    use crate::support::containers::RunFarm;
    use crate::support::{hex_of, sha256_digest};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let Some(farm) = RunFarm::new() else {
        return;
    };
    let registry = TestRegistry::anonymous();
    let big = incompressible_layer(32, 128 << 10);
    let image = Image::oci_with_config(
        {
            let mut layers = crate::support::containers::probe_layers();
            layers.push(Layer::new(big.clone(), Compression::Gzip, false));
            layers
        },
        crate::support::containers::probe_config(),
    );
    let top = image.layers.last().unwrap().clone();
    Pusher::new(&registry.host()).push_image("e2e/streamkill", Some("1"), &image);
    // 16 KiB every 25 ms: the 4 MiB layer takes about 6 s to arrive.
    let slow = Proxy::start(
        &registry.host(),
        ProxyOptions {
            throttle: Some((16 * 1024, Duration::from_millis(25))),
            ..Default::default()
        },
    );
    let reference = format!("{}/e2e/streamkill:1", slow.host());
    let mut child = farm
        .command(&["pull", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill only once the big layer's unpack has written files while its blob is still
    // arriving: that is a streaming unpack, not a download followed by an unpack.
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let partial = partial_big_unpacks(&farm);
        if !partial.is_empty() {
            break partial;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the slow pull ended before its unpack could be caught half-way"
        );
        assert!(Instant::now() < deadline, "no streaming unpack seen");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let sent = slow.blob_bytes();
    assert!(
        sent < top.blob.len() as u64,
        "killed before the layer's last byte ({sent} of {} sent)",
        top.blob.len()
    );
    assert!(
        !farm.blob_path(&top.digest).exists(),
        "the layer's blob was not complete, it is not in the store"
    );
    // The killed unpack's folder is still there (nothing ran since). Poison it: were it
    // ever renamed into place or read by a container, the poison would show.
    for dir in &partial {
        assert!(dir.is_dir(), "kill -9 leaves {}", dir.display());
        std::fs::write(dir.join("fs/big/poison"), b"half-written snapshot\n").unwrap();
    }
    let chains: Vec<String> = crate::support::chain_ids(
        &image
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
    );
    let top_chain = hex_of(chains.last().unwrap()).to_owned();
    assert!(
        !farm.snapshots().contains(&top_chain),
        "no snapshot of the half-unpacked layer"
    );
    // The next command that opens the store with no other at work deletes the dead pull's
    // folders (their pid is gone).
    assert!(
        farm.images()
            .iter()
            .all(|r| !r["name"].as_str().unwrap_or("").contains("streamkill")),
        "a killed pull records no image"
    );
    for dir in &partial {
        assert!(!dir.exists(), "the next command repaired {}", dir.display());
    }

    let fast = Proxy::start(&registry.host(), ProxyOptions::default());
    let reference = format!("{}/e2e/streamkill:1", fast.host());
    farm.run(&["pull", &reference]).assert_ok();
    let gets = fast.blob_gets(&top.digest);
    assert!(
        !gets.is_empty() && gets.iter().all(|g| g.header("range").is_some()),
        "the next pull resumes the partial blob with Range: {gets:#?}"
    );
    let record = farm.record(&reference);
    assert_record_matches(&record, &image, None);
    assert_trees_eq(&farm.merged_tree(&record), &expected_shifted(&image));
    farm.assert_blobs_verify();

    // farm run sees the whole layer, byte for byte, and not the poison.
    let script = "cd /big && /bin/busybox sha256sum f* && \
                  if [ -e poison ]; then echo POISONED; else echo clean; fi";
    let run = farm.run_container(&["--rm"], &reference, &["/bin/busybox", "sh", "-c", script]);
    run.assert_ok();
    let mut want = String::new();
    for entry in big.entries.iter() {
        if let crate::support::images::Entry::File { path, data, .. } = entry {
            let name = path.strip_prefix("big/").unwrap();
            want.push_str(&format!("{}  {name}\n", hex_of(&sha256_digest(data))));
        }
    }
    want.push_str("clean\n");
    assert_eq!(run.stdout, want, "the container's /big: {run:#?}");

    // Nothing partial is left, and prune keeps the image.
    farm.run(&["prune"]).assert_ok();
    for name in farm.snapshots() {
        assert!(
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "only committed snapshots are left: {name}"
        );
    }
    assert_eq!(
        farm.record(&reference)["manifest_digest"],
        image.manifest_digest.as_str()
    );
    assert!(
        farm.ingest_entries().is_empty(),
        "ingest leftovers: {:?}",
        farm.ingest_entries()
    );
}
