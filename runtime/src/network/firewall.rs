//! `table inet farm`: rendered from the plan as an nft script (pure, tested inline and in
//! `network/tests.rs`), applied atomically with `nft -f -` (one transaction: all of it or
//! none of it), and taken apart by the container's id.
//!
//! nft is run from a fixed path with an empty environment and a script farm wrote; no
//! container-controlled string reaches it (names are hex, addresses are parsed).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::plan::{Plan, HOST_IF_PREFIX};
use super::{Cidr, Limits, NetUsage, NetworkError};
use crate::options::PortProtocol;

/// Where nft is looked for, in order.
const NFT_PATHS: &[&str] = &["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

pub const TABLE: &str = "inet farm";

/// Everything one attach writes.
pub struct Ruleset<'a> {
    pub pool: Cidr,
    pub blocked4: &'a [Cidr],
    pub blocked6: &'a [Cidr],
    /// The host did not forward before farm: drop every forwarded packet that is no job's.
    pub host_forwarding_was_off: bool,
    pub plan: &'a Plan,
    pub limits: &'a Limits,
}

fn elements(list: &[Cidr]) -> String {
    list.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The host-wide part (re-rendered on every attach, so that the host's current on-link
/// prefixes are in the sets) and the container's own chains, counters and map entries.
///
/// Equivalent by hand: `nft -f FILE` with this text.
pub fn render_attach(rules: &Ruleset<'_>) -> String {
    let mut s = String::new();
    let t = TABLE;
    let wildcard = format!("\"{HOST_IF_PREFIX}*\"");
    let _ = writeln!(s, "add table {t}");
    for (name, kind, list) in [
        ("blocked4", "ipv4_addr", rules.blocked4),
        ("blocked6", "ipv6_addr", rules.blocked6),
    ] {
        let _ = writeln!(
            s,
            "add set {t} {name} {{ type {kind}; flags interval; auto-merge; }}"
        );
        let _ = writeln!(s, "flush set {t} {name}");
        if !list.is_empty() {
            let _ = writeln!(s, "add element {t} {name} {{ {} }}", elements(list));
        }
    }
    let _ = writeln!(s, "add map {t} jobs_out {{ type ifname : verdict; }}");
    let _ = writeln!(s, "add map {t} jobs_in {{ type ifname : verdict; }}");
    // Base chains: flushed and written again in the same transaction, so they are never
    // seen half-written and never hold a rule twice.
    let _ = writeln!(
        s,
        "add chain {t} forward {{ type filter hook forward priority -10; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {t} forward");
    let _ = writeln!(
        s,
        "add rule {t} forward iifname {wildcard} iifname vmap @jobs_out"
    );
    // A farm interface with no entry (being made or torn down): nothing passes.
    let _ = writeln!(s, "{}", refuse("forward", &format!("iifname {wildcard}")));
    let _ = writeln!(
        s,
        "add rule {t} forward oifname {wildcard} oifname vmap @jobs_in"
    );
    let _ = writeln!(s, "add rule {t} forward oifname {wildcard} drop");
    if rules.host_forwarding_was_off {
        let _ = writeln!(s, "add rule {t} forward drop");
    }
    let _ = writeln!(
        s,
        "add chain {t} input {{ type filter hook input priority -10; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {t} input");
    // No host service, on any of the host's addresses, answers a job; only the replies of
    // connections the host made to a published port (DNAT'd to the job) come back.
    let _ = writeln!(
        s,
        "add rule {t} input iifname {wildcard} ct status dnat ct direction reply accept"
    );
    let _ = writeln!(s, "{}", refuse("input", &format!("iifname {wildcard}")));
    let _ = writeln!(
        s,
        "add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {t} postrouting");
    let _ = writeln!(
        s,
        "add rule {t} postrouting ip saddr {} oifname != {wildcard} masquerade",
        rules.pool
    );
    // The host's own connections to 127.0.0.1:PORT reach a job from its gateway address.
    let _ = writeln!(
        s,
        "add rule {t} postrouting oifname {wildcard} ip saddr 127.0.0.0/8 masquerade"
    );
    render_publish_base(&mut s, &wildcard);
    render_job(&mut s, rules.plan, rules.limits);
    s
}

/// The two rules that refuse what matches `expr` in `chain`: TCP with a reset, everything
/// else with ICMP admin-prohibited. A reset is not subject to the kernel's ICMP rate limit
/// (`net.ipv4.icmp_ratelimit`), so a refused connect fails at once even after many.
/// Equivalent to `nft add rule inet farm CHAIN EXPR meta l4proto tcp reject with tcp reset`
/// then `... EXPR reject with icmpx type admin-prohibited`.
fn refuse(chain: &str, expr: &str) -> String {
    let t = TABLE;
    format!(
        "add rule {t} {chain} {expr} meta l4proto tcp reject with tcp reset\n\
         add rule {t} {chain} {expr} reject with icmpx type admin-prohibited"
    )
}

/// `-p`: the `publish` map (protocol . host port -> jump pub_<short>), consulted for
/// packets to one of the host's own addresses, arriving from outside any job (prerouting)
/// or made by the host itself (output).
fn render_publish_base(s: &mut String, wildcard: &str) {
    let t = TABLE;
    let _ = writeln!(
        s,
        "add map {t} publish {{ type inet_proto . inet_service : verdict; }}"
    );
    for (chain, hook, extra) in [
        (
            "prerouting",
            "prerouting",
            format!("iifname != {wildcard} "),
        ),
        ("output", "output", String::new()),
    ] {
        let _ = writeln!(
            s,
            "add chain {t} {chain} {{ type nat hook {hook} priority -100; policy accept; }}"
        );
        let _ = writeln!(s, "flush chain {t} {chain}");
        let _ = writeln!(
            s,
            "add rule {t} {chain} {extra}fib daddr type local meta l4proto . th dport vmap @publish"
        );
    }
}

/// The job's `pub_<short>` chain (one DNAT per `-p`) and its `publish` map entries
/// (`create`: a port another job holds fails the whole batch).
fn render_job_publish(s: &mut String, plan: &Plan, limits: &Limits) {
    if limits.publish.is_empty() {
        return;
    }
    let t = TABLE;
    let chain = format!("pub_{}", plan.short);
    let _ = writeln!(s, "add chain {t} {chain}");
    let _ = writeln!(s, "flush chain {t} {chain}");
    for p in &limits.publish {
        let proto = p.protocol.as_str();
        let daddr = p
            .host_ip
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "add rule {t} {chain} {daddr}{proto} dport {} dnat ip to {}:{}",
            p.host_port, plan.address, p.container_port
        );
        let _ = writeln!(
            s,
            "create element {t} publish {{ {proto} . {} : jump {chain} }}",
            p.host_port
        );
    }
}

fn render_job(s: &mut String, plan: &Plan, limits: &Limits) {
    let t = TABLE;
    let id = &plan.short;
    let _ = writeln!(s, "add counter {t} tx_{id}");
    let _ = writeln!(s, "add counter {t} rx_{id}");
    let out = format!("out_{id}");
    let _ = writeln!(s, "add chain {t} {out}");
    let _ = writeln!(s, "flush chain {t} {out}");
    // Only the container's own address leaves it (hand-made packets with another source
    // are refused), and IPv4 only.
    let _ = writeln!(
        s,
        "{}",
        refuse(&out, &format!("ip saddr != {}", plan.address))
    );
    if !limits.publish.is_empty() {
        // Replies to connections made to its published ports, wherever they came from.
        let _ = writeln!(
            s,
            "add rule {t} {out} ct status dnat ct direction reply counter name tx_{id} accept"
        );
    }
    let _ = writeln!(s, "{}", refuse(&out, "meta nfproto != ipv4"));
    let _ = writeln!(s, "{}", refuse(&out, "ip daddr @blocked4"));
    let _ = writeln!(s, "{}", refuse(&out, "ip6 daddr @blocked6"));
    if !limits.blocked_ports.is_empty() {
        let ports = limits
            .blocked_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "add rule {t} {out} tcp dport {{ {ports} }} reject with tcp reset"
        );
    }
    if limits.new_connections_per_second > 0 {
        let rate = limits.new_connections_per_second;
        let _ = writeln!(
            s,
            "add rule {t} {out} ct state new limit rate over {rate}/second burst {} packets drop",
            rate.saturating_mul(2)
        );
    }
    if limits.max_connections > 0 {
        let over = format!("ct state new ct count over {}", limits.max_connections);
        let _ = writeln!(s, "{}", refuse(&out, &over));
    }
    if limits.egress_mbps > 0 {
        // Mbit/s in kbytes/second, as nft takes rates.
        let kbytes = u64::from(limits.egress_mbps) * 1000 / 8;
        let _ = writeln!(
            s,
            "add rule {t} {out} limit rate over {kbytes} kbytes/second burst {} kbytes drop",
            kbytes.max(64)
        );
    }
    let _ = writeln!(s, "add rule {t} {out} counter name tx_{id} accept");
    let inbound = format!("in_{id}");
    let _ = writeln!(s, "add chain {t} {inbound}");
    let _ = writeln!(s, "flush chain {t} {inbound}");
    let _ = writeln!(
        s,
        "add rule {t} {inbound} ct state established,related counter name rx_{id} accept"
    );
    if !limits.publish.is_empty() {
        let _ = writeln!(
            s,
            "add rule {t} {inbound} ct status dnat ct direction original counter name rx_{id} accept"
        );
    }
    let _ = writeln!(s, "add rule {t} {inbound} drop");
    let host_if = &plan.host_if;
    let _ = writeln!(
        s,
        "add element {t} jobs_out {{ \"{host_if}\" : jump {out} }}"
    );
    let _ = writeln!(
        s,
        "add element {t} jobs_in {{ \"{host_if}\" : jump {inbound} }}"
    );
    render_job_publish(s, plan, limits);
}

