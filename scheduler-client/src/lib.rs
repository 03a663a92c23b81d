//! farm-scheduler-client: the worker side of the coordinator protocol
//! (`docs/worker-protocol.md`).
//!
//! [`protocol`] mirrors the document; [`transport`] is the one door to the network
//! (failover, backoff, the place signing slots in); [`outbox`] is the durable store
//! (node id, leases, reports with idempotency keys, log cursors); [`lease`],
//! [`reconcile`] and [`policy`] are pure decisions; [`runtime`] is the only module that
//! calls farm-runtime and farm-puller; [`worker`] and `job` wire them together.
//! [`testcoord`] is a small coordinator written from the document, for tests and demos.

pub mod config;
pub mod earnings;
mod job;
pub mod lease;
mod logship;
pub mod metrics;
pub mod outbox;
mod outputs;
pub mod policy;
pub mod protocol;
pub mod reconcile;
pub mod runtime;
pub mod status;
pub mod testcoord;
pub mod transport;
pub mod worker;

pub use config::Config;

/// Any error of the worker, by the part that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeOpsError),
    #[error(transparent)]
    Trust(#[from] farm_trust::TrustError),
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
}
