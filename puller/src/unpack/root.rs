//! Filesystem operations confined to the snapshot root. Every parent folder is resolved
//! with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) from the root fd, so symlinks made
//! by earlier entries (absolute or `..`-laden) resolve inside the root; the final
//! component is then acted on relative to that parent fd without following it.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
    XattrFlags, CWD,
};
use rustix::io::Errno;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const DIR_PATH: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
const DIR_READ: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// Copy buffer for file content.
pub(super) const COPY_BUF: usize = 256 * 1024;

pub(super) fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// The snapshot root, opened once, with a one-entry cache of the last parent folder.
pub(super) struct Root {
    fd: OwnedFd,
    id_base: u32,
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Inodes the layer may still make: one per entry and one per folder made for an entry
    /// (`a/b/c/.../f` makes its folders too; uncounted, a million entries 256 deep would
    /// make 256 million folders, a disk bomb under every byte cap).
    inodes_left: u64,
}

/// The error [`Root::parent`] gives when making a missing folder would pass the inode
/// budget; see [`is_exhausted`].
#[derive(Debug)]
struct Exhausted;

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many entries and folders in one layer")
    }
}

impl std::error::Error for Exhausted {}

/// Whether `error` says the inode budget ran out.
pub(super) fn is_exhausted(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<Exhausted>())
}

impl Root {
    pub(super) fn open(dest: &Path, id_base: u32, max_inodes: u64) -> io::Result<Root> {
        let fd = rfs::open(dest, DIR_READ.difference(OFlags::NOFOLLOW), Mode::empty())?;
        Ok(Root {
            fd,
            id_base,
            cache: None,
            inodes_left: max_inodes,
        })
    }

    /// Take one inode from the budget for an entry; false when none is left.
    pub(super) fn spend_inode(&mut self) -> bool {
        match self.inodes_left.checked_sub(1) {
            Some(left) => {
                self.inodes_left = left;
                true
            }
            None => false,
        }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Forget the cached parent (after anything that may change how paths resolve).
    pub(super) fn invalidate(&mut self) {
        self.cache = None;
    }

    /// The folder `parent` (normalised, `.` for the root) resolved inside the root, created
    /// (mode 0755, owned by id_base) one component at a time where missing.
    pub(super) fn parent(&mut self, parent: &[u8]) -> io::Result<BorrowedFd<'_>> {
        let hit = matches!(&self.cache, Some((path, _)) if path == parent);
        if !hit {
            self.cache = None;
            let fd = match rfs::openat2(&self.fd, os(parent), DIR_PATH, Mode::empty(), RESOLVE) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => self.create_dirs(parent)?,
                Err(e) => return Err(e.into()),
            };
            self.cache = Some((parent.to_vec(), fd));
        }
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("cached above"))
    }

    /// Resolve an existing folder inside the root, creating nothing.
    pub(super) fn existing_dir(&self, path: &[u8]) -> io::Result<OwnedFd> {
        Ok(rfs::openat2(
            &self.fd,
            os(path),
            DIR_PATH,
            Mode::empty(),
            RESOLVE,
        )?)
    }

    /// Make the missing folders of `path` (known not to resolve): find the longest prefix
    /// that resolves (usually all but the last component), then make the rest, each one
    /// relative to the fd of the folder just made (it is empty, so nothing below exists),
    /// instead of resolving every prefix from the root again (O(depth²) lookups, each one
    /// possibly through thousands of components behind a symlink).
    fn create_dirs(&mut self, path: &[u8]) -> io::Result<OwnedFd> {
        let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        let prefix = |n: usize| -> &[u8] {
            let len: usize = components[..n].iter().map(|c| c.len() + 1).sum();
            &path[..len.saturating_sub(1)]
        };
        let open = |n: usize| -> io::Result<Option<OwnedFd>> {
            let at = if n == 0 { &b"."[..] } else { prefix(n) };
            match rfs::openat2(&self.fd, os(at), DIR_PATH, Mode::empty(), RESOLVE) {
                Ok(fd) => Ok(Some(fd)),
                Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        // Whether a prefix resolves is monotone in its length: usually all but the last
        // component do; otherwise a binary search finds the longest, in O(log depth).
        let (mut found, mut missing) = (0, components.len());
        let mut current = None;
        let mut probe = missing - 1;
        while probe > found {
            match open(probe)? {
                Some(fd) => (found, current) = (probe, Some(fd)),
                None => missing = probe,
            }
            probe = found + (missing - found) / 2;
        }
        let existing = found;
        let mut current = match current {
            Some(fd) => fd,
            None => open(existing)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?,
        };
        for component in &components[existing..] {
            if !self.spend_inode() {
                return Err(io::Error::other(Exhausted));
            }
            // Made relative to the resolved fd of the folder above, never by path.
            rfs::mkdirat(&current, os(component), Mode::from_raw_mode(0o700))?;
            let dir = rfs::openat(&current, os(component), DIR_READ, Mode::empty())?;
            let id = Some(self.id_base);
            rfs::fchown(&dir, id.map(Uid::from_raw), id.map(Gid::from_raw))?;
            rfs::fchmod(&dir, Mode::from_raw_mode(0o755))?;
            current = dir;
        }
        Ok(current)
    }
}

/// Remove whatever `name` is in `parent` (a folder recursively); Ok(true) if it was a folder.
pub(super) fn clear(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match rfs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            remove_all_at(parent, name)?;
            Ok(true)
        }
        Ok(_) => {
            rfs::unlinkat(parent, os(name), AtFlags::empty())?;
            Ok(false)
        }
    }
}

