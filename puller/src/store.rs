//! The store under the farm root: content, snapshots and image records, with the lock
//! that keeps garbage collection away from pulls in progress.
//!
//! ```text
//! <root>/store.lock                       flock: pulls SHARED for their whole run, prune EXCLUSIVE
//! <root>/content/{blobs/sha256,ingest}    the content store
//! <root>/snapshots/<chain-id hex>/fs      committed snapshots; tmp-<pid>-<rand> being made
//! <root>/images/<sha256(name) hex>.json   one image record per name, written tmp + rename
//! ```
//!
//! Crash safety: a pull writes its record last, after every blob and snapshot it names was
//! committed by a rename; records are replaced by a rename too. So a command killed at any
//! point leaves only committed things plus temporary names (`tmp-<pid>-*`, ingest partials),
//! which are never read as real ones and are removed by [`Store::open`] (when no other
//! command runs) or by [`Store::prune`].

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::image::Platform;
use crate::snapshots::{SnapshotError, Snapshots};

/// Bound on one image record read into memory.
const MAX_RECORD_BYTES: u64 = 4 << 20;
/// Shortest id prefix accepted, as hex characters.
const MIN_ID_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("image id prefix {prefix:?} is ambiguous: it matches {candidates}; type more characters of the id")]
    AmbiguousId { prefix: String, candidates: String },
    #[error("image record {path} is corrupt ({reason}); delete the file and pull the image again")]
    CorruptRecord { path: PathBuf, reason: String },
    #[error("the store at {root} is in use by another farm command (a pull in progress?); try again when it finishes")]
    Busy { root: PathBuf },
    #[error(
        "layer {digest}: uncompressed content hashes to {actual}, but the image config says {expected}; the image is corrupt or was tampered with"
    )]
    DiffIdMismatch {
        digest: Digest,
        actual: Digest,
        expected: Digest,
    },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One layer of a recorded image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// A pulled image, as `farm images` lists it and `farm run` finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalized name it was pulled by (`docker.io/library/busybox:latest`,
    /// `oci:/path:tag`).
    pub name: String,
    pub manifest_digest: Digest,
    /// The index the manifest was chosen from, if any (docker's RepoDigest for multi-arch).
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    pub platform: Platform,
    pub layers: Vec<LayerRecord>,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    /// RFC 3339 time of the pull.
    pub pulled_at: String,
}

impl ImageRecord {
    /// docker's IMAGE ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: u64,
    pub snapshots: u64,
    pub bytes: u64,
}

/// A held flock on `<root>/store.lock`; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    pub content: ContentStore,
    pub snapshots: Snapshots,
}

