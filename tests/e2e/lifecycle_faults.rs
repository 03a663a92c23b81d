//! `kill -9` of farm itself at a few points of a container's life: the foreground `farm
//! run` (while creating, once running), the `run -d` invocation while creating, and the
//! monitor of a detached container (while the job runs, and then the job ending on its
//! own). After each, `ps -a` must tell the truth (never "running" with nothing running,
//! never "exited" with processes left), `rm -f` must work, and nothing may be left: no
//! mount under the root, no cgroup folder, no process in the container's cgroups.

use std::time::Duration;

use crate::support::containers::{
    cgroup_processes, kill9, process_alive, wait_for, RunFarm, Spawned, START_LIMIT,
};

/// How long farm may take to notice and repair a crash.
const SETTLE: Duration = Duration::from_secs(20);

/// Whether `ps -a` agrees with the host about container `id`: `running` has processes in
/// its cgroups, `exited` has none, `created` may have its waiting init; a container `ps -a`
/// no longer lists has none.
fn truthful(farm: &RunFarm, id: &str) -> Result<(), String> {
    let alive = !cgroup_processes(id).is_empty();
    let state = farm
        .ps_entry(id)
        .map(|e| e["State"].as_str().unwrap_or("<no State>").to_string());
    match (state.as_deref(), alive) {
        (Some("running"), false) => Err("ps -a says running, no process is left".into()),
        (Some("exited"), true) => Err(format!(
            "ps -a says exited, processes remain: {:?}",
            cgroup_processes(id)
        )),
        (None, true) => Err(format!(
            "ps -a does not list it, processes remain: {:?}",
            cgroup_processes(id)
        )),
        (Some("running" | "exited" | "created"), _) | (None, false) => Ok(()),
        (Some(other), _) => Err(format!("unknown State {other:?}")),
    }
}

/// After a crash: `ps -a` settles on the truth, `rm -f` works, nothing is left.
#[track_caller]
fn assert_recovers(farm: &RunFarm, id: &str) {
    wait_for(
        "ps -a to tell the truth",
        SETTLE,
        || truthful(farm, id).ok(),
        || format!("{:?}\n{:#?}", truthful(farm, id), farm.ps(true)),
    );
    if farm.ps_entry(id).is_some() {
        let rm = farm.run(&["rm", "-f", id]);
        assert_eq!(rm.code, 0, "rm -f after the crash: {rm:#?}");
        assert!(
            farm.ps_entry(id).is_none(),
            "ps -a after rm -f: {:#?}",
            farm.ps(true)
        );
    }
    // A crash leaves a state the next command repairs: keep giving farm that next command.
    wait_for(
        "nothing to be left",
        SETTLE,
        || {
            farm.ps(true);
            farm.leftovers(id).is_empty().then_some(())
        },
        || format!("{:#?}", farm.leftovers(id)),
    );
}

/// Wait for the first container folder to appear; its name is the id.
fn first_container(farm: &RunFarm, spawned: &mut Spawned) -> Option<String> {
    let start = std::time::Instant::now();
    while start.elapsed() < START_LIMIT {
        if let Some(id) = farm.container_ids().into_iter().next() {
            return Some(id);
        }
        if let Ok(Some(_)) = spawned.child.try_wait() {
            return farm.container_ids().into_iter().next();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn sigkill_of_foreground_run_once_running() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let mut fg = farm.spawn(&["run", "--name", "fg", &farm.probe(), "sleep", "60"]);
    let inspect = farm.wait_running("fg");
    let id = inspect["Id"].as_str().unwrap().to_string();
    fg.kill();
    assert_recovers(&farm, &id);
}

#[test]
fn sigkill_of_foreground_run_while_creating() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let mut fg = farm.spawn(&["run", "--name", "early", &farm.probe(), "sleep", "60"]);
    let id = first_container(&farm, &mut fg)
        .unwrap_or_else(|| panic!("no container folder appeared: {:#?}", fg.wait(SETTLE)));
    fg.kill();
    assert_recovers(&farm, &id);
    // The name is free again (or still taken by a container rm -f removed: then free too).
    farm.run_probe(&["--rm", "--name", "early"], &["true"])
        .assert_ok();
}

#[test]
fn sigkill_of_detached_run_while_creating() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let mut run = farm.spawn(&["run", "-d", "--name", "bg", &farm.probe(), "sleep", "60"]);
    let id = first_container(&farm, &mut run)
        .unwrap_or_else(|| panic!("no container folder appeared: {:#?}", run.wait(SETTLE)));
    run.kill();
    assert_recovers(&farm, &id);
}

#[test]
fn sigkill_of_the_monitor_of_a_running_container() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let id = farm.detach(&["--name", "mon"], &farm.probe(), &["sleep", "60"]);
    let monitor = farm.inspect(&id)["State"]["MonitorPid"]
        .as_u64()
        .expect("State.MonitorPid");
    assert!(process_alive(monitor));
    kill9(monitor);
    wait_for(
        "the monitor to be gone",
        SETTLE,
        || (!process_alive(monitor)).then_some(()),
        String::new,
    );
    assert_recovers(&farm, &id);
}

#[test]
fn sigkill_of_the_monitor_then_the_job_ends_on_its_own() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let id = farm.detach(&["--name", "short"], &farm.probe(), &["sleep", "2"]);
    let monitor = farm.inspect(&id)["State"]["MonitorPid"]
        .as_u64()
        .expect("State.MonitorPid");
    kill9(monitor);
    // The job ends by itself: ps -a must stop saying "running" (not running forever).
    wait_for(
        "ps -a to stop saying running",
        SETTLE,
        || {
            let entry = farm.ps_entry(&id)?;
            (entry["State"] != "running").then_some(())
        },
        || format!("{:#?} processes {:?}", farm.ps(true), cgroup_processes(&id)),
    );
    assert!(cgroup_processes(&id).is_empty());
    assert_recovers(&farm, &id);
}
