//! The root filesystem of one container: an overlay whose lower layers are the image's
//! snapshots, each seen through an idmapped mount that maps the stored ids
//! (`2^31 + n`) to the container's host range, under the container's own upper layer.
//!
//! Everything here runs in the monitor's private mount namespace: no mount of a
//! container ever appears in the host's mount table, so a crash cannot leave one behind.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::userns::{self, IdRange, UsernsError};

mod shifted;

/// Set to `off` to use the shifted-copy fallback instead of idmapped mounts (for kernels
/// that take the idmapped mounts but misbehave with them, and for tests of the fallback).
pub const IDMAP_ENV: &str = "FARM_IDMAP";

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

    let idmapped = if std::env::var(IDMAP_ENV).is_ok_and(|v| v == "off") {
        Err(UsernsError::Other(format!("{IDMAP_ENV}=off")))
    } else {
        attach_idmapped(dir, layers, ids)
    };
    let lower = match idmapped {
        Ok(lower) => lower,
        Err(e) => {
            eprintln!(
                "farm: warning: idmapped mounts are not available ({e}); copying the image with shifted owners instead (slower, uses disk: a kernel >= 5.19 avoids it)"
            );
            rootfs_fallback(dir, layers, ids)?
        }
    };
    let mut lower = lower;
    if lower.is_empty() {
        let empty = dir.join("l").join("empty");
        builder.create(&empty).map_err(io(&empty))?;
        lower.push("l/empty".to_owned());
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

/// Detach the overlay and the idmapped layers (in the monitor's namespace) so that the
/// container's folder can be removed.
pub fn unmount(dir: &Path) {
    let detach = rustix::mount::UnmountFlags::DETACH;
    let _ = rustix::mount::unmount(dir.join("rootfs"), detach);
    if let Ok(entries) = std::fs::read_dir(dir.join("l")) {
        for entry in entries.flatten() {
            let _ = rustix::mount::unmount(entry.path(), detach);
        }
    }
}

/// Attach an idmapped clone of each layer at `<dir>/l/<n>`; the overlay's lowerdirs.
fn attach_idmapped(
    dir: &Path,
    layers: &[PathBuf],
    ids: &IdRange,
) -> Result<Vec<String>, UsernsError> {
    let userns = userns::store_userns(ids)?;
    let mut lower = Vec::with_capacity(layers.len());
    for (n, layer) in layers.iter().enumerate() {
        let target = dir.join("l").join(n.to_string());
        match std::fs::DirBuilder::new().mode(0o700).create(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(UsernsError::Io {
                    path: target,
                    source,
                })
            }
        }
        let tree = userns::idmapped_clone(layer, &userns)?;
        rustix::mount::move_mount(
            &tree,
            "",
            rustix::fs::CWD,
            &target,
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| UsernsError::Idmap {
            path: target.clone(),
            source: e.into(),
        })?;
        lower.push(format!("l/{n}"));
    }
    Ok(lower)
}

/// Copies of the layers with shifted owners at `<dir>/c/<n>`.
fn rootfs_fallback(
    dir: &Path,
    layers: &[PathBuf],
    ids: &IdRange,
) -> Result<Vec<String>, RootfsError> {
    let copies = dir.join("c");
    let _ = std::fs::remove_dir_all(&copies);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&copies)
        .map_err(io(&copies))?;
    let mut lower = Vec::with_capacity(layers.len());
    for (n, layer) in layers.iter().enumerate() {
        let target = copies.join(n.to_string());
        shifted::copy(layer, &target, ids).map_err(io(layer))?;
        lower.push(format!("c/{n}"));
    }
    Ok(lower)
}
