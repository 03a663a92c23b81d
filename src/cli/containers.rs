//! `farm ps`, `inspect`, `stop`, `kill`, `rm`, `wait`, and the hidden `__monitor`.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use farm_runtime::lifecycle;
use farm_runtime::monitor::{self, Mode, MonitorArgs};
use farm_runtime::state::{ContainerRecord, StateStore, Status};
use serde_json::json;

use super::Globals;

fn open(globals: &Globals) -> Result<StateStore> {
    lifecycle::reconcile(&globals.root).context("checking containers")?;
    StateStore::open(&globals.root).context("opening the state store")
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows running ones)
    #[arg(short, long)]
    all: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
    /// Print only IDs
    #[arg(short, long)]
    quiet: bool,
}

pub fn ps(globals: &Globals, args: PsArgs) -> Result<u8> {
    let state = open(globals)?;
    let records: Vec<ContainerRecord> = state
        .list()?
        .into_iter()
        .filter(|r| args.all || r.status != Status::Exited)
        .collect();
    if args.quiet {
        for record in &records {
            println!("{}", &record.id[..12]);
        }
        return Ok(0);
    }
    if args.json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                json!({
                    "Id": r.id,
                    "Name": r.name,
                    "Image": r.image.name,
                    "Command": command_line(r),
                    "State": r.status.as_str(),
                    "Status": status_text(r),
                    "ExitCode": r.exit.as_ref().map(|e| e.code),
                    "Created": r.created,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<12}   {:<30} {:<24} {:<28} {:<28} NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    );
    for r in &records {
        let mut command = command_line(r);
        if command.chars().count() > 22 {
            command = format!("{}…", command.chars().take(21).collect::<String>());
        }
        println!(
            "{:<12}   {:<30} {:<24} {:<28} {:<28} {}",
            &r.id[..12],
            r.image.name,
            format!("\"{command}\""),
            r.created.get(..19).unwrap_or(&r.created).replace('T', " "),
            status_text(r),
            r.name
        );
    }
    Ok(0)
}