impl Store {
    /// Open the store at `root` (created `0700`), repairing what a killed command left.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = root.parent() {
            if !parent.as_os_str().is_empty() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
        }
        match fs::DirBuilder::new().mode(0o700).create(root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Io {
                    path: root.to_owned(),
                    source: e,
                })
            }
        }
        let meta = fs::metadata(root).map_err(io_err(root))?;
        if !meta.is_dir() {
            return Err(StoreError::Io {
                path: root.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "the farm root is not a folder",
                ),
            });
        }
        if meta.permissions().mode() & 0o022 != 0 {
            // Another user could swap the folders below it; an existing root is never chmod-ed
            // behind the user's back (it might be a folder they did not mean).
            return Err(StoreError::Io {
                path: root.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the farm root is writable by other users; run `chmod 700 {}` or choose another root", root.display()),
                ),
            });
        }
        let images = root.join("images");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&images)
            .map_err(io_err(&images))?;
        let content = ContentStore::open(&root.join("content"))?;
        let snapshots = Snapshots::open(&root.join("snapshots"))?;
        let store = Store {
            root: root.to_owned(),
            content,
            snapshots,
        };
        // Repair only when no other command is at work: its temporary files are live.
        if let Some(_lock) = store.try_lock(LockKind::Exclusive)? {
            store.snapshots.clean_stale()?;
            store.clean_record_tmp()?;
        }
        Ok(store)
    }
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("store.lock")
    }

    fn open_lock_file(&self) -> Result<File, StoreError> {
        let path = self.lock_path();
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err(&path))
    }

    fn try_lock(&self, kind: LockKind) -> Result<Option<StoreLock>, StoreError> {
        use rustix::fs::FlockOperation as Op;
        let file = self.open_lock_file()?;
        let op = match kind {
            LockKind::Shared => Op::NonBlockingLockShared,
            LockKind::Exclusive => Op::NonBlockingLockExclusive,
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(StoreLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::Io {
                path: self.lock_path(),
                source: e.into(),
            }),
        }
    }

    fn lock(&self, kind: LockKind) -> Result<StoreLock, StoreError> {
        use rustix::fs::FlockOperation as Op;
        let file = self.open_lock_file()?;
        let op = match kind {
            LockKind::Shared => Op::LockShared,
            LockKind::Exclusive => Op::LockExclusive,
        };
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        path: self.lock_path(),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Take the shared lock (a pull holds it for its whole run), waiting while a prune runs.
    /// Blocking: from async code call it in `spawn_blocking`.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        self.lock(LockKind::Shared)
    }
    /// Take the exclusive lock, waiting for pulls in progress. Blocking.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        self.lock(LockKind::Exclusive)
    }
    /// The shared lock if free now; None while an exclusive holder works.
    pub fn try_lock_shared(&self) -> Result<Option<StoreLock>, StoreError> {
        self.try_lock(LockKind::Shared)
    }
    /// The exclusive lock if nobody holds the store now.
    pub fn try_lock_exclusive(&self) -> Result<Option<StoreLock>, StoreError> {
        self.try_lock(LockKind::Exclusive)
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.images_dir()
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    /// Every image record, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.images_dir();
        let mut records = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if Digest::from_hex(hex).is_err() {
                continue;
            }
            let path = entry.path();
            let record = read_record(&path)?;
            if Digest::of(record.name.as_bytes()).hex() != hex {
                return Err(StoreError::CorruptRecord {
                    path,
                    reason: format!(
                        "it names {:?}, which is not the name its file is for",
                        record.name
                    ),
                });
            }
            records.push(record);
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Find an image by name (normalized or as typed), full or short id, or digest.
    pub fn image(&self, name_or_id: &str) -> Result<ImageRecord, StoreError> {
        let records = self.images()?;
        match resolve(&records, name_or_id, &normalize_name)? {
            Found::Name(i) => Ok(records[i].clone()),
            Found::Id(indices) => Ok(records[indices[0]].clone()),
        }
    }

    /// Write (or replace) the record of `record.name`: a temporary file, synced, renamed.
    pub fn put_image(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let dir = self.images_dir();
        let path = self.record_path(&record.name);
        let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let tmp = dir.join(format!(
            "tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            File::open(&dir)?.sync_all()
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Io { path, source });
        }
        Ok(())
    }

    /// Remove the record(s) matching `name_or_id`; their content goes at the next prune.
    /// By name: that record; by id: every name of that image.
    ///
    /// No lock is needed: records are replaced and removed atomically, and content is only
    /// deleted by [`Store::prune`] under the exclusive lock.
    pub fn remove_image(&self, name_or_id: &str) -> Result<Vec<ImageRecord>, StoreError> {
        self.remove_matching(name_or_id, &normalize_name)
    }

    fn remove_matching(
        &self,
        name_or_id: &str,
        normalize: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let records = self.images()?;
        let indices = match resolve(&records, name_or_id, normalize)? {
            Found::Name(i) => vec![i],
            Found::Id(indices) => indices,
        };
        let mut removed = Vec::new();
        for i in indices {
            let record = &records[i];
            let path = self.record_path(&record.name);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::Io { path, source: e })
                }
                _ => removed.push(record.clone()),
            }
        }
        Ok(removed)
    }

    /// Remove blobs and snapshots that no image references, and stale partial work.
    /// Takes the exclusive lock, and refuses (`Busy`) while a pull holds the store.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        self.prune_keeping(&|| Ok(HashSet::new()))
    }

    /// [`Store::prune`] that also keeps the snapshots `in_use` lists (the chain IDs of
    /// containers, asked for while the exclusive lock is held, so that no `farm run`
    /// can start using a snapshot in between).
    pub fn prune_keeping(
        &self,
        in_use: &dyn Fn() -> Result<HashSet<Digest>, StoreError>,
    ) -> Result<PruneReport, StoreError> {
        let Some(_lock) = self.try_lock_exclusive()? else {
            return Err(StoreError::Busy {
                root: self.root.clone(),
            });
        };
        let keep = in_use()?;
        self.prune_locked_keeping(&keep)
    }

    /// [`Store::prune`] for a caller that already holds the exclusive lock.
    pub fn prune_locked(&self) -> Result<PruneReport, StoreError> {
        self.prune_locked_keeping(&HashSet::new())
    }

    fn prune_locked_keeping(&self, in_use: &HashSet<Digest>) -> Result<PruneReport, StoreError> {
        let records = self.images()?;
        let mut blobs: HashSet<&Digest> = HashSet::new();
        let mut chain_ids: HashSet<&Digest> = HashSet::new();
        for record in &records {
            blobs.insert(&record.manifest_digest);
            blobs.extend(record.index_digest.as_ref());
            blobs.insert(&record.config_digest);
            for layer in &record.layers {
                blobs.insert(&layer.digest);
                chain_ids.insert(&layer.chain_id);
            }
        }
        let mut report = PruneReport::default();
        for digest in self.content.list()? {
            if blobs.contains(&digest) {
                continue;
            }
            let size = self.content.size(&digest).unwrap_or(0);
            self.content.delete(&digest)?;
            report.blobs += 1;
            report.bytes += size;
        }
        for chain_id in self.snapshots.list()? {
            if chain_ids.contains(&chain_id) || in_use.contains(&chain_id) {
                continue;
            }
            let size = self.snapshots.size(&chain_id);
            self.snapshots.remove(&chain_id)?;
            report.snapshots += 1;
            report.bytes += size;
        }
        report.bytes += self.content.clean_ingest()?;
        report.bytes += self.snapshots.clean_stale()?.bytes;
        self.clean_record_tmp()?;
        Ok(report)
    }

    /// Remove record temporaries (`images/tmp-<pid>-*`) whose writer is gone.
    fn clean_record_tmp(&self) -> Result<(), StoreError> {
        let dir = self.images_dir();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(crate::snapshots::is_stale_tmp)
            {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(StoreError::Io { path, source: e })
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn read_record(path: &Path) -> Result<ImageRecord, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(StoreError::CorruptRecord {
            path: path.to_owned(),
            reason: format!("over {MAX_RECORD_BYTES} bytes"),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptRecord {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// docker's normalization of what a user typed (`busybox` -> `docker.io/library/busybox:latest`),
/// or None when it is not a valid reference.
fn normalize_name(input: &str) -> Option<String> {
    crate::reference::Reference::parse(input)
        .ok()
        .map(|r| r.to_string())
}

/// What a query matched: one record by name, or every record of one image id.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Name(usize),
    Id(Vec<usize>),
}

/// Find `query` among `records` (sorted by name). In order: the exact name; the normalized
/// name (through `normalize`); a `name@digest` whose repository and manifest (or index)
/// digest match; the image id as `sha256:<hex>`, 64 hex characters or a unique prefix of at
/// least [`MIN_ID_PREFIX`]; a manifest or index digest.
fn resolve(
    records: &[ImageRecord],
    query: &str,
    normalize: &dyn Fn(&str) -> Option<String>,
) -> Result<Found, StoreError> {
    if let Some(i) = records.iter().position(|r| r.name == query) {
        return Ok(Found::Name(i));
    }
    // As docker: a full id first, then a name, then an id prefix (so `farm run abcd` prefers
    // an image named `abcd` to one whose id starts with abcd).
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if hex.len() == 64 {
        if let Some(found) = resolve_id(records, query)? {
            return Ok(found);
        }
    }
    // `sha256:abcd` would parse as the name `sha256` with the tag `abcd`.
    if !query.starts_with("sha256:") {
        if let Some(found) = resolve_name(records, query, normalize) {
            return Ok(found);
        }
    }
    if let Some(found) = resolve_id(records, query)? {
        return Ok(found);
    }
    Err(StoreError::NoSuchImage(format!(
        "{query}; `farm images` lists the images in the store, `farm pull {query}` fetches it"
    )))
}

fn looks_like_id(query: &str) -> bool {
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    hex.len() >= MIN_ID_PREFIX
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn resolve_name(
    records: &[ImageRecord],
    query: &str,
    normalize: &dyn Fn(&str) -> Option<String>,
) -> Option<Found> {
    let normalized = normalize(query)?;
    if let Some(i) = records.iter().position(|r| r.name == normalized) {
        return Some(Found::Name(i));
    }
    // `repo@sha256:...` of an image pulled by tag: same repository, same manifest or index.
    let (repository, digest) = normalized.rsplit_once('@')?;
    let digest = Digest::parse(digest).ok()?;
    let repository = strip_tag(repository);
    records
        .iter()
        .position(|r| {
            strip_tag(r.name.split('@').next().unwrap_or(&r.name)) == repository
                && (r.manifest_digest == digest || r.index_digest.as_ref() == Some(&digest))
        })
        .map(Found::Name)
}

/// `host:5000/a/b:tag` -> `host:5000/a/b` (a colon after the last slash is a tag).
fn strip_tag(name: &str) -> &str {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(colon) => &name[..slash + colon],
        None => name,
    }
}

fn resolve_id(records: &[ImageRecord], query: &str) -> Result<Option<Found>, StoreError> {
    // `sha256:` followed by a partial hex is a prefix too, as docker takes it.
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if !looks_like_id(query) {
        return Ok(None);
    }
    let by_id = |id: &Digest| -> Vec<usize> {
        records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id() == id)
            .map(|(i, _)| i)
            .collect()
    };
    if hex.len() == 64 {
        let digest = Digest::from_hex(hex).expect("64 lowercase hex characters");
        let indices = by_id(&digest);
        if !indices.is_empty() {
            return Ok(Some(Found::Id(indices)));
        }
        // A manifest or index digest names one pulled image too (one record of it).
        return Ok(records
            .iter()
            .position(|r| r.manifest_digest == digest || r.index_digest.as_ref() == Some(&digest))
            .map(Found::Name));
    }
    let mut ids: Vec<&Digest> = records
        .iter()
        .map(|r| r.id())
        .filter(|id| id.hex().starts_with(hex))
        .collect();
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(Found::Id(by_id(id)))),
        many => Err(StoreError::AmbiguousId {
            prefix: query.to_owned(),
            candidates: many
                .iter()
                .map(|id| id.short())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, config: &[u8], layers: &[&[u8]]) -> ImageRecord {
        let mut chain: Option<Digest> = None;
        let layers: Vec<LayerRecord> = layers
            .iter()
            .map(|bytes| {
                let diff_id = Digest::of(&[*bytes, b"-diff".as_slice()].concat());
                let chain_id = match &chain {
                    None => diff_id.clone(),
                    Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
                };
                chain = Some(chain_id.clone());
                LayerRecord {
                    digest: Digest::of(bytes),
                    size: bytes.len() as u64,
                    media_type: crate::image::media_types::OCI_LAYER_GZIP.to_owned(),
                    diff_id,
                    chain_id,
                }
            })
            .collect();
        ImageRecord {
            name: name.to_owned(),
            manifest_digest: Digest::of(&[config, b"-manifest".as_slice()].concat()),
            index_digest: None,
            config_digest: Digest::of(config),
            platform: Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
            },
            size: layers.iter().map(|l| l.size).sum(),
            layers,
            pulled_at: "2024-01-02T03:04:05Z".into(),
        }
    }

    /// Put a record's blobs and snapshots in the store, as a pull would.
    fn materialize(store: &Store, record: &ImageRecord, config: &[u8], layers: &[&[u8]]) {
        store
            .content
            .write_blob(&record.config_digest, config)
            .unwrap();
        for (layer, bytes) in record.layers.iter().zip(layers) {
            store.content.write_blob(&layer.digest, bytes).unwrap();
            if !store.snapshots.exists(&layer.chain_id) {
                let prepared = store.snapshots.prepare().unwrap();
                fs::write(prepared.fs().join("file"), bytes).unwrap();
                store.snapshots.commit(prepared, &layer.chain_id).unwrap();
            }
        }
        store.put_image(record).unwrap();
    }

    /// Tests never reach `Reference::parse`: names given are already normalized.
    fn no_normalize(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn open_creates_private_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("farm");
        let store = Store::open(&root).unwrap();
        assert_eq!(store.root(), root);
        for sub in [
            "",
            "images",
            "content/blobs/sha256",
            "content/ingest",
            "snapshots",
        ] {
            let meta = fs::metadata(root.join(sub)).unwrap();
            assert!(meta.is_dir(), "{sub}");
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{sub}");
        }
        let _lock = store.lock_shared().unwrap();
        assert_eq!(
            fs::metadata(root.join("store.lock"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // Opening again (another command) works while a pull holds the lock.
        Store::open(&root).unwrap();
    }

    #[test]
    fn open_refuses_a_root_others_can_write() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn records_put_get_list_remove_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record("docker.io/library/alpine:3", b"config-a", &[b"l1"]);
        let b = record("docker.io/library/busybox:latest", b"config-b", &[b"l2"]);
        store.put_image(&a).unwrap();
        store.put_image(&b).unwrap();
        assert_eq!(store.images().unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(store.image("docker.io/library/busybox:latest").unwrap(), b);

        // Replacing a record under the same name.
        let b2 = record("docker.io/library/busybox:latest", b"config-b2", &[b"l3"]);
        store.put_image(&b2).unwrap();
        assert_eq!(store.images().unwrap(), vec![a.clone(), b2.clone()]);

        assert_eq!(
            store
                .remove_image("docker.io/library/busybox:latest")
                .unwrap(),
            vec![b2]
        );
        assert_eq!(store.images().unwrap(), vec![a]);
        assert!(matches!(
            store.remove_matching("docker.io/library/busybox:latest", &no_normalize),
            Err(StoreError::NoSuchImage(_))
        ));
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("images")).unwrap().count(), 1);
    }

    #[test]
    fn records_found_by_full_and_short_id_and_manifest_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record("docker.io/library/alpine:3", b"config-a", &[b"l1"]);
        store.put_image(&a).unwrap();
        let id = a.id().clone();
        assert_eq!(store.image(&id.to_string()).unwrap(), a);
        assert_eq!(store.image(id.hex()).unwrap(), a);
        assert_eq!(store.image(&a.manifest_digest.to_string()).unwrap(), a);
        assert_eq!(store.image(&format!("sha256:{}", id.short())).unwrap(), a);
        // Prefixes are tried after names: without normalization in this test.
        let records = store.images().unwrap();
        assert_eq!(
            resolve(&records, id.short(), &no_normalize).unwrap(),
            Found::Id(vec![0])
        );
        assert_eq!(
            resolve(&records, &id.hex()[..4], &no_normalize).unwrap(),
            Found::Id(vec![0])
        );
        // Too short for an id prefix, and not a name.
        assert!(matches!(
            resolve(&records, &id.hex()[..3], &no_normalize),
            Err(StoreError::NoSuchImage(_))
        ));
        assert!(matches!(
            resolve(&records, "ffffffffffff", &no_normalize),
            Err(StoreError::NoSuchImage(_))
        ));
    }

    #[test]
    fn ambiguous_id_prefix_is_refused() {
        // Find two configs whose ids share the first 4 hex characters.
        let mut seen = std::collections::HashMap::new();
        let (first, second) = (0u32..)
            .find_map(|n| {
                let config = format!("config-{n}");
                let prefix = Digest::of(config.as_bytes()).hex()[..4].to_owned();
                seen.insert(prefix, config.clone())
                    .map(|other| (other, config))
            })
            .unwrap();
        let a = record("example.com/a:1", first.as_bytes(), &[]);
        let b = record("example.com/b:1", second.as_bytes(), &[]);
        let records = vec![a.clone(), b.clone()];
        let prefix = &a.id().hex()[..4];
        let err = resolve(&records, prefix, &no_normalize).unwrap_err();
        assert!(matches!(err, StoreError::AmbiguousId { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(a.id().short()) && message.contains(b.id().short()),
            "{message}"
        );
        // A longer prefix decides.
        assert_eq!(
            resolve(&records, a.id().short(), &no_normalize).unwrap(),
            Found::Id(vec![0])
        );
    }

    #[test]
    fn remove_by_id_removes_every_name_of_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a1 = record("docker.io/library/alpine:3", b"config-a", &[b"l1"]);
        let a2 = record("docker.io/library/alpine:latest", b"config-a", &[b"l1"]);
        let b = record("docker.io/library/busybox:latest", b"config-b", &[b"l2"]);
        for r in [&a1, &a2, &b] {
            store.put_image(r).unwrap();
        }
        let removed = store
            .remove_matching(a1.id().short(), &no_normalize)
            .unwrap();
        assert_eq!(removed, vec![a1, a2]);
        assert_eq!(store.images().unwrap(), vec![b]);
    }

    #[test]
    fn normalized_names_and_repo_digests_resolve() {
        let a = record("docker.io/library/alpine:3", b"config-a", &[b"l1"]);
        let b = record("localhost:5000/team/app:v1", b"config-b", &[b"l2"]);
        let records = vec![a.clone(), b.clone()];
        let fake_normalize = |input: &str| -> Option<String> {
            match input {
                "alpine:3" => Some("docker.io/library/alpine:3".into()),
                "alpine" => Some("docker.io/library/alpine:latest".into()),
                _ if input.contains('@') => Some(input.to_owned()),
                _ => None,
            }
        };
        assert_eq!(
            resolve(&records, "alpine:3", &fake_normalize).unwrap(),
            Found::Name(0)
        );
        assert!(matches!(
            resolve(&records, "alpine", &fake_normalize),
            Err(StoreError::NoSuchImage(_))
        ));
        let by_digest = format!("localhost:5000/team/app@{}", b.manifest_digest);
        assert_eq!(
            resolve(&records, &by_digest, &fake_normalize).unwrap(),
            Found::Name(1)
        );
        let wrong_repo = format!("localhost:5000/team/other@{}", b.manifest_digest);
        assert!(resolve(&records, &wrong_repo, &fake_normalize).is_err());
        // A name wins over an id prefix, as in docker.
        let prefix = a.id().hex()[..6].to_owned();
        let named = record(
            &format!("docker.io/library/{prefix}:latest"),
            b"config-c",
            &[],
        );
        let records = vec![a.clone(), named];
        let normalize_prefix = |input: &str| Some(format!("docker.io/library/{input}:latest"));
        assert_eq!(
            resolve(&records, &prefix, &normalize_prefix).unwrap(),
            Found::Name(1)
        );
        assert_eq!(
            resolve(&records, &prefix, &no_normalize).unwrap(),
            Found::Id(vec![0])
        );
        assert_eq!(strip_tag("localhost:5000/a/b:tag"), "localhost:5000/a/b");
        assert_eq!(strip_tag("localhost:5000/a/b"), "localhost:5000/a/b");
    }

    #[test]
    fn corrupt_record_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record("docker.io/library/alpine:3", b"config-a", &[b"l1"]);
        store.put_image(&a).unwrap();
        fs::write(store.record_path(&a.name), b"{not json").unwrap();
        let err = store.images().unwrap_err();
        assert!(matches!(err, StoreError::CorruptRecord { .. }), "{err}");
        // Prune refuses rather than deleting content a damaged record may name.
        assert!(store.prune().is_err());
    }

    #[test]
    fn prune_keeps_referenced_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record(
            "docker.io/library/alpine:3",
            b"config-a",
            &[b"base", b"top-a"],
        );
        materialize(&store, &a, b"config-a", &[b"base", b"top-a"]);
        let orphan = b"orphan blob";
        store
            .content
            .write_blob(&Digest::of(orphan), orphan)
            .unwrap();
        let orphan_snapshot = Digest::of(b"orphan snapshot");
        let prepared = store.snapshots.prepare().unwrap();
        fs::write(prepared.fs().join("f"), b"123").unwrap();
        store.snapshots.commit(prepared, &orphan_snapshot).unwrap();
        // A partial download nobody writes any more.
        fs::write(dir.path().join("content/ingest/x.partial"), b"1234567").unwrap();

        let report = store.prune().unwrap();
        assert_eq!(
            report,
            PruneReport {
                blobs: 1,
                snapshots: 1,
                bytes: (orphan.len() + 3 + 7) as u64
            }
        );
        assert!(!store.content.has(&Digest::of(orphan), orphan.len() as u64));
        assert!(!store.snapshots.exists(&orphan_snapshot));
        assert!(store.content.has(&a.config_digest, 8));
        for layer in &a.layers {
            assert!(store.content.has(&layer.digest, layer.size));
            assert!(store.snapshots.exists(&layer.chain_id));
        }
        assert_eq!(
            fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0
        );
        // Nothing left to do.
        assert_eq!(store.prune().unwrap(), PruneReport::default());
    }

    #[test]
    fn shared_layer_kept_until_both_images_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record("example.com/a:1", b"config-a", &[b"base", b"top-a"]);
        let b = record("example.com/b:1", b"config-b", &[b"base", b"top-b"]);
        materialize(&store, &a, b"config-a", &[b"base", b"top-a"]);
        materialize(&store, &b, b"config-b", &[b"base", b"top-b"]);
        assert_eq!(a.layers[0], b.layers[0]);
        let base = a.layers[0].clone();

        store.remove_image("example.com/a:1").unwrap();
        let report = store.prune().unwrap();
        // config-a and top-a's blob; top-a's snapshot.
        assert_eq!((report.blobs, report.snapshots), (2, 1));
        assert!(store.content.has(&base.digest, base.size));
        assert!(store.snapshots.exists(&base.chain_id));
        assert!(!store.snapshots.exists(&a.layers[1].chain_id));
        assert!(store.snapshots.exists(&b.layers[1].chain_id));

        store.remove_image("example.com/b:1").unwrap();
        let report = store.prune().unwrap();
        assert_eq!((report.blobs, report.snapshots), (3, 2));
        assert!(!store.content.has(&base.digest, base.size));
        assert!(store.snapshots.list().unwrap().is_empty());
        assert!(store.content.list().unwrap().is_empty());
    }

    #[test]
    fn prune_refuses_while_a_pull_holds_the_shared_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let orphan = b"orphan";
        store
            .content
            .write_blob(&Digest::of(orphan), orphan)
            .unwrap();
        let shared = store.lock_shared().unwrap();
        // Another shared holder (a second pull) is fine; an exclusive one is not.
        assert!(store.try_lock_shared().unwrap().is_some());
        assert!(store.try_lock_exclusive().unwrap().is_none());
        assert!(matches!(store.prune(), Err(StoreError::Busy { .. })));
        assert!(store.content.has(&Digest::of(orphan), orphan.len() as u64));

        // A blocking exclusive lock waits for the pull to end.
        let waiter = {
            let root = dir.path().to_owned();
            std::thread::spawn(move || {
                let store = Store::open(&root).unwrap();
                let _lock = store.lock_exclusive().unwrap();
                store.prune_locked().unwrap()
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished());
        drop(shared);
        assert_eq!(waiter.join().unwrap().blobs, 1);
    }

    #[test]
    fn open_repairs_stale_temporaries_only_when_store_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale_snapshot = dir.path().join(format!("snapshots/tmp-{dead}-1"));
        let stale_record = dir.path().join(format!("images/tmp-{dead}-2"));
        fs::create_dir_all(stale_snapshot.join("fs")).unwrap();
        fs::write(&stale_record, b"{").unwrap();

        let lock = store.lock_shared().unwrap();
        Store::open(dir.path()).unwrap();
        assert!(stale_snapshot.exists() && stale_record.exists());
        // A half-written record under a temporary name is never read as a record.
        assert!(store.images().unwrap().is_empty());
        drop(lock);
        Store::open(dir.path()).unwrap();
        assert!(!stale_snapshot.exists() && !stale_record.exists());
    }
}
