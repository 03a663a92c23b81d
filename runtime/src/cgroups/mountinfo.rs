//! The cgroup mounts of `/proc/self/mountinfo`: v1 hierarchies with their controllers
//! (co-mounted ones such as `cpu,cpuacct` included) and v2 unified mounts.

use std::path::PathBuf;

/// The v1 controllers farm knows by name; any other super option of a `cgroup` mount
/// (`rw`, `relatime`, `clone_children`, `release_agent=…`, …) is not a controller.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup`).
    pub path: PathBuf,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A cgroup v1 hierarchy: its controllers (empty for a named one such as
    /// `name=systemd`, whose name is then in `name`).
    V1 {
        controllers: Vec<String>,
        name: Option<String>,
    },
    /// The cgroup v2 unified hierarchy.
    V2,
}

impl Mount {
    /// Whether this is a v1 hierarchy with `controller` attached.
    pub fn has_v1_controller(&self, controller: &str) -> bool {
        match &self.kind {
            MountKind::V1 { controllers, .. } => controllers.iter().any(|c| c == controller),
            MountKind::V2 => false,
        }
    }
}

/// The cgroup mounts of a mountinfo text, in its order; a hierarchy mounted twice (the
/// same device) is listed once, at its first mount point.
pub fn parse(text: &str) -> Vec<Mount> {
    let mut seen_devices: Vec<&str> = Vec::new();
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        // id parent major:minor root mount-point options [optional…] - fstype source super
        let Some(separator) = fields.iter().skip(6).position(|f| *f == "-") else {
            continue;
        };
        let separator = separator + 6;
        let (Some(fs_type), Some(super_options)) =
            (fields.get(separator + 1), fields.get(separator + 3))
        else {
            continue;
        };
        let kind = match *fs_type {
            "cgroup2" => MountKind::V2,
            "cgroup" => {
                let mut controllers = Vec::new();
                let mut name = None;
                for option in super_options.split(',') {
                    if let Some(value) = option.strip_prefix("name=") {
                        name = Some(value.to_owned());
                    } else if V1_CONTROLLERS.contains(&option) {
                        controllers.push(option.to_owned());
                    }
                }
                MountKind::V1 { controllers, name }
            }
            _ => continue,
        };
        let device = fields[2];
        if seen_devices.contains(&device) {
            continue;
        }
        seen_devices.push(device);
        mounts.push(Mount {
            path: PathBuf::from(unescape(fields[4])),
            kind,
        });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development VM: v1 hierarchies one controller each, a named systemd one, and
    /// an empty v2 at `unified`.
    const HYBRID: &str = "\
23 1 0:21 / / rw,relatime - overlay overlay rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd distribution of old: co-mounted controllers, optional fields.
    const LEGACY: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:14 - cgroup cgroup rw,net_cls,net_prio
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
90 25 0:28 / /mnt/memory\\040again rw,nosuid shared:15 - cgroup cgroup rw,memory
";

    const UNIFIED: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/root rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_lists_every_hierarchy_with_its_controllers() {
        let mounts = parse(HYBRID);
        let paths: Vec<_> = mounts.iter().map(|m| m.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
            ]
        );
        assert!(mounts[1].has_v1_controller("cpuacct"));
        assert!(!mounts[0].has_v1_controller("cpuacct"));
        assert_eq!(
            mounts[5].kind,
            MountKind::V1 {
                controllers: vec![],
                name: Some("systemd".into())
            }
        );
        assert_eq!(mounts[6].kind, MountKind::V2);
    }

    #[test]
    fn co_mounted_controllers_and_optional_fields() {
        let mounts = parse(LEGACY);
        // the second mount of the memory hierarchy (same device 0:28) is left out
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[1].path, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(mounts[1].has_v1_controller("cpu"));
        assert!(mounts[1].has_v1_controller("cpuacct"));
        assert!(mounts[2].has_v1_controller("net_prio"));
        assert_eq!(
            mounts[0].kind,
            MountKind::V1 {
                controllers: vec![],
                name: Some("systemd".into())
            },
            "xattr and release_agent are not controllers"
        );
    }

    #[test]
    fn unified_is_one_v2_mount() {
        assert_eq!(
            parse(UNIFIED),
            [Mount {
                path: "/sys/fs/cgroup".into(),
                kind: MountKind::V2
            }]
        );
    }

    #[test]
    fn octal_escapes_in_mount_points_are_decoded() {
        assert_eq!(unescape("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape("\\"), "\\");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse("garbage\n1 2 3\n1 2 0:1 / /x rw - cgroup2\n").is_empty());
    }
}
