//! farm-puller: an image reference in, verified blobs and unpacked snapshots out.
//!
//! The flow of a pull (see ARCHITECTURE.md):
//! [`reference`] parses what the user typed; [`registry`] (or [`offline`]) fetches the
//! manifest and blobs; every blob is written through [`content::Ingest`], which checks
//! size and sha256 before a blob exists; [`unpack`] applies each layer into its own
//! [`snapshots`] folder keyed by chain ID; [`store`] records the image; [`pull`] drives it.

pub mod content;
pub mod digest;
pub mod image;
pub mod offline;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod save;
pub mod scrub;
pub mod secret;
pub mod snapshots;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use reference::{ImageSource, Reference};
pub use secret::{Credentials, Secret};

/// Any error of the puller. Each module has its own error type; this one says which part failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Digest(#[from] digest::DigestError),
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Content(#[from] content::ContentError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error(transparent)]
    Snapshot(#[from] snapshots::SnapshotError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Offline(#[from] offline::OfflineError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
