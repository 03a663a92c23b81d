//! The host's NVIDIA driver tree, read from a root folder ("/" normally, a fake tree in
//! tests): device nodes under `dev/`, the driver version, the driver's libraries (from the
//! host's `etc/ld.so.cache`, parsed here, and the driver's own folders), its binaries, GSP
//! firmware, graphics configs, `/proc/driver/nvidia`, and WSL2's `/dev/dxg` + `/usr/lib/wsl`.
//!
//! Nothing here runs a program (no ldconfig, no nvidia-smi) and nothing writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::request::{Capability, GpuError};

/// The major number of `/dev/nvidiaN`, `nvidiactl` (minor 255) and `nvidia-modeset` (254).
pub const NVIDIA_MAJOR: u64 = 195;

/// Libraries by capability, as the container toolkit lists them (file names up to `.so`).
pub const LIBRARIES: &[(Capability, &[&str])] = &[
    (
        Capability::Utility,
        &["libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"],
    ),
    (
        Capability::Compute,
        &[
            "libcuda.so",
            "libcudadebugger.so",
            "libnvidia-opencl.so",
            "libnvidia-ptxjitcompiler.so",
            "libnvidia-fatbinaryloader.so",
            "libnvidia-allocator.so",
            "libnvidia-compiler.so",
            "libnvidia-nvvm.so",
            "libnvidia-gpucomp.so",
            "libnvidia-pkcs11.so",
            "libnvidia-pkcs11-openssl3.so",
        ],
    ),
    (
        Capability::Video,
        &[
            "libvdpau_nvidia.so",
            "libnvidia-encode.so",
            "libnvidia-opticalflow.so",
            "libnvcuvid.so",
        ],
    ),
    (
        Capability::Graphics,
        &[
            "libnvidia-eglcore.so",
            "libnvidia-glcore.so",
            "libnvidia-tls.so",
            "libnvidia-glsi.so",
            "libnvidia-fbc.so",
            "libnvidia-ifr.so",
            "libnvidia-rtcore.so",
            "libnvoptix.so",
            "libGLX_nvidia.so",
            "libEGL_nvidia.so",
            "libGLESv2_nvidia.so",
            "libGLESv1_CM_nvidia.so",
            "libnvidia-glvkspirv.so",
            "libnvidia-cbl.so",
            "libnvidia-vulkan-producer.so",
            "libnvidia-ngx.so",
            "libnvidia-egl-gbm.so",
            "libnvidia-egl-wayland.so",
        ],
    ),
    (Capability::Display, &["libnvidia-wayland-client.so"]),
];

/// Binaries by capability, looked for in `/usr/bin` then `/usr/local/nvidia/bin`.
pub const BINARIES: &[(Capability, &[&str])] = &[
    (
        Capability::Utility,
        &["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"],
    ),
    (
        Capability::Compute,
        &["nvidia-cuda-mps-control", "nvidia-cuda-mps-server"],
    ),
];

const BINARY_DIRS: &[&str] = &["/usr/bin", "/usr/local/nvidia/bin"];

/// Folders scanned when the host has no ld.so.cache (64-bit, then 32-bit).
const LIB64_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/local/nvidia/lib64",
];
const LIB32_DIRS: &[&str] = &[
    "/usr/lib/i386-linux-gnu",
    "/usr/lib32",
    "/usr/local/nvidia/lib",
];
/// The driver's own folders, scanned even with an ld.so.cache (the lent GPU machines keep
/// their driver there, outside the cache).
const DRIVER_LIB_DIRS: &[(&str, bool)] = &[
    ("/usr/local/nvidia/lib64", false),
    ("/usr/local/nvidia/lib", true),
];

