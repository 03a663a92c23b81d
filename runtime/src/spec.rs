//! Image config + [`RunOptions`] -> OCI runtime [`Spec`], with docker's semantics, for
//! images that may be hostile: /etc/passwd, WORKDIR and mount targets are resolved inside
//! the rootfs only ([`root`]), nothing from the image or the labels becomes a hook.
//!
//! - [`process`]: argv (Entrypoint/Cmd/`--entrypoint`) and the environment;
//! - [`user`]: `-u`/USER against the image's passwd and group files;
//! - [`mounts`]: docker's default mounts, /etc files, `--tmpfs`, binds;
//! - [`files`]: the container's hostname, hosts and resolv.conf;
//! - [`resources`]: `--cpus`, `--memory`, `--pids-limit`, device rules;
//! - [`exec`]: [`check_executable`], so the CLI can exit 126/127 as docker.

mod exec;
pub mod extras;
mod files;
mod mounts;
pub(crate) mod process;
pub(crate) mod resources;
pub(crate) mod root;
pub(crate) mod user;

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, Linux, LinuxCapabilitiesBuilder, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceType, Process, Root as SpecRoot, Spec, User,
};

pub use exec::check_executable;
pub use mounts::DEFAULT_SHM_SIZE;
pub use process::{merged as merged_env, DEFAULT_PATH};
pub use resources::{allows_no_swap, CPU_PERIOD, MIN_MEMORY};

use crate::options::{NetworkMode, RunOptions};
use crate::sandbox::capabilities::{self, CapabilityError};
use crate::sandbox::paths::{MASKED_PATHS, READONLY_PATHS};
use crate::sandbox::userns::IdRange;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
    /// Neither the image nor the command line gives a command.
    #[error("no command specified")]
    NoCommand,
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// The command does not exist in the image (docker exits 127).
    #[error("exec: {command:?}: {reason}")]
    NotFound { command: String, reason: String },
    /// The command exists but cannot be executed: a folder, no x bit (docker exits 126).
    #[error("exec: {command:?}: {reason}")]
    NotExecutable { command: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where and for whom the spec is built.
#[derive(Debug, Clone)]
pub struct SpecContext {
    /// docker-like 64-hex id.
    pub id: String,
    /// The merged root filesystem, mounted and writable (its upper layer is the
    /// container's own): user lookup reads it, WORKDIR and mount targets are made in it.
    pub rootfs: PathBuf,
    /// The container's host id range (container id 0 is host `ids.uid`).
    pub ids: IdRange,
    /// Folder of the container's own files: `hosts`, `hostname`, `resolv.conf` are written
    /// here and bind-mounted.
    pub files_dir: PathBuf,
    /// cgroup path relative to each hierarchy's root (`/farm/<id>`).
    pub cgroups_path: PathBuf,
}

/// Lexically clean an absolute container path as Go's `filepath.Clean` does; `None` when
/// it is relative or holds a NUL.
pub fn clean_path(path: &str) -> Option<String> {
    root::clean(path)
}

/// The OCI runtime spec for one container. Writes the container's /etc files into
/// `ctx.files_dir` and makes WORKDIR and the mount targets inside `ctx.rootfs`.
pub fn build(
    image: &ImageConfiguration,
    options: &RunOptions,
    ctx: &SpecContext,
) -> Result<Spec, SpecError> {
    build_with(
        image,
        options,
        ctx,
        &Host {
            cpus: resources::host_cpus(),
            hosts: Path::new("/etc/hosts"),
            resolv_conf: Path::new("/etc/resolv.conf"),
        },
    )
}

/// What [`build`] reads from the host (a parameter for tests).
struct Host<'a> {
    cpus: u32,
    hosts: &'a Path,
    resolv_conf: &'a Path,
}

