//! The compiled filters checked against the profile's meaning without installing them: a
//! small classic-BPF interpreter runs them the way `seccomp_run_filters` combines a stack,
//! and a reference written straight from the profile says what each call should get.

use oci_spec::runtime::Capability;

use super::*;
use crate::sandbox::capabilities::DEFAULT as DEFAULT_CAPS;
use crate::sandbox::seccomp::profile::Profile;
use crate::sandbox::seccomp::DEFAULT_PROFILE;

const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// `struct seccomp_data` as the filter sees it.
#[derive(Debug, Clone, Copy)]
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl Data {
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => 0,
            16..=60 if offset.is_multiple_of(4) => {
                let arg = self.args[((offset - 16) / 8) as usize];
                // Little-endian: the low half comes first.
                if (offset - 16).is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load from offset {offset}"),
        }
    }
}

/// Run one classic BPF program (the instructions seccompiler and `enosys_above` emit).
fn run(program: &[sock_filter], data: &Data) -> u32 {
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let insn = &program[pc];
        let jump = |taken: bool| 1 + usize::from(if taken { insn.jt } else { insn.jf });
        pc += match insn.code {
            0x20 => {
                a = data.word(insn.k);
                1
            }
            0x54 => {
                a &= insn.k;
                1
            }
            0x05 => 1 + insn.k as usize,
            0x15 => jump(a == insn.k),
            0x25 => jump(a > insn.k),
            0x35 => jump(a >= insn.k),
            0x45 => jump(a & insn.k != 0),
            0x06 => return insn.k,
            code => panic!("opcode {code:#x} at {pc}"),
        };
    }
}

/// The kernel's combination of a filter stack (`programs` in install order).
fn kernel(programs: &[BpfProgram], data: &Data) -> u32 {
    let action_only = |ret: u32| (ret & 0xffff_0000) as i32;
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for program in programs.iter().rev() {
        let current = run(program, data);
        if action_only(current) < action_only(ret) {
            ret = current;
        }
    }
    ret
}

fn ret(action: Action) -> u32 {
    u32::from(action.to_seccompiler())
}

/// What the profile gives `data`, written from the profile (not from the filters).
fn reference(profile: &Profile, host: &Host, host_arch: u32, data: &Data) -> Action {
    if data.arch != host_arch {
        return Action::KillProcess;
    }
    let default = Action::parse(&profile.default_action, profile.default_errno_ret).unwrap();
    let mut last_known = None;
    // Actions in order of first appearance, and the matching ones.
    let (mut order, mut matched): (Vec<Action>, Vec<Action>) = (vec![], vec![]);
    for entry in &profile.syscalls {
        let names = if entry.name.is_empty() {
            entry.names.clone()
        } else {
            vec![entry.name.clone()]
        };
        let numbers: Vec<i64> = names.iter().filter_map(|n| syscall_number(n)).collect();
        last_known = last_known.max(numbers.iter().copied().max());
        let action = Action::parse(&entry.action, entry.errno_ret).unwrap();
        let conds: Vec<Cond> = entry.args.iter().map(|a| Cond::parse(a).unwrap()).collect();
        if action == default || !host.applies(entry).unwrap() || numbers.is_empty() {
            continue;
        }
        if !order.contains(&action) {
            order.push(action);
        }
        let holds = |c: &Cond| {
            let (full, low) = (
                data.args[c.index as usize],
                data.args[c.index as usize] as u32,
            );
            if c.value > u64::from(u32::MAX) {
                c.holds(full)
            } else if action == Action::Allow {
                c.holds(full) && c.holds(u64::from(low))
            } else {
                c.holds(full) || c.holds(u64::from(low))
            }
        };
        if numbers.contains(&i64::from(data.nr)) && conds.iter().all(holds) {
            matched.push(action);
        }
    }
    if matched.is_empty() {
        let above = last_known.is_some_and(|last| i64::from(data.nr) > last);
        if matches!(default, Action::Errno(_)) && above && data.nr & X32_SYSCALL_BIT == 0 {
            return Action::Errno(libc::ENOSYS as u16);
        }
        return default;
    }
    let strictest = matched.iter().map(|a| a.rank()).min().unwrap();
    // Among equals, the action whose filter was installed last (appears last).
    *order
        .iter()
        .rev()
        .find(|a| a.rank() == strictest && matched.contains(a))
        .unwrap()
}

