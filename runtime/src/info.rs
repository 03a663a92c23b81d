//! Host facts for `farm info`: what a farmer and the coordinator need to know about a machine
//! (CPU, memory, disk under the farm root, kernel, cgroups, what the sandbox can use, GPUs).
//!
//! Nothing here fails: a fact that cannot be read is `None` (`null` in JSON). The parsers
//! take the text of `/proc` files so that tests feed them fixtures.

use std::path::Path;

use serde::Serialize;

use crate::cgroups::{self, CgroupVersion, Hierarchies, MountKind};
use crate::gpu::nvml::{self, Gpu, Nvidia};

mod cgroup_facts;
pub use self::cgroup_facts::CgroupFacts;

/// Everything `farm info` reports. Its JSON form (`farm info --json`) has these stable keys:
///
/// - `cpu`: `{model, logical_cores, physical_cores, available_cores}`: `logical_cores` are the
///   online hardware threads in `/proc/cpuinfo`, `physical_cores` the distinct (package, core)
///   pairs, `available_cores` what this process may run on (as `nproc`);
/// - `memory`: `{total_bytes, available_bytes}` from `/proc/meminfo`;
/// - `disk`: `{path, free_bytes, total_bytes}`: the file system of the farm root (or of its
///   nearest existing parent), `free_bytes` as available to farm (statvfs `f_bavail`);
/// - `kernel`: the release, as `uname -r`;
/// - `cgroup_version`: `"v1"`, `"hybrid"` (v1 controllers beside an empty v2 hierarchy, used as
///   v1) or `"v2"`;
/// - `cgroups`: `{controllers, missing, own, slice, parent, writable, delegated}` (see
///   [`CgroupFacts`]): what a container's limits can use and where farm stands;
/// - `sandbox`: `{user_namespaces, max_user_namespaces, idmapped_mounts,
///   idmapped_overlay_layers, idmapped_from, overlayfs, seccomp, seccomp_actions}`: the
///   idmapped answers come from the kernel version (5.12 for idmapped mounts, 5.19 for
///   idmapped overlay layers), not a probe, and `idmapped_from` says so (`"kernel_version"`);
/// - `gpus`: one object per NVIDIA GPU, `[]` without a driver: `{index, uuid, name,
///   memory_total_bytes, driver_version, cuda_version, pci_bus_id, minor_number,
///   mig_mode_current, mig_mode_pending, mig_instances, power_limit_milliwatts,
///   temperature_celsius, total_energy_millijoules, error}`, MIG modes `"enabled"` /
///   `"disabled"` (`null` without MIG), `mig_instances` a list of `{index, uuid, name,
///   memory_total_bytes}` (see [`Gpu`]);
/// - `nvidia`: `{driver, cuda, error}` (see [`Nvidia`]); `driver` is `null` and `error` says
///   why when no NVIDIA driver is found;
/// - `cdi`: `{dirs, devices, warnings}`: the CDI spec folders looked in, every device name
///   `farm run --device` accepts, and the spec files skipped (why, one line each).
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub cpu: Cpu,
    pub memory: Memory,
    pub disk: Disk,
    pub kernel: Option<String>,
    pub cgroup_version: CgroupKind,
    pub cgroups: CgroupFacts,
    pub sandbox: Sandbox,
    pub gpus: Vec<Gpu>,
    pub nvidia: Nvidia,
    pub cdi: Cdi,
    /// The last `farm info --speedtest URL` (`<root>/speedtest.json`); None before one.
    pub link: Option<Link>,
}

/// Link speed as measured, in Mbit/s each way (never a "dsl" or "fibre" label).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Link {
    pub down_mbps: f64,
    pub up_mbps: f64,
    pub url: String,
    /// Unix seconds.
    pub measured_at: u64,
}

/// Where the last speed test is kept.
pub fn link_path(root: &Path) -> std::path::PathBuf {
    root.join("speedtest.json")
}

/// The CDI devices of this host (see [`crate::gpu::cdi`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cdi {
    pub dirs: Vec<String>,
    pub devices: Vec<String>,
    pub warnings: Vec<String>,
}

