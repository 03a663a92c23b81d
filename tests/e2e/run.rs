//! `farm run` with docker's semantics: Entrypoint/Cmd, users, working dir, environment,
//! exit codes, `--rm`, names, mounts, and hostile image configs that must neither hang farm
//! nor reach the host.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::support::containers::{
    key_values, mounts_under, probe_image_layers, probe_image_with, RunFarm, START_LIMIT,
};
use crate::support::images::{busybox_layer, Image, LayerBuilder};
use crate::support::Run;

/// Options or a command line of one case.
type Args = &'static [&'static str];

/// Supplementary groups a case expects.
type Groups = &'static [u32];

/// The container's stdout lines, trailing newline trimmed.
fn out(run: &Run) -> &str {
    run.stdout.trim_end_matches('\n')
}

#[test]
fn entrypoint_and_cmd_combine_as_docker() {
    let Some(farm) = RunFarm::with_images(&[
        (
            "both",
            probe_image_with(json!({"Entrypoint": ["/bin/echo", "ep"], "Cmd": ["c1", "c2"]})),
        ),
        (
            "cmd-only",
            probe_image_with(json!({"Cmd": ["/bin/echo", "only-cmd"]})),
        ),
        (
            "shell",
            probe_image_with(json!({
                "Entrypoint": ["/bin/sh", "-c", "echo \"ep:$*\"", "sh"],
                "Cmd": ["a", "b"],
            })),
        ),
        ("none", probe_image_with(json!({"Cmd": null}))),
    ]) else {
        return;
    };
    // (options, image tag, command, expected stdout; None: a farm error, 125)
    let cases: &[(Args, &str, Args, Option<&str>)] = &[
        (&[], "both", &[], Some("ep c1 c2")),
        (&[], "both", &["x", "y"], Some("ep x y")),
        // --entrypoint resets the image's Cmd too.
        (&["--entrypoint", "/bin/echo"], "both", &[], Some("")),
        (&["--entrypoint", "/bin/echo"], "both", &["z"], Some("z")),
        (
            &["--entrypoint", ""],
            "both",
            &["/bin/echo", "w"],
            Some("w"),
        ),
        (&["--entrypoint", ""], "both", &[], None),
        (&[], "cmd-only", &[], Some("only-cmd")),
        (&[], "cmd-only", &["/bin/echo", "other"], Some("other")),
        (
            &["--entrypoint", "/bin/echo"],
            "cmd-only",
            &["e"],
            Some("e"),
        ),
        (&[], "shell", &[], Some("ep:a b")),
        (&[], "shell", &["c"], Some("ep:c")),
        // Neither Entrypoint nor Cmd nor a command: docker's "no command specified".
        (&[], "none", &[], None),
    ];
    for (options, tag, command, expected) in cases {
        let run = farm.run_container(options, &farm.image(tag), command);
        let what = format!("run {options:?} {tag} {command:?}");
        match expected {
            Some(want) => {
                assert_eq!(run.code, 0, "{what}: {run:#?}");
                assert_eq!(out(&run), *want, "{what}: {run:#?}");
            }
            None => {
                assert_eq!(run.code, 125, "{what} is a farm error: {run:#?}");
                assert!(!run.stderr.trim().is_empty(), "{what} says why: {run:#?}");
            }
        }
    }
}

