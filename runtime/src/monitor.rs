//! The per-container monitor (the role of podman's conmon or containerd's shim): a small
//! single-threaded process that sets the container up, holds it, writes its logs, forwards
//! signals, enforces `--timeout`, and records its exit and usage in the state store.
//!
//! In the foreground, `farm run` execs itself into the monitor (so the caller's terminal,
//! signals and exit code are the container's); with `-d`, `farm run` spawns it detached
//! and waits for one line on the ready pipe. The monitor holds an flock on
//! `monitor.lock` for its whole life: a free lock means no monitor, which is how every
//! other farm command tells a crashed monitor from a live one.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::image::ImageConfiguration;

use crate::container::{self, Stdio};
use crate::layout::Layout;
use crate::logs::{LogWriter, Stream};
use crate::sandbox::seccomp;
use crate::spec::{self, SpecContext, SpecError};
use crate::state::{ContainerRecord, Exit, GpuUsage, StateStore};
use crate::{lifecycle, rootfs};

mod pages;
mod restart;
pub(crate) mod tty;

use tty::{console_listener, receive_pty, Terminal};

/// How the monitor talks to whoever started it.
pub enum Mode {
    /// Foreground: the container's output also goes to the monitor's stdout/stderr, its
    /// stdin (with `-i`) comes from the monitor's stdin, signals are forwarded.
    Attached,
    /// Background: one line on stdout (`ok <pid>` or `error <code> <message>`) for
    /// `farm run -d`, then the monitor's stdout and stderr become /dev/null.
    Detached,
}

pub struct MonitorArgs {
    pub root: PathBuf,
    pub id: String,
    pub mode: Mode,
    /// `--secret-env` values, received over a pipe (never from the state store).
    pub secret_env: crate::secrets::SecretEnv,
    /// The inherited, flocked `monitor.lock` (kept across the execs of a restart).
    pub lock_fd: Option<i32>,
}

/// Most bytes of container logs kept on disk (plus one rotated file).
const LOG_MAX_BYTES: u64 = 16 << 20;

/// Something that stopped the container from starting, with docker's exit code.
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn farm(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: 125,
            message: message.to_string(),
        }
    }
}

/// Run the monitor; the return value is the process's exit code.
pub fn run(args: MonitorArgs) -> i32 {
    let layout = Layout::new(&args.root);
    let state = match StateStore::open(&args.root) {
        Ok(state) => state,
        Err(e) => return report_early(args.mode, 125, &e.to_string()),
    };
    let record = match state.get(&args.id) {
        Ok(record) => record,
        Err(e) => return report_early(args.mode, 125, &e.to_string()),
    };
    let _ = state.set_monitor(&args.id, std::process::id() as i32);
    let begun = Instant::now();
    let begun_wall = SystemTime::now();
    let attached = matches!(args.mode, Mode::Attached);
    let log = LogWriter::open(&layout.log(&record.id), LOG_MAX_BYTES).ok();

    let leased_gpus = state.gpus(&record.id).unwrap_or_default();
    let outcome = start(&layout, &record, attached, &leased_gpus, args.secret_env);
    let running = match outcome {
        Ok(running) => running,
        Err(failure) => {
            let exit = Exit {
                code: failure.code,
                error: Some(failure.message.clone()),
                wall_seconds: begun.elapsed().as_secs_f64(),
                ..Exit::default()
            };
            finish(&layout, &state, &record, &exit);
            return match args.mode {
                Mode::Attached => {
                    eprintln!("farm: {}", failure.message);
                    failure.code
                }
                Mode::Detached => {
                    ready_line(&format!("error {} {}", failure.code, failure.message));
                    failure.code
                }
            };
        }
    };
    let _ = state.set_running(
        &record.id,
        running.pid.as_raw(),
        std::process::id() as i32,
        &now(),
    );
    if let Mode::Detached = args.mode {
        ready_line(&format!("ok {}", running.pid));
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
            let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
        }
    }

    let energy_start = crate::gpu::inject::energy_now(&record.options.gpu, &leased_gpus);
    if let Mode::Detached = args.mode {
        // The setup touched most of farm's code; the supervisor that holds the container
        // for hours needs little of it. Exec into the lean supervisor (same process, same
        // children, same lock): only what it touches from now on is resident.
        let error = reexec_supervisor(
            &args.root,
            &record.id,
            &running,
            begun_wall,
            record.options.timeout,
            &energy_start,
            args.lock_fd,
        );
        // Still here: the exec failed; supervise in place.
        let _ = error;
    }
    drop(state);
    let timeout = record.options.timeout;
    supervise_and_finish(
        &layout,
        &record.id,
        running,
        log,
        attached,
        Started {
            at: begun_wall,
            timeout,
            energy: energy_start,
            lock_fd: args.lock_fd.filter(|_| !attached),
        },
    )
}

