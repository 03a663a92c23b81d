//! The worker's durable memory: `<root>/worker/worker.db`, its own SQLite file (WAL,
//! `synchronous=FULL`, numbered migrations under `PRAGMA user_version`). It holds the
//! node id, the leases and their phase, and the outbox of reports: a state change and
//! the report of it are written in one transaction, so a crash cannot keep one without
//! the other. A report's idempotency key is unique here too: queueing the same change
//! twice (after a restart) queues it once.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::protocol::{idempotency_key, JobState, Lease, LogStream, Report};
use farm_trust::record::{Countersignature, SignedRecord};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error("worker state {path}: {source}: check the disk and the permissions of the farm root (never delete this file: it holds the jobs the coordinator pays for)")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("worker state {path} has schema version {found}, newer than this farm's {known}: run the farm version that wrote it or a newer one")]
    NewerSchema {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("worker state {path}: a stored record is not valid JSON: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Schema migrations; `MIGRATIONS[n]` takes `user_version` n to n+1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    lease_id TEXT PRIMARY KEY,
    lease TEXT NOT NULL,
    phase TEXT NOT NULL,
    container_id TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    lease_id TEXT NOT NULL,
    body TEXT NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE log_cursors (
    lease_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    eof INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (lease_id, stream)
);
"#,
    r#"
CREATE TABLE earnings (
    lease_id TEXT PRIMARY KEY,
    ended_ms INTEGER NOT NULL,
    signed TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE earnings ADD COLUMN countersignature TEXT;
"#,
];

/// The stored record's text with its countersignature, when there is one, put in.
fn with_countersignature(signed: String, counter: Option<String>) -> String {
    let Some(counter) = counter.and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
    else {
        return signed;
    };
    match serde_json::from_str::<serde_json::Value>(&signed) {
        Ok(mut value) => {
            value["countersignature"] = counter;
            value.to_string()
        }
        Err(_) => signed,
    }
}

/// A lease the worker holds (or held, until its final report is acknowledged).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub lease: Lease,
    pub phase: JobState,
    pub container_id: Option<String>,
}

/// Where a stream's delivery stands: the next chunk's seq and offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCursor {
    pub next_seq: u64,
    pub offset: u64,
    pub eof: bool,
}

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

impl Outbox {
    /// Open (or create) `<root>/worker/worker.db` and bring its schema up to date.
    pub fn open(root: &Path) -> Result<Outbox, OutboxError> {
        let dir = root.join("worker");
        std::fs::create_dir_all(&dir).map_err(|source| OutboxError::Dir {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("worker.db");
        let conn = Connection::open(&path).map_err(|source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut outbox = Outbox { conn, path };
        outbox.setup()?;
        Ok(outbox)
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> OutboxError + '_ {
        move |source| OutboxError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn setup(&mut self) -> Result<(), OutboxError> {
        let path = self.path.clone();
        let sql_err = move |source| OutboxError::Sqlite {
            path: path.clone(),
            source,
        };
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql_err.clone())?;
        self.conn
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(sql_err.clone())?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err.clone())?;
        let version: u32 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql_err.clone())?;
        if version as usize > MIGRATIONS.len() {
            return Err(OutboxError::NewerSchema {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len() as u32,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(migration).map_err(sql_err.clone())?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))
                .map_err(sql_err.clone())?;
        }
        let node_id = format!("node-{}", hex::encode(rand::random::<[u8; 16]>()));
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('node_id', ?1)",
            params![node_id],
        )
        .map_err(sql_err.clone())?;
        tx.commit().map_err(sql_err)
    }

