//! A job's stdout and stderr to the coordinator: chunks of at most [`CHUNK`] bytes,
//! each with its stream's seq and byte offset; the cursor of each stream is kept in
//! the worker's store after every acknowledged chunk, so a restart or an outage
//! resumes where the coordinator stopped, with nothing lost or doubled. The bounded
//! local spool is the container's own size-capped log file.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;

use crate::outbox::LogCursor;
use crate::protocol::{ErrorCode, Lease, LogAnswer, LogChunk, LogStream};
use crate::runtime::LogTail;
use crate::transport::{backoff, TransportError};
use crate::worker::Worker;

/// The most bytes of one chunk.
pub const CHUNK: usize = 64 * 1024;

pub struct LogShipper {
    lease: Lease,
    path: PathBuf,
    tail: LogTail,
    cursors: [LogCursor; 2],
}

/// How shipping ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Shipped {
    Delivered,
    /// The coordinator refuses this lease's logs for good (stale fencing token).
    Refused,
}

const STREAMS: [LogStream; 2] = [LogStream::Stdout, LogStream::Stderr];

impl LogShipper {
    pub fn load(worker: &Worker, lease: &Lease, id: &str) -> LogShipper {
        let outbox = worker.outbox();
        let cursor = |s| outbox.log_cursor(&lease.lease_id, s).unwrap_or_default();
        let path = worker.runtime.log_path(id);
        LogShipper {
            lease: lease.clone(),
            tail: LogTail::new(path.clone()),
            path,
            cursors: [cursor(LogStream::Stdout), cursor(LogStream::Stderr)],
        }
    }

    /// Everything to the end, with eof, retrying through outages.
    pub async fn ship_all(&mut self, worker: &Worker) {
        let mut attempt = 0;
        loop {
            match self.ship(worker, true).await {
                Ok(_) => return,
                Err(_) => {
                    attempt += 1;
                    let wait = backoff(attempt, Duration::from_millis(100), Duration::from_secs(5));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// What is new in the log; with `end`, then an eof chunk per stream.
    pub async fn ship(&mut self, worker: &Worker, end: bool) -> Result<Shipped, TransportError> {
        self.tail.poll();
        for index in 0..STREAMS.len() {
            if self.ship_stream(worker, index, end).await? == Shipped::Refused {
                return Ok(Shipped::Refused);
            }
        }
        Ok(Shipped::Delivered)
    }

    /// The stream's bytes from the cursor on (at most one chunk), reading the log again
    /// from its start when the coordinator asks for bytes already let go of.
    fn next_chunk(&mut self, index: usize) -> Vec<u8> {
        let offset = self.cursors[index].offset;
        if self.tail.from(index, offset).is_none() {
            self.tail = LogTail::new(self.path.clone());
            self.tail.poll();
        }
        let data = self.tail.from(index, offset).unwrap_or_default();
        data[..data.len().min(CHUNK)].to_vec()
    }

    async fn ship_stream(
        &mut self,
        worker: &Worker,
        index: usize,
        end: bool,
    ) -> Result<Shipped, TransportError> {
        loop {
            if self.cursors[index].eof {
                return Ok(Shipped::Delivered);
            }
            let chunk = self.next_chunk(index);
            if chunk.is_empty() && !end {
                return Ok(Shipped::Delivered);
            }
            let offset = self.cursors[index].offset;
            let left = self.tail.from(index, offset).map_or(0, <[u8]>::len);
            let eof = end && left == chunk.len();
            match self.send(worker, index, &chunk, eof).await {
                Ok(next) => self.advance(worker, index, next),
                Err(e) => return self.recover(worker, index, e),
            }
        }
    }

    async fn send(
        &self,
        worker: &Worker,
        index: usize,
        bytes: &[u8],
        eof: bool,
    ) -> Result<LogCursor, TransportError> {
        let cursor = self.cursors[index];
        let chunk = LogChunk {
            node_id: worker.node_id.clone(),
            lease_id: self.lease.lease_id.clone(),
            fencing_token: self.lease.fencing_token,
            stream: STREAMS[index],
            seq: cursor.next_seq,
            offset: cursor.offset,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
            eof,
        };
        let answer: LogAnswer = worker
            .transport
            .call("v1/logs", &chunk, Duration::from_secs(15))
            .await?;
        Ok(LogCursor {
            next_seq: answer.next_seq.max(cursor.next_seq + 1),
            offset: cursor.offset + bytes.len() as u64,
            eof,
        })
    }

    fn advance(&mut self, worker: &Worker, index: usize, next: LogCursor) {
        self.cursors[index] = next;
        let outbox = worker.outbox();
        if let Err(e) = outbox.set_log_cursor(&self.lease.lease_id, STREAMS[index], next) {
            eprintln!("farm worker: {e}");
        }
    }

    /// A gap the coordinator names is resumed from its numbers; a stale lease ends
    /// shipping; anything else is an outage (the caller retries).
    fn recover(
        &mut self,
        worker: &Worker,
        index: usize,
        error: TransportError,
    ) -> Result<Shipped, TransportError> {
        match (error.code(), error.body()) {
            (Some(ErrorCode::SequenceGap), Some(body)) => {
                let next = LogCursor {
                    next_seq: body.expected_seq.unwrap_or(0),
                    offset: body.received.unwrap_or(0),
                    eof: false,
                };
                self.advance(worker, index, next);
                Err(error)
            }
            (Some(ErrorCode::StaleFencingToken | ErrorCode::UnknownLease), _) => {
                Ok(Shipped::Refused)
            }
            _ => Err(error),
        }
    }
}
