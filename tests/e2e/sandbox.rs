//! The sandbox every container gets: a private unprivileged id range, Docker's default
//! capabilities, no_new_privs, seccomp, no leaked fds, no writable host binary, masked and
//! read-only /proc and /sys paths, a private network and pid namespace. Facts come from the
//! probe (tests/e2e/fixtures/probe.c).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;

use serde_json::json;

use crate::support::containers::{
    file_digest, key_values, probe_image_with, wait_for, RunFarm, START_LIMIT,
};
use crate::support::{Run, STORE_ID_BASE};

/// Docker's default capability set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
/// SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP).
const DOCKER_DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_SYS_PTRACE: u64 = 1 << 19;

/// `uid_map`/`gid_map` lines of `probe uidmap`: (inside, outside, count).
fn maps(run: &Run, label: &str) -> Vec<(u64, u64, u64)> {
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(label))
        .map(|rest| {
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{label}{rest}: {run:#?}"))
                })
                .collect();
            assert_eq!(f.len(), 3, "{label}{rest}: {run:#?}");
            (f[0], f[1], f[2])
        })
        .collect()
}

#[test]
fn uid_map_is_a_private_unprivileged_range() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&["--name", "mapped"], &["/probe", "uidmap"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let uid_map = maps(&run, "uid_map ");
    let gid_map = maps(&run, "gid_map ");
    assert_eq!(uid_map.len(), 1, "one uid range: {run:#?}");
    assert_eq!(gid_map.len(), 1, "one gid range: {run:#?}");
    let (inside, base, count) = uid_map[0];
    assert_eq!((inside, count), (0, 65536), "0 BASE 65536: {run:#?}");
    assert!(
        base >= 65536,
        "container root is not a host system id: {run:#?}"
    );
    assert!(
        base + count <= u64::from(STORE_ID_BASE),
        "the store's ids (2^31 and up) are never a container's: {run:#?}"
    );
    let (g_inside, g_base, g_count) = gid_map[0];
    assert_eq!((g_inside, g_count), (0, 65536), "{run:#?}");
    assert!(g_base >= 65536, "{run:#?}");

    // The range is one farm owns on this host: inside a `farm:START:COUNT` entry of
    // /etc/subuid (and /etc/subgid for the gids).
    for (file, first) in [("/etc/subuid", base), ("/etc/subgid", g_base)] {
        let entries = std::fs::read_to_string(file).unwrap_or_default();
        let owned = entries.lines().any(|line| {
            let f: Vec<&str> = line.trim().split(':').collect();
            let (Some(start), Some(len)) = (
                f.get(1).and_then(|v| v.parse::<u64>().ok()),
                f.get(2).and_then(|v| v.parse::<u64>().ok()),
            ) else {
                return false;
            };
            f[0] == "farm" && start <= first && first + 65536 <= start + len
        });
        assert!(
            owned,
            "{first}..+65536 is not in a farm: entry of {file}:\n{entries}"
        );
    }

    let inspect = farm.inspect("mapped");
    assert_eq!(inspect["IdMap"]["Uid"], base, "{inspect:#}");
    assert_eq!(inspect["IdMap"]["Gid"], g_base, "{inspect:#}");
    assert_eq!(inspect["IdMap"]["Size"], 65536, "{inspect:#}");
}

