//! Offline sources: OCI layouts and docker archives written by skopeo.

use std::process::Command;

use crate::support::images::{self, Image, Pusher};
use crate::support::registry::TestRegistry;
use crate::support::tree::assert_trees_eq;
use crate::support::{expected_shifted, have_file, registry_prereqs, require, Farm};

fn skopeo_copy(from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            from,
            to,
        ])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pull_from_oci_layout_and_docker_archive() {
    if !(registry_prereqs() && require(have_file("/usr/bin/skopeo"), "skopeo (apt install skopeo)"))
    {
        return;
    }
    let registry = TestRegistry::anonymous();
    let image = Image::oci(images::standard_layers(false));
    Pusher::new(&registry.host()).push_image("e2e/offline", Some("1"), &image);
    let work = tempfile::Builder::new()
        .prefix("farm-e2e-offline-")
        .tempdir()
        .unwrap();
    let layout = work.path().join("layout");
    let archive = work.path().join("image.tar");
    let source = format!("docker://{}/e2e/offline:1", registry.host());
    skopeo_copy(&source, &format!("oci:{}:v1", layout.display()));
    skopeo_copy(
        &source,
        &format!("docker-archive:{}:e2e/offline:1", archive.display()),
    );
    drop(registry); // offline from here on

    let farm = Farm::new();
    farm.run(&["pull", &format!("oci:{}:v1", layout.display())])
        .assert_ok();
    farm.run(&["pull", &format!("docker-archive:{}", archive.display())])
        .assert_ok();

    let records = farm.images();
    let mut names: Vec<&str> = records
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("docker-archive:{}", archive.display()).as_str(),
            "docker.io/e2e/offline:1",
            format!("oci:{}:v1", layout.display()).as_str(),
        ],
        "one record per source, plus the archive's RepoTags as docker load tags them"
    );
    for record in &records {
        assert_eq!(
            record["config_digest"],
            image.config_digest.as_str(),
            "the config survives the copy: {record:#}"
        );
        let diff_ids: Vec<&str> = record["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["diff_id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
        assert_eq!(diff_ids, want, "{record:#}");
        assert_trees_eq(&farm.merged_tree(record), &expected_shifted(&image));
    }
    let oci = records
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with("oci:")))
        .expect("an oci: record");
    // skopeo may re-serialize the manifest; the record must name the one the layout tags v1.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tagged = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "v1")
        .expect("the layout tags v1");
    assert_eq!(oci["manifest_digest"], tagged["digest"], "{oci:#}");
    farm.assert_blobs_verify();
}
