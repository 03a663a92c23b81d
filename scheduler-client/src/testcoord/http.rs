//! HTTP/1.1 for the test coordinator: one request per connection, routed to [`State`].

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Shared, State};
use crate::protocol::{error_answer, ErrorBody, ErrorCode};

/// The most bytes of one request body the test coordinator reads.
const MAX_BODY: usize = 64 << 20;

pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: HTTP status and body.
pub type Reply = (u16, Vec<u8>);

pub fn error(status: u16, code: ErrorCode, message: impl Into<String>) -> Reply {
    with_error(
        status,
        ErrorBody {
            code,
            message: message.into(),
            expected_seq: None,
            received: None,
            retry_after_ms: None,
        },
    )
}

pub fn with_error(status: u16, body: ErrorBody) -> Reply {
    (status, error_answer(&body))
}

pub fn serve_one(stream: TcpStream, shared: &Shared, stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    record(shared, &request);
    let reply = if request.path == "/v1/leases/poll" {
        long_poll(shared, stop, &request)
    } else {
        let reply = route(
            &mut shared.state.lock().unwrap_or_else(|e| e.into_inner()),
            &request,
        );
        shared.changed.notify_all();
        Some(reply)
    };
    let Some((status, body)) = reply else {
        // Stopped while the poll was held: the connection just closes, as an outage does.
        return Ok(());
    };
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let seed = shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .settings
        .signing_seed;
    write_reply(&stream, status, &body, seed)
}

fn record(shared: &Shared, request: &Request) {
    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    if state.requests.len() >= super::state::MAX_RECORDED {
        return;
    }
    let host = request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    state.requests.push(super::state::RecordedRequest {
        method: request.method.clone(),
        url: format!("http://{host}{}", request.target),
        headers: request.headers.clone(),
        body: String::from_utf8_lossy(&request.body).into_owned(),
    });
}

fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut body = vec![0; length.min(MAX_BODY)];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Ok(Some(Request {
        method,
        target: target.clone(),
        headers,
        path: path.to_owned(),
        query,
        body,
    }))
}

fn write_reply(
    mut stream: &TcpStream,
    status: u16,
    body: &[u8],
    seed: Option<[u8; 32]>,
) -> std::io::Result<()> {
    let signature = seed
        .map(|seed| {
            let s = farm_trust::httpsig::sign_answer(
                &seed,
                "coordinator",
                status,
                body,
                farm_trust::unix_now(),
            );
            format!(
                "Content-Digest: {}\r\nSignature-Input: {}\r\nSignature: {}\r\n",
                s.content_digest, s.signature_input, s.signature
            )
        })
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{signature}Connection: close\r\n\r\n",
        if status < 400 { "OK" } else { "Error" },
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Hold a poll until a lease is free for the node, the wait is over, or the coordinator
/// stops (`None`: drop the connection).
fn long_poll(shared: &Shared, stop: &AtomicBool, request: &Request) -> Option<Reply> {
    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let epoch = state.epoch;
    let poll = match serde_json::from_slice::<crate::protocol::PollRequest>(&request.body) {
        Ok(poll) => poll,
        Err(e) => return Some(error(400, ErrorCode::BadRequest, e.to_string())),
    };
    let wait = Duration::from_millis(poll.wait_ms.min(state.settings.poll_timeout_ms));
    let deadline = Instant::now() + wait;
    loop {
        if stop.load(Ordering::SeqCst) || state.epoch != epoch {
            return None;
        }
        if let Some(reply) = state.poll(&poll, Instant::now() >= deadline) {
            return Some(reply);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        state = shared
            .changed
            .wait_timeout(state, left.max(Duration::from_millis(1)))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn route(state: &mut State, request: &Request) -> Reply {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/register") => json(request, |r| state.register(r)),
        ("POST", "/v1/heartbeat") => json(request, |r| state.heartbeat(r)),
        ("POST", "/v1/reports") => json(request, |r| state.reports(r)),
        ("POST", "/v1/logs") => json(request, |r| state.log(r)),
        ("POST", "/test/jobs") => json(request, |job| {
            let lease_id = state.submit(job);
            (
                200,
                crate::protocol::ok_answer(&serde_json::json!({ "lease_id": lease_id })),
            )
        }),
        ("GET", "/test/state") => (200, crate::protocol::ok_answer(&*state)),
        (method, path) if path.starts_with("/v1/outputs/") => {
            let lease_id = &path["/v1/outputs/".len()..];
            match method {
                "PUT" => state.put_outputs(lease_id, request),
                "GET" => state.outputs_status(lease_id),
                _ => error(405, ErrorCode::BadRequest, "use PUT or GET"),
            }
        }
        (_, path) => error(404, ErrorCode::BadRequest, format!("no endpoint {path}")),
    }
}

fn json<T: serde::de::DeserializeOwned>(
    request: &Request,
    handle: impl FnOnce(T) -> Reply,
) -> Reply {
    match serde_json::from_slice(&request.body) {
        Ok(body) => handle(body),
        Err(e) => error(400, ErrorCode::BadRequest, format!("bad request body: {e}")),
    }
}
