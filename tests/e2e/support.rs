//! Shared fixtures of the end-to-end tests: the `farm` runner, prerequisites, store
//! inspection; registries, token server, proxies and image building in submodules.

#![allow(dead_code)]

pub mod containers;
pub mod http;
pub mod images;
pub mod proxy;
pub mod registry;
pub mod token_server;
pub mod tree;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest as _, Sha256};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const STORE_ID_BASE: u32 = 1 << 31;

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Check a prerequisite. When it is missing: under `CI=true` panic, otherwise print why the
/// test is skipped and return false.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("missing prerequisite under CI=true: {what}");
    }
    eprintln!("SKIPPED: missing prerequisite: {what}");
    false
}

pub fn have_file(path: &str) -> bool {
    Path::new(path).exists()
}

fn is_root() -> bool {
    rustix_like_geteuid() == 0
}

fn rustix_like_geteuid() -> u32 {
    // Reading /proc keeps the test free of unsafe and of extra crates.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// The prerequisites of every registry test: the registry binary and root (farm writes
/// shifted owners and whiteout device nodes, which needs CAP_CHOWN/CAP_MKNOD).
pub fn registry_prereqs() -> bool {
    require(
        have_file(REGISTRY_BIN),
        "docker-registry (apt install docker-registry)",
    ) && require(
        have_file("/bin/busybox"),
        "/bin/busybox (apt install busybox-static)",
    ) && require(
        is_root(),
        "root (farm writes shifted owners and whiteout devices)",
    )
}

/// A farm root in a temp dir and a way to run the binary against it.
pub struct Farm {
    pub dir: tempfile::TempDir,
    /// Empty DOCKER_CONFIG so the host's docker credentials are never read.
    pub docker_config: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    #[track_caller]
    pub fn assert_ok(&self) -> &Run {
        assert_eq!(self.code, 0, "farm failed: {self:#?}");
        self
    }
    #[track_caller]
    pub fn assert_farm_error(&self) -> &Run {
        assert_eq!(self.code, 125, "expected exit 125 (farm error): {self:#?}");
        assert!(
            !self.stderr.trim().is_empty(),
            "a farm error says why on stderr: {self:#?}"
        );
        self
    }
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Farm {
    pub fn new() -> Farm {
        let dir = tempfile::Builder::new()
            .prefix("farm-e2e-")
            .tempdir()
            .expect("temp dir");
        let docker_config = dir.path().join("docker-config");
        std::fs::create_dir(&docker_config).unwrap();
        Farm {
            dir,
            docker_config,
            extra_env: Vec::new(),
        }
    }

    /// The farm root (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_farm"));
        cmd.arg("--root").arg(self.root()).args(args);
        // Jobs default to --network internet, which installs nft rules in the current
        // network namespace: tests that want it build their own world (tests/e2e/network.rs)
        // and the host's own firewall is never touched.
        cmd.env_remove("FARM_ROOT")
            .env("FARM_NETWORK", "none")
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("HOME", self.dir.path())
            .env("NO_PROXY", "*")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("spawn farm").into()
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn farm");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().expect("wait farm").into()
    }

    /// `farm images --json`, parsed.
    pub fn images(&self) -> Vec<serde_json::Value> {
        let run = self.run(&["images", "--json"]);
        run.assert_ok();
        let value: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("images --json is not JSON ({e}): {:?}", run.stdout));
        value.as_array().expect("images --json is an array").clone()
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root()
            .join("content/blobs/sha256")
            .join(hex_of(digest))
    }

    /// Hex names of the blobs in the content store.
    pub fn blobs(&self) -> BTreeSet<String> {
        list_names(&self.root().join("content/blobs/sha256"))
    }

    /// Hex names (chain IDs) of the snapshot folders.
    pub fn snapshots(&self) -> BTreeSet<String> {
        list_names(&self.root().join("snapshots"))
    }

    pub fn ingest_entries(&self) -> BTreeSet<String> {
        list_names(&self.root().join("content/ingest"))
    }

    /// Every blob's name is the sha256 of its bytes.
    #[track_caller]
    pub fn assert_blobs_verify(&self) {
        for hex in self.blobs() {
            let data = std::fs::read(self.root().join("content/blobs/sha256").join(&hex)).unwrap();
            assert_eq!(
                sha256_digest(&data),
                format!("sha256:{hex}"),
                "blob {hex} does not match its name"
            );
        }
    }
}

