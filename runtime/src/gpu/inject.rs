//! The GPU part of `farm run`: at create time, which GPUs and CDI devices to lease
//! ([`claim`]); in the monitor, what the container gets for the leased ones ([`extras`]),
//! as generic [`Extras`] for the spec (devices, read-only binds, symlinks, env) plus the
//! folders the image's own ldconfig must index. `--gpus` (and `NVIDIA_VISIBLE_DEVICES`) go
//! through [`super::plan`], `--device vendor/class=name` through [`super::cdi`]; the two
//! are merged, de-duplicated by container path.
//!
//! The plan is computed twice (create and monitor) from the same inputs; the monitor
//! marks every GPU that is not leased to the container for `--gpus` as in use, so
//! `--gpus N` lands on exactly the leased GPUs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::cdi::{self, CdiInjection, DeviceName, Registry};
use super::driver::{DeviceNode, DriverTree, Gpu, Inventory, MigDevice, Platform};
use super::plan::{plan, proc_entries, Assigned, Plan, PlanOptions, ProcEntry};
use super::request::{Devices, DriverFacts, GpuError, GpuRequest};
use crate::options::GpuOptions;
use crate::sandbox::procview::ProcView;
use crate::spec::extras::{ExtraBind, ExtraDevice, ExtraSymlink, Extras};
use crate::state::GpuClaim;

