//! `farm run`: docker's flags into [`RunOptions`], the image (pulled if missing), a
//! container record, then the monitor: exec'd in place in the foreground, spawned
//! detached with `-d`.

use std::collections::HashSet;
use std::io::BufRead;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use farm_puller::image::MAX_DOCUMENT_BYTES;
use farm_puller::pull::PullProgress;
use farm_puller::registry::RegistryClient;
use farm_puller::store::{ImageRecord, Store, StoreError};
use farm_puller::ImageSource;
use farm_runtime::lifecycle;
use farm_runtime::options::{
    BindMount, NetworkMode, Resources, RestartPolicy, SeccompMode, SecurityOptions, TmpfsMount,
};
use farm_runtime::secrets::SecretEnv;
use farm_runtime::state::ImageRef;
use farm_runtime::RunOptions;

use super::progress::{Lines, Quiet};
use super::Globals;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pull the image before running: missing, always or never
    #[arg(long, value_enum, default_value = "missing")]
    pull: PullPolicy,
    /// Run in the background and print the container ID
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Keep standard input open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Name of the container
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to take it from farm's environment)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A secret environment variable, NAME=SEALED: the value sealed to this node's
    /// x25519_public_key (`farm identity seal`, or libsodium's crypto_box_seal), opened in
    /// memory only; `farm inspect` shows NAME=<sealed>
    #[arg(long = "secret-env", value_name = "NAME=SEALED_BASE64")]
    secret_env: Vec<String>,
    /// Registry credentials for the pull, sealed to this node (USERNAME:PASSWORD)
    #[arg(long = "sealed-auth", value_name = "SEALED_BASE64")]
    sealed_auth: Option<String>,
    /// Read environment variables from a file of KEY=VALUE lines
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User: name, uid, uid:gid or name:group
    #[arg(short, long)]
    user: Option<String>,
    /// Override the image's ENTRYPOINT ("" clears it)
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name
    #[arg(long)]
    hostname: Option<String>,
    /// Number of CPUs (0.5 = half a core)
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory limit (e.g. 512m, 2g); swap is not allowed beyond it unless --memory-swap
    #[arg(short, long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Memory plus swap (e.g. 1g; equal to --memory: no swap; -1: unlimited swap)
    #[arg(long = "memory-swap", value_parser = parse_memory_swap, allow_negative_numbers = true)]
    memory_swap: Option<i64>,
    /// Restart policy of a detached container: no, on-failure[:MAX-RETRIES], always,
    /// unless-stopped (kept by its monitor; `farm stop` ends it)
    #[arg(long, default_value = "no")]
    restart: farm_runtime::options::RestartPolicy,
    /// Most processes at once (-1 for unlimited)
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Size of /dev/shm (default 64m)
    #[arg(long = "shm-size", value_parser = parse_bytes)]
    shm_size: Option<u64>,
    /// Mount the root filesystem read-only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS]
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// Bind mount: HOST-PATH:CONTAINER-PATH[:ro]
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    volume: Vec<String>,
    /// Bind mount: type=bind,source=...,target=...[,readonly]
    #[arg(long, value_name = "type=bind,source=,target=")]
    mount: Vec<String>,
    /// Network: internet (the default: public addresses only; the LAN, the host,
    /// link-local/metadata and other containers are blocked), none (loopback only) or host
    #[arg(long, env = "FARM_NETWORK", default_value = "internet")]
    network: String,
    /// Publish a container port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]
    /// (with --network internet; reached from the LAN and from the host itself)
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/PROTO]")]
    publish: Vec<farm_runtime::options::Publish>,
    /// Nameserver for the container's resolv.conf (repeatable)
    #[arg(long)]
    dns: Vec<std::net::IpAddr>,
    /// Most new connections per second (only lowers the farmer's limit)
    #[arg(long = "net-conn-rate", value_name = "N")]
    net_conn_rate: Option<u32>,
    /// Most open connections at once (only lowers the farmer's limit)
    #[arg(long = "net-max-conn", value_name = "N")]
    net_max_conn: Option<u32>,
    /// Egress bandwidth cap in Mbit/s (only lowers the farmer's limit)
    #[arg(long = "net-egress-mbps", value_name = "MBPS")]
    net_egress_mbps: Option<u32>,
    /// Signal that `farm stop` sends first (default SIGTERM or the image's)
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Seconds `farm stop` waits before SIGKILL (default 10)
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<u64>,
    /// Set a label KEY=VALUE
    #[arg(short, long)]
    label: Vec<String>,
    /// Kill the container when it runs longer than this (e.g. 30s, 5m, 2h)
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Security options: seccomp=PATH or seccomp=unconfined, no-new-privileges
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Add a Linux capability (or ALL)
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a Linux capability (or ALL)
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// GPUs: all, a count (2), or device=0,2 / device=GPU-UUID
    #[arg(long)]
    gpus: Option<String>,
    /// Let the GPUs (and CDI devices) also go to other containers started with --gpu-share
    #[arg(long = "gpu-share")]
    gpu_share: bool,
    /// A CDI device by its full name (nvidia.com/gpu=0, nvidia.com/gpu=all), as described
    /// by the specs in /etc/cdi and /var/run/cdi: its device nodes, read-only library
    /// binds and symlinks, leased like --gpus; spec hooks are never run (repeatable)
    #[arg(long = "device")]
    device: Vec<String>,
    /// Look for the NVIDIA driver under this folder instead of / (for tests)
    #[arg(long = "driver-root", hide = true, env = "FARM_DRIVER_ROOT")]
    driver_root: Option<PathBuf>,

    /// Image: NAME[:TAG|@DIGEST], an image ID, oci:PATH[:TAG] or docker-archive:PATH
    image: String,
    /// Command and arguments (replace the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Open every `--secret-env NAME=SEALED` with this node's identity.