/// Remove the tree `name` in `parent`, never following a symlink, with a bounded stack
/// and two fds whatever the depth: a layer can chain folders far deeper than the fd limit
/// or a thread's stack (each entry within max_depth, through symlinks to the bottom made
/// so far). It climbs back with `..`, checking each parent is the folder it came from.
/// Folders an image made unreadable (mode 000) are opened up for the owner first.
pub(crate) fn remove_all_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let mut dir = match open_for_removal(parent, name)? {
        Removal::Dir(dir) => dir,
        Removal::NotDir => return Ok(rfs::unlinkat(parent, os(name), AtFlags::empty())?),
        Removal::Gone => return Ok(()),
    };
    let mut current = Level::read(name.to_vec(), &dir)?;
    let mut above: Vec<Level> = Vec::new();
    loop {
        if let Some(child) = current.subdirs.pop() {
            match open_for_removal(dir.as_fd(), &child)? {
                Removal::Dir(fd) => {
                    let level = Level::read(child, &fd)?;
                    above.push(std::mem::replace(&mut current, level));
                    dir = fd;
                }
                Removal::NotDir => rfs::unlinkat(&dir, os(&child), AtFlags::empty())?,
                Removal::Gone => {}
            }
            continue;
        }
        let Some(up) = above.pop() else { break };
        let parent_dir = rfs::openat(&dir, "..", DIR_READ, Mode::empty())?;
        let stat = rfs::fstat(&parent_dir)?;
        if (stat.st_dev, stat.st_ino) != up.id {
            return Err(io::Error::other(
                "a folder moved while its tree was being removed; removal stopped",
            ));
        }
        rfs::unlinkat(&parent_dir, os(&current.name), AtFlags::REMOVEDIR)?;
        dir = parent_dir;
        current = up;
    }
    drop(dir);
    Ok(rfs::unlinkat(parent, os(name), AtFlags::REMOVEDIR)?)
}

/// One folder on the way down: its name in its parent, its identity, the sub-folders left.
struct Level {
    name: Vec<u8>,
    id: (u64, u64),
    subdirs: Vec<Vec<u8>>,
}

