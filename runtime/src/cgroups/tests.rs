//! Tests on fixtures, and on real cgroups of this host (as root; `CI=true` turns a missing
//! prerequisite into a failure).

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};

use super::*;

const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const UNIFIED: &str =
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n";

const ONLY_NAMED_V1: &str = "\
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn version_of_hybrid_legacy_and_unified_hosts() {
    assert_eq!(
        Hierarchies::from_mountinfo(HYBRID).version(),
        CgroupVersion::V1
    );
    assert_eq!(
        Hierarchies::from_mountinfo(UNIFIED).version(),
        CgroupVersion::V2
    );
    assert_eq!(
        Hierarchies::from_mountinfo(ONLY_NAMED_V1).version(),
        CgroupVersion::V2,
        "a named v1 hierarchy controls nothing"
    );
}

#[test]
fn paths_are_relative_to_each_hierarchy_root() {
    assert_eq!(
        relative(Path::new("/farm/abc")).unwrap(),
        PathBuf::from("farm/abc")
    );
    assert_eq!(
        relative(Path::new("farm/./abc/")).unwrap(),
        PathBuf::from("farm/abc")
    );
}

#[test]
fn root_and_parent_paths_are_refused_before_anything_is_touched() {
    let fixture = tempfile::tempdir().unwrap();
    let hierarchies = Hierarchies::from_mounts(vec![Mount {
        path: fixture.path().to_path_buf(),
        kind: MountKind::V2,
    }]);
    for path in ["/", "", "/./", "/farm/../..", "../etc"] {
        let error = hierarchies.destroy(Path::new(path)).unwrap_err();
        assert!(
            matches!(error, CgroupError::InvalidPath { .. }),
            "{path:?}: {error}"
        );
        assert!(hierarchies.read_usage(Path::new(path)).is_err());
    }
    assert!(fixture.path().exists());
}

#[test]
fn missing_cgroup_destroys_ok_and_reads_not_found() {
    let fixture = tempfile::tempdir().unwrap();
    let hierarchies = Hierarchies::from_mounts(vec![Mount {
        path: fixture.path().to_path_buf(),
        kind: MountKind::V1 {
            controllers: vec!["memory".into()],
            name: None,
        },
    }]);
    let path = Path::new("/farm/gone");
    hierarchies.destroy(path).unwrap();
    assert!(!hierarchies.exists(path));
    assert_eq!(hierarchies.procs(path).unwrap(), Vec::<i32>::new());
    assert!(matches!(
        hierarchies.read_usage(path),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn v2_usage_through_hierarchies_reads_the_unified_folder() {
    let fixture = tempfile::tempdir().unwrap();
    let dir = fixture.path().join("farm/c1");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("cpu.stat"), "user_usec 5\nsystem_usec 6\n").unwrap();
    fs::write(dir.join("memory.peak"), "1024\n").unwrap();
    fs::write(dir.join("cgroup.procs"), "12\n7\n").unwrap();
    let hierarchies = Hierarchies::from_mounts(vec![Mount {
        path: fixture.path().to_path_buf(),
        kind: MountKind::V2,
    }]);
    let usage = hierarchies.read_usage(Path::new("/farm/c1")).unwrap();
    assert_eq!((usage.cpu_user_ns, usage.cpu_system_ns), (5000, 6000));
    assert_eq!(usage.memory_peak_bytes, 1024);
    assert!(hierarchies.exists(Path::new("/farm/c1")));
    assert_eq!(hierarchies.procs(Path::new("farm/c1")).unwrap(), [7, 12]);
}

// ------------------------------------------------------------------ real cgroups of this host

/// This host's hierarchies when the test can create cgroups (root, cgroups mounted).
fn live() -> Option<&'static Hierarchies> {
    let root = rustix::process::geteuid().is_root();
    let hierarchies = Hierarchies::system()
        .ok()
        .filter(|h| !h.mounts().is_empty());
    match (root, hierarchies) {
        (true, Some(hierarchies)) => Some(hierarchies),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("cgroup tests need root and mounted cgroups (CI=true)")
        }
        _ => {
            eprintln!("skipped: cgroup tests need root and mounted cgroups");
            None
        }
    }
}

/// The cgroup2 mount (the whole hierarchy on v2 hosts, `unified` on hybrid ones); a test
/// without one is skipped, except under `CI=true`, whose machines have one.
fn unified_mount(system: &Hierarchies) -> Option<&Mount> {
    let unified = system.mounts().iter().find(|m| m.kind == MountKind::V2);
    if unified.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("no cgroup2 mount (CI=true): the v2 tests need one");
        }
        eprintln!("skipped: no cgroup2 mount");
    }
    unified
}

