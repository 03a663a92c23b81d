//! One job's task: pull, start, watch (logs streamed, stop on cancel or lease loss),
//! then logs to the end, outputs, and the final report, in that order. The same task
//! picks up a job after a restart, from what [`reconcile`] decided.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::logship::LogShipper;
use crate::outbox::OutboxError;
use crate::protocol::*;
use crate::reconcile::{decide, ContainerView, Decision};
use crate::runtime::Ended;
use crate::worker::{Change, Stop, Worker};
use crate::WorkerError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Adopt(String),
    Finish(String),
}

/// How often a running job is looked at (exit, stop request, new log output).
const WATCH: Duration = Duration::from_millis(200);

pub async fn run(
    worker: Arc<Worker>,
    lease: Lease,
    start: Start,
    mut stop: watch::Receiver<Option<Stop>>,
) {
    if let Err(e) = drive(&worker, &lease, start, &mut stop).await {
        eprintln!("farm worker: job {}: {e}", lease.job_id);
    }
    worker.release(&lease.lease_id);
}

async fn drive(
    worker: &Arc<Worker>,
    lease: &Lease,
    start: Start,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Result<(), OutboxError> {
    let id = match start {
        Start::Fresh => match launch(worker, lease, stop).await? {
            Some(id) => id,
            None => return Ok(()),
        },
        Start::Adopt(id) => {
            let mut change = Change::new(JobState::Running);
            change.container_id = Some(id.clone());
            worker.record(lease, change)?;
            id
        }
        Start::Finish(id) => id,
    };
    let stopped = watch_container(worker, lease, &id, stop).await;
    finish(worker, lease, &id, stopped).await
}

/// Pull and start; `None` when the job ended before a container ran (its final report
/// recorded).
async fn launch(
    worker: &Arc<Worker>,
    lease: &Lease,
    stop: &watch::Receiver<Option<Stop>>,
) -> Result<Option<String>, OutboxError> {
    worker.record(lease, Change::new(JobState::Pulling))?;
    let image = match worker.runtime.pull(&lease.job).await {
        Ok(image) => image,
        Err(e) => {
            worker.record(lease, failed(ReasonCode::PullFailed, e.to_string()))?;
            return Ok(None);
        }
    };
    if let Some(stop) = stop.borrow().clone() {
        worker.record(lease, stop_change(&stop, None))?;
        return Ok(None);
    }
    let runtime = worker.runtime.clone();
    let for_start = lease.clone();
    let started = tokio::task::spawn_blocking(move || runtime.start(&for_start, image)).await;
    match started {
        Ok(Ok(id)) => {
            let mut change = Change::new(JobState::Running);
            change.container_id = Some(id.clone());
            worker.record(lease, change)?;
            Ok(Some(id))
        }
        Ok(Err(e)) => {
            worker.record(lease, failed(ReasonCode::StartFailed, e.to_string()))?;
            Ok(None)
        }
        Err(e) => {
            worker.record(lease, failed(ReasonCode::StartFailed, e.to_string()))?;
            Ok(None)
        }
    }
}

fn failed(reason: ReasonCode, message: String) -> Change {
    let mut change = Change::new(JobState::Failed);
    change.exit = Some(ExitInfo {
        code: None,
        oom_killed: false,
        reason_code: reason,
        reason: message,
        refusal: None,
    });
    change
}

/// Until the container ends: stream its logs, and stop it when asked (once).
async fn watch_container(
    worker: &Arc<Worker>,
    lease: &Lease,
    id: &str,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Option<Stop> {
    let mut shipper = LogShipper::load(worker, lease, id);
    let mut applied: Option<Stop> = None;
    loop {
        if matches!(worker.runtime.ended(id), Ok(Some(_)) | Err(_)) {
            return applied;
        }
        let requested = stop.borrow().clone();
        if let (None, Some(request)) = (&applied, requested) {
            let runtime = worker.runtime.clone();
            let (id, grace) = (id.to_owned(), request.grace);
            tokio::task::spawn_blocking(move || runtime.stop(&id, grace));
            applied = Some(request);
        }
        let _ = shipper.ship(worker, false).await;
        tokio::select! {
            _ = tokio::time::sleep(WATCH) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Logs to the end, outputs, then the final report (logs always first).
async fn finish(
    worker: &Arc<Worker>,
    lease: &Lease,
    id: &str,
    stopped: Option<Stop>,
) -> Result<(), OutboxError> {
    let ended = worker.runtime.ended(id).ok().flatten();
    let mut shipper = LogShipper::load(worker, lease, id);
    shipper.ship_all(worker).await;
    let outputs = match &lease.job.outputs {
        Some(outputs) => Some(crate::outputs::deliver(worker, lease, outputs.max_bytes).await),
        None => None,
    };
    let mut change = match &stopped {
        Some(stop) => stop_change(stop, ended.as_ref()),
        None => exit_change(ended.as_ref()),
    };
    match outputs {
        Some(Ok(info)) => change.outputs = Some(info),
        Some(Err((reason, message))) => {
            if let Some(exit) = change.exit.as_mut() {
                if matches!(
                    exit.reason_code,
                    ReasonCode::Completed | ReasonCode::NonZeroExit
                ) {
                    exit.reason_code = reason;
                    exit.reason = message;
                }
            }
        }
        None => {}
    }
    worker.record(lease, change)?;
    clean_up(worker, lease, Some(id)).await;
    Ok(())
}

/// The job's container and outputs, once its final report is in the outbox.
async fn clean_up(worker: &Arc<Worker>, lease: &Lease, id: Option<&str>) {
    let runtime = worker.runtime.clone();
    let (lease, id) = (lease.clone(), id.map(str::to_owned));
    let removed = tokio::task::spawn_blocking(move || runtime.remove(&lease, id.as_deref())).await;
    if let Ok(Err(e)) = removed {
        eprintln!("farm worker: removing a finished job's container: {e}");
    }
}

fn stop_change(stop: &Stop, ended: Option<&Ended>) -> Change {
    let mut change = Change::new(stop.state);
    change.exit = Some(ExitInfo {
        code: ended.map(|e| e.exit.code),
        oom_killed: ended.is_some_and(|e| e.exit.oom_killed),
        reason_code: stop.reason,
        reason: stop.message.clone(),
        refusal: None,
    });
    change.usage = ended.map(usage);
    change
}

fn exit_change(ended: Option<&Ended>) -> Change {
    let Some(ended) = ended else {
        let mut change = Change::new(JobState::Lost);
        change.exit = Some(ExitInfo {
            code: None,
            oom_killed: false,
            reason_code: ReasonCode::MonitorDied,
            reason: "the job's container record is gone".into(),
            refusal: None,
        });
        return change;
    };
    let exit = &ended.exit;
    let error = exit.error.clone().unwrap_or_default();
    let (state, reason_code, reason) = if exit.oom_killed {
        (
            JobState::Exited,
            ReasonCode::OomKilled,
            "the kernel's OOM killer ended it: it used all the memory it was given".to_owned(),
        )
    } else if error.contains("--timeout") {
        (
            JobState::Exited,
            ReasonCode::TimeLimit,
            format!("stopped at its time limit: {error}"),
        )
    } else if error.contains("monitor") {
        (JobState::Lost, ReasonCode::MonitorDied, error)
    } else if !error.is_empty() {
        (JobState::Failed, ReasonCode::StartFailed, error)
    } else if exit.code == 0 {
        (
            JobState::Exited,
            ReasonCode::Completed,
            "exited with code 0".to_owned(),
        )
    } else {
        (
            JobState::Exited,
            ReasonCode::NonZeroExit,
            format!("exited with code {}", exit.code),
        )
    };
    let mut change = Change::new(state);
    change.exit = Some(ExitInfo {
        code: Some(exit.code),
        oom_killed: exit.oom_killed,
        reason_code,
        reason,
        refusal: None,
    });
    change.usage = Some(usage(ended));
    change
}

/// Totals from the runtime's exit record.
fn usage(ended: &Ended) -> Usage {
    let exit = &ended.exit;
    let energy: Vec<f64> = exit.gpus.iter().filter_map(|g| g.energy_joules).collect();
    Usage {
        cpu_user_s: exit.usage.cpu_user_ns as f64 / 1e9,
        cpu_system_s: exit.usage.cpu_system_ns as f64 / 1e9,
        peak_memory_bytes: exit.usage.memory_peak_bytes,
        wall_s: exit.wall_seconds,
        gpu_seconds: exit
            .gpus
            .iter()
            .map(|g| (g.id.clone(), g.seconds))
            .collect(),
        energy_joules: (!energy.is_empty()).then(|| energy.iter().sum()),
        net_rx_bytes: exit.network.as_ref().map(|n| n.rx_bytes),
        net_tx_bytes: exit.network.as_ref().map(|n| n.tx_bytes),
    }
}

/// At start: each job the outbox still holds, against the runtime and the boot id.
pub async fn reconcile(worker: &Arc<Worker>) -> Result<(), WorkerError> {
    worker.runtime.repair()?;
    let boot = crate::runtime::boot_id();
    let rebooted = {
        let outbox = worker.outbox();
        let stored = outbox.meta("boot_id")?;
        outbox.set_meta("boot_id", &boot)?;
        stored.is_some_and(|stored| stored != boot)
    };
    let jobs = worker.outbox().jobs()?;
    for job in jobs {
        let view = worker
            .runtime
            .view(&job.lease, job.container_id.as_deref())?;
        let start = match decide(&job, &view, rebooted) {
            Decision::Deliver => continue,
            Decision::Lost { reason, message } => {
                let stop = Stop {
                    state: JobState::Lost,
                    reason,
                    message,
                    grace: Duration::ZERO,
                };
                worker.record(&job.lease, stop_change(&stop, None))?;
                clean_up(worker, &job.lease, view.id()).await;
                continue;
            }
            Decision::Restart => {
                // A container made but never run holds the job's name: it goes first.
                if let ContainerView::NeverStarted { id } = &view {
                    clean_up(worker, &job.lease, Some(id)).await;
                }
                Start::Fresh
            }
            Decision::Adopt { id } => Start::Adopt(id),
            Decision::Finish { id } => Start::Finish(id),
        };
        let stop = worker.hold(&job.lease, job.phase);
        tokio::spawn(run(worker.clone(), job.lease, start, stop));
    }
    Ok(())
}
