//! `farm info`

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use farm_runtime::gpu::nvml::{Gpu, NO_DRIVER};
use farm_runtime::info::HostInfo;
use farm_runtime::info::Link;

use super::progress::human_bytes;
use super::Globals;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON object (keys documented in `farm_runtime::info::HostInfo`)
    #[arg(long)]
    json: bool,
    /// Measure the link first: download from URL, then upload to it (POST), each for up
    /// to --speedtest-seconds; kept under the root and sent at the worker's registration
    #[arg(long, value_name = "URL")]
    speedtest: Option<String>,
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    speedtest_seconds: u64,
}

pub async fn run(globals: &Globals, args: InfoArgs) -> Result<u8> {
    if let Some(url) = &args.speedtest {
        let link = speedtest(url, Duration::from_secs(args.speedtest_seconds.max(1))).await?;
        std::fs::create_dir_all(&globals.root)?;
        let path = farm_runtime::info::link_path(&globals.root);
        std::fs::write(&path, serde_json::to_vec_pretty(&link)?)
            .with_context(|| format!("writing {}", path.display()))?;
        if !args.json {
            println!(
                "link: {:.1} Mbit/s down, {:.1} Mbit/s up ({url})",
                link.down_mbps, link.up_mbps
            );
        }
    }
    let info = farm_runtime::info::collect(&globals.root);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", render(&info));
    }
    Ok(0)
}

/// Download from `url` for at most `limit` (or its whole body), then POST zeros to it for
/// at most `limit`; Mbit/s each way from the bytes moved and the time taken.
async fn speedtest(url: &str, limit: Duration) -> Result<Link> {
    use futures_util::StreamExt;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let answer = client
        .get(url)
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("speed test download from {url}"))?;
    // The clock starts with the body's first bytes: the bytes' rate, not the server's
    // time to answer (a slow server, or the cgroup v2 lane's emulated VM, took the whole
    // limit before its first byte, and the figure was 0). The first chunk is not counted.
    let mut body = answer.bytes_stream();
    match tokio::time::timeout(Duration::from_secs(10), body.next()).await {
        Ok(Some(chunk)) => drop(chunk?),
        Ok(None) => bail!("speed test download from {url}: the answer had no body; use a URL that serves a large file"),
        Err(_) => bail!("speed test download from {url}: no data within 10 s of the answer's headers"),
    }
    let start = Instant::now();
    let mut down = 0u64;
    while start.elapsed() < limit {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), body.next()).await {
            Ok(Some(chunk)) => down += chunk?.len() as u64,
            _ => break,
        }
    }
    if down == 0 {
        bail!("speed test download from {url}: too little data to time (the body ended, or stalled, after its first bytes); use a URL that serves a file larger than the link carries in --speedtest-seconds");
    }
    let down_secs = start.elapsed().as_secs_f64();
    // Upload: a stream of 64 KiB zero chunks that stops at the time limit.
    let chunk = bytes::Bytes::from(vec![0u8; 64 << 10]);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let up_start = Instant::now();
    let stream = futures_util::stream::unfold((), move |()| {
        let chunk = chunk.clone();
        let counter = counter.clone();
        async move {
            (up_start.elapsed() < limit).then(|| {
                counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                (Ok::<_, std::io::Error>(chunk), ())
            })
        }
    });
    client
        .post(url)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .and_then(|a| a.error_for_status())
        .with_context(|| format!("speed test upload to {url}"))?;
    let up_secs = up_start.elapsed().as_secs_f64();
    let up = sent.load(std::sync::atomic::Ordering::Relaxed);
    let mbps = |bytes: u64, secs: f64| bytes as f64 * 8.0 / secs.max(1e-6) / 1e6;
    Ok(Link {
        down_mbps: mbps(down, down_secs),
        up_mbps: mbps(up, up_secs),
        url: url.to_owned(),
        measured_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

const UNKNOWN: &str = "unknown";

fn or_unknown<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| UNKNOWN.to_owned(), |v| v.to_string())
}

