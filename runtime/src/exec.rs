//! `farm exec`: another process in a running container, as `docker exec` (runc exec)
//! starts it: the container's namespaces, cgroup, capabilities, no-new-privileges,
//! seccomp filter and environment, its user (or `-u`), its working dir (or `-w`).
//!
//! How (libcontainer 0.7's tenant builder, in [`crate::container::exec`]):
//! - everything that reads the container's files (`-u` against its /etc/passwd, the
//!   command's lookup for 126/127) goes through the container's root as its init sees it
//!   (`/proc/<pid>/root`), with openat2(RESOLVE_IN_ROOT) as `farm run` does;
//! - the tenant builder joins ipc, uts, net, pid, mnt and cgroup namespaces but not the
//!   user namespace, so `farm exec` joins it first itself (it is single-threaded: it runs
//!   without the async runtime), after making itself non-dumpable, so the process never
//!   runs as host root in the container's namespaces;
//! - libcontainer marks every fd above 2 close-on-exec and checks that the cwd is inside
//!   the container after setns (the runc CVE-2024-21626 family); farm's seccomp filters go
//!   in right before exec (the executor).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::WaitStatus;
use oci_spec::runtime::{Process, Spec};

use crate::container::{self, Stdio, Tenant};
use crate::layout::Layout;
use crate::monitor::tty::{console_listener, receive_pty, Terminal};
use crate::sandbox::seccomp;
use crate::spec::root::Root;
use crate::spec::{self, SpecError};
use crate::state::{ContainerRecord, Status};
use crate::RuntimeError;

/// `farm exec`'s flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// `-u USER[:GROUP]`, resolved in the container; default the container's user.
    pub user: Option<String>,
    /// `-w DIR` (absolute); default the container's working dir.
    pub workdir: Option<String>,
    /// `-e K=V` (or `-e K`: taken from farm's environment), over the container's.
    pub env: Vec<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    #[error("container {0} is not running: start a new one with `farm run`, `farm ps -a` shows its state")]
    NotRunning(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// docker's exit code: 127 command not found, 126 not executable, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::Spec(SpecError::NotFound { .. }) => 127,
            ExecError::Spec(SpecError::NotExecutable { .. }) => 126,
            ExecError::Runtime(RuntimeError::Libcontainer(message))
                if message.contains("No such file") =>
            {
                127
            }
            ExecError::Runtime(RuntimeError::Libcontainer(_)) => 126,
            _ => 125,
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecError {
    let context = context.into();
    move |source| ExecError::Io { context, source }
}

/// Run `options.args` in the running container `record`; the exit code as docker's
/// (the process's own, 128+signal, 0 with `-d`).
///
/// The calling process must be single-threaded: it joins the container's user namespace.
pub fn exec(
    root: &Path,
    record: &ContainerRecord,
    options: &ExecOptions,
) -> Result<i32, ExecError> {
    let layout = Layout::new(root);
    let pid = running_pid(&layout, record)?;
    let config = layout.container(&record.id).join("config.json");
    let spec = Spec::load(&config).map_err(|e| {
        ExecError::Runtime(RuntimeError::Other(format!(
            "reading the container's spec {}: {e}",
            config.display()
        )))
    })?;
    let process = plan(record, &spec, pid, options)?;
    // The pid was the container's when its root was opened (not reused since).
    running_pid(&layout, record)?;
    let caps: Vec<_> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.effective().as_ref())
        .map(|set| set.iter().copied().collect())
        .unwrap_or_default();
    let filters = seccomp::filters(&record.options.security.seccomp, &caps)
        .map_err(RuntimeError::from)?
        .unwrap_or_default();
    let dir = ExecDir::make(&layout, &record.id)?;
    let process_json = dir.path.join("process.json");
    let text = serde_json::to_vec(&process).map_err(|e| io("writing process.json")(e.into()))?;
    std::fs::write(&process_json, text).map_err(io("writing process.json"))?;
    let tenant_root = tenant_state(&dir.path, &layout, &record.id, &spec)?;
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map_err(io("opening the container's user namespace"))?;
    let streams = Streams::open(&dir.path, options)?;
    join_user_namespace(userns.as_fd())?;
    let (stdio, console, ends) = streams.split();
    let child = container::exec(
        &record.id,
        &tenant_root,
        Tenant {
            process_json: &process_json,
            stdio,
            console_socket: console.as_ref().map(|(path, _)| path.clone()),
            filters,
        },
    )?;
    let ends = match console {
        Some((_, listener)) => terminal_ends(&listener, options.interactive)?,
        None => ends,
    };
    drop(dir);
    if options.detach {
        return Ok(0);
    }
    Ok(relay(nix::unistd::Pid::from_raw(child), ends, options))
}