/// When and how the container started: what the end of its life is measured against.
struct Started {
    at: SystemTime,
    timeout: Option<Duration>,
    /// NVML energy counters of the leased GPUs at the start (millijoules).
    energy: BTreeMap<String, u64>,
    /// The flocked `monitor.lock` of a detached monitor (its restart policy needs it).
    lock_fd: Option<i32>,
}

/// The rest of the monitor's life: pump, wait, record the exit. The state store is opened
/// only at the end, so that the supervisor's resident pages stay few while it waits.
fn supervise_and_finish(
    layout: &Layout,
    id: &str,
    mut running: Running,
    mut log: Option<LogWriter>,
    attached: bool,
    started: Started,
) -> i32 {
    let elapsed = started.at.elapsed().unwrap_or_default();
    let timeout = started.timeout;
    let deadline = timeout.map(|t| Instant::now() + t.saturating_sub(elapsed));
    let status = running.supervise(&mut log, attached, deadline);
    let timed_out = matches!(status, Ended::TimedOut(_));
    let usage = crate::cgroups::read_usage(&Layout::cgroups_path(id)).unwrap_or_default();
    let (code, error) = match status {
        Ended::Exited(code) => (code, None),
        Ended::Signaled(signal) => (128 + signal as i32, None),
        Ended::TimedOut(signal) => (
            128 + signal as i32,
            Some(format!(
                "killed after running past --timeout {}",
                humantime(timeout.unwrap_or_default())
            )),
        ),
    };
    if let Some(log) = log.as_mut() {
        let _ = log.flush();
    }
    let wall_seconds = started.at.elapsed().unwrap_or_default().as_secs_f64();
    let mut exit = Exit {
        code,
        oom_killed: usage.oom_killed,
        error,
        usage,
        wall_seconds,
        gpus: Vec::new(),
        network: None,
    };
    match StateStore::open(layout.root()).and_then(|state| Ok((state.get(id)?, state))) {
        Ok((record, state)) => {
            let leased = state.gpus(id).unwrap_or_default();
            let energy_end = crate::gpu::inject::energy_now(&record.options.gpu, &leased);
            // A CDI device's own lease is no GPU: the GPUs it brings are leased (and
            // metered) under their own ids.
            exit.gpus = leased
                .into_iter()
                .filter(|id| !id.starts_with(crate::gpu::cdi::LEASE_PREFIX))
                .map(|gpu| GpuUsage {
                    energy_joules: match (started.energy.get(&gpu), energy_end.get(&gpu)) {
                        (Some(start), Some(end)) => {
                            Some(end.saturating_sub(*start) as f64 / 1000.0)
                        }
                        _ => None,
                    },
                    id: gpu,
                    seconds: wall_seconds,
                })
                .collect();
            let ran = started.at.elapsed().unwrap_or_default();
            match restart::after_exit(
                layout,
                &state,
                &record,
                &exit,
                ran,
                timed_out,
                started.lock_fd,
            ) {
                restart::After::Exit => finish(layout, &state, &record, &exit),
                restart::After::Recorded => {}
            }
        }
        Err(_) => {
            let _ = container::delete(&layout.run_root(), id, &Layout::cgroups_path(id));
        }
    }
    code
}

