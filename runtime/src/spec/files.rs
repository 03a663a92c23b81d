//! The container's own /etc/hostname, /etc/hosts and /etc/resolv.conf, written in its
//! files folder and bind-mounted over the image's, as docker does.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::SpecError;
use crate::options::NetworkMode;

/// Largest host file (/etc/resolv.conf, /etc/hosts) copied into a container.
pub(crate) const MAX_HOST_FILE: u64 = 64 * 1024;

/// The files, in the order they are mounted, with their names in the files folder.
pub(crate) const FILES: &[(&str, &str)] = &[
    ("hostname", "/etc/hostname"),
    ("hosts", "/etc/hosts"),
    ("resolv.conf", "/etc/resolv.conf"),
];

/// docker's /etc/hosts for a container with its own network namespace.
const HOSTS_DEFAULT: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// A hostname as sethostname(2) and /etc/hosts take it: 1 to 63 letters, digits, `-`,
/// `_` and `.`, not starting with `-` or `.` (anything else could add lines or fields to
/// /etc/hosts).
pub(crate) fn validate_hostname(hostname: &str) -> Result<(), SpecError> {
    let ok = !hostname.is_empty()
        && hostname.len() <= 63
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !hostname.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "invalid hostname {hostname:?}: use 1 to 63 letters, digits, '-', '_' and '.'"
        )))
    }
}

/// The contents of the three files.
pub(crate) struct Contents {
    pub hostname: String,
    pub hosts: String,
    pub resolv_conf: String,
}

/// What the files hold for `hostname` on `network`, given the host's /etc/hosts and
/// /etc/resolv.conf (already bounded).
pub(crate) fn contents(
    hostname: &str,
    network: NetworkMode,
    host_hosts: &str,
    host_resolv_conf: &str,
) -> Contents {
    let hosts = match network {
        NetworkMode::None | NetworkMode::Internet => {
            format!("{HOSTS_DEFAULT}127.0.0.1\t{hostname}\n")
        }
        NetworkMode::Host => {
            let mut hosts = host_hosts.to_owned();
            if !hosts.is_empty() && !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            hosts.push_str(&format!("127.0.0.1\t{hostname}\n"));
            hosts
        }
    };
    let resolv_conf = match network {
        NetworkMode::Host => host_resolv_conf.to_owned(),
        NetworkMode::None | NetworkMode::Internet => without_loopback_nameservers(host_resolv_conf),
    };
    Contents {
        hostname: format!("{hostname}\n"),
        hosts,
        resolv_conf,
    }
}

/// resolv.conf without the nameservers only the host's own network namespace reaches
/// (127.0.0.0/8, ::1), as docker filters it for a container namespace.
fn without_loopback_nameservers(resolv_conf: &str) -> String {
    let mut out = String::with_capacity(resolv_conf.len());
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        let loopback = words.next() == Some("nameserver")
            && words.next().is_some_and(|addr| {
                let addr = addr.split('%').next().unwrap_or(addr);
                addr.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
            });
        if !loopback {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Read a host file, at most [`MAX_HOST_FILE`] bytes cut at the last whole line; empty
/// when it does not exist.
pub(crate) fn read_host_file(path: &Path) -> Result<String, SpecError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(source) => {
            return Err(SpecError::Io {
                context: format!("reading {}", path.display()),
                source,
            })
        }
    };
    let mut content = Vec::new();
    file.take(MAX_HOST_FILE)
        .read_to_end(&mut content)
        .map_err(|source| SpecError::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
    if content.len() as u64 == MAX_HOST_FILE {
        let end = content
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        content.truncate(end);
    }
    Ok(String::from_utf8_lossy(&content).into_owned())
}

/// Write the files into `dir`, mode 0644, owned by the container's root.
pub(crate) fn write(dir: &Path, contents: &Contents, uid: u32, gid: u32) -> Result<(), SpecError> {
    let io_err = |path: &Path| {
        let context = format!("writing {}", path.display());
        move |source| SpecError::Io { context, source }
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    for (name, content) in [
        ("hostname", &contents.hostname),
        ("hosts", &contents.hosts),
        ("resolv.conf", &contents.resolv_conf),
    ] {
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(content.as_bytes()).map_err(io_err(&path))?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_err(&path))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["abc123def456", "web-1.example.com", "a"] {
            validate_hostname(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "evil\n1.2.3.4 bank",
            &"a".repeat(64),
            "é",
        ] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }

    const RESOLV: &str = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\nsearch example.com\noptions edns0 trust-ad\n";

    #[test]
    fn network_none_files() {
        let c = contents("abc123def456", NetworkMode::None, "10.1.1.1 db\n", RESOLV);
        assert_eq!(c.hostname, "abc123def456\n");
        assert_eq!(
            c.hosts,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.0.1\tabc123def456\n"
        );
        assert_eq!(
            c.resolv_conf,
            "# generated\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch example.com\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn network_host_files() {
        let c = contents(
            "box",
            NetworkMode::Host,
            "127.0.0.1 localhost\n10.1.1.1 db",
            RESOLV,
        );
        assert_eq!(
            c.hosts,
            "127.0.0.1 localhost\n10.1.1.1 db\n127.0.0.1\tbox\n"
        );
        assert_eq!(c.resolv_conf, RESOLV);
    }

    #[test]
    fn host_files_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let line = "nameserver 10.0.0.1\n";
        std::fs::write(&path, line.repeat(10_000)).unwrap();
        let read = read_host_file(&path).unwrap();
        assert!(read.len() as u64 <= MAX_HOST_FILE);
        assert!(read.len() as u64 > MAX_HOST_FILE - line.len() as u64);
        assert!(read.ends_with('\n'));
        assert_eq!(read_host_file(&dir.path().join("missing")).unwrap(), "");
    }

    #[test]
    fn files_are_written_owned_and_0644() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        let c = contents("box", NetworkMode::None, "", "nameserver 10.0.0.1\n");
        write(&files, &c, 100_000, 100_001).unwrap();
        for (name, _) in FILES {
            let meta = std::fs::metadata(files.join(name)).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o644, "{name}");
            assert_eq!((meta.uid(), meta.gid()), (100_000, 100_001), "{name}");
        }
        assert_eq!(
            std::fs::read_to_string(files.join("hostname")).unwrap(),
            "box\n"
        );
        assert_eq!(
            std::fs::read_to_string(files.join("resolv.conf")).unwrap(),
            "nameserver 10.0.0.1\n"
        );
        // Written again (a restart), the content is replaced, not appended.
        let c = contents("other", NetworkMode::None, "", "");
        write(&files, &c, 100_000, 100_001).unwrap();
        assert_eq!(
            std::fs::read_to_string(files.join("hostname")).unwrap(),
            "other\n"
        );
    }
}
