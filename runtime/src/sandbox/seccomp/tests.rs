//! The filters installed for real: the test binary runs itself again (`probe_child`) with
//! the filters of the chosen capability set, calls syscalls with arguments the kernel would
//! refuse with some other error than EPERM, and prints what each call returned.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

use oci_spec::runtime::Capability;

use super::*;
use crate::sandbox::capabilities::DEFAULT as DEFAULT_CAPS;

/// Syscalls Docker's default profile denies (EPERM) to a container with the default
/// capabilities; checked on the compiled filter and on a really installed one.
pub(super) const DENIED_BY_DEFAULT: &[&str] = &[
    "keyctl",
    "add_key",
    "bpf",
    "perf_event_open",
    "mount",
    "umount2",
    "unshare",
    "setns",
    "kexec_load",
    "init_module",
    "finit_module",
    "open_by_handle_at",
    "reboot",
    "swapon",
];

/// Set in the environment of the child: what it installs and calls.
const PROBE_ENV: &str = "FARM_SECCOMP_PROBE";
const PROBE_TEST: &str = "sandbox::seccomp::tests::probe_child";

/// Run [`probe_child`] in a new process of this test binary; its `probe:NAME=RESULT` lines
/// (the first one follows libtest's `test NAME ... ` on the same line).
fn probe(mode: &str) -> (ExitStatus, BTreeMap<String, String>) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", PROBE_TEST, "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results = stdout
        .lines()
        .filter_map(|line| line.split_once("probe:")?.1.split_once('='))
        .map(|(name, result)| (name.to_string(), result.to_string()))
        .collect();
    (output.status, results)
}

fn errno(code: i32) -> String {
    format!("errno {code}")
}

/// `libc::syscall` with six arguments: `Ok(return value)` or `Err(errno)`.
#[allow(unsafe_code)]
fn raw_syscall(nr: i64, args: [u64; 6]) -> Result<i64, i32> {
    // SAFETY: the probes pass no pointer the kernel writes through: null pointers, invalid
    // fds, flags or magic numbers the kernel rejects, or calls with no memory effect
    // (getpid, personality query, unshare(0), socket). The one call that can create a
    // process (clone) goes through `raw_clone` instead.
    let ret = unsafe {
        libc::syscall(
            nr as libc::c_long,
            args[0],
            args[1],
            args[2],
            args[3],
            args[4],
            args[5],
        )
    };
    if ret == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok(ret)
    }
}

/// clone(flags) with no new stack (fork-like); a child that the filter failed to stop
/// exits at once.
#[allow(unsafe_code)]
fn raw_clone(flags: u64) -> Result<i64, i32> {
    // SAFETY: without CLONE_VM the child gets a copy of this process and returns 0 here,
    // where it leaves through _exit without running anything of the copy; the parent
    // reaps it.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    match ret {
        0 => unsafe { libc::_exit(0) },
        -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap()),
        pid => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
            Ok(pid)
        }
    }
}

/// getpid through the i386 entry (`int 0x80`, syscall 20 there).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn i386_getpid() -> i64 {
    let ret: i32;
    // SAFETY: i386 getpid takes no arguments and touches no memory; the 32-bit entry
    // may clobber r8-r11, declared here.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("eax") 20i32 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack)
        );
    }
    i64::from(ret)
}

fn show(result: Result<i64, i32>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(code) => errno(code),
    }
}

