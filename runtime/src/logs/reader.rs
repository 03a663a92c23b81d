//! Reading a log back: all or the last N records of `<path>.1` then `<path>`, and
//! following `<path>` as it grows and rotates.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::{io_error, rotated_path, LogEntry, LogError};

/// How often [`follow`] looks for new output.
const POLL: Duration = Duration::from_millis(100);

/// The records of the log at `path` (the rotated file first), or the last `tail` of them.
/// Missing files read as empty; lines that are not records (a torn last line) are skipped.
pub fn read(path: &Path, tail: Option<usize>) -> Result<Vec<LogEntry>, LogError> {
    let rotated = rotated_path(path);
    let old = open_optional(&rotated)?;
    let current = open_optional(path)?;
    let mut lines = Lines::new(tail);
    if let Some(file) = old {
        lines.read_all(file, &rotated)?;
    }
    if let Some(file) = current {
        lines.read_all(file, path)?;
    }
    Ok(lines.entries())
}

/// Call `on_entry` with the last `tail` records (all when `None`), then with each record
/// written to the log from then on, across rotations, polling every 100 ms. Returns when
/// `keep_going()` says false and everything written before it said so has been passed on,
/// or with [`LogError::Output`] when `on_entry` fails. The log need not exist yet.
pub fn follow(
    path: &Path,
    tail: Option<usize>,
    mut keep_going: impl FnMut() -> bool,
    mut on_entry: impl FnMut(&LogEntry) -> io::Result<()>,
) -> Result<(), LogError> {
    // The rotated file is opened first: a rotation in between leaves the current file
    // to be found by the rotation check below, never a record shown twice.
    let rotated = rotated_path(path);
    let old = open_optional(&rotated)?;
    let mut current = open_optional(path)?;
    let mut lines = Lines::new(tail);
    if let Some(file) = old {
        lines.read_all(file, &rotated)?;
    }
    let mut torn = Vec::new();
    if let Some(file) = &mut current {
        torn = lines.read_to_end(file, path)?;
    }
    for entry in lines.entries() {
        on_entry(&entry).map_err(LogError::Output)?;
    }

    let mut buffer = vec![0; 64 * 1024];
    loop {
        // Asked before reading, so that a false answer covers everything read after it.
        let alive = keep_going();
        let mut got = false;
        loop {
            if let Some(file) = &mut current {
                got |= drain(file, path, &mut buffer, &mut torn, &mut on_entry)?;
            }
            if !replaced(current.as_ref(), path)? {
                break;
            }
            // Rotated (or created, or truncated). Once the new file is there the writer
            // no longer writes to the old one: read what it wrote last, then move on.
            if let Some(file) = &mut current {
                got |= drain(file, path, &mut buffer, &mut torn, &mut on_entry)?;
            }
            current = open_optional(path)?;
            torn.clear();
        }
        if got {
            continue;
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// Pass on the records of `file` from its offset to its end; `torn` carries a record cut
/// by the end of the file to the next call. Whether anything was read.
fn drain(
    file: &mut File,
    path: &Path,
    buffer: &mut [u8],
    torn: &mut Vec<u8>,
    on_entry: &mut impl FnMut(&LogEntry) -> io::Result<()>,
) -> Result<bool, LogError> {
    let mut got = false;
    loop {
        let n = read_retrying(file, buffer).map_err(|e| io_error(path, e))?;
        if n == 0 {
            return Ok(got);
        }
        got = true;
        torn.extend_from_slice(&buffer[..n]);
        let complete = torn.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in torn[..complete].split(|&b| b == b'\n') {
            if let Some(entry) = parse(line) {
                on_entry(&entry).map_err(LogError::Output)?;
            }
        }
        torn.drain(..complete);
    }
}

/// Whether `path` now names another file than `current` (or names one where there was
/// none), or the file was truncated under the reader.
fn replaced(current: Option<&File>, path: &Path) -> Result<bool, LogError> {
    let on_disk = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path, e)),
    };
    let Some(file) = current else {
        return Ok(true);
    };
    let open = file.metadata().map_err(|e| io_error(path, e))?;
    if open.dev() != on_disk.dev() || open.ino() != on_disk.ino() {
        return Ok(true);
    }
    let position = (&*file).stream_position().map_err(|e| io_error(path, e))?;
    Ok(open.len() < position)
}

fn open_optional(path: &Path) -> Result<Option<File>, LogError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn read_retrying(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// A record from one line (without its `\n`); `None` for anything else. Bytes that are
/// not UTF-8 become U+FFFD rather than losing the line.
fn parse(line: &[u8]) -> Option<LogEntry> {
    if line.is_empty() {
        return None;
    }
    serde_json::from_str(&String::from_utf8_lossy(line)).ok()
}

/// The last `tail` complete lines of the files read so far (all when `None`).
struct Lines {
    tail: Option<usize>,
    lines: VecDeque<Vec<u8>>,
}

impl Lines {
    fn new(tail: Option<usize>) -> Lines {
        Lines {
            tail,
            lines: VecDeque::new(),
        }
    }

    fn push(&mut self, line: Vec<u8>) {
        if self.tail == Some(0) {
            return;
        }
        if self.tail.is_some_and(|tail| self.lines.len() == tail) {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn read_all(&mut self, file: File, path: &Path) -> Result<(), LogError> {
        let mut file = file;
        self.read_to_end(&mut file, path).map(drop)
    }

    /// Read complete lines up to the end of `file`; returns the torn line after the last
    /// `\n` (a record being written).
    fn read_to_end(&mut self, file: &mut File, path: &Path) -> Result<Vec<u8>, LogError> {
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        loop {
            let mut line = Vec::new();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(path, e))?;
            if n == 0 {
                return Ok(Vec::new());
            }
            if line.last() != Some(&b'\n') {
                return Ok(line);
            }
            line.pop();
            if !line.is_empty() {
                self.push(line);
            }
        }
    }

    fn entries(self) -> Vec<LogEntry> {
        self.lines.iter().filter_map(|line| parse(line)).collect()
    }
}
