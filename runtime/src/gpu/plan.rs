//! An [`Inventory`] and a [`GpuRequest`] in, the exact [`Plan`] of what one container gets
//! out: device nodes, device cgroup rules, read-only bind mounts, symlinks to create,
//! `/proc/driver/nvidia` as the toolkit presents it, and the ldconfig run inside the
//! container's sandbox. Pure: nothing here touches the container's rootfs; container paths
//! are plain absolute strings that the spec code resolves inside the rootfs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use super::driver::{DeviceNode, FileKind, Gpu, Inventory, MigDevice, Platform};
use super::request::{Capability, DeviceId, Devices, DriverFacts, GpuError, GpuRequest};

/// Where the toolkit presents the driver's /proc files.
pub const PROC_DRIVER: &str = "/proc/driver/nvidia";

/// A device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDevice {
    pub path: String,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
}

/// `c MAJOR:MINOR rwm` in the device cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub major: u64,
    pub minor: u64,
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c {}:{} rwm", self.major, self.minor)
    }
}

/// A read-only bind mount of a host file (or folder) at a container path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
}

/// A symlink to create in the container: `path -> target`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Symlink {
    pub path: String,
    pub target: String,
}

/// One step of presenting `/proc/driver/nvidia`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcEntry {
    /// A tmpfs over the folder, hiding the host's other GPUs (read-only once populated).
    Tmpfs { path: String },
    /// A host file or folder bound read-only.
    Bind {
        source: PathBuf,
        destination: String,
    },
    /// A file written with these contents (read-only).
    File { path: String, contents: String },
}

/// `ldconfig` to run inside the container's sandbox (never on the host), with the folders
/// of the injected libraries on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ldconfig {
    pub folders: Vec<String>,
}

/// A GPU (or MIG device) given to the container, for exclusive assignment and metering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub index: u32,
    pub uuid: Option<String>,
    pub bus_id: Option<String>,
    /// (GPU instance, compute instance) for a MIG device.
    pub mig: Option<(u32, u32)>,
}

/// Everything one container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub assigned: Vec<Assigned>,
    pub devices: Vec<PlannedDevice>,
    pub cgroup_rules: Vec<DeviceRule>,
    pub mounts: Vec<BindMount>,
    pub symlinks: Vec<Symlink>,
    pub proc: Vec<ProcEntry>,
    pub ldconfig: Option<Ldconfig>,
}

/// Inputs of the planner beyond the inventory and the request.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// What `NVIDIA_REQUIRE_*` is checked against; the driver version defaults to the
    /// inventory's. The CUDA version comes from NVML (`cuDriverGetVersion`).
    pub facts: DriverFacts,
    /// Indexes of GPUs given to other containers: `--gpus N` skips them.
    pub in_use: BTreeSet<u32>,
}

/// Plans what a container gets for `request` on the host described by `inventory`.
pub fn plan(
    inventory: &Inventory,
    request: &GpuRequest,
    options: &PlanOptions,
) -> Result<Plan, GpuError> {
    let mut facts = options.facts.clone();
    if facts.driver.is_none() {
        facts.driver = inventory.version.clone();
    }
    request.check_requirements(&facts)?;
    match inventory.platform {
        Platform::Linux => plan_linux(inventory, request, options),
        Platform::Wsl => plan_wsl(inventory, request),
    }
}

fn describe(gpus: &[Gpu]) -> String {
    if gpus.is_empty() {
        return "no GPU".into();
    }
    let list: Vec<String> = gpus
        .iter()
        .map(|g| match &g.uuid {
            Some(uuid) => format!("{} ({uuid})", g.index),
            None => g.index.to_string(),
        })
        .collect();
    format!("GPUs {}", list.join(", "))
}

/// The GPUs chosen, each with the MIG device chosen inside it if any.
fn select<'a>(
    gpus: &'a [Gpu],
    devices: &Devices,
    in_use: &BTreeSet<u32>,
) -> Result<Vec<(&'a Gpu, Option<&'a MigDevice>)>, GpuError> {
    let unknown = |id: &DeviceId| GpuError::UnknownDevice {
        id: id.to_string(),
        available: describe(gpus),
    };
    let mut chosen: Vec<(&Gpu, Option<&MigDevice>)> = Vec::new();
    match devices {
        Devices::None => {}
        Devices::All => chosen.extend(gpus.iter().map(|g| (g, None))),
        Devices::Count(count) => {
            let free: Vec<&Gpu> = gpus.iter().filter(|g| !in_use.contains(&g.index)).collect();
            if free.len() < *count {
                return Err(GpuError::NotEnoughDevices {
                    requested: *count,
                    available: free.len(),
                });
            }
            chosen.extend(free.into_iter().take(*count).map(|g| (g, None)));
        }
        Devices::Ids(ids) => {
            for id in ids {
                let found = match id {
                    DeviceId::Index(index) => {
                        gpus.iter().find(|g| g.index == *index).map(|g| (g, None))
                    }
                    DeviceId::Mig { gpu, instance } => gpus
                        .iter()
                        .find(|g| g.index == *gpu)
                        .and_then(|g| Some((g, Some(g.mig.get(*instance as usize)?)))),
                    DeviceId::Uuid(uuid) => gpus.iter().find_map(|g| {
                        if g.uuid
                            .as_deref()
                            .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
                        {
                            return Some((g, None));
                        }
                        g.mig
                            .iter()
                            .find(|m| {
                                m.uuid
                                    .as_deref()
                                    .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
                            })
                            .map(|m| (g, Some(m)))
                    }),
                };
                let found = found.ok_or_else(|| unknown(id))?;
                if !chosen
                    .iter()
                    .any(|c| c.0.index == found.0.index && c.1 == found.1)
                {
                    chosen.push(found);
                }
            }
        }
    }
    Ok(chosen)
}

