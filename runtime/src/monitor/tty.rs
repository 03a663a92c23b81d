//! `-t`: the pty master libcontainer's init sends over the console socket, and our own
//! terminal in raw mode while a container is attached to it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Listen on `<dir>/console.sock` (bound through a relative path: socket paths are
/// short) for the pty master that libcontainer's init sends with `-t`.
pub(crate) fn console_listener(
    dir: &std::path::Path,
) -> std::io::Result<(PathBuf, std::os::unix::net::UnixListener)> {
    let previous = std::env::current_dir()?;
    std::env::set_current_dir(dir)?;
    let _ = std::fs::remove_file("console.sock");
    let listener = std::os::unix::net::UnixListener::bind("console.sock");
    std::env::set_current_dir(previous)?;
    Ok((dir.join("console.sock"), listener?))
}

/// Accept libcontainer's connection and take the pty master it sends (SCM_RIGHTS).
pub(crate) fn receive_pty(listener: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (stream, _) = listener.accept()?;
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut received = None;
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                let owned = owned_fd(fd);
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    received.ok_or_else(|| std::io::Error::other("libcontainer sent no pty master"))
}

/// Take ownership of a descriptor the kernel just gave us through SCM_RIGHTS.
#[allow(unsafe_code)]
fn owned_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was installed in our table by recvmsg for this message only; nothing
    // else refers to it, so this OwnedFd is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Our terminal, in raw mode while a `-t` container is attached to it.
pub(crate) struct Terminal {
    saved: nix::sys::termios::Termios,
}

impl Terminal {
    /// Raw mode and the container's window size from ours, when stdin is a terminal.
    pub(crate) fn attach(master: &OwnedFd) -> Option<Terminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        let terminal = Terminal { saved };
        terminal.copy_size(master);
        Some(terminal)
    }

    pub(crate) fn copy_size(&self, master: &OwnedFd) {
        if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
            let _ = rustix::termios::tcsetwinsize(master, size);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}