#[test]
fn concurrent_containers_get_disjoint_id_ranges() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let probe = farm.probe();
    let ids = [
        farm.detach(&["--name", "one"], &probe, &["sleep", "60"]),
        farm.detach(&["--name", "two"], &probe, &["sleep", "60"]),
    ];
    let mut ranges = Vec::new();
    for id in &ids {
        let inspect = farm.inspect(id);
        let uid = inspect["IdMap"]["Uid"].as_u64().expect("IdMap.Uid");
        let size = inspect["IdMap"]["Size"].as_u64().expect("IdMap.Size");
        assert_eq!(size, 65536, "{inspect:#}");
        assert!(uid >= 65536, "{inspect:#}");
        // The host's view of the container's init: its uid_map, and its real uid.
        let pid = inspect["State"]["Pid"].as_u64().expect("State.Pid");
        let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        let fields: Vec<u64> = uid_map
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        assert_eq!(fields, vec![0, uid, size], "host /proc/{pid}/uid_map");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let host_uid: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert_eq!(
            host_uid, uid,
            "container root runs as IdMap.Uid on the host"
        );
        ranges.push((uid, uid + size));
    }
    let (a, b) = (ranges[0], ranges[1]);
    assert!(
        a.1 <= b.0 || b.1 <= a.0,
        "two running containers share host ids: {ranges:?}"
    );
    for id in &ids {
        farm.run(&["rm", "-f", id]).assert_ok();
        farm.assert_nothing_left(id);
    }
}

fn caps(status: &std::collections::BTreeMap<String, String>, key: &str) -> u64 {
    let value = status
        .get(key)
        .unwrap_or_else(|| panic!("{key} in {status:#?}"));
    u64::from_str_radix(value, 16).unwrap_or_else(|_| panic!("{key}={value}"))
}

#[test]
fn capabilities_no_new_privs_and_seccomp_by_default() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let status = |options: &[&str]| {
        let run = farm.run_probe(options, &["/probe", "status"]);
        assert_eq!(run.code, 0, "{options:?}: {run:#?}");
        key_values(&run.stdout)
    };

    let root = status(&[]);
    assert_eq!(caps(&root, "CapEff"), DOCKER_DEFAULT_CAPS, "{root:#?}");
    assert_eq!(caps(&root, "CapPrm"), DOCKER_DEFAULT_CAPS, "{root:#?}");
    assert_eq!(caps(&root, "CapBnd"), DOCKER_DEFAULT_CAPS, "{root:#?}");
    assert_eq!(caps(&root, "CapInh"), 0, "{root:#?}");
    assert_eq!(caps(&root, "CapAmb"), 0, "{root:#?}");
    assert_eq!(root["NoNewPrivs"], "1", "{root:#?}");
    assert_eq!(root["Seccomp"], "2", "a seccomp filter: {root:#?}");

    let user = status(&["-u", "user"]);
    assert_eq!(
        caps(&user, "CapEff"),
        0,
        "a non-root user has no capabilities: {user:#?}"
    );
    assert_eq!(caps(&user, "CapPrm"), 0, "{user:#?}");
    assert_eq!(caps(&user, "CapBnd"), DOCKER_DEFAULT_CAPS, "{user:#?}");

    let none = status(&["--cap-drop", "ALL"]);
    assert_eq!(caps(&none, "CapEff"), 0, "{none:#?}");
    assert_eq!(caps(&none, "CapBnd"), 0, "{none:#?}");

    let dropped = status(&["--cap-drop", "NET_RAW"]);
    assert_eq!(
        caps(&dropped, "CapEff"),
        DOCKER_DEFAULT_CAPS & !CAP_NET_RAW,
        "{dropped:#?}"
    );
    let added = status(&["--cap-add", "SYS_PTRACE"]);
    assert_eq!(
        caps(&added, "CapEff"),
        DOCKER_DEFAULT_CAPS | CAP_SYS_PTRACE,
        "{added:#?}"
    );

    let unconfined = status(&["--security-opt", "seccomp=unconfined"]);
    assert_eq!(unconfined["Seccomp"], "0", "{unconfined:#?}");
    assert_eq!(
        unconfined["NoNewPrivs"], "1",
        "no_new_privs stays: {unconfined:#?}"
    );
}

