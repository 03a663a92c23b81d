//! `farm tag SOURCE TARGET`: another name for an image already in the store (no content
//! is copied: the new record points at the same manifest, config and layers).

use anyhow::{Context, Result};
use clap::Args;
use farm_puller::reference::Reference;
use farm_puller::store::ImageRecord;

use super::Globals;

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image: name, ID or ID prefix
    source: String,
    /// The new name: NAME[:TAG] (docker.io/library and :latest by default, as docker)
    target: String,
}

pub fn run(globals: &Globals, args: TagArgs) -> Result<u8> {
    let store = globals.open_store()?;
    let target = Reference::parse(&args.target)
        .with_context(|| format!("invalid target name {:?}", args.target))?;
    if target.digest().is_some() {
        anyhow::bail!(
            "invalid target name {:?}: a tag names an image, a digest cannot be given to it: use NAME[:TAG]",
            args.target
        );
    }
    // Shared, as a pull: `prune` (exclusive) sees either no record or the whole one.
    let _lock = store.lock_shared()?;
    let source = store
        .image(&args.source)
        .with_context(|| format!("no such image {}: `farm images` lists them", args.source))?;
    store.put_image(&ImageRecord {
        name: target.to_string(),
        ..source
    })?;
    Ok(0)
}
