//! `farm stats`: what a running container uses now, read from its cgroup's own files (v1
//! or v2) and, with `--network internet`, from its nft counters; docker's figures:
//! memory use without the inactive page cache, the limit capped at the host's memory, CPU
//! percent of one CPU between two samples, block I/O and network bytes since the start.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cgroups::{CgroupError, CgroupVersion, Hierarchies, MountKind};
use crate::layout::Layout;
use crate::network::NetUsage;
use crate::options::NetworkMode;
use crate::state::ContainerRecord;

/// One reading of a container's counters.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// CPU time of all its processes, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, without the inactive file cache (docker's figure).
    pub memory_bytes: u64,
    /// Its memory limit, or the host's memory when that is less (docker's figure).
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    /// `None` without `--network internet` (no counters of its own).
    pub net: Option<NetUsage>,
}

/// Read the counters of `record`'s cgroup now.
pub fn sample(record: &ContainerRecord) -> Result<Sample, CgroupError> {
    let hierarchies = Hierarchies::system()?;
    let relative = Layout::cgroups_path(&record.id);
    let relative = relative.strip_prefix("/").unwrap_or(&relative);
    let files = Files {
        hierarchies,
        relative,
        version: hierarchies.version(),
    };
    let not_found = || CgroupError::NotFound {
        path: Layout::cgroups_path(&record.id).display().to_string(),
    };
    let memory = files.dir("memory").ok_or_else(not_found)?;
    let (cpu_ns, memory_bytes, limit, pids, (read, write)) = match files.version {
        CgroupVersion::V1 => (
            files
                .dir("cpuacct")
                .map_or(Ok(0), |d| number(&d, "cpuacct.usage"))?,
            in_use(&memory, "memory.usage_in_bytes", "total_inactive_file")?,
            number(&memory, "memory.limit_in_bytes")?,
            files
                .dir("pids")
                .map_or(Ok(0), |d| number(&d, "pids.current"))?,
            files.dir("blkio").map_or(Ok((0, 0)), |d| blkio_v1(&d))?,
        ),
        CgroupVersion::V2 => (
            keyed(&memory, "cpu.stat", "usage_usec")?.saturating_mul(1000),
            in_use(&memory, "memory.current", "inactive_file")?,
            number(&memory, "memory.max")?,
            number(&memory, "pids.current")?,
            io_v2(&memory)?,
        ),
    };
    let host = host_memory();
    Ok(Sample {
        at: Instant::now(),
        cpu_ns,
        memory_bytes,
        memory_limit_bytes: if limit == 0 || (host > 0 && limit > host) {
            host
        } else {
            limit
        },
        pids,
        block_read_bytes: read,
        block_write_bytes: write,
        net: (record.options.network == NetworkMode::Internet)
            .then(|| crate::network::usage(&record.id))
            .flatten(),
    })
}

/// CPU use between two samples in percent of one CPU (docker's scale: 200% is two CPUs).
pub fn cpu_percent(before: &Sample, after: &Sample) -> f64 {
    let wall = after.at.saturating_duration_since(before.at).as_nanos() as f64;
    if wall <= 0.0 {
        return 0.0;
    }
    after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / wall * 100.0
}

/// Where one container's cgroup files are.
struct Files<'a> {
    hierarchies: &'a Hierarchies,
    relative: &'a Path,
    version: CgroupVersion,
}

impl Files<'_> {
    /// The cgroup's folder for `controller` (v1), or its one folder (v2).
    fn dir(&self, controller: &str) -> Option<PathBuf> {
        let mount = self
            .hierarchies
            .mounts()
            .iter()
            .find(|m| match self.version {
                CgroupVersion::V1 => m.has_v1_controller(controller),
                CgroupVersion::V2 => m.kind == MountKind::V2,
            })?;
        Some(mount.path.join(self.relative)).filter(|d| d.is_dir())
    }
}

fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| CgroupError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A one-number file; 0 for `max` or nothing.
fn number(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    Ok(read(dir, file)?.trim().parse().unwrap_or(0))
}

