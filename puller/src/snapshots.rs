//! Snapshots: one folder per layer, keyed by chain ID, used as an overlayfs lower dir.
//! `snapshots/<chain-id hex>/fs` is the layer's tree; a snapshot exists only once its
//! unpack finished (it is prepared under `snapshots/tmp-*` and renamed into place).
//!
//! Names under `snapshots/` are either 64 lowercase hex characters (a committed snapshot)
//! or `tmp-<pid>-<random>` (one being unpacked, or being deleted). A temporary name is never
//! taken for a real one, and the pid in it tells whether its owner is still alive, so a
//! folder left by a killed command is recognised and removed ([`Snapshots::clean_stale`]).

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Prefix of temporary folder names: `tmp-<pid>-<random hex>`.
const TMP_PREFIX: &str = "tmp-";

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

/// A snapshot being unpacked: `fs()` is the empty folder to unpack into.
#[derive(Debug)]
pub struct PreparedSnapshot {
    dir: PathBuf,
}

impl PreparedSnapshot {
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

/// What [`Snapshots::clean_stale`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleReport {
    pub dirs: u64,
    pub bytes: u64,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots, SnapshotError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err(root))?;
        Ok(Snapshots {
            root: root.to_owned(),
        })
    }
    /// The tree of a committed snapshot.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex()).join("fs")
    }
    pub fn exists(&self, chain_id: &Digest) -> bool {
        fs::symlink_metadata(self.path(chain_id)).is_ok_and(|m| m.is_dir())
    }
    pub fn prepare(&self) -> Result<PreparedSnapshot, SnapshotError> {
        let dir = self.create_tmp_dir()?;
        let fs_dir = dir.join("fs");
        // The tree's root: unpack sets its final mode and owner from the layer.
        if let Err(e) = fs::DirBuilder::new().mode(0o755).create(&fs_dir) {
            let _ = fs::remove_dir(&dir);
            return Err(SnapshotError::Io {
                path: fs_dir,
                source: e,
            });
        }
        Ok(PreparedSnapshot { dir })
    }
    /// Rename into place; if another pull committed the same chain ID first, keep theirs.
    pub fn commit(
        &self,
        prepared: PreparedSnapshot,
        chain_id: &Digest,
    ) -> Result<PathBuf, SnapshotError> {
        let target = self.root.join(chain_id.hex());
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &prepared.dir,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(self.path(chain_id)),
            Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NOTEMPTY) => {
                // A concurrent pull won: both trees come from the same verified diff ID.
                remove_tree(&prepared.dir)?;
                Ok(self.path(chain_id))
            }
            Err(e) => Err(SnapshotError::Io {
                path: target,
                source: e.into(),
            }),
        }
    }
    /// Delete a prepared snapshot that failed.
    pub fn abort(&self, prepared: PreparedSnapshot) -> Result<(), SnapshotError> {
        remove_tree(&prepared.dir)
    }
    /// Every committed snapshot; temporary folders and foreign names are ignored.
    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        let mut chain_ids = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let Some(chain_id) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                chain_ids.push(chain_id);
            }
        }
        chain_ids.sort();
        Ok(chain_ids)
    }
    /// Delete a committed snapshot (missing is fine). It is first renamed to a temporary
    /// name, so a crash half-way never leaves a partial tree under its real name.
    pub fn remove(&self, chain_id: &Digest) -> Result<(), SnapshotError> {
        let dir = self.root.join(chain_id.hex());
        let trash = self.tmp_name();
        match fs::rename(&dir, &trash) {
            Ok(()) => remove_tree(&trash),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SnapshotError::Io {
                path: dir,
                source: e,
            }),
        }
    }
    /// Bytes of file content in a committed snapshot (apparent sizes).
    pub fn size(&self, chain_id: &Digest) -> u64 {
        tree_size(&self.root.join(chain_id.hex()))
    }
    /// Remove `tmp-<pid>-*` folders whose process is gone: unpacks or removals a killed
    /// command left. Call it only with the store's exclusive lock held.
    pub fn clean_stale(&self) -> Result<StaleReport, SnapshotError> {
        let mut report = StaleReport::default();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(tmp_pid) else {
                continue;
            };
            if pid_alive(pid) {
                continue;
            }
            let path = entry.path();
            report.bytes += tree_size(&path);
            remove_tree(&path)?;
            report.dirs += 1;
        }
        Ok(report)
    }

    fn tmp_name(&self) -> PathBuf {
        self.root.join(format!(
            "{TMP_PREFIX}{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    fn create_tmp_dir(&self) -> Result<PathBuf, SnapshotError> {
        loop {
            let dir = self.tmp_name();
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(SnapshotError::Io {
                        path: dir,
                        source: e,
                    })
                }
            }
        }
    }
}

/// The pid in a temporary name `tmp-<pid>-<random>`, or None for any other name.
fn tmp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TMP_PREFIX)?;
    let (pid, random) = rest.split_once('-')?;
    if random.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// True while a process `pid` exists. A reused pid keeps a stale folder until that process
/// exits too, which is safe (it is only kept longer).
pub(crate) fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether `name` is a temporary name whose owner is gone (shared with the store's records).
pub(crate) fn is_stale_tmp(name: &str) -> bool {
    tmp_pid(name).is_some_and(|pid| !pid_alive(pid))
}

/// Delete `path` and everything below it without following symlinks, whatever its depth
/// (an image can chain folders deeper than the fd limit). Folders an image made
/// unreadable (mode 000) are opened up first.
pub(crate) fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    crate::unpack::remove_tree(path).map_err(io_err(path))
}

