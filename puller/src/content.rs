//! The content-addressed blob store: `blobs/sha256/<hex>`, written only through [`Ingest`].
//!
//! A blob reaches `blobs/` only by a rename from `ingest/` after its size and sha256 were
//! checked, so a file under `blobs/` with the expected size is a verified blob. Partial
//! downloads stay in `ingest/<hex>.partial` (locked with flock while written) so that an
//! interrupted pull, even one killed with `kill -9`, resumes where it stopped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::digest::Digest;

mod follow;
use follow::Feed;
pub use follow::{FollowHandle, Follower, Verdict};

/// A writer publishes what it wrote to its followers at least this often (bytes).
const PUBLISH_EVERY: u64 = 1 << 20;

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob {digest} is larger than the {expected} bytes its descriptor declares")]
    TooLarge { digest: Digest, expected: u64 },
    #[error("blob {digest} ended after {actual} of {expected} bytes")]
    TooShort {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error(
        "blob {expected} failed verification: its content hashes to {actual}; nothing was stored"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is not in the content store")]
    NotFound { digest: Digest },
    #[error(
        "blob {digest} is {size} bytes, over the {max}-byte limit for documents read into memory"
    )]
    DocumentTooLarge { digest: Digest, size: u64, max: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The blob store under `<root>/content`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Open (creating `0700` folders as needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let blobs = root.join("blobs").join(Digest::ALGORITHM);
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err(dir))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob `digest` lives once committed.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// True when the verified blob is present with the expected size.
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        fs::symlink_metadata(self.path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Start (or resume) writing the blob `digest` of `size` bytes.
    ///
    /// A partial file left by an earlier, interrupted attempt is re-hashed and continued.
    /// If another process is writing the same blob right now, this one writes its own
    /// private partial file instead: both end in the same verified rename.
    pub fn ingest(&self, digest: &Digest, size: u64) -> Result<Ingest, ContentError> {
        let shared = self.ingest.join(format!("{}.partial", digest.hex()));
        let (path, file) = match open_locked(&shared)? {
            Some(file) => (shared, file),
            None => {
                let private = self.ingest.join(format!(
                    "{}.{}-{:08x}.partial",
                    digest.hex(),
                    std::process::id(),
                    rand::random::<u32>()
                ));
                let file = open_locked(&private)?.ok_or_else(|| ContentError::Io {
                    path: private.clone(),
                    source: io::Error::new(io::ErrorKind::WouldBlock, "ingest file is locked"),
                })?;
                (private, file)
            }
        };
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let existing = file.metadata().map_err(io_err(&path))?.len();
        if existing > 0 && existing <= size {
            // Resume: hash what an earlier attempt already wrote.
            let mut reader = &file;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader.read(&mut buf).map_err(io_err(&path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
        } else if existing > 0 {
            file.set_len(0).map_err(io_err(&path))?;
        }
        // Reading the prefix left the file offset at its end (or at 0 after truncation),
        // which is where writing continues.
        let lock = file.try_clone().map_err(io_err(&path))?;
        let file = tokio::fs::File::from_std(file);
        Ok(Ingest {
            digest: digest.clone(),
            size,
            offset,
            published: offset,
            feed: Feed::new(offset),
            hasher,
            path,
            final_path: self.path(digest),
            writer: Some(tokio::io::BufWriter::with_capacity(1 << 18, file)),
            _lock: lock,
        })
    }

    /// Store a small blob held in memory (a manifest, a config), verifying it first.
    pub fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<PathBuf, ContentError> {
        let actual = Digest::of(bytes);
        if &actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let final_path = self.path(digest);
        if self.has(digest, bytes.len() as u64) {
            return Ok(final_path);
        }
        let tmp = self.ingest.join(format!(
            "{}.{}-{:08x}.tmp",
            digest.hex(),
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            io::Write::write_all(&mut file, bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &final_path)
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&tmp);
            return Err(ContentError::Io {
                path: final_path,
                source,
            });
        }
        Ok(final_path)
    }

    /// Read a whole blob into memory, refusing anything over `max` bytes and re-checking
    /// its digest (documents are small; this keeps "no blob used before it was checked").
    pub fn read_document(&self, digest: &Digest, max: u64) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound {
                    digest: digest.clone(),
                })
            }
            Err(e) => return Err(ContentError::Io { path, source: e }),
        };
        let size = file.metadata().map_err(io_err(&path))?.len();
        if size > max {
            return Err(ContentError::DocumentTooLarge {
                digest: digest.clone(),
                size,
                max,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Open a committed blob for reading. The caller checked `has(digest, size)` first.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound {
                digest: digest.clone(),
            },
            _ => ContentError::Io { path, source: e },
        })
    }

    /// Every committed blob. Files with names that are not digests are ignored.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut digests = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(io_err(&self.blobs))? {
            let entry = entry.map_err(io_err(&self.blobs))?;
            if let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                digests.push(digest);
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// Size in bytes of a committed blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let path = self.path(digest);
        Ok(fs::metadata(&path).map_err(io_err(&path))?.len())
    }

    /// Remove a committed blob (missing is fine).
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(ContentError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Remove partial downloads nobody holds a lock on. Returns the bytes freed.
    pub fn clean_ingest(&self) -> Result<u64, ContentError> {
        let mut freed = 0;
        for entry in fs::read_dir(&self.ingest).map_err(io_err(&self.ingest))? {
            let entry = entry.map_err(io_err(&self.ingest))?;
            let path = entry.path();
            if let Ok(Some(file)) = open_locked(&path) {
                freed += file.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(&path);
            }
        }
        Ok(freed)
    }
}