fn bytes(value: Option<u64>) -> String {
    value.map_or_else(|| UNKNOWN.to_owned(), human_bytes)
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// `key: value` lines with the values aligned, each line prefixed by `indent`.
fn aligned(indent: &str, lines: &[(String, String)]) -> String {
    let width = lines.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(key, value)| format!("{indent}{:<width$} {value}\n", format!("{key}:")))
        .collect()
}

fn controllers(facts: &farm_runtime::info::CgroupFacts) -> String {
    let list = if facts.controllers.is_empty() {
        "none found".to_owned()
    } else {
        facts.controllers.join(" ")
    };
    if facts.missing.is_empty() {
        list
    } else {
        format!(
            "{list} (missing: {}; limits of that kind will not apply)",
            facts.missing.join(" ")
        )
    }
}

fn own_cgroup(facts: &farm_runtime::info::CgroupFacts) -> String {
    let own = facts.own.as_deref().unwrap_or("unknown");
    let slice = facts
        .slice
        .as_deref()
        .map_or(String::new(), |s| format!(", slice {s}"));
    let writable = if facts.writable {
        "can be created"
    } else {
        "can NOT be created (a read-only cgroup mount, or not root): limits will fail"
    };
    format!(
        "{own}{slice}, delegated: {}; containers' cgroups under {} {writable}",
        yes_no(facts.delegated),
        facts.parent
    )
}

