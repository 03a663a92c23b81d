//! create/start/kill/delete through libcontainer; the only user of libcontainer.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use crate::error::RuntimeError;
use crate::sandbox::executor::FarmExecutor;

/// The container's standard streams, as the monitor hands them over.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A container created by libcontainer: its init waits for [`Created::start`].
pub struct Created {
    container: Container,
}

fn lc(context: &str) -> impl FnOnce(libcontainer::error::LibcontainerError) -> RuntimeError + '_ {
    move |e| RuntimeError::Libcontainer(format!("{context}: {e}"))
}

/// Create the container of the bundle (`<bundle>/config.json`, rootfs mounted) with
/// libcontainer: namespaces, cgroup, mounts, pivot_root. The init process then waits
/// for `start`. With `console_socket`, the init sends its pty master there.
pub fn create(
    id: &str,
    run_root: &Path,
    bundle: &Path,
    stdio: Option<Stdio>,
    console_socket: Option<PathBuf>,
    executor: FarmExecutor,
) -> Result<Created, RuntimeError> {
    std::fs::create_dir_all(run_root).map_err(|source| RuntimeError::Path {
        path: run_root.to_owned(),
        source,
    })?;
    let mut builder = ContainerBuilder::new(id.to_owned(), SyscallType::Linux)
        .with_executor(executor)
        .with_root_path(run_root)
        .map_err(lc("state folder"))?
        .with_console_socket(console_socket);
    if let Some(stdio) = stdio {
        builder = builder
            .with_stdin(stdio.stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr);
    }
    let container = builder
        .validate_id()
        .map_err(lc("container id"))?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(lc("creating the container"))?;
    Ok(Created { container })
}

impl Created {
    /// The init process as the host sees it.
    pub fn pid(&self) -> Option<i32> {
        self.container.pid().map(|p| p.as_raw())
    }

    /// Let the init exec the container's process.
    pub fn start(&mut self) -> Result<(), RuntimeError> {
        self.container.start().map_err(lc("starting the container"))
    }
}

/// Remove what libcontainer keeps for container `id` (its state folder and cgroup),
/// killing whatever still runs in the cgroup; nothing there is not an error.
pub fn delete(run_root: &Path, id: &str, cgroups_path: &Path) -> Result<(), RuntimeError> {
    let dir = run_root.join(id);
    if dir.exists() {
        if let Ok(mut container) = Container::load(dir.clone()) {
            let _ = container.delete(true);
        }
    }
    crate::cgroups::destroy(cgroups_path)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::Path { path: dir, source }),
    }
}

/// A process to start in a running container (`farm exec`).
pub struct Tenant<'a> {
    /// The OCI `process` to run (args, env, cwd, user, capabilities, terminal).
    pub process_json: &'a Path,
    /// Its standard streams; `None` with a console socket.
    pub stdio: Option<Stdio>,
    /// Where the pty master is sent with `-t`.
    pub console_socket: Option<PathBuf>,
    /// The container's seccomp filters, installed right before exec.
    pub filters: Vec<seccompiler::BpfProgram>,
}

/// Start `tenant` in the namespaces and cgroup of the running container `id` with
/// libcontainer's tenant builder; its host pid (a child of the caller) once it exec'd.
/// libcontainer 0.7 does not join the container's user namespace for a tenant, so the
/// caller must already be in it (`exec::join_user_namespace`).
pub fn exec(id: &str, run_root: &Path, tenant: Tenant<'_>) -> Result<i32, RuntimeError> {
    let tty = tenant.console_socket.is_some();
    let mut builder = ContainerBuilder::new(id.to_owned(), SyscallType::Linux)
        .with_executor(FarmExecutor {
            filters: tenant.filters,
            ldconfig: None,
            // --secret-env values live only in the monitor's memory: an exec'd process
            // does not get them (a known gap, ARCHITECTURE.md).
            secret_env: Default::default(),
        })
        .with_root_path(run_root)
        .map_err(lc("state folder"))?
        .with_console_socket(tenant.console_socket);
    if let Some(stdio) = tenant.stdio {
        builder = builder
            .with_stdin(stdio.stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr);
    }
    let pid = builder
        .validate_id()
        .map_err(lc("container id"))?
        .as_tenant()
        .with_process(Some(tenant.process_json))
        // libcontainer takes a console socket only with `detach`; the process is still
        // the caller's child either way.
        .with_detach(tty)
        .build()
        .map_err(lc("starting the process in the container"))?;
    Ok(pid.as_raw())
}
