//! The distribution-spec v2 client: manifests, blobs (with resume), auth challenges,
//! bearer tokens, basic auth, credential lookup (`registry::credentials`).
//! OWNER: helper "registry". Interface below is fixed; bodies are to be written.

use std::path::PathBuf;

use crate::content::{ContentError, Ingest};
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::reference::Reference;
use crate::secret::Credentials;

pub mod credentials;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// How a [`RegistryClient`] finds and uses registries and credentials.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) that may be reached over plain HTTP. Loopback always may.
    pub insecure: Vec<String>,
    /// Credentials handed in by the caller for this pull (the worker's per-job ones).
    /// Used for the pulled registry only, before any stored credentials.
    pub credentials: Option<Credentials>,
    /// farm's own credential store, written by `farm login` (docker config format, 0600).
    pub auth_file: Option<PathBuf>,
    /// A docker `config.json` to read; None means `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
}

/// A manifest or index as the registry served it, hashed by us.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// sha256 of `body`, computed here (the Docker-Content-Digest header is only a hint).
    pub digest: Digest,
}

/// A client for any number of registries; cheap to clone, safe to share between tasks.
#[derive(Debug, Clone)]
pub struct RegistryClient {}

impl RegistryClient {
    pub fn new(_options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        todo!()
    }

    /// GET `/v2/<repository>/manifests/<manifest_reference>` (a tag or a digest), bounded to
    /// [`crate::image::MAX_DOCUMENT_BYTES`]. When `manifest_reference` is a digest the body
    /// must hash to it.
    pub async fn fetch_manifest(
        &self,
        _reference: &Reference,
        _manifest_reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        todo!()
    }

    /// Download the blob of `descriptor` into `ingest`, starting at `ingest.offset()` (HTTP
    /// Range), retrying and resuming on 5xx, resets and timeouts. `progress` gets the total
    /// bytes written so far. Does not commit: the caller calls `ingest.commit()`.
    pub async fn fetch_blob(
        &self,
        _reference: &Reference,
        _descriptor: &Descriptor,
        _ingest: &mut Ingest,
        _progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), RegistryError> {
        todo!()
    }

    /// Check `credentials` against `registry` (`host[:port]`, or `docker.io`): GET /v2/
    /// with basic auth or the token flow. Ok means they were accepted.
    pub async fn check_login(
        &self,
        _registry: &str,
        _credentials: &Credentials,
    ) -> Result<(), RegistryError> {
        todo!()
    }
}