/// With `-t`: the pty master the exec's init sent, as its output (and input with `-i`).
fn terminal_ends(
    listener: &std::os::unix::net::UnixListener,
    interactive: bool,
) -> Result<Ends, ExecError> {
    let master = receive_pty(listener).map_err(io("receiving the exec's terminal"))?;
    let writer = master.try_clone().map_err(io("the exec's terminal"))?;
    Ok(Ends {
        stdin: interactive.then_some(writer),
        stdout: Some(master),
        stderr: None,
    })
}

/// A libcontainer state folder for the exec only: the container's `state.json` with the
/// exec folder as its bundle, whose `config.json` is the container's spec without
/// supplementary groups. libcontainer validates that spec again for a tenant, and from
/// inside the user namespace it counts as rootless, which may set no supplementary group
/// (the exec's own groups are set from `process.json` all the same).
fn tenant_state(dir: &Path, layout: &Layout, id: &str, spec: &Spec) -> Result<PathBuf, ExecError> {
    let state_path = layout.run_root().join(id).join("state.json");
    let text =
        std::fs::read(&state_path).map_err(io(format!("reading {}", state_path.display())))?;
    let mut state: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| io(format!("reading {}", state_path.display()))(e.into()))?;
    state["bundle"] = serde_json::Value::from(dir.to_string_lossy().into_owned());
    let root = dir.join("run");
    let state_dir = root.join(id);
    std::fs::create_dir_all(&state_dir).map_err(io(format!("making {}", state_dir.display())))?;
    let write = |path: PathBuf, bytes: serde_json::Result<Vec<u8>>| {
        let bytes = bytes.map_err(|e| io(format!("writing {}", path.display()))(e.into()))?;
        std::fs::write(&path, bytes).map_err(io(format!("writing {}", path.display())))
    };
    write(state_dir.join("state.json"), serde_json::to_vec(&state))?;
    let mut init = spec.clone();
    if let Some(mut process) = init.process().clone() {
        let mut user = process.user().clone();
        user.set_additional_gids(None);
        process.set_user(user);
        init.set_process(Some(process));
    }
    write(dir.join("config.json"), serde_json::to_vec(&init))?;
    Ok(root)
}

/// The pid of the container's init, after checking that its monitor lives and that the
/// pid is in the container's cgroup (a reused pid is never used).
fn running_pid(layout: &Layout, record: &ContainerRecord) -> Result<i32, ExecError> {
    let not_running = || ExecError::NotRunning(record.name.clone());
    if record.status != Status::Running || !crate::lifecycle::monitor_alive(layout, &record.id) {
        return Err(not_running());
    }
    let pid = record.pid.ok_or_else(not_running)?;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let marker = format!("/farm/{}", record.id);
    if !cgroup.lines().any(|line| line.ends_with(&marker)) {
        return Err(not_running());
    }
    Ok(pid)
}

