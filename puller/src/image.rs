//! Manifests, indexes and configs of an image: parsing with every check the registry
//! client relies on, platform selection, layer media types, chain IDs.
//!
//! Foreign (non-distributable) layers are accepted like any other layer, but their
//! `urls` are never used: farm fetches every blob from the registry the manifest came
//! from, by digest, so a manifest cannot make farm contact another host.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Bound on a manifest, index or config read into memory.
pub const MAX_DOCUMENT_BYTES: u64 = 4 << 20;
/// Bound on the number of layers of one image.
pub const MAX_LAYERS: usize = 125;

pub mod media_types {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_LAYER_NONDIST_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    /// Docker's uncompressed layer (distribution's `MediaTypeUncompressedLayer`).
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// containerd's name for a zstd layer in a Docker manifest.
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
    /// The Accept header for manifest requests: the four supported types.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("invalid image config {digest}: {reason}")]
    InvalidConfig { digest: Digest, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("no image for platform {wanted} in the index (available: {available}); choose one with --platform")]
    NoMatchingPlatform { wanted: String, available: String },
    #[error(
        "invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
    )]
    InvalidPlatform(String),
}

/// An OCI/Docker content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Foreign-layer URLs: parsed, never fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image manifest (OCI or Docker schema2), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An index or Docker manifest list, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedManifest {
    Image(Manifest),
    Index(Index),
}

const SCHEMA1_MESSAGE: &str =
    "schema1 manifests are not supported: push the image again with a current docker or buildah";

/// The fields that tell what kind of document a body is, read before anything else.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    config: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
    manifests: Option<serde::de::IgnoredAny>,
    /// Only schema1 has `fsLayers`.
    fs_layers: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct RawIndex {
    manifests: Vec<Descriptor>,
}

/// The media type of a Content-Type header without its parameters.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// An image manifest media type (OCI or Docker schema2).
pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == media_types::OCI_MANIFEST || media_type == media_types::DOCKER_MANIFEST
}

/// An index or Docker manifest list media type.
pub fn is_index_type(media_type: &str) -> bool {
    media_type == media_types::OCI_INDEX || media_type == media_types::DOCKER_MANIFEST_LIST
}

/// Parse a manifest or index body. `content_type` is the HTTP Content-Type (None for
/// offline sources). Refuses: schema1, a document with both `layers` and `manifests`,
/// a Content-Type that disagrees with `mediaType`, unknown layer media types, more than
/// [`MAX_LAYERS`] layers, a config that is not an image config, malformed digests.
///
/// A missing `mediaType` (allowed in OCI documents) is taken from the Content-Type, or
/// else from the shape of the document. A generic `application/json` Content-Type, or
/// none, is accepted.
pub fn parse_manifest(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<ParsedManifest, ImageError> {
    if body.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ImageError::InvalidManifest(format!(
            "document is {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
            body.len()
        )));
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| ImageError::InvalidManifest(format!("not a JSON manifest or index: {e}")))?;
    let content_type = content_type
        .map(essence)
        .filter(|ct| !ct.is_empty() && ct != "application/json");
    let is_schema1 =
        |t: &str| t == media_types::DOCKER_SCHEMA1 || t == media_types::DOCKER_SCHEMA1_SIGNED;
    if probe.media_type.as_deref().is_some_and(is_schema1)
        || content_type.as_deref().is_some_and(is_schema1)
        || probe.schema_version.as_ref().and_then(|v| v.as_i64()) == Some(1)
        || probe.fs_layers.is_some()
    {
        return Err(ImageError::Unsupported(SCHEMA1_MESSAGE.to_owned()));
    }
    match &probe.schema_version {
        Some(v) if v.as_i64() == Some(2) => {}
        Some(v) => {
            return Err(ImageError::InvalidManifest(format!(
                "schemaVersion is {v}, expected 2"
            )));
        }
        None => {
            return Err(ImageError::InvalidManifest(
                "missing schemaVersion (expected 2)".to_owned(),
            ))
        }
    }
    if probe.layers.is_some() && probe.manifests.is_some() {
        return Err(ImageError::InvalidManifest(
            "document has both layers and manifests: it is neither a manifest nor an index"
                .to_owned(),
        ));
    }
    let media_type = match (&probe.media_type, &content_type) {
        (Some(declared), Some(served)) if declared != served => {
            return Err(ImageError::InvalidManifest(format!(
                "content-type {served:?} disagrees with mediaType {declared:?}: the registry served a document of another kind"
            )));
        }
        (Some(declared), _) => declared.clone(),
        (None, Some(served)) => served.clone(),
        (None, None) if probe.manifests.is_some() => media_types::OCI_INDEX.to_owned(),
        (None, None) if probe.config.is_some() || probe.layers.is_some() => {
            media_types::OCI_MANIFEST.to_owned()
        }
        (None, None) => {
            return Err(ImageError::InvalidManifest(
                "no mediaType, config, layers or manifests: cannot tell what this document is"
                    .to_owned(),
            ));
        }
    };
    if is_manifest_type(&media_type) {
        if probe.manifests.is_some() {
            return Err(ImageError::InvalidManifest(format!(
                "a {media_type} must not list manifests"
            )));
        }
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|e| ImageError::InvalidManifest(e.to_string()))?;
        let manifest = Manifest {
            media_type,
            config: raw.config,
            layers: raw.layers,
        };
        check_manifest(&manifest)?;
        Ok(ParsedManifest::Image(manifest))
    } else if is_index_type(&media_type) {
        if probe.config.is_some() || probe.layers.is_some() {
            return Err(ImageError::InvalidManifest(format!(
                "a {media_type} must not have a config or layers"
            )));
        }
        let raw: RawIndex =
            serde_json::from_slice(body).map_err(|e| ImageError::InvalidManifest(e.to_string()))?;
        Ok(ParsedManifest::Index(Index {
            media_type,
            manifests: raw.manifests,
        }))
    } else {
        Err(ImageError::Unsupported(format!(
            "unsupported manifest media type {media_type:?}: farm runs OCI and Docker schema2 images, not artifacts such as helm charts or signatures"
        )))
    }
}

