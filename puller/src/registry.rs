//! The distribution-spec v2 client: manifests, blobs (with resume), auth challenges,
//! bearer tokens, basic auth, credential lookup (`registry::credentials`).
//!
//! Invariants:
//! - The Authorization header goes only to the registry's own origin (scheme, host, port);
//!   redirects to a CDN get none, and an https → http redirect is refused.
//! - Credentials go to a token realm only when [`auth::realm_trusted`] says so; other
//!   realms get anonymous token requests.
//! - No redirect or realm reaches a link-local or cloud metadata address.
//! - Every body is read bounded; a manifest is hashed here, never trusted from a header.
//! - Plain HTTP only for loopback and `options.insecure` hosts, after HTTPS failed.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;
use url::Url;

use crate::content::{ContentError, Ingest};
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::reference::Reference;
use crate::scrub::Scrubber;
use crate::secret::{Credentials, Secret};

pub mod auth;
mod blob;
pub mod credentials;
mod http;
mod token;

use auth::Challenge;
use http::{ReadError, MAX_SMALL_BODY};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("cannot reach registry {host}: {reason}; check the name, the network and any proxy settings")]
    Connect { host: String, reason: String },
    #[error("registry {host} did not answer within {seconds} s ({what}); retry later")]
    Timeout {
        host: String,
        what: String,
        seconds: u64,
    },
    #[error("connection to {host} broke while reading {what}: {reason}")]
    BodyRead {
        host: String,
        what: String,
        reason: String,
    },
    #[error("manifest for {reference} not found: check the tag")]
    ManifestNotFound { reference: String },
    #[error("repository {repository} not found on {host}: check the name, or run `farm login {host}` if it is private")]
    NameUnknown { host: String, repository: String },
    #[error("blob {digest} not found in {repository} on {host}: the image is incomplete on the registry")]
    BlobNotFound {
        host: String,
        repository: String,
        digest: Digest,
    },
    #[error(
        "access denied to {repository} on {host}: run `farm login {host}` or check the credentials"
    )]
    AccessDenied { host: String, repository: String },
    #[error(
        "too many requests to {host} (the registry rate-limits pulls): wait a few minutes and retry, or run `farm login {host}` for a higher limit"
    )]
    TooManyRequests {
        host: String,
        /// The registry's `Retry-After`, in seconds, when it sent one.
        retry_after: Option<u64>,
    },
    #[error("registry {host} answered {status} for {what}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        host: String,
        what: String,
        status: u16,
        message: Option<String>,
    },
    #[error("manifest {reference} is larger than the {max}-byte limit; refusing it")]
    ManifestTooLarge { reference: String, max: u64 },
    #[error("manifest {reference} hashes to {actual}, not the requested digest: the registry served different content; refusing it")]
    ManifestDigestMismatch { reference: String, actual: Digest },
    #[error("manifest {reference}: the registry's Docker-Content-Digest {header} disagrees with the body's digest {actual}; refusing it")]
    ContentDigestHeaderMismatch {
        reference: String,
        header: Digest,
        actual: Digest,
    },
    #[error("redirect from {host} refused ({what}): {reason}")]
    RedirectRefused {
        host: String,
        what: String,
        reason: String,
    },
    #[error("too many redirects from {host} ({what})")]
    TooManyRedirects { host: String, what: String },
    #[error("token realm of {host} refused: {reason}")]
    RealmRefused { host: String, reason: String },
    #[error("cannot authenticate to {host}: {reason}")]
    Auth { host: String, reason: String },
    #[error("invalid request for {host}: {reason}")]
    InvalidRequest { host: String, reason: String },
    #[error("{path}: {reason}")]
    CredentialsFile { path: PathBuf, reason: String },
    #[error("credential helper docker-credential-{helper} for {registry}: {reason}")]
    CredentialHelper {
        helper: String,
        registry: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the http client: {0}")]
    Client(String),
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// Longest text of one field of an error shown to the user.
const MAX_SHOWN_FIELD: usize = 1000;

impl RegistryError {
    /// The error with every text field passed through [`Scrubber::clean`]: whatever a
    /// server sent that reached a field (a message, a host from a redirect, a reason that
    /// quotes a realm) shows no secret farm sent, no control character, nothing too long.
    pub fn scrubbed(self, scrubber: &Scrubber) -> RegistryError {
        let c = |text: String| scrubber.clean(&text, MAX_SHOWN_FIELD);
        use RegistryError as E;
        match self {
            E::Connect { host, reason } => E::Connect {
                host: c(host),
                reason: c(reason),
            },
            E::Timeout {
                host,
                what,
                seconds,
            } => E::Timeout {
                host: c(host),
                what: c(what),
                seconds,
            },
            E::BodyRead { host, what, reason } => E::BodyRead {
                host: c(host),
                what: c(what),
                reason: c(reason),
            },
            E::ManifestNotFound { reference } => E::ManifestNotFound {
                reference: c(reference),
            },
            E::NameUnknown { host, repository } => E::NameUnknown {
                host: c(host),
                repository: c(repository),
            },
            E::BlobNotFound {
                host,
                repository,
                digest,
            } => E::BlobNotFound {
                host: c(host),
                repository: c(repository),
                digest,
            },
            E::AccessDenied { host, repository } => E::AccessDenied {
                host: c(host),
                repository: c(repository),
            },
            E::TooManyRequests { host, retry_after } => E::TooManyRequests {
                host: c(host),
                retry_after,
            },
            E::Status {
                host,
                what,
                status,
                message,
            } => E::Status {
                host: c(host),
                what: c(what),
                status,
                message: message.map(c),
            },
            E::ManifestTooLarge { reference, max } => E::ManifestTooLarge {
                reference: c(reference),
                max,
            },
            E::ManifestDigestMismatch { reference, actual } => E::ManifestDigestMismatch {
                reference: c(reference),
                actual,
            },
            E::ContentDigestHeaderMismatch {
                reference,
                header,
                actual,
            } => E::ContentDigestHeaderMismatch {
                reference: c(reference),
                header,
                actual,
            },
            E::RedirectRefused { host, what, reason } => E::RedirectRefused {
                host: c(host),
                what: c(what),
                reason: c(reason),
            },
            E::TooManyRedirects { host, what } => E::TooManyRedirects {
                host: c(host),
                what: c(what),
            },
            E::RealmRefused { host, reason } => E::RealmRefused {
                host: c(host),
                reason: c(reason),
            },
            E::Auth { host, reason } => E::Auth {
                host: c(host),
                reason: c(reason),
            },
            E::InvalidRequest { host, reason } => E::InvalidRequest {
                host: c(host),
                reason: c(reason),
            },
            E::CredentialsFile { path, reason } => E::CredentialsFile {
                path,
                reason: c(reason),
            },
            E::CredentialHelper {
                helper,
                registry,
                reason,
            } => E::CredentialHelper {
                helper: c(helper),
                registry: c(registry),
                reason: c(reason),
            },
            E::Client(reason) => E::Client(c(reason)),
            other @ (E::Io { .. } | E::Content(_)) => other,
        }
    }

    /// Worth another attempt: network trouble, 5xx, 408, 429 (unless it asks for a wait
    /// past [`MAX_RETRY_AFTER`]).
    fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Connect { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::BodyRead { .. } => true,
            RegistryError::TooManyRequests { retry_after, .. } => {
                retry_after.is_none_or(|secs| secs <= MAX_RETRY_AFTER.as_secs())
            }
            RegistryError::Status { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    /// How long to wait before retry number `attempt`: the backoff, or longer when the
    /// registry asked for it with `Retry-After`.
    fn retry_delay(&self, backoff: Duration, attempt: u32) -> Duration {
        let backoff = http::backoff(backoff, attempt);
        match self {
            RegistryError::TooManyRequests {
                retry_after: Some(secs),
                ..
            } => backoff.max(Duration::from_secs(*secs).min(MAX_RETRY_AFTER)),
            _ => backoff,
        }
    }
}

/// The longest `Retry-After` waited for; a registry asking for more gets an error at once.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How a [`RegistryClient`] finds and uses registries and credentials.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) that may be reached over plain HTTP. Loopback always may.
    pub insecure: Vec<String>,
    /// Credentials handed in by the caller for this pull (the worker's per-job ones).
    /// Used for the pulled registry only, before any stored credentials.
    pub credentials: Option<Credentials>,
    /// farm's own credential store, written by `farm login` (docker config format, 0600).
    pub auth_file: Option<PathBuf>,
    /// A docker `config.json` to read; None means `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
}

/// A manifest or index as the registry served it, hashed by us.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// sha256 of `body`, computed here (the Docker-Content-Digest header is only a hint).
    pub digest: Digest,
}

/// A client for any number of registries; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure", &self.inner.options.insecure)
            .finish_non_exhaustive()
    }
}

