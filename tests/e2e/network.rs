//! `--network internet` in a small world of network namespaces the test makes itself: a
//! "farmer machine" (farm runs there, through `nsenter --net`), a "LAN" that is also the
//! home router and DNS resolver (192.168.x, with 169.254.169.254 on it), and an
//! "internet" host on 203.0.113.10 behind the router. No packet leaves these namespaces.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{require, Farm, Run};

struct World {
    farmer: String,
    lan: String,
    inet: String,
    dir: tempfile::TempDir,
    image: String,
    children: Vec<std::process::Child>,
}

fn sh(script: &str) -> bool {
    Command::new("sh")
        .arg("-ec")
        .arg(script)
        .status()
        .is_ok_and(|s| s.success())
}

fn prereqs() -> bool {
    let root = nix_is_root();
    require(root, "root")
        && require(
            crate::support::have_file("/usr/sbin/nft"),
            "nft (apt-get install nftables)",
        )
        && require(crate::support::have_file("/usr/sbin/ip"), "ip (iproute2)")
        && require(crate::support::have_file("/bin/busybox"), "busybox-static")
        && require(
            crate::support::containers::run_prereqs(),
            "farm run prerequisites",
        )
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// A tiny DNS server (Python), `LOG ADDRESS PORT`: every A query gets 203.0.113.10;
/// each datagram received is logged.
const DNS_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], int(sys.argv[3])))
while True:
    q, a = s.recvfrom(512)
    open(sys.argv[1], "a").write("query\n")
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    end += 5
    r = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:end]
    r += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([203, 0, 113, 10])
    s.sendto(r, a)
"#;

/// Accepts one connection on 203.0.113.10:9000, reads 2,000,000 bytes, closes.
const SINK: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 9000))
s.listen(1)
c, _ = s.accept()
n = 0
while n < 2000000:
    d = c.recv(65536)
    if not d:
        break
    n += len(d)
c.close()
"#;

