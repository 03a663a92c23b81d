//! Finding the command before the container starts, as runc's exec.LookPath would inside
//! it, so that `farm run` can exit 127 (not found) or 126 (not executable) as docker.

use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::runtime::Spec;
use rustix::fs::{self as rfs, FileType, OFlags};
use rustix::io::Errno;

use super::process::lookup;
use super::root::{clean, is_under, Root};
use super::SpecError;

/// What one candidate path is.
enum Candidate {
    Executable,
    Missing,
    Directory,
    NotExecutable,
    /// Under a mount: only the running container can tell.
    Unknown,
}

/// Check that `spec`'s args[0] names an executable file inside `rootfs`: a path with a
/// `/` is taken as is (relative to the cwd), a bare name is searched in the spec's PATH.
/// Mode bits are checked, not access(2): the image's files belong to shifted ids on the
/// host. Paths under one of the spec's mounts are not checked (they are not in the
/// rootfs yet).
pub fn check_executable(rootfs: &Path, spec: &Spec) -> Result<(), SpecError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("the spec has no process".to_owned()))?;
    let command = process
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or(SpecError::NoCommand)?
        .clone();
    let cwd = process.cwd().to_str().unwrap_or("/").to_owned();
    let mounts: Vec<String> = spec
        .mounts()
        .iter()
        .flatten()
        .filter_map(|m| m.destination().to_str().map(str::to_owned))
        .collect();
    let root = Root::open(rootfs, 0, 0).map_err(|source| SpecError::Io {
        context: format!("opening the root filesystem {}", rootfs.display()),
        source,
    })?;
    let not_found = |reason: String| SpecError::NotFound {
        command: command.clone(),
        reason,
    };
    let not_executable = |reason: &str| SpecError::NotExecutable {
        command: command.clone(),
        reason: reason.to_owned(),
    };

    if command.contains('/') {
        let path = if command.starts_with('/') {
            command.clone()
        } else {
            format!("{cwd}/{command}")
        };
        return match candidate(&root, &path, &mounts)? {
            Candidate::Executable | Candidate::Unknown => Ok(()),
            Candidate::Missing => Err(not_found(format!(
                "stat {command}: no such file or directory"
            ))),
            Candidate::Directory => Err(not_executable("is a directory")),
            Candidate::NotExecutable => Err(not_executable("permission denied")),
        };
    }

    let env = process.env().clone().unwrap_or_default();
    let path_var = lookup(&env, "PATH").unwrap_or("");
    let mut unknown = false;
    // Go's filepath.SplitList: an empty PATH has no entries; an empty entry is ".".
    let dirs = if path_var.is_empty() {
        Vec::new()
    } else {
        path_var.split(':').collect()
    };
    for dir in dirs {
        let dir = if dir.is_empty() { "." } else { dir };
        let path = if dir.starts_with('/') {
            format!("{dir}/{command}")
        } else {
            format!("{cwd}/{dir}/{command}")
        };
        match candidate(&root, &path, &mounts)? {
            Candidate::Executable => return Ok(()),
            Candidate::Unknown => unknown = true,
            // exec.LookPath skips what it cannot run and goes on.
            Candidate::Missing | Candidate::Directory | Candidate::NotExecutable => {}
        }
    }
    if unknown {
        Ok(())
    } else {
        Err(not_found("executable file not found in $PATH".to_owned()))
    }
}

