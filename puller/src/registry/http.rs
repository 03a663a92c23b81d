//! Small HTTP helpers of the registry client: bounded body reads, registry error bodies,
//! which hosts may use plain HTTP, retry backoff.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::auth::host_only;

/// Error bodies and token responses are read up to this many bytes.
pub const MAX_SMALL_BODY: u64 = 1 << 20;

/// True for `localhost`, 127.0.0.0/8 and ::1 (with or without a port).
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = host_only(host_port);
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The body (or its Content-Length) passed the cap.
    TooLarge,
    /// No bytes for the idle timeout.
    Timeout,
    /// The connection broke while reading.
    Body(reqwest::Error),
}

/// Read the whole body, refusing more than `cap` bytes (never holding more than `cap` plus
/// one chunk) and giving up when no chunk arrives for `idle`.
pub async fn read_bounded(
    response: reqwest::Response,
    cap: u64,
    idle: Duration,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(None) => return Ok(body),
            Ok(Some(Err(e))) => return Err(ReadError::Body(e)),
            Ok(Some(Ok(chunk))) => {
                if body.len() as u64 + chunk.len() as u64 > cap {
                    return Err(ReadError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// The first `{code, message}` of a distribution-spec error body, or an OAuth2 token
/// server's `{error, error_description}`, as the server sent them: hostile text, for
/// [`crate::scrub::Scrubber::clean`] before it is shown.
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        error_description: Option<serde_json::Value>,
        #[serde(default)]
        details: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let text = |value: Option<serde_json::Value>| match value? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    match serde_json::from_slice::<Body>(body) {
        Ok(body) => match body.errors.into_iter().next() {
            Some(entry) => (entry.code, entry.message),
            None => (
                text(body.error),
                text(body.error_description).or_else(|| text(body.details)),
            ),
        },
        Err(_) => (None, None),
    }
}

/// `text` without control characters, cut at `max` characters: registry text is untrusted
/// and goes to a terminal.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().filter(|c| !c.is_control()).count() > max {
        out.push_str("...");
    }
    out
}

/// The wait before retry number `attempt` (1-based): `base` doubling, plus up to 50% jitter.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let jitter = exp.mul_f64(rand::random::<f64>() * 0.5);
    exp + jitter
}

/// A `Retry-After: SECONDS` header (an HTTP date is ignored: clocks disagree).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The start offset of a `Content-Range: bytes START-END/TOTAL` header.
pub fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.2:80",
            "[::1]:5000",
            "::1",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "127.0.0.1.nip.io",
            "[::2]:1",
            "localhost.evil.net",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn parses_error_bodies_and_ranges() {
        let (code, message) =
            error_fields(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown\n\u001b[31m","detail":{}}]}"#);
        assert_eq!(code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(
            message.as_deref().map(|m| printable(m, 200)).as_deref(),
            Some("manifest unknown[31m")
        );
        assert_eq!(error_fields(b"<html>"), (None, None));
        let (code, message) =
            error_fields(br#"{"error":"invalid_grant","error_description":"bad pass"}"#);
        assert_eq!(code.as_deref(), Some("invalid_grant"));
        assert_eq!(message.as_deref(), Some("bad pass"));
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert!(backoff(Duration::from_millis(200), 3) >= Duration::from_millis(800));
        assert!(backoff(Duration::from_millis(200), 3) <= Duration::from_millis(1200));
    }
}