/// Entry point of the child processes of the tests below; does nothing in a normal run.
#[test]
fn probe_child() {
    let Ok(mode) = std::env::var(PROBE_ENV) else {
        return;
    };
    let report = |name: &str, result: String| println!("probe:{name}={result}");
    let mut caps = DEFAULT_CAPS.to_vec();
    match mode.as_str() {
        "default" | "i386" => {}
        "sys_admin" => caps.push(Capability::SysAdmin),
        "i386-control" => {
            #[cfg(target_arch = "x86_64")]
            report("i386_getpid", i386_getpid().to_string());
            report("pid", std::process::id().to_string());
            return;
        }
        other => panic!("unknown probe mode {other}"),
    }
    let filters = filters(&SeccompMode::Default, &caps).unwrap().unwrap();
    install(&filters).unwrap();
    report("installed", filters.len().to_string());

    if mode == "i386" {
        #[cfg(target_arch = "x86_64")]
        report("i386_getpid", i386_getpid().to_string());
        return;
    }

    let probes: &[(&str, i64, [u64; 6])] = &[
        ("read", libc::SYS_read, [u64::MAX, 0, 0, 0, 0, 0]),
        ("write", libc::SYS_write, [u64::MAX, 0, 0, 0, 0, 0]),
        ("getpid", libc::SYS_getpid, [0; 6]),
        (
            "execve",
            libc::SYS_execve,
            [c"/nonexistent/farm".as_ptr() as u64, 0, 0, 0, 0, 0],
        ),
        (
            "ptrace",
            libc::SYS_ptrace,
            [libc::PTRACE_CONT as u64, 1 << 30, 0, 0, 0, 0],
        ),
        ("clone3", libc::SYS_clone3, [0; 6]),
        ("keyctl", libc::SYS_keyctl, [0x7fff, 0, 0, 0, 0, 0]),
        ("add_key", libc::SYS_add_key, [0; 6]),
        ("bpf", libc::SYS_bpf, [0xffff, 0, 0, 0, 0, 0]),
        ("perf_event_open", libc::SYS_perf_event_open, [0; 6]),
        ("mount", libc::SYS_mount, [0; 6]),
        ("umount2", libc::SYS_umount2, [0; 6]),
        ("unshare", libc::SYS_unshare, [0; 6]),
        ("setns", libc::SYS_setns, [u64::MAX, 0, 0, 0, 0, 0]),
        ("kexec_load", libc::SYS_kexec_load, [0, 17, 0, 0, 0, 0]),
        ("init_module", libc::SYS_init_module, [0; 6]),
        (
            "finit_module",
            libc::SYS_finit_module,
            [u64::MAX, 0, 0, 0, 0, 0],
        ),
        (
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
            [u64::MAX, 0, 0, 0, 0, 0],
        ),
        ("reboot", libc::SYS_reboot, [0; 6]),
        ("swapon", libc::SYS_swapon, [0; 6]),
        (
            "personality_query",
            libc::SYS_personality,
            [0xffff_ffff, 0, 0, 0, 0, 0],
        ),
        (
            "personality_no_aslr",
            libc::SYS_personality,
            [0x0040000, 0, 0, 0, 0, 0],
        ),
        (
            "socket_vsock",
            libc::SYS_socket,
            [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0],
        ),
        (
            "socket_vsock_high",
            libc::SYS_socket,
            [libc::AF_VSOCK as u64 | 1 << 32, 1, 0, 0, 0, 0],
        ),
        ("newer_than_profile", 467, [u64::MAX, 0, 0, 0, 0, 0]),
        #[cfg(target_arch = "x86_64")]
        ("x32_getpid", 0x4000_0000 | libc::SYS_getpid, [0; 6]),
    ];
    for (name, nr, args) in probes {
        report(name, show(raw_syscall(*nr, *args)));
    }
    match raw_syscall(
        libc::SYS_socket,
        [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
    ) {
        Ok(fd) => {
            report("socket_inet", "ok".to_string());
            let _ = raw_syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
        }
        Err(code) => report("socket_inet", errno(code)),
    }
    let newuser = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
    report("clone_newuser", show(raw_clone(newuser)));
    report("clone_fork", show(raw_clone(libc::SIGCHLD as u64)));
    // glibc tries clone3 and falls back to clone on ENOSYS, for threads and for spawn.
    let thread = std::thread::spawn(|| 7)
        .join()
        .map(|v| v as i64)
        .map_err(|_| 0);
    report("thread", show(thread));
    let spawned = Command::new("/bin/sh").args(["-c", "exit 3"]).status();
    report(
        "spawn",
        format!("{:?}", spawned.map(|s| s.code()).map_err(|e| e.kind())),
    );
}

#[test]
fn default_filters_deny_what_docker_denies_in_a_real_process() {
    let (status, results) = probe("default");
    assert!(status.success(), "{status:?} {results:?}");
    let get = |name: &str| results.get(name).map(String::as_str).unwrap_or("missing");
    assert_eq!(get("installed"), "2");
    let eperm = errno(libc::EPERM);
    for name in DENIED_BY_DEFAULT.iter().copied().chain([
        "personality_no_aslr",
        "socket_vsock",
        "socket_vsock_high",
        "clone_newuser",
        #[cfg(target_arch = "x86_64")]
        "x32_getpid",
    ]) {
        assert_eq!(get(name), eperm, "{name}");
    }
    // Allowed: the kernel's own answer comes back.
    assert_eq!(get("read"), errno(libc::EBADF));
    assert_eq!(get("write"), errno(libc::EBADF));
    assert_eq!(get("getpid"), "ok");
    assert_eq!(get("execve"), errno(libc::ENOENT));
    assert_eq!(get("ptrace"), errno(libc::ESRCH));
    assert_eq!(get("personality_query"), "ok");
    assert_eq!(get("socket_inet"), "ok");
    assert_eq!(get("clone_fork"), "ok");
    // ENOSYS, not EPERM: libcs fall back to clone, and to older syscalls.
    assert_eq!(get("clone3"), errno(libc::ENOSYS));
    assert_eq!(get("newer_than_profile"), errno(libc::ENOSYS));
    assert_eq!(get("thread"), "ok");
    assert_eq!(get("spawn"), "Ok(Some(3))");
}

#[test]
fn sys_admin_filters_allow_mount_and_clone3() {
    let (status, results) = probe("sys_admin");
    assert!(status.success(), "{status:?} {results:?}");
    let get = |name: &str| results.get(name).map(String::as_str).unwrap_or("missing");
    assert_eq!(get("installed"), "1");
    // The kernel's answers to the bad arguments: the filter let them through.
    assert_eq!(get("mount"), errno(libc::EFAULT));
    assert_eq!(get("umount2"), errno(libc::EFAULT));
    assert_eq!(get("setns"), errno(libc::EBADF));
    assert_eq!(get("unshare"), "ok");
    assert_eq!(get("clone3"), errno(libc::EINVAL));
    // Still denied: not a CAP_SYS_ADMIN rule.
    assert_eq!(get("kexec_load"), errno(libc::EPERM));
    assert_eq!(get("thread"), "ok");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn i386_syscalls_kill_the_process() {
    let (control, results) = probe("i386-control");
    let supported = control.success() && results.get("i386_getpid") == results.get("pid");
    if !supported {
        // int 0x80 does not reach the kernel's i386 entry here (no IA32 emulation).
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "int 0x80 is not available ({control:?} {results:?}): CI needs IA32 emulation"
        );
        eprintln!("skipped: this kernel has no IA32 emulation ({control:?} {results:?})");
        return;
    }
    let (status, results) = probe("i386");
    assert_eq!(
        status.signal(),
        Some(libc::SIGSYS),
        "{status:?} {results:?}"
    );
    assert_eq!(results.get("installed").map(String::as_str), Some("2"));
    assert!(!results.contains_key("i386_getpid"), "{results:?}");
}

#[test]
fn unconfined_has_no_filters() {
    assert!(filters(&SeccompMode::Unconfined, DEFAULT_CAPS)
        .unwrap()
        .is_none());
}

#[test]
fn the_built_in_profile_is_mobys() {
    let profile: serde_json::Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(profile["defaultErrnoRet"], 1);
    assert!(profile["syscalls"].as_array().unwrap().len() > 50);
    let default = filters(&SeccompMode::Default, DEFAULT_CAPS)
        .unwrap()
        .unwrap();
    assert_eq!(default.len(), 2);
}

#[test]
fn profile_files_are_read_and_their_errors_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.json");
    std::fs::write(
        &path,
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let custom = filters(&SeccompMode::Profile(path.clone()), DEFAULT_CAPS)
        .unwrap()
        .unwrap();
    assert_eq!(custom.len(), 1);

    let shown = path.display().to_string();
    let message = |path: &std::path::Path| {
        filters(&SeccompMode::Profile(path.to_path_buf()), DEFAULT_CAPS)
            .unwrap_err()
            .to_string()
    };
    std::fs::write(&path, "{ not json").unwrap();
    let bad_json = message(&path);
    assert!(bad_json.contains(&shown) && bad_json.contains("not a Docker seccomp profile"));

    std::fs::write(
        &path,
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}]}"#,
    )
    .unwrap();
    let bad_action = message(&path);
    assert!(bad_action.contains(&shown) && bad_action.contains("syscalls[0]: unknown action"));

    let missing = dir.path().join("missing.json");
    let not_found = message(&missing);
    assert!(
        not_found.contains(&missing.display().to_string()),
        "{not_found}"
    );
    assert!(matches!(
        filters(&SeccompMode::Profile(missing), DEFAULT_CAPS),
        Err(SeccompError::Read { .. })
    ));

    std::fs::write(&path, vec![b' '; MAX_PROFILE_BYTES as usize + 1]).unwrap();
    let too_big = message(&path);
    assert!(too_big.contains(&shown) && too_big.contains("larger than"));
}
