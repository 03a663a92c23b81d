//! `pull`: resolve a source to a manifest, fetch config and layers in parallel through the
//! content store, unpack each layer once into its snapshot, record the image.
//!
//! Order of work, which is what makes a kill at any point safe: blobs are committed (verified)
//! into the content store, each snapshot is committed by a rename once its diff ID matched,
//! and the image record is written last. The store's shared lock is held for the whole pull,
//! including by unpacks still running on blocking threads, so a prune never sees a
//! half-finished pull.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::content::ContentError;
use crate::digest::Digest;
use crate::image::{
    self, Compression, Descriptor, Manifest, ParsedManifest, Platform, MAX_DOCUMENT_BYTES,
};
use crate::reference::{ImageSource, Reference};
use crate::registry::RegistryClient;
use crate::store::{ImageRecord, LayerRecord, Store, StoreError};
use crate::unpack::{ImageBudget, UnpackOptions, STORE_ID_BASE};

mod layers;

/// Options of one pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to select from an index; default the host's.
    pub platform: Platform,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
    /// Apparent bytes of the whole unpacked image.
    pub max_image_bytes: u64,
    pub limits: crate::unpack::Limits,
    /// What happens when a single-platform image (no index to choose from) declares
    /// another platform than `platform`.
    pub platform_check: PlatformCheck,
}

/// How strictly a single-platform image's config must match [`PullOptions::platform`].
/// Docker's behaviour: an error when the user asked for a platform, a warning otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlatformCheck {
    /// The platform is the host's default: pull anyway, with a warning.
    #[default]
    Warn,
    /// The user asked for this platform (`--platform`): refuse another.
    Require,
}

impl PullOptions {
    pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 3;
    pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 256 << 30;
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: Platform::host(),
            max_concurrent_downloads: Self::DEFAULT_MAX_CONCURRENT_DOWNLOADS,
            max_image_bytes: Self::DEFAULT_MAX_IMAGE_BYTES,
            limits: crate::unpack::Limits::default(),
            platform_check: PlatformCheck::default(),
        }
    }
}

/// What a pull reports while it works, for progress bars or plain lines.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// The manifest was resolved.
    Resolved {
        name: String,
        manifest_digest: Digest,
        layers: usize,
        total_bytes: u64,
    },
    /// The layer is already unpacked in the store.
    LayerExists {
        digest: Digest,
    },
    /// Download of a layer started (or resumed at `offset`).
    Downloading {
        digest: Digest,
        size: u64,
        offset: u64,
    },
    /// Bytes of a layer downloaded so far.
    Progress {
        digest: Digest,
        done: u64,
        size: u64,
    },
    Verified {
        digest: Digest,
    },
    Extracting {
        digest: Digest,
    },
    Extracted {
        digest: Digest,
    },
    /// Something neutralised in a layer (a device node skipped, say).
    Warning {
        digest: Digest,
        message: String,
    },
    Done {
        record: Box<ImageRecord>,
    },
}

/// Receives [`PullEvent`]s; called from several tasks at once.
pub trait PullProgress: Send + Sync {
    fn event(&self, event: PullEvent);
}

/// Passes events on with their warnings scrubbed: a warning quotes image content (a path
/// in a layer, a config's platform), which a hostile registry chooses.
struct ScrubbedProgress {
    inner: Arc<dyn PullProgress>,
    scrubber: crate::scrub::Scrubber,
}

impl PullProgress for ScrubbedProgress {
    fn event(&self, event: PullEvent) {
        self.inner.event(match event {
            PullEvent::Warning { digest, message } => PullEvent::Warning {
                digest,
                message: self.scrubber.clean(&message, 1000),
            },
            other => other,
        })
    }
}

/// A manifest chosen for the pull, its blobs still to fetch (registry) or already in the
/// content store (offline sources).
struct Resolved {
    manifest: Manifest,
    manifest_digest: Digest,
    index_digest: Option<Digest>,
    /// Where missing blobs come from; None for offline sources.
    reference: Option<Reference>,
    /// Extra names to record the image under (a docker archive's RepoTags).
    extra_names: Vec<String>,
}