impl Level {
    /// Unlink every non-folder in `dir` and list its sub-folders (read fully first:
    /// unlinking while reading a folder may skip entries).
    fn read(name: Vec<u8>, dir: &OwnedFd) -> io::Result<Level> {
        let stat = rfs::fstat(dir)?;
        let mut subdirs = Vec::new();
        let mut others = Vec::new();
        for entry in rfs::Dir::read_from(dir)? {
            let entry = entry?;
            let child = entry.file_name().to_bytes();
            if child == b"." || child == b".." {
                continue;
            }
            match entry.file_type() {
                FileType::Directory | FileType::Unknown => subdirs.push(child.to_vec()),
                _ => others.push(child.to_vec()),
            }
        }
        for child in others {
            rfs::unlinkat(dir, os(&child), AtFlags::empty())?;
        }
        Ok(Level {
            name,
            id: (stat.st_dev, stat.st_ino),
            subdirs,
        })
    }
}

enum Removal {
    Dir(OwnedFd),
    NotDir,
    Gone,
}

/// Open `name` in `parent` as a folder to empty, never following a symlink; owner rwx is
/// added where missing so that a non-root owner can list and empty it.
fn open_for_removal(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Removal> {
    let open = || rfs::openat(parent, os(name), DIR_READ, Mode::empty());
    let dir = match open() {
        Ok(dir) => dir,
        // A symlink (ELOOP) or anything not a folder: unlink the name itself.
        Err(Errno::LOOP | Errno::NOTDIR) => return Ok(Removal::NotDir),
        Err(Errno::NOENT) => return Ok(Removal::Gone),
        Err(Errno::ACCESS) => {
            // fchmodat follows symlinks, but ELOOP above said this is no symlink.
            let stat = rfs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
                return Ok(Removal::NotDir);
            }
            let mode = Mode::from_raw_mode((stat.st_mode | 0o700) & 0o7777);
            rfs::chmodat(parent, os(name), mode, AtFlags::empty())?;
            open()?
        }
        Err(e) => return Err(e.into()),
    };
    let stat = rfs::fstat(&dir)?;
    if stat.st_mode & 0o700 != 0o700 {
        rfs::fchmod(&dir, Mode::from_raw_mode((stat.st_mode | 0o700) & 0o7777))?;
    }
    Ok(Removal::Dir(dir))
}

/// Remove the tree at `path` (not following a final symlink); missing is fine.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a removable path",
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent = match rfs::open(parent, DIR_PATH, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove_all_at(parent.as_fd(), name.as_bytes())
}

/// Create the regular file `name` in `parent` (0600, replacing what is there) for writing;
/// true when something was replaced (which may change how other paths resolve).
pub(super) fn create_file(
    parent: BorrowedFd<'_>,
    name: &[u8],
) -> io::Result<(std::fs::File, bool)> {
    let flags = OFlags::WRONLY
        .union(OFlags::CREATE)
        .union(OFlags::EXCL)
        .union(OFlags::NOFOLLOW)
        .union(OFlags::CLOEXEC);
    let mode = Mode::from_raw_mode(0o600);
    match rfs::openat(parent, os(name), flags, mode) {
        Ok(fd) => Ok((fd.into(), false)),
        Err(Errno::EXIST) => {
            clear(parent, name)?;
            Ok((rfs::openat(parent, os(name), flags, mode)?.into(), true))
        }
        Err(e) => Err(e.into()),
    }
}

/// Make (or keep) the folder `name` in `parent` and open it for fchown/fchmod/xattrs.
pub(super) fn make_dir(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    match rfs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            let stat = rfs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
                rfs::unlinkat(parent, os(name), AtFlags::empty())?;
                rfs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700))?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(rfs::openat(parent, os(name), DIR_READ, Mode::empty())?)
}

/// Owner and mode of an open file or folder: chown first (it clears setuid), then chmod.
pub(super) fn own_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    rfs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    rfs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

