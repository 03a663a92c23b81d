//! Container lifecycle as docker's commands drive it: `run -d`, `ps`, `inspect`, `logs
//! [-f] [--tail] [-t]`, `stop` (SIGTERM, then SIGKILL after -t), `kill [-s]`, `wait`, `rm
//! [-f]`, `--timeout`.

use std::time::Duration;

use crate::support::containers::{process_alive, wait_for, RunFarm, START_LIMIT};

/// Wait until `logs NAME` shows `text`.
#[track_caller]
fn wait_logs(farm: &RunFarm, name: &str, text: &str) {
    wait_for(
        &format!("{text:?} in the logs of {name}"),
        START_LIMIT,
        || {
            farm.run(&["logs", name])
                .stdout
                .contains(text)
                .then_some(())
        },
        || format!("{:#?}", farm.run(&["logs", name])),
    );
}

fn names(list: &[serde_json::Value]) -> Vec<String> {
    list.iter()
        .map(|c| {
            c["Name"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string()
        })
        .collect()
}

#[test]
fn detached_logs_follow_and_stop_sends_sigterm_first() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let id = farm.detach(&["--name", "svc"], &farm.probe(), &["/probe", "trap"]);
    wait_logs(&farm, "svc", "ready");
    assert!(
        names(&farm.ps(false)).contains(&"svc".to_string()),
        "{:#?}",
        farm.ps(false)
    );
    let mut follow = farm.spawn(&["logs", "-f", "svc"]);
    wait_for(
        "logs -f to print ready",
        START_LIMIT,
        || follow.stdout_now().contains("ready").then_some(()),
        || follow.stdout_now(),
    );

    farm.run(&["stop", "-t", "10", "svc"]).assert_ok();
    let inspect = farm.inspect("svc");
    assert_eq!(inspect["State"]["Status"], "exited", "{inspect:#}");
    assert_eq!(inspect["State"]["Running"], false, "{inspect:#}");
    assert_eq!(
        inspect["State"]["ExitCode"], 0,
        "the trap exits 0 on SIGTERM, before any SIGKILL: {inspect:#}"
    );
    assert!(
        inspect["State"]["FinishedAt"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{inspect:#}"
    );

    let followed = follow.wait(Duration::from_secs(30));
    assert_eq!(
        followed.code, 0,
        "logs -f ends when the container does: {followed:#?}"
    );
    assert!(followed.stdout.contains("ready\n"), "{followed:#?}");
    assert!(followed.stdout.contains("got TERM\n"), "{followed:#?}");
    let logs = farm.run(&["logs", "svc"]);
    assert_eq!(logs.stdout, "ready\ngot TERM\n", "{logs:#?}");

    assert!(
        !names(&farm.ps(false)).contains(&"svc".to_string()),
        "ps lists running containers only"
    );
    let all = farm.ps(true);
    let entry = all
        .iter()
        .find(|c| c["Id"] == id.as_str())
        .unwrap_or_else(|| panic!("ps -a lists it: {all:#?}"));
    assert_eq!(entry["State"], "exited", "{entry:#}");
    assert_eq!(entry["ExitCode"], 0, "{entry:#}");

    farm.run(&["rm", "svc"]).assert_ok();
    farm.assert_nothing_left(&id);
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    // sleep as pid 1 has no SIGTERM handler: the kernel drops SIGTERM for it.
    let id = farm.detach(&["--name", "stubborn"], &farm.probe(), &["sleep", "60"]);
    farm.run(&["stop", "-t", "1", "stubborn"]).assert_ok();
    let inspect = farm.inspect(&id);
    assert_eq!(inspect["State"]["Status"], "exited", "{inspect:#}");
    assert_eq!(inspect["State"]["ExitCode"], 137, "{inspect:#}");
    let wait = farm.run(&["wait", "stubborn"]);
    wait.assert_ok();
    assert_eq!(wait.stdout.trim(), "137", "{wait:#?}");
    // Stopping an exited container is fine, as docker.
    farm.run(&["stop", "stubborn"]).assert_ok();
}

#[test]
fn stop_signal_and_stop_timeout_options() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let _id = farm.detach(
        &[
            "--name",
            "usr",
            "--stop-signal",
            "USR1",
            "--stop-timeout",
            "1",
        ],
        &farm.probe(),
        &["/probe", "trap"],
    );
    wait_logs(&farm, "usr", "ready");
    // The trap prints USR1 and keeps running: SIGKILL follows after --stop-timeout.
    farm.run(&["stop", "usr"]).assert_ok();
    let logs = farm.run(&["logs", "usr"]);
    assert_eq!(logs.stdout, "ready\ngot USR1\n", "{logs:#?}");
    assert_eq!(farm.inspect("usr")["State"]["ExitCode"], 137);
}

#[test]
fn kill_sends_signals_and_wait_prints_exit_codes() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let probe = farm.probe();
    farm.detach(&["--name", "a"], &probe, &["/probe", "trap"]);
    wait_logs(&farm, "a", "ready");
    farm.run(&["kill", "-s", "USR2", "a"]).assert_ok();
    wait_logs(&farm, "a", "got USR2");
    assert_eq!(
        farm.inspect("a")["State"]["Status"],
        "running",
        "USR2 is handled"
    );
    farm.run(&["kill", "-s", "SIGTERM", "a"]).assert_ok();

    farm.detach(&["--name", "b"], &probe, &["sleep", "60"]);
    farm.run(&["kill", "b"]).assert_ok(); // SIGKILL by default

    assert_eq!(
        farm.run_probe(&["--name", "c"], &["sh", "-c", "exit 7"])
            .code,
        7
    );
    // wait blocks on a running container until it exits.
    farm.detach(&["--name", "d"], &probe, &["sleep", "3"]);

    let wait = farm.run(&["wait", "a", "b", "c", "d"]);
    wait.assert_ok();
    assert_eq!(wait.stdout, "0\n137\n7\n0\n", "{wait:#?}");
    assert_eq!(farm.inspect("d")["State"]["Status"], "exited");

    let run = farm.run(&["kill", "c"]);
    assert_ne!(run.code, 0, "killing an exited container fails: {run:#?}");
    let run = farm.run(&["wait", "nosuch"]);
    assert_ne!(run.code, 0, "{run:#?}");
}

