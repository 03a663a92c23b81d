//! `farm restart [-t SECS] CONTAINER...`: docker's stop, then start of the same container
//! (same id, name, options and writable layer), detached.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use farm_runtime::lifecycle;
use farm_runtime::state::StateStore;

use super::Globals;

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, or 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(globals: &Globals, args: RestartArgs) -> Result<u8> {
    if !rustix::process::geteuid().is_root() {
        bail!("farm restart needs root, as farm run does: run it with sudo");
    }
    lifecycle::reconcile(&globals.root).context("checking containers")?;
    let state = StateStore::open(&globals.root).context("opening the state store")?;
    super::containers::each(&args.containers, |name| {
        let record = state.get(name)?;
        if record.options.auto_remove {
            bail!(
                "cannot restart container {name}: it was started with --rm, so farm removes it when it stops; run a new container"
            );
        }
        let wait = args.time.or(record.options.stop_timeout).unwrap_or(10);
        lifecycle::stop(&globals.root, &record, Duration::from_secs(wait))?;
        let lock = lifecycle::prepare_start(&globals.root, &record)?;
        let command = super::run::monitor_command(globals, &record.id, &lock)?;
        match super::run::spawn_detached(globals, &record.id, command, lock, None)? {
            0 => {
                println!("{name}");
                Ok(())
            }
            code => bail!("container {name} did not start again (exit code {code})"),
        }
    })
}
