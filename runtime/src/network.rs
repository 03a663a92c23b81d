//! `--network internet`: each container in its own network namespace, joined to the host by
//! a routed veth pair (a /31 from the pool, no shared bridge), with egress to public
//! addresses only.
//!
//! Invariants:
//! - Every rule that confines a job lives in the host's network namespace (`table inet
//!   farm`, on the host end of the veth): the container's namespace belongs to its user
//!   namespace, so whatever its root does there (CAP_NET_ADMIN, raw sockets, spoofed
//!   sources, its own routes) only changes the packets that reach the host's filter.
//! - Rules first, link second: the container's interface exists only after its chain and
//!   verdict-map entries were committed (one atomic `nft -f` batch); a host interface named
//!   `fm*` with no map entry is rejected by the base chain. When the rules cannot be
//!   installed the container does not start.
//! - Every host-side name (interface `fm<12 hex>`, nft chains `out_<12 hex>`/`in_<12 hex>`,
//!   counters `tx_`/`rx_`) derives from the container id, so [`teardown`] needs only the id
//!   and is idempotent: what is already gone counts as removed.
//! - No job packet reaches a host service: the input hook rejects all traffic from `fm*`.
//!   DNS goes to a forwarder whose listening socket farm made inside the container's own
//!   namespace (on 127.0.0.53) and whose upstream socket is the host's: only DNS crosses.
//!
//! This module imports only `options` and `layout` of the crate.

pub mod dns;
pub mod firewall;
pub mod link;
pub mod plan;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::options::NetLimits;

/// What went wrong while giving a container its network, or taking it away.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    #[error("netlink {op} failed: {}", std::io::Error::from_raw_os_error(*errno))]
    Netlink { op: String, errno: i32 },
    #[error("netlink {op}: {source}")]
    NetlinkIo {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nftables is needed for --network internet and {path} could not be run ({source}): install it (`apt-get install nftables`), or use --network none"
    )]
    NftMissing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the firewall rules that confine the job could not be installed, so it was not started: {message} (does the kernel have nf_tables? see docs/troubleshooting.md)"
    )]
    Nft { message: String },
    #[error("the network pool {pool} is full: no free /31 for another container")]
    PoolFull { pool: String },
    #[error(
        "the network pool {pool} overlaps {addr}/{len} on {interface}: set another `pool` in the [network] table of {config}"
    )]
    PoolConflict {
        pool: String,
        addr: IpAddr,
        len: u8,
        interface: String,
        config: PathBuf,
    },
    #[error("{0}")]
    Config(String),
    #[error("not a container id: {0:?}")]
    BadId(String),
    #[error(
        "this machine's farmer does not let coordinator jobs publish ports (-p): set `allow_publish_for_jobs = true` in the [network] table of {config} to allow it"
    )]
    PublishRefused { config: String },
    #[error("port {port}/{protocol} is already taken {by}: publish on another host port (-p OTHER:{container_port})")]
    PortTaken {
        port: u16,
        protocol: &'static str,
        container_port: u16,
        by: &'static str,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An IP prefix, `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Cidr, NetworkError> {
        let bad = || NetworkError::Config(format!("{text:?} is not an IP prefix like 10.0.0.0/8"));
        let (addr, len) = text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        Ok(Cidr { addr, len })
    }
}

/// The farmer's `[network]` table in `<root>/config.toml`; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Where containers' /31s come from.
    pub pool: String,
    /// Outbound TCP ports no job may connect to (SMTP by default).
    pub blocked_ports: Vec<u16>,
    /// New connections a job may open per second (a burst of twice that is allowed).
    pub new_connections_per_second: u32,
    /// Connections a job may hold open at once.
    pub max_connections: u32,
    /// Egress bandwidth cap per job in Mbit/s; 0 for none.
    pub egress_mbps: u32,
    /// Whether jobs given by the coordinator may publish ports (`-p`); a local `farm run`
    /// by the machine's owner always may.
    pub allow_publish_for_jobs: bool,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            pool: "10.231.0.0/16".to_owned(),
            blocked_ports: vec![25, 465, 587],
            new_connections_per_second: 50,
            max_connections: 512,
            egress_mbps: 0,
            allow_publish_for_jobs: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    network: Option<NetworkConfig>,
}

impl NetworkConfig {
    /// `<root>/config.toml`'s `[network]` table; the defaults when the file is absent.
    pub fn load(root: &Path) -> Result<NetworkConfig, NetworkError> {
        let path = config_path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(NetworkError::Io { path, source }),
        };
        let file: ConfigFile = toml::from_str(&text)
            .map_err(|e| NetworkError::Config(format!("{}: {}", path.display(), e.message())))?;
        let config = file.network.unwrap_or_default();
        config.pool()?;
        Ok(config)
    }

    pub fn pool(&self) -> Result<Cidr, NetworkError> {
        let pool: Cidr = self.pool.parse()?;
        if !pool.addr.is_ipv4() || pool.len > 30 || pool.len < 8 {
            return Err(NetworkError::Config(format!(
                "network.pool {} must be an IPv4 prefix from /8 to /30",
                self.pool
            )));
        }
        Ok(pool)
    }

    /// The limits one job gets: the farmer's, tightened (never loosened) by the job's own.
    pub fn limits_for(&self, job: &NetLimits) -> Limits {
        let tighter = |farmer: u32, job: Option<u32>| match (farmer, job) {
            (0, job) => job.unwrap_or(0),
            (farmer, Some(job)) if job > 0 => farmer.min(job),
            (farmer, _) => farmer,
        };
        Limits {
            publish: Vec::new(),
            blocked_ports: self.blocked_ports.clone(),
            new_connections_per_second: tighter(
                self.new_connections_per_second,
                job.new_connections_per_second,
            ),
            max_connections: tighter(self.max_connections, job.max_connections),
            egress_mbps: tighter(self.egress_mbps, job.egress_mbps),
        }
    }
}

