//! `-u`/`USER` resolution with runc's (docker's) rules, against the image's own
//! /etc/passwd and /etc/group read inside the rootfs (never the host's, never blocking,
//! never more than 1 MiB).

use super::root::{ReadFile, Root};
use super::SpecError;
use crate::sandbox::userns::RANGE_SIZE;

/// Largest passwd or group file read.
pub(crate) const MAX_ID_FILE: u64 = 1 << 20;
/// Largest id the kernel accepts (`(uid_t)-1` means "no change").
const MAX_ID: u64 = 4_294_967_294;

/// The process identity of a container, as runc's `ExecUser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the supplementary groups.
    pub additional_gids: Vec<u32>,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolve `spec` (`name`, `uid`, `uid:gid`, `name:group`, ...; empty = root) against the
/// image's passwd and group files.
pub(crate) fn resolve(root: &Root, spec: &str) -> Result<ExecUser, SpecError> {
    let passwd = read_id_file(root, "/etc/passwd")?;
    let group = read_id_file(root, "/etc/group")?;
    resolve_in(spec, passwd.as_deref(), group.as_deref())
}

fn read_id_file(root: &Root, path: &str) -> Result<Option<Vec<u8>>, SpecError> {
    let found = root
        .read_file(path, MAX_ID_FILE)
        .map_err(|source| SpecError::Io {
            context: format!("reading {path} in the image"),
            source,
        })?;
    match found {
        ReadFile::Content(content) => Ok(Some(content)),
        ReadFile::Missing => Ok(None),
        ReadFile::NotRegular => Err(SpecError::Invalid(format!(
            "{path} in the image is not a regular file: fix the image"
        ))),
        ReadFile::TooBig(size) => Err(SpecError::Invalid(format!(
            "{path} in the image is {size} bytes, over the {MAX_ID_FILE}-byte limit: fix the image"
        ))),
    }
}

/// A user or group argument read as an id: `Ok(None)` for a name, an error for a number
/// no kernel accepts (negative, over 4294967294).
fn parse_id(arg: &str, what: &str) -> Result<Option<u32>, SpecError> {
    let digits = arg.strip_prefix('-').unwrap_or(arg);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let out_of_range = || {
        SpecError::Invalid(format!(
            "{what} {arg} is out of range: ids go from 0 to {MAX_ID}"
        ))
    };
    if arg.starts_with('-') {
        return Err(out_of_range());
    }
    match digits.parse::<u64>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id as u32)),
        _ => Err(out_of_range()),
    }
}

