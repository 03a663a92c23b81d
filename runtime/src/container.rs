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
