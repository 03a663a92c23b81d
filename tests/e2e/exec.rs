//! `farm exec` as `docker exec`: the process is in the container's namespaces, cgroup and
//! sandbox (seen from inside and from the host), holds only fds 0 to 2, sees the
//! container's /proc, takes the container's user, working dir and environment (or `-u`,
//! `-w`, `-e`), and exits as docker does (the process's code, 126, 127, 125).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::containers::{
    cgroup_processes, comm, key_values, run_deadline_stdin, wait_for, RunFarm, COMMAND_LIMIT,
};

/// A farm with one running container `box` (`sleep`, started with `-e FROM_RUN=1` and
/// `-w /home`); its id.
fn running_box() -> Option<(RunFarm, String)> {
    let farm = RunFarm::new()?;
    let id = farm.detach(
        &["--name", "box", "-e", "FROM_RUN=1", "-w", "/home"],
        &farm.probe(),
        &["/bin/sleep", "1000"],
    );
    Some((farm, id))
}

/// Lines `KEY VALUE` split in two maps: before and after a `---` line.
fn halves(text: &str) -> (String, String) {
    let (a, b) = text.split_once("---\n").unwrap_or((text, ""));
    (a.to_string(), b.to_string())
}

#[test]
fn exec_shares_the_namespaces_cgroup_and_sandbox_of_the_first_process() {
    let Some((farm, id)) = running_box() else {
        return;
    };
    let run = farm.run(&[
        "exec",
        "box",
        "sh",
        "-c",
        "for n in ipc mnt net pid uts cgroup user; do echo \"$n $(readlink /proc/self/ns/$n) $(readlink /proc/1/ns/$n)\"; done",
    ]);
    assert_eq!(run.code, 0, "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{run:#?}");
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "both links readable: {line} {run:#?}");
        assert_eq!(fields[1], fields[2], "same namespace as PID 1: {line}");
    }

    let keys = "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Uid|Gid):";
    let script =
        format!("grep -E '{keys}' /proc/self/status; echo ---; grep -E '{keys}' /proc/1/status");
    let run = farm.run(&["exec", "box", "sh", "-c", &script]);
    assert_eq!(run.code, 0, "{run:#?}");
    let (exec, init) = halves(&run.stdout);
    assert_eq!(
        exec, init,
        "same capabilities, ids, no_new_privs, seccomp: {run:#?}"
    );
    assert!(exec.contains("Seccomp:\t2"), "a seccomp filter: {run:#?}");
    assert!(exec.contains("NoNewPrivs:\t1"), "{run:#?}");

    let run = farm.run(&[
        "exec",
        "box",
        "sh",
        "-c",
        "cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup",
    ]);
    let (exec, init) = halves(&run.stdout);
    assert!(!exec.is_empty() && exec == init, "same cgroup: {run:#?}");

    // From the host: a detached exec is in every cgroup of the container's init.
    let init_pid = farm.inspect("box")["State"]["Pid"].as_u64().expect("a pid");
    farm.run(&["exec", "-d", "box", "/bin/sleep", "77"])
        .assert_ok();
    let exec_pid = wait_for(
        "the detached exec in the container's cgroup",
        Duration::from_secs(10),
        || {
            cgroup_processes(&id)
                .into_iter()
                .map(|(pid, _)| pid)
                .find(|pid| u64::from(*pid) != init_pid && comm(*pid) == "sleep")
        },
        || format!("{:?}", cgroup_processes(&id)),
    );
    let cgroups = |pid: u64| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(cgroups(u64::from(exec_pid)), cgroups(init_pid));
    let uid = |pid: u64| {
        key_values(
            &std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap()
                .replace(":\t", "="),
        )["Uid"]
            .clone()
    };
    assert_eq!(
        uid(u64::from(exec_pid)),
        uid(init_pid),
        "the container's root on the host, never host root"
    );
}

