//! The layers of a pull: each downloaded and unpacked in the same pass (a streaming
//! unpack follows the ingest's partial file), several layers at once (bounded), each into
//! its own prepared snapshot folder.
//!
//! A snapshot is committed only when its blob was verified (size and sha256, by
//! `content::Ingest::commit`) and the unpack's diff ID matched the config's. A failed
//! download, a failed check or a drop of the pull abandons the unpack and deletes its
//! folder; a `kill -9` leaves it as `snapshots/tmp-<pid>-*` (never used; deleted by the next
//! command that opens the store while no other is at work, or by prune) and the partial
//! blob in `ingest/`, which the next pull resumes with Range and unpacks again from byte 0
//! into a fresh folder.

use std::io::BufReader;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::{join_blocking, PullEvent, PullProgress};
use crate::content::{ContentError, Follower};
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::reference::Reference;
use crate::registry::RegistryClient;
use crate::store::{Store, StoreError, StoreLock};
use crate::unpack::{self, ImageBudget, StreamHooks, UnpackOptions};

/// One layer to unpack.
pub(super) struct LayerPlan {
    pub descriptor: Descriptor,
    pub expected_diff_id: Digest,
    pub chain_id: Digest,
    pub options: UnpackOptions,
    /// The position (among the layers to unpack) of an earlier layer with the same blob:
    /// that one fetches it, this one waits for it.
    pub same_blob_as: Option<usize>,
}

/// What every layer task shares.
pub(super) struct Shared<'a> {
    pub store: Arc<Store>,
    pub client: &'a RegistryClient,
    /// Where missing blobs come from; None for offline sources.
    pub reference: Option<&'a Reference>,
    pub progress: Arc<dyn PullProgress>,
    pub lock: Arc<StoreLock>,
    pub budget: Arc<ImageBudget>,
}

/// Unpack `plans` (bottom layer first), at most `concurrency` at once.
pub(super) async fn unpack_all(
    shared: &Shared<'_>,
    plans: Vec<LayerPlan>,
    concurrency: usize,
) -> Result<(), crate::Error> {
    let gates = Arc::new(Gates::new(plans.len()));
    // Started in order: a layer only ever waits for lower ones, which started before it.
    stream::iter(plans.into_iter().enumerate())
        .map(|(position, plan)| layer(shared, gates.clone(), position, plan))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}

/// Which layers of the pull are finished (committed or failed), for a layer whose
/// hardlinks copy up from lower layers unpacked at the same time.
struct Gates {
    /// None while running; then whether the layer's snapshot was committed.
    done: Mutex<Vec<Option<bool>>>,
    changed: Condvar,
}

impl Gates {
    fn new(count: usize) -> Gates {
        Gates {
            done: Mutex::new(vec![None; count]),
            changed: Condvar::new(),
        }
    }

    /// Block until every layer before `position` is finished; true when all committed.
    fn wait_below(&self, position: usize) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while done[..position].iter().any(Option::is_none) {
            done = self.changed.wait(done).unwrap_or_else(|e| e.into_inner());
        }
        done[..position].iter().all(|d| *d == Some(true))
    }

    fn wait_one(&self, position: usize) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while done[position].is_none() {
            done = self.changed.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn set(&self, position: usize, committed: bool) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done[position].is_none() {
            done[position] = Some(committed);
        }
        self.changed.notify_all();
    }
}

/// Marks its layer failed when dropped before the commit marked it committed: also when
/// the pull is dropped half-way.
struct Finished(Arc<Gates>, usize);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.set(self.1, false);
    }
}