/// Graphics and display files that are not libraries in the ld cache.
const CONFIG_FILES: &[(Capability, &str)] = &[
    (Capability::Graphics, "/etc/vulkan/icd.d/nvidia_icd.json"),
    (
        Capability::Graphics,
        "/usr/share/vulkan/icd.d/nvidia_icd.json",
    ),
    (
        Capability::Graphics,
        "/usr/share/vulkan/implicit_layer.d/nvidia_layers.json",
    ),
    (
        Capability::Graphics,
        "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
    ),
    (
        Capability::Graphics,
        "/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json",
    ),
    (
        Capability::Graphics,
        "/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json",
    ),
    (
        Capability::Display,
        "/usr/lib/xorg/modules/drivers/nvidia_drv.so",
    ),
    (
        Capability::Display,
        "/usr/lib/xorg/modules/extensions/libglxserver_nvidia.so",
    ),
];

/// IPC endpoints the toolkit also injects: (capability, path, kind).
const IPC: &[(Capability, &str, FileKind)] = &[
    (
        Capability::Utility,
        "/run/nvidia-persistenced/socket",
        FileKind::Socket,
    ),
    (Capability::Compute, "/tmp/nvidia-mps", FileKind::Directory),
];

const WSL_LIB_DIR: &str = "/usr/lib/wsl/lib";
const WSL_DRIVERS_DIR: &str = "/usr/lib/wsl/drivers";

/// A character device node of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// The path in the container, the same as on the host (`/dev/nvidia0`).
    pub path: String,
    /// Where it is under the discovery root.
    pub host_path: PathBuf,
    pub major: u64,
    pub minor: u64,
    /// Permission bits of the host node (0o666 usually).
    pub mode: u32,
}

/// A MIG device (a compute instance inside a GPU instance) and the nvidia-caps nodes that
/// give access to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigDevice {
    pub gpu_instance: u32,
    pub compute_instance: u32,
    /// `MIG-…` where NVML filled it in; the driver tree alone does not know it.
    pub uuid: Option<String>,
    /// `/dev/nvidia-caps/nvidia-capN` of the GPU instance, then of the compute instance.
    pub caps: Vec<DeviceNode>,
    /// `/proc/driver/nvidia/capabilities/gpuM/mig/giG` (container path) with its `access`.
    pub proc_dir: String,
}

/// One GPU of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// NVML's index: the position in PCI bus order.
    pub index: u32,
    pub node: DeviceNode,
    pub uuid: Option<String>,
    /// `0000:19:00.0`
    pub bus_id: Option<String>,
    pub model: Option<String>,
    /// `/proc/driver/nvidia/gpus/<bus id>` (container path), where the host has it.
    pub proc_dir: Option<String>,
    /// MIG devices in (GPU instance, compute instance) order: `0:N` picks the Nth.
    pub mig: Vec<MigDevice>,
}

/// What a driver file is, for the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    Library,
    Binary,
    Firmware,
    Config,
    /// A folder mounted whole (WSL2's driver store, the MPS pipe folder).
    Directory,
    /// A unix socket (nvidia-persistenced's); usable through a read-only bind.
    Socket,
}

/// A driver file to bind-mount read-only at the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverFile {
    pub kind: FileKind,
    /// `None`: needed whatever the capabilities (firmware, WSL2's files).
    pub capability: Option<Capability>,
    /// The path in the container, symlinks resolved on the host (`/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15`).
    pub path: String,
    pub host_path: PathBuf,
    /// A 32-bit library (injected with `compat32` only).
    pub lib32: bool,
    /// Symlinks next to it on the host that lead to it (`libcuda.so.1`).
    pub links: Vec<Link>,
}

/// A symlink in the folder of a driver file: `name -> target` as the host has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    pub name: String,
    pub target: String,
}

/// Linux or WSL2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Wsl,
}

/// `/proc/driver/nvidia` files the container sees (host paths under the root).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcDriver {
    pub version: Option<PathBuf>,
    /// The text of `params` (the container gets it with `ModifyDeviceFiles: 0`).
    pub params: Option<String>,
    pub registry: Option<PathBuf>,
}

/// Everything found in one driver tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub root: PathBuf,
    pub platform: Platform,
    /// `550.54.15`
    pub version: Option<String>,
    pub gpus: Vec<Gpu>,
    /// nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset: those present, in that order.
    pub control: Vec<DeviceNode>,
    /// WSL2's `/dev/dxg`.
    pub dxg: Option<DeviceNode>,
    pub files: Vec<DriverFile>,
    pub proc_driver: ProcDriver,
}

