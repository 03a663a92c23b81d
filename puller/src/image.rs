//! Manifests, indexes and configs of an image: parsing with every check the registry
//! client relies on, platform selection, layer media types, chain IDs.
//! OWNER: helper "image-model". Interface below is fixed; bodies are to be written.

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

/// Parse a manifest or index body. `content_type` is the HTTP Content-Type (None for
/// offline sources). Refuses: schema1, a document with both `layers` and `manifests`,
/// a Content-Type that disagrees with `mediaType`, unknown layer media types, more than
/// [`MAX_LAYERS`] layers, a config that is not an image config, malformed digests.
pub fn parse_manifest(
    _body: &[u8],
    _content_type: Option<&str>,
) -> Result<ParsedManifest, ImageError> {
    todo!()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, e.g. linux/amd64.
    pub fn host() -> Platform {
        todo!()
    }
    /// Parse `os/arch[/variant]` (docker's `--platform`), normalizing aliases (x86_64, aarch64).
    pub fn parse(_input: &str) -> Result<Platform, ImageError> {
        todo!()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

/// Choose the manifest for `platform` from an index, as containerd's default matcher does.
pub fn select_platform<'a>(
    _index: &'a Index,
    _platform: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    todo!()
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
    pub fn from_media_type(_media_type: &str) -> Result<Compression, ImageError> {
        todo!()
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

/// Parse and check a config blob (`digest` is for messages). `layers` is the manifest's
/// layer count, which `rootfs.diff_ids` must match.
pub fn parse_config(
    _body: &[u8],
    _digest: &Digest,
    _layers: usize,
) -> Result<ImageConfig, ImageError> {
    todo!()
}

/// Chain IDs as the OCI spec defines them: ChainID(L0) = DiffID(L0),
/// ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(_diff_ids: &[Digest]) -> Vec<Digest> {
    todo!()
}
