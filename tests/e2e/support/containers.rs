//! Fixtures of the `farm run` tests: the static probe program (tests/e2e/fixtures/probe.c)
//! and its image, a farm root with images pulled from an OCI layout written at test time,
//! commands run under a deadline (a hung farm fails the test instead of hanging the
//! suite), detached containers, and what a container may leave behind on the host (mounts,
//! cgroups, processes).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use super::images::{self, Compression, Image, Layer, LayerBuilder};
use super::{have_file, list_names, registry_prereqs, require, sha256_digest, Farm, Run};

/// How long one farm command may take before the test calls it hung.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(90);
/// How long a container may take to show as running.
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// Poll interval of every wait.
pub const POLL: Duration = Duration::from_millis(50);

const PROBE_SOURCE: &str = include_str!("../fixtures/probe.c");

/// The probe built with `gcc -static -O2`, once per source text (cached under the
/// target's tmp dir across runs, written tmp+rename so parallel test binaries agree).
pub fn probe_binary() -> Result<PathBuf, String> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let hash = sha256_digest(PROBE_SOURCE.as_bytes());
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let out = dir.join(format!("farm-probe-{}", &super::hex_of(&hash)[..16]));
            if out.exists() {
                return Ok(out);
            }
            let source = dir.join(format!("probe-{}.c", std::process::id()));
            let tmp = dir.join(format!("probe-{}.tmp", std::process::id()));
            std::fs::write(&source, PROBE_SOURCE).map_err(|e| e.to_string())?;
            let built = Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&tmp)
                .arg(&source)
                .output();
            let _ = std::fs::remove_file(&source);
            let built = built.map_err(|e| format!("run gcc: {e}"))?;
            if !built.status.success() {
                return Err(format!(
                    "gcc -static failed: {}",
                    String::from_utf8_lossy(&built.stderr)
                ));
            }
            std::fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
            Ok(out)
        })
        .clone()
}

fn have_filesystem(name: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().last() == Some(name)))
}

/// The prerequisites of every `farm run` test: root, busybox-static, overlayfs, cgroups,
/// and a probe built by gcc with a static libc.
pub fn run_prereqs() -> bool {
    if !registry_prereqs() {
        return false;
    }
    if !require(have_filesystem("overlay"), "overlayfs (modprobe overlay)") {
        return false;
    }
    if !require(
        have_file("/sys/fs/cgroup/memory") || have_file("/sys/fs/cgroup/cgroup.controllers"),
        "cgroups (v1 memory hierarchy or v2) under /sys/fs/cgroup",
    ) {
        return false;
    }
    match probe_binary() {
        Ok(_) => true,
        Err(why) => require(
            false,
            &format!("gcc with a static libc (apt install gcc libc6-dev): {why}"),
        ),
    }
}

/// The `/etc/passwd` of the probe image.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
user:x:1000:1000:user:/home/user:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
/// The `/etc/group` of the probe image: `user` is also in `staff` (50) and `extra` (2000).
pub const GROUP: &str = "root:x:0:\nstaff:x:50:user\nuser:x:1000:\nextra:x:2000:user\n\
nogroup:x:65534:\n";

/// The probe layer: `/probe`, more busybox applets, `/etc/passwd`, `/etc/group`, a home,
/// a non-executable script and the usual mount points (`proc`, `sys`, `dev`).
pub fn probe_layer() -> Layer {
    static LAYER: OnceLock<Layer> = OnceLock::new();
    LAYER
        .get_or_init(|| {
            let probe = std::fs::read(probe_binary().expect("probe built")).unwrap();
            let mut layer = LayerBuilder::new()
                .dir("bin", 0o755, 0, 0)
                .file("probe", 0o755, 0, 0, &probe);
            for applet in [
                "sleep", "stat", "env", "pwd", "touch", "mkdir", "hostname", "kill", "true",
                "false", "head", "tail", "wc", "grep", "readlink", "printf", "test", "seq", "ps",
                "sed", "tr", "cut", "uname", "whoami", "ln", "rm", "chmod", "trap", "dd",
            ] {
                layer = layer.symlink(&format!("bin/{applet}"), "busybox");
            }
            let layer = layer
                .dir("etc", 0o755, 0, 0)
                .file("etc/passwd", 0o644, 0, 0, PASSWD.as_bytes())
                .file("etc/group", 0o644, 0, 0, GROUP.as_bytes())
                .file(
                    "etc/not-executable.sh",
                    0o644,
                    0,
                    0,
                    b"#!/bin/sh\necho should not run\n",
                )
                .dir("root", 0o700, 0, 0)
                .dir("home", 0o755, 0, 0)
                .dir("home/user", 0o755, 1000, 1000)
                .dir("proc", 0o555, 0, 0)
                .dir("sys", 0o555, 0, 0)
                .dir("dev", 0o755, 0, 0);
            Layer::new(layer, Compression::None, false)
        })
        .clone()
}

