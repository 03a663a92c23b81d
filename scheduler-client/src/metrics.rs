//! `farm worker run --metrics 127.0.0.1:9464`: a Prometheus text endpoint (`GET
//! /metrics`), off by default, on loopback unless the farmer names another address. Each
//! scrape reads what is on disk (the outbox, the signed earnings, the running jobs'
//! cgroups), so it needs nothing from the worker's loops and shows the same after a
//! restart.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use farm_runtime::state::{StateStore, Status};

use crate::earnings::Credits;
use crate::outbox::Outbox;

/// Listen on `addr` and answer scrapes from a thread of their own.
pub fn serve(root: PathBuf, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(&root, stream);
        }
    });
    Ok(bound)
}

fn answer(root: &Path, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let (status, body) = if line.starts_with("GET /metrics") {
        ("200 OK", render(root))
    } else {
        (
            "404 Not Found",
            "only GET /metrics is served here\n".to_owned(),
        )
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    ));
}

/// The exposition text now.
pub fn render(root: &Path) -> String {
    let mut out = String::new();
    let status = crate::status::read(root).ok();
    let (leases, queued) = status
        .as_ref()
        .map_or((0, 0), |s| (s.leases.len(), s.queued_reports));
    metric(
        &mut out,
        "farm_worker_leases_held",
        "gauge",
        "Leases the worker holds.",
        leases as f64,
    );
    metric(
        &mut out,
        "farm_worker_reports_queued",
        "gauge",
        "Reports waiting for the coordinator's acknowledgement.",
        queued as f64,
    );
    let live = running(root);
    metric(
        &mut out,
        "farm_jobs_running",
        "gauge",
        "Coordinator jobs whose container runs.",
        live.len() as f64,
    );
    let (cpu_ns, memory, tx) = live.iter().fold((0u64, 0u64, 0u64), |acc, s| {
        (
            acc.0 + s.cpu_ns,
            acc.1 + s.memory_bytes,
            acc.2 + s.net.map_or(0, |n| n.tx_bytes),
        )
    });
    metric(
        &mut out,
        "farm_jobs_running_cpu_seconds",
        "gauge",
        "CPU time so far of the running jobs.",
        cpu_ns as f64 / 1e9,
    );
    metric(
        &mut out,
        "farm_jobs_running_memory_bytes",
        "gauge",
        "Memory the running jobs use now.",
        memory as f64,
    );
    metric(
        &mut out,
        "farm_jobs_running_net_tx_bytes",
        "gauge",
        "Bytes the running jobs sent so far.",
        tx as f64,
    );
    let finished = finished(root);
    metric(
        &mut out,
        "farm_jobs_finished_total",
        "counter",
        "Finished jobs with a signed earnings record.",
        finished.jobs as f64,
    );
    metric(
        &mut out,
        "farm_cpu_seconds_total",
        "counter",
        "CPU seconds of finished jobs.",
        finished.cpu_seconds,
    );
    metric(
        &mut out,
        "farm_gpu_seconds_total",
        "counter",
        "GPU seconds of finished jobs.",
        finished.gpu_seconds,
    );
    metric(
        &mut out,
        "farm_net_tx_bytes_total",
        "counter",
        "Bytes finished jobs sent.",
        finished.tx_bytes,
    );
    metric(
        &mut out,
        "farm_net_rx_bytes_total",
        "counter",
        "Bytes finished jobs received.",
        finished.rx_bytes,
    );
    metric(
        &mut out,
        "farm_credits_earned_total",
        "counter",
        "Credits earned by finished jobs (signed records).",
        finished.credits.total,
    );
    out
}

/// Samples of the running containers the worker started (labelled with their lease).
fn running(root: &Path) -> Vec<farm_runtime::stats::Sample> {
    let Ok(state) = StateStore::open(root) else {
        return Vec::new();
    };
    state
        .list()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.status == Status::Running)
        .filter(|r| {
            r.options
                .labels
                .iter()
                .any(|(k, _)| k == "farm.worker.lease")
        })
        .filter_map(|r| farm_runtime::stats::sample(r).ok())
        .collect()
}

#[derive(Default)]
struct Finished {
    jobs: u64,
    cpu_seconds: f64,
    gpu_seconds: f64,
    tx_bytes: f64,
    rx_bytes: f64,
    credits: Credits,
}

fn finished(root: &Path) -> Finished {
    let mut sum = Finished::default();
    let Ok(outbox) = Outbox::open(root) else {
        return sum;
    };
    for text in outbox.earnings(0).unwrap_or_default() {
        let Ok(signed) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let record = &signed["record"];
        let usage = &record["usage"];
        let number = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        sum.jobs += 1;
        sum.cpu_seconds += number(&usage["cpu_user_s"]) + number(&usage["cpu_system_s"]);
        sum.gpu_seconds += usage["gpu_seconds"]
            .as_object()
            .map_or(0.0, |m| m.values().map(number).sum());
        sum.tx_bytes += number(&usage["net_tx_bytes"]);
        sum.rx_bytes += number(&usage["net_rx_bytes"]);
        sum.credits.total += number(&record["credits"]["total"]);
    }
    sum
}