/// argv[1] of the lean supervisor:
/// `farm __supervise ROOT ID PID OUT-FD ERR-FD BEGUN-MS TIMEOUT-MS|- ENERGY|- LOCK-FD|-`
/// (ENERGY: `uuid=millijoules,…`, the leased GPUs' counters at the start).
pub const SUPERVISE_ARG: &str = "__supervise";

/// Exec `farm __supervise …` with the container's output pipes inherited. Returns only
/// when the exec failed.
fn reexec_supervisor(
    root: &std::path::Path,
    id: &str,
    running: &Running,
    begun_wall: SystemTime,
    timeout: Option<Duration>,
    energy_start: &BTreeMap<String, u64>,
    lock_fd: Option<i32>,
) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let fd_arg = |fd: &Option<OwnedFd>| -> String {
        match fd {
            Some(fd) => {
                let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty());
                fd.as_raw_fd().to_string()
            }
            None => "-".to_owned(),
        }
    };
    let begun_ms = begun_wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    std::process::Command::new("/proc/self/exe")
        .arg(SUPERVISE_ARG)
        .arg(root)
        .arg(id)
        .arg(running.pid.as_raw().to_string())
        .arg(fd_arg(&running.stdout))
        .arg(fd_arg(&running.stderr))
        .arg(begun_ms.to_string())
        .arg(timeout.map_or("-".to_owned(), |t| t.as_millis().to_string()))
        .arg(if energy_start.is_empty() {
            "-".to_owned()
        } else {
            energy_start
                .iter()
                .map(|(gpu, mj)| format!("{gpu}={mj}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .arg(lock_fd.map_or("-".to_owned(), |fd| fd.to_string()))
        .exec()
}

/// The lean supervisor's entry point (`argv[2..]` of [`SUPERVISE_ARG`]); its exit code.
pub fn supervise_main(args: &[String]) -> i32 {
    let [root, id, pid, out, err, begun_ms, timeout_ms, energy, lock_fd] = args else {
        eprintln!("farm {SUPERVISE_ARG}: internal command, not for direct use");
        return 125;
    };
    pages::release_read_only_segments();
    let root = PathBuf::from(root);
    let layout = Layout::new(&root);
    let fd = |text: &str| {
        text.parse::<i32>()
            .ok()
            .filter(|fd| *fd > 2)
            .map(inherited_fd)
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return 125;
    };
    let running = Running {
        pid: Pid::from_raw(pid),
        stdin: None,
        stdout: fd(out),
        stderr: fd(err),
        stop_signal: Signal::SIGTERM,
        terminal: None,
    };
    let begun_wall = UNIX_EPOCH + Duration::from_millis(begun_ms.parse().unwrap_or(0));
    let timeout = timeout_ms.parse().ok().map(Duration::from_millis);
    let log = LogWriter::open(&layout.log(id), LOG_MAX_BYTES).ok();
    let energy_start = energy
        .split(',')
        .filter_map(|pair| {
            let (gpu, mj) = pair.split_once('=')?;
            Some((gpu.to_owned(), mj.parse().ok()?))
        })
        .collect();
    supervise_and_finish(
        &layout,
        id,
        running,
        log,
        false,
        Started {
            at: begun_wall,
            timeout,
            energy: energy_start,
            lock_fd: lock_fd.parse().ok(),
        },
    )
}

/// Own a descriptor the monitor passed across exec to the supervisor.
#[allow(unsafe_code)]
fn inherited_fd(fd: i32) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `reexec_supervisor` passes the numbers of the pipe ends it cleared
    // close-on-exec for, right before exec; nothing else in this fresh process image
    // owns them, so each becomes owned exactly once here.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Record the exit, release what the container held, and remove it with `--rm`.
fn finish(layout: &Layout, state: &StateStore, record: &ContainerRecord, exit: &Exit) {
    let mut exit = exit.clone();
    if record.options.network == crate::options::NetworkMode::Internet {
        // The counters as the rules go: read from the listing the removal uses.
        exit.network = crate::network::finish(layout, &record.id).0;
    }
    let exit = &exit;
    let _ = container::delete(
        &layout.run_root(),
        &record.id,
        &Layout::cgroups_path(&record.id),
    );
    let _ = state.set_exited(&record.id, exit, &now());
    if record.options.auto_remove {
        rootfs::unmount(&layout.container(&record.id));
        let _ = lifecycle::remove_files(layout, &record.id);
        let _ = state.remove(&record.id);
    }
}

fn ready_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", line.replace('\n', " "));
    let _ = stdout.flush();
}

fn report_early(mode: Mode, code: i32, message: &str) -> i32 {
    match mode {
        Mode::Attached => eprintln!("farm: {message}"),
        Mode::Detached => ready_line(&format!("error {code} {message}")),
    }
    code
}

/// RFC 3339 UTC with nanoseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A started container and the monitor's ends of its streams.
struct Running {
    pid: Pid,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stop_signal: Signal,
    /// Our own terminal in raw mode while attached with `-t` (restored on drop).
    terminal: Option<Terminal>,
}

enum Ended {
    Exited(i32),
    Signaled(Signal),
    TimedOut(Signal),
}

/// Mount the rootfs, build the spec, create and start the container.
fn start(
    layout: &Layout,
    record: &ContainerRecord,
    attached: bool,
    leased_gpus: &[String],
    secret_env: crate::secrets::SecretEnv,
) -> Result<Running, Failure> {
    let dir = layout.container(&record.id);
    rootfs::private_mount_namespace().map_err(Failure::farm)?;
    nix::sys::prctl::set_child_subreaper(true).map_err(Failure::farm)?;
    let image: ImageConfiguration =
        serde_json::from_value(record.image.config.clone()).map_err(|e| {
            Failure::farm(format!(
                "the image config of {} is invalid: {e}",
                record.image.name
            ))
        })?;
    let rootfs = rootfs::mount(&dir, &record.image.layers, &record.ids).map_err(Failure::farm)?;
    let ctx = SpecContext {
        id: record.id.clone(),
        rootfs: rootfs.clone(),
        ids: record.ids,
        files_dir: dir.clone(),
        cgroups_path: Layout::cgroups_path(&record.id),
    };
    let mut spec = spec::build(&image, &record.options, &ctx).map_err(spec_failure)?;
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let mut ldconfig = None;
    let mut proc_view = None;
    if let Some(injection) =
        crate::gpu::inject::extras(&record.options.gpu, &env, &record.options.env, leased_gpus)
            .map_err(Failure::farm)?
    {
        spec::extras::apply(&mut spec, &injection.extras, &rootfs, &record.ids)
            .map_err(Failure::farm)?;
        ldconfig = injection.ldconfig;
        proc_view = injection.proc_view;
    }
    spec::check_executable(&rootfs, &spec).map_err(spec_failure)?;
    let caps: Vec<_> = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.effective().as_ref())
        .map(|set| set.iter().copied().collect())
        .unwrap_or_default();
    let filters = seccomp::filters(&record.options.security.seccomp, &caps)
        .map_err(Failure::farm)?
        .unwrap_or_default();
    spec.save(dir.join("config.json"))
        .map_err(|e| Failure::farm(format!("writing the container spec: {e}")))?;

    let tty = record.options.tty;
    let console = if tty {
        Some(console_listener(&dir).map_err(Failure::farm)?)
    } else {
        None
    };
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Failure::farm);
    let mut ends = (None, None, None);
    let stdio = if tty {
        None
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (in_r, in_w) = if record.options.interactive && attached {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            let null = std::fs::File::open("/dev/null").map_err(Failure::farm)?;
            (OwnedFd::from(null), None)
        };
        ends = (in_w, Some(out_r), Some(err_r));
        Some(Stdio {
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        })
    };
    crate::cgroups::check_device_filter_prerequisites().map_err(Failure::farm)?;
    crate::cgroups::prepare_parents(&Layout::cgroups_path(&record.id)).map_err(Failure::farm)?;
    let mut created = container::create(
        &record.id,
        &layout.run_root(),
        &dir,
        stdio,
        console.as_ref().map(|(path, _)| path.clone()),
        crate::sandbox::executor::FarmExecutor {
            filters,
            ldconfig,
            secret_env,
        },
    )
    .map_err(Failure::farm)?;
    let pid = created
        .pid()
        .ok_or_else(|| Failure::farm("libcontainer gave no pid for the container"))?;
    if crate::spec::allows_no_swap(&record.options.resources) {
        crate::cgroups::forbid_swap(&Layout::cgroups_path(&record.id)).map_err(Failure::farm)?;
    }
    if let Some(view) = &proc_view {
        crate::sandbox::procview::install(pid, view).map_err(Failure::farm)?;
    }
    if record.options.network == crate::options::NetworkMode::Internet {
        crate::network::attach_container(layout, &record.id, pid, &record.options)
            .map_err(Failure::farm)?;
    }
    let mut terminal = None;
    if let Some((path, listener)) = console {
        let master = receive_pty(&listener).map_err(Failure::farm)?;
        let _ = std::fs::remove_file(path);
        let writer = master.try_clone().map_err(Failure::farm)?;
        if attached {
            terminal = Terminal::attach(&master);
        }
        let stdin = (record.options.interactive && attached).then_some(writer);
        ends = (stdin, Some(master), None);
    }
    created.start().map_err(Failure::farm)?;
    let stop_signal = record
        .options
        .stop_signal
        .as_deref()
        .and_then(|s| lifecycle::parse_signal(s).ok())
        .unwrap_or(Signal::SIGTERM);
    Ok(Running {
        pid: Pid::from_raw(pid),
        stdin: ends.0,
        stdout: ends.1,
        stderr: ends.2,
        stop_signal,
        terminal,
    })
}