/// Every syscall number up to past the profile's last, x32 ones, and for the syscalls
/// with conditions, argument values around each condition's values (with high bits too).
fn calls(profile: &Profile, host_arch: u32) -> Vec<Data> {
    let mut values = vec![0u64, 1, u64::MAX, 1 << 32, u64::from(u32::MAX)];
    let mut conditional = Vec::new();
    for entry in &profile.syscalls {
        for arg in &entry.args {
            for v in [arg.value, arg.value_two] {
                values.extend([v, v.wrapping_sub(1), v.wrapping_add(1), v | 1 << 32]);
                values.extend((0..64).map(|bit| v & (1 << bit)).filter(|b| *b != 0));
            }
        }
        if !entry.args.is_empty() {
            let names = entry.names.iter().chain(std::iter::once(&entry.name));
            conditional.extend(names.filter_map(|n| syscall_number(n)));
        }
    }
    values.sort_unstable();
    values.dedup();
    let mut calls = Vec::new();
    let blank = Data {
        nr: 0,
        arch: host_arch,
        args: [0; 6],
    };
    for nr in (0..520).chain([X32_SYSCALL_BIT, X32_SYSCALL_BIT | 1, u32::MAX]) {
        calls.push(Data { nr, ..blank });
        calls.push(Data {
            nr,
            args: [u64::MAX; 6],
            ..blank
        });
        if conditional.contains(&i64::from(nr)) {
            for index in 0..6 {
                for value in &values {
                    let mut args = [0; 6];
                    args[index] = *value;
                    calls.push(Data { nr, args, ..blank });
                }
            }
        }
    }
    calls
}

fn host(caps: &[Capability]) -> Host {
    Host::new(HOST_ARCH.unwrap().1, caps, Some((6, 18, 0)))
}

fn compiled(profile: &Profile, host: &Host) -> Vec<BpfProgram> {
    compile(profile, host, HOST_ARCH.unwrap().0)
        .unwrap()
        .expect("a profile with rules gives filters")
}

/// Check every call of [`calls`] against [`reference`]; returns how many were checked.
fn check_all(profile: &Profile, host: &Host) -> usize {
    let programs = compiled(profile, host);
    // The architecture every filter accepts is in its second instruction.
    let host_arch = programs[0][1].k;
    for program in &programs {
        assert!(program.len() < MAX_PROGRAM_LEN);
        assert_eq!(program[1].k, host_arch);
    }
    let calls = calls(profile, host_arch);
    for data in &calls {
        let want = reference(profile, host, host_arch, data);
        assert_eq!(
            kernel(&programs, data),
            ret(want),
            "{data:?} should get {want:?} (caps {:?})",
            host.caps
        );
        let foreign = Data {
            arch: AUDIT_ARCH_I386,
            ..*data
        };
        assert_eq!(kernel(&programs, &foreign), ret(Action::KillProcess));
    }
    calls.len()
}

fn default_profile() -> Profile {
    DEFAULT_PROFILE.parse().unwrap()
}

fn nr(name: &str) -> u32 {
    syscall_number(name).unwrap() as u32
}

#[test]
fn default_profile_gives_each_call_the_profile_result() {
    let profile = default_profile();
    let mut with_admin = DEFAULT_CAPS.to_vec();
    with_admin.push(Capability::SysAdmin);
    let all: Vec<Capability> = serde_json::from_str(
        r#"["CAP_AUDIT_CONTROL","CAP_AUDIT_READ","CAP_AUDIT_WRITE","CAP_BLOCK_SUSPEND",
        "CAP_BPF","CAP_CHECKPOINT_RESTORE","CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_DAC_READ_SEARCH",
        "CAP_FOWNER","CAP_FSETID","CAP_IPC_LOCK","CAP_IPC_OWNER","CAP_KILL","CAP_LEASE",
        "CAP_LINUX_IMMUTABLE","CAP_MAC_ADMIN","CAP_MAC_OVERRIDE","CAP_MKNOD","CAP_NET_ADMIN",
        "CAP_NET_BIND_SERVICE","CAP_NET_BROADCAST","CAP_NET_RAW","CAP_PERFMON","CAP_SETGID",
        "CAP_SETFCAP","CAP_SETPCAP","CAP_SETUID","CAP_SYS_ADMIN","CAP_SYS_BOOT","CAP_SYS_CHROOT",
        "CAP_SYS_MODULE","CAP_SYS_NICE","CAP_SYS_PACCT","CAP_SYS_PTRACE","CAP_SYS_RAWIO",
        "CAP_SYS_RESOURCE","CAP_SYS_TIME","CAP_SYS_TTY_CONFIG","CAP_SYSLOG","CAP_WAKE_ALARM"]"#,
    )
    .unwrap();
    for caps in [DEFAULT_CAPS, &with_admin, &all, &[]] {
        assert!(check_all(&profile, &host(caps)) > 1000);
    }
}