fn check_manifest(manifest: &Manifest) -> Result<(), ImageError> {
    let config = &manifest.config;
    if config.media_type != media_types::OCI_CONFIG
        && config.media_type != media_types::DOCKER_CONFIG
    {
        return Err(ImageError::Unsupported(format!(
            "config {} has media type {:?}, not an image config: this is not a container image (an artifact such as a helm chart or a signature?)",
            config.digest, config.media_type
        )));
    }
    if config.size > MAX_DOCUMENT_BYTES {
        return Err(ImageError::InvalidManifest(format!(
            "config {} declares {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
            config.digest, config.size
        )));
    }
    if manifest.layers.len() > MAX_LAYERS {
        return Err(ImageError::InvalidManifest(format!(
            "{} layers, over the limit of {MAX_LAYERS}: squash the image into fewer layers",
            manifest.layers.len()
        )));
    }
    for layer in &manifest.layers {
        Compression::from_media_type(&layer.media_type).map_err(|_| {
            ImageError::Unsupported(format!(
                "layer {} has unsupported media type {:?}: farm unpacks tar, tar+gzip and tar+zstd layers",
                layer.digest, layer.media_type
            ))
        })?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// OSes that `--platform linux` style single words name (else a single word is an arch).
const KNOWN_OSES: &[&str] = &[
    "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos",
];

/// containerd's `normalizeArch`: aliases to GOARCH names, variants to `vN`.
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|v| !v.is_empty());
    let v = variant.as_deref();
    match arch.as_str() {
        "i386" | "i686" | "x86" => ("386".to_owned(), None),
        "x86_64" | "x86-64" | "amd64" => {
            let variant = match v {
                None | Some("v1") | Some("1") => None,
                Some(v) if v.starts_with('v') => Some(v.to_owned()),
                Some(v) => Some(format!("v{v}")),
            };
            ("amd64".to_owned(), variant)
        }
        "aarch64" | "arm64" => {
            let variant = match v {
                None => None,
                Some("8") | Some("v8") | Some("v8.0") => Some("v8".to_owned()),
                Some("9") | Some("9.0") | Some("v9.0") => Some("v9".to_owned()),
                Some(v) => Some(v.to_owned()),
            };
            ("arm64".to_owned(), variant)
        }
        "armhf" => ("arm".to_owned(), Some("v7".to_owned())),
        "armel" => ("arm".to_owned(), Some("v6".to_owned())),
        "arm" => {
            let variant = match v {
                None | Some("7") => "v7".to_owned(),
                Some("5") | Some("6") | Some("8") => format!("v{}", v.unwrap_or_default()),
                Some(v) => v.to_owned(),
            };
            ("arm".to_owned(), Some(variant))
        }
        _ => (arch, variant),
    }
}

fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".to_owned(),
        other => other.to_owned(),
    }
}

impl Platform {
    /// The platform of this machine, e.g. linux/amd64.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parse `os/arch[/variant]` (docker's `--platform`), normalizing aliases (x86_64, aarch64).
    /// A single word is an OS (`linux`: the host's architecture) or an architecture
    /// (`arm64`: on linux), as containerd reads it.
    pub fn parse(input: &str) -> Result<Platform, ImageError> {
        let parts: Vec<&str> = input.split('/').collect();
        let valid_part = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        };
        if input.len() > 100 || !parts.iter().all(valid_part) {
            return Err(ImageError::InvalidPlatform(
                input.chars().take(100).collect(),
            ));
        }
        let (os, arch, variant) = match parts.as_slice() {
            [word] if KNOWN_OSES.contains(&word.to_ascii_lowercase().as_str()) => {
                let host = Platform::host();
                return Ok(Platform {
                    os: normalize_os(word),
                    ..host
                });
            }
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(ImageError::InvalidPlatform(input.to_owned())),
        };
        let (architecture, variant) = normalize_arch(arch, variant);
        Ok(Platform {
            os: normalize_os(os),
            architecture,
            variant,
        })
    }

    /// Whether an image built for `candidate` runs here, by containerd's default rules.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// How well `candidate` fits this (wanted) platform: `Some(0)` is an exact match,
    /// larger is a fallback, `None` does not run.
    fn rank(&self, candidate: &Platform) -> Option<u32> {
        let (wanted_arch, wanted_variant) =
            normalize_arch(&self.architecture, self.variant.as_deref());
        let (arch, variant) = normalize_arch(&candidate.architecture, candidate.variant.as_deref());
        if normalize_os(&self.os) != normalize_os(&candidate.os) || wanted_arch != arch {
            return None;
        }
        let version = |v: Option<&str>| {
            v.and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.parse::<u32>().ok())
        };
        match arch.as_str() {
            // A missing variant and v8 are the same arm64.
            "arm64" => {
                let wanted = wanted_variant.as_deref().unwrap_or("v8");
                (variant.as_deref().unwrap_or("v8") == wanted).then_some(0)
            }
            // arm/v7 runs v6 and v5 images, preferring the newest.
            "arm" => {
                let (wanted, got) = (
                    version(wanted_variant.as_deref())?,
                    version(variant.as_deref())?,
                );
                (got <= wanted && got >= 5).then(|| wanted - got)
            }
            // amd64 ignores the variant unless one is asked for; then v3 runs v2 and v1.
            "amd64" => match wanted_variant {
                None => Some(if variant.is_none() { 0 } else { 1 }),
                Some(wanted) => {
                    let wanted = version(Some(&wanted))?;
                    let got = version(variant.as_deref()).unwrap_or(1);
                    (got <= wanted).then(|| wanted - got)
                }
            },
            _ => match (wanted_variant, variant) {
                (w, v) if w == v => Some(0),
                (None, Some(_)) => Some(1),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Attestations and other non-images in an index: `unknown/unknown` platform, or
/// buildkit's `vnd.docker.reference.type` annotation.
fn is_attestation(descriptor: &Descriptor) -> bool {
    let unknown = descriptor
        .platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown");
    let annotated = descriptor
        .annotations
        .as_ref()
        .and_then(|a| a.get("vnd.docker.reference.type"))
        .is_some_and(|t| t == "attestation-manifest");
    unknown || annotated
}

/// Choose the manifest for `platform` from an index, as containerd's default matcher does:
/// OS and architecture equal; for arm64 a missing variant equals v8; arm/v7 falls back to
/// v6 then v5; amd64 ignores the variant unless one is asked for. Attestation entries
/// (`unknown/unknown`) are skipped. An entry without a platform is taken only when it is
/// the index's one image. Among equal matches the first listed wins.
pub fn select_platform<'a>(
    index: &'a Index,
    platform: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    let images: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            (is_manifest_type(&d.media_type) || is_index_type(&d.media_type)) && !is_attestation(d)
        })
        .collect();
    let mut best: Option<(u32, &Descriptor)> = None;
    for descriptor in &images {
        let rank = match &descriptor.platform {
            Some(candidate) => platform.rank(candidate),
            None if images.len() == 1 => Some(u32::MAX),
            None => None,
        };
        if let Some(rank) = rank {
            if best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, descriptor));
            }
        }
    }
    if let Some((_, descriptor)) = best {
        return Ok(descriptor);
    }
    let mut available: Vec<String> = Vec::new();
    for descriptor in &images {
        let name = descriptor
            .platform
            .as_ref()
            .map_or_else(|| "unspecified".to_owned(), Platform::to_string);
        if !available.contains(&name) {
            available.push(name);
        }
    }
    Err(ImageError::NoMatchingPlatform {
        wanted: platform.to_string(),
        available: if available.is_empty() {
            "none".to_owned()
        } else {
            available.join(", ")
        },
    })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type; unknown types are refused.
    pub fn from_media_type(media_type: &str) -> Result<Compression, ImageError> {
        use media_types::*;
        match media_type {
            OCI_LAYER | OCI_LAYER_NONDIST | DOCKER_LAYER => Ok(Compression::None),
            OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP => {
                Ok(Compression::Gzip)
            }
            OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD | DOCKER_LAYER_ZSTD => Ok(Compression::Zstd),
            other => Err(ImageError::Unsupported(format!(
                "unsupported layer media type {other:?}: farm unpacks tar, tar+gzip and tar+zstd layers"
            ))),
        }
    }
}

