//! `farm worker` against the test coordinator (a real HTTP server, from
//! docs/worker-protocol.md) with real containers: a job from lease to outputs and usage,
//! cancel, lease loss, time limit, the coordinator down and back, `kill -9` of the worker
//! and a restart, a simulated reboot, SIGTERM drain, failover to a second URL.

use std::path::PathBuf;
use std::time::Duration;

use farm_scheduler_client::protocol::{JobSpec, JobState, LogStream, Outputs, ReasonCode, Report};
use farm_scheduler_client::testcoord::{Coordinator, Settings, State};

use crate::support::containers::{cgroup_processes, kill9, process_alive, RunFarm, Spawned};

/// How long a job may take to reach a state the test waits for.
const LIMIT: Duration = Duration::from_secs(60);

struct WorkerFarm {
    farm: RunFarm,
    coordinator: Coordinator,
    config: PathBuf,
}

impl WorkerFarm {
    fn new(settings: Settings, extra_config: &str) -> Option<WorkerFarm> {
        let farm = RunFarm::new()?;
        let coordinator = Coordinator::with_settings("127.0.0.1:0", settings).unwrap();
        let config = farm.dir.path().join("worker.conf");
        let text = format!(
            "{extra_config}coordinator = {}\nlabel.region = test\nmax_jobs = 2\ndrain_timeout = 2s\n",
            coordinator.url()
        );
        std::fs::write(&config, text).unwrap();
        Some(WorkerFarm {
            farm,
            coordinator,
            config,
        })
    }

    fn start(&self) -> Spawned {
        let config = self.config.to_string_lossy().into_owned();
        self.farm.spawn(&["worker", "run", "--config", &config])
    }

    fn job(&self, command: &[&str]) -> JobSpec {
        JobSpec {
            image: self.farm.probe(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Wait for the lease's report in `state`, showing the worker's stderr on failure.
    #[track_caller]
    fn wait_report(&self, worker: &Spawned, lease: &str, state: JobState) -> Report {
        let found = self.coordinator.wait_for(LIMIT, |s| {
            s.reports_of(lease)
                .into_iter()
                .find(|r| r.state == state)
                .cloned()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no {state:?} report for {lease}: {:#?}\nworker stderr:\n{}",
                self.coordinator.state().reports,
                std::fs::read_to_string(&worker.stderr).unwrap_or_default()
            )
        })
    }

    #[track_caller]
    fn wait_final(&self, worker: &Spawned, lease: &str) -> Report {
        let found = self
            .coordinator
            .wait_for(LIMIT, |s| s.final_report(lease).cloned());
        found.unwrap_or_else(|| {
            panic!(
                "no final report for {lease}: {:#?}\nworker stderr:\n{}",
                self.coordinator.state().reports,
                std::fs::read_to_string(&worker.stderr).unwrap_or_default()
            )
        })
    }
}

fn states(state: &State, lease: &str) -> Vec<JobState> {
    state.reports_of(lease).iter().map(|r| r.state).collect()
}

/// Every idempotency key arrived at least once and was counted once.
#[track_caller]
fn assert_counted_once(state: &State, lease: &str) {
    let reports = state.reports_of(lease);
    let mut keys: Vec<&str> = reports.iter().map(|r| r.idempotency_key.as_str()).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len(), "a report counted twice: {reports:#?}");
}

/// The job's container is stopped and removed (no process left, no record).
#[track_caller]
fn assert_gone(wf: &WorkerFarm, id: &str) {
    crate::support::containers::wait_for(
        "the finished job's container to be removed",
        LIMIT,
        || (wf.farm.try_inspect(id).is_none() && cgroup_processes(id).is_empty()).then_some(()),
        || format!("{:?} {:?}", wf.farm.try_inspect(id), cgroup_processes(id)),
    );
}

fn reason(report: &Report) -> ReasonCode {
    report.exit.as_ref().expect("exit info").reason_code
}

#[test]
fn a_job_runs_from_lease_to_logs_outputs_and_usage() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let worker = wf.start();
    let mut job = wf.job(&[
        "sh",
        "-c",
        "echo hello; echo oops >&2; echo result > /out/answer.txt; mkdir /out/sub; echo x > /out/sub/y; exit 3",
    ]);
    job.outputs = Some(Outputs {
        path: "/out".into(),
        max_bytes: 1 << 20,
    });
    let lease = wf.coordinator.submit(job);
    let done = wf.wait_final(&worker, &lease);
    let state = wf.coordinator.state();
    assert_eq!(
        states(&state, &lease),
        [
            JobState::Accepted,
            JobState::Pulling,
            JobState::Running,
            JobState::Exited
        ],
        "{:#?}",
        state.reports
    );
    assert_counted_once(&state, &lease);
    let exit = done.exit.clone().unwrap();
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.reason_code, ReasonCode::NonZeroExit);
    let usage = done.usage.clone().expect("usage");
    assert!(usage.wall_s > 0.0, "{usage:?}");
    assert!(usage.peak_memory_bytes > 0, "{usage:?}");
    assert_eq!(state.log_bytes(&lease, LogStream::Stdout), b"hello\n");
    assert_eq!(state.log_bytes(&lease, LogStream::Stderr), b"oops\n");
    assert!(state.logs_ended(&lease), "eof on both streams");
    assert!(
        state.finals_before_logs.is_empty(),
        "logs come before the final state"
    );
    let outputs = &state.outputs[&lease];
    assert!(outputs.complete);
    let info = done.outputs.clone().expect("outputs in the report");
    assert_eq!(info.size, outputs.data.len() as u64);
    assert_eq!(
        info.sha256,
        crate::support::sha256_digest(&outputs.data)[7..]
    );
    let mut archive = tar::Archive::new(outputs.data.as_slice());
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        files.insert(path.trim_start_matches("./").to_owned(), text);
    }
    assert_eq!(
        files.get("answer.txt").map(String::as_str),
        Some("result\n"),
        "{files:?}"
    );
    assert_eq!(
        files.get("sub/y").map(String::as_str),
        Some("x\n"),
        "{files:?}"
    );
    let id = state.reports_of(&lease)[2].container_id.clone().unwrap();
    assert_gone(&wf, &id);
    let outputs_dir = wf.farm.root().join("worker/outputs");
    assert!(
        crate::support::list_names(&outputs_dir).is_empty(),
        "the outputs folder and tarball are removed after the report: {:?}",
        crate::support::list_names(&outputs_dir)
    );
    let registration = &state.registrations[0];
    assert_eq!(registration.labels["region"], "test");
    assert!(
        registration.inventory["cpu"].is_object(),
        "{:#}",
        registration.inventory
    );
}

