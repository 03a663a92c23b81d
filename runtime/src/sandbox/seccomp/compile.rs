//! A parsed profile -> seccompiler filters, in the order to install them.
//!
//! # How several filters make one profile
//!
//! A seccompiler [`SeccompFilter`] has one action for the rules that match and one for the
//! rest, while a profile gives each entry its own action. So the profile becomes a stack of
//! filters, and the kernel combines them: every installed filter runs on every syscall, the
//! most restrictive action wins (kill-process, kill-thread, trap, errno, trace, log, allow),
//! and between two results of the same kind (errno and errno) the most recently installed
//! filter's data (its errno) wins (`seccomp_run_filters`).
//!
//! - The *main* filter matches every rule of every applicable entry, whatever its action,
//!   and returns ALLOW for it; anything else gets the profile's default action. It is left
//!   out when the default action is ALLOW.
//! - One *group* filter per other action (ERRNO(38), KILL_PROCESS, LOG, ...): it matches the
//!   rules with that action, returns that action for them and ALLOW for everything else.
//!
//! For a syscall and its arguments:
//! - no rule matches: main says DEFAULT, every group says ALLOW -> DEFAULT;
//! - only ALLOW rules match: main and groups say ALLOW -> ALLOW;
//! - rules of groups G1..Gn match: main says ALLOW, Gi says its action -> the most
//!   restrictive of them. So a rule that returns ERRNO(ENOSYS) for clone3 gets ENOSYS even
//!   though the default is ERRNO(EPERM): the main filter lets clone3 through and never
//!   competes with the group. A syscall both allowed and denied by matching entries is
//!   denied; two ERRNO groups matching one call give the errno of the group whose action
//!   appears later in the profile (it is installed later).
//!
//! Since the main filter never returns a restrictive action for a call a group matches, the
//! order between main and groups does not change any result; the groups go first and the
//! main filter last, so that a profile that denies `prctl` or `seccomp` itself can still be
//! installed (each later install needs both). Entries whose action is the default action
//! are dropped, as runc does (libseccomp refuses them).
//!
//! A profile cannot see how wide an argument is: the kernel truncates an `int` argument to
//! 32 bits, so `socket(AF_VSOCK | 1 << 32, ...)` creates an `AF_VSOCK` socket while a 64-bit
//! comparison `arg0 != AF_VSOCK` lets it through. So a condition of an ALLOW rule holds only
//! when it holds both on the 64-bit value and on its low 32 bits, and a condition of a
//! restrictive rule holds when it holds on either (values above `u32::MAX` are compared on
//! 64 bits). With values below 2^32 each of those is one seccompiler comparison:
//! `EQ`/`LT`/`LE` on 64 bits and `NE`/`GT`/`GE` on 32 for ALLOW rules, the other way round
//! for the rest; `MASKED_EQ` with a 32-bit mask is the same on both.
//!
//! Architectures: seccompiler filters start by killing the process for any audit
//! architecture but the host's. So i386 syscalls (`int 0x80`) of an x86_64 container are
//! killed, never run unfiltered (Docker filters them with the same rules; farm does not run
//! 32-bit x86 programs under seccomp). x32 syscalls carry the x86_64 audit architecture with
//! bit 30 set in their number, so they match no rule and get the default action.
//!
//! Syscalls newer than the profile: as runc does, when the default action is ERRNO, a
//! syscall number above every number the profile names (and known here) returns ENOSYS
//! instead, so that libcs fall back to older syscalls as they do on older kernels (glibc's
//! `faccessat2` or `clone3`, say). This is a short prologue farm adds to the main filter.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::profile::{Action, Cond, Host, Op, Profile};

/// Host architecture: seccompiler's target and Go's name for it (as profiles spell it).
#[cfg(target_arch = "x86_64")]
pub const HOST_ARCH: Option<(TargetArch, &str)> = Some((TargetArch::x86_64, "amd64"));
#[cfg(target_arch = "aarch64")]
pub const HOST_ARCH: Option<(TargetArch, &str)> = Some((TargetArch::aarch64, "arm64"));
#[cfg(target_arch = "riscv64")]
pub const HOST_ARCH: Option<(TargetArch, &str)> = Some((TargetArch::riscv64, "riscv64"));
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
pub const HOST_ARCH: Option<(TargetArch, &str)> = None;