impl World {
    fn new() -> World {
        // Tests run in parallel in one process: the tag is unique per world.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = (std::process::id() % 10_000) * 10 + n;
        let (farmer, lan, inet) = (
            format!("fnf{tag}"),
            format!("fnl{tag}"),
            format!("fni{tag}"),
        );
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            r#"
for n in {farmer} {lan} {inet}; do ip netns del $n 2>/dev/null || true; ip netns add $n; done
ip link add a{tag} netns {farmer} type veth peer name b{tag} netns {lan}
ip link add c{tag} netns {lan} type veth peer name d{tag} netns {inet}
ip -n {farmer} link set lo up; ip -n {lan} link set lo up; ip -n {inet} link set lo up
ip -n {farmer} addr add 192.168.77.2/24 dev a{tag}
ip -n {farmer} addr add fd77::2/64 dev a{tag} nodad
ip -n {farmer} addr add 2001:db8:77::2/64 dev a{tag} nodad
ip -n {farmer} link set a{tag} up
ip -n {farmer} route add default via 192.168.77.1
ip -n {lan} addr add 192.168.77.1/24 dev b{tag}
ip -n {lan} addr add fd77::1/64 dev b{tag} nodad
ip -n {lan} addr add 2001:db8:77::1/64 dev b{tag} nodad
ip -n {lan} addr add 169.254.169.254/32 dev lo
ip -n {lan} link set b{tag} up
ip -n {lan} addr add 203.0.113.1/24 dev c{tag}
ip -n {lan} link set c{tag} up
ip netns exec {lan} sysctl -qw net.ipv4.ip_forward=1
ip -n {inet} addr add 203.0.113.10/24 dev d{tag}
ip -n {inet} link set d{tag} up
ip -n {inet} route add default via 203.0.113.1
"#
        );
        assert!(sh(&script), "building the test world failed");
        let image_dir = dir.path().join("image");
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/busybox-image"
        ))
        .arg(&image_dir)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let image = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 192.168.77.1\n").unwrap();
        let mut world = World {
            farmer,
            lan,
            inet,
            dir,
            image,
            children: Vec::new(),
        };
        // Listeners: the internet answers; the LAN records every connection it gets.
        let lan_log = world.path("lan.log");
        let hit = world.path("hit.sh");
        std::fs::write(
            &hit,
            format!("#!/bin/sh\necho hit >> {}\n", lan_log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&hit, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(&lan_log, "").unwrap();
        let inet = world.inet.clone();
        let lan = world.lan.clone();
        world.spawn(
            &inet,
            &[
                "busybox",
                "nc",
                "-ll",
                "-p",
                "8080",
                "-e",
                "echo",
                "internet-ok",
            ],
        );
        world.spawn(
            &inet,
            &[
                "busybox",
                "nc",
                "-ll",
                "-p",
                "25",
                "-e",
                "echo",
                "smtp-LEAK",
            ],
        );
        // The metering sink: reads 2 MB, then closes (a busybox listener would close at once
        // when its own stdin ends).
        world.spawn(&inet, &["python3", "-c", SINK]);
        let hit = hit.to_string_lossy().into_owned();
        for port in ["8080", "53", "22"] {
            world.spawn(&lan, &["busybox", "nc", "-ll", "-p", port, "-e", &hit]);
        }
        let dns_log = world.path("dns.log").to_string_lossy().into_owned();
        world.spawn(
            &lan,
            &["python3", "-c", DNS_SERVER, &dns_log, "192.168.77.1", "53"],
        );
        // UDP: the LAN records datagrams on 5300 into lan.log; the internet answers there.
        let lan_log = lan_log.to_string_lossy().into_owned();
        world.spawn(
            &lan,
            &[
                "python3",
                "-c",
                DNS_SERVER,
                &lan_log,
                "192.168.77.1",
                "5300",
            ],
        );
        let inet_log = world.path("inet-udp.log").to_string_lossy().into_owned();
        world.spawn(
            &inet,
            &[
                "python3",
                "-c",
                DNS_SERVER,
                &inet_log,
                "203.0.113.10",
                "5300",
            ],
        );
        std::thread::sleep(Duration::from_millis(500));
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&mut self, netns: &str, argv: &[&str]) {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// `farm ARGS` on the farmer machine, with its resolv.conf naming the home router.
    fn farm(&self, farm: &Farm, args: &[&str]) -> Run {
        self.farm_with_mounts(farm, "", args)
    }

    /// `farm ARGS` with more `mount` commands run first in its private mount namespace.
    fn farm_with_mounts(&self, farm: &Farm, mounts: &str, args: &[&str]) -> Run {
        let inner = farm.command(args);
        let mut cmd = Command::new("unshare");
        cmd.arg("-m").arg("sh").arg("-ec").arg(format!(
            "mount --bind {} /etc/resolv.conf; {mounts}\nexec nsenter --net=/run/netns/{} \"$@\"",
            self.path("resolv.conf").display(),
            self.farmer
        ));
        cmd.arg("sh")
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null());
        crate::support::containers::run_deadline(cmd, Duration::from_secs(120))
    }

    fn lan_hits(&self) -> String {
        std::fs::read_to_string(self.path("lan.log")).unwrap_or_default()
    }

    /// What of farm's is left on the farmer machine: fm* links, job chains, helpers.
    fn leftovers(&self) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.farmer))
            .args(["sh", "-c", "ip -o link | grep -o ' fm[0-9a-f]*' ; nft list table inet farm 2>/dev/null | grep -E 'chain (out|in|pub)_|fm[0-9a-f]{12}|jump pub_' ; true"])
            .output()
            .unwrap();
        let mut left = String::from_utf8_lossy(&out.stdout).into_owned();
        // DNS helpers of this world: they live in the farmer machine's network namespace.
        let ours = std::fs::metadata(format!("/run/netns/{}", self.farmer)).map(|m| m.ino());
        let helpers = Command::new("pgrep")
            .args(["-f", "__dns"])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&helpers.stdout).split_whitespace() {
            let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
            if ours.is_ok() && theirs.ok() == ours.as_ref().ok().copied() {
                left.push_str(&format!("dns helper {pid}\n"));
            }
        }
        left
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for n in [&self.farmer, &self.lan, &self.inet] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn run_in(world: &World, farm: &Farm, extra: &[&str], script: &str) -> Run {
    let mut args = vec!["run", "--network", "internet"];
    args.extend_from_slice(extra);
    args.push(&world.image);
    args.extend_from_slice(&["sh", "-c", script]);
    world.farm(farm, &args)
}