    /// This node's id: made once, on the first open, and kept for good.
    pub fn node_id(&self) -> Result<String, OutboxError> {
        Ok(self.meta("node_id")?.unwrap_or_default())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, OutboxError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Record a new lease and queue its `accepted` report, together.
    pub fn insert_job(&mut self, lease: &Lease, report: Report) -> Result<(), OutboxError> {
        let text = serde_json::to_string(lease).expect("a lease serializes");
        let path = self.path.clone();
        let sql_err = move |source| OutboxError::Sqlite { path, source };
        let tx = self.conn.transaction().map_err(sql_err.clone())?;
        tx.execute(
            "INSERT OR IGNORE INTO jobs (lease_id, lease, phase, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![lease.lease_id, text, report.state.as_str(), report.at_ms as i64],
        )
        .map_err(sql_err.clone())?;
        queue(&tx, &report).map_err(sql_err.clone())?;
        tx.commit().map_err(sql_err)
    }

    /// Signed earnings records (JSON) of jobs that ended at or after `since_ms`, oldest first.
    pub fn earnings(&self, since_ms: u64) -> Result<Vec<String>, OutboxError> {
        let mut statement = self
            .conn
            .prepare("SELECT signed, countersignature FROM earnings WHERE ended_ms >= ?1 ORDER BY ended_ms, lease_id")
            .map_err(self.err())?;
        let rows = statement
            .query_map(params![since_ms as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(self.err())?;
        let rows = rows.collect::<Result<Vec<_>, _>>().map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|(signed, counter)| with_countersignature(signed, counter))
            .collect())
    }

    /// The signed earnings record of the job a report (by idempotency key) belongs to.
    pub fn earnings_of_report(&self, key: &str) -> Result<Option<SignedRecord>, OutboxError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT e.signed FROM earnings e JOIN reports r ON r.lease_id = e.lease_id WHERE r.idempotency_key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Keep the coordinator's countersignature of a job's earnings record.
    pub fn countersigned(
        &self,
        lease_id: &str,
        counter: &Countersignature,
    ) -> Result<(), OutboxError> {
        let text = serde_json::to_string(counter).unwrap_or_default();
        self.conn
            .execute(
                "UPDATE earnings SET countersignature = ?2 WHERE lease_id = ?1",
                params![lease_id, text],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Record a state change of a job and queue its report, together.
    pub fn record(&mut self, report: Report) -> Result<(), OutboxError> {
        self.record_with_earnings(report, None)
    }

    /// [`Outbox::record`], keeping the job's signed earnings record (JSON) in the same
    /// transaction: a final report is never queued without it, nor it without the report.
    pub fn record_with_earnings(
        &mut self,
        mut report: Report,
        earnings: Option<SignedRecord>,
    ) -> Result<(), OutboxError> {
        let earnings = earnings.map(|signed| {
            let text = serde_json::to_string(&signed).unwrap_or_default();
            report.earnings = Some(signed);
            text
        });
        let path = self.path.clone();
        let sql_err = move |source| OutboxError::Sqlite { path, source };
        let tx = self.conn.transaction().map_err(sql_err.clone())?;
        tx.execute(
            "UPDATE jobs SET phase = ?2, container_id = COALESCE(?3, container_id) WHERE lease_id = ?1",
            params![report.lease_id, report.state.as_str(), report.container_id],
        )
        .map_err(sql_err.clone())?;
        queue(&tx, &report).map_err(sql_err.clone())?;
        if let Some(signed) = earnings {
            tx.execute(
                "INSERT OR IGNORE INTO earnings (lease_id, ended_ms, signed) VALUES (?1, ?2, ?3)",
                params![report.lease_id, report.at_ms as i64, signed],
            )
            .map_err(sql_err.clone())?;
        }
        tx.commit().map_err(sql_err)
    }

    /// Jobs whose final report is not yet acknowledged.
    pub fn jobs(&self) -> Result<Vec<JobRow>, OutboxError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT lease, phase, container_id FROM jobs WHERE done = 0 ORDER BY created_ms",
            )
            .map_err(self.err())?;
        let rows = statement
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<(String, String, Option<String>)>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(lease, phase, container_id)| {
                Ok(JobRow {
                    lease: serde_json::from_str(&lease).map_err(|source| OutboxError::Corrupt {
                        path: self.path.clone(),
                        source,
                    })?,
                    phase: serde_json::from_value(serde_json::Value::String(phase))
                        .unwrap_or(JobState::Unknown),
                    container_id,
                })
            })
            .collect()
    }

