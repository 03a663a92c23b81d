//! Docker's default capability set and `--cap-add`/`--cap-drop` (moby `oci/caps`).

use oci_spec::runtime::Capability;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    #[error("unknown capability {0:?}: use a name from capabilities(7), like NET_ADMIN or CAP_NET_ADMIN")]
    Unknown(String),
}

/// Docker's default set (moby `oci/caps/defaults.go`).
pub const DEFAULT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability with its name (without `CAP_`) and number, in number order.
pub const ALL: &[(&str, Capability, u32)] = &[
    ("CHOWN", Capability::Chown, 0),
    ("DAC_OVERRIDE", Capability::DacOverride, 1),
    ("DAC_READ_SEARCH", Capability::DacReadSearch, 2),
    ("FOWNER", Capability::Fowner, 3),
    ("FSETID", Capability::Fsetid, 4),
    ("KILL", Capability::Kill, 5),
    ("SETGID", Capability::Setgid, 6),
    ("SETUID", Capability::Setuid, 7),
    ("SETPCAP", Capability::Setpcap, 8),
    ("LINUX_IMMUTABLE", Capability::LinuxImmutable, 9),
    ("NET_BIND_SERVICE", Capability::NetBindService, 10),
    ("NET_BROADCAST", Capability::NetBroadcast, 11),
    ("NET_ADMIN", Capability::NetAdmin, 12),
    ("NET_RAW", Capability::NetRaw, 13),
    ("IPC_LOCK", Capability::IpcLock, 14),
    ("IPC_OWNER", Capability::IpcOwner, 15),
    ("SYS_MODULE", Capability::SysModule, 16),
    ("SYS_RAWIO", Capability::SysRawio, 17),
    ("SYS_CHROOT", Capability::SysChroot, 18),
    ("SYS_PTRACE", Capability::SysPtrace, 19),
    ("SYS_PACCT", Capability::SysPacct, 20),
    ("SYS_ADMIN", Capability::SysAdmin, 21),
    ("SYS_BOOT", Capability::SysBoot, 22),
    ("SYS_NICE", Capability::SysNice, 23),
    ("SYS_RESOURCE", Capability::SysResource, 24),
    ("SYS_TIME", Capability::SysTime, 25),
    ("SYS_TTY_CONFIG", Capability::SysTtyConfig, 26),
    ("MKNOD", Capability::Mknod, 27),
    ("LEASE", Capability::Lease, 28),
    ("AUDIT_WRITE", Capability::AuditWrite, 29),
    ("AUDIT_CONTROL", Capability::AuditControl, 30),
    ("SETFCAP", Capability::Setfcap, 31),
    ("MAC_OVERRIDE", Capability::MacOverride, 32),
    ("MAC_ADMIN", Capability::MacAdmin, 33),
    ("SYSLOG", Capability::Syslog, 34),
    ("WAKE_ALARM", Capability::WakeAlarm, 35),
    ("BLOCK_SUSPEND", Capability::BlockSuspend, 36),
    ("AUDIT_READ", Capability::AuditRead, 37),
    ("PERFMON", Capability::Perfmon, 38),
    ("BPF", Capability::Bpf, 39),
    ("CHECKPOINT_RESTORE", Capability::CheckpointRestore, 40),
];

/// One normalized `--cap-add`/`--cap-drop` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    All,
    One(Capability),
}

