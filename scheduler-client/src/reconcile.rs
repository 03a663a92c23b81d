//! At start: what to do with each job the outbox still holds, from the runtime's view of
//! its container and whether the machine rebooted since. Pure: the caller gathers the
//! facts and carries out the decision. Whether a kept lease is still ours is the
//! coordinator's to say (the registration answer), after this.

use crate::outbox::JobRow;
use crate::protocol::{JobState, ReasonCode};

/// The runtime's view of a job's container.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerView {
    /// No container of this job was ever made (or its record is gone).
    Missing,
    Running {
        id: String,
    },
    Exited {
        id: String,
    },
    /// Its container was made but its process never ran: the worker (which starts the
    /// monitor) died between the two, and the runtime's repair recorded it exited.
    NeverStarted {
        id: String,
    },
}

impl ContainerView {
    /// The container's id, when there is a container.
    pub fn id(&self) -> Option<&str> {
        match self {
            ContainerView::Missing => None,
            ContainerView::Running { id }
            | ContainerView::Exited { id }
            | ContainerView::NeverStarted { id } => Some(id),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The final report is queued: the outbox delivers it; nothing else to do.
    Deliver,
    /// It never started: run it from the pull on (after removing a container that was
    /// made but never ran, when there is one).
    Restart,
    /// Its container runs under its monitor: watch it again.
    Adopt { id: String },
    /// Its container ended while the worker was away: deliver logs, outputs, the report.
    Finish { id: String },
    /// It died with the machine or vanished: report it lost.
    Lost { reason: ReasonCode, message: String },
}

pub fn decide(job: &JobRow, container: &ContainerView, rebooted: bool) -> Decision {
    if job.phase.is_final() {
        return Decision::Deliver;
    }
    let restarted = || Decision::Lost {
        reason: ReasonCode::MachineRestarted,
        message: "machine restarted".to_owned(),
    };
    match container {
        ContainerView::Running { id } => Decision::Adopt { id: id.clone() },
        // Nothing of the job ran, so running it now runs it once (reboot or not).
        ContainerView::NeverStarted { .. } => Decision::Restart,
        ContainerView::Exited { .. } | ContainerView::Missing if rebooted => {
            if job.phase == JobState::Running || job.container_id.is_some() {
                restarted()
            } else {
                Decision::Restart
            }
        }
        ContainerView::Exited { id } => Decision::Finish { id: id.clone() },
        ContainerView::Missing if job.container_id.is_some() => Decision::Lost {
            reason: ReasonCode::MonitorDied,
            message: "the job's container record is gone (removed by hand?)".to_owned(),
        },
        ContainerView::Missing => Decision::Restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{JobSpec, Lease};

    fn job(phase: JobState, container: Option<&str>) -> JobRow {
        JobRow {
            lease: Lease {
                lease_id: "l".into(),
                job_id: "j".into(),
                attempt: 1,
                fencing_token: 1,
                ttl_ms: 1,
                job: JobSpec::default(),
            },
            phase,
            container_id: container.map(str::to_owned),
        }
    }

    #[test]
    fn a_running_container_is_adopted_after_a_worker_crash() {
        let d = decide(
            &job(JobState::Running, Some("c")),
            &ContainerView::Running { id: "c".into() },
            false,
        );
        assert_eq!(d, Decision::Adopt { id: "c".into() });
    }

    #[test]
    fn a_container_that_ended_meanwhile_is_finished_once() {
        let d = decide(
            &job(JobState::Running, Some("c")),
            &ContainerView::Exited { id: "c".into() },
            false,
        );
        assert_eq!(d, Decision::Finish { id: "c".into() });
        let d = decide(
            &job(JobState::Exited, Some("c")),
            &ContainerView::Exited { id: "c".into() },
            false,
        );
        assert_eq!(d, Decision::Deliver, "its final report is queued already");
    }

    #[test]
    fn after_a_reboot_a_started_job_is_lost_with_machine_restarted() {
        for view in [
            ContainerView::Exited { id: "c".into() },
            ContainerView::Missing,
        ] {
            match decide(&job(JobState::Running, Some("c")), &view, true) {
                Decision::Lost { reason, message } => {
                    assert_eq!(reason, ReasonCode::MachineRestarted);
                    assert_eq!(message, "machine restarted");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_job_killed_during_its_pull_starts_again() {
        for rebooted in [false, true] {
            let d = decide(
                &job(JobState::Pulling, None),
                &ContainerView::Missing,
                rebooted,
            );
            assert_eq!(d, Decision::Restart);
        }
    }

    #[test]
    fn a_job_whose_container_never_ran_starts_again() {
        for rebooted in [false, true] {
            let d = decide(
                &job(JobState::Accepted, None),
                &ContainerView::NeverStarted { id: "c".into() },
                rebooted,
            );
            assert_eq!(d, Decision::Restart);
        }
    }

    #[test]
    fn a_vanished_container_is_lost_not_restarted() {
        let d = decide(
            &job(JobState::Running, Some("c")),
            &ContainerView::Missing,
            false,
        );
        assert!(
            matches!(
                d,
                Decision::Lost {
                    reason: ReasonCode::MonitorDied,
                    ..
                }
            ),
            "{d:?}"
        );
    }
}