async fn layer(
    shared: &Shared<'_>,
    gates: Arc<Gates>,
    position: usize,
    plan: LayerPlan,
) -> Result<(), crate::Error> {
    let _finished = Finished(gates.clone(), position);
    let descriptor = plan.descriptor.clone();
    let digest = descriptor.digest.clone();
    if let Some(first) = plan.same_blob_as {
        let gates = gates.clone();
        join_blocking(tokio::task::spawn_blocking(move || gates.wait_one(first))).await?;
    }
    let job = UnpackJob {
        store: shared.store.clone(),
        lock: shared.lock.clone(),
        gates,
        position,
        plan,
        budget: shared.budget.clone(),
    };
    let progress = &shared.progress;
    let warnings = if shared.store.content.has(&digest, descriptor.size) {
        progress.event(PullEvent::Extracting {
            digest: digest.clone(),
        });
        join_blocking(tokio::task::spawn_blocking(move || job.run_from_blob())).await??
    } else {
        let Some(reference) = shared.reference.filter(|_| job.plan.same_blob_as.is_none()) else {
            // Offline sources put every blob in the store; a duplicate's first fetch failed.
            return Err(ContentError::NotFound { digest }.into());
        };
        stream_layer(shared, reference, job).await?
    };
    for message in warnings {
        progress.event(PullEvent::Warning {
            digest: digest.clone(),
            message,
        });
    }
    progress.event(PullEvent::Extracted { digest });
    Ok(())
}

/// Download the layer's blob and unpack it in the same pass.
async fn stream_layer(
    shared: &Shared<'_>,
    reference: &Reference,
    job: UnpackJob,
) -> Result<Vec<String>, crate::Error> {
    let descriptor = job.plan.descriptor.clone();
    let digest = descriptor.digest.clone();
    let progress = &shared.progress;
    // Opening re-hashes a partial download: blocking work.
    let mut ingest = {
        let content = shared.store.content.clone();
        let (digest, size) = (digest.clone(), descriptor.size);
        join_blocking(tokio::task::spawn_blocking(move || {
            content.ingest(&digest, size)
        }))
        .await??
    };
    progress.event(PullEvent::Downloading {
        digest: digest.clone(),
        size: descriptor.size,
        offset: ingest.offset(),
    });
    let follower = ingest.follow()?;
    progress.event(PullEvent::Extracting {
        digest: digest.clone(),
    });
    let mut unpack = tokio::task::spawn_blocking(move || job.run_streaming(follower));
    let download = async {
        let report = |done: u64| {
            progress.event(PullEvent::Progress {
                digest: digest.clone(),
                done,
                size: descriptor.size,
            });
        };
        shared
            .client
            .fetch_blob(reference, &descriptor, &mut ingest, &report)
            .await?;
        // Verifies size and digest; only then may the follower reach its end.
        ingest.commit().await?;
        progress.event(PullEvent::Verified {
            digest: digest.clone(),
        });
        Ok::<(), crate::Error>(())
        // An ingest dropped without a commit fails its follower.
    };
    tokio::pin!(download);
    tokio::select! {
        downloaded = &mut download => {
            let unpacked = join_blocking(unpack).await?;
            // A failed download makes the unpack fail too; its error is the one to show.
            downloaded?;
            unpacked
        }
        unpacked = &mut unpack => {
            let unpacked = match unpacked {
                Ok(unpacked) => unpacked,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(StoreError::Io {
                    path: Default::default(),
                    source: std::io::Error::other(format!("a blocking task was cancelled: {e}")),
                }.into()),
            };
            match unpacked {
                // It ended only after the commit verified the blob: let that finish.
                Ok(warnings) => {
                    download.await?;
                    Ok(warnings)
                }
                // The layer was refused: stop downloading it (the partial file stays in
                // ingest/ for a later attempt).
                Err(e) => Err(e),
            }
        }
    }
}

/// One layer's unpack, run on a blocking thread. It owns everything it touches (and a share
/// of the store lock), so it finishes cleanly even if the pull that started it is dropped:
/// the prepared snapshot is always committed or deleted.
struct UnpackJob {
    store: Arc<Store>,
    lock: Arc<StoreLock>,
    gates: Arc<Gates>,
    position: usize,
    plan: LayerPlan,
    budget: Arc<ImageBudget>,
}

impl UnpackJob {
    /// Unpack from the verified blob in the content store. Returns the layer's warnings.
    fn run_from_blob(self) -> Result<Vec<String>, crate::Error> {
        let blob = self.store.content.open_blob(&self.plan.descriptor.digest)?;
        let report = self.apply(BufReader::with_capacity(1 << 17, blob), &|| {}, &|| true)?;
        self.commit(report)
    }

