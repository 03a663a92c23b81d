//! What a job asks for: docker's `--gpus` flag and the NVIDIA container toolkit's
//! environment variables (`NVIDIA_VISIBLE_DEVICES`, `NVIDIA_DRIVER_CAPABILITIES`,
//! `NVIDIA_REQUIRE_*`, `NVIDIA_DISABLE_REQUIRE`), resolved with the toolkit's precedence:
//! `--gpus` wins over the environment; with neither there is no GPU.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

/// Anything that can go wrong parsing a GPU request, reading the driver tree or planning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    #[error("invalid --gpus value {value:?}: {reason}")]
    InvalidGpus { value: String, reason: String },
    #[error("invalid {var} value {value:?}: {reason}")]
    InvalidEnv {
        var: String,
        value: String,
        reason: String,
    },
    #[error("invalid requirement {constraint:?} in {var}: {reason}")]
    InvalidRequirement {
        var: String,
        constraint: String,
        reason: String,
    },
    /// A `NVIDIA_REQUIRE_*` constraint the driver does not meet.
    #[error(
        "unsatisfied requirement {var}={requirement:?}: the driver has {found}; \
         update the driver, pick an image built for it, or set NVIDIA_DISABLE_REQUIRE=1"
    )]
    Unsatisfied {
        var: String,
        requirement: String,
        found: String,
    },
    #[error("no NVIDIA driver found under {root}: install the driver or run without --gpus")]
    NoDriver { root: PathBuf },
    #[error("unknown GPU {id:?}: this machine has {available}")]
    UnknownDevice { id: String, available: String },
    #[error("{requested} GPUs requested but only {available} available")]
    NotEnoughDevices { requested: usize, available: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A `--device` value that is not a fully-qualified CDI name.
    #[error(
        "invalid --device {value:?}: {reason}; --device takes a CDI name such as \
         nvidia.com/gpu=0; for GPUs by index use --gpus"
    )]
    InvalidCdiName { value: String, reason: String },
    /// A CDI device that cannot be given: unknown, or its spec asks for something farm
    /// refuses (a block device, a path outside /dev, a mismatched node).
    #[error("{0}")]
    Cdi(String),
}

/// A driver capability (`NVIDIA_DRIVER_CAPABILITIES`): which driver files a job gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    Compute,
    Compat32,
    Display,
    Graphics,
    Utility,
    Video,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::Compute,
        Capability::Compat32,
        Capability::Display,
        Capability::Graphics,
        Capability::Utility,
        Capability::Video,
    ];

    /// The toolkit's default: `utility,compute`.
    pub fn defaults() -> BTreeSet<Capability> {
        BTreeSet::from([Capability::Utility, Capability::Compute])
    }

    pub fn name(self) -> &'static str {
        match self {
            Capability::Compute => "compute",
            Capability::Compat32 => "compat32",
            Capability::Display => "display",
            Capability::Graphics => "graphics",
            Capability::Utility => "utility",
            Capability::Video => "video",
        }
    }

    fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One GPU named by the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceId {
    /// NVML's index (PCI bus order), as `nvidia-smi` numbers them.
    Index(u32),
    /// A MIG device as `GPU:MIG` indexes (`0:1`: the second MIG device of GPU 0).
    Mig { gpu: u32, instance: u32 },
    /// `GPU-…` or `MIG-…`.
    Uuid(String),
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::Index(i) => write!(f, "{i}"),
            DeviceId::Mig { gpu, instance } => write!(f, "{gpu}:{instance}"),
            DeviceId::Uuid(u) => f.write_str(u),
        }
    }
}

/// Which GPUs the job gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    All,
    /// `NVIDIA_VISIBLE_DEVICES=none`: no GPU, but the driver files of the capabilities.
    None,
    /// `--gpus N` / `count=N`: N GPUs picked by the planner.
    Count(usize),
    Ids(Vec<DeviceId>),
}

/// One `NVIDIA_REQUIRE_*` variable: space-separated alternatives (OR) of comma-separated
/// constraints (AND), as libnvidia-container reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub var: String,
    pub text: String,
    pub alternatives: Vec<Vec<Constraint>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
        }
    }
}

/// `cuda>=12.0`, `driver>=535`, `brand=tesla`, `arch=8.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: String,
    pub op: Op,
    pub value: String,
}