/// Syscalls newer than the tables of the `syscalls` crate, with their numbers in the kernel's
/// `arch/x86/entry/syscalls/syscall_64.tbl` and `scripts/syscall.tbl` (Linux 6.13).
#[cfg(target_arch = "x86_64")]
const NEWER_SYSCALLS: &[(&str, i64)] = &[
    ("uretprobe", 335),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
];
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const NEWER_SYSCALLS: &[(&str, i64)] = &[
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const NEWER_SYSCALLS: &[(&str, i64)] = &[];

/// The host's number for a syscall name; `None` for names this architecture lacks
/// (`_llseek`, `chown32`, `arm_fadvise64_64` on x86_64, ...).
pub fn syscall_number(name: &str) -> Option<i64> {
    match name.parse::<syscalls::Sysno>() {
        Ok(sysno) => Some(i64::from(sysno.id())),
        Err(()) => NEWER_SYSCALLS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, nr)| *nr),
    }
}

/// Bit 30 of the syscall number marks the x32 ABI on x86_64 (`__X32_SYSCALL_BIT`).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// seccompiler refuses programs of this length or more (the kernel's `BPF_MAXINSNS` is 4096).
const MAX_PROGRAM_LEN: usize = 4096;

/// One name of one applicable entry.
#[derive(Debug, Clone)]
struct Rule {
    nr: i64,
    action: Action,
    /// All must hold; empty for "always".
    conds: Vec<Cond>,
}

/// The filters for `profile` on `host`, in install order; `None` when the profile is empty
/// (no `defaultAction` and no `syscalls`), which Docker takes as "no seccomp".
pub fn compile(
    profile: &Profile,
    host: &Host,
    arch: TargetArch,
) -> Result<Option<Vec<BpfProgram>>, String> {
    if profile.default_action.is_empty() && profile.syscalls.is_empty() {
        return Ok(None);
    }
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err("both 'architectures' and 'archMap' are given: use one".to_string());
    }
    if profile.default_action.is_empty() {
        return Err("'defaultAction' is missing".to_string());
    }
    let default = Action::parse(&profile.default_action, profile.default_errno_ret)
        .map_err(|e| format!("defaultAction: {e}"))?;

    let mut rules = Vec::new();
    let mut last_known = None;
    for (i, entry) in profile.syscalls.iter().enumerate() {
        let at = |e: String| format!("syscalls[{i}]: {e}");
        if !entry.name.is_empty() && !entry.names.is_empty() {
            return Err(at("both 'name' and 'names' are given: use one".to_string()));
        }
        let names = if entry.name.is_empty() {
            &entry.names[..]
        } else {
            std::slice::from_ref(&entry.name)
        };
        let action = Action::parse(&entry.action, entry.errno_ret).map_err(at)?;
        let conds = entry
            .args
            .iter()
            .map(Cond::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(at)?;
        let numbers: Vec<i64> = names.iter().filter_map(|n| syscall_number(n)).collect();
        last_known = last_known.max(numbers.iter().copied().max());
        // A MASKED_EQ whose datum has bits outside its mask never holds (as in libseccomp).
        let never = conds
            .iter()
            .any(|c| c.op == Op::MaskedEq && c.value_two & !c.value != 0);
        if action == default || never || !host.applies(entry).map_err(at)? {
            continue;
        }
        rules.extend(numbers.into_iter().map(|nr| Rule {
            nr,
            action,
            conds: conds.clone(),
        }));
    }

    let mut groups: Vec<Action> = Vec::new();
    for rule in &rules {
        if rule.action != Action::Allow && !groups.contains(&rule.action) {
            groups.push(rule.action);
        }
    }
    let mut programs = Vec::with_capacity(groups.len() + 1);
    for action in groups {
        let matching = rules.iter().filter(|r| r.action == action);
        programs.push(program(matching, Action::Allow, action, arch)?);
    }
    if default != Action::Allow {
        let mut main = program(rules.iter(), default, Action::Allow, arch)?;
        if let (Action::Errno(_), Some(last)) = (default, last_known) {
            let last = u32::try_from(last).map_err(|_| format!("syscall number {last}"))?;
            main = enosys_above(main, last)?;
        }
        programs.push(main);
    }
    Ok(Some(programs))
}

