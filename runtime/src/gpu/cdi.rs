//! The Container Device Interface (CDI, github.com/cncf-tags/container-device-interface):
//! `farm run --device vendor/class=name` gives a job the devices that a vendor's spec file
//! in /etc/cdi or /var/run/cdi describes (`nvidia-ctk cdi generate` writes
//! /etc/cdi/nvidia.yaml). A spec is not applied as written: its edits are translated to
//! farm's own [`Extras`] under farm's sandbox rules.
//!
//! - Device nodes: host character devices only (a job never gets a host block device),
//!   bound at a clean path under /dev, one cgroup rule each with the spec's permissions.
//! - Mounts: binds only, always read-only, nosuid, nodev (`rw` in a spec is not honoured),
//!   never onto /proc, /sys or /dev; targets are made inside the rootfs by
//!   `spec::extras` (RESOLVE_IN_ROOT).
//! - Hooks are never run: a host binary run by the runtime with paths the container
//!   controls is the class of the container toolkit's CVEs. The NVIDIA hooks farm knows are
//!   translated instead: `create-symlinks` into symlinks made inside the rootfs,
//!   `update-ldcache` (and `create-soname-symlinks`) into folders for the image's own
//!   ldconfig, run in the sandbox. Any other hook is named in a warning.
//! - additionalGIDs, intelRdt and netDevices are not applied (a warning).
//!
//! Devices are leased as `--gpus` GPUs are: `cdi:<name>` for the device, plus the lease id
//! of every GPU whose `/dev/nvidiaN` node it brings, so `--gpus 0` and
//! `--device nvidia.com/gpu=0` never give one GPU to two containers that do not share.

mod spec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use spec::{ContainerEdits, DeviceNode, Hook, Mount};
pub use spec::{Registry, MAX_SPEC_BYTES, SPEC_DIRS};

use super::driver::Inventory;
use super::inject::lease_id;
use super::plan::Assigned;
use super::GpuError;
use crate::spec::extras::{ExtraBind, ExtraDevice, ExtraSymlink, Extras};
use crate::spec::root::{clean, is_under};

/// What a CDI device's lease id starts with (the rest is its fully-qualified name).
pub const LEASE_PREFIX: &str = "cdi:";

/// A fully-qualified CDI device name, `vendor/class=name` (`nvidia.com/gpu=0`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceName {
    pub vendor: String,
    pub class: String,
    pub name: String,
}

