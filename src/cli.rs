//! Command-line interface: one module per command, docker's names and flags.

mod containers;
mod cp;
mod earnings;
mod exec;
mod identity;
mod images;
mod info;
mod login;
mod policy;
mod progress;
mod prune;
mod pull;
mod rename;
mod restart;
mod rmi;
mod run;
mod save;
mod stats;
mod tag;
mod top;
mod worker;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use farm_puller::registry::RegistryOptions;
use farm_puller::store::Store;

#[derive(Debug, Parser)]
#[command(name = "farm", version, about = "Pull and run container images without Docker", long_about = None)]
pub struct Cli {
    /// Where farm keeps images and state [default: /var/lib/farm for root, else ~/.local/share/farm]
    #[arg(long, global = true, env = "FARM_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    /// A registry (host[:port]) that may be reached over plain HTTP; loopback always may
    #[arg(
        long = "insecure-registry",
        global = true,
        value_name = "HOST",
        env = "FARM_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download an image from a registry (or an oci: / docker-archive: source)
    Pull(pull::PullArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Remove one or more images (their content goes at the next prune)
    Rmi(rmi::RmiArgs),
    /// Remove blobs and snapshots that no image references
    Prune(prune::PruneArgs),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Run a command in a new container
    Run(Box<run::RunArgs>),
    /// List containers
    Ps(containers::PsArgs),
    /// Show a container's configuration, state and usage as JSON
    Inspect(containers::InspectArgs),
    /// Stop containers (the stop signal, then SIGKILL)
    Stop(containers::StopArgs),
    /// Restart containers (stop, then start the same container again)
    Restart(restart::RestartArgs),
    /// Send a signal to containers
    Kill(containers::KillArgs),
    /// Remove containers
    Rm(containers::RmArgs),
    /// Wait for containers to exit and print their exit codes
    Wait(containers::WaitArgs),
    /// Show a container's output
    Logs(containers::LogsArgs),
    /// Run a command in a running container
    Exec(exec::ExecArgs),
    /// Show what running containers use: CPU, memory, network and block I/O, processes
    Stats(stats::StatsArgs),
    /// Rename a container
    Rename(rename::RenameArgs),
    /// Copy files or folders between a container (running or stopped) and the host
    Cp(cp::CpArgs),
    /// Write images to a docker-archive tarball (what `docker load` reads)
    Save(save::SaveArgs),
    /// Give an image another name (no content is copied)
    Tag(tag::TagArgs),
    /// Show the processes of a running container
    Top(top::TopArgs),
    /// Show this machine as farm sees it: CPU, memory, disk, kernel, sandbox, GPUs
    Info(info::InfoArgs),
    /// Create this node's identity (Ed25519 signing and X25519 sealing keys) under the root
    Init(identity::InitArgs),
    /// Show the node's identity, issue tokens, seal values, link the farmer's wallet
    Identity(identity::IdentityArgs),
    /// What each finished job earned (signed records), per day and per resource
    Earnings(earnings::EarningsArgs),
    /// Would this machine take a job? (the farmer's [policy] in config.toml)
    Policy(policy::PolicyArgs),
    /// The most a job can cost on this machine (its resources x time limit x [prices])
    Quote(policy::QuoteArgs),
    /// Take jobs from a coordinator and run them (`worker run|status|install`)
    Worker(worker::WorkerArgs),
    /// A test coordinator for trying `farm worker` by hand (internal)
    #[command(name = "__test-coordinator", hide = true)]
    TestCoordinator(worker::TestCoordinatorArgs),
    /// The per-container monitor (internal)
    #[command(name = "__monitor", hide = true)]
    Monitor(containers::MonitorCliArgs),
}

/// Docker's exit code for an error of the tool itself (not of a container).
pub const EXIT_FARM_ERROR: u8 = 125;

/// Commands that must run without an async runtime (single-threaded processes): the
/// monitor. `Err(cli)` hands every other command back.
pub fn run_sync(cli: Cli) -> Result<i32, Box<Cli>> {
    match cli.command {
        Command::Monitor(args) => {
            let root = cli.root.unwrap_or_else(default_root);
            Ok(containers::monitor(&root, args))
        }
        Command::TestCoordinator(args) => Ok(match worker::test_coordinator(args) {
            Ok(code) => code.into(),
            Err(e) => {
                eprintln!("farm: {}", render_error(&e));
                EXIT_FARM_ERROR.into()
            }
        }),
        Command::Exec(args) => Ok(exec::run(&cli.root.unwrap_or_else(default_root), args)),
        // Single-threaded: a stopped container's root is mounted in a private namespace.
        Command::Cp(args) => {
            let globals = Globals {
                root: cli.root.unwrap_or_else(default_root),
                insecure: cli.insecure_registries,
            };
            Ok(match cp::run(&globals, args) {
                Ok(code) => code.into(),
                Err(e) => {
                    eprintln!("farm: {}", render_error(&e));
                    EXIT_FARM_ERROR.into()
                }
            })
        }
        _ => Err(Box::new(cli)),
    }
}

/// Run the parsed command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let globals = Globals {
        root: cli.root.unwrap_or_else(default_root),
        insecure: cli.insecure_registries,
    };
    match cli.command {
        Command::Run(args) => run::run(&globals, *args).await,
        Command::Ps(args) => containers::ps(&globals, args),
        Command::Inspect(args) => containers::inspect(&globals, args),
        Command::Stop(args) => containers::stop(&globals, args),
        Command::Kill(args) => containers::kill(&globals, args),
        Command::Restart(args) => restart::run(&globals, args),
        Command::Rm(args) => containers::rm(&globals, args),
        Command::Wait(args) => containers::wait(&globals, args),
        Command::Logs(args) => containers::logs(&globals, args),
        Command::Worker(args) => worker::run(&globals, args).await,
        Command::Stats(args) => stats::run(&globals, args),
        Command::Rename(args) => rename::run(&globals, args),
        Command::Tag(args) => tag::run(&globals, args),
        Command::Save(args) => save::run(&globals, args),
        Command::Top(args) => top::run(&globals, args),
        Command::Monitor(_) | Command::Exec(_) | Command::Cp(_) | Command::TestCoordinator(_) => {
            unreachable!("these run through run_sync")
        }
        Command::Pull(args) => pull::run(&globals, args).await,
        Command::Images(args) => images::run(&globals, args),
        Command::Rmi(args) => rmi::run(&globals, args),
        Command::Prune(args) => prune::run(&globals, args),
        Command::Login(args) => login::login(&globals, args).await,
        Command::Logout(args) => login::logout(&globals, args),
        Command::Info(args) => info::run(&globals, args).await,
        Command::Init(args) => identity::init(&globals, args),
        Command::Policy(args) => policy::check(&globals, args),
        Command::Earnings(args) => earnings::run(&globals, args),
        Command::Quote(args) => policy::quote(&globals, args),
        Command::Identity(args) => identity::run(&globals, args),
    }
}

