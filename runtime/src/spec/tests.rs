//! Whole-spec tests: a temp rootfs, a hand-made image config, the built spec.

use std::os::unix::fs::{symlink, MetadataExt};

use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

use super::*;
use crate::options::{Resources, SecurityOptions};

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: u32 = 200_000;

struct Fixture {
    dir: tempfile::TempDir,
    ctx: SpecContext,
}

impl Fixture {
    fn new(setup: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nusers:x:100:alice\n").unwrap();
        setup(&rootfs);
        std::fs::write(dir.path().join("host-hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(
            dir.path().join("host-resolv.conf"),
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\n",
        )
        .unwrap();
        let ctx = SpecContext {
            id: ID.to_owned(),
            rootfs,
            ids: IdRange {
                uid: UID,
                gid: UID + 1,
                size: 65_536,
            },
            files_dir: dir.path().join("files"),
            cgroups_path: PathBuf::from(format!("/farm/{ID}")),
        };
        Fixture { dir, ctx }
    }

    fn build(&self, image: &ImageConfiguration, options: &RunOptions) -> Result<Spec, SpecError> {
        let hosts = self.dir.path().join("host-hosts");
        let resolv_conf = self.dir.path().join("host-resolv.conf");
        build_with(
            image,
            options,
            &self.ctx,
            &Host {
                cpus: 4,
                hosts: &hosts,
                resolv_conf: &resolv_conf,
            },
        )
    }

    fn rootfs(&self, path: &str) -> PathBuf {
        self.ctx.rootfs.join(path.trim_start_matches('/'))
    }
}

fn image(build: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> ImageConfiguration {
    let config = build(ConfigBuilder::default().cmd(vec!["sh".to_owned()]))
        .build()
        .unwrap();
    ImageConfigurationBuilder::default()
        .config(config)
        .build()
        .unwrap()
}

fn plain() -> ImageConfiguration {
    image(|c| c)
}

fn process(spec: &Spec) -> &Process {
    spec.process().as_ref().unwrap()
}

fn linux(spec: &Spec) -> &Linux {
    spec.linux().as_ref().unwrap()
}

#[test]
fn default_spec_is_dockers() {
    let f = Fixture::new(|_| {});
    let spec = f.build(&plain(), &RunOptions::default()).unwrap();
    let p = process(&spec);
    assert_eq!(p.args().as_deref().unwrap(), ["sh"]);
    assert_eq!(
        p.env().as_deref().unwrap(),
        [
            format!("PATH={DEFAULT_PATH}"),
            "HOSTNAME=0123456789ab".to_owned(),
            "HOME=/root".to_owned()
        ]
    );
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[0][..]));
    assert!(p.rlimits().is_none());
    assert!(p.oom_score_adj().is_none());
    let caps = p.capabilities().as_ref().unwrap();
    let default: HashSet<Capability> = capabilities::DEFAULT.iter().copied().collect();
    assert_eq!(caps.bounding().as_ref(), Some(&default));
    assert_eq!(caps.effective().as_ref(), Some(&default));
    assert_eq!(caps.permitted().as_ref(), Some(&default));
    assert!(caps.inheritable().as_ref().unwrap().is_empty());
    assert!(caps.ambient().as_ref().unwrap().is_empty());

    assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
    assert!(spec.hooks().is_none());
    let root = spec.root().as_ref().unwrap();
    assert_eq!(root.path(), &f.ctx.rootfs);
    assert_eq!(root.readonly(), Some(false));

    let l = linux(&spec);
    let types: Vec<LinuxNamespaceType> = l
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    for t in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Network,
    ] {
        assert!(types.contains(&t), "{t:?}");
    }
    let uid_map = &l.uid_mappings().as_ref().unwrap()[0];
    assert_eq!(
        (uid_map.container_id(), uid_map.host_id(), uid_map.size()),
        (0, UID, 65_536)
    );
    let gid_map = &l.gid_mappings().as_ref().unwrap()[0];
    assert_eq!(
        (gid_map.container_id(), gid_map.host_id(), gid_map.size()),
        (0, UID + 1, 65_536)
    );
    assert_eq!(l.rootfs_propagation().as_deref(), Some("private"));
    assert_eq!(
        l.masked_paths().as_deref().unwrap().len(),
        MASKED_PATHS.len()
    );
    assert_eq!(
        l.readonly_paths().as_deref().unwrap().len(),
        READONLY_PATHS.len()
    );
    assert_eq!(
        l.cgroups_path().as_deref(),
        Some(f.ctx.cgroups_path.as_path())
    );
    assert!(l.seccomp().is_none());
    assert_eq!(l.devices().as_ref().unwrap().len(), 6);
    let resources = l.resources().as_ref().unwrap();
    assert!(resources.cpu().is_none() && resources.memory().is_none());
    assert!(!resources.devices().as_ref().unwrap()[0].allow());
}