fn push_device(plan: &mut Plan, node: &DeviceNode) {
    if plan.devices.iter().any(|d| d.path == node.path) {
        return;
    }
    plan.devices.push(PlannedDevice {
        path: node.path.clone(),
        major: node.major,
        minor: node.minor,
        mode: node.mode,
    });
    plan.cgroup_rules.push(DeviceRule {
        major: node.major,
        minor: node.minor,
    });
}

fn plan_linux(
    inventory: &Inventory,
    request: &GpuRequest,
    options: &PlanOptions,
) -> Result<Plan, GpuError> {
    let chosen = select(&inventory.gpus, &request.devices, &options.in_use)?;
    let mut plan = Plan::default();
    for (gpu, mig) in &chosen {
        push_device(&mut plan, &gpu.node);
        if let Some(mig) = mig {
            for cap in &mig.caps {
                push_device(&mut plan, cap);
            }
        }
        plan.assigned.push(Assigned {
            index: gpu.index,
            uuid: mig
                .and_then(|m| m.uuid.clone())
                .or_else(|| gpu.uuid.clone()),
            bus_id: gpu.bus_id.clone(),
            mig: mig.map(|m| (m.gpu_instance, m.compute_instance)),
        });
    }
    // the control nodes: the driver needs them even with NVIDIA_VISIBLE_DEVICES=none
    for node in &inventory.control {
        push_device(&mut plan, node);
    }
    add_files(&mut plan, inventory, &request.capabilities);

    plan.proc = proc_entries(inventory, &chosen);
    Ok(plan)
}

/// `/proc/driver/nvidia` for `chosen`: a tmpfs over the folder, the driver's `version` and
/// `registry`, `params` without device file creation, and only the chosen GPUs' folders (and
/// their MIG `access` files). Empty where the driver tree has none of them.
pub fn proc_entries(
    inventory: &Inventory,
    chosen: &[(&Gpu, Option<&MigDevice>)],
) -> Vec<ProcEntry> {
    let mut entries = Vec::new();
    let proc = &inventory.proc_driver;
    if !(proc.version.is_some() || chosen.iter().any(|(g, _)| g.proc_dir.is_some())) {
        return entries;
    }
    entries.push(ProcEntry::Tmpfs {
        path: PROC_DRIVER.into(),
    });
    for (name, source) in [("version", &proc.version), ("registry", &proc.registry)] {
        if let Some(source) = source {
            entries.push(ProcEntry::Bind {
                source: source.clone(),
                destination: format!("{PROC_DRIVER}/{name}"),
            });
        }
    }
    if let Some(params) = &proc.params {
        entries.push(ProcEntry::File {
            path: format!("{PROC_DRIVER}/params"),
            contents: without_device_file_creation(params),
        });
    }
    let host = |path: &str| inventory.root.join(path.trim_start_matches('/'));
    for (gpu, mig) in chosen {
        if let Some(dir) = &gpu.proc_dir {
            let known = entries
                .iter()
                .any(|p| matches!(p, ProcEntry::Bind { destination, .. } if destination == dir));
            if !known {
                entries.push(ProcEntry::Bind {
                    source: host(dir),
                    destination: dir.clone(),
                });
            }
        }
        if let Some(mig) = mig {
            for access in [
                format!("{}/access", mig.proc_dir),
                format!("{}/ci{}/access", mig.proc_dir, mig.compute_instance),
            ] {
                entries.push(ProcEntry::Bind {
                    source: host(&access),
                    destination: access,
                });
            }
        }
    }
    entries
}