#[test]
fn default_profile_denies_what_docker_denies() {
    let profile = default_profile();
    let host = host(DEFAULT_CAPS);
    let programs = compiled(&profile, &host);
    // ERRNO(ENOSYS) for clone3, then the main filter.
    assert_eq!(programs.len(), 2);
    let arch = programs[0][1].k;
    let call = |name: &str, args: [u64; 6]| {
        kernel(
            &programs,
            &Data {
                nr: nr(name),
                arch,
                args,
            },
        )
    };
    let eperm = ret(Action::Errno(libc::EPERM as u16));
    let enosys = ret(Action::Errno(libc::ENOSYS as u16));
    let allow = libc::SECCOMP_RET_ALLOW;
    for name in crate::sandbox::seccomp::tests::DENIED_BY_DEFAULT {
        assert_eq!(call(name, [0; 6]), eperm, "{name}");
    }
    for name in [
        "read",
        "write",
        "execve",
        "getpid",
        "ptrace",
        "mseal",
        "statmount",
    ] {
        assert_eq!(call(name, [0; 6]), allow, "{name}");
    }
    assert_eq!(call("clone3", [0; 6]), enosys);
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    assert_eq!(call("clone", [thread, 0, 0, 0, 0, 0]), allow);
    let newuser = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
    assert_eq!(call("clone", [newuser, 0, 0, 0, 0, 0]), eperm);
    assert_eq!(call("socket", [libc::AF_INET as u64, 0, 0, 0, 0, 0]), allow);
    assert_eq!(
        call("socket", [libc::AF_VSOCK as u64, 0, 0, 0, 0, 0]),
        eperm
    );
    let high_inet = libc::AF_INET as u64 | 1 << 32;
    assert_eq!(call("socket", [high_inet, 0, 0, 0, 0, 0]), eperm);
    assert_eq!(call("personality", [0xffff_ffff, 0, 0, 0, 0, 0]), allow);
    assert_eq!(call("personality", [0x0040000, 0, 0, 0, 0, 0]), eperm);
    let last = nr("removexattrat");
    let beyond = |nr: u32| {
        kernel(
            &programs,
            &Data {
                nr,
                arch,
                args: [0; 6],
            },
        )
    };
    assert_eq!(beyond(last + 1), enosys);
    assert_eq!(beyond(X32_SYSCALL_BIT | nr("getpid")), eperm);
}

#[test]
fn sys_admin_lifts_the_mount_and_clone3_rules() {
    let mut caps = DEFAULT_CAPS.to_vec();
    caps.push(Capability::SysAdmin);
    let programs = compiled(&default_profile(), &host(&caps));
    // The ENOSYS entry for clone3 is excluded: only the main filter is left.
    assert_eq!(programs.len(), 1);
    let arch = programs[0][1].k;
    for name in ["mount", "umount2", "unshare", "setns", "clone3"] {
        let data = Data {
            nr: nr(name),
            arch,
            args: [0; 6],
        };
        assert_eq!(kernel(&programs, &data), libc::SECCOMP_RET_ALLOW, "{name}");
    }
}

