//! cgroup limits (`--cpus`, `--memory`, `--pids-limit`) and docker's device rules.

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::SpecError;
use crate::options::Resources;

/// The CFS period `--cpus` is expressed in (docker's).
pub const CPU_PERIOD: u64 = 100_000;
/// docker's smallest `--memory`.
pub const MIN_MEMORY: u64 = 6 << 20;

/// The CPUs this process may run on (docker's runtime.NumCPU).
pub(crate) fn host_cpus() -> u32 {
    rustix::thread::sched_getaffinity(None)
        .map(|set| set.count())
        .ok()
        .filter(|n| *n > 0)
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u32)
        })
        .unwrap_or(1)
}

/// The devices every container gets: (path, major, minor).
const DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// `linux.devices`: the device nodes made (bind-mounted, in a user namespace) in /dev.
pub(crate) fn devices() -> Vec<LinuxDevice> {
    DEVICES
        .iter()
        .map(|(path, major, minor)| {
            LinuxDeviceBuilder::default()
                .path(*path)
                .typ(LinuxDeviceType::C)
                .major(*major)
                .minor(*minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
                .expect("a device with every field set")
        })
        .collect()
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
) -> LinuxDeviceCgroup {
    let mut builder = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access("rwm");
    if let Some(major) = major {
        builder = builder.major(major);
    }
    if let Some(minor) = minor {
        builder = builder.minor(minor);
    }
    builder.build().expect("a device rule with every field set")
}

/// The device cgroup: deny everything, then allow the nodes above, /dev/console, /dev/ptmx
/// and the pty slaves (docker's default list).
pub(crate) fn device_rules() -> Vec<LinuxDeviceCgroup> {
    let mut rules = vec![rule(false, LinuxDeviceType::A, None, None)];
    rules.extend(
        DEVICES
            .iter()
            .map(|(_, major, minor)| rule(true, LinuxDeviceType::C, Some(*major), Some(*minor))),
    );
    rules.push(rule(true, LinuxDeviceType::C, Some(5), Some(1)));
    rules.push(rule(true, LinuxDeviceType::C, Some(5), Some(2)));
    rules.push(rule(true, LinuxDeviceType::C, Some(136), None));
    rules
}

/// OCI's `memory.swap` (memory plus swap, `-1` unlimited) for `--memory` and
/// `--memory-swap` with docker's meaning and messages; `None` with no `--memory`.
/// Without `--memory-swap` farm allows no swap beyond `--memory` (docker would allow as
/// much swap again: an intended difference, README). libcgroups writes the value to
/// `memory.memsw.limit_in_bytes` (v1) or `memory.swap - memory` to `memory.swap.max` (v2).
fn memory_swap(resources: &Resources) -> Result<Option<i64>, SpecError> {
    let swap = resources.memory_swap.filter(|s| *s != 0);
    let Some(memory) = resources.memory else {
        return match swap {
            Some(s) if s > 0 => Err(SpecError::Invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .to_owned(),
            )),
            _ => Ok(None),
        };
    };
    if memory < MIN_MEMORY {
        return Err(SpecError::Invalid(
            "Minimum memory limit allowed is 6MB".to_owned(),
        ));
    }
    let limit = i64::try_from(memory)
        .map_err(|_| SpecError::Invalid(format!("memory limit {memory} is too large")))?;
    match swap {
        None => Ok(Some(limit)),
        Some(-1) => Ok(Some(-1)),
        Some(s) if s < -1 => Err(SpecError::Invalid(format!(
            "invalid --memory-swap {s}: use -1 (unlimited) or a size"
        ))),
        Some(s) if s < limit => Err(SpecError::Invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage".to_owned(),
        )),
        Some(s) => Ok(Some(s)),
    }
}

/// Whether the container may use no swap at all beyond its memory (memory + swap =
/// memory): what the monitor must enforce by hand on cgroup v2 (`cgroups::forbid_swap`).
pub fn allows_no_swap(resources: &Resources) -> bool {
    let limit = resources.memory.and_then(|m| i64::try_from(m).ok());
    limit.is_some() && matches!(memory_swap(resources), Ok(swap) if swap == limit)
}

