//! The local state store: containers, their status, exit codes and metering.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("{0}")]
    Other(String),
}
