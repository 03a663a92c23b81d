//! Reading a cgroup's accounting files: CPU time, peak memory and OOM kills, from the
//! folder of one cgroup in each hierarchy (so fixtures in a tempdir test both layouts).

use std::path::Path;

use super::{read_optional, CgroupError, Usage};

/// The kernel reports `cpuacct.stat` in USER_HZ ticks, which is 100 on every Linux ABI
/// farm runs on (runc and containerd assume the same).
const USER_HZ: u64 = 100;

/// Usage from v1 hierarchies: `cpuacct` is the cgroup's folder in the cpuacct hierarchy,
/// `memory` in the memory one; `None` (or a missing folder) leaves those fields at 0.
pub fn read_v1(cpuacct: Option<&Path>, memory: Option<&Path>) -> Result<Usage, CgroupError> {
    let mut usage = Usage::default();
    if let Some(dir) = cpuacct {
        let user = read_u64(&dir.join("cpuacct.usage_user"))?;
        let system = read_u64(&dir.join("cpuacct.usage_sys"))?;
        match (user, system) {
            (Some(user), Some(system)) => {
                usage.cpu_user_ns = user;
                usage.cpu_system_ns = system;
            }
            // Kernels before 4.16 have only the tick counts of cpuacct.stat.
            _ => {
                if let Some(text) = read_optional(&dir.join("cpuacct.stat"))? {
                    let to_ns = |ticks: u64| ticks.saturating_mul(1_000_000_000 / USER_HZ);
                    usage.cpu_user_ns = keyed(&text, "user").map_or(0, to_ns);
                    usage.cpu_system_ns = keyed(&text, "system").map_or(0, to_ns);
                }
            }
        }
    }
    if let Some(dir) = memory {
        usage.memory_peak_bytes = match read_u64(&dir.join("memory.max_usage_in_bytes"))? {
            Some(peak) => peak,
            None => read_u64(&dir.join("memory.usage_in_bytes"))?.unwrap_or(0),
        };
        if let Some(text) = read_optional(&dir.join("memory.oom_control"))? {
            usage.oom_killed = keyed(&text, "oom_kill").is_some_and(|n| n > 0);
        }
    }
    Ok(usage)
}

/// Usage from the cgroup's folder `dir` in the v2 unified hierarchy.
pub fn read_v2(dir: &Path) -> Result<Usage, CgroupError> {
    let mut usage = Usage::default();
    if let Some(text) = read_optional(&dir.join("cpu.stat"))? {
        let to_ns = |usec: u64| usec.saturating_mul(1000);
        usage.cpu_user_ns = keyed(&text, "user_usec").map_or(0, to_ns);
        usage.cpu_system_ns = keyed(&text, "system_usec").map_or(0, to_ns);
    }
    // memory.peak exists from Linux 5.19; before, the current usage is all there is.
    usage.memory_peak_bytes = match read_u64(&dir.join("memory.peak"))? {
        Some(peak) => peak,
        None => read_u64(&dir.join("memory.current"))?.unwrap_or(0),
    };
    for file in ["memory.events", "memory.events.local"] {
        if let Some(text) = read_optional(&dir.join(file))? {
            usage.oom_killed |= keyed(&text, "oom_kill").is_some_and(|n| n > 0);
        }
    }
    Ok(usage)
}

/// A file holding one number; `None` when the file does not exist or holds no number
/// (`max`).
fn read_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    Ok(read_optional(path)?.and_then(|text| text.trim().parse().ok()))
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn v2_reads_cpu_stat_peak_and_oom_kills() {
        let dir = fixture(&[
            (
                "cpu.stat",
                "usage_usec 3500\nuser_usec 2500\nsystem_usec 1000\nnr_periods 0\n",
            ),
            ("memory.peak", "8388608\n"),
            ("memory.current", "4096\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
            ),
        ]);
        assert_eq!(
            read_v2(dir.path()).unwrap(),
            Usage {
                cpu_user_ns: 2_500_000,
                cpu_system_ns: 1_000_000,
                memory_peak_bytes: 8 << 20,
                oom_killed: true,
            }
        );
    }

    #[test]
    fn v2_without_memory_peak_falls_back_to_current_and_counts_local_events() {
        let dir = fixture(&[
            ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
            ("memory.current", "4096\n"),
            ("memory.events", "oom 0\noom_kill 0\n"),
            ("memory.events.local", "oom 1\noom_kill 2\n"),
        ]);
        let usage = read_v2(dir.path()).unwrap();
        assert_eq!(usage.memory_peak_bytes, 4096);
        assert!(usage.oom_killed);
    }

    #[test]
    fn v2_without_memory_controller_reads_cpu_only() {
        let dir = fixture(&[("cpu.stat", "usage_usec 9\nuser_usec 7\nsystem_usec 2\n")]);
        assert_eq!(
            read_v2(dir.path()).unwrap(),
            Usage {
                cpu_user_ns: 7000,
                cpu_system_ns: 2000,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn v2_no_oom_kill_is_not_oom_killed() {
        let dir = fixture(&[("memory.events", "oom 3\noom_kill 0\n")]);
        assert!(!read_v2(dir.path()).unwrap().oom_killed);
    }

    #[test]
    fn v1_reads_cpuacct_usage_and_memory() {
        let cpu = fixture(&[
            ("cpuacct.usage_user", "123456789\n"),
            ("cpuacct.usage_sys", "1000\n"),
            ("cpuacct.stat", "user 999\nsystem 999\n"),
        ]);
        let memory = fixture(&[
            ("memory.max_usage_in_bytes", "9000000\n"),
            ("memory.usage_in_bytes", "5\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            ),
        ]);
        assert_eq!(
            read_v1(Some(cpu.path()), Some(memory.path())).unwrap(),
            Usage {
                cpu_user_ns: 123_456_789,
                cpu_system_ns: 1000,
                memory_peak_bytes: 9_000_000,
                oom_killed: true,
            }
        );
    }

    #[test]
    fn v1_old_kernel_falls_back_to_ticks_and_current_usage() {
        let cpu = fixture(&[("cpuacct.stat", "user 25\nsystem 3\n")]);
        let memory = fixture(&[
            ("memory.usage_in_bytes", "77\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
        ]);
        assert_eq!(
            read_v1(Some(cpu.path()), Some(memory.path())).unwrap(),
            Usage {
                cpu_user_ns: 250_000_000,
                cpu_system_ns: 30_000_000,
                memory_peak_bytes: 77,
                oom_killed: false,
            }
        );
    }

    #[test]
    fn v1_missing_hierarchies_leave_zeros() {
        assert_eq!(read_v1(None, None).unwrap(), Usage::default());
        let gone = tempfile::tempdir().unwrap().path().join("gone");
        assert_eq!(read_v1(Some(&gone), Some(&gone)).unwrap(), Usage::default());
    }

    #[test]
    fn keyed_matches_whole_keys_only() {
        let text = "oom_kill_disable 1\noom_kill 4\n";
        assert_eq!(keyed(text, "oom_kill"), Some(4));
        assert_eq!(keyed(text, "oom"), None);
        assert_eq!(keyed("user x\n", "user"), None);
    }
}
