//! Docker's seccomp profile format (moby `profiles/seccomp`), parsed with serde, and the
//! choice of the entries that apply to this host and container (moby's `setupSeccomp`).

use std::str::FromStr;

use oci_spec::runtime::Capability;
use serde::{Deserialize, Deserializer};

/// A profile as Docker writes it. Unknown fields (`comment`, `flags`, `listenerPath`, ...)
/// are ignored, as Docker's own JSON decoding ignores them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// `SCMP_ACT_*`; empty together with an empty `syscalls` means "no seccomp", as Docker.
    #[serde(default)]
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// The older form of `archMap` (a flat list of `SCMP_ARCH_*`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub syscalls: Vec<SyscallEntry>,
}

/// Parsed to check its shape only: farm's filters accept the host's own architecture alone
/// (see `compile`), so the sub-architectures it lists are not filtered but killed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sub_architectures: Vec<String>,
}

/// One entry of `syscalls`: the syscalls it names get `action` when all `args` hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallEntry {
    /// The older form of `names` (one name).
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub args: Vec<Arg>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub includes: Filter,
    #[serde(default, deserialize_with = "null_as_default")]
    pub excludes: Filter,
}

/// libseccomp's argument comparison: `args[index] OP value`; for `SCMP_CMP_MASKED_EQ`
/// `value` is the mask and `valueTwo` the datum: `args[index] & value == valueTwo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// `includes`/`excludes`: capabilities, architectures (Go's names: `amd64`, `arm64`, ...) and
/// a minimum kernel version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What a matching rule does, in the kernel's order of precedence: when several filters
/// return for one syscall, the first of these wins (`seccomp_run_filters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
}

/// Largest errno the kernel passes through (`MAX_ERRNO`); seccompiler would silently keep
/// only 16 bits, turning 65536 into "return 0".
const MAX_ERRNO: u32 = 4095;

impl Action {
    /// `SCMP_ACT_*` with its `errnoRet`, as runc reads them (EPERM when absent).
    pub fn parse(name: &str, errno_ret: Option<u32>) -> Result<Action, String> {
        let data = |max: u32| -> Result<u16, String> {
            let value = errno_ret.unwrap_or(libc::EPERM as u32);
            match u16::try_from(value) {
                Ok(v) if value <= max => Ok(v),
                _ => Err(format!("{name}: errnoRet {value} is above {max}")),
            }
        };
        Ok(match name {
            "SCMP_ACT_ALLOW" => Action::Allow,
            "SCMP_ACT_ERRNO" => Action::Errno(data(MAX_ERRNO)?),
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
            "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
            "SCMP_ACT_TRAP" => Action::Trap,
            "SCMP_ACT_TRACE" => Action::Trace(data(u32::from(u16::MAX))?),
            "SCMP_ACT_LOG" => Action::Log,
            "SCMP_ACT_NOTIFY" => {
                return Err(
                    "SCMP_ACT_NOTIFY needs a seccomp agent, which farm does not run: \
                            use another action"
                        .to_string(),
                )
            }
            other => {
                return Err(format!(
                    "unknown action {other:?}: use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, \
                     SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, \
                     SCMP_ACT_TRACE or SCMP_ACT_LOG"
                ))
            }
        })
    }

    /// Lower is more restrictive (the kernel's order).
    #[cfg(test)]
    pub fn rank(self) -> u8 {
        match self {
            Action::KillProcess => 0,
            Action::KillThread => 1,
            Action::Trap => 2,
            Action::Errno(_) => 3,
            Action::Trace(_) => 4,
            Action::Log => 5,
            Action::Allow => 6,
        }
    }

