//! File trees as tests compare them: the expected merged view of an image (computed from
//! the layers the test built) and the real one (read from overlay-mounted snapshots).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{sha256_digest, STORE_ID_BASE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `content` is the sha256 digest of the bytes.
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        content: String,
    },
    Symlink {
        target: String,
        uid: u32,
        gid: u32,
    },
}

impl Node {
    /// The same node with owners shifted as the store keeps them.
    pub fn shifted(&self) -> Node {
        let s = |id: u32| STORE_ID_BASE + id;
        match self.clone() {
            Node::Dir { mode, uid, gid } => Node::Dir {
                mode,
                uid: s(uid),
                gid: s(gid),
            },
            Node::File {
                mode,
                uid,
                gid,
                content,
            } => Node::File {
                mode,
                uid: s(uid),
                gid: s(gid),
                content,
            },
            Node::Symlink { target, uid, gid } => Node::Symlink {
                target,
                uid: s(uid),
                gid: s(gid),
            },
        }
    }
}

pub type Tree = BTreeMap<PathBuf, Node>;

/// Read `dir` recursively (without following symlinks) into a [`Tree`].
pub fn read_tree(dir: &Path) -> Tree {
    let mut tree = Tree::new();
    fn go(base: &Path, dir: &Path, tree: &mut Tree) {
        for entry in
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            let (uid, gid, mode) = (meta.uid(), meta.gid(), meta.mode() & 0o7777);
            let ft = meta.file_type();
            if ft.is_dir() {
                tree.insert(rel, Node::Dir { mode, uid, gid });
                go(base, &path, tree);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                tree.insert(rel, Node::Symlink { target, uid, gid });
            } else if ft.is_file() {
                let content = sha256_digest(&std::fs::read(&path).unwrap());
                tree.insert(
                    rel,
                    Node::File {
                        mode,
                        uid,
                        gid,
                        content,
                    },
                );
            } else {
                panic!(
                    "unexpected file type in merged view: {} ({:?})",
                    rel.display(),
                    ft
                );
            }
        }
    }
    go(dir, dir, &mut tree);
    tree
}

/// Overlay-mount `lower` (top first) read-only and read the merged view.
pub fn read_merged(lower_top_first: &[PathBuf]) -> Tree {
    let mnt = tempfile::Builder::new()
        .prefix("farm-e2e-merged-")
        .tempdir()
        .unwrap();
    let empty = tempfile::Builder::new()
        .prefix("farm-e2e-empty-")
        .tempdir()
        .unwrap();
    let merged = mnt.path().join("m");
    std::fs::create_dir(&merged).unwrap();
    // An empty bottom layer: overlayfs needs two lower dirs when there is no upper dir.
    let mut lowers: Vec<String> = lower_top_first
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    lowers.push(empty.path().display().to_string());
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("ro,lowerdir={}", lowers.join(":")))
        .arg(&merged)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "overlay mount of {lowers:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = std::panic::catch_unwind(|| read_tree(&merged));
    let umount = Command::new("umount")
        .arg(&merged)
        .status()
        .expect("run umount");
    assert!(umount.success(), "umount {}", merged.display());
    tree.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Assert two trees are equal, listing the differing paths.
#[track_caller]
pub fn assert_trees_eq(actual: &Tree, expected: &Tree) {
    let mut diffs = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => diffs.push(format!("missing {}: want {want:?}", path.display())),
            Some(got) if got != want => diffs.push(format!(
                "differs {}: got {got:?}, want {want:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for (path, got) in actual {
        if !expected.contains_key(path) {
            diffs.push(format!("unexpected {}: {got:?}", path.display()));
        }
    }
    assert!(
        diffs.is_empty(),
        "merged view differs from the expected tree:\n{}",
        diffs.join("\n")
    );
}
