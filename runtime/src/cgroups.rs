//! cgroup v1 and v2: usage of a container's cgroup (the base of metering), OOM kills, and
//! cleanup of cgroups left behind by a crash.
//!
//! libcontainer (through libcgroups) creates a container's cgroup at `spec.linux.cgroupsPath`
//! (`/farm/<id>`) in every hierarchy: one folder per v1 hierarchy on a v1 or hybrid host,
//! one folder in the unified hierarchy on a v2 host. This module finds the hierarchies in
//! `/proc/self/mountinfo` and works on those folders directly, so it also cleans up after a
//! `kill -9` of farm or of a container's monitor, when no libcontainer state is left.
//!
//! Every function takes the cgroup path as the spec has it, relative to each hierarchy's
//! root; a path that names the root itself or climbs out with `..` is refused (destroying
//! `/` would SIGKILL every process of the host).

mod destroy;
mod mountinfo;
mod usage;

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

pub use mountinfo::{Mount, MountKind};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path}: not found in any cgroup hierarchy")]
    NotFound { path: String },
    #[error("cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error(
        "cgroup {path}: processes {pids:?} are still in it after SIGKILL: \
         look for them in `ps` (uninterruptible sleep?) and run the command again"
    )]
    Busy { path: String, pids: Vec<i32> },
    #[error("cgroup {path}: the calling process (pid {pid}) is in it; run farm from outside")]
    SelfInside { path: String, pid: i32 },
    #[error("{0}")]
    DeviceFilter(String),
}

/// What a container used, read from its cgroup before the cgroup is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_peak_bytes: u64,
    /// The kernel's OOM killer killed a process of the cgroup.
    pub oom_killed: bool,
}

/// Which cgroup interface limits and accounts for containers on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupVersion {
    /// v1 hierarchies, one per controller or co-mounted group (a "hybrid" host, with an
    /// empty v2 hierarchy beside them, counts as v1, as libcgroups decides).
    V1,
    /// The v2 unified hierarchy.
    V2,
}

/// The cgroup interface of this host (from `/proc/self/mountinfo`); V2 when that cannot be
/// read.
pub fn hierarchy() -> CgroupVersion {
    Hierarchies::system().map_or(CgroupVersion::V2, Hierarchies::version)
}

/// The locked-memory limit libcgroups raises RLIMIT_MEMLOCK to before it loads the cgroup v2
/// device filter (an eBPF program).
const DEVICE_FILTER_MEMLOCK: u64 = 128 << 20;

/// CAP_SYS_RESOURCE's bit in the capability sets.
const CAP_SYS_RESOURCE: u32 = 24;

/// On cgroup v2, libcontainer loads each container's device filter after raising
/// RLIMIT_MEMLOCK to 128 MiB, which needs CAP_SYS_RESOURCE or a hard limit already that
/// high; without either the create fails with a bare "Failed to increase rlimit". This says
/// so before anything is created.
pub fn check_device_filter_prerequisites() -> Result<(), CgroupError> {
    if hierarchy() != CgroupVersion::V2 {
        return Ok(());
    }
    let hard = rustix::process::getrlimit(rustix::process::Resource::Memlock).maximum;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match memlock_problem(hard, has_capability(&status, CAP_SYS_RESOURCE)) {
        Some(message) => Err(CgroupError::DeviceFilter(message)),
        None => Ok(()),
    }
}

/// Why the device filter cannot be loaded with hard memlock limit `hard` (`None`:
/// unlimited) and CAP_SYS_RESOURCE or not; `None` when it can.
pub(crate) fn memlock_problem(hard: Option<u64>, cap_sys_resource: bool) -> Option<String> {
    let enough = hard.is_none_or(|hard| hard >= DEVICE_FILTER_MEMLOCK);
    if enough || cap_sys_resource {
        return None;
    }
    Some(format!(
        "on cgroup v2 each container's device filter needs a locked-memory limit of 128 MiB, \
         and farm can neither raise it (no CAP_SYS_RESOURCE) nor finds it that high (hard \
         limit {} KiB): run farm as full root, or raise the limit where farm starts \
         (`ulimit -l 131072`, or LimitMEMLOCK=128M in its systemd unit)",
        hard.unwrap_or(0) / 1024
    ))
}

