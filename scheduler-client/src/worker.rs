//! The worker loop: reconcile, register, then four loops until drained: poll for
//! leases, heartbeat (renew, cancel, lease loss), flush the outbox, and one task per job
//! (`job.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::lease::{LeaseTimer, Standing};
use crate::outbox::{Outbox, OutboxError};
use crate::protocol::*;
use crate::runtime::Runtime;
use crate::transport::{backoff, Transport, TransportError};
use crate::WorkerError;
use farm_trust::record::Countersignature;

/// Why a job is being stopped by the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub state: JobState,
    pub reason: ReasonCode,
    pub message: String,
    pub grace: Duration,
}

struct Held {
    lease: Lease,
    timer: LeaseTimer,
    state: JobState,
    stop: watch::Sender<Option<Stop>>,
}

/// Timings from the coordinator (defaults until registration answers).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub heartbeat: Duration,
    pub grace: Duration,
    pub poll: Duration,
}

pub struct Worker {
    pub(crate) config: Config,
    pub(crate) transport: Transport,
    outbox: Mutex<Outbox>,
    pub(crate) runtime: Runtime,
    pub(crate) node_id: String,
    jobs: Mutex<HashMap<String, Held>>,
    draining: AtomicBool,
    registered: AtomicBool,
    timings: Mutex<Timings>,
    reports_ready: Notify,
    job_ended: Notify,
    /// The node's keys: sign requests (through the transport) and earnings records.
    identity: Arc<farm_trust::Identity>,
    /// The farmer's `[policy]` and `[prices]` (config.toml), read at start.
    policy: crate::policy::Policy,
    prices: crate::protocol::Prices,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Worker {
    pub fn new(root: PathBuf, exe: PathBuf, config: Config) -> Result<Arc<Worker>, WorkerError> {
        let (policy, prices) = crate::policy::load(&root)?;
        let outbox = Outbox::open(&root)?;
        // One identity across restarts and reinstalls: the node id is the identity key's.
        let (identity, _) = farm_trust::Identity::init(&root)?;
        let node_id = identity.node_id();
        if outbox.node_id()? != node_id {
            outbox.set_meta("node_id", &node_id)?;
        }
        let identity = Arc::new(identity);
        let transport = Transport::new(&config.coordinators)?.with_trust(crate::transport::Trust {
            identity: identity.clone(),
            coordinator_key: config.coordinator_key,
            max_skew: config.max_clock_skew.as_secs(),
        });
        let runtime = Runtime {
            root,
            exe,
            insecure: config.insecure_registries.clone(),
            identity: identity.clone(),
        };
        Ok(Arc::new(Worker {
            config,
            transport,
            outbox: Mutex::new(outbox),
            runtime,
            node_id,
            identity,
            policy,
            prices,
            jobs: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            timings: Mutex::new(Timings {
                heartbeat: Duration::from_secs(5),
                grace: Duration::from_secs(60),
                poll: Duration::from_secs(30),
            }),
            reports_ready: Notify::new(),
            job_ended: Notify::new(),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn coordinator(&self) -> String {
        self.transport.current_url()
    }

    pub(crate) fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn timings(&self) -> Timings {
        *self.timings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a job's change and queue its report (one transaction), then wake the
    /// outbox loop.
    pub(crate) fn record(&self, lease: &Lease, change: Change) -> Result<(), OutboxError> {
        let report = change.report(lease);
        if let Some(held) = self.jobs().get_mut(&lease.lease_id) {
            held.state = report.state;
        }
        let earnings = crate::earnings::record(&self.node_id, lease, &report, &self.prices)
            .map(|record| farm_trust::record::sign(&self.identity, record));
        self.outbox().record_with_earnings(report, earnings)?;
        self.reports_ready.notify_one();
        Ok(())
    }

    /// Keep a lease in memory (renewed by heartbeats) and return its stop channel.
    pub(crate) fn hold(&self, lease: &Lease, state: JobState) -> watch::Receiver<Option<Stop>> {
        let (stop, receiver) = watch::channel(None);
        let timer = LeaseTimer::new(
            Instant::now(),
            Duration::from_millis(lease.ttl_ms),
            self.timings().grace,
        );
        self.jobs().insert(
            lease.lease_id.clone(),
            Held {
                lease: lease.clone(),
                timer,
                state,
                stop,
            },
        );
        receiver
    }

    pub(crate) fn release(&self, lease_id: &str) {
        self.jobs().remove(lease_id);
        self.job_ended.notify_waiters();
    }

    pub(crate) fn stop_job(&self, lease_id: &str, stop: Stop) {
        if let Some(held) = self.jobs().get(lease_id) {
            held.stop.send_if_modified(|current| {
                if current.is_none() {
                    *current = Some(stop);
                    true
                } else {
                    false
                }
            });
        }
    }

    fn held_refs(&self) -> Vec<LeaseRef> {
        self.jobs()
            .values()
            .map(|h| LeaseRef {
                lease_id: h.lease.lease_id.clone(),
                fencing_token: h.lease.fencing_token,
                state: h.state,
            })
            .collect()
    }

    fn running(&self) -> usize {
        self.jobs().len()
    }

    /// Register until a coordinator answers; apply its timings and lease verdicts.
    async fn register(&self) {
        let mut attempt = 0;
        loop {
            let request = RegisterRequest {
                protocol_versions: SUPPORTED_VERSIONS.to_vec(),
                worker_version: env!("CARGO_PKG_VERSION").to_owned(),
                features: WORKER_FEATURES.iter().map(|f| f.to_string()).collect(),
                node_id: self.node_id.clone(),
                boot_id: crate::runtime::boot_id(),
                inventory: self.runtime.inventory(),
                labels: self.config.labels.clone(),
                capacity: self.capacity(),
                leases: self.held_refs(),
                prices: self.prices.clone(),
            };
            let answer: Result<RegisterAnswer, _> = self
                .transport
                .call("v1/register", &request, Duration::from_secs(10))
                .await;
            self.note_transport(answer.as_ref().err());
            match answer {
                Ok(answer) => return self.registered(answer),
                Err(_) => {
                    self.expire_leases();
                    attempt += 1;
                    let wait =
                        backoff(attempt, Duration::from_millis(200), Duration::from_secs(30));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn registered(&self, answer: RegisterAnswer) {
        *self.timings.lock().unwrap_or_else(|e| e.into_inner()) = Timings {
            heartbeat: Duration::from_millis(answer.heartbeat_interval_ms.max(50)),
            grace: Duration::from_millis(answer.lease_grace_ms),
            poll: Duration::from_millis(answer.poll_timeout_ms.max(100)),
        };
        let grace = self.timings().grace;
        for held in self.jobs().values_mut() {
            held.timer = LeaseTimer::new(
                Instant::now(),
                Duration::from_millis(held.lease.ttl_ms),
                grace,
            );
        }
        self.apply_verdicts(&answer.leases);
        self.registered.store(true, Ordering::SeqCst);
    }

    /// What this node can still take: free slots within `max_jobs`, the machine's
    /// CPUs and memory less the farmer's reserve.
    fn capacity(&self) -> Capacity {
        let info = farm_runtime::info::read_cpuinfo(std::path::Path::new("/proc/cpuinfo"));
        let memory = farm_runtime::info::read_meminfo(std::path::Path::new("/proc/meminfo"));
        let draining = self.draining.load(Ordering::SeqCst);
        let free = (self.config.max_jobs as usize).saturating_sub(self.running());
        Capacity {
            slots: if draining { 0 } else { free as u32 },
            cpus: (info.logical_cores.unwrap_or(1) as f64 - self.config.reserve_cpus).max(0.0),
            memory_bytes: memory
                .available_bytes
                .unwrap_or(0)
                .saturating_sub(self.config.reserve_memory),
            gpus: 0,
        }
    }

    fn note_transport(&self, error: Option<&TransportError>) {
        let outbox = self.outbox();
        let _ = outbox.set_meta("coordinator", &self.transport.current_url());
        match error {
            Some(error) => {
                let _ = outbox.set_meta("last_error", &error.to_string());
                let _ = outbox.set_meta("last_error_ms", &now_ms().to_string());
            }
            None => {
                let _ = outbox.set_meta("last_contact_ms", &now_ms().to_string());
            }
        }
    }

    fn apply_verdicts(&self, verdicts: &[LeaseStatus]) {
        let grace = |ms: Option<u64>| Duration::from_millis(ms.unwrap_or(10_000));
        for verdict in verdicts {
            match verdict.status {
                LeaseVerdict::Active => {
                    if let Some(held) = self.jobs().get_mut(&verdict.lease_id) {
                        held.timer
                            .renew(Instant::now(), Duration::from_millis(verdict.ttl_ms));
                    }
                }
                LeaseVerdict::Cancelled => self.stop_job(
                    &verdict.lease_id,
                    Stop {
                        state: JobState::Cancelled,
                        reason: ReasonCode::Cancelled,
                        message: "cancelled by the coordinator".into(),
                        grace: grace(verdict.cancel_grace_ms),
                    },
                ),
                LeaseVerdict::Gone | LeaseVerdict::Unknown => self.stop_job(
                    &verdict.lease_id,
                    lease_lost("the coordinator no longer gives this lease to this node"),
                ),
            }
        }
    }

    /// Stop jobs whose lease ran out past its grace without a renewal.
    fn expire_leases(&self) {
        let now = Instant::now();
        let lost: Vec<String> = self
            .jobs()
            .values()
            .filter(|h| h.timer.standing(now) == Standing::Lost)
            .map(|h| h.lease.lease_id.clone())
            .collect();
        for lease_id in lost {
            self.stop_job(
                &lease_id,
                lease_lost(
                    "no renewal from any coordinator within the lease's time to live and grace",
                ),
            );
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        self.register().await;
        loop {
            let timings = self.timings();
            let shortest_ttl = self
                .jobs()
                .values()
                .map(|h| Duration::from_millis(h.lease.ttl_ms))
                .min()
                .unwrap_or(Duration::ZERO);
            let period = crate::lease::heartbeat_period(timings.heartbeat, shortest_ttl);
            tokio::time::sleep(period).await;
            let request = HeartbeatRequest {
                node_id: self.node_id.clone(),
                draining: self.draining.load(Ordering::SeqCst),
                leases: self.held_refs(),
            };
            let answer: Result<HeartbeatAnswer, _> = self
                .transport
                .call("v1/heartbeat", &request, Duration::from_secs(10))
                .await;
            self.note_transport(answer.as_ref().err());
            match answer {
                Ok(answer) => self.apply_verdicts(&answer.leases),
                Err(e) if e.code() == Some(ErrorCode::UnknownNode) => self.register().await,
                Err(_) => {}
            }
            self.expire_leases();
        }
    }

    async fn poll_loop(self: Arc<Self>) {
        let mut attempt = 0;
        while !self.draining.load(Ordering::SeqCst) {
            let capacity = self.capacity();
            if capacity.slots == 0 || !self.registered.load(Ordering::SeqCst) {
                let ended = self.job_ended.notified();
                let _ = tokio::time::timeout(Duration::from_millis(500), ended).await;
                continue;
            }
            let wait = self.timings().poll;
            let request = PollRequest {
                node_id: self.node_id.clone(),
                capacity,
                wait_ms: wait.as_millis() as u64,
            };
            let answer: Result<PollAnswer, _> = self
                .transport
                .call("v1/leases/poll", &request, wait + Duration::from_secs(10))
                .await;
            match answer {
                Ok(answer) => {
                    attempt = 0;
                    for lease in answer.leases {
                        self.clone().take(lease);
                    }
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(100),
                        Duration::from_secs(10),
                    ))
                    .await;
                }
            }
        }
    }

    /// A lease offered: through the policy, then into the outbox and a job task.
    fn take(self: Arc<Self>, lease: Lease) {
        let change = match crate::policy::accept(&lease, &self.policy, &self.prices) {
            crate::policy::Decision::Accept => Change::new(JobState::Accepted),
            crate::policy::Decision::Refuse(refusal) => Change {
                exit: Some(ExitInfo {
                    code: None,
                    oom_killed: false,
                    reason_code: ReasonCode::Refused,
                    reason: refusal.to_string(),
                    refusal: Some(refusal.info()),
                }),
                ..Change::new(JobState::Failed)
            },
        };
        let state = change.state.unwrap_or(JobState::Unknown);
        if let Err(e) = self.outbox().insert_job(&lease, change.report(&lease)) {
            eprintln!("farm worker: {e}");
            return;
        }
        self.reports_ready.notify_one();
        if state == JobState::Accepted {
            let stop = self.hold(&lease, state);
            tokio::spawn(crate::job::run(
                self.clone(),
                lease,
                crate::job::Start::Fresh,
                stop,
            ));
        }
    }

    async fn outbox_loop(self: Arc<Self>) {
        let mut attempt = 0;
        loop {
            let pending = self.outbox().pending(100).unwrap_or_default();
            if pending.is_empty() {
                let ready = self.reports_ready.notified();
                let _ = tokio::time::timeout(Duration::from_millis(500), ready).await;
                continue;
            }
            match self.send_reports(pending).await {
                Ok(()) => attempt = 0,
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(100),
                        Duration::from_secs(10),
                    ))
                    .await;
                }
            }
        }
    }

    async fn send_reports(&self, reports: Vec<Report>) -> Result<(), TransportError> {
        let batch = ReportBatch {
            node_id: self.node_id.clone(),
            reports,
        };
        let answer: ReportAnswer = self
            .transport
            .call("v1/reports", &batch, Duration::from_secs(15))
            .await?;
        let mut done = answer.acked;
        for refusal in answer.refused {
            eprintln!(
                "farm worker: the coordinator refused report {}: {} ({:?})",
                refusal.idempotency_key, refusal.message, refusal.code
            );
            done.push(refusal.idempotency_key);
        }
        if let Err(e) = self.outbox().ack(&done) {
            eprintln!("farm worker: {e}");
        }
        for counter in answer.countersigned {
            self.keep_countersignature(&counter.idempotency_key, &counter.countersignature);
        }
        Ok(())
    }

    /// The coordinator's countersignature of a finished job's earnings: kept when it
    /// verifies (with the pinned coordinator key, when one is pinned), else logged.
    fn keep_countersignature(&self, key: &str, counter: &Countersignature) {
        let outbox = self.outbox();
        let Ok(Some(mut signed)) = outbox.earnings_of_report(key) else {
            eprintln!(
                "farm worker: a countersignature for report {key}, which has no earnings record"
            );
            return;
        };
        signed.countersignature = Some(counter.clone());
        let pinned = self.config.coordinator_key.as_ref();
        match farm_trust::record::verify_countersignature(&signed, pinned) {
            Ok(_) => {
                let lease = signed.record["lease_id"].as_str().unwrap_or_default();
                if let Err(e) = outbox.countersigned(lease, counter) {
                    eprintln!("farm worker: {e}");
                }
            }
            Err(e) => {
                eprintln!("farm worker: the countersignature of report {key} is refused: {e}")
            }
        }
    }

    /// Until every report is acknowledged or `limit` passes.
    async fn flush(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            let pending = self.outbox().pending(100).unwrap_or_default();
            if pending.is_empty() {
                return;
            }
            if self.send_reports(pending).await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// SIGTERM: take no new lease; give running jobs the drain timeout, then stop them.
    async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + self.config.drain_timeout;
        while self.running() > 0 && Instant::now() < deadline {
            let ended = self.job_ended.notified();
            let _ = tokio::time::timeout(Duration::from_millis(200), ended).await;
        }
        let left: Vec<String> = self.jobs().keys().cloned().collect();
        for lease_id in left {
            self.stop_job(
                &lease_id,
                Stop {
                    state: JobState::Lost,
                    reason: ReasonCode::Drained,
                    message: format!("the worker was shut down; the job did not end within the drain timeout of {:?}", self.config.drain_timeout),
                    grace: Duration::from_secs(10),
                },
            );
        }
        while self.running() > 0 {
            let ended = self.job_ended.notified();
            let _ = tokio::time::timeout(Duration::from_millis(200), ended).await;
        }
        self.flush(Duration::from_secs(10)).await;
    }
}

pub(crate) fn lease_lost(message: &str) -> Stop {
    Stop {
        state: JobState::Lost,
        reason: ReasonCode::LeaseLost,
        message: message.to_owned(),
        grace: Duration::from_secs(10),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ReportAnswer {
    #[serde(default)]
    acked: Vec<String>,
    #[serde(default)]
    refused: Vec<Refused>,
    #[serde(default)]
    countersigned: Vec<Countersigned>,
}

#[derive(Debug, serde::Deserialize)]
struct Countersigned {
    idempotency_key: String,
    countersignature: Countersignature,
}

#[derive(Debug, serde::Deserialize)]
struct Refused {
    idempotency_key: String,
    #[serde(default)]
    code: Option<ErrorCode>,
    #[serde(default)]
    message: String,
}

/// One state change of a job, as it will be reported.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub state: Option<JobState>,
    pub container_id: Option<String>,
    pub exit: Option<ExitInfo>,
    pub usage: Option<Usage>,
    pub outputs: Option<OutputsInfo>,
}

impl Change {
    pub fn new(state: JobState) -> Change {
        Change {
            state: Some(state),
            ..Change::default()
        }
    }

    pub fn report(self, lease: &Lease) -> Report {
        let state = self.state.unwrap_or(JobState::Unknown);
        Report {
            idempotency_key: idempotency_key(&lease.lease_id, lease.fencing_token, state),
            seq: 0,
            lease_id: lease.lease_id.clone(),
            job_id: lease.job_id.clone(),
            fencing_token: lease.fencing_token,
            state,
            at_ms: now_ms(),
            container_id: self.container_id,
            exit: self.exit,
            usage: self.usage,
            outputs: self.outputs,
            earnings: None,
        }
    }
}

/// Reconcile, then run until `shutdown` resolves and the drain is done.
pub async fn run(
    worker: Arc<Worker>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    crate::job::reconcile(&worker).await?;
    let loops = [
        tokio::spawn(worker.clone().heartbeat_loop()),
        tokio::spawn(worker.clone().poll_loop()),
        tokio::spawn(worker.clone().outbox_loop()),
    ];
    shutdown.await;
    worker.drain().await;
    for task in loops {
        task.abort();
    }
    Ok(())
}