fn open_secrets(globals: &Globals, args: &RunArgs) -> Result<SecretEnv> {
    if args.secret_env.is_empty() {
        return Ok(SecretEnv::default());
    }
    let identity = farm_trust::Identity::load(&globals.root)?;
    let mut out = Vec::new();
    for entry in &args.secret_env {
        let Some((name, sealed)) = entry.split_once('=') else {
            bail!("--secret-env takes NAME=SEALED_BASE64 (no '=' in the value given)");
        };
        let plain = farm_trust::seal::open(&identity, sealed)
            .with_context(|| format!("opening --secret-env {name}"))?;
        let value = String::from_utf8(plain.to_vec())
            .map_err(|_| anyhow!("the value of --secret-env {name} is not UTF-8 text"))?;
        out.push((name.to_owned(), zeroize::Zeroizing::new(value)));
    }
    let env = SecretEnv(out);
    env.check()?;
    Ok(env)
}

/// A pipe that carries `secrets` to the monitor; the read end stays open across exec and
/// its number goes on the monitor's command line.
fn secrets_pipe(
    secrets: &SecretEnv,
    command: &mut Command,
) -> Result<Option<std::os::fd::OwnedFd>> {
    let read = secrets.pipe_for_monitor()?;
    if let Some(read) = &read {
        command
            .arg("--secrets-fd")
            .arg(read.as_raw_fd().to_string());
    }
    Ok(read)
}

pub async fn run(globals: &Globals, args: RunArgs) -> Result<u8> {
    let mut options = options(&args)?;
    let secrets = open_secrets(globals, &args)?;
    options.secret_env = secrets.names();
    if !rustix::process::geteuid().is_root() {
        bail!("farm run needs root (it creates user namespaces, cgroups and mounts for the container, which then runs as an unprivileged user): run it with sudo; rootless mode is not supported yet");
    }
    lifecycle::reconcile(&globals.root).context("checking containers")?;
    let store = Arc::new(globals.open_store()?);
    let record = image(globals, &store, &args).await?;
    let image_ref = image_ref(&store, &record)?;
    // The shared lock keeps `farm prune` out until the record lists our snapshots.
    let (container, lock) = {
        let _lock = store.lock_shared()?;
        lifecycle::create(&globals.root, image_ref, options.clone())?
    };
    let mut command = monitor_command(globals, &container.id, &lock)?;
    let secrets_read_end = secrets_pipe(&secrets, &mut command)?;
    drop(secrets);
    if !options.detach {
        command.arg("--attach");
        let error = command.exec();
        bail!("starting the container's monitor: {error}");
    }
    let code = spawn_detached(globals, &container.id, command, lock, secrets_read_end)?;
    if code == 0 {
        println!("{}", container.id);
    }
    Ok(code)
}