/// Whether `CapEff` in a `/proc/<pid>/status` text has capability `bit`.
pub(crate) fn has_capability(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| set & (1 << bit) != 0)
}

/// Usage of the cgroup at `cgroups_path` (relative to each hierarchy's root, as in the spec).
pub fn read_usage(cgroups_path: &Path) -> Result<Usage, CgroupError> {
    Hierarchies::system()?.read_usage(cgroups_path)
}

/// SIGKILL every process left in the cgroup and remove it from every hierarchy; a
/// cgroup that does not exist is not an error.
pub fn destroy(cgroups_path: &Path) -> Result<(), CgroupError> {
    Hierarchies::system()?.destroy(cgroups_path)
}

/// The processes in the cgroup and its descendants, in any hierarchy, sorted; empty when
/// the cgroup does not exist.
pub fn procs(cgroups_path: &Path) -> Result<Vec<i32>, CgroupError> {
    Hierarchies::system()?.procs(cgroups_path)
}

/// Make the parent folders of a container's cgroup (`/farm`) in the unified hierarchy
/// before libcontainer does. libcgroups 0.7 tests `exists()` and then calls
/// `create_dir`, so two containers starting at once both try, and one failed with
/// "failed to create dir /sys/fs/cgroup/farm: File exists" (found by the cgroup v2 lane).
/// v1 hierarchies need nothing: libcgroups makes those folders with `create_dir_all`.
pub fn prepare_parents(cgroups_path: &Path) -> Result<(), CgroupError> {
    let hierarchies = Hierarchies::system()?;
    if hierarchies.version() != CgroupVersion::V2 {
        return Ok(());
    }
    let relative = relative(cgroups_path)?;
    let (Some(mut current), Some(parent)) = (hierarchies.v2_dir(Path::new("")), relative.parent())
    else {
        return Ok(());
    };
    for component in parent.components() {
        current.push(component);
        match std::fs::create_dir(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Io {
                    path: current.to_string_lossy().into_owned(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// No swap beyond the memory limit on cgroup v2: `memory.swap.max` = 0. The spec says so
/// (memory + swap = memory), but libcgroups 0.7 skips writing a 0, which left swap
/// unlimited (found by the cgroup v2 lane). v1 needs nothing: libcgroups writes
/// `memory.memsw.limit_in_bytes`. Without swap accounting the file is absent: nothing to do.
pub fn forbid_swap(cgroups_path: &Path) -> Result<(), CgroupError> {
    let hierarchies = Hierarchies::system()?;
    if hierarchies.version() != CgroupVersion::V2 {
        return Ok(());
    }
    let Some(dir) = hierarchies.v2_dir(&relative(cgroups_path)?) else {
        return Ok(());
    };
    let file = dir.join("memory.swap.max");
    match std::fs::write(&file, "0") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Io {
            path: file.to_string_lossy().into_owned(),
            source,
        }),
        Ok(()) => Ok(()),
    }
}

/// Whether the cgroup exists in at least one hierarchy.
pub fn exists(cgroups_path: &Path) -> bool {
    Hierarchies::system().is_ok_and(|h| h.exists(cgroups_path))
}

/// The mounted cgroup hierarchies of a host (or of a test fixture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    mounts: Vec<Mount>,
}

static SYSTEM: OnceLock<Hierarchies> = OnceLock::new();

impl Hierarchies {
    /// This host's hierarchies, read from `/proc/self/mountinfo` once per process.
    pub fn system() -> Result<&'static Hierarchies, CgroupError> {
        if let Some(hierarchies) = SYSTEM.get() {
            return Ok(hierarchies);
        }
        let path = "/proc/self/mountinfo";
        let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(SYSTEM.get_or_init(|| Hierarchies::from_mountinfo(&text)))
    }

    /// The cgroup hierarchies that a `/proc/<pid>/mountinfo` text lists.
    pub fn from_mountinfo(text: &str) -> Hierarchies {
        Hierarchies::from_mounts(mountinfo::parse(text))
    }

    pub fn from_mounts(mounts: Vec<Mount>) -> Hierarchies {
        Hierarchies { mounts }
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// V1 when a v1 hierarchy has a controller attached, else V2.
    pub fn version(&self) -> CgroupVersion {
        let v1 = self.mounts.iter().any(|mount| {
            matches!(&mount.kind, MountKind::V1 { controllers, .. } if !controllers.is_empty())
        });
        if v1 {
            CgroupVersion::V1
        } else {
            CgroupVersion::V2
        }
    }

    /// The cgroup's folder in the v1 hierarchy of `controller`, when mounted.
    pub(crate) fn v1_dir(&self, controller: &str, relative: &Path) -> Option<PathBuf> {
        self.mounts
            .iter()
            .find(|mount| mount.has_v1_controller(controller))
            .map(|mount| mount.path.join(relative))
    }

    /// The cgroup's folder in the unified hierarchy, when mounted.
    pub(crate) fn v2_dir(&self, relative: &Path) -> Option<PathBuf> {
        self.mounts
            .iter()
            .find(|mount| mount.kind == MountKind::V2)
            .map(|mount| mount.path.join(relative))
    }

    /// The cgroup's folder in every hierarchy where it exists.
    fn present(&self, relative: &Path) -> Vec<(&Mount, PathBuf)> {
        self.mounts
            .iter()
            .map(|mount| (mount, mount.path.join(relative)))
            .filter(|(_, dir)| dir.is_dir())
            .collect()
    }

    pub fn exists(&self, cgroups_path: &Path) -> bool {
        relative(cgroups_path).is_ok_and(|relative| !self.present(&relative).is_empty())
    }

    /// Usage of the cgroup, from the hierarchies that account for it: cpuacct and memory
    /// on v1, the unified one on v2. [`CgroupError::NotFound`] when it is in none of them.
    pub fn read_usage(&self, cgroups_path: &Path) -> Result<Usage, CgroupError> {
        let relative = relative(cgroups_path)?;
        let not_found = || CgroupError::NotFound {
            path: cgroups_path.display().to_string(),
        };
        match self.version() {
            CgroupVersion::V1 => {
                let cpuacct = self.v1_dir("cpuacct", &relative).filter(|d| d.is_dir());
                let memory = self.v1_dir("memory", &relative).filter(|d| d.is_dir());
                if cpuacct.is_none() && memory.is_none() {
                    return Err(not_found());
                }
                usage::read_v1(cpuacct.as_deref(), memory.as_deref())
            }
            CgroupVersion::V2 => {
                let dir = self
                    .v2_dir(&relative)
                    .filter(|d| d.is_dir())
                    .ok_or_else(not_found)?;
                usage::read_v2(&dir)
            }
        }
    }

    pub fn procs(&self, cgroups_path: &Path) -> Result<Vec<i32>, CgroupError> {
        let relative = relative(cgroups_path)?;
        let dirs: Vec<PathBuf> = self
            .present(&relative)
            .into_iter()
            .map(|(_, dir)| dir)
            .collect();
        destroy::pids_in(&dirs)
    }

    /// Kill everything in the cgroup, then remove its folder (descendants first) from
    /// every hierarchy. Ok when it does not exist.
    pub fn destroy(&self, cgroups_path: &Path) -> Result<(), CgroupError> {
        let relative = relative(cgroups_path)?;
        let present = self.present(&relative);
        if present.is_empty() {
            return Ok(());
        }
        let shown = cgroups_path.display().to_string();
        destroy::kill_all(&present, &shown)?;
        for (_, dir) in &present {
            destroy::remove_tree(dir)?;
        }
        Ok(())
    }
}

/// `cgroups_path` as a path below a hierarchy's root: `/farm/x` and `farm/x` give
/// `farm/x`; the root itself and `..` are refused.
fn relative(cgroups_path: &Path) -> Result<PathBuf, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: cgroups_path.display().to_string(),
        reason,
    };
    let mut relative = PathBuf::new();
    for component in cgroups_path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => relative.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid("`..` is not allowed in a cgroup path"))
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid("names the root cgroup, which farm never touches"));
    }
    Ok(relative)
}

/// The content of a cgroup file; `None` when it (or its cgroup) does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if gone(&e) => Ok(None),
        Err(source) => Err(CgroupError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// A file or cgroup that does not exist (any more): ENOENT, or ENODEV from a file of a
/// cgroup removed while open.
fn gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ENODEV)
}

#[cfg(test)]
mod tests;
