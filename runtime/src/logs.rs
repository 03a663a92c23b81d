//! Container logs: JSON lines with time and stream, size-capped, read with tail and
//! follow.
//!
//! The format is docker's json-file one, one record per line:
//! `{"log":"text\n","stream":"stdout","time":"2026-11-23T10:00:00.123456789Z"}`.
//! A line longer than [`MAX_LINE`] is cut into records of that size; every record but the
//! last of such a line has no trailing `\n` in `log` (a partial record, as docker writes
//! them), and so has the last one when the container exited without ending its line.
//! Output that is not UTF-8 is stored with U+FFFD in place of the bad bytes.
//!
//! Rotation keeps one old file: when the next record would take `<path>` past the cap,
//! `<path>` is renamed `<path>.1` (replacing the previous one) and a new `<path>` begins,
//! so the most recent output is always on disk.

mod reader;
mod time;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use reader::{follow, read};
pub use time::rfc3339_nanos;

/// The longest `log` text of one record, in bytes, before a line is cut (docker's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The consumer of [`follow`] or [`read`] failed (a closed pipe, say).
    #[error("writing log output: {0}")]
    Output(#[source] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One record of a log file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// The text, with its `\n` when the line ended.
    pub log: String,
    pub stream: Stream,
    /// RFC 3339 UTC with nanoseconds, as [`rfc3339_nanos`] writes it.
    pub time: String,
}

impl LogEntry {
    /// A record that is not the end of its line.
    pub fn is_partial(&self) -> bool {
        !self.log.ends_with('\n')
    }
}

/// A record as written, borrowing its text (field order as docker's).
#[derive(serde::Serialize)]
struct Record<'a> {
    log: &'a str,
    stream: Stream,
    time: &'a str,
}

/// `<path>.1`, the rotated log.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Appends a container's output to its log.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Bytes in `file`.
    size: u64,
    max_bytes: u64,
    /// The unfinished line of each stream.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Open (create or append) the log at `path`. Each of `<path>` and `<path>.1` holds at
    /// most about `max_bytes` (a single record longer than that is still written whole);
    /// 0 means no cap.
    pub fn open(path: &Path, max_bytes: u64) -> Result<LogWriter, LogError> {
        let file = open_append(path)?;
        let size = file.metadata().map_err(|e| io_error(path, e))?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Record `bytes` of `stream`; lines are split at `\n`, a partial line is kept until
    /// its end or [`LogWriter::flush`] (or until it reaches [`MAX_LINE`]).
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), LogError> {
        let time = rfc3339_nanos(SystemTime::now());
        let mut out = Vec::new();
        let mut pending = std::mem::take(&mut self.pending[stream.index()]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        let result = loop {
            let rest = &pending[start..];
            let end = match rest.iter().position(|&b| b == b'\n') {
                Some(newline) if newline < MAX_LINE => newline + 1,
                _ if rest.len() >= MAX_LINE => utf8_cut(&rest[..MAX_LINE]),
                _ => break Ok(()),
            };
            let text = String::from_utf8_lossy(&rest[..end]);
            if let Err(e) = self.push_record(&mut out, &text, stream, &time) {
                break Err(e);
            }
            start += end;
        };
        pending.drain(..start);
        self.pending[stream.index()] = pending;
        result?;
        self.write_out(&out)
    }

    /// Write out partial lines (at exit).
    pub fn flush(&mut self) -> Result<(), LogError> {
        let time = rfc3339_nanos(SystemTime::now());
        let mut out = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream.index()]);
            if !pending.is_empty() {
                let text = String::from_utf8_lossy(&pending);
                self.push_record(&mut out, &text, stream, &time)?;
            }
        }
        self.write_out(&out)
    }

    /// Add one record to `out`, first writing `out` and rotating when the record would
    /// take the file past the cap.
    fn push_record(
        &mut self,
        out: &mut Vec<u8>,
        log: &str,
        stream: Stream,
        time: &str,
    ) -> Result<(), LogError> {
        let mut record = serde_json::to_vec(&Record { log, stream, time })
            .expect("a record of strings always serializes");
        record.push(b'\n');
        let held = self.size + out.len() as u64;
        if self.max_bytes > 0 && held > 0 && held + record.len() as u64 > self.max_bytes {
            self.write_out(out)?;
            out.clear();
            self.rotate()?;
        }
        out.extend_from_slice(&record);
        Ok(())
    }

    fn write_out(&mut self, out: &[u8]) -> Result<(), LogError> {
        if out.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(out)
            .map_err(|e| io_error(&self.path, e))?;
        self.size += out.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let old = rotated_path(&self.path);
        std::fs::rename(&self.path, &old).map_err(|e| io_error(&self.path, e))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Where to cut a full-length chunk: before a UTF-8 sequence that the chunk's end splits,
/// so that both halves keep their characters; at the end otherwise.
fn utf8_cut(chunk: &[u8]) -> usize {
    match std::str::from_utf8(chunk) {
        Err(e) if e.error_len().is_none() && e.valid_up_to() + 4 > chunk.len() => {
            e.valid_up_to().max(1)
        }
        _ => chunk.len(),
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, source: std::io::Error) -> LogError {
    LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests;