#[test]
fn outputs_over_the_cap_are_not_uploaded_and_say_so() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let worker = wf.start();
    let mut job = wf.job(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/out/big bs=1024 count=64 2>/dev/null",
    ]);
    job.outputs = Some(Outputs {
        path: "/out".into(),
        max_bytes: 4096,
    });
    let lease = wf.coordinator.submit(job);
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(reason(&done), ReasonCode::OutputsTooLarge, "{done:#?}");
    assert!(!wf.coordinator.state().outputs.contains_key(&lease));
}

#[test]
fn a_cancelled_job_is_stopped_and_reported_cancelled() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sleep", "600"]));
    let running = wf.wait_report(&worker, &lease, JobState::Running);
    wf.coordinator.cancel(&lease, Duration::from_secs(1));
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(done.state, JobState::Cancelled, "{done:#?}");
    assert_eq!(reason(&done), ReasonCode::Cancelled);
    let id = running
        .container_id
        .expect("running carries the container id");
    assert_gone(&wf, &id);
}

#[test]
fn a_lost_lease_stops_the_job_and_its_stale_report_is_refused() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sleep", "600"]));
    let running = wf.wait_report(&worker, &lease, JobState::Running);
    wf.coordinator.revoke(&lease);
    let id = running.container_id.unwrap();
    let refused = wf.coordinator.wait_for(LIMIT, |s| {
        s.refused
            .iter()
            .find(|(key, _)| key == &format!("{lease}:1:lost"))
            .cloned()
    });
    assert!(refused.is_some(), "{:#?}", wf.coordinator.state().refused);
    assert_gone(&wf, &id);
    assert!(
        wf.coordinator.state().final_report(&lease).is_none(),
        "a stale report is never counted"
    );
}

#[test]
fn a_job_past_its_time_limit_is_killed_and_says_so() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let worker = wf.start();
    let mut job = wf.job(&["sleep", "600"]);
    job.time_limit_ms = Some(1500);
    let lease = wf.coordinator.submit(job);
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(done.state, JobState::Exited, "{done:#?}");
    assert_eq!(reason(&done), ReasonCode::TimeLimit, "{done:#?}");
    let wall = done.usage.unwrap().wall_s;
    assert!((1.0..30.0).contains(&wall), "{wall}");
}