/// Pull `source` into `store`.
pub async fn pull(
    store: Arc<Store>,
    client: &RegistryClient,
    source: &ImageSource,
    options: &PullOptions,
    progress: Arc<dyn PullProgress>,
) -> Result<ImageRecord, crate::Error> {
    let progress: Arc<dyn PullProgress> = Arc::new(ScrubbedProgress {
        inner: progress,
        scrubber: client.scrubber().clone(),
    });
    let lock = {
        let store = store.clone();
        Arc::new(join_blocking(tokio::task::spawn_blocking(move || store.lock_shared())).await??)
    };
    let name = source.name();
    let resolved = match source {
        ImageSource::Registry(reference) => {
            resolve_registry(&store, client, reference, &options.platform).await?
        }
        ImageSource::OciLayout { path, tag } => {
            let imported = crate::offline::import_oci_layout(
                &store.content,
                path,
                tag.as_deref(),
                &options.platform,
            )
            .await?;
            Resolved {
                manifest: imported.manifest,
                manifest_digest: imported.manifest_digest,
                index_digest: imported.index_digest,
                reference: None,
                extra_names: Vec::new(),
            }
        }
        ImageSource::DockerArchive { path } => {
            let imported = crate::offline::import_docker_archive(&store.content, path).await?;
            Resolved {
                manifest: imported.manifest,
                manifest_digest: imported.manifest_digest,
                index_digest: imported.index_digest,
                reference: None,
                extra_names: imported.names,
            }
        }
    };
    let manifest = &resolved.manifest;
    let layers = &manifest.layers;
    // Sizes come from the manifest: never trust them not to overflow.
    let total_bytes = layers
        .iter()
        .fold(0u64, |sum, l| sum.saturating_add(l.size));
    progress.event(PullEvent::Resolved {
        name: name.clone(),
        manifest_digest: resolved.manifest_digest.clone(),
        layers: layers.len(),
        total_bytes,
    });

    // Config: small, bounded, verified, then parsed.
    let config_desc = &manifest.config;
    if config_desc.size > MAX_DOCUMENT_BYTES {
        return Err(ContentError::DocumentTooLarge {
            digest: config_desc.digest.clone(),
            size: config_desc.size,
            max: MAX_DOCUMENT_BYTES,
        }
        .into());
    }
    ensure_blob(
        &store,
        client,
        resolved.reference.as_ref(),
        config_desc,
        None,
    )
    .await?;
    let config_body = store
        .content
        .read_document(&config_desc.digest, MAX_DOCUMENT_BYTES)?;
    let config = image::parse_config(&config_body, &config_desc.digest, layers.len())?;
    if config.diff_ids.len() != layers.len() {
        return Err(image::ImageError::InvalidConfig {
            digest: config_desc.digest.clone(),
            reason: format!(
                "it lists {} diff IDs for the manifest's {} layers",
                config.diff_ids.len(),
                layers.len()
            ),
        }
        .into());
    }
    // An index chose the manifest by platform; a lone manifest is checked here.
    if resolved.index_digest.is_none() {
        check_platform(
            &name,
            &config.platform(),
            &resolved.manifest_digest,
            options,
            &progress,
        )?;
    }
    let chain_ids = image::chain_ids(&config.diff_ids);
    let compressions = layers
        .iter()
        .map(|l| Compression::from_media_type(&l.media_type))
        .collect::<Result<Vec<_>, _>>()?;

    // Which layers need unpacking, and which blobs need downloading for them.
    let mut to_unpack = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        if store.snapshots.exists(&chain_ids[i]) {
            progress.event(PullEvent::LayerExists {
                digest: layer.digest.clone(),
            });
        } else {
            to_unpack.push(i);
        }
    }
    // Each layer is downloaded and unpacked in one pass, several at once (`layers`).
    let mut plans = Vec::with_capacity(to_unpack.len());
    let mut first_of_blob: BTreeMap<Digest, usize> = BTreeMap::new();
    for (position, &i) in to_unpack.iter().enumerate() {
        let layer = &layers[i];
        let same_blob_as = match first_of_blob.get(&layer.digest) {
            Some(&first) => Some(first),
            None => {
                first_of_blob.insert(layer.digest.clone(), position);
                None
            }
        };
        plans.push(layers::LayerPlan {
            descriptor: layer.clone(),
            expected_diff_id: config.diff_ids[i].clone(),
            chain_id: chain_ids[i].clone(),
            options: UnpackOptions {
                compression: compressions[i],
                limits: options.limits.clone(),
                id_base: STORE_ID_BASE,
                parents: lower_snapshots(&store, &chain_ids[..i]),
            },
            same_blob_as,
        });
    }
    let shared = layers::Shared {
        store: store.clone(),
        client,
        reference: resolved.reference.as_ref(),
        progress: progress.clone(),
        lock: lock.clone(),
        budget: Arc::new(ImageBudget::new(options.max_image_bytes)),
    };
    layers::unpack_all(&shared, plans, options.max_concurrent_downloads).await?;
    drop(shared);

    let record = ImageRecord {
        name,
        manifest_digest: resolved.manifest_digest.clone(),
        index_digest: resolved.index_digest.clone(),
        config_digest: config_desc.digest.clone(),
        platform: Platform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        },
        layers: layers
            .iter()
            .enumerate()
            .map(|(i, layer)| LayerRecord {
                digest: layer.digest.clone(),
                size: layer.size,
                media_type: layer.media_type.clone(),
                diff_id: config.diff_ids[i].clone(),
                chain_id: chain_ids[i].clone(),
            })
            .collect(),
        size: total_bytes,
        pulled_at: rfc3339_utc(SystemTime::now()),
    };
    // Records last: everything they name is committed.
    store.put_image(&record)?;
    for extra in &resolved.extra_names {
        if extra != &record.name {
            store.put_image(&ImageRecord {
                name: extra.clone(),
                ..record.clone()
            })?;
        }
    }
    drop(lock);
    progress.event(PullEvent::Done {
        record: Box::new(record.clone()),
    });
    Ok(record)
}