/// `farm __monitor` for container `id`, with the flocked `lock` left open across exec.
pub(super) fn monitor_command(
    globals: &Globals,
    id: &str,
    lock: &std::os::fd::OwnedFd,
) -> Result<Command> {
    rustix::io::fcntl_setfd(lock.as_fd(), rustix::io::FdFlags::empty())
        .context("passing the monitor lock")?;
    let exe = std::env::current_exe().context("finding farm's own executable")?;
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(&globals.root)
        .arg("__monitor")
        .arg("--id")
        .arg(id)
        .arg("--lock-fd")
        .arg(lock.as_raw_fd().to_string());
    Ok(command)
}

/// Spawn the detached monitor of container `id` and wait for its ready line: 0 when the
/// container runs; otherwise the error is printed and its exit code returned.
pub(super) fn spawn_detached(
    globals: &Globals,
    id: &str,
    mut command: Command,
    lock: std::os::fd::OwnedFd,
    secrets_read_end: Option<std::os::fd::OwnedFd>,
) -> Result<u8> {
    let monitor_log = globals.root.join("containers").join(id).join("monitor.log");
    let log = std::fs::File::create(&monitor_log).context("creating the monitor's log")?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting the container's monitor")?;
    drop(lock);
    drop(secrets_read_end);
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .context("waiting for the container's monitor")?;
    let line = line.trim_end();
    if line.starts_with("ok") {
        return Ok(0);
    }
    if let Some(rest) = line.strip_prefix("error ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        eprintln!("farm: {message}");
        return Ok(code.parse::<u8>().unwrap_or(super::EXIT_FARM_ERROR));
    }
    let _ = child.wait();
    lifecycle::reconcile(&globals.root)?;
    Err(anyhow!(
        "the container's monitor ended before starting it; see {}",
        monitor_log.display()
    ))
}

