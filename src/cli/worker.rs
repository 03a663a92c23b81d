//! `farm worker run|status|install` and the hidden `farm __test-coordinator`: flags in,
//! `farm_scheduler_client` does the work, exit codes out.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use farm_scheduler_client::{status, testcoord, worker, Config};

use super::Globals;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(subcommand)]
    command: WorkerCommand,
}

#[derive(Debug, Subcommand)]
enum WorkerCommand {
    /// Take jobs from the coordinator and run them until SIGTERM (which drains)
    Run(RunArgs),
    /// Show the coordinator in use, leases held, running jobs, queued reports, last error
    Status(StatusArgs),
    /// Write a systemd unit that runs `farm worker run` (containers outlive the worker)
    Install(InstallArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The worker config: coordinator URLs, labels, reserve, max jobs, drain timeout
    #[arg(long, short, default_value = "/etc/farm/worker.conf")]
    config: PathBuf,
    /// Serve Prometheus metrics (GET /metrics) on this address: running jobs, CPU,
    /// memory, GPU seconds, bytes and credits earned. Off by default; keep it on loopback
    /// unless you mean to expose it.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InstallArgs {
    /// Print the unit instead of writing it
    #[arg(long)]
    print: bool,
    #[arg(long, default_value = "/etc/farm/worker.conf")]
    config: PathBuf,
    #[arg(long, default_value = "/etc/systemd/system/farm-worker.service")]
    unit: PathBuf,
}

#[derive(Debug, Args)]
pub struct TestCoordinatorArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
}

pub async fn run(globals: &Globals, args: WorkerArgs) -> Result<u8> {
    match args.command {
        WorkerCommand::Run(args) => run_worker(globals, args).await,
        WorkerCommand::Status(args) => show_status(globals, args),
        WorkerCommand::Install(args) => install(globals, args),
    }
}

async fn run_worker(globals: &Globals, args: RunArgs) -> Result<u8> {
    if !rustix::process::geteuid().is_root() {
        bail!("farm worker needs root (its jobs run as farm run's containers do): run it with sudo or install it as a service (`farm worker install`)");
    }
    // Jobs' sealed secrets pass through this process's memory: no core dump of it, and
    // no ptrace by other users (the kernel's rule for non-dumpable processes).
    nix::sys::prctl::set_dumpable(false).context("marking the worker non-dumpable")?;
    let mut config = Config::load(&args.config)?;
    config
        .insecure_registries
        .extend(globals.insecure.iter().cloned());
    let exe = std::env::current_exe().context("finding farm's own executable")?;
    let worker = worker::Worker::new(globals.root.clone(), exe, config)?;
    if let Some(addr) = args.metrics {
        let bound = farm_scheduler_client::metrics::serve(globals.root.clone(), addr)
            .with_context(|| format!("serving metrics on {addr}"))?;
        eprintln!("farm worker: metrics on http://{bound}/metrics");
    }
    eprintln!(
        "farm worker: node {} taking jobs from {}",
        worker.node_id(),
        worker.coordinator()
    );
    worker::run(worker, shutdown()).await?;
    eprintln!("farm worker: drained");
    Ok(0)
}

/// SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("farm worker: draining: no new jobs; running jobs get the drain timeout");
}

fn show_status(globals: &Globals, args: StatusArgs) -> Result<u8> {
    let status = status::read(&globals.root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(0);
    }
    println!("node:           {}", status.node_id);
    println!(
        "coordinator:    {}",
        status.coordinator.as_deref().unwrap_or("(none yet)")
    );
    println!("running jobs:   {}", status.running_jobs);
    println!("queued reports: {}", status.queued_reports);
    println!(
        "last error:     {}",
        status.last_error.as_deref().unwrap_or("(none)")
    );
    println!("leases:         {}", status.leases.len());
    for lease in &status.leases {
        println!(
            "  {} job {} token {} {} {}",
            lease.lease_id,
            lease.job_id,
            lease.fencing_token,
            lease.state.as_str(),
            lease.container_id.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

fn install(globals: &Globals, args: InstallArgs) -> Result<u8> {
    let exe = std::env::current_exe().context("finding farm's own executable")?;
    let unit = unit_file(&exe, &globals.root, &args.config);
    if args.print {
        print!("{unit}");
        return Ok(0);
    }
    std::fs::write(&args.unit, unit).with_context(|| {
        format!(
            "writing {} (run as root, or use --print)",
            args.unit.display()
        )
    })?;
    eprintln!(
        "wrote {}: run `systemctl daemon-reload && systemctl enable --now farm-worker`",
        args.unit.display()
    );
    Ok(0)
}

/// The systemd unit. `KillMode=process`: a stop or restart of the worker signals only
/// the worker itself; the containers' monitors (their own sessions) keep running and the
/// next worker adopts them. `Delegate=yes`: farm manages cgroups below its own.
fn unit_file(exe: &std::path::Path, root: &std::path::Path, config: &std::path::Path) -> String {
    format!(
        "[Unit]\n\
         Description=farm worker: runs the coordinator's jobs in farm containers\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={} --root {} worker run --config {}\n\
         Restart=always\n\
         RestartSec=2\n\
         KillMode=process\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=infinity\n\
         Delegate=yes\n\
         LimitNOFILE=1048576\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         TasksMax=infinity\n\
         OOMScoreAdjust=-500\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        exe.display(),
        root.display(),
        config.display()
    )
}

/// The test coordinator, by hand: until Ctrl-C.
pub fn test_coordinator(args: TestCoordinatorArgs) -> Result<u8> {
    let coordinator = testcoord::Coordinator::start(&args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "test coordinator at {0}: submit a job with\n  curl -s -d '{{\"image\":\"IMAGE\",\"command\":[\"echo\",\"hi\"]}}' {0}/test/jobs\nand watch {0}/test/state",
        coordinator.url()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
