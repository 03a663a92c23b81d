//! `farm rmi`

use anyhow::{Context, Result};
use clap::Args;

use super::Globals;

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove the image even if containers use it (their snapshots are kept until they go)
    #[arg(short, long)]
    force: bool,

    /// Image names or IDs (a unique ID prefix is enough)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(globals: &Globals, args: RmiArgs) -> Result<u8> {
    let store = globals.open_store()?;
    farm_runtime::lifecycle::reconcile(&globals.root)?;
    let containers = farm_runtime::state::StateStore::open(&globals.root)?.list()?;
    let mut failed = false;
    for image in &args.images {
        if !args.force {
            if let Ok(record) = store.image(image) {
                let id = record.id().to_string();
                if let Some(user) = containers.iter().find(|c| c.image.id == id) {
                    eprintln!(
                        "farm: cannot remove {image}: container {} ({}) uses it: remove the container first (`farm rm {}`) or use `farm rmi -f`",
                        user.name,
                        &user.id[..12],
                        user.name
                    );
                    failed = true;
                    continue;
                }
            }
        }
        match store
            .remove_image(image)
            .with_context(|| format!("cannot remove {image}"))
        {
            Ok(removed) => {
                for record in removed {
                    println!("Untagged: {}", record.name);
                    println!("Deleted: {}", record.id());
                }
            }
            Err(e) => {
                eprintln!("farm: {}", super::render_error(&e));
                failed = true;
            }
        }
    }
    if failed {
        return Ok(super::EXIT_FARM_ERROR);
    }
    println!("run `farm prune` to free the space of content no image uses");
    Ok(0)
}
