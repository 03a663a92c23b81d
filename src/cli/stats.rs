//! `farm stats`: docker's table (or JSON lines) of what running containers use, refreshed
//! every second until interrupted, or once with `--no-stream`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use farm_runtime::lifecycle;
use farm_runtime::state::{ContainerRecord, StateStore, Status};
use farm_runtime::stats::{self, binary_size, decimal_size, Sample};
use serde_json::json;

use super::Globals;

/// Time between two samples (docker refreshes about once a second).
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit instead of refreshing
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// One JSON object per container and line (docker's `--format json`, plus numbers)
    #[arg(long)]
    json: bool,
    /// Containers (name, ID or ID prefix); default every running one
    containers: Vec<String>,
}

pub fn run(globals: &Globals, args: StatsArgs) -> Result<u8> {
    let mut previous = samples(&records(globals, &args)?);
    let mut out = std::io::stdout();
    let clear = !args.no_stream && !args.json && out.is_terminal();
    loop {
        std::thread::sleep(INTERVAL);
        let records = records(globals, &args)?;
        let current = samples(&records);
        let mut text = String::new();
        if clear {
            text.push_str("\x1b[2J\x1b[H");
        }
        if !args.json {
            text.push_str(&format!(
                "{:<14} {:<24} {:<8} {:<22} {:<8} {:<20} {:<20} PIDS\n",
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O"
            ));
        }
        for (record, sample) in &current {
            let before = previous
                .iter()
                .find(|(r, _)| r.id == record.id)
                .and_then(|(_, s)| s.as_ref());
            let row = Row::new(record, before, sample.as_ref());
            text.push_str(&if args.json { row.json() } else { row.line() });
            text.push('\n');
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        if args.no_stream {
            return Ok(0);
        }
        previous = current;
    }
}

/// The named containers, or every running one.
fn records(globals: &Globals, args: &StatsArgs) -> Result<Vec<ContainerRecord>> {
    lifecycle::reconcile(&globals.root).context("checking containers")?;
    let state = StateStore::open(&globals.root).context("opening the state store")?;
    if args.containers.is_empty() {
        return Ok(state
            .list()?
            .into_iter()
            .filter(|r| r.status == Status::Running)
            .collect());
    }
    args.containers
        .iter()
        .map(|name| state.get(name).map_err(anyhow::Error::from))
        .collect()
}

/// A sample of each running container (`None` for one that is not running).
fn samples(records: &[ContainerRecord]) -> Vec<(ContainerRecord, Option<Sample>)> {
    records
        .iter()
        .map(|r| {
            let sample = (r.status == Status::Running)
                .then(|| stats::sample(r).ok())
                .flatten();
            (r.clone(), sample)
        })
        .collect()
}

/// One container's figures, as shown.
struct Row<'a> {
    record: &'a ContainerRecord,
    cpu: f64,
    sample: Sample,
}

impl<'a> Row<'a> {
    fn new(record: &'a ContainerRecord, before: Option<&Sample>, now: Option<&Sample>) -> Row<'a> {
        let sample = now.cloned().unwrap_or(Sample {
            at: std::time::Instant::now(),
            cpu_ns: 0,
            memory_bytes: 0,
            memory_limit_bytes: 0,
            pids: 0,
            block_read_bytes: 0,
            block_write_bytes: 0,
            net: None,
        });
        let cpu = match (before, now) {
            (Some(before), Some(now)) => stats::cpu_percent(before, now),
            _ => 0.0,
        };
        Row {
            record,
            cpu,
            sample,
        }
    }

    fn memory_percent(&self) -> f64 {
        match self.sample.memory_limit_bytes {
            0 => 0.0,
            limit => self.sample.memory_bytes as f64 / limit as f64 * 100.0,
        }
    }

    fn net(&self) -> (u64, u64) {
        self.sample
            .net
            .as_ref()
            .map_or((0, 0), |n| (n.rx_bytes, n.tx_bytes))
    }

    fn texts(&self) -> [String; 5] {
        let s = &self.sample;
        let (rx, tx) = self.net();
        [
            format!("{:.2}%", self.cpu),
            format!(
                "{} / {}",
                binary_size(s.memory_bytes),
                binary_size(s.memory_limit_bytes)
            ),
            format!("{:.2}%", self.memory_percent()),
            format!("{} / {}", decimal_size(rx), decimal_size(tx)),
            format!(
                "{} / {}",
                decimal_size(s.block_read_bytes),
                decimal_size(s.block_write_bytes)
            ),
        ]
    }

    fn line(&self) -> String {
        let [cpu, mem, mem_pct, net, block] = self.texts();
        format!(
            "{:<14} {:<24} {:<8} {:<22} {:<8} {:<20} {:<20} {}",
            &self.record.id[..12],
            self.record.name,
            cpu,
            mem,
            mem_pct,
            net,
            block,
            self.sample.pids
        )
    }

    fn json(&self) -> String {
        let [cpu, mem, mem_pct, net, block] = self.texts();
        let s = &self.sample;
        let (rx, tx) = self.net();
        json!({
            "ID": &self.record.id[..12],
            "Container": self.record.name,
            "Name": self.record.name,
            "CPUPerc": cpu,
            "MemUsage": mem,
            "MemPerc": mem_pct,
            "NetIO": net,
            "BlockIO": block,
            "PIDs": s.pids.to_string(),
            "CpuPercent": self.cpu,
            "MemoryUsageBytes": s.memory_bytes,
            "MemoryLimitBytes": s.memory_limit_bytes,
            "Pids": s.pids,
            "BlockReadBytes": s.block_read_bytes,
            "BlockWriteBytes": s.block_write_bytes,
            "NetRxBytes": rx,
            "NetTxBytes": tx,
        })
        .to_string()
    }
}
