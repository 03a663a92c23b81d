//! CDI spec files: where they are, which of them are trusted, what they say. A spec file
//! is trusted host configuration (it names host device nodes and files to hand to a job),
//! so only regular files owned by root and writable by root alone are read, in folders of
//! the same kind; anything else is skipped with a warning that names it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::DeviceName;
use crate::gpu::GpuError;

/// Where spec files are looked for, under the driver root; for the same device name a
/// later folder wins over an earlier one (generated specs in /var/run/cdi override the
/// static ones in /etc/cdi), as the CDI reference library orders them.
pub const SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// The largest spec file read (nvidia-ctk's for eight GPUs with every library is ~100 KiB).
pub const MAX_SPEC_BYTES: u64 = 4 << 20;

/// One spec file (CDI 0.3.0 to 1.0.x). Fields farm never reads (annotations, a device
/// node's fileMode/uid/gid, a hook's env and timeout) are left out: serde skips them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Applied once when any device of this spec is used.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    /// Applied for this device.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerEdits {
    pub env: Vec<String>,
    pub device_nodes: Vec<DeviceNode>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<Hook>,
    #[serde(rename = "additionalGIDs")]
    pub additional_gids: Option<Vec<u32>>,
    pub intel_rdt: Option<IgnoredAny>,
    pub net_devices: Option<Vec<IgnoredAny>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// Where the node appears in the container.
    pub path: String,
    /// The node on the host; `path` when absent.
    #[serde(default)]
    pub host_path: Option<String>,
    /// `c`, `u` (character) or `b` (block).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    /// Cgroup access (`rwm` or a part of it).
    #[serde(default)]
    pub permissions: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    #[serde(default)]
    pub hook_name: Option<String>,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
}

/// A spec file that was read and checked.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub spec: Spec,
}

/// Which spec defines a device name.
#[derive(Debug, Clone)]
enum Found {
    /// `(spec, device)` indexes.
    One(usize, usize),
    /// Two files of the same folder define it: neither is used (the CDI library's rule).
    Conflict(PathBuf, PathBuf),
}

/// Every trusted spec under one root, by device name.
#[derive(Debug)]
pub struct Registry {
    /// The folders looked in (under the root).
    pub dirs: Vec<PathBuf>,
    pub specs: Vec<Loaded>,
    devices: BTreeMap<String, Found>,
    /// Files and folders skipped, and why (one line each, naming the path).
    pub warnings: Vec<String>,
}

impl Registry {
    /// Reads the spec folders under `root`. Never fails: a folder or file that cannot be
    /// used is skipped with a warning.
    pub fn load(root: &Path) -> Registry {
        let mut registry = Registry {
            dirs: SPEC_DIRS
                .iter()
                .map(|d| root.join(d.trim_start_matches('/')))
                .collect(),
            specs: Vec::new(),
            devices: BTreeMap::new(),
            warnings: Vec::new(),
        };
        for dir in registry.dirs.clone() {
            let mut here: BTreeMap<String, Found> = BTreeMap::new();
            for path in registry.files_in(&dir) {
                let spec = match read_trusted(&path).and_then(|bytes| parse(&path, &bytes)) {
                    Ok(spec) => spec,
                    Err(reason) => {
                        registry.warn(&path, &reason);
                        continue;
                    }
                };
                let index = registry.specs.len();
                for (position, device) in spec.devices.iter().enumerate() {
                    let name = format!("{}={}", spec.kind, device.name);
                    let found = match here.get(&name) {
                        Some(Found::One(other, _)) => {
                            Found::Conflict(registry.specs[*other].path.clone(), path.clone())
                        }
                        Some(conflict @ Found::Conflict(..)) => conflict.clone(),
                        None => Found::One(index, position),
                    };
                    here.insert(name, found);
                }
                registry.specs.push(Loaded { path, spec });
            }
            // A later folder overrides an earlier one, name by name.
            registry.devices.extend(here);
        }
        registry
    }

    fn warn(&mut self, path: &Path, reason: &str) {
        self.warnings
            .push(format!("CDI spec {}: {reason}; skipped", path.display()));
    }

