//! A read-only view over a folder of the container's `/proc`, put in place after
//! libcontainer created the container and before its process starts.
//!
//! farm puts no spec mount under /proc (`spec::mounts` and `spec::extras` refuse targets
//! there, resolved or not; libcontainer 0.7 checks only proc- and sysfs-typed mounts there,
//! not binds or tmpfs as runc does), so a view such as the NVIDIA toolkit's
//! `/proc/driver/nvidia` (only the given GPUs' folders, `params` edited) is not a spec
//! mount. farm builds the view on the host as a detached tmpfs (`fsopen`/`fsmount`), fills
//! it through its fd, makes it read-only, clones the host folders to show in it
//! (`open_tree`, read-only, nosuid, nodev, noexec), and only then enters the container's
//! mount namespace from a thread of its own (`unshare(CLONE_FS)`, `setns`) to attach them
//! with `move_mount`. Nothing runs inside the container and no path is resolved by string:
//! every target is an fd found with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS) from the
//! container's root before its process exists.
//!
//! Where the container's /proc lacks the folder (a test's fake driver tree on a host with no
//! driver), the view is attached one level up, with the folder inside it.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree, FsMountFlags,
    FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

use crate::error::RuntimeError;

/// What a view holds, every path relative to [`ProcView::path`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcView {
    /// The folder covered, absolute, under /proc (`/proc/driver/nvidia`).
    pub path: String,
    /// Files written with these contents (0444).
    pub files: Vec<(String, Vec<u8>)>,
    /// Host files or folders shown read-only at these places.
    pub binds: Vec<(PathBuf, String)>,
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

fn errno(context: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RuntimeError {
    let context = context.into();
    move |e| RuntimeError::Io {
        context,
        source: e.into(),
    }
}

/// A relative path with only normal components (no `..`, no root, not empty).
fn relative(path: &str) -> Result<&str, RuntimeError> {
    let normal = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if normal {
        Ok(path)
    } else {
        Err(RuntimeError::Other(format!(
            "a /proc view entry must be a plain relative path, not {path:?}"
        )))
    }
}

/// Make `path`'s folders under `dir` (0555) and return the last one.
fn make_dirs(dir: &OwnedFd, path: &str) -> Result<OwnedFd, RuntimeError> {
    let mut current = rustix::fs::openat(
        dir,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno("opening the view"))?;
    for part in Path::new(path).iter() {
        match rustix::fs::mkdirat(&current, part, Mode::from_raw_mode(0o555)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(errno(format!("making {path} in the view"))(e)),
        }
        current = rustix::fs::openat(
            &current,
            part,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno(format!("opening {path} in the view")))?;
    }
    Ok(current)
}

/// Create the file `path` under `tmpfs` (its folders too) with `contents`, mode 0444.
fn write_file(tmpfs: &OwnedFd, path: &str, contents: &[u8]) -> Result<OwnedFd, RuntimeError> {
    let parent = match Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => make_dirs(tmpfs, p.to_str().unwrap_or(""))?,
        _ => make_dirs(tmpfs, ".")?,
    };
    let name = Path::new(path).file_name().unwrap_or_default();
    let fd = rustix::fs::openat(
        &parent,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o444),
    )
    .map_err(errno(format!("writing {path} in the view")))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(contents)
        .map_err(io_error(format!("writing {path} in the view")))?;
    // An O_PATH handle on the same file, to mount onto after the view is attached.
    let handle = rustix::fs::openat(
        &parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(format!("opening {path} in the view")))?;
    Ok(handle)
}