/// Reads a driver tree.
pub struct DriverTree;

impl DriverTree {
    /// Reads the driver tree under `root`. Fails with [`GpuError::NoDriver`] where there is
    /// neither `dev/nvidiactl` nor `dev/dxg`.
    pub fn discover(root: &Path) -> Result<Inventory, GpuError> {
        let dxg = char_device(root, "/dev/dxg")?;
        let ctl = char_device(root, "/dev/nvidiactl")?;
        if dxg.is_some() && ctl.is_none() {
            return discover_wsl(root, dxg);
        }
        if ctl.is_none() {
            return Err(GpuError::NoDriver {
                root: root.to_path_buf(),
            });
        }
        let mut control = Vec::new();
        for name in [
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-uvm-tools",
            "nvidia-modeset",
        ] {
            if let Some(node) = char_device(root, &format!("/dev/{name}"))? {
                control.push(node);
            }
        }
        let proc_version = root.join("proc/driver/nvidia/version");
        let mut version = match fs::read_to_string(&proc_version) {
            Ok(text) => parse_proc_version(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(GpuError::Io {
                    path: proc_version,
                    source,
                })
            }
        };
        let gpus = discover_gpus(root)?;
        let mut files = discover_libraries(root, version.as_deref())?;
        if version.is_none() {
            // the version from libcuda.so.<version>
            version = files
                .iter()
                .filter_map(|f| f.path.rsplit('/').next()?.strip_prefix("libcuda.so."))
                .find(|v| is_driver_version(v))
                .map(str::to_string);
            if let Some(version) = &version {
                files.retain(|f| f.kind != FileKind::Library || !is_stale(&f.path, version));
            }
        }
        for (capability, names) in BINARIES {
            for name in *names {
                let found = BINARY_DIRS
                    .iter()
                    .find_map(|dir| resolve_in_root(root, &format!("{dir}/{name}")));
                if let Some(path) = found {
                    files.push(driver_file(root, FileKind::Binary, Some(*capability), path));
                }
            }
        }
        for (capability, path) in CONFIG_FILES {
            if let Some(path) = resolve_in_root(root, path) {
                if !files.iter().any(|f| f.path == path) {
                    files.push(driver_file(root, FileKind::Config, Some(*capability), path));
                }
            }
        }
        for (capability, path, kind) in IPC {
            if let Some(path) = resolve_in_root(root, path) {
                let meta = fs::metadata(host(root, &path));
                let fits = meta.is_ok_and(|m| match kind {
                    FileKind::Socket => m.file_type().is_socket(),
                    _ => m.is_dir(),
                });
                if fits {
                    files.push(driver_file(root, *kind, Some(*capability), path));
                }
            }
        }
        if let Some(version) = &version {
            let dir = format!("/lib/firmware/nvidia/{version}");
            if let Some(dir) = resolve_in_root(root, &dir) {
                for name in sorted_names(&host(root, &dir))? {
                    if name.starts_with("gsp") && name.ends_with(".bin") {
                        if let Some(path) = resolve_in_root(root, &format!("{dir}/{name}")) {
                            files.push(driver_file(root, FileKind::Firmware, None, path));
                        }
                    }
                }
            }
        }
        let proc_file = |name: &str| {
            let path = root.join("proc/driver/nvidia").join(name);
            path.is_file().then_some(path)
        };
        Ok(Inventory {
            root: root.to_path_buf(),
            platform: Platform::Linux,
            version,
            gpus,
            control,
            dxg: None,
            files,
            proc_driver: ProcDriver {
                version: proc_file("version"),
                params: match proc_file("params") {
                    Some(path) => Some(
                        fs::read_to_string(&path)
                            .map_err(|source| GpuError::Io { path, source })?,
                    ),
                    None => None,
                },
                registry: proc_file("registry"),
            },
        })
    }
}

