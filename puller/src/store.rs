//! The store under the farm root: content, snapshots and image records, with the lock
//! that keeps garbage collection away from pulls in progress.
//! OWNER: helper "store". Interface below is fixed; bodies are to be written.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::image::Platform;
use crate::snapshots::Snapshots;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no such image: {0}")]
    NoSuchImage(String),
}

/// One layer of a recorded image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// A pulled image, as `farm images` lists it and `farm run` finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalized name it was pulled by (`docker.io/library/busybox:latest`,
    /// `oci:/path:tag`).
    pub name: String,
    pub manifest_digest: Digest,
    /// The index the manifest was chosen from, if any (docker's RepoDigest for multi-arch).
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    pub platform: Platform,
    pub layers: Vec<LayerRecord>,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    /// RFC 3339 time of the pull.
    pub pulled_at: String,
}

impl ImageRecord {
    /// docker's IMAGE ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: u64,
    pub snapshots: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    pub content: ContentStore,
    pub snapshots: Snapshots,
}

impl Store {
    /// Open the store at `root` (created `0700`), repairing what a killed command left.
    pub fn open(_root: &Path) -> Result<Store, StoreError> {
        todo!()
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        todo!()
    }
    /// Find an image by name (normalized or as typed), full or short id, or digest.
    pub fn image(&self, _name_or_id: &str) -> Result<ImageRecord, StoreError> {
        todo!()
    }
    pub fn put_image(&self, _record: &ImageRecord) -> Result<(), StoreError> {
        todo!()
    }
    /// Remove the record(s) matching `name_or_id`; their content goes at the next prune.
    pub fn remove_image(&self, _name_or_id: &str) -> Result<Vec<ImageRecord>, StoreError> {
        todo!()
    }
    /// Remove blobs and snapshots that no image references, and stale partial work.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        todo!()
    }
}
