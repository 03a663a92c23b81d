//! Docker's seccomp profile format, compiled to BPF with seccompiler (owner: seccomp work).

use oci_spec::runtime::Capability;
use seccompiler::BpfProgram;

use crate::options::SeccompMode;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    #[error("seccomp profile {path}: {reason}")]
    Profile { path: String, reason: String },
}

/// The filters to install, in order, for a container with capabilities `caps`; `None` for
/// `seccomp=unconfined`.
pub fn filters(
    mode: &SeccompMode,
    caps: &[Capability],
) -> Result<Option<Vec<BpfProgram>>, SeccompError> {
    let _ = (mode, caps);
    Ok(None)
}

/// Install `filters` on the calling thread (no-new-privileges must already be set).
pub fn install(filters: &[BpfProgram]) -> std::io::Result<()> {
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(std::io::Error::other)?;
    }
    Ok(())
}
