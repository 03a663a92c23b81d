//! Docker's masked and read-only paths (moby `oci/defaults.go`).

/// Paths over which /dev/null (files) or an empty read-only tmpfs (directories) is mounted.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_clean_and_inside_proc_or_sys() {
        for path in MASKED_PATHS.iter().chain(READONLY_PATHS) {
            assert_eq!(crate::spec::clean_path(path).as_deref(), Some(*path));
            assert!(
                path.starts_with("/proc/") || path.starts_with("/sys/"),
                "{path}"
            );
        }
    }
}
