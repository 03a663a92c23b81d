//! User namespaces: every container gets its own 65,536-id range of the host's
//! subordinate ids, and the image's files (stored with ids shifted by 2^31) appear with
//! their owners through idmapped mounts.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Ids per container: a full 16-bit range, as podman's `--userns=auto` gives.
pub const RANGE_SIZE: u32 = 65_536;

/// Where the puller stores image id 0 on disk (`farm_puller::unpack::STORE_ID_BASE`).
pub const STORE_ID_BASE: u32 = 1 << 31;

/// A container's host id range: container uid `n` is host uid `uid + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsernsError {
    #[error("no subordinate ids for user `farm` in {etc}/subuid and {etc}/subgid: add lines like `farm:100000000:33554432` to both (or run farm once as root, which adds them)")]
    NoSubids { etc: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("idmapped mount of {path}: {source}")]
    Idmap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl IdRange {
    /// The `uid_map`/`gid_map` lines of an idmapped mount that shows files stored with
    /// ids `STORE_ID_BASE + n` as host ids `base + n`.
    fn store_map(base: u32) -> String {
        format!("{STORE_ID_BASE} {base} {RANGE_SIZE}\n")
    }
}

/// The user whose /etc/subuid and /etc/subgid entries farm takes container ranges from.
pub const SUBID_USER: &str = "farm";

/// How many container ranges farm adds to /etc/subuid and /etc/subgid when the `farm`
/// user has none (512 containers of 65,536 ids).
const DEFAULT_SLOTS: u32 = 512;

/// Host ids from here up hold image files (`STORE_ID_BASE`); no range may reach it.
const RANGE_CEILING: u64 = STORE_ID_BASE as u64;

/// The container ranges available to farm: every whole 65,536-id slot of the `farm`
/// entries in /etc/subuid and /etc/subgid (paired in order). When there is none and farm
/// runs as root, an entry is added to both files first (as dockerd's `userns-remap`
/// does for `dockremap`), with a notice on stderr.
pub fn container_ranges(etc: &Path) -> Result<Vec<IdRange>, UsernsError> {
    let subuid = etc.join("subuid");
    let subgid = etc.join("subgid");
    let mut uids = entries(&subuid, SUBID_USER)?;
    let mut gids = entries(&subgid, SUBID_USER)?;
    if uids.is_empty() || gids.is_empty() {
        if !rustix::process::geteuid().is_root() {
            return Err(UsernsError::NoSubids {
                etc: etc.to_owned(),
            });
        }
        if uids.is_empty() {
            uids = vec![add_entry(&subuid)?];
        }
        if gids.is_empty() {
            gids = vec![add_entry(&subgid)?];
        }
    }
    let slots = |entries: &[(u64, u64)]| -> Vec<u32> {
        let mut out = Vec::new();
        for &(start, count) in entries {
            let mut base = start;
            while base + u64::from(RANGE_SIZE) <= (start + count).min(RANGE_CEILING) {
                if base >= u64::from(RANGE_SIZE) {
                    out.push(base as u32);
                }
                base += u64::from(RANGE_SIZE);
            }
        }
        out
    };
    let ranges: Vec<IdRange> = slots(&uids)
        .into_iter()
        .zip(slots(&gids))
        .map(|(uid, gid)| IdRange {
            uid,
            gid,
            size: RANGE_SIZE,
        })
        .collect();
    if ranges.is_empty() {
        return Err(UsernsError::NoSubids {
            etc: etc.to_owned(),
        });
    }
    Ok(ranges)
}

/// `(start, count)` of every line for `user` in a subordinate-id file.
fn entries(path: &Path, user: &str) -> Result<Vec<(u64, u64)>, UsernsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(UsernsError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    Ok(parse_entries(&text)
        .into_iter()
        .filter(|(name, _, _)| name == user)
        .map(|(_, start, count)| (start, count))
        .collect())
}

fn parse_entries(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.trim().split(':');
            let name = parts.next()?.to_owned();
            let start = parts.next()?.parse().ok()?;
            let count = parts.next()?.parse().ok()?;
            Some((name, start, count))
        })
        .collect()
}

