//! `farm run --device vendor/class=name` (CDI) against the fake driver tree of
//! [`super::fake_driver`], with `<tree>/etc/cdi/nvidia.yaml` shaped like
//! `nvidia-ctk cdi generate`'s output and its hostPaths pointing into the tree.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use super::{fake_driver, gpu_rules, mount_targets, spec_of, LIB, VERSION};
use crate::support::containers::RunFarm;

/// nvidia-ctk's spec for the tree: the control nodes, the libraries and the hooks at the
/// spec level, one GPU per device ("0", "GPU-aaaa", "1", "all"); plus a hook farm does
/// not know.
fn write_spec(tree: &Path) {
    let r = tree.display();
    let node = |name: &str| format!("  - path: /dev/{name}\n    hostPath: {r}/dev/{name}\n");
    let device = |name: &str, nodes: &[&str]| {
        let mut text = format!("- name: \"{name}\"\n  containerEdits:\n    deviceNodes:\n");
        for n in nodes {
            text.push_str(&format!(
                "    - path: /dev/{n}\n      hostPath: {r}/dev/{n}\n"
            ));
        }
        text
    };
    let mut yaml = String::from("---\ncdiVersion: 0.5.0\nkind: nvidia.com/gpu\ncontainerEdits:\n");
    yaml.push_str("  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  deviceNodes:\n");
    for name in [
        "nvidiactl",
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidia-modeset",
    ] {
        yaml.push_str(&node(name));
    }
    yaml.push_str(&format!(
        "  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, create-symlinks, --link, libcuda.so.{VERSION}::/{LIB}/libcuda.so.1, --link, libcuda.so.1::/{LIB}/libcuda.so]
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, update-ldcache, --folder, /{LIB}, --folder, /{LIB}/vdpau]
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, enable-cuda-compat, --host-driver-version={VERSION}]
  - hookName: createContainer
    path: /usr/local/bin/vendor-reset
    args: [vendor-reset, --all]
  mounts:
"
    ));
    for lib in ["libcuda.so", "libnvidia-ml.so"] {
        yaml.push_str(&format!(
            "  - containerPath: /{LIB}/{lib}.{VERSION}\n    hostPath: {r}/{LIB}/{lib}.{VERSION}\n    options: [ro, nosuid, nodev, bind]\n"
        ));
    }
    yaml.push_str("devices:\n");
    yaml.push_str(&device("0", &["nvidia0"]));
    yaml.push_str(&device("GPU-aaaa", &["nvidia0"]));
    yaml.push_str(&device("1", &["nvidia1"]));
    yaml.push_str(&device("all", &["nvidia0", "nvidia1"]));
    let path = tree.join("etc/cdi/nvidia.yaml");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, yaml).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn cdi_device_gets_exactly_its_nodes_rules_read_only_libraries_and_links() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    write_spec(driver.path());
    let root = driver.path().to_str().unwrap();
    let options = ["--driver-root", root, "--device", "nvidia.com/gpu=0"];
    let run = farm.run_probe(
        &options,
        &[
            "sh",
            "-c",
            "ls /dev | grep nvidia; cat /usr/lib/x86_64-linux-gnu/libcuda.so.1; readlink /usr/lib/x86_64-linux-gnu/libcuda.so; echo visible=$NVIDIA_VISIBLE_DEVICES; ls /proc/driver/nvidia/gpus; grep ModifyDeviceFiles /proc/driver/nvidia/params",
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    // /proc/driver/nvidia shows the CDI device's GPU only, as for --gpus.
    assert_eq!(
        run.stdout,
        "nvidia-modeset\nnvidia-uvm\nnvidia-uvm-tools\nnvidia0\nnvidiactl\nfake libcuda.so\nlibcuda.so.1\nvisible=void\n0000:17:00.0\nModifyDeviceFiles: 0\n",
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("the hook `/usr/local/bin/vendor-reset --all` is not run"),
        "an unknown hook is named, never run: {run:#?}"
    );

    let id = farm.detach(&options, &farm.probe(), &["sleep", "30"]);
    let spec = spec_of(&farm, &id);
    assert_eq!(
        gpu_rules(&spec),
        ["195:0", "195:254", "195:255", "511:0", "511:1"],
        "{spec:#}"
    );
    assert_eq!(
        mount_targets(&spec, "/dev/nvidia"),
        [
            "/dev/nvidia-modeset",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia0",
            "/dev/nvidiactl"
        ]
    );
    let libs: Vec<_> = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["source"]
                .as_str()
                .is_some_and(|s| s.contains("/usr/lib/"))
        })
        .collect();
    assert_eq!(libs.len(), 2, "{spec:#}");
    for lib in libs {
        let options = lib["options"].as_array().unwrap();
        for option in ["ro", "nosuid", "nodev"] {
            assert!(options.contains(&json!(option)), "{lib}");
        }
    }
    assert_eq!(
        farm.inspect(&id)["Gpus"],
        json!(["cdi:nvidia.com/gpu=0", "GPU-aaaa"])
    );

    // The GPU is leased: not by index, by CDI name or by UUID, unless both share.
    for taken in [
        vec!["--gpus", "device=0"],
        vec!["--device", "nvidia.com/gpu=0"],
        vec!["--device", "nvidia.com/gpu=GPU-aaaa"],
        vec!["--device", "nvidia.com/gpu=all"],
    ] {
        let mut args = vec!["--driver-root", root];
        args.extend(taken.iter().copied());
        let run = farm.run_probe(&args, &["true"]);
        assert_eq!(run.code, 125, "{taken:?}: {run:#?}");
        assert!(
            run.stderr.contains("is leased to running container"),
            "{taken:?}: {run:#?}"
        );
    }
    // --gpus 1 takes the other GPU; so does the other CDI device.
    let other = farm.run_probe(
        &["--driver-root", root, "--gpus", "1"],
        &["sh", "-c", "ls /dev | grep 'nvidia[0-9]'"],
    );
    assert_eq!(other.code, 0, "{other:#?}");
    assert_eq!(other.stdout, "nvidia1\n", "{other:#?}");
    let other = farm.run_probe(
        &["--driver-root", root, "--device", "nvidia.com/gpu=1"],
        &["sh", "-c", "ls /dev | grep 'nvidia[0-9]'"],
    );
    assert_eq!(other.code, 0, "{other:#?}");
    assert_eq!(other.stdout, "nvidia1\n", "{other:#?}");
    farm.run(&["rm", "-f", &id]).assert_ok();

    // Two sharing containers may hold it together.
    let shared = [
        "--driver-root",
        root,
        "--gpu-share",
        "--device",
        "nvidia.com/gpu=0",
    ];
    let first = farm.detach(&shared, &farm.probe(), &["sleep", "30"]);
    let second = farm.run_probe(&shared, &["true"]);
    assert_eq!(second.code, 0, "{second:#?}");
    farm.run(&["rm", "-f", &first]).assert_ok();
}

