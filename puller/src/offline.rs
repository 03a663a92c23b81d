//! Offline sources: `oci:PATH[:TAG]` (OCI image layout) and `docker-archive:PATH`
//! (`docker save`). Their blobs are copied into the content store through `Ingest`,
//! verified like any download.
//!
//! Nothing here trusts a name found in the source: every blob of an OCI layout is opened
//! as `blobs/sha256/<hex>` built from a validated [`Digest`], each component opened with
//! `O_NOFOLLOW` (a symlink anywhere under the layout root is refused) and required to be
//! a regular file. A docker archive is only read, never extracted; its entries are matched
//! by normalized name, and only regular files count. Layers are written to the content
//! store first, then the config and the manifest, so a refused import leaves no image.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::image::{
    is_index_type, is_manifest_type, media_types, parse_config, parse_manifest, select_platform,
    Descriptor, Index, Manifest, ParsedManifest, Platform, MAX_DOCUMENT_BYTES, MAX_LAYERS,
};
use crate::reference::Reference;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn invalid(path: &Path, reason: impl Into<String>) -> OfflineError {
    OfflineError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OfflineError + '_ {
    move |source| OfflineError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An image found in an offline source, with its config and layer blobs already in the
/// content store (verified).
#[derive(Debug, Clone)]
pub struct Imported {
    pub manifest: Manifest,
    /// Digest of the manifest JSON (stored in the content store too).
    pub manifest_digest: Digest,
    /// Digest of the index it was selected from, if any.
    pub index_digest: Option<Digest>,
    /// Names the source gives the image (a docker archive's RepoTags), normalized.
    /// Empty for an OCI layout: its tags are not registry references.
    pub names: Vec<String>,
}

/// The annotation that tags an entry of an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Bound on the `oci-layout` marker file.
const MAX_LAYOUT_MARKER_BYTES: u64 = 4096;
/// How deep indexes may nest inside an OCI layout.
const MAX_INDEX_DEPTH: usize = 4;
/// Bound on the entries of a docker archive.
const MAX_ARCHIVE_ENTRIES: usize = 100_000;
const COPY_BUFFER: usize = 1 << 20;

/// Read at most `max` bytes; more is an error.
fn read_bounded(
    mut reader: impl Read,
    max: u64,
    path: &Path,
    what: &str,
) -> Result<Vec<u8>, OfflineError> {
    let mut bytes = Vec::new();
    reader
        .by_ref()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(invalid(
            path,
            format!("{what} is over the {max}-byte limit"),
        ));
    }
    Ok(bytes)
}

/// An opened OCI image layout folder.
struct Layout {
    path: PathBuf,
    root: std::os::fd::OwnedFd,
}

