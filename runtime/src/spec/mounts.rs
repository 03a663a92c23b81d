//! The container's mounts: docker's defaults (moby `oci/defaults.go`), its /etc files,
//! `--tmpfs` and binds. Every target is made inside the rootfs before libcontainer runs:
//! the kernel filesystems' targets are made real folders (an image's /proc -> / symlink is
//! replaced, never mounted through), user targets follow symlinks only inside the root
//! and are given to libcontainer as the resolved in-root path.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::files;
use super::root::{clean, is_under, Root};
use super::SpecError;
use crate::options::{BindMount, NetworkMode, RunOptions};

/// docker's /dev/shm size when `--shm-size` is not given.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Targets of the kernel filesystems, made real folders in the rootfs.
const KERNEL_DIRS: &[&str] = &["/proc", "/dev", "/sys"];

/// Destinations a user mount may not take: they would hide the container's kernel
/// filesystems (and /proc is refused entirely).
const RESERVED: &[&str] = &["/dev", "/sys", "/dev/pts", "/dev/mqueue", "/sys/fs/cgroup"];

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some(typ.to_owned()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// docker's default mounts, in order; `/dev/shm` left out when a user mount takes it.
fn defaults(network: NetworkMode, shm_size: u64, with_shm: bool) -> Vec<Mount> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        match network {
            NetworkMode::None | NetworkMode::Internet => mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
            // A user namespace may mount sysfs only with a network namespace it owns: with
            // the host's network, the host's /sys is bound read-only (as runc does).
            NetworkMode::Host => mount(
                "/sys",
                "bind",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro", "rro"],
            ),
        },
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    if with_shm {
        let size = format!("size={shm_size}");
        mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &size],
        ));
    }
    mounts
}

/// A user mount's target, checked and made clean: absolute, not "/", not /proc or below,
/// not one of the kernel filesystems' own mount points.
fn check_target(target: &str, kind: &str) -> Result<String, SpecError> {
    let invalid =
        |why: &str| SpecError::Invalid(format!("invalid {kind} mount target {target:?}: {why}"));
    let cleaned = clean(target).ok_or_else(|| invalid("it must be an absolute path"))?;
    check_destination(&cleaned).map_err(|why| invalid(&why))?;
    Ok(cleaned)
}

/// Where a user mount may go (a clean, possibly resolved, destination).
fn check_destination(destination: &str) -> Result<(), String> {
    if destination == "/" {
        return Err("a mount cannot replace the root filesystem".to_owned());
    }
    if is_under(destination, "/proc") {
        return Err(format!("{destination} is inside /proc"));
    }
    if RESERVED.contains(&destination) {
        return Err(format!(
            "{destination} is a kernel filesystem of the container"
        ));
    }
    Ok(())
}