/// A detached, read-only clone of the host file or folder `source`.
fn clone_read_only(source: &Path) -> Result<OwnedFd, RuntimeError> {
    let tree = open_tree(
        rustix::fs::CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(errno(format!("cloning {}", source.display())))?;
    super::userns::set_mount_attr(
        &tree,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        None,
    )
    .map_err(io_error(format!(
        "making the clone of {} read-only",
        source.display()
    )))?;
    Ok(tree)
}

/// `path` under `root`, never following a symlink (the container's /proc is its own
/// procfs; nothing of the image is on the way).
fn resolve(root: &OwnedFd, path: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Everything prepared on the host side, then attached inside.
struct Prepared {
    /// The read-only tmpfs, detached.
    tmpfs: OwnedFd,
    /// Where it goes in the container (an O_PATH fd under the container's root).
    target: OwnedFd,
    /// (detached clone, O_PATH fd of its mount point inside the tmpfs).
    binds: Vec<(OwnedFd, OwnedFd)>,
}

fn prepare(pid: i32, view: &ProcView) -> Result<Prepared, RuntimeError> {
    let inside = view
        .path
        .strip_prefix("/proc/")
        .map(relative)
        .transpose()?
        .ok_or_else(|| {
            RuntimeError::Other(format!("a /proc view must be under /proc: {}", view.path))
        })?;
    let root = rustix::fs::open(
        format!("/proc/{pid}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(format!(
        "opening the root of container process {pid}"
    )))?;
    let covered = format!("proc/{inside}");
    let (target, prefix) = match resolve(&root, &covered) {
        Ok(fd) => (fd, String::new()),
        Err(rustix::io::Errno::NOENT) => {
            let parent = Path::new(&covered)
                .parent()
                .and_then(Path::to_str)
                .filter(|p| *p != "proc")
                .ok_or_else(|| RuntimeError::Other(format!("no {} to cover", view.path)))?;
            let name = Path::new(&covered).file_name().unwrap_or_default();
            let fd = resolve(&root, parent)
                .map_err(errno(format!("finding /{parent} in the container")))?;
            (fd, format!("{}/", name.to_string_lossy()))
        }
        Err(e) => return Err(errno(format!("finding {} in the container", view.path))(e)),
    };

    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(errno("fsopen tmpfs"))?;
    for (key, value) in [("mode", "0555"), ("size", "1m"), ("nr_inodes", "4096")] {
        fsconfig_set_string(&fs, key, value).map_err(errno(format!("tmpfs option {key}")))?;
    }
    fsconfig_create(&fs).map_err(errno("creating the tmpfs"))?;
    let tmpfs = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(errno("mounting the tmpfs"))?;
    if !prefix.is_empty() {
        make_dirs(&tmpfs, prefix.trim_end_matches('/'))?;
    }
    for (path, contents) in &view.files {
        write_file(&tmpfs, &format!("{prefix}{}", relative(path)?), contents)?;
    }
    let mut binds = Vec::new();
    for (source, path) in &view.binds {
        let path = format!("{prefix}{}", relative(path)?);
        let clone = clone_read_only(source)?;
        let point = if source.is_dir() {
            make_dirs(&tmpfs, &path)?
        } else {
            write_file(&tmpfs, &path, b"")?
        };
        binds.push((clone, point));
    }
    super::userns::set_mount_attr(&tmpfs, MountAttrFlags::MOUNT_ATTR_RDONLY, None)
        .map_err(io_error("making the view read-only"))?;
    Ok(Prepared {
        tmpfs,
        target,
        binds,
    })
}

fn attach(from: &OwnedFd, to: &OwnedFd) -> rustix::io::Result<()> {
    move_mount(
        from.as_fd(),
        "",
        to.as_fd(),
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// Put `view` in place in the container whose init is `pid` (created, not started).
pub fn install(pid: i32, view: &ProcView) -> Result<(), RuntimeError> {
    let prepared = prepare(pid, view)?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(io_error(format!("opening the mount namespace of {pid}")))?;
    let path = view.path.clone();
    // setns(CLONE_NEWNS) changes the calling thread only, and only once it no longer shares
    // its filesystem context: a thread of its own that ends with the work.
    std::thread::spawn(move || -> Result<(), RuntimeError> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
            .map_err(|e| io_error("unshare(CLONE_FS)")(e.into()))?;
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
            io_error(format!(
                "entering the mount namespace of {pid} (fd {})",
                ns.as_raw_fd()
            ))(e.into())
        })?;
        attach(&prepared.tmpfs, &prepared.target)
            .map_err(errno(format!("mounting the view over {path}")))?;
        for (clone, point) in &prepared.binds {
            attach(clone, point).map_err(errno(format!("mounting into the view of {path}")))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| RuntimeError::Other("the /proc view thread panicked".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_plain_relative_paths() {
        assert!(relative("gpus/0000:17:00.0").is_ok());
        assert!(relative("params").is_ok());
        for bad in ["", "/etc", "../x", "gpus/../../x", "./x"] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_view_outside_proc_is_refused_before_anything_is_touched() {
        let view = ProcView {
            path: "/etc/nvidia".into(),
            ..ProcView::default()
        };
        let err = install(std::process::id() as i32, &view).unwrap_err();
        assert!(err.to_string().contains("under /proc"), "{err}");
    }
}
