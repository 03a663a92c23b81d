//! The overlay root filesystem of one container.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootfsError {
    #[error("{0}")]
    Other(String),
}
