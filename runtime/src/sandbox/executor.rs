//! farm's libcontainer executor: installs the seccomp filters right before exec, then
//! hands over to libcontainer's default executor.
//!
//! It runs in the container's init process after libcontainer dropped its capabilities, so
//! [`super::seccomp::install`] sets no-new-privileges (seccomp needs it without
//! CAP_SYS_ADMIN). Between the install and `execve` only libcontainer's `execvp` runs.

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{
    default::DefaultExecutor, Executor, ExecutorError, ExecutorValidationError,
};
use seccompiler::BpfProgram;

#[derive(Clone, Default)]
pub struct FarmExecutor {
    /// From [`super::seccomp::filters`], installed in that order right before exec; empty
    /// for `seccomp=unconfined`.
    pub filters: Vec<BpfProgram>,
    /// Refresh the container's ld cache first (host libraries were bind-mounted in, e.g. a
    /// GPU driver's): the image's own ldconfig runs in the container's sandbox (after
    /// pivot_root, with the seccomp filter and the container's user), with an empty
    /// environment; never a host ldconfig over container paths.
    pub ldconfig: Option<Vec<String>>,
    /// `--secret-env`: set in the init's environment right before exec (libcontainer's
    /// default executor execs with the process environment), so the values never pass
    /// through the spec on disk.
    pub secret_env: crate::secrets::SecretEnv,
}

/// Where images keep ldconfig.
const LDCONFIG: &[&str] = &["/sbin/ldconfig", "/usr/sbin/ldconfig"];

/// Run the image's ldconfig as a child of the container's init and wait for it. Failure
/// is not fatal (a non-root container user cannot write /etc/ld.so.cache; the libraries
/// are still found in the standard folders).
#[allow(unsafe_code)]
fn run_ldconfig(folders: &[String]) {
    let Some(path) = LDCONFIG
        .iter()
        .find(|p| std::path::Path::new(p).is_file())
        .and_then(|p| std::ffi::CString::new(*p).ok())
    else {
        return;
    };
    // SAFETY: the container's init is single-threaded (libcontainer forked it), so the
    // child may run any code; it only calls execve and _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let env: [&std::ffi::CStr; 0] = [];
            let mut args = vec![path.clone()];
            args.extend(
                folders
                    .iter()
                    .filter_map(|f| std::ffi::CString::new(f.as_str()).ok()),
            );
            let _ = nix::unistd::execve(&path, &args, &env);
            // SAFETY: _exit skips the parent's atexit handlers in the forked child.
            unsafe { libc::_exit(127) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
        }
        Err(_) => {}
    }
}

impl Executor for FarmExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        super::seccomp::install(&self.filters).map_err(|e| {
            ExecutorError::Other(format!(
                "the kernel refused the container's seccomp filters ({e}): it needs \
                     CONFIG_SECCOMP_FILTER, and a --security-opt seccomp=PROFILE must allow \
                     prctl and seccomp"
            ))
        })?;
        if let Some(folders) = &self.ldconfig {
            run_ldconfig(folders);
        }
        for (name, value) in &self.secret_env.0 {
            // The init is single-threaded (libcontainer forked it) and execs next.
            std::env::set_var(name, value.as_str());
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
