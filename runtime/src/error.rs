//! The runtime's error type: one enum per module, gathered here for callers.

use std::path::PathBuf;

/// Anything that can go wrong creating, running or cleaning up a container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Seccomp(#[from] crate::sandbox::seccomp::SeccompError),
    #[error(transparent)]
    Capabilities(#[from] crate::sandbox::capabilities::CapabilityError),
    #[error(transparent)]
    Userns(#[from] crate::sandbox::userns::UsernsError),
    #[error(transparent)]
    Cgroups(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Logs(#[from] crate::logs::LogError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("libcontainer: {0}")]
    Libcontainer(String),
    #[error("{0}")]
    Other(String),
}