/// What the requirements are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverFacts {
    /// The CUDA version the driver supports (`12.4`), from NVML or the caller.
    pub cuda: Option<String>,
    /// The driver version (`550.54.15`).
    pub driver: Option<String>,
    /// The brands of the chosen GPUs (`tesla`, `geforce`, …), lower-case.
    pub brands: Vec<String>,
    /// The compute capabilities of the chosen GPUs (`8.0`).
    pub archs: Vec<String>,
}

impl Constraint {
    /// Whether the facts meet this constraint; an unknown fact does not.
    pub fn holds(&self, facts: &DriverFacts) -> bool {
        let versions: Vec<&str> = match self.key.as_str() {
            "cuda" => facts.cuda.iter().map(String::as_str).collect(),
            "driver" => facts.driver.iter().map(String::as_str).collect(),
            "arch" => facts.archs.iter().map(String::as_str).collect(),
            "brand" => {
                return !facts.brands.is_empty()
                    && facts.brands.iter().all(|b| {
                        let equal = b.eq_ignore_ascii_case(&self.value);
                        match self.op {
                            Op::Ne => !equal,
                            _ => equal,
                        }
                    });
            }
            _ => return false,
        };
        !versions.is_empty()
            && versions
                .iter()
                .all(|v| self.op.holds(compare_versions(v, &self.value)))
    }
}

/// Compares dotted numeric versions (`12.4` < `12.10`, `550` == `550.0`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parse = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|p| p.trim().parse::<u64>().unwrap_or(0))
            .collect()
    };
    let (mut a, mut b) = (parse(a), parse(b));
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a.cmp(&b)
}

impl Requirement {
    /// Parses one `NVIDIA_REQUIRE_*` value.
    pub fn parse(var: &str, text: &str) -> Result<Requirement, GpuError> {
        let mut alternatives = Vec::new();
        for alternative in text.split_whitespace() {
            let mut all = Vec::new();
            for constraint in alternative.split(',').filter(|c| !c.is_empty()) {
                all.push(parse_constraint(var, constraint)?);
            }
            if !all.is_empty() {
                alternatives.push(all);
            }
        }
        Ok(Requirement {
            var: var.to_string(),
            text: text.to_string(),
            alternatives,
        })
    }

    /// Whether one alternative holds (an empty requirement always does).
    pub fn holds(&self, facts: &DriverFacts) -> bool {
        self.alternatives.is_empty()
            || self
                .alternatives
                .iter()
                .any(|all| all.iter().all(|c| c.holds(facts)))
    }
}

fn parse_constraint(var: &str, text: &str) -> Result<Constraint, GpuError> {
    let invalid = |reason: &str| GpuError::InvalidRequirement {
        var: var.to_string(),
        constraint: text.to_string(),
        reason: reason.to_string(),
    };
    let start = text
        .find(['=', '!', '<', '>'])
        .ok_or_else(|| invalid("expected KEY OP VALUE, e.g. cuda>=12.0"))?;
    let key = text[..start].trim().to_ascii_lowercase();
    let rest = &text[start..];
    let (op, value) = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .into_iter()
    .find_map(|(s, op)| rest.strip_prefix(s).map(|v| (op, v.trim())))
    .ok_or_else(|| invalid("unknown operator"))?;
    if value.is_empty() {
        return Err(invalid("no value"));
    }
    match key.as_str() {
        "cuda" | "driver" | "arch" => {
            if !value
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(invalid("the version must be numbers separated by dots"));
            }
        }
        "brand" => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(invalid("brand takes only = or !="));
            }
        }
        _ => return Err(invalid("unknown key: expected cuda, driver, arch or brand")),
    }
    Ok(Constraint {
        key,
        op,
        value: value.to_string(),
    })
}

/// A parsed `--gpus` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpusFlag {
    pub devices: Devices,
    /// Driver capabilities named by `capabilities=`; empty means "from the environment".
    pub capabilities: BTreeSet<Capability>,
}