/// Every operator, conflicting actions, an entry with the default action, a condition that
/// never holds, wide values and capability conditions.
const MIXED: &str = r#"{
  "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
  "syscalls": [
    {"names": ["read", "write", "getpid"], "action": "SCMP_ACT_ALLOW"},
    {"name": "getpid", "action": "SCMP_ACT_ERRNO", "errnoRet": 99,
     "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]},
    {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
    {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 1, "value": 100, "op": "SCMP_CMP_GT"},
              {"index": 1, "value": 200, "op": "SCMP_CMP_LE"}]},
    {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_GE"},
              {"index": 2, "value": 9, "op": "SCMP_CMP_LT"}]},
    {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 2, "value": 4, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0}]},
    {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 3, "value": 8589934592, "op": "SCMP_CMP_EQ"}]},
    {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS",
     "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]},
    {"names": ["kill"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
    {"names": ["getppid", "gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6,
     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GE"}]},
    {"names": ["gettid"], "action": "SCMP_ACT_KILL",
     "args": [{"index": 1, "value": 3, "op": "SCMP_CMP_LT"}]},
    {"names": ["getuid"], "action": "SCMP_ACT_LOG"},
    {"names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 3},
    {"names": ["getegid"], "action": "SCMP_ACT_TRAP"},
    {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    {"names": ["geteuid"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
    {"names": ["dup"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 2}]},
    {"names": ["brk"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["no_such_syscall", "dup3"], "action": "SCMP_ACT_ALLOW",
     "excludes": {"caps": ["SYS_ADMIN"]}}
  ]
}"#;

#[test]
fn mixed_profile_gives_each_call_the_profile_result() {
    let profile: Profile = MIXED.parse().unwrap();
    for caps in [&[][..], &[Capability::SysAdmin]] {
        check_all(&profile, &host(caps));
    }
    // Spot checks of the reference itself.
    let host = host(&[]);
    let arch = compiled(&profile, &host)[0][1].k;
    let at = |name: &str, args: [u64; 6]| {
        reference(
            &profile,
            &host,
            arch,
            &Data {
                nr: nr(name),
                arch,
                args,
            },
        )
    };
    assert_eq!(at("getpid", [7, 0, 0, 0, 0, 0]), Action::Errno(99));
    assert_eq!(at("getpid", [8, 0, 0, 0, 0, 0]), Action::Allow);
    assert_eq!(
        at("socket", [40 | 1 << 32, 0, 0, 0, 0, 0]),
        Action::Errno(13)
    );
    assert_eq!(at("socket", [41 | 1 << 32, 0, 0, 0, 0, 0]), Action::Allow);
    assert_eq!(at("kill", [0, 15, 0, 0, 0, 0]), Action::KillProcess);
    assert_eq!(at("kill", [0, 9, 0, 0, 0, 0]), Action::Allow);
    assert_eq!(
        at("kill", [0, 9 | 1 << 32, 0, 0, 0, 0]),
        Action::KillProcess
    );
    // Both ERRNO entries match: the later one's errno.
    assert_eq!(at("getppid", [1, 0, 0, 0, 0, 0]), Action::Errno(6));
    assert_eq!(at("gettid", [1, 0, 0, 0, 0, 0]), Action::KillThread);
    assert_eq!(at("geteuid", [1, 0, 0, 0, 0, 0]), Action::Errno(13));
    assert_eq!(at("dup", [2, 0, 0, 0, 0, 0]), Action::Errno(13));
    assert_eq!(at("getuid", [0; 6]), Action::Log);
}

#[test]
fn restrictive_rules_under_a_stricter_or_allowing_default() {
    // KILL_PROCESS by default: an ERRNO rule must still give its errno, not the default.
    let kill_default = r#"{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
        {"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3}]}"#;
    // A deny list: ALLOW by default, so no main filter and no ENOSYS prologue.
    let deny_list = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS",
         "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}]}]}"#;
    for text in [kill_default, deny_list] {
        let profile: Profile = text.parse().unwrap();
        check_all(&profile, &host(&[]));
    }
    let profile: Profile = deny_list.parse().unwrap();
    assert_eq!(compiled(&profile, &host(&[])).len(), 2);
}

#[test]
fn an_empty_profile_is_no_seccomp_and_bad_ones_say_why() {
    let arch = HOST_ARCH.unwrap().0;
    let host = host(DEFAULT_CAPS);
    let empty: Profile = "{}".parse().unwrap();
    assert_eq!(compile(&empty, &host, arch), Ok(None));
    let error = |text: &str| compile(&text.parse().unwrap(), &host, arch).unwrap_err();
    assert!(
        error(r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#)
            .contains("defaultAction")
    );
    assert!(error(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#
    )
    .starts_with("syscalls[1]: argument index 6"));
    assert!(error(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_APPROX"}]}]}"#
    )
    .contains("SCMP_CMP_APPROX"));
    assert!(error(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#
    )
    .contains("'name' and 'names'"));
    assert!(error(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
        "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
    )
    .contains("archMap"));
}

#[test]
fn newer_syscalls_have_their_kernel_numbers() {
    for (name, number) in NEWER_SYSCALLS {
        assert_eq!(syscall_number(name), Some(*number), "{name}");
        // Where the `syscalls` crate learned the name since, it must agree.
        if let Ok(sysno) = name.parse::<syscalls::Sysno>() {
            assert_eq!(i64::from(sysno.id()), *number, "{name}");
        }
    }
    assert_eq!(syscall_number("read"), Some(libc::SYS_read));
    assert_eq!(syscall_number("clone3"), Some(libc::SYS_clone3));
    assert_eq!(syscall_number("no_such_syscall"), None);
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(syscall_number("mseal"), Some(462));
        assert_eq!(syscall_number("_llseek"), None);
    }
}

#[test]
fn enosys_prologue_needs_seccompilers_arch_check() {
    let not_seccompiler = vec![insn(BPF_RET_K, libc::SECCOMP_RET_ALLOW, 0, 0); 4];
    assert!(enosys_above(not_seccompiler, 400).is_err());
}
