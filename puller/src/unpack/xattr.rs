//! Which extended attributes of an image reach the disk, and in what form.

/// What to do with one xattr of an entry.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Write this (name, value); the value may have been rewritten.
    Keep(Vec<u8>),
    /// Leave it out and tell the user why.
    Drop(String),
    /// The layer must be refused: the xattr would change what overlayfs shows.
    Refuse,
}

const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;
const XATTR_CAPS_SZ_2: usize = 20;
const XATTR_CAPS_SZ_3: usize = 24;

/// Decide the fate of xattr `name` = `value` for an image stored with ids shifted by
/// `id_base`. `path` is only used in messages.
pub(super) fn vet(path: &str, name: &[u8], value: &[u8], id_base: u32) -> Verdict {
    let shown = String::from_utf8_lossy(name);
    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
        return Verdict::Refuse;
    }
    if name.starts_with(b"user.") {
        return Verdict::Keep(value.to_vec());
    }
    if name == b"security.capability" {
        return capability(path, value, id_base);
    }
    Verdict::Drop(format!(
        "xattr {shown} of {path} dropped: only user.* and security.capability are kept"
    ))
}

/// Rewrite a v2/v3 file capability as v3 with rootid `id_base` (+ the image's own v3 rootid
/// when it names a container id), so it is effective only for the image's root as mapped
/// into a container, never for host root.
fn capability(path: &str, value: &[u8], id_base: u32) -> Verdict {
    let word = |i: usize| u32::from_le_bytes([value[i], value[i + 1], value[i + 2], value[i + 3]]);
    let malformed = || Verdict::Drop(format!("malformed security.capability of {path} dropped"));
    if value.len() < 4 {
        return malformed();
    }
    let magic = word(0);
    let rootid = match (magic & VFS_CAP_REVISION_MASK, value.len()) {
        (VFS_CAP_REVISION_2, XATTR_CAPS_SZ_2) => 0,
        (VFS_CAP_REVISION_3, XATTR_CAPS_SZ_3) => word(20),
        (VFS_CAP_REVISION_2 | VFS_CAP_REVISION_3, _) => return malformed(),
        _ => {
            return Verdict::Drop(format!(
                "security.capability of {path} dropped: only v2 and v3 capabilities are supported"
            ))
        }
    };
    if magic & !VFS_CAP_REVISION_MASK & !VFS_CAP_FLAGS_EFFECTIVE != 0 {
        return malformed();
    }
    if id_base == 0 {
        return Verdict::Drop(format!(
            "security.capability of {path} dropped: without an id shift it would be effective for host root"
        ));
    }
    if rootid >= 65536 {
        return Verdict::Drop(format!(
            "security.capability of {path} dropped: its rootid {rootid} is not a container id"
        ));
    }
    let Some(rootid) = id_base.checked_add(rootid).filter(|id| *id != u32::MAX) else {
        return malformed();
    };
    let mut out = Vec::with_capacity(XATTR_CAPS_SZ_3);
    let flags = magic & VFS_CAP_FLAGS_EFFECTIVE;
    out.extend_from_slice(&(VFS_CAP_REVISION_3 | flags).to_le_bytes());
    out.extend_from_slice(&value[4..XATTR_CAPS_SZ_2]);
    out.extend_from_slice(&rootid.to_le_bytes());
    Verdict::Keep(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(effective: bool) -> Vec<u8> {
        let mut v = (VFS_CAP_REVISION_2 | u32::from(effective))
            .to_le_bytes()
            .to_vec();
        v.extend_from_slice(&[0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn capability_v2_becomes_v3_with_rootid_base() {
        let Verdict::Keep(out) = vet("bin/ping", b"security.capability", &v2(true), 1 << 31) else {
            panic!("dropped")
        };
        assert_eq!(out.len(), 24);
        assert_eq!(&out[..4], &(VFS_CAP_REVISION_3 | 1).to_le_bytes());
        assert_eq!(&out[4..20], &v2(true)[4..20]);
        assert_eq!(&out[20..], &(1u32 << 31).to_le_bytes());
    }

    #[test]
    fn capability_v3_rootid_is_shifted() {
        let mut v3 = v2(false);
        v3[3] = 0x03;
        v3.extend_from_slice(&1000u32.to_le_bytes());
        let Verdict::Keep(out) = vet("x", b"security.capability", &v3, 100_000) else {
            panic!("dropped")
        };
        assert_eq!(&out[20..], &101_000u32.to_le_bytes());
        v3[20..].copy_from_slice(&70_000u32.to_le_bytes());
        assert!(matches!(
            vet("x", b"security.capability", &v3, 100_000),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn capability_dropped_without_base_or_malformed() {
        assert!(matches!(
            vet("x", b"security.capability", &v2(true), 0),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            vet("x", b"security.capability", &v2(true)[..12], 1),
            Verdict::Drop(_)
        ));
        let mut v1 = v2(true);
        v1[3] = 0x01;
        assert!(matches!(
            vet("x", b"security.capability", &v1[..12], 1),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn overlay_xattrs_refused_others_filtered() {
        assert_eq!(
            vet("x", b"trusted.overlay.opaque", b"y", 1),
            Verdict::Refuse
        );
        assert_eq!(vet("x", b"user.overlay.redirect", b"/", 1), Verdict::Refuse);
        assert_eq!(
            vet("x", b"user.mime", b"a", 1),
            Verdict::Keep(b"a".to_vec())
        );
        assert!(matches!(
            vet("x", b"trusted.foo", b"a", 1),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            vet("x", b"security.selinux", b"a", 1),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            vet("x", b"system.posix_acl_access", b"a", 1),
            Verdict::Drop(_)
        ));
    }
}
