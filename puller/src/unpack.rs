//! Apply one layer tar into an empty snapshot folder, safely: every path resolves inside
//! the folder (openat2 RESOLVE_IN_ROOT), caps are enforced while streaming, whiteouts
//! become what overlayfs reads. The only writer of image content.
//! OWNER: helper "unpack". Interface below is fixed; bodies are to be written.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use crate::digest::Digest;
use crate::image::Compression;

/// Image ids are stored shifted by this base: image uid/gid `x` is owned on disk by host id
/// `STORE_ID_BASE + x`, so nothing in the store belongs to a host user (a setuid-root binary
/// in an image is setuid to an unprivileged id on the host) and `security.capability` is
/// stored as a v3 capability whose rootid is `STORE_ID_BASE`, never effective on the host.
/// Containers see the image's own ids through idmapped mounts.
pub const STORE_ID_BASE: u32 = 1 << 31;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    #[error("{0}")]
    Other(String),
}

/// Caps enforced while streaming a layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Apparent (uncompressed, declared) bytes of file content in one layer.
    pub max_layer_bytes: u64,
    /// Entries in one layer.
    pub max_entries: u64,
    /// Bytes of one entry path.
    pub max_path_bytes: usize,
    /// Components of one entry path.
    pub max_depth: usize,
    /// Bytes of one PAX extended header or GNU long name/link record.
    pub max_pax_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_layer_bytes: 64 << 30,
            max_entries: 1_000_000,
            max_path_bytes: 4096,
            max_depth: 256,
            max_pax_bytes: 1 << 20,
        }
    }
}

/// The apparent-byte budget of a whole image, shared by layers unpacked in parallel.
#[derive(Debug)]
pub struct ImageBudget {
    pub remaining: AtomicU64,
}

impl ImageBudget {
    pub fn new(max_image_bytes: u64) -> ImageBudget {
        ImageBudget { remaining: AtomicU64::new(max_image_bytes) }
    }
}

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub compression: Compression,
    pub limits: Limits,
    /// Added to every uid and gid written ([`STORE_ID_BASE`] in the store; 0 in some tests).
    pub id_base: u32,
    /// Snapshot folders of the layers below, nearest first: hardlinks to a file of a lower
    /// layer are copied up from there.
    pub parents: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct UnpackReport {
    /// sha256 of exactly the uncompressed bytes read (the whole stream).
    pub diff_id: Digest,
    pub entries: u64,
    /// Apparent bytes of file content written.
    pub bytes: u64,
    /// Things neutralised rather than refused (a device node skipped, say), for the user.
    pub warnings: Vec<String>,
}

/// Apply the (compressed) layer stream `reader` into `dest`, an existing empty folder.
/// On error `dest` may hold partial content: the caller deletes it.
pub fn apply_layer(
    _reader: impl Read,
    _dest: &Path,
    _options: &UnpackOptions,
    _budget: &ImageBudget,
) -> Result<UnpackReport, UnpackError> {
    todo!()
}
