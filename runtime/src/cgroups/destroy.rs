//! Killing every process of a cgroup and removing its folders.
//!
//! v2 kernels from 5.14 have `cgroup.kill`, which kills the whole subtree at once, with
//! no pid to race on. Elsewhere the cgroup is frozen first (v1 freezer hierarchy, v2
//! `cgroup.freeze`) so nothing forks while its pids are read, and each pid is signalled
//! through a pidfd opened before the pid was seen in the cgroup again: a pid that exited
//! and was reused by a process outside the cgroup is never signalled.

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};

use super::{gone, read_optional, CgroupError, Mount, MountKind};

/// How long processes get to die after SIGKILL (one in uninterruptible sleep on a slow
/// disk or NFS can take a while).
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a v1 freezer gets to reach FROZEN before killing goes on anyway.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `rmdir` is retried while the kernel still reports the cgroup busy.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);
/// Pidfds held at once.
const PIDFD_BATCH: usize = 256;

/// SIGKILL everything in the cgroup folders `present` (one per hierarchy) and their
/// descendants, and wait until none is left.
pub(super) fn kill_all(present: &[(&Mount, PathBuf)], shown: &str) -> Result<(), CgroupError> {
    let dirs: Vec<PathBuf> = present.iter().map(|(_, dir)| dir.clone()).collect();
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    if pids_in(&dirs)?.contains(&me) {
        return Err(CgroupError::SelfInside {
            path: shown.to_owned(),
            pid: me,
        });
    }

    let mut thaw: Vec<(PathBuf, &'static str)> = Vec::new();
    for (mount, dir) in present {
        match &mount.kind {
            MountKind::V2 => {
                let kill = dir.join("cgroup.kill");
                if kill.exists() {
                    write_ignoring_gone(&kill, "1")?;
                } else if freeze(&dir.join("cgroup.freeze"), "1") {
                    thaw.push((dir.join("cgroup.freeze"), "0"));
                }
            }
            MountKind::V1 { .. } if mount.has_v1_controller("freezer") => {
                let state = dir.join("freezer.state");
                if freeze(&state, "FROZEN") {
                    wait_frozen(&state)?;
                    thaw.push((state, "THAWED"));
                }
            }
            MountKind::V1 { .. } => {}
        }
    }

    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        let pids = pids_in(&dirs)?;
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            thaw_all(&thaw)?;
            return Err(CgroupError::Busy {
                path: shown.to_owned(),
                pids,
            });
        }
        for batch in pids.chunks(PIDFD_BATCH) {
            signal_members(batch, &dirs)?;
        }
        // A v1-frozen task dies of SIGKILL only once thawed; a v2-frozen one dies anyway.
        thaw_all(&thaw)?;
        thaw.clear();
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    thaw_all(&thaw)
}

/// SIGKILL the processes of `pids` that are still in one of `dirs`.
fn signal_members(pids: &[i32], dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let mut opened: Vec<(i32, Option<OwnedFd>)> = Vec::with_capacity(pids.len());
    for &raw in pids {
        let Some(pid) = Pid::from_raw(raw) else {
            continue;
        };
        match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => opened.push((raw, Some(fd))),
            Err(rustix::io::Errno::SRCH) => {}
            // Kernels before 5.3: no pidfds; the freezer (or cgroup.kill) is the guard.
            Err(_) => opened.push((raw, None)),
        }
    }
    // Each pidfd names the process that had the pid before this second look; if that
    // process is still alive it still has the pid, so a pid listed now is that process.
    let members = pids_in(dirs)?;
    for (raw, fd) in opened {
        if members.binary_search(&raw).is_err() {
            continue;
        }
        // ESRCH: it exited meanwhile.
        let _ = match (fd, Pid::from_raw(raw)) {
            (Some(fd), _) => rustix::process::pidfd_send_signal(&fd, Signal::KILL),
            (None, Some(pid)) => rustix::process::kill_process(pid, Signal::KILL),
            (None, None) => Ok(()),
        };
    }
    Ok(())
}

/// Write `value` to a freeze file; false when there is no freezer or it refused (freezing
/// only narrows the pid races; killing goes on without it).
fn freeze(path: &Path, value: &str) -> bool {
    if !path.exists() {
        return false;
    }
    match fs::write(path, value) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cannot freeze {}: {e}", path.display());
            false
        }
    }
}

fn wait_frozen(state: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    while Instant::now() < deadline {
        match read_optional(state)? {
            Some(text) if text.trim() != "FREEZING" => return Ok(()),
            None => return Ok(()),
            Some(_) => sleep(Duration::from_millis(1)),
        }
    }
    Ok(())
}

fn thaw_all(thaw: &[(PathBuf, &str)]) -> Result<(), CgroupError> {
    for (path, value) in thaw {
        write_ignoring_gone(path, value)?;
    }
    Ok(())
}

fn write_ignoring_gone(path: &Path, value: &str) -> Result<(), CgroupError> {
    match fs::write(path, value) {
        Err(e) if !gone(&e) => Err(CgroupError::Io {
            path: path.display().to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The pids in `dirs` and all their descendant cgroups, sorted and deduplicated.
pub(super) fn pids_in(dirs: &[PathBuf]) -> Result<Vec<i32>, CgroupError> {
    let mut pids = BTreeSet::new();
    for dir in dirs {
        for cgroup in subtree(dir)? {
            if let Some(text) = read_optional(&cgroup.join("cgroup.procs"))? {
                pids.extend(
                    text.lines()
                        .filter_map(|line| line.trim().parse::<i32>().ok()),
                );
            }
        }
    }
    Ok(pids.into_iter().collect())
}

/// `dir` and the cgroup folders below it, every folder after its descendants; empty when
/// `dir` does not exist.
fn subtree(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut order = Vec::new();
    // (folder, whether its children were pushed already)
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((folder, expanded)) = stack.pop() {
        if expanded {
            order.push(folder);
            continue;
        }
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(source) => {
                return Err(CgroupError::Io {
                    path: folder.display().to_string(),
                    source,
                })
            }
        };
        stack.push((folder.clone(), true));
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if gone(&e) => continue,
                Err(source) => {
                    return Err(CgroupError::Io {
                        path: folder.display().to_string(),
                        source,
                    })
                }
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((entry.path(), false));
            }
        }
    }
    Ok(order)
}

/// rmdir `dir` and its descendant cgroups, deepest first; what is already gone is fine.
pub(super) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for folder in subtree(dir)? {
        let deadline = Instant::now() + RMDIR_TIMEOUT;
        loop {
            match fs::remove_dir(&folder) {
                Ok(()) => break,
                Err(e) if gone(&e) => break,
                // The last task of a cgroup may take a moment to leave after it died.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    sleep(Duration::from_millis(5));
                }
                Err(source) => {
                    return Err(CgroupError::Io {
                        path: folder.display().to_string(),
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}