/// The image record to run, pulled according to `--pull`.
async fn image(globals: &Globals, store: &Arc<Store>, args: &RunArgs) -> Result<ImageRecord> {
    let local = match store.image(&args.image) {
        Ok(record) => Some(record),
        Err(StoreError::NoSuchImage(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let pull = match (args.pull, &local) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, None) => true,
        (PullPolicy::Never, None) => bail!(
            "no such image {} here, and --pull never: pull it first (`farm pull {}`)",
            args.image,
            args.image
        ),
        _ => false,
    };
    if !pull {
        return Ok(local.expect("checked"));
    }
    let source = ImageSource::parse(&args.image)?;
    let mut registry_options = globals.registry_options();
    if let Some(sealed) = &args.sealed_auth {
        registry_options.credentials =
            Some(super::pull::sealed_credentials(&globals.root, sealed)?);
    }
    let client = RegistryClient::new(registry_options)?;
    let progress: Arc<dyn PullProgress> = if args.detach {
        Arc::new(Quiet)
    } else {
        Arc::new(Lines::on_stderr())
    };
    let options = super::pull::pull_options(None)?;
    farm_puller::pull::pull(store.clone(), &client, &source, &options, progress)
        .await
        .map_err(|e| super::shown_pull_error(e, client.scrubber()))
        .with_context(|| format!("pulling {}", source.name()))
}

fn image_ref(store: &Store, record: &ImageRecord) -> Result<ImageRef> {
    let config = store
        .content
        .read_document(&record.config_digest, MAX_DOCUMENT_BYTES)
        .with_context(|| format!("reading the config of {}", record.name))?;
    let config: serde_json::Value = serde_json::from_slice(&config)
        .with_context(|| format!("the config of {} is not JSON", record.name))?;
    let mut layers = Vec::new();
    for layer in &record.layers {
        if !store.snapshots.exists(&layer.chain_id) {
            bail!(
                "the snapshot of layer {} of {} is missing: pull the image again (`farm pull {}`)",
                layer.digest,
                record.name,
                record.name
            );
        }
        layers.push(store.snapshots.path(&layer.chain_id));
    }
    Ok(ImageRef {
        id: record.id().to_string(),
        name: record.name.clone(),
        chain_ids: record
            .layers
            .iter()
            .map(|l| l.chain_id.to_string())
            .collect(),
        layers,
        config,
    })
}

/// The chain IDs every container needs kept (for `farm prune`).
pub fn snapshots_in_use(globals: &Globals) -> Result<HashSet<farm_puller::Digest>> {
    let state = farm_runtime::state::StateStore::open(&globals.root)?;
    let mut out = HashSet::new();
    for record in state.list()? {
        for chain in &record.image.chain_ids {
            out.insert(farm_puller::Digest::parse(chain)?);
        }
    }
    Ok(out)
}

fn options(args: &RunArgs) -> Result<RunOptions> {
    let mut env = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading --env-file {}", file.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.extend(env_entry(line));
        }
    }
    for entry in &args.env {
        env.extend(env_entry(entry));
    }
    let network = match args.network.as_str() {
        "none" => NetworkMode::None,
        "host" => {
            eprintln!(
                "farm: warning: --network host gives the container the host's network: every LAN device, every service listening on the host (also on 127.0.0.1) and the cloud metadata address"
            );
            NetworkMode::Host
        }
        "internet" => NetworkMode::Internet,
        other => bail!("unsupported --network {other:?}: use none, internet or host"),
    };
    let mut seccomp = SeccompMode::Default;
    for opt in &args.security_opt {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        match key {
            "seccomp" if value == "unconfined" => seccomp = SeccompMode::Unconfined,
            "seccomp" if !value.is_empty() => seccomp = SeccompMode::Profile(PathBuf::from(value)),
            "no-new-privileges" if value.is_empty() || value == "true" => {}
            _ => bail!(
                "unsupported --security-opt {opt:?}: farm takes seccomp=PATH, seccomp=unconfined and no-new-privileges (always on)"
            ),
        }
    }
    let mut binds = Vec::new();
    for volume in &args.volume {
        binds.push(parse_volume(volume)?);
    }
    for mount in &args.mount {
        binds.push(parse_mount(mount)?);
    }
    let tmpfs = args
        .tmpfs
        .iter()
        .map(|t| {
            let (target, options) = t.split_once(':').unwrap_or((t.as_str(), ""));
            TmpfsMount {
                target: target.to_owned(),
                options: options.to_owned(),
            }
        })
        .collect();
    let labels = args
        .label
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    if args.tty && args.detach {
        bail!(
            "-t with -d is not supported yet: farm has no attach; run in the foreground or drop -t"
        );
    }
    if args.restart != RestartPolicy::No {
        if args.rm {
            bail!("Conflicting options: --restart and --rm");
        }
        if !args.detach {
            bail!("--restart needs -d: farm has no daemon, the monitor of a detached container keeps the policy");
        }
        if !args.secret_env.is_empty() {
            bail!("--restart with --secret-env is not supported yet: the sealed values are opened in the first monitor's memory only");
        }
    }
    if !args.publish.is_empty() && network != NetworkMode::Internet {
        bail!("-p needs --network internet (with --network host the container's ports are the host's already; with none there is nothing to reach)");
    }
    Ok(RunOptions {
        publish: args.publish.clone(),
        coordinator_job: false,
        secret_env: Vec::new(),
        name: args.name.clone(),
        entrypoint: args.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        }),
        command: args.command.clone(),
        env,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        interactive: args.interactive,
        tty: args.tty,
        detach: args.detach,
        auto_remove: args.rm,
        resources: Resources {
            cpus: args.cpus,
            memory: args.memory,
            memory_swap: args.memory_swap,
            pids_limit: args.pids_limit,
            shm_size: args.shm_size,
        },
        read_only: args.read_only,
        tmpfs,
        binds,
        network,
        dns: args.dns.clone(),
        network_limits: farm_runtime::options::NetLimits {
            new_connections_per_second: args.net_conn_rate,
            max_connections: args.net_max_conn,
            egress_mbps: args.net_egress_mbps,
        },
        security: SecurityOptions {
            seccomp,
            cap_add: args.cap_add.clone(),
            cap_drop: args.cap_drop.clone(),
        },
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        labels,
        timeout: args.timeout,
        restart: args.restart,
        gpu: farm_runtime::options::GpuOptions {
            gpus: args.gpus.clone(),
            share: args.gpu_share,
            cdi_devices: args.device.clone(),
            driver_root: args.driver_root.clone(),
        },
    })
}