/// The farmer's config file.
pub fn config_path(root: &Path) -> PathBuf {
    root.join("config.toml")
}

/// The abuse limits applied to one job (0 = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `-p` entries the job was allowed to publish.
    pub publish: Vec<crate::options::Publish>,
    pub blocked_ports: Vec<u16>,
    pub new_connections_per_second: u32,
    pub max_connections: u32,
    pub egress_mbps: u32,
}

/// Bytes and packets a container sent and received (IP packets, headers included), the
/// base of network earnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetUsage {
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub rx_packets: u64,
}

/// What a container was given: kept by the monitor for the container's life.
#[derive(Debug)]
pub struct Attachment {
    /// The DNS forwarder helper (`farm __dns`), when farm's resolver is used.
    pub dns: Option<std::process::Child>,
}

/// `<root>/network.lock`: held around every change of `table inet farm`.
fn lock(layout: &Layout) -> Result<std::fs::File, NetworkError> {
    let path = layout.root().join("network.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| NetworkError::Io {
            path: path.clone(),
            source,
        })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        NetworkError::Io {
            path,
            source: e.into(),
        }
    })?;
    Ok(file)
}

/// [`attach`] with the farmer's config, the job's limits and a free slot of the pool.
pub fn attach_container(
    layout: &Layout,
    id: &str,
    pid: i32,
    options: &crate::options::RunOptions,
) -> Result<Attachment, NetworkError> {
    let config = NetworkConfig::load(layout.root())?;
    let mut limits = config.limits_for(&options.network_limits);
    limits.publish = allowed_publish(options, &config, layout.root())?;
    let slot = take_slot(layout, id, &config.pool()?)?;
    attach(layout, id, slot, pid, &config, &limits, &options.dns)
}

fn slots_dir(layout: &Layout) -> PathBuf {
    layout.root().join("network-slots")
}

/// A free /31 of the pool for `id`: the file `<root>/network-slots/<n>`, made with
/// O_EXCL and holding the id, is the record (written before any interface exists).
fn take_slot(layout: &Layout, id: &str, pool: &Cidr) -> Result<u32, NetworkError> {
    use std::io::Write as _;
    let dir = slots_dir(layout);
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| NetworkError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let _guard = lock(layout)?;
    for slot in 0..plan::slots(pool) {
        let path = dir.join(slot.to_string());
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(id.as_bytes()).map_err(io_err(&path))?;
                return Ok(slot);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A slot whose container folder is gone was left by a crash: reuse it.
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                if !owner.is_empty() && !layout.container(owner.trim()).exists() {
                    std::fs::write(&path, id).map_err(io_err(&path))?;
                    return Ok(slot);
                }
            }
            Err(source) => return Err(NetworkError::Io { path, source }),
        }
    }
    Err(NetworkError::PoolFull {
        pool: pool.to_string(),
    })
}