fn command_line(record: &ContainerRecord) -> String {
    let config = &record.image.config["config"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let entrypoint = record
        .options
        .entrypoint
        .clone()
        .unwrap_or_else(|| strings(&config["Entrypoint"]));
    let cmd = if !record.options.command.is_empty() {
        record.options.command.clone()
    } else if record.options.entrypoint.is_some() {
        Vec::new()
    } else {
        strings(&config["Cmd"])
    };
    entrypoint
        .into_iter()
        .chain(cmd)
        .collect::<Vec<_>>()
        .join(" ")
}

fn status_text(record: &ContainerRecord) -> String {
    match (record.status, &record.exit) {
        (Status::Created, _) => "Created".to_owned(),
        (Status::Running, _) => format!(
            "Up since {}",
            record
                .started_at
                .as_deref()
                .and_then(|s| s.get(..19))
                .unwrap_or("?")
                .replace('T', " ")
        ),
        (Status::Restarting, exit) => {
            format!("Restarting ({})", exit.as_ref().map_or(0, |e| e.code))
        }
        (Status::Exited, Some(exit)) => match &exit.error {
            Some(error) => format!("Exited ({}): {error}", exit.code),
            None => format!("Exited ({})", exit.code),
        },
        (Status::Exited, None) => "Exited".to_owned(),
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Container names or IDs
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn inspect(globals: &Globals, args: InspectArgs) -> Result<u8> {
    let state = open(globals)?;
    let mut out = Vec::new();
    let mut failed = false;
    for name in &args.containers {
        match state.get(name) {
            Ok(record) => {
                let gpus = state.gpus(&record.id).unwrap_or_default();
                let restarts = state.restarts(&record.id).unwrap_or_default();
                let mut json = inspect_json(&record, &gpus);
                json["RestartCount"] = restarts.count.into();
                out.push(json)
            }
            Err(e) => {
                eprintln!("farm: {e}");
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { 1 } else { 0 })
}

fn inspect_json(r: &ContainerRecord, gpus: &[String]) -> serde_json::Value {
    let config = &r.image.config["config"];
    let exit = r.exit.clone().unwrap_or_default();
    let mut env = farm_runtime::spec::merged_env(r.image.env(), &r.options.env);
    env.extend(
        r.options
            .secret_env
            .iter()
            .map(|name| format!("{name}=<sealed>")),
    );
    json!({
        "Id": r.id,
        "Name": r.name,
        "Created": r.created,
        "Image": r.image.id,
        "ImageName": r.image.name,
        "Config": {
            "Entrypoint": r.options.entrypoint.clone().map(serde_json::Value::from).unwrap_or_else(|| config["Entrypoint"].clone()),
            "Cmd": if r.options.command.is_empty() { config["Cmd"].clone() } else { json!(r.options.command) },
            "Env": env,
            "WorkingDir": r.options.workdir.clone().map(serde_json::Value::from).unwrap_or_else(|| config["WorkingDir"].clone()),
            "User": r.options.user.clone().map(serde_json::Value::from).unwrap_or_else(|| config["User"].clone()),
            "Hostname": r.options.hostname.clone().unwrap_or_else(|| r.id[..12].to_owned()),
            "Labels": r.options.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        },
        "State": {
            "Status": r.status.as_str(),
            "Running": r.status == Status::Running,
            "Pid": r.pid,
            "MonitorPid": r.monitor_pid,
            "ExitCode": exit.code,
            "OOMKilled": exit.oom_killed,
            "Error": exit.error,
            "StartedAt": r.started_at,
            "FinishedAt": r.finished_at,
        },
        "Usage": {
            "CpuUserSeconds": exit.usage.cpu_user_ns as f64 / 1e9,
            "CpuSystemSeconds": exit.usage.cpu_system_ns as f64 / 1e9,
            "MemoryPeakBytes": exit.usage.memory_peak_bytes,
            "WallSeconds": exit.wall_seconds,
            "Gpus": exit.gpus.iter().map(|g| json!({
                "Id": g.id,
                "Seconds": g.seconds,
                "EnergyJoules": g.energy_joules,
            })).collect::<Vec<_>>(),
            "Network": exit.network.map(|n| json!({
                "TxBytes": n.tx_bytes,
                "TxPackets": n.tx_packets,
                "RxBytes": n.rx_bytes,
                "RxPackets": n.rx_packets,
            })),
        },
        "Gpus": gpus,
        "IdMap": { "Uid": r.ids.uid, "Gid": r.ids.gid, "Size": r.ids.size },
        "HostConfig": r.options,
    })
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, or 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(globals: &Globals, args: StopArgs) -> Result<u8> {
    let state = open(globals)?;
    each(&args.containers, |name| {
        let record = state.get(name)?;
        let wait = args.time.or(record.options.stop_timeout).unwrap_or(10);
        lifecycle::stop(&globals.root, &record, Duration::from_secs(wait))?;
        println!("{name}");
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send (name or number)
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn kill(globals: &Globals, args: KillArgs) -> Result<u8> {
    let signal = lifecycle::parse_signal(&args.signal)?;
    let state = open(globals)?;
    each(&args.containers, |name| {
        let record = state.get(name)?;
        lifecycle::kill(&globals.root, &record, signal)?;
        println!("{name}");
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn rm(globals: &Globals, args: RmArgs) -> Result<u8> {
    let state = open(globals)?;
    each(&args.containers, |name| {
        let record = state.get(name)?;
        lifecycle::remove(&globals.root, &record, args.force)?;
        println!("{name}");
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(globals: &Globals, args: WaitArgs) -> Result<u8> {
    let state = open(globals)?;
    each(&args.containers, |name| {
        let record = state.get(name)?;
        lifecycle::wait_monitor(&globals.root, &record.id, None);
        lifecycle::reconcile(&globals.root)?;
        let record = state.get(&record.id)?;
        println!("{}", record.exit.map(|e| e.code).unwrap_or(255));
        Ok(())
    })
}

/// Run `action` for each name; report failures on stderr and exit 1 if any.
pub(super) fn each(names: &[String], mut action: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut failed = false;
    for name in names {
        if let Err(e) = action(name) {
            eprintln!("farm: {}", super::render_error(&e));
            failed = true;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

#[derive(Debug, Args)]
pub struct MonitorCliArgs {
    #[arg(long)]
    id: String,
    /// The inherited, flocked monitor.lock (stays open for the monitor's life)
    #[arg(long = "lock-fd")]
    lock_fd: i32,
    /// Foreground: stream to our own stdio
    #[arg(long)]
    attach: bool,
    /// A pipe holding the --secret-env values (`NAME\0VALUE\0`…), read to its end
    #[arg(long = "secrets-fd")]
    secrets_fd: Option<i32>,
}

/// The --secret-env pipe that farm run left open as `fd`: opened again through /proc (no
/// unsafe fd adoption), the inherited descriptor closed.
fn receive_secrets(
    fd: i32,
) -> Result<farm_runtime::secrets::SecretEnv, farm_runtime::secrets::SecretError> {
    let pipe = std::fs::File::open(format!("/proc/self/fd/{fd}"))?;
    nix::unistd::close(fd).map_err(std::io::Error::from)?;
    farm_runtime::secrets::SecretEnv::receive(pipe.into())
}

/// The monitor; runs before any async runtime exists (it must be single-threaded).
pub fn monitor(root: &std::path::Path, args: MonitorCliArgs) -> i32 {
    if !args.attach {
        let _ = rustix::process::setsid();
    }
    let secret_env = match args.secrets_fd.map(receive_secrets) {
        Some(Ok(env)) => env,
        Some(Err(e)) => {
            eprintln!("farm: {e}");
            return 125;
        }
        None => farm_runtime::secrets::SecretEnv::default(),
    };
    monitor::run(MonitorArgs {
        secret_env,
        root: root.to_owned(),
        id: args.id,
        lock_fd: Some(args.lock_fd),
        mode: if args.attach {
            Mode::Attached
        } else {
            Mode::Detached
        },
    })
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the output until the container exits
    #[arg(short, long)]
    follow: bool,
    /// Show only the last N lines ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Prefix each line with its RFC 3339 time
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

pub fn logs(globals: &Globals, args: LogsArgs) -> Result<u8> {
    use std::io::Write;
    let state = open(globals)?;
    let record = state.get(&args.container)?;
    let tail = match args.tail.as_str() {
        "all" => None,
        n => Some(
            n.parse::<usize>()
                .with_context(|| format!("invalid --tail {n:?}: use a number or all"))?,
        ),
    };
    let layout = farm_runtime::layout::Layout::new(&globals.root);
    let path = layout.log(&record.id);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut emit = |entry: &farm_runtime::logs::LogEntry| -> std::io::Result<()> {
        let text = if args.timestamps {
            format!("{} {}", entry.time, entry.log)
        } else {
            entry.log.clone()
        };
        match entry.stream {
            farm_runtime::logs::Stream::Stdout => {
                let mut out = stdout.lock();
                out.write_all(text.as_bytes())?;
                out.flush()
            }
            farm_runtime::logs::Stream::Stderr => stderr.lock().write_all(text.as_bytes()),
        }
    };
    if args.follow {
        let id = record.id.clone();
        farm_runtime::logs::follow(
            &path,
            tail,
            || lifecycle::monitor_alive(&layout, &id),
            &mut emit,
        )?;
    } else {
        for entry in farm_runtime::logs::read(&path, tail)? {
            emit(&entry)?;
        }
    }
    Ok(0)
}
