//! The root filesystem of one container: an overlay whose lower layers are the image's
//! snapshots, each seen through an idmapped mount that maps the stored ids
//! (`2^31 + n`) to the container's host range, under the container's own upper layer.
//!
//! Everything here runs in the monitor's private mount namespace: no mount of a
//! container ever appears in the host's mount table, so a crash cannot leave one behind.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::userns::{self, IdRange, UsernsError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootfsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting the overlay root filesystem at {path}: {source}")]
    Overlay {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Userns(#[from] UsernsError),
    #[error("the image has more layers ({0}) than an overlay mount takes")]
    TooManyLayers(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Enter a new mount namespace in which nothing propagates to or from the host.
/// The calling process must be single-threaded.
pub fn private_mount_namespace() -> Result<(), RootfsError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| io(Path::new("unshare(CLONE_NEWNS)"))(e.into()))?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(|e| io(Path::new("/"))(e.into()))
}

/// Mount the overlay of `layers` (bottom first) at `<dir>/rootfs` with `<dir>/upper` as
/// its writable layer; returns the mount point. The upper layer's root is owned by the
/// container's root.
pub fn mount(dir: &Path, layers: &[PathBuf], ids: &IdRange) -> Result<PathBuf, RootfsError> {
    const MAX_LAYERS: usize = 500;
    if layers.len() > MAX_LAYERS {
        return Err(RootfsError::TooManyLayers(layers.len()));
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    for sub in ["upper", "work", "rootfs", "l"] {
        let path = dir.join(sub);
        match builder.create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    let upper = dir.join("upper");
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755)).map_err(io(&upper))?;
    rustix::fs::chown(
        &upper,
        Some(rustix::fs::Uid::from_raw(ids.uid)),
        Some(rustix::fs::Gid::from_raw(ids.gid)),
    )
    .map_err(|e| io(&upper)(e.into()))?;

    let userns = userns::store_userns(ids)?;
    let mut lower = Vec::with_capacity(layers.len());
    for (n, layer) in layers.iter().enumerate() {
        let target = dir.join("l").join(n.to_string());
        match builder.create(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&target)(e)),
        }
        let tree = userns::idmapped_clone(layer, &userns)?;
        rustix::mount::move_mount(
            &tree,
            "",
            rustix::fs::CWD,
            &target,
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| io(&target)(e.into()))?;
        lower.push(format!("l/{n}"));
    }
    if lower.is_empty() {
        lower.push("l".to_owned());
    }
    lower.reverse();
    // Relative paths keep the option string short (the kernel takes one page); the
    // monitor is single-threaded, so changing its cwd for the call is safe.
    let options = format!("lowerdir={},upperdir=upper,workdir=work", lower.join(":"));
    let options = std::ffi::CString::new(options).expect("layer paths have no NUL");
    let previous = std::env::current_dir().map_err(io(Path::new(".")))?;
    std::env::set_current_dir(dir).map_err(io(dir))?;
    let mounted = rustix::mount::mount(
        "overlay",
        "rootfs",
        "overlay",
        rustix::mount::MountFlags::NODEV,
        Some(options.as_c_str()),
    );
    std::env::set_current_dir(&previous).map_err(io(&previous))?;
    let rootfs = dir.join("rootfs");
    mounted.map_err(|e| RootfsError::Overlay {
        path: rootfs.clone(),
        source: e.into(),
    })?;
    Ok(rootfs)
}