/// Timeouts and retry counts; tests shorten them.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Wait for response headers, and between two chunks of a body.
    idle: Duration,
    backoff: Duration,
    attempts: u32,
}

const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Tokens are reused until this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
const MIN_TOKEN_LIFETIME: u64 = 60;
/// A token server's `expires_in` is capped here: a huge one would overflow `Instant`.
const MAX_TOKEN_LIFETIME: u64 = 24 * 60 * 60;

struct Inner {
    http: reqwest::Client,
    options: RegistryOptions,
    timing: Timing,
    /// The scheme that worked for each host.
    schemes: Mutex<HashMap<String, &'static str>>,
    /// How each host asked to be authenticated.
    modes: Mutex<HashMap<String, AuthMode>>,
    /// Bearer tokens by (host, scope).
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
    /// Looked-up credentials by registry.
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
    /// Every credential and token this client sent, to mask in what servers answer.
    scrubber: Scrubber,
}

#[derive(Debug, Clone)]
enum AuthMode {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct CachedToken {
    token: Secret,
    valid_until: Instant,
}

/// Where a request goes: the registry name (for credentials and messages), the host to
/// talk to and the repository. The public methods build it from a [`Reference`].
#[derive(Debug, Clone)]
pub(crate) struct Target {
    registry: String,
    host: String,
    repository: String,
}

impl Target {
    fn new(registry: &str, host: &str, repository: &str) -> Target {
        Target {
            registry: registry.to_owned(),
            host: host.to_owned(),
            repository: repository.to_owned(),
        }
    }