/// Merge `--tmpfs` options over docker's defaults (noexec, nosuid, nodev), checking every
/// name and normalizing `size=` to bytes.
pub(crate) fn tmpfs_options(options: &str) -> Result<Vec<String>, SpecError> {
    const FLAGS: &[&str] = &[
        "rw",
        "ro",
        "exec",
        "noexec",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "sync",
        "async",
        "dirsync",
        "atime",
        "noatime",
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
    ];
    let invalid = |option: &str, why: &str| {
        SpecError::Invalid(format!("invalid tmpfs option {option:?}: {why}"))
    };
    let mut merged: Vec<String> = ["noexec", "nosuid", "nodev"].map(str::to_owned).to_vec();
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let normalized = match (name, value) {
            (flag, None) if FLAGS.contains(&flag) => {
                // A flag replaces its opposite (exec over the default noexec).
                let opposite = flag.strip_prefix("no").map_or_else(|| format!("no{flag}"), str::to_owned);
                merged.retain(|o| *o != opposite && o != flag);
                if flag == "rw" || flag == "ro" {
                    merged.retain(|o| o != "rw" && o != "ro");
                }
                merged.push(flag.to_owned());
                continue;
            }
            ("size", Some(value)) => {
                format!("size={}", parse_size(value).ok_or_else(|| invalid(option, "use a size like 64m, 1g or 50%"))?)
            }
            ("nr_inodes" | "nr_blocks", Some(value)) => {
                let digits = value.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(option, "use a number like 10000 or 10k"));
                }
                option.to_owned()
            }
            ("mode", Some(value)) => {
                if value.is_empty() || value.len() > 4 || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    return Err(invalid(option, "use an octal mode like 1777 or 755"));
                }
                option.to_owned()
            }
            ("uid" | "gid", Some(value)) => {
                let ok = !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && value.parse::<u32>().is_ok_and(|id| id < crate::sandbox::userns::RANGE_SIZE);
                if !ok {
                    return Err(invalid(option, "use a container id from 0 to 65535"));
                }
                option.to_owned()
            }
            ("huge", Some("never" | "always" | "within_size" | "advise")) => option.to_owned(),
            ("huge", Some(_)) => {
                return Err(invalid(option, "use never, always, within_size or advise"))
            }
            _ => {
                return Err(invalid(
                    option,
                    "unknown option: use size, mode, uid, gid, nr_inodes, nr_blocks, huge or a flag like ro, exec, nosuid",
                ))
            }
        };
        let key = format!("{name}=");
        merged.retain(|o| !o.starts_with(&key));
        merged.push(normalized);
    }
    Ok(merged)
}

/// A size as docker takes it (`64m`, `64MiB`, `1.5g`, `1024`, `50%`), in bytes (or the
/// percentage as is).
fn parse_size(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(percent) = value.strip_suffix('%') {
        return (!percent.is_empty() && percent.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.to_owned());
    }
    let lower = value.to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') && number.len() == 1 {
        return None;
    }
    let bytes = if number.contains('.') {
        let n: f64 = number.parse().ok()?;
        let b = n * multiplier as f64;
        (b.is_finite() && b < u64::MAX as f64).then_some(b as u64)?
    } else {
        number.parse::<u64>().ok()?.checked_mul(multiplier)?
    };
    Some(bytes.to_string())
}

/// The user's mounts, parsed but not yet placed.
enum UserMount<'a> {
    Tmpfs(Vec<String>),
    Bind(&'a BindMount, bool),
}