/// What [`remove`] deletes for container `short`, given which of its objects exist
/// (a batch that names a missing object would fail as a whole).
pub fn render_remove(short: &str, existing: &Existing) -> String {
    let t = TABLE;
    let host_if = format!("{HOST_IF_PREFIX}{short}");
    let mut s = String::new();
    for (proto, port) in &existing.published {
        let _ = writeln!(s, "delete element {t} publish {{ {proto} . {port} }}");
    }
    if existing.out_entry {
        let _ = writeln!(s, "delete element {t} jobs_out {{ \"{host_if}\" }}");
    }
    if existing.in_entry {
        let _ = writeln!(s, "delete element {t} jobs_in {{ \"{host_if}\" }}");
    }
    for (present, kind, name) in [
        (existing.out_chain, "chain", format!("out_{short}")),
        (existing.in_chain, "chain", format!("in_{short}")),
        (existing.pub_chain, "chain", format!("pub_{short}")),
        (existing.tx, "counter", format!("tx_{short}")),
        (existing.rx, "counter", format!("rx_{short}")),
    ] {
        if present {
            let _ = writeln!(s, "delete {kind} {t} {name}");
        }
    }
    s
}

/// Which of one container's objects are in the table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Existing {
    pub out_entry: bool,
    pub in_entry: bool,
    pub out_chain: bool,
    pub in_chain: bool,
    pub tx: bool,
    pub rx: bool,
    pub pub_chain: bool,
    /// `publish` map keys (protocol, host port) that jump to this container's chain.
    pub published: Vec<(String, u64)>,
}

