//! CDI specs shaped like `nvidia-ctk cdi generate`'s, on a fake host tree with real
//! character (and one block) device nodes made with mknod, as the runtime's other tests
//! (they run as root).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::gpu::driver::DriverTree;

const LIB: &str = "usr/lib/x86_64-linux-gnu";
const VERSION: &str = "550.54.15";

fn mknod(path: &Path, kind: rustix::fs::FileType, major: u32, minor: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// A host tree: two GPUs (GPU-aaaa = /dev/nvidia0, GPU-bbbb = /dev/nvidia1), the control
/// nodes, a block device, two driver libraries.
fn host() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let chr = rustix::fs::FileType::CharacterDevice;
    mknod(&r.join("dev/nvidia0"), chr, 195, 0);
    mknod(&r.join("dev/nvidia1"), chr, 195, 1);
    mknod(&r.join("dev/nvidiactl"), chr, 195, 255);
    mknod(&r.join("dev/nvidia-modeset"), chr, 195, 254);
    mknod(&r.join("dev/nvidia-uvm"), chr, 511, 0);
    mknod(&r.join("dev/nvidia-uvm-tools"), chr, 511, 1);
    mknod(&r.join("dev/sda"), rustix::fs::FileType::BlockDevice, 8, 0);
    for (bus, uuid, minor) in [
        ("0000:17:00.0", "GPU-aaaa", 0),
        ("0000:65:00.0", "GPU-bbbb", 1),
    ] {
        write(
            r,
            &format!("proc/driver/nvidia/gpus/{bus}/information"),
            &format!("GPU UUID: \t {uuid}\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n"),
        );
    }
    for lib in ["libcuda.so", "libnvidia-ml.so"] {
        write(r, &format!("{LIB}/{lib}.{VERSION}"), "fake\n");
    }
    dir
}

/// nvidia-ctk's YAML for the tree (hostPaths into it), with one node per GPU device.
fn nvidia_yaml(r: &Path) -> String {
    let r = r.display();
    format!(
        r#"---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  deviceNodes:
  - path: /dev/nvidiactl
    hostPath: {r}/dev/nvidiactl
  - path: /dev/nvidia-uvm
    hostPath: {r}/dev/nvidia-uvm
  - path: /dev/nvidia-uvm-tools
    hostPath: {r}/dev/nvidia-uvm-tools
  - path: /dev/nvidia-modeset
    hostPath: {r}/dev/nvidia-modeset
  hooks:
  - args:
    - nvidia-cdi-hook
    - create-symlinks
    - --link
    - libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so
    env:
    - NVIDIA_CTK_DEBUG=false
    hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
  - args:
    - nvidia-cdi-hook
    - enable-cuda-compat
    - --host-driver-version={VERSION}
    hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
  - args:
    - nvidia-cdi-hook
    - update-ldcache
    - --folder
    - /usr/lib/x86_64-linux-gnu
    hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
  mounts:
  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{VERSION}
    hostPath: {r}/{LIB}/libcuda.so.{VERSION}
    options: [ro, nosuid, nodev, bind]
  - containerPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{VERSION}
    hostPath: {r}/{LIB}/libnvidia-ml.so.{VERSION}
    options: [ro, nosuid, nodev, bind]
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
      hostPath: {r}/dev/nvidia0
    hooks:
    - args: [nvidia-cdi-hook, chmod, --mode, "755", --path, /dev/dri]
      hookName: createContainer
      path: /usr/bin/nvidia-cdi-hook
- name: GPU-bbbb
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia1
      hostPath: {r}/dev/nvidia1
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
      hostPath: {r}/dev/nvidia0
    - path: /dev/nvidia1
      hostPath: {r}/dev/nvidia1
"#
    )
}

