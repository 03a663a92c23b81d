//! The fallback for kernels without idmapped mounts (or overlayfs on idmapped layers):
//! a copy of each snapshot with every owner shifted from the store's ids (`2^31 + n`) to
//! the container's host range (`base + n`). Slow and disk-hungry, hence the warning.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::userns::{IdRange, STORE_ID_BASE};

/// Container id `n` of a stored id, or `None` outside the store's range.
fn shift(stored: u32, base: u32, size: u32) -> u32 {
    match stored.checked_sub(STORE_ID_BASE) {
        Some(n) if n < size => base + n,
        // Not an id the puller writes: leave it unmapped (nobody in the container).
        _ => 65_534,
    }
}

/// Copy `from` (a snapshot tree) to `to` (which must not exist), shifting owners.
/// Hard links inside the tree stay hard links.
pub fn copy(from: &Path, to: &Path, ids: &IdRange) -> io::Result<()> {
    let mut links: std::collections::HashMap<(u64, u64), PathBuf> = Default::default();
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(from.to_owned(), to.to_owned())];
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    while let Some((src, dst)) = stack.pop() {
        let meta = fs::symlink_metadata(&src)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::create_dir(&dst)?;
            for entry in fs::read_dir(&src)? {
                let entry = entry?;
                stack.push((entry.path(), dst.join(entry.file_name())));
            }
            dirs.push((dst.clone(), meta.clone()));
        } else if meta.nlink() > 1 && !kind.is_dir() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &dst)?;
                continue;
            }
            links.insert(key, dst.clone());
            copy_leaf(&src, &dst, &meta)?;
        } else {
            copy_leaf(&src, &dst, &meta)?;
        }
        finish(&src, &dst, &meta, ids, kind.is_symlink())?;
    }
    // Directory modes last: a read-only directory must still take its children.
    for (dir, meta) in dirs.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

fn copy_leaf(src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)
    } else if kind.is_file() {
        fs::copy(src, dst).map(|_| ())
    } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
        let file_type = if kind.is_fifo() {
            rustix::fs::FileType::Fifo
        } else if kind.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else {
            rustix::fs::FileType::BlockDevice
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dst,
            file_type,
            rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .map_err(io::Error::from)
    } else {
        Err(io::Error::other(format!(
            "{}: sockets cannot be part of an image",
            src.display()
        )))
    }
}

/// Owner, xattrs (security.capability's rootid shifted too) and mode of one entry.
fn finish(
    src: &Path,
    dst: &Path,
    meta: &fs::Metadata,
    ids: &IdRange,
    symlink: bool,
) -> io::Result<()> {
    std::os::unix::fs::lchown(
        dst,
        Some(shift(meta.uid(), ids.uid, ids.size)),
        Some(shift(meta.gid(), ids.gid, ids.size)),
    )?;
    if symlink {
        return Ok(());
    }
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(src, &mut names[..]).map_err(io::Error::from)?;
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(src, name, &mut value[..]).map_err(io::Error::from)?;
        let mut value = value[..len].to_vec();
        if name.as_bytes() == b"security.capability" && value.len() == 24 {
            let stored = u32::from_le_bytes(value[20..24].try_into().expect("4 bytes"));
            value[20..24].copy_from_slice(&shift(stored, ids.uid, ids.size).to_le_bytes());
        }
        rustix::fs::lsetxattr(dst, name, &value, rustix::fs::XattrFlags::empty())
            .map_err(io::Error::from)?;
    }
    if !meta.file_type().is_dir() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_move_from_the_store_range_to_the_container_range() {
        let base = STORE_ID_BASE;
        assert_eq!(shift(base, 200_000, 65_536), 200_000);
        assert_eq!(shift(base + 1000, 200_000, 65_536), 201_000);
        assert_eq!(
            shift(0, 200_000, 65_536),
            65_534,
            "host root never leaks in"
        );
    }

    #[test]
    fn copy_keeps_tree_links_modes_and_shifts_owners() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("d/e")).unwrap();
        fs::write(src.join("d/f"), b"data").unwrap();
        fs::hard_link(src.join("d/f"), src.join("g")).unwrap();
        std::os::unix::fs::symlink("d/f", src.join("s")).unwrap();
        std::os::unix::fs::lchown(
            src.join("d/f"),
            Some(STORE_ID_BASE + 5),
            Some(STORE_ID_BASE + 6),
        )
        .unwrap();
        fs::set_permissions(src.join("d"), fs::Permissions::from_mode(0o555)).unwrap();
        let ids = IdRange {
            uid: 300_000,
            gid: 400_000,
            size: 65_536,
        };
        let dst = tmp.path().join("dst");
        copy(&src, &dst, &ids).unwrap();
        let f = fs::metadata(dst.join("d/f")).unwrap();
        assert_eq!((f.uid(), f.gid()), (300_005, 400_006));
        assert_eq!(f.ino(), fs::metadata(dst.join("g")).unwrap().ino());
        assert_eq!(fs::read_link(dst.join("s")).unwrap(), Path::new("d/f"));
        assert_eq!(fs::metadata(dst.join("d")).unwrap().mode() & 0o777, 0o555);
        assert_eq!(fs::read(dst.join("g")).unwrap(), b"data");
    }
}
