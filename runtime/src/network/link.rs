//! The only netlink user: the veth pair, addresses, routes, links up, address dumps, and
//! the few sysctls of farm's own interfaces. Synchronous (netlink-packet-route over
//! netlink-sys, as youki does); errors keep the kernel's errno so that steps can tell
//! EEXIST and ENODEV apart.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::Socket;

use super::plan::{HostAddress, Plan, CONTAINER_IF};
use super::NetworkError;

/// A route netlink socket in the calling thread's network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

fn io(op: &str) -> impl FnOnce(std::io::Error) -> NetworkError + '_ {
    move |source| NetworkError::NetlinkIo {
        op: op.to_owned(),
        source,
    }
}

impl Netlink {
    pub fn open() -> Result<Netlink, NetworkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io("socket"))?;
        socket.bind_auto().map_err(io("bind"))?;
        socket
            .connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(io("connect"))?;
        Ok(Netlink { socket, seq: 0 })
    }

    fn send(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<u32, NetworkError> {
        let mut request = NetlinkMessage::from(message);
        self.seq += 1;
        request.header.flags = flags;
        request.header.sequence_number = self.seq;
        request.finalize();
        let mut buf = vec![0; request.header.length as usize];
        request.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(io(op))?;
        Ok(self.seq)
    }

    /// Send one request and wait for its acknowledgement.
    fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetworkError> {
        let seq = self.send(op, message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        let mut done = false;
        self.receive(op, seq, |payload| {
            if let NetlinkPayload::Error(e) = payload {
                done = true;
                if let Some(code) = e.code {
                    return Err(NetworkError::Netlink {
                        op: op.to_owned(),
                        errno: -code.get(),
                    });
                }
            }
            Ok(done)
        })
    }

    /// Send a dump request and collect every message until DONE.
    fn dump(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetworkError> {
        let seq = self.send(op, message, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.receive(op, seq, |payload| match payload {
            NetlinkPayload::InnerMessage(message) => {
                out.push(message);
                Ok(false)
            }
            NetlinkPayload::Done(_) => Ok(true),
            NetlinkPayload::Error(e) => match e.code {
                Some(code) => Err(NetworkError::Netlink {
                    op: op.to_owned(),
                    errno: -code.get(),
                }),
                None => Ok(true),
            },
            _ => Ok(false),
        })?;
        Ok(out)
    }

    fn receive(
        &mut self,
        op: &str,
        seq: u32,
        mut handle: impl FnMut(NetlinkPayload<RouteNetlinkMessage>) -> Result<bool, NetworkError>,
    ) -> Result<(), NetworkError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0).map_err(io(op))?;
            let mut offset = 0;
            while offset < n {
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..n])
                    .map_err(|e| io(op)(std::io::Error::other(e.to_string())))?;
                let length = message.header.length as usize;
                if message.header.sequence_number == seq && handle(message.payload)? {
                    return Ok(());
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }

    /// `ip link add HOST type veth peer name PEER netns NETNS`: the peer is made directly
    /// in the container's namespace.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        netns: BorrowedFd<'_>,
    ) -> Result<(), NetworkError> {
        let mut peer_message = LinkMessage::default();
        peer_message
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        peer_message
            .attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(host.to_owned()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        self.request(
            "add veth",
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// The index of interface `name` (`ip link show NAME`).
    pub fn index(&mut self, name: &str) -> Result<u32, NetworkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        let seq = self.send(
            "get link",
            RouteNetlinkMessage::GetLink(message),
            NLM_F_REQUEST,
        )?;
        let mut index = None;
        self.receive("get link", seq, |payload| match payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                index = Some(link.header.index);
                Ok(true)
            }
            NetlinkPayload::Error(e) => Err(NetworkError::Netlink {
                op: format!("get link {name}"),
                errno: e.code.map_or(libc::ENODEV, |c| -c.get()),
            }),
            _ => Ok(false),
        })?;
        index.ok_or(NetworkError::Netlink {
            op: format!("get link {name}"),
            errno: libc::ENODEV,
        })
    }

    /// `ip link set dev INDEX up`.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetworkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags |= LinkFlags::Up;
        message.header.change_mask |= LinkFlags::Up;
        self.request("link up", RouteNetlinkMessage::SetLink(message), 0)
    }

    /// `ip link del NAME`; an interface that is already gone counts as deleted.
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetworkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request("delete link", RouteNetlinkMessage::DelLink(message), 0) {
            Err(NetworkError::Netlink { errno, .. }) if errno == libc::ENODEV => Ok(()),
            other => other,
        }
    }

    /// `ip addr add ADDR/LEN dev INDEX`.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, len: u8) -> Result<(), NetworkError> {
        let mut message = AddressMessage::default();
        message.header.family = family(addr);
        message.header.prefix_len = len;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(addr));
        message.attributes.push(AddressAttribute::Address(addr));
        self.request(
            "add address",
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// `ip route add default via GATEWAY dev INDEX onlink`.
    pub fn add_default_route(&mut self, index: u32, gateway: IpAddr) -> Result<(), NetworkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(gateway);
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        message.attributes.push(RouteAttribute::Oif(index));
        self.request(
            "add default route",
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Every address of every interface (`ip addr show`), with the interface's name.
    pub fn addresses(&mut self) -> Result<Vec<HostAddress>, NetworkError> {
        let links = self.dump(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        let names: std::collections::HashMap<u32, String> = links
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => {
                    let name = link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(name) => Some(name.clone()),
                        _ => None,
                    })?;
                    Some((link.header.index, name))
                }
                _ => None,
            })
            .collect();
        let dumped = self.dump(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        Ok(dumped
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(address) => {
                    let addr = address.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let addr = addr.or_else(|| {
                        address.attributes.iter().find_map(|a| match a {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    Some(HostAddress {
                        interface: names
                            .get(&address.header.index)
                            .cloned()
                            .unwrap_or_default(),
                        addr,
                        prefix_len: address.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Run `work` on a short-lived thread that entered the network namespace `netns`
/// (`nsenter --net=NETNS`); the monitor's own thread never changes namespace.
pub fn in_netns<R: Send>(
    netns: BorrowedFd<'_>,
    work: impl FnOnce(&mut Netlink) -> Result<R, NetworkError> + Send,
) -> Result<R, NetworkError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetworkError::Netlink {
                        op: "setns into the container's network namespace".to_owned(),
                        errno: e as i32,
                    }
                })?;
                let mut netlink = Netlink::open()?;
                work(&mut netlink)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetworkError::Config(
                    "the network setup thread panicked".to_owned(),
                ))
            })
    })
}

/// Inside the container's namespace: `lo` up, IPv6 off on `eth0`, its /31 address, up,
/// and the default route through the host's end.
pub fn configure_container(netlink: &mut Netlink, plan: &Plan) -> Result<(), NetworkError> {
    let lo = netlink.index("lo")?;
    netlink.set_up(lo)?;
    disable_ipv6(CONTAINER_IF)?;
    let eth = netlink.index(CONTAINER_IF)?;
    netlink.add_address(eth, IpAddr::V4(plan.address), 31)?;
    netlink.set_up(eth)?;
    netlink.add_default_route(eth, IpAddr::V4(plan.gateway))
}

/// `sysctl net.ipv6.conf.IFACE.disable_ipv6=1` in the calling thread's namespace: farm's
/// interfaces carry no IPv6 (not even link-local), so no IPv6 packet crosses them.
pub fn disable_ipv6(interface: &str) -> Result<(), NetworkError> {
    let path = format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6");
    match std::fs::write(&path, "1") {
        Ok(()) => Ok(()),
        // A kernel without IPv6 has no such file, and nothing to disable.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Let `interface` carry packets to and from 127.0.0.0/8 (for `-p` reached at
/// 127.0.0.1 from the host; the job's own packets never have such a source: its chain
/// refuses every source but its address). Equivalent to
/// `sysctl net.ipv4.conf.IF.route_localnet=1`.
pub fn route_localnet(interface: &str) -> Result<(), NetworkError> {
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/route_localnet");
    std::fs::write(&path, "1").map_err(|source| NetworkError::Io {
        path: path.into(),
        source,
    })
}

/// Whether the host forwarded IPv4 before farm turned it on.
pub struct Forwarding {
    /// farm switched `net.ipv4.ip_forward` on (now or earlier): the firewall then drops
    /// every forwarded packet that is not a job's, so the host does not become a router.
    pub farm_enabled: bool,
}

/// `sysctl net.ipv4.ip_forward=1`, remembering under the root that farm did it.
pub fn enable_forwarding(root: &Path) -> Result<Forwarding, NetworkError> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    let marker = root.join("network-forwarding-enabled-by-farm");
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| NetworkError::Io { path, source }
    };
    let current = std::fs::read_to_string(path).map_err(io_err(path))?;
    if current.trim() == "0" {
        std::fs::write(
            &marker,
            "farm set net.ipv4.ip_forward=1 for --network internet\n",
        )
        .map_err(io_err(&marker))?;
        std::fs::write(path, "1").map_err(io_err(path))?;
    }
    Ok(Forwarding {
        farm_enabled: marker.exists(),
    })
}