#[test]
fn cdi_devices_run_the_images_ldconfig_and_ignore_its_nvidia_visible_devices() {
    let recorder = b"#!/bin/sh\necho \"args=$*\" > /tmp/ldconfig.out\n";
    let Some(farm) = super::with_ldconfig_image(
        recorder,
        // As CUDA images: alone, this asks for every GPU (see the gpu tests).
        json!({"Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "NVIDIA_VISIBLE_DEVICES=all"
        ]}),
    ) else {
        return;
    };
    let driver = fake_driver();
    write_spec(driver.path());
    let run = farm.run_container(
        &[
            "--driver-root",
            driver.path().to_str().unwrap(),
            "--device",
            "nvidia.com/gpu=1",
        ],
        &farm.image("with-ldconfig"),
        &[
            "sh",
            "-c",
            "cat /tmp/ldconfig.out; ls /dev | grep 'nvidia[0-9]'",
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        run.stdout, "args=/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/vdpau\nnvidia1\n",
        "the spec's update-ldcache folders for the image's own ldconfig, and only the \
         device's GPU (the image's NVIDIA_VISIBLE_DEVICES=all is not honoured next to \
         --device): {run:#?}"
    );
}

#[test]
fn device_values_that_are_not_known_cdi_names_fail_clearly() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    let root = driver.path().to_str().unwrap();
    for value in ["foo", "/dev/nvidia0", "nvidia.com/gpu"] {
        let run = farm.run_probe(&["--driver-root", root, "--device", value], &["true"]);
        assert_eq!(run.code, 125, "{run:#?}");
        assert!(
            run.stderr.contains(
                "--device takes a CDI name such as nvidia.com/gpu=0; for GPUs by index use --gpus"
            ),
            "{run:#?}"
        );
    }
    let run = farm.run_probe(
        &["--driver-root", root, "--device", "nvidia.com/gpu=0"],
        &["true"],
    );
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        run.stderr
            .contains("no spec of kind nvidia.com/gpu was found"),
        "{run:#?}"
    );
    write_spec(driver.path());
    let run = farm.run_probe(
        &["--driver-root", root, "--device", "nvidia.com/gpu=7"],
        &["true"],
    );
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        run.stderr.contains(
            "define nvidia.com/gpu=0, nvidia.com/gpu=1, nvidia.com/gpu=GPU-aaaa, nvidia.com/gpu=all"
        ),
        "{run:#?}"
    );
    assert!(
        farm.container_ids().is_empty(),
        "a refused run leaves no container"
    );
}

#[test]
fn cdi_libraries_never_land_outside_a_hostile_rootfs() {
    let Some((farm, outside)) = super::hostile_lib_farm() else {
        return;
    };
    let driver = fake_driver();
    write_spec(driver.path());
    let root = driver.path().to_str().unwrap();
    super::assert_libraries_stay_inside(
        &farm,
        &outside,
        &["--driver-root", root, "--device", "nvidia.com/gpu=0"],
    );
}

/// A host mount below a folder that a spec mounts, unmounted when the test ends.
struct Submount(std::path::PathBuf);

impl Drop for Submount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn cdi_folder_mounts_are_read_only_all_the_way_down() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let driver = fake_driver();
    write_spec(driver.path());
    // A folder mount whose host folder holds a mount anyone may write (a tmpfs, 1777).
    let folder = driver.path().join("usr/share/nvidia");
    let scratch = folder.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=1777,size=1m", "tmpfs"])
        .arg(&scratch)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs at {}", scratch.display());
    let _submount = Submount(scratch.clone());
    let spec = driver.path().join("etc/cdi/nvidia.yaml");
    let yaml = fs::read_to_string(&spec).unwrap().replace(
        "  mounts:\n",
        &format!(
            "  mounts:\n  - containerPath: /usr/share/nvidia\n    hostPath: {}\n    options: [ro, nosuid, nodev, bind]\n",
            folder.display()
        ),
    );
    fs::write(&spec, yaml).unwrap();
    let run = farm.run_probe(
        &[
            "--driver-root",
            driver.path().to_str().unwrap(),
            "--device",
            "nvidia.com/gpu=0",
        ],
        &[
            "sh",
            "-c",
            "echo x > /usr/share/nvidia/scratch/written && echo written; touch /usr/share/nvidia/top || true",
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        !scratch.join("written").exists() && !run.stdout.contains("written"),
        "a mount below the spec's folder is read-only in the container too: {run:#?}"
    );
    assert!(!folder.join("top").exists(), "{run:#?}");
}