    /// Unpack while the blob downloads; commit only once the blob was verified. A
    /// download that started over is unpacked again into a fresh folder.
    fn run_streaming(self, mut follower: Follower) -> Result<Vec<String>, crate::Error> {
        loop {
            // Taken again after a restart: it knows the generation being read.
            let handle = follower.handle();
            let abandon = || handle.abandon();
            let verified = || handle.verified();
            match self.apply(
                BufReader::with_capacity(1 << 17, &mut follower),
                &abandon,
                &verified,
            ) {
                // The download started over from byte 0 (a server ignored the Range):
                // what was read is not this blob's; unpack again, into a fresh folder.
                Err(_) if handle.restarted() => follower.restart(),
                Err(e) => return Err(e),
                Ok(report) => return self.commit(report),
            }
        }
    }

    /// One unpack into a fresh prepared snapshot. `verified` says whether the blob that
    /// was read passed its digest check.
    fn apply(
        &self,
        reader: impl std::io::Read + Send,
        abort: &(dyn Fn() + Sync),
        verified: &dyn Fn() -> bool,
    ) -> Result<Prepared, crate::Error> {
        let snapshots = &self.store.snapshots;
        let prepared = snapshots.prepare()?;
        let gates = &self.gates;
        let position = self.position;
        let lowers_ready = move || {
            gates.wait_below(position);
        };
        let hooks = StreamHooks {
            abort,
            lowers_ready: &lowers_ready,
        };
        let out = unpack::apply_layer_pipelined(
            reader,
            &prepared.fs(),
            &self.plan.options,
            &self.budget,
            &hooks,
        );
        let charged = out.charged;
        let failed = |prepared, e: crate::Error| {
            let _ = snapshots.abort(prepared);
            // Give back what this attempt took from the image budget.
            self.budget.remaining.fetch_add(charged, Ordering::SeqCst);
            e
        };
        let report = match out.result {
            Ok(report) => report,
            Err(e) => return Err(failed(prepared, e.into())),
        };
        let digest = &self.plan.descriptor.digest;
        if !verified() {
            let e = ContentError::NotFound {
                digest: digest.clone(),
            };
            return Err(failed(prepared, e.into()));
        }
        if report.diff_id != self.plan.expected_diff_id {
            let e = StoreError::DiffIdMismatch {
                digest: digest.clone(),
                actual: report.diff_id,
                expected: self.plan.expected_diff_id.clone(),
            };
            return Err(failed(prepared, e.into()));
        }
        Ok(Prepared {
            prepared,
            warnings: report.warnings,
        })
    }

    /// Commit once every lower layer is committed: a snapshot never exists without the
    /// snapshots below it, and a pull that failed on a lower layer leaves none.
    fn commit(&self, done: Prepared) -> Result<Vec<String>, crate::Error> {
        let _lock = &self.lock;
        let snapshots = &self.store.snapshots;
        if !self.gates.wait_below(self.position) {
            let _ = snapshots.abort(done.prepared);
            return Err(LowerFailed {
                digest: self.plan.descriptor.digest.clone(),
            }
            .into());
        }
        snapshots.commit(done.prepared, &self.plan.chain_id)?;
        self.gates.set(self.position, true);
        Ok(done.warnings)
    }
}

/// A verified, unpacked layer not yet committed.
struct Prepared {
    prepared: crate::snapshots::PreparedSnapshot,
    warnings: Vec<String>,
}

/// A layer was unpacked and verified, but a layer below it failed: it is not committed.
/// The lower layer's own error is the one a pull reports.
#[derive(Debug, thiserror::Error)]
#[error("layer {digest} was not committed: a layer below it failed")]
pub struct LowerFailed {
    pub digest: Digest,
}