/// Every mount of the container, in order, with its targets made in the rootfs.
pub(crate) fn build(
    root: &Root,
    options: &RunOptions,
    files_dir: &Path,
) -> Result<Vec<Mount>, SpecError> {
    // Parse and check everything before changing the rootfs.
    let mut user = Vec::new();
    for tmpfs in &options.tmpfs {
        let target = check_target(&tmpfs.target, "tmpfs")?;
        user.push((target, UserMount::Tmpfs(tmpfs_options(&tmpfs.options)?)));
    }
    for bind in &options.binds {
        let target = check_target(&bind.target, "bind")?;
        if !bind.source.is_absolute() {
            return Err(SpecError::Invalid(format!(
                "invalid bind mount source {:?}: it must be an absolute path on the host",
                bind.source
            )));
        }
        let is_dir = match std::fs::metadata(&bind.source) {
            Ok(meta) => meta.is_dir(),
            Err(e) => {
                return Err(SpecError::Invalid(format!(
                    "bind source path does not exist: {} ({e}): create it first",
                    bind.source.display()
                )))
            }
        };
        user.push((target, UserMount::Bind(bind, is_dir)));
    }

    for dir in KERNEL_DIRS {
        root.make_real_dirs(dir).map_err(|source| SpecError::Io {
            context: format!("making {dir} a folder in the root filesystem"),
            source,
        })?;
    }

    // Place the user mounts: resolved inside the root, except below /dev and /sys, which
    // are the container's own kernel filesystems by then.
    let mut placed: Vec<(String, Mount)> = Vec::new();
    let user_targets: Vec<String> = user.iter().map(|(target, _)| target.clone()).collect();
    for (target, user_mount) in user {
        let is_dir = match &user_mount {
            UserMount::Tmpfs(_) => true,
            UserMount::Bind(_, is_dir) => *is_dir,
        };
        let destination = if is_under(&target, "/dev") || is_under(&target, "/sys") {
            target.clone()
        } else {
            let resolved = if is_dir {
                root.make_dirs(&target)
                    .and_then(|fd| root.path_of(std::os::fd::AsFd::as_fd(&fd)))
            } else {
                root.make_file_following(&target)
            };
            let resolved = resolved.map_err(|source| SpecError::Io {
                context: format!("making the mount target {target} in the root filesystem"),
                source,
            })?;
            check_destination(&resolved).map_err(|why| {
                SpecError::Invalid(format!(
                    "invalid mount target {target:?}: it resolves to {resolved} in the image: {why}"
                ))
            })?;
            resolved
        };
        if placed.iter().any(|(d, _)| *d == destination) {
            return Err(SpecError::Invalid(format!(
                "duplicate mount point: {destination}"
            )));
        }
        let m = match user_mount {
            UserMount::Tmpfs(opts) => {
                let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
                mount(&destination, "tmpfs", "tmpfs", &opts)
            }
            UserMount::Bind(bind, _) => {
                let opts: &[&str] = if bind.read_only {
                    &["rbind", "ro", "rro"]
                } else {
                    &["rbind"]
                };
                let mut m = mount(&destination, "bind", "", opts);
                m.set_source(Some(bind.source.clone()));
                m
            }
        };
        placed.push((destination, m));
    }

    // The container's /etc files, unless a user mount replaces them.
    let mut etc = Vec::new();
    for (name, target) in files::FILES {
        // Taken by a user mount, by its given or its resolved target.
        if user_targets.iter().any(|t| t == target) || placed.iter().any(|(d, _)| d == target) {
            continue;
        }
        let destination = root
            .make_file_replacing(target)
            .map_err(|source| SpecError::Io {
                context: format!("making {target} in the root filesystem"),
                source,
            })?;
        if ["/proc", "/sys", "/dev"]
            .iter()
            .any(|d| is_under(&destination, d))
        {
            return Err(SpecError::Invalid(format!(
                "{target} resolves to {destination} in the image, inside a kernel filesystem: fix the image"
            )));
        }
        if placed.iter().any(|(d, _)| *d == destination) {
            continue;
        }
        let source = files_dir.join(name);
        let opts: &[&str] = if options.read_only {
            &["rbind", "ro"]
        } else {
            &["rbind", "rw"]
        };
        let mut m = mount(&destination, "bind", "", opts);
        m.set_source(Some(source));
        etc.push((destination, m));
    }

    let with_shm = !user_targets.iter().any(|t| t == "/dev/shm");
    let shm_size = options
        .resources
        .shm_size
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_SHM_SIZE);
    let mut mounts = defaults(options.network, shm_size, with_shm);
    // Parents before children, as docker sorts them; the /etc files first among equals.
    let mut rest: Vec<(String, Mount)> = etc.into_iter().chain(placed).collect();
    rest.sort_by_key(|(d, _)| d.split('/').filter(|c| !c.is_empty()).count());
    mounts.extend(rest.into_iter().map(|(_, m)| m));
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt};

    use super::*;
    use crate::options::TmpfsMount;

    #[test]
    fn tmpfs_defaults_and_overrides() {
        assert_eq!(tmpfs_options("").unwrap(), ["noexec", "nosuid", "nodev"]);
        assert_eq!(
            tmpfs_options("exec,size=64m,mode=1777").unwrap(),
            ["nosuid", "nodev", "exec", "size=67108864", "mode=1777"]
        );
        assert_eq!(
            tmpfs_options("ro,rw,size=1k,size=2K,uid=1000,gid=1000,suid,dev").unwrap(),
            [
                "noexec",
                "rw",
                "size=2048",
                "uid=1000",
                "gid=1000",
                "suid",
                "dev"
            ]
        );
    }

    #[test]
    fn tmpfs_sizes_are_lenient() {
        for (given, bytes) in [
            ("65536k", "67108864"),
            ("64m", "67108864"),
            ("64M", "67108864"),
            ("64MiB", "67108864"),
            ("64mb", "67108864"),
            ("1g", "1073741824"),
            ("1.5g", "1610612736"),
            ("1024", "1024"),
            ("50%", "50%"),
        ] {
            assert_eq!(parse_size(given).as_deref(), Some(bytes), "{given}");
        }
        for bad in ["", "m", "-1m", "1x", "1e9", "%", "99999999999999999999"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn tmpfs_unknown_options_are_refused() {
        for bad in [
            "bogus",
            "size=lots",
            "mode=999",
            "uid=65536",
            "uid=-1",
            "huge=maybe",
            "tmpcopyup",
            "context=x",
            "bind",
            "nr_inodes=x",
        ] {
            let err = tmpfs_options(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid tmpfs option"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn targets_are_checked() {
        assert_eq!(check_target("/data/./x/", "tmpfs").unwrap(), "/data/x");
        assert_eq!(check_target("/dev/shm", "tmpfs").unwrap(), "/dev/shm");
        for bad in [
            "relative",
            "/",
            "/..",
            "/proc",
            "/proc/sys",
            "/x/../proc/1",
            "/dev",
            "/sys",
            "/sys/fs/cgroup",
            "",
        ] {
            assert!(check_target(bad, "tmpfs").is_err(), "{bad}");
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        root: Root,
    }

    impl Fixture {
        fn new(setup: impl FnOnce(&Path)) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let rootfs = dir.path().join("rootfs");
            std::fs::create_dir_all(&rootfs).unwrap();
            setup(&rootfs);
            let root = Root::open(&rootfs, 100_000, 100_000).unwrap();
            Fixture { dir, root }
        }

        fn rootfs(&self) -> PathBuf {
            self.dir.path().join("rootfs")
        }

        fn build(&self, options: &RunOptions) -> Result<Vec<Mount>, SpecError> {
            build(&self.root, options, &self.dir.path().join("files"))
        }
    }

    fn destinations(mounts: &[Mount]) -> Vec<String> {
        mounts
            .iter()
            .map(|m| m.destination().to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn default_mounts_of_a_plain_image() {
        let f = Fixture::new(|_| {});
        let mounts = f.build(&RunOptions::default()).unwrap();
        assert_eq!(
            destinations(&mounts),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf"
            ]
        );
        let shm = &mounts[6];
        assert!(shm
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=67108864".to_owned()));
        assert_eq!(mounts[3].typ().as_deref(), Some("sysfs"));
        let hosts = &mounts[8];
        assert_eq!(hosts.typ().as_deref(), Some("bind"));
        assert_eq!(
            hosts.source().as_deref(),
            Some(f.dir.path().join("files/hosts").as_path())
        );
        for dir in ["proc", "dev", "sys", "etc"] {
            let meta = std::fs::symlink_metadata(f.rootfs().join(dir)).unwrap();
            assert!(meta.is_dir(), "{dir}");
            assert_eq!((meta.uid(), meta.mode() & 0o777), (100_000, 0o755), "{dir}");
        }
        let hosts = std::fs::symlink_metadata(f.rootfs().join("etc/hosts")).unwrap();
        assert!(hosts.is_file());
        assert_eq!(hosts.uid(), 100_000);
    }

    #[test]
    fn host_network_binds_the_hosts_sys_read_only() {
        let f = Fixture::new(|_| {});
        let options = RunOptions {
            network: NetworkMode::Host,
            read_only: true,
            resources: crate::options::Resources {
                shm_size: Some(1 << 20),
                ..Default::default()
            },
            ..Default::default()
        };
        let mounts = f.build(&options).unwrap();
        let sys = &mounts[3];
        assert_eq!(sys.destination(), Path::new("/sys"));
        assert_eq!(sys.source().as_deref(), Some(Path::new("/sys")));
        let opts = sys.options().as_ref().unwrap();
        assert!(opts.contains(&"rbind".to_owned()) && opts.contains(&"ro".to_owned()));
        assert!(mounts[6]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1048576".to_owned()));
        // --read-only makes the /etc files read-only too.
        assert!(mounts[8]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_owned()));
    }

    #[test]
    fn kernel_dirs_symlinked_away_become_real_folders() {
        let outside = tempfile::tempdir().unwrap();
        let outside_path = outside.path().to_owned();
        let f = Fixture::new(|rootfs| {
            symlink("/", rootfs.join("proc")).unwrap();
            symlink(&outside_path, rootfs.join("dev")).unwrap();
            std::fs::write(rootfs.join("sys"), "a file").unwrap();
            std::fs::create_dir(rootfs.join("real-etc")).unwrap();
            symlink("/real-etc", rootfs.join("etc")).unwrap();
            symlink("/dev/zero", rootfs.join("real-etc/hosts")).unwrap();
            symlink(
                "../../../../../etc/resolv.conf",
                rootfs.join("real-etc/resolv.conf"),
            )
            .unwrap();
        });
        let mounts = f.build(&RunOptions::default()).unwrap();
        for dir in ["proc", "dev", "sys"] {
            let meta = std::fs::symlink_metadata(f.rootfs().join(dir)).unwrap();
            assert!(meta.is_dir() && !meta.file_type().is_symlink(), "{dir}");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // /etc is followed inside the root; the links at the file names are replaced.
        let dests = destinations(&mounts);
        assert!(dests.contains(&"/real-etc/hosts".to_owned()), "{dests:?}");
        assert!(
            dests.contains(&"/real-etc/resolv.conf".to_owned()),
            "{dests:?}"
        );
        for name in ["hostname", "hosts", "resolv.conf"] {
            let meta = std::fs::symlink_metadata(f.rootfs().join("real-etc").join(name)).unwrap();
            assert!(meta.is_file(), "{name}");
        }
    }

    #[test]
    fn etc_resolving_into_proc_is_refused() {
        let f = Fixture::new(|rootfs| {
            symlink("/proc/self", rootfs.join("etc")).unwrap();
        });
        let err = f.build(&RunOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("inside a kernel filesystem"),
            "{err}"
        );
    }

    #[test]
    fn user_targets_follow_symlinks_inside_the_root_only() {
        let outside = tempfile::tempdir().unwrap();
        let outside_path = outside.path().to_owned();
        let source = tempfile::tempdir().unwrap();
        let source_file = source.path().join("f");
        std::fs::write(&source_file, "x").unwrap();
        let f = Fixture::new(|rootfs| {
            symlink(&outside_path, rootfs.join("data")).unwrap();
            symlink("../../../../../../tmp/x", rootfs.join("scratch")).unwrap();
        });
        let options = RunOptions {
            tmpfs: vec![
                TmpfsMount {
                    target: "/scratch".to_owned(),
                    options: "size=1m".to_owned(),
                },
                TmpfsMount {
                    target: "/dev/shm".to_owned(),
                    options: String::new(),
                },
            ],
            binds: vec![
                BindMount {
                    source: source.path().to_owned(),
                    target: "/data/in".to_owned(),
                    read_only: true,
                },
                BindMount {
                    source: source_file.clone(),
                    target: "/data/file".to_owned(),
                    read_only: false,
                },
            ],
            ..Default::default()
        };
        let mounts = f.build(&options).unwrap();
        let dests = destinations(&mounts);
        let inner = format!("{}/in", outside_path.display());
        assert!(dests.contains(&"/tmp/x".to_owned()), "{dests:?}");
        assert!(dests.contains(&inner), "{dests:?}");
        assert!(
            dests.contains(&format!("{}/file", outside_path.display())),
            "{dests:?}"
        );
        // The user's /dev/shm replaces the default one.
        assert_eq!(dests.iter().filter(|d| *d == "/dev/shm").count(), 1);
        assert!(f.rootfs().join("tmp/x").is_dir());
        assert!(f.rootfs().join(inner.trim_start_matches('/')).is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let ro = mounts
            .iter()
            .find(|m| m.destination() == Path::new(&inner))
            .unwrap();
        assert_eq!(ro.options().as_deref().unwrap(), ["rbind", "ro", "rro"]);
        assert_eq!(ro.source().as_deref(), Some(source.path()));
    }

    #[test]
    fn a_user_mount_replaces_the_etc_file_it_targets() {
        let source = tempfile::tempdir().unwrap();
        let source_file = source.path().join("resolv.conf");
        std::fs::write(&source_file, "nameserver 10.9.9.9\n").unwrap();
        let f = Fixture::new(|rootfs| {
            std::fs::create_dir_all(rootfs.join("etc")).unwrap();
            std::fs::create_dir_all(rootfs.join("run")).unwrap();
            symlink("../run/resolv.conf", rootfs.join("etc/resolv.conf")).unwrap();
        });
        let options = RunOptions {
            binds: vec![BindMount {
                source: source_file.clone(),
                target: "/etc/resolv.conf".to_owned(),
                read_only: true,
            }],
            ..Default::default()
        };
        let mounts = f.build(&options).unwrap();
        let dests = destinations(&mounts);
        assert!(dests.contains(&"/run/resolv.conf".to_owned()), "{dests:?}");
        assert!(!dests.contains(&"/etc/resolv.conf".to_owned()), "{dests:?}");
        assert!(dests.contains(&"/etc/hosts".to_owned()), "{dests:?}");
    }

    #[test]
    fn user_targets_resolving_to_root_or_proc_are_refused() {
        let source = tempfile::tempdir().unwrap();
        for link in ["/", "/proc/sys", "..", "/proc/../proc"] {
            let f = Fixture::new(|rootfs| symlink(link, rootfs.join("data")).unwrap());
            let options = RunOptions {
                binds: vec![BindMount {
                    source: source.path().to_owned(),
                    target: "/data".to_owned(),
                    read_only: false,
                }],
                ..Default::default()
            };
            let err = f.build(&options).unwrap_err();
            assert!(err.to_string().contains("resolves to"), "{link}: {err}");
        }
    }

    #[test]
    fn bind_sources_must_exist_and_be_absolute() {
        let f = Fixture::new(|_| {});
        for source in ["relative/path", "/no/such/farm/path"] {
            let options = RunOptions {
                binds: vec![BindMount {
                    source: PathBuf::from(source),
                    target: "/x".to_owned(),
                    read_only: false,
                }],
                ..Default::default()
            };
            assert!(f.build(&options).is_err(), "{source}");
        }
    }

    #[test]
    fn duplicate_targets_are_refused_and_parents_go_first() {
        let f = Fixture::new(|_| {});
        let tmpfs = |target: &str| TmpfsMount {
            target: target.to_owned(),
            options: String::new(),
        };
        let options = RunOptions {
            tmpfs: vec![tmpfs("/a/b/c"), tmpfs("/a"), tmpfs("/a/b")],
            ..Default::default()
        };
        let dests = destinations(&f.build(&options).unwrap());
        let pos = |d: &str| dests.iter().position(|x| x == d).unwrap();
        assert!(pos("/a") < pos("/a/b") && pos("/a/b") < pos("/a/b/c"));
        let options = RunOptions {
            tmpfs: vec![tmpfs("/a"), tmpfs("/a/")],
            ..Default::default()
        };
        assert!(f
            .build(&options)
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }
}
