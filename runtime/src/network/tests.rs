use std::net::{IpAddr, Ipv4Addr};

use super::firewall::{self, Existing, Ruleset};
use super::plan::{self, HostAddress};
use super::{Cidr, Limits, NetworkConfig};
use crate::options::NetLimits;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn pool() -> Cidr {
    "10.231.0.0/16".parse().unwrap()
}

fn home() -> Vec<HostAddress> {
    let a = |interface: &str, addr: &str, prefix_len| HostAddress {
        interface: interface.to_owned(),
        addr: addr.parse().unwrap(),
        prefix_len,
    };
    vec![
        a("lo", "127.0.0.1", 8),
        a("eth0", "192.168.50.2", 24),
        a("eth0", "2001:db8:50::2", 64),
        a("eth0", "198.51.100.7", 24),
        a("fm0123456789ab", "10.231.0.0", 31),
    ]
}

#[test]
fn slot_gives_names_and_a_31_from_the_id() {
    let plan = plan::for_container(ID, 3, &pool()).unwrap();
    assert_eq!(plan.host_if, "fm0123456789ab");
    assert!(plan.host_if.len() <= 15, "IFNAMSIZ");
    assert_eq!(plan.gateway, Ipv4Addr::new(10, 231, 0, 6));
    assert_eq!(plan.address, Ipv4Addr::new(10, 231, 0, 7));
    assert!(plan::for_container(ID, plan::slots(&pool()), &pool()).is_err());
    assert!(plan::for_container("../etc", 0, &pool()).is_err());
}

#[test]
fn blocked_lists_hold_fixed_ranges_on_link_prefixes_and_host_addresses_not_docs() {
    let (v4, v6) = plan::blocked(&pool(), &home());
    let has = |list: &[Cidr], text: &str| list.contains(&text.parse().unwrap());
    for text in [
        "169.254.0.0/16",
        "100.64.0.0/10",
        "192.168.0.0/16",
        "10.231.0.0/16",
    ] {
        assert!(has(&v4, text), "{text}");
    }
    // A public block the host sits on is blocked; other documentation ranges are not.
    assert!(has(&v4, "198.51.100.0/24"));
    assert!(has(&v4, "198.51.100.7/32"));
    assert!(!v4.iter().any(|c| c.to_string().starts_with("203.0.113")));
    assert!(has(&v6, "2001:db8:50::/64"));
    assert!(has(&v6, "fe80::/10") && has(&v6, "::ffff:0.0.0.0/96"));
    // farm's own interfaces are the pool, not the host's prefixes.
    assert!(!has(&v4, "10.231.0.0/31"));
}

#[test]
fn pool_overlapping_the_lan_is_refused() {
    let lan = vec![HostAddress {
        interface: "eth0".into(),
        addr: "10.231.4.9".parse().unwrap(),
        prefix_len: 24,
    }];
    assert!(plan::pool_conflict(&pool(), &lan).is_some());
    assert!(plan::pool_conflict(&pool(), &home()).is_none());
}

#[test]
fn job_limits_only_tighten_the_farmers() {
    let config = NetworkConfig::default();
    let loose = NetLimits {
        new_connections_per_second: Some(5000),
        max_connections: Some(0),
        egress_mbps: Some(100),
    };
    let limits = config.limits_for(&loose);
    assert_eq!(limits.new_connections_per_second, 50);
    assert_eq!(limits.max_connections, 512);
    assert_eq!(
        limits.egress_mbps, 100,
        "no farmer cap: the job's own applies"
    );
    let tight = NetLimits {
        new_connections_per_second: Some(5),
        ..NetLimits::default()
    };
    assert_eq!(config.limits_for(&tight).new_connections_per_second, 5);
}

