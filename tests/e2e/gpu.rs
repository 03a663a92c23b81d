//! `farm run --gpus` against a fake NVIDIA driver tree (no GPU on CI): real character
//! device nodes with NVIDIA's majors made with mknod, fake libraries with their sonames,
//! a fake nvidia-smi and firmware, pointed to by the hidden `--driver-root`. The exact
//! device nodes, device cgroup rules and mounts are read back from the container's spec.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use serde_json::{json, Value};

use crate::support::containers::{probe_image_layers, RunFarm};
use crate::support::images::LayerBuilder;

mod cdi;

const VERSION: &str = "550.54.15";
const LIB: &str = "usr/lib/x86_64-linux-gnu";
const UVM: u64 = 511;

fn write(root: &Path, path: &str, contents: &str, mode: u32) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn node(root: &Path, path: &str, major: u64, minor: u64) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix_mknod(&path, major, minor);
}

fn nix_mknod(path: &Path, major: u64, minor: u64) {
    let status = std::process::Command::new("mknod")
        .args(["-m", "666"])
        .arg(path)
        .args(["c", &major.to_string(), &minor.to_string()])
        .status()
        .expect("mknod");
    assert!(status.success(), "mknod {}", path.display());
}

/// Two GPUs (GPU-aaaa at bus 17 = /dev/nvidia0, GPU-bbbb at bus 65 = /dev/nvidia1).
fn fake_driver() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let r = dir.path();
    node(r, "dev/nvidia0", 195, 0);
    node(r, "dev/nvidia1", 195, 1);
    node(r, "dev/nvidiactl", 195, 255);
    node(r, "dev/nvidia-modeset", 195, 254);
    node(r, "dev/nvidia-uvm", UVM, 0);
    node(r, "dev/nvidia-uvm-tools", UVM, 1);
    let proc = "proc/driver/nvidia";
    write(
        r,
        &format!("{proc}/version"),
        &format!("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {VERSION}  Tue Mar  5 22:23:56 UTC 2024\n"),
        0o444,
    );
    write(
        r,
        &format!("{proc}/params"),
        "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\nDeviceFileUID: 0\n",
        0o444,
    );
    write(r, &format!("{proc}/registry"), "Binary: \"\"\n", 0o444);
    for (bus, uuid, minor) in [
        ("0000:17:00.0", "GPU-aaaa", 0),
        ("0000:65:00.0", "GPU-bbbb", 1),
    ] {
        write(
            r,
            &format!("{proc}/gpus/{bus}/information"),
            &format!("Model: \t\t NVIDIA H100\nGPU UUID: \t {uuid}\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n"),
            0o444,
        );
    }
    for (lib, soname) in [
        ("libcuda.so", "libcuda.so.1"),
        ("libnvidia-ml.so", "libnvidia-ml.so.1"),
    ] {
        write(
            r,
            &format!("{LIB}/{lib}.{VERSION}"),
            &format!("fake {lib}\n"),
            0o644,
        );
        symlink(
            format!("{lib}.{VERSION}"),
            r.join(format!("{LIB}/{soname}")),
        )
        .unwrap();
    }
    write(
        r,
        "usr/bin/nvidia-smi",
        "#!/bin/sh\necho fake nvidia-smi\n",
        0o755,
    );
    write(
        r,
        &format!("lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin"),
        "fw",
        0o644,
    );
    dir
}

fn spec_of(farm: &RunFarm, id: &str) -> Value {
    let path = farm.root().join("containers").join(id).join("config.json");
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

/// `c major:minor` of every allowed device rule beyond docker's defaults, sorted.
fn gpu_rules(spec: &Value) -> Vec<String> {
    let mut rules: Vec<String> = spec["linux"]["resources"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["allow"] == json!(true) && (r["major"] == json!(195) || r["major"] == json!(UVM))
        })
        .map(|r| format!("{}:{}", r["major"], r["minor"]))
        .collect();
    rules.sort();
    rules
}