/// `linux.resources` for `resources` on a host with `cpus` CPUs.
pub(crate) fn build(resources: &Resources, cpus: u32) -> Result<LinuxResources, SpecError> {
    let mut builder = LinuxResourcesBuilder::default().devices(device_rules());
    if let Some(wanted) = resources.cpus {
        let range = || {
            SpecError::Invalid(format!(
                "range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
            ))
        };
        if !wanted.is_finite() || wanted < 0.01 || wanted > f64::from(cpus) {
            return Err(range());
        }
        let quota = (wanted * CPU_PERIOD as f64).round() as i64;
        builder = builder.cpu(
            LinuxCpuBuilder::default()
                .period(CPU_PERIOD)
                .quota(quota)
                .build()
                .expect("cpu with every field set"),
        );
    }
    if let Some(swap) = memory_swap(resources)? {
        let limit = resources.memory.map_or(0, |m| m as i64);
        builder = builder.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(swap)
                .build()
                .expect("memory with every field set"),
        );
    }
    if let Some(pids) = resources.pids_limit.filter(|p| *p > 0) {
        builder = builder.pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .expect("pids with every field set"),
        );
    }
    builder
        .build()
        .map_err(|e| SpecError::Invalid(format!("building the cgroup limits: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limits_only_devices() {
        let r = build(&Resources::default(), 4).unwrap();
        assert!(r.cpu().is_none() && r.memory().is_none() && r.pids().is_none());
        let rules = r.devices().as_ref().unwrap();
        assert!(!rules[0].allow());
        assert_eq!(rules[0].typ(), Some(LinuxDeviceType::A));
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        let allowed: Vec<String> = rules[1..].iter().map(|r| r.to_string()).collect();
        for want in [
            "c 1:3 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:1 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
        ] {
            assert!(allowed.contains(&want.to_owned()), "{want}: {allowed:?}");
        }
        assert!(rules[1..].iter().all(|r| r.allow()));
    }

    #[test]
    fn cpus_memory_pids() {
        let r = build(
            &Resources {
                cpus: Some(1.5),
                memory: Some(512 << 20),
                pids_limit: Some(100),
                ..Default::default()
            },
            2,
        )
        .unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!((cpu.period(), cpu.quota()), (Some(100_000), Some(150_000)));
        let memory = r.memory().as_ref().unwrap();
        assert_eq!(
            (memory.limit(), memory.swap()),
            (Some(512 << 20), Some(512 << 20))
        );
        assert_eq!(r.pids().as_ref().unwrap().limit(), 100);
        let r = build(
            &Resources {
                cpus: Some(0.01),
                ..Default::default()
            },
            2,
        )
        .unwrap();
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(1000));
    }

    #[test]
    fn pids_zero_or_negative_is_unlimited() {
        for pids in [0, -1] {
            let r = build(
                &Resources {
                    pids_limit: Some(pids),
                    ..Default::default()
                },
                2,
            )
            .unwrap();
            assert!(r.pids().is_none());
        }
    }

    #[test]
    fn cpus_out_of_range_are_refused_with_dockers_message() {
        for cpus in [0.0, -1.0, 0.001, 2.5, f64::NAN, f64::INFINITY] {
            let err = build(
                &Resources {
                    cpus: Some(cpus),
                    ..Default::default()
                },
                2,
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available",
                "{cpus}"
            );
        }
    }

    #[test]
    fn memory_below_6mb_is_refused() {
        let err = build(
            &Resources {
                memory: Some((6 << 20) - 1),
                ..Default::default()
            },
            2,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "Minimum memory limit allowed is 6MB");
        assert!(build(
            &Resources {
                memory: Some(u64::MAX),
                ..Default::default()
            },
            2,
        )
        .is_err());
    }

    #[test]
    fn only_a_swap_equal_to_memory_means_no_swap() {
        let no_swap = |memory: Option<u64>, memory_swap: Option<i64>| {
            allows_no_swap(&Resources {
                memory,
                memory_swap,
                ..Resources::default()
            })
        };
        let m = 64 << 20;
        assert!(no_swap(Some(m), None));
        assert!(no_swap(Some(m), Some(m as i64)));
        assert!(!no_swap(Some(m), Some(2 * m as i64)));
        assert!(!no_swap(Some(m), Some(-1)));
        assert!(!no_swap(None, None));
    }

    #[test]
    fn memory_swap_has_dockers_meaning_and_messages() {
        let swap = |memory: Option<u64>, memory_swap: Option<i64>| {
            build(
                &Resources {
                    memory,
                    memory_swap,
                    ..Default::default()
                },
                2,
            )
            .map(|r| r.memory().as_ref().map(|m| (m.limit(), m.swap())))
            .map_err(|e| e.to_string())
        };
        let m = 64i64 << 20;
        assert_eq!(
            swap(Some(m as u64), Some(-1)),
            Ok(Some((Some(m), Some(-1))))
        );
        assert_eq!(swap(Some(m as u64), Some(m)), Ok(Some((Some(m), Some(m)))));
        assert_eq!(
            swap(Some(m as u64), Some(3 * m)),
            Ok(Some((Some(m), Some(3 * m))))
        );
        assert_eq!(
            swap(Some(m as u64), None),
            Ok(Some((Some(m), Some(m)))),
            "farm's default: no swap beyond --memory"
        );
        assert_eq!(
            swap(Some(m as u64), Some(m - 1)),
            Err("Minimum memoryswap limit should be larger than memory limit, see usage".into())
        );
        assert_eq!(
            swap(None, Some(m)),
            Err(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into()
            )
        );
        assert_eq!(swap(None, Some(-1)), Ok(None), "docker ignores -1 alone");
    }

    #[test]
    fn host_has_cpus() {
        assert!(host_cpus() >= 1);
    }

    #[test]
    fn device_nodes() {
        let devices = devices();
        let paths: Vec<_> = devices.iter().map(|d| d.path().to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        assert!(devices.iter().all(|d| d.file_mode() == Some(0o666)));
    }
}