/// The parts of an image config the puller needs; the full JSON stays in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Parse and check a config blob (`digest` is for messages). `layers` is the manifest's
/// layer count, which `rootfs.diff_ids` must match.
pub fn parse_config(
    body: &[u8],
    digest: &Digest,
    layers: usize,
) -> Result<ImageConfig, ImageError> {
    let invalid = |reason: String| ImageError::InvalidConfig {
        digest: digest.clone(),
        reason,
    };
    if body.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "{} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
            body.len()
        )));
    }
    let raw: RawConfig =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not an image config: {e}")))?;
    if raw.os.is_empty() || raw.architecture.is_empty() {
        return Err(invalid("missing os or architecture".to_owned()));
    }
    let rootfs = raw
        .rootfs
        .ok_or_else(|| invalid("missing rootfs".to_owned()))?;
    if rootfs.kind != "layers" {
        return Err(invalid(format!(
            "rootfs.type is {:?}, expected \"layers\"",
            rootfs.kind
        )));
    }
    if rootfs.diff_ids.len() != layers {
        return Err(invalid(format!(
            "rootfs.diff_ids lists {} layers but the manifest has {layers}: the image is corrupt, build and push it again",
            rootfs.diff_ids.len()
        )));
    }
    let diff_ids = rootfs
        .diff_ids
        .iter()
        .enumerate()
        .map(|(i, d)| Digest::parse(d).map_err(|e| invalid(format!("rootfs.diff_ids[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ImageConfig {
        os: raw.os,
        architecture: raw.architecture,
        variant: raw.variant.filter(|v| !v.is_empty()),
        diff_ids,
    })
}

/// Chain IDs as the OCI spec defines them: ChainID(L0) = DiffID(L0),
/// ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(seed: &str) -> Digest {
        Digest::of(seed.as_bytes())
    }

    fn oci_manifest() -> serde_json::Value {
        json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "config": {
                "mediaType": media_types::OCI_CONFIG,
                "digest": digest("config").to_string(),
                "size": 1469
            },
            "layers": [
                {
                    "mediaType": media_types::OCI_LAYER_GZIP,
                    "digest": digest("layer0").to_string(),
                    "size": 2_811_478
                },
                {
                    "mediaType": media_types::OCI_LAYER_ZSTD,
                    "digest": digest("layer1").to_string(),
                    "size": 1024,
                    "annotations": {"org.opencontainers.image.title": "x"}
                }
            ],
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
        })
    }

    fn docker_manifest() -> serde_json::Value {
        json!({
            "schemaVersion": 2,
            "mediaType": media_types::DOCKER_MANIFEST,
            "config": {
                "mediaType": media_types::DOCKER_CONFIG,
                "digest": digest("config").to_string(),
                "size": 7023
            },
            "layers": [
                {"mediaType": media_types::DOCKER_LAYER_GZIP, "digest": digest("a").to_string(), "size": 32654},
                {
                    "mediaType": media_types::DOCKER_LAYER_FOREIGN_GZIP,
                    "digest": digest("b").to_string(),
                    "size": 16724,
                    "urls": ["https://example.invalid/layer"]
                }
            ]
        })
    }

    fn parse(
        value: &serde_json::Value,
        content_type: Option<&str>,
    ) -> Result<ParsedManifest, ImageError> {
        parse_manifest(value.to_string().as_bytes(), content_type)
    }

    fn entry(
        media_type: &str,
        seed: &str,
        platform: Option<(&str, &str, Option<&str>)>,
    ) -> serde_json::Value {
        let mut value =
            json!({"mediaType": media_type, "digest": digest(seed).to_string(), "size": 500});
        if let Some((os, architecture, variant)) = platform {
            let mut p = json!({"os": os, "architecture": architecture});
            if let Some(variant) = variant {
                p["variant"] = json!(variant);
            }
            value["platform"] = p;
        }
        value
    }

    fn index(media_type: Option<&str>, entries: Vec<serde_json::Value>) -> serde_json::Value {
        let mut value = json!({"schemaVersion": 2, "manifests": entries});
        if let Some(media_type) = media_type {
            value["mediaType"] = json!(media_type);
        }
        value
    }

    fn as_index(parsed: ParsedManifest) -> Index {
        match parsed {
            ParsedManifest::Index(index) => index,
            other => panic!("expected an index, got {other:?}"),
        }
    }

    fn err_string(result: Result<ParsedManifest, ImageError>) -> String {
        result.expect_err("should be refused").to_string()
    }

    #[test]
    fn parses_oci_manifest() {
        let ParsedManifest::Image(manifest) =
            parse(&oci_manifest(), Some(media_types::OCI_MANIFEST)).unwrap()
        else {
            panic!("expected a manifest");
        };
        assert_eq!(manifest.media_type, media_types::OCI_MANIFEST);
        assert_eq!(manifest.config.digest, digest("config"));
        assert_eq!(manifest.layers.len(), 2);
        assert_eq!(manifest.layers[0].size, 2_811_478);
        assert_eq!(
            Compression::from_media_type(&manifest.layers[1].media_type).unwrap(),
            Compression::Zstd
        );
    }

    #[test]
    fn parses_docker_schema2_with_foreign_layer() {
        let parsed = parse(
            &docker_manifest(),
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
        );
        let ParsedManifest::Image(manifest) = parsed.unwrap() else {
            panic!("expected a manifest")
        };
        assert_eq!(manifest.media_type, media_types::DOCKER_MANIFEST);
        // Foreign URLs are kept for the record, never fetched.
        assert_eq!(
            manifest.layers[1].urls.as_deref(),
            Some(&["https://example.invalid/layer".to_owned()][..])
        );
        assert_eq!(
            Compression::from_media_type(&manifest.layers[1].media_type).unwrap(),
            Compression::Gzip
        );
    }

    #[test]
    fn media_type_from_content_type_or_shape() {
        let mut manifest = oci_manifest();
        manifest.as_object_mut().unwrap().remove("mediaType");
        let ParsedManifest::Image(m) = parse(&manifest, None).unwrap() else {
            panic!()
        };
        assert_eq!(m.media_type, media_types::OCI_MANIFEST);
        let ParsedManifest::Image(m) =
            parse(&manifest, Some(media_types::DOCKER_MANIFEST)).unwrap()
        else {
            panic!()
        };
        assert_eq!(m.media_type, media_types::DOCKER_MANIFEST);
        // A generic JSON content type is acceptable.
        assert!(parse(&oci_manifest(), Some("application/json")).is_ok());

        let idx = index(
            None,
            vec![entry(
                media_types::OCI_MANIFEST,
                "m",
                Some(("linux", "amd64", None)),
            )],
        );
        assert_eq!(
            as_index(parse(&idx, None).unwrap()).media_type,
            media_types::OCI_INDEX
        );
    }

    #[test]
    fn refuses_schema1() {
        let schema1 = json!({
            "schemaVersion": 1, "name": "library/busybox", "tag": "latest", "architecture": "amd64",
            "fsLayers": [{"blobSum": digest("x").to_string()}], "history": []
        });
        for content_type in [None, Some(media_types::DOCKER_SCHEMA1_SIGNED)] {
            let err = err_string(parse(&schema1, content_type));
            assert_eq!(err, SCHEMA1_MESSAGE);
        }
        // Declared by media type only.
        let mut by_type = oci_manifest();
        by_type["mediaType"] = json!(media_types::DOCKER_SCHEMA1);
        assert_eq!(err_string(parse(&by_type, None)), SCHEMA1_MESSAGE);
        // Served as schema1 by the registry.
        let mut no_type = oci_manifest();
        no_type.as_object_mut().unwrap().remove("mediaType");
        assert_eq!(
            err_string(parse(&no_type, Some(media_types::DOCKER_SCHEMA1))),
            SCHEMA1_MESSAGE
        );
    }

    #[test]
    fn refuses_malformed_documents() {
        let mut v3 = oci_manifest();
        v3["schemaVersion"] = json!(3);
        assert!(err_string(parse(&v3, None)).contains("schemaVersion is 3"));

        let mut missing = oci_manifest();
        missing.as_object_mut().unwrap().remove("schemaVersion");
        assert!(err_string(parse(&missing, None)).contains("missing schemaVersion"));

        let mut both = oci_manifest();
        both["manifests"] = json!([]);
        assert!(err_string(parse(&both, None)).contains("both layers and manifests"));

        let err = err_string(parse(&oci_manifest(), Some(media_types::DOCKER_MANIFEST)));
        assert!(err.contains("disagrees with mediaType"), "{err}");

        let mut unknown_layer = oci_manifest();
        unknown_layer["layers"][1]["mediaType"] =
            json!("application/vnd.oci.image.layer.v1.tar+bzip2");
        let err = err_string(parse(&unknown_layer, None));
        assert!(
            err.contains("application/vnd.oci.image.layer.v1.tar+bzip2"),
            "{err}"
        );
        assert!(err.contains(&digest("layer1").to_string()), "{err}");

        let mut helm = oci_manifest();
        helm["config"]["mediaType"] = json!("application/vnd.cncf.helm.config.v1+json");
        assert!(err_string(parse(&helm, None)).contains("not an image config"));

        let mut many = oci_manifest();
        let layer = many["layers"][0].clone();
        many["layers"] = json!(vec![layer; MAX_LAYERS + 1]);
        assert!(err_string(parse(&many, None)).contains("over the limit of 125"));

        let mut negative = oci_manifest();
        negative["layers"][0]["size"] = json!(-1);
        assert!(matches!(
            parse(&negative, None),
            Err(ImageError::InvalidManifest(_))
        ));

        let mut huge_config = oci_manifest();
        huge_config["config"]["size"] = json!(MAX_DOCUMENT_BYTES + 1);
        assert!(err_string(parse(&huge_config, None)).contains("over the 4194304-byte limit"));

        let mut bad_digest = oci_manifest();
        bad_digest["layers"][0]["digest"] = json!("sha256:../../etc/passwd");
        assert!(err_string(parse(&bad_digest, None)).contains("invalid digest"));

        let mut artifact = oci_manifest();
        artifact["mediaType"] = json!("application/vnd.oci.artifact.manifest.v1+json");
        assert!(matches!(
            parse(&artifact, None),
            Err(ImageError::Unsupported(_))
        ));

        let mut index_with_layers = index(Some(media_types::OCI_INDEX), vec![]);
        index_with_layers["config"] = oci_manifest()["config"].clone();
        assert!(err_string(parse(&index_with_layers, None)).contains("must not have a config"));

        assert!(parse_manifest(b"not json", None).is_err());
        let big = vec![b' '; MAX_DOCUMENT_BYTES as usize + 1];
        assert!(err_string(parse_manifest(&big, None)).contains("limit"));
    }

    fn multi_arch(media_type: &str, child: &str) -> Index {
        let mut attestation = entry(
            media_types::OCI_MANIFEST,
            "att",
            Some(("unknown", "unknown", None)),
        );
        attestation["annotations"] = json!({"vnd.docker.reference.type": "attestation-manifest"});
        as_index(
            parse(
                &index(
                    Some(media_type),
                    vec![
                        entry(child, "amd64", Some(("linux", "amd64", None))),
                        attestation,
                        entry(child, "arm64", Some(("linux", "arm64", Some("v8")))),
                        entry(child, "armv6", Some(("linux", "arm", Some("v6")))),
                        entry(child, "armv5", Some(("linux", "arm", Some("v5")))),
                        entry(child, "ppc", Some(("linux", "ppc64le", None))),
                    ],
                ),
                Some(media_type),
            )
            .unwrap(),
        )
    }

    fn selected(index: &Index, platform: &str) -> Result<Digest, ImageError> {
        select_platform(index, &Platform::parse(platform).unwrap()).map(|d| d.digest.clone())
    }

    #[test]
    fn selects_platforms_like_containerd() {
        for (media_type, child) in [
            (media_types::OCI_INDEX, media_types::OCI_MANIFEST),
            (
                media_types::DOCKER_MANIFEST_LIST,
                media_types::DOCKER_MANIFEST,
            ),
        ] {
            let index = multi_arch(media_type, child);
            assert_eq!(selected(&index, "linux/amd64").unwrap(), digest("amd64"));
            assert_eq!(selected(&index, "linux/x86_64").unwrap(), digest("amd64"));
            assert_eq!(selected(&index, "linux/amd64/v3").unwrap(), digest("amd64"));
            // arm64 without variant is v8.
            assert_eq!(selected(&index, "linux/arm64").unwrap(), digest("arm64"));
            assert_eq!(selected(&index, "linux/aarch64").unwrap(), digest("arm64"));
            assert_eq!(selected(&index, "linux/arm64/v8").unwrap(), digest("arm64"));
            // arm/v7 falls back to v6 before v5; v5 takes only v5.
            assert_eq!(selected(&index, "linux/arm/v7").unwrap(), digest("armv6"));
            assert_eq!(selected(&index, "linux/arm").unwrap(), digest("armv6"));
            assert_eq!(selected(&index, "linux/arm/v5").unwrap(), digest("armv5"));
            assert_eq!(selected(&index, "linux/ppc64le").unwrap(), digest("ppc"));

            let err = selected(&index, "linux/s390x").unwrap_err().to_string();
            assert!(err.contains("linux/s390x"), "{err}");
            assert!(
                err.contains("available: linux/amd64, linux/arm64/v8, linux/arm/v6, linux/arm/v5, linux/ppc64le"),
                "{err}"
            );
            // The attestation is never listed nor chosen.
            assert!(!err.contains("unknown"), "{err}");
            assert!(selected(&index, "windows/amd64").is_err());
        }
    }

    #[test]
    fn exact_variant_beats_fallback_and_first_listed_wins() {
        let index = as_index(
            parse(
                &index(
                    None,
                    vec![
                        entry(
                            media_types::OCI_MANIFEST,
                            "v6",
                            Some(("linux", "arm", Some("v6"))),
                        ),
                        entry(
                            media_types::OCI_MANIFEST,
                            "v7",
                            Some(("linux", "arm", Some("v7"))),
                        ),
                        entry(
                            media_types::OCI_MANIFEST,
                            "arm64-bare",
                            Some(("linux", "arm64", None)),
                        ),
                        entry(
                            media_types::OCI_MANIFEST,
                            "amd64-v2",
                            Some(("linux", "amd64", Some("v2"))),
                        ),
                        entry(
                            media_types::OCI_MANIFEST,
                            "amd64-a",
                            Some(("linux", "amd64", None)),
                        ),
                        entry(
                            media_types::OCI_MANIFEST,
                            "amd64-b",
                            Some(("linux", "amd64", None)),
                        ),
                    ],
                ),
                None,
            )
            .unwrap(),
        );
        assert_eq!(selected(&index, "linux/arm/v7").unwrap(), digest("v7"));
        assert_eq!(
            selected(&index, "linux/arm64/v8").unwrap(),
            digest("arm64-bare")
        );
        assert_eq!(selected(&index, "linux/amd64").unwrap(), digest("amd64-a"));
        assert_eq!(
            selected(&index, "linux/amd64/v2").unwrap(),
            digest("amd64-v2")
        );
        assert_eq!(
            selected(&index, "linux/amd64/v1").unwrap(),
            digest("amd64-a")
        );
        let host = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            select_platform(&index, &host).unwrap().digest,
            digest("arm64-bare")
        );
    }

    #[test]
    fn platform_parse_and_display() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("linux/arm64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("Linux/X86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/i386").unwrap().to_string(),
            "linux/386"
        );
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        assert_eq!(
            Platform::parse("linux").unwrap().architecture,
            Platform::host().architecture
        );
        for bad in [
            "",
            "linux/",
            "/amd64",
            "linux/amd64/v1/x",
            "linux/amd 64",
            "linux/../x",
        ] {
            let result = Platform::parse(bad);
            if bad == "linux/../x" {
                // '.' is allowed in a part, as containerd allows it; ".." is harmless here.
                assert!(result.is_ok());
                continue;
            }
            assert!(
                matches!(result, Err(ImageError::InvalidPlatform(_))),
                "{bad:?}"
            );
        }
        let host = Platform::host();
        assert_eq!(host.os, std::env::consts::OS);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
        if cfg!(target_arch = "aarch64") {
            assert_eq!(host.to_string(), "linux/arm64/v8");
        }
        assert!(host.matches(&host));
    }

    #[test]
    fn compression_from_media_type() {
        assert_eq!(
            Compression::from_media_type(media_types::OCI_LAYER).unwrap(),
            Compression::None
        );
        assert_eq!(
            Compression::from_media_type(media_types::DOCKER_LAYER).unwrap(),
            Compression::None
        );
        assert_eq!(
            Compression::from_media_type(media_types::OCI_LAYER_NONDIST_GZIP).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type(media_types::DOCKER_LAYER_GZIP).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type(media_types::OCI_LAYER_NONDIST_ZSTD).unwrap(),
            Compression::Zstd
        );
        let err = Compression::from_media_type("application/x-tar+lz4")
            .unwrap_err()
            .to_string();
        assert!(err.contains("application/x-tar+lz4"), "{err}");
    }

    fn config(diff_ids: &[Digest]) -> Vec<u8> {
        json!({
            "architecture": "arm64", "os": "linux", "variant": "v8",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
            "history": []
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn parses_config_and_checks_diff_ids() {
        let ids = [digest("l0"), digest("l1")];
        let body = config(&ids);
        let cfg = parse_config(&body, &Digest::of(&body), 2).unwrap();
        assert_eq!(cfg.diff_ids, ids);
        assert_eq!(cfg.platform().to_string(), "linux/arm64/v8");

        let err = parse_config(&body, &Digest::of(&body), 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lists 2 layers but the manifest has 3"),
            "{err}"
        );
        assert!(err.contains(&Digest::of(&body).to_string()), "{err}");

        let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        value["rootfs"]["type"] = json!("tarballs");
        let err = parse_config(value.to_string().as_bytes(), &digest("c"), 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rootfs.type"), "{err}");

        value["rootfs"]["type"] = json!("layers");
        value["rootfs"]["diff_ids"][1] = json!("sha256:nothex");
        let err = parse_config(value.to_string().as_bytes(), &digest("c"), 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rootfs.diff_ids[1]"), "{err}");

        value.as_object_mut().unwrap().remove("rootfs");
        assert!(parse_config(value.to_string().as_bytes(), &digest("c"), 0).is_err());
        assert!(parse_config(b"[]", &digest("c"), 0).is_err());
    }

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let ids = [digest("l0"), digest("l1"), digest("l2")];
        let chain = chain_ids(&ids);
        use sha2::Digest as _;
        let by_hand = |parent: &Digest, diff: &Digest| {
            let sum = sha2::Sha256::digest(
                format!("sha256:{} sha256:{}", parent.hex(), diff.hex()).as_bytes(),
            );
            Digest::parse(&format!("sha256:{}", hex::encode(sum))).unwrap()
        };
        let c1 = by_hand(&ids[0], &ids[1]);
        let c2 = by_hand(&c1, &ids[2]);
        assert_eq!(chain, vec![ids[0].clone(), c1, c2]);
        assert!(chain_ids(&[]).is_empty());
        // A known value: the chain of two empty-tar-like diff ids.
        let empty = Digest::parse(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        .unwrap();
        let known = chain_ids(&[empty.clone(), empty]);
        // Computed with: printf 'sha256:e3b0... sha256:e3b0...' | sha256sum
        assert_eq!(
            known[1].to_string(),
            "sha256:de9d9016b852e46e9f3973e20d3a6d17e120f7144931d50cd6e2a8ad53e81960"
        );
    }
}