fn candidate(root: &Root, path: &str, mounts: &[String]) -> Result<Candidate, SpecError> {
    let Some(path) = clean(path) else {
        return Ok(Candidate::Missing);
    };
    let under_mount = |p: &str| mounts.iter().any(|m| is_under(p, m));
    if under_mount(&path) {
        return Ok(Candidate::Unknown);
    }
    let fd = match root.open_at(&path, OFlags::PATH | OFlags::CLOEXEC) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::NAMETOOLONG) => {
            return Ok(Candidate::Missing)
        }
        Err(Errno::ACCESS) => return Ok(Candidate::NotExecutable),
        Err(e) => {
            return Err(SpecError::Io {
                context: format!("looking up {path} in the root filesystem"),
                source: e.into(),
            })
        }
    };
    // Followed through symlinks inside the root: it may have landed under a mount.
    if let Ok(resolved) = root.path_of(fd.as_fd()) {
        if under_mount(&resolved) {
            return Ok(Candidate::Unknown);
        }
    }
    let stat = rfs::fstat(&fd).map_err(|e| SpecError::Io {
        context: format!("looking up {path} in the root filesystem"),
        source: e.into(),
    })?;
    Ok(match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => Candidate::Directory,
        _ if stat.st_mode & 0o111 == 0 => Candidate::NotExecutable,
        FileType::RegularFile => Candidate::Executable,
        _ => Candidate::NotExecutable,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use oci_spec::runtime::{Mount, ProcessBuilder};

    use super::*;

    fn spec(args: &[&str], path: &str, cwd: &str, mounts: &[&str]) -> Spec {
        let process = ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec![format!("PATH={path}")])
            .cwd(cwd)
            .build()
            .unwrap();
        let mut spec = Spec::default();
        spec.set_process(Some(process));
        spec.set_mounts(Some(
            mounts
                .iter()
                .map(|d| {
                    let mut m = Mount::default();
                    m.set_destination(d.into());
                    m
                })
                .collect(),
        ));
        spec
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["bin", "usr/bin", "app", "noexec", "home"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let file = |p: &str, mode: u32| {
            std::fs::write(r.join(p), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(r.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        file("bin/busybox", 0o755);
        file("usr/bin/only-owner", 0o700);
        file("app/run.sh", 0o755);
        file("app/data.txt", 0o644);
        file("noexec/tool", 0o644);
        symlink("/bin/busybox", r.join("bin/sh")).unwrap();
        symlink("../../../../../../bin/busybox", r.join("usr/bin/escape")).unwrap();
        symlink("/does/not/exist", r.join("bin/dangling")).unwrap();
        dir
    }

    const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

    fn check(args: &[&str], path: &str, cwd: &str, mounts: &[&str]) -> Result<(), SpecError> {
        let dir = rootfs();
        check_executable(dir.path(), &spec(args, path, cwd, mounts))
    }

    #[test]
    fn found_in_path_and_by_path() {
        check(&["sh", "-c", "true"], PATH, "/", &[]).unwrap();
        check(&["only-owner"], PATH, "/", &[]).unwrap();
        check(&["escape"], PATH, "/", &[]).unwrap();
        check(&["/app/run.sh"], PATH, "/", &[]).unwrap();
        check(&["./run.sh"], PATH, "/app", &[]).unwrap();
        check(&["app/run.sh"], PATH, "/", &[]).unwrap();
        check(&["run.sh"], "/bin:relative/../app", "/", &[]).unwrap();
    }

    #[test]
    fn not_found_is_127_material() {
        for (args, path) in [
            (&["nope"][..], PATH),
            (&["dangling"][..], PATH),
            (&["data.txt"][..], "/app"),
            (&["app"][..], "/"),
            (&["sh"][..], ""),
        ] {
            let err = check(args, path, "/", &[]).unwrap_err();
            assert!(matches!(err, SpecError::NotFound { .. }), "{args:?}: {err}");
        }
        let err = check(&["nope"], PATH, "/", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        let err = check(&["/app/missing"], PATH, "/", &[]).unwrap_err();
        assert!(matches!(err, SpecError::NotFound { .. }));
        assert_eq!(
            err.to_string(),
            "exec: \"/app/missing\": stat /app/missing: no such file or directory"
        );
    }

    #[test]
    fn not_executable_is_126_material() {
        let err = check(&["/app/data.txt"], PATH, "/", &[]).unwrap_err();
        assert!(matches!(err, SpecError::NotExecutable { .. }));
        assert_eq!(
            err.to_string(),
            "exec: \"/app/data.txt\": permission denied"
        );
        let err = check(&["/app"], PATH, "/", &[]).unwrap_err();
        assert!(matches!(err, SpecError::NotExecutable { .. }));
        assert_eq!(err.to_string(), "exec: \"/app\": is a directory");
        let err = check(&["./tool"], PATH, "/noexec", &[]).unwrap_err();
        assert!(matches!(err, SpecError::NotExecutable { .. }));
    }

    #[test]
    fn paths_under_mounts_are_left_to_the_container() {
        check(&["/tools/run"], PATH, "/", &["/tools"]).unwrap();
        check(&["/proc/self/exe"], PATH, "/", &["/proc"]).unwrap();
        check(&["tool"], "/opt/bin:/bin", "/", &["/opt/bin"]).unwrap();
        // Not found anywhere checkable and nothing under a mount: still an error.
        assert!(check(&["tool"], "/opt/bin:/bin", "/", &["/elsewhere"]).is_err());
    }
}