/// One case per line: `label: command`, the command's status printed after it. Blocked
/// TCP connects run under `timeout 1`: refused within a second, or rc=143.
const CASES: &str = r#"
for c in \
  "internet_ip:timeout 3 nc 203.0.113.10 8080" \
  "internet_dns:timeout 3 nc internet.test 8080" \
  "internet_udp:timeout 3 nslookup internet.test 203.0.113.10:5300" \
  "lan_router:timeout 1 nc 192.168.77.1 8080" \
  "lan_dns_tcp:timeout 1 nc 192.168.77.1 53" \
  "lan_udp:timeout 3 nslookup internet.test 192.168.77.1:5300" \
  "farmer_lan_ip:timeout 1 nc 192.168.77.2 22" \
  "gateway:timeout 1 nc 10.231.0.0 22" \
  "metadata:timeout 1 nc 169.254.169.254 8080" \
  "mapped:timeout 1 nc ::ffff:192.168.77.1 8080" \
  "ula:timeout 1 nc fd77::1 8080" \
  "lan_v6_global:timeout 1 nc 2001:db8:77::1 8080" \
  "peer:timeout 1 nc $PEER 8080" \
  "smtp:timeout 1 nc 203.0.113.10 25" ; do
  label=${c%%:*}; cmd=${c#*:}
  out=$(sh -c "$cmd" 2>&1 </dev/null); echo "$label rc=$? out=$out"
done
"#;

/// The peer container's IPv4 address, from the `ip -o addr` line it logs first.
fn peer_address(world: &World, farm: &Farm) -> String {
    for _ in 0..50 {
        let logs = world.farm(farm, &["logs", "peer"]);
        if let Some(addr) = logs
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
        {
            return addr.split('/').next().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the peer container printed no address");
}

fn case<'a>(run: &'a Run, label: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{label} ")))
        .unwrap_or_else(|| panic!("no case {label} in {}", run.all_output()))
}

#[test]
fn internet_mode_reaches_the_internet_and_nothing_on_the_lan_or_host() {
    if !prereqs() {
        return;
    }
    let world = World::new();
    let farm = Farm::new();
    // Another job, listening: its address is what it prints first.
    let peer = world.farm(
        &farm,
        &[
            "run",
            "-d",
            "--network",
            "internet",
            "--name",
            "peer",
            &world.image,
            "sh",
            "-c",
            "ip -4 -o addr show eth0; exec nc -ll -p 8080 -e echo peer-LEAK",
        ],
    );
    peer.assert_ok();
    let peer_ip = peer_address(&world, &farm);
    let started = std::time::Instant::now();
    let run = run_in(
        &world,
        &farm,
        &["--rm", "-e", &format!("PEER={peer_ip}")],
        CASES,
    );
    run.assert_ok();
    assert!(
        case(&run, "internet_ip").contains("internet-ok"),
        "{}",
        run.all_output()
    );
    assert!(
        case(&run, "internet_dns").contains("internet-ok"),
        "{}",
        run.all_output()
    );
    assert!(
        case(&run, "internet_udp").contains("rc=0"),
        "{}",
        run.all_output()
    );
    for label in [
        "lan_router",
        "lan_dns_tcp",
        "lan_udp",
        "farmer_lan_ip",
        "gateway",
        "metadata",
        "mapped",
        "ula",
        "lan_v6_global",
        "peer",
        "smtp",
    ] {
        let line = case(&run, label);
        assert!(!line.contains("rc=0"), "{label} was reached: {line}");
        assert!(!line.contains("LEAK"), "{label}: {line}");
        if label != "lan_udp" {
            assert!(
                !line.contains("rc=143"),
                "{label} was not refused within a second: {line}"
            );
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(world.lan_hits(), "", "the LAN saw connections");
    assert!(
        std::fs::read_to_string(world.path("dns.log"))
            .unwrap_or_default()
            .contains("query"),
        "the DNS query did not go through the host's resolver"
    );
    world.farm(&farm, &["rm", "-f", "peer"]).assert_ok();
    assert_eq!(world.leftovers(), "", "left after --rm and rm -f");
}

#[test]
fn net_admin_and_raw_sockets_do_not_lift_the_rules() {
    if !prereqs() {
        return;
    }
    let world = World::new();
    let farm = Farm::new();
    // Own the LAN's addresses, route to it directly, ping it with raw ICMP, use the
    // router as gateway: the host's filter sees every packet anyway.
    let script = r#"
ip addr add 192.168.77.50/24 dev eth0
ip route add 192.168.77.0/24 dev eth0 src 192.168.77.50 metric 1
timeout 3 nc 192.168.77.1 8080 </dev/null; echo "spoofed rc=$?"
ip route del 192.168.77.0/24 dev eth0
ping -c 1 -W 2 192.168.77.1 >/dev/null 2>&1; echo "ping_lan rc=$?"
ping -c 1 -W 2 203.0.113.10 >/dev/null 2>&1; echo "ping_internet rc=$?"
ip route replace default via 10.231.0.0 dev eth0 src 192.168.77.50
timeout 3 nc 203.0.113.10 8080 </dev/null; echo "spoofed_internet rc=$?"
"#;
    let run = run_in(
        &world,
        &farm,
        &["--rm", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"],
        script,
    );
    run.assert_ok();
    assert!(
        case(&run, "ping_internet").contains("rc=0"),
        "{}",
        run.all_output()
    );
    for label in ["spoofed", "ping_lan", "spoofed_internet"] {
        assert!(!case(&run, label).contains("rc=0"), "{}", run.all_output());
    }
    assert_eq!(world.lan_hits(), "");
    assert_eq!(world.leftovers(), "");
}

#[test]
fn bytes_sent_are_metered_and_kill_9_of_the_monitor_leaves_nothing() {
    if !prereqs() {
        return;
    }
    let world = World::new();
    let farm = Farm::new();
    let sent = 2_000_000u64;
    let run = run_in(
        &world,
        &farm,
        &["--name", "meter"],
        &format!("head -c {sent} /dev/zero | timeout 10 nc 203.0.113.10 9000"),
    );
    run.assert_ok();
    let inspect = world.farm(&farm, &["inspect", "meter"]);
    inspect.assert_ok();
    let value: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let network = &value[0]["Usage"]["Network"];
    let tx = network["TxBytes"].as_u64().expect("TxBytes");
    assert!(
        tx >= sent && (tx as f64) < sent as f64 * 1.06,
        "tx {tx} for {sent} sent: {network}"
    );
    assert!(network["RxPackets"].as_u64().unwrap() > 0);
    assert_eq!(world.leftovers(), "");

    let run = world.farm(
        &farm,
        &[
            "run",
            "-d",
            "--network",
            "internet",
            "--name",
            "victim",
            &world.image,
            "sleep",
            "100",
        ],
    );
    run.assert_ok();
    assert_ne!(
        world.leftovers(),
        "",
        "a running container has its interface"
    );
    let inspect = world.farm(&farm, &["inspect", "victim"]);
    let value: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let monitor = value[0]["State"]["MonitorPid"].as_i64().unwrap();
    assert!(sh(&format!("kill -9 {monitor}")));
    std::thread::sleep(Duration::from_millis(300));
    world.farm(&farm, &["ps", "-a"]).assert_ok();
    assert_eq!(world.leftovers(), "", "left after kill -9 of the monitor");
    let _ = Path::new("/");
}

#[test]
fn rules_that_cannot_be_installed_stop_the_job_from_starting() {
    if !prereqs() {
        return;
    }
    let world = World::new();
    let farm = Farm::new();
    // An nft that runs but whose kernel refuses every ruleset (as without nf_tables).
    let fake = world.path("nft");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = --version ] && echo 'nftables v1.0.6' && exit 0\necho 'Error: Could not process rule: Operation not supported' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mount = format!("mount --bind {} /usr/sbin/nft", fake.display());
    let marker = world.path("started");
    let run = world.farm_with_mounts(
        &farm,
        &mount,
        &[
            "run",
            "--network",
            "internet",
            "--name",
            "closed",
            "-v",
            &format!("{}:/out", world.dir.path().display()),
            &world.image,
            "sh",
            "-c",
            "touch /out/started; nc 203.0.113.10 8080",
        ],
    );
    run.assert_farm_error();
    assert!(
        run.stderr.contains("could not be installed"),
        "{}",
        run.all_output()
    );
    assert!(
        run.stderr.contains("Operation not supported"),
        "{}",
        run.all_output()
    );
    assert!(
        !marker.exists(),
        "the job ran although its rules were not installed"
    );
    assert_eq!(world.leftovers(), "");
}

/// `nc HOST PORT` from network namespace `netns`, with a deadline; its output.
fn nc_from(netns: &str, host: &str, port: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .args(["timeout", "3", "busybox", "nc", host, port])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_ports_reach_the_job_from_the_lan_and_the_host_and_nothing_else_opens() {
    if !prereqs() {
        return;
    }
    let mut world = World::new();
    let farm = Farm::new();
    let run = world.farm(
        &farm,
        &[
            "run",
            "-d",
            "--network",
            "internet",
            "--name",
            "web",
            "-p",
            "18080:8080",
            &world.image,
            "sh",
            "-c",
            "exec nc -ll -p 8080 -e echo published-ok",
        ],
    );
    run.assert_ok();
    std::thread::sleep(Duration::from_millis(300));
    let (lan, farmer) = (world.lan.clone(), world.farmer.clone());
    assert!(
        nc_from(&lan, "192.168.77.2", "18080").contains("published-ok"),
        "from the LAN"
    );
    assert!(
        nc_from(&farmer, "192.168.77.2", "18080").contains("published-ok"),
        "host, LAN address"
    );
    assert!(
        nc_from(&farmer, "127.0.0.1", "18080").contains("published-ok"),
        "host, loopback"
    );
    // The job still reaches nothing on the LAN, replies to published connections aside.
    let probe = run_in(
        &world,
        &farm,
        &["--rm"],
        "timeout 1 nc 192.168.77.1 8080; echo rc=$?; timeout 1 nc 192.168.77.2 18080; echo rc=$?",
    );
    probe.assert_ok();
    assert!(
        !probe.stdout.contains("published-ok") && !probe.stdout.contains("rc=0"),
        "{}",
        probe.all_output()
    );
    assert_eq!(world.lan_hits(), "");

    // A port another job holds, or a host service holds, is refused with what to do.
    let again = world.farm(
        &farm,
        &[
            "run",
            "--rm",
            "-p",
            "18080:80",
            "--network",
            "internet",
            &world.image,
            "true",
        ],
    );
    again.assert_farm_error();
    assert!(
        again.stderr.contains("already taken by another container"),
        "{}",
        again.all_output()
    );
    world.spawn(
        &farmer,
        &["busybox", "nc", "-ll", "-p", "18081", "-e", "true"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let taken = world.farm(
        &farm,
        &[
            "run",
            "--rm",
            "-p",
            "18081:80",
            "--network",
            "internet",
            &world.image,
            "true",
        ],
    );
    taken.assert_farm_error();
    assert!(
        taken.stderr.contains("by a service on this host"),
        "{}",
        taken.all_output()
    );

    world.farm(&farm, &["rm", "-f", "web"]).assert_ok();
    assert_eq!(
        world.leftovers(),
        "",
        "left after rm -f of a publishing job"
    );
    assert_eq!(
        nc_from(&lan, "192.168.77.2", "18080"),
        "",
        "the port is closed again"
    );
}
