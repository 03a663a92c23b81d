//! `--restart`: the monitor of a detached container starts it again after it ended, as
//! moby's restartmanager does (on-failure only after a non-zero exit and at most N times,
//! always until a `farm stop`; back-off 100 ms doubling to a minute, back to 100 ms after a
//! run of 10 s or more).
//!
//! The monitor does not loop in place: it records `restarting` and the new count, releases
//! what the run held (libcontainer's state and cgroup, the network, the rootfs mount),
//! waits the back-off, then execs a fresh `farm __monitor` for the same record with the
//! same flocked `monitor.lock`, so the container is set up exactly as the first time and
//! no other farm command ever sees the lock free.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::layout::Layout;
use crate::options::NetworkMode;
use crate::state::{ContainerRecord, Exit, Restarts, StateStore};

/// moby's restartmanager constants.
const FIRST_DELAY_MS: u64 = 100;
const MAX_DELAY_MS: u64 = 60_000;
const RESET_AFTER: Duration = Duration::from_secs(10);

/// How often the back-off looks for a `farm stop`.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The back-off before the next start, after one of `previous_ms` and a run of `ran`.
pub(super) fn next_delay_ms(previous_ms: u64, ran: Duration) -> u64 {
    let previous = if ran >= RESET_AFTER { 0 } else { previous_ms };
    if previous == 0 {
        FIRST_DELAY_MS
    } else {
        previous.saturating_mul(2).min(MAX_DELAY_MS)
    }
}

/// What the end of one run comes to.
pub(super) enum After {
    /// Not started again: the caller records the exit as usual.
    Exit,
    /// Stopped during the back-off, or the exec failed: already recorded as exited.
    Recorded,
}

/// After the container ended with `exit` (having run for `ran`): when its policy starts it
/// again, record `restarting`, release the run's resources, wait the back-off and exec a
/// fresh monitor (this returns only when it did not). `lock_fd` is the inherited, flocked
/// `monitor.lock`; without it (a foreground monitor) nothing is restarted.
pub(super) fn after_exit(
    layout: &Layout,
    state: &StateStore,
    record: &ContainerRecord,
    exit: &Exit,
    ran: Duration,
    timed_out: bool,
    lock_fd: Option<i32>,
) -> After {
    let Some(lock_fd) = lock_fd else {
        return After::Exit;
    };
    let Ok(restarts) = state.restarts(&record.id) else {
        return After::Exit;
    };
    // A job killed for running past --timeout has used its time.
    if restarts.stop_requested
        || timed_out
        || !record
            .options
            .restart
            .should_restart(exit.code, restarts.count)
    {
        return After::Exit;
    }
    let next = Restarts {
        count: restarts.count + 1,
        delay_ms: next_delay_ms(restarts.delay_ms, ran),
        stop_requested: false,
    };
    let mut exit = exit.clone();
    if record.options.network == NetworkMode::Internet {
        exit.network = crate::network::finish(layout, &record.id).0;
    }
    let _ = crate::container::delete(
        &layout.run_root(),
        &record.id,
        &Layout::cgroups_path(&record.id),
    );
    crate::rootfs::unmount(&layout.container(&record.id));
    if state
        .set_restarting(&record.id, &exit, &super::now(), &next)
        .is_err()
    {
        return After::Exit;
    }
    let until = Instant::now() + Duration::from_millis(next.delay_ms);
    loop {
        if state
            .restarts(&record.id)
            .is_ok_and(|now| now.stop_requested)
        {
            let _ = state.set_exited(&record.id, &exit, &super::now());
            return After::Recorded;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(STOP_POLL));
    }
    // The supervisor blocked the signals it reads from its signalfd; a mask survives exec
    // and would reach the container's init through the new monitor.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    let error = std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(layout.root())
        .arg("__monitor")
        .arg("--id")
        .arg(&record.id)
        .arg("--lock-fd")
        .arg(lock_fd.to_string())
        .exec();
    exit.error = Some(format!("restarting the container: {error}"));
    let _ = state.set_exited(&record.id, &exit, &super::now());
    After::Recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let short = Duration::from_millis(5);
        let mut delay = 0;
        let mut seen = Vec::new();
        for _ in 0..12 {
            delay = next_delay_ms(delay, short);
            seen.push(delay);
        }
        assert_eq!(&seen[..4], [100, 200, 400, 800]);
        assert_eq!(*seen.last().unwrap(), 60_000);
        assert_eq!(next_delay_ms(60_000, Duration::from_secs(10)), 100);
        assert_eq!(next_delay_ms(400, Duration::from_secs(9)), 800);
    }
}