fn render(info: &HostInfo) -> String {
    let sandbox = &info.sandbox;
    let seccomp = match (sandbox.seccomp, sandbox.seccomp_actions.is_empty()) {
        (true, false) => format!("yes ({})", sandbox.seccomp_actions.join(" ")),
        (seccomp, _) => yes_no(seccomp).to_owned(),
    };
    let cgroups = match info.cgroup_version.as_str() {
        "hybrid" => "hybrid (v1 controllers beside an empty v2 hierarchy; used as v1)".to_owned(),
        other => other.to_owned(),
    };
    let host: Vec<(String, String)> = [
        ("CPU", or_unknown(info.cpu.model.as_ref())),
        (
            "CPU cores",
            format!(
                "{} logical, {} physical, {} available",
                or_unknown(info.cpu.logical_cores),
                or_unknown(info.cpu.physical_cores),
                or_unknown(info.cpu.available_cores)
            ),
        ),
        (
            "Memory",
            format!(
                "{} total, {} available",
                bytes(info.memory.total_bytes),
                bytes(info.memory.available_bytes)
            ),
        ),
        (
            "Disk",
            format!(
                "{} free of {} under {}",
                bytes(info.disk.free_bytes),
                bytes(info.disk.total_bytes),
                info.disk.path
            ),
        ),
        ("Kernel", or_unknown(info.kernel.as_ref())),
        ("Cgroups", cgroups),
        ("Cgroup controllers", controllers(&info.cgroups)),
        ("farm's cgroup", own_cgroup(&info.cgroups)),
        (
            "User namespaces",
            match sandbox.max_user_namespaces {
                Some(max) => format!("{} (max {max})", yes_no(sandbox.user_namespaces)),
                None => yes_no(sandbox.user_namespaces).to_owned(),
            },
        ),
        (
            "Idmapped mounts",
            format!(
                "{} (kernel >= 5.12; from the kernel version, not probed)",
                yes_no(sandbox.idmapped_mounts)
            ),
        ),
        (
            "Idmapped overlay",
            format!(
                "{} (kernel >= 5.19; from the kernel version, not probed)",
                yes_no(sandbox.idmapped_overlay_layers)
            ),
        ),
        ("Overlayfs", yes_no(sandbox.overlayfs).to_owned()),
        ("Seccomp", seccomp),
        (
            "Network internet",
            match &sandbox.nftables {
                Some(version) => format!("yes ({version})"),
                None => "no: nft not found; install it (apt-get install nftables) or run jobs with --network none".to_owned(),
            },
        ),
        (
            "NVIDIA driver",
            match (&info.nvidia.driver, &info.nvidia.cuda) {
                (Some(driver), Some(cuda)) => format!("{driver} (CUDA {cuda})"),
                (Some(driver), None) => driver.clone(),
                (None, _) => "none".to_owned(),
            },
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    let mut out = aligned("", &host);
    out.push('\n');
    out.push_str(&render_gpus(info));
    out.push_str(&render_cdi(info));
    out
}

fn render_cdi(info: &HostInfo) -> String {
    let cdi = &info.cdi;
    let mut out = if cdi.devices.is_empty() {
        format!("CDI devices: none (no spec in {})\n", cdi.dirs.join(" or "))
    } else {
        format!("CDI devices (--device): {}\n", cdi.devices.join(", "))
    };
    for warning in &cdi.warnings {
        out.push_str(&format!("  warning: {warning}\n"));
    }
    out
}

fn render_gpus(info: &HostInfo) -> String {
    let mut out = String::new();
    if info.gpus.is_empty() {
        match info.nvidia.error.as_deref() {
            Some(error) if info.nvidia.driver.is_none() && error.starts_with(NO_DRIVER) => {
                out.push_str(&format!("GPUs: none ({NO_DRIVER})\n"));
                let detail = error[NO_DRIVER.len()..].trim_start_matches(':').trim();
                if !detail.is_empty() {
                    out.push_str(&format!("  {detail}\n"));
                }
            }
            Some(error) => out.push_str(&format!("GPUs: none ({error})\n")),
            None => out.push_str("GPUs: none\n"),
        }
        return out;
    }
    out.push_str(&format!("GPUs: {}\n", info.gpus.len()));
    if let Some(error) = &info.nvidia.error {
        out.push_str(&format!("  ({error})\n"));
    }
    for gpu in &info.gpus {
        out.push_str(&format!("GPU {}:\n", gpu.index));
        out.push_str(&aligned("  ", &gpu_lines(gpu)));
    }
    out
}

fn gpu_lines(gpu: &Gpu) -> Vec<(String, String)> {
    if let Some(error) = &gpu.error {
        return vec![("Error".to_owned(), error.clone())];
    }
    let mig = |mode: Option<farm_runtime::gpu::nvml::MigMode>| {
        mode.map_or("not supported", |mode| mode.as_str())
    };
    let mut lines = vec![
        ("Name", or_unknown(gpu.name.as_ref())),
        ("UUID", or_unknown(gpu.uuid.as_ref())),
        ("PCI bus id", or_unknown(gpu.pci_bus_id.as_ref())),
        ("Memory", bytes(gpu.memory_total_bytes)),
        ("Driver", or_unknown(gpu.driver_version.as_ref())),
        ("CUDA", or_unknown(gpu.cuda_version.as_ref())),
        (
            "MIG mode",
            format!(
                "{} (pending: {})",
                mig(gpu.mig_mode_current),
                mig(gpu.mig_mode_pending)
            ),
        ),
        (
            "Power limit",
            gpu.power_limit_milliwatts.map_or_else(
                || UNKNOWN.to_owned(),
                |mw| format!("{} W", f64::from(mw) / 1000.0),
            ),
        ),
        (
            "Temperature",
            gpu.temperature_celsius
                .map_or_else(|| UNKNOWN.to_owned(), |c| format!("{c} C")),
        ),
        (
            "Energy",
            gpu.total_energy_millijoules.map_or_else(
                || "not supported".to_owned(),
                |mj| format!("{:.1} kJ since the driver loaded", mj as f64 / 1e6),
            ),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect::<Vec<_>>();
    for instance in &gpu.mig_instances {
        lines.push((
            format!("MIG {}", instance.index),
            format!(
                "{} {} ({})",
                or_unknown(instance.uuid.as_ref()),
                or_unknown(instance.name.as_ref()),
                bytes(instance.memory_total_bytes)
            ),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_pads_keys_to_the_longest() {
        let lines = vec![
            ("A".to_owned(), "1".to_owned()),
            ("Longer".to_owned(), "2".to_owned()),
        ];
        assert_eq!(aligned("  ", &lines), "  A:      1\n  Longer: 2\n");
    }
}
