//! `farm cp CONTAINER:SRC DEST` and `farm cp SRC CONTAINER:DEST`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use farm_runtime::state::StateStore;
use farm_runtime::{copy, lifecycle};

use super::Globals;

#[derive(Debug, Args)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH or a host path
    source: String,
    /// A host path or CONTAINER:DEST_PATH
    destination: String,
}

/// docker's reading: `NAME:PATH` when a `:` comes before any `/`.
fn container_path(arg: &str) -> Option<(&str, &str)> {
    let (name, path) = arg.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some((name, path))
}

pub fn run(globals: &Globals, args: CpArgs) -> Result<u8> {
    lifecycle::reconcile(&globals.root).context("checking containers")?;
    let state = StateStore::open(&globals.root)?;
    match (
        container_path(&args.source),
        container_path(&args.destination),
    ) {
        (Some((name, src)), None) => {
            let record = state.get(name)?;
            copy::from_container(&globals.root, &record, src, Path::new(&args.destination))?;
        }
        (None, Some((name, dest))) => {
            let record = state.get(name)?;
            copy::to_container(&globals.root, &record, Path::new(&args.source), dest)?;
        }
        (Some(_), Some(_)) => {
            bail!("copying between containers is not supported: copy to the host first")
        }
        (None, None) => bail!("one of the paths must be CONTAINER:PATH (use cp for host files)"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::container_path;

    #[test]
    fn container_paths_read_as_docker() {
        assert_eq!(
            container_path("box:/etc/passwd"),
            Some(("box", "/etc/passwd"))
        );
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path("/tmp/a:b"), None);
        assert_eq!(container_path(":x"), None);
        assert_eq!(container_path("plain"), None);
    }
}