    /// Whether this change of this lease was queued already.
    pub fn has_report(
        &self,
        lease_id: &str,
        token: u64,
        state: JobState,
    ) -> Result<bool, OutboxError> {
        let key = idempotency_key(lease_id, token, state);
        self.conn
            .query_row(
                "SELECT 1 FROM reports WHERE idempotency_key = ?1",
                params![key],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(self.err())
    }

    /// Unacknowledged reports, oldest first, with their seq.
    pub fn pending(&self, limit: usize) -> Result<Vec<Report>, OutboxError> {
        let mut statement = self
            .conn
            .prepare("SELECT seq, body FROM reports WHERE acked = 0 ORDER BY seq LIMIT ?1")
            .map_err(self.err())?;
        let rows = statement
            .query_map(params![limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(seq, body)| {
                let mut report: Report =
                    serde_json::from_str(&body).map_err(|source| OutboxError::Corrupt {
                        path: self.path.clone(),
                        source,
                    })?;
                report.seq = seq as u64;
                Ok(report)
            })
            .collect()
    }

    /// Mark reports acknowledged (or refused for good); a job whose final report is
    /// acknowledged is done.
    pub fn ack(&mut self, keys: &[String]) -> Result<(), OutboxError> {
        let path = self.path.clone();
        let sql_err = move |source| OutboxError::Sqlite { path, source };
        let tx = self.conn.transaction().map_err(sql_err.clone())?;
        for key in keys {
            tx.execute(
                "UPDATE reports SET acked = 1 WHERE idempotency_key = ?1",
                params![key],
            )
            .map_err(sql_err.clone())?;
            let state = key.rsplit(':').next().unwrap_or_default();
            let state: JobState = serde_json::from_value(state.into()).unwrap_or(JobState::Unknown);
            if state.is_final() {
                tx.execute(
                    "UPDATE jobs SET done = 1 WHERE lease_id = (SELECT lease_id FROM reports WHERE idempotency_key = ?1)",
                    params![key],
                )
                .map_err(sql_err.clone())?;
            }
        }
        tx.commit().map_err(sql_err)
    }

    /// How many reports wait for the coordinator.
    pub fn queued(&self) -> Result<u64, OutboxError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM reports WHERE acked = 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(self.err())
    }

    pub fn log_cursor(&self, lease_id: &str, stream: LogStream) -> Result<LogCursor, OutboxError> {
        self.conn
            .query_row(
                "SELECT next_seq, offset, eof FROM log_cursors WHERE lease_id = ?1 AND stream = ?2",
                params![lease_id, stream.as_str()],
                |r| {
                    Ok(LogCursor {
                        next_seq: r.get::<_, i64>(0)? as u64,
                        offset: r.get::<_, i64>(1)? as u64,
                        eof: r.get(2)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(self.err())
    }

    pub fn set_log_cursor(
        &self,
        lease_id: &str,
        stream: LogStream,
        cursor: LogCursor,
    ) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "INSERT INTO log_cursors (lease_id, stream, next_seq, offset, eof) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (lease_id, stream) DO UPDATE SET next_seq = excluded.next_seq, offset = excluded.offset, eof = excluded.eof",
                params![lease_id, stream.as_str(), cursor.next_seq as i64, cursor.offset as i64, cursor.eof],
            )
            .map(|_| ())
            .map_err(self.err())
    }
}

/// Queue a report unless the same change is queued already (its key).
fn queue(tx: &rusqlite::Transaction<'_>, report: &Report) -> Result<(), rusqlite::Error> {
    let body = serde_json::to_string(report).expect("a report serializes");
    tx.execute(
        "INSERT OR IGNORE INTO reports (idempotency_key, lease_id, body) VALUES (?1, ?2, ?3)",
        params![report.idempotency_key, report.lease_id, body],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests;
