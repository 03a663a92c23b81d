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
    // The controllers, as the kernel lists them: on v2 the root's cgroup.controllers, on
    // v1 the mounted hierarchies (this host and the cgroup v2 lane's VM have all farm needs).
    let cgroups = &info["cgroups"];
    let controllers: Vec<&str> = cgroups["controllers"]
        .as_array()
        .expect("cgroups.controllers")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    if info["cgroup_version"] == "v2" {
        let root = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
        assert_eq!(controllers, root.split_whitespace().collect::<Vec<_>>());
    } else {
        assert!(Path::new("/sys/fs/cgroup/memory").exists());
        assert!(controllers.contains(&"memory") && controllers.contains(&"devices"));
    }
    assert_eq!(cgroups["missing"], serde_json::json!([]), "{info:#}");
    assert_eq!(cgroups["parent"], "/farm");
    assert_eq!(
        cgroups["writable"], true,
        "root may create cgroups: {info:#}"
    );
    let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = cgroups["own"].as_str().expect("farm's own cgroup");
    assert!(own.starts_with('/'), "{info:#}");
    // The test and the farm it runs share their cgroup (the same session).
    assert!(
        mine.lines().any(|l| l.ends_with(&format!(":{own}"))),
        "{mine} vs {own}"
    );
    let text = farm.run(&["info"]);
    assert!(
        text.stdout.contains("Cgroup controllers:") && text.stdout.contains("farm's cgroup:"),
        "{}",
        text.stdout
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

/// A loopback speed-test server (Python): GET sends 200 MB of zeros, POST reads and counts
/// what it gets (written to argv[2]).
const SPEED_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(200 << 20)); self.end_headers()
        block = b"\0" * (1 << 20)
        try:
            for _ in range(200): self.wfile.write(block)
        except OSError: pass
    def do_POST(self):
        n = 0
        while True:
            line = self.rfile.readline().strip()
            size = int(line, 16)
            if size == 0: self.rfile.readline(); break
            n += len(self.rfile.read(size)); self.rfile.readline()
        open(sys.argv[2], "w").write(str(n))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn speedtest_measures_mbps_both_ways_and_info_keeps_them() {
    let farm = Farm::new();
    let port = crate::support::registry::free_port("127.0.0.1");
    let received = farm.dir.path().join("received");
    let mut server = std::process::Command::new("python3")
        .args([
            "-c",
            SPEED_SERVER,
            &port.to_string(),
            &received.to_string_lossy(),
        ])
        .spawn()
        .unwrap();
    // Wait until it listens (a slow machine, or the cgroup v2 lane's emulated VM).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the speed-test server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/");
    let run = farm.run(&[
        "info",
        "--speedtest",
        &url,
        "--speedtest-seconds",
        "1",
        "--json",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    run.assert_ok();
    let info: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let link = &info["link"];
    let (down, up) = (
        link["down_mbps"].as_f64().unwrap(),
        link["up_mbps"].as_f64().unwrap(),
    );
    assert!(down > 1.0 && up > 1.0, "{link}");
    // The upload figure is what the server really got, over at most the time limit.
    let got: f64 = std::fs::read_to_string(&received).unwrap().parse().unwrap();
    assert!(
        got > 0.0 && up <= got * 8.0 / 1e6 / 0.5,
        "{up} Mbit/s for {got} bytes"
    );
    assert!(farm.root().join("speedtest.json").exists());
    let again = farm.run(&["info", "--json"]);
    let kept: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        kept["link"], *link,
        "the measurement is kept for the worker's registration"
    );
}

#[test]
fn speedtest_against_a_tiny_file_says_it_cannot_time_it() {
    let farm = Farm::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    // A real HTTP answer with a 2-byte body: nothing to time a link with.
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let run = farm.run(&["info", "--speedtest", &url, "--speedtest-seconds", "1"]);
    let _ = server.join();
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr.contains("too little data to time"),
        "{}",
        run.stderr
    );
    assert!(
        !farm.root().join("speedtest.json").exists(),
        "a failed measurement is not kept"
    );
}
