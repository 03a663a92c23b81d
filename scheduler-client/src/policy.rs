//! The farmer's acceptance policy: every lease offered passes [`accept`] before the
//! worker takes it. Today it refuses only what this worker cannot run; the trust issue
//! adds the farmer's own checks here (each a small function returning a [`Decision`]).

use crate::protocol::{Lease, Network};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Refuse(Refusal),
}

/// Why a lease was refused: the code goes to the coordinator, the sentence to people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the job asks for a network mode this worker does not know: update farm")]
    UnknownNetwork,
    #[error("the job names no image")]
    NoImage,
}

/// Every check, in order; the first refusal wins.
pub fn accept(lease: &Lease) -> Decision {
    let checks: [fn(&Lease) -> Decision; 2] = [known_network, has_image];
    for check in checks {
        if let refusal @ Decision::Refuse(_) = check(lease) {
            return refusal;
        }
    }
    Decision::Accept
}

fn known_network(lease: &Lease) -> Decision {
    match lease.job.network {
        Network::Unknown => Decision::Refuse(Refusal::UnknownNetwork),
        Network::None | Network::Internet => Decision::Accept,
    }
}

fn has_image(lease: &Lease) -> Decision {
    if lease.job.image.trim().is_empty() {
        Decision::Refuse(Refusal::NoImage)
    } else {
        Decision::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::JobSpec;

    fn lease(job: JobSpec) -> Lease {
        Lease {
            lease_id: "l".into(),
            job_id: "j".into(),
            attempt: 1,
            fencing_token: 1,
            ttl_ms: 1,
            job,
        }
    }

    #[test]
    fn each_check_refuses_alone() {
        let ok = JobSpec {
            image: "busybox".into(),
            ..Default::default()
        };
        assert_eq!(accept(&lease(ok.clone())), Decision::Accept);
        let unknown = JobSpec {
            network: Network::Unknown,
            ..ok.clone()
        };
        assert_eq!(
            accept(&lease(unknown)),
            Decision::Refuse(Refusal::UnknownNetwork)
        );
        let no_image = JobSpec {
            image: " ".into(),
            ..ok
        };
        assert_eq!(accept(&lease(no_image)), Decision::Refuse(Refusal::NoImage));
    }
}