/// Compare a single-platform image's config platform with the wanted one: an error when
/// the user asked for a platform, a warning otherwise (as docker does).
fn check_platform(
    name: &str,
    actual: &Platform,
    manifest_digest: &Digest,
    options: &PullOptions,
    progress: &Arc<dyn PullProgress>,
) -> Result<(), crate::Error> {
    if options.platform.accepts_config(actual) {
        return Ok(());
    }
    match options.platform_check {
        PlatformCheck::Require => Err(image::ImageError::PlatformMismatch {
            image: name.to_owned(),
            wanted: options.platform.to_string(),
            actual: actual.to_string(),
        }
        .into()),
        PlatformCheck::Warn => {
            progress.event(PullEvent::Warning {
                digest: manifest_digest.clone(),
                message: format!(
                    "image {name} is for platform {actual}, not this host's {}: it may not run here",
                    options.platform
                ),
            });
            Ok(())
        }
    }
}

/// Fetch the manifest for `reference`, through an index when it names one, and store the
/// bodies (verified) in the content store.
async fn resolve_registry(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Result<Resolved, crate::Error> {
    let fetched = client
        .fetch_manifest(reference, &reference.manifest_reference())
        .await?;
    let (manifest, manifest_digest, index_digest) = match image::parse_manifest(
        &fetched.body,
        fetched.content_type.as_deref(),
    )? {
        ParsedManifest::Image(manifest) => {
            store.content.write_blob(&fetched.digest, &fetched.body)?;
            (manifest, fetched.digest, None)
        }
        ParsedManifest::Index(index) => {
            let chosen = image::select_platform(&index, platform)?;
            let child = client
                .fetch_manifest(reference, &chosen.digest.to_string())
                .await?;
            if child.digest != chosen.digest || child.body.len() as u64 != chosen.size {
                return Err(image::ImageError::InvalidManifest(format!(
                        "manifest {} of index {} for {platform} does not match its descriptor ({} bytes, digest {}); the registry served different content",
                        chosen.digest,
                        fetched.digest,
                        child.body.len(),
                        child.digest
                    ))
                    .into());
            }
            let manifest = match image::parse_manifest(&child.body, child.content_type.as_deref())? {
                    ParsedManifest::Image(manifest) => manifest,
                    ParsedManifest::Index(_) => {
                        return Err(image::ImageError::Unsupported(format!(
                            "index {} points to another index ({}) for {platform}; nested indexes are not supported",
                            fetched.digest, chosen.digest
                        ))
                        .into())
                    }
                };
            store.content.write_blob(&fetched.digest, &fetched.body)?;
            store.content.write_blob(&child.digest, &child.body)?;
            (manifest, child.digest, Some(fetched.digest))
        }
    };
    Ok(Resolved {
        manifest,
        manifest_digest,
        index_digest,
        reference: Some(reference.clone()),
        extra_names: Vec::new(),
    })
}

/// Make sure the verified blob of `descriptor` is in the content store, downloading it
/// (resuming a partial one) if needed. `progress` is None for blobs not worth reporting.
async fn ensure_blob(
    store: &Store,
    client: &RegistryClient,
    reference: Option<&Reference>,
    descriptor: &Descriptor,
    progress: Option<&Arc<dyn PullProgress>>,
) -> Result<(), crate::Error> {
    let digest = &descriptor.digest;
    if store.content.has(digest, descriptor.size) {
        return Ok(());
    }
    let Some(reference) = reference else {
        // Offline sources put every blob in the store; one missing is their error.
        return Err(ContentError::NotFound {
            digest: digest.clone(),
        }
        .into());
    };
    // Opening re-hashes a partial download: blocking work.
    let mut ingest = {
        let content = store.content.clone();
        let (digest, size) = (digest.clone(), descriptor.size);
        join_blocking(tokio::task::spawn_blocking(move || {
            content.ingest(&digest, size)
        }))
        .await??
    };
    if let Some(progress) = progress {
        progress.event(PullEvent::Downloading {
            digest: digest.clone(),
            size: descriptor.size,
            offset: ingest.offset(),
        });
    }
    let report = |done: u64| {
        if let Some(progress) = progress {
            progress.event(PullEvent::Progress {
                digest: digest.clone(),
                done,
                size: descriptor.size,
            });
        }
    };
    client
        .fetch_blob(reference, descriptor, &mut ingest, &report)
        .await?;
    ingest.commit().await?;
    if let Some(progress) = progress {
        progress.event(PullEvent::Verified {
            digest: digest.clone(),
        });
    }
    Ok(())
}

/// The committed snapshot trees below a layer, nearest first.
fn lower_snapshots(store: &Store, lower_chain_ids: &[Digest]) -> Vec<PathBuf> {
    lower_chain_ids
        .iter()
        .rev()
        .map(|chain_id| store.snapshots.path(chain_id))
        .collect()
}

/// Wait for a blocking task; a panic in it is re-raised here.
async fn join_blocking<T>(handle: tokio::task::JoinHandle<T>) -> Result<T, crate::Error> {
    match handle.await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(format!("a blocking task was cancelled: {e}")),
        }
        .into()),
    }
}

/// `2024-01-02T03:04:05Z` for `time` (UTC, whole seconds), without a date library.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Compile-time check: the CLI may run a pull in `tokio::spawn`.
    #[allow(dead_code)]
    fn pull_future_is_send(
        store: Arc<Store>,
        client: &RegistryClient,
        source: &ImageSource,
        options: &PullOptions,
        progress: Arc<dyn PullProgress>,
    ) {
        fn is_send<T: Send>(_: T) {}
        is_send(pull(store, client, source, options, progress));
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_704_164_645)),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31T23:59:59Z"
        );
    }

    #[test]
    fn lower_snapshots_are_nearest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids: Vec<Digest> = (0u8..3).map(|n| Digest::of(&[n])).collect();
        let lowers = lower_snapshots(&store, &ids[..2]);
        assert_eq!(
            lowers,
            vec![store.snapshots.path(&ids[1]), store.snapshots.path(&ids[0])]
        );
        assert!(lower_snapshots(&store, &[]).is_empty());
    }
}
