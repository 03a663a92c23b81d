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
            let kernel = rustix::system::uname()
                .release()
                .to_str()
                .ok()
                .and_then(crate::info::kernel_version);
            let fs = layers
                .first()
                .and_then(|l| rustix::fs::statfs(l).ok())
                .map(|s| s.f_type);
            eprintln!(
                "farm: warning: idmapped mounts are not available ({e}): {}; copying the image with shifted owners instead (slower, uses disk)",
                fallback_cause(&e, kernel, fs)
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

/// Why idmapped layers failed, in words a farmer can act on: the kernel when it is too
/// old for them (5.12) or for overlayfs on top of them (5.19), else the filesystem the
/// farm root is on (tmpfs has them from 6.3; some filesystems never).
fn fallback_cause(
    error: &UsernsError,
    kernel: Option<(u32, u32)>,
    fs_magic: Option<i64>,
) -> String {
    if error.to_string().contains(IDMAP_ENV) {
        return format!("{IDMAP_ENV}=off asks for the copy");
    }
    let release = kernel.map_or("unknown".to_owned(), |(a, b)| format!("{a}.{b}"));
    let older = |v: (u32, u32)| kernel.is_some_and(|k| k < v);
    if older((5, 12)) {
        return format!(
            "the kernel ({release}) has no idmapped mounts; Linux 5.12 or later has them"
        );
    }
    if older((5, 19)) {
        return format!(
            "the kernel ({release}) cannot put overlayfs on idmapped layers; Linux 5.19 or later can"
        );
    }
    const TMPFS: i64 = 0x0102_1994;
    let known: &[(i64, &str)] = &[
        (0xEF53, "ext4"),
        (0x5846_5342, "xfs"),
        (0x9123_683E, "btrfs"),
        (0xF2F5_2010, "f2fs"),
        (TMPFS, "tmpfs"),
        (0x794C_7630, "overlayfs"),
        (0x0102_1997, "9p"),
        (0x6969, "nfs"),
        (0x6573_5546, "fuse"),
        (0x2FC1_2FC1, "zfs"),
        (0xFF53_4D42, "cifs"),
    ];
    let name = fs_magic.and_then(|m| known.iter().find(|(k, _)| *k == m).map(|(_, n)| *n));
    let advice = "put the farm root (--root) on ext4, xfs or btrfs";
    match (fs_magic, name) {
        (Some(TMPFS), _) if older((6, 3)) => format!(
            "the farm root is on tmpfs, which has idmapped mounts from Linux 6.3 (this kernel is {release}); {advice}"
        ),
        (_, Some(fs @ ("ext4" | "xfs" | "btrfs" | "f2fs" | "tmpfs"))) => {
            format!("the kernel ({release}) refused them on {fs}, which supports them")
        }
        (_, Some(fs)) => format!("the farm root is on {fs}, which has no idmapped mounts; {advice}"),
        (Some(magic), None) => format!(
            "the farm root's filesystem (type {magic:#x}) may not support idmapped mounts; {advice}"
        ),
        (None, None) => format!("the kernel ({release}) refused them"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(kernel: (u32, u32), fs: i64) -> String {
        let e = UsernsError::Other("Invalid argument".into());
        fallback_cause(&e, Some(kernel), Some(fs))
    }

    #[test]
    fn the_fallback_names_the_kernel_or_the_filesystem_that_is_the_cause() {
        assert!(cause((5, 10), 0xEF53).contains("kernel (5.10) has no idmapped mounts"));
        assert!(cause((5, 15), 0xEF53).contains("5.19 or later"));
        let tmpfs = cause((6, 1), 0x0102_1994);
        assert!(
            tmpfs.contains("tmpfs") && tmpfs.contains("6.3") && tmpfs.contains("6.1"),
            "{tmpfs}"
        );
        assert!(!tmpfs.contains("5.19"), "{tmpfs}");
        assert!(cause((6, 8), 0x0102_1994).contains("refused them on tmpfs"));
        assert!(cause((6, 1), 0x6969).contains("on nfs, which has no idmapped mounts"));
        assert!(cause((6, 1), 0x1234).contains("type 0x1234"));
        assert!(cause((6, 1), 0xEF53).contains("refused them on ext4"));
        let off = UsernsError::Other(format!("{IDMAP_ENV}=off"));
        assert!(fallback_cause(&off, Some((6, 1)), None).contains("asks for the copy"));
    }
}