impl GpusFlag {
    /// Parses docker's `--gpus`: `all`, `N`, or comma-separated `count=`, `device=`,
    /// `capabilities=`, `driver=nvidia` (a quoted `"device=0,1"` keeps its commas).
    pub fn parse(value: &str) -> Result<GpusFlag, GpuError> {
        let invalid = |reason: String| GpuError::InvalidGpus {
            value: value.to_string(),
            reason,
        };
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(invalid("empty: use all, a count, or device=…".into()));
        }
        if trimmed == "all" {
            return Ok(GpusFlag {
                devices: Devices::All,
                capabilities: BTreeSet::new(),
            });
        }
        if let Ok(count) = trimmed.parse::<i64>() {
            return Ok(GpusFlag {
                devices: count_devices(count).map_err(invalid)?,
                capabilities: BTreeSet::new(),
            });
        }
        let mut devices = None;
        let mut capabilities = BTreeSet::new();
        for field in split_csv(trimmed).map_err(invalid)? {
            let (key, val) = field
                .split_once('=')
                .ok_or_else(|| invalid(format!("{field:?}: expected KEY=VALUE")))?;
            let val = val.trim();
            if devices.is_some() && matches!(key, "count" | "device") {
                return Err(invalid("count and device are mutually exclusive".into()));
            }
            match key.trim() {
                "count" => {
                    devices = Some(if val == "all" {
                        Devices::All
                    } else {
                        let count = val
                            .parse::<i64>()
                            .map_err(|_| invalid(format!("count {val:?} is not a number")))?;
                        count_devices(count).map_err(invalid)?
                    })
                }
                "device" => {
                    devices = Some(parse_device_list(val).map_err(invalid)?);
                }
                "capabilities" => {
                    for cap in val.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                        match cap {
                            // docker's device-request capability, not a driver one
                            "gpu" => {}
                            "all" => capabilities.extend(Capability::ALL),
                            other => {
                                capabilities.insert(Capability::from_name(other).ok_or_else(
                                    || invalid(format!("unknown capability {other:?}")),
                                )?);
                            }
                        }
                    }
                }
                "driver" => {
                    if val != "nvidia" {
                        return Err(invalid(format!("driver {val:?}: only nvidia is supported")));
                    }
                }
                "options" => {}
                other => return Err(invalid(format!("unknown key {other:?}"))),
            }
        }
        Ok(GpusFlag {
            // docker: `--gpus capabilities=utility` alone means all GPUs
            devices: devices.unwrap_or(Devices::All),
            capabilities,
        })
    }
}

fn count_devices(count: i64) -> Result<Devices, String> {
    match count {
        -1 => Ok(Devices::All),
        n if n > 0 => Ok(Devices::Count(n as usize)),
        0 => Err("a count of 0 asks for no GPU: leave --gpus out".into()),
        n => Err(format!("invalid count {n}")),
    }
}

/// Splits docker's CSV-style `--gpus` value: commas split fields except inside quotes.
fn split_csv(value: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if quoted {
        return Err("unbalanced quote".into());
    }
    fields.push(field);
    // `device=0,1` unquoted: docker rejects "1"; the toolkit's users write it anyway, so a
    // bare field after device= continues the device list.
    let mut merged: Vec<String> = Vec::new();
    for field in fields {
        let field = field.trim().to_string();
        if field.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some(last) if !field.contains('=') && last.starts_with("device=") => {
                last.push(',');
                last.push_str(&field);
            }
            _ => merged.push(field),
        }
    }
    Ok(merged)
}

fn parse_device_list(list: &str) -> Result<Devices, String> {
    let list = list.trim().trim_matches('"');
    if list == "all" {
        return Ok(Devices::All);
    }
    let mut ids = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        ids.push(parse_device_id(item)?);
    }
    if ids.is_empty() {
        return Err("empty device list".into());
    }
    Ok(Devices::Ids(ids))
}

fn parse_device_id(item: &str) -> Result<DeviceId, String> {
    if let Ok(index) = item.parse::<u32>() {
        return Ok(DeviceId::Index(index));
    }
    if let Some((gpu, instance)) = item.split_once(':') {
        if let (Ok(gpu), Ok(instance)) = (gpu.parse(), instance.parse()) {
            return Ok(DeviceId::Mig { gpu, instance });
        }
    }
    let valid_uuid = (item.starts_with("GPU-") || item.starts_with("MIG-"))
        && item.len() > 4
        && item[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'/');
    if valid_uuid {
        return Ok(DeviceId::Uuid(item.to_string()));
    }
    Err(format!(
        "device {item:?}: expected an index (0), a MIG index (0:1) or a UUID (GPU-…, MIG-…)"
    ))
}

