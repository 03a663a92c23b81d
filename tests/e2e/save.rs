//! `farm save`: a docker-archive with uncompressed layers whose sha256s are the configs'
//! diff_ids, read back by farm itself, checked entry by entry here, and read by skopeo as an
//! independent reader.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::images::{self, Compression, Image, Layer, LayerBuilder};
use crate::support::{have_file, registry_prereqs, require, sha256_digest, Farm};

/// Every regular file of the tar at `path`, by name.
fn entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        assert!(
            out.insert(name.clone(), data).is_none(),
            "{name} written twice"
        );
    }
    out
}

/// An image with a layer of each compression farm pulls.
fn three_layer_image(marker: &str) -> Image {
    let layer = |name: &str, compression| {
        Layer::new(
            LayerBuilder::new().dir("data", 0o755, 0, 0).file(
                &format!("data/{name}"),
                0o644,
                0,
                0,
                name.as_bytes(),
            ),
            compression,
            false,
        )
    };
    Image::oci(vec![
        layer("gzip", Compression::Gzip),
        layer("zstd", Compression::Zstd),
        layer(marker, Compression::None),
    ])
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn save_writes_a_docker_archive_that_docker_tools_read() {
    if !(registry_prereqs() && require(have_file("/usr/bin/skopeo"), "skopeo (apt install skopeo)"))
    {
        return;
    }
    let farm = Farm::new();
    let layout = farm.dir.path().join("layout");
    let app = three_layer_image("app");
    let other = three_layer_image("other");
    images::write_oci_layout(&layout, &[("app", &app), ("other", &other)]);
    for tag in ["app", "other"] {
        farm.run(&["pull", &format!("oci:{}:{tag}", layout.display())])
            .assert_ok();
    }
    farm.run(&[
        "tag",
        &format!("oci:{}:app", layout.display()),
        "example.com/team/app:1.0",
    ])
    .assert_ok();

    let file = farm.dir.path().join("app.tar");
    farm.run(&[
        "save",
        "-o",
        file.to_str().unwrap(),
        "example.com/team/app:1.0",
    ])
    .assert_ok();
    let files = entries(&file);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let [entry] = manifest.as_array().unwrap().as_slice() else {
        panic!("one image: {manifest:#}");
    };
    assert_eq!(
        entry["RepoTags"],
        serde_json::json!(["example.com/team/app:1.0"])
    );
    let config_name = entry["Config"].as_str().unwrap();
    let config = &files[config_name];
    assert_eq!(
        sha256_digest(config),
        app.config_digest,
        "the config as pulled"
    );
    let config: Value = serde_json::from_slice(config).unwrap();
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let layers: Vec<&str> = entry["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 3);
    for (path, diff_id) in layers.iter().zip(&diff_ids) {
        assert_eq!(
            sha256_digest(&files[*path]),
            *diff_id,
            "{path}: uncompressed, its sha256 the diff_id"
        );
        // An uncompressed tar: the ustar magic at offset 257.
        assert_eq!(&files[*path][257..262], b"ustar", "{path}");
    }
    let repositories: Value = serde_json::from_slice(&files["repositories"]).unwrap();
    let top = layers[2].strip_suffix("/layer.tar").unwrap();
    assert_eq!(repositories["example.com/team/app"]["1.0"], top);

    // skopeo reads it: the layers are the diff_ids, and it copies into an OCI layout.
    let archive = format!("docker-archive:{}", file.display());
    let inspected: Value = serde_json::from_str(&skopeo(&["inspect", &archive])).unwrap();
    assert_eq!(
        inspected["Layers"],
        serde_json::json!(diff_ids),
        "{inspected:#}"
    );
    let copied = farm.dir.path().join("copied");
    skopeo(&["copy", &archive, &format!("oci:{}:app", copied.display())]);
    let raw_config: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        &format!("oci:{}:app", copied.display()),
    ]))
    .unwrap();
    assert_eq!(
        raw_config["rootfs"]["diff_ids"],
        config["rootfs"]["diff_ids"]
    );

    // farm reads it back: the same image ID.
    let again = Farm::new();
    again.run(&["pull", &archive]).assert_ok();
    let pulled = again.images();
    assert!(
        pulled.iter().all(|i| i["id"] == app.config_digest.as_str()),
        "{pulled:#?}"
    );
    assert!(
        pulled
            .iter()
            .any(|i| i["name"] == "example.com/team/app:1.0"),
        "the RepoTag is read back: {pulled:#?}"
    );

    // Two images sharing two layers: both entries, each shared layer once; by ID no tags.
    let both = farm.dir.path().join("both.tar");
    let other_id = other.config_digest.trim_start_matches("sha256:")[..12].to_owned();
    farm.run(&[
        "save",
        "--output",
        both.to_str().unwrap(),
        "example.com/team/app:1.0",
        &other_id,
    ])
    .assert_ok();
    let files = entries(&both);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2, "{manifest:#}");
    assert_eq!(
        manifest[1]["RepoTags"],
        Value::Null,
        "saved by ID: {manifest:#}"
    );
    let layer_tars = files.keys().filter(|k| k.ends_with("/layer.tar")).count();
    assert_eq!(layer_tars, 4, "2 shared + 1 + 1: {:?}", files.keys());

    let run = farm.run(&["save", "-o", both.to_str().unwrap(), "no-such:image"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(run.stderr.contains("no such image"), "{run:#?}");
}
