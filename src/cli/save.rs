//! `farm save IMAGE... [-o FILE]`: images as a docker-archive (what `docker load` and
//! `farm pull docker-archive:FILE` read).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use farm_puller::save;

use super::Globals;

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Images: names, IDs or ID prefixes
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(globals: &Globals, args: SaveArgs) -> Result<u8> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let store = globals.open_store()?;
    // Shared, as a pull: `prune` cannot take the blobs while they are read.
    let _lock = store.lock_shared()?;
    let mut images = Vec::new();
    for name in &args.images {
        let record = store
            .image(name)
            .with_context(|| format!("no such image {name}: `farm images` lists them"))?;
        // Saved by its ID, an image gets no RepoTags (as docker).
        let by_id = record
            .config_digest
            .hex()
            .starts_with(name.trim_start_matches("sha256:"));
        let tags = if by_id {
            Vec::new()
        } else {
            save::repo_tag(&record.name).into_iter().collect()
        };
        images.push((record, tags));
    }
    match &args.output {
        None => {
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            save::save(&store, &images, out)?
                .flush()
                .context("writing to standard output")?;
        }
        Some(path) => {
            // Written beside the target and renamed: a failure leaves no half archive.
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            };
            let tmp = tempfile::NamedTempFile::new_in(&dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let out = std::io::BufWriter::new(tmp);
            let tmp = save::save(&store, &images, out)?
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("writing {}", path.display()))?;
            tmp.as_file().sync_all().context("syncing the archive")?;
            tmp.persist(path)
                .map_err(|e| e.error)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(0)
}