impl DeviceName {
    /// Parses a `--device` value; anything but a fully-qualified name is an error that
    /// says what `--device` takes.
    pub fn parse(value: &str) -> Result<DeviceName, GpuError> {
        let invalid = |reason: String| GpuError::InvalidCdiName {
            value: value.to_owned(),
            reason,
        };
        let (kind, name) = value
            .split_once('=')
            .ok_or_else(|| invalid("it is not vendor/class=name".to_owned()))?;
        let (vendor, class) = kind
            .split_once('/')
            .ok_or_else(|| invalid("it is not vendor/class=name".to_owned()))?;
        if !spec::valid_vendor(vendor) {
            return Err(invalid(format!("the vendor {vendor:?} is not valid")));
        }
        if !spec::valid_class(class) {
            return Err(invalid(format!("the class {class:?} is not valid")));
        }
        if !spec::valid_device_name(name) {
            return Err(invalid(format!("the device name {name:?} is not valid")));
        }
        Ok(DeviceName {
            vendor: vendor.to_owned(),
            class: class.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `vendor/class`, a spec's `kind`.
    pub fn kind(&self) -> String {
        format!("{}/{}", self.vendor, self.class)
    }

    /// The id its lease is recorded under.
    pub fn lease_id(&self) -> String {
        format!("{LEASE_PREFIX}{self}")
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.vendor, self.class, self.name)
    }
}

/// The `--device` values, parsed, each name once, in the order given.
pub fn parse_names(values: &[String]) -> Result<Vec<DeviceName>, GpuError> {
    let mut names: Vec<DeviceName> = Vec::new();
    for value in values {
        let name = DeviceName::parse(value)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// What the requested CDI devices give a container.
#[derive(Debug, Default)]
pub struct CdiInjection {
    pub extras: Extras,
    /// Folders for the image's ldconfig (from `update-ldcache` hooks); `None` when no
    /// spec asked for the linker cache to be refreshed.
    pub ldconfig: Option<Vec<String>>,
    /// Every lease the devices need: `cdi:<name>` for each, and the GPUs they bring.
    pub leases: Vec<String>,
    /// The lease ids of the inventory's GPUs among `leases`.
    pub gpu_leases: BTreeSet<String>,
    /// What was not applied (hooks, GIDs, …), one line each.
    pub warnings: Vec<String>,
}

/// Translate the devices `names` (from `registry`) into one injection. `inventory` is the
/// NVIDIA driver tree when there is one: device nodes that are its GPUs' nodes are leased
/// as those GPUs. A spec's own edits apply once, before those of its first device used.
pub fn inject(
    registry: &Registry,
    names: &[DeviceName],
    inventory: Option<&Inventory>,
) -> Result<CdiInjection, GpuError> {
    let gpus = gpu_nodes(inventory);
    let mut out = CdiInjection::default();
    let mut applied: BTreeSet<PathBuf> = BTreeSet::new();
    for name in names {
        let (loaded, device) = registry.find(name)?;
        let origin = format!("CDI device {name} ({})", loaded.path.display());
        push_unique(&mut out.leases, name.lease_id());
        if applied.insert(loaded.path.clone()) {
            apply(&loaded.spec.container_edits, &origin, &gpus, &mut out)?;
        }
        apply(&device.container_edits, &origin, &gpus, &mut out)?;
    }
    Ok(out)
}

/// The lease id of each GPU of the inventory, by `major:minor` of its node.
fn gpu_nodes(inventory: Option<&Inventory>) -> BTreeMap<(i64, i64), String> {
    inventory
        .map(|inventory| {
            inventory
                .gpus
                .iter()
                .map(|gpu| {
                    let id = lease_id(&Assigned {
                        index: gpu.index,
                        uuid: gpu.uuid.clone(),
                        bus_id: None,
                        mig: None,
                    });
                    ((gpu.node.major as i64, gpu.node.minor as i64), id)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// One `containerEdits` into `out`.
fn apply(
    edits: &ContainerEdits,
    origin: &str,
    gpus: &BTreeMap<(i64, i64), String>,
    out: &mut CdiInjection,
) -> Result<(), GpuError> {
    let err = |what: String| GpuError::Cdi(format!("{origin}: {what}"));
    for entry in &edits.env {
        match entry.split_once('=') {
            Some((key, _)) if !key.is_empty() && !entry.contains('\0') => {}
            _ => return Err(err(format!("env entry {entry:?} is not KEY=VALUE"))),
        }
        push_unique(&mut out.extras.env, entry.clone());
    }
    for node in &edits.device_nodes {
        let device = device_node(node).map_err(err)?;
        if let Some(id) = gpus.get(&(device.major, device.minor)) {
            push_unique(&mut out.leases, id.clone());
            out.gpu_leases.insert(id.clone());
        }
        push_device(&mut out.extras, device)?;
    }
    for mount in &edits.mounts {
        if mount.options.iter().any(|o| o == "rw") {
            out.warnings.push(format!(
                "{origin}: {} is mounted read-only (farm does not honour rw in a CDI spec)",
                mount.container_path
            ));
        }
        push_bind(&mut out.extras, bind(mount).map_err(err)?);
    }
    for hook in &edits.hooks {
        translate_hook(hook, origin, out).map_err(err)?;
    }
    if edits
        .additional_gids
        .as_ref()
        .is_some_and(|gids| gids.iter().any(|g| *g != 0))
    {
        out.warnings.push(format!(
            "{origin}: additionalGIDs are not applied (the container's groups are its image's and -u's)"
        ));
    }
    if edits.intel_rdt.is_some() {
        out.warnings
            .push(format!("{origin}: intelRdt is not applied"));
    }
    if edits.net_devices.as_ref().is_some_and(|n| !n.is_empty()) {
        out.warnings.push(format!(
            "{origin}: netDevices are not applied (no host network device is moved into a container)"
        ));
    }
    Ok(())
}

/// A clean absolute container path: no NUL, no `..` (a spec path that climbs is refused
/// rather than reinterpreted).
fn container_path(path: &str) -> Option<String> {
    if path.split('/').any(|part| part == "..") {
        return None;
    }
    clean(path)
}

/// A device node of a spec, checked against the host's node. The node is a bind of the
/// host's own node, so its owner and mode are the host's as the container's user
/// namespace sees them: a spec's `fileMode`, `uid` and `gid` cannot apply and are not read.
fn device_node(node: &DeviceNode) -> Result<ExtraDevice, String> {
    let path = container_path(&node.path)
        .filter(|p| is_under(p, "/dev") && p != "/dev")
        .ok_or_else(|| {
            format!(
                "device node path {:?} is not a clean path under /dev",
                node.path
            )
        })?;
    let host_text = node.host_path.as_deref().unwrap_or(&node.path);
    if !host_text.starts_with('/') {
        return Err(format!(
            "device node host path {host_text:?} is not absolute"
        ));
    }
    // The checked node and the mount source are one path: symlinks (/dev/char/195:0)
    // resolved first.
    let host = fs::canonicalize(host_text).map_err(|e| format!("device node {host_text}: {e}"))?;
    let meta = fs::symlink_metadata(&host).map_err(|e| format!("device node {host_text}: {e}"))?;
    let block = |what: &str| {
        format!("{what} is a block device: farm never gives a job a host block device")
    };
    if meta.file_type().is_block_device() {
        return Err(block(host_text));
    }
    if !meta.file_type().is_char_device() {
        return Err(format!("{host_text} is not a character device"));
    }
    let major = nix::sys::stat::major(meta.rdev()) as i64;
    let minor = nix::sys::stat::minor(meta.rdev()) as i64;
    match node.kind.as_deref() {
        None | Some("c") | Some("u") => {}
        Some("b") => return Err(block(&path)),
        Some(other) => return Err(format!("device node {path} has type {other:?}, not c")),
    }
    for (what, given, found) in [("major", node.major, major), ("minor", node.minor, minor)] {
        if given.is_some_and(|given| given != found) {
            return Err(format!(
                "device node {path}: the spec says {what} {}, the host's {host_text} is {major}:{minor}",
                given.unwrap_or_default()
            ));
        }
    }
    let access = match node.permissions.as_deref() {
        None | Some("") => "rwm".to_owned(),
        Some(p) if valid_access(p) => p.to_owned(),
        Some(p) => {
            return Err(format!(
                "device node {path}: permissions {p:?} are not a part of rwm"
            ))
        }
    };
    Ok(ExtraDevice {
        host,
        path,
        major,
        minor,
        access,
    })
}

/// `r`, `w`, `m`, each at most once.
fn valid_access(access: &str) -> bool {
    let mut seen = BTreeSet::new();
    access.chars().all(|c| "rwm".contains(c) && seen.insert(c))
}

/// A spec mount as a read-only bind: only binds (no type, `bind`, or a dummy type with a
/// bind option), onto a clean path outside /proc, /sys and /dev, of a host path that
/// exists now.
fn bind(mount: &Mount) -> Result<ExtraBind, String> {
    let binds = mount.options.iter().any(|o| o == "bind" || o == "rbind");
    match mount.kind.as_deref() {
        None | Some("bind") => {}
        Some("none") if binds => {}
        Some(other) => {
            return Err(format!(
                "the mount of type {other:?} at {} is not supported: farm only binds host files, read-only",
                mount.container_path
            ))
        }
    }
    let path = container_path(&mount.container_path)
        .filter(|p| {
            p != "/" && !is_under(p, "/proc") && !is_under(p, "/sys") && !is_under(p, "/dev")
        })
        .ok_or_else(|| {
            format!(
                "mount target {:?} is not allowed (a clean absolute path outside /proc, /sys and /dev)",
                mount.container_path
            )
        })?;
    if !mount.host_path.starts_with('/') {
        return Err(format!(
            "mount source {:?} is not absolute",
            mount.host_path
        ));
    }
    let meta = fs::metadata(&mount.host_path)
        .map_err(|e| format!("mount source {}: {e}", mount.host_path))?;
    Ok(ExtraBind {
        host: PathBuf::from(&mount.host_path),
        path,
        dir: meta.is_dir(),
    })
}

/// What a hook would have done, done farm's way; a hook farm does not know is only named
/// in a warning. Hooks are never run.
fn translate_hook(hook: &Hook, origin: &str, out: &mut CdiInjection) -> Result<(), String> {
    let program = Path::new(&hook.path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    // args[0] is argv[0], as for execv.
    let args = hook.args.get(1..).unwrap_or_default();
    let (sub, rest) = match (program, args) {
        ("nvidia-cdi-hook", [sub, rest @ ..]) => (sub.as_str(), rest),
        ("nvidia-ctk", [hook_word, sub, rest @ ..]) if hook_word == "hook" => (sub.as_str(), rest),
        _ => {
            out.warnings.push(not_run(hook, origin));
            return Ok(());
        }
    };
    match sub {
        "create-symlinks" => {
            for link in flag_values(rest, "--link") {
                let (target, path) = link.split_once("::").ok_or_else(|| {
                    format!("create-symlinks --link {link:?} is not TARGET::LINK")
                })?;
                let path = container_path(path)
                    .filter(|p| p != "/" && !is_under(p, "/proc") && !is_under(p, "/sys"))
                    .ok_or_else(|| format!("create-symlinks: the link {path:?} is not allowed"))?;
                if is_under(&path, "/dev") {
                    // /dev is libcontainer's own tmpfs, made after the rootfs: a link made in
                    // the image's /dev would be hidden (e.g. /dev/dri/by-path/…).
                    out.warnings.push(format!(
                        "{origin}: the symlink {path} is not made (links under /dev are not supported)"
                    ));
                    continue;
                }
                if !out.extras.symlinks.iter().any(|l| l.path == path) {
                    out.extras.symlinks.push(ExtraSymlink {
                        path,
                        target: target.to_owned(),
                    });
                }
            }
        }
        // Both run ldconfig on the folders (the second with -n: links only); farm's executor
        // runs the image's own ldconfig on them inside the sandbox, which does both.
        "update-ldcache" | "create-soname-symlinks" => {
            let folders = out.ldconfig.get_or_insert_with(Vec::new);
            for folder in flag_values(rest, "--folder") {
                let folder = container_path(folder)
                    .ok_or_else(|| format!("{sub}: the folder {folder:?} is not absolute"))?;
                push_unique(folders, folder);
            }
        }
        // chmod sets the mode of folders the toolkit made under /dev (/dev/dri) for users
        // other than root; farm's /dev is libcontainer's tmpfs and the nodes keep the host's
        // modes, seen through the user namespace: nothing to change.
        "chmod" => {}
        // enable-cuda-compat points the linker at the image's forward-compatibility CUDA
        // libraries (/usr/local/cuda/compat) when they are newer than the driver; those are
        // the image's own files and its own ld.so.conf decides: farm never rewrites it.
        "enable-cuda-compat" => {}
        // disable-device-node-modification edits /proc/driver/nvidia/params so that libcuda
        // does not try to mknod; what a container sees of /proc is farm's own job (gpu::plan),
        // and the user namespace already forbids mknod.
        "disable-device-node-modification" => {}
        _ => out.warnings.push(not_run(hook, origin)),
    }
    Ok(())
}

fn not_run(hook: &Hook, origin: &str) -> String {
    let args = hook.args.get(1..).unwrap_or_default().join(" ");
    format!(
        "{origin}: the hook `{} {args}` is not run (farm never runs CDI hooks)",
        hook.path
    )
}

/// The values of `flag` (`--flag VALUE` or `--flag=VALUE`), in order.
fn flag_values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    let mut values = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            if let Some(value) = iter.next() {
                values.push(value.as_str());
            }
        } else if let Some(value) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            values.push(value);
        }
    }
    values
}

/// Add a device node unless one is already at its path; two different nodes at one path
/// is an error.
fn push_device(extras: &mut Extras, device: ExtraDevice) -> Result<(), GpuError> {
    match extras.devices.iter().find(|d| d.path == device.path) {
        Some(d) if (d.major, d.minor) == (device.major, device.minor) => Ok(()),
        Some(d) => Err(GpuError::Cdi(format!(
            "two device nodes at {}: {}:{} and {}:{}",
            device.path, d.major, d.minor, device.major, device.minor
        ))),
        None => {
            extras.devices.push(device);
            Ok(())
        }
    }
}

/// Add a bind unless one is already at its target (the first one given wins: `--gpus`'s,
/// then the specs' in order).
fn push_bind(extras: &mut Extras, bind: ExtraBind) {
    if !extras.binds.iter().any(|b| b.path == bind.path) {
        extras.binds.push(bind);
    }
}

/// `from` added to `into` (the `--gpus` injection): device nodes, binds, symlinks at a path
/// `into` already has are skipped, env entries replace the same key when applied.
pub fn merge(into: &mut Extras, from: Extras) -> Result<(), GpuError> {
    for device in from.devices {
        push_device(into, device)?;
    }
    for bind in from.binds {
        push_bind(into, bind);
    }
    for link in from.symlinks {
        if !into.symlinks.iter().any(|l| l.path == link.path) {
            into.symlinks.push(link);
        }
    }
    for entry in from.env {
        push_unique(&mut into.env, entry);
    }
    Ok(())
}
