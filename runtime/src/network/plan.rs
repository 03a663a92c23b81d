//! Pure: a container id and its slot in the pool become interface names, addresses and
//! the host-wide lists of what jobs may never reach. No IO here; most tests are of this.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Cidr, NetworkError};

/// Prefix of every host-side interface farm makes (`fm` + 12 hex digits of the id).
pub const HOST_IF_PREFIX: &str = "fm";
/// The container's end of its veth pair, inside its own network namespace.
pub const CONTAINER_IF: &str = "eth0";
/// Where the container's resolver listens, inside the container's own network namespace
/// (on its loopback): the forwarder's socket is made there by farm, its upstream socket
/// lives in the host's namespace.
pub const DNS_LISTEN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

/// IPv4 destinations no job reaches, whatever the host's own addresses are (issue 11,
/// the research's list). The documentation and benchmark ranges are not in it.
pub const BLOCKED_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// IPv6 destinations no job reaches: loopback, ULA, link-local, multicast, the IPv4-mapped
/// and -translated forms (which lead back to IPv4 space), 6to4.
pub const BLOCKED_V6: &[&str] = &[
    "::/127",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// What one container's network is made of; every name derives from the id, so teardown
/// needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The host-side interface (`fm` + 12 hex digits).
    pub host_if: String,
    /// Short id used in nft object names (`out_<short>`, `tx_<short>`).
    pub short: String,
    /// The host's end of the /31 (the container's gateway).
    pub gateway: Ipv4Addr,
    /// The container's address.
    pub address: Ipv4Addr,
}

/// The short form of an id used in names: its first 12 hex digits.
pub fn short_id(id: &str) -> Result<String, NetworkError> {
    let short: String = id.chars().take(12).collect();
    if short.len() != 12 || !short.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(NetworkError::BadId(id.to_owned()));
    }
    Ok(short.to_ascii_lowercase())
}

/// The host-side interface of container `id`.
pub fn host_if(id: &str) -> Result<String, NetworkError> {
    Ok(format!("{HOST_IF_PREFIX}{}", short_id(id)?))
}

/// The plan of container `id` in `slot` of `pool` (slot n is the /31 at pool + 2n).
pub fn for_container(id: &str, slot: u32, pool: &Cidr) -> Result<Plan, NetworkError> {
    let IpAddr::V4(base) = pool.addr else {
        return Err(NetworkError::Config(format!(
            "network.pool {pool} must be an IPv4 prefix"
        )));
    };
    if slot >= slots(pool) {
        return Err(NetworkError::PoolFull {
            pool: pool.to_string(),
        });
    }
    let base = u32::from(base) & mask_v4(pool.len);
    let gateway = Ipv4Addr::from(base + 2 * slot);
    let address = Ipv4Addr::from(base + 2 * slot + 1);
    Ok(Plan {
        host_if: host_if(id)?,
        short: short_id(id)?,
        gateway,
        address,
    })
}

/// How many /31s a pool holds.
pub fn slots(pool: &Cidr) -> u32 {
    match pool.addr {
        IpAddr::V4(_) if pool.len <= 31 => 1u32 << (31 - u32::from(pool.len)).min(30),
        _ => 0,
    }
}

fn mask_v4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// The prefix `addr/len` is on: the address with its host bits cleared.
pub fn network_of(addr: IpAddr, len: u8) -> Cidr {
    match addr {
        IpAddr::V4(v4) => Cidr {
            addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(len.min(32)))),
            len: len.min(32),
        },
        IpAddr::V6(v6) => {
            let len = len.min(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            Cidr {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                len,
            }
        }
    }
}

/// One address the host has on an interface, as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    pub interface: String,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// The host-wide lists: the fixed ranges, every prefix the host is directly connected to
/// (a home LAN on a global IPv6 /64 or a public IPv4 block is not in any fixed list), the
/// host's own addresses (reached through INPUT, which rejects all job traffic anyway, but
/// listed so that the set says it) and the pool itself (other containers). Interfaces farm
/// made are skipped: their prefixes are the pool.
pub fn blocked(pool: &Cidr, host: &[HostAddress]) -> (Vec<Cidr>, Vec<Cidr>) {
    let fixed = |list: &[&str]| -> Vec<Cidr> {
        list.iter()
            .map(|text| text.parse().expect("the fixed lists are valid prefixes"))
            .collect()
    };
    let mut v4 = fixed(BLOCKED_V4);
    let mut v6 = fixed(BLOCKED_V6);
    v4.push(network_of(pool.addr, pool.len));
    for address in host
        .iter()
        .filter(|a| !a.interface.starts_with(HOST_IF_PREFIX))
    {
        let full = match address.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        for cidr in [
            network_of(address.addr, address.prefix_len),
            network_of(address.addr, full),
        ] {
            let list = if cidr.addr.is_ipv4() {
                &mut v4
            } else {
                &mut v6
            };
            if !list.contains(&cidr) {
                list.push(cidr);
            }
        }
    }
    (v4, v6)
}

/// Whether `pool` overlaps any prefix the host is on (then containers could not be told
/// apart from the LAN): the caller refuses to start with a message naming the setting.
pub fn pool_conflict<'a>(pool: &Cidr, host: &'a [HostAddress]) -> Option<&'a HostAddress> {
    host.iter()
        .filter(|a| !a.interface.starts_with(HOST_IF_PREFIX) && a.addr.is_ipv4())
        .find(|a| {
            let theirs = network_of(a.addr, a.prefix_len);
            let shorter = theirs.len.min(pool.len);
            network_of(theirs.addr, shorter) == network_of(pool.addr, shorter)
        })
}

/// The container's resolv.conf: farm's forwarder, or the `--dns` servers as given (still
/// subject to the blocklist: a LAN resolver given with `--dns` is unreachable).
pub fn resolv_conf(dns: &[IpAddr]) -> String {
    if dns.is_empty() {
        format!("nameserver {DNS_LISTEN}\n")
    } else {
        dns.iter().map(|ip| format!("nameserver {ip}\n")).collect()
    }
}
