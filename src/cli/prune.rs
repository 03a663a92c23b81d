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
    farm_runtime::lifecycle::reconcile(&globals.root)?;
    let report = store.prune_keeping(&|| {
        super::run::snapshots_in_use(globals).map_err(|e| farm_puller::store::StoreError::Io {
            path: globals.root.join("state.db"),
            source: std::io::Error::other(e.to_string()),
        })
    })?;
    println!(
        "Deleted {} blobs and {} snapshots\nTotal reclaimed space: {}",
        report.blobs,
        report.snapshots,
        human_bytes(report.bytes)
    );
    Ok(0)
}
