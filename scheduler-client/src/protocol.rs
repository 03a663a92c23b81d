//! The wire types of the worker protocol, version 1: the one place that mirrors
//! `docs/worker-protocol.md` (change both together). No IO, no clock.
//!
//! Unknown fields are ignored (a newer coordinator may add some); unknown enum values
//! become an `Unknown` variant, never a parse error.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version this worker speaks best.
pub const PROTOCOL_VERSION: u32 = 1;
/// Every version this worker can speak, newest first.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];
/// Optional features this worker offers at registration.
pub const WORKER_FEATURES: &[&str] = &["logs.v1", "outputs.v1", "usage.v1", "cancel.v1"];

/// `POST /v1/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub protocol_versions: Vec<u32>,
    pub worker_version: String,
    pub features: Vec<String>,
    pub node_id: String,
    pub boot_id: String,
    /// What `farm info --json` prints (CPU, memory, disk, kernel, cgroup, sandbox, GPUs).
    pub inventory: serde_json::Value,
    /// The farmer's labels: `region`, `tier`, `carbon_gco2_kwh`, any key=value.
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    /// Leases this worker still holds (after a restart).
    pub leases: Vec<LeaseRef>,
    /// The farmer's prices, so the coordinator can show a job's cost before it runs.
    #[serde(default)]
    pub prices: Prices,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAnswer {
    pub protocol_version: u32,
    #[serde(default)]
    pub features: Vec<String>,
    /// Worker features the coordinator does not support (the worker does without).
    #[serde(default)]
    pub unsupported: Vec<String>,
    pub heartbeat_interval_ms: u64,
    pub lease_grace_ms: u64,
    pub poll_timeout_ms: u64,
    /// The coordinator's view of each lease listed in the request.
    #[serde(default)]
    pub leases: Vec<LeaseStatus>,
}

/// What the worker can still take: after the farmer's reserve and running jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub slots: u32,
    pub cpus: f64,
    pub memory_bytes: u64,
    #[serde(default)]
    pub gpus: u32,
}

/// `POST /v1/leases/poll`: held by the coordinator up to `wait_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollRequest {
    pub node_id: String,
    pub capacity: Capacity,
    pub wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollAnswer {
    #[serde(default)]
    pub leases: Vec<Lease>,
}

/// One job given to this node, for as long as the lease is renewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_id: String,
    pub job_id: String,
    pub attempt: u32,
    /// Grows each time the job is leased again; every report echoes it.
    pub fencing_token: u64,
    /// The lease ends this long after the last renewal the coordinator answered.
    pub ttl_ms: u64,
    pub job: JobSpec,
}

/// What `farm run` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    pub image: String,
    pub registry_auth: Option<RegistryAuth>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub pids_limit: Option<i64>,
    pub gpus: Option<String>,
    pub time_limit_ms: Option<u64>,
    pub network: Network,
    pub outputs: Option<Outputs>,
    /// How long a stop (cancel, lease loss, drain) waits after the stop signal.
    pub stop_grace_ms: Option<u64>,
    /// Secret environment variables, each value a libsodium sealed box (base64) to the
    /// node's `x25519_public_key`: opened in the worker's memory only.
    pub sealed_env: BTreeMap<String, String>,
    /// Registry credentials `USERNAME:PASSWORD`, sealed the same way (instead of
    /// `registry_auth`).
    pub sealed_registry_auth: Option<String>,
    /// The GPU model the job wants (`NVIDIA A100-SXM4-80GB`), for the farmer's allow-list.
    pub gpu_model: Option<String>,
    /// Who pays: their account and its "dust" (the network's reputation token).
    pub requester: Option<Requester>,
    /// What the job pays, per resource; checked against the farmer's price floors.
    pub offer: Option<Prices>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requester {
    pub account: String,
    pub dust: u64,
}

/// Credits per resource-hour (and per GB of egress): a farmer's prices, published at
/// registration, or what a job offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    pub cpu_hour: f64,
    pub memory_gb_hour: f64,
    /// By GPU model; the key `default` applies to a model not listed.
    pub gpu_hour: BTreeMap<String, f64>,
    pub egress_gb: f64,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryAuth(***)")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    #[default]
    None,
    Internet,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    /// Absolute path inside the container; a fresh host folder is bound there.
    pub path: String,
    /// The most bytes the tarball may have.
    pub max_bytes: u64,
}

/// A lease as the worker names it in heartbeats and registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRef {
    pub lease_id: String,
    pub fencing_token: u64,
    pub state: JobState,
}

/// `POST /v1/heartbeat`: renews every lease listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub node_id: String,
    pub draining: bool,
    pub leases: Vec<LeaseRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    #[serde(default)]
    pub leases: Vec<LeaseStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub lease_id: String,
    pub status: LeaseVerdict,
    /// For `active`: the new time to live from now.
    #[serde(default)]
    pub ttl_ms: u64,
    /// For `cancelled`: how long the job gets after its stop signal.
    #[serde(default)]
    pub cancel_grace_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseVerdict {
    /// Renewed: keep running.
    Active,
    /// The job's owner cancelled it: stop it, report `cancelled`.
    Cancelled,
    /// The coordinator no longer gives this lease to this node (expired, re-leased with a
    /// higher fencing token, or never known): stop it, report `lost`.
    Gone,
    #[serde(other)]
    Unknown,
}

