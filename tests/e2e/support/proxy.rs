//! A forwarding HTTP proxy in front of a registry that records every request and can
//! inject faults into blob downloads: cut the connection after N bytes, throttle, or
//! answer with a 307 to a blob server on 127.0.0.2 (which records what it was sent).

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{self, RequestHead};

#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Cut the first GET of this blob digest after this many body bytes.
    pub cut_blob: Option<(String, u64)>,
    /// Forward blob bodies in chunks of this size with this pause after each.
    pub throttle: Option<(usize, Duration)>,
    /// Answer blob GETs with a 307 to a server on 127.0.0.2 that serves them from this
    /// registry storage root.
    pub redirect_blobs: Option<PathBuf>,
}

struct Shared {
    upstream: String,
    options: ProxyOptions,
    requests: Mutex<Vec<RequestHead>>,
    /// Blob body bytes sent to clients.
    blob_bytes: AtomicU64,
    cut_done: AtomicBool,
    redirect_host: Option<String>,
    stop: AtomicBool,
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    pub blob_server: Option<BlobServer>,
}

impl Proxy {
    pub fn start(upstream: &str, options: ProxyOptions) -> Proxy {
        let blob_server = options.redirect_blobs.clone().map(BlobServer::start);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            options,
            requests: Mutex::new(Vec::new()),
            blob_bytes: AtomicU64::new(0),
            cut_done: AtomicBool::new(false),
            redirect_host: blob_server.as_ref().map(BlobServer::host),
            stop: AtomicBool::new(false),
        });
        spawn_accept_loop(listener, shared.stop_flag(), {
            let shared = shared.clone();
            move |stream| {
                let _ = forward(stream, &shared);
            }
        });
        Proxy {
            port,
            shared,
            blob_server,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<RequestHead> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// GET requests of blob `digest` seen so far.
    pub fn blob_gets(&self, digest: &str) -> Vec<RequestHead> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path().ends_with(&format!("/blobs/{digest}")))
            .collect()
    }

    /// All blob GETs.
    pub fn all_blob_gets(&self) -> Vec<RequestHead> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path().contains("/blobs/sha256:"))
            .collect()
    }

    pub fn blob_bytes(&self) -> u64 {
        self.shared.blob_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

trait StopFlag {
    fn stop_flag(&self) -> Arc<dyn Fn() -> bool + Send + Sync>;
}

impl StopFlag for Arc<Shared> {
    fn stop_flag(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let shared = self.clone();
        Arc::new(move || shared.stop.load(Ordering::Relaxed))
    }
}

fn spawn_accept_loop(
    listener: TcpListener,
    stopped: Arc<dyn Fn() -> bool + Send + Sync>,
    handler: impl Fn(TcpStream) + Send + Sync + Clone + 'static,
) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stopped() {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let handler = handler.clone();
                    std::thread::spawn(move || handler(stream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

fn is_blob_get(head: &RequestHead) -> Option<String> {
    if head.method != "GET" {
        return None;
    }
    let path = head.path();
    let (_, digest) = path.split_once("/blobs/")?;
    digest.starts_with("sha256:").then(|| digest.to_string())
}

fn forward(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut client_writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let Some(head) = http::read_request_head(&mut reader)? else {
        return Ok(());
    };
    shared.requests.lock().unwrap().push(head.clone());
    let mut body = vec![0u8; head.content_length() as usize];
    reader.read_exact(&mut body)?;
    let blob = is_blob_get(&head);

    if let (Some(digest), Some(host)) = (&blob, &shared.redirect_host) {
        return http::write_response(
            &mut client_writer,
            307,
            &[(
                "Location",
                format!("http://{host}/blobs/{digest}?signature=test"),
            )],
            b"",
        );
    }

    let mut upstream = TcpStream::connect(&shared.upstream)?;
    let mut request = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in &head.headers {
        if k.eq_ignore_ascii_case("connection")
            || k.eq_ignore_ascii_case("host")
            || k.eq_ignore_ascii_case("keep-alive")
        {
            continue;
        }
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!(
        "Host: {}\r\nConnection: close\r\n\r\n",
        shared.upstream
    ));
    upstream.write_all(request.as_bytes())?;
    upstream.write_all(&body)?;
    let mut upstream_reader = BufReader::new(upstream);
    let (status, headers) = http::read_response_head(&mut upstream_reader)?;
    let mut response = format!("HTTP/1.1 {status} Proxied\r\n");
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        response.push_str(&format!("{k}: {v}\r\n"));
    }
    response.push_str("Connection: close\r\n\r\n");
    client_writer.write_all(response.as_bytes())?;

    let mut limit = u64::MAX;
    if let (Some(digest), Some((cut_digest, cut_at))) = (&blob, &shared.options.cut_blob) {
        if digest == cut_digest && status == 200 && !shared.cut_done.swap(true, Ordering::SeqCst) {
            limit = *cut_at;
        }
    }
    let (chunk, pause) = match (&blob, shared.options.throttle) {
        (Some(_), Some((chunk, pause))) => (chunk, pause),
        _ => (64 * 1024, Duration::ZERO),
    };
    let mut buf = vec![0u8; chunk];
    let mut sent = 0u64;
    while sent < limit {
        let want = buf
            .len()
            .min((limit - sent).min(usize::MAX as u64) as usize);
        let n = upstream_reader.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        client_writer.write_all(&buf[..n])?;
        client_writer.flush()?;
        sent += n as u64;
        if blob.is_some() {
            shared.blob_bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let _ = client_writer.shutdown(Shutdown::Both);
    Ok(())
}

/// Serves blobs from a registry storage root on 127.0.0.2, recording each request.
pub struct BlobServer {
    port: u16,
    pub requests: Arc<Mutex<Vec<RequestHead>>>,
    stop: Arc<AtomicBool>,
}

impl BlobServer {
    fn start(storage: PathBuf) -> BlobServer {
        let listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = {
            let stop = stop.clone();
            Arc::new(move || stop.load(Ordering::Relaxed)) as Arc<dyn Fn() -> bool + Send + Sync>
        };
        let handler = {
            let requests = requests.clone();
            move |stream: TcpStream| {
                let _ = serve_blob(stream, &storage, &requests);
            }
        };
        spawn_accept_loop(listener, stopped, handler);
        BlobServer {
            port,
            requests,
            stop,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.2:{}", self.port)
    }

    pub fn requests(&self) -> Vec<RequestHead> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_blob(
    stream: TcpStream,
    storage: &std::path::Path,
    requests: &Mutex<Vec<RequestHead>>,
) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let Some(head) = http::read_request_head(&mut reader)? else {
        return Ok(());
    };
    requests.lock().unwrap().push(head.clone());
    let digest = head
        .path()
        .strip_prefix("/blobs/")
        .unwrap_or("")
        .to_string();
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return http::write_response(&mut writer, 404, &[], b"not found");
    }
    let path = storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let Ok(data) = std::fs::read(&path) else {
        return http::write_response(&mut writer, 404, &[], b"not found");
    };
    let start = head
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok());
    match start {
        Some(start) if start < data.len() => http::write_response(
            &mut writer,
            206,
            &[
                ("Content-Type", "application/octet-stream".into()),
                (
                    "Content-Range",
                    format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
                ),
            ],
            &data[start..],
        ),
        _ => http::write_response(
            &mut writer,
            200,
            &[("Content-Type", "application/octet-stream".into())],
            &data,
        ),
    }
}
