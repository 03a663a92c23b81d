//! `--secret-env` values on their way from `farm run` to the container's process: through
//! a pipe to the monitor, the monitor's memory, and libcontainer's executor, which sets
//! them in the container init's environment right before exec. Never on disk: not in the
//! state store (only the names are), not in the bundle's config.json, not in a log.
//!
//! The wire is `NAME\0VALUE\0` repeated, at most [`MAX_BYTES`] so that the writer never
//! blocks on a pipe nobody reads yet (`farm run` writes it all before exec'ing the
//! foreground monitor).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use zeroize::Zeroizing;

/// Below the 64 KiB a Linux pipe holds.
pub const MAX_BYTES: usize = 60 * 1024;

/// Secret environment variables, zeroed when dropped.
#[derive(Clone, Default)]
pub struct SecretEnv(pub Vec<(String, Zeroizing<String>)>);

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "SecretEnv({names:?}, values sealed)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret variable name {0:?} is not a valid name (letters, digits, _; not empty, no '=')"
    )]
    BadName(String),
    #[error(
        "the value of secret variable {0} holds a NUL byte, which an environment cannot carry"
    )]
    Nul(String),
    #[error("the secret variables take {0} bytes, more than the {MAX_BYTES} farm passes")]
    TooLarge(usize),
    #[error("passing the secret variables to the monitor: {0}")]
    Io(#[from] std::io::Error),
}

impl SecretEnv {
    /// Check names and values; the sum must fit [`MAX_BYTES`].
    pub fn check(&self) -> Result<(), SecretError> {
        let mut total = 0;
        for (name, value) in &self.0 {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(SecretError::BadName(name.clone()));
            }
            if value.contains('\0') {
                return Err(SecretError::Nul(name.clone()));
            }
            total += name.len() + value.len() + 2;
        }
        if total > MAX_BYTES {
            return Err(SecretError::TooLarge(total));
        }
        Ok(())
    }

    /// Write all of it to `fd` (a pipe's write end) and close it.
    pub fn send(&self, fd: OwnedFd) -> Result<(), SecretError> {
        self.check()?;
        let mut pipe = std::fs::File::from(fd);
        for (name, value) in &self.0 {
            pipe.write_all(name.as_bytes())?;
            pipe.write_all(b"\0")?;
            pipe.write_all(value.as_bytes())?;
            pipe.write_all(b"\0")?;
        }
        Ok(())
    }

    /// Read what [`SecretEnv::send`] wrote, to the end.
    pub fn receive(fd: OwnedFd) -> Result<SecretEnv, SecretError> {
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_BYTES + 1));
        std::fs::File::from(fd)
            .take(MAX_BYTES as u64 + 1)
            .read_to_end(&mut buf)?;
        if buf.len() > MAX_BYTES {
            return Err(SecretError::TooLarge(buf.len()));
        }
        let mut fields = buf.split(|b| *b == 0);
        let mut out = Vec::new();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            if name.is_empty() {
                break;
            }
            let name = String::from_utf8_lossy(name).into_owned();
            let value = Zeroizing::new(String::from_utf8_lossy(value).into_owned());
            out.push((name, value));
        }
        Ok(SecretEnv(out))
    }

    /// A pipe holding all of it, for the monitor: the read end, left open across exec
    /// (give the monitor `--secrets-fd N` with its number), or None when there is
    /// nothing to pass. Used by `farm run` and `farm worker` alike.
    pub fn pipe_for_monitor(&self) -> Result<Option<OwnedFd>, SecretError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        rustix::io::fcntl_setfd(&read, rustix::io::FdFlags::empty())
            .map_err(std::io::Error::from)?;
        self.send(write)?;
        Ok(Some(read))
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cross_a_pipe_and_bad_names_or_sizes_are_refused() {
        let env = SecretEnv(vec![
            ("TOKEN".into(), Zeroizing::new("a=b c".into())),
            ("EMPTY".into(), Zeroizing::new(String::new())),
        ]);
        let (r, w) = nix::unistd::pipe().unwrap();
        env.send(w).unwrap();
        let back = SecretEnv::receive(r).unwrap();
        assert_eq!(back.names(), ["TOKEN", "EMPTY"]);
        assert_eq!(back.0[0].1.as_str(), "a=b c");
        assert_eq!(back.0[1].1.as_str(), "");
        assert!(
            format!("{back:?}").contains("values sealed") && !format!("{back:?}").contains("a=b")
        );
        for bad in ["", "A=B", "1X", "A B"] {
            let env = SecretEnv(vec![(bad.into(), Zeroizing::new("v".into()))]);
            assert!(
                matches!(env.check(), Err(SecretError::BadName(_))),
                "{bad:?}"
            );
        }
        let big = SecretEnv(vec![("BIG".into(), Zeroizing::new("x".repeat(MAX_BYTES)))]);
        assert!(matches!(big.check(), Err(SecretError::TooLarge(_))));
    }
}