impl Layout {
    fn open(path: &Path) -> Result<Layout, OfflineError> {
        // The root itself is what the user named: following a symlink to it is fine.
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            invalid(
                path,
                format!("cannot open the OCI layout folder: {}", io::Error::from(e)),
            )
        })?;
        Ok(Layout {
            path: path.to_owned(),
            root,
        })
    }

    /// Open `name` under `dir` without following a symlink; `what` names it in messages.
    fn open_at(
        &self,
        dir: &std::os::fd::OwnedFd,
        name: &str,
        flags: OFlags,
        shown: &Path,
    ) -> Result<std::os::fd::OwnedFd, OfflineError> {
        rustix::fs::openat(
            dir,
            name,
            flags | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR
                if flags.contains(OFlags::DIRECTORY) =>
            {
                invalid(
                    shown,
                    "is a symbolic link or not a folder: refusing to follow it",
                )
            }
            rustix::io::Errno::LOOP => {
                invalid(shown, "is a symbolic link: blobs must be regular files")
            }
            rustix::io::Errno::NOENT => invalid(shown, "is missing from the OCI layout"),
            e => OfflineError::Io {
                path: shown.to_owned(),
                source: e.into(),
            },
        })
    }

    /// A regular file, opened without following symlinks.
    fn regular_file(
        &self,
        fd: std::os::fd::OwnedFd,
        shown: &Path,
    ) -> Result<(File, u64), OfflineError> {
        let file = File::from(fd);
        let metadata = file.metadata().map_err(io_err(shown))?;
        if !metadata.is_file() {
            return Err(invalid(shown, "is not a regular file"));
        }
        Ok((file, metadata.len()))
    }

    /// A file at the top of the layout (`oci-layout`, `index.json`).
    fn read_top(&self, name: &str, max: u64) -> Result<Vec<u8>, OfflineError> {
        let shown = self.path.join(name);
        let fd = self.open_at(&self.root, name, OFlags::NONBLOCK, &shown)?;
        let (file, _) = self.regular_file(fd, &shown)?;
        read_bounded(file, max, &shown, name)
    }

    /// Open `blobs/sha256/<hex>`; returns the file, its size and the path for messages.
    fn open_blob(&self, digest: &Digest) -> Result<(File, u64, PathBuf), OfflineError> {
        let blobs_path = self.path.join("blobs");
        let blobs = self.open_at(&self.root, "blobs", OFlags::DIRECTORY, &blobs_path)?;
        let algorithm_path = blobs_path.join(Digest::ALGORITHM);
        let algorithm = self.open_at(
            &blobs,
            Digest::ALGORITHM,
            OFlags::DIRECTORY,
            &algorithm_path,
        )?;
        let shown = algorithm_path.join(digest.hex());
        let fd = self.open_at(&algorithm, digest.hex(), OFlags::NONBLOCK, &shown)?;
        let (file, size) = self.regular_file(fd, &shown)?;
        Ok((file, size, shown))
    }

    /// Read and verify (size and digest) a manifest, index or config blob.
    fn read_document(&self, descriptor: &Descriptor) -> Result<Vec<u8>, crate::Error> {
        let digest = &descriptor.digest;
        if descriptor.size > MAX_DOCUMENT_BYTES {
            return Err(invalid(
                &self.path,
                format!(
                    "{digest} declares {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
                    descriptor.size
                ),
            )
            .into());
        }
        let (file, _, shown) = self.open_blob(digest)?;
        let bytes = read_bounded(
            file,
            descriptor.size,
            &shown,
            &format!(
                "the blob (its descriptor declares {} bytes)",
                descriptor.size
            ),
        )?;
        if bytes.len() as u64 != descriptor.size {
            return Err(invalid(
                &shown,
                format!(
                    "is {} bytes but its descriptor declares {}",
                    bytes.len(),
                    descriptor.size
                ),
            )
            .into());
        }
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Copy a layer into the content store through `Ingest` (which verifies it).
    async fn copy_blob(
        &self,
        content: &ContentStore,
        descriptor: &Descriptor,
    ) -> Result<(), crate::Error> {
        if content.has(&descriptor.digest, descriptor.size) {
            return Ok(());
        }
        let (file, size, shown) = self.open_blob(&descriptor.digest)?;
        if size != descriptor.size {
            return Err(invalid(
                &shown,
                format!(
                    "is {size} bytes but the manifest declares {}",
                    descriptor.size
                ),
            )
            .into());
        }
        let mut ingest = content.ingest(&descriptor.digest, descriptor.size)?;
        let mut file = tokio::fs::File::from_std(file);
        if ingest.offset() > 0 {
            file.seek(io::SeekFrom::Start(ingest.offset()))
                .await
                .map_err(io_err(&shown))?;
        }
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = file.read(&mut buf).await.map_err(io_err(&shown))?;
            if n == 0 {
                break;
            }
            ingest.write_all(&buf[..n]).await?;
        }
        ingest.commit().await?;
        Ok(())
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

fn list_tags(index: &Index) -> String {
    let tags: Vec<&str> = index
        .manifests
        .iter()
        .map(|d| ref_name(d).unwrap_or("<untagged>"))
        .collect();
    if tags.is_empty() {
        "none".to_owned()
    } else {
        tags.join(", ")
    }
}

/// The entry of `index.json` named by `tag`, or the only one.
fn choose_entry<'a>(
    index: &'a Index,
    tag: Option<&str>,
    platform: &Platform,
    path: &Path,
) -> Result<&'a Descriptor, crate::Error> {
    if let Some(tag) = tag {
        let tagged: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| ref_name(d) == Some(tag))
            .collect();
        return match tagged.as_slice() {
            [one] => Ok(one),
            [] => Err(invalid(
                path,
                format!(
                    "no image tagged {tag:?} in index.json (tags: {})",
                    list_tags(index)
                ),
            )
            .into()),
            [first, rest @ ..] if rest.iter().all(|d| d.digest == first.digest) => Ok(first),
            _ => Err(invalid(
                path,
                format!("several different images are tagged {tag:?} in index.json"),
            )
            .into()),
        };
    }
    match index.manifests.as_slice() {
        [one] => Ok(one),
        [] => Err(invalid(path, "index.json lists no images").into()),
        // Untagged platform entries: the layout is itself a multi-platform index.
        many if many.iter().all(|d| ref_name(d).is_none()) => Ok(select_platform(index, platform)?),
        many => Err(invalid(
            path,
            format!(
                "index.json lists {} images (tags: {}): choose one with oci:PATH:TAG",
                many.len(),
                list_tags(index)
            ),
        )
        .into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutMarker {
    image_layout_version: String,
}

/// Import one image of the OCI layout at `path`: the entry of `index.json` tagged `tag`
/// (or the only entry), nested indexes resolved for `platform`.
pub async fn import_oci_layout(
    content: &ContentStore,
    path: &Path,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<Imported, crate::Error> {
    let layout = Layout::open(path)?;
    let marker = layout.read_top("oci-layout", MAX_LAYOUT_MARKER_BYTES)?;
    let marker: LayoutMarker = serde_json::from_slice(&marker).map_err(|e| {
        invalid(
            &path.join("oci-layout"),
            format!("not an OCI layout marker: {e}"),
        )
    })?;
    if marker.image_layout_version != "1.0.0" {
        return Err(invalid(
            &path.join("oci-layout"),
            format!(
                "unsupported imageLayoutVersion {:?}: expected 1.0.0",
                marker.image_layout_version
            ),
        )
        .into());
    }
    let index_json = layout.read_top("index.json", MAX_DOCUMENT_BYTES)?;
    let index = match parse_manifest(&index_json, None)
        .map_err(|e| invalid(&path.join("index.json"), e.to_string()))?
    {
        ParsedManifest::Index(index) => index,
        ParsedManifest::Image(_) => {
            return Err(invalid(&path.join("index.json"), "is a manifest, not an index").into())
        }
    };
    let mut descriptor = choose_entry(&index, tag, platform, path)?.clone();
    let mut index_digest = None;
    let mut documents: Vec<(Digest, Vec<u8>)> = Vec::new();
    for depth in 0.. {
        if is_manifest_type(&descriptor.media_type) {
            break;
        }
        if !is_index_type(&descriptor.media_type) {
            return Err(invalid(
                path,
                format!(
                    "{} has media type {:?}, not an image manifest or index",
                    descriptor.digest, descriptor.media_type
                ),
            )
            .into());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(invalid(
                path,
                format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
            )
            .into());
        }
        let bytes = layout.read_document(&descriptor)?;
        let ParsedManifest::Index(nested) = parse_manifest(&bytes, Some(&descriptor.media_type))?
        else {
            return Err(invalid(
                path,
                format!(
                    "{} is declared an index but is a manifest",
                    descriptor.digest
                ),
            )
            .into());
        };
        let chosen = select_platform(&nested, platform)?.clone();
        index_digest = Some(descriptor.digest.clone());
        documents.push((descriptor.digest.clone(), bytes));
        descriptor = chosen;
    }
    let manifest_bytes = layout.read_document(&descriptor)?;
    let ParsedManifest::Image(manifest) =
        parse_manifest(&manifest_bytes, Some(&descriptor.media_type))?
    else {
        return Err(invalid(
            path,
            format!(
                "{} is declared a manifest but is an index",
                descriptor.digest
            ),
        )
        .into());
    };
    let config_bytes = layout.read_document(&manifest.config)?;
    parse_config(
        &config_bytes,
        &manifest.config.digest,
        manifest.layers.len(),
    )?;
    for layer in &manifest.layers {
        layout.copy_blob(content, layer).await?;
    }
    content.write_blob(&manifest.config.digest, &config_bytes)?;
    content.write_blob(&descriptor.digest, &manifest_bytes)?;
    for (digest, bytes) in &documents {
        content.write_blob(digest, bytes)?;
    }
    Ok(Imported {
        manifest,
        manifest_digest: descriptor.digest,
        index_digest,
        names: Vec::new(),
    })
}

/// `name` as a relative path of normal components joined by `/`; None for anything
/// absolute, with `..`, or not UTF-8.
fn normalize_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// What the first pass learned about one regular file of the archive.
#[derive(Debug, Clone)]
struct ArchiveFile {
    digest: Digest,
    size: u64,
    magic: [u8; 4],
}

#[derive(Debug)]
struct ArchiveScan {
    manifest_json: Option<Vec<u8>>,
    files: HashMap<String, ArchiveFile>,
    /// Symlinks inside the archive (old `docker save` links duplicate layers), name to
    /// normalized target. Only followed to regular files of the archive itself.
    links: HashMap<String, String>,
}

/// Most symlink hops followed inside an archive.
const MAX_LINK_HOPS: usize = 8;

/// The archive-relative target of a symlink `name -> target`; None when it is absolute
/// or climbs out of the archive.
fn resolve_link(name: &str, target: &Path) -> Option<String> {
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for component in target.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl ArchiveScan {
    /// The regular file `name` names, following symlinks inside the archive.
    fn resolve(&self, name: &str) -> Option<(String, &ArchiveFile)> {
        let mut name = name.to_owned();
        for _ in 0..=MAX_LINK_HOPS {
            if let Some(file) = self.files.get(&name) {
                return Some((name, file));
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }
}

/// One entry of a docker archive's `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn open_archive(path: &Path) -> Result<tar::Archive<io::BufReader<File>>, OfflineError> {
    let file = File::open(path).map_err(io_err(path))?;
    if !file.metadata().map_err(io_err(path))?.is_file() {
        return Err(invalid(
            path,
            "is not a regular file: give the path of a `docker save` tarball",
        ));
    }
    Ok(tar::Archive::new(io::BufReader::with_capacity(
        COPY_BUFFER,
        file,
    )))
}

/// First pass: hash every regular file, keep `manifest.json`.
fn scan_archive(path: &Path) -> Result<ArchiveScan, OfflineError> {
    let mut archive = open_archive(path)?;
    let mut scan = ArchiveScan {
        manifest_json: None,
        files: HashMap::new(),
        links: HashMap::new(),
    };
    let mut buf = vec![0u8; COPY_BUFFER];
    for entry in archive.entries().map_err(io_err(path))? {
        let mut entry =
            entry.map_err(|e| invalid(path, format!("not a readable tar archive: {e}")))?;
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular && kind != tar::EntryType::Symlink {
            continue;
        }
        let Some(name) = entry.path().ok().as_deref().and_then(normalize_name) else {
            continue;
        };
        if scan.files.len() + scan.links.len() >= MAX_ARCHIVE_ENTRIES {
            return Err(invalid(
                path,
                format!("more than {MAX_ARCHIVE_ENTRIES} files: not a docker save archive"),
            ));
        }
        if scan.files.contains_key(&name) || scan.links.contains_key(&name) {
            return Err(invalid(
                path,
                format!("the archive holds {name:?} twice: refusing an ambiguous archive"),
            ));
        }
        if kind == tar::EntryType::Symlink {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .and_then(|t| resolve_link(&name, &t));
            if let Some(target) = target {
                scan.links.insert(name, target);
            }
            continue;
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut magic = [0u8; 4];
        let mut filled = 0;
        let mut kept = (name == "manifest.json").then(Vec::new);
        loop {
            let n = entry.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            for &b in buf[..n].iter().take(magic.len() - filled) {
                magic[filled] = b;
                filled += 1;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            if let Some(kept) = kept.as_mut() {
                if size > MAX_DOCUMENT_BYTES {
                    return Err(invalid(
                        path,
                        format!("manifest.json is over the {MAX_DOCUMENT_BYTES}-byte limit"),
                    ));
                }
                kept.extend_from_slice(&buf[..n]);
            }
        }
        if kept.is_some() {
            scan.manifest_json = kept;
        }
        scan.files.insert(
            name,
            ArchiveFile {
                digest: Digest::from_hasher(hasher),
                size,
                magic,
            },
        );
    }
    Ok(scan)
}

/// What the second pass sends from its blocking thread.
enum Piece {
    Begin(String),
    Data(Vec<u8>),
    End,
}

/// Second pass: stream the files named in `wanted` to `tx`.
fn send_files(
    path: &Path,
    wanted: &HashSet<String>,
    tx: &tokio::sync::mpsc::Sender<Result<Piece, OfflineError>>,
) -> Result<(), OfflineError> {
    let mut archive = open_archive(path)?;
    for entry in archive.entries().map_err(io_err(path))? {
        let mut entry =
            entry.map_err(|e| invalid(path, format!("not a readable tar archive: {e}")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Some(name) = entry.path().ok().as_deref().and_then(normalize_name) else {
            continue;
        };
        if !wanted.contains(&name) {
            continue;
        }
        if tx.blocking_send(Ok(Piece::Begin(name))).is_err() {
            return Ok(());
        }
        loop {
            let mut buf = vec![0u8; COPY_BUFFER];
            let n = entry.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(Piece::Data(buf))).is_err() {
                return Ok(());
            }
        }
        if tx.blocking_send(Ok(Piece::End)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn layer_media_type(magic: &[u8; 4]) -> &'static str {
    match magic {
        [0x1f, 0x8b, ..] => media_types::DOCKER_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media_types::DOCKER_LAYER_ZSTD,
        _ => media_types::DOCKER_LAYER,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

fn descriptor(media_type: &str, file: &ArchiveFile) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: file.digest.clone(),
        size: file.size,
        urls: None,
        platform: None,
        annotations: None,
    }
}

/// Import the one image of a `docker save` tarball. The archive is read twice and never
/// extracted: the first pass hashes every regular file and reads `manifest.json`; the
/// second copies the config and layers into the content store, where `Ingest` checks
/// them against the first pass's digests. A Docker schema2 manifest is synthesized.
pub async fn import_docker_archive(
    content: &ContentStore,
    path: &Path,
) -> Result<Imported, crate::Error> {
    let owned = path.to_owned();
    let scan = tokio::task::spawn_blocking(move || scan_archive(&owned))
        .await
        .map_err(|e| invalid(path, format!("the archive reader failed: {e}")))??;
    let manifest_json = scan.manifest_json.as_deref().ok_or_else(|| {
        invalid(
            path,
            "no manifest.json: not a `docker save` archive (for an OCI layout use oci:PATH)",
        )
    })?;
    let entries: Vec<ArchiveManifest> = serde_json::from_slice(manifest_json).map_err(|e| {
        invalid(
            path,
            format!("manifest.json is not a docker save manifest: {e}"),
        )
    })?;
    let entry = match entries.as_slice() {
        [one] => one,
        [] => return Err(invalid(path, "manifest.json lists no images").into()),
        many => {
            let tags: Vec<String> = many
                .iter()
                .map(|e| match e.repo_tags.as_deref() {
                    Some(tags) if !tags.is_empty() => tags.join(" "),
                    _ => "<untagged>".to_owned(),
                })
                .collect();
            return Err(invalid(
                path,
                format!(
                    "the archive holds {} images ({}): farm imports one image per archive; save them one at a time",
                    many.len(),
                    tags.join(", ")
                ),
            )
            .into());
        }
    };
    if entry.layers.len() > MAX_LAYERS {
        return Err(invalid(
            path,
            format!(
                "{} layers, over the limit of {MAX_LAYERS}",
                entry.layers.len()
            ),
        )
        .into());
    }
    let lookup = |name: &str| -> Result<(String, ArchiveFile), OfflineError> {
        let normalized = normalize_name(Path::new(name))
            .ok_or_else(|| invalid(path, format!("manifest.json names an unsafe path {name:?}")))?;
        let (resolved, file) = scan.resolve(&normalized).ok_or_else(|| {
            invalid(
                path,
                format!("manifest.json names {name:?}, which is not a regular file in the archive"),
            )
        })?;
        Ok((resolved, file.clone()))
    };
    let (config_name, config_file) = lookup(&entry.config)?;
    if config_file.size > MAX_DOCUMENT_BYTES {
        return Err(invalid(
            path,
            format!(
                "config {name:?} is over the {MAX_DOCUMENT_BYTES}-byte limit",
                name = entry.config
            ),
        )
        .into());
    }
    let mut layers = Vec::with_capacity(entry.layers.len());
    for name in &entry.layers {
        let (normalized, file) = lookup(name)?;
        layers.push((normalized, descriptor(layer_media_type(&file.magic), &file)));
    }
    let names = entry
        .repo_tags
        .iter()
        .flatten()
        .map(|tag| {
            Reference::parse(tag)
                .map(|r| r.to_string())
                .map_err(|e| invalid(path, format!("RepoTags: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Second pass: the config into memory, each missing layer (once per digest) into an ingest.
    let mut pending: HashMap<String, Descriptor> = HashMap::new();
    let mut seen_digests = HashSet::new();
    for (name, layer) in &layers {
        if seen_digests.insert(layer.digest.clone()) && !content.has(&layer.digest, layer.size) {
            pending.insert(name.clone(), layer.clone());
        }
    }
    let mut wanted: HashSet<String> = pending.keys().cloned().collect();
    wanted.insert(config_name.clone());
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let reader = {
        let path = path.to_owned();
        let wanted = wanted.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = send_files(&path, &wanted, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        })
    };
    let mut config_bytes: Option<Vec<u8>> = None;
    let mut done: HashSet<String> = HashSet::new();
    let result: Result<(), crate::Error> = async {
        let mut current: Option<(String, Option<crate::content::Ingest>, Vec<u8>)> = None;
        while let Some(piece) = rx.recv().await {
            match piece? {
                Piece::Begin(name) => {
                    let ingest = match pending.get(&name) {
                        Some(layer) => Some(content.ingest(&layer.digest, layer.size)?),
                        None => None,
                    };
                    // A resumed ingest has a prefix already; start over for a simple stream.
                    let ingest = match ingest {
                        Some(mut ingest) if ingest.offset() > 0 => {
                            ingest.reset().await?;
                            Some(ingest)
                        }
                        other => other,
                    };
                    current = Some((name, ingest, Vec::new()));
                }
                Piece::Data(bytes) => match current.as_mut() {
                    Some((_, Some(ingest), _)) => ingest.write_all(&bytes).await?,
                    Some((_, None, buffer)) => {
                        if (buffer.len() + bytes.len()) as u64 > MAX_DOCUMENT_BYTES {
                            return Err(invalid(path, "config is over the size limit").into());
                        }
                        buffer.extend_from_slice(&bytes);
                    }
                    None => {}
                },
                Piece::End => {
                    if let Some((name, ingest, buffer)) = current.take() {
                        match ingest {
                            Some(ingest) => {
                                ingest.commit().await?;
                            }
                            None => config_bytes = Some(buffer),
                        }
                        done.insert(name);
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    drop(rx);
    let _ = reader.await;
    result?;
    if let Some(missing) = wanted.iter().find(|name| !done.contains(*name)) {
        return Err(invalid(
            path,
            format!("{missing:?} disappeared from the archive while it was read"),
        )
        .into());
    }
    let config_bytes = config_bytes.unwrap_or_default();
    let config_digest = Digest::of(&config_bytes);
    if config_digest != config_file.digest {
        return Err(ContentError::DigestMismatch {
            expected: config_file.digest.clone(),
            actual: config_digest,
        }
        .into());
    }
    let config = parse_config(&config_bytes, &config_digest, layers.len())?;
    for ((name, layer), diff_id) in layers.iter().zip(&config.diff_ids) {
        if layer.media_type == media_types::DOCKER_LAYER && &layer.digest != diff_id {
            return Err(invalid(
                path,
                format!(
                    "layer {name:?} hashes to {}, but the config's diff_id is {diff_id}",
                    layer.digest
                ),
            )
            .into());
        }
    }
    let config_descriptor = descriptor(media_types::DOCKER_CONFIG, &config_file);
    let layer_descriptors: Vec<Descriptor> = layers.into_iter().map(|(_, layer)| layer).collect();
    let manifest_bytes = serde_json::to_vec(&ManifestJson {
        schema_version: 2,
        media_type: media_types::DOCKER_MANIFEST,
        config: &config_descriptor,
        layers: &layer_descriptors,
    })
    .map_err(|e| invalid(path, format!("cannot write the manifest: {e}")))?;
    let ParsedManifest::Image(manifest) =
        parse_manifest(&manifest_bytes, Some(media_types::DOCKER_MANIFEST))?
    else {
        return Err(invalid(path, "the synthesized manifest is not an image manifest").into());
    };
    let manifest_digest = Digest::of(&manifest_bytes);
    content.write_blob(&config_digest, &config_bytes)?;
    content.write_blob(&manifest_digest, &manifest_bytes)?;
    Ok(Imported {
        manifest,
        manifest_digest,
        index_digest: None,
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("content")).unwrap();
        (dir, store)
    }

    /// A small OCI layout under construction.
    struct LayoutBuilder {
        dir: tempfile::TempDir,
        entries: Vec<serde_json::Value>,
    }

    fn desc_json(media_type: &str, bytes: &[u8]) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": Digest::of(bytes).to_string(), "size": bytes.len()})
    }

    impl LayoutBuilder {
        fn new() -> LayoutBuilder {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
            fs::write(
                dir.path().join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )
            .unwrap();
            LayoutBuilder {
                dir,
                entries: Vec::new(),
            }
        }

        fn blob(&self, bytes: &[u8]) -> Digest {
            let digest = Digest::of(bytes);
            fs::write(self.blob_path(&digest), bytes).unwrap();
            digest
        }

        fn blob_path(&self, digest: &Digest) -> PathBuf {
            self.dir.path().join("blobs/sha256").join(digest.hex())
        }

        /// An image with `layers` layer blobs; returns (manifest bytes, layer digests).
        fn image(&self, seed: &str, arch: &str, layers: usize) -> (Vec<u8>, Vec<Digest>) {
            let layer_bytes: Vec<Vec<u8>> = (0..layers)
                .map(|i| format!("{seed}-layer-{i}").repeat(100).into_bytes())
                .collect();
            let digests: Vec<Digest> = layer_bytes.iter().map(|b| self.blob(b)).collect();
            let config = json!({
                "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": digests.iter().map(|d| d.to_string()).collect::<Vec<_>>()}
            })
            .to_string()
            .into_bytes();
            self.blob(&config);
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": media_types::OCI_MANIFEST,
                "config": desc_json(media_types::OCI_CONFIG, &config),
                "layers": layer_bytes.iter().map(|b| desc_json(media_types::OCI_LAYER, b)).collect::<Vec<_>>()
            })
            .to_string()
            .into_bytes();
            self.blob(&manifest);
            (manifest, digests)
        }

        fn tag(&mut self, media_type: &str, bytes: &[u8], tag: Option<&str>) {
            let mut entry = desc_json(media_type, bytes);
            if let Some(tag) = tag {
                entry["annotations"] = json!({ REF_NAME_ANNOTATION: tag });
            }
            self.entries.push(entry);
        }

        fn finish(&self) {
            let index = json!({"schemaVersion": 2, "manifests": self.entries});
            fs::write(self.dir.path().join("index.json"), index.to_string()).unwrap();
        }
    }

    fn layer_len(seed: &str, i: usize) -> u64 {
        format!("{seed}-layer-{i}").len() as u64 * 100
    }

    fn amd64() -> Platform {
        Platform::parse("linux/amd64").unwrap()
    }

    #[tokio::test]
    async fn imports_oci_layout_by_tag_and_platform() {
        let mut layout = LayoutBuilder::new();
        let (single, single_layers) = layout.image("single", "amd64", 2);
        layout.tag(media_types::OCI_MANIFEST, &single, Some("v1"));
        let (amd, _) = layout.image("amd", "amd64", 1);
        let (arm, arm_layers) = layout.image("arm", "arm64", 1);
        let nested = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [
                {"mediaType": media_types::OCI_MANIFEST, "digest": Digest::of(&amd).to_string(), "size": amd.len(),
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": media_types::OCI_MANIFEST, "digest": Digest::of(&arm).to_string(), "size": arm.len(),
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
            ]
        })
        .to_string()
        .into_bytes();
        layout.blob(&nested);
        layout.tag(media_types::OCI_INDEX, &nested, Some("multi"));
        layout.finish();
        let (_dir, content) = store();

        let imported = import_oci_layout(&content, layout.dir.path(), Some("v1"), &amd64())
            .await
            .unwrap();
        assert_eq!(imported.manifest_digest, Digest::of(&single));
        assert_eq!(imported.index_digest, None);
        assert_eq!(imported.manifest.layers.len(), 2);
        assert!(imported.names.is_empty());
        for (layer, descriptor) in single_layers.iter().zip(&imported.manifest.layers) {
            assert_eq!(&descriptor.digest, layer);
            assert!(
                content.has(layer, layer_len("single", 0)),
                "layer {layer} stored"
            );
        }
        assert!(content.has(
            &imported.manifest.config.digest,
            imported.manifest.config.size
        ));
        assert_eq!(
            content
                .read_document(&imported.manifest_digest, MAX_DOCUMENT_BYTES)
                .unwrap(),
            single
        );

        let arm64 = Platform::parse("linux/arm64").unwrap();
        let imported = import_oci_layout(&content, layout.dir.path(), Some("multi"), &arm64)
            .await
            .unwrap();
        assert_eq!(imported.manifest_digest, Digest::of(&arm));
        assert_eq!(imported.index_digest, Some(Digest::of(&nested)));
        assert!(content.has(&arm_layers[0], layer_len("arm", 0)));
        assert!(content.has(&Digest::of(&nested), nested.len() as u64));

        let err = import_oci_layout(
            &content,
            layout.dir.path(),
            Some("multi"),
            &Platform::parse("linux/s390x").unwrap(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("available: linux/amd64, linux/arm64/v8"),
            "{err}"
        );

        let err = import_oci_layout(&content, layout.dir.path(), None, &amd64())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("lists 2 images (tags: v1, multi)"), "{err}");
        assert!(err.contains("oci:PATH:TAG"), "{err}");

        let err = import_oci_layout(&content, layout.dir.path(), Some("nope"), &amd64())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no image tagged \"nope\""), "{err}");
        assert!(err.contains("tags: v1, multi"), "{err}");
    }

    #[tokio::test]
    async fn single_untagged_image_needs_no_tag() {
        let mut layout = LayoutBuilder::new();
        let (manifest, _) = layout.image("only", "amd64", 1);
        layout.tag(media_types::OCI_MANIFEST, &manifest, None);
        layout.finish();
        let (_dir, content) = store();
        let imported = import_oci_layout(&content, layout.dir.path(), None, &amd64())
            .await
            .unwrap();
        assert_eq!(imported.manifest_digest, Digest::of(&manifest));
    }

    #[tokio::test]
    async fn tampered_layout_blob_is_refused_and_not_stored() {
        let mut layout = LayoutBuilder::new();
        let (manifest, layers) = layout.image("t", "amd64", 2);
        layout.tag(media_types::OCI_MANIFEST, &manifest, Some("latest"));
        layout.finish();
        // Same size, other content.
        let path = layout.blob_path(&layers[1]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        fs::write(&path, &bytes).unwrap();

        let (_dir, content) = store();
        let err = import_oci_layout(&content, layout.dir.path(), Some("latest"), &amd64())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Content(ContentError::DigestMismatch { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&layers[1].to_string()), "{err}");
        assert!(!content.has(&layers[1], bytes.len() as u64));
        // No image: neither its manifest nor its config was stored.
        assert!(!content.list().unwrap().contains(&Digest::of(&manifest)));

        // A tampered manifest is refused before anything is read from it.
        let mut layout = LayoutBuilder::new();
        let (manifest, _) = layout.image("m", "amd64", 1);
        layout.tag(media_types::OCI_MANIFEST, &manifest, Some("latest"));
        layout.finish();
        let mut evil = manifest.clone();
        evil[0] = b' ';
        fs::write(layout.blob_path(&Digest::of(&manifest)), &evil).unwrap();
        let err = import_oci_layout(&content, layout.dir.path(), Some("latest"), &amd64())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Content(ContentError::DigestMismatch { .. })
            ),
            "{err}"
        );

        // A blob larger than its descriptor.
        let mut layout = LayoutBuilder::new();
        let (manifest, layers) = layout.image("big", "amd64", 1);
        layout.tag(media_types::OCI_MANIFEST, &manifest, Some("latest"));
        layout.finish();
        let mut longer = fs::read(layout.blob_path(&layers[0])).unwrap();
        longer.push(b'x');
        fs::write(layout.blob_path(&layers[0]), &longer).unwrap();
        let err = import_oci_layout(&content, layout.dir.path(), Some("latest"), &amd64())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("but the manifest declares"),
            "{err}"
        );
        assert!(!content.has(&layers[0], longer.len() as u64 - 1));
    }

    #[tokio::test]
    async fn symlinked_blob_is_refused() {
        let mut layout = LayoutBuilder::new();
        let (manifest, layers) = layout.image("s", "amd64", 1);
        layout.tag(media_types::OCI_MANIFEST, &manifest, Some("latest"));
        layout.finish();
        // The symlink points at a file with the right content: still refused.
        let path = layout.blob_path(&layers[0]);
        let outside = layout.dir.path().join("outside");
        fs::rename(&path, &outside).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let (_dir, content) = store();
        let err = import_oci_layout(&content, layout.dir.path(), Some("latest"), &amd64())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!content.has(&layers[0], layer_len("s", 0)));

        // A symlinked blobs/sha256 folder is refused too.
        let mut layout = LayoutBuilder::new();
        let (manifest, _) = layout.image("d", "amd64", 1);
        layout.tag(media_types::OCI_MANIFEST, &manifest, Some("latest"));
        layout.finish();
        let sha = layout.dir.path().join("blobs/sha256");
        let moved = layout.dir.path().join("elsewhere");
        fs::rename(&sha, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, &sha).unwrap();
        let err = import_oci_layout(&content, layout.dir.path(), Some("latest"), &amd64())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[tokio::test]
    async fn refuses_bad_layout_marker() {
        let mut layout = LayoutBuilder::new();
        let (manifest, _) = layout.image("x", "amd64", 1);
        layout.tag(media_types::OCI_MANIFEST, &manifest, None);
        layout.finish();
        fs::write(
            layout.dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let (_dir, content) = store();
        let err = import_oci_layout(&content, layout.dir.path(), None, &amd64())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("imageLayoutVersion \"2.0.0\""), "{err}");
        fs::remove_file(layout.dir.path().join("oci-layout")).unwrap();
        let err = import_oci_layout(&content, layout.dir.path(), None, &amd64())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("oci-layout") && err.contains("missing"),
            "{err}"
        );
    }

    fn add_file(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, bytes).unwrap();
    }

    /// A `docker save` archive: one plain layer (old style) and one gzip layer (new style).
    fn docker_archive(images: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let plain_layer = {
            let mut layer = tar::Builder::new(Vec::new());
            add_file(&mut layer, "etc/hello", b"hello\n");
            layer.into_inner().unwrap()
        };
        let gzip_layer = {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut encoder, &plain_layer).unwrap();
            encoder.finish().unwrap()
        };
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&plain_layer).to_string(), Digest::of(&plain_layer).to_string()]}
        })
        .to_string()
        .into_bytes();
        let config_digest = Digest::of(&config);
        let gzip_digest = Digest::of(&gzip_layer);
        let entry = json!({
            "Config": format!("{}.json", config_digest.hex()),
            "RepoTags": ["busybox:latest", "localhost:5000/team/app:1.0"],
            "Layers": ["abc123/layer.tar", format!("./blobs/sha256/{}", gzip_digest.hex())]
        });
        let mut other = entry.clone();
        other["RepoTags"] = json!(["other:2"]);
        let manifest = json!(if images == 1 {
            vec![entry]
        } else {
            vec![entry, other]
        });
        let mut archive = tar::Builder::new(Vec::new());
        add_file(&mut archive, "abc123/layer.tar", &plain_layer);
        add_file(
            &mut archive,
            &format!("blobs/sha256/{}", gzip_digest.hex()),
            &gzip_layer,
        );
        add_file(
            &mut archive,
            &format!("{}.json", config_digest.hex()),
            &config,
        );
        add_file(
            &mut archive,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        (
            archive.into_inner().unwrap(),
            plain_layer,
            gzip_layer,
            config,
        )
    }

    #[tokio::test]
    async fn imports_docker_archive_with_names() {
        let (bytes, plain_layer, gzip_layer, config) = docker_archive(1);
        let (dir, content) = store();
        let path = dir.path().join("image.tar");
        fs::write(&path, &bytes).unwrap();
        let imported = import_docker_archive(&content, &path).await.unwrap();
        assert_eq!(
            imported.names,
            vec![
                "docker.io/library/busybox:latest".to_owned(),
                "localhost:5000/team/app:1.0".to_owned()
            ]
        );
        let manifest = &imported.manifest;
        assert_eq!(manifest.media_type, media_types::DOCKER_MANIFEST);
        assert_eq!(manifest.config.digest, Digest::of(&config));
        assert_eq!(manifest.config.media_type, media_types::DOCKER_CONFIG);
        assert_eq!(manifest.layers[0].media_type, media_types::DOCKER_LAYER);
        assert_eq!(manifest.layers[0].digest, Digest::of(&plain_layer));
        assert_eq!(
            manifest.layers[1].media_type,
            media_types::DOCKER_LAYER_GZIP
        );
        assert_eq!(manifest.layers[1].digest, Digest::of(&gzip_layer));
        assert!(content.has(&Digest::of(&plain_layer), plain_layer.len() as u64));
        assert!(content.has(&Digest::of(&gzip_layer), gzip_layer.len() as u64));
        assert!(content.has(&Digest::of(&config), config.len() as u64));
        let stored = content
            .read_document(&imported.manifest_digest, MAX_DOCUMENT_BYTES)
            .unwrap();
        let ParsedManifest::Image(reparsed) = parse_manifest(&stored, None).unwrap() else {
            panic!()
        };
        assert_eq!(&reparsed, manifest);

        // Importing again is idempotent.
        let again = import_docker_archive(&content, &path).await.unwrap();
        assert_eq!(again.manifest_digest, imported.manifest_digest);
    }

    #[tokio::test]
    async fn docker_archive_refusals() {
        let (dir, content) = store();
        let (bytes, ..) = docker_archive(2);
        let path = dir.path().join("two.tar");
        fs::write(&path, &bytes).unwrap();
        let err = import_docker_archive(&content, &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds 2 images"), "{err}");
        assert!(
            err.contains("busybox:latest localhost:5000/team/app:1.0, other:2"),
            "{err}"
        );

        let mut archive = tar::Builder::new(Vec::new());
        add_file(&mut archive, "index.json", b"{}");
        let path = dir.path().join("none.tar");
        fs::write(&path, archive.into_inner().unwrap()).unwrap();
        let err = import_docker_archive(&content, &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no manifest.json"), "{err}");

        // manifest.json naming a file that is only a symlink in the archive.
        let mut archive = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        archive
            .append_link(&mut header, "c.json", "/etc/passwd")
            .unwrap();
        let manifest = json!([{"Config": "c.json", "RepoTags": null, "Layers": []}]);
        add_file(
            &mut archive,
            "manifest.json",
            manifest.to_string().as_bytes(),
        );
        let path = dir.path().join("link.tar");
        fs::write(&path, archive.into_inner().unwrap()).unwrap();
        let err = import_docker_archive(&content, &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file in the archive"), "{err}");

        // A layer that does not match the config's diff_id.
        let plain = b"not the layer the config describes".to_vec();
        let config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"x").to_string()]}})
        .to_string();
        let mut archive = tar::Builder::new(Vec::new());
        add_file(&mut archive, "l/layer.tar", &plain);
        add_file(&mut archive, "c.json", config.as_bytes());
        let manifest =
            json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]);
        add_file(
            &mut archive,
            "manifest.json",
            manifest.to_string().as_bytes(),
        );
        let path = dir.path().join("mismatch.tar");
        fs::write(&path, archive.into_inner().unwrap()).unwrap();
        let err = import_docker_archive(&content, &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("diff_id"), "{err}");
        assert!(!content
            .list()
            .unwrap()
            .contains(&Digest::of(config.as_bytes())));

        // Path traversal in manifest.json is refused, not resolved.
        let mut archive = tar::Builder::new(Vec::new());
        let manifest = json!([{"Config": "../../etc/passwd", "RepoTags": [], "Layers": []}]);
        add_file(
            &mut archive,
            "manifest.json",
            manifest.to_string().as_bytes(),
        );
        let path = dir.path().join("escape.tar");
        fs::write(&path, archive.into_inner().unwrap()).unwrap();
        let err = import_docker_archive(&content, &path)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsafe path"), "{err}");
    }

    #[tokio::test]
    async fn follows_symlinks_inside_docker_archive_only() {
        let (dir, content) = store();
        let layer = b"layer bytes".to_vec();
        let config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string(), Digest::of(&layer).to_string()]}})
        .to_string();
        let mut archive = tar::Builder::new(Vec::new());
        add_file(&mut archive, "a/layer.tar", &layer);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        archive
            .append_link(&mut header, "b/layer.tar", "../a/layer.tar")
            .unwrap();
        add_file(&mut archive, "c.json", config.as_bytes());
        let manifest = json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["a/layer.tar", "b/layer.tar"]}]);
        add_file(
            &mut archive,
            "manifest.json",
            manifest.to_string().as_bytes(),
        );
        let path = dir.path().join("dedup.tar");
        fs::write(&path, archive.into_inner().unwrap()).unwrap();
        let imported = import_docker_archive(&content, &path).await.unwrap();
        assert_eq!(imported.manifest.layers.len(), 2);
        assert_eq!(imported.manifest.layers[1].digest, Digest::of(&layer));

        assert_eq!(
            resolve_link("b/layer.tar", Path::new("../a/layer.tar")).as_deref(),
            Some("a/layer.tar")
        );
        assert_eq!(
            resolve_link("b/layer.tar", Path::new("../../etc/passwd")),
            None
        );
        assert_eq!(resolve_link("b/layer.tar", Path::new("/etc/passwd")), None);
    }

    #[test]
    fn normalizes_archive_names() {
        assert_eq!(normalize_name(Path::new("./a/b")).as_deref(), Some("a/b"));
        assert_eq!(normalize_name(Path::new("a//b/")).as_deref(), Some("a/b"));
        assert_eq!(normalize_name(Path::new("../a")), None);
        assert_eq!(normalize_name(Path::new("/etc/passwd")), None);
        assert_eq!(normalize_name(Path::new("")), None);
    }
}