/// `(uid, gid, groups)` of the probe's `status` (effective ids; groups are the
/// supplementary groups plus the gid, as `id -G` shows them). Read from /proc, not through
/// the image's /etc/passwd, which hostile images make unreadable.
fn ids(run: &Run) -> (u32, u32, BTreeSet<u32>) {
    let facts = key_values(&run.stdout);
    let field = |key: &str, n: usize| -> u32 {
        facts
            .get(key)
            .and_then(|v| v.split_whitespace().nth(n))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in probe status: {run:#?}"))
    };
    let (uid, gid) = (field("Uid", 1), field("Gid", 1));
    let mut groups: BTreeSet<u32> = facts
        .get("Groups")
        .map(|v| v.split_whitespace().map(|g| g.parse().unwrap()).collect())
        .unwrap_or_default();
    groups.insert(gid);
    (uid, gid, groups)
}

#[test]
fn user_forms_resolve_like_docker() {
    let Some(farm) =
        RunFarm::with_images(&[("as-user", probe_image_with(json!({"User": "user"})))])
    else {
        return;
    };
    let show = ["/probe", "status"];
    // /etc/group of the probe image: user (1000) is also in staff (50) and extra (2000).
    let user_groups: &[u32] = &[1000, 50, 2000];
    let cases: &[(Args, &str, u32, u32, Option<Groups>)] = &[
        (&[], "probe", 0, 0, None),
        (&["-u", "user"], "probe", 1000, 1000, Some(user_groups)),
        // A uid found in /etc/passwd takes that user's group and supplementary groups.
        (&["-u", "1000"], "probe", 1000, 1000, Some(user_groups)),
        (&["-u", "1000:50"], "probe", 1000, 50, None),
        (&["-u", "user:staff"], "probe", 1000, 50, None),
        (&["-u", "user:2000"], "probe", 1000, 2000, None),
        // A uid nobody names: group 0, as docker.
        (&["-u", "4242"], "probe", 4242, 0, None),
        (&["-u", "4242:4343"], "probe", 4242, 4343, None),
        (&[], "as-user", 1000, 1000, Some(user_groups)),
        (&["-u", "0"], "as-user", 0, 0, None),
        (&["-u", "root"], "as-user", 0, 0, None),
    ];
    for (options, tag, uid, gid, groups) in cases {
        let run = farm.run_container(options, &farm.image(tag), &show);
        let what = format!("run {options:?} {tag}");
        assert_eq!(run.code, 0, "{what}: {run:#?}");
        let (got_uid, got_gid, got_groups) = ids(&run);
        assert_eq!((got_uid, got_gid), (*uid, *gid), "{what}: {run:#?}");
        if let Some(groups) = groups {
            let want: BTreeSet<u32> = groups.iter().copied().collect();
            assert_eq!(got_groups, want, "{what}: supplementary groups: {run:#?}");
        }
    }
    for user in ["nosuch", "user:nosuchgroup", "4294967295", "0:4294967295"] {
        let run = farm.run_probe(&["-u", user], &show);
        assert_eq!(run.code, 125, "-u {user} is refused: {run:#?}");
        assert!(
            !run.stderr.trim().is_empty(),
            "-u {user} says why: {run:#?}"
        );
    }
}

#[test]
fn workdir_is_used_and_created_when_missing() {
    let Some(farm) = RunFarm::with_images(&[(
        "workdir",
        probe_image_with(json!({"WorkingDir": "/work/here"})),
    )]) else {
        return;
    };
    let cases: &[(&[&str], &str, &str)] = &[
        (&[], "probe", "/"),
        (&["-w", "/new/deep/dir"], "probe", "/new/deep/dir"),
        (&["-w", "/tmp"], "probe", "/tmp"),
        (&[], "workdir", "/work/here"),
        (&["-w", "/tmp"], "workdir", "/tmp"),
        (
            &["-u", "user", "-w", "/made/for/user"],
            "probe",
            "/made/for/user",
        ),
    ];
    for (options, tag, want) in cases {
        let run = farm.run_container(options, &farm.image(tag), &["pwd"]);
        assert_eq!(run.code, 0, "run {options:?} {tag}: {run:#?}");
        assert_eq!(out(&run), *want, "run {options:?} {tag}: {run:#?}");
    }
    let run = farm.run_probe(&["-w", "relative/dir"], &["pwd"]);
    assert_eq!(
        run.code, 125,
        "a relative -w is refused, as docker: {run:#?}"
    );
}

/// `KEY=VALUE` lines of `env`.
fn env_of(run: &Run) -> BTreeMap<String, String> {
    out(run)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_merges_image_env_file_and_flags() {
    let Some(mut farm) = RunFarm::with_images(&[(
        "env",
        probe_image_with(json!({"Env": ["PATH=/usr/bin:/bin", "A=image", "B=image", "C=image"]})),
    )]) else {
        return;
    };
    farm.farm
        .extra_env
        .push(("FARM_E2E_FROM_HOST".into(), "host-value".into()));
    let env_file = farm.dir.path().join("env.list");
    std::fs::write(
        &env_file,
        "# a comment\n\nB=file\nF=file with spaces\nFARM_E2E_UNSET_ON_HOST\n",
    )
    .unwrap();
    let env_file = env_file.to_str().unwrap();
    let image = farm.image("env");
    let run = farm.run_container(
        &[
            "--env-file",
            env_file,
            "-e",
            "C=cli",
            "-e",
            "D=cli=with=equals",
            "-e",
            "FARM_E2E_FROM_HOST",
        ],
        &image,
        &["env"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let env = env_of(&run);
    let want = [
        ("PATH", "/usr/bin:/bin"),
        ("A", "image"),
        ("B", "file"),
        ("C", "cli"),
        ("D", "cli=with=equals"),
        ("F", "file with spaces"),
        ("FARM_E2E_FROM_HOST", "host-value"),
        ("HOME", "/root"),
    ];
    for (key, value) in want {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(value),
            "{key}: {env:#?}"
        );
    }
    assert!(
        !env.contains_key("FARM_E2E_UNSET_ON_HOST"),
        "a bare name unset on the host is dropped: {env:#?}"
    );
    // -e comes after --env-file: it wins.
    let run = farm.run_container(&["--env-file", env_file, "-e", "B=cli"], &image, &["env"]);
    assert_eq!(
        env_of(&run).get("B").map(String::as_str),
        Some("cli"),
        "{run:#?}"
    );
    // HOME follows the user, unless set.
    let run = farm.run_container(&["-u", "user"], &image, &["env"]);
    assert_eq!(
        env_of(&run).get("HOME").map(String::as_str),
        Some("/home/user"),
        "{run:#?}"
    );
    let run = farm.run_container(&["-e", "HOME=/custom"], &image, &["env"]);
    assert_eq!(
        env_of(&run).get("HOME").map(String::as_str),
        Some("/custom"),
        "{run:#?}"
    );
    let run = farm.run_container(&["--env-file", "/nonexistent/env.list"], &image, &["env"]);
    assert_eq!(
        run.code, 125,
        "a missing --env-file is a farm error: {run:#?}"
    );
}

#[test]
fn exit_codes_follow_docker() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let cases: &[(&[&str], i32)] = &[
        (&["sh", "-c", "exit 3"], 3),
        (&["sh", "-c", "exit 0"], 0),
        (&["sh", "-c", "exit 255"], 255),
        (&["false"], 1),
        (&["/nonexistent"], 127),
        (&["nosuchcommand"], 127),
        (&["/etc/not-executable.sh"], 126),
        (&["/tmp"], 126),
    ];
    for (command, code) in cases {
        let run = farm.run_probe(&[], command);
        assert_eq!(run.code, *code, "run probe {command:?}: {run:#?}");
        if *code == 126 || *code == 127 {
            assert!(
                !run.stderr.trim().is_empty(),
                "{command:?}: farm says why it could not start it: {run:#?}"
            );
        }
    }
    // stdout and stderr stay apart.
    let run = farm.run_probe(&[], &["sh", "-c", "echo to-out; echo to-err >&2"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(out(&run), "to-out", "{run:#?}");
    assert!(run.stderr.contains("to-err"), "{run:#?}");
    assert!(!run.stdout.contains("to-err"), "{run:#?}");
}

#[test]
fn interactive_stdin_reaches_the_container() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let probe = farm.probe();
    let run = farm.run_stdin(&["run", "-i", &probe, "cat"], "line one\nline two\n");
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout, "line one\nline two\n", "{run:#?}");
    // Without -i the container's stdin is empty.
    let run = farm.run_stdin(&["run", &probe, "cat"], "not read\n");
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout, "", "{run:#?}");
}

#[test]
fn rm_flag_leaves_nothing() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&["--rm"], &["echo", "hi"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(out(&run), "hi");
    let run = farm.run_probe(&["--rm", "--name", "gone"], &["sh", "-c", "exit 3"]);
    assert_eq!(run.code, 3, "--rm keeps the exit code: {run:#?}");
    assert!(farm.ps(true).is_empty(), "ps -a: {:#?}", farm.ps(true));
    assert!(
        farm.container_dirs().is_empty(),
        "{:?}",
        farm.container_dirs()
    );
    assert!(mounts_under(&farm.root()).is_empty());
    // The name is free again.
    farm.run_probe(&["--rm", "--name", "gone"], &["true"])
        .assert_ok();

    // Detached: removed once it exits.
    let id = farm.detach(&["--rm"], &farm.probe(), &["sleep", "1"]);
    crate::support::containers::wait_for(
        "the --rm container to be removed",
        START_LIMIT,
        || farm.ps(true).is_empty().then_some(()),
        || format!("{:#?}", farm.ps(true)),
    );
    farm.assert_nothing_left(&id);
}

#[test]
fn names_are_unique_and_checked() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    farm.run_probe(&["--name", "dup"], &["true"]).assert_ok();
    let run = farm.run_probe(&["--name", "dup"], &["true"]);
    run.assert_farm_error();
    assert!(run.stderr.contains("dup"), "the error names it: {run:#?}");
    let named: Vec<_> = farm
        .ps(true)
        .into_iter()
        .filter(|c| {
            c["Name"]
                .as_str()
                .is_some_and(|n| n.trim_start_matches('/') == "dup")
        })
        .collect();
    assert_eq!(named.len(), 1, "one container named dup: {named:#?}");
    farm.run(&["rm", "dup"]).assert_ok();
    farm.run_probe(&["--name", "dup"], &["true"]).assert_ok();

    // Names are docker's [a-zA-Z0-9][a-zA-Z0-9_.-]*: nothing that could name a path.
    for bad in ["../escape", "a/b", ".hidden", "with space"] {
        let run = farm.run_probe(&["--name", bad], &["true"]);
        assert_eq!(run.code, 125, "--name {bad:?} is refused: {run:#?}");
    }
    assert!(!farm.root().join("escape").exists());
    assert!(!farm.dir.path().join("escape").exists());
}

