//! farm's libcontainer executor: installs the seccomp filters right before exec, then
//! hands over to libcontainer's default executor.

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{
    default::DefaultExecutor, Executor, ExecutorError, ExecutorValidationError,
};
use seccompiler::BpfProgram;

#[derive(Clone, Default)]
pub struct FarmExecutor {
    /// Installed in order right before exec; empty for `seccomp=unconfined`.
    pub filters: Vec<BpfProgram>,
}

impl Executor for FarmExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        super::seccomp::install(&self.filters)
            .map_err(|e| ExecutorError::Other(format!("installing the seccomp filter: {e}")))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