/// What a job asks for once `--gpus` and the environment are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    pub devices: Devices,
    pub capabilities: BTreeSet<Capability>,
    /// Checked by the planner unless `NVIDIA_DISABLE_REQUIRE` is set (then empty).
    pub requirements: Vec<Requirement>,
}

impl GpuRequest {
    /// Combines `--gpus` (if given) with the container's environment (the image's `Env`
    /// followed by `-e`, `KEY=VALUE` strings; a later one wins). `Ok(None)`: no GPU at all.
    pub fn resolve<S: AsRef<str>>(
        gpus: Option<&str>,
        env: &[S],
    ) -> Result<Option<GpuRequest>, GpuError> {
        let lookup = |key: &str| -> Option<String> {
            env.iter().rev().find_map(|kv| {
                let (k, v) = kv.as_ref().split_once('=')?;
                (k == key).then(|| v.to_string())
            })
        };
        let flag = gpus.map(GpusFlag::parse).transpose()?;
        let devices = match &flag {
            Some(flag) => flag.devices.clone(),
            None => match lookup("NVIDIA_VISIBLE_DEVICES") {
                None => return Ok(None),
                Some(value) => match value.trim() {
                    "" | "void" => return Ok(None),
                    "none" => Devices::None,
                    "all" => Devices::All,
                    list => parse_device_list(list).map_err(|reason| GpuError::InvalidEnv {
                        var: "NVIDIA_VISIBLE_DEVICES".into(),
                        value: value.clone(),
                        reason,
                    })?,
                },
            },
        };
        let capabilities = match flag {
            Some(flag) if !flag.capabilities.is_empty() => flag.capabilities,
            _ => match lookup("NVIDIA_DRIVER_CAPABILITIES") {
                None => Capability::defaults(),
                Some(value) => parse_capabilities(&value)?,
            },
        };
        let disabled = lookup("NVIDIA_DISABLE_REQUIRE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "t" | "true" | "yes"
            )
        });
        let mut requirements = Vec::new();
        if !disabled {
            let mut vars: Vec<(String, String)> = Vec::new();
            for kv in env {
                if let Some((k, v)) = kv.as_ref().split_once('=') {
                    if k.starts_with("NVIDIA_REQUIRE_") {
                        vars.retain(|(old, _)| old != k);
                        vars.push((k.to_string(), v.to_string()));
                    }
                }
            }
            // legacy CUDA images: CUDA_VERSION without NVIDIA_REQUIRE_CUDA means cuda>=M.m
            if !vars.iter().any(|(k, _)| k == "NVIDIA_REQUIRE_CUDA") {
                if let Some(version) = lookup("CUDA_VERSION") {
                    let mut parts = version.trim().split('.');
                    if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
                        vars.push((
                            "NVIDIA_REQUIRE_CUDA".into(),
                            format!("cuda>={major}.{minor}"),
                        ));
                    }
                }
            }
            for (var, value) in vars {
                requirements.push(Requirement::parse(&var, &value)?);
            }
        }
        Ok(Some(GpuRequest {
            devices,
            capabilities,
            requirements,
        }))
    }

    /// Refuses the first requirement the facts do not meet.
    pub fn check_requirements(&self, facts: &DriverFacts) -> Result<(), GpuError> {
        for requirement in &self.requirements {
            if !requirement.holds(facts) {
                let mut found = Vec::new();
                found.push(format!(
                    "CUDA {}",
                    facts.cuda.as_deref().unwrap_or("(unknown)")
                ));
                found.push(format!(
                    "driver {}",
                    facts.driver.as_deref().unwrap_or("(unknown)")
                ));
                if !facts.brands.is_empty() {
                    found.push(format!("brand {}", facts.brands.join("/")));
                }
                if !facts.archs.is_empty() {
                    found.push(format!("arch {}", facts.archs.join("/")));
                }
                return Err(GpuError::Unsatisfied {
                    var: requirement.var.clone(),
                    requirement: requirement.text.clone(),
                    found: found.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Parses `NVIDIA_DRIVER_CAPABILITIES` (empty means the default `utility,compute`).
pub fn parse_capabilities(value: &str) -> Result<BTreeSet<Capability>, GpuError> {
    let mut caps = BTreeSet::new();
    for cap in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if cap == "all" {
            caps.extend(Capability::ALL);
        } else {
            caps.insert(
                Capability::from_name(cap).ok_or_else(|| GpuError::InvalidEnv {
                    var: "NVIDIA_DRIVER_CAPABILITIES".into(),
                    value: value.to_string(),
                    reason: format!(
                        "unknown capability {cap:?}: expected compute, compat32, display, \
                         graphics, utility, video or all"
                    ),
                })?,
            );
        }
    }
    if caps.is_empty() {
        return Ok(Capability::defaults());
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[DeviceId]) -> Devices {
        Devices::Ids(list.to_vec())
    }

    #[test]
    fn gpus_flag_forms() {
        let parse = |s: &str| GpusFlag::parse(s).unwrap().devices;
        assert_eq!(parse("all"), Devices::All);
        assert_eq!(parse("2"), Devices::Count(2));
        assert_eq!(parse("-1"), Devices::All);
        assert_eq!(parse("count=2"), Devices::Count(2));
        assert_eq!(parse("count=all"), Devices::All);
        assert_eq!(
            parse("device=0,2"),
            ids(&[DeviceId::Index(0), DeviceId::Index(2)])
        );
        assert_eq!(
            parse("\"device=0,1\""),
            ids(&[DeviceId::Index(0), DeviceId::Index(1)])
        );
        assert_eq!(
            parse("device=GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a"),
            ids(&[DeviceId::Uuid(
                "GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a".into()
            )])
        );
        assert_eq!(
            parse("device=0:1"),
            ids(&[DeviceId::Mig {
                gpu: 0,
                instance: 1
            }])
        );
        let flag = GpusFlag::parse("\"capabilities=compute,utility\",count=1").unwrap();
        assert_eq!(flag.devices, Devices::Count(1));
        assert_eq!(flag.capabilities, Capability::defaults());
        let flag = GpusFlag::parse("capabilities=graphics").unwrap();
        assert_eq!(flag.devices, Devices::All);
        assert_eq!(flag.capabilities, BTreeSet::from([Capability::Graphics]));
    }

    #[test]
    fn gpus_flag_errors_name_the_problem() {
        for (value, needle) in [
            ("", "empty"),
            ("0", "no GPU"),
            ("count=x", "not a number"),
            ("device=foo", "expected an index"),
            ("count=1,device=0", "mutually exclusive"),
            ("capabilities=magic", "unknown capability"),
            ("driver=amd", "only nvidia"),
            ("colour=red", "unknown key"),
            ("\"device=0", "unbalanced quote"),
        ] {
            let err = GpusFlag::parse(value).unwrap_err().to_string();
            assert!(err.contains(needle), "{value:?}: {err}");
        }
    }

    #[test]
    fn no_flag_and_no_env_means_no_gpu() {
        let none: [&str; 0] = [];
        assert_eq!(GpuRequest::resolve(None, &none).unwrap(), None);
        assert_eq!(
            GpuRequest::resolve(None, &["PATH=/bin", "CUDA_VERSION=12.4.1"]).unwrap(),
            None
        );
    }

    #[test]
    fn visible_devices_env() {
        let resolve = |v: &str| GpuRequest::resolve(None, &[v]).unwrap();
        assert_eq!(resolve("NVIDIA_VISIBLE_DEVICES=void"), None);
        assert_eq!(resolve("NVIDIA_VISIBLE_DEVICES="), None);
        let none = resolve("NVIDIA_VISIBLE_DEVICES=none").unwrap();
        assert_eq!(none.devices, Devices::None);
        assert_eq!(none.capabilities, Capability::defaults());
        assert_eq!(
            resolve("NVIDIA_VISIBLE_DEVICES=all").unwrap().devices,
            Devices::All
        );
        assert_eq!(
            resolve("NVIDIA_VISIBLE_DEVICES=0,1").unwrap().devices,
            ids(&[DeviceId::Index(0), DeviceId::Index(1)])
        );
        let err = GpuRequest::resolve(None, &["NVIDIA_VISIBLE_DEVICES=zero"]).unwrap_err();
        assert!(err.to_string().contains("NVIDIA_VISIBLE_DEVICES"), "{err}");
    }

    #[test]
    fn gpus_flag_wins_over_env_and_later_env_wins() {
        let env = [
            "NVIDIA_VISIBLE_DEVICES=none",
            "NVIDIA_DRIVER_CAPABILITIES=utility",
            "NVIDIA_DRIVER_CAPABILITIES=graphics,video",
        ];
        let request = GpuRequest::resolve(Some("device=1"), &env)
            .unwrap()
            .unwrap();
        assert_eq!(request.devices, ids(&[DeviceId::Index(1)]));
        assert_eq!(
            request.capabilities,
            BTreeSet::from([Capability::Graphics, Capability::Video])
        );
        let request = GpuRequest::resolve(Some("capabilities=utility"), &env)
            .unwrap()
            .unwrap();
        assert_eq!(request.capabilities, BTreeSet::from([Capability::Utility]));
        // --gpus with NVIDIA_VISIBLE_DEVICES=void still gives the GPUs
        let request = GpuRequest::resolve(Some("all"), &["NVIDIA_VISIBLE_DEVICES=void"])
            .unwrap()
            .unwrap();
        assert_eq!(request.devices, Devices::All);
    }

    #[test]
    fn driver_capabilities() {
        assert_eq!(
            parse_capabilities("all").unwrap(),
            BTreeSet::from(Capability::ALL)
        );
        assert_eq!(parse_capabilities("").unwrap(), Capability::defaults());
        assert_eq!(
            parse_capabilities("compute, video").unwrap(),
            BTreeSet::from([Capability::Compute, Capability::Video])
        );
        let err = parse_capabilities("compute,gpu").unwrap_err().to_string();
        assert!(err.contains("unknown capability \"gpu\""), "{err}");
    }

    #[test]
    fn requirements_or_of_ands() {
        let env = [
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_REQUIRE_CUDA=cuda>=12.0 brand=tesla,driver>=535,driver<536",
        ];
        let request = GpuRequest::resolve(None, &env).unwrap().unwrap();
        assert_eq!(request.requirements.len(), 1);
        assert_eq!(request.requirements[0].alternatives.len(), 2);
        let facts = |cuda: &str, driver: &str, brand: &str| DriverFacts {
            cuda: Some(cuda.into()),
            driver: Some(driver.into()),
            brands: vec![brand.into()],
            archs: vec![],
        };
        assert!(request
            .check_requirements(&facts("12.4", "550.54.15", "geforce"))
            .is_ok());
        assert!(request
            .check_requirements(&facts("11.8", "535.104.05", "tesla"))
            .is_ok());
        let err = request
            .check_requirements(&facts("11.8", "535.104.05", "geforce"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cuda>=12.0"), "{err}");
        assert!(err.contains("CUDA 11.8"), "{err}");
        assert!(err.contains("driver 535.104.05"), "{err}");
    }

    #[test]
    fn legacy_cuda_version_and_disable_require() {
        let env = ["NVIDIA_VISIBLE_DEVICES=all", "CUDA_VERSION=12.4.1"];
        let request = GpuRequest::resolve(None, &env).unwrap().unwrap();
        assert_eq!(request.requirements[0].text, "cuda>=12.4");
        let old = DriverFacts {
            cuda: Some("12.2".into()),
            ..Default::default()
        };
        assert!(request.check_requirements(&old).is_err());
        let env = [
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_REQUIRE_CUDA=cuda>=13.0",
            "NVIDIA_DISABLE_REQUIRE=true",
        ];
        let request = GpuRequest::resolve(None, &env).unwrap().unwrap();
        assert!(request.requirements.is_empty());
        assert!(request.check_requirements(&old).is_ok());
    }

    #[test]
    fn invalid_requirements_are_refused() {
        for (text, needle) in [
            ("cuda", "expected KEY OP VALUE"),
            ("cuda>=twelve", "numbers separated by dots"),
            ("brand>tesla", "brand takes only"),
            ("colour=red", "unknown key"),
            ("cuda>=", "no value"),
        ] {
            let env = [
                "NVIDIA_VISIBLE_DEVICES=all".to_string(),
                format!("NVIDIA_REQUIRE_X={text}"),
            ];
            let err = GpuRequest::resolve(None, &env).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains("NVIDIA_REQUIRE_X"), "{err}");
        }
    }

    #[test]
    fn version_order_is_numeric() {
        assert_eq!(compare_versions("12.10", "12.4"), Ordering::Greater);
        assert_eq!(compare_versions("550", "550.0"), Ordering::Equal);
        assert_eq!(compare_versions("535.104.05", "550"), Ordering::Less);
    }
}