/// Syscalls Docker's default profile denies with EPERM to a container with the default
/// capabilities (several are also refused by the kernel without a capability; seccomp must
/// answer first: ENOSYS or EINVAL here means the filter let the call through).
const DENIED: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "mount",
    "umount2",
    "unshare_user",
    "unshare_mnt",
    "setns",
    "clone_user",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "pivot_root",
    "acct",
    "fsopen",
    "open_tree",
    "move_mount",
    "syslog",
    "clock_settime",
];

#[test]
fn dangerous_syscalls_are_denied_with_eperm() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&[], &["/probe", "syscalls"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let results = key_values(&run.stdout);
    let wrong: Vec<String> = DENIED
        .iter()
        .filter(|name| results.get(**name).map(String::as_str) != Some("EPERM"))
        .map(|name| format!("{name}={}", results.get(*name).map_or("<missing>", |v| v)))
        .collect();
    assert!(wrong.is_empty(), "not EPERM: {wrong:?}\n{run:#?}");
    // clone3 cannot be filtered on its flags: Docker answers ENOSYS so libc falls back to
    // clone. Anything but success will do.
    assert_ne!(
        results.get("clone3_user").map(String::as_str),
        Some("OK"),
        "clone3(CLONE_NEWUSER) succeeded: {run:#?}"
    );
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(
            results.get("iopl").map(String::as_str),
            Some("EPERM"),
            "{run:#?}"
        );
    }
}

/// fd numbers of `probe fds`.
fn fds(run: &Run) -> BTreeSet<u32> {
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("fd "))
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{l}: {run:#?}"))
        })
        .collect()
}

