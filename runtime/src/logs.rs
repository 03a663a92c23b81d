//! Container logs: JSON lines with time and stream, size-capped, read with tail and
//! follow (owner: logs work).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Appends a container's output to its log.
pub struct LogWriter {}

impl LogWriter {
    /// Open (create or append) the log at `path`, keeping at most about `max_bytes` on disk.
    pub fn open(path: &Path, max_bytes: u64) -> Result<LogWriter, LogError> {
        let _ = (path, max_bytes);
        Ok(LogWriter {})
    }

    /// Record `bytes` of `stream`; lines are split at `\n`, a partial line is kept until
    /// its end or [`LogWriter::flush`].
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), LogError> {
        let _ = (stream, bytes);
        Ok(())
    }

    /// Write out partial lines (at exit).
    pub fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}