/// The driver's params with `ModifyDeviceFiles: 0`, so that nothing in the container tries
/// to create device nodes.
fn without_device_file_creation(params: &str) -> String {
    let mut out = String::new();
    for line in params.lines() {
        if line.starts_with("ModifyDeviceFiles:") {
            out.push_str("ModifyDeviceFiles: 0");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Mounts, symlinks and the ldconfig run for the driver files of these capabilities.
fn add_files(plan: &mut Plan, inventory: &Inventory, capabilities: &BTreeSet<Capability>) {
    let compat32 = capabilities.contains(&Capability::Compat32);
    let mut folders = BTreeSet::new();
    let mut symlinks = BTreeSet::new();
    for file in &inventory.files {
        let wanted = file.capability.is_none_or(|c| capabilities.contains(&c));
        if !wanted || (file.lib32 && !compat32) {
            continue;
        }
        plan.mounts.push(BindMount {
            source: file.host_path.clone(),
            destination: file.path.clone(),
        });
        if file.kind != FileKind::Library {
            continue;
        }
        let Some((dir, name)) = file.path.rsplit_once('/') else {
            continue;
        };
        folders.insert(if dir.is_empty() { "/" } else { dir }.to_string());
        for link in &file.links {
            symlinks.insert(Symlink {
                path: format!("{dir}/{}", link.name),
                target: link.target.clone(),
            });
        }
        // the development link the toolkit adds: libcuda.so -> libcuda.so.1
        if name.starts_with("libcuda.so.") && inventory.platform == Platform::Linux {
            let has = |n: &str| file.links.iter().any(|l| l.name == n);
            if has("libcuda.so.1") && !has("libcuda.so") {
                symlinks.insert(Symlink {
                    path: format!("{dir}/libcuda.so"),
                    target: "libcuda.so.1".into(),
                });
            }
        }
    }
    plan.symlinks = symlinks.into_iter().collect();
    if !folders.is_empty() {
        plan.ldconfig = Some(Ldconfig {
            folders: folders.into_iter().collect(),
        });
    }
}

fn plan_wsl(inventory: &Inventory, request: &GpuRequest) -> Result<Plan, GpuError> {
    let mut plan = Plan::default();
    let wants_gpu =
        match &request.devices {
            Devices::None => false,
            Devices::All | Devices::Count(1) => true,
            Devices::Ids(ids) if ids.iter().all(|id| *id == DeviceId::Index(0)) => true,
            _ => return Err(GpuError::Unsupported(
                "on WSL2 the GPUs are shared through /dev/dxg and cannot be picked one by one: \
                 use --gpus all"
                    .into(),
            )),
        };
    if wants_gpu {
        let dxg = inventory.dxg.as_ref().ok_or_else(|| GpuError::NoDriver {
            root: inventory.root.clone(),
        })?;
        push_device(&mut plan, dxg);
        plan.assigned.push(Assigned {
            index: 0,
            uuid: None,
            bus_id: None,
            mig: None,
        });
    }
    add_files(&mut plan, inventory, &request.capabilities);
    Ok(plan)
}

impl Plan {
    /// `linux.devices` entries (owned by root in the container).
    pub fn oci_devices(&self) -> Vec<LinuxDevice> {
        self.devices
            .iter()
            .map(|d| {
                LinuxDeviceBuilder::default()
                    .path(d.path.as_str())
                    .typ(LinuxDeviceType::C)
                    .major(d.major as i64)
                    .minor(d.minor as i64)
                    .file_mode(d.mode)
                    .uid(0u32)
                    .gid(0u32)
                    .build()
                    .expect("a device with every field set")
            })
            .collect()
    }

    /// `linux.resources.devices` allow rules, to append after the default deny-all.
    pub fn oci_device_rules(&self) -> Vec<LinuxDeviceCgroup> {
        self.cgroup_rules
            .iter()
            .map(|r| {
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::C)
                    .major(r.major as i64)
                    .minor(r.minor as i64)
                    .access("rwm")
                    .build()
                    .expect("a device rule with every field set")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    use nix::sys::stat::{makedev, mknod, Mode, SFlag};

    use super::*;
    use crate::gpu::driver::tests::ld_cache;
    use crate::gpu::driver::DriverTree;

    const VERSION: &str = "550.54.15";
    const LIB: &str = "/usr/lib/x86_64-linux-gnu";
    const LIB32: &str = "/usr/lib/i386-linux-gnu";
    const NV_LIB: &str = "/usr/local/nvidia/lib64";
    const UVM: u64 = 508;
    const CAPS: u64 = 237;

    fn write(root: &Path, path: &str, contents: &str) {
        let path = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn link(root: &Path, path: &str, target: &str) {
        let path = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    /// A real character device node (we run as root).
    fn node(root: &Path, path: &str, major: u64, minor: u64, mode: u32) {
        let path = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(mode),
            makedev(major, minor),
        )
        .expect("mknod (the tests run as root)");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A versioned library with its soname link.
    fn library(root: &Path, dir: &str, name: &str, soname: Option<&str>) {
        let file = format!("{name}.{VERSION}");
        write(root, &format!("{dir}/{file}"), "ELF");
        if let Some(soname) = soname {
            link(root, &format!("{dir}/{soname}"), &file);
        }
    }

    /// The mounts of the default capabilities (utility, compute) on [`linux_tree`].
    fn default_mounts() -> Vec<String> {
        let mut expected = strings(&[
            "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.550.54.15",
            "/usr/local/nvidia/lib64/libnvidia-nvvm.so.550.54.15",
            "/usr/bin/nvidia-smi",
            "/usr/bin/nvidia-cuda-mps-control",
            "/run/nvidia-persistenced/socket",
            "/tmp/nvidia-mps",
        ]);
        expected.extend(firmware());
        expected
    }

    /// Two GPUs whose minors are in the reverse of PCI bus order (NVML's index 0 is
    /// /dev/nvidia1), MIG on /dev/nvidia0, libraries in the ld cache and in
    /// /usr/local/nvidia/lib64, binaries, firmware and a Vulkan ICD file.
    fn linux_tree(cache: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        node(r, "/dev/nvidia0", 195, 0, 0o666);
        node(r, "/dev/nvidia1", 195, 1, 0o666);
        node(r, "/dev/nvidiactl", 195, 255, 0o666);
        node(r, "/dev/nvidia-modeset", 195, 254, 0o666);
        node(r, "/dev/nvidia-uvm", UVM, 0, 0o666);
        node(r, "/dev/nvidia-uvm-tools", UVM, 1, 0o666);
        node(r, "/dev/nvidia-caps/nvidia-cap1", CAPS, 1, 0o400);
        node(r, "/dev/nvidia-caps/nvidia-cap2", CAPS, 2, 0o444);
        node(r, "/dev/nvidia-caps/nvidia-cap21", CAPS, 21, 0o444);
        node(r, "/dev/nvidia-caps/nvidia-cap22", CAPS, 22, 0o444);
        // not NVIDIA's: ignored
        write(r, "/dev/nvidia7", "");
        let proc = "/proc/driver/nvidia";
        write(
            r,
            &format!("{proc}/version"),
            &format!("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {VERSION}  Tue Mar  5 22:23:56 UTC 2024\n"),
        );
        write(
            r,
            &format!("{proc}/params"),
            "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\n",
        );
        write(r, &format!("{proc}/registry"), "Binary: \"\"\n");
        write(
            r,
            &format!("{proc}/gpus/0000:17:00.0/information"),
            "Model: \t\t NVIDIA H100\nGPU UUID: \t GPU-aaaa-1111\nBus Location: \t 0000:17:00.0\nDevice Minor: \t 1\n",
        );
        write(
            r,
            &format!("{proc}/gpus/0000:65:00.0/information"),
            "Model: \t\t NVIDIA H100\nGPU UUID: \t GPU-bbbb-2222\nBus Location: \t 0000:65:00.0\nDevice Minor: \t 0\n",
        );
        write(
            r,
            &format!("{proc}/capabilities/gpu0/mig/gi1/access"),
            "DeviceFileMinor: 21\nDeviceFileMode: 292\n",
        );
        write(
            r,
            &format!("{proc}/capabilities/gpu0/mig/gi1/ci0/access"),
            "DeviceFileMinor: 22\nDeviceFileMode: 292\n",
        );
        library(r, LIB, "libcuda.so", Some("libcuda.so.1"));
        library(r, LIB, "libnvidia-ml.so", Some("libnvidia-ml.so.1"));
        library(
            r,
            LIB,
            "libnvidia-ptxjitcompiler.so",
            Some("libnvidia-ptxjitcompiler.so.1"),
        );
        library(r, LIB, "libnvidia-eglcore.so", None);
        library(r, LIB, "libGLX_nvidia.so", Some("libGLX_nvidia.so.0"));
        library(r, LIB, "libnvcuvid.so", Some("libnvcuvid.so.1"));
        library(r, LIB32, "libcuda.so", Some("libcuda.so.1"));
        library(r, NV_LIB, "libnvidia-nvvm.so", Some("libnvidia-nvvm.so.4"));
        // left over from the previous driver
        write(r, &format!("{NV_LIB}/libnvidia-nvvm.so.535.104.05"), "old");
        write(r, &format!("{LIB}/libc.so.6"), "libc");
        if cache {
            let entry = |soname: &'static str, dir: &str, flags: u32| {
                (soname, format!("{dir}/{soname}"), flags)
            };
            let entries = [
                entry("libcuda.so.1", LIB, 0x0303),
                entry("libnvidia-ml.so.1", LIB, 0x0303),
                entry("libnvidia-ptxjitcompiler.so.1", LIB, 0x0303),
                (
                    "libnvidia-eglcore.so.550.54.15",
                    format!("{LIB}/libnvidia-eglcore.so.550.54.15"),
                    0x0303,
                ),
                entry("libGLX_nvidia.so.0", LIB, 0x0303),
                entry("libnvcuvid.so.1", LIB, 0x0303),
                entry("libcuda.so.1", LIB32, 0x0003),
                entry("libc.so.6", LIB, 0x0303),
                // in the cache but gone from the disk
                entry("libnvidia-cfg.so.1", LIB, 0x0303),
            ];
            let entries: Vec<(&str, &str, u32)> = entries
                .iter()
                .map(|(k, v, f)| (*k, v.as_str(), *f))
                .collect();
            let bytes = ld_cache(&entries);
            fs::create_dir_all(r.join("etc")).unwrap();
            fs::write(r.join("etc/ld.so.cache"), bytes).unwrap();
        }
        write(r, "/usr/bin/nvidia-smi", "smi");
        write(r, "/usr/bin/nvidia-cuda-mps-control", "mps");
        write(
            r,
            &format!("/lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin"),
            "fw",
        );
        write(
            r,
            &format!("/lib/firmware/nvidia/{VERSION}/gsp_tu10x.bin"),
            "fw",
        );
        write(r, "/lib/firmware/nvidia/535.104.05/gsp_ga10x.bin", "old fw");
        write(r, "/usr/share/vulkan/icd.d/nvidia_icd.json", "{}");
        fs::create_dir_all(r.join("run/nvidia-persistenced")).unwrap();
        let socket =
            std::os::unix::net::UnixListener::bind(r.join("run/nvidia-persistenced/socket"));
        drop(socket.expect("a unix socket in the fake tree"));
        fs::create_dir_all(r.join("tmp/nvidia-mps")).unwrap();
        dir
    }

    fn request(gpus: Option<&str>, env: &[&str]) -> GpuRequest {
        GpuRequest::resolve(gpus, env)
            .unwrap()
            .expect("a GPU request")
    }

    fn plan_for(root: &Path, gpus: Option<&str>, env: &[&str]) -> Plan {
        let inventory = DriverTree::discover(root).unwrap();
        plan(&inventory, &request(gpus, env), &PlanOptions::default()).unwrap()
    }

    fn devices(plan: &Plan) -> Vec<String> {
        plan.devices
            .iter()
            .map(|d| format!("{} {}:{} {:o}", d.path, d.major, d.minor, d.mode))
            .collect()
    }

    fn rules(plan: &Plan) -> Vec<String> {
        plan.cgroup_rules.iter().map(ToString::to_string).collect()
    }

    /// Mount destinations; each source is the same path under the root.
    fn mounts(root: &Path, plan: &Plan) -> Vec<String> {
        plan.mounts
            .iter()
            .map(|m| {
                assert!(m.destination.starts_with('/'), "{m:?}");
                assert!(!m.destination.contains(root.to_str().unwrap()), "{m:?}");
                assert_eq!(m.source, root.join(&m.destination[1..]), "{m:?}");
                m.destination.clone()
            })
            .collect()
    }

    fn symlinks(plan: &Plan) -> Vec<String> {
        plan.symlinks
            .iter()
            .map(|l| format!("{} -> {}", l.path, l.target))
            .collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const CONTROL: [&str; 4] = [
        "/dev/nvidiactl 195:255 666",
        "/dev/nvidia-uvm 508:0 666",
        "/dev/nvidia-uvm-tools 508:1 666",
        "/dev/nvidia-modeset 195:254 666",
    ];
    const CONTROL_RULES: [&str; 4] = [
        "c 195:255 rwm",
        "c 508:0 rwm",
        "c 508:1 rwm",
        "c 195:254 rwm",
    ];

    fn with_control(gpus: &[&str]) -> Vec<String> {
        strings(&[gpus, &CONTROL[..]].concat())
    }

    fn with_control_rules(gpus: &[&str]) -> Vec<String> {
        strings(&[gpus, &CONTROL_RULES[..]].concat())
    }

    fn firmware() -> Vec<String> {
        vec![
            format!("/lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin"),
            format!("/lib/firmware/nvidia/{VERSION}/gsp_tu10x.bin"),
        ]
    }

    #[test]
    fn inventory_of_a_linux_tree() {
        let tree = linux_tree(true);
        let inventory = DriverTree::discover(tree.path()).unwrap();
        assert_eq!(inventory.platform, Platform::Linux);
        assert_eq!(inventory.version.as_deref(), Some(VERSION));
        let gpus: Vec<(u32, &str, Option<&str>, usize)> = inventory
            .gpus
            .iter()
            .map(|g| {
                (
                    g.index,
                    g.node.path.as_str(),
                    g.uuid.as_deref(),
                    g.mig.len(),
                )
            })
            .collect();
        assert_eq!(
            gpus,
            vec![
                (0, "/dev/nvidia1", Some("GPU-aaaa-1111"), 0),
                (1, "/dev/nvidia0", Some("GPU-bbbb-2222"), 1)
            ]
        );
        let mig = &inventory.gpus[1].mig[0];
        assert_eq!((mig.gpu_instance, mig.compute_instance), (1, 0));
        let caps: Vec<(&str, u64, u64, u32)> = mig
            .caps
            .iter()
            .map(|c| (c.path.as_str(), c.major, c.minor, c.mode))
            .collect();
        assert_eq!(
            caps,
            vec![
                ("/dev/nvidia-caps/nvidia-cap21", CAPS, 21, 0o444),
                ("/dev/nvidia-caps/nvidia-cap22", CAPS, 22, 0o444)
            ]
        );
    }

    #[test]
    fn gpus_all_default_capabilities() {
        let tree = linux_tree(true);
        let r = tree.path();
        let plan = plan_for(r, Some("all"), &[]);
        assert_eq!(
            devices(&plan),
            with_control(&["/dev/nvidia1 195:1 666", "/dev/nvidia0 195:0 666"])
        );
        assert_eq!(
            rules(&plan),
            with_control_rules(&["c 195:1 rwm", "c 195:0 rwm"])
        );
        assert_eq!(mounts(r, &plan), default_mounts());
        assert_eq!(
            symlinks(&plan),
            strings(&[
                "/usr/lib/x86_64-linux-gnu/libcuda.so -> libcuda.so.1",
                "/usr/lib/x86_64-linux-gnu/libcuda.so.1 -> libcuda.so.550.54.15",
                "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1 -> libnvidia-ml.so.550.54.15",
                "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1 -> libnvidia-ptxjitcompiler.so.550.54.15",
                "/usr/local/nvidia/lib64/libnvidia-nvvm.so.4 -> libnvidia-nvvm.so.550.54.15",
            ])
        );
        assert_eq!(
            plan.ldconfig,
            Some(Ldconfig {
                folders: strings(&[LIB, NV_LIB])
            })
        );
        let proc = "/proc/driver/nvidia";
        assert_eq!(
            plan.proc,
            vec![
                ProcEntry::Tmpfs { path: proc.into() },
                ProcEntry::Bind {
                    source: r.join("proc/driver/nvidia/version"),
                    destination: format!("{proc}/version")
                },
                ProcEntry::Bind {
                    source: r.join("proc/driver/nvidia/registry"),
                    destination: format!("{proc}/registry")
                },
                ProcEntry::File {
                    path: format!("{proc}/params"),
                    contents: "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 0\n".into()
                },
                ProcEntry::Bind {
                    source: r.join("proc/driver/nvidia/gpus/0000:17:00.0"),
                    destination: format!("{proc}/gpus/0000:17:00.0")
                },
                ProcEntry::Bind {
                    source: r.join("proc/driver/nvidia/gpus/0000:65:00.0"),
                    destination: format!("{proc}/gpus/0000:65:00.0")
                },
            ]
        );
        let assigned: Vec<Option<&str>> = plan.assigned.iter().map(|a| a.uuid.as_deref()).collect();
        assert_eq!(assigned, vec![Some("GPU-aaaa-1111"), Some("GPU-bbbb-2222")]);
        // the OCI forms carry the same nodes
        let oci = plan.oci_devices();
        assert_eq!(oci.len(), 6);
        assert_eq!(oci[0].path(), Path::new("/dev/nvidia1"));
        assert_eq!(
            (oci[0].major(), oci[0].minor(), oci[0].file_mode()),
            (195, 1, Some(0o666))
        );
        let oci_rules = plan.oci_device_rules();
        assert_eq!(oci_rules.len(), 6);
        assert!(oci_rules
            .iter()
            .all(|r| r.allow() && r.access().as_deref() == Some("rwm")));
        assert_eq!(
            (oci_rules[2].major(), oci_rules[2].minor()),
            (Some(195), Some(255))
        );
    }

    #[test]
    fn gpus_count_picks_free_gpus_in_index_order() {
        let tree = linux_tree(true);
        let inventory = DriverTree::discover(tree.path()).unwrap();
        let one = plan(
            &inventory,
            &request(Some("1"), &[]),
            &PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(devices(&one), with_control(&["/dev/nvidia1 195:1 666"]));
        assert_eq!(rules(&one), with_control_rules(&["c 195:1 rwm"]));
        let busy = PlanOptions {
            in_use: BTreeSet::from([0]),
            ..Default::default()
        };
        let other = plan(&inventory, &request(Some("1"), &[]), &busy).unwrap();
        assert_eq!(devices(&other), with_control(&["/dev/nvidia0 195:0 666"]));
        assert_eq!(other.assigned[0].index, 1);
        // only the chosen GPU's /proc folder
        assert!(other.proc.iter().any(|p| matches!(p, ProcEntry::Bind { destination, .. } if destination.ends_with("0000:65:00.0"))));
        assert!(!other.proc.iter().any(|p| matches!(p, ProcEntry::Bind { destination, .. } if destination.ends_with("0000:17:00.0"))));
        let err = plan(&inventory, &request(Some("2"), &[]), &busy).unwrap_err();
        assert!(
            err.to_string()
                .contains("2 GPUs requested but only 1 available"),
            "{err}"
        );
    }

    #[test]
    fn gpus_device_index_and_uuid() {
        let tree = linux_tree(true);
        let r = tree.path();
        let by_index = plan_for(r, Some("device=1"), &[]);
        assert_eq!(
            devices(&by_index),
            with_control(&["/dev/nvidia0 195:0 666"])
        );
        assert_eq!(rules(&by_index), with_control_rules(&["c 195:0 rwm"]));
        let by_uuid = plan_for(r, Some("device=GPU-bbbb-2222"), &[]);
        assert_eq!(by_uuid, by_index);
        let env = plan_for(r, None, &["NVIDIA_VISIBLE_DEVICES=GPU-aaaa-1111"]);
        assert_eq!(devices(&env), with_control(&["/dev/nvidia1 195:1 666"]));
        let inventory = DriverTree::discover(r).unwrap();
        for gpus in ["device=2", "device=GPU-cccc", "device=0:0", "device=1:1"] {
            let err = plan(
                &inventory,
                &request(Some(gpus), &[]),
                &PlanOptions::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("unknown GPU"), "{gpus}: {err}");
            assert!(
                err.contains("GPUs 0 (GPU-aaaa-1111), 1 (GPU-bbbb-2222)"),
                "{err}"
            );
        }
    }

    #[test]
    fn each_capability_set() {
        let tree = linux_tree(true);
        let r = tree.path();
        let caps = |value: &str| {
            plan_for(
                r,
                Some("device=0"),
                &[&format!("NVIDIA_DRIVER_CAPABILITIES={value}")],
            )
        };

        let utility = caps("utility");
        let mut expected = strings(&[
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15",
            "/usr/bin/nvidia-smi",
            "/run/nvidia-persistenced/socket",
        ]);
        expected.extend(firmware());
        assert_eq!(mounts(r, &utility), expected);
        assert_eq!(
            symlinks(&utility),
            strings(&["/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1 -> libnvidia-ml.so.550.54.15"])
        );
        assert_eq!(devices(&utility), with_control(&["/dev/nvidia1 195:1 666"]));

        let compute = caps("compute");
        let mut expected = strings(&[
            "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.550.54.15",
            "/usr/local/nvidia/lib64/libnvidia-nvvm.so.550.54.15",
            "/usr/bin/nvidia-cuda-mps-control",
            "/tmp/nvidia-mps",
        ]);
        expected.extend(firmware());
        assert_eq!(mounts(r, &compute), expected);

        let graphics = caps("graphics");
        let mut expected = strings(&[
            "/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvidia-eglcore.so.550.54.15",
            "/usr/share/vulkan/icd.d/nvidia_icd.json",
        ]);
        expected.extend(firmware());
        assert_eq!(mounts(r, &graphics), expected);
        assert_eq!(
            symlinks(&graphics),
            strings(&[
                "/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0 -> libGLX_nvidia.so.550.54.15"
            ])
        );
        assert_eq!(
            graphics.ldconfig,
            Some(Ldconfig {
                folders: strings(&[LIB])
            })
        );

        let all = caps("all");
        let mut expected = strings(&[
            "/usr/lib/i386-linux-gnu/libcuda.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvcuvid.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvidia-eglcore.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.550.54.15",
            "/usr/local/nvidia/lib64/libnvidia-nvvm.so.550.54.15",
            "/usr/bin/nvidia-smi",
            "/usr/bin/nvidia-cuda-mps-control",
            "/usr/share/vulkan/icd.d/nvidia_icd.json",
            "/run/nvidia-persistenced/socket",
            "/tmp/nvidia-mps",
        ]);
        expected.extend(firmware());
        assert_eq!(mounts(r, &all), expected);
        assert_eq!(
            all.ldconfig,
            Some(Ldconfig {
                folders: strings(&[LIB32, LIB, NV_LIB])
            })
        );
        assert!(symlinks(&all)
            .contains(&"/usr/lib/i386-linux-gnu/libcuda.so.1 -> libcuda.so.550.54.15".to_string()));
        assert!(symlinks(&all).contains(
            &"/usr/lib/x86_64-linux-gnu/libnvcuvid.so.1 -> libnvcuvid.so.550.54.15".to_string()
        ));
        // the devices do not depend on the capabilities
        assert_eq!(all.devices, utility.devices);
    }

    #[test]
    fn mig_device_gets_its_caps_and_proc_access_files() {
        let tree = linux_tree(true);
        let r = tree.path();
        let plan = plan_for(r, Some("device=1:0"), &[]);
        assert_eq!(
            devices(&plan),
            with_control(&[
                "/dev/nvidia0 195:0 666",
                "/dev/nvidia-caps/nvidia-cap21 237:21 444",
                "/dev/nvidia-caps/nvidia-cap22 237:22 444",
            ])
        );
        assert_eq!(
            rules(&plan),
            with_control_rules(&["c 195:0 rwm", "c 237:21 rwm", "c 237:22 rwm"])
        );
        assert_eq!(plan.assigned[0].mig, Some((1, 0)));
        let binds: Vec<&str> = plan
            .proc
            .iter()
            .filter_map(|p| match p {
                ProcEntry::Bind { destination, .. } => Some(destination.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            vec![
                "/proc/driver/nvidia/version",
                "/proc/driver/nvidia/registry",
                "/proc/driver/nvidia/gpus/0000:65:00.0",
                "/proc/driver/nvidia/capabilities/gpu0/mig/gi1/access",
                "/proc/driver/nvidia/capabilities/gpu0/mig/gi1/ci0/access",
            ]
        );
        // the whole GPUs never bring the MIG config/monitor caps
        let all = plan_for(r, Some("all"), &[]);
        assert!(!devices(&all).iter().any(|d| d.contains("nvidia-caps")));
    }

    #[test]
    fn visible_devices_none_and_void() {
        let tree = linux_tree(true);
        let r = tree.path();
        let none = plan_for(r, None, &["NVIDIA_VISIBLE_DEVICES=none"]);
        assert!(none.assigned.is_empty());
        assert_eq!(devices(&none), strings(&CONTROL));
        assert_eq!(rules(&none), strings(&CONTROL_RULES));
        assert!(mounts(r, &none)
            .contains(&"/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15".to_string()));
        assert!(!none.proc.iter().any(
            |p| matches!(p, ProcEntry::Bind { destination, .. } if destination.contains("/gpus/"))
        ));
        assert_eq!(
            GpuRequest::resolve(None, &["NVIDIA_VISIBLE_DEVICES=void"]).unwrap(),
            None
        );
    }

    #[test]
    fn cuda_requirement_refused_with_the_constraint_and_the_driver() {
        let tree = linux_tree(true);
        let inventory = DriverTree::discover(tree.path()).unwrap();
        let options = PlanOptions {
            facts: DriverFacts {
                cuda: Some("12.4".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let wanted = request(Some("all"), &["NVIDIA_REQUIRE_CUDA=cuda>=12.6"]);
        let err = plan(&inventory, &wanted, &options).unwrap_err().to_string();
        assert!(err.contains("NVIDIA_REQUIRE_CUDA=\"cuda>=12.6\""), "{err}");
        assert!(err.contains("CUDA 12.4"), "{err}");
        assert!(err.contains("driver 550.54.15"), "{err}");
        let fine = request(Some("all"), &["NVIDIA_REQUIRE_CUDA=cuda>=12.0 driver>=560"]);
        assert!(plan(&inventory, &fine, &options).is_ok());
        let driver = request(Some("all"), &["NVIDIA_REQUIRE_DRIVER=driver>=560"]);
        let err = plan(&inventory, &driver, &options).unwrap_err().to_string();
        assert!(err.contains("driver>=560"), "{err}");
        // without the CUDA version a cuda constraint cannot be met
        let unknown = plan(&inventory, &wanted, &PlanOptions::default()).unwrap_err();
        assert!(unknown.to_string().contains("CUDA (unknown)"), "{unknown}");
    }

    #[test]
    fn without_ld_cache_the_lib_dirs_are_scanned_and_stale_libraries_skipped() {
        let tree = linux_tree(false);
        let r = tree.path();
        // no /proc version either: the version comes from libcuda.so.<version>
        fs::remove_file(r.join("proc/driver/nvidia/version")).unwrap();
        write(r, &format!("{LIB}/libcuda.so.535.104.05"), "old");
        let inventory = DriverTree::discover(r).unwrap();
        assert_eq!(inventory.version.as_deref(), Some(VERSION));
        let plan = plan(
            &inventory,
            &request(Some("1"), &[]),
            &PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(mounts(r, &plan), default_mounts());
    }

    #[test]
    fn wsl2_dxg_and_the_wsl_lib_folder() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        node(r, "/dev/dxg", 10, 125, 0o666);
        for name in [
            "libcuda.so",
            "libcuda.so.1",
            "libcuda.so.1.1",
            "libdxcore.so",
            "libnvidia-ml.so.1",
            "nvidia-smi",
        ] {
            write(r, &format!("/usr/lib/wsl/lib/{name}"), name);
        }
        write(
            r,
            "/usr/lib/wsl/drivers/nv_dispi.inf_amd64_1234/nvcubins.bin",
            "bins",
        );
        write(
            r,
            "/usr/lib/wsl/drivers/iigd_dch.inf_amd64_5678/igd.bin",
            "intel",
        );
        let inventory = DriverTree::discover(r).unwrap();
        assert_eq!(inventory.platform, Platform::Wsl);
        let all = plan(
            &inventory,
            &request(Some("all"), &[]),
            &PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(devices(&all), strings(&["/dev/dxg 10:125 666"]));
        assert_eq!(rules(&all), strings(&["c 10:125 rwm"]));
        assert_eq!(
            mounts(r, &all),
            strings(&[
                "/usr/lib/wsl/lib/libcuda.so",
                "/usr/lib/wsl/lib/libcuda.so.1",
                "/usr/lib/wsl/lib/libcuda.so.1.1",
                "/usr/lib/wsl/lib/libdxcore.so",
                "/usr/lib/wsl/lib/libnvidia-ml.so.1",
                "/usr/lib/wsl/lib/nvidia-smi",
                "/usr/lib/wsl/drivers/nv_dispi.inf_amd64_1234",
            ])
        );
        assert_eq!(
            all.ldconfig,
            Some(Ldconfig {
                folders: strings(&["/usr/lib/wsl/lib"])
            })
        );
        assert!(all.proc.is_empty());
        assert!(!devices(&all).iter().any(|d| d.contains("nvidia")));
        let err = plan(
            &inventory,
            &request(Some("device=1"), &[]),
            &PlanOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("WSL2"), "{err}");
    }
}
