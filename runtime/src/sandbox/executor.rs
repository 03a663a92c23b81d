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
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