fn discover_wsl(root: &Path, dxg: Option<DeviceNode>) -> Result<Inventory, GpuError> {
    let mut files = Vec::new();
    if let Some(dir) = resolve_in_root(root, WSL_LIB_DIR) {
        let names = sorted_names(&host(root, &dir))?;
        // Windows' driver store has no symlinks, but a distribution's packaging may add
        // some (libcuda.so.1 -> libcuda.so.1.1): they come along as symlinks.
        let links = folder_links(root, &dir, |_| true);
        for name in &names {
            let path = format!("{dir}/{name}");
            let meta = fs::symlink_metadata(host(root, &path)).map_err(|source| GpuError::Io {
                path: host(root, &path),
                source,
            })?;
            if meta.is_file() {
                let mut file = driver_file(root, FileKind::Library, None, path);
                file.kind = if name.contains(".so") {
                    FileKind::Library
                } else {
                    FileKind::Binary
                };
                file.links = links_to(&links, name);
                files.push(file);
            }
        }
    }
    if let Some(dir) = resolve_in_root(root, WSL_DRIVERS_DIR) {
        for name in sorted_names(&host(root, &dir))? {
            // the NVIDIA display driver's store: nv_dispi.inf_amd64_<hash>, nvmdi.inf_…
            if name.starts_with("nv") {
                let path = format!("{dir}/{name}");
                if host(root, &path).is_dir() {
                    files.push(driver_file(root, FileKind::Directory, None, path));
                }
            }
        }
    }
    let version = files
        .iter()
        .filter_map(|f| f.path.rsplit('/').next()?.strip_prefix("libcuda.so."))
        .find(|v| is_driver_version(v))
        .map(str::to_string);
    Ok(Inventory {
        root: root.to_path_buf(),
        platform: Platform::Wsl,
        version,
        gpus: Vec::new(),
        control: Vec::new(),
        dxg,
        files,
        proc_driver: ProcDriver::default(),
    })
}

