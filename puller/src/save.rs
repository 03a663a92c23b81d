//! `farm save`: images of the store written as a docker-archive, the tarball `docker save`
//! writes and `docker load` reads: `manifest.json` (one entry per image: `Config`,
//! `RepoTags`, `Layers`), the legacy `repositories`, each config as `<hex>.json` and each
//! layer once as an uncompressed `<diff-id hex>/layer.tar`.
//!
//! Layers are stored compressed as they were pulled; each is decompressed into an unnamed
//! temporary file while its sha256 is taken, and written only when that equals the
//! config's diff_id (so the archive's layers match its configs, as `docker load` checks).
//! Configs are read through [`ContentStore::read_document`], which re-checks the digest.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, Write};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::image::{Compression, MAX_DOCUMENT_BYTES};
use crate::reference::ImageSource;
use crate::store::{ImageRecord, Store, StoreError};

/// docker's name for the image in `RepoTags`: `busybox:latest`, `ghcr.io/o/app:1.0`;
/// `None` for names that are no registry tag (an ID, `oci:`, `docker-archive:`, a digest).
pub fn repo_tag(name: &str) -> Option<String> {
    let Ok(ImageSource::Registry(reference)) = ImageSource::parse(name) else {
        return None;
    };
    if reference.digest().is_some() {
        return None;
    }
    let tag = reference.tag()?;
    let full = format!("{}/{}", reference.registry(), reference.repository());
    let short = full
        .strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(&full);
    Some(format!("{short}:{tag}"))
}

/// Write `images` (each with the RepoTags to give it) as one docker-archive to `out`.
/// Holds nothing locked: the caller keeps `prune` out (the store's shared lock).
pub fn save<W: Write>(
    store: &Store,
    images: &[(ImageRecord, Vec<String>)],
    out: W,
) -> Result<W, StoreError> {
    let io_err = |source: io::Error| StoreError::Io {
        path: "docker-archive".into(),
        source,
    };
    let mut tar = tar::Builder::new(out);
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    for (record, tags) in images {
        let config = store
            .content
            .read_document(&record.config_digest, MAX_DOCUMENT_BYTES)?;
        let config_name = format!("{}.json", record.config_digest.hex());
        if written.insert(record.config_digest.clone()) {
            append(&mut tar, &config_name, config.len() as u64, &config[..]).map_err(io_err)?;
        }
        let mut layers = Vec::new();
        for layer in &record.layers {
            let dir = layer.diff_id.hex().to_owned();
            let path = format!("{dir}/layer.tar");
            if written.insert(layer.diff_id.clone()) {
                let mut plain = uncompressed(&store.content, layer)?;
                let size = plain.seek(io::SeekFrom::End(0)).map_err(io_err)?;
                plain.rewind().map_err(io_err)?;
                append_dir(&mut tar, &dir).map_err(io_err)?;
                append(&mut tar, &format!("{dir}/VERSION"), 3, &b"1.0"[..]).map_err(io_err)?;
                append(&mut tar, &path, size, plain).map_err(io_err)?;
            }
            layers.push(path);
        }
        if let Some(top) = record.layers.last() {
            for tag in tags {
                if let Some((repository, tag)) = tag.rsplit_once(':') {
                    repositories
                        .entry(repository.to_owned())
                        .or_default()
                        .insert(tag.to_owned(), top.diff_id.hex().to_owned());
                }
            }
        }
        manifest.push(json!({
            "Config": config_name,
            "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { json!(tags) },
            "Layers": layers,
        }));
    }
    let manifest = serde_json::to_vec(&manifest).expect("json");
    append(
        &mut tar,
        "manifest.json",
        manifest.len() as u64,
        &manifest[..],
    )
    .map_err(io_err)?;
    let repositories = serde_json::to_vec(&repositories).expect("json");
    append(
        &mut tar,
        "repositories",
        repositories.len() as u64,
        &repositories[..],
    )
    .map_err(io_err)?;
    tar.into_inner().map_err(io_err)
}

/// The layer's tar, decompressed into an unnamed temporary file in the store, checked
/// against its diff_id.
fn uncompressed(
    content: &ContentStore,
    layer: &crate::store::LayerRecord,
) -> Result<std::fs::File, StoreError> {
    let compression =
        Compression::from_media_type(&layer.media_type).map_err(|e| StoreError::Io {
            path: content.path(&layer.digest),
            source: io::Error::other(e.to_string()),
        })?;
    let blob_path = content.path(&layer.digest);
    let io_err = |source: io::Error| StoreError::Io {
        path: blob_path.clone(),
        source,
    };
    let blob = content.open_blob(&layer.digest)?;
    let mut reader =
        crate::unpack::stream::decompress(io::BufReader::new(blob), compression).map_err(io_err)?;
    let tmp_dir = blob_path.parent().unwrap_or(std::path::Path::new("/tmp"));
    let mut plain = tempfile::tempfile_in(tmp_dir).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        hasher.update(&buf[..n]);
        plain.write_all(&buf[..n]).map_err(io_err)?;
    }
    let actual = Digest::from_hasher(hasher);
    if actual != layer.diff_id {
        return Err(StoreError::DiffIdMismatch {
            digest: layer.digest.clone(),
            actual,
            expected: layer.diff_id.clone(),
        });
    }
    Ok(plain)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, 0o644, size);
    tar.append_data(&mut header, path, data)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut header, format!("{path}/"), io::empty())
}

#[cfg(test)]
mod tests {
    use super::repo_tag;

    #[test]
    fn repo_tags_as_docker_names_them() {
        assert_eq!(
            repo_tag("docker.io/library/busybox:latest").as_deref(),
            Some("busybox:latest")
        );
        assert_eq!(repo_tag("busybox").as_deref(), Some("busybox:latest"));
        assert_eq!(
            repo_tag("ghcr.io/team/app:1.0").as_deref(),
            Some("ghcr.io/team/app:1.0")
        );
        assert_eq!(
            repo_tag("docker.io/team/app:2").as_deref(),
            Some("team/app:2")
        );
        assert_eq!(repo_tag("oci:/srv/layout:probe"), None);
    }
}