/// fd numbers of `probe fds`.
fn fds(text: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("fd "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn exec_holds_only_stdio_and_sees_the_containers_proc_and_root() {
    let Some((farm, _id)) = running_box() else {
        return;
    };
    let want: BTreeSet<u32> = [0, 1, 2].into();
    let run = farm.run(&["exec", "box", "/probe", "fds"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(fds(&run.stdout), want, "{run:#?}");
    let run = farm.run_stdin(&["exec", "-i", "box", "/probe", "fds"], "");
    assert_eq!(fds(&run.stdout), want, "with -i: {run:#?}");

    let run = farm.run(&["exec", "box", "/probe", "cwd"]);
    let facts = key_values(&run.stdout);
    assert_eq!(
        facts.get("cwd").map(String::as_str),
        Some("/home"),
        "{run:#?}"
    );
    assert_eq!(
        facts.get("reaches_root").map(String::as_str),
        Some("1"),
        "{run:#?}"
    );
    // The container's /proc: its PID 1 is the container's sleep, and it lists only the
    // container's few processes (the host has hundreds).
    let run = farm.run(&[
        "exec",
        "box",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'",
    ]);
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("/bin/sleep 1000 "), "{run:#?}");
    let count: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(999);
    assert!(count <= 5, "only the container's processes: {run:#?}");
}

#[test]
fn exec_takes_the_user_workdir_and_env_of_the_container_or_the_flags() {
    let Some((farm, _id)) = running_box() else {
        return;
    };
    let run = farm.run(&["exec", "box", "sh", "-c", "id -u; pwd; echo $HOME"]);
    assert_eq!(run.stdout, "0\n/home\n/root\n", "{run:#?}");
    let run = farm.run(&[
        "exec",
        "-u",
        "user",
        "-w",
        "/etc",
        "box",
        "sh",
        "-c",
        "id -u; id -g; id -G; pwd; echo $HOME",
    ]);
    assert_eq!(
        run.stdout, "1000\n1000\n1000 50 2000\n/etc\n/home/user\n",
        "user's groups from /etc/group, as docker: {run:#?}"
    );
    let run = farm.run(&[
        "exec",
        "-u",
        "4242:2000",
        "box",
        "sh",
        "-c",
        "id -u; id -g; echo $HOME",
    ]);
    assert_eq!(
        run.stdout, "4242\n2000\n/\n",
        "no passwd entry: HOME=/ {run:#?}"
    );
    let run = farm.run(&["exec", "-u", "nosuchuser", "box", "true"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        run.stderr.contains("unable to find user nosuchuser"),
        "{run:#?}"
    );

    let run = farm.run(&["exec", "-e", "EXTRA=2", "-e", "FROM_RUN=3", "box", "env"]);
    let env: BTreeMap<String, String> = key_values(&run.stdout);
    assert_eq!(env.get("EXTRA").map(String::as_str), Some("2"), "{run:#?}");
    assert_eq!(
        env.get("FROM_RUN").map(String::as_str),
        Some("3"),
        "-e wins: {run:#?}"
    );
    assert!(
        env.get("PATH").is_some_and(|p| p.contains("/bin")),
        "{run:#?}"
    );
    let run = farm.run(&["exec", "box", "env"]);
    assert_eq!(
        key_values(&run.stdout).get("FROM_RUN").map(String::as_str),
        Some("1"),
        "{run:#?}"
    );

    let run = farm.run_stdin(&["exec", "-i", "box", "cat"], "through stdin\n");
    assert_eq!(run.stdout, "through stdin\n", "{run:#?}");
}

#[test]
fn exec_exit_codes_are_dockers() {
    let Some((farm, _id)) = running_box() else {
        return;
    };
    let run = farm.run(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (7, "out\n", "err\n"),
        "{run:#?}"
    );
    let run = farm.run(&["exec", "box", "sh", "-c", "kill -9 $$"]);
    assert_eq!(run.code, 137, "{run:#?}");
    let run = farm.run(&["exec", "box", "no-such-command"]);
    assert_eq!(run.code, 127, "{run:#?}");
    assert!(run.stderr.contains("executable file not found"), "{run:#?}");
    let run = farm.run(&["exec", "box", "/etc/not-executable.sh"]);
    assert_eq!(run.code, 126, "{run:#?}");
    let run = farm.run(&["exec", "box", "/etc"]);
    assert_eq!(run.code, 126, "{run:#?}");
    let run = farm.run(&["exec", "nosuchbox", "true"]);
    assert_eq!(run.code, 125, "{run:#?}");

    farm.run(&["kill", "box"]).assert_ok();
    farm.wait_exited("box", Duration::from_secs(30));
    let run = farm.run(&["exec", "box", "true"]);
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(run.stderr.contains("is not running"), "{run:#?}");
}

#[test]
fn exec_with_t_gets_a_terminal_of_its_own() {
    if !crate::support::require(
        crate::support::have_file("/usr/bin/script"),
        "script (apt install util-linux) for a pty",
    ) {
        return;
    }
    let Some((farm, _id)) = running_box() else {
        return;
    };
    // `script` gives farm a pty as its stdin and stdout, as a person's terminal would.
    let line = format!(
        "{} --root {} exec -it box sh -c 'tty; echo $TERM; test -t 0 && echo stdin-is-a-tty'",
        env!("CARGO_BIN_EXE_farm"),
        farm.root().display()
    );
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .env("FARM_NETWORK", "none");
    let run = run_deadline_stdin(script, None, COMMAND_LIMIT);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("/dev/pts/"), "{run:#?}");
    assert!(run.stdout.contains("stdin-is-a-tty"), "{run:#?}");
    assert!(
        run.stdout.contains("\nxterm\r\n"),
        "TERM as docker exec -t: {run:#?}"
    );
    let run = farm.run(&["exec", "box", "sh", "-c", "test -t 1 || echo no-tty"]);
    assert_eq!(run.stdout, "no-tty\n", "without -t: pipes {run:#?}");
}