    fn from_reference(reference: &Reference) -> Target {
        Target::new(
            reference.registry(),
            reference.api_host(),
            reference.repository(),
        )
    }

    fn scope(&self) -> Option<String> {
        (!self.repository.is_empty()).then(|| format!("repository:{}:pull", self.repository))
    }

    fn access_denied(&self) -> RegistryError {
        let repository = if self.repository.is_empty() {
            "the registry".to_owned()
        } else {
            self.repository.clone()
        };
        RegistryError::AccessDenied {
            host: self.registry.clone(),
            repository,
        }
    }
}

/// Where the credentials for a request come from.
#[derive(Clone, Copy)]
enum Creds<'a> {
    /// Look them up (caller's, auth file, docker config); cache tokens.
    Lookup,
    /// Exactly these (`check_login`); no cached token is used.
    Given(&'a Credentials),
}

fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
        })
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn reqwest_reason(e: &reqwest::Error) -> String {
    // Without the URL: it may carry a token in its query. Callers' errors are scrubbed on
    // their way out of the client as well.
    let mut reason = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
        source = err.source();
    }
    let reason = match e.url() {
        Some(url) => reason.replace(url.as_str(), "<url>"),
        None => reason,
    };
    http::printable(&reason, 300)
}

enum SendError {
    /// Connecting to the registry itself (the first hop) failed: may fall back to HTTP.
    FirstHopConnect(reqwest::Error),
    Other(RegistryError),
}

