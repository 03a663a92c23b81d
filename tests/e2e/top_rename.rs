//! `farm top` (the container's processes as the host sees them, docker's `ps -ef` columns)
//! and `farm rename` (a running container keeps working under its new name).

use std::time::Duration;

use crate::support::containers::{wait_for, RunFarm};

#[test]
fn top_lists_every_process_of_the_container_with_host_ids() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    farm.detach(
        &["--name", "box"],
        &farm.probe(),
        &["sh", "-c", "sleep 1000 & exec sleep 999"],
    );
    let init = farm.inspect("box")["State"]["Pid"]
        .as_u64()
        .unwrap()
        .to_string();
    let run = wait_for(
        "both sleeps",
        Duration::from_secs(10),
        || {
            let run = farm.run(&["top", "box"]);
            (run.stdout.lines().count() == 3).then_some(run)
        },
        || format!("{:#?}", farm.run(&["top", "box"])),
    );
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["UID", "PID", "PPID", "TIME", "CMD"], "{run:#?}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let host_uid = std::fs::read_to_string(format!("/proc/{init}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")?
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .unwrap();
    assert_ne!(host_uid, "0");
    let first = rows
        .iter()
        .find(|r| r[1] == init)
        .expect("the init is listed");
    assert_eq!(first[0], host_uid, "{run:#?}");
    assert_eq!(first[4..], ["sleep", "999"], "{run:#?}");
    let child = rows.iter().find(|r| r[1] != init).unwrap();
    assert_eq!(child[2], init, "the child's parent is the init: {run:#?}");
    assert_eq!(child[4..], ["sleep", "1000"], "{run:#?}");

    farm.run(&["kill", "box"]).assert_ok();
    farm.wait_exited("box", Duration::from_secs(30));
    let run = farm.run(&["top", "box"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(run.stderr.contains("is not running"), "{run:#?}");
}

#[test]
fn rename_keeps_a_running_container_reachable_and_names_unique() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let id = farm.detach(&["--name", "old"], &farm.probe(), &["sleep", "1000"]);
    farm.detach(&["--name", "other"], &farm.probe(), &["sleep", "1000"]);
    farm.run(&["rename", "old", "new"]).assert_ok();
    assert_eq!(farm.inspect("new")["Id"], id.as_str());
    assert!(farm.try_inspect("old").is_none(), "the old name is gone");

    let run = farm.run(&["rename", "new", "other"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(run.stderr.contains("already in use"), "{run:#?}");
    let run = farm.run(&["rename", "new", "bad/name"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(run.stderr.contains("invalid container name"), "{run:#?}");

    // The freed name can be taken again; the renamed container stops by its new name.
    farm.detach(&["--name", "old"], &farm.probe(), &["sleep", "1000"]);
    farm.run(&["stop", "-t", "1", "new"]).assert_ok();
    assert_eq!(farm.inspect(&id)["State"]["Status"], "exited");
}