/// Apparent bytes of the regular files under `path` (symlinks not followed).
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| tree_size(&entry.path()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn chain(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn names(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn prepare_commit_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(&dir.path().join("snapshots")).unwrap();
        let id = chain(1);
        assert!(!snapshots.exists(&id));
        let prepared = snapshots.prepare().unwrap();
        let tmp_name = prepared
            .dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(tmp_name.starts_with(&format!("tmp-{}-", std::process::id())));
        fs::write(prepared.fs().join("hello"), b"hi").unwrap();
        // Not visible while being prepared.
        assert!(snapshots.list().unwrap().is_empty());
        assert!(!snapshots.exists(&id));

        let path = snapshots.commit(prepared, &id).unwrap();
        assert_eq!(path, snapshots.path(&id));
        assert_eq!(fs::read(path.join("hello")).unwrap(), b"hi");
        assert!(snapshots.exists(&id));
        assert_eq!(snapshots.list().unwrap(), vec![id.clone()]);
        assert_eq!(snapshots.size(&id), 2);
        assert_eq!(names(&snapshots.root), vec![id.hex().to_owned()]);
        let mode = fs::metadata(snapshots.root.join(id.hex())).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn abort_removes_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let prepared = snapshots.prepare().unwrap();
        fs::create_dir_all(prepared.fs().join("a/b")).unwrap();
        snapshots.abort(prepared).unwrap();
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn concurrent_commit_of_same_chain_id_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let id = chain(2);
        let first = snapshots.prepare().unwrap();
        let second = snapshots.prepare().unwrap();
        fs::write(first.fs().join("who"), b"first").unwrap();
        fs::write(second.fs().join("who"), b"second").unwrap();
        let a = snapshots.commit(first, &id).unwrap();
        let b = snapshots.commit(second, &id).unwrap();
        assert_eq!(a, b);
        assert_eq!(fs::read(a.join("who")).unwrap(), b"first");
        // The loser's temporary folder is gone.
        assert_eq!(names(dir.path()), vec![id.hex().to_owned()]);
    }

    #[test]
    fn commits_from_many_threads_end_with_one_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let id = chain(3);
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let snapshots = snapshots.clone();
                let id = id.clone();
                std::thread::spawn(move || {
                    let prepared = snapshots.prepare().unwrap();
                    fs::write(prepared.fs().join("n"), format!("{i}")).unwrap();
                    snapshots.commit(prepared, &id).unwrap()
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), snapshots.path(&id));
        }
        assert_eq!(names(dir.path()), vec![id.hex().to_owned()]);
        assert!(
            fs::read_to_string(snapshots.path(&id).join("n"))
                .unwrap()
                .parse::<u32>()
                .unwrap()
                < 8
        );
    }

    #[test]
    fn remove_deletes_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("precious"), b"keep").unwrap();
        let snapshots = Snapshots::open(&dir.path().join("snapshots")).unwrap();
        let id = chain(4);
        let prepared = snapshots.prepare().unwrap();
        std::os::unix::fs::symlink(&outside, prepared.fs().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("precious"), prepared.fs().join("file-link"))
            .unwrap();
        let locked = prepared.fs().join("locked");
        fs::create_dir_all(locked.join("inner")).unwrap();
        fs::write(locked.join("inner/f"), b"x").unwrap();
        fs::set_permissions(locked.join("inner"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        // An overlay whiteout: a 0:0 character device (needs CAP_MKNOD; root in CI).
        let whiteout = prepared.fs().join("gone");
        let _ = rustix::fs::mknodat(
            rustix::fs::CWD,
            &whiteout,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        );
        snapshots.commit(prepared, &id).unwrap();

        snapshots.remove(&id).unwrap();
        assert!(!snapshots.exists(&id));
        assert!(names(&snapshots.root).is_empty());
        assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep");
        // Removing again is fine.
        snapshots.remove(&id).unwrap();
    }

    #[test]
    fn stale_tmp_dir_of_dead_pid_is_cleaned_and_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        // A pid that exited: a child we waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!("tmp-{dead}-0123abcd"));
        fs::create_dir_all(stale.join("fs/usr")).unwrap();
        fs::write(stale.join("fs/usr/f"), b"12345").unwrap();
        let mine = snapshots.prepare().unwrap();
        let live = dir.path().join("tmp-1-00ff");
        fs::create_dir(&live).unwrap();
        let committed = chain(5);
        let prepared = snapshots.prepare().unwrap();
        snapshots.commit(prepared, &committed).unwrap();

        let report = snapshots.clean_stale().unwrap();
        assert_eq!(report, StaleReport { dirs: 1, bytes: 5 });
        assert!(!stale.exists());
        assert!(mine.fs().exists());
        assert!(live.exists());
        assert!(snapshots.exists(&committed));
    }

    #[test]
    fn tmp_names_parse() {
        assert_eq!(tmp_pid("tmp-123-abc"), Some(123));
        assert_eq!(tmp_pid("tmp-123-"), None);
        assert_eq!(tmp_pid("tmp--abc"), None);
        assert_eq!(tmp_pid("tmp-12x-abc"), None);
        assert_eq!(tmp_pid(&"a".repeat(64)), None);
    }
}
