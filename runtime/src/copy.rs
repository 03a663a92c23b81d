//! `farm cp` between a container and the host. Every container path is resolved from one
//! fd of the container's root (a running container's: its init's `/proc/<pid>/root`, so
//! volumes and farm's binds are seen as inside; a stopped one's: its overlay, mounted again
//! in this process's private mount namespace while its `monitor.lock` is held, so nothing
//! starts it meanwhile; binds are not mounted then) with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS),
//! and every entry below is opened from its parent's fd with O_NOFOLLOW: a symlink the
//! container swaps in at any moment resolves inside the container, never on the host (the
//! docker cp CVE-2018-15664 race). Ownership goes through the container's id range:
//! files copied in belong to the container's root (as docker), files copied out keep their
//! ids as the container sees them.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

use crate::layout::Layout;
use crate::state::{ContainerRecord, Status};
use crate::RuntimeError;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

fn err(context: impl std::fmt::Display) -> impl FnOnce(Errno) -> RuntimeError {
    let context = context.to_string();
    move |e| RuntimeError::Io {
        context,
        source: e.into(),
    }
}

/// The container's root and id range.
struct Container {
    root: OwnedFd,
    uid: u32,
    gid: u32,
    size: u32,
    /// A stopped container's flocked `monitor.lock`, held while its root is used.
    _lock: Option<std::fs::File>,
}

impl Container {
    fn open(root: &Path, record: &ContainerRecord) -> Result<Container, RuntimeError> {
        let layout = Layout::new(root);
        if record.status == Status::Exited && !crate::lifecycle::monitor_alive(&layout, &record.id)
        {
            return Container::open_stopped(&layout, record);
        }
        let check = || -> Result<i32, RuntimeError> {
            let not_running = || {
                RuntimeError::Other(format!(
                    "container {} is between two states (being started or restarted): try again",
                    record.name
                ))
            };
            if record.status != Status::Running
                || !crate::lifecycle::monitor_alive(&layout, &record.id)
            {
                return Err(not_running());
            }
            let pid = record.pid.ok_or_else(not_running)?;
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let marker = format!("/farm/{}", record.id);
            if !cgroup.lines().any(|line| line.ends_with(&marker)) {
                return Err(not_running());
            }
            Ok(pid)
        };
        let pid = check()?;
        let path = format!("/proc/{pid}/root");
        let fd = rfs::open(&path, OFlags::PATH | DIR, Mode::empty())
            .map_err(err("opening the container's root"))?;
        // The pid was still the container's once its root was held.
        check()?;
        Ok(Container {
            root: fd,
            uid: record.ids.uid,
            gid: record.ids.gid,
            size: record.ids.size,
            _lock: None,
        })
    }

    /// A stopped container's root: its `monitor.lock` taken (no monitor may start it while
    /// it is copied from or to), then its overlay mounted as the monitor mounts it, in a
    /// mount namespace of this process alone (the mount goes when the process ends). The
    /// process must be single-threaded.
    fn open_stopped(layout: &Layout, record: &ContainerRecord) -> Result<Container, RuntimeError> {
        let path = layout.monitor_lock(&record.id);
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| RuntimeError::Path {
                path: path.clone(),
                source,
            })?;
        let busy = || {
            RuntimeError::Other(format!(
                "container {} is being started by another farm command: try again",
                record.name
            ))
        };
        rfs::flock(&lock, rfs::FlockOperation::NonBlockingLockExclusive).map_err(|_| busy())?;
        let current = crate::state::StateStore::open(layout.root())?.get(&record.id)?;
        if current.status != Status::Exited {
            return Err(busy());
        }
        crate::rootfs::private_mount_namespace()?;
        let dir = layout.container(&record.id);
        let rootfs = crate::rootfs::mount(&dir, &current.image.layers, &current.ids)?;
        let fd = rfs::open(&rootfs, OFlags::PATH | DIR, Mode::empty())
            .map_err(err("opening the container's root filesystem"))?;
        Ok(Container {
            root: fd,
            uid: current.ids.uid,
            gid: current.ids.gid,
            size: current.ids.size,
            _lock: Some(lock),
        })
    }

    /// `path` opened from the container's root, inside it whatever its symlinks say.
    fn resolve(&self, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() { "." } else { relative };
        rfs::openat2(
            &self.root,
            relative,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
    }

    /// A host id of the container's range as the container sees it (`None` outside).
    fn inside(&self, host: u32, base: u32) -> Option<u32> {
        host.checked_sub(base).filter(|id| *id < self.size)
    }
}