/// The `publish` map's entries as (key protocol, key port, jump target).
fn publish_entries(listing: &serde_json::Value) -> Vec<(String, u64, String)> {
    let items = listing
        .get("nftables")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for item in items {
        let Some(map) = item.get("map").filter(|m| m["name"] == "publish") else {
            continue;
        };
        for elem in map["elem"].as_array().into_iter().flatten() {
            let key = &elem[0]["concat"];
            let (Some(proto), Some(port)) = (key[0].as_str(), key[1].as_u64()) else {
                continue;
            };
            let target = elem[1]["jump"]["target"].as_str().unwrap_or_default();
            out.push((proto.to_owned(), port, target.to_owned()));
        }
    }
    out
}

/// Host ports some container publishes now.
pub fn published() -> Result<std::collections::HashSet<(PortProtocol, u16)>, NetworkError> {
    let Some(listing) = list_table()? else {
        return Ok(Default::default());
    };
    Ok(publish_entries(&listing)
        .into_iter()
        .filter_map(|(proto, port, _)| {
            let proto = match proto.as_str() {
                "tcp" => PortProtocol::Tcp,
                "udp" => PortProtocol::Udp,
                _ => return None,
            };
            Some((proto, u16::try_from(port).ok()?))
        })
        .collect())
}

/// Read from `nft -j list table inet farm`.
pub fn existing(listing: &serde_json::Value, short: &str) -> Existing {
    let host_if = format!("{HOST_IF_PREFIX}{short}");
    let mut found = Existing::default();
    let chain = format!("pub_{short}");
    found.published = publish_entries(listing)
        .into_iter()
        .filter(|(_, _, target)| *target == chain)
        .map(|(proto, port, _)| (proto, port))
        .collect();
    let items = listing
        .get("nftables")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for item in items {
        if let Some(chain) = item.get("chain") {
            let name = chain.get("name").and_then(|n| n.as_str()).unwrap_or("");
            found.out_chain |= name == format!("out_{short}");
            found.pub_chain |= name == format!("pub_{short}");
            found.in_chain |= name == format!("in_{short}");
        }
        if let Some(counter) = item.get("counter") {
            let name = counter.get("name").and_then(|n| n.as_str()).unwrap_or("");
            found.tx |= name == format!("tx_{short}");
            found.rx |= name == format!("rx_{short}");
        }
        if let Some(map) = item.get("map") {
            let name = map.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let has = map
                .get("elem")
                .and_then(|e| e.as_array())
                .is_some_and(|elems| {
                    elems.iter().any(|e| {
                        e.as_array()
                            .and_then(|pair| pair.first())
                            .and_then(|k| k.as_str())
                            == Some(host_if.as_str())
                    })
                });
            if name == "jobs_out" {
                found.out_entry |= has;
            }
            if name == "jobs_in" {
                found.in_entry |= has;
            }
        }
    }
    found
}