#[test]
fn only_stdio_fds_reach_the_container() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let want: BTreeSet<u32> = [0, 1, 2].into();
    let run = farm.run_probe(&[], &["/probe", "fds"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(fds(&run), want, "foreground: {run:#?}");
    let run = farm.run_stdin(&["run", "-i", &farm.probe(), "/probe", "fds"], "");
    assert_eq!(fds(&run), want, "with -i: {run:#?}");

    let run = farm.run(&["run", "-d", "--name", "bg", &farm.probe(), "/probe", "fds"]);
    run.assert_ok();
    farm.wait_exited("bg", START_LIMIT);
    let logs = farm.run(&["logs", "bg"]);
    assert_eq!(fds(&logs), want, "detached: {logs:#?}");
}

#[test]
fn host_binaries_cannot_be_written_through_proc() {
    // runc CVE-2019-5736: a container overwrote the runtime's binary through /proc/PID/exe.
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let farm_bin = std::path::Path::new(env!("CARGO_BIN_EXE_farm"));
    let before = file_digest(farm_bin);
    let run = farm.run_probe(&[], &["/probe", "exe"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let opened: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("write ") && l.contains("=OK"))
        .collect();
    assert!(
        opened.is_empty(),
        "opened for writing from inside: {opened:#?}\n{run:#?}"
    );
    let facts = key_values(&run.stdout);
    assert_eq!(
        facts.get("self_exe_is_probe").map(String::as_str),
        Some("1"),
        "/proc/self/exe is the image's file: {run:#?}"
    );
    assert!(
        run.stdout.lines().any(|l| l == "self pid=1 exe=/probe"),
        "the command is pid 1 of its own pid namespace: {run:#?}"
    );
    assert_eq!(file_digest(farm_bin), before, "the farm binary changed");
}

#[test]
fn workdir_through_a_leaked_fd_stays_inside() {
    // runc CVE-2024-21626: `-w /proc/self/fd/7` (or WORKDIR in the image) started the
    // process in a host folder through an fd the runtime leaked. Farm must refuse (125) or
    // start it with a cwd inside the container.
    let Some(farm) = RunFarm::with_images(&[(
        "fd-workdir",
        probe_image_with(json!({"WorkingDir": "/proc/self/fd/7"})),
    )]) else {
        return;
    };
    let check = |run: &Run, what: &str| {
        if run.code == 125 {
            return;
        }
        assert_eq!(run.code, 0, "{what}: refused (125) or run: {run:#?}");
        let facts = key_values(&run.stdout);
        assert_eq!(
            facts.get("reaches_root").map(String::as_str),
            Some("1"),
            "{what}: the cwd is outside the container: {run:#?}"
        );
        let cwd = facts.get("cwd").map(String::as_str).unwrap_or("");
        assert!(
            cwd.starts_with('/'),
            "{what}: cwd {cwd:?} is not a path inside: {run:#?}"
        );
    };
    let mut workdirs: Vec<String> = (3..=9).map(|fd| format!("/proc/self/fd/{fd}")).collect();
    workdirs.push("/proc/self/cwd".into());
    workdirs.push("/proc/1/cwd".into());
    workdirs.push("/proc/self/root/..".into());
    for workdir in &workdirs {
        let run = farm.run_probe(&["-w", workdir], &["/probe", "cwd"]);
        check(&run, &format!("-w {workdir}"));
    }
    let run = farm.run_container(&[], &farm.image("fd-workdir"), &["/probe", "cwd"]);
    check(&run, "WorkingDir /proc/self/fd/7");
}

#[test]
fn masked_and_read_only_kernel_paths() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&[], &["/probe", "masked"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let facts = key_values(&run.stdout);
    let mut bad = Vec::new();
    for (path, value) in &facts {
        if let Some(path) = path.strip_prefix("wr:") {
            if value == "OK" {
                bad.push(format!("{path} opened for writing"));
            }
        } else if !matches!(
            value.as_str(),
            "bytes:0" | "dir:0" | "err:ENOENT" | "err:EACCES" | "err:EPERM"
        ) {
            bad.push(format!("{path} shows {value}"));
        }
    }
    assert!(
        facts.contains_key("/proc/kcore") && facts.contains_key("wr:/proc/sysrq-trigger"),
        "{run:#?}"
    );
    assert!(bad.is_empty(), "not masked: {bad:#?}\n{run:#?}");
}

#[test]
fn image_files_keep_their_owners_and_new_files_belong_to_the_range() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(
        &[],
        &[
            "stat",
            "-c",
            "%u:%g",
            "/bin/busybox",
            "/home/user",
            "/probe",
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout, "0:0\n1000:1000\n0:0\n", "{run:#?}");

    let id = farm.detach(
        &["--name", "owner"],
        &farm.probe(),
        &[
            "sh",
            "-c",
            "touch /tmp/u && chown 1000:1000 /tmp/u && touch /tmp/made-here && sleep 60",
        ],
    );
    let inspect = farm.inspect(&id);
    let pid = inspect["State"]["Pid"].as_u64().expect("State.Pid");
    let uid = inspect["IdMap"]["Uid"].as_u64().expect("IdMap.Uid");
    let gid = inspect["IdMap"]["Gid"].as_u64().expect("IdMap.Gid");
    let made = std::path::PathBuf::from(format!("/proc/{pid}/root/tmp/made-here"));
    let meta = wait_for(
        "the container to make /tmp/made-here",
        START_LIMIT,
        || std::fs::metadata(&made).ok(),
        || format!("{:#?}", farm.run(&["logs", &id])),
    );
    assert_eq!(
        (u64::from(meta.uid()), u64::from(meta.gid())),
        (uid, gid),
        "container root's file belongs to IdMap.Uid on the host"
    );
    let chowned = std::fs::metadata(format!("/proc/{pid}/root/tmp/u")).unwrap();
    assert_eq!(
        (u64::from(chowned.uid()), u64::from(chowned.gid())),
        (uid + 1000, gid + 1000),
        "uid 1000 inside is IdMap.Uid + 1000 outside"
    );
    farm.run(&["rm", "-f", &id]).assert_ok();
    farm.assert_nothing_left(&id);
}

#[test]
fn default_network_is_loopback_only() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&[], &["cat", "/proc/net/dev"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let interfaces: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(interfaces, vec!["lo"], "{run:#?}");
}