fn spec_file(root: &Path, dir: &str, name: &str, text: &str) -> std::path::PathBuf {
    let path = root.join(dir.trim_start_matches('/')).join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn names(values: &[&str]) -> Vec<DeviceName> {
    parse_names(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>()).unwrap()
}

fn run(root: &Path, values: &[&str]) -> Result<CdiInjection, GpuError> {
    let inventory = DriverTree::discover(root).ok();
    inject(&Registry::load(root), &names(values), inventory.as_ref())
}

fn paths(extras: &Extras) -> Vec<&str> {
    extras.devices.iter().map(|d| d.path.as_str()).collect()
}

#[test]
fn an_nvidia_ctk_yaml_spec_gives_nodes_binds_links_and_ldconfig() {
    let host = host();
    let r = host.path();
    spec_file(r, "/etc/cdi", "nvidia.yaml", &nvidia_yaml(r));
    let got = run(r, &["nvidia.com/gpu=0"]).unwrap();
    assert_eq!(
        paths(&got.extras),
        [
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia-modeset",
            "/dev/nvidia0"
        ]
    );
    let gpu = &got.extras.devices[4];
    assert_eq!((gpu.major, gpu.minor), (195, 0));
    assert_eq!(gpu.host, r.join("dev/nvidia0"));
    assert_eq!(gpu.access, "rwm");
    assert_eq!(
        got.extras
            .binds
            .iter()
            .map(|b| (b.path.as_str(), b.dir))
            .collect::<Vec<_>>(),
        [
            ("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", false),
            ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15", false)
        ]
    );
    assert_eq!(
        got.extras.symlinks,
        [ExtraSymlink {
            path: "/usr/lib/x86_64-linux-gnu/libcuda.so".into(),
            target: "libcuda.so.1".into()
        }]
    );
    assert_eq!(
        got.ldconfig.as_deref(),
        Some(&["/usr/lib/x86_64-linux-gnu".to_owned()][..])
    );
    assert_eq!(got.extras.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
    assert_eq!(got.leases, ["cdi:nvidia.com/gpu=0", "GPU-aaaa"]);
    assert_eq!(got.gpu_leases, BTreeSet::from(["GPU-aaaa".to_owned()]));
    // chmod and enable-cuda-compat are known and need nothing: no warning.
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
}

#[test]
fn devices_by_uuid_and_all_lease_their_gpus_and_share_the_spec_edits_once() {
    let host = host();
    let r = host.path();
    spec_file(r, "/etc/cdi", "nvidia.yaml", &nvidia_yaml(r));
    let by_uuid = run(r, &["nvidia.com/gpu=GPU-bbbb"]).unwrap();
    assert_eq!(by_uuid.leases, ["cdi:nvidia.com/gpu=GPU-bbbb", "GPU-bbbb"]);
    assert!(paths(&by_uuid.extras).contains(&"/dev/nvidia1"));
    assert!(!paths(&by_uuid.extras).contains(&"/dev/nvidia0"));

    let all = run(r, &["nvidia.com/gpu=all"]).unwrap();
    assert_eq!(
        all.leases,
        ["cdi:nvidia.com/gpu=all", "GPU-aaaa", "GPU-bbbb"]
    );

    // Two devices of one spec (and a name given twice): the spec's edits once, each node once.
    let two = run(
        r,
        &["nvidia.com/gpu=0", "nvidia.com/gpu=all", "nvidia.com/gpu=0"],
    )
    .unwrap();
    assert_eq!(two.extras.devices.len(), 6, "{:?}", paths(&two.extras));
    assert_eq!(two.extras.binds.len(), 2);
    assert_eq!(
        two.leases,
        [
            "cdi:nvidia.com/gpu=0",
            "GPU-aaaa",
            "cdi:nvidia.com/gpu=all",
            "GPU-bbbb"
        ]
    );
}

#[test]
fn a_json_spec_with_nvidia_ctk_hook_and_another_vendor_without_a_driver() {
    let host = host();
    let r = host.path();
    let json = serde_json::json!({
        "cdiVersion": "0.3.0",
        "kind": "example.com/fpga",
        "annotations": {"x": "y"},
        "devices": [{
            "name": "card0",
            "containerEdits": {
                "deviceNodes": [{"path": "/dev/fpga0", "hostPath": format!("{}/dev/nvidia-uvm", r.display()),
                                 "type": "c", "major": 511, "minor": 0, "permissions": "rw",
                                 "fileMode": 438, "uid": 0, "gid": 0}],
                "env": ["FPGA=0"]
            }
        }],
        "containerEdits": {
            "hooks": [
                {"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk",
                 "args": ["nvidia-ctk", "hook", "create-symlinks", "--link=libfpga.so.1::/usr/lib/libfpga.so"]},
                {"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk",
                 "args": ["nvidia-ctk", "hook", "update-ldcache", "--folder=/usr/lib", "--ldconfig-path", "/sbin/ldconfig.real"]}
            ]
        }
    });
    spec_file(r, "/var/run/cdi", "fpga.json", &json.to_string());
    // No driver tree here: nothing is a GPU, only the device's own lease.
    let got = inject(
        &Registry::load(r),
        &names(&["example.com/fpga=card0"]),
        None,
    )
    .unwrap();
    assert_eq!(got.leases, ["cdi:example.com/fpga=card0"]);
    assert!(got.gpu_leases.is_empty());
    assert_eq!(got.extras.devices[0].path, "/dev/fpga0");
    assert_eq!(got.extras.devices[0].access, "rw");
    assert_eq!(got.extras.symlinks[0].path, "/usr/lib/libfpga.so");
    assert_eq!(got.ldconfig, Some(vec!["/usr/lib".to_owned()]));
    assert_eq!(got.extras.env, ["FPGA=0"]);
}

#[test]
fn var_run_cdi_overrides_etc_cdi_for_the_same_name() {
    let host = host();
    let r = host.path();
    spec_file(r, "/etc/cdi", "nvidia.yaml", &nvidia_yaml(r));
    // The generated spec in /var/run/cdi says gpu=0 is /dev/nvidia1.
    let generated = nvidia_yaml(r).replacen(
        "    - path: /dev/nvidia0\n",
        "    - path: /dev/nvidia1\n",
        1,
    );
    let generated = generated.replacen(
        &format!("      hostPath: {}/dev/nvidia0\n", r.display()),
        &format!("      hostPath: {}/dev/nvidia1\n", r.display()),
        1,
    );
    spec_file(r, "/var/run/cdi", "nvidia.yaml", &generated);
    let got = run(r, &["nvidia.com/gpu=0"]).unwrap();
    assert!(
        paths(&got.extras).contains(&"/dev/nvidia1"),
        "{:?}",
        paths(&got.extras)
    );
    assert!(!paths(&got.extras).contains(&"/dev/nvidia0"));
    assert_eq!(got.leases, ["cdi:nvidia.com/gpu=0", "GPU-bbbb"]);

    let listed = Registry::load(r).names();
    assert!(
        listed.contains(&"nvidia.com/gpu=0".to_owned()),
        "{listed:?}"
    );
    assert!(
        listed.contains(&"nvidia.com/gpu=all".to_owned()),
        "{listed:?}"
    );

    // Two files of one folder defining one name: neither is used.
    spec_file(r, "/var/run/cdi", "nvidia2.yaml", &generated);
    assert!(!Registry::load(r)
        .names()
        .contains(&"nvidia.com/gpu=0".to_owned()));
    let err = run(r, &["nvidia.com/gpu=0"]).unwrap_err().to_string();
    assert!(
        err.contains("defined in both") && err.contains("nvidia2.yaml"),
        "{err}"
    );
}

#[test]
fn device_values_must_be_fully_qualified() {
    for value in [
        "foo",
        "/dev/nvidia0",
        "nvidia.com/gpu",
        "gpu=0",
        "nvidia.com/gpu=",
        "nvidia.com/=0",
        "/gpu=0",
        "nvidia.com/gpu=-0",
        "nvidia.com/gpu/x=0",
        "nvidia.com/gpu=0 1",
    ] {
        let err = DeviceName::parse(value).unwrap_err().to_string();
        assert!(
            err.contains("--device takes a CDI name such as nvidia.com/gpu=0")
                && err.contains("--gpus"),
            "{value}: {err}"
        );
    }
    let mig = DeviceName::parse("nvidia.com/gpu=0:1").unwrap();
    assert_eq!(mig.lease_id(), "cdi:nvidia.com/gpu=0:1");
    assert_eq!(
        DeviceName::parse("vendor.com/foo-bar123.B_az=GPU-1a")
            .unwrap()
            .kind(),
        "vendor.com/foo-bar123.B_az"
    );
}

#[test]
fn unknown_devices_list_what_exists_and_where_farm_looked() {
    let host = host();
    let r = host.path();
    let err = run(r, &["nvidia.com/gpu=0"]).unwrap_err().to_string();
    assert!(err.contains("no spec of kind nvidia.com/gpu"), "{err}");
    assert!(
        err.contains("etc/cdi") && err.contains("var/run/cdi"),
        "{err}"
    );
    spec_file(r, "/etc/cdi", "nvidia.yaml", &nvidia_yaml(r));
    let err = run(r, &["nvidia.com/gpu=7"]).unwrap_err().to_string();
    assert!(
        err.contains("unknown CDI device nvidia.com/gpu=7")
            && err.contains("nvidia.com/gpu=0, nvidia.com/gpu=GPU-bbbb, nvidia.com/gpu=all"),
        "{err}"
    );
}

/// The YAML with its device "0" node replaced by `node` (YAML lines at the node's indent).
fn with_node(r: &Path, node: &str) -> String {
    nvidia_yaml(r).replacen(
        &format!(
            "    - path: /dev/nvidia0\n      hostPath: {}/dev/nvidia0\n",
            r.display()
        ),
        node,
        1,
    )
}

#[test]
fn block_devices_paths_outside_dev_and_mismatched_nodes_are_refused() {
    let host = host();
    let r = host.path();
    let d = r.display();
    for (node, expected) in [
        (
            format!("    - path: /dev/sda\n      hostPath: {d}/dev/sda\n"),
            "block device",
        ),
        (
            format!("    - path: /dev/nvidia0\n      hostPath: {d}/dev/nvidia0\n      type: b\n"),
            "block device",
        ),
        (
            format!("    - path: /etc/passwd\n      hostPath: {d}/dev/nvidia0\n"),
            "not a clean path under /dev",
        ),
        (
            format!("    - path: /dev/../etc/passwd\n      hostPath: {d}/dev/nvidia0\n"),
            "not a clean path under /dev",
        ),
        (
            format!("    - path: /dev/nvidia0\n      hostPath: {d}/dev/nvidia0\n      major: 196\n"),
            "the spec says major 196",
        ),
        (
            format!("    - path: /dev/nvidia0\n      hostPath: {d}/dev/nvidia0\n      minor: 3\n"),
            "the spec says minor 3",
        ),
        (
            format!("    - path: /dev/nvidia0\n      hostPath: {d}/{LIB}/libcuda.so.{VERSION}\n"),
            "not a character device",
        ),
        (
            format!("    - path: /dev/nvidia0\n      hostPath: {d}/dev/nvidia0\n      permissions: rwx\n"),
            "not a part of rwm",
        ),
    ] {
        spec_file(r, "/etc/cdi", "nvidia.yaml", &with_node(r, &node));
        let err = run(r, &["nvidia.com/gpu=0"]).unwrap_err().to_string();
        assert!(err.contains(expected), "{node}: {err}");
        assert!(err.contains("CDI device nvidia.com/gpu=0"), "{err}");
    }
}

#[test]
fn untrusted_or_unknown_spec_files_are_skipped_with_a_warning() {
    let host = host();
    let r = host.path();
    let good = spec_file(r, "/etc/cdi", "nvidia.yaml", &nvidia_yaml(r));
    let other = |kind: &str, version: &str| {
        nvidia_yaml(r)
            .replace("kind: nvidia.com/gpu", &format!("kind: {kind}"))
            .replace("cdiVersion: 0.5.0", &format!("cdiVersion: {version}"))
    };
    let foreign = spec_file(r, "/etc/cdi", "a-foreign.yaml", &other("a.com/x", "0.6.0"));
    std::os::unix::fs::chown(&foreign, Some(1000), Some(1000)).unwrap();
    let writable = spec_file(r, "/etc/cdi", "b-writable.yaml", &other("b.com/x", "0.7.0"));
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o666)).unwrap();
    spec_file(r, "/etc/cdi", "c-future.yaml", &other("c.com/x", "2.0.0"));
    spec_file(r, "/etc/cdi", "d-kind.yml", &other("nokind", "1.0.0"));
    std::os::unix::fs::symlink(&good, r.join("etc/cdi/e-link.json")).unwrap();
    let big = spec_file(r, "/etc/cdi", "f-big.json", "");
    fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(MAX_SPEC_BYTES + 1)
        .unwrap();
    spec_file(r, "/etc/cdi", "g-broken.yaml", "cdiVersion: [");
    spec_file(r, "/etc/cdi", "notes.txt", "not a spec");

    let registry = Registry::load(r);
    let warnings = registry.warnings.join("\n");
    for (file, why) in [
        ("a-foreign.yaml", "owned by uid 1000, not root"),
        ("b-writable.yaml", "writable by group or others"),
        ("c-future.yaml", "cdiVersion \"2.0.0\""),
        ("d-kind.yml", "is not vendor/class"),
        ("e-link.json", "symlink"),
        ("f-big.json", "over the 4 MiB limit"),
        ("g-broken.yaml", "invalid YAML"),
    ] {
        assert!(
            registry
                .warnings
                .iter()
                .any(|w| w.contains(file) && w.contains(why) && w.ends_with("skipped")),
            "{file}: {warnings}"
        );
    }
    assert_eq!(registry.warnings.len(), 7, "{warnings}");
    // The good file still counts; a device of a skipped file is unknown, with the reason.
    assert!(inject(&registry, &names(&["nvidia.com/gpu=0"]), None).is_ok());
    let err = inject(&registry, &names(&["a.com/x=0"]), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no spec of kind a.com/x") && err.contains("owned by uid 1000"),
        "{err}"
    );
    // A folder others may write is not read at all.
    fs::set_permissions(r.join("etc/cdi"), fs::Permissions::from_mode(0o777)).unwrap();
    let registry = Registry::load(r);
    assert!(registry.warnings[0].contains("writable by group or others"));
    assert!(inject(&registry, &names(&["nvidia.com/gpu=0"]), None).is_err());
}

