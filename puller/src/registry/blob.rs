//! Blob downloads: Range resume from the ingest's offset, retries with backoff, a size
//! cap at the descriptor's size, a read-idle timeout between chunks.

use futures_util::StreamExt as _;
use reqwest::header::CONTENT_RANGE;
use reqwest::StatusCode;

use super::http;
use super::{reqwest_reason, Creds, RegistryClient, RegistryError, Target, What};
use crate::content::{ContentError, Ingest};
use crate::image::Descriptor;

impl RegistryClient {
    pub(super) async fn fetch_blob_at(
        &self,
        target: &Target,
        descriptor: &Descriptor,
        ingest: &mut Ingest,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), RegistryError> {
        self.check_repository(target)?;
        let digest = &descriptor.digest;
        let size = descriptor.size;
        let path = format!("/v2/{}/blobs/{digest}", target.repository);
        let what = format!("blob {digest}");
        let too_large = || {
            RegistryError::Content(ContentError::TooLarge {
                digest: digest.clone(),
                expected: size,
            })
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let start = ingest.offset();
            progress(start);
            if start == size {
                return Ok(());
            }
            let error = match self
                .blob_attempt(target, &path, &what, size, ingest, progress)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if ingest.offset() > start {
                // Progress was made: the next failure gets a fresh set of attempts.
                attempt = 1;
            }
            if !error.is_retryable() || attempt >= self.inner.timing.attempts {
                return Err(match error {
                    RegistryError::Status { status: 404, .. } => RegistryError::BlobNotFound {
                        host: target.registry.clone(),
                        repository: target.repository.clone(),
                        digest: digest.clone(),
                    },
                    RegistryError::Content(ContentError::TooLarge { .. }) => too_large(),
                    other => other,
                });
            }
            tokio::time::sleep(http::backoff(self.inner.timing.backoff, attempt)).await;
        }
    }

    /// One GET of a blob, from `ingest.offset()`. Ok when all `size` bytes are in.
    pub(super) async fn blob_attempt(
        &self,
        target: &Target,
        path: &str,
        what: &str,
        size: u64,
        ingest: &mut Ingest,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), RegistryError> {
        let offset = ingest.offset();
        let range = (offset > 0).then_some(offset);
        let response = self
            .request(target, path, what, None, range, Creds::Lookup)
            .await?;
        let digest = ingest.digest().clone();
        let too_large = || {
            RegistryError::Content(ContentError::TooLarge {
                digest: digest.clone(),
                expected: size,
            })
        };
        match response.status() {
            StatusCode::OK => {
                if offset > 0 {
                    // The server ignored the Range: start over.
                    ingest.reset().await?;
                    progress(0);
                }
                if response.content_length().is_some_and(|len| len > size) {
                    return Err(too_large());
                }
            }
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                let start = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(http::content_range_start);
                if start != Some(offset) {
                    // Not the range we asked for: throw the prefix away and retry from 0.
                    ingest.reset().await?;
                    progress(0);
                    return Err(RegistryError::BodyRead {
                        host: target.registry.clone(),
                        what: what.to_owned(),
                        reason: format!(
                            "the server answered a different range than bytes={offset}-"
                        ),
                    });
                }
                if response
                    .content_length()
                    .is_some_and(|len| len > size - offset)
                {
                    return Err(too_large());
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                ingest.reset().await?;
                progress(0);
                return Err(RegistryError::BodyRead {
                    host: target.registry.clone(),
                    what: what.to_owned(),
                    reason: format!("the server cannot resume at byte {offset}"),
                });
            }
            _ => return Err(self.status_error(target, response, What::Blob).await),
        }
        let mut stream = response.bytes_stream();
        loop {
            match tokio::time::timeout(self.inner.timing.idle, stream.next()).await {
                Err(_) => {
                    return Err(RegistryError::Timeout {
                        host: target.registry.clone(),
                        what: what.to_owned(),
                        seconds: self.inner.timing.idle.as_secs(),
                    })
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(RegistryError::BodyRead {
                        host: target.registry.clone(),
                        what: what.to_owned(),
                        reason: reqwest_reason(&e),
                    })
                }
                Ok(Some(Ok(chunk))) => {
                    // Refuses (writing nothing) past the declared size.
                    ingest.write_all(&chunk).await?;
                    progress(ingest.offset());
                }
            }
        }
        if ingest.offset() < size {
            return Err(RegistryError::BodyRead {
                host: target.registry.clone(),
                what: what.to_owned(),
                reason: format!("the body ended after {} of {size} bytes", ingest.offset()),
            });
        }
        Ok(())
    }
}