/// Names in `dir` (empty when it does not exist).
pub fn list_names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Write an executable script.
pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every path (relative) under `dir`, recursively, without following symlinks.
pub fn walk_names(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    fn go(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.insert(path.strip_prefix(base).unwrap().to_path_buf());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                go(base, &path, out);
            }
        }
    }
    go(dir, dir, &mut out);
    out
}

/// Chain IDs as the OCI image spec defines them.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(prev) => sha256_digest(format!("{prev} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl Farm {
    /// The snapshot folder (`.../fs`) of a chain ID.
    pub fn snapshot_fs(&self, chain_id: &str) -> PathBuf {
        self.root()
            .join("snapshots")
            .join(hex_of(chain_id))
            .join("fs")
    }

    /// The merged view of an image's snapshots, from its `images --json` record.
    pub fn merged_tree(&self, record: &serde_json::Value) -> tree::Tree {
        let mut lowers: Vec<PathBuf> = record["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| self.snapshot_fs(l["chain_id"].as_str().expect("chain_id")))
            .collect();
        lowers.reverse();
        tree::read_merged(&lowers)
    }

    /// The one record whose name contains `name`.
    #[track_caller]
    pub fn record(&self, name: &str) -> serde_json::Value {
        let images = self.images();
        let found: Vec<_> = images
            .iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| n.contains(name)))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one record named like {name:?} in {images:#?}"
        );
        found[0].clone()
    }
}

/// Assert that `record` (from `images --json`) describes `image` as pulled by `name`.
#[track_caller]
pub fn assert_record_matches(
    record: &serde_json::Value,
    image: &images::Image,
    index_digest: Option<&str>,
) {
    assert_eq!(
        record["id"],
        image.config_digest.as_str(),
        "id is the config digest: {record:#}"
    );
    assert_eq!(
        record["config_digest"],
        image.config_digest.as_str(),
        "{record:#}"
    );
    assert_eq!(
        record["manifest_digest"],
        image.manifest_digest.as_str(),
        "{record:#}"
    );
    match index_digest {
        Some(d) => assert_eq!(record["index_digest"], d, "{record:#}"),
        None => assert!(
            record["index_digest"].is_null(),
            "index_digest is null: {record:#}"
        ),
    }
    assert_eq!(record["platform"]["os"], image.os.as_str(), "{record:#}");
    assert_eq!(
        record["platform"]["architecture"],
        image.architecture.as_str(),
        "{record:#}"
    );
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    let chains = chain_ids(&diff_ids);
    let layers = record["layers"].as_array().expect("layers array");
    assert_eq!(layers.len(), image.layers.len(), "{record:#}");
    for (i, (got, want)) in layers.iter().zip(&image.layers).enumerate() {
        assert_eq!(got["digest"], want.digest.as_str(), "layer {i}: {record:#}");
        assert_eq!(got["size"], want.blob.len() as u64, "layer {i}: {record:#}");
        assert_eq!(
            got["media_type"],
            want.media_type.as_str(),
            "layer {i}: {record:#}"
        );
        assert_eq!(
            got["diff_id"],
            want.diff_id.as_str(),
            "layer {i}: {record:#}"
        );
        assert_eq!(got["chain_id"], chains[i].as_str(), "layer {i}: {record:#}");
    }
    let size: u64 = image.layers.iter().map(|l| l.blob.len() as u64).sum();
    assert_eq!(
        record["size"], size,
        "size is the sum of compressed layers: {record:#}"
    );
    assert!(
        record["pulled_at"].as_str().is_some_and(|s| !s.is_empty()),
        "{record:#}"
    );
}

/// The expected merged tree of `image`, with owners shifted as the store keeps them.
pub fn expected_shifted(image: &images::Image) -> tree::Tree {
    image
        .expected_tree()
        .into_iter()
        .map(|(p, n)| (p, n.shifted()))
        .collect()
}