/// The exec's OCI process: the container's own (capabilities, no-new-privileges,
/// rlimits) with the command, user, working dir and environment of `options`. Checks the
/// command inside the container (126/127 before anything starts).
fn plan(
    record: &ContainerRecord,
    spec: &Spec,
    pid: i32,
    options: &ExecOptions,
) -> Result<Process, ExecError> {
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| RuntimeError::Other("the container's spec has no process".to_owned()))?;
    if options.args.is_empty() {
        return Err(SpecError::NoCommand.into());
    }
    let rootfs = PathBuf::from(format!("/proc/{pid}/root"));
    let root = Root::open(&rootfs, record.ids.uid, record.ids.gid)
        .map_err(io("opening the container's root filesystem"))?;
    let mut env = process.env().clone().unwrap_or_default();
    if let Some(user_arg) = options.user.as_deref().filter(|u| !u.is_empty()) {
        let user = spec::user::resolve(&root, user_arg)?;
        let mut spec_user = process.user().clone();
        spec_user
            .set_uid(user.uid)
            .set_gid(user.gid)
            .set_additional_gids(Some(user.additional_gids));
        process.set_user(spec_user);
        // HOME follows the exec's user unless the image or `farm run -e` set it.
        let chosen: Vec<String> = record
            .image
            .env()
            .into_iter()
            .chain(record.options.env.iter().cloned())
            .collect();
        if spec::process::lookup(&chosen, "HOME").is_none() {
            env.retain(|e| !e.starts_with("HOME="));
            env.push(format!("HOME={}", user.home));
        }
    }
    // docker exec -t: TERM=xterm unless the container's environment has one.
    if options.tty && spec::process::lookup(&env, "TERM").is_none() {
        env.push("TERM=xterm".to_owned());
    }
    let extra: Vec<String> = options.env.iter().map(|e| env_entry(e)).collect();
    let env = spec::merged_env(env, &extra);
    if let Some(workdir) = options.workdir.as_deref().filter(|w| !w.is_empty()) {
        let cwd = spec::clean_path(workdir).ok_or_else(|| {
            SpecError::Invalid(format!(
                "the working directory {workdir:?} is invalid, it needs to be an absolute path"
            ))
        })?;
        process.set_cwd(PathBuf::from(cwd));
    }
    process
        .set_args(Some(options.args.clone()))
        .set_env(Some(env))
        .set_terminal(Some(options.tty && !options.detach))
        .set_console_size(None);
    let mut check = spec.clone();
    check.set_process(Some(process.clone()));
    spec::check_executable(&rootfs, &check)?;
    Ok(process)
}

/// `-e K=V` as given; `-e K` takes K from farm's own environment (dropped when unset).
fn env_entry(given: &str) -> String {
    if given.contains('=') {
        return given.to_owned();
    }
    match std::env::var(given) {
        Ok(value) => format!("{given}={value}"),
        Err(_) => given.to_owned(),
    }
}

/// Enter the container's user namespace (as its root). Non-dumpable first: no process of
/// the container can ptrace or read the memory of `farm exec` while it is in there.
fn join_user_namespace(userns: std::os::fd::BorrowedFd<'_>) -> Result<(), ExecError> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| io("making farm exec non-dumpable")(e.into()))?;
    nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| {
        io("joining the container's user namespace (farm exec must be single-threaded)")(e.into())
    })
}

/// `<container>/exec-<random>/`: the exec's process.json and console socket, removed on
/// drop.
struct ExecDir {
    path: PathBuf,
}