#[test]
fn hooks_are_never_run_and_unknown_edits_are_warned_about() {
    let host = host();
    let r = host.path();
    let yaml = nvidia_yaml(r).replace(
        "  hooks:\n  - args:\n    - nvidia-cdi-hook\n    - create-symlinks",
        "  additionalGIDs: [44]\n  intelRdt:\n    closID: gold\n  netDevices:\n  - hostInterfaceName: eth1\n    name: eth1\n  hooks:\n  - args: [mystery, --wipe]\n    hookName: createContainer\n    path: /opt/vendor/mystery\n  - args: [nvidia-cdi-hook, frobnicate]\n    hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n  - args:\n    - nvidia-cdi-hook\n    - create-symlinks\n    - --link\n    - ../card1::/dev/dri/by-path/pci-card",
    );
    spec_file(r, "/etc/cdi", "nvidia.yaml", &yaml);
    let got = run(r, &["nvidia.com/gpu=0"]).unwrap();
    let warnings = got.warnings.join("\n");
    assert!(
        warnings.contains("the hook `/opt/vendor/mystery --wipe` is not run"),
        "{warnings}"
    );
    assert!(
        warnings.contains("nvidia-cdi-hook frobnicate` is not run"),
        "{warnings}"
    );
    assert!(
        warnings.contains("additionalGIDs are not applied"),
        "{warnings}"
    );
    assert!(
        warnings.contains("netDevices are not applied"),
        "{warnings}"
    );
    assert!(warnings.contains("intelRdt is not applied"), "{warnings}");
    assert!(
        warnings.contains("/dev/dri/by-path/pci-card is not made"),
        "{warnings}"
    );
    assert!(
        warnings.contains("CDI device nvidia.com/gpu=0"),
        "{warnings}"
    );
    assert_eq!(got.extras.symlinks.len(), 1, "the /dev link is not kept");
}

