//! User namespaces: every container gets its own 65,536-id range of the host's
//! subordinate ids, and the image's files (stored with ids shifted by 2^31) appear with
//! their owners through idmapped mounts.

use serde::{Deserialize, Serialize};

/// Ids per container: a full 16-bit range, as podman's `--userns=auto` gives.
pub const RANGE_SIZE: u32 = 65_536;

/// Where the puller stores image id 0 on disk (`farm_puller::unpack::STORE_ID_BASE`).
pub const STORE_ID_BASE: u32 = 1 << 31;

/// A container's host id range: container uid `n` is host uid `uid + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsernsError {
    #[error("{0}")]
    Other(String),
}
