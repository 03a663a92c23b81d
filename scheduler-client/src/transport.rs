//! HTTP(S) to the coordinator: a list of URLs tried in turn (failover), JSON in and out,
//! and one function, [`Transport::exchange`], that every request and answer passes
//! through, so that signing and verification (the trust issue) slot in there alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::protocol::{parse_answer, AnswerError, ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("no coordinator URL in the config: add `coordinator = https://...` lines")]
    NoUrls,
    #[error("invalid coordinator URL {url:?}: {source}: use http(s)://host[:port][/prefix]")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("no coordinator answered (last tried {url}: {reason}): the worker keeps retrying; check the URLs in the config and the network")]
    Unreachable { url: String, reason: String },
    #[error("the coordinator at {url} refused: {} ({:?})", .error.message, .error.code)]
    Refused { url: String, error: Box<ErrorBody> },
    #[error("the coordinator at {url} gave an answer farm cannot read: {source}")]
    Answer {
        url: String,
        #[source]
        source: AnswerError,
    },
}

impl TransportError {
    /// The coordinator's own error code, when it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TransportError::Refused { error, .. } => Some(error.code),
            _ => None,
        }
    }

    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            TransportError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A request on its way out: what a signer would sign.
#[derive(Debug)]
pub struct Outgoing {
    pub method: reqwest::Method,
    /// Path and query below the coordinator URL (`v1/heartbeat`).
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

pub struct Transport {
    urls: Vec<Url>,
    current: AtomicUsize,
    client: reqwest::Client,
    last_error: Mutex<Option<String>>,
    trust: Option<Trust>,
}

/// What signs requests and checks answers: the node's identity, and the coordinator's
/// pinned Ed25519 key (answers unsigned, badly signed or older than `max_skew` seconds
/// are refused when it is set).
pub struct Trust {
    pub identity: std::sync::Arc<farm_trust::Identity>,
    pub coordinator_key: Option<[u8; 32]>,
    pub max_skew: u64,
}

impl Transport {
    pub fn new(urls: &[String]) -> Result<Transport, TransportError> {
        if urls.is_empty() {
            return Err(TransportError::NoUrls);
        }
        let urls = urls
            .iter()
            .map(|u| {
                let with_slash = if u.ends_with('/') {
                    u.clone()
                } else {
                    format!("{u}/")
                };
                Url::parse(&with_slash).map_err(|source| TransportError::BadUrl {
                    url: u.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(TransportError::Client)?;
        Ok(Transport {
            urls,
            current: AtomicUsize::new(0),
            client,
            last_error: Mutex::new(None),
            trust: None,
        })
    }

    /// Sign every request with the node's key and, with a pinned key, check every answer.
    pub fn with_trust(mut self, trust: Trust) -> Transport {
        self.trust = Some(trust);
        self
    }

    /// The coordinator URL in use (the last that answered, or the next to try).
    pub fn current_url(&self) -> String {
        self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()].to_string()
    }

    /// The last failure to reach any coordinator, cleared by the next success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// A JSON request and its `{"result":"ok"}` answer.
    pub async fn call<Req: Serialize, Ans: DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Ans, TransportError> {
        let outgoing = Outgoing {
            method: reqwest::Method::POST,
            path: path.to_owned(),
            content_type: "application/json",
            body: serde_json::to_vec(request).unwrap_or_default(),
            timeout,
        };
        self.exchange(outgoing).await
    }

    /// The one place every request and answer passes: each URL in turn, from the one in
    /// use, until one answers (a coordinator's own refusal is an answer: no failover).
    pub async fn exchange<Ans: DeserializeOwned>(
        &self,
        outgoing: Outgoing,
    ) -> Result<Ans, TransportError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut failure = None;
        for step in 0..self.urls.len() {
            let index = (start + step) % self.urls.len();
            let url = &self.urls[index];
            match self.once(url, &outgoing).await {
                Ok(body) => {
                    self.current.store(index, Ordering::Relaxed);
                    if let Ok(mut last) = self.last_error.lock() {
                        *last = None;
                    }
                    return self.open(url, &body);
                }
                Err(reason) => failure = Some((url.to_string(), reason)),
            }
        }
        let (url, reason) = failure.expect("at least one url");
        self.current
            .store((start + 1) % self.urls.len(), Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{url}: {reason}"));
        }
        Err(TransportError::Unreachable { url, reason })
    }

    /// One try against one URL: the body of any answer that is the coordinator's (JSON),
    /// or why this URL is down.
    async fn once(&self, url: &Url, outgoing: &Outgoing) -> Result<Vec<u8>, String> {
        let target = url.join(&outgoing.path).map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .request(outgoing.method.clone(), target.clone())
            .header("content-type", outgoing.content_type)
            .header(
                "x-farm-protocol",
                crate::protocol::PROTOCOL_VERSION.to_string(),
            )
            .timeout(outgoing.timeout)
            .body(outgoing.body.clone());
        if let Some(trust) = &self.trust {
            let nonce = hex::encode(farm_trust::random_bytes::<16>());
            let signed = farm_trust::httpsig::sign_request(
                &trust.identity,
                outgoing.method.as_str(),
                target.as_str(),
                &outgoing.body,
                farm_trust::unix_now(),
                &nonce,
            );
            request = request
                .header("content-digest", signed.content_digest)
                .header("signature-input", signed.signature_input)
                .header("signature", signed.signature);
        }
        let answer = request.send().await.map_err(|e| describe(&e))?;
        let status = answer.status();
        let headers = answer.headers().clone();
        let body = answer.bytes().await.map_err(|e| describe(&e))?.to_vec();
        self.check_answer(status.as_u16(), &headers, &body)?;
        // Only a JSON body is the coordinator's answer; a proxy's HTML page or an empty
        // 502 means this URL is down for now.
        if body.first() != Some(&b'{') {
            return Err(format!("HTTP {status}"));
        }
        Ok(body)
    }

    /// With a pinned coordinator key: the answer's RFC 9421 signature must verify (a bad
    /// one is this URL failing, so the next is tried and the reason kept as last error).
    fn check_answer(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let Some(trust) = &self.trust else {
            return Ok(());
        };
        let Some(key) = &trust.coordinator_key else {
            return Ok(());
        };
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let found = farm_trust::httpsig::AnswerHeaders {
            content_digest: get("content-digest"),
            signature_input: get("signature-input"),
            signature: get("signature"),
        };
        farm_trust::httpsig::verify_answer(
            key,
            status,
            &found,
            body,
            farm_trust::unix_now(),
            trust.max_skew,
        )
        .map_err(|e| format!("answer refused: {e}"))
    }

    /// Parse the answer (its signature was checked in `once`).
    fn open<Ans: DeserializeOwned>(&self, url: &Url, body: &[u8]) -> Result<Ans, TransportError> {
        parse_answer(body).map_err(|source| match source {
            AnswerError::Refused(error) => TransportError::Refused {
                url: url.to_string(),
                error,
            },
            source => TransportError::Answer {
                url: url.to_string(),
                source,
            },
        })
    }
}

/// Why a request failed, without its URL (the caller names the coordinator).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Exponential backoff with jitter: `base * 2^attempt`, capped, then a random point in
/// its upper half (so that many workers back from an outage do not arrive together).
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let full = base
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(cap);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// `period` moved by up to ±10% at random.
pub fn jitter(period: Duration) -> Duration {
    period.mul_f64(0.9 + 0.2 * rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_stays_capped_and_jitters_in_the_upper_half() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for attempt in 0..40 {
            let full = (base * 2u32.saturating_pow(attempt.min(20))).min(cap);
            let d = backoff(attempt, base, cap);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?} vs {full:?}");
        }
        let spread: std::collections::BTreeSet<_> =
            (0..20).map(|_| backoff(3, base, cap)).collect();
        assert!(spread.len() > 1, "jitter varies");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
        }
    }

    #[test]
    fn urls_are_checked_and_made_joinable() {
        assert!(matches!(Transport::new(&[]), Err(TransportError::NoUrls)));
        assert!(matches!(
            Transport::new(&["not a url".into()]),
            Err(TransportError::BadUrl { .. })
        ));
        let t = Transport::new(&["http://127.0.0.1:1/prefix".into()]).unwrap();
        assert_eq!(t.current_url(), "http://127.0.0.1:1/prefix/");
    }

    #[tokio::test]
    async fn a_dead_first_url_fails_over_to_the_second() {
        let coordinator = crate::testcoord::Coordinator::start("127.0.0.1:0").unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        let t = Transport::new(&[dead_url, coordinator.url()]).unwrap();
        let answer: crate::protocol::HeartbeatAnswer = t
            .call(
                "v1/heartbeat",
                &crate::protocol::HeartbeatRequest {
                    node_id: "n".into(),
                    draining: false,
                    leases: vec![],
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(answer.leases.is_empty());
        assert_eq!(t.current_url(), format!("{}/", coordinator.url()));
    }
}