fn mount_targets(spec: &Value, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .filter(|d| d.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

#[test]
fn gpus_all_gets_every_node_library_and_binary() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    let root = driver.path().to_str().unwrap();
    let run = farm.run_probe(
        &["--driver-root", root, "--gpus", "all"],
        &[
            "sh",
            "-c",
            "ls /dev | grep nvidia; cat /usr/lib/x86_64-linux-gnu/libcuda.so.1; /usr/bin/nvidia-smi",
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    for expected in [
        "nvidia0\n",
        "nvidia1\n",
        "nvidiactl\n",
        "nvidia-uvm\n",
        "nvidia-uvm-tools\n",
        "fake libcuda.so\n",
        "fake nvidia-smi\n",
    ] {
        assert!(run.stdout.contains(expected), "{expected:?}: {run:#?}");
    }

    // The exact lists, from the spec of a detached container.
    let id = farm.detach(
        &["--driver-root", root, "--gpus", "all"],
        &farm.probe(),
        &["sleep", "30"],
    );
    let spec = spec_of(&farm, &id);
    assert_eq!(
        gpu_rules(&spec),
        ["195:0", "195:1", "195:254", "195:255", "511:0", "511:1"],
        "{spec:#}"
    );
    assert_eq!(
        mount_targets(&spec, "/dev/nvidia"),
        [
            "/dev/nvidia-modeset",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia0",
            "/dev/nvidia1",
            "/dev/nvidiactl"
        ]
    );
    let libs = mount_targets(&spec, "/usr/lib/x86_64-linux-gnu/");
    assert!(
        libs.contains(&format!("/usr/lib/x86_64-linux-gnu/libcuda.so.{VERSION}")),
        "{libs:?}"
    );
    for mount in spec["mounts"].as_array().unwrap() {
        if mount["source"]
            .as_str()
            .is_some_and(|s| s.starts_with(root) && !s.contains("/dev/"))
        {
            assert!(
                mount["options"].as_array().unwrap().contains(&json!("ro")),
                "driver files are read-only: {mount}"
            );
        }
    }
    assert_eq!(farm.inspect(&id)["Gpus"], json!(["GPU-aaaa", "GPU-bbbb"]));
    farm.run(&["rm", "-f", &id]).assert_ok();
}

#[test]
fn gpus_are_given_to_one_container_at_a_time() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    let root = driver.path().to_str().unwrap();
    let first = farm.detach(
        &["--driver-root", root, "--gpus", "1"],
        &farm.probe(),
        &["sleep", "30"],
    );
    let second = farm.detach(
        &["--driver-root", root, "--gpus", "1"],
        &farm.probe(),
        &["sleep", "30"],
    );
    assert_eq!(farm.inspect(&first)["Gpus"], json!(["GPU-aaaa"]));
    assert_eq!(
        farm.inspect(&second)["Gpus"],
        json!(["GPU-bbbb"]),
        "--gpus 1 picks a free one"
    );
    assert_eq!(
        gpu_rules(&spec_of(&farm, &second))
            .iter()
            .filter(|r| r.starts_with("195:") && !r.ends_with(":254") && !r.ends_with(":255"))
            .collect::<Vec<_>>(),
        ["195:1"]
    );
    let third = farm.run_probe(&["--driver-root", root, "--gpus", "1"], &["true"]);
    assert_eq!(third.code, 125, "no free GPU: {third:#?}");
    let taken = farm.run_probe(
        &["--driver-root", root, "--gpus", "device=GPU-aaaa"],
        &["true"],
    );
    assert_eq!(
        taken.code, 125,
        "a leased GPU is not given again: {taken:#?}"
    );
    assert!(taken.stderr.contains("leased"), "{taken:#?}");
    farm.run(&["rm", "-f", &first]).assert_ok();
    let again = farm.run_probe(
        &["--driver-root", root, "--gpus", "device=GPU-aaaa"],
        &["sh", "-c", "ls /dev | grep nvidia[0-9]"],
    );
    assert_eq!(again.code, 0, "freed by rm: {again:#?}");
    assert_eq!(
        again.stdout.trim(),
        "nvidia0",
        "only the chosen GPU's node: {again:#?}"
    );
    farm.run(&["rm", "-f", &second]).assert_ok();
}

#[test]
fn gpu_seconds_are_metered_and_requirements_checked() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    let root = driver.path().to_str().unwrap();
    let run = farm.run_probe(
        &["--name", "job", "--driver-root", root, "--gpus", "all"],
        &["sleep", "0.3"],
    );
    run.assert_ok();
    let gpus = farm.inspect("job")["Usage"]["Gpus"].clone();
    let gpus = gpus.as_array().expect("Usage.Gpus");
    assert_eq!(gpus.len(), 2, "{gpus:?}");
    for gpu in gpus {
        assert!(gpu["Seconds"].as_f64().unwrap() >= 0.3, "{gpu}");
    }
    let refused = farm.run_probe(
        &[
            "--driver-root",
            root,
            "--gpus",
            "all",
            "-e",
            "NVIDIA_REQUIRE_CUDA=cuda>=99.0",
        ],
        &["true"],
    );
    assert_eq!(refused.code, 125, "{refused:#?}");
    assert!(refused.stderr.contains("cuda>=99.0"), "{refused:#?}");
    // No --gpus, no NVIDIA_VISIBLE_DEVICES: nothing of the driver.
    let plain = farm.run_probe(
        &["--driver-root", root],
        &[
            "sh",
            "-c",
            "ls /dev; ls /usr/lib/x86_64-linux-gnu 2>&1; true",
        ],
    );
    assert_eq!(plain.code, 0, "{plain:#?}");
    assert!(!plain.stdout.contains("nvidia"), "{plain:#?}");
}

/// A farm whose image `hostile-lib` has its library folder as a link that climbs out of the
/// root, and the folder the link points to.
pub(super) fn hostile_lib_farm() -> Option<(RunFarm, tempfile::TempDir)> {
    let outside = tempfile::tempdir().unwrap();
    let climb = format!("../../../../../../../..{}", outside.path().display());
    let farm = RunFarm::with_images(&[(
        "hostile-lib",
        probe_image_layers(
            vec![LayerBuilder::new()
                .dir("usr", 0o755, 0, 0)
                .dir("usr/lib", 0o755, 0, 0)
                .symlink("usr/lib/x86_64-linux-gnu", &climb)],
            json!({}),
        ),
    )])?;
    Some((farm, outside))
}

/// With `options`, the hostile image reads the injected libcuda and nothing was made
/// through its link.
pub(super) fn assert_libraries_stay_inside(
    farm: &RunFarm,
    outside: &tempfile::TempDir,
    options: &[&str],
) {
    let run = farm.run_container(
        options,
        &farm.image("hostile-lib"),
        &["cat", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout, "fake libcuda.so\n", "{run:#?}");
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "no bind target or symlink made through the image's link"
    );
}

#[test]
fn driver_libraries_never_land_outside_a_hostile_rootfs() {
    let Some((farm, outside)) = hostile_lib_farm() else {
        return;
    };
    let driver = fake_driver();
    let root = driver.path().to_str().unwrap();
    assert_libraries_stay_inside(&farm, &outside, &["--driver-root", root, "--gpus", "all"]);
}

#[test]
fn an_image_asking_for_gpus_runs_on_the_cpu_where_there_is_no_driver() {
    let Some(farm) = RunFarm::with_images(&[(
        "cuda-like",
        crate::support::containers::probe_image_with(json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NVIDIA_VISIBLE_DEVICES=all"]
        })),
    )]) else {
        return;
    };
    let empty = tempfile::tempdir().unwrap();
    let none = empty.path().to_str().unwrap();
    let image = farm.image("cuda-like");
    // The image's own NVIDIA_VISIBLE_DEVICES without a driver: ignored, as docker without
    // the NVIDIA runtime does.
    let run = farm.run_container(&["--driver-root", none], &image, &["sh", "-c", "ls /dev"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(!run.stdout.contains("nvidia"), "{run:#?}");
    // Asked for by the caller, a missing driver is an error that says so.
    let run = farm.run_container(&["--driver-root", none, "--gpus", "all"], &image, &["true"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(run.stderr.contains("no NVIDIA driver"), "{run:#?}");
    // With a driver, the image's variable is honoured as the toolkit does.
    let driver = fake_driver();
    let run = farm.run_container(
        &["--driver-root", driver.path().to_str().unwrap()],
        &image,
        &["sh", "-c", "ls /dev | grep -c 'nvidia[0-9]'"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout.trim(), "2", "{run:#?}");
}

/// A farm with the image `with-ldconfig`: the probe image with `recorder` as its
/// /sbin/ldconfig, and image config `config`.
pub(super) fn with_ldconfig_image(recorder: &[u8], config: Value) -> Option<RunFarm> {
    RunFarm::with_images(&[(
        "with-ldconfig",
        probe_image_layers(
            vec![LayerBuilder::new().dir("sbin", 0o755, 0, 0).file(
                "sbin/ldconfig",
                0o755,
                0,
                0,
                recorder,
            )],
            config,
        ),
    )])
}

#[test]
fn ldconfig_runs_inside_the_container_with_an_empty_environment() {
    // A stand-in for the image's ldconfig that records how it was run.
    let recorder = b"#!/bin/sh\necho \"args=$*\" > /tmp/ldconfig.out\necho \"uid=$(cat /proc/self/status | grep ^Uid)\" >> /tmp/ldconfig.out\nenv >> /tmp/ldconfig.out\n";
    let Some(farm) = with_ldconfig_image(recorder, json!({})) else {
        return;
    };
    let driver = fake_driver();
    let run = farm.run_container(
        &[
            "--driver-root",
            driver.path().to_str().unwrap(),
            "--gpus",
            "all",
            "-e",
            "SECRET=from-caller",
        ],
        &farm.image("with-ldconfig"),
        &["cat", "/tmp/ldconfig.out"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains("args=") && run.stdout.contains("/usr/lib/x86_64-linux-gnu"),
        "ldconfig got the injected library folders: {run:#?}"
    );
    assert!(
        !run.stdout.contains("SECRET") && !run.stdout.contains("HOSTNAME="),
        "ldconfig ran with an empty environment: {run:#?}"
    );
    // It ran in the container (its /tmp is the container's), as the container's root,
    // which the host sees as an unprivileged uid.
    assert!(run.stdout.contains("Uid:\t0"), "{run:#?}");
}

#[test]
fn proc_driver_nvidia_shows_only_the_given_gpus_read_only() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    let root = driver.path().to_str().unwrap();
    let script = "cd /proc/driver/nvidia && ls gpus && cat params version registry \
        && cat gpus/*/information && (echo x > params) 2>/dev/null || echo read-only; \
        grep -c ' /proc/driver' /proc/self/mountinfo";
    let run = farm.run_probe(
        &["--driver-root", root, "--gpus", "device=GPU-bbbb"],
        &["sh", "-c", script],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0], "0000:65:00.0",
        "only the given GPU's folder: {run:#?}"
    );
    assert!(
        run.stdout.contains("ModifyDeviceFiles: 0\n")
            && !run.stdout.contains("ModifyDeviceFiles: 1"),
        "params without device file creation: {run:#?}"
    );
    assert!(run.stdout.contains("NVRM version"), "{run:#?}");
    assert!(run.stdout.contains("GPU UUID: \t GPU-bbbb"), "{run:#?}");
    assert!(!run.stdout.contains("GPU-aaaa"), "{run:#?}");
    assert!(run.stdout.contains("read-only\n"), "{run:#?}");
    // The tmpfs, version, registry and the one GPU folder.
    assert_eq!(lines.last(), Some(&"4"), "{run:#?}");

    // Without --gpus the container's /proc is untouched.
    let plain = farm.run_probe(
        &["--driver-root", root],
        &[
            "sh",
            "-c",
            "grep -c ' /proc/driver' /proc/self/mountinfo || true",
        ],
    );
    assert_eq!(plain.code, 0, "{plain:#?}");
    assert_eq!(plain.stdout.trim(), "0", "{plain:#?}");
}

/// WSL2's layout: `/dev/dxg` and the Windows driver's `/usr/lib/wsl/lib` and driver store,
/// no /dev/nvidia* and no /proc/driver/nvidia.
fn fake_wsl_driver() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let r = dir.path();
    node(r, "dev/dxg", 10, 125);
    for name in ["libcuda.so.1.1", "libdxcore.so", "libnvidia-ml.so.1"] {
        write(
            r,
            &format!("usr/lib/wsl/lib/{name}"),
            &format!("wsl {name}\n"),
            0o644,
        );
    }
    symlink("libcuda.so.1.1", r.join("usr/lib/wsl/lib/libcuda.so.1")).unwrap();
    write(
        r,
        "usr/lib/wsl/lib/nvidia-smi",
        "#!/bin/sh\necho wsl nvidia-smi\n",
        0o755,
    );
    write(
        r,
        "usr/lib/wsl/drivers/nv_dispi.inf_amd64_1234/nvcubins.bin",
        "bins",
        0o644,
    );
    write(
        r,
        "usr/lib/wsl/drivers/iigd_dch.inf_amd64_5678/igd.bin",
        "intel",
        0o644,
    );
    dir
}

#[test]
fn wsl2_gets_dxg_and_the_wsl_driver_files_only() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_wsl_driver();
    let root = driver.path().to_str().unwrap();
    let run = farm.run_probe(
        &["--driver-root", root, "--gpus", "all"],
        &[
            "sh",
            "-c",
            "ls /dev | grep -E 'dxg|nvidia'; cat /usr/lib/wsl/lib/libcuda.so.1 /usr/lib/wsl/drivers/nv_dispi.inf_amd64_1234/nvcubins.bin; echo; ls /usr/lib/wsl/drivers; /usr/lib/wsl/lib/nvidia-smi; grep -c ' /proc/driver' /proc/self/mountinfo",
        ],
    );
    assert_eq!(
        run.stdout, "dxg\nwsl libcuda.so.1.1\nbins\nnv_dispi.inf_amd64_1234\nwsl nvidia-smi\n0\n",
        "{run:#?}"
    );

    let id = farm.detach(
        &["--driver-root", root, "--gpus", "all"],
        &farm.probe(),
        &["sleep", "30"],
    );
    let spec = spec_of(&farm, &id);
    let added: Vec<String> = spec["linux"]["resources"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["allow"] == json!(true) && r["major"] == json!(10))
        .map(|r| format!("{}:{}", r["major"], r["minor"]))
        .collect();
    assert_eq!(added, ["10:125"], "{spec:#}");
    let libs = mount_targets(&spec, "/usr/lib/wsl/");
    assert!(
        libs.contains(&"/usr/lib/wsl/lib/libcuda.so.1.1".to_owned())
            && libs.contains(&"/usr/lib/wsl/drivers/nv_dispi.inf_amd64_1234".to_owned())
            && !libs.iter().any(|l| l.contains("iigd")),
        "{libs:?}"
    );
    farm.run(&["rm", "-f", &id]).assert_ok();

    // One GPU by index cannot be picked on WSL2: /dev/dxg is all of them.
    let run = farm.run_probe(&["--driver-root", root, "--gpus", "device=1"], &["true"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(run.stderr.contains("use --gpus all"), "{run:#?}");
}

#[test]
fn a_mig_device_gets_its_caps_and_only_its_proc_access_files() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    let r = driver.path();
    // GPU 0 (/dev/nvidia0) in MIG mode: GPU instance 1, compute instance 0.
    node(r, "dev/nvidia-caps/nvidia-cap1", 237, 1);
    node(r, "dev/nvidia-caps/nvidia-cap21", 237, 21);
    node(r, "dev/nvidia-caps/nvidia-cap22", 237, 22);
    let caps = "proc/driver/nvidia/capabilities/gpu0/mig/gi1";
    write(
        r,
        &format!("{caps}/access"),
        "DeviceFileMinor: 21\nDeviceFileMode: 292\n",
        0o444,
    );
    write(
        r,
        &format!("{caps}/ci0/access"),
        "DeviceFileMinor: 22\nDeviceFileMode: 292\n",
        0o444,
    );
    let run = farm.run_probe(
        &[
            "--driver-root",
            r.to_str().unwrap(),
            "--gpus",
            "device=0:0",
        ],
        &[
            "sh",
            "-c",
            "ls /dev/nvidia-caps; ls /proc/driver/nvidia/gpus; cd /proc/driver/nvidia/capabilities/gpu0/mig/gi1 && cat access ci0/access",
        ],
    );
    assert_eq!(
        run.stdout,
        "nvidia-cap21\nnvidia-cap22\n0000:17:00.0\nDeviceFileMinor: 21\nDeviceFileMode: 292\nDeviceFileMinor: 22\nDeviceFileMode: 292\n",
        "{run:#?}"
    );
}

/// A job's user (not root) reaches its GPU node through the device cgroup: the open gets
/// to the (absent) driver, ENXIO, not EPERM or EACCES; the other GPU's node does not exist.
#[test]
fn a_non_root_job_reaches_only_its_gpu_node() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    let run = farm.run_probe(
        &[
            "--driver-root",
            driver.path().to_str().unwrap(),
            "--gpus",
            "device=0",
            "-u",
            "1000:1000",
        ],
        &[
            "sh",
            "-c",
            "cat /dev/nvidia0 2>&1; cat /dev/nvidiactl 2>&1; cat /dev/nvidia1 2>&1; true",
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:#?}");
    assert!(lines[0].contains("No such device or address"), "{run:#?}");
    assert!(lines[1].contains("No such device or address"), "{run:#?}");
    assert!(lines[2].contains("No such file or directory"), "{run:#?}");
}
