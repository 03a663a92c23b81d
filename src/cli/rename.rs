//! `farm rename CONTAINER NEW_NAME`

use anyhow::{Context, Result};
use clap::Args;
use farm_runtime::lifecycle;
use farm_runtime::state::StateStore;

use super::Globals;

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container: name, ID or ID prefix
    container: String,
    /// Its new name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, not used by another container)
    new_name: String,
}

pub fn run(globals: &Globals, args: RenameArgs) -> Result<u8> {
    lifecycle::reconcile(&globals.root).context("checking containers")?;
    let record = StateStore::open(&globals.root)?.get(&args.container)?;
    lifecycle::rename(&globals.root, &record, &args.new_name)?;
    Ok(0)
}
