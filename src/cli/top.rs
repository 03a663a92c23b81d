//! `farm top CONTAINER`: docker's columns of `ps -ef` for a container's processes (host
//! uids and pids, as docker shows them with userns-remap).

use anyhow::{Context, Result};
use clap::Args;
use farm_runtime::state::StateStore;
use farm_runtime::{lifecycle, top};

use super::Globals;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container: name, ID or ID prefix
    container: String,
}

pub fn run(globals: &Globals, args: TopArgs) -> Result<u8> {
    lifecycle::reconcile(&globals.root).context("checking containers")?;
    let record = StateStore::open(&globals.root)?.get(&args.container)?;
    let processes = top::processes(&globals.root, &record)?;
    println!(
        "{:<10} {:<10} {:<10} {:<10} CMD",
        "UID", "PID", "PPID", "TIME"
    );
    for p in processes {
        let t = p.cpu_seconds;
        let time = format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
        println!(
            "{:<10} {:<10} {:<10} {:<10} {}",
            p.uid, p.pid, p.ppid, time, p.command
        );
    }
    Ok(0)
}
