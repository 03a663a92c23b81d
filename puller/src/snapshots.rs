//! Snapshots: one folder per layer, keyed by chain ID, used as an overlayfs lower dir.
//! `snapshots/<chain-id hex>/fs` is the layer's tree; a snapshot exists only once its
//! unpack finished (it is prepared under `snapshots/tmp-*` and renamed into place).
//! OWNER: helper "store". Interface below is fixed; bodies are to be written.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

/// A snapshot being unpacked: `fs()` is the empty folder to unpack into.
#[derive(Debug)]
pub struct PreparedSnapshot {
    dir: PathBuf,
}

impl PreparedSnapshot {
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Snapshots {
    pub fn open(_root: &Path) -> Result<Snapshots, SnapshotError> {
        todo!()
    }
    /// The tree of a committed snapshot.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex()).join("fs")
    }
    pub fn exists(&self, _chain_id: &Digest) -> bool {
        todo!()
    }
    pub fn prepare(&self) -> Result<PreparedSnapshot, SnapshotError> {
        todo!()
    }
    /// Rename into place; if another pull committed the same chain ID first, keep theirs.
    pub fn commit(
        &self,
        _prepared: PreparedSnapshot,
        _chain_id: &Digest,
    ) -> Result<PathBuf, SnapshotError> {
        todo!()
    }
    /// Delete a prepared snapshot that failed.
    pub fn abort(&self, _prepared: PreparedSnapshot) -> Result<(), SnapshotError> {
        todo!()
    }
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        todo!()
    }
    pub fn remove(&self, _chain_id: &Digest) -> Result<(), SnapshotError> {
        todo!()
    }
}