#[test]
fn spec_serializes_and_round_trips() {
    let f = Fixture::new(|_| {});
    let options = RunOptions {
        tty: true,
        labels: vec![("com.example.job".to_owned(), "42".to_owned())],
        resources: Resources {
            cpus: Some(2.0),
            memory: Some(1 << 30),
            memory_swap: None,
            pids_limit: Some(512),
            shm_size: None,
        },
        ..Default::default()
    };
    let spec = f.build(&plain(), &options).unwrap();
    let json = serde_json::to_string_pretty(&spec).unwrap();
    assert!(!json.contains("\"hooks\""));
    assert!(json.contains("\"com.example.job\": \"42\""));
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn labels_never_become_hooks() {
    let f = Fixture::new(|_| {});
    let options = RunOptions {
        labels: vec![
            (
                "hooks".to_owned(),
                "{\"prestart\":[{\"path\":\"/bin/sh\"}]}".to_owned(),
            ),
            ("org.opencontainers.hooks".to_owned(), "/bin/sh".to_owned()),
        ],
        ..Default::default()
    };
    let spec = f.build(&plain(), &options).unwrap();
    assert!(spec.hooks().is_none());
    assert_eq!(spec.annotations().as_ref().unwrap().len(), 2);
    let bad = RunOptions {
        labels: vec![(String::new(), "x".to_owned())],
        ..Default::default()
    };
    assert!(f.build(&plain(), &bad).is_err());
}

#[test]
fn tty_sets_term_and_terminal() {
    let f = Fixture::new(|_| {});
    let spec = f
        .build(
            &plain(),
            &RunOptions {
                tty: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(process(&spec).terminal(), Some(true));
    assert!(process(&spec)
        .env()
        .as_ref()
        .unwrap()
        .contains(&"TERM=xterm".to_owned()));
}

#[test]
fn user_from_image_and_flag() {
    let f = Fixture::new(|_| {});
    let img = image(|c| c.user("alice"));
    let spec = f.build(&img, &RunOptions::default()).unwrap();
    let p = process(&spec);
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(
        p.user().additional_gids().as_deref(),
        Some(&[1000, 100][..])
    );
    assert!(p
        .env()
        .as_ref()
        .unwrap()
        .contains(&"HOME=/home/alice".to_owned()));
    // -u wins over the image's USER; a HOME from -e wins over passwd.
    let options = RunOptions {
        user: Some("0:100".to_owned()),
        env: vec!["HOME=/work".to_owned()],
        ..Default::default()
    };
    let spec = f.build(&img, &options).unwrap();
    let p = process(&spec);
    assert_eq!((p.user().uid(), p.user().gid()), (0, 100));
    let env = p.env().as_ref().unwrap();
    assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
    assert!(env.contains(&"HOME=/work".to_owned()));
    for bad in ["4294967295", "-1", "70000", "nobody-here"] {
        let options = RunOptions {
            user: Some(bad.to_owned()),
            ..Default::default()
        };
        assert!(f.build(&img, &options).is_err(), "{bad}");
    }
}

#[test]
fn workdir_is_made_inside_the_root_and_owned_by_container_root() {
    let f = Fixture::new(|_| {});
    let img = image(|c| c.working_dir("/srv/app"));
    let spec = f.build(&img, &RunOptions::default()).unwrap();
    assert_eq!(process(&spec).cwd(), Path::new("/srv/app"));
    for dir in ["/srv", "/srv/app"] {
        let meta = std::fs::metadata(f.rootfs(dir)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (UID, UID + 1, 0o755),
            "{dir}"
        );
    }
    // -w wins and is cleaned.
    let options = RunOptions {
        workdir: Some("/data/./x/../y/".to_owned()),
        ..Default::default()
    };
    let spec = f.build(&img, &options).unwrap();
    assert_eq!(process(&spec).cwd(), Path::new("/data/y"));
    assert!(f.rootfs("/data/y").is_dir());
    assert!(!f.rootfs("/data/x").exists());
}

#[test]
fn workdir_through_symlinks_stays_inside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("x");
    let target_str = target.to_str().unwrap().to_owned();
    let f = Fixture::new(|rootfs| {
        symlink("/", rootfs.join("toroot")).unwrap();
        symlink("../../../../../../../../tmp/x", rootfs.join("dotdot")).unwrap();
        symlink(&target, rootfs.join("abs")).unwrap();
    });
    for (workdir, resolved) in [
        ("/toroot", "/".to_owned()),
        ("/toroot/sub", "/sub".to_owned()),
        ("/dotdot", "/tmp/x".to_owned()),
        ("/dotdot/deeper", "/tmp/x/deeper".to_owned()),
        ("/abs", target_str.clone()),
    ] {
        let options = RunOptions {
            workdir: Some(workdir.to_owned()),
            ..Default::default()
        };
        let spec = f.build(&plain(), &options).unwrap();
        assert_eq!(process(&spec).cwd(), Path::new(&resolved), "{workdir}");
        assert!(f.rootfs(&resolved).is_dir(), "{workdir}");
    }
    // Nothing was made outside the temp root.
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(!Path::new("/tmp/x/deeper").exists());
}

#[test]
fn workdir_in_proc_sys_or_relative_is_refused() {
    let f = Fixture::new(|rootfs| {
        symlink("/proc/self/fd/7", rootfs.join("sneaky")).unwrap();
        symlink("/sys/fs", rootfs.join("sysdir")).unwrap();
    });
    for workdir in [
        "/proc/self/fd/7",
        "/proc",
        "/sys/kernel",
        "/x/../proc/1/cwd",
        "/sneaky",
        "/sysdir",
    ] {
        let options = RunOptions {
            workdir: Some(workdir.to_owned()),
            ..Default::default()
        };
        let err = f.build(&plain(), &options).unwrap_err();
        assert!(
            err.to_string().contains("working directory"),
            "{workdir}: {err}"
        );
    }
    let img = image(|c| c.working_dir("relative/dir"));
    let err = f.build(&img, &RunOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("needs to be an absolute path"),
        "{err}"
    );
}

#[test]
fn proc_symlinked_image_gets_a_real_folder() {
    let outside = tempfile::tempdir().unwrap();
    let outside_path = outside.path().to_owned();
    let f = Fixture::new(|rootfs| {
        symlink("/", rootfs.join("proc")).unwrap();
        symlink(&outside_path, rootfs.join("sys")).unwrap();
        symlink("/etc", rootfs.join("dev")).unwrap();
    });
    let spec = f.build(&plain(), &RunOptions::default()).unwrap();
    for dir in ["/proc", "/sys", "/dev"] {
        let meta = std::fs::symlink_metadata(f.rootfs(dir)).unwrap();
        assert!(meta.is_dir(), "{dir}");
        assert_eq!(meta.uid(), UID, "{dir}");
    }
    // The image's /etc is untouched (the /dev link was removed, not followed).
    assert!(f.rootfs("/etc/passwd").is_file());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(
        spec.mounts().as_ref().unwrap()[0].destination(),
        Path::new("/proc")
    );
}

#[test]
fn generated_files() {
    let f = Fixture::new(|_| {});
    let options = RunOptions {
        hostname: Some("worker-7".to_owned()),
        ..Default::default()
    };
    let spec = f.build(&plain(), &options).unwrap();
    let files = &f.ctx.files_dir;
    assert_eq!(
        std::fs::read_to_string(files.join("hostname")).unwrap(),
        "worker-7\n"
    );
    let hosts = std::fs::read_to_string(files.join("hosts")).unwrap();
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
    assert!(hosts.ends_with("127.0.0.1\tworker-7\n"));
    assert_eq!(
        std::fs::read_to_string(files.join("resolv.conf")).unwrap(),
        "nameserver 10.0.0.2\n"
    );
    for name in ["hostname", "hosts", "resolv.conf"] {
        let meta = std::fs::metadata(files.join(name)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (UID, UID + 1, 0o644)
        );
    }
    assert_eq!(spec.hostname().as_deref(), Some("worker-7"));
    assert!(process(&spec)
        .env()
        .as_ref()
        .unwrap()
        .contains(&"HOSTNAME=worker-7".to_owned()));
    let etc: Vec<_> = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.destination().starts_with("/etc"))
        .map(|m| (m.destination().to_owned(), m.source().clone().unwrap()))
        .collect();
    assert_eq!(
        etc,
        [
            (PathBuf::from("/etc/hostname"), files.join("hostname")),
            (PathBuf::from("/etc/hosts"), files.join("hosts")),
            (PathBuf::from("/etc/resolv.conf"), files.join("resolv.conf")),
        ]
    );

    // Host network: the host's resolv.conf as is, no network namespace, /sys bound.
    let options = RunOptions {
        network: NetworkMode::Host,
        ..Default::default()
    };
    let spec = f.build(&plain(), &options).unwrap();
    assert_eq!(
        std::fs::read_to_string(files.join("resolv.conf")).unwrap(),
        "nameserver 127.0.0.53\nnameserver 10.0.0.2\n"
    );
    let types: Vec<_> = linux(&spec)
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(!types.contains(&LinuxNamespaceType::Network));
    assert!(types.contains(&LinuxNamespaceType::User));
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert_eq!(sys.typ().as_deref(), Some("bind"));
}

#[test]
fn bad_hostname_is_refused_before_writing() {
    let f = Fixture::new(|_| {});
    let options = RunOptions {
        hostname: Some("a\n10.0.0.1 bank.example".to_owned()),
        ..Default::default()
    };
    assert!(f.build(&plain(), &options).is_err());
    assert!(!f.ctx.files_dir.exists());
}

#[test]
fn limits_map_to_resources() {
    let f = Fixture::new(|_| {});
    let options = RunOptions {
        resources: Resources {
            cpus: Some(0.5),
            memory: Some(256 << 20),
            memory_swap: None,
            pids_limit: Some(64),
            shm_size: Some(8 << 20),
        },
        read_only: true,
        ..Default::default()
    };
    let spec = f.build(&plain(), &options).unwrap();
    let r = linux(&spec).resources().as_ref().unwrap();
    assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
    assert_eq!(r.cpu().as_ref().unwrap().period(), Some(100_000));
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(256 << 20));
    assert_eq!(r.memory().as_ref().unwrap().swap(), Some(256 << 20));
    assert_eq!(r.pids().as_ref().unwrap().limit(), 64);
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let shm = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap();
    assert!(shm
        .options()
        .as_ref()
        .unwrap()
        .contains(&format!("size={}", 8 << 20)));
    let options = RunOptions {
        resources: Resources {
            cpus: Some(8.0),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        f.build(&plain(), &options).unwrap_err().to_string(),
        "range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available"
    );
}

#[test]
fn capabilities_from_flags() {
    let f = Fixture::new(|_| {});
    let options = RunOptions {
        security: SecurityOptions {
            cap_add: vec!["NET_ADMIN".to_owned()],
            cap_drop: vec!["ALL".to_owned()],
            ..Default::default()
        },
        ..Default::default()
    };
    let spec = f.build(&plain(), &options).unwrap();
    let caps = process(&spec).capabilities().as_ref().unwrap();
    let want: HashSet<Capability> = [Capability::NetAdmin].into_iter().collect();
    assert_eq!(caps.bounding().as_ref(), Some(&want));
    assert!(caps.ambient().as_ref().unwrap().is_empty());
    let options = RunOptions {
        security: SecurityOptions {
            cap_add: vec!["SUPERPOWER".to_owned()],
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(matches!(
        f.build(&plain(), &options),
        Err(SpecError::Capability(CapabilityError::Unknown(_)))
    ));
}

#[test]
fn no_command_is_refused() {
    let f = Fixture::new(|_| {});
    let img = ImageConfigurationBuilder::default().build().unwrap();
    let err = f.build(&img, &RunOptions::default()).unwrap_err();
    assert!(matches!(err, SpecError::NoCommand));
}

#[test]
fn built_spec_passes_check_executable() {
    let f = Fixture::new(|rootfs| {
        std::fs::write(rootfs.join("bin/sh"), "").unwrap();
        std::fs::set_permissions(
            rootfs.join("bin/sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    });
    let spec = f.build(&plain(), &RunOptions::default()).unwrap();
    check_executable(&f.ctx.rootfs, &spec).unwrap();
    let options = RunOptions {
        command: vec!["missing-tool".to_owned()],
        ..Default::default()
    };
    let spec = f.build(&plain(), &options).unwrap();
    assert!(matches!(
        check_executable(&f.ctx.rootfs, &spec),
        Err(SpecError::NotFound { .. })
    ));
}