/// The driver tree's root (`/` unless a test points elsewhere).
fn driver_root(options: &GpuOptions) -> PathBuf {
    options
        .driver_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The id a lease records for an assigned GPU or MIG device.
pub fn lease_id(assigned: &Assigned) -> String {
    match (&assigned.uuid, assigned.mig) {
        (Some(uuid), _) => uuid.clone(),
        (None, None) => format!("gpu{}", assigned.index),
        (None, Some((gi, ci))) => format!("gpu{}:gi{gi}:ci{ci}", assigned.index),
    }
}

/// What requirements are checked against: NVML's CUDA version where the driver answers,
/// else the CUDA version NVIDIA documents for the driver's branch. NVML is only loaded
/// when a requirement is there to check.
fn facts(inventory: &Inventory, root: &Path, request: &GpuRequest) -> DriverFacts {
    let from_nvml = if root == Path::new("/") && !request.requirements.is_empty() {
        super::nvml::discover().nvidia.cuda
    } else {
        None
    };
    DriverFacts {
        cuda: from_nvml.or_else(|| inventory.version.as_deref().and_then(cuda_for_driver)),
        driver: inventory.version.clone(),
        brands: Vec::new(),
        archs: Vec::new(),
    }
}

/// The CUDA version a Linux driver branch supports (NVIDIA's CUDA toolkit release notes,
/// table 3: minimum driver per CUDA release).
pub fn cuda_for_driver(driver: &str) -> Option<String> {
    const TABLE: &[(u32, u32, &str)] = &[
        (580, 65, "13.0"),
        (575, 51, "12.9"),
        (570, 26, "12.8"),
        (565, 57, "12.7"),
        (560, 28, "12.6"),
        (555, 42, "12.5"),
        (550, 54, "12.4"),
        (545, 23, "12.3"),
        (535, 54, "12.2"),
        (530, 30, "12.1"),
        (525, 60, "12.0"),
        (520, 61, "11.8"),
        (515, 43, "11.7"),
        (510, 39, "11.6"),
        (495, 29, "11.5"),
        (470, 42, "11.4"),
        (465, 19, "11.3"),
        (460, 27, "11.2"),
        (455, 23, "11.1"),
        (450, 36, "11.0"),
    ];
    let mut parts = driver.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next().unwrap_or("0").parse().ok()?;
    TABLE
        .iter()
        .find(|(m, n, _)| (major, minor) >= (*m, *n))
        .map(|(_, _, cuda)| (*cuda).to_owned())
}

/// At create time: the lease a container needs, or `None` when it asks for no GPU and no
/// CDI device. `leased_elsewhere` are the lease ids other running containers hold (for
/// `--gpus N`). What a CDI spec asks for and farm does not apply is said on stderr here
/// (once: the monitor is quiet about it).
pub fn claim(
    options: &GpuOptions,
    env: &[String],
    caller_env: &[String],
    leased_elsewhere: &BTreeSet<String>,
) -> Result<Option<GpuClaim>, GpuError> {
    let names = cdi::parse_names(&options.cdi_devices)?;
    let gpus = request(options, env, caller_env, !names.is_empty())?;
    let cdi = cdi_devices(options, &names, gpus.as_ref().map(|(_, i)| i), true)?;
    let mut candidates = Vec::new();
    if let Some((request, inventory)) = &gpus {
        let mut in_use = if options.share {
            BTreeSet::new()
        } else {
            indexes_of(inventory, leased_elsewhere)
        };
        // `--gpus N` next to `--device`: N GPUs other than the devices'.
        if let Some(cdi) = &cdi {
            in_use.extend(indexes_of(inventory, &cdi.gpu_leases));
        }
        let plan = plan_on(options, inventory, request, in_use)?;
        candidates.extend(plan.assigned.iter().map(lease_id));
    }
    if gpus.is_none() && cdi.is_none() {
        return Ok(None);
    }
    for id in cdi.into_iter().flat_map(|c| c.leases) {
        if !candidates.contains(&id) {
            candidates.push(id);
        }
    }
    Ok(Some(GpuClaim {
        candidates,
        count: None,
        shared: options.share,
    }))
}

/// The CDI devices `names` translated, or `None` when there are none. The driver tree (to
/// know which nodes are GPUs) is `inventory` when the `--gpus` part already read it, else
/// discovered here; there may be none (another vendor's devices). `warn` prints what is
/// not applied on stderr.
fn cdi_devices(
    options: &GpuOptions,
    names: &[DeviceName],
    inventory: Option<&Inventory>,
    warn: bool,
) -> Result<Option<CdiInjection>, GpuError> {
    if names.is_empty() {
        return Ok(None);
    }
    let root = driver_root(options);
    let discovered;
    let inventory = match inventory {
        Some(inventory) => Some(inventory),
        None => {
            discovered = match DriverTree::discover(&root) {
                Ok(inventory) => Some(inventory),
                Err(GpuError::NoDriver { .. }) => None,
                Err(e) => return Err(e),
            };
            discovered.as_ref()
        }
    };
    let registry = Registry::load(&root);
    if warn {
        for warning in &registry.warnings {
            eprintln!("farm: warning: {warning}");
        }
    }
    let injection = cdi::inject(&registry, names, inventory)?;
    if warn {
        for warning in &injection.warnings {
            eprintln!("farm: warning: {warning}");
        }
    }
    Ok(Some(injection))
}

/// What the container asks for. `env` is the whole environment (image then `-e`),
/// `caller_env` only what the caller gave (`-e`, `--env-file`). A request that comes from
/// the image alone (CUDA images set `NVIDIA_VISIBLE_DEVICES=all`) is dropped on a machine
/// without an NVIDIA driver, as docker without the NVIDIA runtime ignores it: such images
/// still run there, on the CPU. Asked for by the caller, a missing driver is an error.
/// With CDI devices (`cdi`) the image's variable is ignored too: the caller chose the
/// devices (as docker with CDI and without the NVIDIA runtime).
/// The request and the driver tree it will be planned on (discovered once).
fn request(
    options: &GpuOptions,
    env: &[String],
    caller_env: &[String],
    cdi: bool,
) -> Result<Option<(GpuRequest, Inventory)>, GpuError> {
    let Some(request) = GpuRequest::resolve(options.gpus.as_deref(), env)? else {
        return Ok(None);
    };
    let asked = options.gpus.is_some()
        || caller_env
            .iter()
            .any(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="));
    if cdi && !asked {
        return Ok(None);
    }
    match DriverTree::discover(&driver_root(options)) {
        Ok(inventory) => Ok(Some((request, inventory))),
        Err(GpuError::NoDriver { .. }) if !asked => Ok(None),
        Err(e) => Err(e),
    }
}

/// Plan `request` on `inventory` with the GPUs of `in_use` taken.
fn plan_on(
    options: &GpuOptions,
    inventory: &Inventory,
    request: &GpuRequest,
    in_use: BTreeSet<u32>,
) -> Result<Plan, GpuError> {
    let root = driver_root(options);
    let options = PlanOptions {
        facts: facts(inventory, &root, request),
        in_use,
    };
    plan(inventory, request, &options)
}

/// Indexes of the inventory's GPUs whose lease id is in `ids`.
fn indexes_of(inventory: &Inventory, ids: &BTreeSet<String>) -> BTreeSet<u32> {
    inventory
        .gpus
        .iter()
        .filter(|gpu| {
            let whole = lease_id(&Assigned {
                index: gpu.index,
                uuid: gpu.uuid.clone(),
                bus_id: None,
                mig: None,
            });
            ids.contains(&whole)
        })
        .map(|gpu| gpu.index)
        .collect()
}

/// What the container gets for its leased GPUs; `None` when it asked for none.
pub struct Injection {
    pub extras: Extras,
    /// Folders of injected libraries for the image's ldconfig (run in the sandbox).
    pub ldconfig: Option<Vec<String>>,
    /// `/proc/driver/nvidia` as the toolkit presents it, put in place after create.
    pub proc_view: Option<ProcView>,
    pub plan: Plan,
}

/// In the monitor: the injection for the GPUs and CDI devices `leased` to this container.
pub fn extras(
    options: &GpuOptions,
    env: &[String],
    caller_env: &[String],
    leased: &[String],
) -> Result<Option<Injection>, GpuError> {
    let names = cdi::parse_names(&options.cdi_devices)?;
    let gpus = request(options, env, caller_env, !names.is_empty())?;
    // CDI alone: the driver tree (where there is one) for the /proc view of its GPUs.
    let standalone = match (&gpus, names.is_empty()) {
        (None, false) => match DriverTree::discover(&driver_root(options)) {
            Ok(inventory) => Some(inventory),
            Err(GpuError::NoDriver { .. }) => None,
            Err(e) => return Err(e),
        },
        _ => None,
    };
    let inventory = gpus.as_ref().map(|(_, i)| i).or(standalone.as_ref());
    let cdi = cdi_devices(options, &names, inventory, false)?;
    if gpus.is_none() && cdi.is_none() {
        return Ok(None);
    }
    let leased_set: BTreeSet<String> = leased.iter().cloned().collect();
    let changed = |id: &str| {
        GpuError::Unsupported(format!(
            "{id} is not leased to this container (the GPUs or CDI specs changed since it was created): run it again"
        ))
    };
    if let Some(cdi) = &cdi {
        if let Some(id) = cdi.leases.iter().find(|id| !leased_set.contains(*id)) {
            return Err(changed(id));
        }
    }
    let no_cdi_gpus = BTreeSet::new();
    let mut injection = match &gpus {
        Some((request, inventory)) => {
            let cdi_gpus = cdi.as_ref().map_or(&no_cdi_gpus, |c| &c.gpu_leases);
            gpu_injection(options, request.clone(), inventory, &leased_set, cdi_gpus)?
        }
        None => Injection {
            extras: Extras::default(),
            ldconfig: None,
            proc_view: None,
            plan: Plan::default(),
        },
    };
    if let (Some(cdi), Some(inventory)) = (&cdi, inventory) {
        if !cdi.gpu_leases.is_empty() {
            injection.proc_view = proc_view(&proc_entries_with_cdi(
                inventory,
                &injection.plan,
                &cdi.gpu_leases,
            ))?;
        }
    }
    if let Some(cdi) = cdi {
        cdi::merge(&mut injection.extras, cdi.extras)?;
        if let Some(folders) = cdi.ldconfig {
            let all = injection.ldconfig.get_or_insert_with(Vec::new);
            for folder in folders {
                if !all.contains(&folder) {
                    all.push(folder);
                }
            }
        }
    }
    Ok(Some(injection))
}

/// The `--gpus` part: `request` planned on the GPUs leased to the container for it (those
/// of `leased` that are not only there for a CDI device, `cdi_gpus`).
fn gpu_injection(
    options: &GpuOptions,
    mut request: GpuRequest,
    inventory: &Inventory,
    leased: &BTreeSet<String>,
    cdi_gpus: &BTreeSet<String>,
) -> Result<Injection, GpuError> {
    // The requirements were checked when the container was created, milliseconds ago:
    // not again here (that would load NVML a second time on the start path).
    request.requirements.clear();
    let root = driver_root(options);
    // Every whole GPU not leased to us for --gpus counts as in use, so a count lands on
    // ours.
    let for_gpus: BTreeSet<String> = leased.difference(cdi_gpus).cloned().collect();
    let ours = indexes_of(inventory, &for_gpus);
    let in_use = inventory
        .gpus
        .iter()
        .map(|g| g.index)
        .filter(|index| !ours.contains(index))
        .collect();
    let plan = plan_on(options, inventory, &request, in_use)?;
    if request.devices != Devices::None {
        for assigned in &plan.assigned {
            let id = lease_id(assigned);
            if !leased.contains(&id) {
                return Err(GpuError::Unsupported(format!(
                    "GPU {id} is not leased to this container (the GPUs changed since it was created): run it again"
                )));
            }
        }
    }
    let hosts = device_hosts(inventory);
    let mut extras = Extras::default();
    for device in &plan.devices {
        let host = hosts
            .get(&device.path)
            .cloned()
            .unwrap_or_else(|| root.join(device.path.trim_start_matches('/')));
        extras.devices.push(ExtraDevice {
            host,
            path: device.path.clone(),
            major: device.major as i64,
            minor: device.minor as i64,
            access: "rwm".to_owned(),
        });
    }
    for mount in &plan.mounts {
        extras.binds.push(ExtraBind {
            dir: mount.source.is_dir(),
            host: mount.source.clone(),
            path: mount.destination.clone(),
        });
    }
    for link in &plan.symlinks {
        extras.symlinks.push(ExtraSymlink {
            path: link.path.clone(),
            target: link.target.clone(),
        });
    }
    let ldconfig = plan.ldconfig.as_ref().map(|l| l.folders.clone());
    let proc_view = proc_view(&plan.proc)?;
    Ok(Injection {
        extras,
        ldconfig,
        proc_view,
        plan,
    })
}

/// The /proc steps for the GPUs of `plan` and those a CDI device brings (`cdi_gpus`, lease
/// ids): the view shows every GPU the container was given, by either way.
fn proc_entries_with_cdi(
    inventory: &Inventory,
    plan: &Plan,
    cdi_gpus: &BTreeSet<String>,
) -> Vec<ProcEntry> {
    if inventory.platform != Platform::Linux {
        return Vec::new();
    }
    let mut chosen: Vec<(&Gpu, Option<&MigDevice>)> = Vec::new();
    for assigned in &plan.assigned {
        if let Some(gpu) = inventory.gpus.iter().find(|g| g.index == assigned.index) {
            let mig = assigned.mig.and_then(|(gi, ci)| {
                gpu.mig
                    .iter()
                    .find(|m| m.gpu_instance == gi && m.compute_instance == ci)
            });
            chosen.push((gpu, mig));
        }
    }
    for gpu in &inventory.gpus {
        let whole = lease_id(&Assigned {
            index: gpu.index,
            uuid: gpu.uuid.clone(),
            bus_id: None,
            mig: None,
        });
        if cdi_gpus.contains(&whole) && !chosen.iter().any(|(g, _)| g.index == gpu.index) {
            chosen.push((gpu, None));
        }
    }
    proc_entries(inventory, &chosen)
}

/// The plan's /proc steps as one view: a tmpfs over the folder, then files and binds in it.
fn proc_view(entries: &[ProcEntry]) -> Result<Option<ProcView>, GpuError> {
    let mut view: Option<ProcView> = None;
    for entry in entries {
        if let ProcEntry::Tmpfs { path } = entry {
            view = Some(ProcView {
                path: path.clone(),
                ..ProcView::default()
            });
            continue;
        }
        let Some(view) = view.as_mut() else {
            return Err(GpuError::Unsupported(format!(
                "/proc entry {entry:?} comes before its tmpfs"
            )));
        };
        let inside = |path: &str| {
            path.strip_prefix(&view.path)
                .and_then(|p| p.strip_prefix('/'))
                .map(str::to_owned)
                .ok_or_else(|| {
                    GpuError::Unsupported(format!("/proc entry {path} is outside {}", view.path))
                })
        };
        match entry {
            ProcEntry::Bind {
                source,
                destination,
            } => {
                let inside = inside(destination)?;
                view.binds.push((source.clone(), inside));
            }
            ProcEntry::File { path, contents } => {
                let inside = inside(path)?;
                view.files.push((inside, contents.clone().into_bytes()));
            }
            ProcEntry::Tmpfs { .. } => unreachable!("handled above"),
        }
    }
    Ok(view)
}

/// Host path of every device node the inventory knows, by container path.
fn device_hosts(inventory: &Inventory) -> BTreeMap<String, PathBuf> {
    let mut nodes: Vec<&DeviceNode> = Vec::new();
    for gpu in &inventory.gpus {
        nodes.push(&gpu.node);
        for mig in &gpu.mig {
            nodes.extend(mig.caps.iter());
        }
    }
    nodes.extend(inventory.control.iter());
    nodes.extend(inventory.dxg.iter());
    nodes
        .into_iter()
        .map(|n| (n.path.clone(), n.host_path.clone()))
        .collect()
}

/// NVML's total energy counter (millijoules) of each leased GPU that has one; empty when
/// there is no driver (or a test tree) or no GPU.
pub fn energy_now(options: &GpuOptions, leased: &[String]) -> BTreeMap<String, u64> {
    if leased.is_empty() || driver_root(options) != Path::new("/") {
        return BTreeMap::new();
    }
    super::nvml::discover()
        .gpus
        .into_iter()
        .filter_map(|gpu| Some((gpu.uuid?, gpu.total_energy_millijoules?)))
        .filter(|(uuid, _)| leased.contains(uuid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_follow_the_driver_branch() {
        assert_eq!(cuda_for_driver("550.54.15").as_deref(), Some("12.4"));
        assert_eq!(cuda_for_driver("550.40.07").as_deref(), Some("12.3"));
        assert_eq!(cuda_for_driver("535.104.05").as_deref(), Some("12.2"));
        assert_eq!(cuda_for_driver("390.1"), None);
        assert_eq!(cuda_for_driver("junk"), None);
    }

    #[test]
    fn lease_ids_prefer_uuids() {
        let gpu = |uuid: Option<&str>, mig| Assigned {
            index: 1,
            uuid: uuid.map(str::to_owned),
            bus_id: None,
            mig,
        };
        assert_eq!(lease_id(&gpu(Some("GPU-x"), None)), "GPU-x");
        assert_eq!(lease_id(&gpu(None, None)), "gpu1");
        assert_eq!(lease_id(&gpu(None, Some((2, 0)))), "gpu1:gi2:ci0");
    }

    #[test]
    fn proc_steps_become_one_view_relative_to_its_folder() {
        let steps = vec![
            ProcEntry::Tmpfs {
                path: "/proc/driver/nvidia".into(),
            },
            ProcEntry::Bind {
                source: "/host/version".into(),
                destination: "/proc/driver/nvidia/version".into(),
            },
            ProcEntry::File {
                path: "/proc/driver/nvidia/params".into(),
                contents: "ModifyDeviceFiles: 0\n".into(),
            },
            ProcEntry::Bind {
                source: "/host/gpus/0000:17:00.0".into(),
                destination: "/proc/driver/nvidia/gpus/0000:17:00.0".into(),
            },
        ];
        let view = proc_view(&steps).unwrap().unwrap();
        assert_eq!(view.path, "/proc/driver/nvidia");
        assert_eq!(
            view.binds,
            [
                (PathBuf::from("/host/version"), "version".to_owned()),
                (
                    PathBuf::from("/host/gpus/0000:17:00.0"),
                    "gpus/0000:17:00.0".to_owned()
                ),
            ]
        );
        assert_eq!(
            view.files,
            [("params".to_owned(), b"ModifyDeviceFiles: 0\n".to_vec())]
        );
        assert_eq!(proc_view(&[]).unwrap(), None);
        // A step outside the folder, or before its tmpfs, is refused.
        let outside = vec![
            steps[0].clone(),
            ProcEntry::Bind {
                source: "/etc".into(),
                destination: "/proc/driver/nvidiax/etc".into(),
            },
        ];
        assert!(proc_view(&outside).is_err());
        assert!(proc_view(&steps[1..]).is_err());
    }
}
