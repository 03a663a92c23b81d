//! `pull`: resolve a source to a manifest, fetch config and layers in parallel through the
//! content store, unpack each layer once into its snapshot, record the image.
//! OWNER: helper "store". Interface below is fixed; bodies are to be written.

use std::sync::Arc;

use crate::digest::Digest;
use crate::image::Platform;
use crate::reference::ImageSource;
use crate::registry::RegistryClient;
use crate::store::{ImageRecord, Store};

/// Options of one pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to select from an index; default the host's.
    pub platform: Platform,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
    /// Apparent bytes of the whole unpacked image.
    pub max_image_bytes: u64,
    pub limits: crate::unpack::Limits,
}

/// What a pull reports while it works, for progress bars or plain lines.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// The manifest was resolved.
    Resolved {
        name: String,
        manifest_digest: Digest,
        layers: usize,
        total_bytes: u64,
    },
    /// The layer is already unpacked in the store.
    LayerExists {
        digest: Digest,
    },
    /// Download of a layer started (or resumed at `offset`).
    Downloading {
        digest: Digest,
        size: u64,
        offset: u64,
    },
    /// Bytes of a layer downloaded so far.
    Progress {
        digest: Digest,
        done: u64,
        size: u64,
    },
    Verified {
        digest: Digest,
    },
    Extracting {
        digest: Digest,
    },
    Extracted {
        digest: Digest,
    },
    /// Something neutralised in a layer (a device node skipped, say).
    Warning {
        digest: Digest,
        message: String,
    },
    Done {
        record: Box<ImageRecord>,
    },
}

/// Receives [`PullEvent`]s; called from several tasks at once.
pub trait PullProgress: Send + Sync {
    fn event(&self, event: PullEvent);
}

/// Pull `source` into `store`.
pub async fn pull(
    _store: Arc<Store>,
    _client: &RegistryClient,
    _source: &ImageSource,
    _options: &PullOptions,
    _progress: Arc<dyn PullProgress>,
) -> Result<ImageRecord, crate::Error> {
    todo!()
}