/// What every command needs: where the store is and how to reach registries.
#[derive(Debug)]
pub struct Globals {
    root: PathBuf,
    insecure: Vec<String>,
}

impl Globals {
    fn open_store(&self) -> Result<Store> {
        Store::open(&self.root)
            .with_context(|| format!("cannot open the farm store at {}", self.root.display()))
    }

    /// farm's own credential store, written by `farm login`.
    fn auth_file(&self) -> PathBuf {
        self.root.join("auth.json")
    }

    fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure.clone(),
            credentials: None,
            auth_file: Some(self.auth_file()),
            docker_config: None,
        }
    }
}

fn default_root() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/farm");
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("farm"),
        _ => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".local/share/farm"))
            .unwrap_or_else(|| PathBuf::from("/var/lib/farm")),
    }
}

/// The error and its causes on one line: `pulling x: layer y: ...`.
/// A pull's error as it may be shown: its whole text through the client's scrubber. Not
/// only the registry's own messages (scrubbed by the client already) quote server text: an
/// image's manifest, config and layer paths are chosen by the registry too.
pub fn shown_pull_error(
    error: farm_puller::Error,
    scrubber: &farm_puller::scrub::Scrubber,
) -> anyhow::Error {
    anyhow::anyhow!(scrubber.clean(&render_error(&anyhow::Error::new(error)), 4000))
}

pub fn render_error(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        // thiserror's `transparent` repeats the inner message; skip exact repeats.
        if parts.last().is_none_or(|last| !last.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