fn resolve_in(
    spec: &str,
    passwd: Option<&[u8]>,
    group: Option<&[u8]>,
) -> Result<ExecUser, SpecError> {
    if spec.contains('\0') {
        return Err(SpecError::Invalid(
            "the user name holds a NUL byte".to_owned(),
        ));
    }
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let uid_arg = parse_id(user_arg, "uid")?;

    let users = passwd.map(parse_passwd).unwrap_or_default();
    let matched = users
        .iter()
        .find(|u| u.name == user_arg || Some(u.uid) == uid_arg);
    let (uid, mut gid, home, name) = match (matched, uid_arg) {
        (Some(u), _) => (u.uid, u.gid, u.home.clone(), Some(u.name.as_str())),
        // runc's default ExecUser (docker): HOME=/ for any user without an entry, root too.
        (None, Some(uid)) => (uid, 0, "/".to_owned(), None),
        (None, None) => {
            return Err(SpecError::UnknownUser(user_arg.to_owned()));
        }
    };
    let home = if home.is_empty() {
        "/".to_owned()
    } else {
        home
    };

    let groups = group.map(parse_group).unwrap_or_default();
    let mut supplementary = Vec::new();
    if let Some(group_arg) = group_arg {
        let gid_arg = parse_id(group_arg, "gid")?;
        let found = groups
            .iter()
            .find(|g| g.name == group_arg || Some(g.gid) == gid_arg);
        gid = match (found, gid_arg) {
            (Some(g), _) => g.gid,
            (None, Some(gid)) => gid,
            (None, None) => return Err(SpecError::UnknownGroup(group_arg.to_owned())),
        };
    } else if let Some(name) = name {
        // The implicit form: every group listing the user (runc's Sgids).
        supplementary.extend(
            groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid),
        );
    }

    for (what, id) in [("uid", uid), ("gid", gid)] {
        if id >= RANGE_SIZE {
            return Err(SpecError::Invalid(format!(
                "{what} {id} is outside the container's id range (0 to {}): use an id below {RANGE_SIZE}",
                RANGE_SIZE - 1
            )));
        }
    }
    let mut additional_gids = vec![gid];
    for id in supplementary {
        if id >= RANGE_SIZE {
            tracing::warn!(
                gid = id,
                "supplementary group outside the container's id range: left out"
            );
        } else if !additional_gids.contains(&id) {
            additional_gids.push(id);
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Lines of an /etc file: comments and blank lines skipped, fields split on ':'.
fn records(content: &[u8]) -> impl Iterator<Item = Vec<String>> + '_ {
    content
        .split(|b| *b == b'\n')
        .map(|line| String::from_utf8_lossy(line).trim().to_owned())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').map(str::to_owned).collect())
}

/// A decimal id field; lines with anything else are skipped rather than read as 0.
fn id_field(field: Option<&String>) -> Option<u32> {
    let field = field?;
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

fn parse_passwd(content: &[u8]) -> Vec<PasswdEntry> {
    records(content)
        .filter_map(|fields| {
            Some(PasswdEntry {
                name: fields.first()?.clone(),
                uid: id_field(fields.get(2))?,
                gid: id_field(fields.get(3))?,
                home: fields.get(5).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(content: &[u8]) -> Vec<GroupEntry> {
    records(content)
        .filter_map(|fields| {
            Some(GroupEntry {
                name: fields.first()?.clone(),
                gid: id_field(fields.get(2))?,
                members: fields
                    .get(3)
                    .map(|list| {
                        list.split(',')
                            .map(|m| m.trim().to_owned())
                            .filter(|m| !m.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
broken:x:abc:0::/nowhere:/bin/sh
big:x:70000:70000::/home/big:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,alice
alice:x:1000:
bob:x:1001:
audio:x:29:alice, bob
staff:x:50:bob
huge:x:80000:alice
";

    fn resolve(spec: &str) -> Result<ExecUser, SpecError> {
        resolve_in(spec, Some(PASSWD.as_bytes()), Some(GROUP.as_bytes()))
    }

    fn user(uid: u32, gid: u32, gids: &[u32], home: &str) -> ExecUser {
        ExecUser {
            uid,
            gid,
            additional_gids: gids.to_vec(),
            home: home.to_owned(),
        }
    }

    #[test]
    fn default_is_root_with_its_groups_and_home() {
        assert_eq!(resolve("").unwrap(), user(0, 0, &[0, 10], "/root"));
        assert_eq!(resolve("root").unwrap(), user(0, 0, &[0, 10], "/root"));
    }

    #[test]
    fn by_name_gets_supplementary_groups() {
        // 80000 is outside the container's map: left out.
        assert_eq!(
            resolve("alice").unwrap(),
            user(1000, 1000, &[1000, 10, 29], "/home/alice")
        );
        assert_eq!(
            resolve("bob").unwrap(),
            user(1001, 1001, &[1001, 29, 50], "/home/bob")
        );
    }

    #[test]
    fn by_uid_matches_the_passwd_entry() {
        assert_eq!(
            resolve("1000").unwrap(),
            user(1000, 1000, &[1000, 10, 29], "/home/alice")
        );
    }

    #[test]
    fn numeric_uid_not_in_passwd_is_allowed() {
        assert_eq!(resolve("4242").unwrap(), user(4242, 0, &[0], "/"));
        assert_eq!(
            resolve("4242:4343").unwrap(),
            user(4242, 4343, &[4343], "/")
        );
    }

    #[test]
    fn explicit_group_replaces_the_supplementary_ones() {
        assert_eq!(
            resolve("alice:staff").unwrap(),
            user(1000, 50, &[50], "/home/alice")
        );
        assert_eq!(
            resolve("1000:29").unwrap(),
            user(1000, 29, &[29], "/home/alice")
        );
        assert_eq!(
            resolve("alice:7").unwrap(),
            user(1000, 7, &[7], "/home/alice")
        );
        assert_eq!(resolve("0:wheel").unwrap(), user(0, 10, &[10], "/root"));
        // "name:" is the name alone.
        assert_eq!(resolve("alice:").unwrap(), resolve("alice").unwrap());
    }

    #[test]
    fn unknown_names_are_errors_with_docker_messages() {
        let err = resolve("mallory").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user mallory: no matching entries in passwd file"
        );
        let err = resolve("alice:nogroup").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        // With no passwd file at all, names are unknown but ids work.
        assert!(matches!(
            resolve_in("alice", None, None),
            Err(SpecError::UnknownUser(_))
        ));
        // docker (runc's default ExecUser): HOME=/ without a passwd entry, even for root.
        assert_eq!(resolve_in("", None, None).unwrap(), user(0, 0, &[0], "/"));
    }

    #[test]
    fn ids_out_of_kernel_range_are_refused() {
        for spec in [
            "4294967295",
            "-1",
            "99999999999999999999",
            "0:-1",
            "0:4294967295",
        ] {
            let err = resolve(spec).unwrap_err();
            assert!(err.to_string().contains("out of range"), "{spec}: {err}");
        }
    }

    #[test]
    fn ids_outside_the_container_map_are_refused() {
        for spec in ["65536", "4294967294", "0:65536", "big"] {
            let err = resolve(spec).unwrap_err();
            assert!(
                err.to_string().contains("outside the container's id range"),
                "{spec}: {err}"
            );
        }
        assert_eq!(resolve("65535").unwrap().uid, 65535);
    }

    #[test]
    fn malformed_lines_are_skipped_not_read_as_root() {
        assert!(matches!(resolve("broken"), Err(SpecError::UnknownUser(_))));
    }

    fn rootfs_with(setup: impl FnOnce(&Path)) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        setup(&rootfs);
        let root = Root::open(&rootfs, 0, 0).unwrap();
        (dir, root)
    }

    #[test]
    fn files_are_read_from_the_rootfs() {
        let (_dir, root) = rootfs_with(|rootfs| {
            std::fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
            std::fs::write(rootfs.join("etc/group"), GROUP).unwrap();
        });
        assert_eq!(
            super::resolve(&root, "alice").unwrap(),
            user(1000, 1000, &[1000, 10, 29], "/home/alice")
        );
    }

    #[test]
    fn passwd_symlinked_outside_the_root_is_not_followed() {
        // A shadow-like file next to the rootfs, reachable by `..` or an absolute link
        // from the host's point of view.
        let (dir, root) = rootfs_with(|rootfs| {
            let outside = rootfs.parent().unwrap().join("shadow");
            std::fs::write(&outside, "secret:x:0:0::/secret:/bin/sh\n").unwrap();
            symlink(&outside, rootfs.join("etc/passwd")).unwrap();
            symlink("../../../../../../../../shadow", rootfs.join("etc/group")).unwrap();
        });
        assert!(dir.path().join("shadow").exists());
        assert!(matches!(
            super::resolve(&root, "secret"),
            Err(SpecError::UnknownUser(_))
        ));
        assert_eq!(
            super::resolve(&root, "").unwrap().home,
            "/",
            "no passwd entry read"
        );
    }

    #[test]
    fn passwd_symlinked_to_itself_through_dotdot_is_missing() {
        let (_dir, root) = rootfs_with(|rootfs| {
            symlink("../../../../etc/passwd", rootfs.join("etc/passwd")).unwrap();
        });
        assert!(matches!(
            super::resolve(&root, "alice"),
            Err(SpecError::UnknownUser(_))
        ));
        assert_eq!(super::resolve(&root, "0").unwrap().uid, 0);
    }

    #[test]
    fn passwd_symlinked_to_dev_zero_is_refused() {
        // /dev/zero resolves to the rootfs's own /dev/zero: here a character device made
        // in the temp root (the host's is never reached).
        let (_dir, root) = rootfs_with(|rootfs| {
            std::fs::create_dir(rootfs.join("dev")).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                rootfs.join("dev/zero"),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o666),
                rustix::fs::makedev(1, 5),
            )
            .unwrap();
            symlink("/dev/zero", rootfs.join("etc/passwd")).unwrap();
        });
        let err = super::resolve(&root, "alice").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn passwd_fifo_does_not_block() {
        let (_dir, root) = rootfs_with(|rootfs| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                rootfs.join("etc/passwd"),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap();
        });
        let err = super::resolve(&root, "").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn huge_passwd_is_refused() {
        let (_dir, root) = rootfs_with(|rootfs| {
            let mut content = PASSWD.to_owned();
            while content.len() <= 2 << 20 {
                content.push_str("filler:x:2000:2000::/:/bin/sh\n");
            }
            std::fs::write(rootfs.join("etc/passwd"), content).unwrap();
        });
        let err = super::resolve(&root, "alice").unwrap_err();
        assert!(
            err.to_string().contains("over the 1048576-byte limit"),
            "{err}"
        );
    }

    #[test]
    fn passwd_folder_is_refused() {
        let (_dir, root) = rootfs_with(|rootfs| {
            std::fs::create_dir(rootfs.join("etc/passwd")).unwrap();
        });
        assert!(super::resolve(&root, "").is_err());
    }
}
