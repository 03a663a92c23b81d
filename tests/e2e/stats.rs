//! `farm stats`: its figures against the container's own cgroup files (v1 or v2), docker's
//! table, only running containers by default, and the live refresh.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::containers::{wait_for, RunFarm};

/// The container's folder in the hierarchy of `controller` (v1) or its one folder (v2).
fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("farm")
        .join(id);
    if v1.is_dir() {
        v1
    } else {
        Path::new("/sys/fs/cgroup/farm").join(id)
    }
}

fn read_number(dir: &Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .parse()
        .unwrap_or(0)
}

fn stat_value(dir: &Path, key: &str) -> u64 {
    std::fs::read_to_string(dir.join("memory.stat"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} "))?.trim().parse().ok())
        .unwrap_or(0)
}

fn stats_json(farm: &RunFarm, names: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["stats", "--no-stream", "--json"];
    args.extend_from_slice(names);
    let run = farm.run(&args);
    assert_eq!(run.code, 0, "{run:#?}");
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn stats_json_matches_the_cgroups_own_files() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let id = farm.detach(
        &["--name", "box", "--memory", "64m", "--pids-limit", "50"],
        &farm.probe(),
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/fill bs=1M count=8 2>/dev/null; echo filled; exec sleep 1000",
        ],
    );
    let hot = farm.detach(&["--name", "hot"], &farm.probe(), &["/probe", "spin", "60"]);
    let memory = cgroup_dir("memory", &id);
    let v1 = memory.starts_with("/sys/fs/cgroup/memory");
    // dd done: the file is written.
    wait_for(
        "dd to finish",
        Duration::from_secs(20),
        || {
            farm.run(&["logs", "box"])
                .stdout
                .contains("filled")
                .then_some(())
        },
        || format!("{:#?}", farm.run(&["logs", "box"])),
    );

    let rows = stats_json(&farm, &["box"]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["Name"], "box");
    assert_eq!(row["ID"], &id[..12]);
    let limit = read_number(
        &memory,
        if v1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        },
    );
    assert_eq!(limit, 64 << 20);
    assert_eq!(row["MemoryLimitBytes"], limit, "{row:#}");
    assert_eq!(
        row["MemUsage"].as_str().unwrap().split(" / ").nth(1),
        Some("64MiB"),
        "{row:#}"
    );
    let (usage, inactive) = if v1 {
        ("memory.usage_in_bytes", "total_inactive_file")
    } else {
        ("memory.current", "inactive_file")
    };
    let expected = read_number(&memory, usage) - stat_value(&memory, inactive);
    let shown = row["MemoryUsageBytes"].as_u64().unwrap();
    assert!(
        shown.abs_diff(expected) < 1 << 20,
        "usage minus inactive file cache: {shown} vs {expected} {row:#}"
    );
    assert!(shown > 0, "{row:#}");
    assert_eq!(row["Pids"], 1, "sleep (sh exec'd it): {row:#}");
    assert_eq!(
        row["Pids"],
        read_number(&cgroup_dir("pids", &id), "pids.current")
    );
    assert_eq!(
        (row["NetRxBytes"].as_u64(), row["NetTxBytes"].as_u64()),
        (Some(0), Some(0))
    );

    let rows = stats_json(&farm, &["hot"]);
    let cpu = rows[0]["CpuPercent"].as_f64().unwrap();
    assert!(
        cpu > 50.0,
        "a spinning process uses about one CPU: {rows:#?}"
    );
    assert!(
        cpu < 150.0,
        "one thread, at most one CPU (and some noise): {rows:#?}"
    );
    let idle = stats_json(&farm, &["box"])[0]["CpuPercent"]
        .as_f64()
        .unwrap();
    assert!(idle < 5.0, "a sleeping container: {idle}");

    // Every running container by default; a stopped one is gone from the list.
    farm.run(&["kill", &hot]).assert_ok();
    farm.wait_exited("hot", Duration::from_secs(30));
    let names: Vec<String> = stats_json(&farm, &[])
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["box"]);
}

#[test]
fn stats_table_and_live_refresh_are_dockers() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    farm.detach(
        &["--name", "box", "--memory", "32m"],
        &farm.probe(),
        &["sleep", "1000"],
    );
    let run = farm.run(&["stats", "--no-stream"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let mut lines = run.stdout.lines();
    let header = lines.next().unwrap();
    for column in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(column), "{run:#?}");
    }
    let row = lines.next().unwrap();
    assert!(row.contains(" box ") && row.contains("/ 32MiB"), "{run:#?}");
    assert!(row.trim_end().ends_with(" 1"), "one process: {run:#?}");
    assert_eq!(lines.next(), None, "{run:#?}");

    let mut live = farm.spawn(&["stats", "box"]);
    wait_for(
        "three refreshes",
        Duration::from_secs(20),
        || (live.stdout_now().matches("CONTAINER ID").count() >= 3).then_some(()),
        || live.stdout_now(),
    );
    live.kill();

    let run = farm.run(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(run.code, 125, "{run:#?}");
}
