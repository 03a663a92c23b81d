//! `farm info`'s cgroup facts: the controllers a container can be limited with, farm's own
//! cgroup and systemd slice, and whether farm may create the containers' cgroups, so that
//! a farmer can see why a limit would not apply.

use std::path::Path;

use serde::Serialize;

use crate::cgroups::{CgroupVersion, Hierarchies, MountKind};

/// The controllers each hierarchy kind needs for `--cpus`, `--memory`, `--pids-limit`,
/// the device rules and stopping a container's processes.
const NEEDED_V2: &[&str] = &["cpu", "memory", "pids"];
const NEEDED_V1: &[&str] = &["cpu", "cpuacct", "memory", "pids", "devices", "freezer"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupFacts {
    /// The controllers containers can use: v2, the hierarchy root's `cgroup.controllers`
    /// (the root of farm's cgroup namespace); v1, the mounted hierarchies' controllers.
    pub controllers: Vec<String>,
    /// Needed ones that are not there: limits of that kind would not apply.
    pub missing: Vec<String>,
    /// farm's own cgroup (`/proc/self/cgroup`: the v2 line, or `name=systemd` on v1).
    pub own: Option<String>,
    /// The systemd slice farm runs in (the last `*.slice` of its cgroup).
    pub slice: Option<String>,
    /// Where containers' cgroups are made: `/farm/<id>` below each hierarchy's root.
    pub parent: &'static str,
    /// farm may create cgroups there (the hierarchy is mounted writable and farm may write
    /// it; as root on a normal host, yes).
    pub writable: bool,
    /// farm's own cgroup carries systemd's delegation mark (`trusted.delegate` or
    /// `user.delegate`): it runs in a unit with `Delegate=yes`.
    pub delegated: bool,
}

/// The facts of this host.
pub fn collect(version: CgroupVersion) -> CgroupFacts {
    let empty = Hierarchies::from_mounts(Vec::new());
    let hierarchies = Hierarchies::system().unwrap_or(&empty);
    let mounts = hierarchies.mounts();
    let (controllers, probe) = match version {
        CgroupVersion::V2 => {
            let root = hierarchies
                .v2_dir(Path::new(""))
                .unwrap_or_else(|| "/sys/fs/cgroup".into());
            let text = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            (words(&text), root)
        }
        CgroupVersion::V1 => {
            let mut all: Vec<String> = mounts
                .iter()
                .filter_map(|m| match &m.kind {
                    MountKind::V1 { controllers, .. } => Some(controllers.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            all.sort();
            all.dedup();
            let probe = hierarchies
                .v1_dir("memory", Path::new(""))
                .unwrap_or_else(|| "/sys/fs/cgroup/memory".into());
            (all, probe)
        }
    };
    let needed = match version {
        CgroupVersion::V2 => NEEDED_V2,
        CgroupVersion::V1 => NEEDED_V1,
    };
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| own_cgroup(&text));
    let own_dir = own.as_ref().and_then(|own| {
        let base = match version {
            CgroupVersion::V2 => probe.clone(),
            CgroupVersion::V1 => mounts
                .iter()
                .find(|m| matches!(&m.kind, MountKind::V1 { name: Some(n), .. } if n == "systemd"))
                .map(|m| m.path.clone())?,
        };
        Some(base.join(own.trim_start_matches('/')))
    });
    CgroupFacts {
        missing: missing(&controllers, needed),
        controllers,
        slice: own.as_deref().and_then(slice_of),
        own,
        parent: "/farm",
        writable: rustix::fs::access(&probe, rustix::fs::Access::WRITE_OK).is_ok(),
        delegated: own_dir.is_some_and(|dir| delegated(&dir)),
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn missing(have: &[String], needed: &[&str]) -> Vec<String> {
    needed
        .iter()
        .filter(|n| !have.iter().any(|h| h == *n))
        .map(|n| n.to_string())
        .collect()
}

/// farm's cgroup from `/proc/self/cgroup`: the `0::` line (v2), else `name=systemd`'s.
pub fn own_cgroup(text: &str) -> Option<String> {
    let path_of = |prefix: &str| {
        text.lines()
            .find_map(|l| {
                l.split_once(':')
                    .and_then(|(_, rest)| rest.strip_prefix(prefix))
            })
            .map(str::to_owned)
    };
    path_of(":").or_else(|| path_of("name=systemd:"))
}

/// `/system.slice/farm-worker.service` -> `system.slice`;
/// `/user.slice/user-0.slice/session-3.scope` -> `user-0.slice`.
pub fn slice_of(cgroup: &str) -> Option<String> {
    cgroup
        .split('/')
        .rfind(|c| c.ends_with(".slice"))
        .map(str::to_owned)
}

fn delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let mut buf = [0u8; 8];
        rustix::fs::getxattr(dir, *name, &mut buf).is_ok_and(|n| buf[..n].starts_with(b"1"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_and_slice_come_from_proc_self_cgroup() {
        let v2 = "0::/system.slice/farm-worker.service\n";
        assert_eq!(
            own_cgroup(v2).as_deref(),
            Some("/system.slice/farm-worker.service")
        );
        let v1 = "12:memory:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-3.scope\n0::/user.slice/user-0.slice/session-3.scope\n";
        assert_eq!(
            own_cgroup(v1).as_deref(),
            Some("/user.slice/user-0.slice/session-3.scope")
        );
        let v1_only = "4:pids:/\n1:name=systemd:/init.scope\n";
        assert_eq!(own_cgroup(v1_only).as_deref(), Some("/init.scope"));
        assert_eq!(
            slice_of("/user.slice/user-0.slice/session-3.scope").as_deref(),
            Some("user-0.slice")
        );
        assert_eq!(slice_of("/init.scope"), None);
    }

    #[test]
    fn missing_names_the_needed_controllers_that_are_absent() {
        let have = words("cpuset cpu io memory");
        assert_eq!(missing(&have, NEEDED_V2), vec!["pids".to_owned()]);
        assert!(missing(&words("cpu memory pids"), NEEDED_V2).is_empty());
    }
}