fn host(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn sorted_names(dir: &Path) -> Result<Vec<String>, GpuError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(GpuError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// A character device at `path` (a container-style absolute path) under the root.
fn char_device(root: &Path, path: &str) -> Result<Option<DeviceNode>, GpuError> {
    let host_path = host(root, path);
    let meta = match fs::symlink_metadata(&host_path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(GpuError::Io {
                path: host_path,
                source,
            })
        }
    };
    if !meta.file_type().is_char_device() {
        tracing::warn!(path = %host_path.display(), "not a character device, ignored");
        return Ok(None);
    }
    let rdev = meta.rdev();
    Ok(Some(DeviceNode {
        path: path.to_string(),
        host_path,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        mode: meta.mode() & 0o7777,
    }))
}

/// `key: value` lines of a /proc information file.
fn proc_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn discover_gpus(root: &Path) -> Result<Vec<Gpu>, GpuError> {
    // identities from /proc/driver/nvidia/gpus/<bus id>/information, by device minor
    let mut identities: BTreeMap<u64, (String, Option<String>, Option<String>)> = BTreeMap::new();
    let gpus_dir = root.join("proc/driver/nvidia/gpus");
    for bus_id in sorted_names(&gpus_dir)? {
        let info = gpus_dir.join(&bus_id).join("information");
        let Ok(text) = fs::read_to_string(&info) else {
            continue;
        };
        let fields = proc_fields(&text);
        if let Some(minor) = fields.get("Device Minor").and_then(|m| m.parse().ok()) {
            identities.insert(
                minor,
                (
                    bus_id,
                    fields.get("GPU UUID").cloned(),
                    fields.get("Model").cloned(),
                ),
            );
        }
    }
    // nvidia-caps nodes by minor, for MIG
    let mut caps: BTreeMap<u64, DeviceNode> = BTreeMap::new();
    for name in sorted_names(&root.join("dev/nvidia-caps"))? {
        if name.starts_with("nvidia-cap") {
            if let Some(node) = char_device(root, &format!("/dev/nvidia-caps/{name}"))? {
                caps.insert(node.minor, node);
            }
        }
    }
    let mut gpus = Vec::new();
    for name in sorted_names(&root.join("dev"))? {
        let Some(number) = name.strip_prefix("nvidia") else {
            continue;
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some(node) = char_device(root, &format!("/dev/{name}"))? else {
            continue;
        };
        if node.major != NVIDIA_MAJOR {
            tracing::warn!(path = %node.host_path.display(), major = node.major, "not NVIDIA's major, ignored");
            continue;
        }
        let identity = identities.get(&node.minor);
        let mig = discover_mig(root, node.minor, &caps)?;
        gpus.push(Gpu {
            index: 0,
            bus_id: identity.map(|i| i.0.clone()),
            uuid: identity.and_then(|i| i.1.clone()),
            model: identity.and_then(|i| i.2.clone()),
            proc_dir: identity.map(|i| format!("/proc/driver/nvidia/gpus/{}", i.0)),
            node,
            mig,
        });
    }
    // NVML numbers GPUs in PCI bus order; without bus ids, by minor
    gpus.sort_by(|a, b| {
        (a.bus_id.is_none(), &a.bus_id, a.node.minor).cmp(&(
            b.bus_id.is_none(),
            &b.bus_id,
            b.node.minor,
        ))
    });
    for (index, gpu) in gpus.iter_mut().enumerate() {
        gpu.index = index as u32;
    }
    Ok(gpus)
}

/// MIG devices of the GPU with this minor, from
/// `/proc/driver/nvidia/capabilities/gpuM/mig/giG/ciC/access` (`DeviceFileMinor: N`).
fn discover_mig(
    root: &Path,
    gpu_minor: u64,
    caps: &BTreeMap<u64, DeviceNode>,
) -> Result<Vec<MigDevice>, GpuError> {
    let mig_dir = format!("/proc/driver/nvidia/capabilities/gpu{gpu_minor}/mig");
    let cap_node = |dir: &str| -> Result<Option<DeviceNode>, GpuError> {
        let access = host(root, &format!("{dir}/access"));
        let Ok(text) = fs::read_to_string(&access) else {
            return Ok(None);
        };
        let minor: u64 = proc_fields(&text)
            .get("DeviceFileMinor")
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| GpuError::Corrupt {
                path: access.clone(),
                reason: "no DeviceFileMinor".into(),
            })?;
        Ok(caps.get(&minor).cloned())
    };
    let number =
        |name: &str, prefix: &str| -> Option<u32> { name.strip_prefix(prefix)?.parse().ok() };
    let mut found = Vec::new();
    for gi_name in sorted_names(&host(root, &mig_dir))? {
        let Some(gi) = number(&gi_name, "gi") else {
            continue;
        };
        let gi_dir = format!("{mig_dir}/{gi_name}");
        let Some(gi_cap) = cap_node(&gi_dir)? else {
            continue;
        };
        for ci_name in sorted_names(&host(root, &gi_dir))? {
            let Some(ci) = number(&ci_name, "ci") else {
                continue;
            };
            if let Some(ci_cap) = cap_node(&format!("{gi_dir}/{ci_name}"))? {
                found.push(MigDevice {
                    gpu_instance: gi,
                    compute_instance: ci,
                    uuid: None,
                    caps: vec![gi_cap.clone(), ci_cap],
                    proc_dir: gi_dir.clone(),
                });
            }
        }
    }
    found.sort_by_key(|m| (m.gpu_instance, m.compute_instance));
    Ok(found)
}

/// The version in `/proc/driver/nvidia/version`'s first line.
pub fn parse_proc_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let after = line.split("Module").nth(1).unwrap_or(line);
    after
        .split_whitespace()
        .find(|t| is_driver_version(t))
        .map(str::to_string)
}

/// `550.54.15`, `390.157`: numbers and dots, the first at least 100.
fn is_driver_version(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0].parse::<u32>().is_ok_and(|major| major >= 100)
}

/// A library of another driver version (left over from an upgrade).
fn is_stale(path: &str, version: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.split_once(".so.") {
        Some((_, suffix)) => is_driver_version(suffix) && suffix != version,
        None => false,
    }
}