/// The expected stdout of [`LINES_JOB`].
fn lines(n: u32) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("line {i}\n"))
        .collect::<String>()
        .into_bytes()
}

const LINES_JOB: &str = "i=1; while [ $i -le 40 ]; do echo line $i; i=$((i+1)); sleep 0.1; done";

#[test]
fn an_outage_of_the_coordinator_loses_and_doubles_nothing() {
    let settings = Settings {
        lease_ttl_ms: 4_000,
        lease_grace_ms: 20_000,
        ..Settings::default()
    };
    let Some(mut wf) = WorkerFarm::new(settings, "") else {
        return;
    };
    let worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sh", "-c", LINES_JOB]));
    wf.wait_report(&worker, &lease, JobState::Running);
    wf.coordinator.stop();
    std::thread::sleep(Duration::from_secs(3));
    wf.coordinator.resume().unwrap();
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(reason(&done), ReasonCode::Completed, "{done:#?}");
    let state = wf.coordinator.state();
    assert_eq!(
        states(&state, &lease),
        [
            JobState::Accepted,
            JobState::Pulling,
            JobState::Running,
            JobState::Exited
        ]
    );
    assert_counted_once(&state, &lease);
    assert_eq!(
        String::from_utf8_lossy(&state.log_bytes(&lease, LogStream::Stdout)),
        String::from_utf8_lossy(&lines(40)),
        "byte for byte, in order, across the reconnect"
    );
    assert!(state.finals_before_logs.is_empty());
}

#[test]
fn a_killed_worker_adopts_its_running_job_after_a_restart() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let mut worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sh", "-c", LINES_JOB]));
    let running = wf.wait_report(&worker, &lease, JobState::Running);
    worker.kill();
    let id = running.container_id.unwrap();
    assert_eq!(
        wf.farm.inspect(&id)["State"]["Status"],
        "running",
        "the container outlives the worker"
    );
    let node = wf.coordinator.state().registrations[0].node_id.clone();
    let worker = wf.start();
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(reason(&done), ReasonCode::Completed, "{done:#?}");
    let state = wf.coordinator.state();
    assert_eq!(state.registrations.len(), 2);
    assert_eq!(
        state.registrations[1].node_id, node,
        "one identity across restarts"
    );
    assert_eq!(state.registrations[1].leases[0].lease_id, lease);
    assert_counted_once(&state, &lease);
    assert_eq!(state.log_bytes(&lease, LogStream::Stdout), lines(40));
}

#[test]
fn a_job_that_ended_while_the_worker_was_dead_is_reported_once() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let mut worker = wf.start();
    let lease = wf
        .coordinator
        .submit(wf.job(&["sh", "-c", "sleep 2; echo bye"]));
    let running = wf.wait_report(&worker, &lease, JobState::Running);
    worker.kill();
    let id = running.container_id.unwrap();
    crate::support::containers::wait_for(
        "the container to exit",
        LIMIT,
        || (wf.farm.inspect(&id)["State"]["Status"] == "exited").then_some(()),
        || format!("{:#}", wf.farm.inspect(&id)),
    );
    let worker = wf.start();
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(reason(&done), ReasonCode::Completed, "{done:#?}");
    let state = wf.coordinator.state();
    assert_counted_once(&state, &lease);
    assert_eq!(state.log_bytes(&lease, LogStream::Stdout), b"bye\n");
}

#[test]
fn after_a_reboot_a_running_job_is_reported_lost_machine_restarted() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let mut worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sleep", "600"]));
    let running = wf.wait_report(&worker, &lease, JobState::Running);
    worker.kill();
    // The reboot: the monitor and the container's processes die at once, and the boot id
    // changes (the worker stored the one it started under).
    let id = running.container_id.unwrap();
    let monitor = wf.farm.inspect(&id)["State"]["MonitorPid"]
        .as_u64()
        .unwrap();
    kill9(monitor);
    for (pid, _) in cgroup_processes(&id) {
        kill9(pid as u64);
    }
    let db = wf.farm.root().join("worker/worker.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE meta SET value = 'an-older-boot' WHERE key = 'boot_id'",
        [],
    )
    .unwrap();
    drop(conn);
    assert!(!process_alive(monitor));
    let worker = wf.start();
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(done.state, JobState::Lost, "{done:#?}");
    assert_eq!(reason(&done), ReasonCode::MachineRestarted);
    assert_eq!(done.exit.unwrap().reason, "machine restarted");
}