/// The layers of the probe image: busybox, the probe layer.
pub fn probe_layers() -> Vec<Layer> {
    vec![images::busybox_layer(), probe_layer()]
}

/// The config section of the probe image.
pub fn probe_config() -> serde_json::Value {
    json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
    })
}

/// The probe image with `config` merged over [`probe_config`] (keys replaced).
pub fn probe_image_with(config: serde_json::Value) -> Image {
    probe_image_layers(Vec::new(), config)
}

/// The probe image plus `extra` layers on top (plain tar), with `config` merged over
/// [`probe_config`].
pub fn probe_image_layers(extra: Vec<LayerBuilder>, config: serde_json::Value) -> Image {
    let mut merged = probe_config();
    for (k, v) in config.as_object().expect("config is an object") {
        merged[k] = v.clone();
    }
    let mut layers = probe_layers();
    layers.extend(
        extra
            .into_iter()
            .map(|b| Layer::new(b, Compression::None, false)),
    );
    Image::oci_with_config(layers, merged)
}

/// The plain probe image.
pub fn probe_image() -> Image {
    probe_image_with(json!({}))
}

/// Run `cmd` to completion, killing it (SIGKILL, it is our child) and failing the test
/// when it takes longer than `limit`.
#[track_caller]
pub fn run_deadline(cmd: Command, limit: Duration) -> Run {
    run_deadline_stdin(cmd, None, limit)
}

/// [`run_deadline`] with `input` on stdin (closed after it), or stdin from /dev/null.
#[track_caller]
pub fn run_deadline_stdin(mut cmd: Command, input: Option<&str>, limit: Duration) -> Run {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn farm");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_string();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait farm") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A container process that inherited the pipes may keep them open: don't wait forever.
    let join = |handle: std::thread::JoinHandle<Vec<u8>>| {
        let until = Instant::now() + Duration::from_secs(5);
        while !handle.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            String::from_utf8_lossy(&handle.join().unwrap()).into_owned()
        } else {
            "<output still open after farm exited>".to_string()
        }
    };
    let run = Run {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: join(out),
        stderr: join(err),
    };
    if status.is_none() {
        panic!("farm {cmd:?} still running after {limit:?}: {run:#?}");
    }
    run
}

/// Poll `check` every [`POLL`] until it returns `Some`, failing with `what` (and the last
/// state `describe` gives) after `limit`.
#[track_caller]
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for {what}; last state:\n{}",
                describe()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// `key=value` lines of `text` (later keys win).
pub fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A farm root with the probe image (tag `probe`) and any other images pulled from an OCI
/// layout in its temp dir. Dropping it removes every container it made (`rm -f`, then
/// kills what is left in their cgroups and unmounts what is left under the root), so a
/// failed test leaves nothing running.
pub struct RunFarm {
    pub farm: Farm,
    pub layout: PathBuf,
}

impl std::ops::Deref for RunFarm {
    type Target = Farm;
    fn deref(&self) -> &Farm {
        &self.farm
    }
}

impl RunFarm {
    /// The probe image only; `None` when a prerequisite is missing (outside CI).
    pub fn new() -> Option<RunFarm> {
        RunFarm::with_images(&[])
    }

    /// The probe image plus `images`, each pulled as `oci:LAYOUT:TAG`.
    pub fn with_images(images: &[(&str, Image)]) -> Option<RunFarm> {
        if !run_prereqs() {
            return None;
        }
        let farm = Farm::new();
        // A container's root is an unprivileged host uid that must pass through every
        // folder above the farm root (farm refuses a root it could not reach).
        std::fs::set_permissions(farm.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let layout = farm.dir.path().join("layout");
        let probe = probe_image();
        let mut all: Vec<(&str, &Image)> = vec![("probe", &probe)];
        all.extend(images.iter().map(|(tag, image)| (*tag, image)));
        images::write_oci_layout(&layout, &all);
        let run_farm = RunFarm { farm, layout };
        for (tag, _) in &all {
            run_farm.run(&["pull", &run_farm.image(tag)]).assert_ok();
        }
        Some(run_farm)
    }

    /// The reference of an image of this farm's layout.
    pub fn image(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.layout.display())
    }