/// Resolves `path` as the host's dynamic loader would see it inside `root`: every symlink
/// is followed with `root` as `/`. `None` when it does not exist or loops.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<String> {
    let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        current.push(part);
        let host_path = root.join(current.join("/"));
        let meta = fs::symlink_metadata(&host_path).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(&host_path).ok()?;
            let target = target.to_str()?;
            current.pop();
            if target.starts_with('/') {
                current.clear();
            }
            todo.extend(target.split('/').rev().map(str::to_string));
        }
    }
    Some(format!("/{}", current.join("/")))
}

fn driver_file(
    root: &Path,
    kind: FileKind,
    capability: Option<Capability>,
    path: String,
) -> DriverFile {
    DriverFile {
        kind,
        capability,
        host_path: host(root, &path),
        path,
        lib32: false,
        links: Vec::new(),
    }
}

/// The symlinks of a folder whose names are driver libraries' (`libcuda.so.1`), read once
/// per folder: (name, target as written, target's name in the same folder).
fn library_links(root: &Path, dir: &str) -> Vec<(String, String, String)> {
    folder_links(root, dir, |name| library_capability(name).is_some())
}

/// The symlinks of folder `dir` whose names pass `keep`: (name, target as written,
/// target's name in the same folder).
fn folder_links(
    root: &Path,
    dir: &str,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, String, String)> {
    let Ok(names) = sorted_names(&host(root, dir)) else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter(|name| keep(name))
        .filter_map(|name| {
            let target = fs::read_link(host(root, &format!("{dir}/{name}"))).ok()?;
            let raw = target.to_str()?.to_string();
            let local = raw.strip_prefix("./").unwrap_or(&raw);
            let local = local
                .strip_prefix(&format!("{dir}/"))
                .unwrap_or(local)
                .to_string();
            Some((name, raw, local))
        })
        .collect()
}

