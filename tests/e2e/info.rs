//! `farm info [--json]` on this machine (no GPU here: the no-driver answer).

use std::path::Path;
use std::process::Command;

use crate::support::Farm;

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn has_nvidia_driver() -> bool {
    std::path::Path::new("/proc/driver/nvidia").exists()
}

#[test]
fn info_json_reports_this_host() {
    let farm = Farm::new();
    let run = farm.run(&["info", "--json"]);
    run.assert_ok();
    let info: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("info --json is not JSON ({e}): {}", run.stdout));

    assert_eq!(info["kernel"], command_output("uname", &["-r"]).as_str());
    let nproc: u64 = command_output("nproc", &[]).parse().unwrap();
    assert_eq!(info["cpu"]["available_cores"], nproc, "{info:#}");
    let logical = info["cpu"]["logical_cores"]
        .as_u64()
        .expect("logical cores");
    assert!(logical >= nproc, "{info:#}");
    assert!(
        ["v1", "hybrid", "v2"].contains(&info["cgroup_version"].as_str().unwrap_or("")),
        "{info:#}"
    );
    assert!(info["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(info["disk"]["free_bytes"].is_u64(), "{info:#}");
    // The root is not made by `farm info`: the disk is measured at its nearest parent.
    assert!(!farm.root().exists(), "farm info must not create the root");
    assert_eq!(info["disk"]["path"], farm.dir.path().to_str().unwrap());
    for key in ["user_namespaces", "idmapped_mounts", "overlayfs", "seccomp"] {
        assert!(info["sandbox"][key].is_boolean(), "sandbox.{key}: {info:#}");
    }
    assert_eq!(info["sandbox"]["idmapped_from"], "kernel_version");
    // What --network internet needs: the nft binary, and its version where it is there.
    match std::path::Path::new("/usr/sbin/nft").exists() {
        true => assert!(
            info["sandbox"]["nftables"]
                .as_str()
                .unwrap_or("")
                .starts_with("nftables v"),
            "{info:#}"
        ),
        false => assert!(info["sandbox"]["nftables"].is_null(), "{info:#}"),
    }
    assert_eq!(
        info["cdi"]["dirs"],
        serde_json::json!(["/etc/cdi", "/var/run/cdi"]),
        "{info:#}"
    );
    if !Path::new("/etc/cdi").exists() && !Path::new("/var/run/cdi").exists() {
        assert_eq!(info["cdi"]["devices"], serde_json::json!([]), "{info:#}");
    }

    if !has_nvidia_driver() {
        assert_eq!(info["gpus"], serde_json::json!([]), "{info:#}");
        assert!(info["nvidia"]["driver"].is_null(), "{info:#}");
        let error = info["nvidia"]["error"].as_str().expect("why no GPU");
        assert!(error.contains("no NVIDIA driver found"), "{error}");
    }
}

#[test]
fn info_without_a_driver_says_so_plainly() {
    let farm = Farm::new();
    let run = farm.run(&["info"]);
    run.assert_ok();
    let kernel = command_output("uname", &["-r"]);
    let line = |key: &str| {
        run.stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key} line: {}", run.stdout))
            .to_owned()
    };
    assert_eq!(line("Kernel"), kernel);
    assert!(
        line("Cgroups").starts_with('v') || line("Cgroups").starts_with("hybrid"),
        "{}",
        run.stdout
    );
    let nproc = command_output("nproc", &[]);
    assert!(
        line("CPU cores").contains(&format!("{nproc} available")),
        "{}",
        run.stdout
    );
    if !has_nvidia_driver() {
        assert!(
            run.stdout.contains("GPUs: none (no NVIDIA driver found)"),
            "{}",
            run.stdout
        );
    }
    if !Path::new("/etc/cdi").exists() && !Path::new("/var/run/cdi").exists() {
        assert_eq!(
            line("CDI devices"),
            "none (no spec in /etc/cdi or /var/run/cdi)"
        );
    }
    assert!(run.stderr.is_empty(), "nothing on stderr: {run:#?}");
}
