//! The test coordinator's memory and the protocol's rules: fencing, idempotency keys,
//! log sequence numbers, resumable outputs with a size cap and a digest.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::http::{error, with_error, Reply, Request};
use crate::protocol::*;

/// The timings the coordinator hands out.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub heartbeat_interval_ms: u64,
    pub lease_ttl_ms: u64,
    pub lease_grace_ms: u64,
    pub poll_timeout_ms: u64,
    /// Sign every answer (RFC 9421, `@status` and `content-digest`) with this Ed25519
    /// seed, as a real coordinator does; None: unsigned answers.
    pub signing_seed: Option<[u8; 32]>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            heartbeat_interval_ms: 500,
            lease_ttl_ms: 3_000,
            lease_grace_ms: 2_000,
            poll_timeout_ms: 2_000,
            signing_seed: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaseEntry {
    pub lease: Lease,
    pub node_id: Option<String>,
    pub cancelled: Option<u64>,
    pub revoked: bool,
    #[serde(skip)]
    pub expires: Option<Instant>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogStreamState {
    pub next_seq: u64,
    pub data: Vec<u8>,
    pub eof: bool,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputsState {
    pub data: Vec<u8>,
    pub size: u64,
    pub sha256: String,
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub settings: Settings,
    pub registrations: Vec<RegisterRequest>,
    pub heartbeats: u64,
    pub queue: VecDeque<String>,
    pub leases: BTreeMap<String, LeaseEntry>,
    /// Reports counted, in arrival order (each idempotency key once).
    pub reports: Vec<Report>,
    /// How many times each key arrived.
    pub key_counts: BTreeMap<String, u32>,
    pub refused: Vec<(String, ErrorCode)>,
    pub logs: BTreeMap<String, LogStreamState>,
    pub outputs: BTreeMap<String, OutputsState>,
    /// `(lease_id, what, unix ms)`: `leased` when a poll hands the lease out,
    /// `report:STATE` when a report is counted (for bench/worker).
    pub events: Vec<(String, String, u64)>,
    /// Leases whose final report came before both log streams ended (a protocol breach).
    pub finals_before_logs: Vec<String>,
    /// The first [`MAX_RECORDED`] requests as they arrived, headers and body included
    /// (for checking their signatures with independent code).
    pub requests: Vec<RecordedRequest>,
    /// Grows at each stop, to drop held polls.
    #[serde(skip)]
    pub epoch: u64,
    next_id: u64,
}

/// How many requests [`State::requests`] keeps.
pub const MAX_RECORDED: usize = 200;

/// One request as the coordinator received it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// `http://HOST` + the request target: the `@target-uri` the worker signed.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl State {
    pub fn new(settings: Settings) -> State {
        State {
            settings,
            registrations: Vec::new(),
            heartbeats: 0,
            queue: VecDeque::new(),
            leases: BTreeMap::new(),
            reports: Vec::new(),
            key_counts: BTreeMap::new(),
            refused: Vec::new(),
            logs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            finals_before_logs: Vec::new(),
            requests: Vec::new(),
            events: Vec::new(),
            epoch: 0,
            next_id: 0,
        }
    }

    pub fn submit(&mut self, job: JobSpec) -> String {
        self.next_id += 1;
        let lease_id = format!("lease-{}", self.next_id);
        let lease = Lease {
            lease_id: lease_id.clone(),
            job_id: format!("job-{}", self.next_id),
            attempt: 1,
            fencing_token: 1,
            ttl_ms: self.settings.lease_ttl_ms,
            job,
        };
        let entry = LeaseEntry {
            lease,
            node_id: None,
            cancelled: None,
            revoked: false,
            expires: None,
        };
        self.leases.insert(lease_id.clone(), entry);
        self.queue.push_back(lease_id.clone());
        lease_id
    }

    pub fn cancel(&mut self, lease_id: &str, grace: Duration) {
        if let Some(entry) = self.leases.get_mut(lease_id) {
            entry.cancelled = Some(grace.as_millis() as u64);
        }
    }

    pub fn revoke(&mut self, lease_id: &str) {
        if let Some(entry) = self.leases.get_mut(lease_id) {
            entry.revoked = true;
            entry.lease.fencing_token += 1;
        }
    }

    /// The reports counted for one lease, in arrival order.
    pub fn reports_of(&self, lease_id: &str) -> Vec<&Report> {
        self.reports
            .iter()
            .filter(|r| r.lease_id == lease_id)
            .collect()
    }

    /// The final report of a lease, if it came.
    pub fn final_report(&self, lease_id: &str) -> Option<&Report> {
        self.reports_of(lease_id)
            .into_iter()
            .find(|r| r.state.is_final())
    }

    /// All bytes of one stream of a lease's logs.
    pub fn log_bytes(&self, lease_id: &str, stream: LogStream) -> Vec<u8> {
        self.logs
            .get(&log_key(lease_id, stream))
            .map(|s| s.data.clone())
            .unwrap_or_default()
    }

    pub fn register(&mut self, request: RegisterRequest) -> Reply {
        if !request.protocol_versions.contains(&PROTOCOL_VERSION) {
            return error(
                400,
                ErrorCode::UnsupportedVersion,
                format!("this coordinator speaks protocol {PROTOCOL_VERSION} only: update farm"),
            );
        }
        let leases = request
            .leases
            .iter()
            .map(|l| self.verdict(&request.node_id, l))
            .collect();
        let unsupported = request
            .features
            .iter()
            .filter(|f| !WORKER_FEATURES.contains(&f.as_str()))
            .cloned()
            .collect();
        self.registrations.push(request);
        let answer = RegisterAnswer {
            protocol_version: PROTOCOL_VERSION,
            features: WORKER_FEATURES.iter().map(|f| f.to_string()).collect(),
            unsupported,
            heartbeat_interval_ms: self.settings.heartbeat_interval_ms,
            lease_grace_ms: self.settings.lease_grace_ms,
            poll_timeout_ms: self.settings.poll_timeout_ms,
            leases,
        };
        (200, ok_answer(&answer))
    }

    /// Leases for a poll, or `None` to keep holding it (until `last`).
    pub fn poll(&mut self, poll: &PollRequest, last: bool) -> Option<Reply> {
        let mut leases = Vec::new();
        while (leases.len() as u32) < poll.capacity.slots {
            let Some(lease_id) = self.queue.pop_front() else {
                break;
            };
            let ttl = self.settings.lease_ttl_ms;
            let entry = self.leases.get_mut(&lease_id).expect("queued lease");
            entry.node_id = Some(poll.node_id.clone());
            entry.expires = Some(Instant::now() + Duration::from_millis(ttl));
            leases.push(entry.lease.clone());
            self.events.push((lease_id, "leased".into(), unix_ms()));
        }
        if leases.is_empty() && !last {
            return None;
        }
        Some((200, ok_answer(&PollAnswer { leases })))
    }

    pub fn heartbeat(&mut self, request: HeartbeatRequest) -> Reply {
        self.heartbeats += 1;
        let leases = request
            .leases
            .iter()
            .map(|l| self.verdict(&request.node_id, l))
            .collect();
        (200, ok_answer(&HeartbeatAnswer { leases }))
    }

    /// Renew a lease the node holds, or say why it may not go on.
    fn verdict(&mut self, node_id: &str, held: &LeaseRef) -> LeaseStatus {
        let ttl = self.settings.lease_ttl_ms;
        let grace = Duration::from_millis(self.settings.lease_grace_ms);
        let mut status = LeaseStatus {
            lease_id: held.lease_id.clone(),
            status: LeaseVerdict::Gone,
            ttl_ms: 0,
            cancel_grace_ms: None,
        };
        let Some(entry) = self.leases.get_mut(&held.lease_id) else {
            return status;
        };
        let expired = entry.expires.is_some_and(|e| Instant::now() > e + grace);
        let ours = entry.node_id.as_deref() == Some(node_id)
            && entry.lease.fencing_token == held.fencing_token;
        if !ours || entry.revoked || expired {
            return status;
        }
        if let Some(grace) = entry.cancelled {
            status.status = LeaseVerdict::Cancelled;
            status.cancel_grace_ms = Some(grace);
            return status;
        }
        entry.expires = Some(Instant::now() + Duration::from_millis(ttl));
        status.status = LeaseVerdict::Active;
        status.ttl_ms = ttl;
        status
    }

    pub fn reports(&mut self, batch: ReportBatch) -> Reply {
        let mut acked = Vec::new();
        let mut refused = Vec::new();
        let mut countersigned = Vec::new();
        for report in batch.reports {
            let key = report.idempotency_key.clone();
            if let Some(counter) = self.countersign(&batch.node_id, &report) {
                countersigned.push(serde_json::json!({
                    "idempotency_key": key,
                    "countersignature": counter,
                }));
            }
            let count = self.key_counts.entry(key.clone()).or_default();
            *count += 1;
            if *count > 1 {
                acked.push(key);
                continue;
            }
            let current = self.leases.get(&report.lease_id);
            if current.is_none_or(|e| e.lease.fencing_token != report.fencing_token) {
                self.refused
                    .push((key.clone(), ErrorCode::StaleFencingToken));
                refused.push(serde_json::json!({
                    "idempotency_key": key,
                    "code": "stale_fencing_token",
                    "message": "this lease was given to another node since",
                }));
                continue;
            }
            if report.state.is_final()
                && report.container_id_seen(self)
                && !self.logs_ended(&report.lease_id)
            {
                self.finals_before_logs.push(report.lease_id.clone());
            }
            let what = format!("report:{}", report.state.as_str());
            self.events.push((report.lease_id.clone(), what, unix_ms()));
            self.reports.push(report);
            acked.push(key);
        }
        let answer = serde_json::json!({
            "acked": acked,
            "refused": refused,
            "countersigned": countersigned,
        });
        (200, ok_answer(&answer))
    }

    /// A final report's earnings record, countersigned when this coordinator signs and
    /// the record verifies as the sending node's (a repeated report is countersigned
    /// again: the first answer may have been lost).
    fn countersign(
        &self,
        node_id: &str,
        report: &Report,
    ) -> Option<farm_trust::record::Countersignature> {
        let seed = self.settings.signing_seed?;
        let signed = report
            .earnings
            .as_ref()
            .filter(|_| report.state.is_final())?;
        let valid = farm_trust::record::verify(signed).is_ok()
            && signed.signature.keyid == node_id
            && signed.record["lease_id"] == report.lease_id.as_str();
        valid.then(|| farm_trust::record::countersign(&seed, signed))
    }

    /// Both streams of the lease's logs ended (eof received).
    pub fn logs_ended(&self, lease_id: &str) -> bool {
        [LogStream::Stdout, LogStream::Stderr]
            .iter()
            .all(|s| self.logs.get(&log_key(lease_id, *s)).is_some_and(|l| l.eof))
    }

    pub fn log(&mut self, chunk: LogChunk) -> Reply {
        if self
            .leases
            .get(&chunk.lease_id)
            .map(|e| e.lease.fencing_token)
            != Some(chunk.fencing_token)
        {
            return error(409, ErrorCode::StaleFencingToken, "stale fencing token");
        }
        let stream = self
            .logs
            .entry(log_key(&chunk.lease_id, chunk.stream))
            .or_default();
        if chunk.seq < stream.next_seq {
            stream.duplicates += 1;
            return (
                200,
                ok_answer(&LogAnswer {
                    next_seq: stream.next_seq,
                }),
            );
        }
        if chunk.seq > stream.next_seq || chunk.offset != stream.data.len() as u64 {
            let mut body = ErrorBody {
                code: ErrorCode::SequenceGap,
                message: format!("expected seq {}", stream.next_seq),
                expected_seq: Some(stream.next_seq),
                received: Some(stream.data.len() as u64),
                retry_after_ms: None,
            };
            body.message.push_str(" at the offset given in `received`");
            return with_error(409, body);
        }
        use base64::Engine;
        let Ok(data) = base64::engine::general_purpose::STANDARD.decode(&chunk.data) else {
            return error(400, ErrorCode::BadRequest, "data is not base64");
        };
        stream.data.extend_from_slice(&data);
        stream.next_seq += 1;
        stream.eof |= chunk.eof;
        (
            200,
            ok_answer(&LogAnswer {
                next_seq: stream.next_seq,
            }),
        )
    }

    pub fn put_outputs(&mut self, lease_id: &str, request: &Request) -> Reply {
        let Some(entry) = self.leases.get(lease_id) else {
            return error(404, ErrorCode::UnknownLease, "no such lease");
        };
        let token: u64 = request
            .query("fencing_token")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if token != entry.lease.fencing_token {
            return error(409, ErrorCode::StaleFencingToken, "stale fencing token");
        }
        let cap = entry.lease.job.outputs.as_ref().map_or(0, |o| o.max_bytes);
        let size: u64 = request
            .query("size")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if size > cap {
            return error(
                413,
                ErrorCode::TooLarge,
                format!("outputs are capped at {cap} bytes"),
            );
        }
        let offset: u64 = request
            .query("offset")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let outputs = self.outputs.entry(lease_id.to_owned()).or_default();
        if offset != outputs.data.len() as u64 {
            let mut body = ErrorBody {
                code: ErrorCode::OffsetMismatch,
                message: "resume from `received`".into(),
                expected_seq: None,
                received: Some(outputs.data.len() as u64),
                retry_after_ms: None,
            };
            body.message.push_str(" bytes");
            return with_error(409, body);
        }
        outputs.data.extend_from_slice(&request.body);
        outputs.size = size;
        outputs.sha256 = request.query("sha256").unwrap_or_default().to_owned();
        if outputs.data.len() as u64 >= size {
            let digest = hex::encode(Sha256::digest(&outputs.data));
            if digest != outputs.sha256 || outputs.data.len() as u64 != size {
                outputs.data.clear();
                return error(
                    422,
                    ErrorCode::DigestMismatch,
                    "the tarball's sha256 differs: upload it again from 0",
                );
            }
            outputs.complete = true;
        }
        let answer = OutputsAnswer {
            received: outputs.data.len() as u64,
            complete: outputs.complete,
        };
        (200, ok_answer(&answer))
    }

    pub fn outputs_status(&self, lease_id: &str) -> Reply {
        let outputs = self.outputs.get(lease_id);
        let answer = OutputsAnswer {
            received: outputs.map_or(0, |o| o.data.len() as u64),
            complete: outputs.is_some_and(|o| o.complete),
        };
        (200, ok_answer(&answer))
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn log_key(lease_id: &str, stream: LogStream) -> String {
    format!("{lease_id}/{}", stream.as_str())
}

impl Report {
    /// Whether a `running` report of this lease came: only then are there logs.
    fn container_id_seen(&self, state: &State) -> bool {
        state
            .reports
            .iter()
            .any(|r| r.lease_id == self.lease_id && r.state == JobState::Running)
    }
}