fn cdi() -> Cdi {
    let registry = crate::gpu::cdi::Registry::load(Path::new("/"));
    Cdi {
        dirs: registry
            .dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect(),
        devices: registry.names(),
        warnings: registry.warnings,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub model: Option<String>,
    pub logical_cores: Option<u32>,
    pub physical_cores: Option<u32>,
    pub available_cores: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// The folder whose file system was measured (lossy UTF-8, so JSON never fails).
    pub path: String,
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

/// The cgroup setup, finer than [`CgroupVersion`]: a hybrid host is used as v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupKind {
    V1,
    Hybrid,
    V2,
}

impl CgroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupKind::V1 => "v1",
            CgroupKind::Hybrid => "hybrid",
            CgroupKind::V2 => "v2",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sandbox {
    /// `/proc/sys/user/max_user_namespaces` > 0.
    pub user_namespaces: bool,
    pub max_user_namespaces: Option<u64>,
    /// Kernel >= 5.12.
    pub idmapped_mounts: bool,
    /// Kernel >= 5.19 (overlayfs accepts idmapped lower layers).
    pub idmapped_overlay_layers: bool,
    /// Where the idmapped answers come from: always `"kernel_version"`.
    pub idmapped_from: &'static str,
    /// `overlay` is listed in `/proc/filesystems`.
    pub overlayfs: bool,
    /// The kernel has seccomp filters.
    pub seccomp: bool,
    /// `/proc/sys/kernel/seccomp/actions_avail`, when readable.
    pub seccomp_actions: Vec<String>,
    /// `nft --version` (e.g. `nftables v1.0.6 (Lester Gooch #5)`), which `--network
    /// internet` applies its rules with; None where the `nft` binary is missing.
    pub nftables: Option<String>,
}

/// The facts of this host, with free disk measured under `root`.
pub fn collect(root: &Path) -> HostInfo {
    let discovery = nvml::discover();
    let kernel = rustix::system::uname()
        .release()
        .to_str()
        .ok()
        .map(str::to_owned);
    let mut cpu = read_cpuinfo(Path::new("/proc/cpuinfo"));
    cpu.available_cores = std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok());
    HostInfo {
        cpu,
        memory: read_meminfo(Path::new("/proc/meminfo")),
        disk: disk(root),
        cgroup_version: cgroup_kind(),
        cgroups: cgroup_facts::collect(cgroups::hierarchy()),
        sandbox: sandbox(kernel.as_deref()),
        kernel,
        gpus: discovery.gpus,
        nvidia: discovery.nvidia,
        cdi: cdi(),
        link: std::fs::read(link_path(root))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// [`parse_cpuinfo`] of the file at `path` (`/proc/cpuinfo`); all `None` when unreadable.
pub fn read_cpuinfo(path: &Path) -> Cpu {
    std::fs::read_to_string(path)
        .map(|text| parse_cpuinfo(&text))
        .unwrap_or_default()
}

/// [`parse_meminfo`] of the file at `path` (`/proc/meminfo`); all `None` when unreadable.
pub fn read_meminfo(path: &Path) -> Memory {
    std::fs::read_to_string(path)
        .map(|text| parse_meminfo(&text))
        .unwrap_or_default()
}

/// The CPU model and core counts of a `/proc/cpuinfo` text (`available_cores` is left
/// `None`). The model is `model name` (x86), else `Hardware`/`Processor`/`cpu model` (arm,
/// mips); physical cores need `physical id`/`core id`, which some architectures lack.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut model = None;
    let mut fallback_model = None;
    let mut logical = 0u32;
    let mut cores = std::collections::BTreeSet::new();
    let mut package = None::<String>;
    let mut core = None::<String>;
    let mut finish = |package: &mut Option<String>, core: &mut Option<String>| {
        if let Some(core) = core.take() {
            cores.insert((package.take().unwrap_or_default(), core));
        }
        *package = None;
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                finish(&mut package, &mut core);
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" if value.parse::<u32>().is_ok() => logical += 1,
            "model name" if model.is_none() && !value.is_empty() => model = Some(value.to_owned()),
            "Hardware" | "Processor" | "cpu model" | "uarch"
                if fallback_model.is_none() && !value.is_empty() =>
            {
                fallback_model = Some(value.to_owned())
            }
            "physical id" => package = Some(value.to_owned()),
            "core id" => core = Some(value.to_owned()),
            _ => {}
        }
    }
    finish(&mut package, &mut core);
    Cpu {
        model: model.or(fallback_model),
        logical_cores: (logical > 0).then_some(logical),
        physical_cores: (!cores.is_empty()).then_some(cores.len() as u32),
        available_cores: None,
    }
}

