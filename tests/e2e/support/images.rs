//! Images built at test time: layer tars (from `/bin/busybox` and hand-made entries,
//! hostile ones included), configs, OCI/Docker manifests and indexes, the merged tree each
//! image should unpack to, and a pusher speaking the distribution API.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;

use super::http;
use super::sha256_digest;
use super::token_server::{basic, percent_decode};
use super::tree::{Node, Tree};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One entry of a layer tar, in archive order.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        path: String,
        mode: u32,
        uid: u32,
        gid: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
    /// `dir/.wh.name`: deletes `path` from the layers below.
    Whiteout {
        path: String,
    },
    /// `dir/.wh..wh..opq`: hides everything below `dir` in the layers below.
    Opaque {
        dir: String,
    },
    /// A regular file whose raw tar name is written as given, unchecked (hostile layers).
    RawFile {
        name: Vec<u8>,
        data: Vec<u8>,
    },
    /// A symlink with a raw name and target, unchecked (hostile layers).
    RawSymlink {
        name: Vec<u8>,
        target: Vec<u8>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    pub entries: Vec<Entry>,
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }
    pub fn dir(mut self, path: &str, mode: u32, uid: u32, gid: u32) -> Self {
        self.entries.push(Entry::Dir {
            path: path.into(),
            mode,
            uid,
            gid,
        });
        self
    }
    pub fn file(mut self, path: &str, mode: u32, uid: u32, gid: u32, data: &[u8]) -> Self {
        self.entries.push(Entry::File {
            path: path.into(),
            mode,
            uid,
            gid,
            data: data.to_vec(),
        });
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            path: path.into(),
            target: target.into(),
        });
        self
    }
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Hardlink {
            path: path.into(),
            target: target.into(),
        });
        self
    }
    pub fn whiteout(mut self, path: &str) -> Self {
        self.entries.push(Entry::Whiteout { path: path.into() });
        self
    }
    pub fn opaque(mut self, dir: &str) -> Self {
        self.entries.push(Entry::Opaque { dir: dir.into() });
        self
    }
    pub fn raw(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(1_700_000_000);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::Dir {
                    path,
                    mode,
                    uid,
                    gid,
                } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header
                        .set_path(format!("{}/", path.trim_end_matches('/')))
                        .unwrap();
                    header.set_mode(*mode);
                    header.set_uid((*uid).into());
                    header.set_gid((*gid).into());
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
                Entry::File {
                    path,
                    mode,
                    uid,
                    gid,
                    data,
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_path(path).unwrap();
                    header.set_mode(*mode);
                    header.set_uid((*uid).into());
                    header.set_gid((*gid).into());
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append(&header, data.as_slice()).unwrap();
                }
                Entry::Symlink { path, target } | Entry::Hardlink { path, target } => {
                    let kind = if matches!(entry, Entry::Symlink { .. }) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    header.set_entry_type(kind);
                    header.set_path(path).unwrap();
                    header.set_link_name(target).unwrap();
                    header.set_mode(0o777);
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
                Entry::Whiteout { path } => {
                    let (dir, name) = split_parent(path);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_path(join(dir, &format!(".wh.{name}"))).unwrap();
                    header.set_mode(0o644);
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
                Entry::Opaque { dir } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_path(join(dir, ".wh..wh..opq")).unwrap();
                    header.set_mode(0o644);
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
                Entry::RawFile { name, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    set_raw_name(&mut header, name);
                    header.set_mode(0o644);
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append(&header, data.as_slice()).unwrap();
                }
                Entry::RawSymlink { name, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    set_raw_name(&mut header, name);
                    let link = &mut header.as_old_mut().linkname;
                    assert!(target.len() < link.len());
                    link.fill(0);
                    link[..target.len()].copy_from_slice(target);
                    header.set_mode(0o777);
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    /// Apply this layer to the expected merged tree (image ids, unshifted).
    pub fn apply(&self, tree: &mut Tree) {
        // Whiteouts and opaque markers hide what the layers BELOW hold: apply them first.
        for entry in &self.entries {
            match entry {
                Entry::Whiteout { path } => {
                    let path = PathBuf::from(path);
                    tree.retain(|p, _| !p.starts_with(&path));
                }
                Entry::Opaque { dir } => {
                    let dir = PathBuf::from(dir);
                    tree.retain(|p, _| p == &dir || !p.starts_with(&dir));
                }
                _ => {}
            }
        }
        for entry in &self.entries {
            match entry {
                Entry::Dir {
                    path,
                    mode,
                    uid,
                    gid,
                } => {
                    let path = PathBuf::from(path.trim_end_matches('/'));
                    if !matches!(tree.get(&path), Some(Node::Dir { .. })) {
                        tree.retain(|p, _| !p.starts_with(&path));
                    }
                    tree.insert(
                        path,
                        Node::Dir {
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        },
                    );
                }
                Entry::File {
                    path,
                    mode,
                    uid,
                    gid,
                    data,
                } => {
                    let path = PathBuf::from(path);
                    tree.retain(|p, _| !p.starts_with(&path));
                    tree.insert(
                        path,
                        Node::File {
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                            content: sha256_digest(data),
                        },
                    );
                }
                Entry::Symlink { path, target } => {
                    let path = PathBuf::from(path);
                    tree.retain(|p, _| !p.starts_with(&path));
                    tree.insert(
                        path,
                        Node::Symlink {
                            target: target.clone(),
                            uid: 0,
                            gid: 0,
                        },
                    );
                }
                Entry::Hardlink { path, target } => {
                    let node = tree
                        .get(Path::new(target))
                        .cloned()
                        .expect("hardlink target in the model");
                    tree.insert(PathBuf::from(path), node);
                }
                _ => {}
            }
        }
    }
}

fn set_raw_name(header: &mut tar::Header, name: &[u8]) {
    let field = &mut header.as_old_mut().name;
    assert!(name.len() < field.len());
    field.fill(0);
    field[..name.len()].copy_from_slice(name);
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// A layer blob ready to push.
#[derive(Debug, Clone)]
pub struct Layer {
    pub builder: LayerBuilder,
    pub blob: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
}

impl Layer {
    pub fn new(builder: LayerBuilder, compression: Compression, docker: bool) -> Layer {
        let tar = builder.tar();
        let diff_id = sha256_digest(&tar);
        let (blob, media_type) = match compression {
            Compression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&tar).unwrap();
                let media = if docker {
                    "application/vnd.docker.image.rootfs.diff.tar.gzip"
                } else {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                };
                (enc.finish().unwrap(), media)
            }
            Compression::Zstd => (
                zstd::encode_all(tar.as_slice(), 1).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        assert!(
            !docker || compression == Compression::Gzip,
            "docker manifests carry gzip layers"
        );
        Layer {
            builder,
            digest: sha256_digest(&blob),
            blob,
            diff_id,
            media_type: media_type.to_string(),
        }
    }
}

/// The busybox base: `bin/busybox` (the static binary) and applet symlinks.
pub fn busybox_builder() -> LayerBuilder {
    let busybox =
        std::fs::read("/bin/busybox").expect("read /bin/busybox (apt install busybox-static)");
    let mut layer =
        LayerBuilder::new()
            .dir("bin", 0o755, 0, 0)
            .file("bin/busybox", 0o755, 0, 0, &busybox);
    for applet in ["sh", "ls", "cat", "echo", "id"] {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer.dir("tmp", 0o1777, 0, 0)
}

/// The busybox base layer, gzip (built once per test process: compressing is slow in debug).
pub fn busybox_layer() -> Layer {
    static LAYER: OnceLock<Layer> = OnceLock::new();
    LAYER
        .get_or_init(|| Layer::new(busybox_builder(), Compression::Gzip, false))
        .clone()
}

/// An image: config, manifest, layers, and the tree it should unpack to.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub os: String,
    pub architecture: String,
}

impl Image {
    pub fn oci(layers: Vec<Layer>) -> Image {
        Image::build(layers, "linux", host_arch(), false)
    }
    pub fn docker(layers: Vec<Layer>) -> Image {
        Image::build(layers, "linux", host_arch(), true)
    }

    pub fn build(layers: Vec<Layer>, os: &str, architecture: &str, docker: bool) -> Image {
        let section = json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]});
        Image::with_config_section(layers, os, architecture, docker, section)
    }

    /// The image whose config's `config` section is `section`.
    fn with_config_section(
        layers: Vec<Layer>,
        os: &str,
        architecture: &str,
        docker: bool,
        section: serde_json::Value,
    ) -> Image {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": architecture,
            "os": os,
            "config": section,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| json!({"created_by": "farm e2e"})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let config_digest = sha256_digest(&config);
        let (manifest_type, config_type) = if docker {
            (DOCKER_MANIFEST, DOCKER_CONFIG)
        } else {
            (OCI_MANIFEST, OCI_CONFIG)
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        Image {
            manifest_digest: sha256_digest(&manifest),
            manifest,
            manifest_media_type: manifest_type.to_string(),
            config_digest,
            config,
            layers,
            os: os.to_string(),
            architecture: architecture.to_string(),
        }
    }

    /// The merged tree with image ids (unshifted).
    pub fn expected_tree(&self) -> Tree {
        let mut tree = BTreeMap::new();
        for layer in &self.layers {
            layer.builder.apply(&mut tree);
        }
        tree
    }
}

/// An OCI index or Docker manifest list over `images`.
pub fn index(images: &[&Image], docker: bool) -> (Vec<u8>, String, &'static str) {
    let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": images.iter().map(|i| json!({
            "mediaType": i.manifest_media_type,
            "digest": i.manifest_digest,
            "size": i.manifest.len(),
            "platform": {"os": i.os, "architecture": i.architecture},
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let digest = sha256_digest(&body);
    (body, digest, media_type)
}

/// The host architecture as OCI names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Another architecture than the host's, for multi-arch tests.
pub fn other_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// Pushes blobs and manifests with the distribution API over plain HTTP, answering Basic
/// and Bearer challenges with the test credentials.
pub struct Pusher {
    host: String,
    credentials: Option<(String, String)>,
    authorization: Option<String>,
}

impl Pusher {
    pub fn new(host: &str) -> Pusher {
        Pusher {
            host: host.to_string(),
            credentials: None,
            authorization: None,
        }
    }
    pub fn with_credentials(host: &str, user: &str, password: &str) -> Pusher {
        Pusher {
            host: host.to_string(),
            credentials: Some((user.into(), password.into())),
            authorization: None,
        }
    }

    fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> http::Response {
        for _ in 0..2 {
            let mut all = headers.to_vec();
            if let Some(auth) = &self.authorization {
                all.push(("Authorization", auth.clone()));
            }
            let resp = http::request(method, &self.host, target, &all, body)
                .unwrap_or_else(|e| panic!("{method} {target} on {}: {e}", self.host));
            if resp.status != 401 {
                return resp;
            }
            let challenge = resp.header("www-authenticate").unwrap_or("").to_string();
            let (user, password) = self
                .credentials
                .clone()
                .expect("registry wants credentials; use Pusher::with_credentials");
            self.authorization = Some(if challenge.starts_with("Bearer") {
                self.fetch_token(&challenge, &user, &password)
            } else {
                basic(&user, &password)
            });
        }
        panic!("{method} {target}: still 401 with credentials");
    }

    fn fetch_token(&self, challenge: &str, user: &str, password: &str) -> String {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").expect("realm in challenge");
        let mut url = format!(
            "{realm}?service={}",
            params.get("service").cloned().unwrap_or_default()
        );
        if let Some(scope) = params.get("scope") {
            // Ask for push too: the registry challenges with the scope of this request only.
            let scope = if scope.ends_with(":pull") {
                format!("{scope},push")
            } else {
                scope.clone()
            };
            url.push_str(&format!(
                "&scope={}",
                scope.replace(':', "%3A").replace(',', "%2C")
            ));
        }
        let resp = http::request(
            "GET",
            "",
            &url,
            &[("Authorization", basic(user, password))],
            &[],
        )
        .unwrap();
        assert_eq!(resp.status, 200, "token server said {}", resp.text());
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        format!("Bearer {}", body["token"].as_str().unwrap())
    }

    pub fn push_blob(&mut self, name: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let head = self.send("HEAD", &format!("/v2/{name}/blobs/{digest}"), &[], &[]);
        if head.status == 200 {
            return digest;
        }
        let start = self.send("POST", &format!("/v2/{name}/blobs/uploads/"), &[], &[]);
        assert_eq!(
            start.status,
            202,
            "start upload: {} {}",
            start.status,
            start.text()
        );
        let location = start
            .header("location")
            .expect("upload location")
            .to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self.send(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream".into())],
            data,
        );
        assert_eq!(
            put.status,
            201,
            "finish upload of {digest}: {} {}",
            put.status,
            put.text()
        );
        digest
    }

    pub fn push_manifest(&mut self, name: &str, reference: &str, media_type: &str, body: &[u8]) {
        let resp = self.send(
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("Content-Type", media_type.into())],
            body,
        );
        assert_eq!(
            resp.status,
            201,
            "push manifest {name}:{reference}: {} {}",
            resp.status,
            resp.text()
        );
    }

    /// Push layers, config and manifest; tag it `tag` (or push by digest when `tag` is None).
    pub fn push_image(&mut self, name: &str, tag: Option<&str>, image: &Image) {
        for layer in &image.layers {
            self.push_blob(name, &layer.blob);
        }
        self.push_blob(name, &image.config);
        let reference = tag
            .map(str::to_string)
            .unwrap_or_else(|| image.manifest_digest.clone());
        self.push_manifest(
            name,
            &reference,
            &image.manifest_media_type,
            &image.manifest,
        );
    }

    /// Push every image by digest, then the index under `tag`; returns the index digest.
    pub fn push_index(&mut self, name: &str, tag: &str, images: &[&Image], docker: bool) -> String {
        for image in images {
            self.push_image(name, None, image);
        }
        let (body, digest, media_type) = index(images, docker);
        self.push_manifest(name, tag, media_type, &body);
        digest
    }
}

/// `Bearer realm="...",service="...",scope="..."` into its parameters.
pub fn parse_challenge(challenge: &str) -> BTreeMap<String, String> {
    let rest = challenge.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let mut out = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_string(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(key, percent_decode(&value));
        rest = remaining.trim_start_matches(',').trim();
    }
    out
}

/// The standard multi-layer test image: busybox (gzip), a plain-tar layer of hand-made
/// entries (modes, owners, symlinks, a hardlink), and a gzip layer with whiteouts, an
/// opaque dir and replacements.
pub fn standard_layers(docker: bool) -> Vec<Layer> {
    let second = LayerBuilder::new()
        .dir("etc", 0o755, 0, 0)
        .file(
            "etc/passwd",
            0o644,
            0,
            0,
            b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .hardlink("etc/passwd.link", "etc/passwd")
        .file("etc/motd", 0o644, 0, 0, b"old motd\n")
        .dir("home", 0o755, 0, 0)
        .dir("home/user", 0o750, 1000, 1000)
        .file("home/user/secret", 0o600, 1000, 1000, b"user data\n")
        .file(
            "home/user/run.sh",
            0o755,
            1000,
            100,
            b"#!/bin/sh\necho hi\n",
        )
        .symlink("home/user/link-abs", "/etc/passwd")
        .symlink("home/user/link-rel", "../../etc/motd")
        .dir("opt", 0o755, 0, 0)
        .dir("opt/old", 0o755, 0, 0)
        .file("opt/old/a", 0o644, 0, 0, b"a\n")
        .file("opt/old/b", 0o644, 0, 0, b"b\n")
        .file("tmp/gone.txt", 0o644, 0, 0, b"to be deleted\n")
        .dir("var", 0o755, 0, 0)
        .dir("var/lib", 0o700, 0, 0)
        .file("var/lib/data.bin", 0o640, 0, 42, &[0u8, 1, 2, 3, 255]);
    let third = LayerBuilder::new()
        .dir("tmp", 0o1777, 0, 0)
        .whiteout("tmp/gone.txt")
        .dir("opt", 0o755, 0, 0)
        .dir("opt/old", 0o711, 0, 0)
        .opaque("opt/old")
        .file("opt/old/new.txt", 0o644, 0, 0, b"new\n")
        .dir("etc", 0o755, 0, 0)
        .file("etc/motd", 0o444, 0, 0, b"new motd\n")
        .dir("var", 0o755, 0, 0)
        .whiteout("var/lib")
        .dir("bin", 0o755, 0, 0)
        .symlink("bin/vi", "busybox");
    let second_compression = if docker {
        Compression::Gzip
    } else {
        Compression::None
    };
    vec![
        busybox_layer_for(docker),
        Layer::new(second, second_compression, docker),
        Layer::new(third, Compression::Gzip, docker),
    ]
}

fn busybox_layer_for(docker: bool) -> Layer {
    if docker {
        static LAYER: OnceLock<Layer> = OnceLock::new();
        LAYER
            .get_or_init(|| Layer::new(busybox_builder(), Compression::Gzip, true))
            .clone()
    } else {
        busybox_layer()
    }
}

impl Image {
    /// An OCI image for the host platform whose config section (`Entrypoint`, `Cmd`, `Env`,
    /// `User`, `WorkingDir`, `Labels`, `StopSignal`...) is `config` as given.
    pub fn oci_with_config(layers: Vec<Layer>, config: serde_json::Value) -> Image {
        Image::with_config_section(layers, "linux", host_arch(), false, config)
    }
}

/// Write an OCI image layout at `dir` holding `images`, each tagged with its name
/// (`org.opencontainers.image.ref.name`), for `farm pull oci:DIR:TAG`. No skopeo needed.
pub fn write_oci_layout(dir: &Path, images: &[(&str, &Image)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |data: &[u8]| {
        let digest = sha256_digest(data);
        let path = blobs.join(super::hex_of(&digest));
        if !path.exists() {
            std::fs::write(&path, data).unwrap();
        }
    };
    let mut manifests = Vec::new();
    for (tag, image) in images {
        for layer in &image.layers {
            put(&layer.blob);
        }
        put(&image.config);
        put(&image.manifest);
        manifests.push(json!({
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}
