//! What a container gets from the host beyond its image and flags: device nodes,
//! read-only binds of host files and folders, symlinks next to them, environment. The GPU
//! module fills an [`Extras`]; this module only knows how to put one into a spec safely:
//! every target in the rootfs is made through [`Root`] (openat2 RESOLVE_IN_ROOT), never
//! through a path string on the host.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder, MountBuilder, Spec,
};

use super::root::{clean, is_under, Root};
use super::SpecError;
use crate::sandbox::userns::IdRange;

/// Host things added to one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    pub devices: Vec<ExtraDevice>,
    pub binds: Vec<ExtraBind>,
    pub symlinks: Vec<ExtraSymlink>,
    /// `KEY=VALUE` added to the process environment (replacing the same key).
    pub env: Vec<String>,
}

/// A character device: bind-mounted from `host` at `path` (under /dev) and allowed in the
/// device cgroup (`c major:minor ACCESS`), and nothing else of the host's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDevice {
    pub host: PathBuf,
    pub path: String,
    pub major: i64,
    pub minor: i64,
    /// The cgroup access: `rwm`, or a part of it (a CDI spec's `permissions`).
    pub access: String,
}

/// A read-only bind of a host file or folder at `path` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraBind {
    pub host: PathBuf,
    pub path: String,
    pub dir: bool,
}

/// A symlink `path -> target` made in the container's own layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraSymlink {
    pub path: String,
    pub target: String,
}

impl Extras {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.binds.is_empty()
            && self.symlinks.is_empty()
            && self.env.is_empty()
    }
}

fn invalid(what: String) -> SpecError {
    SpecError::Invalid(what)
}

