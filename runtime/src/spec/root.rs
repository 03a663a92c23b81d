//! The image's root filesystem as the spec builder sees it: every path is resolved from
//! one fd of the merged rootfs with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so
//! an image's symlinks (absolute, `..`-laden, to the host's /etc) resolve inside the root
//! and never on the host. Folders and files made here belong to the container's root
//! (host `ids.uid`/`ids.gid`).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

pub(crate) const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const PATH_FLAGS: OFlags = OFlags::PATH.union(OFlags::CLOEXEC);
const DIR_PATH: OFlags = PATH_FLAGS.union(OFlags::DIRECTORY);
const DIR_NOFOLLOW: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Lexically clean an absolute container path (`filepath.Clean`): no empty, `.` or `..`
/// components (`..` at the root stays at the root). `None` when it is not absolute or
/// holds a NUL.
pub(crate) fn clean(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether the clean absolute path `path` is `dir` or below it.
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// `path` relative to the root fd (`.` for the root itself).
fn rel(path: &str) -> &OsStr {
    let trimmed = path.trim_start_matches('/');
    OsStr::new(if trimmed.is_empty() { "." } else { trimmed })
}

/// What [`Root::read_file`] found.
#[derive(Debug)]
pub(crate) enum ReadFile {
    /// The content, at most the limit.
    Content(Vec<u8>),
    /// Nothing there (or the path leads nowhere: a missing parent, a symlink loop).
    Missing,
    /// Something that is not a regular file (fifo, device, folder, socket).
    NotRegular,
    /// A regular file over the limit.
    TooBig(u64),
}

/// The merged rootfs of one container, opened once.
pub(crate) struct Root {
    fd: OwnedFd,
    /// The rootfs as the kernel names it (from /proc/self/fd): resolved paths are read
    /// back relative to it.
    host_path: PathBuf,
    owner: (u32, u32),
}

impl Root {
    /// Open `rootfs`; made folders and files get host owner `uid:gid` (container root).
    pub(crate) fn open(rootfs: &Path, uid: u32, gid: u32) -> io::Result<Root> {
        let fd = rfs::open(
            rootfs,
            DIR_NOFOLLOW.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        )?;
        let host_path = fd_path(fd.as_fd())?;
        Ok(Root {
            fd,
            host_path,
            owner: (uid, gid),
        })
    }

    /// Open `path` (following symlinks inside the root) with `flags`.
    pub(crate) fn open_at(&self, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        rfs::openat2(&self.fd, rel(path), flags, Mode::empty(), RESOLVE)
    }

    /// Read the regular file at `path` (e.g. /etc/passwd), at most `limit` bytes, never
    /// blocking on a fifo and never leaving the root.
    pub(crate) fn read_file(&self, path: &str, limit: u64) -> io::Result<ReadFile> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match self.open_at(path, flags) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(ReadFile::Missing),
            // A fifo opened O_RDONLY|O_NONBLOCK succeeds; a socket fails with ENXIO.
            Err(Errno::NXIO) => return Ok(ReadFile::NotRegular),
            Err(e) => return Err(e.into()),
        };
        let stat = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(ReadFile::NotRegular);
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > limit {
            return Ok(ReadFile::TooBig(size));
        }
        let mut content = Vec::with_capacity(size as usize);
        // The file may grow after fstat: never read past limit + 1.
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut content)?;
        if content.len() as u64 > limit {
            return Ok(ReadFile::TooBig(content.len() as u64));
        }
        Ok(ReadFile::Content(content))
    }

    /// The in-root path (clean, absolute) an fd opened inside this root refers to.
    pub(crate) fn path_of(&self, fd: BorrowedFd<'_>) -> io::Result<String> {
        let path = fd_path(fd)?;
        let inner = path.strip_prefix(&self.host_path).map_err(|_| {
            io::Error::other(format!(
                "{} resolved outside the root filesystem {}",
                path.display(),
                self.host_path.display()
            ))
        })?;
        let inner = inner
            .to_str()
            .ok_or_else(|| io::Error::other(format!("{} is not UTF-8", inner.display())))?;
        Ok(clean(&format!("/{inner}")).unwrap_or_else(|| "/".to_owned()))
    }

    /// Make the folder `path` (clean, absolute) and its missing parents inside the root,
    /// following existing symlinks only inside it (a dangling one is made to lead to a
    /// new folder, as docker's MkdirAll does); returns an `O_PATH` fd of the folder.
    pub(crate) fn make_dirs(&self, path: &str) -> io::Result<OwnedFd> {
        let mut hops = 0;
        self.make_dirs_counting(path, &mut hops)
    }

    fn make_dirs_counting(&self, path: &str, hops: &mut u32) -> io::Result<OwnedFd> {
        match self.open_at(path, DIR_PATH) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let (parent, name) = split(path);
        let parent = self.make_dirs_counting(parent, hops)?;
        match rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                let dir = rfs::openat(&parent, name, DIR_NOFOLLOW, Mode::empty())?;
                self.own(&dir, 0o755)?;
                return Ok(dir);
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // The name exists but did not resolve: a dangling symlink (anything else fails
        // below with ENOTDIR). Make its target, read as a path inside the root.
        let stat = rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
            return Ok(self.open_at(path, DIR_PATH)?);
        }
        let target = self.link_target(&parent, name, hops)?;
        self.make_dirs_counting(&target, hops)?;
        Ok(self.open_at(path, DIR_PATH)?)
    }

    /// Make `path` a real folder, resolving nothing: a symlink (or any non-folder) at
    /// `path` or at one of its parents is replaced by an empty folder. For the targets of
    /// the kernel filesystems (/proc, /dev, /sys), which must never be mounted through a
    /// link. Only the container's copy changes (the rootfs's upper layer is its own).
    pub(crate) fn make_real_dirs(&self, path: &str) -> io::Result<OwnedFd> {
        let mut current = rfs::openat(&self.fd, ".", DIR_NOFOLLOW, Mode::empty())?;
        for name in path.split('/').filter(|c| !c.is_empty()) {
            match rfs::statat(&current, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {}
                Ok(_) => {
                    rfs::unlinkat(&current, name, AtFlags::empty())?;
                    self.mkdir_owned(&current, name)?;
                }
                Err(Errno::NOENT) => self.mkdir_owned(&current, name)?,
                Err(e) => return Err(e.into()),
            }
            current = rfs::openat(&current, name, DIR_NOFOLLOW, Mode::empty())?;
        }
        Ok(current)
    }

    /// Make sure a regular file can be bind-mounted at `path`: its parents are made
    /// (symlinks followed inside the root), and whatever holds the final name that is not
    /// a regular file or a folder (a symlink, a fifo, a device) is replaced by an empty
    /// file. Returns the in-root path of the file (its parents resolved).
    pub(crate) fn make_file_replacing(&self, path: &str) -> io::Result<String> {
        let (parent, name) = split(path);
        let parent = self.make_dirs(parent)?;
        let parent_path = self.path_of(parent.as_fd())?;
        match rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => {}
                FileType::Directory => {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        format!("{} is a folder in the image", join(&parent_path, name)),
                    ))
                }
                _ => {
                    rfs::unlinkat(&parent, name, AtFlags::empty())?;
                    self.create_file(&parent, name)?;
                }
            },
            Err(Errno::NOENT) => self.create_file(&parent, name)?,
            Err(e) => return Err(e.into()),
        }
        Ok(join(&parent_path, name))
    }

    /// Make a symlink `path -> target` inside the root: parents are made (symlinks followed
    /// inside the root), and a symlink or file already holding the name is replaced (never
    /// a folder). Returns the in-root path of the link.
    pub(crate) fn make_symlink(&self, path: &str, target: &str) -> io::Result<String> {
        let (parent, name) = split(path);
        let parent = self.make_dirs(parent)?;
        let parent_path = self.path_of(parent.as_fd())?;
        match rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a folder in the image", join(&parent_path, name)),
                ))
            }
            Ok(_) => rfs::unlinkat(&parent, name, AtFlags::empty())?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        rfs::symlinkat(target, &parent, name)?;
        rfs::chownat(
            &parent,
            name,
            Some(Uid::from_raw(self.owner.0)),
            Some(Gid::from_raw(self.owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(join(&parent_path, name))
    }

    /// Make sure a file can be bind-mounted at `path`, following every symlink inside
    /// the root (docker's semantics for `-v` targets; a dangling one leads to a new empty
    /// file). Returns the in-root path.
    pub(crate) fn make_file_following(&self, path: &str) -> io::Result<String> {
        let mut hops = 0;
        self.make_file_counting(path, &mut hops)
    }

    fn make_file_counting(&self, path: &str, hops: &mut u32) -> io::Result<String> {
        match self.open_at(path, PATH_FLAGS) {
            Ok(fd) => {
                let stat = rfs::fstat(&fd)?;
                if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "a file cannot be mounted on a folder",
                    ));
                }
                return self.path_of(fd.as_fd());
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let (parent, name) = split(path);
        let parent = self.make_dirs_counting(parent, hops)?;
        match self.create_file(&parent, name) {
            Ok(()) => return Ok(join(&self.path_of(parent.as_fd())?, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // A dangling symlink holds the name: make the file it leads to.
        let target = self.link_target(&parent, name, hops)?;
        self.make_file_counting(&target, hops)
    }

    /// The in-root path the symlink `name` in `parent` points to, counting one hop.
    fn link_target(&self, parent: &OwnedFd, name: &str, hops: &mut u32) -> io::Result<String> {
        *hops += 1;
        if *hops > 40 {
            return Err(Errno::LOOP.into());
        }
        let target = rfs::readlinkat(parent, name, Vec::new())?;
        let target = target
            .to_str()
            .map_err(|_| io::Error::other("a symlink target is not UTF-8"))?;
        let base = if target.starts_with('/') {
            String::new()
        } else {
            self.path_of(parent.as_fd())?
        };
        Ok(clean(&format!("/{base}/{target}")).ok_or(Errno::INVAL)?)
    }

    fn mkdir_owned(&self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
        let dir = rfs::openat(parent, name, DIR_NOFOLLOW, Mode::empty())?;
        self.own(&dir, 0o755)
    }

    fn create_file(&self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = rfs::openat(parent, name, flags, Mode::from_raw_mode(0o600))?;
        self.own(&file, 0o644)
    }

    fn own(&self, fd: &OwnedFd, mode: u32) -> io::Result<()> {
        rfs::fchown(
            fd,
            Some(Uid::from_raw(self.owner.0)),
            Some(Gid::from_raw(self.owner.1)),
        )?;
        rfs::fchmod(fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }
}

/// The path the kernel gives an fd (`/proc/self/fd/N`).
fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Split a clean absolute path (not "/") into its parent and final name.
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/").as_deref(), Some("/"));
        assert_eq!(clean("/a//b/./c/").as_deref(), Some("/a/b/c"));
        assert_eq!(clean("/../../x/../y").as_deref(), Some("/y"));
        assert_eq!(
            clean("/proc/self/fd/7/..").as_deref(),
            Some("/proc/self/fd")
        );
        assert_eq!(clean("relative"), None);
        assert_eq!(clean("/a\0b"), None);
    }

    #[test]
    fn under() {
        assert!(is_under("/proc", "/proc"));
        assert!(is_under("/proc/self", "/proc"));
        assert!(!is_under("/process", "/proc"));
        assert!(is_under("/anything", "/"));
    }

    fn temp_root(setup: impl FnOnce(&Path)) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        setup(&rootfs);
        let root = Root::open(&rootfs, 0, 0).unwrap();
        (dir, root)
    }

    #[test]
    fn dangling_symlinks_lead_to_new_folders_and_files_inside_the_root() {
        use std::os::unix::fs::symlink;
        let (dir, root) = temp_root(|rootfs| {
            symlink("/srv/app", rootfs.join("app")).unwrap();
            symlink("../../../../run/x.conf", rootfs.join("conf")).unwrap();
            symlink("/b", rootfs.join("a")).unwrap();
            symlink("/a", rootfs.join("b")).unwrap();
        });
        let rootfs = dir.path().join("rootfs");
        let fd = root.make_dirs("/app/sub").unwrap();
        assert_eq!(root.path_of(fd.as_fd()).unwrap(), "/srv/app/sub");
        assert!(rootfs.join("srv/app/sub").is_dir());
        assert_eq!(root.make_file_following("/conf").unwrap(), "/run/x.conf");
        assert!(rootfs.join("run/x.conf").is_file());
        // A loop fails instead of spinning.
        assert!(root.make_dirs("/a/x").is_err());
        assert!(root.make_file_following("/a").is_err());
        assert!(!dir.path().join("srv").exists() && !dir.path().join("run").exists());
    }

    #[test]
    fn read_file_is_bounded() {
        let (_dir, root) = temp_root(|rootfs| {
            std::fs::write(rootfs.join("small"), "abc").unwrap();
            std::fs::write(rootfs.join("big"), "x".repeat(100)).unwrap();
        });
        assert!(
            matches!(root.read_file("/small", 10).unwrap(), ReadFile::Content(c) if c == b"abc")
        );
        assert!(matches!(
            root.read_file("/big", 10).unwrap(),
            ReadFile::TooBig(100)
        ));
        assert!(matches!(
            root.read_file("/none", 10).unwrap(),
            ReadFile::Missing
        ));
        assert!(matches!(
            root.read_file("/", 10).unwrap(),
            ReadFile::NotRegular
        ));
    }

    #[test]
    fn split_join() {
        assert_eq!(split("/etc"), ("/", "etc"));
        assert_eq!(split("/etc/hosts"), ("/etc", "hosts"));
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x"), "/a/x");
    }
}
