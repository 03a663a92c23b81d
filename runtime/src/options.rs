//! What the caller of `farm run` chose, with docker's flag semantics. Stored with the
//! container (serde) so that `inspect` can show it and the monitor can act on it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Options of one container, as docker's `run` flags define them. Fields missing from a
/// stored record (written by an older farm) take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// `--name`; a generated name when absent.
    pub name: Option<String>,
    /// `--entrypoint`: `Some(vec![])` for `--entrypoint ""` (clears the image's), which
    /// also clears the image's Cmd, as docker does.
    pub entrypoint: Option<Vec<String>>,
    /// COMMAND and ARGs after the image; empty means the image's Cmd.
    pub command: Vec<String>,
    /// `-e`/`--env` and `--env-file` entries in order, already `KEY=VALUE` (the CLI
    /// resolves a bare `KEY` from its own environment, dropping it when unset).
    pub env: Vec<String>,
    /// `--secret-env` names only: their values were sealed to the node, are opened in
    /// memory and reach the container's process through the monitor's memory alone
    /// (never this record, the bundle's config.json or a log). Shown as `NAME=<sealed>`.
    pub secret_env: Vec<String>,
    /// `-w`/`--workdir`.
    pub workdir: Option<String>,
    /// `-u`/`--user`: `name`, `uid`, `uid:gid`, `name:group`.
    pub user: Option<String>,
    /// `--hostname`; the first 12 hex digits of the id when absent.
    pub hostname: Option<String>,
    /// `-i`: keep stdin open.
    pub interactive: bool,
    /// `-t`: allocate a pseudo-terminal.
    pub tty: bool,
    /// `-d`: run in the background and print the id.
    pub detach: bool,
    /// `--rm`: remove the container when it exits.
    pub auto_remove: bool,
    pub resources: Resources,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only: bool,
    /// `--tmpfs TARGET[:OPTIONS]`.
    pub tmpfs: Vec<TmpfsMount>,
    /// `-v`/`--mount type=bind`.
    pub binds: Vec<BindMount>,
    pub network: NetworkMode,
    /// `--dns`: nameservers for the container's resolv.conf instead of farm's forwarder
    /// (with `--network internet` still subject to its blocklist).
    pub dns: Vec<std::net::IpAddr>,
    /// Per-job network limits; they can only tighten the farmer's.
    pub network_limits: NetLimits,
    /// `-p [IP:]HOST:CONTAINER[/tcp|/udp]` (with `--network internet` only).
    pub publish: Vec<Publish>,
    /// Set by `farm worker` for a coordinator's job: such a job may publish ports only
    /// where the farmer's config allows it (`allow_publish_for_jobs`).
    pub coordinator_job: bool,
    pub security: SecurityOptions,
    /// `--stop-signal` (a name like `SIGTERM` or `TERM`, or a number); the image's
    /// StopSignal, then SIGTERM, when absent.
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (docker's default is 10).
    pub stop_timeout: Option<u64>,
    /// `--label KEY=VALUE`, in order.
    pub labels: Vec<(String, String)>,
    /// `--timeout`: the job is killed when it runs past this.
    #[serde(with = "opt_duration_secs")]
    pub timeout: Option<Duration>,
    pub gpu: GpuOptions,
    /// `--restart`: what the monitor of a detached container does when it exits.
    pub restart: RestartPolicy,
}

/// docker's `--restart no|on-failure[:N]|always|unless-stopped`, kept by the monitor.
/// With no daemon there is no boot-time start, so `unless-stopped` acts as `always`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "Name")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max_retries` times (0: without limit).
    OnFailure {
        #[serde(rename = "MaximumRetryCount")]
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether a container that ended with `code`, after `restarts` restarts so far, is
    /// started again (moby's restartmanager; a `farm stop` is checked by the caller).
    pub fn should_restart(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && (max_retries == 0 || restarts < max_retries)
            }
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;

    /// docker's syntax and messages.
    fn from_str(text: &str) -> Result<RestartPolicy, String> {
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        let policy = match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure { max_retries: 0 },
            other => {
                return Err(format!(
                    "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                ))
            }
        };
        match (policy, count) {
            (_, None) => Ok(policy),
            (RestartPolicy::OnFailure { .. }, Some(count)) => {
                let max_retries: i64 = count.parse().map_err(|_| {
                    "invalid restart policy format: maximum retry count must be an integer"
                        .to_owned()
                })?;
                if max_retries < 0 {
                    return Err(
                        "invalid restart policy: maximum retry count cannot be negative".to_owned(),
                    );
                }
                Ok(RestartPolicy::OnFailure {
                    max_retries: u32::try_from(max_retries).map_err(|_| {
                        "invalid restart policy: maximum retry count is too large".to_owned()
                    })?,
                })
            }
            (_, Some(_)) => Err(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                    .to_owned(),
            ),
        }
    }
}

/// `--gpus`, `--gpu-share`, `--device` (CDI) and where the driver is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuOptions {
    /// `--gpus` as typed (docker's syntax: `all`, `2`, `device=0,2`, `device=GPU-…`).
    pub gpus: Option<String>,
    /// `--gpu-share`: the GPUs may also be given to other containers that share.
    pub share: bool,
    /// `--device` names of CDI devices (`nvidia.com/gpu=0`).
    pub cdi_devices: Vec<String>,
    /// Root of the host tree the NVIDIA driver is looked for in (`/`); tests point it at a
    /// fake driver tree (hidden `--driver-root`).
    pub driver_root: Option<PathBuf>,
}

