//! The container's resolver: `farm __dns`, a helper that answers DNS only. Its listening
//! socket (UDP 127.0.0.53:53) was made by the monitor inside the container's own network
//! namespace and is inherited as fd 3; its upstream socket is opened in the host's
//! namespace, towards the first nameserver of the host's /etc/resolv.conf (the home router
//! or a local stub), which the job itself can never reach. It dies with its monitor
//! (PR_SET_PDEATHSIG) and its pid is kept in the container's folder for teardown.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use super::plan::DNS_LISTEN;
use super::NetworkError;

/// argv[1] of the helper.
pub const DNS_ARG: &str = "__dns";

/// Bind the listening socket (call inside the container's namespace).
pub fn listen() -> Result<OwnedFd, NetworkError> {
    let socket =
        UdpSocket::bind(SocketAddrV4::new(DNS_LISTEN, 53)).map_err(|source| NetworkError::Io {
            path: "udp 127.0.0.53:53 in the container's network namespace".into(),
            source,
        })?;
    Ok(OwnedFd::from(socket))
}

/// Start `farm __dns ID` with the socket as fd 3.
pub fn spawn(socket: OwnedFd, id: &str) -> Result<std::process::Child, NetworkError> {
    use std::os::unix::process::CommandExt;
    let raw = socket.as_raw_fd();
    let mut command = std::process::Command::new("/proc/self/exe");
    command
        .arg(DNS_ARG)
        .arg(id)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec (dup2, prctl).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| NetworkError::Io {
        path: "/proc/self/exe __dns".into(),
        source,
    })?;
    drop(socket);
    Ok(child)
}

/// Stop the helper of container `id` if its pid file names a live `farm __dns ID`.
pub fn stop(dir: &Path, id: &str) {
    let Ok(text) = std::fs::read_to_string(dir.join("dns.pid")) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if args.get(1) == Some(&DNS_ARG.as_bytes()) && args.get(2) == Some(&id.as_bytes()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_file(dir.join("dns.pid"));
}

/// The first IPv4 nameserver of a resolv.conf.
pub fn upstream(resolv_conf: &str) -> Option<Ipv4Addr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// Whether `packet` looks like a standard DNS query (QR=0, opcode QUERY, one question):
/// anything else is dropped, so the helper relays DNS and nothing else.
pub fn is_query(packet: &[u8]) -> bool {
    packet.len() >= 12 + 5
        && packet.len() <= 4096
        && packet[2] & 0x80 == 0
        && (packet[2] >> 3) & 0x0f == 0
        && u16::from_be_bytes([packet[4], packet[5]]) == 1
}

/// The helper's main loop; returns its exit code.
pub fn main(_args: &[String]) -> i32 {
    // SAFETY: fd 3 was set up by `spawn` and is owned by nothing else in this process.
    #[allow(unsafe_code)]
    let listener = unsafe { UdpSocket::from_raw_fd(3) };
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let Some(server) = upstream(&resolv) else {
        return 1;
    };
    let server = SocketAddr::V4(SocketAddrV4::new(server, 53));
    let mut buf = [0u8; 4096];
    let mut answer = [0u8; 65535];
    loop {
        let Ok((n, client)) = listener.recv_from(&mut buf) else {
            continue;
        };
        if !is_query(&buf[..n]) {
            continue;
        }
        let Ok(up) = UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        let _ = up.set_read_timeout(Some(Duration::from_secs(3)));
        if up.send_to(&buf[..n], server).is_err() {
            continue;
        }
        // Only an answer from the server, to this query's id.
        while let Ok((m, from)) = up.recv_from(&mut answer) {
            if from == server && m >= 12 && answer[..2] == buf[..2] {
                let _ = listener.send_to(&answer[..m], client);
                break;
            }
        }
    }
}