/// `farm cp CONTAINER:SRC DEST`: a file or folder of the container to the host (into
/// DEST when it is a folder, else as DEST). Symlinks below SRC are copied as symlinks.
pub fn from_container(
    root: &Path,
    record: &ContainerRecord,
    src: &str,
    dest: &Path,
) -> Result<(), RuntimeError> {
    let container = Container::open(root, record)?;
    let fd = container
        .resolve(src, OFlags::PATH)
        .map_err(err(format!("{src} in container {}", record.name)))?;
    let name = Path::new(src)
        .file_name()
        .map_or_else(|| "root".into(), |n| n.to_owned());
    let (parent, name) = if dest.is_dir() {
        (dest.to_owned(), name)
    } else {
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = parent.unwrap_or(Path::new(".")).to_owned();
        let name = dest.file_name().map_or(name, |n| n.to_owned());
        (parent, name)
    };
    let host_dir = rfs::open(&parent, DIR, Mode::empty())
        .map_err(err(format!("host folder {}", parent.display())))?;
    // Reopen what the path led to as a real file or folder (the O_PATH fd pins it).
    let stat = rfs::fstat(&fd).map_err(err(src))?;
    let entry = Entry { stat, fd: &fd };
    out(&container, entry, host_dir.as_fd(), &name)
}

struct Entry<'a> {
    stat: rfs::Stat,
    fd: &'a OwnedFd,
}