/// Append a `farm:START:COUNT` line after every existing range of the file.
fn add_entry(path: &Path) -> Result<(u64, u64), UsernsError> {
    let io_err = |source| UsernsError::Io {
        path: path.to_owned(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(e)),
    };
    let end = parse_entries(&text)
        .iter()
        .map(|(_, start, count)| start + count)
        .max()
        .unwrap_or(0)
        .max(100_000);
    let start = end.div_ceil(u64::from(RANGE_SIZE)) * u64::from(RANGE_SIZE);
    let count = u64::from(DEFAULT_SLOTS) * u64::from(RANGE_SIZE);
    if start + count > RANGE_CEILING {
        return Err(UsernsError::NoSubids {
            etc: path.parent().unwrap_or(Path::new("/")).to_owned(),
        });
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(io_err)?;
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(file, "{sep}{SUBID_USER}:{start}:{count}").map_err(io_err)?;
    eprintln!(
        "farm: added {SUBID_USER}:{start}:{count} to {} (the id ranges of containers' user namespaces)",
        path.display()
    );
    Ok((start, count))
}

/// A user namespace whose ids `STORE_ID_BASE..+65536` are host ids `range`: the idmap of
/// the image's snapshots for one container. Made by a short-lived child.
pub fn store_userns(range: &IdRange) -> Result<OwnedFd, UsernsError> {
    let (pid, release) = spawn_userns_child()?;
    let result = (|| {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let write = |name: &str, text: &str| {
            std::fs::write(proc_dir.join(name), text).map_err(|source| UsernsError::Io {
                path: proc_dir.join(name),
                source,
            })
        };
        write("uid_map", &IdRange::store_map(range.uid))?;
        write("gid_map", &IdRange::store_map(range.gid))?;
        let ns = proc_dir.join("ns/user");
        std::fs::File::open(&ns)
            .map(OwnedFd::from)
            .map_err(|source| UsernsError::Io { path: ns, source })
    })();
    drop(release);
    let _ = nix::sys::wait::waitpid(pid, None);
    result
}

/// Fork a child that enters a new user namespace and waits until `release` is dropped.
#[allow(unsafe_code)]
fn spawn_userns_child() -> Result<(nix::unistd::Pid, OwnedFd), UsernsError> {
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(errno("pipe"))?;
    let (release_r, release_w) = nix::unistd::pipe().map_err(errno("pipe"))?;
    // SAFETY: the child only calls async-signal-safe functions (unshare, write, read,
    // _exit) before it exits; it never returns into Rust code of the parent.
    match unsafe { nix::unistd::fork() }.map_err(errno("fork"))? {
        nix::unistd::ForkResult::Child => {
            // Our copy of the write end would keep the read below from ever ending.
            drop(release_w);
            drop(ready_r);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&ready_w, if ok { b"y" } else { b"n" });
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(release_r.as_raw_fd(), &mut byte);
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            drop(release_r);
            let mut byte = [0u8; 1];
            let n = nix::unistd::read(ready_r.as_raw_fd(), &mut byte).map_err(errno("read"))?;
            if n != 1 || byte[0] != b'y' {
                drop(release_w);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(UsernsError::Other(
                    "cannot create a user namespace: check that user namespaces are enabled (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)".to_owned(),
                ));
            }
            Ok((child, release_w))
        }
    }
}

fn errno(what: &'static str) -> impl Fn(nix::Error) -> UsernsError {
    move |e| UsernsError::Other(format!("{what}: {e}"))
}

/// `open_tree` a clone of `dir` and idmap it with `userns`: a detached mount that shows
/// the snapshot's files with the container's host ids.
pub fn idmapped_clone(dir: &Path, userns: &OwnedFd) -> Result<OwnedFd, UsernsError> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    let tree = open_tree(
        rustix::fs::CWD,
        dir,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| UsernsError::Idmap {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    set_idmap(&tree, userns).map_err(|source| UsernsError::Idmap {
        path: dir.to_owned(),
        source,
    })?;
    Ok(tree)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Read-only and idmapped with `userns`.
fn set_idmap(tree: &OwnedFd, userns: &OwnedFd) -> io::Result<()> {
    set_mount_attr(
        tree,
        rustix::mount::MountAttrFlags::MOUNT_ATTR_RDONLY,
        Some(userns),
    )
}

/// mount_setattr(2) on the detached mount `tree`: set `flags`, and MOUNT_ATTR_IDMAP with
/// `userns` when given (neither rustix nor nix wrap mount_setattr yet).
#[allow(unsafe_code)]
pub(crate) fn set_mount_attr(
    tree: &OwnedFd,
    flags: rustix::mount::MountAttrFlags,
    userns: Option<&OwnedFd>,
) -> io::Result<()> {
    let mut attr = MountAttr {
        attr_set: u64::from(flags.bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    if let Some(userns) = userns {
        attr.attr_set |= u64::from(rustix::mount::MountAttrFlags::MOUNT_ATTR_IDMAP.bits());
        attr.userns_fd = userns.as_raw_fd() as u64;
    }
    // SAFETY: the path is a valid NUL-terminated empty string, `attr` is a live
    // `struct mount_attr` of the size passed, both fds are open for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_farm_entries_in_whole_slots() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(
            etc.path().join("subuid"),
            "alice:100000:65536\nfarm:1000000:200000\n",
        )
        .unwrap();
        std::fs::write(etc.path().join("subgid"), "farm:3000000:131072\n").unwrap();
        let ranges = container_ranges(etc.path()).unwrap();
        assert_eq!(ranges.len(), 2, "gids allow two slots: {ranges:?}");
        assert_eq!(ranges[0].uid, 1_000_000);
        assert_eq!(ranges[1].uid, 1_065_536);
        assert_eq!(ranges[1].gid, 3_065_536);
    }

    #[test]
    fn missing_entries_are_added_after_existing_ones() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(etc.path().join("subuid"), "alice:100000:65536").unwrap();
        let ranges = container_ranges(etc.path()).unwrap();
        assert_eq!(ranges.len(), DEFAULT_SLOTS as usize);
        assert!(ranges[0].uid >= 165_536);
        let text = std::fs::read_to_string(etc.path().join("subuid")).unwrap();
        assert!(text.starts_with("alice:100000:65536\nfarm:"), "{text}");
        // A second call finds the entries and adds nothing.
        assert_eq!(container_ranges(etc.path()).unwrap(), ranges);
        let again = std::fs::read_to_string(etc.path().join("subuid")).unwrap();
        assert_eq!(again, text);
    }
}
