//! `--restart` kept by the monitor (docker's on-failure[:N] and always, RestartCount in
//! inspect, `farm stop` not fought by the policy) and `farm restart` (the same container
//! again: id, name, writable layer).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::containers::{process_alive, wait_for, RunFarm};

/// A host folder the container's (unprivileged) root may write, bind-mounted at /state.
fn state_dir(farm: &RunFarm) -> (PathBuf, String) {
    let dir = farm.dir.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bind = format!("{}:/state", dir.display());
    (dir, bind)
}

/// The runs so far: one line per start of the job.
fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// Counts its runs in /state/runs and fails (exit 3) until run number `succeed_at`.
fn flaky_job(succeed_at: u32) -> String {
    format!("echo run >> /state/runs; n=0; while read l; do n=$((n+1)); done < /state/runs; test $n -ge {succeed_at} || exit 3")
}

#[test]
fn on_failure_restarts_a_failing_job_until_it_succeeds() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let (dir, bind) = state_dir(&farm);
    let run = farm.run(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:5",
        "-v",
        &bind,
        &farm.probe(),
        "sh",
        "-c",
        &flaky_job(3),
    ]);
    run.assert_ok();
    let exited = farm.wait_exited("flaky", Duration::from_secs(30));
    assert_eq!(exited["State"]["ExitCode"], 0, "{exited:#}");
    assert_eq!(
        exited["RestartCount"], 2,
        "failed twice, restarted twice: {exited:#}"
    );
    assert_eq!(runs(&dir), 3);
    assert_eq!(exited["HostConfig"]["restart"]["Name"], "on-failure");
    assert_eq!(exited["HostConfig"]["restart"]["MaximumRetryCount"], 5);
}

#[test]
fn on_failure_gives_up_after_its_retries() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let (dir, bind) = state_dir(&farm);
    farm.run(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:1",
        "-v",
        &bind,
        &farm.probe(),
        "sh",
        "-c",
        &flaky_job(3),
    ])
    .assert_ok();
    let exited = farm.wait_exited("flaky", Duration::from_secs(30));
    assert_eq!(exited["State"]["ExitCode"], 3, "{exited:#}");
    assert_eq!(exited["RestartCount"], 1, "{exited:#}");
    // The monitor is gone, so nothing starts it again.
    let monitor = exited["State"]["MonitorPid"].as_u64().unwrap();
    wait_for(
        "the monitor to end",
        Duration::from_secs(10),
        || (!process_alive(monitor)).then_some(()),
        || format!("monitor {monitor} still alive"),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&dir), 2, "the first run and one retry");
}

#[test]
fn always_restarts_on_success_until_farm_stop_which_it_does_not_fight() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let (dir, bind) = state_dir(&farm);
    // Exits 0 twice (restarted anyway), then stays up, ending with 0 on SIGTERM (which
    // shows the restarted init gets SIGTERM: no signal mask leaks from the monitor).
    let script = format!(
        "{}; trap 'exit 0' TERM; sleep 1000 & wait",
        flaky_job(3).replace("|| exit 3", "|| exit 0")
    );
    farm.run(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "-v",
        &bind,
        &farm.probe(),
        "sh",
        "-c",
        &script,
    ])
    .assert_ok();
    let running = wait_for(
        "the third run",
        Duration::from_secs(30),
        || {
            let value = farm.try_inspect("always")?;
            (value["State"]["Status"] == "running" && value["RestartCount"] == 2).then_some(value)
        },
        || format!("{:#?}", farm.run(&["inspect", "always"])),
    );
    assert_eq!(runs(&dir), 3, "{running:#}");
    let listed = farm.run(&["ps"]);
    assert!(listed.stdout.contains("always"), "{listed:#?}");

    farm.run(&["stop", "-t", "2", "always"]).assert_ok();
    let stopped = farm.inspect("always");
    assert_eq!(stopped["State"]["Status"], "exited", "{stopped:#}");
    assert_eq!(
        stopped["State"]["ExitCode"], 0,
        "its SIGTERM trap ran: {stopped:#}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(runs(&dir), 3, "farm stop is not fought by the policy");
    assert_eq!(farm.inspect("always")["State"]["Status"], "exited");
    assert_eq!(farm.inspect("always")["RestartCount"], 2);
}

#[test]
fn stop_during_the_back_off_ends_the_restart_loop() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let (dir, bind) = state_dir(&farm);
    farm.run(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "-v",
        &bind,
        &farm.probe(),
        "sh",
        "-c",
        "echo run >> /state/runs; exit 1",
    ])
    .assert_ok();
    // The back-off doubles (100, 200, 400, 800 ms...): after five runs it is long enough
    // that the stop usually lands in it, between two runs.
    wait_for(
        "five runs",
        Duration::from_secs(30),
        || (runs(&dir) >= 5).then_some(()),
        || format!("{:#?}", farm.run(&["inspect", "loop"])),
    );
    farm.run(&["stop", "-t", "2", "loop"]).assert_ok();
    let stopped = farm.inspect("loop");
    assert_eq!(stopped["State"]["Status"], "exited", "{stopped:#}");
    let after = runs(&dir);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&dir), after, "no run after the stop");
}

#[test]
fn restart_policy_flags_are_checked_as_docker() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run(&["run", "--restart", "always:3", &farm.probe(), "true"]);
    assert_eq!(run.code, 2, "a clap value error: {run:#?}");
    assert!(
        run.stderr
            .contains("maximum retry count can only be used with 'on-failure'"),
        "{run:#?}"
    );
    let run = farm.run(&[
        "run",
        "-d",
        "--rm",
        "--restart",
        "always",
        &farm.probe(),
        "true",
    ]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        run.stderr
            .contains("Conflicting options: --restart and --rm"),
        "{run:#?}"
    );
}

#[test]
fn restart_starts_the_same_container_again() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let id = farm.detach(
        &["--name", "box"],
        &farm.probe(),
        &["sh", "-c", "echo run >> /runs; exec sleep 1000"],
    );
    let first = farm.inspect("box");
    let run = farm.run(&["restart", "-t", "1", "box"]);
    run.assert_ok();
    assert_eq!(run.stdout, "box\n");
    let second = farm.wait_running("box");
    assert_eq!(second["Id"], id.as_str(), "same container");
    assert_ne!(
        second["State"]["Pid"], first["State"]["Pid"],
        "a new process"
    );
    assert_ne!(second["State"]["StartedAt"], first["State"]["StartedAt"]);
    let run = farm.run(&["exec", "box", "cat", "/runs"]);
    assert_eq!(
        run.stdout, "run\nrun\n",
        "the writable layer is kept: {run:#?}"
    );

    // A stopped container starts again too.
    farm.run(&["stop", "-t", "1", "box"]).assert_ok();
    farm.run(&["restart", "box"]).assert_ok();
    farm.wait_running("box");
    let run = farm.run(&["exec", "box", "cat", "/runs"]);
    assert_eq!(run.stdout, "run\nrun\nrun\n", "{run:#?}");
    farm.run(&["rm", "-f", "box"]).assert_ok();
    assert!(farm.try_inspect("box").is_none());
}
