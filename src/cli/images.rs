//! `farm images`

use anyhow::Result;
use clap::Args;
use farm_puller::store::ImageRecord;
use farm_puller::ImageSource;
use serde::Serialize;

use super::progress::human_bytes;
use super::Globals;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print the records as a JSON array
    #[arg(long)]
    json: bool,

    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
}

/// An image record with docker's `id` beside it, as `--json` prints it.
#[derive(Serialize)]
struct JsonImage<'a> {
    id: String,
    #[serde(flatten)]
    record: &'a ImageRecord,
}

pub fn run(globals: &Globals, args: ImagesArgs) -> Result<u8> {
    let store = globals.open_store()?;
    let mut images = store.images()?;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    if args.json {
        let json: Vec<JsonImage> = images
            .iter()
            .map(|record| JsonImage {
                id: record.id().to_string(),
                record,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for record in &images {
            if seen.insert(record.id().short().to_owned()) {
                println!("{}", record.id().short());
            }
        }
    } else {
        let rows: Vec<[String; 4]> = images
            .iter()
            .map(|record| {
                let (repository, tag) = split_name(&record.name);
                [
                    repository,
                    tag,
                    record.id().short().to_owned(),
                    human_bytes(record.size),
                ]
            })
            .collect();
        print_table(&["REPOSITORY", "TAG", "IMAGE ID", "SIZE"], &rows);
    }
    Ok(0)
}

/// `docker.io/library/busybox:latest` -> (`busybox`, `latest`), as docker shows names;
/// `oci:PATH:TAG` -> (`oci:PATH`, `TAG`), read as `farm pull` reads it.
fn split_name(name: &str) -> (String, String) {
    match ImageSource::parse(name) {
        Ok(ImageSource::OciLayout { path, tag }) => {
            let tag = tag.unwrap_or_else(|| "<none>".to_owned());
            return (format!("oci:{}", path.display()), tag);
        }
        Ok(ImageSource::DockerArchive { path }) => {
            return (
                format!("docker-archive:{}", path.display()),
                "<none>".to_owned(),
            );
        }
        _ => {}
    }
    let without_digest = name.split_once('@').map_or(name, |(n, _)| n);
    let (repository, tag) = match without_digest.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (without_digest, "<none>"),
    };
    let repository = repository
        .strip_prefix("docker.io/library/")
        .or_else(|| repository.strip_prefix("docker.io/"))
        .unwrap_or(repository);
    (repository.to_owned(), tag.to_owned())
}

fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn names_split_like_docker_shows_them() {
        assert_eq!(
            split_name("docker.io/library/busybox:latest"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            split_name("docker.io/user/app:1.0"),
            ("user/app".into(), "1.0".into())
        );
        assert_eq!(
            split_name("127.0.0.1:5000/a/b:t"),
            ("127.0.0.1:5000/a/b".into(), "t".into())
        );
        assert_eq!(
            split_name("127.0.0.1:5000/a@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            ("127.0.0.1:5000/a".into(), "<none>".into())
        );
        // Regression: an oci: layout's tag was shown in the REPOSITORY column.
        assert_eq!(
            split_name("oci:/tmp/x:t"),
            ("oci:/tmp/x".into(), "t".into())
        );
        assert_eq!(
            split_name("oci:/tmp/x"),
            ("oci:/tmp/x".into(), "<none>".into())
        );
        assert_eq!(
            split_name("oci:/srv/a:b/img"),
            ("oci:/srv/a:b/img".into(), "<none>".into())
        );
        assert_eq!(
            split_name("docker-archive:/tmp/img.tar"),
            ("docker-archive:/tmp/img.tar".into(), "<none>".into())
        );
    }
}