#[test]
fn config_file_is_parsed_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        NetworkConfig::load(dir.path()).unwrap(),
        NetworkConfig::default()
    );
    std::fs::write(
        dir.path().join("config.toml"),
        "[network]\npool = \"10.99.0.0/20\"\negress_mbps = 20\n",
    )
    .unwrap();
    let config = NetworkConfig::load(dir.path()).unwrap();
    assert_eq!(config.pool, "10.99.0.0/20");
    assert_eq!(config.egress_mbps, 20);
    assert_eq!(config.blocked_ports, vec![25, 465, 587]);
    std::fs::write(
        dir.path().join("config.toml"),
        "[network]\npool = \"fd00::/64\"\n",
    )
    .unwrap();
    assert!(NetworkConfig::load(dir.path()).is_err());
    std::fs::write(dir.path().join("config.toml"), "[network]\npoool = 1\n").unwrap();
    assert!(NetworkConfig::load(dir.path()).is_err());
}

fn rules_text(limits: &Limits, forwarding_off: bool) -> String {
    let plan = plan::for_container(ID, 0, &pool()).unwrap();
    let (v4, v6) = plan::blocked(&pool(), &home());
    firewall::render_attach(&Ruleset {
        pool: pool(),
        blocked4: &v4,
        blocked6: &v6,
        host_forwarding_was_off: forwarding_off,
        plan: &plan,
        limits,
    })
}

#[test]
fn rules_reject_spoofing_ipv6_blocked_ranges_smtp_and_all_host_input() {
    let limits = NetworkConfig::default().limits_for(&NetLimits::default());
    let text = rules_text(&limits, false);
    for line in [
        "add rule inet farm out_0123456789ab ip saddr != 10.231.0.1 reject",
        "add rule inet farm out_0123456789ab meta nfproto != ipv4 reject",
        "add rule inet farm out_0123456789ab ip daddr @blocked4 reject",
        "add rule inet farm out_0123456789ab tcp dport { 25, 465, 587 } reject with tcp reset",
        "add rule inet farm input iifname \"fm*\" reject",
        "add rule inet farm forward iifname \"fm*\" reject",
        "add element inet farm jobs_out { \"fm0123456789ab\" : jump out_0123456789ab }",
        "add rule inet farm in_0123456789ab drop",
        "add rule inet farm out_0123456789ab ip daddr @blocked4 meta l4proto tcp reject with tcp reset\n\
         add rule inet farm out_0123456789ab ip daddr @blocked4 reject with icmpx type admin-prohibited",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // The accept (and its counter) comes after every check.
    let accept = text.find("counter name tx_0123456789ab accept").unwrap();
    assert!(text.find("@blocked4").unwrap() < accept);
    assert!(!text.contains("forward drop\n"));
    assert!(rules_text(&limits, true).contains("add rule inet farm forward drop\n"));
}

#[test]
fn remove_names_only_what_exists() {
    let listing = serde_json::json!({"nftables": [
        {"chain": {"family": "inet", "table": "farm", "name": "out_0123456789ab"}},
        {"counter": {"family": "inet", "table": "farm", "name": "tx_0123456789ab", "packets": 3, "bytes": 180}},
        {"map": {"name": "jobs_out", "elem": [["fm0123456789ab", {"jump": {"target": "out_0123456789ab"}}]]}},
        {"map": {"name": "jobs_in", "elem": [["fmffffffffffff", {"jump": {"target": "in_ffffffffffff"}}]]}},
    ]});
    let found = firewall::existing(&listing, "0123456789ab");
    assert_eq!(
        found,
        Existing {
            out_entry: true,
            out_chain: true,
            tx: true,
            ..Existing::default()
        }
    );
    let batch = firewall::render_remove("0123456789ab", &found);
    assert_eq!(batch.lines().count(), 3, "{batch}");
    assert!(firewall::render_remove("0123456789ab", &Existing::default()).is_empty());
    // tx_ is listed, rx_ is not: no usage rather than a half one.
    assert_eq!(firewall::usage_in(&listing, "0123456789ab"), None);
    let mut both = listing.clone();
    both["nftables"].as_array_mut().unwrap().push(serde_json::json!(
        {"counter": {"family": "inet", "table": "farm", "name": "rx_0123456789ab", "packets": 2, "bytes": 120}}
    ));
    let usage = firewall::usage_in(&both, "0123456789ab").unwrap();
    assert_eq!(
        (
            usage.tx_packets,
            usage.tx_bytes,
            usage.rx_packets,
            usage.rx_bytes
        ),
        (3, 180, 2, 120)
    );
}

#[test]
fn dns_helper_relays_queries_only() {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(&[3, b'c', b'o', b'm', 0, 0, 1, 0, 1]);
    assert!(super::dns::is_query(&query));
    let mut response = query.clone();
    response[2] |= 0x80;
    assert!(!super::dns::is_query(&response));
    assert!(!super::dns::is_query(b"GET / HTTP/1.1\r\n\r\n"));
    assert_eq!(
        super::dns::upstream("search lan\nnameserver 192.168.1.1\nnameserver 1.1.1.1\n"),
        Some(Ipv4Addr::new(192, 168, 1, 1))
    );
    assert_eq!(plan::resolv_conf(&[]), "nameserver 127.0.0.53\n");
    assert_eq!(
        plan::resolv_conf(&[IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))]),
        "nameserver 9.9.9.9\n"
    );
}