/// `KEY=VALUE` as is; a bare `KEY` takes farm's own value, or is dropped when unset.
fn env_entry(entry: &str) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_owned());
    }
    std::env::var(entry).ok().map(|v| format!("{entry}={v}"))
}

fn parse_volume(text: &str) -> Result<BindMount> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => bail!(
            "invalid -v {text:?}: use HOST-PATH:CONTAINER-PATH[:ro] (farm has no named volumes)"
        ),
    };
    if !source.starts_with('/') {
        bail!("invalid -v {text:?}: the host path must be absolute (farm has no named volumes)");
    }
    let read_only = match mode {
        "" | "rw" => false,
        "ro" => true,
        other => bail!("invalid -v mode {other:?}: use ro or rw"),
    };
    Ok(BindMount {
        source: PathBuf::from(source),
        target: target.to_owned(),
        read_only,
    })
}

fn parse_mount(text: &str) -> Result<BindMount> {
    let mut kind = None;
    let mut source = None;
    let mut target = None;
    let mut read_only = false;
    for field in text.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => kind = Some(value),
            "source" | "src" => source = Some(value),
            "target" | "destination" | "dst" => target = Some(value),
            "readonly" | "ro" => read_only = value.is_empty() || value == "true" || value == "1",
            other => bail!("unsupported --mount field {other:?}"),
        }
    }
    if kind != Some("bind") {
        bail!("unsupported --mount {text:?}: farm takes type=bind (use --tmpfs for tmpfs)");
    }
    Ok(BindMount {
        source: PathBuf::from(source.ok_or_else(|| anyhow!("--mount {text:?} has no source"))?),
        target: target
            .ok_or_else(|| anyhow!("--mount {text:?} has no target"))?
            .to_owned(),
        read_only,
    })
}

/// docker's sizes: `512`, `64k`, `64m`, `2g` (binary units), `b` suffix allowed.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match lower.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&lower[..i], &lower[i..]),
        None => (lower, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "invalid size {text:?}: use a number with k, m, g or t"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: use a number with k, m, g or t"))?;
    if value.is_nan() || value < 0.0 {
        return Err(format!("invalid size {text:?}"));
    }
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `--memory-swap`: `-1` (unlimited swap) or a size as [`parse_bytes`].
fn parse_memory_swap(text: &str) -> Result<i64, String> {
    if text.trim() == "-1" {
        return Ok(-1);
    }
    let bytes = parse_bytes(text)?;
    i64::try_from(bytes).map_err(|_| format!("invalid size {text:?}: too large"))
}

/// `30s`, `5m`, `2h`, `1h30m`, `500ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: use e.g. 30s, 5m, 2h or 1h30m");
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds > 0.0 && seconds.is_finite() {
            return Ok(Duration::from_secs_f64(seconds));
        }
        return Err(bad());
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    if total <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("12x").is_err());
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn volumes() {
        let bind = parse_volume("/data:/in:ro").unwrap();
        assert!(bind.read_only);
        assert_eq!(bind.target, "/in");
        assert!(parse_volume("data:/in").is_err());
        let bind = parse_mount("type=bind,source=/a,target=/b,readonly").unwrap();
        assert!(bind.read_only);
        assert!(parse_mount("type=volume,source=a,target=/b").is_err());
    }
}