    /// The probe image's reference.
    pub fn probe(&self) -> String {
        self.image("probe")
    }

    /// Run farm with `args` under [`COMMAND_LIMIT`].
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Run {
        run_deadline(self.farm.command(args), COMMAND_LIMIT)
    }

    /// Run farm with `args` and `input` on its stdin, under [`COMMAND_LIMIT`].
    #[track_caller]
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        run_deadline_stdin(self.farm.command(args), Some(input), COMMAND_LIMIT)
    }

    /// `farm run OPTIONS... IMAGE COMMAND...` in the foreground.
    #[track_caller]
    pub fn run_container(&self, options: &[&str], image: &str, command: &[&str]) -> Run {
        let mut args = vec!["run"];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// `farm run OPTIONS... probe COMMAND...` in the foreground.
    #[track_caller]
    pub fn run_probe(&self, options: &[&str], command: &[&str]) -> Run {
        self.run_container(options, &self.probe(), command)
    }

    /// `farm run -d OPTIONS... IMAGE COMMAND...`: checks the printed id (64 hex) and
    /// waits until the container shows as running. Returns the id.
    #[track_caller]
    pub fn detach(&self, options: &[&str], image: &str, command: &[&str]) -> String {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(command);
        let run = self.run(&args);
        run.assert_ok();
        let id = run.stdout.trim().to_string();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "run -d prints the 64-hex id: {run:#?}"
        );
        self.wait_running(&id);
        id
    }

    /// Wait until `inspect NAME` says running; returns that inspect object.
    #[track_caller]
    pub fn wait_running(&self, name: &str) -> serde_json::Value {
        wait_for(
            &format!("{name} to run"),
            START_LIMIT,
            || {
                let value = self.try_inspect(name)?;
                (value["State"]["Status"] == "running").then_some(value)
            },
            || format!("{:#?}", self.run(&["inspect", name])),
        )
    }

    /// Wait until `inspect NAME` says exited; returns that inspect object.
    #[track_caller]
    pub fn wait_exited(&self, name: &str, limit: Duration) -> serde_json::Value {
        wait_for(
            &format!("{name} to exit"),
            limit,
            || {
                let value = self.try_inspect(name)?;
                (value["State"]["Status"] == "exited").then_some(value)
            },
            || format!("{:#?}", self.run(&["inspect", name])),
        )
    }

    /// `inspect NAME`'s one object, or None when inspect fails.
    pub fn try_inspect(&self, name: &str) -> Option<serde_json::Value> {
        let run = self.run(&["inspect", name]);
        if !run.ok() {
            return None;
        }
        let value: serde_json::Value = serde_json::from_str(&run.stdout).ok()?;
        value.as_array()?.first().cloned()
    }

    /// `inspect NAME`'s one object.
    #[track_caller]
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let run = self.run(&["inspect", name]);
        run.assert_ok();
        let value: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("inspect prints JSON ({e}): {run:#?}"));
        let array = value.as_array().expect("inspect prints an array");
        assert_eq!(array.len(), 1, "one object per name: {value:#}");
        array[0].clone()
    }

    /// `ps --json` (with `-a` when `all`), parsed.
    #[track_caller]
    pub fn ps(&self, all: bool) -> Vec<serde_json::Value> {
        let args: &[&str] = if all {
            &["ps", "-a", "--json"]
        } else {
            &["ps", "--json"]
        };
        let run = self.run(args);
        run.assert_ok();
        let value: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("ps --json prints JSON ({e}): {run:#?}"));
        value.as_array().expect("ps --json is an array").clone()
    }

    /// The `ps -a --json` entry of the container with this id.
    pub fn ps_entry(&self, id: &str) -> Option<serde_json::Value> {
        self.ps(true)
            .into_iter()
            .find(|c| c["Id"].as_str() == Some(id))
    }

    /// Every name under `<root>/containers`.
    pub fn container_dirs(&self) -> BTreeSet<String> {
        list_names(&self.root().join("containers"))
    }

    /// The container ids (64-hex folder names) under `<root>/containers`.
    pub fn container_ids(&self) -> BTreeSet<String> {
        self.container_dirs()
            .into_iter()
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }

    /// Spawn `farm ARGS` in the background, its output going to files.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let n = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdout = self.dir.path().join(format!("spawned-{n}.out"));
        let stderr = self.dir.path().join(format!("spawned-{n}.err"));
        let child = self
            .farm
            .command(args)
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn farm");
        Spawned {
            child,
            stdout,
            stderr,
        }
    }

    /// What container `id` left on the host, one line per thing: mounts under the farm
    /// root, cgroup folders `/sys/fs/cgroup/*/farm/<id>`, processes in those cgroups, the
    /// folder `<root>/containers/<id>`.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        // Mounts of other containers of this root are theirs, not this one's.
        let containers = self.root().join("containers");
        let others: Vec<PathBuf> = self
            .container_ids()
            .into_iter()
            .filter(|other| other != id)
            .map(|other| containers.join(other))
            .collect();
        let mut out: Vec<String> = mounts_under(&self.root())
            .into_iter()
            .filter(|m| !others.iter().any(|o| Path::new(m).starts_with(o)))
            .map(|m| format!("mount {m}"))
            .collect();
        out.extend(
            cgroup_dirs(id)
                .into_iter()
                .map(|d| format!("cgroup {}", d.display())),
        );
        out.extend(
            cgroup_processes(id)
                .into_iter()
                .map(|(pid, line)| format!("process {pid} ({}) in {line}", comm(pid))),
        );
        let dir = self.root().join("containers").join(id);
        if dir.exists() {
            out.push(format!("folder {}", dir.display()));
        }
        out
    }

    #[track_caller]
    pub fn assert_nothing_left(&self, id: &str) {
        let left = self.leftovers(id);
        assert!(left.is_empty(), "container {id} left behind:\n{left:#?}");
    }
}