#[test]
fn publishing_renders_dnat_replies_and_removal_and_jobs_need_the_farmers_consent() {
    use crate::options::{Publish, RunOptions};
    let mut limits = NetworkConfig::default().limits_for(&NetLimits::default());
    let publish: Publish = "127.0.0.1:8080:80".parse().unwrap();
    assert_eq!(publish.host_port, 8080);
    assert!("8080".parse::<Publish>().is_err() && "0:80".parse::<Publish>().is_err());
    assert_eq!(
        "53:5353/udp".parse::<Publish>().unwrap().protocol.as_str(),
        "udp"
    );
    limits.publish = vec![publish];
    let text = rules_text(&limits, false);
    for line in [
        "add rule inet farm pub_0123456789ab ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.231.0.1:80",
        "create element inet farm publish { tcp . 8080 : jump pub_0123456789ab }",
        "add rule inet farm out_0123456789ab ct status dnat ct direction reply counter name tx_0123456789ab accept",
        "add rule inet farm prerouting iifname != \"fm*\" fib daddr type local",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // The reply rule comes after the source check, before the blocklist.
    let reply = text.find("ct direction reply counter").unwrap();
    assert!(text.find("ip saddr != 10.231.0.1").unwrap() < reply);
    assert!(reply < text.find("ip daddr @blocked4").unwrap());
    assert!(!rules_text(
        &NetworkConfig::default().limits_for(&NetLimits::default()),
        false
    )
    .contains("pub_0123456789ab"));

    let listing = serde_json::json!({"nftables": [
        {"chain": {"family": "inet", "table": "farm", "name": "pub_0123456789ab"}},
        {"map": {"family": "inet", "table": "farm", "name": "publish", "elem": [
            [{"concat": ["tcp", 8080]}, {"jump": {"target": "pub_0123456789ab"}}],
            [{"concat": ["udp", 53]}, {"jump": {"target": "pub_ffffffffffff"}}]
        ]}}
    ]});
    let found = firewall::existing(&listing, "0123456789ab");
    assert_eq!(found.published, vec![("tcp".to_owned(), 8080)]);
    let batch = firewall::render_remove("0123456789ab", &found);
    assert!(
        batch.starts_with("delete element inet farm publish { tcp . 8080 }\n"),
        "{batch}"
    );
    assert!(batch.contains("delete chain inet farm pub_0123456789ab"));

    let root = std::path::Path::new("/nonexistent");
    let mut options = RunOptions {
        publish: vec![publish],
        coordinator_job: true,
        ..RunOptions::default()
    };
    let config = NetworkConfig::default();
    assert!(matches!(
        crate::network::allowed_publish(&options, &config, root),
        Err(crate::network::NetworkError::PublishRefused { .. })
    ));
    let consenting = NetworkConfig {
        allow_publish_for_jobs: true,
        ..NetworkConfig::default()
    };
    assert_eq!(
        crate::network::allowed_publish(&options, &consenting, root)
            .unwrap()
            .len(),
        1
    );
    options.coordinator_job = false;
    assert_eq!(
        crate::network::allowed_publish(&options, &config, root)
            .unwrap()
            .len(),
        1
    );
}