impl ExecDir {
    fn make(layout: &Layout, id: &str) -> Result<ExecDir, ExecError> {
        use std::os::unix::fs::DirBuilderExt;
        let name: [u8; 8] = rand::random();
        let path = layout
            .container(id)
            .join(format!("exec-{}", hex::encode(name)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io(format!("making {}", path.display())))?;
        Ok(ExecDir { path })
    }
}

impl Drop for ExecDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// farm's ends of the exec's streams.
#[derive(Default)]
struct Ends {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// The exec's streams before it starts: pipes (or /dev/null), or a console socket.
struct Streams {
    stdio: Option<Stdio>,
    console: Option<(PathBuf, std::os::unix::net::UnixListener)>,
    ends: Ends,
}

impl Streams {
    fn open(dir: &Path, options: &ExecOptions) -> Result<Streams, ExecError> {
        if options.tty && !options.detach {
            let console = console_listener(dir).map_err(io("listening for the exec's terminal"))?;
            return Ok(Streams {
                stdio: None,
                console: Some(console),
                ends: Ends::default(),
            });
        }
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(io("opening /dev/null"))
        };
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| io("making the exec's pipes")(e.into()))
        };
        if options.detach {
            let stdio = Stdio {
                stdin: null()?,
                stdout: null()?,
                stderr: null()?,
            };
            return Ok(Streams {
                stdio: Some(stdio),
                console: None,
                ends: Ends::default(),
            });
        }
        let (stdin, stdin_end) = if options.interactive {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            (null()?, None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        Ok(Streams {
            stdio: Some(Stdio {
                stdin,
                stdout: out_w,
                stderr: err_w,
            }),
            console: None,
            ends: Ends {
                stdin: stdin_end,
                stdout: Some(out_r),
                stderr: Some(err_r),
            },
        })
    }

    #[allow(clippy::type_complexity)]
    fn split(
        self,
    ) -> (
        Option<Stdio>,
        Option<(PathBuf, std::os::unix::net::UnixListener)>,
        Ends,
    ) {
        (self.stdio, self.console, self.ends)
    }
}

/// Copy our stdin to the exec and its output to ours until it exits (and its output
/// ends, at most 2 s later); its exit code as docker's.
fn relay(child: nix::unistd::Pid, mut ends: Ends, options: &ExecOptions) -> i32 {
    let _terminal = match (&ends.stdout, options.tty) {
        (Some(master), true) => Terminal::attach(master),
        _ => None,
    };
    let mut status = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.is_some() && ends.stdout.is_none() && ends.stderr.is_none() {
            break;
        }
        if drain_until.is_some_and(|until| Instant::now() >= until) {
            break;
        }
        let stdin = std::io::stdin();
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (kind, fd) in [(1u8, &ends.stdout), (2, &ends.stderr)] {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(kind);
            }
        }
        if ends.stdin.is_some() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            which.push(0);
        }
        let _ = nix::poll::poll(&mut fds, PollTimeout::from(50u16));
        let ready: Vec<u8> = fds
            .iter()
            .zip(&which)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, kind)| *kind)
            .collect();
        drop(fds);
        for kind in ready {
            match kind {
                0 => copy(stdin.as_fd(), &mut ends.stdin, &mut buf),
                1 => copy_out(&mut ends.stdout, std::io::stdout().as_fd(), &mut buf),
                _ => copy_out(&mut ends.stderr, std::io::stderr().as_fd(), &mut buf),
            }
        }
        if status.is_none() {
            status = reap(child);
            if status.is_some() {
                drain_until = Some(Instant::now() + Duration::from_secs(2));
            }
        }
    }
    status.unwrap_or(255)
}

/// The child's exit code once it exited (128 + signal when killed).
fn reap(child: nix::unistd::Pid) -> Option<i32> {
    match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(128 + signal as i32),
        Ok(_) => None,
        Err(_) => Some(255),
    }
}

/// One read from `from` into `to`; at end of input (or an error) `to` is closed.
fn copy(from: std::os::fd::BorrowedFd<'_>, to: &mut Option<OwnedFd>, buf: &mut [u8]) {
    let Some(target) = to.as_ref() else {
        return;
    };
    match nix::unistd::read(from.as_raw_fd(), buf) {
        Ok(0) | Err(_) => *to = None,
        Ok(n) => {
            if write_all(target.as_fd(), &buf[..n]).is_err() {
                *to = None;
            }
        }
    }
}

/// One read from the exec's stream `from` to our `to`; at its end `from` is closed.
fn copy_out(from: &mut Option<OwnedFd>, to: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) {
    let Some(source) = from.as_ref() else {
        return;
    };
    match nix::unistd::read(source.as_raw_fd(), buf) {
        Ok(0) => *from = None,
        Ok(n) => {
            let _ = write_all(to, &buf[..n]);
        }
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
        // EIO: the pty's other side is closed.
        Err(_) => *from = None,
    }
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(nix::errno::Errno::EPIPE),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