/// The links that lead to `name`, directly or through another such link:
/// `libcuda.so.1 -> libcuda.so.550.54.15`, `libcuda.so -> libcuda.so.1`.
fn links_to(links: &[(String, String, String)], name: &str) -> Vec<Link> {
    let mut targets: BTreeSet<&str> = BTreeSet::from([name]);
    let mut found = BTreeSet::new();
    loop {
        let before = found.len();
        for (link, raw, local) in links {
            if targets.contains(local.as_str()) && targets.insert(link.as_str()) {
                found.insert(Link {
                    name: link.clone(),
                    target: raw.clone(),
                });
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.into_iter().collect()
}

fn library_capability(file_name: &str) -> Option<Capability> {
    LIBRARIES.iter().find_map(|(capability, names)| {
        names
            .iter()
            .any(|name| {
                file_name
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .then_some(*capability)
    })
}

fn discover_libraries(root: &Path, version: Option<&str>) -> Result<Vec<DriverFile>, GpuError> {
    // (path as the loader sees it, 32-bit)
    let mut candidates: Vec<(String, bool)> = Vec::new();
    let cache_path = root.join("etc/ld.so.cache");
    let cache = match fs::read(&cache_path) {
        Ok(bytes) => Some(parse_ld_cache(&bytes).map_err(|reason| GpuError::Corrupt {
            path: cache_path.clone(),
            reason,
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(GpuError::Io {
                path: cache_path,
                source,
            })
        }
    };
    let mut dirs: Vec<(&str, bool)> = DRIVER_LIB_DIRS.to_vec();
    match cache {
        Some(entries) => {
            for entry in entries {
                if library_capability(&entry.key).is_some() {
                    candidates.push((entry.value, entry.lib32));
                }
            }
        }
        None => {
            dirs = LIB64_DIRS
                .iter()
                .map(|d| (*d, false))
                .chain(LIB32_DIRS.iter().map(|d| (*d, true)))
                .collect();
        }
    }
    for (dir, lib32) in dirs {
        for name in sorted_names(&host(root, dir))? {
            if library_capability(&name).is_some() {
                candidates.push((format!("{dir}/{name}"), lib32));
            }
        }
    }
    let mut files: Vec<DriverFile> = Vec::new();
    for (path, lib32) in candidates {
        let Some(resolved) = resolve_in_root(root, &path) else {
            continue;
        };
        let name = resolved.rsplit('/').next().unwrap_or_default();
        let Some(capability) = library_capability(name) else {
            continue;
        };
        if version.is_some_and(|v| is_stale(&resolved, v)) {
            continue;
        }
        if !host(root, &resolved).is_file() || files.iter().any(|f| f.path == resolved) {
            continue;
        }
        let mut file = driver_file(root, FileKind::Library, Some(capability), resolved);
        file.lib32 = lib32;
        files.push(file);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut listed: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for file in &mut files {
        if let Some((dir, name)) = file.path.rsplit_once('/') {
            let links = listed
                .entry(dir.to_string())
                .or_insert_with(|| library_links(root, dir));
            file.links = links_to(links, name);
        }
    }
    Ok(files)
}

/// One entry of the host's ld.so.cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The soname (`libcuda.so.1`).
    pub key: String,
    /// The path (`/usr/lib/x86_64-linux-gnu/libcuda.so.1`).
    pub value: String,
    pub lib32: bool,
}

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const FLAG_ELF_LIBC6: u32 = 0x0003;
const ARCH_MASK: u32 = 0xff00;
/// x86-64 and AArch64 64-bit libraries.
const ARCH_LIB64: [u32; 2] = [0x0300, 0x0a00];

/// Parses glibc's ld.so.cache (the `glibc-ld.so.cache1.1` format, alone or after the old
/// `ld.so-1.7.0` table). Keeps glibc ELF libraries of the 64-bit x86-64/AArch64 and 32-bit
/// (no architecture flag) kinds.
pub fn parse_ld_cache(bytes: &[u8]) -> Result<Vec<CacheEntry>, String> {
    let u32_at = |offset: usize| -> Result<u32, String> {
        bytes
            .get(offset..offset + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("truncated at byte {offset}"))
    };
    let mut start = 0;
    if bytes.starts_with(OLD_MAGIC) {
        let old_count = u32_at(12)? as usize;
        start = 16usize
            .checked_add(old_count.checked_mul(12).ok_or("too many entries")?)
            .ok_or("too many entries")?;
        start = start.div_ceil(8) * 8;
    }
    if bytes.get(start..start + NEW_MAGIC.len()) != Some(NEW_MAGIC) {
        return Err("not a glibc-ld.so.cache1.1 file".into());
    }
    let count = u32_at(start + 20)? as usize;
    let string_at = |offset: u32| -> Result<String, String> {
        let offset = start + offset as usize;
        let tail = bytes
            .get(offset..)
            .ok_or_else(|| format!("string offset {offset} out of the file"))?;
        let end = tail
            .iter()
            .position(|b| *b == 0)
            .ok_or("unterminated string")?;
        String::from_utf8(tail[..end].to_vec()).map_err(|_| "string not UTF-8".into())
    };
    let mut entries = Vec::new();
    for i in 0..count {
        let entry = start + 48 + i * 24;
        let flags = u32_at(entry)?;
        if flags & 0xff != FLAG_ELF_LIBC6 {
            continue;
        }
        let arch = flags & ARCH_MASK;
        let lib32 = match arch {
            0 => true,
            a if ARCH_LIB64.contains(&a) => false,
            _ => continue,
        };
        entries.push(CacheEntry {
            key: string_at(u32_at(entry + 4)?)?,
            value: string_at(u32_at(entry + 8)?)?,
            lib32,
        });
    }
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a glibc-ld.so.cache1.1 file: (soname, path, flags).
    pub(crate) fn ld_cache(entries: &[(&str, &str, u32)]) -> Vec<u8> {
        let mut strings = Vec::new();
        let table = 48 + entries.len() * 24;
        let mut out = Vec::new();
        out.extend_from_slice(NEW_MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        let mut records = Vec::new();
        for (key, value, flags) in entries {
            let key_offset = (table + strings.len()) as u32;
            strings.extend_from_slice(key.as_bytes());
            strings.push(0);
            let value_offset = (table + strings.len()) as u32;
            strings.extend_from_slice(value.as_bytes());
            strings.push(0);
            records.extend_from_slice(&flags.to_ne_bytes());
            records.extend_from_slice(&key_offset.to_ne_bytes());
            records.extend_from_slice(&value_offset.to_ne_bytes());
            records.extend_from_slice(&0u32.to_ne_bytes());
            records.extend_from_slice(&0u64.to_ne_bytes());
        }
        out.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        out.extend_from_slice(&[0u8; 4]); // flags + padding
        out.extend_from_slice(&0u32.to_ne_bytes()); // extension offset
        out.extend_from_slice(&[0u8; 12]);
        assert_eq!(out.len(), 48);
        out.extend_from_slice(&records);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn ld_cache_round_trip_and_arch_filter() {
        let bytes = ld_cache(&[
            (
                "libcuda.so.1",
                "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                0x0303,
            ),
            (
                "libcuda.so.1",
                "/usr/lib/i386-linux-gnu/libcuda.so.1",
                0x0003,
            ),
            ("libfoo.so.1", "/usr/libx32/libfoo.so.1", 0x0803),
            ("ld-linux.so.1", "/lib/ld-linux.so.1", 0x0001),
        ]);
        let entries = parse_ld_cache(&bytes).unwrap();
        assert_eq!(
            entries,
            vec![
                CacheEntry {
                    key: "libcuda.so.1".into(),
                    value: "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into(),
                    lib32: false
                },
                CacheEntry {
                    key: "libcuda.so.1".into(),
                    value: "/usr/lib/i386-linux-gnu/libcuda.so.1".into(),
                    lib32: true
                },
            ]
        );
        // behind the old format's table
        let mut old = OLD_MAGIC.to_vec();
        old.push(0);
        old.extend_from_slice(&1u32.to_ne_bytes());
        old.extend_from_slice(&[0u8; 12]);
        old.extend_from_slice(&[0u8; 4]); // align 28 -> 32
        old.extend_from_slice(&bytes);
        assert_eq!(parse_ld_cache(&old).unwrap().len(), 2);
        assert!(parse_ld_cache(b"garbage").is_err());
        assert!(parse_ld_cache(&bytes[..60]).is_err());
    }

    #[test]
    fn the_hosts_own_ld_cache_parses() {
        // glibc's real file, as ldconfig wrote it on this machine (Debian has one always)
        let bytes = fs::read("/etc/ld.so.cache").expect("/etc/ld.so.cache");
        let entries = parse_ld_cache(&bytes).unwrap();
        let libc = entries
            .iter()
            .find(|e| e.key == "libc.so.6" && !e.lib32)
            .expect("libc.so.6 in the cache");
        assert!(libc.value.ends_with("/libc.so.6"), "{libc:?}");
        assert!(
            resolve_in_root(Path::new("/"), &libc.value).is_some(),
            "{libc:?}"
        );
    }

    #[test]
    fn proc_version_line() {
        assert_eq!(
            parse_proc_version(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0\n"
            )
            .as_deref(),
            Some("550.54.15")
        );
        assert_eq!(
            parse_proc_version(
                "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build"
            )
            .as_deref(),
            Some("560.35.03")
        );
        assert_eq!(parse_proc_version("nothing here"), None);
    }

    #[test]
    fn resolve_follows_symlinks_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        fs::write(r.join("usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"), "").unwrap();
        std::os::unix::fs::symlink(
            "libcuda.so.550.54.15",
            r.join("usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        )
        .unwrap();
        // an absolute link is taken inside the root, never the host's /
        std::os::unix::fs::symlink("/usr/lib/x86_64-linux-gnu/libcuda.so.1", r.join("abs"))
            .unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(r, "/lib/x86_64-linux-gnu/libcuda.so.1").as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15")
        );
        assert_eq!(
            resolve_in_root(r, "/abs").as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15")
        );
        assert_eq!(resolve_in_root(r, "/loop"), None);
        assert_eq!(resolve_in_root(r, "/../../etc/passwd"), None);
    }

    #[test]
    fn no_driver_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let err = DriverTree::discover(root.path()).unwrap_err().to_string();
        assert!(err.contains("no NVIDIA driver found"), "{err}");
    }
}