/// `MemTotal` and `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(text: &str) -> Memory {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let mut parts = rest.split_whitespace();
            let value: u64 = parts.next()?.parse().ok()?;
            match parts.next() {
                Some("kB") => value.checked_mul(1024),
                None => Some(value),
                Some(_) => None,
            }
        })
    };
    Memory {
        total_bytes: field("MemTotal"),
        available_bytes: field("MemAvailable"),
    }
}

/// The file system of `root`, or of its nearest existing parent when farm has not made it yet.
fn disk(root: &Path) -> Disk {
    let path = root
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("/"));
    let measured = path.to_string_lossy().into_owned();
    match rustix::fs::statvfs(path) {
        Ok(stat) => Disk {
            free_bytes: stat.f_bavail.checked_mul(stat.f_frsize),
            total_bytes: stat.f_blocks.checked_mul(stat.f_frsize),
            path: measured,
        },
        Err(_) => Disk {
            path: measured,
            ..Disk::default()
        },
    }
}

fn cgroup_kind() -> CgroupKind {
    let unified = Hierarchies::system()
        .map(|h| h.mounts().iter().any(|mount| mount.kind == MountKind::V2))
        .unwrap_or(false);
    kind_of(cgroups::hierarchy(), unified)
}

/// v1 with a (controller-less) unified hierarchy mounted beside it is hybrid.
fn kind_of(version: CgroupVersion, unified_mounted: bool) -> CgroupKind {
    match (version, unified_mounted) {
        (CgroupVersion::V2, _) => CgroupKind::V2,
        (CgroupVersion::V1, true) => CgroupKind::Hybrid,
        (CgroupVersion::V1, false) => CgroupKind::V1,
    }
}

fn sandbox(kernel: Option<&str>) -> Sandbox {
    let max_user_namespaces =
        read("/proc/sys/user/max_user_namespaces").and_then(|text| text.trim().parse::<u64>().ok());
    let version = kernel.and_then(kernel_version);
    let at_least = |wanted: (u32, u32)| version.is_some_and(|v| v >= wanted);
    let seccomp_actions: Vec<String> = read("/proc/sys/kernel/seccomp/actions_avail")
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let seccomp = !seccomp_actions.is_empty()
        || read("/proc/self/status").is_some_and(|text| status_has_seccomp(&text));
    Sandbox {
        user_namespaces: max_user_namespaces.is_some_and(|n| n > 0),
        max_user_namespaces,
        idmapped_mounts: at_least((5, 12)),
        idmapped_overlay_layers: at_least((5, 19)),
        idmapped_from: "kernel_version",
        overlayfs: read("/proc/filesystems").is_some_and(|text| has_filesystem(&text, "overlay")),
        seccomp,
        seccomp_actions,
        nftables: crate::network::nft_version(),
    }
}

/// `6.18.0-1-amd64` -> `(6, 18)`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether `/proc/filesystems` lists `name` (`nodev\toverlay`).
pub fn has_filesystem(text: &str, name: &str) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().last() == Some(name))
}

/// A `Seccomp:` line in `/proc/self/status` means the kernel was built with seccomp.
fn status_has_seccomp(text: &str) -> bool {
    text.lines().any(|line| line.starts_with("Seccomp:"))
}

#[cfg(test)]
mod tests;