/// docker's normalizeCaps: case-insensitive, with or without `CAP_`, `ALL` kept.
fn normalize(names: &[String]) -> Result<Vec<Entry>, CapabilityError> {
    let mut entries = Vec::new();
    for name in names {
        let upper = name.trim().to_ascii_uppercase();
        let entry = if upper == "ALL" {
            Entry::All
        } else {
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            let (_, cap, _) = ALL
                .iter()
                .find(|(n, _, _)| *n == bare)
                .ok_or_else(|| CapabilityError::Unknown(name.clone()))?;
            Entry::One(*cap)
        };
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// The capabilities this kernel knows (`/proc/sys/kernel/cap_last_cap`), all of [`ALL`]
/// when it cannot be read.
fn supported() -> Vec<Capability> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    ALL.iter()
        .filter(|(_, _, n)| *n <= last)
        .map(|(_, cap, _)| *cap)
        .collect()
}

/// The set after `--cap-add` and `--cap-drop`, docker's rules (moby TweakCapabilities):
/// `ALL` in add is every capability but the dropped ones; otherwise `ALL` in drop is
/// exactly the added ones; otherwise the defaults minus the dropped plus the added.
pub fn effective(add: &[String], drop: &[String]) -> Result<Vec<Capability>, CapabilityError> {
    tweak(add, drop, &supported())
}

fn tweak(
    add: &[String],
    drop: &[String],
    all: &[Capability],
) -> Result<Vec<Capability>, CapabilityError> {
    let add = normalize(add)?;
    let drop = normalize(drop)?;
    let dropped = |cap: &Capability| drop.contains(&Entry::One(*cap));
    let added = add.iter().filter_map(|e| match e {
        Entry::One(cap) => Some(*cap),
        Entry::All => None,
    });
    let mut caps: Vec<Capability> = if add.contains(&Entry::All) {
        all.iter().filter(|c| !dropped(c)).copied().collect()
    } else if drop.contains(&Entry::All) {
        added.collect()
    } else {
        DEFAULT
            .iter()
            .filter(|c| !dropped(c))
            .copied()
            .chain(added)
            .collect()
    };
    let mut seen = Vec::with_capacity(caps.len());
    caps.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn eff(add: &[&str], drop: &[&str]) -> Result<Vec<Capability>, CapabilityError> {
        tweak(
            &names(add),
            &names(drop),
            &ALL.iter().map(|(_, c, _)| *c).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn table_matches_oci_names() {
        for (name, cap, _) in ALL {
            let json = serde_json::to_string(cap).unwrap();
            assert_eq!(json, format!("\"CAP_{name}\""));
        }
        assert_eq!(ALL.len(), 41);
    }

    #[test]
    fn defaults_without_flags() {
        assert_eq!(eff(&[], &[]).unwrap(), DEFAULT);
        assert_eq!(effective(&[], &[]).unwrap(), DEFAULT);
    }

    #[test]
    fn add_and_drop_by_any_spelling() {
        let caps = eff(
            &["net_admin", "CAP_SYS_PTRACE", "Cap_Chown"],
            &["cap_net_raw", "MKNOD"],
        )
        .unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(caps.contains(&Capability::SysPtrace));
        assert!(caps.contains(&Capability::Chown));
        assert!(!caps.contains(&Capability::NetRaw));
        assert!(!caps.contains(&Capability::Mknod));
        assert_eq!(caps.len(), DEFAULT.len() - 2 + 2);
    }

    #[test]
    fn add_all_is_everything_but_the_dropped() {
        let caps = eff(&["ALL"], &["sys_admin"]).unwrap();
        assert_eq!(caps.len(), ALL.len() - 1);
        assert!(!caps.contains(&Capability::SysAdmin));
        assert_eq!(eff(&["all"], &[]).unwrap().len(), ALL.len());
    }

    #[test]
    fn drop_all_keeps_only_the_added() {
        assert_eq!(eff(&[], &["ALL"]).unwrap(), Vec::<Capability>::new());
        assert_eq!(
            eff(&["chown", "CHOWN", "kill"], &["all"]).unwrap(),
            [Capability::Chown, Capability::Kill]
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = eff(&["FLY"], &[]).unwrap_err();
        assert!(err.to_string().contains("\"FLY\""), "{err}");
        assert!(eff(&[], &["CAP_"]).is_err());
        assert!(eff(&[], &["CAP_ALL"]).is_err());
    }

    #[test]
    fn kernel_support_limits_all() {
        let supported = supported();
        assert!(supported.len() >= DEFAULT.len());
        assert!(supported.contains(&Capability::Chown));
    }
}