pub(super) fn timestamps(mtime: (i64, u32)) -> Timestamps {
    let time = Timespec {
        tv_sec: mtime.0,
        tv_nsec: mtime.1.into(),
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

pub(super) fn set_xattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    Ok(rfs::fsetxattr(fd, os(name), value, XattrFlags::empty())?)
}

/// Why a copy stopped.
pub(super) enum CopyError {
    /// Reading the source failed (for a layer: the stream is corrupt or over its cap).
    Read(io::Error),
    Write(io::Error),
}

/// Copy `len` bytes from `from` into `to`; Ok(false) if `from` ended early.
pub(super) fn copy_exact(
    mut from: impl Read,
    to: &mut std::fs::File,
    len: u64,
    buf: &mut [u8],
) -> Result<bool, CopyError> {
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        left -= n as u64;
    }
    Ok(true)
}

/// A regular file of a lower snapshot, opened inside that snapshot's root.
pub(super) struct LowerFile {
    pub(super) fd: OwnedFd,
    pub(super) stat: rfs::Stat,
}

/// Find `path` in the lower snapshots `parents` (nearest first). Ok(None) if no parent has
/// it; an error if the nearest one that has it holds something other than a regular file.
pub(super) fn find_lower(
    parents: &[std::path::PathBuf],
    path: &[u8],
) -> io::Result<Option<LowerFile>> {
    let flags = OFlags::RDONLY
        .union(OFlags::NOFOLLOW)
        .union(OFlags::CLOEXEC)
        .union(OFlags::NOCTTY);
    for parent in parents {
        let root = rfs::openat(CWD, parent, DIR_PATH, Mode::empty())?;
        // O_NONBLOCK: a fifo must not block the open; it is refused below anyway.
        match rfs::openat2(
            &root,
            os(path),
            flags.union(OFlags::NONBLOCK),
            Mode::empty(),
            RESOLVE,
        ) {
            Ok(fd) => {
                let stat = rfs::fstat(&fd)?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    return Err(io::Error::other(
                        "it is not a regular file in the lower layer",
                    ));
                }
                return Ok(Some(LowerFile { fd, stat }));
            }
            Err(Errno::NOENT) => continue,
            Err(Errno::LOOP) => {
                return Err(io::Error::other("it is a symlink in the lower layer"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Copy every xattr of `from` onto `to`, except overlayfs' own.
pub(super) fn copy_xattrs(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let mut names = vec![0u8; 64 * 1024];
    let len = match rfs::flistxattr(from, &mut names[..]) {
        Ok(len) => len,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let n = rfs::fgetxattr(from, os(name), &mut value[..])?;
        rfs::fsetxattr(to, os(name), &value[..n], XattrFlags::empty())?;
    }
    Ok(())
}

/// Make the overlayfs whiteout for `name` in `parent`: a 0:0 char device owned by id_base.
pub(super) fn whiteout(parent: BorrowedFd<'_>, name: &[u8], id_base: u32) -> io::Result<()> {
    clear(parent, name)?;
    rfs::mknodat(
        parent,
        os(name),
        FileType::CharacterDevice,
        Mode::empty(),
        rfs::makedev(0, 0),
    )?;
    chown_at(parent, name, id_base, id_base)
}

pub(super) fn chown_at(parent: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    Ok(rfs::chownat(
        parent,
        os(name),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

pub(super) fn times_at(parent: BorrowedFd<'_>, name: &[u8], mtime: (i64, u32)) -> io::Result<()> {
    Ok(rfs::utimensat(
        parent,
        os(name),
        &timestamps(mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Set the mtime of the folder `path` (resolved inside the root again, final component not
/// followed).
pub(super) fn dir_times(root: BorrowedFd<'_>, path: &[u8], mtime: (i64, u32)) -> io::Result<()> {
    let path = if path.is_empty() { &b"."[..] } else { path };
    let dir = rfs::openat2(root, os(path), DIR_READ, Mode::empty(), RESOLVE)?;
    Ok(rfs::futimens(&dir, &timestamps(mtime))?)
}