    /// The `*.json`, `*.yaml`, `*.yml` files of a trusted folder, by name.
    fn files_in(&mut self, dir: &Path) -> Vec<PathBuf> {
        let meta = match fs::metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.warn(dir, &e.to_string());
                return Vec::new();
            }
        };
        if !meta.is_dir() {
            self.warn(dir, "not a folder");
            return Vec::new();
        }
        if let Err(reason) = trusted(&meta) {
            self.warn(dir, &reason);
            return Vec::new();
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.warn(dir, &e.to_string());
                return Vec::new();
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        paths.sort();
        paths
    }

    /// Every device name that can be asked for (`vendor/class=name`), sorted; names two
    /// files of one folder define are left out ([`Registry::find`] explains them).
    pub fn names(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|(_, found)| matches!(found, Found::One(..)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The spec and device that define `name`, or an error that lists the devices of
    /// its kind (or says that no spec of the kind was found) and where farm looked.
    pub fn find(&self, name: &DeviceName) -> Result<(&Loaded, &Device), GpuError> {
        match self.devices.get(&name.to_string()) {
            Some(Found::One(spec, device)) => {
                let loaded = &self.specs[*spec];
                Ok((loaded, &loaded.spec.devices[*device]))
            }
            Some(Found::Conflict(a, b)) => Err(GpuError::Cdi(format!(
                "CDI device {name} is defined in both {} and {}: remove one of them",
                a.display(),
                b.display()
            ))),
            None => {
                let kind = name.kind();
                let known: Vec<&str> = self
                    .devices
                    .keys()
                    .filter_map(|n| n.strip_prefix(&kind)?.strip_prefix('='))
                    .collect();
                let mut message = if known.is_empty() {
                    format!(
                        "unknown CDI device {name}: no spec of kind {kind} was found in {} \
                         (generate one, e.g. `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`, \
                         or use --gpus)",
                        self.looked_in()
                    )
                } else {
                    format!(
                        "unknown CDI device {name}: the specs in {} define {}",
                        self.looked_in(),
                        known
                            .iter()
                            .map(|n| format!("{kind}={n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                if !self.warnings.is_empty() {
                    message.push_str(&format!("; skipped: {}", self.warnings.join("; ")));
                }
                Err(GpuError::Cdi(message))
            }
        }
    }

    fn looked_in(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// Owned by root and writable by nobody else.
fn trusted(meta: &fs::Metadata) -> Result<(), String> {
    if meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not root (a CDI spec is trusted host configuration)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o}): only root may write CDI specs",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The bytes of a trusted spec file: a regular file (a symlink is not followed, a fifo
/// does not block), owned by root, not group- or other-writable, at most
/// [`MAX_SPEC_BYTES`].
fn read_trusted(path: &Path) -> Result<Vec<u8>, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "a symlink, not a regular file".to_owned(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    trusted(&meta)?;
    let too_big = |size: u64| format!("{size} bytes, over the {} MiB limit", MAX_SPEC_BYTES >> 20);
    if meta.len() > MAX_SPEC_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Parse by extension (JSON, or YAML with serde-saphyr's default budget against alias
/// bombs and deep nesting) and check what the CDI spec requires of a file.
fn parse(path: &Path, bytes: &[u8]) -> Result<Spec, String> {
    let spec: Spec = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?,
        _ => serde_saphyr::from_slice(bytes).map_err(|e| format!("invalid YAML: {e}"))?,
    };
    check(&spec)?;
    Ok(spec)
}

fn check(spec: &Spec) -> Result<(), String> {
    if !understood_version(&spec.cdi_version) {
        return Err(format!(
            "cdiVersion {:?} is not one farm understands (0.3.0 to 1.0.x)",
            spec.cdi_version
        ));
    }
    let Some((vendor, class)) = spec.kind.split_once('/') else {
        return Err(format!("kind {:?} is not vendor/class", spec.kind));
    };
    if !valid_vendor(vendor) || !valid_class(class) {
        return Err(format!("kind {:?} is not a valid vendor/class", spec.kind));
    }
    if spec.devices.is_empty() {
        return Err("it defines no device".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    for device in &spec.devices {
        if !valid_device_name(&device.name) {
            return Err(format!("device name {:?} is not valid", device.name));
        }
        if !seen.insert(device.name.as_str()) {
            return Err(format!("device {:?} is defined twice", device.name));
        }
    }
    Ok(())
}

/// CDI 0.3.0 (the first tagged release) to 1.0.x: the fields read here kept their meaning
/// across them; a later version may add edits farm would silently miss.
fn understood_version(version: &str) -> bool {
    let parts: Vec<Option<u32>> = version.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(0), Some(minor), Some(_)] => (3..=8).contains(minor),
        [Some(1), Some(0), Some(_)] => true,
        _ => false,
    }
}

/// A vendor: a letter, then letters, digits, `-`, `_`, `.`, ending in a letter or digit
/// (a DNS-like domain such as `nvidia.com`), at most 253 characters.
pub fn valid_vendor(vendor: &str) -> bool {
    vendor.len() <= 253 && segment(vendor, |c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A class: as a vendor, at most 63 characters.
pub fn valid_class(class: &str) -> bool {
    class.len() <= 63 && segment(class, |c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A device name: letters and digits, with `-`, `_`, `.` and `:` (MIG devices are `0:1`)
/// between.
pub fn valid_device_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        }
        _ => false,
    }
}

/// Starts with a letter, ends with a letter or digit, `inner` characters between.
fn segment(text: &str, inner: impl Fn(char) -> bool) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphabetic() && last.is_ascii_alphanumeric() && text.chars().all(inner)
        }
        _ => false,
    }
}
