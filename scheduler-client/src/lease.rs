//! Leases as the worker keeps them: a pure state machine over a monotonic clock. The
//! coordinator gives the time to live (with each renewal) and the grace (at
//! registration); the worker never hard-codes either.
//!
//! A lease is `Held` until its TTL runs out after the last renewal the coordinator
//! answered, then `InGrace` (the coordinator may be down: keep the job running, keep
//! trying), then `Lost` (stop the job and report it with `lease_lost`).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Held,
    InGrace,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimer {
    renewed_at: Instant,
    ttl: Duration,
    grace: Duration,
}

impl LeaseTimer {
    pub fn new(now: Instant, ttl: Duration, grace: Duration) -> LeaseTimer {
        LeaseTimer {
            renewed_at: now,
            ttl,
            grace,
        }
    }

    /// The coordinator answered a renewal with this TTL.
    pub fn renew(&mut self, now: Instant, ttl: Duration) {
        self.renewed_at = now;
        self.ttl = ttl;
    }

    pub fn standing(&self, now: Instant) -> Standing {
        let held_until = self.renewed_at + self.ttl;
        if now <= held_until {
            Standing::Held
        } else if now <= held_until + self.grace {
            Standing::InGrace
        } else {
            Standing::Lost
        }
    }

    /// When the lease is lost if no renewal comes.
    pub fn lost_at(&self) -> Instant {
        self.renewed_at + self.ttl + self.grace
    }
}

/// The heartbeat period: the coordinator's interval, never more than a third of the
/// TTL (so two heartbeats may fail before the TTL is out), with jitter.
pub fn heartbeat_period(interval: Duration, ttl: Duration) -> Duration {
    let period = if ttl.is_zero() {
        interval
    } else {
        interval.min(ttl / 3)
    };
    crate::transport::jitter(period.max(Duration::from_millis(50)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_then_in_grace_then_lost() {
        let start = Instant::now();
        let s = Duration::from_secs(1);
        let timer = LeaseTimer::new(start, 10 * s, 5 * s);
        assert_eq!(timer.standing(start), Standing::Held);
        assert_eq!(timer.standing(start + 10 * s), Standing::Held);
        assert_eq!(timer.standing(start + 11 * s), Standing::InGrace);
        assert_eq!(timer.standing(start + 15 * s), Standing::InGrace);
        assert_eq!(timer.standing(start + 16 * s), Standing::Lost);
        assert_eq!(timer.lost_at(), start + 15 * s);
    }

    #[test]
    fn a_renewal_moves_the_deadline_with_the_ttl_given() {
        let start = Instant::now();
        let s = Duration::from_secs(1);
        let mut timer = LeaseTimer::new(start, 10 * s, 5 * s);
        timer.renew(start + 14 * s, 2 * s);
        assert_eq!(timer.standing(start + 16 * s), Standing::Held);
        assert_eq!(timer.standing(start + 17 * s), Standing::InGrace);
        assert_eq!(timer.standing(start + 22 * s), Standing::Lost);
    }

    #[test]
    fn heartbeats_come_at_least_three_times_per_ttl() {
        let p = heartbeat_period(Duration::from_secs(60), Duration::from_secs(30));
        assert!(
            p <= Duration::from_secs(11) && p >= Duration::from_secs(9),
            "{p:?}"
        );
        let p = heartbeat_period(Duration::from_secs(5), Duration::from_secs(60));
        assert!(p <= Duration::from_millis(5500), "{p:?}");
    }
}