/// Add `extras` to `spec`, making their targets inside `rootfs` (owned by the container's
/// root, `ids`).
pub fn apply(
    spec: &mut Spec,
    extras: &Extras,
    rootfs: &Path,
    ids: &IdRange,
) -> Result<(), SpecError> {
    if extras.is_empty() {
        return Ok(());
    }
    let root = Root::open(rootfs, ids.uid, ids.gid).map_err(|e| {
        invalid(format!(
            "opening the root filesystem {}: {e}",
            rootfs.display()
        ))
    })?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for device in &extras.devices {
        let path = clean(&device.path)
            .filter(|p| is_under(p, "/dev") && p != "/dev")
            .ok_or_else(|| invalid(format!("device path {:?} is not under /dev", device.path)))?;
        if device.access.is_empty() || !device.access.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid(format!(
                "device {path}: access {:?} is not a part of rwm",
                device.access
            )));
        }
        // /dev is libcontainer's own tmpfs: it makes the target there, not in the image.
        mounts.push(
            MountBuilder::default()
                .destination(&path)
                .typ("bind")
                .source(&device.host)
                .options(vec!["bind".into(), "nosuid".into(), "noexec".into()])
                .build()
                .map_err(|e| invalid(format!("device mount {path}: {e}")))?,
        );
    }
    for link in &extras.symlinks {
        let path = clean(&link.path)
            .filter(|p| p != "/" && !is_under(p, "/proc") && !is_under(p, "/sys"))
            .ok_or_else(|| invalid(format!("symlink path {:?} is not allowed", link.path)))?;
        root.make_symlink(&path, &link.target)
            .map_err(|e| invalid(format!("making the symlink {path} in the image: {e}")))?;
    }
    for bind in &extras.binds {
        let path = clean(&bind.path)
            .filter(|p| {
                p != "/" && !is_under(p, "/proc") && !is_under(p, "/sys") && !is_under(p, "/dev")
            })
            .ok_or_else(|| invalid(format!("bind target {:?} is not allowed", bind.path)))?;
        let inside = if bind.dir {
            let fd = root
                .make_dirs(&path)
                .map_err(|e| invalid(format!("making {path} in the image: {e}")))?;
            root.path_of(std::os::fd::AsFd::as_fd(&fd))
                .map_err(|e| invalid(format!("resolving {path} in the image: {e}")))?
        } else {
            root.make_file_replacing(&path)
                .map_err(|e| invalid(format!("making {path} in the image: {e}")))?
        };
        // The image's symlinks may lead a target there; libcontainer would bind it.
        if ["/proc", "/sys", "/dev"]
            .iter()
            .any(|d| is_under(&inside, d))
        {
            return Err(invalid(format!(
                "{path} resolves to {inside} in the image, inside a kernel filesystem: fix the image"
            )));
        }
        mounts.push(
            MountBuilder::default()
                .destination(&inside)
                .typ("bind")
                .source(&bind.host)
                // `ro` makes only the top mount read-only: `rro` also the host's mounts
                // below a bound folder (as `-v …:ro`).
                .options(vec![
                    "rbind".into(),
                    "ro".into(),
                    "rro".into(),
                    "nosuid".into(),
                    "nodev".into(),
                ])
                .build()
                .map_err(|e| invalid(format!("bind mount {inside}: {e}")))?,
        );
    }
    spec.set_mounts(Some(mounts));

    if !extras.devices.is_empty() {
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut resources = linux.resources().clone().unwrap_or_else(|| {
            LinuxResourcesBuilder::default()
                .build()
                .expect("empty resources build")
        });
        let mut rules = resources.devices().clone().unwrap_or_default();
        for device in &extras.devices {
            rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::C)
                    .major(device.major)
                    .minor(device.minor)
                    .access(device.access.clone())
                    .build()
                    .map_err(|e| invalid(format!("device rule {}: {e}", device.path)))?,
            );
        }
        resources.set_devices(Some(rules));
        linux.set_resources(Some(resources));
        spec.set_linux(Some(linux));
    }

    if !extras.env.is_empty() {
        let mut process = spec.process().clone().unwrap_or_default();
        let mut env = process.env().clone().unwrap_or_default();
        for entry in &extras.env {
            super::process::set(&mut env, entry, "the GPU injection")?;
        }
        process.set_env(Some(env));
        spec.set_process(Some(process));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> IdRange {
        IdRange {
            uid: 0,
            gid: 0,
            size: 65_536,
        }
    }

    fn extras(host: &Path) -> Extras {
        Extras {
            devices: vec![ExtraDevice {
                host: host.join("dev/nvidia0"),
                path: "/dev/nvidia0".into(),
                major: 195,
                minor: 0,
                access: "rwm".into(),
            }],
            binds: vec![ExtraBind {
                host: host.join("libcuda.so.550.54.15"),
                path: "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15".into(),
                dir: false,
            }],
            symlinks: vec![ExtraSymlink {
                path: "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into(),
                target: "libcuda.so.550.54.15".into(),
            }],
            env: vec!["NVIDIA_VISIBLE_DEVICES=GPU-1".into()],
        }
    }

    #[test]
    fn targets_resolve_inside_a_hostile_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(rootfs.join("usr")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // The library folder is a link that climbs out of the root.
        std::os::unix::fs::symlink(
            "../../../../../../../../../..".to_owned() + outside.to_str().unwrap(),
            rootfs.join("usr/lib"),
        )
        .unwrap();
        let mut spec = Spec::default();
        apply(&mut spec, &extras(tmp.path()), &rootfs, &ids()).unwrap();
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing made outside the root"
        );
        let mounts = spec.mounts().clone().unwrap();
        let lib = mounts
            .iter()
            .find(|m| {
                m.source().as_deref() == Some(tmp.path().join("libcuda.so.550.54.15").as_path())
            })
            .unwrap();
        let inside = lib.destination().to_str().unwrap().to_owned();
        assert!(
            inside.ends_with("/x86_64-linux-gnu/libcuda.so.550.54.15"),
            "{inside}"
        );
        assert!(
            rootfs.join(inside.trim_start_matches('/')).is_file(),
            "{inside}"
        );
        for option in ["ro", "rro"] {
            assert!(lib
                .options()
                .as_ref()
                .unwrap()
                .contains(&option.to_string()));
        }
        let link = std::fs::read_link(
            rootfs
                .join(inside.trim_start_matches('/'))
                .with_file_name("libcuda.so.1"),
        )
        .unwrap();
        assert_eq!(link, Path::new("libcuda.so.550.54.15"));
        let rules = spec
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(rules
            .iter()
            .any(|r| r.allow() && r.major() == Some(195) && r.minor() == Some(0)));
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=GPU-1".to_owned()));
    }

    #[test]
    fn bind_targets_resolving_into_a_kernel_filesystem_are_refused() {
        // The image's library folder leads into /proc, /sys or /dev: the string checks pass
        // (/usr/lib/…), the target resolved inside the root would be under a kernel
        // filesystem (libcontainer binds there, or fails to prepare the rootfs).
        for (link, dir) in [
            ("/proc/driver", false),
            ("/dev", false),
            ("/sys/kernel", true),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let rootfs = tmp.path().join("rootfs");
            std::fs::create_dir_all(rootfs.join("usr")).unwrap();
            std::os::unix::fs::symlink(link, rootfs.join("usr/lib")).unwrap();
            let mut extras = extras(tmp.path());
            extras.binds[0].dir = dir;
            let err = apply(&mut Spec::default(), &extras, &rootfs, &ids()).unwrap_err();
            assert!(
                err.to_string().contains("inside a kernel filesystem"),
                "{link}: {err}"
            );
        }
    }

    #[test]
    fn device_paths_stay_under_dev() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bad = extras(tmp.path());
        bad.devices[0].path = "/etc/../dev/../etc/passwd".into();
        let mut spec = Spec::default();
        assert!(apply(&mut spec, &bad, tmp.path(), &ids()).is_err());
        let mut bad = extras(tmp.path());
        bad.binds[0].path = "/proc/sys/kernel/core_pattern".into();
        assert!(apply(&mut spec, &bad, tmp.path(), &ids()).is_err());
    }
}
