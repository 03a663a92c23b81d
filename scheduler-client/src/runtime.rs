//! The only module that calls farm-runtime and farm-puller: pull a job's image, start
//! its container detached under its own monitor (as `farm run -d` does, with every
//! sandbox default of `farm run`), look at it, stop it.
//!
//! A job's container is named from its lease (`farm-<lease_id>-<fencing_token>`), so a
//! worker killed between creating it and recording its id still finds it.

use std::io::BufRead;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use farm_puller::image::MAX_DOCUMENT_BYTES;
use farm_puller::pull::{PullEvent, PullOptions, PullProgress};
use farm_puller::registry::{RegistryClient, RegistryOptions};
use farm_puller::store::{ImageRecord, Store, StoreError};
use farm_runtime::options::{BindMount, NetworkMode, Resources};
use farm_runtime::state::{ContainerRecord, Exit, ImageRef, StateStore, Status};
use farm_runtime::{lifecycle, RunOptions};

use crate::protocol::{JobSpec, Lease, Network};
use crate::reconcile::ContainerView;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeOpsError {
    #[error("pulling {image}: {source}")]
    Pull {
        image: String,
        #[source]
        source: farm_puller::Error,
    },
    #[error("the image store: {0}")]
    Store(#[from] StoreError),
    #[error("the image {image} is broken: {detail}: pull it again (`farm pull {image}`)")]
    BrokenImage { image: String, detail: &'static str },
    #[error("{0}")]
    Runtime(#[from] farm_runtime::RuntimeError),
    #[error("the container state store: {0}")]
    State(#[from] farm_runtime::state::StateError),
    #[error("starting the container's monitor ({exe}): {source}")]
    Monitor {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the container did not start: {message}")]
    StartFailed { code: u8, message: String },
    #[error("opening the job's sealed {what}: {source}")]
    Sealed {
        what: String,
        #[source]
        source: farm_trust::TrustError,
    },
    #[error("the job's secret variables: {0}")]
    Secrets(#[from] farm_runtime::secrets::SecretError),
    #[error("preparing the outputs folder {path}: {source}")]
    Outputs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Pull events are not shown: the worker reports `pulling`, then `running` or `failed`.
struct Silent;

impl PullProgress for Silent {
    fn event(&self, _event: PullEvent) {}
}

#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
    /// The `farm` binary that runs `__monitor`.
    pub exe: PathBuf,
    /// Registries that may be reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Opens the job's sealed values.
    pub identity: std::sync::Arc<farm_trust::Identity>,
}

/// A finished container as the worker reports it.
#[derive(Debug, Clone)]
pub struct Ended {
    pub exit: Exit,
}

impl Runtime {
    pub fn container_name(lease: &Lease) -> String {
        format!("farm-{}-{}", lease.lease_id, lease.fencing_token)
    }

    /// Host folder bound at the job's outputs path.
    pub fn outputs_dir(&self, lease: &Lease) -> PathBuf {
        self.root
            .join("worker/outputs")
            .join(Runtime::container_name(lease))
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        farm_runtime::layout::Layout::new(&self.root).log(id)
    }

    /// What `farm info --json` knows about this machine.
    pub fn inventory(&self) -> serde_json::Value {
        serde_json::to_value(farm_runtime::info::collect(&self.root)).unwrap_or_default()
    }

    /// Repair what crashed monitors left (records of dead containers become exited).
    pub fn repair(&self) -> Result<(), RuntimeOpsError> {
        Ok(lifecycle::reconcile(&self.root)?)
    }

    /// Pull the job's image unless it is here, with the job's own credentials.
    pub async fn pull(&self, job: &JobSpec) -> Result<ImageRef, RuntimeOpsError> {
        let store = Arc::new(Store::open(&self.root)?);
        let record = match store.image(&job.image) {
            Ok(record) => record,
            Err(StoreError::NoSuchImage(_)) => self.fetch(&store, job).await?,
            Err(e) => return Err(e.into()),
        };
        image_ref(&store, &record)
    }

    async fn fetch(
        &self,
        store: &Arc<Store>,
        job: &JobSpec,
    ) -> Result<ImageRecord, RuntimeOpsError> {
        let pull_err = |source| RuntimeOpsError::Pull {
            image: job.image.clone(),
            source,
        };
        let source = farm_puller::ImageSource::parse(&job.image).map_err(|e| pull_err(e.into()))?;
        let sealed = match &job.sealed_registry_auth {
            Some(sealed) => Some(self.open_auth(sealed)?),
            None => None,
        };
        let client = RegistryClient::new(RegistryOptions {
            insecure: self.insecure.clone(),
            credentials: sealed.or_else(|| {
                job.registry_auth
                    .as_ref()
                    .map(|a| farm_puller::Credentials::new(&a.username, &a.password))
            }),
            auth_file: Some(self.root.join("auth.json")),
            docker_config: None,
        })
        .map_err(|e| pull_err(e.into()))?;
        let options = PullOptions {
            platform: farm_puller::image::Platform::host(),
            max_concurrent_downloads: 3,
            max_image_bytes: 256 << 30,
            limits: Default::default(),
            platform_check: Default::default(),
        };
        farm_puller::pull::pull(store.clone(), &client, &source, &options, Arc::new(Silent))
            .await
            .map_err(pull_err)
    }

    fn open_auth(&self, sealed: &str) -> Result<farm_puller::Credentials, RuntimeOpsError> {
        let err = |source| RuntimeOpsError::Sealed {
            what: "registry credentials".into(),
            source,
        };
        let plain = farm_trust::seal::open(&self.identity, sealed).map_err(err)?;
        let text = std::str::from_utf8(&plain)
            .ok()
            .and_then(|t| t.split_once(':'));
        let (user, password) = text.ok_or(err(farm_trust::TrustError::Invalid(
            "sealed registry credentials must be USERNAME:PASSWORD",
        )))?;
        Ok(farm_puller::Credentials::new(user, password))
    }

    /// The job's sealed env, opened (in memory only).
    fn open_env(&self, job: &JobSpec) -> Result<farm_runtime::secrets::SecretEnv, RuntimeOpsError> {
        let mut out = Vec::new();
        for (name, sealed) in &job.sealed_env {
            let err = |source| RuntimeOpsError::Sealed {
                what: format!("variable {name}"),
                source,
            };
            let plain = farm_trust::seal::open(&self.identity, sealed).map_err(err)?;
            let value = String::from_utf8(plain.to_vec()).map_err(|_| {
                err(farm_trust::TrustError::Invalid(
                    "a sealed variable must be UTF-8 text",
                ))
            })?;
            out.push((name.clone(), zeroize::Zeroizing::new(value)));
        }
        let env = farm_runtime::secrets::SecretEnv(out);
        env.check()?;
        Ok(env)
    }

    /// Create the job's container and start its monitor, detached: the container
    /// outlives the worker. Returns the container id once it runs.
    pub fn start(&self, lease: &Lease, image: ImageRef) -> Result<String, RuntimeOpsError> {
        let secrets = self.open_env(&lease.job)?;
        let mut options = self.options(lease)?;
        options.secret_env = secrets.names();
        let store = Store::open(&self.root)?;
        let (container, lock) = {
            let _lock = store.lock_shared()?;
            lifecycle::create(&self.root, image, options)?
        };
        rustix_setfd(&lock)?;
        let mut command = Command::new(&self.exe);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("__monitor")
            .arg("--id")
            .arg(&container.id)
            .arg("--lock-fd")
            .arg(lock.as_raw_fd().to_string());
        let secrets_read_end = secrets.pipe_for_monitor()?;
        if let Some(read) = &secrets_read_end {
            command
                .arg("--secrets-fd")
                .arg(read.as_raw_fd().to_string());
        }
        drop(secrets);
        let monitor_log = self
            .root
            .join("containers")
            .join(&container.id)
            .join("monitor.log");
        let log =
            std::fs::File::create(&monitor_log).map_err(|source| RuntimeOpsError::Monitor {
                exe: monitor_log.clone(),
                source,
            })?;
        let monitor_err = |source| RuntimeOpsError::Monitor {
            exe: self.exe.clone(),
            source,
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(monitor_err)?;
        drop(lock);
        drop(secrets_read_end);
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(monitor_err)?;
        // The monitor lives on as its own session; reap our handle in the background.
        std::thread::spawn(move || child.wait());
        let line = line.trim_end();
        if line.starts_with("ok") {
            return Ok(container.id);
        }
        let (code, message) = line
            .strip_prefix("error ")
            .and_then(|rest| rest.split_once(' '))
            .unwrap_or(("125", "the container's monitor ended before starting it"));
        let _ = self.repair();
        Err(RuntimeOpsError::StartFailed {
            code: code.parse().unwrap_or(125),
            message: message.to_owned(),
        })
    }

    /// `farm run`'s options for a job: its defaults plus what the job sets.
    fn options(&self, lease: &Lease) -> Result<RunOptions, RuntimeOpsError> {
        let job = &lease.job;
        let mut binds = Vec::new();
        if let Some(outputs) = &job.outputs {
            let dir = self.outputs_dir(lease);
            make_outputs_dir(&dir)?;
            binds.push(BindMount {
                source: dir,
                target: outputs.path.clone(),
                read_only: false,
            });
        }
        Ok(RunOptions {
            name: Some(Runtime::container_name(lease)),
            entrypoint: job.entrypoint.clone(),
            command: job.command.clone(),
            env: job.env.clone(),
            workdir: job.workdir.clone(),
            user: job.user.clone(),
            detach: true,
            resources: Resources {
                cpus: job.cpus,
                memory: job.memory_bytes,
                memory_swap: None,
                pids_limit: job.pids_limit,
                shm_size: None,
            },
            binds,
            network: match job.network {
                Network::Internet => NetworkMode::Internet,
                Network::None | Network::Unknown => NetworkMode::None,
            },
            stop_timeout: job.stop_grace_ms.map(|ms| ms.div_ceil(1000)),
            labels: vec![
                ("farm.worker.lease".to_owned(), lease.lease_id.clone()),
                ("farm.worker.job".to_owned(), lease.job_id.clone()),
            ],
            timeout: job.time_limit_ms.map(Duration::from_millis),
            gpu: farm_runtime::options::GpuOptions {
                gpus: job.gpus.clone(),
                ..Default::default()
            },
            // A coordinator's job: -p only with the farmer's consent (runtime::network).
            coordinator_job: true,
            ..RunOptions::default()
        })
    }

    /// The job's container as the runtime sees it, by id or by its name.
    pub fn view(&self, lease: &Lease, id: Option<&str>) -> Result<ContainerView, RuntimeOpsError> {
        let state = StateStore::open(&self.root)?;
        let name = Runtime::container_name(lease);
        let record = match state.get(id.unwrap_or(&name)) {
            Ok(record) => record,
            Err(_) => return Ok(ContainerView::Missing),
        };
        Ok(match record.status {
            Status::Exited if record.started_at.is_none() => {
                ContainerView::NeverStarted { id: record.id }
            }
            Status::Exited => ContainerView::Exited { id: record.id },
            _ => ContainerView::Running { id: record.id },
        })
    }

    /// The record, or None when it is gone.
    pub fn record(&self, id: &str) -> Result<Option<ContainerRecord>, RuntimeOpsError> {
        let state = StateStore::open(&self.root)?;
        Ok(state.get(id).ok())
    }

    /// How the container ended, once its monitor recorded it (None while it runs).
    pub fn ended(&self, id: &str) -> Result<Option<Ended>, RuntimeOpsError> {
        let layout = farm_runtime::layout::Layout::new(&self.root);
        let Some(record) = self.record(id)? else {
            return Ok(None);
        };
        if record.status != Status::Exited && !lifecycle::monitor_alive(&layout, id) {
            self.repair()?;
            return self.ended_now(id);
        }
        Ok(record
            .exit
            .filter(|_| record.status == Status::Exited)
            .map(|exit| Ended { exit }))
    }

    fn ended_now(&self, id: &str) -> Result<Option<Ended>, RuntimeOpsError> {
        Ok(self
            .record(id)?
            .filter(|r| r.status == Status::Exited)
            .and_then(|r| r.exit)
            .map(|exit| Ended { exit }))
    }

    /// After the final report is recorded: the container (its record, writable layer
    /// and logs) and the outputs folder and tarball go. Removing what is gone succeeds.
    pub fn remove(&self, lease: &Lease, id: Option<&str>) -> Result<(), RuntimeOpsError> {
        if let Some(record) = id.map(|id| self.record(id)).transpose()?.flatten() {
            lifecycle::remove(&self.root, &record, true)?;
        }
        let dir = self.outputs_dir(lease);
        for result in [
            std::fs::remove_dir_all(&dir),
            std::fs::remove_file(dir.with_extension("tar")),
        ] {
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RuntimeOpsError::Outputs {
                        path: dir,
                        source: e,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// docker stop: the stop signal, then SIGKILL after `grace`.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeOpsError> {
        if let Some(record) = self.record(id)? {
            lifecycle::stop(&self.root, &record, grace)?;
        }
        Ok(())
    }
}

fn rustix_setfd(lock: &std::os::fd::OwnedFd) -> Result<(), RuntimeOpsError> {
    nix::fcntl::fcntl(
        lock.as_fd().as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map(|_| ())
    .map_err(|e| RuntimeOpsError::Monitor {
        exe: PathBuf::from("monitor.lock"),
        source: e.into(),
    })
}

/// A fresh folder, writable by the container's unprivileged root (its uid is only known
/// once the container exists, so the folder is world-writable with the sticky bit, under
/// a 0711 parent that lists nothing).
fn make_outputs_dir(dir: &Path) -> Result<(), RuntimeOpsError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| RuntimeOpsError::Outputs {
        path: dir.to_owned(),
        source,
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).map_err(err)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).map_err(err)
}

/// The image as the runtime takes it (the same steps as `farm run`'s).
fn image_ref(store: &Store, record: &ImageRecord) -> Result<ImageRef, RuntimeOpsError> {
    let broken = |detail| RuntimeOpsError::BrokenImage {
        image: record.name.clone(),
        detail,
    };
    let config = store
        .content
        .read_document(&record.config_digest, MAX_DOCUMENT_BYTES)
        .map_err(|_| broken("its config cannot be read"))?;
    let config: serde_json::Value =
        serde_json::from_slice(&config).map_err(|_| broken("its config is not JSON"))?;
    let mut layers = Vec::new();
    for layer in &record.layers {
        if !store.snapshots.exists(&layer.chain_id) {
            return Err(broken("a layer's snapshot is missing"));
        }
        layers.push(store.snapshots.path(&layer.chain_id));
    }
    Ok(ImageRef {
        id: record.id().to_string(),
        name: record.name.clone(),
        chain_ids: record
            .layers
            .iter()
            .map(|l| l.chain_id.to_string())
            .collect(),
        layers,
        config,
    })
}

/// This boot's id: differs after every reboot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Follows a container's log file as it grows and rotates (`<path>` renamed `<path>.1`),
/// keeping each stream's bytes from the first one the caller has not yet let go of.
/// Each poll reads only what is new.
pub struct LogTail {
    path: PathBuf,
    current: Option<(std::fs::File, u64)>,
    partial: Vec<u8>,
    /// Per stream: bytes read and kept, and the stream offset of the first of them.
    kept: [Vec<u8>; 2],
    kept_from: [u64; 2],
}

impl LogTail {
    /// From the beginning of the log (the rotated file first).
    pub fn new(path: PathBuf) -> LogTail {
        let mut tail = LogTail {
            path,
            current: None,
            partial: Vec::new(),
            kept: [Vec::new(), Vec::new()],
            kept_from: [0, 0],
        };
        if let Ok(mut rotated) = std::fs::File::open(farm_runtime::logs::rotated_path(&tail.path)) {
            tail.read_from(&mut rotated);
            tail.partial.clear();
        }
        tail
    }

    /// Read what was written since the last poll, across a rotation.
    pub fn poll(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.current.is_none() {
            if let Ok(file) = std::fs::File::open(&self.path) {
                let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
                self.current = Some((file, inode));
            }
        }
        let Some((mut file, inode)) = self.current.take() else {
            return;
        };
        self.read_from(&mut file);
        let now = std::fs::metadata(&self.path)
            .map(|m| m.ino())
            .unwrap_or(inode);
        if now == inode {
            self.current = Some((file, inode));
        } else {
            // Rotated: what the old file got after our read, then the new file.
            self.read_from(&mut file);
            self.partial.clear();
            self.poll();
        }
    }

    fn read_from(&mut self, file: &mut std::fs::File) {
        use std::io::Read;
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return;
        }
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(entry) = serde_json::from_slice::<farm_runtime::logs::LogEntry>(line) else {
                continue;
            };
            let index = match entry.stream {
                farm_runtime::logs::Stream::Stdout => 0,
                farm_runtime::logs::Stream::Stderr => 1,
            };
            self.kept[index].extend_from_slice(entry.log.as_bytes());
        }
    }

    /// The bytes of stream `index` from `offset` on, dropping those before it; `None`
    /// when bytes before `offset`... were dropped already (start a new tail).
    pub fn from(&mut self, index: usize, offset: u64) -> Option<&[u8]> {
        if offset < self.kept_from[index] {
            return None;
        }
        let skip = ((offset - self.kept_from[index]) as usize).min(self.kept[index].len());
        self.kept[index].drain(..skip);
        self.kept_from[index] += skip as u64;
        Some(&self.kept[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_runtime::logs::{LogWriter, Stream};

    /// Reads everything of stream 0 and 1 the tail has, letting it all go.
    fn drain(tail: &mut LogTail, taken: &mut [Vec<u8>; 2]) {
        tail.poll();
        for (index, out) in taken.iter_mut().enumerate() {
            let offset = out.len() as u64;
            out.extend_from_slice(tail.from(index, offset).unwrap());
        }
    }

    #[test]
    fn the_tail_follows_both_streams_across_rotations_without_loss_or_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut writer = LogWriter::open(&path, 600).unwrap();
        let mut tail = LogTail::new(path.clone());
        let mut taken = [Vec::new(), Vec::new()];
        let mut expected = [Vec::new(), Vec::new()];
        for i in 0..200 {
            let line = format!("line {i}\n");
            let (stream, index) = if i % 3 == 0 {
                (Stream::Stderr, 1)
            } else {
                (Stream::Stdout, 0)
            };
            writer.write(stream, line.as_bytes()).unwrap();
            expected[index].extend_from_slice(line.as_bytes());
            // Poll often enough that no rotation drops a file we did not read.
            if i % 2 == 0 {
                drain(&mut tail, &mut taken);
            }
        }
        drain(&mut tail, &mut taken);
        assert_eq!(
            String::from_utf8_lossy(&taken[0]),
            String::from_utf8_lossy(&expected[0])
        );
        assert_eq!(taken[1], expected[1]);
    }

    #[test]
    fn a_new_tail_starts_from_the_rotated_file_and_an_old_offset_asks_for_a_new_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut writer = LogWriter::open(&path, 200).unwrap();
        let mut all = Vec::new();
        for i in 0..6 {
            let line = format!("a fairly long line number {i}\n");
            writer.write(Stream::Stdout, line.as_bytes()).unwrap();
            all.extend_from_slice(line.as_bytes());
        }
        let mut tail = LogTail::new(path);
        tail.poll();
        let kept = tail.from(0, 0).unwrap().to_vec();
        assert!(
            all.ends_with(&kept) && !kept.is_empty(),
            "what the two files hold"
        );
        // Offsets count from the oldest byte still on disk (rotated-out bytes are gone).
        let skip = kept.len() as u64 - 5;
        let later = tail.from(0, skip).unwrap().to_vec();
        assert_eq!(later, &all[all.len() - 5..]);
        assert!(
            tail.from(0, skip - 1).is_none(),
            "bytes let go of are not served again"
        );
    }
}
