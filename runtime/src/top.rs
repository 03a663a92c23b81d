//! `farm top`: the processes of a running container (every process of its cgroup), read
//! from the host's /proc: nothing is run on the host for it.

use std::path::Path;

use crate::layout::Layout;
use crate::state::{ContainerRecord, Status};
use crate::RuntimeError;

/// One process of a container, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProcess {
    /// Host uid (the container's ids are shifted into its range).
    pub uid: u32,
    pub pid: i32,
    pub ppid: i32,
    /// user + system CPU time, in seconds.
    pub cpu_seconds: u64,
    /// The command line (`[comm]` when it has none).
    pub command: String,
}

/// The processes of `record`'s cgroup, by pid.
pub fn processes(
    root: &Path,
    record: &ContainerRecord,
) -> Result<Vec<ContainerProcess>, RuntimeError> {
    let layout = Layout::new(root);
    if record.status != Status::Running || !crate::lifecycle::monitor_alive(&layout, &record.id) {
        return Err(RuntimeError::Other(format!(
            "container {} is not running: `farm ps -a` shows its state",
            record.name
        )));
    }
    let mut pids = crate::cgroups::procs(&Layout::cgroups_path(&record.id))?;
    pids.sort_unstable();
    pids.dedup();
    // A process that exited between the listing and the read is left out.
    Ok(pids.into_iter().filter_map(read).collect())
}

fn read(pid: i32) -> Option<ContainerProcess> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| -> Option<&str> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    let uid = field("Uid")?.split_whitespace().next()?.parse().ok()?;
    let ppid = field("PPid")?.parse().ok()?;
    let name = field("Name").unwrap_or("?").to_owned();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ContainerProcess {
        uid,
        pid,
        ppid,
        cpu_seconds: cpu_ticks(&stat) / 100,
        command: command_line(pid).unwrap_or(format!("[{name}]")),
    })
}

/// utime + stime of a `/proc/PID/stat` line (fields 14 and 15, after the `(comm)` that
/// may hold spaces and parentheses), in USER_HZ (100) ticks.
fn cpu_ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let number = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    number(11) + number(12)
}

fn command_line(pid: i32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    // Container-chosen bytes: no control characters reach the terminal.
    let line = text.join(" ").replace(|c: char| c.is_control(), "?");
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_comm_with_spaces_and_parentheses() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0";
        assert_eq!(cpu_ticks(stat), 300);
        assert_eq!(cpu_ticks("garbage"), 0);
    }

    #[test]
    fn own_process_reads_back() {
        let me = read(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(!me.command.is_empty());
    }
}