static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for RunFarm {
    fn drop(&mut self) {
        let ids = self.container_ids();
        for id in &ids {
            let mut cmd = self.farm.command(&["rm", "-f", id]);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            if let Ok(mut child) = cmd.spawn() {
                let start = Instant::now();
                while !matches!(child.try_wait(), Ok(Some(_))) {
                    if start.elapsed() > Duration::from_secs(30) {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // What farm failed to clean: processes our tests started, in our containers' cgroups.
        for id in &ids {
            for (pid, _) in cgroup_processes(id) {
                let _ = sigkill(u64::from(pid));
            }
        }
        let mut mounts = mounts_under(&self.root());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount")
                .args(["-l", &mount])
                .stderr(Stdio::null())
                .status();
        }
        for id in &ids {
            for dir in cgroup_dirs(id) {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// A farm command running in the background.
pub struct Spawned {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for it to end (failing after `limit`, after killing it).
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> Run {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait farm") {
                break Some(status);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = Run {
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        };
        assert!(
            status.is_some(),
            "farm still running after {limit:?}: {run:#?}"
        );
        run
    }

    /// SIGKILL it (our own child) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stdout_now(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or under `path` in this process's mount namespace.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| Path::new(m).starts_with(&path))
        .collect()
}

/// The folders `/sys/fs/cgroup/<hierarchy>/farm/<id>` (and `/sys/fs/cgroup/farm/<id>` on
/// v2) that exist.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    let direct = base.join("farm").join(id);
    if direct.exists() {
        out.push(direct);
    }
    for name in list_names(base) {
        let dir = base.join(&name).join("farm").join(id);
        if dir.is_dir() {
            out.push(dir);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Processes whose cgroup (any hierarchy) is `/farm/<id>` or below it, with that line of
/// `/proc/PID/cgroup`.
pub fn cgroup_processes(id: &str) -> Vec<(u32, String)> {
    let wanted = format!("/farm/{id}");
    let mut out = Vec::new();
    for name in list_names(Path::new("/proc")) {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        if let Some(line) = cgroups.lines().find(|l| {
            l.splitn(3, ':')
                .nth(2)
                .is_some_and(|p| p == wanted || p.starts_with(&format!("{wanted}/")))
        }) {
            out.push((pid, line.to_string()));
        }
    }
    out
}

/// A process's command name, for messages.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn sigkill(pid: u64) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("not a pid: {pid}")))?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    Ok(())
}

/// SIGKILL a process the test made farm start (a monitor, a container process).
#[track_caller]
pub fn kill9(pid: u64) {
    sigkill(pid).unwrap_or_else(|e| panic!("kill -9 {pid}: {e}"));
}

/// sha256 of a file, for "unchanged" checks.
pub fn file_digest(path: &Path) -> String {
    sha256_digest(&std::fs::read(path).unwrap())
}