#[test]
fn mounts_are_read_only_binds_outside_proc_sys_and_dev() {
    let host = host();
    let r = host.path();
    let d = r.display();
    let mount = |container: &str, extra: &str| {
        nvidia_yaml(r).replacen(
            "  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15\n",
            &format!("  - containerPath: {container}\n{extra}"),
            1,
        )
    };
    spec_file(
        r,
        "/etc/cdi",
        "nvidia.yaml",
        &mount("/usr/lib/libcuda.so", "    type: bind\n"),
    );
    let got = run(r, &["nvidia.com/gpu=0"]).unwrap();
    assert_eq!(got.extras.binds[0].path, "/usr/lib/libcuda.so");
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    let rw = nvidia_yaml(r).replace("options: [ro, nosuid, nodev, bind]", "options: [rw, bind]");
    spec_file(r, "/etc/cdi", "nvidia.yaml", &rw);
    let got = run(r, &["nvidia.com/gpu=0"]).unwrap();
    assert!(
        got.warnings
            .iter()
            .any(|w| w.contains("is mounted read-only")),
        "{:?}",
        got.warnings
    );
    for (yaml, expected) in [
        (mount("/proc/sys/kernel/core_pattern", ""), "is not allowed"),
        (mount("/dev/shm/x", ""), "is not allowed"),
        (mount("/usr/../../etc/x", ""), "is not allowed"),
        (mount("/usr/lib/x", "    type: tmpfs\n"), "type \"tmpfs\""),
        (
            nvidia_yaml(r).replace(
                &format!("{d}/{LIB}/libcuda.so.{VERSION}"),
                "/nonexistent/libcuda.so",
            ),
            "mount source /nonexistent/libcuda.so",
        ),
    ] {
        spec_file(r, "/etc/cdi", "nvidia.yaml", &yaml);
        let err = run(r, &["nvidia.com/gpu=0"]).unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

#[test]
fn merging_with_the_gpus_injection_keeps_one_of_each_path() {
    let host = host();
    let r = host.path();
    spec_file(r, "/etc/cdi", "nvidia.yaml", &nvidia_yaml(r));
    let got = run(r, &["nvidia.com/gpu=0"]).unwrap();
    let mut gpus = Extras {
        devices: vec![got.extras.devices[4].clone()],
        binds: vec![got.extras.binds[0].clone()],
        symlinks: Vec::new(),
        env: vec!["NVIDIA_VISIBLE_DEVICES=void".into()],
    };
    merge(&mut gpus, got.extras.clone()).unwrap();
    assert_eq!(gpus.devices.len(), 5);
    assert_eq!(gpus.binds.len(), 2);
    assert_eq!(gpus.env.len(), 1);
    // Another node at the same path is a conflict, not a silent choice.
    let mut other = got.extras.clone();
    other.devices[4].minor = 1;
    let err = merge(&mut gpus, other).unwrap_err().to_string();
    assert!(err.contains("two device nodes at /dev/nvidia0"), "{err}");
}