fn nft_path() -> Result<PathBuf, NetworkError> {
    NFT_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_owned)
        .ok_or_else(|| NetworkError::NftMissing {
            path: PathBuf::from(NFT_PATHS[0]),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, NetworkError> {
    let path = nft_path()?;
    let mut child = Command::new(&path)
        .args(args)
        .env_clear()
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetworkError::NftMissing {
            path: path.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|source| NetworkError::NftMissing {
            path: path.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message: String = stderr.trim().lines().take(6).collect::<Vec<_>>().join("; ");
        return Err(NetworkError::Nft {
            message: if message.is_empty() {
                format!("nft exited with {}", output.status)
            } else {
                message
            },
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `nft -f -` with `batch`: one transaction.
pub fn apply(batch: &str) -> Result<(), NetworkError> {
    nft(&["-f", "-"], Some(batch)).map(drop)
}

/// `nft --version` (for `farm info`).
pub fn nft_version() -> Result<String, NetworkError> {
    nft(&["--version"], None).map(|v| v.trim().to_owned())
}

fn list_table() -> Result<Option<serde_json::Value>, NetworkError> {
    match nft(&["-j", "list", "table", "inet", "farm"], None) {
        Ok(text) => Ok(serde_json::from_str(&text).ok()),
        // No table: nothing of any container is left.
        Err(NetworkError::Nft { message })
            if message.contains("No such file") || message.contains("does not exist") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Delete container `short`'s map entries, chains and counters; idempotent. Returns the
/// counters as they were just before (read from the same listing: one `nft -j list table
/// inet farm`, then one `nft -f -` batch).
pub fn remove(short: &str) -> Result<Option<NetUsage>, NetworkError> {
    let Some(listing) = list_table()? else {
        return Ok(None);
    };
    let usage = usage_in(&listing, short);
    let batch = render_remove(short, &existing(&listing, short));
    if !batch.is_empty() {
        apply(&batch)?;
    }
    Ok(usage)
}

/// Container `short`'s counters in a table listing; None where it has none.
pub fn usage_in(listing: &serde_json::Value, short: &str) -> Option<NetUsage> {
    let find = |name: String| {
        listing
            .get("nftables")?
            .as_array()?
            .iter()
            .filter_map(|item| item.get("counter"))
            .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name.as_str()))
            .map(|c| {
                let field = |k: &str| c.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                (field("packets"), field("bytes"))
            })
    };
    let (tx_packets, tx_bytes) = find(format!("tx_{short}"))?;
    let (rx_packets, rx_bytes) = find(format!("rx_{short}"))?;
    Some(NetUsage {
        tx_bytes,
        tx_packets,
        rx_bytes,
        rx_packets,
    })
}

/// Container `short`'s counters now (`nft -j list table inet farm`).
pub fn counters(short: &str) -> Result<Option<NetUsage>, NetworkError> {
    Ok(list_table()?.and_then(|listing| usage_in(&listing, short)))
}