fn release_slot(layout: &Layout, id: &str) {
    let Ok(entries) = std::fs::read_dir(slots_dir(layout)) else {
        return;
    };
    for entry in entries.flatten() {
        if std::fs::read_to_string(entry.path()).is_ok_and(|owner| owner.trim() == id) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Give the created (not yet started) container `pid` its network: the rules, then the
/// veth pair, its addresses and route, then the DNS forwarder. On error what was made is
/// taken down again and the container must not start.
pub fn attach(
    layout: &Layout,
    id: &str,
    slot: u32,
    pid: i32,
    config: &NetworkConfig,
    limits: &Limits,
    dns: &[IpAddr],
) -> Result<Attachment, NetworkError> {
    let result = attach_steps(layout, id, slot, pid, config, limits, dns);
    if result.is_err() {
        let _ = teardown(layout, id);
    }
    result
}

fn attach_steps(
    layout: &Layout,
    id: &str,
    slot: u32,
    pid: i32,
    config: &NetworkConfig,
    limits: &Limits,
    dns: &[IpAddr],
) -> Result<Attachment, NetworkError> {
    let pool = config.pool()?;
    let plan = plan::for_container(id, slot, &pool)?;
    let netns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let netns: OwnedFd = std::fs::File::open(&netns_path)
        .map_err(|source| NetworkError::Io {
            path: netns_path,
            source,
        })?
        .into();
    let mut host = link::Netlink::open()?;
    let addresses = host.addresses()?;
    if let Some(conflict) = plan::pool_conflict(&pool, &addresses) {
        return Err(NetworkError::PoolConflict {
            pool: pool.to_string(),
            addr: conflict.addr,
            len: conflict.prefix_len,
            interface: conflict.interface.clone(),
            config: config_path(layout.root()),
        });
    }
    let (blocked4, blocked6) = plan::blocked(&pool, &addresses);
    {
        let _guard = lock(layout)?;
        ports_free(&limits.publish)?;
        let forwarding = link::enable_forwarding(layout.root())?;
        let batch = firewall::render_attach(&firewall::Ruleset {
            pool,
            blocked4: &blocked4,
            blocked6: &blocked6,
            host_forwarding_was_off: forwarding.farm_enabled,
            plan: &plan,
            limits,
        });
        firewall::apply(&batch)?;
    }
    host.add_veth(&plan.host_if, plan::CONTAINER_IF, netns.as_fd())?;
    link::disable_ipv6(&plan.host_if)?;
    let index = host.index(&plan.host_if)?;
    host.add_address(index, IpAddr::V4(plan.gateway), 31)?;
    host.set_up(index)?;
    if !limits.publish.is_empty() {
        // Connections the host makes to 127.0.0.1:PORT reach the job through this link.
        link::route_localnet(&plan.host_if)?;
    }
    let sockets = link::in_netns(netns.as_fd(), |ns| {
        link::configure_container(ns, &plan)?;
        if dns.is_empty() {
            dns::listen().map(Some)
        } else {
            Ok(None)
        }
    })?;
    let dns = match sockets {
        Some(sockets) => {
            let child = dns::spawn(sockets, id)?;
            let path = layout.container(id).join("dns.pid");
            std::fs::write(&path, child.id().to_string())
                .map_err(|source| NetworkError::Io { path, source })?;
            Some(child)
        }
        None => None,
    };
    Ok(Attachment { dns })
}

/// The job's `-p` entries, where it may publish: a coordinator's job only when the
/// farmer's config allows it; the machine's owner running `farm run` always.
pub fn allowed_publish(
    options: &crate::options::RunOptions,
    config: &NetworkConfig,
    root: &Path,
) -> Result<Vec<crate::options::Publish>, NetworkError> {
    if !options.publish.is_empty() && options.coordinator_job && !config.allow_publish_for_jobs {
        return Err(NetworkError::PublishRefused {
            config: config_path(root).display().to_string(),
        });
    }
    Ok(options.publish.clone())
}

/// Every `-p` host port is free: no host service holds it (a bind test, at once released)
/// and no other container publishes it (the `publish` map). Called under the lock.
fn ports_free(publish: &[crate::options::Publish]) -> Result<(), NetworkError> {
    use crate::options::PortProtocol;
    if publish.is_empty() {
        return Ok(());
    }
    let taken = firewall::published()?;
    for p in publish {
        let ip = p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let bound = match p.protocol {
            PortProtocol::Tcp => std::net::TcpListener::bind((ip, p.host_port)).map(drop),
            PortProtocol::Udp => std::net::UdpSocket::bind((ip, p.host_port)).map(drop),
        };
        let by = match bound {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                Some("by a service on this host")
            }
            _ if taken.contains(&(p.protocol, p.host_port)) => Some("by another container"),
            _ => None,
        };
        if let Some(by) = by {
            return Err(NetworkError::PortTaken {
                port: p.host_port,
                protocol: p.protocol.as_str(),
                container_port: p.container_port,
                by,
            });
        }
    }
    Ok(())
}

/// The container's counters now; `None` when it has no internet network (or its rules are
/// gone).
pub fn usage(id: &str) -> Option<NetUsage> {
    let short = plan::short_id(id).ok()?;
    firewall::counters(&short).ok().flatten()
}

/// Take away everything [`attach`] made for container `id`, from the id alone: the
/// forwarder, the host interface (the container's end goes with it), the rules. Runs every
/// step; what is already gone counts as removed; returns the first error.
pub fn teardown(layout: &Layout, id: &str) -> Result<(), NetworkError> {
    finish(layout, id).1
}

/// [`teardown`], returning also the counters as they were just before the rules went (the
/// job's final network usage): read from the same listing the removal uses.
pub fn finish(layout: &Layout, id: &str) -> (Option<NetUsage>, Result<(), NetworkError>) {
    let short = match plan::short_id(id) {
        Ok(short) => short,
        Err(e) => return (None, Err(e)),
    };
    let mut first = None;
    dns::stop(&layout.container(id), id);
    if let Err(e) = link::Netlink::open().and_then(|mut nl| nl.delete_link(&plan::host_if(id)?)) {
        first = first.or(Some(e));
    }
    let usage = match lock(layout).and_then(|_guard| firewall::remove(&short)) {
        Ok(usage) => usage,
        Err(e) => {
            first = first.or(Some(e));
            None
        }
    };
    if first.is_none() {
        release_slot(layout, id);
    }
    (usage, first.map_or(Ok(()), Err))
}

/// `nft --version` where the binary runs (for `farm info`).
pub fn nft_version() -> Option<String> {
    firewall::nft_version().ok()
}
