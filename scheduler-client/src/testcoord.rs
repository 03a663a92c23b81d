//! A small coordinator written from `docs/worker-protocol.md` alone: a real HTTP/1.1
//! server on std threads (one per connection, `Connection: close`). It drives the e2e
//! tests and `farm __test-coordinator`. It keeps everything in memory and counts what a
//! real coordinator must count once: report idempotency keys, log sequence numbers,
//! output bytes.
//!
//! Test-only endpoints beside the protocol: `POST /test/jobs` (a [`JobSpec`], answers
//! the new lease id) and `GET /test/state` (everything, as JSON).

mod http;
mod state;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use state::{Settings, State};

use crate::protocol::JobSpec;

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A running test coordinator; [`Coordinator::stop`] closes its port (a real outage)
/// and [`Coordinator::resume`] opens the same port again with the same memory.
pub struct Coordinator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Coordinator {
    /// Listen on `addr` (`127.0.0.1:0` for any free port).
    pub fn start(addr: &str) -> std::io::Result<Coordinator> {
        Coordinator::with_settings(addr, Settings::default())
    }

    pub fn with_settings(addr: &str, settings: Settings) -> std::io::Result<Coordinator> {
        let listener = TcpListener::bind(addr)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(settings)),
            changed: Condvar::new(),
        });
        let mut coordinator = Coordinator {
            addr: listener.local_addr()?,
            shared,
            running: None,
        };
        coordinator.serve(listener);
        Ok(coordinator)
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, shared, flag));
        self.running = Some((stop, thread));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Close the port and drop every open connection (long polls included).
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            self.lock().epoch += 1;
            self.shared.changed.notify_all();
            let _ = TcpStream::connect(self.addr);
            let _ = thread.join();
        }
    }

    /// Listen again on the same address, with the same memory.
    pub fn resume(&mut self) -> std::io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)?;
        self.serve(listener);
        Ok(())
    }

    /// Queue a job; the next poll with a free slot gets it. Returns its lease id.
    pub fn submit(&self, job: JobSpec) -> String {
        let id = self.lock().submit(job);
        self.shared.changed.notify_all();
        id
    }

    /// The job's owner cancels it: the next heartbeat says `cancelled`.
    pub fn cancel(&self, lease_id: &str, grace: Duration) {
        self.lock().cancel(lease_id, grace);
    }

    /// Give the job to someone else: a new fencing token; the node's lease is `gone`.
    pub fn revoke(&self, lease_id: &str) {
        self.lock().revoke(lease_id);
    }

    /// A copy of the whole state.
    pub fn state(&self) -> State {
        self.lock().clone()
    }

    /// Wait until `check` finds what it wants in the state (polled every 20 ms).
    pub fn wait_for<T>(&self, limit: Duration, check: impl Fn(&State) -> Option<T>) -> Option<T> {
        let start = Instant::now();
        loop {
            if let Some(found) = check(&self.lock()) {
                return Some(found);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = http::serve_one(stream, &shared, &stop);
        });
    }
}