/// One seccompiler filter: `on_match` for the rules, `otherwise` for the rest.
fn program<'a>(
    rules: impl Iterator<Item = &'a Rule>,
    otherwise: Action,
    on_match: Action,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    // `None`: matched whatever the arguments (one entry names it without conditions).
    let mut by_nr: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for rule in rules {
        let slot = by_nr.entry(rule.nr).or_insert_with(|| Some(Vec::new()));
        if rule.conds.is_empty() {
            *slot = None;
        } else if let Some(list) = slot {
            let strict = rule.action == Action::Allow;
            let conditions = rule
                .conds
                .iter()
                .map(|c| condition(c, strict))
                .collect::<Result<Vec<_>, _>>()?;
            list.push(SeccompRule::new(conditions).map_err(|e| e.to_string())?);
        }
    }
    let by_nr = by_nr
        .into_iter()
        .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
        .collect();
    let filter = SeccompFilter::new(
        by_nr,
        otherwise.to_seccompiler(),
        on_match.to_seccompiler(),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// The seccompiler comparison for `cond` in a rule that allows (`strict`: it must hold on
/// both the 64-bit argument and its low 32 bits) or restricts (on either); see the module
/// documentation.
fn condition(cond: &Cond, strict: bool) -> Result<SeccompCondition, String> {
    use SeccompCmpArgLen::{Dword, Qword};
    let wide = cond.value > u64::from(u32::MAX);
    let (op, value) = match cond.op {
        Op::Ne => (SeccompCmpOp::Ne, cond.value),
        Op::Lt => (SeccompCmpOp::Lt, cond.value),
        Op::Le => (SeccompCmpOp::Le, cond.value),
        Op::Eq => (SeccompCmpOp::Eq, cond.value),
        Op::Ge => (SeccompCmpOp::Ge, cond.value),
        Op::Gt => (SeccompCmpOp::Gt, cond.value),
        Op::MaskedEq => (SeccompCmpOp::MaskedEq(cond.value), cond.value_two),
    };
    let len = match (cond.op, strict) {
        _ if wide => Qword,
        (Op::MaskedEq, _) => Dword,
        (Op::Eq | Op::Lt | Op::Le, true) | (Op::Ne | Op::Gt | Op::Ge, false) => Qword,
        (Op::Eq | Op::Lt | Op::Le, false) | (Op::Ne | Op::Gt | Op::Ge, true) => Dword,
    };
    SeccompCondition::new(cond.index, len, op, value).map_err(|e| e.to_string())
}

// Classic BPF opcodes (linux/bpf_common.h).
/// `BPF_LD | BPF_W | BPF_ABS`
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`
const BPF_JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`
const BPF_JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JSET | BPF_K`
const BPF_JMP_JSET_K: u16 = 0x45;
/// `BPF_RET | BPF_K`
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn insn(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Add to a seccompiler program, right after its architecture check, a prologue returning
/// ENOSYS for syscall numbers above `last_known` (other than x32 ones).
fn enosys_above(mut program: BpfProgram, last_known: u32) -> Result<BpfProgram, String> {
    // seccompiler opens every program with: load arch; jeq ARCH, +1, +0; ret KILL_PROCESS.
    let arch_check = program.len() > 3
        && program[0] == insn(BPF_LD_W_ABS, DATA_ARCH, 0, 0)
        && program[1].code == BPF_JMP_JEQ_K
        && (program[1].jt, program[1].jf) == (1, 0)
        && program[2] == insn(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0);
    if !arch_check {
        return Err("seccompiler's program does not open with its architecture check".into());
    }
    let prologue = [
        insn(BPF_LD_W_ABS, DATA_NR, 0, 0),
        // x32: on to the rules (which deny it).
        insn(BPF_JMP_JSET_K, X32_SYSCALL_BIT, 2, 0),
        insn(BPF_JMP_JGT_K, last_known, 0, 1),
        insn(
            BPF_RET_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            0,
            0,
        ),
    ];
    program.splice(3..3, prologue);
    if program.len() >= MAX_PROGRAM_LEN {
        return Err(format!(
            "the filter has {} BPF instructions, more than the kernel takes",
            program.len()
        ));
    }
    Ok(program)
}

#[cfg(test)]
mod tests;
