//! Container life without a daemon: create the record, tell a live monitor from a dead
//! one (its flock on `monitor.lock`), repair what a crash left behind, and the docker
//! verbs `kill`, `stop`, `wait`, `rm`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::fs::{flock, FlockOperation};

use crate::error::RuntimeError;
use crate::layout::Layout;
use crate::options::RunOptions;
use crate::sandbox::userns;
use crate::state::{ContainerRecord, Exit, ImageRef, StateStore, Status};

fn path_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Path {
        path: path.to_owned(),
        source,
    }
}

/// A new container record, its folder, and the flocked `monitor.lock` the monitor will
/// inherit. The id range is taken in the same transaction as the insert.
pub fn create(
    root: &Path,
    image: ImageRef,
    options: RunOptions,
) -> Result<(ContainerRecord, OwnedFd), RuntimeError> {
    let layout = Layout::new(root);
    let ranges = userns::container_ranges(Path::new("/etc"))?;
    let mut state = StateStore::open(root)?;
    let id = new_id();
    let name = match &options.name {
        Some(name) => {
            validate_name(name)?;
            name.clone()
        }
        None => random_name(&id),
    };
    // The folder is made in staging/ with its lock held, then renamed into containers/:
    // a folder in containers/ always has a `monitor.lock` that was held, so a sweeper that
    // finds the lock free knows the creator is gone.
    let dir = layout.container(&id);
    let staged = layout.staging(&id);
    prepare_dirs(&layout, &staged)?;
    let staged_lock = staged.join("monitor.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&staged_lock)
        .map_err(path_err(&staged_lock))?;
    flock(&lock, FlockOperation::LockExclusive).map_err(|e| path_err(&staged_lock)(e.into()))?;
    std::fs::rename(&staged, &dir).map_err(path_err(&dir))?;
    let record = ContainerRecord {
        id: id.clone(),
        name,
        created: crate::monitor::now(),
        image,
        options,
        ids: userns::IdRange {
            uid: 0,
            gid: 0,
            size: 0,
        },
        status: Status::Created,
        pid: None,
        monitor_pid: Some(std::process::id() as i32),
        started_at: None,
        finished_at: None,
        exit: None,
    };
    let env: Vec<String> = record
        .image
        .env()
        .into_iter()
        .chain(record.options.env.iter().cloned())
        .collect();
    let claim = match crate::gpu::inject::claim(
        &record.options.gpu,
        &env,
        &record.options.env,
        &state.active_leases()?,
    ) {
        Ok(claim) => claim,
        Err(e) => {
            drop(lock);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    match state
        .insert_with_gpus(&record, &ranges, claim.as_ref())
        .map(|(ids, _)| ids)
    {
        Ok(ids) => {
            if let Err(e) = share_dir_with(&dir, &ids) {
                let _ = state.remove(&id);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
            Ok((ContainerRecord { ids, ..record }, OwnedFd::from(lock)))
        }
        Err(e) => {
            drop(lock);
            let _ = std::fs::remove_dir_all(&dir);
            Err(e.into())
        }
    }
}

/// The container's folder, `0710` with the group of... root of no container yet: the
/// group is set once the id range is known. The farm root and `containers/` become
/// `0711` so that a container's root (an unprivileged host uid) can reach its own
/// folder while libcontainer sets it up, but can list nothing.
fn prepare_dirs(layout: &Layout, dir: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let containers = layout.containers();
    std::fs::DirBuilder::new()
        .mode(0o711)
        .recursive(true)
        .create(&containers)
        .map_err(path_err(&containers))?;
    for path in [layout.root(), containers.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711))
            .map_err(path_err(path))?;
    }
    check_reachable(layout.root())?;
    let staging = layout.staging_root();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&staging)
        .map_err(path_err(&staging))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(path_err(dir))
}

/// Every folder above the farm root must let other users through (`o+x`): a container's
/// root is an unprivileged host uid, and libcontainer reaches the rootfs by its path.
fn check_reachable(root: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let root = std::fs::canonicalize(root).map_err(path_err(root))?;
    for dir in root.ancestors().skip(1) {
        let mode = std::fs::metadata(dir)
            .map_err(path_err(dir))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(RuntimeError::Other(format!(
                "{} (mode {:o}) does not let other users through, and a container's root is an unprivileged host user that must reach {}: run `chmod o+x {}` or choose another --root",
                dir.display(),
                mode & 0o7777,
                root.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Give the container's root group traverse access to its folder (0710).
fn share_dir_with(dir: &Path, ids: &userns::IdRange) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    rustix::fs::chown(dir, None, Some(rustix::fs::Gid::from_raw(ids.gid)))
        .map_err(|e| path_err(dir)(e.into()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710)).map_err(path_err(dir))
}

/// docker rename: a new valid, unused name for the container (running or not).
pub fn rename(root: &Path, record: &ContainerRecord, name: &str) -> Result<(), RuntimeError> {
    validate_name(name)?;
    StateStore::open(root)?.rename(&record.id, name)?;
    Ok(())
}

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn validate_name(name: &str) -> Result<(), RuntimeError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Other(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn random_name(id: &str) -> String {
    const LEFT: &[&str] = &[
        "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "noble",
        "quiet", "sharp", "swift", "tender", "vivid", "wise", "bold", "clever", "jolly", "proud",
    ];
    const RIGHT: &[&str] = &[
        "turing", "hopper", "lovelace", "curie", "noether", "shannon", "ritchie", "thompson",
        "knuth", "dijkstra", "hamilton", "liskov", "lamport", "perlman", "torvalds", "wozniak",
        "babbage", "kay", "cerf", "hoare",
    ];
    let left = LEFT[rand::random::<usize>() % LEFT.len()];
    let right = RIGHT[rand::random::<usize>() % RIGHT.len()];
    format!("{left}_{right}_{}", &id[..4])
}

/// Whether the container's monitor is alive (it holds `monitor.lock`).
pub fn monitor_alive(layout: &Layout, id: &str) -> bool {
    let Ok(file) = File::open(layout.monitor_lock(id)) else {
        return false;
    };
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(_) => true,
    }
}

/// Repair what crashed monitors left: a container whose record says created or running
/// but whose monitor is gone is killed (its cgroup), released, and recorded as exited.
/// Every farm command runs this first; it is cheap when there is nothing to do.
pub fn reconcile(root: &Path) -> Result<(), RuntimeError> {
    let layout = Layout::new(root);
    let state = StateStore::open(root)?;
    let records = state.list()?;
    sweep_orphans(&layout, &records);
    for record in records {
        if record.status == Status::Exited || monitor_alive(&layout, &record.id) {
            continue;
        }
        // Take the lock so that a concurrent reconcile does not repeat the work.
        let lock_path = layout.monitor_lock(&record.id);
        let Ok(lock) = File::open(&lock_path) else {
            reap(&layout, &state, &record)?;
            continue;
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        // Re-read: the monitor may have finished properly in between.
        match state.get(&record.id) {
            Ok(current) if current.status != Status::Exited => reap(&layout, &state, &current)?,
            _ => {}
        }
    }
    Ok(())
}

/// How long a folder may sit in staging/ before it counts as the leftover of a `farm run`
/// killed between making it and moving it into containers/ (that takes microseconds).
const STAGING_AGE: Duration = Duration::from_secs(60);

/// Remove container folders that have no record and no live creator (it holds the lock),
/// and old leftovers in staging/.
fn sweep_orphans(layout: &Layout, records: &[ContainerRecord]) {
    if let Ok(entries) = std::fs::read_dir(layout.containers()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if records.iter().any(|r| r.id == name) || monitor_alive(layout, &name) {
                continue;
            }
            let _ =
                crate::container::delete(&layout.run_root(), &name, &Layout::cgroups_path(&name));
            let _ = remove_files(layout, &name);
        }
    }
    if let Ok(entries) = std::fs::read_dir(layout.staging_root()) {
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= STAGING_AGE);
            if old {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn reap(layout: &Layout, state: &StateStore, record: &ContainerRecord) -> Result<(), RuntimeError> {
    let usage = crate::cgroups::read_usage(&Layout::cgroups_path(&record.id)).unwrap_or_default();
    crate::container::delete(
        &layout.run_root(),
        &record.id,
        &Layout::cgroups_path(&record.id),
    )?;
    let exit = Exit {
        code: 255,
        oom_killed: usage.oom_killed,
        error: Some(if record.status == Status::Created {
            "farm stopped while it was creating this container".to_owned()
        } else {
            "the container's monitor died (killed?); farm stopped the container".to_owned()
        }),
        usage,
        wall_seconds: 0.0,
        gpus: Vec::new(),
        network: None,
    };
    let mut exit = exit;
    if record.options.network == crate::options::NetworkMode::Internet {
        exit.network = crate::network::finish(layout, &record.id).0;
    }
    state.set_exited(&record.id, &exit, &crate::monitor::now())?;
    if record.options.auto_remove {
        remove_files(layout, &record.id)?;
        state.remove(&record.id)?;
    }
    Ok(())
}

/// Remove the container's folder (its writable layer, logs, spec).
pub fn remove_files(layout: &Layout, id: &str) -> Result<(), RuntimeError> {
    let dir = layout.container(id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::Path { path: dir, source }),
    }
}

/// `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, RuntimeError> {
    let bad = || {
        RuntimeError::Other(format!(
            "invalid signal {text:?}: use a name like SIGTERM, TERM or KILL, or a number"
        ))
    };
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

/// Whether `signal` ends the restart policy, as in moby's killWithSignal: SIGKILL, the
/// container's stop signal, or any signal when it has none of its own.
fn ends_restarts(record: &ContainerRecord, signal: Signal) -> bool {
    match record.options.stop_signal.as_deref().map(parse_signal) {
        Some(Ok(stop_signal)) => signal == Signal::SIGKILL || signal == stop_signal,
        _ => true,
    }
}

/// Send `signal` to the container's init, after checking the pid still is the
/// container's (its cgroup), so a reused pid is never signalled. A signal that ends the
/// container for good (see [`ends_restarts`]) is recorded first, so that its monitor does
/// not start it again.
pub fn kill(root: &Path, record: &ContainerRecord, signal: Signal) -> Result<(), RuntimeError> {
    let layout = Layout::new(root);
    if record.options.restart != crate::options::RestartPolicy::No && ends_restarts(record, signal)
    {
        StateStore::open(root)?.set_stop_requested(&record.id, true)?;
    }
    let not_running = || RuntimeError::Other(format!("container {} is not running", record.name));
    if record.status != Status::Running || !monitor_alive(&layout, &record.id) {
        return Err(not_running());
    }
    let pid = record.pid.ok_or_else(not_running)?;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let marker = format!("/farm/{}", record.id);
    if !cgroup.lines().any(|line| line.ends_with(&marker)) {
        return Err(not_running());
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .map_err(|e| RuntimeError::Other(format!("signalling container {}: {e}", record.name)))
}

/// Wait until the monitor is gone (at most `limit`); true when it is.
pub fn wait_monitor(root: &Path, id: &str, limit: Option<Duration>) -> bool {
    let layout = Layout::new(root);
    let start = Instant::now();
    loop {
        if !monitor_alive(&layout, id) {
            return true;
        }
        if limit.is_some_and(|l| start.elapsed() >= l) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// docker stop: the stop signal, then SIGKILL after `timeout`.
pub fn stop(root: &Path, record: &ContainerRecord, timeout: Duration) -> Result<(), RuntimeError> {
    let signal = record
        .options
        .stop_signal
        .as_deref()
        .map(parse_signal)
        .transpose()?
        .unwrap_or(Signal::SIGTERM);
    let layout = Layout::new(root);
    // Not running but its monitor alive: between two runs of a restart policy (the monitor
    // sees the stop request `kill` wrote and exits) or starting it again (killed below).
    if kill(root, record, signal).is_err() && !monitor_alive(&layout, &record.id) {
        return reconcile(root);
    }
    if !wait_monitor(root, &record.id, Some(timeout)) {
        let current = StateStore::open(root)?.get(&record.id)?;
        let _ = kill(root, &current, Signal::SIGKILL);
        wait_monitor(root, &record.id, Some(Duration::from_secs(30)));
    }
    reconcile(root)
}

/// `farm restart` (after the stop) and the start of a stopped container: its record is
/// `created` again and its `monitor.lock` flocked for the monitor that starts it with the
/// same id, name, options and writable layer. Refused while a monitor holds the lock, for
/// `--secret-env` (the values were opened in the first monitor's memory only), and when a
/// GPU it leased went to another container meanwhile.
pub fn prepare_start(root: &Path, record: &ContainerRecord) -> Result<OwnedFd, RuntimeError> {
    let layout = Layout::new(root);
    let path = layout.monitor_lock(&record.id);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(path_err(&path))?;
    let busy = || {
        RuntimeError::Other(format!(
            "container {} is running or being started by another farm command",
            record.name
        ))
    };
    flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|_| busy())?;
    let state = StateStore::open(root)?;
    let current = state.get(&record.id)?;
    if current.status != Status::Exited {
        return Err(busy());
    }
    if !current.options.secret_env.is_empty() {
        return Err(RuntimeError::Other(format!(
            "cannot start container {} again: its --secret-env values were opened in memory only and are gone; run a new container",
            record.name
        )));
    }
    let taken = state.active_leases()?;
    if let Some(gpu) = state
        .gpus(&record.id)?
        .into_iter()
        .find(|gpu| taken.contains(gpu))
    {
        if !current.options.gpu.share {
            return Err(RuntimeError::Other(format!(
                "cannot start container {} again: its GPU {gpu} is leased to another container now",
                record.name
            )));
        }
    }
    state.set_created_again(&record.id)?;
    Ok(OwnedFd::from(lock))
}

/// docker rm: refuse a running container unless `force` (then kill it first).
pub fn remove(root: &Path, record: &ContainerRecord, force: bool) -> Result<(), RuntimeError> {
    let layout = Layout::new(root);
    if monitor_alive(&layout, &record.id) {
        if !force {
            return Err(RuntimeError::Other(format!(
                "cannot remove container {}: it is running: stop it first (`farm stop {}`) or use `farm rm -f`",
                record.name, record.name
            )));
        }
        let _ = kill(root, record, Signal::SIGKILL);
        if !wait_monitor(root, &record.id, Some(Duration::from_secs(30))) {
            return Err(RuntimeError::Other(format!(
                "container {} did not stop within 30 s of SIGKILL",
                record.name
            )));
        }
    }
    reconcile(root)?;
    crate::container::delete(
        &layout.run_root(),
        &record.id,
        &Layout::cgroups_path(&record.id),
    )?;
    remove_files(&layout, &record.id)?;
    StateStore::open(root)?.remove(&record.id)?;
    Ok(())
}