/// `POST /v1/reports`: state changes and final usage, in seq order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    pub node_id: String,
    pub reports: Vec<Report>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `lease_id:fencing_token:state`: the coordinator counts a key once.
    pub idempotency_key: String,
    /// Per node, grows by one for each report queued.
    pub seq: u64,
    pub lease_id: String,
    pub job_id: String,
    pub fencing_token: u64,
    pub state: JobState,
    /// Unix milliseconds when the worker recorded the change.
    pub at_ms: u64,
    #[serde(default)]
    pub container_id: Option<String>,
    #[serde(default)]
    pub exit: Option<ExitInfo>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub outputs: Option<OutputsInfo>,
    /// A final report with usage: the node's signed usage and earnings record, which the
    /// coordinator countersigns in its answer (`countersigned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earnings: Option<farm_trust::record::SignedRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Accepted,
    Pulling,
    Running,
    /// The container ended on its own (any exit code, OOM, time limit).
    Exited,
    /// The job could not be run (pull or start failed, refused).
    Failed,
    Cancelled,
    /// The job ended without its own doing: lease lost, drain, machine restarted.
    Lost,
    #[serde(other)]
    Unknown,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Exited | JobState::Failed | JobState::Cancelled | JobState::Lost
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Accepted => "accepted",
            JobState::Pulling => "pulling",
            JobState::Running => "running",
            JobState::Exited => "exited",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Lost => "lost",
            JobState::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The container's exit code (128+signal after a signal); absent when it never ran.
    pub code: Option<i32>,
    pub oom_killed: bool,
    pub reason_code: ReasonCode,
    /// The reason in words, for people.
    pub reason: String,
    /// For `refused`: which of the farmer's limits the offer hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalInfo>,
}

/// A refused offer, machine-readable: `code` (snake_case), the farmer's `limit` and what
/// the job `asked`, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalInfo {
    pub code: String,
    pub limit: String,
    pub asked: String,
}

/// Why a job ended as it did: one stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    Completed,
    NonZeroExit,
    OomKilled,
    TimeLimit,
    Cancelled,
    LeaseLost,
    Drained,
    MachineRestarted,
    MonitorDied,
    PullFailed,
    StartFailed,
    OutputsTooLarge,
    OutputsFailed,
    Refused,
    #[serde(other)]
    Unknown,
}

/// Totals for the whole job (never deltas): a doubled report changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub peak_memory_bytes: u64,
    pub wall_s: f64,
    #[serde(default)]
    pub gpu_seconds: BTreeMap<String, f64>,
    #[serde(default)]
    pub energy_joules: Option<f64>,
    #[serde(default)]
    pub net_rx_bytes: Option<u64>,
    #[serde(default)]
    pub net_tx_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputsInfo {
    pub size: u64,
    pub sha256: String,
}

/// `POST /v1/logs`: one chunk of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    pub node_id: String,
    pub lease_id: String,
    pub fencing_token: u64,
    pub stream: LogStream,
    /// Per lease and stream, from 0, one more for each chunk.
    pub seq: u64,
    /// Bytes of this stream before this chunk.
    pub offset: u64,
    /// The bytes, base64 (standard alphabet, padded).
    pub data: String,
    /// The stream has ended: no chunk follows.
    pub eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAnswer {
    pub next_seq: u64,
}

/// `PUT /v1/outputs/{lease_id}` answers and `GET /v1/outputs/{lease_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputsAnswer {
    /// Bytes the coordinator holds of this lease's tarball.
    pub received: u64,
    #[serde(default)]
    pub complete: bool,
}

/// `{"error": {"code": ..., "message": ...}}`, plus fields some codes carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// With `sequence_gap`: the seq the coordinator expects next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_seq: Option<u64>,
    /// With `offset_mismatch`: the bytes the coordinator holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// With `unavailable` or `rate_limited`: wait at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnsupportedVersion,
    UnknownNode,
    UnknownLease,
    StaleFencingToken,
    SequenceGap,
    OffsetMismatch,
    TooLarge,
    DigestMismatch,
    RateLimited,
    Unavailable,
    #[serde(other)]
    Unknown,
}

/// An answer that is neither `{"result":"ok",...}` nor a well-formed error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("the coordinator's answer is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the coordinator refused: {} ({})", .0.message, serde_json::to_string(&.0.code).unwrap_or_default())]
    Refused(Box<ErrorBody>),
    #[error("the coordinator's answer has neither \"result\": \"ok\" nor \"error\"")]
    NoResult,
    #[error("the coordinator's answer does not have the fields of protocol v1: {0}")]
    Shape(#[source] serde_json::Error),
}

/// Parse an answer body: `{"result":"ok", ...T}` or `{"error": {...}}`.
pub fn parse_answer<T: DeserializeOwned>(body: &[u8]) -> Result<T, AnswerError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(AnswerError::NotJson)?;
    if let Some(error) = value.get("error") {
        let error: ErrorBody = serde_json::from_value(error.clone()).map_err(AnswerError::Shape)?;
        return Err(AnswerError::Refused(Box::new(error)));
    }
    if value.get("result").and_then(|r| r.as_str()) != Some("ok") {
        return Err(AnswerError::NoResult);
    }
    serde_json::from_value(value).map_err(AnswerError::Shape)
}

/// An ok answer as the coordinator writes it: `T`'s fields plus `"result": "ok"`.
pub fn ok_answer<T: Serialize>(body: &T) -> Vec<u8> {
    let mut value = serde_json::to_value(body).unwrap_or(serde_json::json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("result".into(), "ok".into());
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// An error answer: `{"error": {...}}`.
pub fn error_answer(error: &ErrorBody) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default()
}

/// The idempotency key of a report: the same change of the same lease has the same key.
pub fn idempotency_key(lease_id: &str, fencing_token: u64, state: JobState) -> String {
    format!("{lease_id}:{fencing_token}:{}", state.as_str())
}

#[cfg(test)]
mod tests;