/// Copy one container entry (file, folder or symlink) to `name` in the host folder.
fn out(
    container: &Container,
    entry: Entry<'_>,
    host_dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
) -> Result<(), RuntimeError> {
    let uid = container
        .inside(entry.stat.st_uid, container.uid)
        .unwrap_or(0);
    let gid = container
        .inside(entry.stat.st_gid, container.gid)
        .unwrap_or(0);
    let mode = Mode::from_raw_mode(entry.stat.st_mode & 0o7777);
    let here = || name.to_string_lossy().into_owned();
    match FileType::from_raw_mode(entry.stat.st_mode) {
        FileType::RegularFile => out_file(entry.fd, host_dir, name, (uid, gid), mode),
        FileType::Directory => {
            match rfs::mkdirat(host_dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err(format!("making {}", here()))(e)),
            }
            let dir = rfs::openat(host_dir, name, DIR | OFlags::NOFOLLOW, Mode::empty())
                .map_err(err(format!("host folder {}", here())))?;
            let source = rfs::openat(entry.fd, ".", DIR, Mode::empty()).map_err(err(here()))?;
            out_children(container, &source, &dir)?;
            rfs::fchown(&dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(err(here()))?;
            rfs::fchmod(&dir, mode).map_err(err(here()))
        }
        FileType::Symlink => {
            let target = rfs::readlinkat(entry.fd, "", Vec::new()).map_err(err(here()))?;
            let _ = rfs::unlinkat(host_dir, name, AtFlags::empty());
            rfs::symlinkat(target.as_c_str(), host_dir, name).map_err(err(here()))?;
            rfs::chownat(
                host_dir,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(err(here()))
        }
        // Devices, fifos and sockets are not copied (docker's tar would hold nodes).
        _ => Ok(()),
    }
}

/// A regular file of the container (its O_PATH fd) to `name` in the host folder.
fn out_file(
    fd: &OwnedFd,
    host_dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    (uid, gid): (u32, u32),
    mode: Mode,
) -> Result<(), RuntimeError> {
    let here = || name.to_string_lossy().into_owned();
    // Reopening an O_PATH fd through /proc/self/fd opens that very inode.
    let reopened = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(fd));
    let mut from = std::fs::File::open(&reopened).map_err(|source| RuntimeError::Io {
        context: format!("reading {}", here()),
        source,
    })?;
    let to = rfs::openat(
        host_dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        mode,
    )
    .map_err(err(format!("writing {}", here())))?;
    let mut to = std::fs::File::from(to);
    copy_bytes(&mut from, &mut to, &here())?;
    rfs::fchown(&to, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(err(here()))?;
    rfs::fchmod(&to, mode).map_err(err(here()))
}

fn out_children(
    container: &Container,
    source: &OwnedFd,
    dir: &OwnedFd,
) -> Result<(), RuntimeError> {
    let entries = rfs::Dir::read_from(source).map_err(err("listing a folder"))?;
    for child in entries {
        let child = child.map_err(err("listing a folder"))?;
        let name = child.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = std::ffi::OsStr::new(std::str::from_utf8(name).unwrap_or("?")).to_owned();
        let fd = match rfs::openat(
            source,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Removed by the container meanwhile.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(err(name.to_string_lossy())(e)),
        };
        let stat = rfs::fstat(&fd).map_err(err(name.to_string_lossy()))?;
        out(container, Entry { stat, fd: &fd }, dir.as_fd(), &name)?;
    }
    Ok(())
}

fn copy_bytes(from: &mut impl Read, to: &mut impl Write, what: &str) -> Result<(), RuntimeError> {
    std::io::copy(from, to)
        .map(|_| ())
        .map_err(|source| RuntimeError::Io {
            context: format!("copying {what}"),
            source,
        })
}

/// `farm cp SRC CONTAINER:DEST`: a host file or folder into the container (into DEST when
/// it is a folder there, else as DEST, whose parent must exist), owned by the container's
/// root. A symlink at the final name in the container is refused, never followed.
pub fn to_container(
    root: &Path,
    record: &ContainerRecord,
    src: &Path,
    dest: &str,
) -> Result<(), RuntimeError> {
    let container = Container::open(root, record)?;
    let src_name = src
        .file_name()
        .ok_or_else(|| RuntimeError::Other(format!("{}: name a file or folder", src.display())))?
        .to_owned();
    let (dir, name) = match container.resolve(dest, DIR) {
        Ok(dir) => (dir, src_name),
        Err(Errno::NOTDIR | Errno::NOENT | Errno::LOOP) => {
            let (parent, name) = match dest.trim_end_matches('/').rsplit_once('/') {
                Some((parent, name)) => (if parent.is_empty() { "/" } else { parent }, name),
                None => ("/", dest),
            };
            let dir = container
                .resolve(parent, DIR)
                .map_err(err(format!("folder {parent} in container {}", record.name)))?;
            (dir, std::ffi::OsString::from(name))
        }
        Err(e) => return Err(err(format!("{dest} in container {}", record.name))(e)),
    };
    into(&container, src, &dir, &name)
}

/// Copy the host entry `src` to `name` in the container folder `dir`.
fn into(
    container: &Container,
    src: &Path,
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
) -> Result<(), RuntimeError> {
    let owner = (
        Some(Uid::from_raw(container.uid)),
        Some(Gid::from_raw(container.gid)),
    );
    let meta = std::fs::symlink_metadata(src).map_err(|source| RuntimeError::Path {
        path: src.to_owned(),
        source,
    })?;
    let mode =
        Mode::from_raw_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777);
    let here = || format!("{} in the container", name.to_string_lossy());
    let symlink_refused = |e: Errno| {
        match e {
        Errno::LOOP => RuntimeError::Other(format!(
            "{} is a symlink in the container: farm cp does not follow it; remove it first (`farm exec … rm`)",
            name.to_string_lossy()
        )),
        e => err(here())(e),
    }
    };
    if meta.is_dir() {
        match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(err(format!("making {}", here()))(e)),
        }
        let child = rfs::openat(dir, name, DIR | OFlags::NOFOLLOW, Mode::empty())
            .map_err(symlink_refused)?;
        for entry in std::fs::read_dir(src).map_err(|source| RuntimeError::Path {
            path: src.to_owned(),
            source,
        })? {
            let entry = entry.map_err(|source| RuntimeError::Path {
                path: src.to_owned(),
                source,
            })?;
            into(container, &entry.path(), &child, &entry.file_name())?;
        }
        rfs::fchown(&child, owner.0, owner.1).map_err(err(here()))?;
        return rfs::fchmod(&child, mode).map_err(err(here()));
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(|source| RuntimeError::Path {
            path: src.to_owned(),
            source,
        })?;
        let _ = rfs::unlinkat(dir, name, AtFlags::empty());
        rfs::symlinkat(&target, dir, name).map_err(err(here()))?;
        return rfs::chownat(dir, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(err(here()));
    }
    if !meta.is_file() {
        return Ok(());
    }
    let mut from = std::fs::File::open(src).map_err(|source| RuntimeError::Path {
        path: src.to_owned(),
        source,
    })?;
    let to = rfs::openat(
        dir,
        name,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::TRUNC
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK,
        mode,
    )
    .map_err(symlink_refused)?;
    let stat = rfs::fstat(&to).map_err(err(here()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(RuntimeError::Other(format!(
            "{} is not a regular file in the container",
            here()
        )));
    }
    let mut to = std::fs::File::from(to);
    copy_bytes(&mut from, &mut to, &here())?;
    rfs::fchown(&to, owner.0, owner.1).map_err(err(here()))?;
    rfs::fchmod(&to, mode).map_err(err(here()))
}
