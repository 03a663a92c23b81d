//! `farm prune`

use anyhow::Result;
use clap::Args;

use super::progress::human_bytes;
use super::Globals;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation (accepted for docker compatibility; farm never prompts)
    #[arg(short, long)]
    force: bool,
}

pub fn run(globals: &Globals, _args: PruneArgs) -> Result<u8> {
    let store = globals.open_store()?;
    let report = store.prune()?;
    println!(
        "Deleted {} blobs and {} snapshots\nTotal reclaimed space: {}",
        report.blobs,
        report.snapshots,
        human_bytes(report.bytes)
    );
    Ok(0)
}