    pub fn to_seccompiler(self) -> seccompiler::SeccompAction {
        use seccompiler::SeccompAction as S;
        match self {
            Action::KillProcess => S::KillProcess,
            Action::KillThread => S::KillThread,
            Action::Trap => S::Trap,
            Action::Errno(e) => S::Errno(e.into()),
            Action::Trace(t) => S::Trace(t.into()),
            Action::Log => S::Log,
            Action::Allow => S::Allow,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// One checked argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub index: u8,
    pub op: Op,
    pub value: u64,
    pub value_two: u64,
}

impl Cond {
    pub fn parse(arg: &Arg) -> Result<Cond, String> {
        let op = match arg.op.as_str() {
            "SCMP_CMP_NE" => Op::Ne,
            "SCMP_CMP_LT" => Op::Lt,
            "SCMP_CMP_LE" => Op::Le,
            "SCMP_CMP_EQ" => Op::Eq,
            "SCMP_CMP_GE" => Op::Ge,
            "SCMP_CMP_GT" => Op::Gt,
            "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
            other => {
                return Err(format!(
                    "unknown argument operator {other:?}: use SCMP_CMP_NE, _LT, _LE, _EQ, _GE, \
                     _GT or _MASKED_EQ"
                ))
            }
        };
        let index = match u8::try_from(arg.index) {
            Ok(i) if i <= 5 => i,
            _ => return Err(format!("argument index {} is above 5", arg.index)),
        };
        Ok(Cond {
            index,
            op,
            value: arg.value,
            value_two: arg.value_two,
        })
    }

    /// The comparison on a full 64-bit argument, as libseccomp does it.
    #[cfg(test)]
    pub fn holds(&self, arg: u64) -> bool {
        match self.op {
            Op::Ne => arg != self.value,
            Op::Lt => arg < self.value,
            Op::Le => arg <= self.value,
            Op::Eq => arg == self.value,
            Op::Ge => arg >= self.value,
            Op::Gt => arg > self.value,
            Op::MaskedEq => arg & self.value == self.value_two,
        }
    }
}

/// Kernel version as Docker compares it: kernel, major, minor.
pub type KernelVersion = (u32, u32, u32);

/// Parse `6.18.44-fc-v769` or `4.8`: two or three numbers, the rest ignored.
pub fn parse_kernel_version(release: &str) -> Option<KernelVersion> {
    let end = release
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(release.len());
    let mut parts = release[..end].split('.').map(|p| p.parse::<u32>().ok());
    let kernel = parts.next()??;
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    Some((kernel, major, minor))
}

/// What the `includes`/`excludes` of an entry are checked against.
#[derive(Debug, Clone)]
pub struct Host {
    /// Go's name of the architecture, as profiles spell it in `arches` (`amd64`, `arm64`).
    pub arch: &'static str,
    /// Capability names with their `CAP_` prefix.
    pub caps: Vec<String>,
    /// The running kernel; `None` when its release string could not be read.
    pub kernel: Option<KernelVersion>,
}

impl Host {
    pub fn new(arch: &'static str, caps: &[Capability], kernel: Option<KernelVersion>) -> Host {
        let caps = caps
            .iter()
            .filter_map(|cap| match serde_json::to_value(cap) {
                Ok(serde_json::Value::String(name)) => Some(name),
                _ => None,
            })
            .collect();
        Host { arch, caps, kernel }
    }

    fn has_cap(&self, name: &str) -> bool {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        self.caps.contains(&full)
    }

    fn kernel_at_least(&self, min: &str) -> Result<bool, String> {
        let min = parse_kernel_version(min)
            .ok_or_else(|| format!("minKernel {min:?} is not a version like \"4.8\""))?;
        let running = self
            .kernel
            .ok_or("minKernel needs the running kernel's version, which could not be read")?;
        Ok(running >= min)
    }

    /// Whether `entry` applies, with moby's checks in moby's order: excluded arches, caps
    /// (any) and kernels, then included arches, caps (all) and minimum kernel.
    pub fn applies(&self, entry: &SyscallEntry) -> Result<bool, String> {
        let (inc, exc) = (&entry.includes, &entry.excludes);
        if exc.arches.iter().any(|a| a == self.arch) || exc.caps.iter().any(|c| self.has_cap(c)) {
            return Ok(false);
        }
        if let Some(min) = &exc.min_kernel {
            if self.kernel_at_least(min)? {
                return Ok(false);
            }
        }
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == self.arch) {
            return Ok(false);
        }
        if !inc.caps.iter().all(|c| self.has_cap(c)) {
            return Ok(false);
        }
        if let Some(min) = &inc.min_kernel {
            if !self.kernel_at_least(min)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl FromStr for Profile {
    type Err = serde_json::Error;

    fn from_str(text: &str) -> Result<Profile, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_like_docker() {
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8, 0)));
        assert_eq!(parse_kernel_version("6.18.44-fc-v769"), Some((6, 18, 44)));
        assert_eq!(parse_kernel_version("5.10.0+"), Some((5, 10, 0)));
        assert_eq!(parse_kernel_version("6"), None);
        assert_eq!(parse_kernel_version("x.y"), None);
        assert!(parse_kernel_version("4.8").unwrap() <= parse_kernel_version("4.10").unwrap());
    }

    #[test]
    fn actions_take_errno_ret_or_eperm() {
        assert_eq!(Action::parse("SCMP_ACT_ERRNO", None), Ok(Action::Errno(1)));
        assert_eq!(
            Action::parse("SCMP_ACT_ERRNO", Some(38)),
            Ok(Action::Errno(38))
        );
        assert_eq!(Action::parse("SCMP_ACT_KILL", None), Ok(Action::KillThread));
        assert!(Action::parse("SCMP_ACT_ERRNO", Some(65536))
            .unwrap_err()
            .contains("65536"));
        assert!(Action::parse("SCMP_ACT_NOTIFY", None).is_err());
        assert!(Action::parse("SCMP_ACT_BOGUS", None)
            .unwrap_err()
            .contains("SCMP_ACT_BOGUS"));
    }

    #[test]
    fn includes_and_excludes_follow_moby() {
        let host = Host::new("amd64", &[Capability::SysAdmin], Some((6, 1, 0)));
        let entry = |json: &str| -> SyscallEntry { serde_json::from_str(json).unwrap() };
        let yes = |json: &str| host.applies(&entry(json)).unwrap();
        assert!(yes(r#"{"names":["a"],"action":"SCMP_ACT_ALLOW"}"#));
        assert!(yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}"#
        ));
        assert!(!yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN","CAP_BPF"]}}"#
        ));
        assert!(!yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_BPF","CAP_SYS_ADMIN"]}}"#
        ));
        assert!(yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64","amd64"]}}"#
        ));
        assert!(!yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","excludes":{"arches":["amd64"]}}"#
        ));
        assert!(yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}"#
        ));
        assert!(!yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"6.2"}}"#
        ));
        assert!(!yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","excludes":{"minKernel":"5.0"}}"#
        ));
        assert!(yes(
            r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":null,"excludes":{"caps":null}}"#
        ));
        let unknown_kernel = Host::new("amd64", &[], None);
        assert!(unknown_kernel
            .applies(&entry(
                r#"{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}"#
            ))
            .is_err());
    }
}