/// `key`'s value in a flat-keyed file (`memory.stat`, `cpu.stat`); 0 when absent.
fn keyed(dir: &Path, file: &str, key: &str) -> Result<u64, CgroupError> {
    Ok(read(dir, file)?
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == key).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0))
}

/// `usage` minus the inactive file cache of `memory.stat`, as the docker CLI computes it.
fn in_use(dir: &Path, usage: &str, inactive: &str) -> Result<u64, CgroupError> {
    let used = number(dir, usage)?;
    Ok(used.saturating_sub(keyed(dir, "memory.stat", inactive)?))
}

/// Bytes read and written: the `Read`/`Write` lines of `blkio.throttle.io_service_bytes`
/// (the recursive variant where the kernel has it), summed over devices.
fn blkio_v1(dir: &Path) -> Result<(u64, u64), CgroupError> {
    let text = read(dir, "blkio.throttle.io_service_bytes_recursive")
        .or_else(|_| read(dir, "blkio.throttle.io_service_bytes"))?;
    let mut totals = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, value] = fields[..] {
            let value: u64 = value.parse().unwrap_or(0);
            match op {
                "Read" => totals.0 += value,
                "Write" => totals.1 += value,
                _ => {}
            }
        }
    }
    Ok(totals)
}

/// Bytes read and written: `rbytes=`/`wbytes=` of `io.stat`, summed over devices.
fn io_v2(dir: &Path) -> Result<(u64, u64), CgroupError> {
    let text = match read(dir, "io.stat") {
        Ok(text) => text,
        Err(_) => return Ok((0, 0)),
    };
    let mut totals = (0, 0);
    for field in text.split_whitespace() {
        if let Some(value) = field.strip_prefix("rbytes=") {
            totals.0 += value.parse::<u64>().unwrap_or(0);
        } else if let Some(value) = field.strip_prefix("wbytes=") {
            totals.1 += value.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(totals)
}

/// MemTotal of /proc/meminfo in bytes; 0 when unreadable.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Docker's units (`docker stats`): binary for memory (`MiB`), decimal for I/O (`MB`).
pub fn binary_size(bytes: u64) -> String {
    size(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"])
}

pub fn decimal_size(bytes: u64) -> String {
    size(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB"])
}

/// go-units' `HumanSizeWithPrecision(size, 3)`: `%.4g` of the value in the largest unit
/// under `base`.
fn size(bytes: u64, base: f64, units: &[&str]) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    let digits = if value >= 1.0 {
        value.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = (4 - digits).max(0) as usize;
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_dockers() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(decimal_size(2_500_000), "2.5MB");
        assert_eq!(decimal_size(999), "999B");
        assert_eq!(binary_size(8_345_000_000), "7.772GiB");
    }

    #[test]
    fn blkio_and_io_stat_are_summed_over_devices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("blkio.throttle.io_service_bytes"),
            "8:0 Read 100\n8:0 Write 20\n8:0 Sync 120\n8:16 Read 5\n8:16 Write 1\nTotal 126\n",
        )
        .unwrap();
        assert_eq!(blkio_v1(dir.path()).unwrap(), (105, 21));
        std::fs::write(
            dir.path().join("io.stat"),
            "8:0 rbytes=10 wbytes=2 rios=1 wios=1\n8:16 rbytes=7 wbytes=0 rios=1 wios=0\n",
        )
        .unwrap();
        assert_eq!(io_v2(dir.path()).unwrap(), (17, 2));
    }

    #[test]
    fn memory_in_use_leaves_out_the_inactive_file_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.usage_in_bytes"), "10000\n").unwrap();
        std::fs::write(
            dir.path().join("memory.stat"),
            "cache 5000\ninactive_file 10\ntotal_inactive_file 4000\n",
        )
        .unwrap();
        assert_eq!(
            in_use(dir.path(), "memory.usage_in_bytes", "total_inactive_file").unwrap(),
            6000
        );
    }
}
