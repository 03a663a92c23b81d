//! `farm worker status`: what the worker's store says, readable while it runs (WAL).

use std::path::Path;

use serde::Serialize;

use crate::outbox::{Outbox, OutboxError};
use crate::protocol::JobState;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node_id: String,
    /// The coordinator URL in use (the last one that answered, or the next to try).
    pub coordinator: Option<String>,
    pub last_contact_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub leases: Vec<HeldLease>,
    pub running_jobs: usize,
    pub queued_reports: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldLease {
    pub lease_id: String,
    pub job_id: String,
    pub fencing_token: u64,
    pub state: JobState,
    pub container_id: Option<String>,
}

pub fn read(root: &Path) -> Result<Status, OutboxError> {
    let outbox = Outbox::open(root)?;
    let number = |key: &str| -> Result<Option<u64>, OutboxError> {
        Ok(outbox.meta(key)?.and_then(|v| v.parse().ok()))
    };
    let leases: Vec<HeldLease> = outbox
        .jobs()?
        .into_iter()
        .map(|job| HeldLease {
            lease_id: job.lease.lease_id,
            job_id: job.lease.job_id,
            fencing_token: job.lease.fencing_token,
            state: job.phase,
            container_id: job.container_id,
        })
        .collect();
    Ok(Status {
        node_id: outbox.node_id()?,
        coordinator: outbox.meta("coordinator")?,
        last_contact_ms: number("last_contact_ms")?,
        last_error: outbox.meta("last_error")?,
        last_error_ms: number("last_error_ms")?,
        running_jobs: leases
            .iter()
            .filter(|l| l.state == JobState::Running)
            .count(),
        leases,
        queued_reports: outbox.queued()?,
    })
}