#[test]
fn sigterm_drains_the_worker_and_reports_the_stopped_job() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let mut worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sleep", "600"]));
    let running = wf.wait_report(&worker, &lease, JobState::Running);
    let pid = rustix::process::Pid::from_raw(worker.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let ended = worker.wait(LIMIT);
    assert_eq!(ended.code, 0, "{ended:#?}");
    let state = wf.coordinator.state();
    let done = state
        .final_report(&lease)
        .expect("reported before the worker left");
    assert_eq!(done.state, JobState::Lost, "{done:#?}");
    assert_eq!(reason(done), ReasonCode::Drained);
    let id = running.container_id.unwrap();
    assert_gone(&wf, &id);
    let submitted_after = wf.coordinator.submit(wf.job(&["true"]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(wf
        .coordinator
        .state()
        .reports_of(&submitted_after)
        .is_empty());
}

#[test]
fn a_dead_first_coordinator_url_fails_over_to_the_second() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let Some(wf) = WorkerFarm::new(Settings::default(), &format!("coordinator = {dead_url}\n"))
    else {
        return;
    };
    let worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["true"]));
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(reason(&done), ReasonCode::Completed, "{done:#?}");
    let status = wf.farm.run(&["worker", "status", "--json"]);
    status.assert_ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        status["coordinator"],
        format!("{}/", wf.coordinator.url()),
        "{status:#}"
    );
}

#[test]
fn install_prints_a_unit_whose_containers_outlive_the_worker() {
    let farm = crate::support::Farm::new();
    let unit = farm.run(&["worker", "install", "--print"]);
    unit.assert_ok();
    for line in [
        "KillMode=process",
        "Delegate=yes",
        "Restart=always",
        "LimitNOFILE=",
        "worker run --config",
    ] {
        assert!(unit.stdout.contains(line), "{line} in {}", unit.stdout);
    }
}

#[test]
fn an_outage_past_the_grace_stops_the_job_and_reports_lease_lost() {
    let settings = Settings {
        heartbeat_interval_ms: 200,
        lease_ttl_ms: 1_000,
        lease_grace_ms: 1_000,
        ..Settings::default()
    };
    let Some(mut wf) = WorkerFarm::new(settings, "") else {
        return;
    };
    let worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sleep", "600"]));
    let running = wf.wait_report(&worker, &lease, JobState::Running);
    let id = running.container_id.unwrap();
    wf.coordinator.stop();
    // The worker stops the job itself once TTL and grace are out, without the coordinator
    // (its logs, then its report, wait for the coordinator; so does removing it).
    crate::support::containers::wait_for(
        "the job to be stopped while the coordinator is down",
        LIMIT,
        || (wf.farm.inspect(&id)["State"]["Status"] == "exited").then_some(()),
        || format!("{:#}", wf.farm.inspect(&id)),
    );
    assert!(cgroup_processes(&id).is_empty());
    wf.coordinator.resume().unwrap();
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(done.state, JobState::Lost, "{done:#?}");
    assert_eq!(reason(&done), ReasonCode::LeaseLost);
    assert_counted_once(&wf.coordinator.state(), &lease);
    assert_gone(&wf, &id);
}

#[test]
fn a_worker_killed_right_after_taking_a_lease_runs_the_job_once() {
    let Some(wf) = WorkerFarm::new(Settings::default(), "") else {
        return;
    };
    let mut worker = wf.start();
    let lease = wf.coordinator.submit(wf.job(&["sh", "-c", "echo once"]));
    // Killed as soon as the coordinator hears of the job (while pulling, or just after).
    wf.wait_report(&worker, &lease, JobState::Accepted);
    worker.kill();
    let worker = wf.start();
    let done = wf.wait_final(&worker, &lease);
    assert_eq!(reason(&done), ReasonCode::Completed, "{done:#?}");
    let state = wf.coordinator.state();
    assert_counted_once(&state, &lease);
    assert_eq!(
        state.log_bytes(&lease, LogStream::Stdout),
        b"once\n",
        "one run, one output"
    );
    // The job's one container goes once its final report is in the outbox (which can be
    // a moment after the coordinator has it); none is left, and no second one was made.
    crate::support::containers::wait_for(
        "the finished job's container to be removed",
        LIMIT,
        || {
            let containers = wf.farm.run(&["ps", "-a", "--json"]);
            (containers.stdout.matches(&lease).count() == 0).then_some(())
        },
        || format!("{:?}", wf.farm.run(&["ps", "-a", "--json"])),
    );
}