#[test]
fn foreground_run_exits_with_the_signal_code() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let mut fg = farm.spawn(&["run", "--name", "fg", &farm.probe(), "sleep", "60"]);
    farm.wait_running("fg");
    farm.run(&["kill", "fg"]).assert_ok();
    let run = fg.wait(Duration::from_secs(30));
    assert_eq!(run.code, 137, "128 + SIGKILL: {run:#?}");
    assert_eq!(farm.inspect("fg")["State"]["ExitCode"], 137);
}

#[test]
fn timeout_kills_a_job_that_runs_past_it() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&["--name", "late", "--timeout", "1s"], &["sleep", "60"]);
    // farm's own flag; the job is killed with SIGKILL.
    assert_eq!(run.code, 137, "{run:#?}");
    let inspect = farm.inspect("late");
    assert_eq!(inspect["State"]["Status"], "exited", "{inspect:#}");
    assert_eq!(inspect["State"]["ExitCode"], 137, "{inspect:#}");
    let run = farm.run_probe(&["--timeout", "30s"], &["echo", "in time"]);
    assert_eq!(run.stdout, "in time\n", "{run:#?}");
}

#[test]
fn ps_and_inspect_describe_a_container() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let probe = farm.probe();
    let id = farm.detach(
        &[
            "--name",
            "desc",
            "--label",
            "k=v",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "-u",
            "user",
            "--hostname",
            "hh",
        ],
        &probe,
        &["sleep", "60"],
    );
    let ps = farm.ps(false);
    let entry = ps
        .iter()
        .find(|c| c["Id"] == id.as_str())
        .unwrap_or_else(|| panic!("ps lists it: {ps:#?}"));
    assert_eq!(
        entry["Name"].as_str().map(|n| n.trim_start_matches('/')),
        Some("desc"),
        "{entry:#}"
    );
    assert_eq!(entry["State"], "running", "{entry:#}");
    assert!(
        entry["Command"]
            .as_str()
            .is_some_and(|c| c.contains("sleep")),
        "{entry:#}"
    );
    for key in ["Image", "Status", "Created"] {
        assert!(
            entry[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}: {entry:#}"
        );
    }

    let inspect = farm.inspect("desc");
    assert_eq!(inspect["Id"], id.as_str(), "{inspect:#}");
    assert_eq!(farm.inspect(&id)["Id"], id.as_str(), "by id");
    assert_eq!(farm.inspect(&id[..12])["Id"], id.as_str(), "by id prefix");
    let config = &inspect["Config"];
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["sleep", "60"]),
        "{inspect:#}"
    );
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|env| env.iter().any(|e| e == "X=1")),
        "{inspect:#}"
    );
    assert_eq!(config["WorkingDir"], "/tmp", "{inspect:#}");
    assert_eq!(config["User"], "user", "{inspect:#}");
    assert_eq!(config["Hostname"], "hh", "{inspect:#}");
    assert_eq!(config["Labels"]["k"], "v", "{inspect:#}");
    assert_eq!(inspect["ImageName"], probe.as_str(), "{inspect:#}");
    assert!(
        inspect["Image"]
            .as_str()
            .is_some_and(|s| s.contains(crate::support::hex_of(
                &crate::support::containers::probe_image().config_digest
            ))),
        "Image is the config digest: {inspect:#}"
    );
    let state = &inspect["State"];
    assert_eq!(state["Status"], "running", "{inspect:#}");
    assert_eq!(state["Running"], true, "{inspect:#}");
    for key in ["Pid", "MonitorPid"] {
        let pid = state[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {inspect:#}"));
        assert!(pid > 0 && process_alive(pid), "{key} {pid} is alive");
    }
    assert!(
        state["StartedAt"].as_str().is_some_and(|s| !s.is_empty()),
        "{inspect:#}"
    );
    assert!(
        inspect["Created"].as_str().is_some_and(|s| !s.is_empty()),
        "{inspect:#}"
    );
    assert_eq!(inspect["IdMap"]["Size"], 65536, "{inspect:#}");

    let run = farm.run(&["inspect", "nosuch"]);
    assert_ne!(run.code, 0, "{run:#?}");
    let run = farm.run(&["rm", "desc"]);
    assert_ne!(run.code, 0, "rm of a running container needs -f: {run:#?}");
    assert_eq!(farm.inspect("desc")["State"]["Status"], "running");
    farm.run(&["rm", "-f", "desc"]).assert_ok();
    assert_ne!(farm.run(&["inspect", "desc"]).code, 0);
    farm.assert_nothing_left(&id);
}

#[test]
fn logs_streams_tail_and_timestamps() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(
        &["--name", "both"],
        &["sh", "-c", "echo out1; echo err1 >&2; echo out2"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let logs = farm.run(&["logs", "both"]);
    logs.assert_ok();
    assert_eq!(logs.stdout, "out1\nout2\n", "stdout to stdout: {logs:#?}");
    assert_eq!(logs.stderr, "err1\n", "stderr to stderr: {logs:#?}");

    farm.run_probe(&["--name", "seq"], &["seq", "1", "5"])
        .assert_ok();
    let tail = farm.run(&["logs", "--tail", "2", "seq"]);
    assert_eq!(tail.stdout, "4\n5\n", "{tail:#?}");
    let stamped = farm.run(&["logs", "-t", "seq"]);
    let lines: Vec<&str> = stamped.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stamped:#?}");
    for (i, line) in lines.iter().enumerate() {
        let (stamp, text) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("TIMESTAMP TEXT: {line:?}"));
        assert_eq!(text, (i + 1).to_string(), "{stamped:#?}");
        assert!(
            stamp.len() >= 20
                && stamp.as_bytes()[4] == b'-'
                && stamp.contains('T')
                && stamp[..4].parse::<u32>().is_ok_and(|y| y >= 2024),
            "RFC 3339 timestamp: {line:?}"
        );
    }
}