fn spec_failure(e: SpecError) -> Failure {
    let code = match e {
        SpecError::NotFound { .. } => 127,
        SpecError::NotExecutable { .. } => 126,
        _ => 125,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}

/// Signals the monitor passes on to the container.
const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

impl Running {
    /// Pump the container's streams into the log (and our own stdio when attached),
    /// forward signals, enforce the deadline, until the init exits and its output ends.
    fn supervise(
        &mut self,
        log: &mut Option<LogWriter>,
        attached: bool,
        deadline: Option<Instant>,
    ) -> Ended {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        for signal in FORWARDED {
            mask.add(*signal);
        }
        mask.add(Signal::SIGPIPE);
        mask.add(Signal::SIGWINCH);
        let _ = mask.thread_block();
        let mut signals =
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
        for fd in [&self.stdout, &self.stderr].into_iter().flatten() {
            let _ = nix::fcntl::fcntl(
                fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
        }
        let forward_stdin = attached && self.stdin.is_some();
        let mut stdin_open = forward_stdin;
        let mut ended: Option<Ended> = None;
        let mut timed_out = false;
        let mut drain_until: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if ended.is_some() && self.stdout.is_none() && self.stderr.is_none() {
                break;
            }
            if let Some(until) = drain_until {
                if Instant::now() >= until {
                    break;
                }
            }
            let mut wait_ms: i64 = 1000;
            if let (Some(deadline), false) = (deadline, timed_out) {
                let left = deadline.saturating_duration_since(Instant::now());
                wait_ms = wait_ms.min(left.as_millis() as i64);
                if left.is_zero() {
                    timed_out = true;
                    let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
                }
            }
            if let Some(until) = drain_until {
                wait_ms =
                    wait_ms.min(until.saturating_duration_since(Instant::now()).as_millis() as i64);
            }
            let stdin_fd = std::io::stdin();
            let mut fds: Vec<PollFd> = Vec::with_capacity(4);
            let mut which: Vec<u8> = Vec::with_capacity(4);
            if let Some(fd) = &self.stdout {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(b'o');
            }
            if let Some(fd) = &self.stderr {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(b'e');
            }
            if let Some(fd) = &signals {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(b's');
            }
            if stdin_open {
                fds.push(PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN));
                which.push(b'i');
            }
            let timeout = PollTimeout::try_from(wait_ms.max(0) as i32).unwrap_or(PollTimeout::MAX);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
            let ready: Vec<(u8, bool)> = fds
                .iter()
                .zip(&which)
                .map(|(fd, w)| (*w, fd.revents().is_some_and(|r| !r.is_empty())))
                .collect();
            drop(fds);
            for (kind, is_ready) in ready {
                if !is_ready {
                    continue;
                }
                match kind {
                    b'o' => pump(&mut self.stdout, Stream::Stdout, log, attached, &mut buf),
                    b'e' => pump(&mut self.stderr, Stream::Stderr, log, attached, &mut buf),
                    b'i' => match nix::unistd::read(std::io::stdin().as_raw_fd(), &mut buf) {
                        Ok(0) | Err(_) => {
                            stdin_open = false;
                            self.stdin = None;
                        }
                        Ok(n) => {
                            if let Some(w) = &self.stdin {
                                if write_all(w.as_fd(), &buf[..n]).is_err() {
                                    stdin_open = false;
                                    self.stdin = None;
                                }
                            }
                        }
                    },
                    _ => {
                        if let Some(fd) = signals.as_mut() {
                            while let Ok(Some(info)) = fd.read_signal() {
                                let signo = info.ssi_signo as i32;
                                if signo == Signal::SIGCHLD as i32
                                    || signo == Signal::SIGPIPE as i32
                                {
                                    continue;
                                }
                                if signo == Signal::SIGWINCH as i32 {
                                    if let (Some(t), Some(master)) = (&self.terminal, &self.stdout)
                                    {
                                        t.copy_size(master);
                                    }
                                    continue;
                                }
                                if let Ok(signal) = Signal::try_from(signo) {
                                    let _ = nix::sys::signal::kill(self.pid, signal);
                                }
                            }
                        }
                    }
                }
            }
            if ended.is_none() {
                if let Some(status) = self.reap() {
                    ended = Some(match status {
                        _ if timed_out => Ended::TimedOut(Signal::SIGKILL),
                        other => other,
                    });
                    // The init is gone, so the pid namespace is too: the pipes end as
                    // soon as the kernel has reaped the rest. Bound the wait anyway.
                    drain_until = Some(Instant::now() + Duration::from_secs(2));
                }
            }
        }
        let _ = self.stop_signal;
        self.terminal = None;
        ended.unwrap_or(Ended::Exited(255))
    }

    /// Reap every exited child; the init's status when it is among them.
    fn reap(&self) -> Option<Ended> {
        let mut init = None;
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.pid => {
                    init = Some(Ended::Exited(code))
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.pid => {
                    init = Some(Ended::Signaled(signal))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        init
    }
}

/// Move what is readable from one of the container's streams to the log and our stdio.
fn pump(
    fd: &mut Option<OwnedFd>,
    stream: Stream,
    log: &mut Option<LogWriter>,
    attached: bool,
    buf: &mut [u8],
) {
    let Some(raw) = fd.as_ref().map(|f| f.as_raw_fd()) else {
        return;
    };
    loop {
        match nix::unistd::read(raw, buf) {
            Ok(0) => {
                *fd = None;
                return;
            }
            Ok(n) => {
                if let Some(log) = log.as_mut() {
                    let _ = log.write(stream, &buf[..n]);
                }
                if attached {
                    let _ = if stream == Stream::Stdout {
                        write_all(std::io::stdout().as_fd(), &buf[..n])
                    } else {
                        write_all(std::io::stderr().as_fd(), &buf[..n])
                    };
                }
            }
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                *fd = None;
                return;
            }
        }
    }
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(nix::errno::Errno::EPIPE),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