#[test]
fn hostname_and_labels() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let run = farm.run_probe(&["--hostname", "job-host"], &["hostname"]);
    assert_eq!(out(&run), "job-host", "{run:#?}");
    let run = farm.run_probe(
        &["--name", "named", "--label", "a=1", "--label", "team=x"],
        &["hostname"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let inspect = farm.inspect("named");
    let id = inspect["Id"].as_str().expect("Id");
    assert_eq!(
        out(&run),
        &id[..12],
        "the default hostname is the short id: {inspect:#}"
    );
    assert_eq!(inspect["Config"]["Labels"]["a"], "1", "{inspect:#}");
    assert_eq!(inspect["Config"]["Labels"]["team"], "x", "{inspect:#}");
}

#[test]
fn binds_read_only_rootfs_and_tmpfs() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    let host = farm.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(host.join("data.txt"), "host data\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let rw = format!("{}:/data", host.display());

    let run = farm.run_probe(&["-v", &ro], &["cat", "/data/data.txt"]);
    assert_eq!(out(&run), "host data", "{run:#?}");
    let run = farm.run_probe(&["-v", &ro], &["sh", "-c", "echo x > /data/new"]);
    assert_ne!(run.code, 0, "a :ro bind is read-only: {run:#?}");
    assert!(!host.join("new").exists());
    let run = farm.run_probe(&["-v", &rw], &["sh", "-c", "echo x > /data/new"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(std::fs::read_to_string(host.join("new")).unwrap(), "x\n");

    let run = farm.run_probe(&["--read-only"], &["sh", "-c", "touch /made"]);
    assert_ne!(run.code, 0, "--read-only: {run:#?}");
    let run = farm.run_probe(
        &["--read-only", "--tmpfs", "/scratch"],
        &["sh", "-c", "touch /scratch/x && echo wrote"],
    );
    assert_eq!(out(&run), "wrote", "{run:#?}");
    let run = farm.run_probe(
        &["--tmpfs", "/scratch:size=1m"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/scratch/big bs=1024 count=2048",
        ],
    );
    assert_ne!(run.code, 0, "a 1m tmpfs holds no 2 MiB: {run:#?}");
}

/// A host folder the hostile images point at, with a fake passwd and group.
fn host_bait() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("farm-e2e-bait-")
        .tempdir()
        .unwrap();
    std::fs::write(
        dir.path().join("passwd"),
        "root:x:4343:4343:root:/:/bin/sh\nescapee:x:4242:4242::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("group"),
        "escgroup:x:4545:user,root,escapee\n",
    )
    .unwrap();
    for sub in ["proc-target", "dev-target", "sys-target"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    dir
}

/// `../` enough times to climb out of any root, then `path` (absolute).
fn climb(path: &std::path::Path) -> String {
    format!(
        "{}{}",
        "../".repeat(16),
        path.display().to_string().trim_start_matches('/')
    )
}

#[test]
fn hostile_passwd_and_group_links_stay_inside() {
    let bait = host_bait();
    let layer = |passwd: &str, group: Option<&str>| {
        let mut b = LayerBuilder::new()
            .dir("etc", 0o755, 0, 0)
            .symlink("etc/passwd", passwd);
        if let Some(group) = group {
            b = b.symlink("etc/group", group);
        }
        vec![b]
    };
    let host_passwd = climb(&bait.path().join("passwd"));
    let host_group = bait.path().join("group").display().to_string();
    let Some(farm) = RunFarm::with_images(&[
        (
            "passwd-zero",
            probe_image_layers(layer("/dev/zero", None), json!({})),
        ),
        (
            "passwd-host",
            probe_image_layers(layer(&host_passwd, None), json!({})),
        ),
        (
            "passwd-shadow",
            probe_image_layers(layer("../../../../../../../etc/shadow", None), json!({})),
        ),
        (
            "group-host",
            probe_image_layers(
                vec![LayerBuilder::new()
                    .dir("etc", 0o755, 0, 0)
                    .symlink("etc/group", &host_group)],
                json!({}),
            ),
        ),
    ]) else {
        return;
    };
    let show = ["/probe", "status"];
    let ok_or_refused = |run: &Run, what: &str| {
        assert!(
            run.code == 0 || run.code == 125,
            "{what}: runs or is refused, nothing else: {run:#?}"
        );
        run.code == 0
    };

    // /etc/passwd -> /dev/zero: an endless line must not hang farm (run() has a deadline).
    let zero = farm.image("passwd-zero");
    let run = farm.run_container(&[], &zero, &show);
    if ok_or_refused(&run, "passwd-zero, default user") {
        assert_eq!(ids(&run).0, 0, "{run:#?}");
    }
    let run = farm.run_container(&["-u", "user"], &zero, &show);
    assert_eq!(
        run.code, 125,
        "no user can be read from /dev/zero: {run:#?}"
    );
    let run = farm.run_container(&["-u", "1000"], &zero, &show);
    if ok_or_refused(&run, "passwd-zero, -u 1000") {
        assert_eq!(ids(&run).0, 1000, "{run:#?}");
    }

    // /etc/passwd -> ../../..../<host>/passwd: resolved inside the rootfs, it is dangling.
    let host = farm.image("passwd-host");
    let run = farm.run_container(&["-u", "escapee"], &host, &show);
    assert_eq!(
        run.code, 125,
        "escapee exists only in the host file the link points at: {run:#?}"
    );
    let run = farm.run_container(&[], &host, &show);
    if ok_or_refused(&run, "passwd-host, default user") {
        assert_eq!(ids(&run).0, 0, "not the host file's root (4343): {run:#?}");
    }

    // /etc/passwd -> ../../../etc/shadow: never the host's shadow.
    let shadow = farm.image("passwd-shadow");
    let run = farm.run_container(&["-u", "root"], &shadow, &show);
    if ok_or_refused(&run, "passwd-shadow, -u root") {
        let (uid, gid, _) = ids(&run);
        assert_eq!(
            (uid, gid),
            (0, 0),
            "not a line of the host's shadow: {run:#?}"
        );
    }
    let host_shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    if host_shadow.lines().any(|l| l.starts_with("daemon:")) {
        let run = farm.run_container(&["-u", "daemon"], &shadow, &show);
        assert_eq!(
            run.code, 125,
            "daemon is only in the host's /etc/shadow: {run:#?}"
        );
    }

    // /etc/group -> /<host>/group (absolute): resolved inside, it is dangling.
    let group = farm.image("group-host");
    let run = farm.run_container(&["-u", "user"], &group, &show);
    if ok_or_refused(&run, "group-host, -u user") {
        let (uid, gid, groups) = ids(&run);
        assert_eq!((uid, gid), (1000, 1000), "{run:#?}");
        assert!(!groups.contains(&4545), "host group leaked in: {run:#?}");
    }
    let run = farm.run_container(&["-u", "user:escgroup"], &group, &show);
    assert_eq!(run.code, 125, "escgroup is only on the host: {run:#?}");
}

#[test]
fn image_with_symlinked_proc_dev_sys_still_runs_and_host_is_untouched() {
    let bait = host_bait();
    let proc_target = bait.path().join("proc-target");
    let dev_target = bait.path().join("dev-target");
    let sys_target = bait.path().join("sys-target");
    // Replace the probe image's proc, dev and sys folders with links out of the rootfs.
    let links = LayerBuilder::new()
        .symlink("proc", &proc_target.display().to_string())
        .symlink("dev", &climb(&dev_target))
        .symlink("sys", "/tmp");
    let Some(farm) = RunFarm::with_images(&[
        ("linked", probe_image_layers(vec![links], json!({}))),
        (
            "bare",
            Image::oci_with_config(
                vec![busybox_layer()],
                json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}),
            ),
        ),
    ]) else {
        return;
    };
    let script = "cat /proc/self/uid_map >/dev/null && echo x > /dev/null && echo ran";
    let run = farm.run_container(&[], &farm.image("linked"), &["sh", "-c", script]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(out(&run), "ran", "{run:#?}");
    for target in [&proc_target, &dev_target, &sys_target] {
        assert!(
            std::fs::read_dir(target).unwrap().next().is_none(),
            "nothing was made in the host folder {}",
            target.display()
        );
    }
    assert!(
        mounts_under(bait.path()).is_empty(),
        "no mount on the host targets: {:?}",
        mounts_under(bait.path())
    );

    // An image without /proc, /dev or /sys folders at all.
    let run = farm.run_container(
        &[],
        &farm.image("bare"),
        &["/bin/sh", "-c", "ls /proc/self >/dev/null && echo ran"],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(out(&run), "ran", "{run:#?}");
}

#[test]
fn tty_gives_the_container_a_terminal_and_keeps_the_exit_code() {
    let Some(farm) = RunFarm::new() else {
        return;
    };
    // `script` (util-linux) gives farm a terminal of its own, as a user's shell would.
    let line = format!(
        "{} --root {} run --rm -t {} sh -c 'tty; exit 5'",
        env!("CARGO_BIN_EXE_farm"),
        farm.root().display(),
        farm.probe()
    );
    let mut script = std::process::Command::new("script");
    script.args(["-eqc", &line, "/dev/null"]);
    let run = crate::support::containers::run_deadline(script, START_LIMIT * 3);
    assert_eq!(
        run.code, 5,
        "the container's code through the pty: {run:#?}"
    );
    assert!(
        run.stdout.contains("/dev/pts/"),
        "the container's stdin is a pty: {run:#?}"
    );
}
