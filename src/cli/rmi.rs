//! `farm rmi`

use anyhow::{Context, Result};
use clap::Args;

use super::Globals;

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names or IDs (a unique ID prefix is enough)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(globals: &Globals, args: RmiArgs) -> Result<u8> {
    let store = globals.open_store()?;
    let mut failed = false;
    for image in &args.images {
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