fn build_with(
    image: &ImageConfiguration,
    options: &RunOptions,
    ctx: &SpecContext,
    host: &Host<'_>,
) -> Result<Spec, SpecError> {
    let config = image.config().as_ref();
    let hostname = match &options.hostname {
        Some(hostname) => hostname.clone(),
        None => ctx.id.chars().take(12).collect(),
    };
    files::validate_hostname(&hostname)?;

    // Everything that needs no filesystem first: a bad flag fails before any write.
    let args = process::args(config, options)?;
    let mut env = process::env(config, options, &hostname)?;
    let caps = capabilities::effective(&options.security.cap_add, &options.security.cap_drop)?;
    let linux_resources = resources::build(&options.resources, host.cpus)?;
    let mut annotations = HashMap::new();
    for (key, value) in &options.labels {
        if key.is_empty() {
            return Err(SpecError::Invalid(format!(
                "invalid label ={value}: a label needs a key"
            )));
        }
        annotations.insert(key.clone(), value.clone());
    }

    let root = root::Root::open(&ctx.rootfs, ctx.ids.uid, ctx.ids.gid).map_err(|source| {
        SpecError::Io {
            context: format!("opening the root filesystem {}", ctx.rootfs.display()),
            source,
        }
    })?;
    let user_spec = options
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .or_else(|| config.and_then(|c| c.user().as_deref()))
        .unwrap_or("");
    let exec_user = user::resolve(&root, user_spec)?;
    if process::lookup(&env, "HOME").is_none() {
        env.push(format!("HOME={}", exec_user.home));
    }

    let spec_mounts = mounts::build(&root, options, &ctx.files_dir)?;
    mtab(&root)?;
    let cwd = workdir(&root, options, config)?;

    let contents = files::contents(
        &hostname,
        options.network,
        &files::read_host_file(host.hosts)?,
        &files::read_host_file(host.resolv_conf)?,
    );
    // Internet: farm's forwarder on the container's own 127.0.0.53 (or the --dns servers).
    let contents = if options.network == NetworkMode::Internet || !options.dns.is_empty() {
        files::Contents {
            resolv_conf: crate::network::plan::resolv_conf(&options.dns),
            ..contents
        }
    } else {
        contents
    };
    files::write(&ctx.files_dir, &contents, ctx.ids.uid, ctx.ids.gid)?;

    let caps: HashSet<Capability> = caps.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(|e| SpecError::Invalid(format!("building the capability sets: {e}")))?;

    let mut user = User::default();
    user.set_uid(exec_user.uid)
        .set_gid(exec_user.gid)
        .set_additional_gids(Some(exec_user.additional_gids))
        .set_umask(None)
        .set_username(None);

    let mut process = Process::default();
    process
        .set_terminal(Some(options.tty))
        .set_console_size(None)
        .set_user(user)
        .set_args(Some(args))
        .set_env(Some(env))
        .set_cwd(PathBuf::from(cwd))
        .set_no_new_privileges(Some(true))
        .set_capabilities(Some(capabilities))
        .set_rlimits(None)
        .set_oom_score_adj(None)
        .set_apparmor_profile(None)
        .set_selinux_label(None);

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::User,
    ];
    if options.network != NetworkMode::Host {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(typ);
            ns
        })
        .collect::<Vec<_>>();

    let mut linux = Linux::default();
    linux
        .set_uid_mappings(Some(vec![id_mapping(ctx.ids.uid, ctx.ids.size)?]))
        .set_gid_mappings(Some(vec![id_mapping(ctx.ids.gid, ctx.ids.size)?]))
        .set_sysctl(None)
        .set_resources(Some(linux_resources))
        .set_cgroups_path(Some(ctx.cgroups_path.clone()))
        .set_namespaces(Some(namespaces))
        .set_devices(Some(resources::devices()))
        .set_rootfs_propagation(Some("private".to_owned()))
        .set_masked_paths(Some(strings(MASKED_PATHS)))
        .set_readonly_paths(Some(strings(READONLY_PATHS)))
        .set_mount_label(None)
        .set_seccomp(None)
        .set_intel_rdt(None)
        .set_personality(None);

    let mut spec_root = SpecRoot::default();
    spec_root
        .set_path(ctx.rootfs.clone())
        .set_readonly(Some(options.read_only));

    let mut spec = Spec::default();
    spec.set_root(Some(spec_root))
        .set_mounts(Some(spec_mounts))
        .set_process(Some(process))
        .set_hostname(Some(hostname))
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(annotations))
        .set_linux(Some(linux));
    Ok(spec)
}

/// docker's `/etc/mtab -> /proc/mounts` in every container (its init layer replaces the
/// image's); a folder there is left alone.
fn mtab(root: &root::Root) -> Result<(), SpecError> {
    match root.make_symlink("/etc/mtab", "/proc/mounts") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
            tracing::warn!("/etc/mtab is a folder in the image: left as it is");
            Ok(())
        }
        Err(source) => Err(SpecError::Io {
            context: "making /etc/mtab -> /proc/mounts in the root filesystem".to_owned(),
            source,
        }),
    }
}

fn strings(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

fn id_mapping(host_id: u32, size: u32) -> Result<LinuxIdMapping, SpecError> {
    LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(host_id)
        .size(size)
        .build()
        .map_err(|e| SpecError::Invalid(format!("building the id mapping: {e}")))
}

/// `-w` over the image's WorkingDir, default "/": absolute, cleaned, never in /proc or
/// /sys (CVE-2024-21626's `/proc/self/fd/N`), made inside the rootfs (following its
/// symlinks only inside it) and returned as the path it resolves to there.
fn workdir(
    root: &root::Root,
    options: &RunOptions,
    config: Option<&oci_spec::image::Config>,
) -> Result<String, SpecError> {
    let given = options
        .workdir
        .as_deref()
        .filter(|w| !w.is_empty())
        .or_else(|| {
            config
                .and_then(|c| c.working_dir().as_deref())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or("/");
    let cleaned = root::clean(given).ok_or_else(|| {
        SpecError::Invalid(format!(
            "the working directory {given:?} is invalid, it needs to be an absolute path"
        ))
    })?;
    let refuse = |path: &str| -> Result<(), SpecError> {
        if root::is_under(path, "/proc") || root::is_under(path, "/sys") {
            return Err(SpecError::Invalid(format!(
                "the working directory {given:?} is inside {}: choose a folder of the image",
                if root::is_under(path, "/proc") {
                    "/proc"
                } else {
                    "/sys"
                }
            )));
        }
        Ok(())
    };
    refuse(&cleaned)?;
    let io = |source| SpecError::Io {
        context: format!("making the working directory {cleaned} in the root filesystem"),
        source,
    };
    let dir = root.make_dirs(&cleaned).map_err(io)?;
    let resolved = root.path_of(dir.as_fd()).map_err(io)?;
    refuse(&resolved)?;
    Ok(resolved)
}

#[cfg(test)]
mod tests;