/// cgroup limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// `--cpus`: number of CPUs (0.5 = half a core).
    pub cpus: Option<f64>,
    /// `--memory` in bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap in bytes, `-1` for unlimited swap; `None` (or 0)
    /// allows no swap beyond `--memory` (docker's default would allow as much again).
    pub memory_swap: Option<i64>,
    /// `--pids-limit`; `None` or a value <= 0 means unlimited, as docker.
    pub pids_limit: Option<i64>,
    /// `--shm-size` in bytes (docker's default is 64 MiB).
    pub shm_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Absolute path inside the container.
    pub target: String,
    /// Mount options as docker takes them (`size=64m,mode=1777,noexec`); may be empty.
    pub options: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Absolute path on the host.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// `--network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A network namespace with only loopback (the default until internet-only exists).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Its own network namespace with egress to public addresses only: the LAN, the host,
    /// link-local/metadata and other containers are blocked (`runtime::network`).
    Internet,
}

/// `--net-conn-rate`, `--net-max-conn`, `--net-egress-mbps`: a job's own network limits
/// (`None` or 0: the farmer's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetLimits {
    pub new_connections_per_second: Option<u32>,
    pub max_connections: Option<u32>,
    pub egress_mbps: Option<u32>,
}

/// `--security-opt`, `--cap-add`, `--cap-drop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityOptions {
    pub seccomp: SeccompMode,
    /// Capability names as docker takes them (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// `seccomp-profiles/default.json`, Docker's default profile.
    #[default]
    Default,
    /// `--security-opt seccomp=unconfined`.
    Unconfined,
    /// `--security-opt seccomp=PATH`: a profile in Docker's JSON format.
    Profile(PathBuf),
}

mod opt_duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(Duration::from_secs_f64))
    }
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    #[default]
    Tcp,
    Udp,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        }
    }
}

/// One `-p`: connections to the host's `host_port` (on `host_ip` only, when given) go to
/// the container's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: PortProtocol,
}

impl std::str::FromStr for Publish {
    type Err = String;

    /// docker's `[IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]` (IPv4; no ranges).
    fn from_str(text: &str) -> Result<Publish, String> {
        let bad = || {
            format!("-p {text:?}: use [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp], e.g. -p 8080:80")
        };
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, PortProtocol::Tcp),
            Some((ports, "udp")) => (ports, PortProtocol::Udp),
            Some(_) => return Err(bad()),
            None => (text, PortProtocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [host, container] => (None, *host, *container),
            [ip, host, container] => (Some(ip.parse().map_err(|_| bad())?), *host, *container),
            _ => return Err(bad()),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        Ok(Publish {
            host_ip: ip,
            host_port: port(host)?,
            container_port: port(container)?,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::RestartPolicy;

    #[test]
    fn restart_policies_parse_as_docker() {
        assert_eq!("no".parse(), Ok(RestartPolicy::No));
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert_eq!(
            "on-failure:5".parse(),
            Ok(RestartPolicy::OnFailure { max_retries: 5 })
        );
        assert_eq!(
            "on-failure".parse(),
            Ok(RestartPolicy::OnFailure { max_retries: 0 })
        );
        assert!("on-failure:-1"
            .parse::<RestartPolicy>()
            .unwrap_err()
            .contains("cannot be negative"));
        assert!("always:3"
            .parse::<RestartPolicy>()
            .unwrap_err()
            .contains("only be used with 'on-failure'"));
        assert!("sometimes"
            .parse::<RestartPolicy>()
            .unwrap_err()
            .contains("unknown policy 'sometimes'"));
    }

    #[test]
    fn on_failure_counts_retries_as_moby() {
        let policy = RestartPolicy::OnFailure { max_retries: 1 };
        assert!(policy.should_restart(1, 0));
        assert!(!policy.should_restart(1, 1), "one retry, then it gives up");
        assert!(
            !policy.should_restart(0, 0),
            "a clean exit is not restarted"
        );
        let unlimited = RestartPolicy::OnFailure { max_retries: 0 };
        assert!(unlimited.should_restart(2, 1000));
        assert!(RestartPolicy::Always.should_restart(0, 7));
        assert!(!RestartPolicy::No.should_restart(1, 0));
    }
}