/// A cgroup made for one test in the hierarchies that account (v1: memory, cpuacct, pids,
/// freezer; v2: the unified one); destroyed on drop if the test did not.
struct TestCgroup {
    hierarchies: Hierarchies,
    path: PathBuf,
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    fn create(hierarchies: &Hierarchies, name: &str) -> TestCgroup {
        let path = PathBuf::from(format!("/farm-test-{}-{name}", rand::random::<u32>()));
        let relative = relative(&path).unwrap();
        let wanted = ["memory", "cpuacct", "pids", "freezer"];
        let mounts: Vec<Mount> = match hierarchies.version() {
            CgroupVersion::V1 => hierarchies
                .mounts()
                .iter()
                .filter(|m| wanted.iter().any(|c| m.has_v1_controller(c)))
                .cloned()
                .collect(),
            CgroupVersion::V2 => {
                let mount = hierarchies
                    .mounts()
                    .iter()
                    .find(|m| m.kind == MountKind::V2)
                    .unwrap()
                    .clone();
                // Best effort: controllers for the test's children (the root may already
                // delegate them).
                let _ = fs::write(
                    mount.path.join("cgroup.subtree_control"),
                    "+memory +cpu +pids",
                );
                vec![mount]
            }
        };
        let dirs: Vec<PathBuf> = mounts.iter().map(|m| m.path.join(&relative)).collect();
        for dir in &dirs {
            fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        TestCgroup {
            hierarchies: Hierarchies::from_mounts(mounts),
            path,
            dirs,
        }
    }

    /// Move `pid` into the cgroup (or its child folder `sub`) in every hierarchy.
    fn join(&self, sub: &str, pid: u32) {
        for dir in &self.dirs {
            let dir = dir.join(sub);
            fs::write(dir.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("join {}: {e}", dir.display()));
        }
    }

    /// Write `value` to the first of `files` that exists in some hierarchy's folder.
    fn set(&self, files: &[&str], value: &str) {
        for file in files {
            for dir in &self.dirs {
                if dir.join(file).exists() {
                    fs::write(dir.join(file), value)
                        .unwrap_or_else(|e| panic!("write {file}: {e}"));
                    return;
                }
            }
        }
        panic!("none of {files:?} exists");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.hierarchies.destroy(&self.path);
    }
}

/// `sh -c script` held at `read` until [`release`], so it can join a cgroup first.
fn held(script: &str) -> Child {
    Command::new("sh")
        .args(["-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
}

#[test]
fn live_usage_then_destroy_kills_and_removes_nested_cgroups() {
    let Some(system) = live() else { return };
    let cgroup = TestCgroup::create(system, "usage");
    let hierarchies = &cgroup.hierarchies;
    assert!(hierarchies.exists(&cgroup.path));

    let mut busy = held("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
    cgroup.join("", busy.id());
    release(&mut busy);
    assert!(busy.wait().unwrap().success());
    let usage = hierarchies.read_usage(&cgroup.path).unwrap();
    assert!(
        usage.cpu_user_ns + usage.cpu_system_ns > 0,
        "no cpu time: {usage:?}"
    );
    assert!(usage.memory_peak_bytes > 0, "no memory peak: {usage:?}");
    assert!(!usage.oom_killed);

    // One sleeper in the cgroup, one in a nested cgroup (folders made in every hierarchy).
    for dir in &cgroup.dirs {
        fs::create_dir(dir.join("inner")).unwrap();
    }
    let mut outer = Command::new("sleep").arg("100").spawn().unwrap();
    let mut inner = Command::new("sleep").arg("100").spawn().unwrap();
    cgroup.join("", outer.id());
    cgroup.join("inner", inner.id());
    let mut expected = vec![outer.id() as i32, inner.id() as i32];
    expected.sort_unstable();
    assert_eq!(hierarchies.procs(&cgroup.path).unwrap(), expected);

    hierarchies.destroy(&cgroup.path).unwrap();
    assert_eq!(outer.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(inner.wait().unwrap().signal(), Some(libc::SIGKILL));
    for dir in &cgroup.dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(!hierarchies.exists(&cgroup.path));
    // Destroying again is fine.
    hierarchies.destroy(&cgroup.path).unwrap();
}

#[test]
fn live_oom_kill_is_reported() {
    let Some(system) = live() else { return };
    let cgroup = TestCgroup::create(system, "oom");
    let limit = (8 << 20).to_string();
    match cgroup.hierarchies.version() {
        CgroupVersion::V1 => {
            cgroup.set(&["memory.limit_in_bytes"], &limit);
            // Without swap accounting the hog could swap instead of being killed.
            if cgroup
                .dirs
                .iter()
                .any(|d| d.join("memory.memsw.limit_in_bytes").exists())
            {
                cgroup.set(&["memory.memsw.limit_in_bytes"], &limit);
            }
        }
        CgroupVersion::V2 => {
            cgroup.set(&["memory.max"], &limit);
            if cgroup.dirs[0].join("memory.swap.max").exists() {
                cgroup.set(&["memory.swap.max"], "0");
            }
        }
    }
    // One 64 MiB line: `tail` keeps all of it in memory.
    let mut hog = held("head -c 67108864 /dev/zero | tail -n 1 > /dev/null");
    cgroup.join("", hog.id());
    release(&mut hog);
    let status = hog.wait().unwrap();
    assert!(!status.success(), "the hog survived an 8 MiB limit");
    let usage = cgroup.hierarchies.read_usage(&cgroup.path).unwrap();
    assert!(usage.oom_killed, "{usage:?}");
    assert!(usage.memory_peak_bytes <= 9 << 20, "{usage:?}");
    cgroup.hierarchies.destroy(&cgroup.path).unwrap();
}

#[test]
fn live_destroy_kills_a_tree_that_keeps_forking() {
    let Some(system) = live() else { return };
    let cgroup = TestCgroup::create(system, "fork");
    if !cgroup.dirs.iter().any(|d| d.join("pids.max").exists()) {
        eprintln!("skipped: no pids controller to bound the fork loop");
        return;
    }
    cgroup.set(&["pids.max"], "32");
    // dash gives up when a fork fails: stay under the limit, forking all the time.
    let mut forker =
        held("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 100 & done; while :; do sleep 0; done");
    cgroup.join("", forker.id());
    release(&mut forker);
    // Wait (bounded by the pids limit, not by time) until it has forked a few.
    while cgroup.hierarchies.procs(&cgroup.path).unwrap().len() < 8 {
        std::thread::yield_now();
    }
    cgroup.hierarchies.destroy(&cgroup.path).unwrap();
    assert_eq!(forker.wait().unwrap().signal(), Some(libc::SIGKILL));
    for dir in &cgroup.dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// The v2 path (`cgroup.kill`) on a hybrid host's unified hierarchy, which has no
/// controllers but does have `cgroup.kill` and `cpu.stat`.
#[test]
fn live_v2_cgroup_kill_on_the_unified_hierarchy() {
    let Some(system) = live() else { return };
    let Some(unified) = unified_mount(system) else {
        return;
    };
    let hierarchies = Hierarchies::from_mounts(vec![unified.clone()]);
    let cgroup = TestCgroup::create(&hierarchies, "v2");
    let mut child = held("exec sleep 100"); // one process: sh becomes sleep (a forked sleep raced the listing)
    cgroup.join("", child.id());
    release(&mut child);
    assert_eq!(
        cgroup.hierarchies.procs(&cgroup.path).unwrap(),
        [child.id() as i32]
    );
    cgroup.hierarchies.read_usage(&cgroup.path).unwrap();
    cgroup.hierarchies.destroy(&cgroup.path).unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(!cgroup.dirs[0].exists());
}

#[test]
fn destroy_refuses_a_cgroup_holding_the_caller() {
    // A fixture "cgroup" whose procs file lists this process: nothing is signalled.
    let fixture = tempfile::tempdir().unwrap();
    let dir = fixture.path().join("farm/me");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("cgroup.procs"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let hierarchies = Hierarchies::from_mounts(vec![Mount {
        path: fixture.path().to_path_buf(),
        kind: MountKind::V1 {
            controllers: vec!["pids".into()],
            name: None,
        },
    }]);
    assert!(matches!(
        hierarchies.destroy(Path::new("/farm/me")),
        Err(CgroupError::SelfInside { .. })
    ));
}

/// The cgroup v2 device filter (libcontainer's eBPF program, what a container gets on a v2
/// host) built from farm's own rules: the default list plus one GPU node, attached to a
/// cgroup of the unified hierarchy (there on hybrid hosts too). Inside it, the allowed GPU
/// node reaches its (absent) driver, ENXIO; its neighbour is refused by the filter, EPERM;
/// /dev/null opens.
#[test]
fn live_v2_device_filter_allows_only_the_containers_devices() {
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
    let Some(system) = live() else { return };
    let Some(unified) = unified_mount(system) else {
        return;
    };
    let hierarchies = Hierarchies::from_mounts(vec![unified.clone()]);
    let cgroup = TestCgroup::create(&hierarchies, "devices");
    let mut rules = crate::spec::resources::device_rules();
    rules.push(
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(195i64)
            .minor(0i64)
            .access("rwm")
            .build()
            .unwrap(),
    );
    attach_device_filter(&cgroup.dirs[0], rules);

    let nodes = tempfile::tempdir().unwrap();
    for (name, minor) in [("given", 0), ("other", 1)] {
        nix::sys::stat::mknod(
            &nodes.path().join(name),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(195, minor),
        )
        .unwrap();
    }
    let script = format!(
        "read go; for n in {dir}/given {dir}/other /dev/null; do cat $n 2>&1 && echo \"$n: opened\"; done",
        dir = nodes.path().display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .spawn()
        .unwrap();
    cgroup.join("", child.id());
    release(&mut child);
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name} in {text:?}"))
            .to_owned()
    };
    assert!(
        line("/given").contains("No such device or address"),
        "the allowed node reaches the driver: {text}"
    );
    assert!(
        line("/other").contains("Operation not permitted"),
        "the filter refuses a node not given: {text}"
    );
    assert!(
        line("/dev/null").contains("opened"),
        "default devices open: {text}"
    );
    cgroup.hierarchies.destroy(&cgroup.path).unwrap();
}

/// libcontainer's v2 device step. It first raises RLIMIT_MEMLOCK to 128 MiB, which needs
/// CAP_SYS_RESOURCE; where the test runs without it (this project's VMs), the same program
/// (libcgroups' emulator and code generator, its default rules added after the given ones
/// as libcgroups adds them) is loaded and attached without that step (kernels >= 5.11
/// charge BPF memory to the memory cgroup, not to the rlimit).
fn attach_device_filter(dir: &Path, rules: Vec<oci_spec::runtime::LinuxDeviceCgroup>) {
    use libcgroups::v2::devices::{bpf, emulator::Emulator, program::Program, Devices};
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
    use std::os::fd::AsRawFd;
    match Devices::apply_devices(dir, &Some(rules.clone())) {
        Ok(()) => return,
        Err(libcgroups::v2::devices::controller::DevicesControllerError::Bpf(
            bpf::BpfError::FailedToIncreaseRLimit,
        )) => eprintln!("no CAP_SYS_RESOURCE: attaching the filter without the rlimit step"),
        Err(e) => panic!("loading and attaching the eBPF device filter: {e}"),
    }
    let mut emulator = Emulator::with_default_allow(false);
    emulator.add_rules(&rules);
    // libcgroups' default_allow_devices() (crate-private; its default_devices() are farm's
    // own rules already): mknod of any node, the console, ptys, ptmx and tun.
    let allow = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .access(access);
        if let Some(major) = major {
            rule = rule.major(major);
        }
        if let Some(minor) = minor {
            rule = rule.minor(minor);
        }
        rule.build().unwrap()
    };
    emulator.add_rules(&[
        allow(LinuxDeviceType::C, None, None, "m"),
        allow(LinuxDeviceType::B, None, None, "m"),
        allow(LinuxDeviceType::C, Some(5), Some(1), "rwm"),
        allow(LinuxDeviceType::C, Some(136), None, "rwm"),
        allow(LinuxDeviceType::C, Some(5), Some(2), "rwm"),
        allow(LinuxDeviceType::C, Some(10), Some(200), "rwm"),
    ]);
    let program = Program::from_rules(&emulator.rules, emulator.default_allow).unwrap();
    let prog = bpf::prog::load("Apache", program.bytecodes()).expect("BPF_PROG_LOAD");
    let cgroup = fs::File::open(dir).unwrap();
    bpf::prog::attach(prog, cgroup.as_raw_fd()).expect("BPF_PROG_ATTACH");
}

#[test]
fn the_v2_device_filter_needs_cap_sys_resource_or_a_high_memlock_limit() {
    let mib = |n: u64| Some(n << 20);
    assert_eq!(memlock_problem(mib(8), true), None);
    assert_eq!(memlock_problem(mib(128), false), None);
    assert_eq!(memlock_problem(None, false), None);
    let message = memlock_problem(mib(8), false).expect("8 MiB without the capability");
    assert!(
        message.contains("8192 KiB") && message.contains("ulimit -l 131072"),
        "{message}"
    );
    // This VM's root: every capability but CAP_SYS_RESOURCE (bit 24).
    let without = "Name:\tfarm\nCapEff:\t000001fffeffffff\n";
    let with = "CapEff:\t000001ffffffffff\n";
    assert!(!has_capability(without, 24));
    assert!(has_capability(with, 24));
    assert!(has_capability(without, 21), "CAP_SYS_ADMIN");
    assert!(!has_capability("no such line", 24));
}