impl From<LowerFailed> for crate::Error {
    fn from(e: LowerFailed) -> crate::Error {
        StoreError::Io {
            path: Default::default(),
            source: std::io::Error::other(e),
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Compression;

    /// A one-file, uncompressed layer tar.
    fn layer_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let data = vec![b'x'; 3 << 20];
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, "big.bin", &data[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn job(store: &Arc<Store>, digest: Digest, tar: &[u8]) -> UnpackJob {
        UnpackJob {
            store: store.clone(),
            lock: Arc::new(store.lock_shared().unwrap()),
            gates: Arc::new(Gates::new(1)),
            position: 0,
            plan: LayerPlan {
                descriptor: Descriptor {
                    media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
                    digest,
                    size: tar.len() as u64,
                    urls: None,
                    platform: None,
                    annotations: None,
                },
                expected_diff_id: Digest::of(tar),
                chain_id: Digest::of(tar),
                options: UnpackOptions {
                    compression: Compression::None,
                    limits: Default::default(),
                    id_base: 0,
                    parents: Vec::new(),
                },
                same_blob_as: None,
            },
            budget: Arc::new(ImageBudget::new(u64::MAX)),
        }
    }

    fn snapshot_dirs(store: &Store) -> Vec<String> {
        let root = store.snapshots.path(&Digest::of(b"x"));
        let root = root.parent().unwrap().parent().unwrap();
        std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    /// Streams `tar` (restarting once after `restart_after` bytes when set) into a job for
    /// the blob `digest`; returns the job's result and the commit's.
    async fn stream(
        store: &Arc<Store>,
        digest: Digest,
        tar: &[u8],
        restart_after: Option<usize>,
    ) -> (Result<Vec<String>, crate::Error>, Result<(), ContentError>) {
        let job = job(store, digest, tar);
        stream_job(store, job, tar, restart_after).await
    }

    /// [`stream`] with a job made by the caller.
    async fn stream_job(
        store: &Arc<Store>,
        job: UnpackJob,
        tar: &[u8],
        restart_after: Option<usize>,
    ) -> (Result<Vec<String>, crate::Error>, Result<(), ContentError>) {
        let digest = job.plan.descriptor.digest.clone();
        let mut ingest = store.content.ingest(&digest, tar.len() as u64).unwrap();
        let follower = ingest.follow().unwrap();
        let unpack = tokio::task::spawn_blocking(move || job.run_streaming(follower));
        if let Some(at) = restart_after {
            ingest.write_all(&tar[..at]).await.unwrap();
            ingest.publish().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            ingest.reset().await.unwrap();
        }
        for chunk in tar.chunks(64 << 10) {
            ingest.write_all(chunk).await.unwrap();
        }
        let committed = ingest.commit().await.map(|_| ());
        (unpack.await.unwrap(), committed)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn digest_failing_after_all_bytes_extracted_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let tar = layer_tar();
        // Every byte is a valid layer with the right diff ID; only the blob digest fails.
        let (unpacked, committed) = stream(&store, Digest::of(b"another blob"), &tar, None).await;
        assert!(matches!(
            committed,
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(unpacked.is_err(), "the unpack must not succeed");
        assert!(!store.snapshots.exists(&Digest::of(&tar)));
        assert!(
            snapshot_dirs(&store).is_empty(),
            "no snapshot and no temporary folder: {:?}",
            snapshot_dirs(&store)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn diff_id_failing_after_all_bytes_extracted_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let tar = layer_tar();
        // The blob verifies; only the config's diff ID is another layer's.
        let mut job = job(&store, Digest::of(&tar), &tar);
        job.plan.expected_diff_id = Digest::of(b"another layer");
        let (unpacked, committed) = stream_job(&store, job, &tar, None).await;
        committed.unwrap();
        let e = unpacked.expect_err("the unpack must not succeed");
        assert!(
            matches!(e, crate::Error::Store(StoreError::DiffIdMismatch { .. })),
            "{e:?}"
        );
        assert!(!store.snapshots.exists(&Digest::of(&tar)));
        assert!(
            snapshot_dirs(&store).is_empty(),
            "no snapshot and no temporary folder: {:?}",
            snapshot_dirs(&store)
        );
        // The blob itself was good: it stays in the content store.
        assert!(store.content.has(&Digest::of(&tar), tar.len() as u64));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn verified_stream_commits_and_a_restarted_download_unpacks_again() {
        for restart_after in [None, Some(1 << 20)] {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Store::open(dir.path()).unwrap());
            let tar = layer_tar();
            let (unpacked, committed) = stream(&store, Digest::of(&tar), &tar, restart_after).await;
            committed.unwrap();
            unpacked.unwrap();
            let file = store.snapshots.path(&Digest::of(&tar)).join("big.bin");
            assert_eq!(std::fs::read(file).unwrap().len(), 3 << 20);
            assert_eq!(
                snapshot_dirs(&store),
                vec![Digest::of(&tar).hex().to_owned()]
            );
        }
    }
}