/// Open (creating) `path` and take an exclusive, non-blocking flock on it.
/// `Ok(None)` when another process holds the lock.
fn open_locked(path: &Path) -> Result<Option<File>, ContentError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(ContentError::Io {
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

/// A blob being written: every byte goes through sha256 and the size check.
#[derive(Debug)]
pub struct Ingest {
    digest: Digest,
    size: u64,
    offset: u64,
    /// Bytes flushed to the file and told to followers.
    published: u64,
    feed: std::sync::Arc<Feed>,
    hasher: Sha256,
    path: PathBuf,
    final_path: PathBuf,
    writer: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// Holds the flock for as long as the ingest lives.
    _lock: File,
}

impl Ingest {
    /// Bytes already written (and hashed): where a resumed download starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The size the descriptor declares.
    pub fn expected_size(&self) -> u64 {
        self.size
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Append `buf`. Fails, writing nothing, if it would pass the declared size.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), ContentError> {
        if self.offset + buf.len() as u64 > self.size {
            return Err(ContentError::TooLarge {
                digest: self.digest.clone(),
                expected: self.size,
            });
        }
        let writer = self
            .writer
            .as_mut()
            .expect("ingest writer is set until commit");
        writer.write_all(buf).await.map_err(io_err(&self.path))?;
        self.hasher.update(buf);
        self.offset += buf.len() as u64;
        if self.offset - self.published >= PUBLISH_EVERY {
            self.publish().await?;
        }
        Ok(())
    }

    /// Flush what was written and let followers read it.
    pub async fn publish(&mut self) -> Result<(), ContentError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().await.map_err(io_err(&self.path))?;
            self.published = self.offset;
            self.feed.publish(self.published);
        }
        Ok(())
    }

    /// A reader of this blob from byte 0 that follows the writing (see [`Follower`]): it
    /// ends only after [`Ingest::commit`] verified the blob.
    pub fn follow(&self) -> Result<Follower, ContentError> {
        let file = self._lock.try_clone().map_err(io_err(&self.path))?;
        Ok(Follower::new(file, self.feed.clone(), self.size))
    }

    /// Throw away what was written (the server ignored a Range request, say).
    pub async fn reset(&mut self) -> Result<(), ContentError> {
        let writer = self
            .writer
            .as_mut()
            .expect("ingest writer is set until commit");
        writer.flush().await.map_err(io_err(&self.path))?;
        // Followers fail before a byte of theirs is truncated.
        self.feed.restart();
        self.published = 0;
        let file = writer.get_mut();
        file.set_len(0).await.map_err(io_err(&self.path))?;
        tokio::io::AsyncSeekExt::seek(file, io::SeekFrom::Start(0))
            .await
            .map_err(io_err(&self.path))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        Ok(())
    }

    /// Check size and digest, then move the blob into place. On a mismatch the partial
    /// file is deleted (a resumed prefix may be what was wrong) and nothing is stored.
    pub async fn commit(mut self) -> Result<PathBuf, ContentError> {
        let mut writer = self
            .writer
            .take()
            .expect("ingest writer is set until commit");
        writer.flush().await.map_err(io_err(&self.path))?;
        let file = writer.into_inner();
        if self.offset != self.size {
            return Err(ContentError::TooShort {
                digest: self.digest.clone(),
                expected: self.size,
                actual: self.offset,
            });
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.digest {
            self.feed.finish(Verdict::Failed);
            let _ = tokio::fs::remove_file(&self.path).await;
            return Err(ContentError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        self.feed.publish(self.offset);
        file.sync_all().await.map_err(io_err(&self.path))?;
        tokio::fs::rename(&self.path, &self.final_path)
            .await
            .map_err(io_err(&self.final_path))?;
        self.feed.finish(Verdict::Verified);
        Ok(self.final_path.clone())
    }
}

impl Drop for Ingest {
    /// Followers of an ingest that was not committed fail (no-op after a commit).
    fn drop(&mut self) {
        self.feed.finish(Verdict::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ingest_verifies_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"hello, content store".repeat(1000);
        let digest = Digest::of(&data);

        let mut ingest = store.ingest(&digest, data.len() as u64).unwrap();
        ingest.write_all(&data[..5000]).await.unwrap();
        // Simulate an interrupted pull: drop with a flushed prefix on disk.
        ingest.writer.as_mut().unwrap().flush().await.unwrap();
        drop(ingest);

        let mut ingest = store.ingest(&digest, data.len() as u64).unwrap();
        assert_eq!(ingest.offset(), 5000);
        ingest.write_all(&data[5000..]).await.unwrap();
        let path = ingest.commit().await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert!(store.has(&digest, data.len() as u64));
        assert_eq!(store.list().unwrap(), vec![digest]);
    }

    #[tokio::test]
    async fn tampered_blob_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"good");
        let mut ingest = store.ingest(&digest, 4).unwrap();
        ingest.write_all(b"evil").await.unwrap();
        assert!(matches!(
            ingest.commit().await,
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(!store.has(&digest, 4));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn refuses_bytes_past_declared_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"abc");
        let mut ingest = store.ingest(&digest, 3).unwrap();
        assert!(matches!(
            ingest.write_all(b"abcd").await,
            Err(ContentError::TooLarge { .. })
        ));
    }

    #[test]
    fn read_document_checks_digest_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"{}");
        store.write_blob(&digest, b"{}").unwrap();
        assert_eq!(store.read_document(&digest, 10).unwrap(), b"{}");
        assert!(matches!(
            store.read_document(&digest, 1),
            Err(ContentError::DocumentTooLarge { .. })
        ));
        std::fs::write(store.path(&digest), b"[]").unwrap();
        assert!(matches!(
            store.read_document(&digest, 10),
            Err(ContentError::DigestMismatch { .. })
        ));
    }
}