impl From<RegistryError> for SendError {
    fn from(e: RegistryError) -> SendError {
        SendError::Other(e)
    }
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        let timing = Timing {
            idle: Duration::from_secs(60),
            backoff: Duration::from_millis(200),
            attempts: 5,
        };
        RegistryClient::with_timing(options, timing)
    }

    fn with_timing(
        options: RegistryOptions,
        timing: Timing,
    ) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("farm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Client(reqwest_reason(&e)))?;
        let scrubber = Scrubber::new();
        if let Some(credentials) = &options.credentials {
            scrubber.add_credentials(credentials);
        }
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                options,
                timing,
                schemes: Mutex::default(),
                modes: Mutex::default(),
                tokens: Mutex::default(),
                credentials: Mutex::default(),
                scrubber,
            }),
        })
    }

    /// What masks the credentials and tokens this client sent (and will send): pass any
    /// text a server may have influenced through [`Scrubber::clean`] before showing it.
    pub fn scrubber(&self) -> &Scrubber {
        &self.inner.scrubber
    }

    /// An error as it may leave the client: scrubbed.
    fn shown(&self, error: RegistryError) -> RegistryError {
        error.scrubbed(&self.inner.scrubber)
    }

    /// GET `/v2/<repository>/manifests/<manifest_reference>` (a tag or a digest), bounded to
    /// [`crate::image::MAX_DOCUMENT_BYTES`]. When `manifest_reference` is a digest the body
    /// must hash to it.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        manifest_reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        self.fetch_manifest_at(&Target::from_reference(reference), manifest_reference)
            .await
            .map_err(|e| self.shown(e))
    }

    /// Download the blob of `descriptor` into `ingest`, starting at `ingest.offset()` (HTTP
    /// Range), retrying and resuming on 5xx, resets and timeouts. `progress` gets the total
    /// bytes written so far. Does not commit: the caller calls `ingest.commit()`.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        ingest: &mut Ingest,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), RegistryError> {
        self.fetch_blob_at(
            &Target::from_reference(reference),
            descriptor,
            ingest,
            progress,
        )
        .await
        .map_err(|e| self.shown(e))
    }

    /// Check `credentials` against `registry` (`host[:port]`, or `docker.io`): GET /v2/
    /// with basic auth or the token flow. Ok means they were accepted.
    pub async fn check_login(
        &self,
        registry: &str,
        credentials: &Credentials,
    ) -> Result<(), RegistryError> {
        let host = if credentials::normalize_key(registry) == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        self.inner.scrubber.add_credentials(credentials);
        self.check_login_at(&Target::new(registry, host, ""), credentials)
            .await
            .map_err(|e| self.shown(e))
    }

    async fn check_login_at(
        &self,
        target: &Target,
        credentials: &Credentials,
    ) -> Result<(), RegistryError> {
        let response = self
            .request(
                target,
                "/v2/",
                "the login check",
                None,
                None,
                Creds::Given(credentials),
            )
            .await?;
        if response.status() == StatusCode::OK {
            Ok(())
        } else {
            Err(self.status_error(target, response, What::Login).await)
        }
    }

    async fn fetch_manifest_at(
        &self,
        target: &Target,
        manifest_reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let wanted =
            if manifest_reference.starts_with("sha256:") || manifest_reference.contains(':') {
                Some(Digest::parse(manifest_reference).map_err(|e| {
                    RegistryError::InvalidRequest {
                        host: target.registry.clone(),
                        reason: e.to_string(),
                    }
                })?)
            } else {
                None
            };
        if wanted.is_none() && !valid_tag(manifest_reference) {
            return Err(RegistryError::InvalidRequest {
                host: target.registry.clone(),
                reason: format!(
                    "{:?} is not a valid tag",
                    http::printable(manifest_reference, 130)
                ),
            });
        }
        self.check_repository(target)?;
        let display = if wanted.is_some() {
            format!(
                "{}/{}@{manifest_reference}",
                target.registry, target.repository
            )
        } else {
            format!(
                "{}/{}:{manifest_reference}",
                target.registry, target.repository
            )
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .fetch_manifest_once(target, manifest_reference, wanted.as_ref(), &display)
                .await
            {
                Err(e) if e.is_retryable() && attempt < self.inner.timing.attempts => {
                    tokio::time::sleep(e.retry_delay(self.inner.timing.backoff, attempt)).await;
                }
                result => return result,
            }
        }
    }

    fn check_repository(&self, target: &Target) -> Result<(), RegistryError> {
        if valid_repository(&target.repository) {
            Ok(())
        } else {
            Err(RegistryError::InvalidRequest {
                host: target.registry.clone(),
                reason: format!(
                    "{:?} is not a valid repository name",
                    http::printable(&target.repository, 260)
                ),
            })
        }
    }

    async fn fetch_manifest_once(
        &self,
        target: &Target,
        manifest_reference: &str,
        wanted: Option<&Digest>,
        display: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let path = format!("/v2/{}/manifests/{manifest_reference}", target.repository);
        let what = format!("manifest {display}");
        let response = self
            .request(
                target,
                &path,
                &what,
                Some(crate::image::media_types::MANIFEST_ACCEPT),
                None,
                Creds::Lookup,
            )
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(target, response, What::Manifest(display))
                .await);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| self.inner.scrubber.clean(v, 200));
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let max = crate::image::MAX_DOCUMENT_BYTES;
        let body = http::read_bounded(response, max, self.inner.timing.idle)
            .await
            .map_err(|e| {
                self.read_error(target, e, &what, || RegistryError::ManifestTooLarge {
                    reference: display.to_owned(),
                    max,
                })
            })?;
        let digest = Digest::of(&body);
        if let Some(wanted) = wanted {
            if &digest != wanted {
                return Err(RegistryError::ManifestDigestMismatch {
                    reference: display.to_owned(),
                    actual: digest,
                });
            }
        }
        if let Some(header) = header_digest {
            if header != digest {
                return Err(RegistryError::ContentDigestHeaderMismatch {
                    reference: display.to_owned(),
                    header,
                    actual: digest,
                });
            }
        }
        Ok(FetchedManifest {
            body,
            content_type,
            digest,
        })
    }

    fn read_error(
        &self,
        target: &Target,
        error: ReadError,
        what: &str,
        too_large: impl FnOnce() -> RegistryError,
    ) -> RegistryError {
        match error {
            ReadError::TooLarge => too_large(),
            ReadError::Timeout => RegistryError::Timeout {
                host: target.registry.clone(),
                what: what.to_owned(),
                seconds: self.inner.timing.idle.as_secs(),
            },
            ReadError::Body(e) => RegistryError::BodyRead {
                host: target.registry.clone(),
                what: what.to_owned(),
                reason: reqwest_reason(&e),
            },
        }
    }

    /// Turn a non-success response into an error, reading its body (bounded) for the
    /// registry's error code.
    async fn status_error(
        &self,
        target: &Target,
        response: reqwest::Response,
        what: What<'_>,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let retry_after = http::retry_after(response.headers());
        let body = http::read_bounded(response, MAX_SMALL_BODY, self.inner.timing.idle)
            .await
            .unwrap_or_default();
        let (code, message) = http::error_fields(&body);
        let message = message.map(|m| self.inner.scrubber.clean(&m, 200));
        let code = code
            .map(|c| self.inner.scrubber.clean(&c, 64))
            .unwrap_or_default();
        match (status, code.as_str()) {
            (401 | 403, _) | (_, "UNAUTHORIZED" | "DENIED") => target.access_denied(),
            (429, _) | (_, "TOOMANYREQUESTS") => RegistryError::TooManyRequests {
                host: target.registry.clone(),
                retry_after,
            },
            (_, "NAME_UNKNOWN") => RegistryError::NameUnknown {
                host: target.registry.clone(),
                repository: target.repository.clone(),
            },
            (404, _) | (_, "MANIFEST_UNKNOWN") if matches!(what, What::Manifest(_)) => {
                let What::Manifest(reference) = what else {
                    unreachable!()
                };
                RegistryError::ManifestNotFound {
                    reference: reference.to_owned(),
                }
            }
            _ => RegistryError::Status {
                host: target.registry.clone(),
                what: match what {
                    What::Manifest(reference) => format!("manifest {reference}"),
                    What::Blob => "a blob".to_owned(),
                    What::Login => "/v2/".to_owned(),
                },
                status,
                message: message.or_else(|| (!code.is_empty()).then_some(code)),
            },
        }
    }

    fn insecure_allowed(&self, host: &str) -> bool {
        http::is_loopback_host(host)
            || self
                .inner
                .options
                .insecure
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }

    fn remembered_scheme(&self, host: &str) -> Option<&'static str> {
        self.inner
            .schemes
            .lock()
            .expect("scheme map lock")
            .get(host)
            .copied()
    }

    fn remember_scheme(&self, host: &str, scheme: &'static str) {
        self.inner
            .schemes
            .lock()
            .expect("scheme map lock")
            .insert(host.to_owned(), scheme);
    }

    fn base_url(&self, target: &Target, scheme: &str) -> Result<Url, RegistryError> {
        let url = Url::parse(&format!("{scheme}://{}/", target.host)).map_err(|_| {
            RegistryError::InvalidRequest {
                host: target.registry.clone(),
                reason: format!(
                    "{:?} is not a valid registry host",
                    http::printable(&target.host, 260)
                ),
            }
        })?;
        if url.path() != "/"
            || url.query().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(RegistryError::InvalidRequest {
                host: target.registry.clone(),
                reason: "the registry must be a plain host[:port]".to_owned(),
            });
        }
        Ok(url)
    }

    /// One logical request: send it (authorized as far as we know how), answer a 401
    /// challenge once, and return the final response, whatever its status.
    async fn request(
        &self,
        target: &Target,
        path: &str,
        what: &str,
        accept: Option<&str>,
        range: Option<u64>,
        creds: Creds<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut authorization = self.known_authorization(target, creds).await?;
        let mut challenged = false;
        loop {
            let (response, at_registry) = self
                .send(target, path, what, accept, range, authorization.as_ref())
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED || !at_registry {
                return Ok(response);
            }
            if challenged {
                return Err(target.access_denied());
            }
            challenged = true;
            let challenges: Vec<Challenge> = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(auth::parse_challenges)
                .collect();
            authorization = Some(self.answer_challenge(target, &challenges, creds).await?);
        }
    }

    /// Send to the registry, choosing the scheme (HTTPS, or HTTP after HTTPS failed for
    /// hosts that allow it) and following redirects. Also says whether the final response
    /// came from the registry's own origin.
    async fn send(
        &self,
        target: &Target,
        path: &str,
        what: &str,
        accept: Option<&str>,
        range: Option<u64>,
        authorization: Option<&Secret>,
    ) -> Result<(reqwest::Response, bool), RegistryError> {
        let (scheme, may_fall_back) = match self.remembered_scheme(&target.host) {
            Some(scheme) => (scheme, false),
            None => ("https", self.insecure_allowed(&target.host)),
        };
        let base = self.base_url(target, scheme)?;
        match self
            .send_following(target, &base, path, what, accept, range, authorization)
            .await
        {
            Ok(result) => {
                self.remember_scheme(&target.host, scheme);
                Ok(result)
            }
            Err(SendError::FirstHopConnect(_)) if may_fall_back => {
                let base = self.base_url(target, "http")?;
                match self
                    .send_following(target, &base, path, what, accept, range, authorization)
                    .await
                {
                    Ok(result) => {
                        self.remember_scheme(&target.host, "http");
                        Ok(result)
                    }
                    Err(SendError::FirstHopConnect(e)) => Err(self.connect_error(target, &e)),
                    Err(SendError::Other(e)) => Err(e),
                }
            }
            Err(SendError::FirstHopConnect(e)) => Err(self.connect_error(target, &e)),
            Err(SendError::Other(e)) => Err(e),
        }
    }

    fn connect_error(&self, target: &Target, error: &reqwest::Error) -> RegistryError {
        RegistryError::Connect {
            host: target.host.clone(),
            reason: reqwest_reason(error),
        }
    }

    #[allow(clippy::too_many_arguments)] // one request's parts; a struct would only rename them
    async fn send_following(
        &self,
        target: &Target,
        base: &Url,
        path: &str,
        what: &str,
        accept: Option<&str>,
        range: Option<u64>,
        authorization: Option<&Secret>,
    ) -> Result<(reqwest::Response, bool), SendError> {
        let origin = base.origin();
        let mut url =
            base.join(path.trim_start_matches('/'))
                .map_err(|_| RegistryError::InvalidRequest {
                    host: target.registry.clone(),
                    reason: "cannot build the request url".to_owned(),
                })?;
        for hop in 0..=MAX_REDIRECTS {
            let at_registry = url.origin() == origin;
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(
                    ACCEPT,
                    HeaderValue::from_str(accept).expect("accept header is ascii"),
                );
            }
            if let Some(offset) = range {
                headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
                );
            }
            if let (Some(authorization), true) = (authorization, at_registry) {
                let mut value = HeaderValue::from_str(authorization.expose()).map_err(|_| {
                    RegistryError::Auth {
                        host: target.registry.clone(),
                        reason: "the token server sent a token that is not a valid header value"
                            .to_owned(),
                    }
                })?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            let request = self.inner.http.get(url.clone()).headers(headers);
            let response = match tokio::time::timeout(self.inner.timing.idle, request.send()).await
            {
                Err(_) => {
                    return Err(SendError::Other(RegistryError::Timeout {
                        host: target.registry.clone(),
                        what: what.to_owned(),
                        seconds: self.inner.timing.idle.as_secs(),
                    }))
                }
                Ok(Err(e)) if hop == 0 && e.is_connect() => {
                    return Err(SendError::FirstHopConnect(e))
                }
                Ok(Err(e)) => {
                    return Err(SendError::Other(RegistryError::Connect {
                        host: url.host_str().unwrap_or_default().to_owned(),
                        reason: reqwest_reason(&e),
                    }))
                }
                Ok(Ok(response)) => response,
            };
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED
            {
                return Ok((response, at_registry));
            }
            let refused = |reason: String| {
                SendError::Other(RegistryError::RedirectRefused {
                    host: target.registry.clone(),
                    what: what.to_owned(),
                    reason,
                })
            };
            let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Err(refused(format!(
                    "a {} answer without a Location",
                    response.status().as_u16()
                )));
            };
            let next = redirect_target(&url, location).map_err(refused)?;
            auth::check_address(&next).await.map_err(refused)?;
            url = next;
        }
        Err(SendError::Other(RegistryError::TooManyRedirects {
            host: target.registry.clone(),
            what: what.to_owned(),
        }))
    }
}

/// Where a redirect from `current` to `location` goes, if it may be followed at all: no
/// https → http downgrade, no other schemes, no userinfo. Addresses are checked apart.
fn redirect_target(current: &Url, location: &str) -> Result<Url, String> {
    let next = current
        .join(location)
        .map_err(|_| "the Location is not a valid url".to_owned())?;
    match (current.scheme(), next.scheme()) {
        ("https", "https") | ("http", "https") | ("http", "http") => {}
        ("https", "http") => return Err("it goes from https to plain http".to_owned()),
        (_, other) => return Err(format!("it uses the unsupported scheme {other:?}")),
    }
    if !next.username().is_empty() || next.password().is_some() {
        return Err("the Location carries credentials".to_owned());
    }
    Ok(next)
}

/// What a request was for, to word its errors.
enum What<'a> {
    Manifest(&'a str),
    Blob,
    Login,
}

#[cfg(test)]
mod testserver;

#[cfg(test)]
mod tests;
