//! cgroup limits and metering: memory (OOM kill, 137, OOMKilled), pids (a fork bomb
//! stops), CPU quota (a bounded CPU-time share, never a wall-clock speed), and the Usage
//! farm records for every run.

use crate::support::containers::{key_values, RunFarm};

fn f64_of(value: &serde_json::Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is a number: {value:#}"))
}

#[test]
fn memory_limit_oom_kills_with_137() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(
        &["--name", "oom", "--memory", "32m"],
        &["/probe", "hog", "200"],
    );
    assert_eq!(run.code, 137, "killed by the OOM killer: {run:#?}");
    assert!(!run.stdout.contains("hog done"), "{run:#?}");
    let inspect = farm.inspect("oom");
    assert_eq!(inspect["State"]["OOMKilled"], true, "{inspect:#}");
    assert_eq!(inspect["State"]["ExitCode"], 137, "{inspect:#}");
    assert_eq!(inspect["State"]["Status"], "exited", "{inspect:#}");

    // Under the limit, the same program finishes.
    let run = farm.run_probe(
        &["--name", "fits", "--memory", "64m"],
        &["/probe", "hog", "16"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("hog done 16 MiB"), "{run:#?}");
    let inspect = farm.inspect("fits");
    assert_eq!(inspect["State"]["OOMKilled"], false, "{inspect:#}");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    // The probe's bomb stops at the first failed fork (or 10000 children, exiting 1), then
    // kills its children: bounded even when the limit is missing.
    let run = farm.run_probe(&["--pids-limit", "50"], &["/probe", "forkbomb"]);
    let facts = key_values(&run.stdout);
    let forked: u32 = facts
        .get("forked")
        .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
        .unwrap_or_else(|| panic!("forked=N: {run:#?}"));
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("forked="))
        .unwrap();
    assert!(
        line.ends_with("stopped=EAGAIN"),
        "fork failed with EAGAIN at the limit: {run:#?}"
    );
    assert!(forked < 50, "at most 49 children beside pid 1: {run:#?}");
    assert_eq!(run.code, 0, "{run:#?}");
    // The host still forks.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
}

#[test]
fn cpu_quota_bounds_the_cpu_time_share() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    // One busy thread under --cpus 0.5 gets about half of the container's wall time in
    // CPU. The bounds are on that share (0.3..0.7), measured against the container's own
    // wall time (its setup included: in the cgroup v2 lane's emulated VM that setup is
    // seconds long), not on how fast anything ran. Unlimited, the share would be ~1.
    let run = farm.run_probe(
        &["--name", "half", "--cpus", "0.5"],
        &["/probe", "spin", "3"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let usage = &farm.inspect("half")["Usage"];
    let cpu = f64_of(&usage["CpuUserSeconds"], "CpuUserSeconds")
        + f64_of(&usage["CpuSystemSeconds"], "CpuSystemSeconds");
    let wall = f64_of(&usage["WallSeconds"], "WallSeconds");
    assert!(wall >= 3.0, "it spun 3 s: {usage:#}");
    assert!(
        (0.3..=0.7).contains(&(cpu / wall)),
        "CPU seconds {cpu} under --cpus 0.5 over {wall} s of wall time: {usage:#}\n{run:#?}"
    );
}

#[test]
fn usage_is_recorded_for_every_run() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(
        &["--name", "metered"],
        &["sh", "-c", "/probe spin 0.5 && /probe hog 16"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let usage = farm.inspect("metered")["Usage"].clone();
    let user = f64_of(&usage["CpuUserSeconds"], "CpuUserSeconds");
    let system = f64_of(&usage["CpuSystemSeconds"], "CpuSystemSeconds");
    let wall = f64_of(&usage["WallSeconds"], "WallSeconds");
    let peak = usage["MemoryPeakBytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("MemoryPeakBytes: {usage:#}"));
    assert!(user > 0.0 && system >= 0.0, "{usage:#}");
    assert!(user + system > 0.0, "{usage:#}");
    assert!(wall >= 0.5, "it spun 0.5 s of wall time: {usage:#}");
    assert!(
        peak >= 16 << 20,
        "it touched 16 MiB, the peak is {peak}: {usage:#}"
    );
}

/// The swap limit the kernel holds for container `id`, as memory plus swap in bytes
/// (`None`: unlimited): `memory.memsw.limit_in_bytes` on cgroup v1, `memory.max` +
/// `memory.swap.max` on v2.
fn memory_and_swap(id: &str) -> Option<Option<u64>> {
    let dirs = crate::support::containers::cgroup_dirs(id);
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).ok();
    for dir in &dirs {
        if let Some(text) = read(dir.join("memory.memsw.limit_in_bytes")) {
            let bytes: u64 = text.trim().parse().unwrap();
            return Some((bytes < 1 << 62).then_some(bytes));
        }
        if let (Some(memory), Some(swap)) = (
            read(dir.join("memory.max")),
            read(dir.join("memory.swap.max")),
        ) {
            if swap.trim() == "max" {
                return Some(None);
            }
            let memory: u64 = memory.trim().parse().unwrap();
            return Some(Some(memory + swap.trim().parse::<u64>().unwrap()));
        }
    }
    None
}

#[test]
fn memory_swap_has_dockers_meaning_in_the_cgroup_files() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let mib = 1u64 << 20;
    for (name, flags, want) in [
        ("default", vec![], Some(64 * mib)),
        ("equal", vec!["--memory-swap", "64m"], Some(64 * mib)),
        ("larger", vec!["--memory-swap", "192m"], Some(192 * mib)),
        ("unlimited", vec!["--memory-swap", "-1"], None),
    ] {
        let mut options = vec!["--name", name, "--memory", "64m"];
        options.extend(flags);
        let id = farm.detach(&options, &farm.probe(), &["sleep", "1000"]);
        let Some(got) = memory_and_swap(&id) else {
            crate::support::require(false, "swap accounting (memory.memsw.* or memory.swap.max)");
            return;
        };
        assert_eq!(got, want, "{name}: memory + swap");
        farm.run(&["rm", "-f", name]).assert_ok();
    }

    let run = farm.run_probe(&["--memory", "64m", "--memory-swap", "32m"], &["true"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        run.stderr
            .contains("Minimum memoryswap limit should be larger than memory limit, see usage"),
        "{run:#?}"
    );
    let run = farm.run_probe(&["--memory-swap", "64m"], &["true"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        run.stderr.contains(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        ),
        "{run:#?}"
    );
}
