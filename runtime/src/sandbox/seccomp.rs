//! Docker's seccomp profiles, compiled to BPF with seccompiler and installed right before
//! exec.
//!
//! [`filters`] reads a profile in Docker's JSON format ([`profile`]): the built-in
//! `seccomp-profiles/default.json` (moby's default profile, verbatim) or the user's file,
//! keeps the entries that apply to the host architecture, the running kernel and the
//! container's capabilities, and turns them into a short stack of seccompiler filters
//! ([`compile`] explains why a stack and why it gives each syscall the profile's result).
//! [`install`] loads them into the calling thread, which farm's executor does in the
//! container's init process just before `execve`.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Capability;
use seccompiler::BpfProgram;

use crate::options::SeccompMode;

mod compile;
mod profile;

/// Docker's default profile (moby `profiles/seccomp/default.json`), built in.
pub const DEFAULT_PROFILE: &str = include_str!("../../../seccomp-profiles/default.json");

/// The largest profile file farm reads (the default one is 17 KiB).
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// What [`filters`] calls the built-in profile in errors.
const DEFAULT_PROFILE_NAME: &str = "default (built in)";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    #[error("seccomp profile {path}: {reason}")]
    Profile { path: String, reason: String },
    #[error("reading seccomp profile {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The filters to install, in order, for a container with capabilities `caps`; `None` for
/// `seccomp=unconfined` (and, as Docker, for a profile with no `defaultAction` and no
/// `syscalls`).
pub fn filters(
    mode: &SeccompMode,
    caps: &[Capability],
) -> Result<Option<Vec<BpfProgram>>, SeccompError> {
    match mode {
        SeccompMode::Unconfined => Ok(None),
        SeccompMode::Default => compile_text(DEFAULT_PROFILE, DEFAULT_PROFILE_NAME, caps),
        SeccompMode::Profile(path) => {
            let text = read_profile(path)?;
            compile_text(&text, &path.display().to_string(), caps)
        }
    }
}

fn read_profile(path: &Path) -> Result<String, SeccompError> {
    let read_error = |source| SeccompError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(SeccompError::Profile {
            path: path.display().to_string(),
            reason: format!("larger than {MAX_PROFILE_BYTES} bytes"),
        });
    }
    Ok(text)
}

fn compile_text(
    text: &str,
    name: &str,
    caps: &[Capability],
) -> Result<Option<Vec<BpfProgram>>, SeccompError> {
    let error = |reason: String| SeccompError::Profile {
        path: name.to_string(),
        reason,
    };
    let Some((arch, arch_name)) = compile::HOST_ARCH else {
        return Err(error(format!(
            "seccomp filters are not built for {}: run with --security-opt seccomp=unconfined",
            std::env::consts::ARCH
        )));
    };
    let profile: profile::Profile = text
        .parse()
        .map_err(|e| error(format!("not a Docker seccomp profile: {e}")))?;
    let kernel = running_kernel();
    let host = profile::Host::new(arch_name, caps, kernel);
    compile::compile(&profile, &host, arch).map_err(error)
}

/// The running kernel's version, from uname(2).
fn running_kernel() -> Option<profile::KernelVersion> {
    let uname = rustix::system::uname();
    profile::parse_kernel_version(uname.release().to_str().ok()?)
}

/// Install `filters` on the calling thread, in order. Sets no-new-privileges first (each
/// filter needs it, or CAP_SYS_ADMIN, which a container's init no longer has here).
pub fn install(filters: &[BpfProgram]) -> std::io::Result<()> {
    for (i, filter) in filters.iter().enumerate() {
        seccompiler::apply_filter(filter).map_err(|e| {
            let kind = match &e {
                seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => io.kind(),
                _ => std::io::ErrorKind::Other,
            };
            std::io::Error::new(
                kind,
                format!("seccomp filter {} of {}: {e}", i + 1, filters.len()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
